#include "util/json_string.h"

#include <boost/json.hpp>
#include <cmath>
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

namespace {

void append_finite(std::string& out, const boost::json::value& value);

void append_finite(std::string& out, const boost::json::object& object) {
  out.push_back('{');
  bool first = true;
  for (const auto& member : object) {
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, member.key());
    out.push_back(':');
    append_finite(out, member.value());
  }
  out.push_back('}');
}

void append_finite(std::string& out, const boost::json::value& value) {
  namespace json = boost::json;
  switch (value.kind()) {
    case json::kind::object:
      append_finite(out, value.get_object());
      return;
    case json::kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& element : value.get_array()) {
        if (!first) out.push_back(',');
        first = false;
        append_finite(out, element);
      }
      out.push_back(']');
      return;
    }
    case json::kind::double_: {
      const double number = value.get_double();
      if (std::isnan(number)) {
        out.push_back('0');
      } else if (std::isinf(number)) {
        out.append(number > 0 ? "1e400" : "-1e400");
      } else {
        out.append(json::serialize(value));
      }
      return;
    }
    default:
      out.append(json::serialize(value));
  }
}

// Whether a tree holds a double that is not finite: most requests hold none, and are written by
// json::serialize in one pass.
bool has_non_finite(const boost::json::value& value);

bool has_non_finite(const boost::json::object& object) {
  for (const auto& member : object) {
    if (has_non_finite(member.value())) return true;
  }
  return false;
}

bool has_non_finite(const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::object:
      return has_non_finite(value.get_object());
    case boost::json::kind::array:
      for (const auto& element : value.get_array()) {
        if (has_non_finite(element)) return true;
      }
      return false;
    case boost::json::kind::double_:
      return !std::isfinite(value.get_double());
    default:
      return false;
  }
}

}  // namespace

std::string serialize_finite(const boost::json::value& value) {
  if (!has_non_finite(value)) return boost::json::serialize(value);
  std::string out;
  append_finite(out, value);
  return out;
}

std::string serialize_finite(const boost::json::object& object) {
  if (!has_non_finite(object)) return boost::json::serialize(object);
  std::string out;
  append_finite(out, object);
  return out;
}

}  // namespace cutover::util
