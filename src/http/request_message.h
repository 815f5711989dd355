// A client's request as the gateway reads it: the start line and the fields kept as bytes in one
// buffer, and the body; and the parser that fills it (Beast's basic_parser, which does the HTTP
// parsing; this only keeps what it reports).
//
// Beast's request_parser<string_body> keeps its fields in basic_fields: an allocation and a
// red-black tree insertion per field, and their frees at the end of every request, for a header
// the gateway reads a few names of by walking it (http/fields.h). Counted on
// bench/count_instructions.sh's chat path, a request makes four allocations fewer here (32
// against 36) and costs about 300 instructions less plain, 700 streamed.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/fields.h"
#include "http/piece_buffer.h"

namespace cutover::http {

class RequestMessage {
 public:
  // One field as received: its code (field::unknown for a name Beast does not know), the name
  // as the client spelled it, and its value.
  class Field {
   public:
    Field(boost::beast::http::field code, std::string_view name, std::string_view value)
        : code_(code), name_(name), value_(value) {}
    boost::beast::http::field name() const { return code_; }
    std::string_view name_string() const { return name_; }
    std::string_view value() const { return value_; }

   private:
    boost::beast::http::field code_;
    std::string_view name_;
    std::string_view value_;
  };

  using Iterator = FieldIterator<RequestMessage, Field>;

  boost::beast::http::verb method() const { return method_; }
  std::string_view method_string() const { return view(method_text_); }
  std::string_view target() const { return view(target_text_); }
  unsigned version() const { return version_; }

  std::size_t size() const { return fields_.size(); }
  Iterator begin() const { return Iterator(*this, 0); }
  Iterator end() const { return Iterator(*this, fields_.size()); }
  Field field(std::size_t index) const;
  // The value of the first field with that code, or named so (compared without case); empty
  // when there is none.
  std::string_view operator[](boost::beast::http::field name) const;
  std::string_view operator[](std::string_view name) const;

  std::string& body() { return body_; }
  const std::string& body() const { return body_; }

  // Forgets the request and keeps the room its bytes took, for the next request.
  void clear();
  // The heap bytes it keeps for reuse.
  std::size_t retained_bytes() const { return text_.capacity() + body_.capacity(); }

  // What the parser reports; see RequestParser.
  void set_start(boost::beast::http::verb method, std::string_view method_text,
                 std::string_view target, unsigned version);
  void add(boost::beast::http::field code, std::string_view name, std::string_view value);

 private:
  using Span = PieceBuffer::Span;
  struct FieldSpans {
    boost::beast::http::field code;
    Span name;
    Span value;
  };
  std::string_view view(Span span) const { return text_.view(span); }

  boost::beast::http::verb method_ = boost::beast::http::verb::unknown;
  Span method_text_;
  Span target_text_;
  unsigned version_ = 11;
  PieceBuffer text_;  // the start line's and the fields' bytes
  boost::container::small_vector<FieldSpans, 8> fields_;
  std::string body_;
};

// Parses one request into a RequestMessage, the body into its string as Beast's string_body
// does. The body limit, header limit and eagerness are basic_parser's own settings.
class RequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  // `message` must be fresh and outlive the parser.
  explicit RequestParser(RequestMessage& message) : message_(message) {}

  RequestMessage& get() { return message_; }
  const RequestMessage& get() const { return message_; }

 private:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  void on_request_impl(boost::beast::http::verb method, string_view method_text,
                       string_view target, int version, error_code& ec) override;
  void on_response_impl(int, string_view, int, error_code&) override {}
  void on_field_impl(boost::beast::http::field code, string_view name, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code& ec) override { ec = {}; }
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override;
  std::size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, string_view, error_code& ec) override { ec = {}; }
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) override;
  void on_finish_impl(error_code& ec) override { ec = {}; }

  RequestMessage& message_;
};

}  // namespace cutover::http
