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
  TcpSocket client{io};
  TcpSocket server{io};

  SocketPair() {
    TcpAcceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
  }

  // Starts a read on the client.
  void start_read() {
    client.async_read_some(asio::buffer(&byte_, 1),
                           [this](boost::system::error_code ec, std::size_t) { read_result = ec; });
  }

  // Runs the loop until the read completes (ten seconds at most); its error.
  boost::system::error_code finish_read() {
    while (!read_result && io.run_one_for(10s) > 0) {
    }
    EXPECT_TRUE(read_result.has_value()) << "the read never completed";
    return read_result.value_or(asio::error::timed_out);
  }

  // Writes a byte from the server after `delay`.
  void write_after(std::chrono::milliseconds delay) {
    auto timer = std::make_shared<SteadyTimer>(io, delay);
    timer->async_wait([this, timer](boost::system::error_code) {
      asio::write(server, asio::buffer("x", 1));
    });
  }

  std::optional<boost::system::error_code> read_result;
  char byte_ = 0;
};

TEST(SocketDeadlineTest, AnOperationPastItsDeadlineFailsWithTimeoutAndTheSocketCloses) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  deadline.expires_after(20ms);
  pair.start_read();
  EXPECT_EQ(deadline.settle(pair.finish_read()), boost::beast::error::timeout);
  EXPECT_TRUE(deadline.expired());
  EXPECT_FALSE(pair.client.is_open());
}

TEST(SocketDeadlineTest, ALaterDeadlineIsWaitedForRatherThanTheOneTheTimerWasArmedFor) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  // Armed for 20 ms, then moved to 5 s before it fires: the first expiry must wait again.
  deadline.expires_after(20ms);
  deadline.expires_after(5s);
  pair.start_read();
  pair.write_after(150ms);
  const auto ec = deadline.settle(pair.finish_read());
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(deadline.expired());
  EXPECT_TRUE(pair.client.is_open());
}

TEST(SocketDeadlineTest, ASettledOperationsDeadlineNoLongerClosesTheSocket) {
  SocketPair pair;
  SocketDeadline deadline(pair.client);
  deadline.expires_after(20ms);
  pair.start_read();
  pair.write_after(0ms);
  EXPECT_FALSE(deadline.settle(pair.finish_read()));
  // The timer still waits for 20 ms; when it fires no operation is timed.
  SteadyTimer past_the_deadline(pair.io, 100ms);
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
  deadline.expires_after(5s);
  pair.start_read();
  pair.server.close();
  EXPECT_EQ(deadline.settle(pair.finish_read()), asio::error::eof);
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
