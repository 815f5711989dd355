// The statistics behind the migration gates: confidence bounds on an error rate, a latency
// quantile and a mean score, each turned into a verdict that fails fast and passes slowly.
//
// A gate only fails when it is confident the candidate is worse than its limit, and only passes
// when it is confident the candidate is within it; in between it stays inconclusive and the
// migration waits for more traffic. `confidence` is always the two-sided level of the interval
// (0.99: each end is a one-sided 99.5 % bound), as in config::Gates.
//
// Pure functions without state; any thread may call them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace cutover::migration {

// `hold`: the candidate is not judged worse, but the migration must not take its next step yet
// (the capacity gate: the next weight would need more of the candidate's quota than allowed). It
// keeps the weight without counting towards the pause for insufficient data, and never rolls back.
enum class Verdict { pass, fail, inconclusive, hold };

// "pass", "fail", "inconclusive" or "hold".
std::string_view verdict_name(Verdict verdict);

// Any fail fails; otherwise any inconclusive (or no verdict at all) is inconclusive; otherwise
// any hold holds; otherwise pass. An empty list is inconclusive because no evidence is not a pass.
Verdict combine(std::initializer_list<Verdict> verdicts);
Verdict combine(const std::vector<Verdict>& verdicts);

struct Interval {
  double lower = 0;
  double upper = 0;
};

// Inverse of the standard normal CDF (Acklam's approximation refined by one Halley step,
// accurate to about 1e-12). p <= 0 gives -infinity, p >= 1 gives +infinity.
double normal_quantile(double p);

// Standard normal CDF.
double normal_cdf(double x);

// Wilson score interval for a binomial proportion: `failures` out of `trials` at the two-sided
// `confidence`. Unlike the Wald interval it stays inside [0, 1] and does not collapse to a
// point at 0 failures. No trials gives {0, 1}.
Interval wilson_interval(std::uint64_t failures, std::uint64_t trials, double confidence);

// Clopper-Pearson ("exact") interval for the same proportion: the binomial tails themselves
// rather than a normal approximation, so it holds its level at the handful of failures where an
// error-rate gate decides. No trials gives {0, 1}.
Interval clopper_pearson_interval(std::uint64_t failures, std::uint64_t trials, double confidence);

struct RateJudgement {
  Verdict verdict = Verdict::inconclusive;
  double observed = 0;  // failures / trials; 0 without trials
  Interval bounds{0, 1};
  std::uint64_t failures = 0;
  std::uint64_t trials = 0;
};

// Error-rate gate on Clopper-Pearson bounds: fail when the lower bound exceeds `max_rate`, pass
// when the upper bound is at most `max_rate`, inconclusive otherwise or below `min_trials`.
// Not Wilson: with few failures its lower bound is too high, so a candidate right at a 1 % limit
// would fail a 0.99 gate at 10 requests with probability 0.096 instead of at most 0.005.
// With a 1 % limit at 0.95, 0 failures pass from 368 trials; 3 of 60 (5 %) and 2 of 20 (10 %) fail.
RateJudgement judge_error_rate(std::uint64_t failures, std::uint64_t trials, double max_rate,
                               double confidence, std::uint64_t min_trials = 1);

// Page's CUSUM on a Bernoulli stream: watches an error rate for an abrupt rise, whatever the
// history before it. A window's bounds dilute a failure that starts late in a long healthy
// stage (after a million good requests, 30 % failing needs tens of thousands of requests to move
// the stage's lower bound above 1 %); the CUSUM forgets good history by construction, so the
// evidence it needs after the change is the same after ten requests or ten million.
//
// Each observation adds its log-likelihood ratio of "failing at kRiseFactor × max_rate" over
// "failing at max_rate" to a sum floored at 0; the alarm is at
//   h = ln(kRequestsPerFalseAlarm / (1 - confidence)),
// and Lorden's bound puts the mean run between false alarms at or above e^h observations when
// the true rate is max_rate itself (1,000,000 at confidence 0.99), and far above at lower rates.
// Failing at 30 % against a 1 % limit raises the sum by about 0.31 a request: the alarm comes
// some 45 requests after the change. Observations may come in batches (add(failures, trials));
// flooring only between batches can only delay the alarm, never bring a false one forward.
// max_rate <= 0 or >= 1 disables it (the window gate already fails any error at 0).
class RateChangeDetector {
 public:
  static constexpr double kRiseFactor = 3;
  static constexpr double kRequestsPerFalseAlarm = 1e4;

  RateChangeDetector(double max_rate, double confidence);
  void add(std::uint64_t failures, std::uint64_t trials);
  void reset();
  bool alarmed() const { return enabled_ && statistic_ >= threshold_; }
  double statistic() const { return statistic_; }
  double threshold() const { return threshold_; }
  // The rate the alarm tests for against max_rate.
  double risen_rate() const { return risen_rate_; }
  // Failures and trials since the sum last stood at 0: the run of evidence behind an alarm.
  std::uint64_t failures_in_run() const { return run_failures_; }
  std::uint64_t trials_in_run() const { return run_trials_; }

 private:
  bool enabled_ = false;
  double risen_rate_ = 0;      // p1
  double failure_weight_ = 0;  // ln(p1 / p0)
  double success_weight_ = 0;  // ln((1 - p1) / (1 - p0)), negative
  double threshold_ = 0;
  double statistic_ = 0;
  std::uint64_t run_failures_ = 0;
  std::uint64_t run_trials_ = 0;
};

struct QuantileEstimate {
  double point = 0;  // NaN without samples
  double lower = 0;  // -infinity when too few samples lie below the quantile to bound it
  double upper = 0;  // +infinity when too few samples lie above the quantile to bound it
  std::size_t samples = 0;
};

// The `quantile` (in [0, 1]) of `samples` (any order) with a distribution-free confidence
// interval made of two order statistics; see statistics.cc for the formula. The point is the
// nearest-rank order statistic x_(ceil(n q)), so lower <= point <= upper.
QuantileEstimate estimate_quantile(std::vector<double> samples, double quantile, double confidence);

struct LatencyJudgement {
  Verdict verdict = Verdict::inconclusive;
  QuantileEstimate estimate;
  double limit = 0;
};

// Latency gate: fail when the quantile's lower bound exceeds `limit`, pass when its upper bound
// is at most `limit`, inconclusive otherwise or below `min_samples`. The default 59 is the
// fewest samples whose maximum bounds a p95 at one-sided 95 % (0.95^59 < 0.05); at higher
// confidence the pass side needs more (the upper bound stays infinite until then).
LatencyJudgement judge_quantile(const std::vector<double>& samples, double quantile, double limit,
                                double confidence, std::size_t min_samples = 59);

struct MeanJudgement {
  Verdict verdict = Verdict::inconclusive;
  double mean = 0;  // NaN without samples
  Interval bounds{0, 1};
  std::size_t samples = 0;
};

// Agreement gate on scores in [0, 1]: the normal-approximation interval mean ± z s / sqrt(n) with
// the sample standard deviation s. Fail when its upper bound is below `min_mean`, pass when its
// lower bound is at least `min_mean`, inconclusive otherwise or below `min_samples`. With all
// scores equal the interval is the mean itself; with fewer than two scores, whose spread is
// unknown, it is the whole range [0, 1].
MeanJudgement judge_mean_at_least(const std::vector<double>& scores, double min_mean,
                                  double confidence, std::size_t min_samples);

// One-sided p-value of the Wilcoxon signed-rank test that paired differences (candidate minus
// primary, same prompt) are shifted above zero. Zero differences are dropped (Wilcoxon's
// convention), tied magnitudes get their average rank with the variance corrected for ties, and
// the normal approximation uses a continuity correction. 1 when no difference is non-zero.
double wilcoxon_signed_rank_p_greater(const std::vector<double>& differences);

}  // namespace cutover::migration
