#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "migration/statistics.h"

namespace cutover::migration {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Exact binomial probability, for checking the gates' error rates against their level.
double binomial_pmf(std::uint64_t n, std::uint64_t k, double p) {
  const double log_choose = std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
  return std::exp(log_choose + k * std::log(p) + (n - k) * std::log1p(-p));
}

// Uniform in [0, 1) from the top 53 bits, the same on every standard library.
double uniform(std::mt19937_64& random) { return (random() >> 11) * 0x1.0p-53; }

std::vector<double> evenly_spread(double from, double to, std::size_t count) {
  std::vector<double> samples;
  for (std::size_t i = 0; i < count; ++i) {
    samples.push_back(from + (to - from) * static_cast<double>(i) / static_cast<double>(count - 1));
  }
  return samples;
}

TEST(GateStatistics, NormalQuantileMatchesKnownValues) {
  EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-9);
  EXPECT_NEAR(normal_quantile(0.995), 2.5758293035489, 1e-9);
  EXPECT_NEAR(normal_quantile(0.9), 1.2815515655446008, 1e-9);
  EXPECT_NEAR(normal_quantile(0.01), -2.3263478740408408, 1e-9);
  EXPECT_NEAR(normal_quantile(1e-10), -6.361340902404056, 1e-7);
  EXPECT_EQ(normal_quantile(0.5), 0.0);
  EXPECT_EQ(normal_quantile(0.0), -kInfinity);
  EXPECT_EQ(normal_quantile(1.0), kInfinity);
  EXPECT_NEAR(normal_cdf(normal_quantile(0.3)), 0.3, 1e-12);
}

TEST(GateStatistics, WilsonIntervalMatchesKnownValues) {
  const auto none_of_300 = wilson_interval(0, 300, 0.95);
  EXPECT_EQ(none_of_300.lower, 0.0);
  EXPECT_NEAR(none_of_300.upper, 0.0126430, 1e-6);
  const auto five_of_100 = wilson_interval(5, 100, 0.95);
  EXPECT_NEAR(five_of_100.lower, 0.0215437, 1e-6);
  EXPECT_NEAR(five_of_100.upper, 0.1117505, 1e-6);
  const auto all_of_10 = wilson_interval(10, 10, 0.95);
  EXPECT_EQ(all_of_10.upper, 1.0);
  EXPECT_LT(all_of_10.lower, 1.0);
  const auto nothing = wilson_interval(0, 0, 0.95);
  EXPECT_EQ(nothing.lower, 0.0);
  EXPECT_EQ(nothing.upper, 1.0);
}

TEST(GateStatistics, ClopperPearsonIntervalMatchesKnownValues) {
  // R: binom.test(5, 100)$conf.int is 0.01643188 0.11283491.
  const auto five_of_100 = clopper_pearson_interval(5, 100, 0.95);
  EXPECT_NEAR(five_of_100.lower, 0.0164319, 1e-6);
  EXPECT_NEAR(five_of_100.upper, 0.1128349, 1e-6);
  // With no failures the upper bound has the closed form 1 - (α/2)^(1/n).
  EXPECT_NEAR(clopper_pearson_interval(0, 300, 0.95).upper, 1 - std::pow(0.025, 1.0 / 300), 1e-9);
  EXPECT_NEAR(clopper_pearson_interval(1, 1, 0.95).lower, 0.025, 1e-9);
  const auto fifty_of_1000 = clopper_pearson_interval(50, 1000, 0.99);
  EXPECT_NEAR(fifty_of_1000.lower, 0.0339267, 1e-6);
  EXPECT_NEAR(fifty_of_1000.upper, 0.0705044, 1e-6);
}

TEST(GateStatistics, ClopperPearsonEndsMatchTheirClosedForms) {
  // 0 of n: the lower bound is exactly 0 and the upper 1 - (α/2)^(1/n); n of n mirrors it.
  const auto none_of_20 = clopper_pearson_interval(0, 20, 0.95);
  EXPECT_EQ(none_of_20.lower, 0.0);
  EXPECT_NEAR(none_of_20.upper, 0.168433470983, 1e-10);
  const auto all_of_20 = clopper_pearson_interval(20, 20, 0.95);
  EXPECT_NEAR(all_of_20.lower, 0.831566529017, 1e-10);
  EXPECT_EQ(all_of_20.upper, 1.0);
  // 5 of 100 at 95 % from an independent 40-digit evaluation (mpmath's betainc).
  const auto five_of_100 = clopper_pearson_interval(5, 100, 0.95);
  EXPECT_NEAR(five_of_100.lower, 0.0164318791821, 1e-10);
  EXPECT_NEAR(five_of_100.upper, 0.112834911105, 1e-10);
}

TEST(GateStatistics, ClopperPearsonAgreesWithWilsonAtLargeCounts) {
  const auto exact = clopper_pearson_interval(10'000, 1'000'000, 0.99);
  const auto wilson = wilson_interval(10'000, 1'000'000, 0.99);
  EXPECT_NEAR(exact.lower, wilson.lower, 2e-5);
  EXPECT_NEAR(exact.upper, wilson.upper, 2e-5);
  EXPECT_LT(exact.lower, 0.01);
  EXPECT_GT(exact.upper, 0.01);
}

TEST(GateStatistics, ErrorRateGatePassesOnlyAfterEnoughCleanRequests) {
  // SEMANTICS' 1 % limit at 95 %: zero errors are not yet enough at 100 or 300 requests.
  EXPECT_EQ(judge_error_rate(0, 100, 0.01, 0.95).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_error_rate(0, 300, 0.01, 0.95).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_error_rate(0, 367, 0.01, 0.95).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_error_rate(0, 368, 0.01, 0.95).verdict, Verdict::pass);
  EXPECT_EQ(judge_error_rate(1, 368, 0.01, 0.95).verdict, Verdict::inconclusive);
}

// The request count at which a candidate failing at a steady `rate` first fails the gate.
std::uint64_t requests_until_fail(double rate, double confidence) {
  for (std::uint64_t n = 1; n <= 10'000; ++n) {
    const auto failures = static_cast<std::uint64_t>(std::floor(rate * n + 1e-9));
    if (judge_error_rate(failures, n, 0.01, confidence).verdict == Verdict::fail) return n;
  }
  return 0;
}

TEST(GateStatistics, ErrorRateGateFailsFast) {
  EXPECT_EQ(judge_error_rate(2, 30, 0.01, 0.95).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_error_rate(2, 40, 0.01, 0.95).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_error_rate(3, 60, 0.01, 0.95).verdict, Verdict::fail);
  EXPECT_EQ(requests_until_fail(0.05, 0.95), 60u);
  EXPECT_EQ(requests_until_fail(0.10, 0.95), 20u);
  // The configured default, 0.99, waits for more evidence.
  EXPECT_EQ(requests_until_fail(0.05, 0.99), 100u);
  EXPECT_EQ(requests_until_fail(0.10, 0.99), 30u);
}

TEST(GateStatistics, OneFailureInTenDoesNotFailAOnePercentGate) {
  // Wilson would fail it: its lower bound for 1 of 10 is 1.8 %.
  EXPECT_GT(wilson_interval(1, 10, 0.95).lower, 0.01);
  EXPECT_EQ(judge_error_rate(1, 10, 0.01, 0.95).verdict, Verdict::inconclusive);
}

TEST(GateStatistics, ErrorRateGateFalselyFailsNoMoreOftenThanItsLevel) {
  // A candidate exactly at the limit must be failed with probability at most (1 - confidence)/2
  // at any one look; Wilson reaches 0.096 at n = 10 for 0.99.
  for (const double confidence : {0.95, 0.99}) {
    for (const std::uint64_t n : {5u, 10u, 20u, 50u, 100u, 200u, 400u}) {
      double false_fail = 0;
      for (std::uint64_t k = 0; k <= n; ++k) {
        if (judge_error_rate(k, n, 0.01, confidence).verdict == Verdict::fail) {
          false_fail += binomial_pmf(n, k, 0.01);
        }
      }
      EXPECT_LE(false_fail, (1 - confidence) / 2) << "n=" << n << " confidence=" << confidence;
    }
  }
}

TEST(GateStatistics, ErrorRateGateReportsWhatItSaw) {
  const auto judged = judge_error_rate(5, 100, 0.01, 0.95);
  EXPECT_EQ(judged.failures, 5u);
  EXPECT_EQ(judged.trials, 100u);
  EXPECT_DOUBLE_EQ(judged.observed, 0.05);
  EXPECT_NEAR(judged.bounds.lower, 0.0164319, 1e-6);
  EXPECT_EQ(judged.verdict, Verdict::fail);
}

TEST(GateStatistics, ErrorRateGateIsInconclusiveWithoutEnoughTrials) {
  EXPECT_EQ(judge_error_rate(0, 0, 0.01, 0.95).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_error_rate(0, 0, 0.01, 0.95).observed, 0.0);
  EXPECT_EQ(judge_error_rate(50, 100, 0.01, 0.95).verdict, Verdict::fail);
  EXPECT_EQ(judge_error_rate(50, 100, 0.01, 0.95, 101).verdict, Verdict::inconclusive);
}

TEST(GateStatistics, MedianBoundsAreTheTabulatedOrderStatistics) {
  // Samples 1..100: the classic 95 % interval for a median of 100 is x_(40) to x_(61).
  const auto estimate = estimate_quantile(evenly_spread(1, 100, 100), 0.5, 0.95);
  EXPECT_EQ(estimate.samples, 100u);
  EXPECT_DOUBLE_EQ(estimate.point, 50);
  EXPECT_DOUBLE_EQ(estimate.lower, 40);
  EXPECT_DOUBLE_EQ(estimate.upper, 61);
}

TEST(GateStatistics, QuantileIgnoresSampleOrder) {
  std::vector<double> shuffled = evenly_spread(1, 100, 100);
  std::mt19937_64 random(7);
  std::shuffle(shuffled.begin(), shuffled.end(), random);
  const auto estimate = estimate_quantile(shuffled, 0.95, 0.95);
  EXPECT_DOUBLE_EQ(estimate.point, 95);
  EXPECT_LE(estimate.lower, 95);
  EXPECT_GT(estimate.upper, 95);
}

TEST(GateStatistics, QuantileBoundsBracketThePointAndWidenWithConfidence) {
  const auto samples = evenly_spread(10, 500, 200);
  for (const double quantile : {0.5, 0.9, 0.95, 0.99}) {
    const auto loose = estimate_quantile(samples, quantile, 0.90);
    const auto strict = estimate_quantile(samples, quantile, 0.99);
    EXPECT_LE(loose.lower, loose.point) << quantile;
    EXPECT_GE(loose.upper, loose.point) << quantile;
    EXPECT_LE(strict.lower, loose.lower) << quantile;
    EXPECT_GE(strict.upper, loose.upper) << quantile;
    EXPECT_TRUE(strict.lower < loose.lower || strict.upper > loose.upper) << quantile;
  }
}

TEST(GateStatistics, SampleMaximumBoundsP95FromFiftyNineSamples) {
  // One-sided 95 % is a two-sided 90 % interval: 0.95^59 < 0.05 <= 0.95^58.
  const auto at_59 = estimate_quantile(evenly_spread(1, 59, 59), 0.95, 0.90);
  EXPECT_DOUBLE_EQ(at_59.upper, 59);
  const auto at_58 = estimate_quantile(evenly_spread(1, 58, 58), 0.95, 0.90);
  EXPECT_EQ(at_58.upper, kInfinity);
  EXPECT_DOUBLE_EQ(at_58.lower, 52);
}

TEST(GateStatistics, QuantileBoundsCoverTheTrueQuantile) {
  // Uniform samples: the true p90 is 0.9. Two-sided 90 % bounds must cover it in at least about
  // 90 % of 2000 repetitions (their exact level is a little higher, being discrete).
  std::mt19937_64 random(42);
  int covered = 0;
  constexpr int kRepetitions = 2000;
  for (int repetition = 0; repetition < kRepetitions; ++repetition) {
    std::vector<double> samples(80);
    for (auto& sample : samples) sample = uniform(random);
    const auto estimate = estimate_quantile(samples, 0.9, 0.90);
    covered += estimate.lower <= 0.9 && 0.9 <= estimate.upper;
  }
  EXPECT_GE(covered, kRepetitions * 0.88);
  EXPECT_LE(covered, kRepetitions * 0.99) << "bounds too wide to be useful";
}

TEST(GateStatistics, QuantileOfNothingIsUnknown) {
  const auto estimate = estimate_quantile({}, 0.95, 0.95);
  EXPECT_TRUE(std::isnan(estimate.point));
  EXPECT_EQ(estimate.samples, 0u);
  EXPECT_EQ(estimate.lower, -kInfinity);
  EXPECT_EQ(estimate.upper, kInfinity);
}

TEST(GateStatistics, LatencyGateFailsAClearlySlowerCandidate) {
  const auto judged = judge_quantile(evenly_spread(150, 400, 200), 0.95, 100, 0.99, 59);
  EXPECT_EQ(judged.verdict, Verdict::fail);
  EXPECT_GT(judged.estimate.lower, 100);
  EXPECT_EQ(judged.limit, 100);
}

TEST(GateStatistics, LatencyGatePassesAClearlyFasterCandidate) {
  const auto judged = judge_quantile(evenly_spread(20, 60, 200), 0.95, 100, 0.99, 59);
  EXPECT_EQ(judged.verdict, Verdict::pass);
  EXPECT_LE(judged.estimate.upper, 100);
}

TEST(GateStatistics, LatencyGateIsInconclusiveNearTheLimit) {
  // p95 of 50..150 is about 145; the limit sits inside its bounds.
  const auto judged = judge_quantile(evenly_spread(50, 150, 200), 0.95, 145, 0.99, 59);
  EXPECT_EQ(judged.verdict, Verdict::inconclusive);
  EXPECT_LE(judged.estimate.lower, 145);
  EXPECT_GT(judged.estimate.upper, 145);
}

TEST(GateStatistics, LatencyGateWaitsForMinimumSamples) {
  const std::vector<double> slow(10, 1000.0);
  EXPECT_EQ(judge_quantile(slow, 0.95, 100, 0.99, 1).verdict, Verdict::fail);
  EXPECT_EQ(judge_quantile(slow, 0.95, 100, 0.99, 59).verdict, Verdict::inconclusive);
  EXPECT_EQ(judge_quantile({}, 0.95, 100, 0.99, 0).verdict, Verdict::inconclusive);
}

TEST(GateStatistics, LatencyGateCannotPassTooFewSamples) {
  // At 0.99 the sample maximum bounds p95 only from 104 samples; fewer stay inconclusive.
  EXPECT_EQ(judge_quantile(std::vector<double>(103, 10.0), 0.95, 100, 0.99, 59).verdict,
            Verdict::inconclusive);
  EXPECT_EQ(judge_quantile(std::vector<double>(104, 10.0), 0.95, 100, 0.99, 59).verdict,
            Verdict::pass);
}

std::vector<double> alternating(double a, double b, std::size_t count) {
  std::vector<double> scores;
  for (std::size_t i = 0; i < count; ++i) scores.push_back(i % 2 == 0 ? a : b);
  return scores;
}

TEST(GateStatistics, MeanGateBoundsFollowTheNormalApproximation) {
  // Mean 0.9, sample standard deviation 0.1 * sqrt(100/99), z = 1.96.
  const auto judged = judge_mean_at_least(alternating(0.8, 1.0, 100), 0.85, 0.95, 50);
  const double margin = 1.959963984540054 * 0.1 * std::sqrt(100.0 / 99) / 10;
  EXPECT_NEAR(judged.mean, 0.9, 1e-12);
  EXPECT_NEAR(judged.bounds.lower, 0.9 - margin, 1e-9);
  EXPECT_NEAR(judged.bounds.upper, 0.9 + margin, 1e-9);
  EXPECT_EQ(judged.samples, 100u);
  EXPECT_EQ(judged.verdict, Verdict::pass);
}

TEST(GateStatistics, MeanGateFailsWhenConfidentlyBelow) {
  EXPECT_EQ(judge_mean_at_least(alternating(0.8, 1.0, 100), 0.95, 0.95, 50).verdict, Verdict::fail);
  EXPECT_EQ(judge_mean_at_least(alternating(0.8, 1.0, 100), 0.9, 0.95, 50).verdict,
            Verdict::inconclusive);
}

TEST(GateStatistics, MeanGateWaitsForMinimumSamples) {
  EXPECT_EQ(judge_mean_at_least(alternating(0.0, 0.1, 49), 0.9, 0.95, 50).verdict,
            Verdict::inconclusive);
  EXPECT_EQ(judge_mean_at_least(alternating(0.0, 0.1, 50), 0.9, 0.95, 50).verdict, Verdict::fail);
}

TEST(GateStatistics, MeanOfEqualScoresHasNoSpread) {
  const auto judged = judge_mean_at_least(std::vector<double>(60, 0.9), 0.9, 0.99, 50);
  EXPECT_EQ(judged.bounds.lower, 0.9);
  EXPECT_EQ(judged.bounds.upper, 0.9);
  EXPECT_EQ(judged.verdict, Verdict::pass);
  EXPECT_EQ(judge_mean_at_least(std::vector<double>(60, 0.89), 0.9, 0.99, 50).verdict,
            Verdict::fail);
}

TEST(GateStatistics, MeanOfOneScoreSpansTheWholeRange) {
  const auto judged = judge_mean_at_least({1.0}, 0.5, 0.95, 1);
  EXPECT_EQ(judged.mean, 1.0);
  EXPECT_EQ(judged.bounds.lower, 0.0);
  EXPECT_EQ(judged.bounds.upper, 1.0);
  EXPECT_EQ(judged.verdict, Verdict::inconclusive);
  EXPECT_TRUE(std::isnan(judge_mean_at_least({}, 0.5, 0.95, 0).mean));
}

TEST(GateStatistics, CombineFailsOnAnyFailAndPassesOnlyWhenAllPass) {
  EXPECT_EQ(combine({Verdict::pass, Verdict::pass}), Verdict::pass);
  EXPECT_EQ(combine({Verdict::pass, Verdict::inconclusive}), Verdict::inconclusive);
  EXPECT_EQ(combine({Verdict::inconclusive, Verdict::fail, Verdict::pass}), Verdict::fail);
  EXPECT_EQ(combine(std::vector<Verdict>{Verdict::pass, Verdict::fail}), Verdict::fail);
  EXPECT_EQ(combine(std::vector<Verdict>{Verdict::pass}), Verdict::pass);
  EXPECT_EQ(combine(std::vector<Verdict>{}), Verdict::inconclusive);
  EXPECT_EQ(combine({}), Verdict::inconclusive);
}

TEST(GateStatistics, HoldKeepsThePassOfTheOthersFromAdvancingButYieldsToFailAndMissingData) {
  EXPECT_EQ(combine({Verdict::pass, Verdict::hold}), Verdict::hold);
  EXPECT_EQ(combine({Verdict::hold, Verdict::inconclusive}), Verdict::inconclusive);
  EXPECT_EQ(combine({Verdict::hold, Verdict::fail}), Verdict::fail);
}

TEST(GateStatistics, VerdictNames) {
  EXPECT_EQ(verdict_name(Verdict::pass), "pass");
  EXPECT_EQ(verdict_name(Verdict::fail), "fail");
  EXPECT_EQ(verdict_name(Verdict::inconclusive), "inconclusive");
  EXPECT_EQ(verdict_name(Verdict::hold), "hold");
}

TEST(GateStatistics, WilcoxonMatchesAHandComputedExample) {
  // Non-zero |d| ranked with ties averaged: W+ = 44.5 of n = 10, tie term (2^3-2)+(3^3-3) = 30,
  // z = (44.5 - 27.5 - 0.5) / sqrt(96.25 - 30/48).
  const std::vector<double> differences = {1.5, -0.5, 2, 0, 3, 2, -1, 4, 0.5, 2.5, 0, -2};
  EXPECT_NEAR(wilcoxon_signed_rank_p_greater(differences), 0.045770632744488, 1e-9);
}

TEST(GateStatistics, WilcoxonSeesShiftsAndTheirDirection) {
  std::vector<double> slower;
  for (int i = 1; i <= 30; ++i) slower.push_back(i % 5 == 0 ? -1.0 * i : 1.0 * i);
  EXPECT_LT(wilcoxon_signed_rank_p_greater(slower), 0.01);
  std::vector<double> faster;
  for (const double d : slower) faster.push_back(-d);
  EXPECT_GT(wilcoxon_signed_rank_p_greater(faster), 0.99);
  EXPECT_NEAR(wilcoxon_signed_rank_p_greater({-3, -2, -1, 1, 2, 3}), 0.5, 0.15);
  EXPECT_EQ(wilcoxon_signed_rank_p_greater({0, 0, 0}), 1.0);
  EXPECT_EQ(wilcoxon_signed_rank_p_greater({}), 1.0);
}

TEST(RateChangeDetector, ItsThresholdFollowsTheConfidence) {
  EXPECT_NEAR(RateChangeDetector(0.01, 0.99).threshold(), std::log(1e6), 1e-9);
  EXPECT_NEAR(RateChangeDetector(0.01, 0.999).threshold(), std::log(1e7), 1e-9);
}

TEST(RateChangeDetector, SeesAFailureAfterAMillionHealthyRequestsAsFastAsAfterNone) {
  std::mt19937_64 random(11);
  std::bernoulli_distribution healthy(0.005);
  RateChangeDetector after_history(0.01, 0.99);
  std::uint64_t failures = 0, trials = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    const bool failed = healthy(random);
    failures += failed;
    ++trials;
    after_history.add(failed, 1);
    ASSERT_FALSE(after_history.alarmed()) << "false alarm at request " << i;
  }
  RateChangeDetector fresh(0.01, 0.99);
  // 30 % failing, spread evenly: 3 of every 10.
  auto needed = [](RateChangeDetector& detector, std::uint64_t* failures, std::uint64_t* trials) {
    for (int k = 1; k <= 10'000; ++k) {
      const bool failed = k % 10 == 1 || k % 10 == 4 || k % 10 == 7;
      detector.add(failed, 1);
      if (failures) *failures += failed, ++*trials;
      if (detector.alarmed()) return k;
    }
    return -1;
  };
  const int fresh_needs = needed(fresh, nullptr, nullptr);
  const int history_needs = needed(after_history, &failures, &trials);
  EXPECT_GT(fresh_needs, 10);
  EXPECT_LT(fresh_needs, 60);  // about 13.8 / 0.315 per request
  EXPECT_LE(history_needs, fresh_needs + 10);
  // The run behind the alarm starts near the change, not a million requests back.
  EXPECT_LT(after_history.trials_in_run(), 200u);
  // Over the whole window the same failures are invisible to the bound at this point.
  EXPECT_NE(judge_error_rate(failures, trials, 0.01, 0.99).verdict, Verdict::fail);
}

TEST(RateChangeDetector, FalseAlarmsAtTheLimitAreNoMoreFrequentThanLordensBound) {
  // Confidence 0 puts the threshold at ln(2e4): at most one alarm per 20,000 requests at a true
  // rate equal to the limit, in expectation. Count them over 4,000,000.
  RateChangeDetector detector(0.01, 0.0);
  ASSERT_NEAR(detector.threshold(), std::log(2e4), 1e-9);
  std::mt19937_64 random(3);
  std::bernoulli_distribution at_limit(0.01);
  int alarms = 0;
  const int requests = 4'000'000;
  for (int i = 0; i < requests; ++i) {
    detector.add(at_limit(random), 1);
    if (detector.alarmed()) {
      ++alarms;
      detector.reset();
    }
  }
  EXPECT_LE(alarms, requests / 20'000);
  // Twice the limit is a real rise: it is caught over and over.
  RateChangeDetector risen(0.01, 0.0);
  std::bernoulli_distribution doubled(0.02);
  int caught = 0;
  for (int i = 0; i < 400'000; ++i) {
    risen.add(doubled(random), 1);
    if (risen.alarmed()) {
      ++caught;
      risen.reset();
    }
  }
  EXPECT_GT(caught, 20);
}

TEST(RateChangeDetector, BatchesNeverAlarmEarlierThanSingleRequests) {
  std::mt19937_64 random(5);
  std::bernoulli_distribution failing(0.2);
  RateChangeDetector single(0.01, 0.99), batched(0.01, 0.99);
  int single_at = -1, batched_at = -1;
  std::uint64_t batch_failures = 0, batch_trials = 0;
  for (int i = 1; i <= 5'000 && batched_at < 0; ++i) {
    const bool failed = failing(random);
    single.add(failed, 1);
    if (single_at < 0 && single.alarmed()) single_at = i;
    batch_failures += failed;
    ++batch_trials;
    if (batch_trials == 25) {
      batched.add(batch_failures, batch_trials);
      batch_failures = batch_trials = 0;
      if (batched.alarmed()) batched_at = i;
    }
  }
  ASSERT_GT(single_at, 0);
  ASSERT_GT(batched_at, 0);
  EXPECT_GE(batched_at, single_at);
}

TEST(RateChangeDetector, ForgetsGoodHistoryButNeverGoesNegative) {
  RateChangeDetector detector(0.05, 0.95);
  detector.add(0, 100'000);
  EXPECT_EQ(detector.statistic(), 0);
  EXPECT_EQ(detector.trials_in_run(), 0u);
  detector.add(3, 3);
  EXPECT_NEAR(detector.statistic(), 3 * std::log(3.0), 1e-9);
  EXPECT_EQ(detector.failures_in_run(), 3u);
  detector.reset();
  EXPECT_EQ(detector.statistic(), 0);
  EXPECT_FALSE(detector.alarmed());
}

TEST(RateChangeDetector, IsOffWithoutARateToWatch) {
  for (const double limit : {0.0, 1.0}) {
    RateChangeDetector detector(limit, 0.99);
    detector.add(1'000, 1'000);
    EXPECT_FALSE(detector.alarmed());
  }
}

}  // namespace
}  // namespace cutover::migration
