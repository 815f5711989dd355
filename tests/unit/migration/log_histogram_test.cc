#include "migration/log_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace cutover::migration {
namespace {

namespace json = boost::json;

constexpr double kQuantiles[] = {0.5, 0.9, 0.95, 0.99, 0.999};
// What doubles add to the 2 % of a bucket's width when its bound is computed.
constexpr double kMaxRatio = LogHistogram::kGrowth * (1 + 1e-12);

// The nearest-rank quantile x_(ceil(n q)) that estimate_quantile reports for raw samples.
double exact_quantile(std::vector<double> samples, double q) {
  std::sort(samples.begin(), samples.end());
  const double rank = std::ceil(static_cast<double>(samples.size()) * q - 1e-9);
  const auto index =
      std::clamp<std::size_t>(static_cast<std::size_t>(std::max(rank, 1.0)), 1, samples.size());
  return samples[index - 1];
}

LogHistogram histogram_of(const std::vector<double>& samples) {
  LogHistogram histogram;
  for (double sample : samples) histogram.add(sample);
  return histogram;
}

struct Distribution {
  std::string name;
  std::function<double(std::mt19937_64&)> draw;
};

std::vector<Distribution> distributions() {
  return {
      {"lognormal",
       [](std::mt19937_64& random) {
         return std::lognormal_distribution<double>(std::log(300.0), 0.8)(random);
       }},
      {"uniform",
       [](std::mt19937_64& random) {
         return std::uniform_real_distribution<double>(5, 5000)(random);
       }},
      // Pareto with shape 1.5: a tail where p99.9 is some 100 times the median.
      {"pareto",
       [](std::mt19937_64& random) {
         const double u = std::uniform_real_distribution<double>(0, 1)(random);
         return 20.0 / std::pow(1 - u, 1 / 1.5);
       }},
      // Sub-millisecond time per token next to multi-second totals.
      {"exponential",
       [](std::mt19937_64& random) {
         return std::exponential_distribution<double>(1 / 0.4)(random);
       }},
  };
}

std::vector<double> draw(const Distribution& distribution, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<double> samples(n);
  for (auto& sample : samples) sample = distribution.draw(random);
  return samples;
}

TEST(LogHistogramTest, BucketsGrowByTwoPercentFromOneMicrosecondToTenMillionMs) {
  EXPECT_DOUBLE_EQ(LogHistogram::upper_bound(0), 1e-3);
  EXPECT_GE(LogHistogram::upper_bound(LogHistogram::kBucketCount - 1), 1e7);
  EXPECT_LT(LogHistogram::upper_bound(LogHistogram::kBucketCount - 2), 1e7);
  for (std::size_t i = 1; i < LogHistogram::kBucketCount; ++i) {
    const double ratio = LogHistogram::upper_bound(i) / LogHistogram::upper_bound(i - 1);
    ASSERT_GT(ratio, 1.0) << i;
    ASSERT_LE(ratio, kMaxRatio) << i;
  }
}

TEST(LogHistogramTest, EveryValueLiesAboveTheLowerBucketsBoundAndAtMostItsOwn) {
  std::mt19937_64 random(7);
  std::vector<double> values;
  for (int i = 0; i < 20000; ++i)
    values.push_back(std::pow(10.0, std::uniform_real_distribution<double>(-2.9, 6.9)(random)));
  // The bounds themselves, and the doubles either side of them, are where rounding would bite.
  // (Above the last bound is the overflow, tested apart.)
  for (std::size_t i = 1; i + 1 < LogHistogram::kBucketCount; i += 3) {
    const double bound = LogHistogram::upper_bound(i);
    values.insert(values.end(), {bound, std::nextafter(bound, 0.0), std::nextafter(bound, 1e9)});
  }
  for (double value : values) {
    const auto bucket = LogHistogram::bucket_of(value);
    ASSERT_GE(bucket, 1u) << value;
    ASSERT_LT(bucket, LogHistogram::kBucketCount) << value;
    ASSERT_LE(value, LogHistogram::upper_bound(bucket)) << value;
    ASSERT_GT(value, LogHistogram::upper_bound(bucket - 1)) << value;
  }
}

TEST(LogHistogramTest, ValuesAtOrBelowOneMicrosecondAreReportedAsOneMicrosecond) {
  LogHistogram histogram;
  for (double value : {-5.0, 0.0, 1e-6, 1e-3}) histogram.add(value);
  EXPECT_EQ(histogram.count_in_bucket(0), 4u);
  EXPECT_DOUBLE_EQ(histogram.quantile(1), 1e-3);
}

TEST(LogHistogramTest, ValuesAboveTheTopGoToTheLastBucketAndNaNIsIgnored) {
  LogHistogram histogram;
  histogram.add(1e12);
  histogram.add(std::numeric_limits<double>::infinity());
  histogram.add(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(histogram.count(), 2u);
  EXPECT_EQ(histogram.count_in_bucket(LogHistogram::kBucketCount - 1), 2u);
  EXPECT_DOUBLE_EQ(histogram.quantile(0.5),
                   LogHistogram::upper_bound(LogHistogram::kBucketCount - 1));
}

TEST(LogHistogramTest, AnEmptyHistogramHasNoQuantileAndNoSamples) {
  const LogHistogram histogram;
  EXPECT_TRUE(histogram.empty());
  EXPECT_EQ(histogram.count(), 0u);
  EXPECT_TRUE(std::isnan(histogram.quantile(0.5)));
  EXPECT_TRUE(histogram.representative_samples(100).empty());
  EXPECT_TRUE(histogram.to_json().at("b").as_array().empty());
}

TEST(LogHistogramTest, ACountAddsLikeRepeatedValues) {
  LogHistogram once;
  once.add(42.0, 5);
  once.add(7.0, 0);
  LogHistogram repeated;
  for (int i = 0; i < 5; ++i) repeated.add(42.0);
  EXPECT_EQ(once, repeated);
  EXPECT_EQ(once.count(), 5u);
}

TEST(LogHistogramTest, ClearForgetsEverything) {
  LogHistogram histogram = histogram_of({1, 10, 100});
  histogram.clear();
  EXPECT_EQ(histogram, LogHistogram());
  histogram.add(5);
  EXPECT_EQ(histogram, histogram_of({5}));
}

// The documented guarantee: never below the exact quantile, at most 2 % above it.
TEST(LogHistogramTest, QuantilesStayWithinTwoPercentAboveTheExactOnes) {
  std::uint64_t seed = 1;
  for (const auto& distribution : distributions()) {
    for (std::size_t n : {1, 7, 101, 1000, 50000}) {
      const auto samples = draw(distribution, n, seed++);
      const auto histogram = histogram_of(samples);
      ASSERT_EQ(histogram.count(), n);
      for (double q : kQuantiles) {
        const double exact = exact_quantile(samples, q);
        const double reported = histogram.quantile(q);
        EXPECT_GE(reported, exact) << distribution.name << " n=" << n << " q=" << q;
        EXPECT_LE(reported, exact * kMaxRatio) << distribution.name << " n=" << n << " q=" << q;
      }
    }
  }
}

TEST(LogHistogramTest, ThreeReplicasMergeIntoExactlyTheHistogramOfAllTheirData) {
  std::uint64_t seed = 100;
  for (const auto& distribution : distributions()) {
    const auto samples = draw(distribution, 30000, seed++);
    std::mt19937_64 random(seed++);
    LogHistogram replicas[3];
    for (double sample : samples)
      replicas[std::uniform_int_distribution<int>(0, 2)(random)].add(sample);
    const auto whole = histogram_of(samples);

    LogHistogram forward;
    for (const auto& replica : replicas) forward.merge(replica);
    LogHistogram backward;
    for (int i = 2; i >= 0; --i) backward.merge(replicas[i]);

    EXPECT_EQ(forward, whole) << distribution.name;
    EXPECT_EQ(backward, whole) << distribution.name;
    EXPECT_EQ(forward.count(), samples.size());
    for (std::size_t bucket = 0; bucket < LogHistogram::kBucketCount; ++bucket) {
      ASSERT_EQ(forward.count_in_bucket(bucket), whole.count_in_bucket(bucket))
          << distribution.name << " bucket " << bucket;
    }
    for (double q : kQuantiles) EXPECT_EQ(forward.quantile(q), whole.quantile(q));
  }
}

TEST(LogHistogramTest, MergingAnEmptyHistogramChangesNothing) {
  const auto some = histogram_of({3, 300, 30000});
  LogHistogram merged = some;
  merged.merge(LogHistogram());
  EXPECT_EQ(merged, some);
  LogHistogram into_empty;
  into_empty.merge(some);
  EXPECT_EQ(into_empty, some);
}

TEST(LogHistogramTest, JsonRoundTripIsExact) {
  std::uint64_t seed = 200;
  for (const auto& distribution : distributions()) {
    auto histogram = histogram_of(draw(distribution, 5000, seed++));
    histogram.add(0);
    histogram.add(1e12);
    // Through text, as the store keeps it.
    const auto parsed = LogHistogram::from_json(json::parse(json::serialize(histogram.to_json())));
    ASSERT_TRUE(parsed.has_value()) << distribution.name;
    EXPECT_EQ(*parsed, histogram) << distribution.name;
  }
  const auto empty = LogHistogram::from_json(LogHistogram().to_json());
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(LogHistogramTest, JsonListsOnlyTheBucketsThatHoldValues) {
  const auto histogram = histogram_of({1.0, 1.0, 1000.0});
  const auto buckets = histogram.to_json().at("b").as_array();
  const json::array expected{LogHistogram::bucket_of(1.0), 2, LogHistogram::bucket_of(1000.0), 1};
  EXPECT_EQ(buckets, expected);
}

TEST(LogHistogramTest, JsonWithIntegralDoublesIsReadAsALuaScriptMightWriteIt) {
  const auto parsed = LogHistogram::from_json(json::parse(R"({"s":1,"b":[400.0,3.0]})"));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->count_in_bucket(400), 3u);
}

TEST(LogHistogramTest, MalformedJsonIsRejectedWithoutThrowing) {
  const char* malformed[] = {
      R"([1, 2])",
      R"({"b": [1, 2]})",                                   // no scheme
      R"({"s": 2, "b": [1, 2]})",                           // another scheme
      R"({"s": "1", "b": [1, 2]})",                         // scheme as a string
      R"({"s": 1})",                                        // no buckets
      R"({"s": 1, "b": {"1": 2}})",                         // buckets not a list
      R"({"s": 1, "b": [1, 2, 3]})",                        // a bucket without its count
      R"({"s": 1, "b": [1, -2]})",                          // negative count
      R"({"s": 1, "b": [1, 2.5]})",                         // fractional count
      R"({"s": 1, "b": [1, "2"]})",                         // count as a string
      R"({"s": 1, "b": [1, true]})",                        // count as a boolean
      R"({"s": 1, "b": [1, null]})",                        // no count
      R"({"s": 1, "b": [-1, 2]})",                          // negative bucket
      R"({"s": 1, "b": [1164, 2]})",                        // bucket past the last
      R"({"s": 1, "b": [1.5, 2]})",                         // fractional bucket
      R"({"s": 1, "b": [5, 1, 4, 1]})",                     // buckets out of order
      R"({"s": 1, "b": [5, 1, 5, 1]})",                     // a bucket twice
      R"({"s": 1, "b": [1, 1e300]})",                       // a count no double tells apart
      R"({"s": 1, "b": [1, 18446744073709551615, 2, 1]})",  // the total overflows
  };
  for (const char* text : malformed) {
    std::optional<LogHistogram> parsed;
    EXPECT_NO_THROW(parsed = LogHistogram::from_json(json::parse(text))) << text;
    EXPECT_FALSE(parsed.has_value()) << text;
  }
}

TEST(LogHistogramTest, RepresentativeSamplesAreEveryValueRoundedUpWhenTheyFit) {
  const auto samples = draw(distributions()[0], 1000, 300);
  const auto histogram = histogram_of(samples);
  const auto representative = histogram.representative_samples(4096);
  ASSERT_EQ(representative.size(), samples.size());
  auto sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    ASSERT_EQ(representative[i], LogHistogram::upper_bound(LogHistogram::bucket_of(sorted[i])))
        << i;
  }
  for (double q : kQuantiles) EXPECT_EQ(exact_quantile(representative, q), histogram.quantile(q));
}

TEST(LogHistogramTest, FewerRepresentativeSamplesNeverUnderstateAQuantile) {
  std::uint64_t seed = 400;
  for (const auto& distribution : distributions()) {
    const auto samples = draw(distribution, 50000, seed++);
    const auto histogram = histogram_of(samples);
    for (std::size_t max : {59, 1000, 4096}) {
      const auto representative = histogram.representative_samples(max);
      ASSERT_EQ(representative.size(), max);
      EXPECT_TRUE(std::is_sorted(representative.begin(), representative.end()));
      EXPECT_EQ(representative.back(), histogram.quantile(1));
      const double step = 1.0 / static_cast<double>(max);
      for (double q : kQuantiles) {
        const double reported = exact_quantile(representative, q);
        EXPECT_GE(reported, histogram.quantile(q)) << distribution.name << " max=" << max;
        EXPECT_GE(reported, exact_quantile(samples, q)) << distribution.name << " max=" << max;
        EXPECT_LE(reported, histogram.quantile(std::min(1.0, q + step)))
            << distribution.name << " max=" << max << " q=" << q;
      }
    }
  }
}

}  // namespace
}  // namespace cutover::migration
