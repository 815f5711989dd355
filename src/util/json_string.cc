#include "util/json_string.h"

#include <boost/json.hpp>
#include <cstdint>
#include <cstring>

#include "util/byte_words.h"

namespace cutover::util {

// Eight bytes at a time (a byte-by-byte loop was the access log's largest cost after its
// formatter went): a byte is flagged when it is below 0x20, '"' or '\\'.
bool needs_json_escaping(std::string_view text) {
  if (text.size() >= 8) {
    return any_word_of(text, [](std::uint64_t word) {
      return (word_has_byte_below(word, 0x20) | word_has_byte(word, '"') |
              word_has_byte(word, '\\')) != 0;
    });
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
