#include "util/byte_words.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace cutover::util {
namespace {

std::uint64_t word_of(const char (&bytes)[9]) {
  std::uint64_t word;
  std::memcpy(&word, bytes, 8);
  return word;
}

TEST(ByteWordsTest, AByteEqualToTheValueIsFoundInEveryPosition) {
  for (int at = 0; at < 8; ++at) {
    char bytes[9] = "abcdefgh";
    bytes[at] = '\n';
    EXPECT_NE(word_has_byte(word_of(bytes), '\n'), 0u) << at;
    EXPECT_EQ(word_has_byte(word_of(bytes), '\r'), 0u) << at;
  }
  // Neighbours of the value, and high bytes, which the borrow must not turn into a match.
  EXPECT_EQ(word_has_byte(word_of("\x0b\x09\x0b\x09\xff\x8a\x80\x0b"), '\n'), 0u);
}

TEST(ByteWordsTest, AByteBelowTheBoundIsFoundAndHighBytesAreNot) {
  EXPECT_EQ(word_has_byte_below(word_of("  azAZ~\x7f"), 0x20), 0u);
  EXPECT_EQ(word_has_byte_below(word_of("\x80\x9f\xc3\xa9\xff\xfe\xa0\x81"), 0x20), 0u);
  for (int at = 0; at < 8; ++at) {
    char bytes[9] = "        ";
    bytes[at] = '\x1f';
    EXPECT_NE(word_has_byte_below(word_of(bytes), 0x20), 0u) << at;
  }
}

TEST(ByteWordsTest, EveryWordOfTheTextIsTestedTheTailIncluded) {
  const auto has_line_feed = [](std::uint64_t word) { return word_has_byte(word, '\n') != 0; };
  for (std::size_t length = 8; length <= 33; ++length) {
    const std::string clean(length, 'x');
    EXPECT_FALSE(any_word_of(clean, has_line_feed)) << length;
    for (std::size_t at = 0; at < length; ++at) {
      std::string text = clean;
      text[at] = '\n';
      EXPECT_TRUE(any_word_of(text, has_line_feed)) << at << " of " << length;
    }
  }
}

}  // namespace
}  // namespace cutover::util
