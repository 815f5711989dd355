#include "admin/authentication_backoff.h"

#include <gtest/gtest.h>

namespace cutover::admin {
namespace {

using std::chrono::milliseconds;

TEST(AuthenticationBackoffTest, EachFailureInARowWaitsTwiceAsLongUpToTheCeiling) {
  AuthenticationBackoff backoff;
  for (auto expected : {100, 200, 400, 800, 1600, 2000, 2000}) {
    EXPECT_EQ(backoff.failed(), milliseconds(expected));
  }
  EXPECT_EQ(backoff.consecutive_failures(), 7u);
}

TEST(AuthenticationBackoffTest, ASuccessStartsOver) {
  AuthenticationBackoff backoff;
  backoff.failed();
  backoff.failed();
  backoff.succeeded();
  EXPECT_EQ(backoff.consecutive_failures(), 0u);
  EXPECT_EQ(backoff.failed(), milliseconds(100));
}

TEST(AuthenticationBackoffTest, ManyFailuresStayAtTheCeiling) {
  AuthenticationBackoff backoff({milliseconds(1), milliseconds(50)});
  for (int i = 0; i < 1000; ++i) backoff.failed();
  EXPECT_EQ(backoff.failed(), milliseconds(50));
}

}  // namespace
}  // namespace cutover::admin
