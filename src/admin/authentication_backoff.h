// Slows down guessing the admin token: after each failed authentication in a row the 401 waits
// twice as long as the one before, up to a ceiling; a success starts over. A script that tries
// tokens one after another gets about one guess every two seconds instead of thousands.
//
// Counts failures across all connections, since a guesser can open as many as it likes; an
// operator's correct token is never delayed. Used from the admin thread only.
#pragma once

#include <chrono>

namespace cutover::admin {

struct AuthenticationBackoffSettings {
  std::chrono::milliseconds first{100};
  std::chrono::milliseconds longest{2'000};
};

class AuthenticationBackoff {
 public:
  using Settings = AuthenticationBackoffSettings;

  explicit AuthenticationBackoff(Settings settings = {}) : settings_(settings) {}

  // Counts a failure; returns how long its 401 waits.
  std::chrono::milliseconds failed();
  void succeeded() { consecutive_failures_ = 0; }
  unsigned consecutive_failures() const { return consecutive_failures_; }

 private:
  Settings settings_;
  unsigned consecutive_failures_ = 0;
};

}  // namespace cutover::admin
