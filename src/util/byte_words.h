// Tests over eight bytes at a time, for the short strings the request path checks for a few
// byte values (a header value for a line break, a log value for a byte JSON must escape). The
// zero-byte test of "Bit Twiddling Hacks": a borrow only disturbs bytes above a true match, so
// "is any byte flagged" is exact even where the per-byte mask is not.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace cutover::util {

inline constexpr std::uint64_t kByteOnes = 0x0101010101010101ULL;
inline constexpr std::uint64_t kByteHighs = 0x8080808080808080ULL;

// Non-zero when one of `word`'s bytes equals `value`.
constexpr std::uint64_t word_has_byte(std::uint64_t word, unsigned char value) {
  const std::uint64_t matches_are_zero = word ^ (kByteOnes * value);
  return (matches_are_zero - kByteOnes) & ~matches_are_zero & kByteHighs;
}

// Non-zero when one of `word`'s bytes is below `bound` (at most 0x80): `x - bound` sets the high
// bit of a byte under it, unless the byte's own high bit is set.
constexpr std::uint64_t word_has_byte_below(std::uint64_t word, unsigned char bound) {
  return (word - kByteOnes * bound) & ~word & kByteHighs;
}

// Whether `flagged` holds for one of the eight-byte words that cover `text`, which must be at
// least eight bytes long: the last word overlaps the one before rather than the tail being read
// a byte at a time.
template <typename WordTest>
bool any_word_of(std::string_view text, WordTest flagged) {
  std::uint64_t word;
  for (std::size_t at = 0; at + 8 <= text.size(); at += 8) {
    std::memcpy(&word, text.data() + at, 8);
    if (flagged(word)) return true;
  }
  std::memcpy(&word, text.data() + text.size() - 8, 8);
  return flagged(word) != 0;
}

}  // namespace cutover::util
