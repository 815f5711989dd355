#include "util/socket_deadline.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <optional>

namespace cutover::util {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// A connected pair of loopback sockets on one event loop.
struct SocketPair {
  asio::io_context io;
  asio::ip::tcp::socket client{io};
  asio::ip::tcp::socket server{io};

  SocketPair() {
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }

  // Starts a read on the client; `result` is set when it completes.
  void read(std::optional<boost::system::error_code>& result) {
    client.async_read_some(asio::buffer(&byte_, 1),
                           [&result](boost::system::error_code ec, std::size_t) { result = ec; });
  }

  // Writes a byte from the server after `delay`.
  void write_after(std::chrono::milliseconds delay) {
    auto timer = std::make_shared<asio::steady_timer>(io, delay);
    timer->async_wait([this, timer](boost::system::error_code) {
      asio::write(server, asio::buffer("x", 1));
    });
  }

  char byte_ = 0;
};

TEST(SocketDeadlineTest, AnOperationPastItsDeadlineFailsWithTimeoutAndTheSocketCloses) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  std::optional<boost::system::error_code> result;
  deadline.expires_after(20ms);
  pair.read(result);
  pair.io.run_for(10s);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(deadline.settle(*result), boost::beast::error::timeout);
  EXPECT_TRUE(deadline.expired());
  EXPECT_FALSE(pair.client.is_open());
}

TEST(SocketDeadlineTest, ALaterDeadlineIsWaitedForRatherThanTheOneTheTimerWasArmedFor) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  std::optional<boost::system::error_code> result;
  // Armed for 20 ms, then moved to 5 s before it fires: the first expiry must wait again.
  deadline.expires_after(20ms);
  deadline.expires_after(5s);
  pair.read(result);
  pair.write_after(150ms);
  while (!result && pair.io.run_one_for(10s) > 0) {
  }
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(deadline.settle(*result)) << result->message();
  EXPECT_FALSE(deadline.expired());
  EXPECT_TRUE(pair.client.is_open());
}

TEST(SocketDeadlineTest, ASettledOperationsDeadlineNoLongerClosesTheSocket) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  std::optional<boost::system::error_code> result;
  deadline.expires_after(20ms);
  pair.read(result);
  pair.write_after(0ms);
  while (!result && pair.io.run_one_for(10s) > 0) {
  }
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(deadline.settle(*result));
  // The timer still waits for 20 ms; when it fires no operation is timed.
  asio::steady_timer past_the_deadline(pair.io, 100ms);
  bool waited = false;
  past_the_deadline.async_wait([&](boost::system::error_code) { waited = true; });
  while (!waited && pair.io.run_one_for(10s) > 0) {
  }
  EXPECT_TRUE(waited);
  EXPECT_TRUE(pair.client.is_open());
  EXPECT_FALSE(deadline.expired());
}

TEST(SocketDeadlineTest, AnErrorTheDeadlineDidNotCauseIsPassedOn) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  std::optional<boost::system::error_code> result;
  deadline.expires_after(5s);
  pair.read(result);
  pair.server.close();
  while (!result && pair.io.run_one_for(10s) > 0) {
  }
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(deadline.settle(*result), asio::error::eof);
  EXPECT_FALSE(deadline.expired());
}

TEST(SocketDeadlineTest, ADeadlineGoneWhileItsTimerWaitsLeavesTheLoopNoWork) {
  SocketPair pair;
  {
    SocketDeadline deadline(pair.client);
    deadline.expires_after(std::chrono::hours(1));
    deadline.settle({});
  }
  // The hour-long wait was cancelled with its owner: the loop runs out of work at once.
  pair.io.run_for(10s);
  EXPECT_TRUE(pair.io.stopped());
  EXPECT_TRUE(pair.client.is_open());
}

}  // namespace
}  // namespace cutover::util
