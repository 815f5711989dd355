#include "proxy/response_memory.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace cutover::proxy {
namespace {

TEST(ResponseMemoryTest, AnswersTogetherNeverHoldMoreThanTheLimit) {
  ResponseMemory memory(1000);
  ResponseMemory::Reservation first(memory);
  ResponseMemory::Reservation second(memory);
  EXPECT_TRUE(first.grow_to(600));
  EXPECT_FALSE(second.grow_to(500)) << "600 + 500 is over the 1000 limit";
  EXPECT_EQ(second.held(), 0u) << "a refused growth takes nothing";
  EXPECT_TRUE(second.grow_to(400));
  EXPECT_EQ(memory.in_use(), 1000u);
  EXPECT_TRUE(first.grow_to(300)) << "shrinking requests are already covered";
  EXPECT_EQ(memory.in_use(), 1000u);
}

TEST(ResponseMemoryTest, AReservationGivesItsBytesBackWhenItGoes) {
  ResponseMemory memory(1000);
  {
    ResponseMemory::Reservation reservation(memory);
    ASSERT_TRUE(reservation.grow_to(1000));
  }
  EXPECT_EQ(memory.in_use(), 0u);
  ResponseMemory::Reservation next(memory);
  EXPECT_TRUE(next.grow_to(1000));
}

TEST(ResponseMemoryTest, ConcurrentReadersStayWithinTheLimit) {
  ResponseMemory memory(64 * 1024);
  std::atomic<std::size_t> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        ResponseMemory::Reservation reservation(memory);
        for (std::size_t size = 1024; size <= 32 * 1024; size *= 2) {
          if (!reservation.grow_to(size)) break;
          auto seen = memory.in_use();
          auto previous = peak.load();
          while (seen > previous && !peak.compare_exchange_weak(previous, seen)) {
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(peak.load(), 64u * 1024);
  EXPECT_EQ(memory.in_use(), 0u);
}

}  // namespace
}  // namespace cutover::proxy
