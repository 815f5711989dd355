#include "http/server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/beast/core/buffers_suffix.hpp>

#include "http/fields.h"
#include "http/lent_read_buffer.h"
#include "http/serialize.h"
#include "providers/openai_dialect.h"
#include "util/request_id.h"
#include "util/write_now.h"

namespace cutover::http {

namespace {
constexpr auto kTuple = asio::as_tuple(use_awaitable);
constexpr std::size_t kInitialReadBytes = 1536;
// A refused connection's request is read and dropped for this long after the 503, so that
// closing with it unread does not reset the connection before the client reads the answer.
constexpr auto kRefusalLinger = std::chrono::seconds(1);
constexpr std::size_t kRefusalLingerBytes = 64 * 1024;

// A client that sends `Expect: 100-continue` waits for a 100 before the body (curl waits a
// second, then sends anyway). HTTP/1.0 clients do not know the interim answer.
bool expects_continue(const RequestMessage& message) {
  return message.version() >= 11 &&
         beast::iequals(field_value(message, bhttp::field::expect), "100-continue");
}
}  // namespace

bool ConnectionCount::try_open(std::size_t limit) {
  if (open_.fetch_add(1, std::memory_order_relaxed) < limit) return true;
  open_.fetch_sub(1, std::memory_order_relaxed);
  refused_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// Shared between the responder and the watch's completion handler, which may outlive it.
struct Responder::Watch {
  std::shared_ptr<ClientConnection> client;
  std::function<void()> on_gone;
  bool* gone_flag = nullptr;
  bool active = true;

  static void arm(const std::shared_ptr<Watch>& watch) {
    watch->client->socket.async_wait(TcpSocket::wait_read, [watch](boost::system::error_code ec) {
      if (!watch->active || ec) return;
      char byte;
      const auto received =
          ::recv(watch->client->socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      // Readable with data is a pipelined request, not a disconnect: stop watching then.
      if (received > 0) return;
      // Nothing to read: a stale readiness edge from the request itself; wait again.
      if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return arm(watch);
      *watch->gone_flag = true;
      watch->active = false;
      if (watch->on_gone) watch->on_gone();
    });
  }
};

Responder::Responder(std::shared_ptr<ClientConnection> client, const ServerLimits& limits,
                     bool keep_alive, std::string_view request_id)
    : client_(std::move(client)),
      limits_(limits),
      keep_alive_(keep_alive),
      request_id_(request_id) {}

Responder::~Responder() { stop_watching(); }

void Responder::watch_for_disconnect(std::function<void()> on_gone) {
  stop_watching();
  watch_ = std::make_shared<Watch>(Watch{client_, std::move(on_gone), &client_gone_});
  Watch::arm(watch_);
}

void Responder::stop_watching() {
  if (!watch_) return;
  watch_->active = false;
  boost::system::error_code ignored;
  client_->socket.cancel(ignored);
  watch_.reset();
}

template <typename Message>
void Responder::decorate(Message& message) {
  message.set(bhttp::field::server, "cutover");
  message.set("x-request-id", request_id_);
  message.keep_alive(keep_alive_);
}

namespace {
// A field that decorate() or the framing sets, and so would replace rather than repeat.
template <typename Fields>
bool has_decorated_field(const Fields& fields) {
  for (const auto& field : fields) {
    switch (field.name()) {
      case bhttp::field::server:
      case bhttp::field::connection:
      case bhttp::field::content_length:
      case bhttp::field::transfer_encoding:
        return true;
      case bhttp::field::unknown:
        if (beast::iequals(field.name_string(), "x-request-id")) return true;
        break;
      default:
        break;
    }
  }
  return false;
}

// The statuses whose responses have no body and so no Content-Length from prepare_payload().
bool bodiless(unsigned status) { return status / 100 == 1 || status == 204 || status == 304; }

}  // namespace

template <typename Message>
void Responder::append_response_header(Message& message, std::optional<std::size_t> content_length,
                                       std::string& out) {
  if (message.version() != 11 || has_decorated_field(message)) {
    decorate(message);
    if (content_length) {
      message.content_length(*content_length);
    } else {
      message.chunked(true);
    }
    append_header(message, out);
    return;
  }
  append_start_and_fields(message, out);
  append_decoration_and_framing(content_length, out);
}

void Responder::append_response_header(unsigned status, const HeaderFieldList& fields,
                                       std::optional<std::size_t> content_length,
                                       std::string& out) const {
  detail::append_status(11, status, bhttp::obsolete_reason(static_cast<bhttp::status>(status)), out);
  out.append("\r\n", 2);
  for (const auto& field : fields) detail::append_field(field.name, field.value, out);
  append_decoration_and_framing(content_length, out);
}

void Responder::append_decoration_and_framing(std::optional<std::size_t> content_length,
                                              std::string& out) const {
  constexpr std::string_view kServerAndId = "Server: cutover\r\nx-request-id: ";
  constexpr std::string_view kClose = "Connection: close\r\n";
  constexpr std::string_view kChunked = "Transfer-Encoding: chunked\r\n\r\n";
  out.append(kServerAndId.data(), kServerAndId.size()).append(request_id_).append("\r\n", 2);
  if (!keep_alive_) out.append(kClose.data(), kClose.size());
  if (content_length) {
    out.append(HeaderEnd(*content_length).view());
  } else {
    out.append(kChunked.data(), kChunked.size());
  }
}

namespace {
Awaitable<bool> nothing_written() { co_return false; }
}  // namespace

// The senders are not coroutines themselves: they prepare the header and hand it, with what owns
// the body, to write_whole's frame, so a response costs one coroutine frame rather than two.
Awaitable<bool> Responder::send(bhttp::response<bhttp::string_body> response) {
  stop_watching();
  if (client_gone_ || started_) return nothing_written();
  std::string bytes;
  bytes.reserve(256);
  if (bodiless(response.result_int())) {
    decorate(response);
    response.prepare_payload();
    append_header(response, bytes);
  } else {
    append_response_header(response, response.body().size(), bytes);
  }
  return write_whole(response.result_int(), std::move(bytes), std::move(response.body()), {});
}

Awaitable<bool> Responder::send(unsigned status, const HeaderFieldList& fields,
                                std::string_view body) {
  stop_watching();
  if (client_gone_ || started_) return nothing_written();
  std::string bytes;
  bytes.reserve(256);
  append_response_header(status, fields, body.size(), bytes);
  return write_whole(status, std::move(bytes), {}, body);
}

Awaitable<bool> Responder::write_whole(unsigned status, std::string header, std::string owned_body,
                                       std::string_view borrowed_body) {
  const std::string_view body = owned_body.empty() ? borrowed_body : owned_body;
  started_ = true;
  status_ = status;
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(header), asio::buffer(body)};
  boost::system::error_code ec;
  std::size_t written = 0;
  if (!write_at_once(buffers, written, ec)) ec = co_await write_rest(buffers, written);
  finished_ = !ec;
  if (ec) client_gone_ = true;
  co_return !ec;
}

template <typename Buffers>
bool Responder::write_at_once(const Buffers& buffers, std::size_t& written,
                              boost::system::error_code& ec) {
  if (!client_->writes_without_waiting) return false;
  written = util::write_what_fits(client_->socket, buffers, ec);
  return ec || written == asio::buffer_size(buffers);
}

template <typename Buffers>
Awaitable<boost::system::error_code> Responder::write_rest(const Buffers& buffers,
                                                           std::size_t written) {
  beast::buffers_suffix<Buffers> rest(buffers);
  rest.consume(written);
  client_->deadline.expires_after(limits_.write_timeout);
  auto [write_error, ignored] = co_await asio::async_write(client_->socket, rest, kTuple);
  co_return client_->deadline.settle(write_error);
}

Awaitable<bool> Responder::send_error(unsigned status, std::string_view message,
                                      std::string_view type, std::string_view code) {
  bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status), 11};
  response.set(bhttp::field::content_type, "application/json");
  response.body() = error_format_ ? error_format_(status, message, type, code, request_id_)
                                  : providers::error_body(message, type, code, request_id_);
  co_return co_await send(std::move(response));
}

bool Responder::start_stream(const HeaderFieldList& fields) {
  if (client_gone_ || started_) return false;
  started_ = true;
  status_ = 200;
  // One allocation for the whole header, not one per doubling.
  pending_header_.reserve(256);
  append_response_header(200, fields, std::nullopt, pending_header_);
  return true;
}

bool Responder::send_chunk_at_once(std::string_view data) {
  if (client_gone_ || !started_ || finished_ || data.empty()) return true;
  chunk_head_ = ChunkHead(data.size());
  // The held header, empty once it has gone out with an earlier chunk.
  chunk_buffers_ = {asio::buffer(pending_header_), chunk_head_.buffer(), asio::buffer(data),
                    asio::buffer(kChunkEnd)};
  chunk_written_ = 0;
  boost::system::error_code ec;
  if (!write_at_once(chunk_buffers_, chunk_written_, ec)) return false;
  pending_header_.clear();
  if (ec) client_gone_ = true;
  return true;
}

Awaitable<bool> Responder::finish_chunk() {
  const auto ec = co_await write_rest(chunk_buffers_, chunk_written_);
  pending_header_.clear();
  if (ec) client_gone_ = true;
  co_return !ec;
}

Awaitable<bool> Responder::send_chunk(std::string_view data) {
  if (client_gone_ || !started_ || finished_) co_return false;
  if (!send_chunk_at_once(data)) co_return co_await finish_chunk();
  co_return !client_gone_;
}

Awaitable<bool> Responder::end_stream(std::string_view last) {
  stop_watching();
  if (client_gone_ || !started_ || finished_) co_return false;
  // The held header (empty once it has gone out), then the last chunk, if any, and the end.
  const ChunkHead head(last.size());
  std::array<asio::const_buffer, 4> buffers{asio::buffer(pending_header_), asio::const_buffer(),
                                            asio::const_buffer(), asio::buffer(kLastChunk)};
  if (!last.empty()) {
    buffers[1] = head.buffer();
    buffers[2] = asio::buffer(last);
    buffers[3] = asio::buffer(kChunkEndAndLastChunk);
  }
  boost::system::error_code ec;
  std::size_t written = 0;
  if (!write_at_once(buffers, written, ec)) ec = co_await write_rest(buffers, written);
  pending_header_.clear();
  if (ec) client_gone_ = true;
  finished_ = !ec;
  co_return finished_;
}

Listener::Listener(asio::io_context& context, const asio::ip::tcp::endpoint& endpoint,
                   Handler handler, std::shared_ptr<const ServerLimits> limits,
                   std::shared_ptr<ConnectionCount> connections)
    : context_(context),
      acceptor_(context),
      handler_(std::move(handler)),
      limits_(std::move(limits)),
      connections_(std::move(connections)) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  // Each worker binds its own acceptor to the same port; the kernel spreads connections.
  int one = 1;
  ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

void Listener::start() { asio::co_spawn(context_, accept_loop(), asio::detached); }

void Listener::drain() {
  draining_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (auto& entry : sessions_) {
    if (!entry.busy) entry.client->socket.cancel(ignored);
  }
}

void Listener::close_all() {
  draining_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (auto& entry : sessions_) entry.client->socket.close(ignored);
}

Awaitable<void> Listener::accept_loop() {
  while (!draining_) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) break;
      // Out of descriptors and similar: back off briefly instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      SteadyTimer pause(context_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kTuple);
      continue;
    }
    socket.set_option(asio::ip::tcp::no_delay(true));
    auto on_exception = [](std::exception_ptr error) {
      if (!error) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        spdlog::error("session ended by an unexpected exception: {}", e.what());
      }
    };
    const auto limit = limits_->max_connections;
    if (connections_ && !connections_->try_open(limit)) {
      asio::co_spawn(context_, refuse(std::move(socket), limit), on_exception);
      continue;
    }
    asio::co_spawn(context_, session(std::move(socket)), on_exception);
  }
}

Awaitable<void> Listener::refuse(TcpSocket accepted, std::size_t limit) {
  auto client = std::make_shared<ClientConnection>(std::move(accepted));
  auto& socket = client->socket;
  const auto limits = limits_;
  const std::string request_id = util::new_request_id();
  Responder responder(client, *limits, false, request_id);
  bhttp::response<bhttp::string_body> response{bhttp::status::service_unavailable, 11};
  response.set(bhttp::field::content_type, "application/json");
  response.set(bhttp::field::retry_after, "1");
  response.body() = providers::error_body(
      "the gateway has " + std::to_string(limit) + " client connections open, its limit; retry "
      "shortly",
      "server_error", "too_many_connections", responder.request_id());
  co_await responder.send(std::move(response));
  boost::system::error_code ignored;
  socket.shutdown(TcpSocket::shutdown_send, ignored);
  client->deadline.expires_after(kRefusalLinger);
  beast::flat_buffer discarded;
  for (std::size_t total = 0; total < kRefusalLingerBytes;) {
    auto [ec, n] = co_await socket.async_read_some(discarded.prepare(4096), kTuple);
    if (ec) break;
    total += n;
  }
  client->deadline.settle({});
  socket.close(ignored);
}

std::unique_ptr<RequestMessage> Listener::take_message() {
  if (spare_messages_.empty()) return std::make_unique<RequestMessage>();
  auto message = std::move(spare_messages_.back());
  spare_messages_.pop_back();
  return message;
}

void Listener::give_back(std::unique_ptr<RequestMessage> message) {
  if (spare_messages_.size() >= kMaxSpareMessages || message->retained_bytes() > kMaxSpareBytes) {
    return;
  }
  message->clear();
  spare_messages_.push_back(std::move(message));
}

Awaitable<void> Listener::session(TcpSocket accepted) {
  auto client = std::make_shared<ClientConnection>(std::move(accepted));
  auto& socket = client->socket;
  sessions_.push_back(SessionEntry{client, false});
  auto entry = std::prev(sessions_.end());
  struct Unregister {
    std::list<SessionEntry>& sessions;
    std::list<SessionEntry>::iterator entry;
    ConnectionCount* connections;
    ~Unregister() {
      sessions.erase(entry);
      if (connections != nullptr) connections->close();
    }
  } unregister{sessions_, entry, connections_.get()};

  LentReadBuffer lent;
  SteadyTimer request_timer(context_);
  std::uint64_t read_generation = 0;
  bool request_timed_out = false;
  for (;;) {
    const auto limits = limits_;
    if (draining_) break;
    entry->busy = false;
    // Wait for the first byte of the next request under the keep-alive timeout; an idle client
    // that goes away is closed quietly.
    // The connection holds no read buffer while it waits (http/lent_read_buffer.h): a
    // non-blocking socket is waited on until it has bytes, and only then read into a buffer taken
    // from the thread's spares. A readiness without bytes (a spurious wake-up) waits again.
    if (!lent.has_bytes()) {
      client->deadline.expires_after(limits->keep_alive_timeout);
      boost::system::error_code ec;
      std::size_t n = 0;
      if (client->writes_without_waiting) {
        do {
          auto [wait_error] = co_await socket.async_wait(TcpSocket::wait_read, kTuple);
          ec = wait_error;
          if (!ec) n = socket.read_some(lent.get().prepare(kInitialReadBytes), ec);
        } while (ec == asio::error::would_block || ec == asio::error::try_again);
      } else {
        std::tie(ec, n) =
            co_await socket.async_read_some(lent.get().prepare(kInitialReadBytes), kTuple);
      }
      client->deadline.settle(ec);
      if (ec) break;
      lent.get().commit(n);
    }
    auto& buffer = lent.get();
    entry->busy = true;

    // Given back at the end of each request, however it ends.
    struct MessageLease {
      Listener& listener;
      std::unique_ptr<RequestMessage> message;
      ~MessageLease() { listener.give_back(std::move(message)); }
    } lease{*this, take_message()};
    RequestMessage& message = *lease.message;
    RequestParser parser(message);
    parser.body_limit(limits->max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(limits->max_header_bytes));
    parser.eager(true);
    // Most requests arrive whole in the first read: parsing what is buffered in place spares
    // the asynchronous read, its deadline timer and a trip through the scheduler.
    boost::system::error_code read_error;
    const auto used = parser.put(buffer.data(), read_error);
    buffer.consume(used);
    if (read_error == bhttp::error::need_more) read_error = {};
    if (!read_error && !parser.is_done()) {
      // The deadline cancels the read instead of closing the socket (as the connection's
      // deadline would), so a slow or half-sent request still gets its 408.
      request_timed_out = false;
      const auto generation = ++read_generation;
      request_timer.expires_after(limits->request_timeout);
      request_timer.async_wait([&, generation, client](boost::system::error_code ec) {
        // An expiry racing with the read's completion must not cancel a later operation.
        if (ec || generation != read_generation) return;
        request_timed_out = true;
        boost::system::error_code ignored;
        client->socket.cancel(ignored);
      });
      if (!parser.is_header_done()) {
        auto [header_error, header_bytes] =
            co_await bhttp::async_read_header(socket, buffer, parser, kTuple);
        read_error = header_error;
      }
      // Only now, with the header accepted: a Content-Length past the body limit has already
      // failed the header with body_limit, so the client gets its 413 instead of a 100.
      if (!read_error && !parser.is_done() && expects_continue(parser.get())) {
        bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, 11};
        auto [write_error, written] = co_await bhttp::async_write(socket, go_on, kTuple);
        read_error = write_error;
      }
      if (!read_error && !parser.is_done()) {
        auto [body_error, body_bytes] = co_await bhttp::async_read(socket, buffer, parser, kTuple);
        read_error = body_error;
      }
      ++read_generation;
      request_timer.cancel();
      if (request_timed_out) read_error = beast::error::timeout;
    }
    if (read_error) {
      if (read_error == bhttp::error::end_of_stream || read_error == asio::error::eof ||
          read_error == asio::error::connection_reset) {
        break;
      }
      unsigned status = 400;
      std::string message = "malformed HTTP request: " + read_error.message();
      const char* code = "bad_request";
      if (read_error == beast::error::timeout) {
        status = 408;
        message = "the request did not arrive completely within the request timeout";
        code = "request_timeout";
      } else if (read_error == bhttp::error::body_limit) {
        status = 413;
        message = "request body exceeds the limit of " + std::to_string(limits->max_body_bytes) +
                  " bytes";
        code = "request_too_large";
      } else if (read_error == bhttp::error::header_limit) {
        status = 431;
        message = "request header exceeds " + std::to_string(limits->max_header_bytes) + " bytes";
        code = "header_too_large";
      }
      const std::string request_id = util::new_request_id();
      Responder responder(client, *limits, false, request_id);
      // The start line is parsed before any limit on the fields or body can fail (its target
      // is empty when it was not).
      if (error_format_for_ != nullptr) {
        responder.set_error_format(error_format_for_(parser.get().target()));
      }
      co_await responder.send_error(status, message, "invalid_request_error", code);
      break;
    }

    // The request is parsed whole: its buffer goes back to the thread's spares while the request
    // is served, unless a pipelined request's bytes wait in it.
    lent.give_back_if_empty();
    IncomingRequest request{message,
                            util::accept_or_new_request_id(field_value(message, "x-request-id")),
                            std::chrono::steady_clock::now()};
    Responder responder(client, *limits, parser.keep_alive() && !draining_,
                        request.request_id);
    try {
      co_await handler_(request, responder);
    } catch (const std::exception& e) {
      spdlog::error("request {} failed with an unexpected exception: {}", request.request_id,
                    e.what());
    }
    if (!responder.started()) {
      co_await responder.send_error(500, "the gateway failed to produce a response",
                                    "server_error", "internal_error");
    } else if (responder.started() && !responder.finished() && !responder.client_gone()) {
      // A stream the handler left open cannot be framed any further.
      break;
    }
    if (!responder.keep_alive() || draining_) break;
  }
  boost::system::error_code ignored;
  socket.shutdown(TcpSocket::shutdown_send, ignored);
  socket.close(ignored);
}

}  // namespace cutover::http
