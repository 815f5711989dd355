#include "resilience/circuit_breaker.h"

#include <gtest/gtest.h>

#include <thread>

namespace cutover::resilience {
namespace {

using namespace std::chrono_literals;
using TimePoint = CircuitBreaker::TimePoint;

BreakerSettings small_window() {
  BreakerSettings settings;
  settings.failure_rate_threshold = 0.5;
  settings.window_size = 10;
  settings.minimum_calls = 4;
  settings.open_duration = 1000ms;
  settings.max_open_duration = 8000ms;
  settings.half_open_permits = 2;
  settings.slow_call_duration = 500ms;
  return settings;
}

// No jitter: the open time is exactly the configured one (0.9 + 0.2 * 0.5 = 1.0).
CircuitBreaker make(BreakerSettings settings = small_window()) {
  return CircuitBreaker(settings, [] { return 0.5; });
}

const TimePoint kStart = TimePoint{} + std::chrono::hours(1);

void fail(CircuitBreaker& breaker, TimePoint now, int times = 1) {
  for (int i = 0; i < times; ++i) {
    auto permit = breaker.try_acquire(now);
    ASSERT_TRUE(permit);
    breaker.on_failure(permit, 10ms, now);
  }
}

void succeed(CircuitBreaker& breaker, TimePoint now, int times = 1) {
  for (int i = 0; i < times; ++i) {
    auto permit = breaker.try_acquire(now);
    ASSERT_TRUE(permit);
    breaker.on_success(permit, 10ms, now);
  }
}

TEST(CircuitBreakerTest, NoVerdictBelowMinimumCalls) {
  auto breaker = make();
  fail(breaker, kStart, 3);
  EXPECT_EQ(breaker.state(kStart), BreakerState::closed);
  EXPECT_DOUBLE_EQ(breaker.snapshot(kStart).failure_rate, 1.0);
}

TEST(CircuitBreakerTest, RateDividesByCallsSeenNotByWindowSize) {
  auto breaker = make();
  succeed(breaker, kStart, 2);
  fail(breaker, kStart, 1);
  EXPECT_EQ(breaker.state(kStart), BreakerState::closed);
  fail(breaker, kStart, 1);  // 2 of 4 = 50 %: trips on >=, not on 2 % of a window of 100
  EXPECT_EQ(breaker.state(kStart), BreakerState::open);
}

TEST(CircuitBreakerTest, OpenRefusesThenHalfOpenProbesCloseIt) {
  auto breaker = make();
  fail(breaker, kStart, 4);
  EXPECT_EQ(breaker.try_acquire(kStart + 999ms).refusal, CircuitBreaker::Refusal::open);
  auto probe1 = breaker.try_acquire(kStart + 1000ms);
  auto probe2 = breaker.try_acquire(kStart + 1000ms);
  ASSERT_TRUE(probe1);
  ASSERT_TRUE(probe2);
  EXPECT_TRUE(probe1.probe);
  EXPECT_EQ(breaker.try_acquire(kStart + 1000ms).refusal, CircuitBreaker::Refusal::half_open_full);
  breaker.on_success(probe1, 10ms, kStart + 1001ms);
  EXPECT_EQ(breaker.state(kStart + 1001ms), BreakerState::half_open);
  breaker.on_success(probe2, 10ms, kStart + 1002ms);
  EXPECT_EQ(breaker.state(kStart + 1002ms), BreakerState::closed);
  EXPECT_EQ(breaker.snapshot(kStart + 1002ms).calls, 0u) << "the window starts afresh";
}

TEST(CircuitBreakerTest, FailedProbeReopensForLongerEachTime) {
  auto breaker = make();
  fail(breaker, kStart, 4);
  auto t = kStart + 1000ms;
  auto probe = breaker.try_acquire(t);
  breaker.on_failure(probe, 10ms, t);
  EXPECT_EQ(breaker.state(t + 1999ms), BreakerState::open) << "second trip: 2 s";
  t += 2000ms;
  probe = breaker.try_acquire(t);
  ASSERT_TRUE(probe);
  breaker.on_failure(probe, 10ms, t);
  EXPECT_EQ(breaker.state(t + 3999ms), BreakerState::open) << "third trip: 4 s";
  EXPECT_EQ(breaker.state(t + 4000ms), BreakerState::half_open);
  EXPECT_EQ(breaker.snapshot(t).trips, 3u);
}

TEST(CircuitBreakerTest, OpenTimeIsCapped) {
  auto settings = small_window();
  settings.max_open_duration = 1500ms;
  auto breaker = make(settings);
  fail(breaker, kStart, 4);
  auto t = kStart + 1000ms;
  auto probe = breaker.try_acquire(t);
  breaker.on_failure(probe, 10ms, t);
  EXPECT_EQ(breaker.state(t + 1500ms), BreakerState::half_open);
}

TEST(CircuitBreakerTest, CancelledProbeGivesItsPermitBack) {
  auto breaker = make();
  fail(breaker, kStart, 4);
  auto t = kStart + 1000ms;
  auto probe1 = breaker.try_acquire(t);
  auto probe2 = breaker.try_acquire(t);
  EXPECT_FALSE(breaker.try_acquire(t));
  breaker.release(probe1);
  auto probe3 = breaker.try_acquire(t);
  EXPECT_TRUE(probe3);
  breaker.on_success(probe2, 10ms, t);
  breaker.on_success(probe3, 10ms, t);
  EXPECT_EQ(breaker.state(t), BreakerState::closed) << "never stuck half-open";
}

TEST(CircuitBreakerTest, SlowCallsTripTheSlowRate) {
  auto settings = small_window();
  settings.slow_call_rate_threshold = 0.75;
  auto breaker = make(settings);
  for (int i = 0; i < 4; ++i) {
    auto permit = breaker.try_acquire(kStart);
    breaker.on_success(permit, 600ms, kStart);
  }
  EXPECT_EQ(breaker.state(kStart), BreakerState::open);
}

TEST(CircuitBreakerTest, ThrottleRefusesUntilResetWithoutCountingFailure) {
  auto breaker = make();
  auto permit = breaker.try_acquire(kStart);
  breaker.on_throttled(permit, kStart + 2s);
  EXPECT_EQ(breaker.try_acquire(kStart + 1s).refusal, CircuitBreaker::Refusal::throttled);
  EXPECT_TRUE(breaker.try_acquire(kStart + 2s));
  EXPECT_EQ(breaker.snapshot(kStart + 2s).calls, 0u);
  EXPECT_EQ(breaker.state(kStart + 2s), BreakerState::closed);
}

TEST(CircuitBreakerTest, LateResultsFromBeforeATripAreIgnored) {
  auto breaker = make();
  auto early = breaker.try_acquire(kStart);
  fail(breaker, kStart, 4);
  auto t = kStart + 1000ms;
  auto probe = breaker.try_acquire(t);
  breaker.on_failure(early, 10ms, t);  // belongs to the CLOSED generation
  EXPECT_EQ(breaker.state(t), BreakerState::half_open);
  breaker.on_success(probe, 10ms, t);
}

TEST(CircuitBreakerTest, TimeWindowForgetsOldCalls) {
  auto settings = small_window();
  settings.window = BreakerSettings::Window::time;
  settings.window_size = 5;  // seconds
  auto breaker = make(settings);
  fail(breaker, kStart, 3);
  succeed(breaker, kStart + 6s, 1);  // the failures have left the window
  EXPECT_EQ(breaker.snapshot(kStart + 6s).calls, 1u);
  fail(breaker, kStart + 6s, 2);
  EXPECT_EQ(breaker.state(kStart + 6s), BreakerState::closed);
  fail(breaker, kStart + 6s, 1);
  EXPECT_EQ(breaker.state(kStart + 6s), BreakerState::open);
}

TEST(CircuitBreakerTest, ForcedOpenAndDisabled) {
  auto breaker = make();
  breaker.force_open();
  EXPECT_FALSE(breaker.try_acquire(kStart + std::chrono::hours(10)));
  breaker.disable();
  fail(breaker, kStart, 10);
  EXPECT_EQ(breaker.state(kStart), BreakerState::disabled);
  breaker.reset();
  EXPECT_EQ(breaker.state(kStart), BreakerState::closed);
}

TEST(CircuitBreakerTest, ConcurrentCallersKeepCountsConsistent) {
  auto settings = small_window();
  settings.window_size = 1000;
  settings.minimum_calls = 1000000;  // never trips: we check the arithmetic
  CircuitBreaker breaker(settings, [] { return 0.5; });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto permit = breaker.try_acquire(kStart);
        if (t % 2) {
          breaker.on_failure(permit, 1ms, kStart);
        } else {
          breaker.on_success(permit, 1ms, kStart);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  auto snapshot = breaker.snapshot(kStart);
  EXPECT_EQ(snapshot.calls, 800u);
  EXPECT_DOUBLE_EQ(snapshot.failure_rate, 0.5);
}

TEST(CircuitBreakerTest, UnreadableAnswersNeverOpenForLongerThanOneTrip) {
  auto breaker = make();
  auto unreadable = [&](TimePoint now) {
    auto permit = breaker.try_acquire(now);
    ASSERT_TRUE(permit);
    breaker.on_unreadable_answer(permit, 10ms, now);
  };
  for (int i = 0; i < 4; ++i) unreadable(kStart);
  EXPECT_EQ(breaker.state(kStart), BreakerState::open);
  auto t = kStart;
  for (int trip = 0; trip < 4; ++trip) {
    EXPECT_EQ(breaker.state(t + 999ms), BreakerState::open);
    t += 1000ms;
    ASSERT_EQ(breaker.state(t), BreakerState::half_open) << "trip " << trip << " lasted 1 s";
    unreadable(t);
  }
  // A real failure after them escalates from the base again, not from four trips.
  t += 1000ms;
  auto probe = breaker.try_acquire(t);
  breaker.on_failure(probe, 10ms, t);
  EXPECT_EQ(breaker.state(t + 1999ms), BreakerState::open);
  EXPECT_EQ(breaker.state(t + 2000ms), BreakerState::half_open);
}

TEST(CircuitBreakerTest, LastResortLetsCallsThroughAnOpenBreakerUnrecorded) {
  auto breaker = make();
  fail(breaker, kStart, 4);
  ASSERT_FALSE(breaker.try_acquire(kStart + 10ms));
  auto refused = breaker.try_acquire(kStart + 10ms);
  EXPECT_EQ(refused.refusal, CircuitBreaker::Refusal::open);
  EXPECT_EQ(refused.retry_at, kStart + 1000ms) << "tells when it will probe again";
  for (int i = 0; i < 10; ++i) {
    auto permit = breaker.try_acquire_last_resort(kStart + 10ms);
    ASSERT_TRUE(permit);
    EXPECT_TRUE(permit.last_resort);
    breaker.on_success(permit, 10ms, kStart + 10ms);
  }
  EXPECT_EQ(breaker.snapshot(kStart + 10ms).last_resort_calls, 10u);
  // Its outcomes do not close (or re-open) it: only half-open probes do.
  EXPECT_EQ(breaker.state(kStart + 999ms), BreakerState::open);
  auto probe = breaker.try_acquire(kStart + 1000ms);
  ASSERT_TRUE(probe);
  EXPECT_TRUE(probe.probe);
}

TEST(CircuitBreakerTest, LastResortShareAndOperatorsOverrides) {
  auto settings = small_window();
  settings.last_resort_share = 0.25;
  double next = 0;
  CircuitBreaker breaker(settings, [&next] { return next; });
  fail(breaker, kStart, 4);
  next = 0.1;
  EXPECT_TRUE(breaker.try_acquire_last_resort(kStart));
  next = 0.5;
  EXPECT_FALSE(breaker.try_acquire_last_resort(kStart)) << "beyond the share";
  breaker.force_open();
  next = 0.1;
  EXPECT_FALSE(breaker.try_acquire_last_resort(kStart)) << "an operator's force_open holds";
  breaker.reset();
  EXPECT_FALSE(breaker.try_acquire_last_resort(kStart)) << "nothing to bypass when closed";
}

TEST(CircuitBreakerTest, ThrottleIsNeverBypassedAndSaysWhenItEnds) {
  auto breaker = make();
  auto permit = breaker.try_acquire(kStart);
  breaker.on_throttled(permit, kStart + 700ms);
  auto refused = breaker.try_acquire(kStart + 100ms);
  EXPECT_EQ(refused.refusal, CircuitBreaker::Refusal::throttled);
  EXPECT_EQ(refused.retry_at, kStart + 700ms);
  EXPECT_FALSE(breaker.try_acquire_last_resort(kStart + 100ms));
  EXPECT_TRUE(breaker.try_acquire(kStart + 700ms));
}

}  // namespace
}  // namespace cutover::resilience
