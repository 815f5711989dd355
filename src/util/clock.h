// Wall-clock time in the one unit the gateway stores and reports it in.
#pragma once

#include <cstdint>

namespace cutover::util {

// Milliseconds since the Unix epoch by the system clock, for timestamps that outlive the process
// or leave it (state-store journal, shadow pairs, routing events, reports) and so must mean the
// same on every machine. The system clock can jump: measure durations with steady_clock instead.
std::int64_t unix_ms_now();

}  // namespace cutover::util
