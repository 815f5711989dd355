// Upstream connections: a keep-alive pool per provider per worker, plain TCP or TLS, and one HTTP
// exchange over a pooled connection with the provider's timeouts.
//
// Knows sockets, TLS and HTTP framing, nothing about LLMs. Every object here belongs to one
// worker's io_context and is used from that thread only; only the TLS context is shared.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "config/config.h"
#include "http/lent_read_buffer.h"
#include "upstream/request.h"
#include "upstream/response_head.h"
#include "util/socket_deadline.h"

namespace cutover::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

// Where an upstream failure happened; decides the status the client gets and whether a retry
// is safe.
enum class FailureKind {
  connect,             // resolve, connect or TLS handshake failed
  connect_timeout,
  first_byte_timeout,  // the provider accepted the request but sent no header in time
  idle_timeout,        // a body (or stream) stalled between two chunks
  total_timeout,
  reset,               // the connection closed or reset mid-exchange
  protocol,            // the provider's bytes are not valid HTTP
  pool_exhausted,      // no connection slot freed before the deadline
  cancelled,           // the gateway aborted the exchange (client gone, shutdown)
};

struct UpstreamError {
  FailureKind kind;
  std::string message;
  // True when no byte of the response had arrived: the request may be retried elsewhere.
  bool before_response = true;
};

std::string_view failure_name(FailureKind kind);

// Builds the TLS client context for a provider: peer verification against the system store, or
// against `ca_file` when one is configured. Shared by all workers (SSL_CTX is thread-safe).
std::shared_ptr<asio::ssl::context> make_tls_context(const std::optional<std::string>& ca_file);

class Connection {
 public:
  using PlainStream = TcpStream;
  using TlsStream = beast::ssl_stream<TcpStream>;

  Connection(Executor executor, asio::ssl::context* tls);

  TcpStream& tcp();
  bool tls() const { return std::holds_alternative<TlsStream>(stream_); }
  std::variant<PlainStream, TlsStream>& stream() { return stream_; }
  // Bytes read past the end of the last response stay here for the next one. The buffer is
  // lent by the thread while bytes wait in it (http/lent_read_buffer.h): an idle connection, or
  // one waiting for its answer's first byte, holds none.
  beast::flat_buffer& buffer() { return buffer_.get(); }
  cutover::http::LentReadBuffer& read_buffer() { return buffer_; }

  // True when the peer has not closed an idle connection (a cheap non-blocking peek).
  bool looks_alive();

  // The deadline on an exchange's reads and writes. Connecting and the TLS handshake use the
  // stream's own timeout instead: they happen once per connection.
  util::SocketDeadline& deadline() { return deadline_; }
  // Where each answer's header is kept: its buffers are reused from answer to answer.
  ResponseHead& head() { return head_; }

  // When it went idle, by the coarse clock (util/clock.h): ages here are half a second or more.
  Clock::time_point idle_since;
  // A plain connection's socket is non-blocking: a request is written at once and awaited only
  // when the socket did not take all of it (util/write_now.h). TLS writes are always awaited.
  bool writes_without_waiting = false;

 private:
  static std::variant<PlainStream, TlsStream> make_stream(Executor executor,
                                                          asio::ssl::context* tls);

  std::variant<PlainStream, TlsStream> stream_;
  cutover::http::LentReadBuffer buffer_;
  util::SocketDeadline deadline_;
  ResponseHead head_;
};

// What a pool connects to: one endpoint of a provider, with the provider's timeouts.
struct PoolTarget {
  std::string provider_name;
  config::Endpoint address;
  config::UpstreamTimeouts timeouts;
};

// Keep-alive connections to one provider endpoint, owned by one worker.
class ConnectionPool {
 public:
  ConnectionPool(Executor executor, PoolTarget target, std::shared_ptr<asio::ssl::context> tls,
                 std::size_t max_connections);
  ~ConnectionPool();

  struct Acquired {
    std::unique_ptr<Connection> connection;
    bool reused = false;
  };
  // An idle connection when one is alive, else a new one once a slot is free. Fails with
  // connect, connect_timeout, pool_exhausted or total_timeout.
  Awaitable<std::variant<Acquired, UpstreamError>> acquire(Clock::time_point deadline);
  // An idle connection that is alive, without waiting: what acquire() gives most requests,
  // without the coroutine frame.
  std::optional<Acquired> take_idle();

  // Returns a connection after an exchange; one that is not reusable is closed.
  void release(std::unique_ptr<Connection> connection, bool reusable);
  // Closes the idle connections (shutdown): their deadlines' timers stop waiting, so the
  // worker's event loop can run out of work.
  void close_idle();

  const PoolTarget& target() const { return target_; }

 private:
  Awaitable<std::variant<Acquired, UpstreamError>> connect(Clock::time_point deadline);
  void wake_one_waiter();

  Executor executor_;
  PoolTarget target_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::size_t max_connections_;
  std::size_t open_ = 0;
  std::deque<std::unique_ptr<Connection>> idle_;
  std::deque<SteadyTimer*> waiters_;
  TcpResolver resolver_;
};

// One HTTP request/response over a pooled connection. Reads the response header, then the body
// piece by piece as it arrives (so streams are forwarded event by event).
class Exchange {
 public:
  Exchange(ConnectionPool& pool, Clock::time_point deadline);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Sends the request and waits for the response header. When a reused keep-alive connection
  // fails before any byte of an answer (the provider closed it as we reused it), the request
  // is sent once more on a fresh connection if `may_replay` allows it: the provider may have
  // received it, so the caller counts the replay as a retry (see replays()).
  Awaitable<std::optional<UpstreamError>> start(const Request& request,
                                                const std::function<bool()>& may_replay);
  unsigned replays() const { return replays_; }

  const ResponseHead& response() const { return parser_->head(); }
  unsigned status() const { return parser_->head().result_int(); }
  // The body's announced length, when the provider gave one.
  std::optional<std::uint64_t> content_length() const {
    if (auto length = parser_->content_length()) return *length;
    return std::nullopt;
  }

  // Appends the next piece of the body to `out`; sets `done` after the last one. It is
  // read_buffered() and, when that asks for more, read_from_socket().
  Awaitable<std::optional<UpstreamError>> read_some(std::string& out, bool& done);
  // The same from what the connection has already read, without waiting: a small body usually
  // arrives with its header, and parsing it in place spares a read that would complete at once
  // through the scheduler, and the coroutine frame. Sets `read_more` instead when no byte of the
  // body is buffered; read_from_socket() then reads.
  std::optional<UpstreamError> read_buffered(std::string& out, bool& done, bool& read_more);
  // Waits for the next piece from the provider's socket (read_buffered() found none usable).
  Awaitable<std::optional<UpstreamError>> read_from_socket(std::string& out, bool& done);
  // Reads the rest of the body into `out`, refusing more than `limit` bytes.
  Awaitable<std::optional<UpstreamError>> read_all(std::string& out, std::size_t limit);

  // Aborts the exchange now (client gone, shutdown): pending operations complete with
  // `cancelled` and the connection is closed rather than pooled.
  void abort();
  std::chrono::steady_clock::time_point first_byte_at() const { return first_byte_at_; }

 private:
  // Gives the connection's read buffer back when it holds no byte; true when the next read
  // should first wait for the socket to have bytes (a plain connection without a buffer).
  bool waits_for_bytes();
  bool parse_header_in_place(beast::flat_buffer& buffer, boost::system::error_code& parse_error);
  Awaitable<std::optional<UpstreamError>> send_and_read_header(const Request& request,
                                                               bool& retry_on_fresh_connection);
  UpstreamError classify(const boost::system::error_code& ec, bool before_response,
                         FailureKind timeout_kind) const;
  void arm(std::chrono::milliseconds phase_timeout);
  // Lets the next piece of the body be appended to `out`; returns out's size before it.
  std::size_t land(std::string& out);
  // How many bytes came since land() returned `old_size`; the parser lets go of `out`.
  std::size_t keep_landed(std::size_t old_size, std::string& out);
  std::optional<UpstreamError> end_piece(boost::system::error_code ec, bool& done);

  ConnectionPool& pool_;
  Clock::time_point deadline_;
  std::unique_ptr<Connection> connection_;
  std::optional<ResponseParser> parser_;
  bool aborted_ = false;
  bool complete_ = false;
  unsigned replays_ = 0;
  Clock::time_point first_byte_at_{};
};

}  // namespace cutover::upstream
