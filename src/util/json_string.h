// Text as a JSON string literal, for the places that write JSON by hand on the request path (the
// access log, the cache key's canonical form): most values need no escaping and are copied as
// they are; the rest go through Boost.JSON's serializer, so the bytes are Boost.JSON's in both
// cases.
#pragma once

#include <boost/json/fwd.hpp>
#include <string>
#include <string_view>

namespace cutover::util {

// Whether `text` holds a byte JSON must escape: a control character, '"' or '\\'.
bool needs_json_escaping(std::string_view text);

// Appends `text` to `out` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view text);

// `value` as JSON text, as json::serialize writes it, except a double that is not finite, which
// json::serialize writes as `NaN` or `Infinity` (no JSON parser takes them). Boost.JSON 1.81
// parses `1e400` to infinity and `0e400` (zero) to NaN: they are written as `1e400` and `0`.
// For a client's values on their way to a provider.
std::string serialize_finite(const boost::json::value& value);
std::string serialize_finite(const boost::json::object& object);

}  // namespace cutover::util
