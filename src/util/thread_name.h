// Names the calling thread, so that `top -H`, `ps -L`, perf and a core dump tell a worker's event
// loop from the migration engine or the usage writer.
#pragma once

#include <string_view>

namespace cutover::util {

// Linux keeps at most 15 bytes of a thread's name; a longer name is cut there. Never fails.
void name_this_thread(std::string_view name);

}  // namespace cutover::util
