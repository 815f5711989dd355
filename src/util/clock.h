// Clock readings in the units the gateway keeps them in.
#pragma once

#include <chrono>
#include <cstdint>

namespace cutover::util {

// Milliseconds since the Unix epoch by the system clock, for timestamps that outlive the process
// or leave it (state-store journal, shadow pairs, routing events, reports) and so must mean the
// same on every machine. The system clock can jump: measure durations with steady_clock instead.
std::int64_t unix_ms_now();

// The steady clock as of the kernel's last tick: on steady_clock's own timeline, at most a tick
// (1 to 10 ms) behind steady_clock::now(), and read from the vDSO without the time-stamp counter,
// several times cheaper (bench/RESULTS.md, issue #14). For deadlines and ages that are hundreds of
// milliseconds or more; never for a latency that is measured or reported.
std::chrono::steady_clock::time_point coarse_steady_now();

// The system clock as of the kernel's last tick, for wall-clock times read in whole seconds
// (a response's `created`, a provider's rate-limit reset time).
std::chrono::system_clock::time_point coarse_system_now();

}  // namespace cutover::util
