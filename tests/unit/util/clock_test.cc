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

}  // namespace
}  // namespace cutover::util
