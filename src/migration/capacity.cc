#include "migration/capacity.h"

#include <algorithm>

namespace cutover::migration {

namespace {

struct DimensionSum {
  double limit = 0;
  double remaining = 0;
  bool any_limit = false;
  bool any_remaining = false;

  void add(const std::optional<std::int64_t>& limit_reported,
           const std::optional<std::int64_t>& remaining_reported,
           const std::optional<std::chrono::milliseconds>& reset_in) {
    if (!limit_reported) return;
    any_limit = true;
    limit += static_cast<double>(*limit_reported);
    if (remaining_reported && reset_in) {
      any_remaining = true;
      // The gateway counts what it sent since the reading, which can pass the provider's figure.
      remaining += static_cast<double>(std::max<std::int64_t>(*remaining_reported, 0));
    } else {
      remaining += static_cast<double>(*limit_reported);
    }
  }

  CandidateQuota::Dimension result() const {
    CandidateQuota::Dimension dimension;
    if (any_limit) dimension.limit = limit;
    if (any_limit && any_remaining) dimension.remaining = remaining;
    return dimension;
  }
};

CapacityJudgement::Dimension judge_dimension(double needed, double current,
                                             const CandidateQuota::Dimension& quota,
                                             double max_share) {
  CapacityJudgement::Dimension out;
  if (!quota.limit || *quota.limit <= 0) return out;
  out.reported = true;
  out.needed = needed;
  out.limit = *quota.limit;
  out.remaining = quota.remaining;
  out.allowed = max_share * out.limit;
  if (quota.remaining) out.allowed = std::min(out.allowed, *quota.remaining + current);
  out.share = needed / out.limit;
  out.over = needed > out.allowed;
  return out;
}

}  // namespace

CandidateQuota sum_endpoint_quotas(const std::vector<resilience::QuotaState::Snapshot>& endpoints) {
  DimensionSum requests;
  DimensionSum tokens;
  for (const auto& endpoint : endpoints) {
    if (!endpoint.reported) continue;
    requests.add(endpoint.request_limit, endpoint.requests_remaining, endpoint.requests_reset_in);
    tokens.add(endpoint.token_limit, endpoint.tokens_remaining, endpoint.tokens_reset_in);
  }
  return CandidateQuota{requests.result(), tokens.result()};
}

Load project_candidate_load(const RouteTraffic& traffic, double weight, double shadow_rate) {
  if (traffic.minutes <= 0) return {};
  const double share = weight + (1 - weight) * shadow_rate;
  return {static_cast<double>(traffic.requests) * share / traffic.minutes,
          static_cast<double>(traffic.tokens) * share / traffic.minutes};
}

Load current_candidate_load(const RouteTraffic& traffic) {
  if (traffic.minutes <= 0) return {};
  return {static_cast<double>(traffic.candidate_requests) / traffic.minutes,
          static_cast<double>(traffic.candidate_tokens) / traffic.minutes};
}

CapacityJudgement judge_capacity(const Load& needed, const Load& current,
                                 const CandidateQuota& quota, double max_share) {
  CapacityJudgement judgement;
  judgement.requests = judge_dimension(needed.requests_per_minute, current.requests_per_minute,
                                       quota.requests, max_share);
  judgement.tokens = judge_dimension(needed.tokens_per_minute, current.tokens_per_minute,
                                     quota.tokens, max_share);
  judgement.applicable = judgement.requests.reported || judgement.tokens.reported;
  judgement.verdict =
      judgement.requests.over || judgement.tokens.over ? Verdict::hold : Verdict::pass;
  return judgement;
}

}  // namespace cutover::migration
