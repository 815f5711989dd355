#include "proxy/gateway.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <random>
#include <unordered_map>

#include "providers/openai_dialect.h"
#include "providers/sse.h"
#include "resilience/retry_policy.h"

namespace cutover::proxy {

namespace asio = boost::asio;
namespace json = boost::json;
namespace bhttp = boost::beast::http;
using providers::ApiKind;
using resilience::AttemptFailure;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;
constexpr std::size_t kMaxErrorBodyBytes = 1024 * 1024;
constexpr std::string_view kUserAgent = "cutover/0.1";
// How long a 429 without any reset hint keeps an endpoint throttled.
constexpr auto kDefaultThrottle = std::chrono::seconds(1);

constexpr std::size_t kMaxCachedTokens = 4096;

struct TransparentHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

double milliseconds_since(Clock::time_point start, Clock::time_point end = Clock::now()) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

// Response headers worth passing on: they tell the client's SDK how long to back off.
bool is_forwarded_response_header(std::string_view name) {
  return boost::beast::iequals(name, "retry-after") ||
         boost::beast::iequals(name, "retry-after-ms") ||
         (name.size() > 12 && boost::beast::iequals(name.substr(0, 12), "x-ratelimit-"));
}

std::string sse_data(std::string_view payload) {
  std::string event;
  event.reserve(payload.size() + 8);
  event.append("data: ").append(payload).append("\n\n");
  return event;
}

double uniform01() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(generator);
}

AttemptFailure failure_of(upstream::FailureKind kind) {
  switch (kind) {
    case upstream::FailureKind::connect:
      return AttemptFailure::connect_error;
    case upstream::FailureKind::connect_timeout:
    case upstream::FailureKind::first_byte_timeout:
    case upstream::FailureKind::idle_timeout:
    case upstream::FailureKind::total_timeout:
      return AttemptFailure::timeout;
    default:
      return AttemptFailure::reset;
  }
}
}  // namespace

struct Gateway::EndpointRuntime {
  const config::ProviderEndpoint* config = nullptr;
  std::size_t index = 0;
  std::unique_ptr<upstream::ConnectionPool> pool;
  std::shared_ptr<resilience::CircuitBreaker> breaker;
  // This worker's requests in flight on the endpoint, for least-outstanding balancing.
  unsigned outstanding = 0;
};

struct Gateway::ProviderRuntime {
  const config::Provider* config = nullptr;
  std::vector<EndpointRuntime> endpoints;
  std::shared_ptr<resilience::RetryBudget> budget;
  std::size_t rotation = 0;
};

struct Gateway::Snapshot {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const HealthRegistry> health;
  std::unordered_map<std::string, ProviderRuntime> providers;
  std::unordered_map<std::string, std::string> client_names;  // key digest -> key name
  // Keys already accepted on this worker, so a keep-alive client is not hashed on every request.
  mutable std::unordered_map<std::string, const std::string*, TransparentHash, std::equal_to<>>
      accepted_tokens;
};

struct Gateway::RequestContext {
  http::IncomingRequest& request;
  http::Responder& responder;
  AccessRecord& record;
  ApiKind kind;
  providers::RequestShape shape;
  json::object& body;
  Clock::time_point deadline;
  providers::Usage usage;
  std::vector<const EndpointRuntime*> tried;
  resilience::CircuitBreaker::Permit permit;
};

struct Gateway::AttemptOutcome {
  enum class Kind { delivered, passed_through, client_gone, failed };
  Kind kind = Kind::failed;
  // For delivered: false when the provider failed after the response had begun (mid-stream).
  bool healthy = true;
  AttemptFailure failure = AttemptFailure::reset;
  unsigned status = 0;  // the provider's HTTP status; 0 when there was none
  std::string code;
  std::string message;
  std::string body;  // the provider's error body, normalized, for HTTP failures
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<resilience::Duration> provider_delay;
  // The gateway's own limit (connection pool) refused: says nothing about the provider.
  bool gateway_limit = false;
};

Gateway::Gateway(asio::any_io_executor executor, unsigned worker_count, AccessLog& access_log)
    : executor_(std::move(executor)),
      worker_count_(std::max(1u, worker_count)),
      access_log_(access_log) {}

void Gateway::apply(std::shared_ptr<const config::Config> config, const TlsContexts& tls,
                    std::shared_ptr<const HealthRegistry> health) {
  auto snapshot = std::make_shared<Snapshot>();
  for (const auto& provider : config->providers) {
    const auto& provider_health = health->provider(provider.name);
    ProviderRuntime runtime;
    runtime.config = &provider;
    runtime.budget = provider_health.budget;
    // The connection limit is shared out between workers.
    const auto per_worker = (provider.max_connections + worker_count_ - 1) / worker_count_;
    auto context = tls.contains(provider.name) ? tls.at(provider.name) : nullptr;
    for (std::size_t i = 0; i < provider.endpoints.size(); ++i) {
      const auto& endpoint = provider.endpoints[i];
      EndpointRuntime endpoint_runtime;
      endpoint_runtime.config = &endpoint;
      endpoint_runtime.index = i;
      endpoint_runtime.breaker = provider_health.breakers.at(i);
      endpoint_runtime.pool = std::make_unique<upstream::ConnectionPool>(
          executor_, upstream::PoolTarget{provider.name, endpoint.address, provider.timeouts},
          endpoint.address.tls ? context : nullptr, per_worker);
      runtime.endpoints.push_back(std::move(endpoint_runtime));
    }
    snapshot->providers.emplace(provider.name, std::move(runtime));
  }
  for (const auto& key : config->client_keys) snapshot->client_names[key.sha256_hex] = key.name;
  snapshot->health = std::move(health);
  snapshot->config = std::move(config);
  snapshot_ = std::move(snapshot);
}

void Gateway::abort_all() {
  for (auto& [exchange, ignored] : in_flight_) exchange->abort();
}

void Gateway::watch_slow_requests(std::chrono::milliseconds after) {
  const auto now = Clock::now();
  for (auto& [exchange, flight] : in_flight_) {
    if (now - flight.since < after || flight.responder->watching() ||
        flight.responder->client_gone()) {
      continue;
    }
    // Between two of the request's own operations: no write of it is in flight now.
    flight.responder->watch_for_disconnect([exchange = exchange] { exchange->abort(); });
  }
}

const std::string* Gateway::authenticate(const http::IncomingRequest& request,
                                         const Snapshot& snapshot) const {
  static const std::string kAnonymous = "anonymous";
  std::string_view token;
  const auto authorization = request.message[bhttp::field::authorization];
  if (authorization.size() > 7 && boost::beast::iequals(authorization.substr(0, 7), "bearer ")) {
    token = authorization.substr(7);
  } else if (auto api_key = request.message["x-api-key"]; !api_key.empty()) {
    token = api_key;
  }
  if (!token.empty()) {
    if (auto cached = snapshot.accepted_tokens.find(token); cached != snapshot.accepted_tokens.end()) {
      return cached->second;
    }
    auto found = snapshot.client_names.find(config::sha256_hex(token));
    if (found != snapshot.client_names.end()) {
      // Only accepted keys are remembered, so unknown tokens cannot grow the cache.
      if (snapshot.accepted_tokens.size() >= kMaxCachedTokens) snapshot.accepted_tokens.clear();
      snapshot.accepted_tokens.emplace(std::string(token), &found->second);
      return &found->second;
    }
  }
  if (snapshot.config->allow_unauthenticated) return &kAnonymous;
  return nullptr;
}

asio::awaitable<void> Gateway::handle(http::IncomingRequest& request, http::Responder& responder) {
  auto snapshot = snapshot_;
  const auto method = request.message.method();
  const auto path = path_of(request.message.target());
  auto log_simple = [&](std::string_view error) {
    AccessRecord record;
    record.request_id = request.request_id;
    record.method = request.message.method_string();
    record.route = path;
    record.status = responder.status();
    record.error = error;
    record.latency_ms = milliseconds_since(request.received_at);
    access_log_.record(record);
  };
  auto wrong_method = [&](std::string_view allowed) -> asio::awaitable<void> {
    co_await responder.send_error(405,
                                  "method " + std::string(request.message.method_string()) +
                                      " is not allowed on " + std::string(path) + "; use " +
                                      std::string(allowed),
                                  "invalid_request_error", "method_not_allowed");
    log_simple("method_not_allowed");
  };

  if (path == "/healthz" || path == "/readyz") {
    if (method != bhttp::verb::get && method != bhttp::verb::head) {
      co_return co_await wrong_method("GET");
    }
    const bool ready = path == "/healthz" || (!draining_ && snapshot);
    bhttp::response<bhttp::string_body> response{
        ready ? bhttp::status::ok : bhttp::status::service_unavailable, 11};
    response.set(bhttp::field::content_type, "application/json");
    response.body() = ready ? R"({"status":"ok"})" : R"({"status":"draining"})";
    co_await responder.send(std::move(response));
    co_return;
  }

  int kind = -1;
  if (path == "/v1/chat/completions") kind = static_cast<int>(ApiKind::chat_completions);
  if (path == "/v1/completions") kind = static_cast<int>(ApiKind::completions);
  if (path == "/v1/embeddings") kind = static_cast<int>(ApiKind::embeddings);
  if (kind < 0 && path != "/v1/models") {
    co_await responder.send_error(404, "no route for " + std::string(path),
                                  "invalid_request_error", "unknown_url");
    log_simple("unknown_url");
    co_return;
  }
  if (kind < 0 && method != bhttp::verb::get) co_return co_await wrong_method("GET");
  if (kind >= 0 && method != bhttp::verb::post) co_return co_await wrong_method("POST");

  const std::string* client_name = authenticate(request, *snapshot);
  if (client_name == nullptr) {
    co_await responder.send_error(401,
                                  "missing or invalid API key; send 'Authorization: Bearer KEY' "
                                  "with a key the gateway is configured with",
                                  "authentication_error", "invalid_api_key");
    log_simple("invalid_api_key");
    co_return;
  }
  if (kind < 0) {
    co_await list_models(request, responder, *snapshot);
    log_simple("");
    co_return;
  }
  co_await proxy(request, responder, std::move(snapshot), kind, *client_name);
}

asio::awaitable<void> Gateway::list_models(http::IncomingRequest&, http::Responder& responder,
                                           const Snapshot& snapshot) {
  json::array data;
  for (const auto& [model, route] : snapshot.config->routes) {
    data.push_back(json::object{
        {"id", model}, {"object", "model"}, {"created", 0}, {"owned_by", route.provider}});
  }
  bhttp::response<bhttp::string_body> response{bhttp::status::ok, 11};
  response.set(bhttp::field::content_type, "application/json");
  response.body() = json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}});
  co_await responder.send(std::move(response));
}

Gateway::EndpointRuntime* Gateway::pick_endpoint(ProviderRuntime& provider,
                                                 RequestContext& context, std::string& refusal) {
  // Least outstanding requests per unit of weight, endpoints this request has not tried first,
  // and a rotating start so equal endpoints share the load.
  const auto now = Clock::now();
  if (provider.endpoints.size() == 1) {
    auto& only = provider.endpoints.front();
    auto permit = only.breaker->try_acquire(now);
    if (permit) {
      context.permit = permit;
      return &only;
    }
    refusal = permit.refusal == resilience::CircuitBreaker::Refusal::throttled ? "throttled"
                                                                                : "circuit_open";
    return nullptr;
  }
  std::vector<EndpointRuntime*> order;
  order.reserve(provider.endpoints.size());
  const auto count = provider.endpoints.size();
  const auto start = provider.rotation++;
  for (std::size_t i = 0; i < count; ++i) order.push_back(&provider.endpoints[(start + i) % count]);
  auto tried = [&](const EndpointRuntime* endpoint) {
    return std::find(context.tried.begin(), context.tried.end(), endpoint) != context.tried.end();
  };
  std::stable_sort(order.begin(), order.end(), [&](const EndpointRuntime* a, const EndpointRuntime* b) {
    if (tried(a) != tried(b)) return !tried(a);
    return static_cast<double>(a->outstanding) / a->config->weight <
           static_cast<double>(b->outstanding) / b->config->weight;
  });
  bool throttled = false;
  for (auto* endpoint : order) {
    auto permit = endpoint->breaker->try_acquire(now);
    if (permit) {
      context.permit = permit;
      return endpoint;
    }
    throttled = throttled || permit.refusal == resilience::CircuitBreaker::Refusal::throttled;
  }
  refusal = throttled ? "throttled" : "circuit_open";
  return nullptr;
}

// `client_name` lives in `snapshot`, which this frame keeps alive.
asio::awaitable<void> Gateway::proxy(http::IncomingRequest& request, http::Responder& responder,
                                     std::shared_ptr<Snapshot> snapshot, int api_kind,
                                     const std::string& client_name) {
  const auto kind = static_cast<ApiKind>(api_kind);
  const auto& config = *snapshot->config;

  AccessRecord record;
  record.request_id = request.request_id;
  record.method = request.message.method_string();
  record.route = path_of(request.message.target());
  record.client_key = client_name;
  std::string error_name;
  std::string attempts_log;
  auto finish = [&] {
    record.status = responder.status();
    record.error = error_name;
    record.latency_ms = milliseconds_since(request.received_at);
    if (!attempts_log.empty()) record.attempts_json = attempts_log + "]";
    access_log_.record(record);
  };
  auto reject = [&](unsigned status, std::string message, std::string_view type,
                    std::string_view code) -> asio::awaitable<void> {
    error_name = code;
    co_await responder.send_error(status, message, type, code);
    finish();
  };

  // Most request bodies fit in the frame's buffer: parsing them allocates nothing.
  unsigned char parse_buffer[4096];
  json::monotonic_resource parse_memory(parse_buffer, sizeof parse_buffer);
  boost::system::error_code parse_error;
  json::value parsed = json::parse(request.message.body(), parse_error, &parse_memory);
  if (parse_error) {
    co_return co_await reject(400, "request body is not valid JSON: " + parse_error.message(),
                              "invalid_request_error", "invalid_json");
  }
  if (!parsed.is_object()) {
    co_return co_await reject(400, "request body must be a JSON object", "invalid_request_error",
                              "invalid_json");
  }
  RequestContext context{request, responder, record, kind, {}, parsed.get_object(), {}, {}, {}, {}};
  if (auto problem = providers::validate_request(parsed.get_object(), kind, context.shape)) {
    co_return co_await reject(400, *problem, "invalid_request_error", "invalid_request");
  }
  record.client_model = context.shape.model;
  record.stream = context.shape.stream;

  auto route = config.routes.find(context.shape.model);
  if (route == config.routes.end()) {
    co_return co_await reject(404,
                              "the model '" + context.shape.model +
                                  "' does not exist or is not routed by this gateway",
                              "invalid_request_error", "model_not_found");
  }
  std::vector<std::string_view> chain{route->second.provider};
  for (const auto& fallback : route->second.fallback) chain.push_back(fallback);
  // The route's deadline spans every attempt, fallbacks included (as Envoy's route timeout).
  const auto started = Clock::now();
  context.deadline = started + snapshot->providers.at(route->second.provider).config->timeouts.total;

  std::optional<AttemptOutcome> last_failure;
  std::vector<std::string> refusals;
  unsigned attempts = 0;
  auto log_attempt = [&](std::string_view provider, long endpoint, std::string_view result,
                         double ms) {
    if (!access_log_.enabled()) return;
    attempts_log += attempts_log.empty() ? "[" : ",";
    attempts_log += fmt::format(R"({{"provider":"{}","endpoint":{},"result":"{}","ms":{:.3f}}})",
                                provider, endpoint, result, ms);
  };

  for (const auto provider_name : chain) {
    auto& provider = snapshot->providers.at(std::string(provider_name));
    const auto& policy = route->second.retry ? *route->second.retry : provider.config->retry;
    provider.budget->record_request(Clock::now());
    record.provider = provider.config->name;
    record.provider_model = provider.config->models.at(context.shape.model);
    for (unsigned attempt_number = 0; attempt_number < policy.max_attempts; ++attempt_number) {
      if (attempt_number > 0 && !provider.budget->try_acquire_retry(Clock::now())) {
        refusals.push_back("provider '" + provider.config->name + "': retry budget spent");
        log_attempt(provider.config->name, -1, "retry_budget_exhausted", 0);
        break;
      }
      std::string refusal;
      auto* endpoint = pick_endpoint(provider, context, refusal);
      if (endpoint == nullptr) {
        refusals.push_back("provider '" + provider.config->name + "': " + refusal);
        log_attempt(provider.config->name, -1, refusal, 0);
        break;
      }
      context.tried.push_back(endpoint);
      const auto permit = context.permit;
      const auto attempt_started = Clock::now();
      ++attempts;
      auto outcome = co_await attempt(context, provider, *endpoint);
      const auto now = Clock::now();
      const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - attempt_started);
      auto& breaker = *endpoint->breaker;
      using Kind = AttemptOutcome::Kind;
      switch (outcome.kind) {
        case Kind::delivered:
          if (outcome.healthy) {
            breaker.on_success(permit, elapsed, now);
          } else {
            breaker.on_failure(permit, elapsed, now);
          }
          break;
        case Kind::passed_through:
        case Kind::client_gone:
          breaker.release(permit);
          break;
        case Kind::failed:
          if (outcome.gateway_limit) {
            breaker.release(permit);
          } else if (outcome.failure == AttemptFailure::rate_limited) {
            breaker.on_throttled(permit, now + outcome.provider_delay.value_or(kDefaultThrottle));
          } else {
            breaker.on_failure(permit, elapsed, now);
          }
          break;
      }
      const std::string result =
          outcome.kind == Kind::failed
              ? (outcome.status ? std::to_string(outcome.status) : outcome.code)
              : (outcome.kind == Kind::client_gone ? "client_disconnected"
                                                   : std::to_string(responder.status()));
      log_attempt(provider.config->name, static_cast<long>(endpoint->index), result,
                  milliseconds_since(attempt_started, now));
      if (outcome.kind != Kind::failed) {
        if (outcome.kind == Kind::client_gone) error_name = "client_disconnected";
        if (outcome.kind == Kind::delivered && !outcome.healthy) error_name = outcome.code;
        if (outcome.kind == Kind::passed_through) error_name = "upstream_status";
        finish();
        co_return;
      }
      const bool retryable = policy.retries(outcome.failure, outcome.status) && !outcome.gateway_limit;
      last_failure = std::move(outcome);
      if (!retryable || attempt_number + 1 >= policy.max_attempts) break;
      auto delay = resilience::backoff_delay(policy, attempt_number, uniform01);
      if (last_failure->provider_delay) {
        // A provider that asks for a long pause is not hammered: fail over instead.
        if (*last_failure->provider_delay > policy.max_retry_after) break;
        delay = std::max(delay, *last_failure->provider_delay);
      }
      if (Clock::now() + delay >= context.deadline) break;  // never sleep past the deadline
      if (delay.count() > 0) {
        asio::steady_timer pause(executor_, delay);
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      }
    }
  }

  // Every provider failed or refused. Our retries are spent, so tell the SDK not to add its own.
  bhttp::response<bhttp::string_body> response;
  response.version(11);
  response.set(bhttp::field::content_type, "application/json");
  response.set("x-should-retry", "false");
  response.set("x-cutover-attempts", std::to_string(attempts));
  if (last_failure) {
    for (const auto& [name, value] : last_failure->headers) response.set(name, value);
  }
  if (last_failure && last_failure->status != 0) {
    response.result(last_failure->status);
    response.body() = std::move(last_failure->body);
    error_name = "upstream_status";
  } else if (last_failure) {
    const bool timeout = last_failure->failure == AttemptFailure::timeout;
    const unsigned status = last_failure->gateway_limit ? 503 : (timeout ? 504 : 502);
    response.result(status);
    response.body() = providers::error_body(last_failure->message,
                                            timeout ? "timeout_error" : "upstream_error",
                                            last_failure->code, request.request_id);
    error_name = last_failure->code;
  } else {
    std::string message = "no provider could take the request:";
    for (const auto& refusal : refusals) message += " " + refusal + ";";
    message.pop_back();
    response.result(503);
    response.body() = providers::error_body(message, "upstream_error", "circuit_open", request.request_id);
    error_name = "circuit_open";
  }
  co_await responder.send(std::move(response));
  finish();
}

asio::awaitable<Gateway::AttemptOutcome> Gateway::attempt(RequestContext& context,
                                                          ProviderRuntime& provider_runtime,
                                                          EndpointRuntime& endpoint) {
  using Kind = AttemptOutcome::Kind;
  const auto& provider = *provider_runtime.config;
  const auto& address = endpoint.config->address;
  const auto& api_key = endpoint.config->api_key;
  const auto kind = context.kind;
  auto& request = context.request;
  auto& responder = context.responder;
  auto& record = context.record;
  const auto& shape = context.shape;
  const auto& provider_model = provider.models.at(shape.model);

  const bool ask_usage = shape.stream && provider.stream_usage && !shape.client_requested_usage;
  bhttp::request<bhttp::string_body> upstream_request{
      bhttp::verb::post, address.base_path + std::string(providers::api_path(kind)), 11};
  upstream_request.set(bhttp::field::host, address.host);
  upstream_request.set(bhttp::field::content_type, "application/json");
  upstream_request.set(bhttp::field::accept, shape.stream ? "text/event-stream" : "application/json");
  upstream_request.set(bhttp::field::user_agent, kUserAgent);
  upstream_request.set("x-request-id", request.request_id);
  if (!api_key.empty()) upstream_request.set(bhttp::field::authorization, "Bearer " + api_key);
  upstream_request.keep_alive(true);
  upstream_request.body() = providers::rewrite_request(context.body, provider_model, ask_usage,
                                                       shape.client_requested_usage);
  upstream_request.prepare_payload();

  upstream::Exchange exchange(*endpoint.pool,
                              std::min(context.deadline, Clock::now() + provider.timeouts.total));
  in_flight_.emplace(&exchange, InFlight{&responder, Clock::now()});
  ++endpoint.outstanding;
  struct Cleanup {
    http::Responder& responder;
    std::unordered_map<upstream::Exchange*, InFlight>& in_flight;
    upstream::Exchange* exchange;
    unsigned& outstanding;
    ~Cleanup() {
      responder.stop_watching();
      in_flight.erase(exchange);
      --outstanding;
    }
  } cleanup{responder, in_flight_, &exchange, endpoint.outstanding};

  auto transport_failure = [&](const upstream::UpstreamError& error) {
    AttemptOutcome outcome;
    if (error.kind == upstream::FailureKind::cancelled || responder.client_gone()) {
      outcome.kind = Kind::client_gone;
      return outcome;
    }
    outcome.failure = failure_of(error.kind);
    outcome.gateway_limit = error.kind == upstream::FailureKind::pool_exhausted;
    outcome.code = upstream::failure_name(error.kind);
    outcome.message = error.message;
    return outcome;
  };
  auto invalid_response = [&](std::string message) {
    AttemptOutcome outcome;
    outcome.failure = AttemptFailure::invalid_response;
    outcome.code = "invalid_upstream_response";
    outcome.message = std::move(message);
    return outcome;
  };

  if (auto error = co_await exchange.start(upstream_request)) co_return transport_failure(*error);

  const unsigned upstream_status = exchange.status();
  if (upstream_status < 200 || upstream_status >= 300) {
    std::string body;
    if (auto error = co_await exchange.read_all(body, kMaxErrorBodyBytes)) {
      co_return transport_failure(*error);
    }
    AttemptOutcome outcome;
    outcome.status = upstream_status;
    for (const auto& field : exchange.response()) {
      if (is_forwarded_response_header(field.name_string())) {
        outcome.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
    }
    outcome.body = providers::normalize_error_body(body, upstream_status, api_key, request.request_id);
    if (upstream_status == 429 || upstream_status >= 500) {
      outcome.failure = upstream_status == 429 ? AttemptFailure::rate_limited : AttemptFailure::server_error;
      outcome.code = std::to_string(upstream_status);
      const auto& headers = exchange.response();
      outcome.provider_delay = resilience::provider_requested_delay(
          [&headers](std::string_view name) { return std::string_view(headers[name]); },
          std::chrono::system_clock::now());
      co_return outcome;
    }
    // Any other 4xx is about the request itself: passed through unchanged, never retried.
    bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(upstream_status), 11};
    for (const auto& [name, value] : outcome.headers) response.set(name, value);
    response.set(bhttp::field::content_type, "application/json");
    response.set("x-cutover-provider", provider.name);
    response.body() = std::move(outcome.body);
    co_await responder.send(std::move(response));
    outcome.kind = Kind::passed_through;
    co_return outcome;
  }

  providers::ResponseIdentity identity;
  identity.id = (kind == ApiKind::chat_completions ? "chatcmpl-" : "cmpl-") + request.request_id;
  identity.created = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  identity.client_model = shape.model;
  auto& usage = context.usage;
  auto record_usage = [&] {
    if (!usage.present) return;
    record.prompt_tokens = usage.prompt_tokens;
    record.completion_tokens = usage.completion_tokens;
  };

  const auto content_type = exchange.response()[bhttp::field::content_type];
  const bool upstream_streams = content_type.find("text/event-stream") != std::string_view::npos;
  if (!shape.stream || !upstream_streams) {
    std::string body;
    if (auto error = co_await exchange.read_all(body, kMaxResponseBytes)) {
      co_return transport_failure(*error);
    }
    unsigned char response_buffer[8192];
    json::monotonic_resource response_memory(response_buffer, sizeof response_buffer);
    boost::system::error_code ec;
    json::value value = json::parse(body, ec, &response_memory);
    if (ec) co_return invalid_response("provider '" + provider.name + "' returned a body that is not JSON");
    if (auto problem = providers::normalize_response(value, kind, identity, usage)) {
      co_return invalid_response("provider '" + provider.name + "' returned an invalid response: " + *problem);
    }
    if (shape.stream) {
      co_return invalid_response("provider '" + provider.name +
                                 "' answered a streaming request without a stream");
    }
    bhttp::response<bhttp::string_body> response{bhttp::status::ok, 11};
    response.set(bhttp::field::content_type, "application/json");
    response.set("x-cutover-provider", provider.name);
    response.body() = json::serialize(value);
    record.time_to_first_token_ms =
        milliseconds_since(request.received_at, exchange.first_byte_at());
    record_usage();
    co_await responder.send(std::move(response));
    AttemptOutcome outcome;
    outcome.kind = responder.client_gone() ? Kind::client_gone : Kind::delivered;
    co_return outcome;
  }

  // Streaming: forward event by event. The client's header waits for the first valid event, so
  // a provider that fails before producing anything can still be retried or failed over.
  providers::SseParser parser;
  unsigned char chunk_buffer[4096];
  json::monotonic_resource chunk_memory(chunk_buffer, sizeof chunk_buffer);
  std::vector<providers::SseEvent> events;
  std::string raw;
  std::string out;
  bool saw_done = false;
  bool done = false;
  std::optional<std::string> stream_problem;
  std::optional<upstream::UpstreamError> stream_error;
  while (!done && !stream_problem && !stream_error) {
    raw.clear();
    if (auto error = co_await exchange.read_some(raw, done)) {
      stream_error = error;
      break;
    }
    if (!parser.feed(raw, events)) stream_problem = "an event line exceeds the size limit";
    for (auto& event : events) {
      if (stream_problem) break;
      if (event.data == "[DONE]") {
        saw_done = true;
        out += sse_data("[DONE]");
        continue;
      }
      chunk_memory.release();
      boost::system::error_code ec;
      json::value chunk = json::parse(event.data, ec, &chunk_memory);
      if (ec) {
        stream_problem = "a stream event is not JSON";
        break;
      }
      providers::ChunkOutcome chunk_outcome;
      if (auto problem = providers::normalize_stream_chunk(chunk, kind, identity, ask_usage, usage,
                                                           chunk_outcome)) {
        stream_problem = *problem;
        break;
      }
      if (chunk_outcome.drop) continue;
      if (chunk_outcome.is_error) {
        if (auto* e = chunk.get_object().if_contains("error"); e && e->is_object()) {
          const auto* message = e->get_object().if_contains("message");
          std::string text = message && message->is_string() ? std::string(message->get_string())
                                                             : "upstream error";
          providers::redact(text, api_key);
          e->get_object()["message"] = text;
        }
      }
      if (!event.event.empty()) out.append("event: ").append(event.event).append("\n");
      out += sse_data(json::serialize(chunk));
    }
    events.clear();
    if (out.empty()) continue;
    if (!responder.started()) {
      bhttp::response<bhttp::empty_body> header{bhttp::status::ok, 11};
      header.set(bhttp::field::content_type, "text/event-stream");
      header.set(bhttp::field::cache_control, "no-cache");
      header.set("x-cutover-provider", provider.name);
      record.time_to_first_token_ms = milliseconds_since(request.received_at);
      if (!co_await responder.begin_stream(std::move(header))) break;
    }
    if (!co_await responder.send_chunk(out)) break;
    out.clear();
  }
  record_usage();

  AttemptOutcome outcome;
  if (responder.client_gone()) {
    exchange.abort();
    outcome.kind = Kind::client_gone;
    co_return outcome;
  }
  if (!saw_done && !stream_problem && !stream_error) stream_problem = "the stream ended before [DONE]";
  if (!stream_problem && !stream_error) {
    co_await responder.end_stream();
    outcome.kind = responder.client_gone() ? Kind::client_gone : Kind::delivered;
    co_return outcome;
  }
  if (!responder.started()) {
    if (stream_error) co_return transport_failure(*stream_error);
    co_return invalid_response("provider '" + provider.name + "' sent an invalid stream: " + *stream_problem);
  }
  // Bytes are out: no retry now. The SDKs raise an APIError when a stream carries an error event.
  const std::string message =
      stream_error ? stream_error->message
                   : "provider '" + provider.name + "' sent an invalid stream: " + *stream_problem;
  outcome.kind = Kind::delivered;
  outcome.healthy = false;
  outcome.code = stream_error ? std::string(upstream::failure_name(stream_error->kind))
                              : "invalid_upstream_response";
  exchange.abort();
  co_await responder.send_chunk(
      sse_data(providers::error_body(message, "upstream_error", outcome.code, request.request_id)));
  co_await responder.end_stream();
  co_return outcome;
}

}  // namespace cutover::proxy
