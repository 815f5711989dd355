#include "util/json_string.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace cutover::util {
namespace {

TEST(JsonStringTest, EveryByteToEscapeIsFoundAtEveryPositionAndLength) {
  // Lengths around the eight-byte words, the flagged byte at each position: the last word
  // overlaps the one before it, so a byte in the tail must still be found.
  for (const char flagged : {'"', '\\', '\n', '\r', '\0', '\x1f', '\t'}) {
    for (std::size_t length = 1; length <= 26; ++length) {
      for (std::size_t at = 0; at < length; ++at) {
        std::string text(length, 'a');
        text[at] = flagged;
        EXPECT_TRUE(needs_json_escaping(text)) << int(flagged) << " at " << at << " of " << length;
      }
    }
  }
}

TEST(JsonStringTest, TextWithoutSuchBytesNeedsNone) {
  std::string text;
  for (std::size_t length = 0; length <= 26; ++length) {
    EXPECT_FALSE(needs_json_escaping(text)) << text;
    // Bytes just past the flagged ones, and UTF-8's high bytes.
    text.push_back(length % 3 == 0 ? ' ' : length % 3 == 1 ? '#' : '\xc3');
  }
}

TEST(JsonStringTest, AppendsWhatBoostJsonSerializes) {
  for (const std::string text : {"gpt-4.1", "a \"quoted\" word", "tab\there", "ünïcödé",
                                 "a-long-model-name-of-more-than-eight-bytes\\"}) {
    std::string out = "[";
    append_json_string(out, text);
    EXPECT_EQ(out, "[" + boost::json::serialize(boost::json::string(text)));
  }
}

}  // namespace
}  // namespace cutover::util
