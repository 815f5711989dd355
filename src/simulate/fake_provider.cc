#include "simulate/fake_provider.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <random>

#include "simulate/fake_answers.h"

namespace cutover::simulate {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxRecorded = 2000;

template <typename Stream>
beast::tcp_stream& lowest(Stream& stream) {
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    return stream;
  } else {
    return stream.next_layer();
  }
}

template <typename Stream>
bool peer_closed(Stream& stream) {
  char byte;
  const auto received =
      ::recv(lowest(stream).socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// The events to stream, the first one's data broken when the reply asks for a malformed body.
std::vector<SseEvent> faulty_events(const FakeRequest& request, const FakeReply& reply) {
  auto events = stream_events(request, reply);
  if (reply.fault == Fault::malformed_body && !events.empty()) events.front().data = "{not json";
  return events;
}

template <typename Stream>
void reset_connection(Stream& stream) {
  auto& socket = lowest(stream).socket();
  boost::system::error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}
}  // namespace

std::string FakeRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (beast::iequals(key, name)) return value;
  }
  return {};
}

bool FakeRequest::wants_stream() const {
  if (!json.is_object()) return false;
  const auto* stream = json.get_object().if_contains("stream");
  return stream && stream->is_bool() && stream->get_bool();
}

std::optional<Profile> profile_named(std::string_view name) {
  Profile profile;
  profile.name = std::string(name);
  if (name == "healthy") return profile;
  if (name == "fast") {
    profile.latency = profile.jitter = profile.event_interval = std::chrono::milliseconds(0);
    return profile;
  }
  if (name == "slow") {
    profile.latency = std::chrono::milliseconds(150);
    profile.jitter = std::chrono::milliseconds(50);
    profile.event_interval = std::chrono::milliseconds(20);
    return profile;
  }
  if (name == "flaky") {
    profile.error_rate = 0.2;
    return profile;
  }
  if (name == "ratelimited") {
    profile.rate_limit_rate = 0.3;
    return profile;
  }
  if (name == "relay") {
    profile.quirks = Quirks{true, true, true};
    return profile;
  }
  return std::nullopt;
}

std::vector<std::string> profile_names() {
  return {"healthy", "fast", "slow", "flaky", "ratelimited", "relay"};
}

namespace {
bool presents_key(const Profile& profile, const FakeRequest& request) {
  const auto bearer = "Bearer " + profile.required_key;
  if (request.header("authorization") == bearer) return true;
  return profile.dialect == Dialect::anthropic &&
         request.header("x-api-key") == profile.required_key;
}

// What a profile answers at once, before any simulated work: the other dialect's paths, models
// it does not serve and wrong keys.
std::optional<FakeReply> refusal(const Profile& profile, const FakeRequest& request) {
  const bool anthropic = profile.dialect == Dialect::anthropic;
  FakeReply reply;
  if (dialect_of_target(request.target) != profile.dialect) {
    reply.status = 404;
    reply.body =
        anthropic ? anthropic_error_body("not_found_error", "Not Found")
                  : openai_error_body("Invalid URL (" + request.method + " " + request.target + ")",
                                      "invalid_request_error", nullptr);
    return reply;
  }
  if (!profile.models.empty() && request.json.is_object()) {
    const auto* model = request.json.get_object().if_contains("model");
    const std::string name = model && model->is_string() ? std::string(model->get_string()) : "";
    if (std::find(profile.models.begin(), profile.models.end(), name) == profile.models.end()) {
      reply.status = 404;
      reply.body = anthropic
                       ? anthropic_error_body("not_found_error", "model: " + name)
                       : openai_error_body("The model `" + name +
                                               "` does not exist or you do not have access to it.",
                                           "invalid_request_error", "model_not_found");
      return reply;
    }
  }
  if (!profile.required_key.empty() && !presents_key(profile, request)) {
    reply.status = 401;
    reply.body = anthropic ? anthropic_error_body("authentication_error", "invalid x-api-key")
                           : openai_error_body("Incorrect API key provided",
                                               "invalid_request_error", "invalid_api_key");
    return reply;
  }
  return std::nullopt;
}

// The profile's random draws for one request: the share that picks an error, and the delay.
struct Draw {
  double share = 0;
  std::chrono::milliseconds delay{0};
};

Draw draw_for(const Profile& profile, std::mt19937_64& generator) {
  Draw draw;
  draw.share = std::uniform_real_distribution<double>(0, 1)(generator);
  double delay_ms = static_cast<double>(profile.latency.count());
  if (profile.distribution == Profile::Distribution::lognormal) {
    const double sigma =
        std::max(0.1, static_cast<double>(profile.jitter.count()) / std::max(1.0, delay_ms));
    delay_ms *= std::exp(sigma * std::normal_distribution<double>(0, 1)(generator));
  } else if (profile.jitter.count() > 0) {
    delay_ms += static_cast<double>(std::uniform_int_distribution<std::int64_t>(
        -profile.jitter.count(), profile.jitter.count())(generator));
  }
  draw.delay = std::chrono::milliseconds(static_cast<std::int64_t>(std::max(0.0, delay_ms)));
  return draw;
}

// The minute of a profile's request quota: when it ends, and the requests taken in it.
struct QuotaMinute {
  std::optional<std::chrono::steady_clock::time_point> ends;
  std::int64_t used = 0;
};

// Counts one request against the quota; returns its rate-limit headers and whether it is over.
bool take_quota(std::int64_t limit, QuotaMinute& minute,
                std::vector<std::pair<std::string, std::string>>& headers) {
  const auto now = std::chrono::steady_clock::now();
  if (!minute.ends || now >= *minute.ends) {
    minute.ends = now + std::chrono::minutes(1);
    minute.used = 0;
  }
  ++minute.used;
  const auto reset_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(*minute.ends - now).count();
  headers.emplace_back("x-ratelimit-limit-requests", std::to_string(limit));
  headers.emplace_back("x-ratelimit-remaining-requests",
                       std::to_string(std::max<std::int64_t>(0, limit - minute.used)));
  headers.emplace_back("x-ratelimit-reset-requests", std::to_string(reset_ms) + "ms");
  if (minute.used <= limit) return false;
  headers.emplace_back("retry-after", std::to_string((reset_ms + 999) / 1000));
  return true;
}
}  // namespace

std::optional<Dialect> dialect_named(std::string_view name) {
  if (name == "openai") return Dialect::openai;
  if (name == "anthropic") return Dialect::anthropic;
  return std::nullopt;
}

std::string_view dialect_name(Dialect dialect) {
  return dialect == Dialect::anthropic ? "anthropic" : "openai";
}

Script profile_script(Profile profile) {
  auto generator = std::make_shared<std::mt19937_64>(std::random_device{}());
  auto mutex = std::make_shared<std::mutex>();
  auto minute = std::make_shared<QuotaMinute>();
  return [profile, generator, mutex, minute](const FakeRequest& request) {
    if (auto refused = refusal(profile, request)) return *refused;
    FakeReply reply = default_reply(request);
    reply.quirks = profile.quirks;
    reply.event_interval = profile.event_interval;
    Draw draw;
    bool over_quota = false;
    {
      std::lock_guard lock(*mutex);
      draw = draw_for(profile, *generator);
      if (profile.quota_requests > 0) {
        over_quota = take_quota(profile.quota_requests, *minute, reply.headers);
      }
    }
    reply.delay = draw.delay;
    // A [simulate:STATUS] marker in the prompt already chose the answer.
    if (reply.status != 200) return reply;
    const bool anthropic = profile.dialect == Dialect::anthropic;
    if (over_quota) {
      reply.status = 429;
      reply.body = anthropic ? anthropic_error_body("rate_limit_error", "simulated quota exhausted")
                             : openai_error_body("simulated quota exhausted", "rate_limit_error",
                                                 "rate_limit_exceeded");
    } else if (draw.share < profile.error_rate) {
      reply.status = 500;
      reply.body = anthropic
                       ? anthropic_error_body("api_error", "simulated internal error")
                       : openai_error_body("simulated internal error", "server_error", nullptr);
    } else if (draw.share < profile.error_rate + profile.rate_limit_rate) {
      reply.status = 429;
      reply.headers.emplace_back("retry-after", "1");
      reply.body = anthropic ? anthropic_error_body("rate_limit_error", "simulated rate limit")
                             : openai_error_body("simulated rate limit", "rate_limit_error",
                                                 "rate_limit_exceeded");
    }
    return reply;
  };
}

struct FakeProvider::Impl {
  FakeProvider& owner;
  asio::io_context context;
  asio::ip::tcp::acceptor acceptor;
  std::shared_ptr<asio::ssl::context> tls;
  std::mutex mutex;
  Script script;
  std::vector<FakeRequest> recorded;
  std::vector<std::thread> threads;
  std::size_t next_connection = 0;

  Impl(FakeProvider& owner_, Script script_, std::shared_ptr<asio::ssl::context> tls_)
      : owner(owner_), context(), acceptor(context), tls(std::move(tls_)), script(std::move(script_)) {}

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(kTuple);
      if (ec) co_return;
      ++owner.connections_;
      const auto id = ++next_connection;
      socket.set_option(asio::ip::tcp::no_delay(true));
      if (tls) {
        asio::co_spawn(context, serve_tls(std::move(socket), id), asio::detached);
      } else {
        asio::co_spawn(context, serve(beast::tcp_stream(std::move(socket)), id), asio::detached);
      }
    }
  }

  asio::awaitable<void> serve_tls(asio::ip::tcp::socket socket, std::size_t id) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls);
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (ec) co_return;
    co_await serve(std::move(stream), id);
  }

  template <typename Stream>
  asio::awaitable<void> serve(Stream stream, std::size_t id) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> message;
      auto [ec, n] = co_await http::async_read(stream, buffer, message, kTuple);
      if (ec) co_return;
      FakeRequest request;
      request.method = std::string(message.method_string());
      request.target = std::string(message.target());
      for (const auto& field : message) {
        request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      request.body = message.body();
      boost::system::error_code parse_error;
      request.json = json::parse(request.body, parse_error);
      if (parse_error) request.json = nullptr;
      request.connection_id = id;
      Script current;
      {
        std::lock_guard lock(mutex);
        if (recorded.size() < kMaxRecorded) recorded.push_back(request);
        current = script;
      }
      ++owner.requests_;
      ++owner.in_flight_;
      FakeReply reply = current ? current(request) : default_reply(request);
      // Text only: a script's reply never gains tool calls it did not ask for.
      if (reply.content.empty()) reply.content = default_text(request);
      // While draining, no connection takes another request after its answer: a restart cuts
      // nothing mid-answer.
      const bool keep_going =
          co_await answer(stream, request, reply, message.keep_alive() && !owner.draining_);
      --owner.in_flight_;
      if (!keep_going || owner.draining_) co_return;
    }
  }

  template <typename Stream>
  asio::awaitable<bool> answer(Stream& stream, const FakeRequest& request, const FakeReply& reply,
                               bool keep_alive) {
    if (reply.delay.count() > 0) {
      asio::steady_timer timer(context, reply.delay);
      co_await timer.async_wait(kTuple);
      // A client that gave up while we were "thinking" cancelled the request.
      if (peer_closed(stream)) co_return false;
    }
    switch (reply.fault) {
      case Fault::close_before_response: {
        boost::system::error_code ignored;
        lowest(stream).socket().shutdown(asio::socket_base::shutdown_both, ignored);
        lowest(stream).socket().close(ignored);
        co_return false;
      }
      case Fault::reset_before_response:
        reset_connection(stream);
        co_return false;
      case Fault::invalid_http: {
        static const std::string garbage = "this is not HTTP\r\n\r\n";
        co_await asio::async_write(stream, asio::buffer(garbage), kTuple);
        reset_connection(stream);
        co_return false;
      }
      default:
        break;
    }
    const bool stream_reply = request.wants_stream() && reply.status == 200 && !reply.body &&
                              !reply.plain_answer_to_stream &&
                              !is_count_tokens_target(request.target);
    if (!stream_reply) {
      http::response<http::string_body> response{static_cast<http::status>(reply.status), 11};
      response.set(http::field::content_type, "application/json");
      for (const auto& [name, value] : reply.headers) response.set(name, value);
      if (reply.body) {
        response.body() = *reply.body;
      } else if (reply.fault == Fault::malformed_body) {
        response.body() = dialect_of_target(request.target) == Dialect::anthropic
                              ? R"({"id": "msg_broken", "type": "message", "content": [ {"type": )"
                              : R"({"id": "broken", "choices": [ {"message": )";
      } else {
        response.body() = plain_body(request, reply);
      }
      response.keep_alive(keep_alive);
      response.prepare_payload();
      if (reply.fault == Fault::reset_mid_body) {
        http::response_serializer<http::string_body> serializer{response};
        co_await http::async_write_header(stream, serializer, kTuple);
        const auto& body = response.body();
        co_await asio::async_write(stream, asio::buffer(body.data(), body.size() / 2), kTuple);
        reset_connection(stream);
        co_return false;
      }
      if (reply.header_pause.count() > 0) {
        std::ostringstream whole;
        whole << response;
        const std::string text = whole.str();
        const auto half = text.find(' ') + 2;  // "HTTP/1.1 2": the status line cut in two
        co_await asio::async_write(stream, asio::buffer(text.data(), half), kTuple);
        asio::steady_timer pause(context, reply.header_pause);
        co_await pause.async_wait(kTuple);
        auto [ec, n] = co_await asio::async_write(
            stream, asio::buffer(text.data() + half, text.size() - half), kTuple);
        if (!ec) ++owner.completed_;
        co_return !ec && response.keep_alive() && !reply.close_after;
      }
      auto [ec, n] = co_await http::async_write(stream, response, kTuple);
      if (!ec) ++owner.completed_;
      co_return !ec && response.keep_alive() && !reply.close_after;
    }

    if (reply.framing != FakeReply::Framing::chunked) {
      co_return co_await answer_unchunked_stream(stream, request, reply, keep_alive);
    }
    http::response<http::empty_body> header{http::status::ok, 11};
    header.set(http::field::content_type, "text/event-stream");
    for (const auto& [name, value] : reply.headers) header.set(name, value);
    header.chunked(true);
    header.keep_alive(keep_alive);
    http::response_serializer<http::empty_body> serializer{header};
    auto [header_error, ignored] = co_await http::async_write_header(stream, serializer, kTuple);
    if (header_error) co_return false;
    const auto events = faulty_events(request, reply);
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (reply.fault == Fault::truncate_stream && ends_stream(events[i])) {
        reset_connection(stream);
        co_return false;
      }
      if (i > 0 && reply.event_interval.count() > 0) {
        asio::steady_timer timer(context, reply.event_interval);
        co_await timer.async_wait(kTuple);
      }
      const std::string event = sse_text(events[i], "\n");
      auto [ec, n] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(event)), kTuple);
      if (ec) co_return false;
      if (reply.fault == Fault::reset_mid_body && i == 1) {
        reset_connection(stream);
        co_return false;
      }
      if (reply.fault == Fault::stall_after_first_chunk) {
        // Silent until the peer gives up and closes the connection.
        beast::flat_buffer sink;
        co_await lowest(stream).async_read_some(sink.prepare(1), kTuple);
        co_return false;
      }
    }
    auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
    if (!ec) ++owner.completed_;
    co_return !ec && header.keep_alive() && !reply.close_after;
  }

  // A stream framed by Content-Length or by closing the connection; the events are still
  // written one at a time, so the reader sees them split across reads.
  template <typename Stream>
  asio::awaitable<bool> answer_unchunked_stream(Stream& stream, const FakeRequest& request,
                                                const FakeReply& reply, bool keep_alive) {
    auto events = faulty_events(request, reply);
    if (reply.fault == Fault::truncate_stream) {
      // The framing still ends cleanly: a stream that looks whole but lacks its end.
      events.erase(std::find_if(events.begin(), events.end(), ends_stream), events.end());
    }
    std::vector<std::string> texts;
    std::size_t total = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const bool last = i + 1 == events.size();
      auto text = sse_text(events[i], reply.line_end, !(last && reply.omit_final_blank_line));
      total += text.size();
      texts.push_back(std::move(text));
    }
    const bool by_length = reply.framing == FakeReply::Framing::content_length;
    http::response<http::empty_body> header{http::status::ok, 11};
    header.set(http::field::content_type, "text/event-stream");
    for (const auto& [name, value] : reply.headers) header.set(name, value);
    if (by_length) header.content_length(total);
    header.keep_alive(by_length && keep_alive);
    http::response_serializer<http::empty_body> serializer{header};
    serializer.split(true);
    auto [header_error, ignored] = co_await http::async_write_header(stream, serializer, kTuple);
    if (header_error) co_return false;
    for (std::size_t i = 0; i < texts.size(); ++i) {
      if (i > 0 && reply.event_interval.count() > 0) {
        asio::steady_timer timer(context, reply.event_interval);
        co_await timer.async_wait(kTuple);
      }
      auto [ec, n] = co_await asio::async_write(stream, asio::buffer(texts[i]), kTuple);
      if (ec) co_return false;
    }
    ++owner.completed_;
    if (!by_length) {
      boost::system::error_code ignored_error;
      lowest(stream).socket().shutdown(asio::socket_base::shutdown_send, ignored_error);
      co_return false;
    }
    co_return keep_alive && !reply.close_after;
  }
};

FakeProvider::FakeProvider(Script script, std::uint16_t port, std::string address,
                           std::shared_ptr<asio::ssl::context> tls, unsigned threads)
    : impl_(std::make_unique<Impl>(*this, std::move(script), std::move(tls))) {
  asio::ip::tcp::endpoint endpoint(asio::ip::make_address(address), port);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  port_ = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->context, impl_->accept_loop(), asio::detached);
  for (unsigned i = 0; i < std::max(1u, threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->context.run(); });
  }
}

FakeProvider::~FakeProvider() {
  impl_->context.stop();
  for (auto& thread : impl_->threads) thread.join();
}

void FakeProvider::drain(std::chrono::milliseconds limit) {
  draining_ = true;
  asio::post(impl_->context, [impl = impl_.get()] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  const auto until = std::chrono::steady_clock::now() + limit;
  while (in_flight_ > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string FakeProvider::base_url() const {
  return std::string(impl_->tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
         "/v1";
}

void FakeProvider::set_script(Script script) {
  std::lock_guard lock(impl_->mutex);
  impl_->script = std::move(script);
}

std::vector<FakeRequest> FakeProvider::recorded_requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->recorded;
}

}  // namespace cutover::simulate
