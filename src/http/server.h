// The downstream HTTP/1.1 server: one listener per worker thread (SO_REUSEPORT), keep-alive
// sessions with deadlines and a body limit, and a responder that writes a whole response or a
// chunked stream as it is produced.
//
// Everything here runs on the owning worker's io_context thread.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/request_message.h"
#include "http/serialize.h"
#include "util/socket_deadline.h"

namespace cutover::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

struct ServerLimits {
  std::size_t max_body_bytes = 10 * 1024 * 1024;
  std::size_t max_header_bytes = 64 * 1024;
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::milliseconds keep_alive_timeout{75'000};
  // How long a client may take to accept one write of the response.
  std::chrono::milliseconds write_timeout{60'000};
  // Client connections open at once across every listener sharing a ConnectionCount.
  std::size_t max_connections = 10'000;
};

// Client connections open across every worker's listener, against one limit: an atomic, so
// accepting on one worker never waits for another. Any thread may call it.
class ConnectionCount {
 public:
  // Takes a place for a new connection; false (and counted as refused) when `limit` are open.
  bool try_open(std::size_t limit);
  void close() { open_.fetch_sub(1, std::memory_order_relaxed); }
  std::size_t open() const { return open_.load(std::memory_order_relaxed); }
  std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> open_{0};
  std::atomic<std::uint64_t> refused_{0};
};

// A client's connection: its socket, and the deadline on its reads and writes. Reads and writes
// go to the socket itself: Beast's tcp_stream's layer over every operation (its own timeout, a
// rate policy, two work guards on a type-erased executor) bought nothing here, where the deadline
// is kept apart (util/socket_deadline.h).
struct ClientConnection {
  explicit ClientConnection(TcpSocket accepted) : socket(std::move(accepted)), deadline(socket) {
    boost::system::error_code failed;
    socket.non_blocking(true, failed);
    writes_without_waiting = !failed;
  }
  TcpSocket socket;
  util::SocketDeadline deadline;
  // The socket is non-blocking: a response is written at once and awaited only when the socket
  // did not take all of it (util/write_now.h), and the next request is read once the socket
  // reports bytes, into a buffer lent then (http/lent_read_buffer.h).
  bool writes_without_waiting = false;
};

struct IncomingRequest {
  RequestMessage& message;
  std::string request_id;
  std::chrono::steady_clock::time_point received_at;
};

// Writes the response to one request. Every write returns false once the client is gone; after
// that the handler should stop and release what it holds.
// Writes an error body in the client's protocol: (status, message, OpenAI type, OpenAI code,
// request id) -> body. OpenAI's schema unless the handler chose another.
using ErrorFormat = std::string (*)(unsigned status, std::string_view message,
                                    std::string_view type, std::string_view code,
                                    std::string_view request_id);

class Responder {
 public:
  // `request_id` is the request's, kept alive by the caller while the responder lives.
  Responder(std::shared_ptr<ClientConnection> client, const ServerLimits& limits, bool keep_alive,
            std::string_view request_id);
  ~Responder();

  Awaitable<bool> send(bhttp::response<bhttp::string_body> response);
  // The gateway's own answers (a plain answer, a cached one): the header as a status and
  // fields, written as bytes without a field set, with Server, x-request-id and the framing
  // added as for a message. The views must stay alive until the call returns, `body` until the
  // write completes (it is not copied). Keep `fields` in a named variable across a co_await:
  // GCC 12 miscompiles a temporary that holds an array inside a co_await expression.
  Awaitable<bool> send(unsigned status, const HeaderFieldList& fields, std::string_view body);
  // An error with the request id, in the schema set_error_format() chose (OpenAI's
  // {"error":{message,type,code}} by default).
  void set_error_format(ErrorFormat format) { error_format_ = format; }
  Awaitable<bool> send_error(unsigned status, std::string_view message, std::string_view type,
                             std::string_view code);

  // Starts a chunked 200 response with the given fields (written as send's are); then
  // send_chunk_at_once() per piece, end_stream(). False when the client is gone or a response has
  // begun. The header is held and goes out in one write with the first chunk (or with the end
  // of an empty stream), so a stream costs the client one wake-up less; call a send_chunk or
  // end_stream() right after. end_stream(last) sends `last` as the final chunk in the same
  // write as the stream's end.
  bool start_stream(const HeaderFieldList& fields);
  // Sends one chunk, written at once when the socket takes it (nearly always): true then, or
  // when the client is gone (client_gone() tells). False when part of it is waiting for room:
  // await finish_chunk() before `data` changes or another chunk is sent.
  bool send_chunk_at_once(std::string_view data);
  Awaitable<bool> finish_chunk();
  // Both of those in one: for a caller that has a frame to spare.
  Awaitable<bool> send_chunk(std::string_view data);
  Awaitable<bool> end_stream(std::string_view last = {});

  // Calls `on_gone` once if the client closes its connection before the response is finished,
  // so the handler can cancel upstream work it no longer needs. Cancels the socket's pending
  // operations when stopped, so call both only while no write is in flight.
  void watch_for_disconnect(std::function<void()> on_gone);
  // Stops the watch; the callback given to watch_for_disconnect is not called after this.
  void stop_watching();
  bool watching() const { return watch_ != nullptr; }

  bool started() const { return started_; }
  bool finished() const { return finished_; }
  bool client_gone() const { return client_gone_; }
  unsigned status() const { return status_; }
  bool keep_alive() const { return keep_alive_ && !client_gone_; }
  std::string_view request_id() const { return request_id_; }

 private:
  struct Watch;
  template <typename Message>
  void decorate(Message& message);
  // Appends `message`'s header as decorate() and Beast's serializer would write it, with a
  // Content-Length of `content_length` or, without one, chunked. The fields decorate() and the
  // framing add are appended rather than set on the message: each set cost an allocation and a
  // tree insert (with the keep-alive and length setters, about 1,900 instructions a response in
  // the profiles). A message that is not HTTP/1.1, or already has one of those fields (which a
  // set would replace), goes through decorate() and Beast's setters.
  template <typename Message>
  void append_response_header(Message& message, std::optional<std::size_t> content_length,
                              std::string& out);
  // A 200-class HTTP/1.1 header from a status and fields; see send(status, fields, body).
  void append_response_header(unsigned status, const HeaderFieldList& fields,
                              std::optional<std::size_t> content_length, std::string& out) const;
  // What every header the gateway writes ends with: Server, x-request-id, Connection: close
  // unless kept alive, then Content-Length or chunked and the blank line.
  void append_decoration_and_framing(std::optional<std::size_t> content_length,
                                     std::string& out) const;
  // Writes a whole response, `header` then the body, in one write. The body is `owned_body`
  // when it is not empty, else `borrowed_body`, which the caller keeps alive.
  Awaitable<bool> write_whole(unsigned status, std::string header, std::string owned_body,
                              std::string_view borrowed_body);
  // Writes what the socket takes now (util/write_now.h); true when that was all of it or the
  // socket failed (`ec`). Otherwise write_rest() awaits room for the bytes after `written`.
  template <typename Buffers>
  bool write_at_once(const Buffers& buffers, std::size_t& written, boost::system::error_code& ec);
  template <typename Buffers>
  Awaitable<boost::system::error_code> write_rest(const Buffers& buffers, std::size_t written);

  std::shared_ptr<ClientConnection> client_;
  const ServerLimits& limits_;
  bool keep_alive_;
  std::string_view request_id_;
  bool started_ = false;
  bool finished_ = false;
  bool client_gone_ = false;
  unsigned status_ = 0;
  std::shared_ptr<Watch> watch_;
  ErrorFormat error_format_ = nullptr;
  // A stream's serialized header until the first write takes it along.
  std::string pending_header_;
  // The chunk send_chunk_at_once() began, for finish_chunk(): its size line, its buffers (the
  // data stays the caller's) and how much of them went out.
  ChunkHead chunk_head_;
  std::array<asio::const_buffer, 4> chunk_buffers_;
  std::size_t chunk_written_ = 0;
};

using Handler = std::function<Awaitable<void>(IncomingRequest&, Responder&)>;

// The error format for a request target, for errors the server answers itself (a body too
// large, a request too slow) before any handler knows the protocol; null for OpenAI's schema.
using ErrorFormatForTarget = ErrorFormat (*)(std::string_view target);

// Accepts connections on one worker and runs a session per connection.
class Listener {
 public:
  // With `connections`, a connection past limits.max_connections is answered 503 and closed;
  // without, there is no limit (the admin listener).
  Listener(asio::io_context& context, const asio::ip::tcp::endpoint& endpoint, Handler handler,
           std::shared_ptr<const ServerLimits> limits,
           std::shared_ptr<ConnectionCount> connections = nullptr);

  void start();
  // Stops accepting; idle keep-alive connections close now, busy ones after their response.
  void drain();
  // Closes every connection now, busy or not (the end of a drain that ran out of time).
  void close_all();
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  std::size_t active_sessions() const { return sessions_.size(); }
  void set_limits(std::shared_ptr<const ServerLimits> limits) { limits_ = std::move(limits); }
  void set_error_format_for_target(ErrorFormatForTarget chooser) { error_format_for_ = chooser; }

 private:
  struct SessionEntry {
    std::shared_ptr<ClientConnection> client;
    bool busy = false;
  };
  Awaitable<void> accept_loop();
  Awaitable<void> session(TcpSocket socket);
  Awaitable<void> refuse(TcpSocket socket, std::size_t limit);

  // Requests are read into messages the worker keeps between requests: a request then
  // allocates nothing for its header's bytes or its body, and an idle keep-alive connection
  // holds no message. Bounded: at most kMaxSpareMessages, none keeping over kMaxSpareBytes.
  static constexpr std::size_t kMaxSpareMessages = 256;
  static constexpr std::size_t kMaxSpareBytes = 16 * 1024;
  std::unique_ptr<RequestMessage> take_message();
  void give_back(std::unique_ptr<RequestMessage> message);

  asio::io_context& context_;
  TcpAcceptor acceptor_;
  Handler handler_;
  std::shared_ptr<const ServerLimits> limits_;
  std::shared_ptr<ConnectionCount> connections_;
  std::list<SessionEntry> sessions_;
  std::vector<std::unique_ptr<RequestMessage>> spare_messages_;
  bool draining_ = false;
  ErrorFormatForTarget error_format_for_ = nullptr;
};

}  // namespace cutover::http
