#include "migration/window.h"

namespace cutover::migration {

void Reservoir::add(double value, std::mt19937_64& random) {
  ++seen_;
  if (kept_.size() < capacity_) {
    kept_.push_back(value);
    return;
  }
  const auto slot = std::uniform_int_distribution<std::uint64_t>(0, seen_ - 1)(random);
  if (slot < capacity_) kept_[slot] = value;
}

void StatsShard::Arm::clear() {
  requests = errors = fallbacks = tokens = 0;
  latency.clear();
  ttft.clear();
  tpot.clear();
  latency_histogram.clear();
  ttft_histogram.clear();
  tpot_histogram.clear();
}

void StatsShard::roll_to(std::uint64_t epoch) {
  if (epoch == epoch_) return;
  epoch_ = epoch;
  primary_.clear();
  candidate_.clear();
  candidate_attempts_ = candidate_attempt_failures_ = candidate_rate_limited_ = 0;
}

void StatsShard::record(const RequestSample& sample, std::uint64_t epoch) {
  std::lock_guard lock(mutex_);
  ++lifetime_requests_;
  // A request that began before a transition and ends after it is not worth a second lock;
  // it lands in the new window, which is at worst one sample of the old side's behaviour.
  if (epoch < epoch_) return;
  roll_to(epoch);
  auto& arm = sample.candidate_arm ? candidate_ : primary_;
  ++arm.requests;
  if (sample.counted_as_error) ++arm.errors;
  if (sample.fell_back) ++arm.fallbacks;
  arm.tokens += sample.tokens;
  // Latency of a failed request says little about the side's speed; errors are gated apart.
  if (!sample.counted_as_error) {
    if (sample.latency_ms >= 0) {
      arm.latency.add(sample.latency_ms, random_);
      arm.latency_histogram.add(sample.latency_ms);
    }
    if (sample.ttft_ms >= 0) {
      arm.ttft.add(sample.ttft_ms, random_);
      arm.ttft_histogram.add(sample.ttft_ms);
    }
    if (sample.tpot_ms >= 0) {
      arm.tpot.add(sample.tpot_ms, random_);
      arm.tpot_histogram.add(sample.tpot_ms);
    }
  }
  candidate_attempts_ += sample.candidate_attempts;
  candidate_attempt_failures_ += sample.candidate_attempt_failures;
  candidate_rate_limited_ += sample.candidate_rate_limited;
}

void StatsShard::merge_into(WindowSnapshot& out, std::uint64_t epoch) {
  std::lock_guard lock(mutex_);
  out.lifetime_requests += lifetime_requests_;
  if (epoch != epoch_) return;
  auto merge = [](const Arm& from, ArmWindow& to) {
    to.requests += from.requests;
    to.errors += from.errors;
    to.fallbacks += from.fallbacks;
    to.tokens += from.tokens;
    from.latency.merge_into(to.latency_ms);
    from.ttft.merge_into(to.ttft_ms);
    from.tpot.merge_into(to.tpot_ms);
    to.latency_histogram.merge(from.latency_histogram);
    to.ttft_histogram.merge(from.ttft_histogram);
    to.tpot_histogram.merge(from.tpot_histogram);
  };
  merge(primary_, out.primary);
  merge(candidate_, out.candidate);
  out.candidate_attempts += candidate_attempts_;
  out.candidate_attempt_failures += candidate_attempt_failures_;
  out.candidate_rate_limited += candidate_rate_limited_;
}

}  // namespace cutover::migration
