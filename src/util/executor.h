// The event loop's executor as a concrete type, for the coroutines, sockets and timers of the
// request path. Asio's default, any_io_executor, erases the type: every asynchronous operation
// then copies, compares and re-targets an erased executor through function pointers, and every
// coroutine and handler carries one (about 940 instructions of a proxied request in the
// profiles, bench/RESULTS.md). Every context the gateway runs is an io_context, so nothing is
// lost by naming its executor.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>

namespace cutover {

using Executor = boost::asio::io_context::executor_type;

template <typename T>
using Awaitable = boost::asio::awaitable<T, Executor>;

// The completion token that makes an operation awaitable in an Awaitable coroutine.
inline constexpr boost::asio::use_awaitable_t<Executor> use_awaitable{};

using TcpSocket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
using TcpAcceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
using TcpResolver = boost::asio::ip::basic_resolver<boost::asio::ip::tcp, Executor>;
using SteadyTimer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, Executor>;
// Beast's stream with a timeout, for connecting and the TLS handshake.
using TcpStream = boost::beast::basic_stream<boost::asio::ip::tcp, Executor>;

}  // namespace cutover
