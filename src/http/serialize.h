// A message's header as bytes, so that the header and the body leave in one gather write of two
// plain buffers. Written straight from the message's fields: Beast's own serializer walks
// concatenated buffer views of the start line and every field (their iterators stood high in
// the profiles, about 5,000 instructions a header), where the header is a few short appends.
// The bytes are those Beast's serializer writes, which a unit test checks for every shape the
// gateway sends.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <array>
#include <charconv>
#include <cstring>
#include <string>
#include <string_view>

namespace cutover::http {

namespace detail {
inline void append_version(unsigned version, std::string& out) {
  const char bytes[] = {'H', 'T', 'T', 'P', '/', static_cast<char>('0' + version / 10 % 10), '.',
                        static_cast<char>('0' + version % 10)};
  out.append(bytes, sizeof bytes);
}

inline void append_bytes(std::string& out, std::string_view bytes) {
  out.append(bytes.data(), bytes.size());
}
}  // namespace detail

// Appends `message`'s start line and fields to `out`, each line ended by CRLF, without the blank
// line that ends a header (so that a writer may add fields of its own).
template <bool isRequest, class Body, class Fields>
void append_start_and_fields(const boost::beast::http::message<isRequest, Body, Fields>& message,
                             std::string& out) {
  if constexpr (isRequest) {
    detail::append_bytes(out, message.method_string());
    out.push_back(' ');
    detail::append_bytes(out, message.target());
    out.push_back(' ');
    detail::append_version(message.version(), out);
  } else {
    detail::append_version(message.version(), out);
    const unsigned status = message.result_int();
    const char code[] = {' ', static_cast<char>('0' + status / 100 % 10),
                         static_cast<char>('0' + status / 10 % 10),
                         static_cast<char>('0' + status % 10), ' '};
    out.append(code, sizeof code);
    auto reason = message.reason();
    if (reason.empty()) reason = boost::beast::http::obsolete_reason(message.result());
    detail::append_bytes(out, reason);
  }
  out.append("\r\n", 2);
  for (const auto& field : message) {
    detail::append_bytes(out, field.name_string());
    out.append(": ", 2);
    detail::append_bytes(out, field.value());
    out.append("\r\n", 2);
  }
}

// Appends `message`'s start line and fields, with the blank line that ends them, to `out`.
template <bool isRequest, class Body, class Fields>
void append_header(const boost::beast::http::message<isRequest, Body, Fields>& message,
                   std::string& out) {
  append_start_and_fields(message, out);
  out.append("\r\n", 2);
}

// The Content-Length field and the blank line that end a header whose body has
// `content_length` bytes, in a buffer of its own: a provider request sends it as one piece of a
// gather write after its fields, an answer appends it to its header's bytes.
class HeaderEnd {
 public:
  explicit HeaderEnd(std::size_t content_length) {
    constexpr std::string_view kName = "Content-Length: ";
    char* out = bytes_.data();
    std::memcpy(out, kName.data(), kName.size());
    out += kName.size();
    out = std::to_chars(out, bytes_.data() + bytes_.size(), content_length).ptr;
    std::memcpy(out, "\r\n\r\n", 4);
    size_ = static_cast<std::size_t>(out + 4 - bytes_.data());
  }
  boost::asio::const_buffer buffer() const { return {bytes_.data(), size_}; }
  std::string_view view() const { return {bytes_.data(), size_}; }

 private:
  // The name, twenty digits for the largest size_t and two line ends.
  std::array<char, 48> bytes_{};
  std::size_t size_ = 0;
};

}  // namespace cutover::http
