#include "simulate/traffic.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cmath>
#include <list>
#include <random>
#include <sstream>
#include <vector>

#include "providers/sse.h"

namespace cutover::simulate {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kBodyLimit = 64 * 1024 * 1024;
// After a failed connect a client waits a little before trying again instead of spinning.
constexpr std::chrono::milliseconds kReconnectPause{100};

// What a simulated user asks: a task on a topic, sometimes with a system prompt or an earlier
// turn, so prompts (and the gateway's shadow comparisons) vary.
constexpr std::array<std::string_view, 12> kTasks = {
    "Summarize in two sentences:",
    "Translate into French:",
    "Write a haiku about",
    "Explain to a new hire",
    "List three risks of",
    "Draft a polite reply to a customer asking about",
    "Suggest a title for a blog post about",
    "Give step-by-step instructions for",
    "What are the pros and cons of",
    "Write a short status update on",
    "Classify the urgency (low, medium, high) of",
    "Turn into a checklist:",
};
constexpr std::array<std::string_view, 12> kTopics = {
    "the delayed shipment to our Lyon warehouse",
    "rotating the database credentials every quarter",
    "the new travel expense policy",
    "why the checkout page is slow on mobile",
    "moving our cron jobs to Kubernetes",
    "a refund for an order that was charged twice",
    "the on-call handover between time zones",
    "choosing between Postgres and SQLite for an edge device",
    "the support team's goals for next quarter",
    "a customer who cannot reset their password",
    "cutting the cloud bill of the analytics cluster",
    "the outage of the payment provider last Tuesday",
};
constexpr std::array<std::string_view, 4> kSystemPrompts = {
    "",
    "You are a concise assistant for the ACME support team.",
    "You are a senior engineer. Answer precisely and briefly.",
    "Answer in plain English for a reader who is not technical.",
};
constexpr std::array<int, 4> kMaxTokens = {64, 128, 256, 512};
constexpr std::array<double, 4> kTemperatures = {0.0, 0.2, 0.7, 1.0};

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Nearest rank: the smallest sample with at least `q` of them at or below it. NaN when empty.
double quantile(std::vector<double> samples, double q) {
  if (samples.empty()) return std::nan("");
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples.size())));
  const auto index = std::min(samples.size() - 1, rank == 0 ? 0 : rank - 1);
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(index),
                   samples.end());
  return samples[index];
}

// Whole milliseconds: what a person reads in a summary (and JSON without exponents).
std::int64_t whole(double milliseconds) {
  return std::isfinite(milliseconds) ? std::llround(milliseconds) : 0;
}

// Errors that mean the server closed a kept-alive connection before reading our request: safe
// to send again once on a fresh connection, as HTTP clients do.
bool closed_while_idle(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

struct Exchange {
  http::request<http::string_body> request;
  bool streamed = false;
};

struct Outcome {
  bool ok = false;
  bool connect_failed = false;
  std::string provider;
  std::string error_kind;
  std::string error_message;
  double latency_ms = 0;
};

Outcome failure(std::string kind, std::string message) {
  Outcome outcome;
  outcome.error_kind = std::move(kind);
  outcome.error_message = std::move(message);
  return outcome;
}

Outcome transport_failure(const boost::system::error_code& ec, std::string_view step) {
  if (ec == beast::error::timeout)
    return failure("timeout", "no answer before the deadline (" + std::string(step) + ")");
  if (step == "connect") return failure("connect", ec.message());
  return failure("transport", std::string(step) + ": " + ec.message());
}

}  // namespace

std::optional<std::string> validate(const TrafficOptions& options) {
  std::vector<std::string> urls{options.url};
  urls.insert(urls.end(), options.more_urls.begin(), options.more_urls.end());
  for (const auto& text : urls) {
    auto url = boost::urls::parse_absolute_uri(text);
    if (!url || url->scheme() != "http" || url->host().empty()) {
      return "--url '" + text + "' must be http://HOST:PORT (https is not supported)";
    }
  }
  if (options.model.empty()) return std::string("--model must not be empty");
  if (options.users == 0) return std::string("--users must be at least 1");
  if (options.concurrency == 0) return std::string("--concurrency must be at least 1");
  if (!(options.rate >= 0)) return std::string("--rate must be 0 (as fast as possible) or more");
  if (!(options.stream_share >= 0 && options.stream_share <= 1)) {
    return std::string("--stream-share must be from 0 to 1");
  }
  if (options.timeout.count() <= 0) return std::string("the request timeout must be positive");
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::int64_t amount = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), amount);
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::int64_t factor = 0;
  if (unit.empty() || unit == "ms") factor = 1;
  if (unit == "s") factor = 1000;
  if (unit == "m") factor = 60'000;
  if (unit == "h") factor = 3'600'000;
  if (ec != std::errc() || factor == 0 || amount <= 0) return std::nullopt;
  return std::chrono::milliseconds(amount * factor);
}

std::string TrafficProgress::line() const {
  std::ostringstream out;
  out << std::fixed;
  out.precision(0);
  if (final) out << "done in ";
  out << elapsed_s << "s  sent " << sent << "  ok " << ok << "  errors " << errors << " | "
      << interval_rate << " req/s";
  if (std::isfinite(interval_p50_ms)) {
    out << "  p50 " << interval_p50_ms << " ms  p95 " << interval_p95_ms << " ms";
  }
  std::uint64_t served = 0;
  for (const auto& [provider, count] : interval_by_provider) served += count;
  if (served > 0) {
    out << " |";
    for (const auto& [provider, count] : interval_by_provider) {
      out << " " << provider << " "
          << 100.0 * static_cast<double>(count) / static_cast<double>(served) << "%";
    }
  }
  if (final) out << " (whole run)";
  return out.str();
}

json::object TrafficSummary::to_json() const {
  json::object providers;
  for (const auto& [provider, count] : by_provider) providers[provider] = count;
  json::object kinds;
  for (const auto& [kind, count] : errors_by_kind) kinds[kind] = count;
  return json::object{{"requests", requests},
                      {"ok", ok},
                      {"errors", errors},
                      {"by_provider", std::move(providers)},
                      {"p50_ms", whole(p50_ms)},
                      {"p95_ms", whole(p95_ms)},
                      {"p99_ms", whole(p99_ms)},
                      {"streamed", streamed},
                      {"errors_by_kind", std::move(kinds)},
                      {"duration_ms", whole(duration_s * 1000)}};
}

struct TrafficGenerator::Impl {
  // One simulated client connection: kept alive across requests, replaced after any failure.
  struct Connection {
    explicit Connection(const asio::any_io_executor& executor) : stream(executor) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::uint64_t exchanges = 0;  // responses read on it
  };

  struct Client {
    Client(const asio::any_io_executor& executor, std::size_t gateway)
        : pause(executor), gateway(gateway) {}
    asio::steady_timer pause;  // pacing and reconnect waits; cancelled by stop()
    std::optional<Connection> connection;
    std::size_t gateway;  // which of the gateways it talks to
  };

  // One gateway the clients talk to, as its URL names it.
  struct Gateway {
    explicit Gateway(const std::string& text, TrafficOptions::Api api) {
      auto url = boost::urls::parse_absolute_uri(text);
      host = std::string(url->host());
      port = url->has_port() ? std::string(url->port()) : std::string("80");
      host_header = url->has_port() ? host + ":" + port : host;
      std::string path(url->path());
      while (!path.empty() && path.back() == '/') path.pop_back();
      if (path.size() < 3 || path.compare(path.size() - 3, 3, "/v1") != 0) path += "/v1";
      target = path + (api == TrafficOptions::Api::messages ? "/messages" : "/chat/completions");
    }
    std::string host, port, host_header, target;
    asio::ip::tcp::resolver::results_type endpoints;
  };

  Impl(TrafficOptions options_in, ProgressSink sink_in)
      : options(std::move(options_in)),
        sink(std::move(sink_in)),
        random(options.seed != 0 ? options.seed : std::random_device{}()),
        progress_timer(context) {
    gateways.emplace_back(options.url, options.api);
    for (const auto& url : options.more_urls) gateways.emplace_back(url, options.api);
    if (options.rate > 0) {
      pace = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(1 / options.rate));
    }
  }

  // Stops sending; a second call abandons what is in flight.
  void on_stop() {
    if (!stopping) {
      stopping = true;
      for (auto& client : clients) client.pause.cancel();
      return;
    }
    abandoning = true;
    for (auto& client : clients) {
      if (client.connection) client.connection->stream.close();
    }
  }

  asio::awaitable<void> start() {
    asio::ip::tcp::resolver resolver(context);
    for (auto& gateway : gateways) {
      auto [ec, results] = co_await resolver.async_resolve(gateway.host, gateway.port, kTuple);
      if (ec) {
        fatal = "cannot resolve " + gateway.host + ":" + gateway.port + ": " + ec.message();
        co_return;
      }
      gateway.endpoints = results;
    }
    started = Clock::now();
    last_report = started;
    next_slot = started;
    if (options.duration) end = started + *options.duration;
    active = options.concurrency;
    for (unsigned i = 0; i < options.concurrency; ++i) {
      auto& client = clients.emplace_back(context.get_executor(), i % gateways.size());
      asio::co_spawn(context, serve(client), [this](std::exception_ptr error) {
        if (error) {
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            spdlog::error("traffic: a client stopped on an unexpected error: {}", e.what());
          }
        }
        if (--active == 0) finish();
      });
    }
    asio::co_spawn(context, report_every_second(), asio::detached);
  }

  // The next send time, or nothing when the run is over.
  std::optional<Clock::time_point> take_slot() {
    if (stopping) return std::nullopt;
    if (options.requests && issued >= *options.requests) return std::nullopt;
    auto slot = Clock::now();
    if (options.rate > 0) {
      // A backlog is dropped, not caught up in a burst: the rate is a ceiling.
      slot = std::max(next_slot, slot);
      next_slot = slot + pace;
    }
    if (end && slot >= *end) return std::nullopt;
    ++issued;
    return slot;
  }

  asio::awaitable<void> serve(Client& client) {
    while (auto slot = take_slot()) {
      if (*slot > Clock::now()) {
        client.pause.expires_at(*slot);
        co_await client.pause.async_wait(kTuple);
        if (stopping) break;
      }
      const auto exchange = next_exchange(gateways[client.gateway]);
      ++sent;
      auto outcome = co_await send(client, exchange);
      record(outcome, exchange.streamed);
      if (outcome.connect_failed && !stopping) {
        client.pause.expires_after(kReconnectPause);
        co_await client.pause.async_wait(kTuple);
      }
    }
    if (client.connection) {
      boost::system::error_code ignored;
      client.connection->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      client.connection->stream.close();
      client.connection.reset();
    }
  }

  Exchange next_exchange(const Gateway& gateway) {
    auto pick = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
    };
    auto chance = [&](double p) {
      return std::uniform_real_distribution<double>(0, 1)(random) < p;
    };
    Exchange exchange;
    exchange.streamed = chance(options.stream_share);
    const std::string user = "user-" + std::to_string(1 + pick(options.users));
    const auto topic = kTopics[pick(kTopics.size())];
    json::array messages;
    if (const auto system = kSystemPrompts[pick(kSystemPrompts.size())]; !system.empty()) {
      messages.push_back(json::object{{"role", "system"}, {"content", system}});
    }
    if (chance(0.2)) {
      messages.push_back(json::object{
          {"role", "user"}, {"content", "I have a question about " + std::string(topic) + "."}});
      messages.push_back(
          json::object{{"role", "assistant"}, {"content", "Sure, what would you like to know?"}});
    }
    messages.push_back(json::object{
        {"role", "user"},
        {"content", std::string(kTasks[pick(kTasks.size())]) + " " + std::string(topic)}});
    const bool messages_api = options.api == TrafficOptions::Api::messages;
    json::object body{{"model", options.model},
                      {"max_tokens", kMaxTokens[pick(kMaxTokens.size())]},
                      {"temperature", kTemperatures[pick(kTemperatures.size())]}};
    if (messages_api) {
      // Anthropic's shape: the system prompt apart, the user in metadata.
      if (!messages.empty() && messages.front().as_object().at("role").as_string() == "system") {
        body["system"] = messages.front().as_object().at("content");
        messages.erase(messages.begin());
      }
      body["metadata"] = json::object{{"user_id", user}};
    } else {
      body["user"] = user;
    }
    body["messages"] = std::move(messages);
    if (exchange.streamed) {
      body["stream"] = true;
      if (!messages_api && chance(0.5)) body["stream_options"] = json::object{{"include_usage", true}};
    }
    auto& request = exchange.request;
    request.method(http::verb::post);
    request.target(gateway.target);
    request.version(11);
    request.set(http::field::host, gateway.host_header);
    request.set(http::field::user_agent, "cutover-simulate-traffic/0.1");
    request.set(http::field::content_type, "application/json");
    request.set(http::field::accept, exchange.streamed ? "text/event-stream" : "application/json");
    if (!options.api_key.empty() && messages_api) {
      request.set("x-api-key", options.api_key);
      request.set("anthropic-version", "2023-06-01");
    } else if (!options.api_key.empty()) {
      request.set(http::field::authorization, "Bearer " + options.api_key);
    }
    request.set("x-user-id", user);
    request.body() = json::serialize(body);
    request.prepare_payload();
    return exchange;
  }

  // One request on the client's connection (opened when it has none), read to its last byte.
  asio::awaitable<Outcome> send(Client& client, const Exchange& exchange) {
    const auto started_at = Clock::now();
    const auto deadline = started_at + options.timeout;
    auto outcome = co_await attempt(client, exchange, deadline);
    if (!outcome.ok && outcome.error_kind == "stale" && !stopping) {
      outcome = co_await attempt(client, exchange, deadline);
    }
    if (outcome.error_kind == "stale") outcome.error_kind = "transport";
    outcome.latency_ms = milliseconds_since(started_at);
    co_return outcome;
  }

  // One try; error_kind "stale" when a kept-alive connection turned out to be closed before the
  // request reached the server (the caller tries once more on a new connection).
  asio::awaitable<Outcome> attempt(Client& client, const Exchange& exchange,
                                   Clock::time_point deadline) {
    if (!client.connection) {
      client.connection.emplace(context.get_executor());
      client.connection->stream.expires_at(deadline);
      auto [ec, endpoint] =
          co_await client.connection->stream.async_connect(gateways[client.gateway].endpoints, kTuple);
      if (ec) {
        client.connection.reset();
        auto outcome = transport_failure(ec, "connect");
        outcome.connect_failed = true;
        co_return outcome;
      }
    }
    auto& connection = *client.connection;
    const bool reused = connection.exchanges > 0;
    // Any failure below leaves the connection in an unknown state: drop it.
    auto drop = [&](Outcome outcome) {
      client.connection.reset();
      return outcome;
    };
    connection.stream.expires_at(deadline);
    http::response_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    auto [write_ec, written] =
        co_await http::async_write(connection.stream, exchange.request, kTuple);
    boost::system::error_code ec = write_ec;
    if (!ec) {
      auto [read_ec, read] =
          co_await http::async_read_header(connection.stream, connection.buffer, parser, kTuple);
      ec = read_ec;
    }
    if (ec) {
      if (reused && !parser.got_some() && closed_while_idle(ec)) {
        co_return drop(failure("stale", "the kept-alive connection was closed: " + ec.message()));
      }
      co_return drop(transport_failure(ec, "request"));
    }
    const auto& response = parser.get();
    const unsigned status = response.result_int();
    Outcome outcome;
    if (status != 200 || !exchange.streamed) {
      auto [body_ec, read] =
          co_await http::async_read(connection.stream, connection.buffer, parser, kTuple);
      if (body_ec) co_return drop(transport_failure(body_ec, "response body"));
      const auto& body = parser.get().body();
      if (status != 200) {
        outcome = failure("status_" + std::to_string(status), body.substr(0, 300));
      } else {
        boost::system::error_code parse_ec;
        auto value = json::parse(body, parse_ec);
        const auto* object = parse_ec ? nullptr : value.if_object();
        const char* answer_field =
            options.api == TrafficOptions::Api::messages ? "content" : "choices";
        if (object == nullptr || object->contains("error") || !object->contains(answer_field)) {
          outcome = failure("invalid_body", "not an answer: " + body.substr(0, 300));
        } else {
          outcome.ok = true;
        }
      }
    } else {
      // Event by event, as an SDK reads a stream, until [DONE] or an error event.
      providers::SseParser sse;
      std::vector<providers::SseEvent> events;
      std::size_t consumed = 0;
      bool saw_done = false;
      std::string error_event;
      while (!parser.is_done()) {
        auto [read_ec, read] =
            co_await http::async_read_some(connection.stream, connection.buffer, parser, kTuple);
        if (read_ec) co_return drop(transport_failure(read_ec, "stream"));
        const auto& body = parser.get().body();
        sse.feed(std::string_view(body).substr(consumed), events);
        consumed = body.size();
        for (const auto& event : events) {
          // [DONE] ends an OpenAI stream, message_stop an Anthropic one.
          if (event.data == "[DONE]" || event.event == "message_stop") {
            saw_done = true;
            continue;
          }
          boost::system::error_code parse_ec;
          auto value = json::parse(event.data, parse_ec);
          if (event.event == "error" ||
              (!parse_ec && value.is_object() && value.as_object().contains("error"))) {
            if (error_event.empty()) error_event = event.data.substr(0, 300);
          }
        }
        events.clear();
      }
      if (!error_event.empty()) {
        outcome = failure("sse_error", error_event);
      } else if (!saw_done) {
        outcome = failure("stream_truncated", "the stream ended before its end marker");
      } else {
        outcome.ok = true;
      }
    }
    outcome.provider = std::string(response["x-cutover-provider"]);
    if (!response.keep_alive()) {
      client.connection.reset();
    } else {
      ++connection.exchanges;
    }
    co_return outcome;
  }

  void record(const Outcome& outcome, bool streamed) {
    if (abandoning) {
      ++abandoned;
      return;
    }
    latencies.push_back(outcome.latency_ms);
    interval_latencies.push_back(outcome.latency_ms);
    if (streamed) ++summary.streamed;
    if (outcome.ok) {
      ++summary.ok;
      const auto provider = outcome.provider.empty() ? std::string("unknown") : outcome.provider;
      ++summary.by_provider[provider];
      ++interval_by_provider[provider];
      return;
    }
    ++summary.errors;
    ++summary.errors_by_kind[outcome.error_kind];
    if (summary.first_error.empty()) {
      summary.first_error = outcome.error_kind + ": " + outcome.error_message;
    }
  }

  asio::awaitable<void> report_every_second() {
    while (!finished) {
      progress_timer.expires_after(std::chrono::seconds(1));
      co_await progress_timer.async_wait(kTuple);
      if (finished) co_return;
      report();
    }
  }

  // The last second's figures, or the whole run's when `final`.
  void report(bool final = false) {
    const auto now = Clock::now();
    TrafficProgress progress;
    progress.final = final;
    progress.elapsed_s = std::chrono::duration<double>(now - started).count();
    progress.sent = sent;
    progress.ok = summary.ok;
    progress.errors = summary.errors;
    const auto& window = final ? latencies : interval_latencies;
    const double seconds =
        std::chrono::duration<double>(now - (final ? started : last_report)).count();
    progress.interval_rate = seconds > 0 ? static_cast<double>(window.size()) / seconds : 0;
    progress.interval_p50_ms = quantile(window, 0.5);
    progress.interval_p95_ms = quantile(window, 0.95);
    progress.interval_by_provider = final ? summary.by_provider : std::move(interval_by_provider);
    interval_by_provider.clear();
    interval_latencies.clear();
    last_report = now;
    if (sink) sink(progress);
  }

  void finish() {
    finished = true;
    progress_timer.cancel();
    report(true);
  }

  TrafficOptions options;
  ProgressSink sink;
  asio::io_context context{1};
  std::mt19937_64 random;
  asio::steady_timer progress_timer;
  std::vector<Gateway> gateways;
  std::list<Client> clients;  // stable addresses for the coroutines that use them
  Clock::duration pace{0};
  Clock::time_point started, last_report, next_slot;
  std::optional<Clock::time_point> end;
  unsigned active = 0;
  std::uint64_t issued = 0;
  std::uint64_t sent = 0;
  std::uint64_t abandoned = 0;
  bool stopping = false;
  bool abandoning = false;
  bool finished = false;
  std::string fatal;
  TrafficSummary summary;
  std::vector<double> latencies;
  std::vector<double> interval_latencies;
  std::map<std::string, std::uint64_t> interval_by_provider;
};

TrafficGenerator::TrafficGenerator(TrafficOptions options, ProgressSink on_progress) {
  if (auto problem = validate(options)) throw std::invalid_argument(*problem);
  impl_ = std::make_unique<Impl>(std::move(options), std::move(on_progress));
}

TrafficGenerator::~TrafficGenerator() = default;

TrafficSummary TrafficGenerator::run() {
  auto& impl = *impl_;
  asio::co_spawn(impl.context, impl.start(), [&impl](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      impl.fatal = e.what();
    }
  });
  impl.context.run();
  if (!impl.fatal.empty()) throw std::runtime_error(impl.fatal);
  auto summary = impl.summary;
  summary.requests = summary.ok + summary.errors;
  summary.duration_s = std::chrono::duration<double>(Clock::now() - impl.started).count();
  summary.p50_ms = quantile(impl.latencies, 0.5);
  summary.p95_ms = quantile(impl.latencies, 0.95);
  summary.p99_ms = quantile(impl.latencies, 0.99);
  if (impl.abandoned > 0) {
    spdlog::warn("traffic: {} requests in flight were abandoned", impl.abandoned);
  }
  return summary;
}

void TrafficGenerator::stop() {
  asio::post(impl_->context, [impl = impl_.get()] { impl->on_stop(); });
}

}  // namespace cutover::simulate
