#include "resilience/circuit_breaker.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace cutover::resilience {

std::string_view state_name(BreakerState state) {
  switch (state) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
    case BreakerState::forced_open:
      return "forced_open";
    case BreakerState::disabled:
      return "disabled";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(BreakerSettings settings, std::function<double()> uniform01)
    : settings_(settings), uniform01_(std::move(uniform01)) {
  settings_.window_size = std::max(1u, settings_.window_size);
  settings_.half_open_permits = std::max(1u, settings_.half_open_permits);
  if (!uniform01_) {
    auto generator = std::make_shared<std::mt19937_64>(std::random_device{}());
    // Called under the breaker's mutex, so the generator needs no lock of its own.
    uniform01_ = [generator] { return std::uniform_real_distribution<double>(0, 1)(*generator); };
  }
  if (settings_.window == BreakerSettings::Window::count) {
    ring_.resize(settings_.window_size);
  } else {
    buckets_.resize(settings_.window_size);
  }
}

void CircuitBreaker::refresh(TimePoint now) {
  if (state_ == BreakerState::open && now >= open_until_) {
    state_ = BreakerState::half_open;
    ++generation_;
    probes_in_flight_ = 0;
    probe_successes_ = 0;
  }
}

CircuitBreaker::Permit CircuitBreaker::try_acquire(TimePoint now) {
  std::lock_guard lock(mutex_);
  refresh(now);
  Permit permit;
  permit.generation = generation_;
  switch (state_) {
    case BreakerState::disabled:
      return permit;
    case BreakerState::forced_open:
      permit.refusal = Refusal::open;
      return permit;
    case BreakerState::open:
      permit.refusal = Refusal::open;
      permit.retry_at = open_until_;
      return permit;
    case BreakerState::half_open:
      if (probes_in_flight_ >= settings_.half_open_permits) {
        permit.refusal = Refusal::half_open_full;
        return permit;
      }
      ++probes_in_flight_;
      permit.probe = true;
      return permit;
    case BreakerState::closed:
      if (now < throttled_until_) {
        permit.refusal = Refusal::throttled;
        permit.retry_at = throttled_until_;
      }
      return permit;
  }
  return permit;
}

CircuitBreaker::Permit CircuitBreaker::try_acquire_last_resort(TimePoint now) {
  std::lock_guard lock(mutex_);
  refresh(now);
  Permit permit;
  permit.generation = generation_;
  const bool bypassable = state_ == BreakerState::open || state_ == BreakerState::half_open;
  if (!bypassable || now < throttled_until_) {
    permit.refusal = now < throttled_until_ ? Refusal::throttled : Refusal::open;
    permit.retry_at = now < throttled_until_ ? throttled_until_ : TimePoint{};
    return permit;
  }
  if (settings_.last_resort_share < 1.0 && uniform01_() >= settings_.last_resort_share) {
    permit.refusal = state_ == BreakerState::open ? Refusal::open : Refusal::half_open_full;
    if (state_ == BreakerState::open) permit.retry_at = open_until_;
    return permit;
  }
  permit.last_resort = true;
  ++last_resort_calls_;
  return permit;
}

void CircuitBreaker::on_success(const Permit& permit, std::chrono::milliseconds elapsed,
                                TimePoint now) {
  record(permit, Outcome{false, elapsed >= settings_.slow_call_duration}, now);
}

void CircuitBreaker::on_failure(const Permit& permit, std::chrono::milliseconds elapsed,
                                TimePoint now) {
  record(permit, Outcome{true, elapsed >= settings_.slow_call_duration}, now);
}

void CircuitBreaker::on_unreadable_answer(const Permit& permit,
                                          std::chrono::milliseconds elapsed, TimePoint now) {
  record(permit, Outcome{true, elapsed >= settings_.slow_call_duration, true}, now);
}

void CircuitBreaker::release(const Permit& permit) {
  if (permit.last_resort) return;
  std::lock_guard lock(mutex_);
  if (permit.probe && permit.generation == generation_ && probes_in_flight_ > 0) {
    --probes_in_flight_;
  }
}

void CircuitBreaker::on_throttled(const Permit& permit, TimePoint until) {
  std::lock_guard lock(mutex_);
  throttled_until_ = std::max(throttled_until_, until);
  if (permit.last_resort) return;
  if (permit.probe && permit.generation == generation_ && probes_in_flight_ > 0) {
    --probes_in_flight_;
  }
}

void CircuitBreaker::record(const Permit& permit, Outcome outcome, TimePoint now) {
  std::lock_guard lock(mutex_);
  // A result from before the last transition describes a state that no longer holds, and a
  // last-resort call through an open breaker is not one of its probes.
  if (permit.generation != generation_ || !permit || permit.last_resort) return;
  if (state_ == BreakerState::half_open) {
    if (probes_in_flight_ > 0) --probes_in_flight_;
    if (outcome.failure || outcome.slow) {
      trip(now, !outcome.unreadable);
      return;
    }
    if (++probe_successes_ >= settings_.half_open_permits) close();
    return;
  }
  if (state_ != BreakerState::closed) return;
  record_in_window(outcome, now);
  unsigned calls = 0, failures = 0, slow = 0;
  totals(now, calls, failures, slow);
  if (calls < settings_.minimum_calls || calls == 0) return;
  const double failure_rate = static_cast<double>(failures) / calls;
  const double slow_rate = static_cast<double>(slow) / calls;
  if (failure_rate >= settings_.failure_rate_threshold ||
      slow_rate >= settings_.slow_call_rate_threshold) {
    trip(now, !outcome.unreadable);
  }
}

void CircuitBreaker::record_in_window(Outcome outcome, TimePoint now) {
  if (!ring_.empty()) {
    if (ring_filled_ == ring_.size()) {
      const auto& evicted = ring_[ring_next_];
      ring_failures_ -= evicted.failure;
      ring_slow_ -= evicted.slow;
    } else {
      ++ring_filled_;
    }
    ring_[ring_next_] = outcome;
    ring_failures_ += outcome.failure;
    ring_slow_ += outcome.slow;
    ring_next_ = (ring_next_ + 1) % ring_.size();
    return;
  }
  const auto second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  auto& bucket = buckets_[static_cast<std::size_t>(second) % buckets_.size()];
  if (bucket.second != second) bucket = TimeBucket{second, 0, 0, 0};
  ++bucket.calls;
  bucket.failures += outcome.failure;
  bucket.slow += outcome.slow;
}

void CircuitBreaker::totals(TimePoint now, unsigned& calls, unsigned& failures, unsigned& slow) {
  if (!ring_.empty()) {
    calls = ring_filled_;
    failures = ring_failures_;
    slow = ring_slow_;
    return;
  }
  const auto second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  calls = failures = slow = 0;
  for (const auto& bucket : buckets_) {
    if (bucket.second < 0 || second - bucket.second >= static_cast<std::int64_t>(buckets_.size())) {
      continue;
    }
    calls += bucket.calls;
    failures += bucket.failures;
    slow += bucket.slow;
  }
}

void CircuitBreaker::trip(TimePoint now, bool escalate) {
  consecutive_trips_ = escalate ? consecutive_trips_ + 1 : 1;
  ++total_trips_;
  ++generation_;
  // Each consecutive trip doubles the open time (capped), with ±10 % jitter against flapping
  // in step with other replicas.
  const double base = static_cast<double>(settings_.open_duration.count()) *
                      std::pow(2.0, std::min(consecutive_trips_ - 1, 20u));
  const double capped = std::min(base, static_cast<double>(settings_.max_open_duration.count()));
  const double jittered = capped * (0.9 + 0.2 * uniform01_());
  open_until_ = now + std::chrono::milliseconds(static_cast<std::int64_t>(jittered));
  state_ = BreakerState::open;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
}

void CircuitBreaker::close() {
  state_ = BreakerState::closed;
  ++generation_;
  consecutive_trips_ = 0;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  std::fill(ring_.begin(), ring_.end(), Outcome{});
  ring_next_ = ring_filled_ = ring_failures_ = ring_slow_ = 0;
  std::fill(buckets_.begin(), buckets_.end(), TimeBucket{});
}

void CircuitBreaker::force_open() {
  std::lock_guard lock(mutex_);
  state_ = BreakerState::forced_open;
  ++generation_;
}

void CircuitBreaker::disable() {
  std::lock_guard lock(mutex_);
  state_ = BreakerState::disabled;
  ++generation_;
}

void CircuitBreaker::reset() {
  std::lock_guard lock(mutex_);
  close();
  throttled_until_ = {};
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot(TimePoint now) {
  std::lock_guard lock(mutex_);
  refresh(now);
  Snapshot snapshot;
  snapshot.state = state_;
  unsigned calls = 0, failures = 0, slow = 0;
  totals(now, calls, failures, slow);
  snapshot.calls = calls;
  snapshot.failure_rate = calls ? static_cast<double>(failures) / calls : 0;
  snapshot.slow_call_rate = calls ? static_cast<double>(slow) / calls : 0;
  snapshot.trips = total_trips_;
  snapshot.last_resort_calls = last_resort_calls_;
  snapshot.throttled = now < throttled_until_;
  if (state_ == BreakerState::open) snapshot.open_until = open_until_;
  return snapshot;
}

}  // namespace cutover::resilience
