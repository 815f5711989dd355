// Writing to a non-blocking socket without waiting when it has room.
//
// An awaited asio::async_write costs, even when the socket takes every byte at once (a response
// of a few kilobytes on a socket with an empty send buffer, which is nearly always the case): a
// coroutine frame for the initiation, an operation, a deadline armed and settled, and a trip
// through the scheduler before the coroutine resumes. A write that fits needs none of them: it is
// one sendmsg. The caller awaits only what the socket did not take.
#pragma once

#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>

namespace cutover::util {

// Writes as much of `buffers` as `socket` takes now. The socket must be in non-blocking mode
// (`socket.non_blocking(true)`). Returns the bytes written; `ec` reports a failure of the socket,
// never a full send buffer (then fewer bytes than the buffers hold were written).
template <typename Socket, typename Buffers>
std::size_t write_what_fits(Socket& socket, const Buffers& buffers, boost::system::error_code& ec) {
  const std::size_t written = boost::asio::write(socket, buffers, ec);
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) ec = {};
  return written;
}

}  // namespace cutover::util
