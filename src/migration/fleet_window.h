// A migration's window as the whole fleet saw it: what one replica contributes, and how the
// contributions of every replica add up to the WindowSnapshot the leader's gates judge.
//
// A contribution is CUMULATIVE: everything the replica counted in the current window so far, not
// what it counted since its last flush. The store keeps only the latest contribution of each
// replica and overwrites it, so a flush that is retried, or sent twice, replaces a figure with
// the same figure and nothing is counted twice; a lost flush costs nothing either, since the
// next one carries its counts. Summing the stored contributions (one per replica) gives the
// fleet's window. Adding the same replica's contribution twice to one snapshot WOULD count it
// twice: that is for the store to prevent, by keying contributions on the replica.
//
// Counters merge exactly, and so do the latency histograms (LogHistogram: fixed logarithmic
// buckets with a relative error of at most 2 %, never below the exact quantile). Shadow pairs
// travel as they are, the newest `max_pairs` of each replica.
//
// Pure functions without state; any thread may call them.
#pragma once

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "migration/window.h"

namespace cutover::migration {

// Tells this form of contribution from one a replica of another version might write.
inline constexpr std::int64_t kContributionVersion = 1;

// This replica's figures for the current window as JSON:
//   {"v": kContributionVersion, "lifetime_requests", "candidate_attempts",
//    "candidate_attempt_failures", "candidate_rate_limited",
//    "primary" and "candidate": {"requests", "errors", "fallbacks", "tokens",
//                                "latency", "ttft", "tpot": LogHistogram::to_json()},
//    "pairs": [[candidate_failed, compared, score, primary_latency, candidate_latency,
//               primary_ttft, candidate_ttft], ...]}
// with the flags as 0 or 1, the score in millionths and the times in whole microseconds (so a
// pair reads back rounded to those units; integers, unlike doubles, survive Boost.JSON 1.81's
// parser bit for bit), and a figure that is not finite as null. The arms' sample
// vectors (reservoirs) are left out, since the histograms count the same samples mergeably, and
// so is candidate_quota: the provider reports one quota to every replica, and the leader reads
// its own. The pairs are the last `max_pairs` of `pairs`, not `local.pairs`.
boost::json::object contribution_json(const WindowSnapshot& local,
                                      const std::vector<PairSample>& pairs,
                                      std::size_t max_pairs = 2000);

// Adds one replica's contribution to `fleet`: sums every counter, merges the histograms, appends
// the pairs to fleet.pairs (a null figure becomes NaN). Returns false and leaves `fleet` as
// it was when `contribution` is not what contribution_json writes: another version, a missing
// field, a negative or fractional count, a malformed histogram or pair.
bool add_contribution(const boost::json::value& contribution, WindowSnapshot& fleet);

// Replaces each arm's latency_ms, ttft_ms and tpot_ms with the representative samples of the
// matching histogram, so that the gates, written for vectors of samples, judge the fleet's
// figures unchanged. Each vector gets min(n, max_samples) entries, n the histogram's count, as a
// reservoir would keep min(n, its capacity): the gates' confidence bounds see about as many
// samples as from a lone gateway, not the fleet's n. The vectors are sorted (the gates do not
// mind), and their nearest-rank quantiles are at or above the histogram's, never below
// (LogHistogram::representative_samples).
void expand_histograms(WindowSnapshot& fleet, std::size_t max_samples = 4096);

}  // namespace cutover::migration
