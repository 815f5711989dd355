#include "resilience/retry_budget.h"

#include <algorithm>

namespace cutover::resilience {

RetryBudget::RetryBudget(RetryBudgetSettings settings)
    : settings_(settings),
      bucket_count_(std::clamp<std::size_t>(static_cast<std::size_t>(settings.window.count()), 1,
                                            kMaxBuckets)) {}

std::int64_t RetryBudget::second_of(TimePoint now) {
  return std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
}

RetryBudget::Bucket& RetryBudget::current(TimePoint now) {
  const auto second = second_of(now);
  auto& bucket = buckets_[static_cast<std::size_t>(second) % bucket_count_];
  auto seen = bucket.second.load(std::memory_order_acquire);
  // The first thread to enter a new second recycles the bucket; a few counts landing on the old
  // second during the swap only make the budget marginally stricter or looser for that second.
  if (seen != second && bucket.second.compare_exchange_strong(seen, second)) {
    bucket.requests.store(0, std::memory_order_relaxed);
    bucket.retries.store(0, std::memory_order_relaxed);
  }
  return bucket;
}

void RetryBudget::record_request(TimePoint now) {
  current(now).requests.fetch_add(1, std::memory_order_relaxed);
}

RetryBudget::Totals RetryBudget::window_totals(TimePoint now) const {
  const auto newest = second_of(now);
  Totals totals;
  for (std::size_t i = 0; i < bucket_count_; ++i) {
    const auto& bucket = buckets_[i];
    const auto second = bucket.second.load(std::memory_order_acquire);
    if (second < 0 || second > newest || newest - second >= static_cast<std::int64_t>(bucket_count_)) {
      continue;
    }
    totals.requests += bucket.requests.load(std::memory_order_relaxed);
    totals.retries += bucket.retries.load(std::memory_order_relaxed);
  }
  return totals;
}

bool RetryBudget::try_acquire_retry(TimePoint now) {
  auto& bucket = current(now);
  const auto totals = window_totals(now);
  const double allowed = settings_.ratio * static_cast<double>(totals.requests) +
                         settings_.min_retries_per_second * static_cast<double>(bucket_count_);
  // Only the current bucket still changes: a compare-and-swap on it keeps concurrent retries
  // from overshooting the cap together.
  auto mine = bucket.retries.load(std::memory_order_relaxed);
  const auto others = totals.retries >= mine ? totals.retries - mine : 0;
  for (;;) {
    if (static_cast<double>(others + mine) + 1 > allowed) return false;
    if (bucket.retries.compare_exchange_weak(mine, mine + 1, std::memory_order_relaxed)) return true;
  }
}

}  // namespace cutover::resilience
