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

TEST(JsonStringTest, SerializeFiniteWritesWhatJsonSerializeWritesForFiniteTrees) {
  const auto tree = boost::json::parse(
      R"({"a":[1,-2,3.5,1e300,"x\"y",null,true,{"b\n":{}}],"c":18446744073709551615})");
  EXPECT_EQ(serialize_finite(tree), boost::json::serialize(tree));
  EXPECT_EQ(serialize_finite(tree.as_object()), boost::json::serialize(tree));
}

TEST(JsonStringTest, SerializeFiniteWritesNumbersPastADoubleAsValidJson) {
  // Boost.JSON 1.81 parses these to infinity and NaN, which json::serialize writes as
  // `Infinity` and `NaN`.
  const auto tree = boost::json::parse(
      R"({"temperature":1e400,"seed":0e400,"n":[-1e999,2],"k\"ey":{"x":1e400}})");
  ASSERT_NE(boost::json::serialize(tree).find("Infinity"), std::string::npos);
  const auto text = serialize_finite(tree.as_object());
  EXPECT_EQ(text, R"({"temperature":1e400,"seed":0,"n":[-1e400,2],"k\"ey":{"x":1e400}})");
  boost::system::error_code ec;
  boost::json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
}

}  // namespace
}  // namespace cutover::util
