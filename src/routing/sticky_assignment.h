// Sticky, deterministic, monotonic assignment of requests to a migration's candidate.
//
// A request goes to the candidate when the position of its sticky key, a stable hash of
// (salt, key) mapped to [0, 1), is below the current weight. The position never changes for a
// key, so raising the weight never moves a user back to the primary and lowering it moves only
// the users at the top of the range. The hash is fixed (FNV-1a 64 finished by SplitMix64), so
// every replica and every version of cutover assigns a key the same way.
#pragma once

#include <string_view>

namespace cutover::routing {

// Where `key` sits in [0, 1) for this migration's `salt`.
double sticky_position(std::string_view salt, std::string_view key);

// True when a request with this position goes to the candidate at `weight` (0 to 1).
inline bool goes_to_candidate(double position, double weight) { return position < weight; }

}  // namespace cutover::routing
