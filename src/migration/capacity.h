// The capacity gate: whether the candidate's rate limits can carry the migration's next weight.
//
// A candidate healthy at 5 % can run out of quota at 50 %: before a stage raises the weight, the
// route's live traffic (both arms, per minute) is projected onto the candidate at the next weight
// and compared with the quota its endpoints report in their rate-limit headers. A projection that
// needs more than the allowed share of the quota holds the stage; it never rolls back, since the
// candidate is not worse, only too small for the next step. A candidate that reports no limits is
// not judged at all: missing quota data never blocks a migration.
//
// Pure functions without state; any thread may call them.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "migration/statistics.h"
#include "resilience/quota.h"

namespace cutover::migration {

// The candidate's rate limits as its endpoints last reported them, summed over the endpoints.
// Limits are read as per-minute figures, the window OpenAI-style providers report them for.
struct CandidateQuota {
  struct Dimension {
    std::optional<double> limit;
    // What is left before the reset; none when no endpoint reports a reset still ahead.
    std::optional<double> remaining;
  };
  Dimension requests;
  Dimension tokens;
  bool reported() const { return requests.limit.has_value() || tokens.limit.has_value(); }
};

// Sums the endpoints that report a limit. An endpoint whose reset has passed (or that reports no
// reset) counts with its whole limit as remaining: its quota has refilled since its last answer.
CandidateQuota sum_endpoint_quotas(const std::vector<resilience::QuotaState::Snapshot>& endpoints);

// Requests and tokens per minute.
struct Load {
  double requests_per_minute = 0;
  double tokens_per_minute = 0;
};

// What the gate's window saw of the route.
struct RouteTraffic {
  std::uint64_t requests = 0;  // every live request of the migrated models, both arms
  std::uint64_t tokens = 0;    // their prompt and completion tokens, from usage
  // What the candidate itself took in the window: its arm's requests and tokens, shadows included.
  std::uint64_t candidate_requests = 0;
  std::uint64_t candidate_tokens = 0;
  double minutes = 0;
};

// The route's load per minute as the candidate would carry it at `weight`, with `shadow_rate` of
// the primary's remaining share mirrored to it (0 when shadowing stops at that weight).
Load project_candidate_load(const RouteTraffic& traffic, double weight, double shadow_rate);
// What the candidate carries now, per minute.
Load current_candidate_load(const RouteTraffic& traffic);

struct CapacityJudgement {
  // pass or hold; pass too when not applicable.
  Verdict verdict = Verdict::pass;
  // Whether the candidate reports any limit the projection could be compared with.
  bool applicable = false;
  struct Dimension {
    bool reported = false;
    double needed = 0;
    double limit = 0;
    std::optional<double> remaining;
    // The most the next stage may use: max_share of the limit, and no more than what is left
    // plus what the migration already spends there (that load moves into the next stage).
    double allowed = 0;
    double share = 0;  // needed / limit
    bool over = false;
  };
  Dimension requests;
  Dimension tokens;
};

// Holds when either reported dimension needs more than it allows.
CapacityJudgement judge_capacity(const Load& needed, const Load& current,
                                 const CandidateQuota& quota, double max_share);

}  // namespace cutover::migration
