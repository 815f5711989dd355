#include "migration/webhook_notifier.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <variant>

#include "upstream/connection_pool.h"

namespace cutover::migration {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kMaxRetryAfter = std::chrono::seconds(30);
constexpr int kBackoffCapFactor = 30;
constexpr std::string_view kUserAgent = "cutover/0.1";

// Where a webhook URL points, split once at construction.
struct Endpoint {
  bool tls = false;
  std::string host;  // for resolving, SNI and certificate checks (an IPv6 address unbracketed)
  std::string port;
  std::string host_header;  // as the URL writes it: "hooks.example.com", "[::1]:8080"
  std::string target;       // path and query; the fragment is never sent
};

// The error message never repeats the URL: its path or query may hold a token.
std::variant<Endpoint, std::string> parse_endpoint(std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) return "not an absolute URL (" + parsed.error().message() + ")";
  const auto& view = *parsed;
  const auto scheme = view.scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https) {
    return std::string("the scheme must be http or https");
  }
  if (!view.has_authority() || view.encoded_host().empty())
    return std::string("the URL has no host");
  if (view.host_type() == boost::urls::host_type::ipvfuture) {
    return std::string("the host is not a name or an IP address");
  }
  if (view.has_userinfo()) {
    return std::string("credentials in the URL are not supported; put them in a header");
  }
  // Boost.URL keeps only the low 16 bits of a port number, so the digits are checked here.
  const std::string_view port = view.port();
  unsigned port_number = 0;
  if (!port.empty()) {
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), port_number);
    if (error != std::errc() || end != port.data() + port.size() || port_number == 0 ||
        port_number > 65535) {
      return std::string("the port is not valid");
    }
  }

  Endpoint endpoint;
  endpoint.tls = scheme == boost::urls::scheme::https;
  endpoint.host = view.host_address();
  endpoint.port =
      port_number != 0 ? std::to_string(port_number) : std::string(endpoint.tls ? "443" : "80");
  endpoint.host_header = view.encoded_host_and_port();
  endpoint.target = view.encoded_target();
  if (endpoint.target.empty() || endpoint.target.front() != '/') {
    endpoint.target.insert(0, "/");
  }
  return endpoint;
}

// Header names and values come from configuration; a line break would smuggle in a header.
std::optional<std::string> invalid_header(const std::string& name, const std::string& value) {
  if (name.empty() || name.find_first_of(":\r\n \t") != std::string::npos) {
    return "header name '" + name + "' is not valid";
  }
  // The value is not repeated: it may be a secret.
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    return "the value of header '" + name + "' holds a line break or NUL";
  }
  return std::nullopt;
}

// Retry-After in seconds, capped; the HTTP-date form is left to the backoff.
std::optional<milliseconds> retry_after(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  std::uint64_t seconds = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (value.empty() || error == std::errc::invalid_argument || end != value.data() + value.size()) {
    return std::nullopt;
  }
  if (error == std::errc::result_out_of_range || seconds > std::uint64_t(kMaxRetryAfter.count())) {
    return kMaxRetryAfter;
  }
  return std::chrono::seconds(seconds);
}

struct AttemptResult {
  enum class Kind { delivered, retryable, permanent, cancelled };
  Kind kind = Kind::retryable;
  std::string reason;
  std::optional<milliseconds> retry_after;
};

AttemptResult retryable(std::string reason) {
  return {AttemptResult::Kind::retryable, std::move(reason), std::nullopt};
}

template <typename Function>
auto with_stream(upstream::Connection& connection, Function&& function) {
  return std::visit(std::forward<Function>(function), connection.stream());
}

// One webhook URL and its delivery coroutine's I/O objects.
struct Target {
  Target(const asio::any_io_executor& executor, WebhookTarget settings, Endpoint address)
      : config(std::move(settings)),
        endpoint(std::move(address)),
        wake(executor),
        backoff(executor),
        resolve_deadline(executor),
        resolver(executor) {}

  // Ends whatever the delivery coroutine waits on; called on the strand.
  void cancel() {
    wake.cancel();
    backoff.cancel();
    resolve_deadline.cancel();
    resolver.cancel();
    if (connection) connection->tcp().close();
  }

  const WebhookTarget config;
  const Endpoint endpoint;

  // Guarded by State::mutex.
  std::deque<std::shared_ptr<const std::string>> queue;
  bool in_flight = false;  // the coroutine holds a message taken from `queue`
  bool idle = false;       // the coroutine waits on `wake` for a message

  // Used on the strand only.
  asio::steady_timer wake;
  asio::steady_timer backoff;
  asio::steady_timer resolve_deadline;  // the resolver has no timeout of its own
  asio::ip::tcp::resolver resolver;
  std::unique_ptr<upstream::Connection> connection;  // during an attempt
};

}  // namespace

// Everything the delivery coroutines use; each holds a shared_ptr to it, so the notifier may go
// away while they unwind.
struct WebhookNotifier::State : std::enable_shared_from_this<State> {
  State(Executor executor, milliseconds backoff_base)
      : strand(asio::make_strand(std::move(executor))),
        base_backoff(std::max(backoff_base, milliseconds(0))),
        random(std::random_device{}()) {}

  static asio::awaitable<void> deliver_loop(std::shared_ptr<State> self, Target* target);
  asio::awaitable<void> deliver(Target& target, const std::string& body);
  asio::awaitable<AttemptResult> attempt(Target& target,
                                         const http::request<http::string_body>& request);
  milliseconds backoff_delay(unsigned failures);

  asio::strand<Executor> strand;
  const milliseconds base_backoff;
  std::shared_ptr<asio::ssl::context> tls;  // only when a target is https
  std::vector<std::unique_ptr<Target>> targets;
  std::atomic<bool> stopped{false};
  std::atomic<std::uint64_t> delivered{0}, failed{0}, dropped{0}, attempts{0};
  std::mutex mutex;        // guards the targets' queues and flags
  std::mt19937_64 random;  // strand only
};

asio::awaitable<void> WebhookNotifier::State::deliver_loop(std::shared_ptr<State> self,
                                                           Target* target) {
  auto& t = *target;
  while (!self->stopped) {
    std::shared_ptr<const std::string> message;
    {
      std::lock_guard lock(self->mutex);
      if (t.queue.empty()) {
        t.idle = true;
      } else {
        message = std::move(t.queue.front());
        t.queue.pop_front();
        t.in_flight = true;
        t.idle = false;
      }
    }
    if (!message) {
      // notify() cancels this wait when it queues for an idle target; a stray cancel only
      // makes the loop look at the queue once more.
      t.wake.expires_at(asio::steady_timer::time_point::max());
      co_await t.wake.async_wait(kTuple);
      continue;
    }
    co_await self->deliver(t, *message);
    std::lock_guard lock(self->mutex);
    t.in_flight = false;
  }
}

asio::awaitable<void> WebhookNotifier::State::deliver(Target& t, const std::string& body) {
  http::request<http::string_body> request{http::verb::post, t.endpoint.target, 11};
  request.set(http::field::host, t.endpoint.host_header);
  request.set(http::field::user_agent, kUserAgent);
  request.set(http::field::content_type, "application/json");
  // One connection per message: webhooks are rare, and no pool outlives a dead endpoint.
  request.set(http::field::connection, "close");
  for (const auto& [name, value] : t.config.headers) request.set(name, value);
  request.body() = body;
  request.prepare_payload();

  const unsigned max_attempts = std::max(1u, t.config.max_attempts);
  for (unsigned n = 1;; ++n) {
    ++attempts;
    auto result = co_await attempt(t, request);
    if (result.kind == AttemptResult::Kind::delivered) {
      ++delivered;
      co_return;
    }
    if (result.kind == AttemptResult::Kind::cancelled || stopped) co_return;
    if (result.kind == AttemptResult::Kind::permanent || n >= max_attempts) {
      ++failed;
      spdlog::warn("webhook to {} failed after {} attempt{}: {}", t.endpoint.host, n,
                   n == 1 ? "" : "s", result.reason);
      co_return;
    }
    const auto delay = result.retry_after ? *result.retry_after : backoff_delay(n);
    spdlog::info("webhook to {}: attempt {} failed ({}); retrying in {} ms", t.endpoint.host, n,
                 result.reason, delay.count());
    t.backoff.expires_after(delay);
    co_await t.backoff.async_wait(kTuple);
    if (stopped) co_return;
  }
}

asio::awaitable<AttemptResult> WebhookNotifier::State::attempt(
    Target& t, const http::request<http::string_body>& request) {
  const AttemptResult cancelled{AttemptResult::Kind::cancelled, "stopped", std::nullopt};
  const auto deadline = Clock::now() + t.config.timeout;
  const auto& endpoint = t.endpoint;

  t.resolve_deadline.expires_at(deadline);
  t.resolve_deadline.async_wait([self = shared_from_this(), target = &t](auto error) {
    if (!error) target->resolver.cancel();
  });
  auto [resolve_error, results] =
      co_await t.resolver.async_resolve(endpoint.host, endpoint.port, kTuple);
  t.resolve_deadline.cancel();
  if (stopped) co_return cancelled;
  if (resolve_error == asio::error::operation_aborted) co_return retryable("resolving timed out");
  if (resolve_error) co_return retryable("cannot resolve the host: " + resolve_error.message());

  t.connection = std::make_unique<upstream::Connection>(strand.get_inner_executor(),
                                                        endpoint.tls ? tls.get() : nullptr);
  // The connection never outlives the attempt.
  struct Closer {
    Target& t;
    ~Closer() { t.connection.reset(); }
  } closer{t};
  auto& tcp = t.connection->tcp();
  // One deadline covers connect, handshake, request and response header.
  tcp.expires_at(deadline);
  auto [connect_error, connected] = co_await tcp.async_connect(results, kTuple);
  if (stopped) co_return cancelled;
  if (connect_error == beast::error::timeout) co_return retryable("connect timed out");
  if (connect_error) co_return retryable("cannot connect: " + connect_error.message());

  if (auto* stream = std::get_if<upstream::Connection::TlsStream>(&t.connection->stream())) {
    boost::system::error_code not_an_address;
    asio::ip::make_address(endpoint.host, not_an_address);
    // SNI carries names only (RFC 6066); the certificate must name the host either way.
    if (not_an_address &&
        !SSL_set_tlsext_host_name(stream->native_handle(), endpoint.host.c_str())) {
      co_return retryable("cannot set the TLS server name");
    }
    stream->set_verify_callback(asio::ssl::host_name_verification(endpoint.host));
    auto [handshake_error] =
        co_await stream->async_handshake(asio::ssl::stream_base::client, kTuple);
    if (stopped) co_return cancelled;
    if (handshake_error == beast::error::timeout) co_return retryable("TLS handshake timed out");
    if (handshake_error) {
      co_return retryable("TLS handshake failed: " + handshake_error.message());
    }
  }

  auto [write_error, written] = co_await with_stream(
      *t.connection, [&](auto& stream) { return http::async_write(stream, request, kTuple); });
  if (stopped) co_return cancelled;
  if (write_error == beast::error::timeout) co_return retryable("sending timed out");
  if (write_error) co_return retryable("cannot send: " + write_error.message());

  // Only the header matters, and the connection closes afterwards. Interim 1xx answers are
  // skipped.
  for (;;) {
    http::response_parser<http::empty_body> parser;
    auto [read_error, read] = co_await with_stream(*t.connection, [&](auto& stream) {
      return http::async_read_header(stream, t.connection->buffer(), parser, kTuple);
    });
    if (stopped) co_return cancelled;
    if (read_error == beast::error::timeout) co_return retryable("no response in time");
    if (read_error) co_return retryable("no valid response: " + read_error.message());

    const auto& response = parser.get();
    const unsigned status = response.result_int();
    if (status < 200) {
      // An interim answer has no body: whatever followed its header is the next response.
      continue;
    }
    std::string reason = "HTTP " + std::to_string(status);
    if (status < 300) co_return AttemptResult{AttemptResult::Kind::delivered, reason, {}};
    if (status == 429 || status >= 500) {
      co_return AttemptResult{AttemptResult::Kind::retryable, reason,
                              retry_after(response[http::field::retry_after])};
    }
    co_return AttemptResult{AttemptResult::Kind::permanent, reason, {}};
  }
}

milliseconds WebhookNotifier::State::backoff_delay(unsigned failures) {
  const auto cap = base_backoff * kBackoffCapFactor;
  auto ceiling = base_backoff;
  for (unsigned i = 1; i < failures && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  std::uniform_int_distribution<milliseconds::rep> uniform(0, ceiling.count());
  return milliseconds(uniform(random));
}

std::optional<std::string> validate_webhook_url(std::string_view url) {
  auto parsed = parse_endpoint(url);
  if (auto* error = std::get_if<std::string>(&parsed)) return std::move(*error);
  return std::nullopt;
}

WebhookNotifier::WebhookNotifier(Executor executor, std::vector<WebhookTarget> targets,
                                 milliseconds base_backoff, std::optional<std::string> ca_file)
    : state_(std::make_shared<State>(std::move(executor), base_backoff)) {
  for (std::size_t i = 0; i < targets.size(); ++i) {
    auto parsed = parse_endpoint(targets[i].url);
    if (auto* error = std::get_if<std::string>(&parsed)) {
      throw std::invalid_argument("webhook " + std::to_string(i + 1) + ": " + *error);
    }
    for (const auto& [name, value] : targets[i].headers) {
      if (auto error = invalid_header(name, value)) {
        throw std::invalid_argument("webhook " + std::to_string(i + 1) + ": " + *error);
      }
    }
    auto& endpoint = std::get<Endpoint>(parsed);
    if (endpoint.tls && !state_->tls) state_->tls = upstream::make_tls_context(ca_file);
    state_->targets.push_back(
        std::make_unique<Target>(state_->strand, std::move(targets[i]), std::move(endpoint)));
  }
  for (auto& target : state_->targets) {
    asio::co_spawn(state_->strand, State::deliver_loop(state_, target.get()),
                   [state = state_, target = target.get()](std::exception_ptr error) {
                     if (!error) return;
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("webhook delivery to {} ended on an unexpected error: {}",
                                     target->endpoint.host, e.what());
                     } catch (...) {
                       spdlog::error("webhook delivery to {} ended on an unknown exception",
                                     target->endpoint.host);
                     }
                     // The message in flight is lost with the coroutine.
                     ++state->failed;
                   });
  }
}

WebhookNotifier::~WebhookNotifier() { stop(); }

void WebhookNotifier::notify(std::string json_body) {
  auto& state = *state_;
  if (state.stopped) return;
  auto message = std::make_shared<const std::string>(std::move(json_body));
  bool wake = false;
  std::uint64_t dropped = 0;
  {
    std::lock_guard lock(state.mutex);
    for (auto& target : state.targets) {
      const std::size_t room = kMaxUndelivered - (target->in_flight ? 1 : 0);
      while (target->queue.size() >= room) {
        target->queue.pop_front();
        ++dropped;
      }
      target->queue.push_back(message);
      if (target->idle) {
        target->idle = false;
        wake = true;
      }
    }
  }
  state.dropped += dropped;
  // Timers are not thread-safe: the wake-up runs on the strand.
  if (wake) {
    asio::post(state.strand, [state = state_] {
      for (auto& target : state->targets) target->wake.cancel();
    });
  }
}

WebhookStats WebhookNotifier::stats() const {
  return {state_->delivered.load(), state_->failed.load(), state_->dropped.load(),
          state_->attempts.load()};
}

void WebhookNotifier::stop() {
  if (state_->stopped.exchange(true)) return;
  std::size_t abandoned = 0;
  {
    std::lock_guard lock(state_->mutex);
    for (auto& target : state_->targets) {
      abandoned += target->queue.size();
      target->queue.clear();
    }
  }
  if (abandoned > 0) spdlog::info("webhooks stopped with {} message(s) undelivered", abandoned);
  asio::post(state_->strand, [state = state_] {
    for (auto& target : state->targets) target->cancel();
  });
}

}  // namespace cutover::migration
