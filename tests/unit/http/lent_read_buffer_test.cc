#include "http/lent_read_buffer.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <cstring>
#include <vector>

namespace cutover::http {
namespace {

void put_bytes(boost::beast::flat_buffer& buffer, std::string_view text) {
  auto room = buffer.prepare(text.size());
  std::memcpy(room.data(), text.data(), text.size());
  buffer.commit(text.size());
}

TEST(LentReadBufferTest, AnEmptyBufferGoesBackToTheSparesAndIsLentAgainNext) {
  LentReadBuffer first;
  EXPECT_FALSE(first.held());
  auto* lent = &first.get();
  lent->reserve(4096);
  EXPECT_TRUE(first.held());
  const auto spares = LentReadBuffer::spares_on_this_thread();

  first.give_back_if_empty();
  EXPECT_FALSE(first.held());
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), spares + 1);

  // The last buffer given back is the next one lent: the one the thread touched last.
  LentReadBuffer second;
  EXPECT_EQ(&second.get(), lent);
  EXPECT_GE(second.get().capacity(), 4096u);
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), spares);
}

TEST(LentReadBufferTest, ABufferWithBytesWaitingIsKept) {
  LentReadBuffer lent;
  put_bytes(lent.get(), "GET / HTTP/1.1\r\n");
  const auto spares = LentReadBuffer::spares_on_this_thread();
  lent.give_back_if_empty();
  EXPECT_TRUE(lent.held());
  EXPECT_TRUE(lent.has_bytes());
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), spares);
  EXPECT_EQ(boost::beast::buffers_to_string(lent.get().data()), "GET / HTTP/1.1\r\n");

  lent.get().consume(lent.get().size());
  EXPECT_FALSE(lent.has_bytes());
  lent.give_back_if_empty();
  EXPECT_FALSE(lent.held());
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), spares + 1);
}

TEST(LentReadBufferTest, ABufferGrownPastTheSpareLimitIsFreedNotKept) {
  LentReadBuffer lent;
  lent.get().reserve(LentReadBuffer::kMaxSpareCapacity + 1);
  const auto spares = LentReadBuffer::spares_on_this_thread();
  lent.give_back_if_empty();
  EXPECT_FALSE(lent.held());
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), spares);
}

TEST(LentReadBufferTest, ADestroyedLeaseReturnsAnEmptyBufferAndFreesOneWithBytes) {
  const auto spares = LentReadBuffer::spares_on_this_thread();
  {
    LentReadBuffer with_bytes;
    put_bytes(with_bytes.get(), "left over");
  }
  // Taking the buffer above used a spare when there was one; its bytes were dropped with it.
  const auto after_bytes = LentReadBuffer::spares_on_this_thread();
  EXPECT_EQ(after_bytes, spares == 0 ? 0 : spares - 1);
  {
    LentReadBuffer empty;
    empty.get();
  }
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), after_bytes + 1);
}

TEST(LentReadBufferTest, TheThreadKeepsAtMostItsLimitOfSpares) {
  std::vector<LentReadBuffer> leases(LentReadBuffer::kMaxSpares + 8);
  for (auto& lease : leases) lease.get();
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), 0u);
  for (auto& lease : leases) lease.give_back_if_empty();
  EXPECT_EQ(LentReadBuffer::spares_on_this_thread(), LentReadBuffer::kMaxSpares);
}

}  // namespace
}  // namespace cutover::http
