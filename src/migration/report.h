// The figures operators decide a migration by, computed from recorded shadow pairs and live
// volume: the comparison summary and the "should we move" cost projection. Shared by the admin
// API and `cutover report`, so both print the same numbers.
#pragma once

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "store/state_store.h"

namespace cutover::migration {

// Agreement, latency, tokens and cost of both sides over `pairs`.
boost::json::object summarize_pairs(const std::vector<store::ShadowPair>& pairs);

// What the route would cost per month at 100 % candidate against all-primary, from the paired
// cost per request (same prompts on both sides) times the live volume. Figures that cannot be
// computed yet (no pairs, no volume) are null rather than zero.
boost::json::object project_costs(const std::vector<store::ShadowPair>& pairs,
                                  double live_requests_per_day, const std::string& currency);

}  // namespace cutover::migration
