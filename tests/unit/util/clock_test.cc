#include "util/clock.h"

#include <gtest/gtest.h>

#include <chrono>

namespace cutover::util {
namespace {

std::int64_t system_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(UnixMsNowTest, ReadsTheSystemClockInMilliseconds) {
  const auto before = system_clock_ms();
  const auto now = unix_ms_now();
  const auto after = system_clock_ms();
  // A second of slack: the system clock may be stepped between the reads, and a slow machine
  // may be descheduled; a unit error (seconds, microseconds) is off by orders of magnitude.
  EXPECT_GE(now, before - 1000);
  EXPECT_LE(now, after + 1000);
}

TEST(UnixMsNowTest, DoesNotGoBackwardsBetweenCloseReads) {
  const auto first = unix_ms_now();
  const auto second = unix_ms_now();
  EXPECT_LE(first, second + 1000) << "only a step of the system clock may move it back";
}

// The coarse clocks are the precise ones as of the kernel's last tick: never ahead of a precise
// read taken after them, and behind one taken before them by at most a tick (a second of slack
// here for a descheduled machine; a wrong clock id or unit is off by far more).
TEST(CoarseClockTest, SteadyIsOnTheSteadyClocksTimelineAtMostATickBehind) {
  for (int i = 0; i < 1000; ++i) {
    const auto before = std::chrono::steady_clock::now();
    const auto coarse = coarse_steady_now();
    const auto after = std::chrono::steady_clock::now();
    ASSERT_LE(coarse, after);
    ASSERT_GE(coarse, before - std::chrono::seconds(1));
  }
}

TEST(CoarseClockTest, SteadyNeverGoesBackwards) {
  auto last = coarse_steady_now();
  for (int i = 0; i < 100000; ++i) {
    const auto now = coarse_steady_now();
    ASSERT_GE(now, last);
    last = now;
  }
}

TEST(CoarseClockTest, SystemIsTheSystemClockAtMostATickBehind) {
  const auto before = std::chrono::system_clock::now();
  const auto coarse = coarse_system_now();
  const auto after = std::chrono::system_clock::now();
  EXPECT_LE(coarse, after + std::chrono::seconds(1)) << "only a step of the system clock";
  EXPECT_GE(coarse, before - std::chrono::seconds(1));
}

}  // namespace
}  // namespace cutover::util
