// Keeps a persistent failure from flooding the log: a full disk under a loop that writes four
// times a second would otherwise log the same error four times a second, for hours.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cutover::util {

// The first occurrence of each distinct message is let through at once; its repeats at most
// once per interval, with the number held back since the last one let through. Any thread may
// call it.
class LogThrottle {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  static constexpr std::chrono::seconds kDefaultInterval{60};

  explicit LogThrottle(std::chrono::steady_clock::duration interval = kDefaultInterval,
                       Clock now = std::chrono::steady_clock::now);

  // nullopt: hold this occurrence back. Otherwise log it now; the value is how many repeats
  // were held back since it was last let through (0 the first time).
  std::optional<std::uint64_t> admit(std::string_view message);

  // Logs `message` at error level when admit() lets it through, with the repeats held back.
  void error(std::string_view message);

 private:
  struct Seen {
    std::chrono::steady_clock::time_point logged_at;
    std::uint64_t held_back = 0;
  };
  // Messages differ by their figures only rarely; past this many, forget them all rather than
  // grow without bound.
  static constexpr std::size_t kMaxDistinctMessages = 256;

  const std::chrono::steady_clock::duration interval_;
  const Clock now_;
  std::mutex mutex_;
  std::unordered_map<std::string, Seen> seen_;
};

}  // namespace cutover::util
