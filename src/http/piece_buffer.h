// The pieces of a parsed message's header (method, target, field names and values) copied into
// one buffer and named by spans, for http::RequestMessage and upstream::ResponseHead. One memcpy
// a piece: std::string's appends checked and grew the string piece by piece, about 80
// instructions each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace cutover::http {

class PieceBuffer {
 public:
  // Where a piece lies in the buffer. A parser's header limit bounds the text far below 4 GiB.
  struct Span {
    std::uint32_t at = 0;
    std::uint32_t size = 0;
  };

  Span keep(std::string_view text) {
    if (capacity_ - size_ < text.size()) grow(text.size());
    const Span span{static_cast<std::uint32_t>(size_), static_cast<std::uint32_t>(text.size())};
    if (!text.empty()) std::memcpy(bytes_.get() + size_, text.data(), text.size());
    size_ += text.size();
    return span;
  }
  std::string_view view(Span span) const { return {bytes_.get() + span.at, span.size}; }
  // Forgets every piece and keeps the room.
  void clear() { size_ = 0; }
  std::size_t capacity() const { return capacity_; }

 private:
  void grow(std::size_t more);

  std::unique_ptr<char[]> bytes_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace cutover::http
