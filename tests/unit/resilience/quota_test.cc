#include "resilience/quota.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>
#include <string>
#include <thread>

namespace cutover::resilience {
namespace {

using namespace std::chrono_literals;
using TimePoint = QuotaState::TimePoint;
const TimePoint kStart = TimePoint{} + std::chrono::hours(1);
const auto kWallClock = std::chrono::system_clock::from_time_t(1'800'000'000);

QuotaReading read(const std::vector<std::pair<std::string, std::string>>& headers) {
  QuotaHeaderReader reader(kWallClock);
  for (const auto& [name, value] : headers) reader.offer(name, value);
  return reader.reading();
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
  EXPECT_TRUE(read({{"x-ratelimit-limit-requests", ""},
                    {"x-ratelimit-remaining-requests", "12 "},
                    {"x-ratelimit-limit-tokens", "1e6"},
                    {"x-ratelimit-remaining-tokens", "1234567890123456789"}})
                  .empty());
  EXPECT_EQ(read({{"x-ratelimit-remaining-tokens", "123456789012345678"}}).tokens.remaining,
            123456789012345678);
}

TEST(QuotaHeadersTest, CountsOfEveryLengthAndNoDigitsElse) {
  // Eight digits at a time and one at a time, and every way a byte can fail to be a digit in
  // either part.
  std::string digits;
  std::int64_t expected = 0;
  for (int length = 1; length <= 18; ++length) {
    digits += static_cast<char>('0' + (length * 7) % 10);
    expected = expected * 10 + (length * 7) % 10;
    EXPECT_EQ(read({{"x-ratelimit-limit-tokens", digits}}).tokens.limit, expected) << digits;
    for (std::size_t at = 0; at < digits.size(); ++at) {
      for (const char bad : {'/', ':', ' ', '-', '+', '.', 'a', '\x80', '\0', '\xb9'}) {
        auto broken = digits;
        broken[at] = bad;
        EXPECT_FALSE(read({{"x-ratelimit-limit-tokens", broken}}).tokens.limit) << broken;
      }
    }
  }
  EXPECT_EQ(read({{"x-ratelimit-limit-tokens", "00000000"}}).tokens.limit, 0);
  EXPECT_EQ(read({{"x-ratelimit-limit-tokens", "99999999"}}).tokens.limit, 99999999);
  EXPECT_EQ(read({{"x-ratelimit-limit-tokens", "999999999999999999"}}).tokens.limit,
            999999999999999999);
  // Nine to sixteen digits: two words that overlap, each digit counted once.
  for (const auto& [text, value] : std::vector<std::pair<std::string, std::int64_t>>{
           {"100000000", 100'000'000},
           {"999999999", 999'999'999},
           {"1000000000", 1'000'000'000},
           {"99999999950", 99'999'999'950},
           {"100000000000", 100'000'000'000},
           {"1234567890123456", 1'234'567'890'123'456},
           {"0000000000000001", 1},
           {"1000000000000000", 1'000'000'000'000'000}}) {
    EXPECT_EQ(read({{"x-ratelimit-limit-tokens", text}}).tokens.limit, value) << text;
  }
}

TEST(QuotaHeadersTest, NamesMatchWhateverTheirCase) {
  auto reading = read({{"X-RateLimit-Limit-Requests", "500"},
                       {"X-RATELIMIT-REMAINING-TOKENS", "7"},
                       {"Anthropic-RateLimit-Tokens-Limit", "90"}});
  EXPECT_EQ(reading.requests.limit, 500);
  EXPECT_EQ(reading.tokens.remaining, 7);
  // OpenAI's headers said something about tokens: Anthropic's do not fill that dimension.
  EXPECT_FALSE(reading.tokens.limit);
}

TEST(QuotaHeadersTest, AnthropicFillsOnlyWhatOpenAiLeftOut) {
  auto reading = read({{"anthropic-ratelimit-requests-limit", "50"},
                       {"x-ratelimit-limit-tokens", "30000"},
                       {"anthropic-ratelimit-tokens-limit", "99"}});
  EXPECT_EQ(reading.requests.limit, 50);
  EXPECT_EQ(reading.tokens.limit, 30000);
}

TEST(QuotaHeadersTest, LookalikeAndOtherFieldsAreIgnored) {
  auto reading = read({{"content-type", "application/json"},
                       {"x-ratelimit-limit", "5"},
                       {"x-ratelimit-limit-images", "5"},
                       {"x-ratelimit-limitless-requests", "5"},
                       {"anthropic-ratelimit-input-tokens-limit", "5"},
                       {"anthropic-ratelimit-requests", "5"},
                       {"x-ratelimits-limit-requests", "5"}});
  EXPECT_TRUE(reading.empty());
}

TEST(QuotaHeadersTest, NamesOfOneLengthAreToldApartAndThenComparedWhole) {
  // Each pair of names of one length differs first at one character (limit/reset); the other
  // characters of a field that matches there must match too.
  auto reading = read({{"x-ratelimit-RESET-requests", "2s"}, {"x-ratelimit-Limit-tokens", "70"}});
  EXPECT_EQ(reading.requests.reset_in, 2000ms);
  EXPECT_FALSE(reading.requests.limit);
  EXPECT_EQ(reading.tokens.limit, 70);
  EXPECT_FALSE(reading.tokens.reset_in);
  reading = read(
      {{"anthropic-ratelimit-tokens-rEset", "12"}, {"anthropic-ratelimit-requests-LIMIT", "9"}});
  EXPECT_EQ(reading.tokens.reset_in, 12000ms);
  EXPECT_FALSE(reading.tokens.limit);
  EXPECT_EQ(reading.requests.limit, 9);
  EXPECT_FALSE(reading.requests.reset_in);
  EXPECT_TRUE(read({{"x-ratelimit-limit-requestz", "5"},
                    {"x-ratelimit-rimit-requests", "5"},
                    {"x-ratelimit-leset-requests", "5"},
                    {"x-ratelimit-xeset-tokens", "5"},
                    {"y-ratelimit-reset-tokens", "5"},
                    {"anthropic-ratelimit-tokenz-limit", "5"},
                    {"anthropic-ratelimit-requests-lim1t", "5"}})
                  .empty());
}

TEST(QuotaHeadersTest, TheFirstValidValueOfARepeatedFieldCounts) {
  auto reading = read({{"x-ratelimit-limit-requests", "500"},
                       {"x-ratelimit-limit-requests", "600"},
                       {"x-ratelimit-remaining-requests", "soon"},
                       {"x-ratelimit-remaining-requests", "10"}});
  EXPECT_EQ(reading.requests.limit, 500);
  EXPECT_EQ(reading.requests.remaining, 10);
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

TEST(QuotaStateTest, AnEndpointThatNeverReportedIsNeverExhaustedAndCountsNothing) {
  QuotaState quota;
  for (int i = 0; i < 5; ++i) quota.on_request_sent();
  EXPECT_FALSE(quota.exhausted(kStart));
  EXPECT_FALSE(quota.snapshot(kStart).reported);
  // Requests sent before the first reading are in that reading's figures already.
  quota.update(read({{"x-ratelimit-remaining-requests", "1"}, {"x-ratelimit-reset-requests", "10s"}}),
               kStart);
  EXPECT_TRUE(quota.snapshot(kStart).reported);
  EXPECT_EQ(quota.snapshot(kStart).requests_remaining, 1);
  quota.on_request_sent();
  EXPECT_TRUE(quota.exhausted(kStart));
}

TEST(QuotaStateTest, RequestsSentFromManyThreadsAreEachCounted) {
  // Every worker counts against the same endpoint without a lock; no request may be lost.
  QuotaState quota;
  quota.update(
      read({{"x-ratelimit-remaining-requests", "100000"}, {"x-ratelimit-reset-requests", "1m"}}),
      kStart);
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&quota] {
      for (int i = 0; i < 20'000; ++i) {
        quota.on_request_sent();
        (void)quota.exhausted_until(kStart);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(quota.snapshot(kStart).requests_remaining, 100000 - 80'000);
  for (int i = 0; i < 20'000; ++i) quota.on_request_sent();
  EXPECT_TRUE(quota.exhausted(kStart));
  EXPECT_EQ(quota.exhausted_until(kStart), kStart + 1min);
}

TEST(QuotaStateTest, SpentTokensCountToo) {
  QuotaState quota;
  quota.update(read({{"x-ratelimit-remaining-requests", "100"}, {"x-ratelimit-reset-requests", "1s"},
                     {"x-ratelimit-remaining-tokens", "0"}, {"x-ratelimit-reset-tokens", "30s"}}),
               kStart);
  EXPECT_EQ(quota.exhausted_until(kStart), kStart + 30s);
  EXPECT_TRUE(quota.snapshot(kStart).exhausted);
}

TEST(QuotaStateTest, ReadingsPauseOnlyWhileEveryFigureHasRoom) {
  QuotaState quota;
  EXPECT_TRUE(quota.wants_reading(kStart)) << "nothing read yet";
  quota.update(read({{"x-ratelimit-limit-requests", "100"},
                     {"x-ratelimit-remaining-requests", "90"},
                     {"x-ratelimit-limit-tokens", "1000"},
                     {"x-ratelimit-remaining-tokens", "900"},
                     {"x-ratelimit-reset-requests", "1m"}}),
               kStart);
  EXPECT_FALSE(quota.wants_reading(kStart));
  EXPECT_FALSE(quota.wants_reading(kStart + QuotaState::kQuietInterval - 1ms));
  EXPECT_TRUE(quota.wants_reading(kStart + QuotaState::kQuietInterval)) << "the reading is old";
  // 90 left of 100: room for 65 requests before a quarter of the limit is all that is left.
  for (int i = 0; i < 64; ++i) quota.on_request_sent();
  EXPECT_FALSE(quota.wants_reading(kStart + 1ms));
  quota.on_request_sent();
  EXPECT_TRUE(quota.wants_reading(kStart + 1ms)) << "the requests sent since used the room up";

  quota.update(read({{"x-ratelimit-remaining-requests", "25"}}), kStart);
  EXPECT_TRUE(quota.wants_reading(kStart)) << "a quarter of the requests left: every answer counts";
  quota.update(
      read({{"x-ratelimit-remaining-requests", "80"}, {"x-ratelimit-remaining-tokens", "200"}}),
      kStart);
  EXPECT_TRUE(quota.wants_reading(kStart)) << "a fifth of the tokens left";
  quota.update(read({{"x-ratelimit-remaining-tokens", "900"}}), kStart);
  EXPECT_FALSE(quota.wants_reading(kStart)) << "figures a reading leaves out stay as they were";

  QuotaState silent;
  silent.update(read({{"x-request-id", "1"}}), kStart);
  EXPECT_FALSE(silent.wants_reading(kStart + 1ms)) << "an endpoint that reports nothing";
  EXPECT_TRUE(silent.wants_reading(kStart + QuotaState::kQuietInterval)) << "is looked at again";
  silent.update(
      read({{"x-ratelimit-limit-requests", "10"}, {"x-ratelimit-remaining-requests", "1"}}),
      kStart);
  silent.update(read({}), kStart + 1ms);
  EXPECT_TRUE(silent.wants_reading(kStart + 1ms)) << "once it has reported, near its limit";

  QuotaState without_limits;
  without_limits.update(read({{"x-ratelimit-remaining-requests", "5000"}}), kStart);
  EXPECT_TRUE(without_limits.wants_reading(kStart)) << "no limit to measure the room by";
  QuotaState resets_only;
  resets_only.update(read({{"x-ratelimit-reset-requests", "1s"}}), kStart);
  EXPECT_FALSE(resets_only.wants_reading(kStart)) << "nothing reported could run out";
}

TEST(QuotaStateTest, AReadingWithoutAResetNeverBlocks) {
  QuotaState quota;
  quota.update(read({{"x-ratelimit-remaining-requests", "0"}}), kStart);
  EXPECT_FALSE(quota.exhausted(kStart)) << "without a reset time the provider decides";
}

}  // namespace
}  // namespace cutover::resilience
