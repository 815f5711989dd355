// What the answers being buffered in this process may hold together.
//
// A plain (non-streamed) answer is read whole before it is normalized, so each one is capped
// (`limits.max_response_bytes`) and all of them together are capped too
// (`limits.max_buffered_response_bytes`): eight 200 MB answers at once must not take the
// process to gigabytes. An answer that cannot reserve its bytes is refused (503, retry
// advised) instead of growing memory. Lock-free: one atomic counter shared by every worker.
#pragma once

#include <atomic>
#include <cstddef>

namespace cutover::proxy {

class ResponseMemory {
 public:
  explicit ResponseMemory(std::size_t limit) : limit_(limit) {}

  void set_limit(std::size_t limit) { limit_.store(limit, std::memory_order_relaxed); }
  std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  std::size_t in_use() const { return used_.load(std::memory_order_relaxed); }

  // Bytes held for one answer; given back when it goes.
  class Reservation {
   public:
    explicit Reservation(ResponseMemory& memory) : memory_(memory) {}
    ~Reservation() { memory_.release(held_); }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;

    // Grows what this answer holds to `bytes`; false (and nothing taken) past the total limit.
    bool grow_to(std::size_t bytes);
    std::size_t held() const { return held_; }

   private:
    ResponseMemory& memory_;
    std::size_t held_ = 0;
  };

 private:
  bool try_take(std::size_t bytes);
  void release(std::size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  std::atomic<std::size_t> limit_;
  std::atomic<std::size_t> used_{0};
};

// The process's account, shared by every worker's gateway.
ResponseMemory& process_response_memory();

}  // namespace cutover::proxy
