// Fuzz target: the SSE parser must never crash or grow without bound on arbitrary bytes, and
// feeding the same bytes in two pieces must give the same events as in one.
#include <cstdint>
#include <cstdlib>
#include <string_view>

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
  if (whole_ok != split_ok) std::abort();
  if (whole_ok) {
    if (whole_events.size() != split_events.size()) std::abort();
    for (std::size_t i = 0; i < whole_events.size(); ++i) {
      if (whole_events[i].data != split_events[i].data ||
          whole_events[i].event != split_events[i].event) {
        std::abort();
      }
    }
  }
  return 0;
}
