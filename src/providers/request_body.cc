#include "providers/request_body.h"

#include <simdjson.h>

#include <algorithm>

#include "providers/simdjson_parser.h"
#include "util/json_string.h"

namespace cutover::providers {

namespace json = boost::json;
namespace ondemand = simdjson::ondemand;

namespace {

// The raw text of one value: objects and arrays whole, scalars without trailing whitespace.
std::optional<std::string_view> raw_value(ondemand::value& value) {
  ondemand::json_type type;
  if (value.type().get(type)) return std::nullopt;
  std::string_view raw;
  if (type == ondemand::json_type::object) {
    ondemand::object object;
    if (value.get_object().get(object) || object.raw_json().get(raw)) return std::nullopt;
  } else if (type == ondemand::json_type::array) {
    ondemand::array array;
    if (value.get_array().get(array) || array.raw_json().get(raw)) return std::nullopt;
  } else {
    raw = value.raw_json_token();
  }
  return trim_right(raw);
}

// `stream_options` as the provider should get it, or nothing when the client's is kept: a view of
// `storage` or, for a client that sent none (what most streamed requests are), of a constant.
std::optional<std::string_view> owned_stream_options(const json::value* options,
                                                     bool ask_stream_usage,
                                                     bool client_requested_usage,
                                                     std::string& storage) {
  const bool is_object = options != nullptr && options->is_object();
  if (ask_stream_usage) {
    if (!is_object) return std::string_view(R"({"include_usage":true})");
    json::object rewritten = options->get_object();
    rewritten["include_usage"] = true;
    storage = util::serialize_finite(rewritten);
    return storage;
  }
  // A usage request only the gateway wanted is not passed on (an earlier attempt's, say).
  if (!client_requested_usage && is_object && options->get_object().contains("include_usage")) {
    json::object rewritten = options->get_object();
    rewritten.erase("include_usage");
    storage = util::serialize_finite(rewritten);
    return storage;
  }
  return std::nullopt;
}

}  // namespace

RequestBody::RequestBody(std::string& text, const RequestSummary* summary) {
  if (summary != nullptr && !summary->has_stream_options && !summary->model_values.empty()) {
    text_ = text;
    location_tried_ = true;
    const auto closing = trim_right(text_);
    if (closing.empty() || closing.back() != '}') return;
    closing_brace_ = closing.size() - 1;
    for (const auto& [offset, size] : summary->model_values) {
      spans_.push_back(Span{offset, size, true});
    }
    located_ = true;
    return;
  }
  text.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  text_ = text;
}

void RequestBody::locate_once() const {
  if (location_tried_) return;
  location_tried_ = true;
  locate();
  // The spans are offsets into `text`: nothing refers to the parser's buffers any more.
  release_large_parser_buffers();
}

void RequestBody::locate() const {
  const auto closing = trim_right(text_);
  if (closing.empty() || closing.back() != '}') return;
  closing_brace_ = closing.size() - 1;
  const std::size_t capacity = text_.size() + simdjson::SIMDJSON_PADDING;
  ondemand::document document;
  if (thread_parser()
          .iterate(simdjson::padded_string_view(text_.data(), text_.size(), capacity))
          .get(document)) {
    return;
  }
  ondemand::object object;
  if (document.get_object().get(object)) return;
  for (auto result : object) {
    ondemand::field field;
    if (std::move(result).get(field)) return;
    std::string_view key;
    if (field.unescaped_key().get(key)) return;
    const bool is_model = key == "model";
    if (!is_model && key != "stream_options") continue;
    auto raw = raw_value(field.value());
    if (!raw) return;
    spans_.push_back(
        Span{static_cast<std::size_t>(raw->data() - text_.data()), raw->size(), is_model});
  }
  // Boost.JSON has already validated the whole body; a walk without error located every field.
  located_ = true;
}

std::string RequestBody::rewrite(const json::object& parsed, std::string_view provider_model,
                                 bool ask_stream_usage, bool client_requested_usage) const {
  return rewrite(parsed.if_contains("stream_options"), provider_model, ask_stream_usage,
                 client_requested_usage);
}

std::string RequestBody::rewrite(const json::value* stream_options, std::string_view provider_model,
                                 bool ask_stream_usage, bool client_requested_usage) const {
  std::string options_storage;
  const auto options = owned_stream_options(stream_options, ask_stream_usage,
                                            client_requested_usage, options_storage);
  locate_once();
  if (!located_) {
    // Not expected (a body simdjson cannot walk although Boost.JSON accepted it): the DOM is
    // built for it alone.
    json::value whole = json::parse(text_);
    auto& copy = whole.as_object();
    copy["model"] = provider_model;
    if (options) copy["stream_options"] = json::parse(*options);
    return util::serialize_finite(copy);
  }
  std::string out;
  // The model's quotes, and room for an escape or two; the options' key and comma.
  out.reserve(text_.size() + provider_model.size() + 8 + (options ? options->size() + 20 : 0));
  std::size_t copied = 0;
  bool options_written = false;
  for (const auto& span : spans_) {
    if (!span.is_model && !options) continue;
    out.append(text_.substr(copied, span.offset - copied));
    // Written as Boost.JSON writes it, straight into the body.
    if (span.is_model) {
      util::append_json_string(out, provider_model);
    } else {
      out.append(*options);
    }
    options_written = options_written || !span.is_model;
    copied = span.offset + span.size;
  }
  if (options && !options_written) {
    out.append(text_.substr(copied, closing_brace_ - copied));
    if (text_.find_first_not_of(" \t\r\n", text_.find('{') + 1) != closing_brace_) {
      out.push_back(',');
    }
    out.append(R"("stream_options":)").append(*options);
    copied = closing_brace_;
  }
  out.append(text_.substr(copied));
  return out;
}

}  // namespace cutover::providers
