#include "upstream/connection_pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <type_traits>

#include "http/serialize.h"
#include "util/clock.h"
#include "util/write_now.h"

namespace cutover::upstream {

namespace {
constexpr auto kTuple = asio::as_tuple(use_awaitable);
// An idle pooled connection older than this is closed rather than reused; providers and their
// load balancers commonly drop idle connections after about a minute.
constexpr auto kMaxIdle = std::chrono::seconds(50);
constexpr auto kTrustIdle = std::chrono::milliseconds(500);
constexpr std::size_t kReadPiece = 16 * 1024;
constexpr std::size_t kStreamPiece = 4 * 1024;

// Calls `function` with what an exchange reads and writes: the TLS stream, or a plain
// connection's socket itself. Beast's tcp_stream's layer over every operation (its own timeout, a
// rate policy, two work guards on a type-erased executor) buys nothing on the exchange, whose
// deadline util::SocketDeadline keeps; connecting and the handshake still use the stream's timeout.
template <typename Function>
auto with_stream(Connection& connection, Function&& function) {
  return std::visit(
      [&function](auto& stream) {
        if constexpr (std::is_same_v<std::decay_t<decltype(stream)>, Connection::PlainStream>) {
          return function(stream.socket());
        } else {
          return function(stream);
        }
      },
      connection.stream());
}
}  // namespace

std::string_view failure_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::connect:
      return "connect_error";
    case FailureKind::connect_timeout:
      return "connect_timeout";
    case FailureKind::first_byte_timeout:
      return "first_byte_timeout";
    case FailureKind::idle_timeout:
      return "idle_timeout";
    case FailureKind::total_timeout:
      return "total_timeout";
    case FailureKind::reset:
      return "connection_reset";
    case FailureKind::protocol:
      return "protocol_error";
    case FailureKind::pool_exhausted:
      return "pool_exhausted";
    case FailureKind::cancelled:
      return "cancelled";
  }
  return "unknown";
}

std::shared_ptr<asio::ssl::context> make_tls_context(const std::optional<std::string>& ca_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  context->set_verify_mode(asio::ssl::verify_peer);
  if (ca_file) {
    context->load_verify_file(*ca_file);
  } else {
    context->set_default_verify_paths();
  }
  return context;
}

std::variant<Connection::PlainStream, Connection::TlsStream> Connection::make_stream(
    Executor executor, asio::ssl::context* tls) {
  if (tls != nullptr) {
    return std::variant<PlainStream, TlsStream>(std::in_place_type<TlsStream>, executor, *tls);
  }
  return std::variant<PlainStream, TlsStream>(std::in_place_type<PlainStream>, executor);
}

// The deadline watches the socket of the stream as built: the variant is never re-emplaced.
Connection::Connection(Executor executor, asio::ssl::context* tls)
    : stream_(make_stream(executor, tls)), deadline_(tcp().socket()) {}

TcpStream& Connection::tcp() {
  if (auto* plain = std::get_if<PlainStream>(&stream_)) return *plain;
  return std::get<TlsStream>(stream_).next_layer();
}

bool Connection::looks_alive() {
  auto& socket = tcp().socket();
  if (!socket.is_open()) return false;
  char byte;
  const auto received = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // No data and no EOF is the only healthy state for an idle HTTP/1.1 connection.
  return received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

ConnectionPool::ConnectionPool(Executor executor, PoolTarget target,
                               std::shared_ptr<asio::ssl::context> tls, std::size_t max_connections)
    : executor_(executor),
      target_(std::move(target)),
      tls_(std::move(tls)),
      max_connections_(std::max<std::size_t>(1, max_connections)),
      resolver_(executor) {}

ConnectionPool::~ConnectionPool() { close_idle(); }

void ConnectionPool::close_idle() {
  for (auto& connection : idle_) {
    boost::system::error_code ignored;
    connection->tcp().socket().close(ignored);
    --open_;
  }
  idle_.clear();
}

Awaitable<std::variant<ConnectionPool::Acquired, UpstreamError>> ConnectionPool::acquire(
    Clock::time_point deadline) {
  for (;;) {
    if (auto idle = take_idle()) co_return std::move(*idle);
    if (open_ < max_connections_) co_return co_await connect(deadline);

    if (Clock::now() >= deadline) {
      co_return UpstreamError{FailureKind::pool_exhausted,
                              "all " + std::to_string(max_connections_) + " connections to '" +
                                  target_.provider_name + "' stayed busy until the deadline"};
    }
    SteadyTimer wakeup(executor_, deadline);
    waiters_.push_back(&wakeup);
    co_await wakeup.async_wait(kTuple);
    std::erase(waiters_, &wakeup);
  }
}

std::optional<ConnectionPool::Acquired> ConnectionPool::take_idle() {
  while (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    const auto idle_for = util::coarse_steady_now() - connection->idle_since;
    // Recently used connections skip the peek (a system call per request); the rare one the
    // provider closed meanwhile is caught by Exchange's retry on a fresh connection.
    if (idle_for < kMaxIdle && (idle_for < kTrustIdle || connection->looks_alive())) {
      return Acquired{std::move(connection), true};
    }
    boost::system::error_code ignored;
    connection->tcp().socket().close(ignored);
    --open_;
  }
  return std::nullopt;
}

void ConnectionPool::wake_one_waiter() {
  if (waiters_.empty()) return;
  auto* waiter = waiters_.front();
  waiters_.pop_front();
  waiter->cancel();
}

Awaitable<std::variant<ConnectionPool::Acquired, UpstreamError>> ConnectionPool::connect(
    Clock::time_point deadline) {
  ++open_;
  auto connection = std::make_unique<Connection>(executor_, target_.address.tls ? tls_.get()
                                                                                   : nullptr);
  const auto& endpoint = target_.address;
  auto fail = [&](FailureKind kind, std::string message) {
    --open_;
    wake_one_waiter();
    return UpstreamError{kind, "cannot connect to provider '" + target_.provider_name + "' at " +
                                   endpoint.host + ":" + std::to_string(endpoint.port) + ": " +
                                   std::move(message)};
  };

  const auto connect_deadline = std::min(deadline, Clock::now() + target_.timeouts.connect);
  auto& tcp = connection->tcp();
  tcp.expires_at(connect_deadline);
  auto [resolve_error, results] = co_await resolver_.async_resolve(
      endpoint.host, std::to_string(endpoint.port), kTuple);
  if (resolve_error) co_return fail(FailureKind::connect, resolve_error.message());
  auto [connect_error, connected] = co_await tcp.async_connect(results, kTuple);
  if (connect_error == beast::error::timeout) {
    co_return fail(FailureKind::connect_timeout, "connect timed out");
  }
  if (connect_error) co_return fail(FailureKind::connect, connect_error.message());
  tcp.socket().set_option(asio::ip::tcp::no_delay(true));
  if (!connection->tls()) {
    boost::system::error_code failed;
    tcp.socket().non_blocking(true, failed);
    connection->writes_without_waiting = !failed;
  }

  if (auto* tls = std::get_if<Connection::TlsStream>(&connection->stream())) {
    // SNI, then verification that the certificate names this host.
    if (!SSL_set_tlsext_host_name(tls->native_handle(), endpoint.host.c_str())) {
      co_return fail(FailureKind::connect, "cannot set TLS server name");
    }
    tls->set_verify_callback(asio::ssl::host_name_verification(endpoint.host));
    auto [handshake_error] = co_await tls->async_handshake(asio::ssl::stream_base::client, kTuple);
    if (handshake_error == beast::error::timeout) {
      co_return fail(FailureKind::connect_timeout, "TLS handshake timed out");
    }
    if (handshake_error) {
      co_return fail(FailureKind::connect, "TLS handshake failed: " + handshake_error.message());
    }
  }
  // The exchange's operations run under its deadline, not the stream's.
  tcp.expires_never();
  co_return Acquired{std::move(connection), false};
}

void ConnectionPool::release(std::unique_ptr<Connection> connection, bool reusable) {
  if (!connection) return;
  if (reusable && connection->tcp().socket().is_open()) {
    connection->read_buffer().give_back_if_empty();
    connection->tcp().expires_never();
    connection->idle_since = util::coarse_steady_now();
    idle_.push_back(std::move(connection));
  } else {
    boost::system::error_code ignored;
    connection->tcp().socket().shutdown(TcpSocket::shutdown_both, ignored);
    connection->tcp().socket().close(ignored);
    --open_;
  }
  wake_one_waiter();
}

Exchange::Exchange(ConnectionPool& pool, Clock::time_point deadline)
    : pool_(pool), deadline_(deadline) {}

Exchange::~Exchange() {
  const bool reusable = complete_ && !aborted_ && parser_ && parser_->keep_alive();
  pool_.release(std::move(connection_), reusable);
}

void Exchange::arm(std::chrono::milliseconds phase_timeout) {
  connection_->deadline().expires_at(std::min(deadline_, util::coarse_steady_now() + phase_timeout));
}

UpstreamError Exchange::classify(const boost::system::error_code& ec, bool before_response,
                                 FailureKind timeout_kind) const {
  const auto& name = pool_.target().provider_name;
  if (aborted_) return {FailureKind::cancelled, "exchange with '" + name + "' cancelled", before_response};
  if (ec == beast::error::timeout) {
    const bool total = Clock::now() >= deadline_;
    const auto kind = total ? FailureKind::total_timeout : timeout_kind;
    return {kind, "provider '" + name + "' timed out (" + std::string(failure_name(kind)) + ")",
            before_response};
  }
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category() && ec != http::error::end_of_stream &&
      ec != http::error::partial_message) {
    return {FailureKind::protocol, "provider '" + name + "' sent invalid HTTP: " + ec.message(),
            before_response};
  }
  return {FailureKind::reset, "connection to provider '" + name + "' failed: " + ec.message(),
          before_response};
}

Awaitable<std::optional<UpstreamError>> Exchange::start(const Request& request,
                                                        const std::function<bool()>& may_replay) {
  for (int attempt = 0;; ++attempt) {
    std::variant<ConnectionPool::Acquired, UpstreamError> acquired;
    if (auto idle = pool_.take_idle()) {
      acquired = std::move(*idle);
    } else {
      acquired = co_await pool_.acquire(deadline_);
    }
    if (auto* error = std::get_if<UpstreamError>(&acquired)) co_return *error;
    auto& lease = std::get<ConnectionPool::Acquired>(acquired);
    connection_ = std::move(lease.connection);
    if (aborted_) co_return classify({}, true, FailureKind::cancelled);
    bool retry_on_fresh_connection = false;
    auto error = co_await send_and_read_header(request, retry_on_fresh_connection);
    if (!error) co_return std::nullopt;
    // A kept-alive connection may have been closed by the provider just as we reused it; that
    // says nothing about the provider's health, so one fresh connection is tried, if the
    // caller's retry budget pays for it.
    if (lease.reused && retry_on_fresh_connection && attempt == 0 && !aborted_ &&
        (!may_replay || may_replay())) {
      parser_.reset();  // it fills the head of the connection that goes now
      pool_.release(std::move(connection_), false);
      ++replays_;
      continue;
    }
    co_return error;
  }
}

Awaitable<std::optional<UpstreamError>> Exchange::send_and_read_header(
    const Request& request, bool& retry_on_fresh_connection) {
  const auto& timeouts = pool_.target().timeouts;
  const cutover::http::HeaderEnd header_end(request.body().size());
  const std::array<asio::const_buffer, 3> buffers{
      asio::buffer(request.fields()), header_end.buffer(), asio::buffer(request.body())};
  boost::system::error_code write_error;
  std::size_t written = 0;
  if (connection_->writes_without_waiting) {
    written = util::write_what_fits(connection_->tcp().socket(), buffers, write_error);
  }
  if (!write_error && written < asio::buffer_size(buffers)) {
    beast::buffers_suffix<std::array<asio::const_buffer, 3>> rest(buffers);
    rest.consume(written);
    arm(timeouts.first_byte);
    auto [write_result, ignored] = co_await with_stream(
        *connection_, [&](auto& stream) { return asio::async_write(stream, rest, kTuple); });
    write_error = connection_->deadline().settle(write_result);
  }
  if (write_error) {
    retry_on_fresh_connection = write_error != beast::error::timeout;
    co_return classify(write_error, true, FailureKind::first_byte_timeout);
  }
  parser_.emplace(connection_->head());
  parser_->body_limit(boost::none);
  arm(timeouts.first_byte);
  if (waits_for_bytes()) {
    auto [wait_result] =
        co_await connection_->tcp().socket().async_wait(TcpSocket::wait_read, kTuple);
    if (const auto wait_error = connection_->deadline().settle(wait_result)) {
      retry_on_fresh_connection = wait_error != beast::error::timeout;
      co_return classify(wait_error, true, FailureKind::first_byte_timeout);
    }
  }
  // Beast reads at most the buffer's free capacity at a time (512 bytes at least): room for a
  // whole answer takes it in one read, where a 4 KiB stream took eight. A spare buffer has it.
  auto& buffer = connection_->buffer();
  buffer.reserve(kReadPiece);
  boost::system::error_code parse_error;
  if (!connection_->tls() && parse_header_in_place(buffer, parse_error)) {
    connection_->deadline().settle({});
    if (parse_error) co_return classify(parse_error, true, FailureKind::first_byte_timeout);
    first_byte_at_ = Clock::now();
    if (parser_->is_done()) complete_ = true;
    co_return std::nullopt;
  }
  auto [read_result, read] = co_await with_stream(*connection_, [&](auto& stream) {
    return http::async_read_header(stream, buffer, *parser_, kTuple);
  });
  const auto read_error = connection_->deadline().settle(read_result);
  if (read_error) {
    retry_on_fresh_connection =
        read_error != beast::error::timeout && connection_->buffer().size() == 0 && read == 0;
    co_return classify(read_error, true, FailureKind::first_byte_timeout);
  }
  first_byte_at_ = Clock::now();
  if (parser_->is_done()) complete_ = true;
  co_return std::nullopt;
}

// A plain connection holds no read buffer while it waits (http/lent_read_buffer.h): the buffer
// is given back when every byte in it was parsed, and taken again once the socket has bytes to
// read, so that the read lands in a buffer the thread used last. A TLS stream may hold bytes
// it decrypted already, so its reads are not preceded by a wait on the socket.
// (The wait is awaited by the callers themselves: a coroutine of its own would cost a frame.)
bool Exchange::waits_for_bytes() {
  auto& lent = connection_->read_buffer();
  lent.give_back_if_empty();
  return !connection_->tls() && !lent.held();
}

// After the socket reported bytes: reads what it has (non-blocking) and parses the header from
// the buffer. True when that settled the header: it is whole, or its bytes are not HTTP
// (`parse_error`). Otherwise Beast's asynchronous read goes on from what was read, and reports
// a failure of the socket (end of stream, reset) the way it always does. Spares that read a
// trip through the scheduler (Beast completes an operation that needed no wait through a post)
// and a coroutine frame for its initiation.
bool Exchange::parse_header_in_place(beast::flat_buffer& buffer,
                                     boost::system::error_code& parse_error) {
  boost::system::error_code read_error;
  const auto read = connection_->tcp().socket().read_some(
      buffer.prepare(beast::read_size(buffer, kReadPiece)), read_error);
  if (read_error) return false;
  buffer.commit(read);
  const auto used = parser_->put(buffer.data(), parse_error);
  buffer.consume(used);
  if (parse_error == http::error::need_more) {
    parse_error = {};
    return false;
  }
  return parse_error || parser_->is_header_done();
}

// The parser appends the body's bytes to `out` as they come, a piece at a time: a body of known
// length in pieces of what is left (room made for it at once), a chunked stream's in pieces of
// 4 KiB, so that events a provider sends on their own are forwarded as they come.
std::size_t Exchange::land(std::string& out) {
  const auto remaining = parser_->content_length_remaining();
  std::size_t piece = parser_->chunked() ? kStreamPiece : kReadPiece;
  if (remaining) {
    piece = std::clamp<std::size_t>(static_cast<std::size_t>(*remaining), 1, kReadPiece);
    out.reserve(out.size() + piece);
  }
  parser_->set_body_sink(&out, piece);
  return out.size();
}

std::size_t Exchange::keep_landed(std::size_t old_size, std::string& out) {
  parser_->set_body_sink(nullptr, 0);
  return out.size() - old_size;
}

std::optional<UpstreamError> Exchange::end_piece(boost::system::error_code ec, bool& done) {
  if (ec == http::error::need_buffer) ec = {};
  if (ec) return classify(ec, false, FailureKind::idle_timeout);
  if (parser_->is_done()) {
    complete_ = true;
    done = true;
  }
  return std::nullopt;
}

std::optional<UpstreamError> Exchange::read_buffered(std::string& out, bool& done,
                                                     bool& read_more) {
  done = false;
  read_more = false;
  if (complete_ || parser_->is_done()) {
    complete_ = true;
    done = true;
    return std::nullopt;
  }
  if (!connection_->read_buffer().has_bytes()) {  // without taking a buffer to look
    read_more = true;
    return std::nullopt;
  }
  const auto old_size = land(out);
  boost::system::error_code ec;
  const auto used = parser_->put(connection_->buffer().data(), ec);
  connection_->buffer().consume(used);
  if (ec == http::error::need_buffer || ec == http::error::need_more) ec = {};
  const auto came = keep_landed(old_size, out);
  if (!ec && came == 0 && !parser_->is_done()) {
    read_more = true;
    return std::nullopt;
  }
  return end_piece(ec, done);
}

Awaitable<std::optional<UpstreamError>> Exchange::read_some(std::string& out, bool& done) {
  bool read_more = false;
  if (auto error = read_buffered(out, done, read_more)) co_return error;
  if (!read_more) co_return std::nullopt;
  co_return co_await read_from_socket(out, done);
}

Awaitable<std::optional<UpstreamError>> Exchange::read_from_socket(std::string& out, bool& done) {
  done = false;
  arm(pool_.target().timeouts.idle);
  if (waits_for_bytes()) {
    auto [wait_result] =
        co_await connection_->tcp().socket().async_wait(TcpSocket::wait_read, kTuple);
    if (const auto wait_error = connection_->deadline().settle(wait_result)) {
      co_return classify(wait_error, false, FailureKind::idle_timeout);
    }
  }
  const auto old_size = land(out);
  auto [read_error, ignored] = co_await with_stream(*connection_, [&](auto& stream) {
    return http::async_read_some(stream, connection_->buffer(), *parser_, kTuple);
  });
  const auto ec = connection_->deadline().settle(read_error);
  keep_landed(old_size, out);
  co_return end_piece(ec, done);
}

Awaitable<std::optional<UpstreamError>> Exchange::read_all(std::string& out, std::size_t limit) {
  bool done = false;
  while (!done) {
    if (auto error = co_await read_some(out, done)) co_return error;
    if (out.size() > limit) {
      co_return UpstreamError{FailureKind::protocol,
                              "provider '" + pool_.target().provider_name + "' response exceeds " +
                                  std::to_string(limit) + " bytes",
                              false};
    }
  }
  co_return std::nullopt;
}

void Exchange::abort() {
  aborted_ = true;
  if (connection_) {
    boost::system::error_code ignored;
    connection_->tcp().socket().cancel(ignored);
    connection_->tcp().socket().close(ignored);
  }
}

}  // namespace cutover::upstream
