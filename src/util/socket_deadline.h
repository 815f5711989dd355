// A deadline on one socket's operations, enforced by one timer that is re-armed only when a
// deadline comes earlier than the wait it already has.
//
// Beast's tcp_stream starts a timer wait for every operation with an expiry and cancels it when
// the operation completes: two trips through the reactor's timer queue, each under its mutex, for
// every read and every write (about 3,000 instructions of a proxied request's 65,000 in the
// profiles, bench/RESULTS.md). Here an operation's deadline is a store; the timer keeps waiting
// for the earliest deadline it was armed for, and when it fires early (the deadline moved on
// since) it waits again for the current one. That is the pattern of Asio's own timeout examples.
//
// On expiry the socket is closed, as Beast's stream does: the operation in flight completes with
// an error, which settle() turns into beast::error::timeout. The owner calls expires_*() before an
// operation and settle() after it, so that a deadline never outlives the operation it was for.
// One thread: the socket's.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <memory>

#include "util/clock.h"
#include "util/executor.h"

namespace cutover::util {

class SocketDeadline {
 public:
  using Clock = std::chrono::steady_clock;

  // `socket` must outlive this object.
  explicit SocketDeadline(TcpSocket& socket);
  ~SocketDeadline();
  SocketDeadline(const SocketDeadline&) = delete;
  SocketDeadline& operator=(const SocketDeadline&) = delete;

  // The operation about to start must complete by `deadline`, or the socket is closed.
  void expires_at(Clock::time_point deadline);
  // From the coarse clock: a timeout is seconds long, and the read is on every operation.
  void expires_after(Clock::duration timeout) { expires_at(coarse_steady_now() + timeout); }

  // Ends the operation's deadline. Returns `ec`, or beast::error::timeout when the operation
  // failed because the deadline closed the socket.
  boost::system::error_code settle(boost::system::error_code ec);

  // Whether the deadline closed the socket since the last expires_*().
  bool expired() const;

 private:
  struct State;  // shared with the timer's handler, which may run after this object is gone
  std::shared_ptr<State> state_;
};

}  // namespace cutover::util
