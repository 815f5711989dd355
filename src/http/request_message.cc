#include "http/request_message.h"

#include <boost/beast/core/string.hpp>

#include "http/fields.h"

namespace cutover::http {

namespace bhttp = boost::beast::http;

namespace {
std::string_view std_view(boost::beast::string_view text) { return {text.data(), text.size()}; }
}  // namespace

RequestMessage::Field RequestMessage::field(std::size_t index) const {
  const auto& spans = fields_[index];
  return Field(spans.code, view(spans.name), view(spans.value));
}

std::string_view RequestMessage::operator[](bhttp::field name) const {
  return field_value(*this, name);
}

std::string_view RequestMessage::operator[](std::string_view name) const {
  return field_value(*this, name);
}

void RequestMessage::set_start(bhttp::verb method, std::string_view method_text,
                               std::string_view target, unsigned version) {
  method_ = method;
  method_text_ = text_.keep(method_text);
  target_text_ = text_.keep(target);
  version_ = version;
}

void RequestMessage::clear() {
  method_ = bhttp::verb::unknown;
  method_text_ = {};
  target_text_ = {};
  version_ = 11;
  text_.clear();
  fields_.clear();
  body_.clear();
}

void RequestMessage::add(bhttp::field code, std::string_view name, std::string_view value) {
  const Span name_span = text_.keep(name);
  fields_.push_back(FieldSpans{code, name_span, text_.keep(value)});
}

void RequestParser::on_request_impl(bhttp::verb method, string_view method_text,
                                    string_view target, int version, error_code& ec) {
  message_.set_start(method, std_view(method_text), std_view(target),
                     static_cast<unsigned>(version));
  ec = {};
}

void RequestParser::on_field_impl(bhttp::field code, string_view name, string_view value,
                                  error_code& ec) {
  message_.add(code, std_view(name), std_view(value));
  ec = {};
}

// As string_body's reader: room for a declared length (basic_parser has already refused one past
// its body limit).
void RequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& length,
                                      error_code& ec) {
  if (length) message_.body().reserve(static_cast<std::size_t>(*length));
  ec = {};
}

std::size_t RequestParser::on_body_impl(string_view body, error_code& ec) {
  message_.body().append(body.data(), body.size());
  ec = {};
  return body.size();
}

std::size_t RequestParser::on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) {
  message_.body().append(body.data(), body.size());
  ec = {};
  return body.size();
}

}  // namespace cutover::http
