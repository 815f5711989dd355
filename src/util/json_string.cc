#include "util/json_string.h"

#include <boost/json.hpp>
#include <cstdint>
#include <cstring>

namespace cutover::util {

// Eight bytes at a time (a byte-by-byte loop was the access log's largest cost after its
// formatter went): a byte is flagged when it is below 0x20, '"' or '\\', with the borrow trick for
// "below" (x - k sets the high bit of a byte under k, unless the byte's own high bit is set).
bool needs_json_escaping(std::string_view text) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
  auto has_zero_byte = [](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
  auto flagged = [&](std::size_t at) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + at, 8);
    const std::uint64_t control = (word - kOnes * 0x20) & ~word & kHighs;
    const std::uint64_t quote = has_zero_byte(word ^ (kOnes * '"'));
    const std::uint64_t backslash = has_zero_byte(word ^ (kOnes * '\\'));
    return (control | quote | backslash) != 0;
  };
  if (text.size() >= 8) {
    for (std::size_t at = 0; at + 8 <= text.size(); at += 8) {
      if (flagged(at)) return true;
    }
    // The last bytes as one word overlapping the one before, rather than one at a time.
    return flagged(text.size() - 8);
  }
  for (const char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') return true;
  }
  return false;
}

// Appends `text` as a JSON string literal to `out`. Most values (ids, models, routes) need no
// escaping and are copied as they are; the rest are escaped by Boost.JSON's serializer through a
// stack buffer, without the two allocations a json::string and its serialized copy cost.
void append_json_string(std::string& out, std::string_view text) {
  if (!needs_json_escaping(text)) {
    out.push_back('"');
    out.append(text);
    out.push_back('"');
    return;
  }
  thread_local boost::json::serializer serializer;
  serializer.reset(boost::json::string_view(text.data(), text.size()));
  char piece[512];
  while (!serializer.done()) {
    const auto written = serializer.read(piece, sizeof piece);
    out.append(written.data(), written.size());
  }
}

}  // namespace cutover::util
