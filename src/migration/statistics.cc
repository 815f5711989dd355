// Gate statistics: Wilson and Clopper-Pearson bounds, order-statistic quantile bounds, a
// normal-approximation mean interval and the Wilcoxon signed-rank test. See statistics.h for what
// each gate decides.
#include "migration/statistics.h"

#include <boost/math/special_functions/beta.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>

namespace cutover::migration {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

template <typename Range>
Verdict combine_range(const Range& verdicts) {
  bool any_inconclusive = std::empty(verdicts);
  bool any_hold = false;
  for (const Verdict verdict : verdicts) {
    if (verdict == Verdict::fail) return Verdict::fail;
    if (verdict == Verdict::inconclusive) any_inconclusive = true;
    if (verdict == Verdict::hold) any_hold = true;
  }
  if (any_inconclusive) return Verdict::inconclusive;
  return any_hold ? Verdict::hold : Verdict::pass;
}

// Boost.Math reports a failure as an errno and a NaN instead of an exception: the gates run on
// the migration engine's loop, which must not unwind over a statistic.
using NoThrowPolicy = boost::math::policies::policy<
    boost::math::policies::domain_error<boost::math::policies::errno_on_error>,
    boost::math::policies::overflow_error<boost::math::policies::errno_on_error>,
    boost::math::policies::evaluation_error<boost::math::policies::errno_on_error>>;

// The z of each end of a two-sided interval at `confidence`.
double two_sided_z(double confidence) {
  return normal_quantile(0.5 + std::clamp(confidence, 0.0, 1.0) / 2);
}

// cdf[k] = P(X <= k) for X ~ Binomial(n, p), k = 0..n. The probabilities are stepped in log
// space from P(X = 0) so that large n neither overflows a binomial coefficient nor underflows
// (1-p)^n, and without lgamma, whose global signgam makes it racy.
std::vector<double> binomial_cdf(std::size_t n, double p) {
  std::vector<double> cdf(n + 1, 1.0);
  if (p <= 0) return cdf;
  if (p >= 1) {
    std::fill(cdf.begin(), cdf.end() - 1, 0.0);
    return cdf;
  }
  const double log_odds = std::log(p) - std::log1p(-p);
  double log_pmf = static_cast<double>(n) * std::log1p(-p);
  double cumulative = 0;
  for (std::size_t k = 0; k <= n; ++k) {
    cumulative += std::exp(log_pmf);
    cdf[k] = std::min(cumulative, 1.0);
    if (k < n) {
      log_pmf +=
          std::log(static_cast<double>(n - k)) - std::log(static_cast<double>(k + 1)) + log_odds;
    }
  }
  return cdf;
}

Verdict judge_bounds(double lower, double upper, double limit) {
  if (lower > limit) return Verdict::fail;
  if (upper <= limit) return Verdict::pass;
  return Verdict::inconclusive;
}

}  // namespace

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::pass:
      return "pass";
    case Verdict::fail:
      return "fail";
    case Verdict::inconclusive:
      return "inconclusive";
    case Verdict::hold:
      return "hold";
  }
  return "inconclusive";
}

Verdict combine(std::initializer_list<Verdict> verdicts) { return combine_range(verdicts); }

Verdict combine(const std::vector<Verdict>& verdicts) { return combine_range(verdicts); }

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

double normal_quantile(double p) {
  if (std::isnan(p)) return kNaN;
  if (p <= 0) return -kInfinity;
  if (p >= 1) return kInfinity;

  // Peter Acklam's rational approximations (relative error 1.15e-9), central and tail regions.
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double kTail = 0.02425;

  const auto tail = [&](double tail_p) {
    const double q = std::sqrt(-2 * std::log(tail_p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  };
  double x;
  if (p < kTail) {
    x = tail(p);
  } else if (p > 1 - kTail) {
    x = -tail(1 - p);
  } else {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  // One Halley step against the exact CDF brings the error near machine precision.
  const double error = normal_cdf(x) - p;
  const double step = error * std::sqrt(2 * std::numbers::pi) * std::exp(x * x / 2);
  return x - step / (1 + x * step / 2);
}

Interval wilson_interval(std::uint64_t failures, std::uint64_t trials, double confidence) {
  if (trials == 0) return {0, 1};
  failures = std::min(failures, trials);
  const double n = static_cast<double>(trials);
  const double observed = static_cast<double>(failures) / n;
  const double z = two_sided_z(confidence);
  const double z2 = z * z;
  const double denominator = 1 + z2 / n;
  const double centre = (observed + z2 / (2 * n)) / denominator;
  const double half_width =
      z / denominator * std::sqrt(observed * (1 - observed) / n + z2 / (4 * n * n));
  // At 0 (or all) failures the formula's end is exactly 0 (or 1); rounding must not move it.
  return {failures == 0 ? 0.0 : std::max(0.0, centre - half_width),
          failures == trials ? 1.0 : std::min(1.0, centre + half_width)};
}

// With k failures of n: the lower bound is the p where P(X >= k) = α, that is
// I_p(k, n - k + 1) = α, and the upper bound the p where P(X <= k) = α, that is
// I_p(k + 1, n - k) = 1 - α, with α = (1 - confidence) / 2 per end. Boost.Math inverts the
// regularized incomplete beta function I directly.
Interval clopper_pearson_interval(std::uint64_t failures, std::uint64_t trials, double confidence) {
  if (trials == 0) return {0, 1};
  failures = std::min(failures, trials);
  const double k = static_cast<double>(failures);
  const double n = static_cast<double>(trials);
  const double tail = (1 - std::clamp(confidence, 0.0, 1.0)) / 2;
  Interval bounds{0, 1};
  if (failures > 0) bounds.lower = boost::math::ibeta_inv(k, n - k + 1, tail, NoThrowPolicy());
  if (failures < trials) bounds.upper = boost::math::ibeta_inv(k + 1, n - k, 1 - tail, NoThrowPolicy());
  return bounds;
}

RateJudgement judge_error_rate(std::uint64_t failures, std::uint64_t trials, double max_rate,
                               double confidence, std::uint64_t min_trials) {
  RateJudgement judgement;
  judgement.failures = failures;
  judgement.trials = trials;
  judgement.observed =
      trials == 0 ? 0.0
                  : static_cast<double>(std::min(failures, trials)) / static_cast<double>(trials);
  judgement.bounds = clopper_pearson_interval(failures, trials, confidence);
  judgement.verdict = trials == 0 || trials < min_trials
                          ? Verdict::inconclusive
                          : judge_bounds(judgement.bounds.lower, judgement.bounds.upper, max_rate);
  return judgement;
}

RateChangeDetector::RateChangeDetector(double max_rate, double confidence) {
  if (!(max_rate > 0 && max_rate < 1)) return;
  enabled_ = true;
  // Halfway to certainty when max_rate is so high that three times it would not be a rate.
  risen_rate_ = std::min(kRiseFactor * max_rate, (1 + max_rate) / 2);
  failure_weight_ = std::log(risen_rate_ / max_rate);
  success_weight_ = std::log((1 - risen_rate_) / (1 - max_rate));
  const double alpha = std::clamp(1 - confidence, 1e-12, 0.5);
  threshold_ = std::log(kRequestsPerFalseAlarm / alpha);
}

void RateChangeDetector::add(std::uint64_t failures, std::uint64_t trials) {
  if (!enabled_ || trials == 0) return;
  failures = std::min(failures, trials);
  const double step = static_cast<double>(failures) * failure_weight_ +
                      static_cast<double>(trials - failures) * success_weight_;
  statistic_ += step;
  run_failures_ += failures;
  run_trials_ += trials;
  if (statistic_ <= 0) {
    statistic_ = 0;
    run_failures_ = run_trials_ = 0;
  }
}

void RateChangeDetector::reset() {
  statistic_ = 0;
  run_failures_ = run_trials_ = 0;
}

// Distribution-free bounds from order statistics x_(1) <= ... <= x_(n). The number of samples
// below the true quantile ξ_q is Binomial(n, q) for a continuous distribution (and only more
// favourable with ties), so with α = (1 - confidence) / 2 per end:
//   upper = x_(u), u the smallest index with P(Bin(n, q) <= u - 1) >= 1 - α,
//           as P(ξ_q <= x_(u)) = P(fewer than u samples below ξ_q);
//   lower = x_(l), l the largest index with P(Bin(n, q) <= l - 1) <= α,
//           as P(x_(l) <= ξ_q) = P(at least l samples at or below ξ_q).
// No such u means +infinity, no such l -infinity. This is the exact form of the usual normal
// approximation l ≈ n q - z sqrt(n q (1 - q)), u ≈ n q + z sqrt(n q (1 - q)) + 1, which is too
// coarse at the small n where gates decide: one-sided 95 % (confidence 0.90) bounds a p95 by the
// sample maximum from n = 59 exactly, where the approximation needs n = 87.
QuantileEstimate estimate_quantile(std::vector<double> samples, double quantile,
                                   double confidence) {
  QuantileEstimate estimate;
  estimate.samples = samples.size();
  if (samples.empty()) {
    estimate.point = kNaN;
    estimate.lower = -kInfinity;
    estimate.upper = kInfinity;
    return estimate;
  }
  const std::size_t n = samples.size();
  const double q = std::clamp(quantile, 0.0, 1.0);
  const double tail = (1 - std::clamp(confidence, 0.0, 1.0)) / 2;

  // Only three order statistics are needed: select each (linear time) instead of sorting the
  // whole window, which the engine would otherwise do for every gate four times a second.
  auto order_statistic = [&samples](std::size_t rank) {
    const auto at = samples.begin() + static_cast<std::ptrdiff_t>(rank - 1);
    std::nth_element(samples.begin(), at, samples.end());
    return *at;
  };

  // Nearest rank; the epsilon keeps n q = 95.000000001 from rounding up to rank 96.
  const double rank = std::ceil(static_cast<double>(n) * q - 1e-9);
  const std::size_t point_rank =
      std::clamp<std::size_t>(static_cast<std::size_t>(std::max(rank, 1.0)), 1, n);
  estimate.point = order_statistic(point_rank);

  const std::vector<double> cdf = binomial_cdf(n, q);
  estimate.upper = kInfinity;
  for (std::size_t u = 1; u <= n; ++u) {
    if (cdf[u - 1] >= 1 - tail) {
      estimate.upper = order_statistic(u);
      break;
    }
  }
  estimate.lower = -kInfinity;
  for (std::size_t l = n; l >= 1; --l) {
    if (cdf[l - 1] <= tail) {
      estimate.lower = order_statistic(l);
      break;
    }
  }
  return estimate;
}

LatencyJudgement judge_quantile(const std::vector<double>& samples, double quantile, double limit,
                                double confidence, std::size_t min_samples) {
  LatencyJudgement judgement;
  judgement.limit = limit;
  judgement.estimate = estimate_quantile(samples, quantile, confidence);
  judgement.verdict = samples.empty() || samples.size() < min_samples
                          ? Verdict::inconclusive
                          : judge_bounds(judgement.estimate.lower, judgement.estimate.upper, limit);
  return judgement;
}

MeanJudgement judge_mean_at_least(const std::vector<double>& scores, double min_mean,
                                  double confidence, std::size_t min_samples) {
  MeanJudgement judgement;
  judgement.samples = scores.size();
  if (scores.empty()) {
    judgement.mean = kNaN;
    return judgement;
  }
  const double n = static_cast<double>(scores.size());
  const auto [lowest, highest] = std::minmax_element(scores.begin(), scores.end());
  const bool all_equal = *lowest == *highest;
  // Equal scores take the score itself, so that a rounded mean cannot straddle the threshold.
  judgement.mean = all_equal ? *lowest : std::accumulate(scores.begin(), scores.end(), 0.0) / n;
  if (all_equal && scores.size() >= 2) {
    judgement.bounds = {judgement.mean, judgement.mean};
  } else if (scores.size() >= 2) {
    double squares = 0;
    for (const double score : scores)
      squares += (score - judgement.mean) * (score - judgement.mean);
    const double standard_error = std::sqrt(squares / (n - 1) / n);
    const double margin = two_sided_z(confidence) * standard_error;
    judgement.bounds = {judgement.mean - margin, judgement.mean + margin};
  }
  if (scores.size() < min_samples) return judgement;
  if (judgement.bounds.upper < min_mean) {
    judgement.verdict = Verdict::fail;
  } else if (judgement.bounds.lower >= min_mean) {
    judgement.verdict = Verdict::pass;
  }
  return judgement;
}

double wilcoxon_signed_rank_p_greater(const std::vector<double>& differences) {
  std::vector<double> nonzero;
  nonzero.reserve(differences.size());
  for (const double difference : differences) {
    if (difference != 0 && !std::isnan(difference)) nonzero.push_back(difference);
  }
  if (nonzero.empty()) return 1;
  std::sort(nonzero.begin(), nonzero.end(),
            [](double a, double b) { return std::fabs(a) < std::fabs(b); });

  const double n = static_cast<double>(nonzero.size());
  double positive_rank_sum = 0;
  double tie_correction = 0;
  for (std::size_t first = 0; first < nonzero.size();) {
    std::size_t past = first + 1;
    while (past < nonzero.size() && std::fabs(nonzero[past]) == std::fabs(nonzero[first])) ++past;
    // Ranks are 1-based; a run of ties shares the average of the ranks it spans.
    const double average_rank = (static_cast<double>(first + 1) + static_cast<double>(past)) / 2;
    for (std::size_t i = first; i < past; ++i) {
      if (nonzero[i] > 0) positive_rank_sum += average_rank;
    }
    const double ties = static_cast<double>(past - first);
    tie_correction += ties * ties * ties - ties;
    first = past;
  }
  const double expected = n * (n + 1) / 4;
  const double variance = n * (n + 1) * (2 * n + 1) / 24 - tie_correction / 48;
  if (variance <= 0) return 1;
  const double z = (positive_rank_sum - expected - 0.5) / std::sqrt(variance);
  return normal_cdf(-z);
}

}  // namespace cutover::migration
