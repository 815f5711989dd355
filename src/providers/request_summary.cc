#include "providers/request_summary.h"

#include "providers/request_summary_handler.h"

// basic_parser with a handler of our own needs its member definitions.
#include <boost/json/basic_parser_impl.hpp>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace cutover::providers {

namespace json = boost::json;

RequestSummary summarize_request(std::string_view body, ApiKind kind, RequestShape& shape) {
  json::basic_parser<summary_detail::SummaryHandler> parser(json::parse_options(), shape, body);
  json::error_code error;
  const auto used = parser.write_some(false, body.data(), body.size(), error);
  return parser.handler().result(error, used, body.size(), kind);
}

namespace {

// The string whose text begins at `begin` (just past its opening quote), if it has no escapes
// and is at most `longest` bytes long.
std::optional<std::string_view> plain_string_at(std::string_view body, std::size_t begin,
                                                std::size_t longest) {
  const auto end = body.find('"', begin);
  if (end == std::string_view::npos || end - begin > longest) return std::nullopt;
  const auto value = body.substr(begin, end - begin);
  if (value.find('\\') != std::string_view::npos) return std::nullopt;
  return value;
}

}  // namespace

std::optional<std::string_view> model_hint(std::string_view body) {
  constexpr std::size_t kLongestHint = 256;
  // Most clients write the model first and without spaces: read where it stands.
  constexpr std::string_view kModelFirst = "{\"model\":\"";
  if (body.starts_with(kModelFirst)) return plain_string_at(body, kModelFirst.size(), kLongestHint);
  constexpr std::string_view kModelKey = "\"model\"";
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  for (auto found = body.find(kModelKey); found != std::string_view::npos;
       found = body.find(kModelKey, found + 1)) {
    auto at = found + kModelKey.size();
    while (at < body.size() && is_space(body[at])) ++at;
    if (at == body.size() || body[at] != ':') continue;
    ++at;
    while (at < body.size() && is_space(body[at])) ++at;
    if (at == body.size() || body[at] != '"') continue;
    return plain_string_at(body, at + 1, kLongestHint);
  }
  return std::nullopt;
}

void RequestDom::build() {
  value_ = json::parse(text_, storage_);
  if (!value_.is_object())
    throw std::logic_error("a request body summarized as an object is not one");
  object_ = &value_.get_object();
}

}  // namespace cutover::providers
