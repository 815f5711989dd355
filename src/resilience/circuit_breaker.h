// A circuit breaker per provider endpoint, with resilience4j's states (CLOSED, OPEN, HALF_OPEN,
// FORCED_OPEN, DISABLED) plus a THROTTLED condition for 429s, which are not failures.
//
// Trips when the failure rate or the slow-call rate over a sliding window (by count or by time)
// reaches its threshold, and only once the window holds `minimum_calls` calls; rates divide by
// the calls actually seen. The open time grows with consecutive trips, with jitter and a cap.
// Thread-safe: one small mutex per breaker (never a global lock, never held across I/O).
// Time and randomness are arguments, so tests drive it exactly.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace cutover::resilience {

enum class BreakerState { closed, open, half_open, forced_open, disabled };
std::string_view state_name(BreakerState state);

struct BreakerSettings {
  double failure_rate_threshold = 0.5;
  // A call this slow counts towards the slow-call rate whatever its outcome.
  std::chrono::milliseconds slow_call_duration{60'000};
  double slow_call_rate_threshold = 1.0;
  enum class Window { count, time } window = Window::count;
  // Calls (count window) or seconds (time window).
  unsigned window_size = 100;
  unsigned minimum_calls = 20;
  std::chrono::milliseconds open_duration{30'000};
  std::chrono::milliseconds max_open_duration{300'000};
  unsigned half_open_permits = 3;
  // Share of calls let through an OPEN breaker when its endpoint is a request's last option (no
  // other endpoint or provider left): refusing them would turn the provider's partial trouble
  // into a total outage the client would not have had without the gateway (Envoy's panic mode).
  double last_resort_share = 1.0;
};

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  enum class Refusal { none, open, half_open_full, throttled };
  struct Permit {
    Refusal refusal = Refusal::none;
    bool probe = false;
    // Let through an open breaker as a last resort: its outcome says nothing the breaker acts on.
    bool last_resort = false;
    std::uint64_t generation = 0;
    // For a refusal: when a call may next be let through (end of the throttle or of the open
    // time); the epoch when nobody can say (FORCED_OPEN, HALF_OPEN with its probes out).
    TimePoint retry_at{};
    explicit operator bool() const { return refusal == Refusal::none; }
  };

  explicit CircuitBreaker(BreakerSettings settings = {},
                          std::function<double()> uniform01 = nullptr);

  Permit try_acquire(TimePoint now);
  // For a request with no other option once try_acquire refused for being OPEN or HALF_OPEN:
  // lets `last_resort_share` of such calls through, unrecorded. Never bypasses FORCED_OPEN (an
  // operator's decision) or a throttle (the caller waits for its end instead).
  Permit try_acquire_last_resort(TimePoint now);
  void on_success(const Permit& permit, std::chrono::milliseconds elapsed, TimePoint now);
  void on_failure(const Permit& permit, std::chrono::milliseconds elapsed, TimePoint now);
  // A 2xx answer the gateway could not read: counted as a failure, but a trip it causes opens
  // for the base open time only, so a parsing bug of the gateway's own cannot keep a route
  // closed longer than one ordinary trip.
  void on_unreadable_answer(const Permit& permit, std::chrono::milliseconds elapsed,
                            TimePoint now);
  // A call that says nothing about health (a 4xx, or cancelled): frees its half-open permit.
  void release(const Permit& permit);
  // A 429: refuse calls until `until`, without counting a failure; frees the permit.
  void on_throttled(const Permit& permit, TimePoint until);

  void force_open();
  void disable();
  // Back to CLOSED with an empty window (also ends FORCED_OPEN and DISABLED).
  void reset();

  struct Snapshot {
    BreakerState state = BreakerState::closed;
    double failure_rate = 0;
    double slow_call_rate = 0;
    unsigned calls = 0;
    unsigned trips = 0;
    std::uint64_t last_resort_calls = 0;
    bool throttled = false;
    std::optional<TimePoint> open_until;
  };
  Snapshot snapshot(TimePoint now);
  BreakerState state(TimePoint now) { return snapshot(now).state; }

 private:
  struct Outcome {
    bool failure = false;
    bool slow = false;
    bool unreadable = false;
  };
  struct TimeBucket {
    std::int64_t second = -1;
    unsigned calls = 0, failures = 0, slow = 0;
  };
  void record(const Permit& permit, Outcome outcome, TimePoint now);
  void record_in_window(Outcome outcome, TimePoint now);
  void totals(TimePoint now, unsigned& calls, unsigned& failures, unsigned& slow);
  void trip(TimePoint now, bool escalate);
  void close();
  void refresh(TimePoint now);

  BreakerSettings settings_;
  std::function<double()> uniform01_;
  std::mutex mutex_;
  BreakerState state_ = BreakerState::closed;
  std::uint64_t generation_ = 0;
  unsigned consecutive_trips_ = 0;
  unsigned total_trips_ = 0;
  std::uint64_t last_resort_calls_ = 0;
  TimePoint open_until_{};
  TimePoint throttled_until_{};
  unsigned probes_in_flight_ = 0;
  unsigned probe_successes_ = 0;
  // Count window: a ring of outcomes with running totals.
  std::vector<Outcome> ring_;
  std::size_t ring_next_ = 0;
  unsigned ring_filled_ = 0, ring_failures_ = 0, ring_slow_ = 0;
  // Time window: one bucket per second.
  std::vector<TimeBucket> buckets_;
};

}  // namespace cutover::resilience
