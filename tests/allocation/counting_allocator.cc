#include "counting_allocator.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>

namespace cutover::testing::allocation {
namespace {

// A fixed table, so that counting never allocates: a thread takes a row at its first allocation
// and keeps it. Rows are never reused; a test binary starts far fewer threads than this.
struct ThreadRow {
  std::atomic<pid_t> thread_id{0};
  std::atomic<std::uint64_t> count{0};
};
constexpr std::size_t kMaxThreads = 4096;
std::array<ThreadRow, kMaxThreads> rows;
std::atomic<std::size_t> rows_taken{0};
// The row of a thread that came after the table filled up: counted, never reported.
ThreadRow overflow_row;

thread_local ThreadRow* this_threads_row = nullptr;

ThreadRow& row_of_this_thread() {
  if (this_threads_row == nullptr) {
    const auto index = rows_taken.fetch_add(1, std::memory_order_relaxed);
    this_threads_row = index < kMaxThreads ? &rows[index] : &overflow_row;
    this_threads_row->thread_id.store(static_cast<pid_t>(::syscall(SYS_gettid)),
                                      std::memory_order_release);
  }
  return *this_threads_row;
}

void note_allocation() { row_of_this_thread().count.fetch_add(1, std::memory_order_relaxed); }

// The kernel's name of a live thread of this process; empty when it has exited.
std::string name_of_thread(pid_t thread_id) {
  std::ifstream comm("/proc/self/task/" + std::to_string(thread_id) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

void* allocate(std::size_t size) {
  note_allocation();
  if (size == 0) size = 1;
  for (;;) {
    if (void* block = std::malloc(size)) return block;
    auto handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) {
  note_allocation();
  const auto align = static_cast<std::size_t>(alignment);
  // aligned_alloc wants a size that is a multiple of the alignment.
  const std::size_t rounded = size == 0 ? align : (size + align - 1) / align * align;
  for (;;) {
    if (void* block = std::aligned_alloc(align, rounded)) return block;
    auto handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

std::optional<std::uint64_t> count_on_thread(std::string_view thread_name) {
  const auto taken = std::min(rows_taken.load(std::memory_order_acquire), kMaxThreads);
  // Newest first: a thread id the kernel reused belongs to the thread that registered last.
  for (std::size_t index = taken; index-- > 0;) {
    const auto thread_id = rows[index].thread_id.load(std::memory_order_acquire);
    if (thread_id != 0 && name_of_thread(thread_id) == thread_name) {
      return rows[index].count.load(std::memory_order_relaxed);
    }
  }
  return std::nullopt;
}

std::uint64_t count_on_this_thread() {
  return row_of_this_thread().count.load(std::memory_order_relaxed);
}

}  // namespace cutover::testing::allocation

using cutover::testing::allocation::allocate;
using cutover::testing::allocation::allocate_aligned;

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return allocate(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return allocate_aligned(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return allocate_aligned(size, alignment);
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  try {
    return allocate_aligned(size, alignment);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t alignment,
                     const std::nothrow_t& tag) noexcept {
  return operator new(size, alignment, tag);
}

void operator delete(void* block) noexcept { std::free(block); }
void operator delete[](void* block) noexcept { std::free(block); }
void operator delete(void* block, std::size_t) noexcept { std::free(block); }
void operator delete[](void* block, std::size_t) noexcept { std::free(block); }
void operator delete(void* block, const std::nothrow_t&) noexcept { std::free(block); }
void operator delete[](void* block, const std::nothrow_t&) noexcept { std::free(block); }
void operator delete(void* block, std::align_val_t) noexcept { std::free(block); }
void operator delete[](void* block, std::align_val_t) noexcept { std::free(block); }
void operator delete(void* block, std::size_t, std::align_val_t) noexcept { std::free(block); }
void operator delete[](void* block, std::size_t, std::align_val_t) noexcept { std::free(block); }
void operator delete(void* block, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(block);
}
void operator delete[](void* block, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(block);
}
