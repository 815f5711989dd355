// Counts the calls of the global operator new on each thread, for the allocation tests (issue
// #14: "prove it with a counting allocator in a test, not by reading the code").
//
// The counting operators are defined in counting_allocator.cc and replace the C++ library's for
// the whole test binary; they allocate with malloc as the library's do. Each thread's count is
// its own (one relaxed atomic add an allocation), so a test can read the gateway worker's count
// while the client, the fake provider and the gateway's other threads allocate as they please.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cutover::testing::allocation {

// The calls of operator new (every form: arrays, aligned, nothrow) made so far on the live
// thread whose name (as `ps -L` shows it) is `thread_name`; nullopt when no such thread has
// allocated. Where several threads share the name, the one that allocated first most recently.
std::optional<std::uint64_t> count_on_thread(std::string_view thread_name);

// The calls made so far on the calling thread.
std::uint64_t count_on_this_thread();

}  // namespace cutover::testing::allocation
