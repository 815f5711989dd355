#include "util/thread_name.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <string>
#include <thread>

namespace cutover::util {
namespace {

std::string name_of_this_thread() {
  char buffer[32] = {};
  pthread_getname_np(pthread_self(), buffer, sizeof buffer);
  return buffer;
}

TEST(ThreadNameTest, NamesTheCallingThreadOnly) {
  const std::string before = name_of_this_thread();
  std::string seen;
  std::thread([&] {
    name_this_thread("cutover-w3");
    seen = name_of_this_thread();
  }).join();
  EXPECT_EQ(seen, "cutover-w3");
  EXPECT_EQ(name_of_this_thread(), before);
}

TEST(ThreadNameTest, CutsALongNameToFifteenBytes) {
  std::string seen;
  std::thread([&] {
    name_this_thread("cutover-a-name-far-too-long");
    seen = name_of_this_thread();
  }).join();
  EXPECT_EQ(seen, "cutover-a-name-");
}

}  // namespace
}  // namespace cutover::util
