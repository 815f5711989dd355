#include "util/clock.h"

#include <time.h>

namespace cutover::util {

namespace {
std::chrono::nanoseconds read(clockid_t clock) {
  timespec now{};
  ::clock_gettime(clock, &now);
  return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}
}  // namespace

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::steady_clock::time_point coarse_steady_now() {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(read(CLOCK_MONOTONIC_COARSE)));
}

std::chrono::system_clock::time_point coarse_system_now() {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(read(CLOCK_REALTIME_COARSE)));
}

}  // namespace cutover::util
