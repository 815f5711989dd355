#include "proxy/response_memory.h"

namespace cutover::proxy {

bool ResponseMemory::try_take(std::size_t bytes) {
  auto used = used_.load(std::memory_order_relaxed);
  do {
    if (used + bytes > limit()) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

bool ResponseMemory::Reservation::grow_to(std::size_t bytes) {
  if (bytes <= held_) return true;
  if (!memory_.try_take(bytes - held_)) return false;
  held_ = bytes;
  return true;
}

ResponseMemory& process_response_memory() {
  static ResponseMemory memory(256 * 1024 * 1024);
  return memory;
}

}  // namespace cutover::proxy
