#include "util/socket_deadline.h"

#include <boost/beast/core/error.hpp>

namespace cutover::util {

namespace asio = boost::asio;

struct SocketDeadline::State {
  explicit State(TcpSocket& watched) : socket(&watched), timer(watched.get_executor()) {}

  TcpSocket* socket;  // null once the owner is gone
  SteadyTimer timer;
  Clock::time_point deadline = Clock::time_point::max();   // max: no operation is timed
  Clock::time_point armed_for = Clock::time_point::max();  // max: the timer is not waiting
  std::uint64_t wait = 0;  // the wait in flight; a superseded wait's completion is ignored
  bool expired = false;

  static void arm(const std::shared_ptr<State>& state, Clock::time_point at) {
    state->armed_for = at;
    const auto wait = ++state->wait;
    state->timer.expires_at(at);
    state->timer.async_wait([state, wait](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted || wait != state->wait) return;
      fire(state);
    });
  }

  static void fire(const std::shared_ptr<State>& state) {
    state->armed_for = Clock::time_point::max();
    if (state->socket == nullptr || state->deadline == Clock::time_point::max()) return;
    if (Clock::now() < state->deadline) {
      // The deadline moved on since this wait was armed: wait for it instead.
      arm(state, state->deadline);
      return;
    }
    state->expired = true;
    state->deadline = Clock::time_point::max();
    boost::system::error_code ignored;
    state->socket->close(ignored);
  }
};

SocketDeadline::SocketDeadline(TcpSocket& socket) : state_(std::make_shared<State>(socket)) {}

SocketDeadline::~SocketDeadline() {
  state_->socket = nullptr;
  // A waiting timer is work that would keep the event loop running after its owner is gone.
  if (state_->armed_for != Clock::time_point::max()) state_->timer.cancel();
}

void SocketDeadline::expires_at(Clock::time_point deadline) {
  state_->deadline = deadline;
  state_->expired = false;
  if (deadline < state_->armed_for) State::arm(state_, deadline);
}

boost::system::error_code SocketDeadline::settle(boost::system::error_code ec) {
  state_->deadline = Clock::time_point::max();
  if (ec && state_->expired) return boost::beast::error::timeout;
  return ec;
}

bool SocketDeadline::expired() const { return state_->expired; }

}  // namespace cutover::util
