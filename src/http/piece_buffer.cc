#include "http/piece_buffer.h"

#include <algorithm>

namespace cutover::http {

namespace {

// Room for a typical header at the first piece: one allocation for most messages.
constexpr std::size_t kInitialRoom = 512;

}  // namespace

void PieceBuffer::grow(std::size_t more) {
  const std::size_t capacity = std::max({kInitialRoom, 2 * capacity_, size_ + more});
  auto grown = std::make_unique_for_overwrite<char[]>(capacity);
  if (size_ > 0) std::memcpy(grown.get(), bytes_.get(), size_);
  bytes_ = std::move(grown);
  capacity_ = capacity;
}

}  // namespace cutover::http
