#include "util/log_throttle.h"

#include <spdlog/spdlog.h>

namespace cutover::util {

LogThrottle::LogThrottle(std::chrono::steady_clock::duration interval, Clock now)
    : interval_(interval), now_(std::move(now)) {}

std::optional<std::uint64_t> LogThrottle::admit(std::string_view message) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  auto found = seen_.find(std::string(message));
  if (found == seen_.end()) {
    if (seen_.size() >= kMaxDistinctMessages) seen_.clear();
    seen_.emplace(std::string(message), Seen{now, 0});
    return 0;
  }
  auto& seen = found->second;
  if (now - seen.logged_at < interval_) {
    ++seen.held_back;
    return std::nullopt;
  }
  const auto held_back = seen.held_back;
  seen = Seen{now, 0};
  return held_back;
}

void LogThrottle::error(std::string_view message) {
  const auto held_back = admit(message);
  if (!held_back) return;
  if (*held_back == 0) {
    spdlog::error("{}", message);
  } else {
    spdlog::error("{} (repeated {} more times since last logged)", message, *held_back);
  }
}

}  // namespace cutover::util
