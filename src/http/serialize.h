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
#include <cassert>
#include <charconv>
#include <cstring>
#include <initializer_list>
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

// A status line without its line break.
inline void append_status(unsigned version, unsigned status, std::string_view reason,
                          std::string& out) {
  append_version(version, out);
  const char code[] = {' ', static_cast<char>('0' + status / 100 % 10),
                       static_cast<char>('0' + status / 10 % 10), static_cast<char>('0' + status % 10),
                       ' '};
  out.append(code, sizeof code);
  append_bytes(out, reason);
}

inline void append_field(std::string_view name, std::string_view value, std::string& out) {
  append_bytes(out, name);
  out.append(": ", 2);
  append_bytes(out, value);
  out.append("\r\n", 2);
}
}  // namespace detail

// The fields of a response the gateway writes itself, as name and value views that the caller
// keeps alive until the header is written: no field set, whose every field costs an allocation
// and a tree insertion. At most kCapacity fields.
class HeaderFieldList {
 public:
  static constexpr std::size_t kCapacity = 8;
  struct Field {
    std::string_view name;
    std::string_view value;
  };
  HeaderFieldList() = default;
  HeaderFieldList(std::initializer_list<Field> fields) {
    for (const auto& field : fields) add(field.name, field.value);
  }
  // Beyond the capacity a field is a programming error, refused loudly in tests (assert).
  void add(std::string_view name, std::string_view value) {
    assert(size_ < kCapacity);
    if (size_ < kCapacity) fields_[size_++] = Field{name, value};
  }
  const Field* begin() const { return fields_.data(); }
  const Field* end() const { return fields_.data() + size_; }
  std::size_t size() const { return size_; }

 private:
  std::array<Field, kCapacity> fields_{};
  std::size_t size_ = 0;
};

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
    auto reason = message.reason();
    if (reason.empty()) reason = boost::beast::http::obsolete_reason(message.result());
    detail::append_status(message.version(), message.result_int(), reason, out);
  }
  out.append("\r\n", 2);
  for (const auto& field : message) detail::append_field(field.name_string(), field.value(), out);
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

// The size line that opens a chunk of `size` bytes ("1f\r\n"), in a buffer of its own, for a
// gather write of the line, the data and kChunkEnd: Beast's make_chunk() is a concatenated
// buffer view whose iteration in the write cost about 2,700 instructions a streamed answer in
// the profiles. Beast writes the size the same way, in lowercase hex without extensions.
class ChunkHead {
 public:
  ChunkHead() = default;
  explicit ChunkHead(std::size_t size) {
    char* out = std::to_chars(bytes_.data(), bytes_.data() + bytes_.size(), size, 16).ptr;
    std::memcpy(out, "\r\n", 2);
    size_ = static_cast<std::size_t>(out + 2 - bytes_.data());
  }
  boost::asio::const_buffer buffer() const { return {bytes_.data(), size_}; }

 private:
  // Sixteen hex digits for the largest size_t and the line end.
  std::array<char, 24> bytes_{};
  std::size_t size_ = 0;
};

// What follows a chunk's data.
inline constexpr std::string_view kChunkEnd = "\r\n";
// The chunk that ends a chunked body, without trailers.
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";
// A chunk's end and the last chunk, for a final chunk that goes in the same write as the end.
inline constexpr std::string_view kChunkEndAndLastChunk = "\r\n0\r\n\r\n";

}  // namespace cutover::http
