#include "resilience/quota.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace cutover::resilience {
namespace {

using namespace std::chrono_literals;
using TimePoint = QuotaState::TimePoint;
const TimePoint kStart = TimePoint{} + std::chrono::hours(1);
const auto kWallClock = std::chrono::system_clock::from_time_t(1'800'000'000);

QuotaReading read(const std::map<std::string, std::string>& headers) {
  return read_quota_headers(
      [&headers](std::string_view name) -> std::string_view {
        auto found = headers.find(std::string(name));
        return found == headers.end() ? std::string_view() : std::string_view(found->second);
      },
      kWallClock);
}

TEST(QuotaHeadersTest, OpenAiFiguresAndGoDurations) {
  auto reading = read({{"x-ratelimit-limit-requests", "500"},
                       {"x-ratelimit-remaining-requests", "499"},
                       {"x-ratelimit-reset-requests", "120ms"},
                       {"x-ratelimit-limit-tokens", "30000"},
                       {"x-ratelimit-remaining-tokens", "29000"},
                       {"x-ratelimit-reset-tokens", "6m0s"}});
  EXPECT_EQ(reading.requests.limit, 500);
  EXPECT_EQ(reading.requests.remaining, 499);
  EXPECT_EQ(reading.requests.reset_in, 120ms);
  EXPECT_EQ(reading.tokens.limit, 30000);
  EXPECT_EQ(reading.tokens.remaining, 29000);
  EXPECT_EQ(reading.tokens.reset_in, 360s);
}

TEST(QuotaHeadersTest, AnthropicFiguresWithRfc3339Resets) {
  auto reading = read({{"anthropic-ratelimit-requests-limit", "50"},
                       {"anthropic-ratelimit-requests-remaining", "0"},
                       {"anthropic-ratelimit-requests-reset", "2027-01-15T08:00:12Z"},
                       {"anthropic-ratelimit-tokens-remaining", "1000"}});
  EXPECT_EQ(reading.requests.limit, 50);
  EXPECT_EQ(reading.requests.remaining, 0);
  // 1'800'000'000 is 2027-01-15T08:00:00Z.
  EXPECT_EQ(reading.requests.reset_in, 12s);
  EXPECT_EQ(reading.tokens.remaining, 1000);
  EXPECT_FALSE(reading.tokens.reset_in);
}

TEST(QuotaHeadersTest, GarbageAndAbsentHeadersReadAsNothing) {
  EXPECT_TRUE(read({}).empty());
  auto reading = read({{"x-ratelimit-remaining-requests", "-3"}, {"x-ratelimit-reset-requests", "soon"}});
  EXPECT_TRUE(reading.empty());
}

TEST(Rfc3339Test, FractionsAndOffsets) {
  const auto base = parse_rfc3339("2027-01-15T08:00:00Z");
  ASSERT_TRUE(base);
  EXPECT_EQ(*base, kWallClock);
  EXPECT_EQ(*parse_rfc3339("2027-01-15T09:00:00+01:00"), kWallClock);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(
                *parse_rfc3339("2027-01-15T08:00:00.250Z") - kWallClock),
            250ms);
  EXPECT_FALSE(parse_rfc3339("2027-01-15 08:00"));
  EXPECT_FALSE(parse_rfc3339("2027-01-15T08:00:00"));
}

TEST(QuotaStateTest, SpentUntilItsResetThenAvailableAgain) {
  QuotaState quota;
  EXPECT_FALSE(quota.exhausted(kStart)) << "nothing reported, nothing known";
  quota.update(read({{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "2s"}}),
               kStart);
  EXPECT_TRUE(quota.exhausted(kStart + 1999ms));
  EXPECT_EQ(quota.exhausted_until(kStart), kStart + 2s);
  EXPECT_FALSE(quota.exhausted(kStart + 2s));
}

TEST(QuotaStateTest, RequestsSentSinceTheReadingUseUpWhatWasLeft) {
  QuotaState quota;
  quota.update(read({{"x-ratelimit-remaining-requests", "2"}, {"x-ratelimit-reset-requests", "10s"}}),
               kStart);
  quota.on_request_sent();
  EXPECT_FALSE(quota.exhausted(kStart));
  quota.on_request_sent();
  EXPECT_TRUE(quota.exhausted(kStart)) << "two sent, two were left";
  EXPECT_EQ(quota.snapshot(kStart).requests_remaining, 0);
  quota.update(read({{"x-ratelimit-remaining-requests", "40"}}), kStart + 1s);
  EXPECT_FALSE(quota.exhausted(kStart + 1s)) << "a new reading replaces the estimate";
}

TEST(QuotaStateTest, SpentTokensCountToo) {
  QuotaState quota;
  quota.update(read({{"x-ratelimit-remaining-requests", "100"}, {"x-ratelimit-reset-requests", "1s"},
                     {"x-ratelimit-remaining-tokens", "0"}, {"x-ratelimit-reset-tokens", "30s"}}),
               kStart);
  EXPECT_EQ(quota.exhausted_until(kStart), kStart + 30s);
  EXPECT_TRUE(quota.snapshot(kStart).exhausted);
}

TEST(QuotaStateTest, AReadingWithoutAResetNeverBlocks) {
  QuotaState quota;
  quota.update(read({{"x-ratelimit-remaining-requests", "0"}}), kStart);
  EXPECT_FALSE(quota.exhausted(kStart)) << "without a reset time the provider decides";
}

}  // namespace
}  // namespace cutover::resilience
