#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "resilience/retry_budget.h"
#include "resilience/retry_policy.h"

namespace cutover::resilience {
namespace {

using namespace std::chrono_literals;

TEST(BackoffTest, FullJitterWithinExponentialCeilingAndCap) {
  RetryPolicy policy;
  policy.backoff_base = 100ms;
  policy.backoff_max = 1000ms;
  EXPECT_EQ(backoff_delay(policy, 0, [] { return 0.999; }).count(), 99);
  EXPECT_EQ(backoff_delay(policy, 1, [] { return 0.5; }), 100ms);
  EXPECT_EQ(backoff_delay(policy, 3, [] { return 0.5; }), 400ms);
  EXPECT_EQ(backoff_delay(policy, 10, [] { return 0.5; }), 500ms) << "capped at 1 s";
  EXPECT_EQ(backoff_delay(policy, 2, [] { return 0.0; }), 0ms);
}

TEST(RetryPolicyTest, OnlyConfiguredFailuresRetry) {
  RetryPolicy policy;
  EXPECT_TRUE(policy.retries(AttemptFailure::server_error, 503));
  EXPECT_FALSE(policy.retries(AttemptFailure::server_error, 500));
  EXPECT_TRUE(policy.retries(AttemptFailure::rate_limited, 429));
  EXPECT_TRUE(policy.retries(AttemptFailure::connect_error, 0));
  EXPECT_FALSE(policy.retries(AttemptFailure::invalid_response, 200));
}

std::function<std::string_view(std::string_view)> headers(std::map<std::string, std::string> values) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(values));
  return [shared](std::string_view name) -> std::string_view {
    auto found = shared->find(std::string(name));
    return found == shared->end() ? std::string_view() : std::string_view(found->second);
  };
}

const auto kNow = std::chrono::system_clock::from_time_t(1445412480);  // 2015-10-21 07:28:00 UTC

TEST(ProviderDelayTest, RetryAfterSeconds) {
  EXPECT_EQ(provider_requested_delay(headers({{"retry-after", "1"}}), kNow), 1000ms);
  EXPECT_EQ(provider_requested_delay(headers({{"retry-after", "120"}}), kNow), 120000ms);
}

TEST(ProviderDelayTest, RetryAfterHttpDate) {
  EXPECT_EQ(provider_requested_delay(headers({{"retry-after", "Wed, 21 Oct 2015 07:28:05 GMT"}}), kNow),
            5000ms);
  EXPECT_EQ(provider_requested_delay(headers({{"retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"}}), kNow),
            0ms) << "a date in the past means now";
}

TEST(ProviderDelayTest, MillisecondsHeaderWins) {
  EXPECT_EQ(provider_requested_delay(headers({{"retry-after-ms", "250"}, {"retry-after", "3"}}), kNow),
            250ms);
}

TEST(ProviderDelayTest, RateLimitResetHeaders) {
  EXPECT_EQ(provider_requested_delay(
                headers({{"x-ratelimit-reset-requests", "1s"}, {"x-ratelimit-reset-tokens", "6m0s"}}), kNow),
            360000ms);
  EXPECT_EQ(parse_reset_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_reset_duration("20ms"), 20ms);
  EXPECT_EQ(parse_reset_duration("1h2m"), 3720000ms);
  EXPECT_FALSE(parse_reset_duration("soon"));
  // The forms OpenAI and relays send, and what is not a duration.
  EXPECT_EQ(parse_reset_duration("6m0s"), 360000ms);
  EXPECT_EQ(parse_reset_duration("0.25s"), 250ms);
  EXPECT_EQ(parse_reset_duration("1s500ms"), 1500ms);
  EXPECT_EQ(parse_reset_duration("17"), 17000ms);
  EXPECT_EQ(parse_reset_duration("0s"), 0ms);
  EXPECT_FALSE(parse_reset_duration("-1s"));
  EXPECT_FALSE(parse_reset_duration("1x"));
  EXPECT_FALSE(parse_reset_duration("s"));
  EXPECT_FALSE(parse_reset_duration("1.5.5s"));
  EXPECT_FALSE(parse_reset_duration("999999999999h"));
  // Sums of units, the bound of 10^12 ms, long runs of leading zeros, spaces.
  EXPECT_EQ(parse_reset_duration("1h2m3s4ms"), 3723004ms);
  EXPECT_EQ(parse_reset_duration("5m"), 300000ms);
  EXPECT_EQ(parse_reset_duration("1000000000000ms"), 1000000000000ms);
  EXPECT_FALSE(parse_reset_duration("1000000000001ms"));
  EXPECT_FALSE(parse_reset_duration("277777h46m40s1ms"));
  EXPECT_EQ(parse_reset_duration("00000000000000000002s"), 2000ms);
  EXPECT_EQ(parse_reset_duration("1.000s"), parse_reset_duration("1s"));
  EXPECT_FALSE(parse_reset_duration("1s1"));
  EXPECT_FALSE(parse_reset_duration("12 s"));
}

TEST(ProviderDelayTest, GarbageIsIgnored) {
  EXPECT_FALSE(provider_requested_delay(headers({{"retry-after", "later"}}), kNow));
  EXPECT_FALSE(provider_requested_delay(headers({}), kNow));
}

const auto kT0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(5);

TEST(RetryBudgetTest, RetriesCappedAtRatioPlusFloor) {
  RetryBudget budget({.ratio = 0.2, .min_retries_per_second = 0.5, .window = 10s});
  for (int i = 0; i < 100; ++i) budget.record_request(kT0);
  int granted = 0;
  for (int i = 0; i < 100; ++i) granted += budget.try_acquire_retry(kT0);
  EXPECT_EQ(granted, 25) << "20 % of 100 plus 0.5/s over 10 s";
}

TEST(RetryBudgetTest, WindowSlides) {
  RetryBudget budget({.ratio = 0.1, .min_retries_per_second = 0, .window = 2s});
  for (int i = 0; i < 10; ++i) budget.record_request(kT0);
  EXPECT_TRUE(budget.try_acquire_retry(kT0));
  EXPECT_FALSE(budget.try_acquire_retry(kT0));
  EXPECT_FALSE(budget.try_acquire_retry(kT0 + 3s)) << "the requests left the window";
  for (int i = 0; i < 10; ++i) budget.record_request(kT0 + 3s);
  EXPECT_TRUE(budget.try_acquire_retry(kT0 + 3s));
}

TEST(RetryBudgetTest, ConcurrentRetriesNeverOvershoot) {
  RetryBudget budget({.ratio = 0.5, .min_retries_per_second = 0, .window = 10s});
  for (int i = 0; i < 1000; ++i) budget.record_request(kT0);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) granted += budget.try_acquire_retry(kT0);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(granted.load(), 500);
}

}  // namespace
}  // namespace cutover::resilience
