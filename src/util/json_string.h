// Text as a JSON string literal, for the places that write JSON by hand on the request path (the
// access log, the cache key's canonical form): most values need no escaping and are copied as
// they are; the rest go through Boost.JSON's serializer, so the bytes are Boost.JSON's in both
// cases.
#pragma once

#include <string>
#include <string_view>

namespace cutover::util {

// Whether `text` holds a byte JSON must escape: a control character, '"' or '\\'.
bool needs_json_escaping(std::string_view text);

// Appends `text` to `out` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view text);

}  // namespace cutover::util
