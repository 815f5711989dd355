#include "util/log_throttle.h"

#include <gtest/gtest.h>

namespace cutover::util {
namespace {

using namespace std::chrono_literals;

class LogThrottleTest : public ::testing::Test {
 protected:
  std::chrono::steady_clock::time_point now_{};
  LogThrottle throttle_{60s, [this] { return now_; }};
};

TEST_F(LogThrottleTest, FirstOccurrenceIsLoggedAtOnce) {
  EXPECT_EQ(throttle_.admit("disk full"), 0u);
}

TEST_F(LogThrottleTest, RepeatsWithinTheIntervalAreHeldBackAndCounted) {
  ASSERT_EQ(throttle_.admit("disk full"), 0u);
  // Four a second for a minute, as the migration engine's evaluation loop would write.
  for (int i = 1; i < 240; ++i) {
    now_ += 250ms;
    EXPECT_FALSE(throttle_.admit("disk full")) << "repeat " << i;
  }
  now_ += 250ms;
  EXPECT_EQ(throttle_.admit("disk full"), 239u);
  now_ += 1s;
  EXPECT_FALSE(throttle_.admit("disk full")) << "the count starts over after each logged line";
}

TEST_F(LogThrottleTest, DistinctMessagesAreThrottledApart) {
  ASSERT_EQ(throttle_.admit("disk full"), 0u);
  EXPECT_EQ(throttle_.admit("database is locked"), 0u);
  EXPECT_FALSE(throttle_.admit("disk full"));
}

}  // namespace
}  // namespace cutover::util
