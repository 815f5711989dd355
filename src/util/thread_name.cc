#include "util/thread_name.h"

#include <pthread.h>

#include <algorithm>
#include <array>

namespace cutover::util {

void name_this_thread(std::string_view name) {
  std::array<char, 16> buffer{};
  const auto length = std::min(name.size(), buffer.size() - 1);
  std::copy_n(name.data(), length, buffer.data());
  // A name the kernel refuses only costs the label, never the thread.
  (void)pthread_setname_np(pthread_self(), buffer.data());
}

}  // namespace cutover::util
