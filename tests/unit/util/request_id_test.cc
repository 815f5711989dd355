#include "util/request_id.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace cutover::util {
namespace {

bool is_generated_id(const std::string& id) {
  if (id.size() != 28 || id.rfind("req_", 0) != 0) return false;
  return id.find_first_not_of("0123456789abcdef", 4) == std::string::npos;
}

TEST(RequestIdTest, NewIdsAreReqAndTwentyFourHexDigitsAndDiffer) {
  std::set<std::string> seen;
  std::set<char> digits;
  for (int i = 0; i < 1000; ++i) {
    const auto id = new_request_id();
    ASSERT_TRUE(is_generated_id(id)) << id;
    seen.insert(id);
    digits.insert(id.begin() + 4, id.end());
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(digits.size(), 16u) << "every hex digit appears";
}

TEST(RequestIdTest, AClientsPrintableIdIsKeptAndAnyOtherReplaced) {
  EXPECT_EQ(accept_or_new_request_id("trace-42"), "trace-42");
  EXPECT_TRUE(is_generated_id(accept_or_new_request_id("")));
  EXPECT_TRUE(is_generated_id(accept_or_new_request_id("has space")));
  EXPECT_TRUE(is_generated_id(accept_or_new_request_id("quote\"d")));
  EXPECT_TRUE(is_generated_id(accept_or_new_request_id(std::string(129, 'a'))));
  EXPECT_EQ(accept_or_new_request_id(std::string(128, 'a')), std::string(128, 'a'));
}

}  // namespace
}  // namespace cutover::util
