// Caps retries to a share of recent requests, so an outage never multiplies the load on a
// struggling provider (Envoy's retry budget, the SRE book's per-client retry ratio).
//
// Shared by all workers of one provider; lock-free (atomic per-second buckets).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace cutover::resilience {

struct RetryBudgetSettings {
  // Retries allowed as a share of requests seen over the window.
  double ratio = 0.2;
  // Retries always allowed per second of window, so a quiet provider can still retry.
  double min_retries_per_second = 1.0;
  std::chrono::seconds window{10};
};

class RetryBudget {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  explicit RetryBudget(RetryBudgetSettings settings = {});

  // Counts one client request (not its retries).
  void record_request(TimePoint now);
  // Takes one retry from the budget; false (and nothing counted) when it is spent.
  bool try_acquire_retry(TimePoint now);

  struct Totals {
    std::uint64_t requests = 0;
    std::uint64_t retries = 0;
  };
  Totals window_totals(TimePoint now) const;
  const RetryBudgetSettings& settings() const { return settings_; }

 private:
  static constexpr std::size_t kMaxBuckets = 120;
  struct Bucket {
    std::atomic<std::int64_t> second{-1};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> retries{0};
  };
  Bucket& current(TimePoint now);
  static std::int64_t second_of(TimePoint now);

  RetryBudgetSettings settings_;
  std::size_t bucket_count_;
  std::array<Bucket, kMaxBuckets> buckets_;
};

}  // namespace cutover::resilience
