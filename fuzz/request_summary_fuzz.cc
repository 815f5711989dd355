// Fuzz target: on arbitrary bytes, summarize_request decides exactly what json::parse and
// validate_request decide of the same body (the error, "not an object", the problem and the
// shape, for each kind of request), and a body it accepts is spliced by RequestBody into one
// that parses to the client's tree with only `model` and `stream_options` changed. The response
// cache's key written from the body's text is the one written from its tree (or none for a body
// that is not a JSON object), and the summary and key read by one parse (summarize_with_key) are
// the ones the two readers give apart.
#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

#include "cache/response_cache.h"
#include "providers/openai_dialect.h"
#include "providers/request_body.h"
#include "providers/request_summary.h"

namespace {

namespace json = boost::json;
namespace providers = cutover::providers;

void require(bool condition) {
  if (!condition) std::abort();
}

void check_kind(std::string_view body, const json::value& parsed, bool parse_failed,
                providers::ApiKind kind) {
  providers::RequestShape summarized_shape;
  const auto summary = providers::summarize_request(body, kind, summarized_shape);
  require(summary.parse_error.failed() == parse_failed);
  if (parse_failed) return;
  require(summary.not_object == !parsed.is_object());
  if (summary.not_object) return;
  providers::RequestShape shape;
  const auto problem = providers::validate_request(parsed.get_object(), kind, shape);
  require(summary.problem == problem);
  require(summary.has_stream_options == parsed.get_object().contains("stream_options"));
  if (problem) return;
  require(summarized_shape.model == shape.model);
  require(summarized_shape.stream == shape.stream);
  require(summarized_shape.client_requested_usage == shape.client_requested_usage);
}

// One parse for both, as the gateway reads a cached route's request, against the two readers.
void check_summary_with_key(std::string_view body, providers::ApiKind kind) {
  providers::RequestShape alone_shape, both_shape;
  const auto alone = providers::summarize_request(body, kind, alone_shape);
  const auto both = cutover::cache::summarize_with_key(body, kind, both_shape, "/k", "tenant");
  require(both.summary.parse_error == alone.parse_error);
  require(both.summary.not_object == alone.not_object);
  require(both.summary.problem == alone.problem);
  require(both.summary.has_stream_options == alone.has_stream_options);
  require(both_shape.model == alone_shape.model);
  require(both_shape.stream == alone_shape.stream);
  require(both_shape.client_requested_usage == alone_shape.client_requested_usage);
  const bool refused = alone.parse_error || alone.not_object || alone.problem;
  require(both.key.has_value() == !refused);
  if (refused) return;
  const auto key = cutover::cache::request_key(body, "/k", alone_shape.stream, "tenant");
  require(key && both.key->text == key->text && both.key->deterministic == key->deterministic);
}

// The guess is a plain string of the body's own bytes (a view into it), or nothing.
void check_model_hint(std::string_view body) {
  const auto hint = providers::model_hint(body);
  if (!hint) return;
  require(hint->data() >= body.data() && hint->data() + hint->size() <= body.data() + body.size());
  require(hint->size() <= 256 && hint->find_first_of("\"\\") == std::string_view::npos);
  require(hint->data() > body.data() && hint->data()[-1] == '"' &&
          hint->data()[hint->size()] == '"');
}

// Equal trees, but for doubles a few units in the last place apart: Boost.JSON 1.81 can parse
// the same digits to neighbouring doubles in two documents (seen: "123451.234567890123" after
// a splice moved it), so equal texts are not always equal trees.
bool same_json(const json::value& a, const json::value& b) {
  if (a.is_double() && b.is_double()) {
    const double x = a.get_double(), y = b.get_double();
    // 0e400 parses to NaN on both sides.
    if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
    return x == y || std::fabs(x - y) <= 4 * std::numeric_limits<double>::epsilon() * std::fabs(x);
  }
  if (a.kind() != b.kind()) return false;
  if (a.is_array()) {
    const auto &left = a.get_array(), &right = b.get_array();
    if (left.size() != right.size()) return false;
    for (std::size_t i = 0; i < left.size(); ++i) {
      if (!same_json(left[i], right[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    const auto &left = a.get_object(), &right = b.get_object();
    if (left.size() != right.size()) return false;
    for (const auto& member : left) {
      const auto* other = right.if_contains(member.key());
      if (other == nullptr || !same_json(member.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

// The splice, as the gateway makes it for an accepted body, against the client's tree.
void check_rewrite(std::string body, const json::object& parsed, bool ask_usage) {
  const providers::RequestBody original(body);
  const auto* options = parsed.if_contains("stream_options");
  const auto rewritten = original.rewrite(options, "provider/model \"x\"", ask_usage, false);
  boost::system::error_code ec;
  auto result = json::parse(rewritten, ec);
  require(!ec && result.is_object());
  auto& object = result.get_object();
  require(object.at("model") == "provider/model \"x\"");
  json::object expected = parsed;
  expected["model"] = "provider/model \"x\"";
  if (ask_usage) {
    require(object.at("stream_options").is_object());
    require(object.at("stream_options").get_object().at("include_usage") == true);
    object.erase("stream_options");
    expected.erase("stream_options");
  } else if (options != nullptr && options->is_object()) {
    require(!object.at("stream_options").get_object().contains("include_usage"));
    object.erase("stream_options");
    expected.erase("stream_options");
  }
  // Spliced bytes hold the client's numbers as sent, so both sides parse the same text. A body
  // simdjson could not walk is serialized from its tree instead, which cannot keep them all.
  if (!original.located()) return;
  require(same_json(object, expected));
  // Where the summary found the model values (and the body has no stream_options), the gateway
  // splices there without walking the body: the same bytes.
  providers::RequestShape shape;
  const auto summary =
      providers::summarize_request(body, providers::ApiKind::chat_completions, shape);
  if (summary.has_stream_options || summary.model_values.empty()) return;
  const providers::RequestBody by_summary(body, &summary);
  require(by_summary.rewrite(options, "provider/model \"x\"", ask_usage, false) == rewritten);
}

void check_cache_key(std::string_view body, const json::value& parsed, bool parse_failed) {
  const auto from_text = cutover::cache::request_key(body, "/chat/completions", false, "tenant");
  require(from_text.has_value() == (!parse_failed && parsed.is_object()));
  if (!from_text) return;
  const auto from_tree =
      cutover::cache::request_key(parsed.get_object(), "/chat/completions", false, "tenant");
  require(from_text->text == from_tree.text);
  require(from_text->deterministic == from_tree.deterministic);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  boost::system::error_code parse_error;
  const auto parsed = json::parse(body, parse_error);
  for (auto kind : {providers::ApiKind::chat_completions, providers::ApiKind::completions,
                    providers::ApiKind::embeddings}) {
    check_kind(body, parsed, parse_error.failed(), kind);
    check_summary_with_key(body, kind);
  }
  check_model_hint(body);
  check_cache_key(body, parsed, parse_error.failed());
  // The gateway splices only bodies with a model (validate_request refuses the others).
  if (!parse_error && parsed.is_object() && parsed.get_object().contains("model")) {
    check_rewrite(body, parsed.get_object(), false);
    check_rewrite(body, parsed.get_object(), true);
  }
  return 0;
}
