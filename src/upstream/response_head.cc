#include "upstream/response_head.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace cutover::upstream {

namespace http = boost::beast::http;

ResponseHead::Field ResponseHead::field(std::size_t index) const {
  const Spans& spans = spans_[index];
  return Field(text_.view(spans.name), text_.view(spans.value));
}

std::string_view ResponseHead::operator[](std::string_view name) const {
  return cutover::http::field_value(*this, name);
}

std::string_view ResponseHead::operator[](http::field name) const {
  const auto text = http::to_string(name);
  return (*this)[std::string_view(text.data(), text.size())];
}

void ResponseHead::clear() {
  status_ = 0;
  version_ = 11;
  text_.clear();
  spans_.clear();
}

void ResponseHead::add(std::string_view name, std::string_view value) {
  const auto name_span = text_.keep(name);
  spans_.push_back(Spans{name_span, text_.keep(value)});
}

ResponseParser::ResponseParser(ResponseHead& head) : head_(head) { head_.clear(); }

// Never called: this parser reads responses.
void ResponseParser::on_request_impl(http::verb, string_view, string_view, int, error_code&) {}

void ResponseParser::on_response_impl(int code, string_view, int version, error_code&) {
  head_.set_status(static_cast<unsigned>(code), version);
}

void ResponseParser::on_field_impl(http::field, string_view name, string_view value,
                                   error_code&) {
  head_.add(std::string_view(name.data(), name.size()), std::string_view(value.data(), value.size()));
}

void ResponseParser::on_header_impl(error_code& ec) { ec = {}; }

void ResponseParser::on_body_init_impl(const boost::optional<std::uint64_t>&, error_code& ec) {
  ec = {};
}

std::size_t ResponseParser::on_body_impl(string_view body, error_code& ec) {
  return take(body, ec);
}

void ResponseParser::on_chunk_header_impl(std::uint64_t, string_view, error_code& ec) { ec = {}; }

std::size_t ResponseParser::on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) {
  return take(body, ec);
}

void ResponseParser::on_finish_impl(error_code& ec) { ec = {}; }

// buffer_body's reader: as much as the piece has room for; need_buffer when some did not fit.
std::size_t ResponseParser::take(string_view body, error_code& ec) {
  if (body_out_ == nullptr) {
    ec = http::error::need_buffer;
    return 0;
  }
  const std::size_t taken = std::min(body.size(), body_room_);
  body_out_->append(body.data(), taken);
  body_room_ -= taken;
  if (taken == body.size()) {
    ec = {};
  } else {
    ec = http::error::need_buffer;
  }
  return taken;
}

}  // namespace cutover::upstream
