#include "util/sha256.h"

#include <gtest/gtest.h>

namespace cutover::util {
namespace {

// The test vectors of FIPS 180-2, appendix B.
TEST(Sha256HexTest, MatchesTheKnownDigestOfTheEmptyString) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256HexTest, MatchesTheKnownDigestOfAbc) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256HexTest, HashesEmbeddedNulBytesRatherThanStoppingAtThem) {
  using namespace std::string_view_literals;
  EXPECT_NE(sha256_hex("a\0b"sv), sha256_hex("a"));
}

}  // namespace
}  // namespace cutover::util
