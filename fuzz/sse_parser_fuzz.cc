// Fuzz target: the SSE parser must never crash or grow without bound on arbitrary bytes, and
// feeding the same bytes in two pieces must give the same events as in one; so must reading
// them as the gateway does, the whole one-line data events without a CR at the front of each
// piece taken as views (SseParser::whole_data_event) and the rest fed.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "providers/sse.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using cutover::providers::SseEvent;
  using cutover::providers::SseParser;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  SseParser whole(4096);
  std::vector<SseEvent> whole_events;
  const bool whole_ok = whole.feed(input, whole_events);

  SseParser split(4096);
  std::vector<SseEvent> split_events;
  const auto middle = size / 2;
  const bool split_ok = split.feed(input.substr(0, middle), split_events) &&
                        split.feed(input.substr(middle), split_events);
  SseParser viewing(4096);
  std::vector<SseEvent> viewed_events;
  bool viewed_ok = true;
  for (auto piece : {input.substr(0, middle), input.substr(middle)}) {
    std::size_t event_size = 0;
    while (const auto event_data = viewing.whole_data_event(piece, event_size)) {
      // The caller's part: data with a CR is not taken (a kept chunk shape never matches it).
      if (event_data->find('\r') != std::string_view::npos) break;
      if (event_size == 0 || event_size > piece.size()) std::abort();
      viewed_events.push_back(SseEvent{"", std::string(*event_data)});
      piece.remove_prefix(event_size);
    }
    viewed_ok = viewed_ok && viewing.feed(piece, viewed_events);
  }
  if (whole_ok != split_ok || whole_ok != viewed_ok) std::abort();
  if (whole_ok) {
    if (whole_events.size() != split_events.size()) std::abort();
    if (whole_events.size() != viewed_events.size()) std::abort();
    for (std::size_t i = 0; i < whole_events.size(); ++i) {
      if (whole_events[i].data != split_events[i].data ||
          whole_events[i].event != split_events[i].event ||
          whole_events[i].data != viewed_events[i].data ||
          whole_events[i].event != viewed_events[i].event) {
        std::abort();
      }
    }
  }
  return 0;
}
