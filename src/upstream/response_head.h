// A provider's response header as the gateway reads it: the status and the fields, kept as
// bytes in one buffer that the connection reuses from answer to answer, and the parser that fills
// it (Beast's basic_parser, which does the HTTP parsing; this only keeps what it reports).
//
// Beast's own response_parser keeps its fields in basic_fields: an allocation and a red-black
// tree insertion per field, and their frees at the end of every answer, for a header the gateway
// reads a few names of. Counted on bench/count_instructions.sh's chat path, those were the
// larger part of reading a provider's header.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/fields.h"
#include "http/piece_buffer.h"

namespace cutover::upstream {

class ResponseHead {
 public:
  // One field as received: the name as the provider spelled it, and its value.
  class Field {
   public:
    Field(std::string_view name, std::string_view value) : name_(name), value_(value) {}
    std::string_view name_string() const { return name_; }
    std::string_view value() const { return value_; }

   private:
    std::string_view name_;
    std::string_view value_;
  };

  using Iterator = cutover::http::FieldIterator<ResponseHead, Field>;

  unsigned result_int() const { return status_; }
  int version() const { return version_; }
  std::size_t size() const { return spans_.size(); }
  Iterator begin() const { return Iterator(*this, 0); }
  Iterator end() const { return Iterator(*this, spans_.size()); }
  Field field(std::size_t index) const;

  // The value of the first field named `name` (compared without case); empty when none is.
  std::string_view operator[](std::string_view name) const;
  std::string_view operator[](boost::beast::http::field name) const;

  // Starts a new header; the buffers keep their capacity.
  void clear();
  void set_status(unsigned status, int version) {
    status_ = status;
    version_ = version;
  }
  void add(std::string_view name, std::string_view value);

 private:
  struct Spans {
    cutover::http::PieceBuffer::Span name;
    cutover::http::PieceBuffer::Span value;
  };
  unsigned status_ = 0;
  int version_ = 11;
  cutover::http::PieceBuffer text_;  // the fields' bytes
  boost::container::small_vector<Spans, 16> spans_;
};

// Parses one response into a ResponseHead and its body onto the caller's string, in pieces the
// way Beast's buffer_body reads: set_body_sink() names the string and how many bytes the next
// piece may have; when that many came (or no sink is set), the parser stops with
// http::error::need_buffer. Appending grows the string without filling it first (a resized
// string is zero-filled: 4 KiB a streamed answer showed in the profiles).
class ResponseParser final : public boost::beast::http::basic_parser<false> {
 public:
  // `head` is cleared now and filled as the header arrives; it must outlive the parser.
  explicit ResponseParser(ResponseHead& head);

  const ResponseHead& head() const { return head_; }
  void set_body_sink(std::string* out, std::size_t room) {
    body_out_ = out;
    body_room_ = room;
  }
  // Room left in the piece set last: what did not come.
  std::size_t body_room() const { return body_room_; }

 private:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  void on_request_impl(boost::beast::http::verb, string_view, string_view, int,
                       error_code& ec) override;
  void on_response_impl(int code, string_view reason, int version, error_code& ec) override;
  void on_field_impl(boost::beast::http::field, string_view name, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override;
  std::size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override;
  std::size_t on_chunk_body_impl(std::uint64_t remain, string_view body, error_code& ec) override;
  void on_finish_impl(error_code& ec) override;
  std::size_t take(string_view body, error_code& ec);

  ResponseHead& head_;
  std::string* body_out_ = nullptr;
  std::size_t body_room_ = 0;
};

}  // namespace cutover::upstream
