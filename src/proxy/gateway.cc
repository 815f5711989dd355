#include "proxy/gateway.h"

#include <spdlog/spdlog.h>

#include <boost/container/small_vector.hpp>
#include <boost/json.hpp>
#include <functional>
#include <random>
#include <unordered_map>

#include "accounting/cost.h"
#include "api/front_end.h"
#include "http/fields.h"
#include "migration/shadow.h"
#include "providers/answer_scan.h"
#include "providers/chunk_forwarding.h"
#include "providers/dialect.h"
#include "providers/openai_dialect.h"
#include "providers/request_body.h"
#include "providers/request_summary.h"
#include "providers/sse.h"
#include "proxy/response_memory.h"
#include "resilience/retry_policy.h"
#include "routing/sticky_assignment.h"
#include "util/clock.h"
#include "util/json_string.h"
#include "util/sha256.h"

namespace cutover::proxy {

namespace asio = boost::asio;
namespace json = boost::json;
namespace bhttp = boost::beast::http;
using providers::ApiKind;
using resilience::AttemptFailure;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxErrorBodyBytes = 1024 * 1024;
// What the official SDKs do by default: 3 attempts (max_retries 2), the retries 0.5 s and 1 s
// apart less up to 25 % jitter, so at least 1.125 s from the first attempt to the last. The
// gateway tells them not to retry only after doing as much itself (as many attempts, over as
// long a span, so a provider that flaps is given the same chances): never worse than no gateway.
constexpr unsigned kSdkDefaultAttempts = 3;
constexpr auto kSdkRetrySpan = std::chrono::milliseconds(1125);
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
         (name.size() > 12 && boost::beast::iequals(name.substr(0, 12), "x-ratelimit-")) ||
         (name.size() > 20 && boost::beast::iequals(name.substr(0, 20), "anthropic-ratelimit-"));
}

using api::sse_data;

// The id of an answer in the client's protocol.
std::string client_answer_id(api::ClientProtocol protocol, std::string_view request_id) {
  switch (protocol) {
    case api::ClientProtocol::anthropic_messages:
      return "msg_" + api::anthropic::valid_tool_id(request_id, "");
    case api::ClientProtocol::responses:
      return "resp_" + api::anthropic::valid_tool_id(request_id, "");
    default:
      return "chatcmpl-" + std::string(request_id);
  }
}

// One event of a native Anthropic stream as the provider sent it, except the model, which
// message_start names as the client did.
void append_native_event(const providers::SseEvent& event, json::value& parsed,
                         std::string_view client_model, std::string& out) {
  if (!event.event.empty()) out.append("event: ").append(event.event).append("\n");
  auto* message = parsed.is_object() ? parsed.get_object().if_contains("message") : nullptr;
  if (message != nullptr && message->is_object() && message->get_object().contains("model")) {
    message->get_object()["model"] = client_model;
    out += sse_data(json::serialize(parsed));
    return;
  }
  out += sse_data(event.data);
}

double uniform01() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(generator);
}

std::string_view sticky_source(const config::StickyKey& key, const http::IncomingRequest& request,
                               const json::object& body, const std::string& client_name) {
  switch (key.source) {
    case config::StickyKey::Source::header:
      return http::field_value(request.message, key.header);
    case config::StickyKey::Source::user_field:
      if (const auto* user = body.if_contains("user"); user && user->is_string()) {
        return user->get_string();
      }
      // An Anthropic request passed through undecoded names its user in its metadata.
      if (const auto* metadata = body.if_contains("metadata"); metadata && metadata->is_object()) {
        if (const auto* user = metadata->get_object().if_contains("user_id"); user && user->is_string()) {
          return user->get_string();
        }
      }
      return {};
    case config::StickyKey::Source::client_key:
      return client_name;
    case config::StickyKey::Source::request_id:
      return request.request_id;
  }
  return {};
}

bool asks_for_json(const json::object& body) {
  const auto* format = body.if_contains("response_format");
  if (format == nullptr || !format->is_object()) return false;
  const auto* type = format->get_object().if_contains("type");
  return type && type->is_string() &&
         (type->get_string() == "json_object" || type->get_string() == "json_schema");
}

struct AnswerReadProblem {
  std::optional<upstream::UpstreamError> transport;
  bool memory_exhausted = false;
  std::string message;
};

// Reads a whole plain answer, holding its bytes in the process's response memory: one answer
// over `limit`, or one that would take the process past the total, stops here.
Awaitable<std::optional<AnswerReadProblem>> read_answer(upstream::Exchange& exchange,
                                                        std::string& body,
                                                        ResponseMemory::Reservation& reservation,
                                                        std::size_t limit) {
  const auto announced = exchange.content_length();
  auto too_large = [&] {
    return AnswerReadProblem{std::nullopt, false,
                             "the answer exceeds limits.max_response_bytes (" +
                                 std::to_string(limit) + " bytes)"};
  };
  auto no_memory = [&] {
    return AnswerReadProblem{std::nullopt, true,
                             "the gateway is holding limits.max_buffered_response_bytes of "
                             "answers already; try again shortly"};
  };
  if (announced && *announced > limit) co_return too_large();
  if (announced) {
    // Room for the scanner's padding too, so reading the answer in place does not copy it.
    const auto room = static_cast<std::size_t>(*announced) + providers::PlainAnswer::kPadding;
    if (!reservation.grow_to(room)) co_return no_memory();
    body.reserve(room);
  }
  bool done = false;
  while (!done) {
    bool read_more = false;
    auto error = exchange.read_buffered(body, done, read_more);
    if (!error && read_more) error = co_await exchange.read_from_socket(body, done);
    if (error) co_return AnswerReadProblem{std::move(error), false, {}};
    if (body.size() > limit) co_return too_large();
    if (!reservation.grow_to(body.capacity())) co_return no_memory();
  }
  co_return std::nullopt;
}

// What an answer the gateway could not read looked like, so the cause can be found: its
// status, type, length and a redacted start. At most one line a second per worker.
void log_unreadable_answer(std::string_view provider, const upstream::Exchange& exchange,
                           std::string_view body, std::string_view problem,
                           std::string_view secret) {
  thread_local Clock::time_point last_logged{};
  thread_local unsigned suppressed = 0;
  const auto now = Clock::now();
  if (now - last_logged < std::chrono::seconds(1)) {
    ++suppressed;
    return;
  }
  last_logged = now;
  std::string start(body.substr(0, 256));
  providers::redact(start, secret);
  const auto& header = exchange.response();
  spdlog::warn(
      "provider '{}' returned {}: status {}, content-type '{}', {} bytes, begins {}{}", provider,
      problem, exchange.status(), std::string_view(header[bhttp::field::content_type]),
      body.size(), json::serialize(json::string(start)),
      suppressed ? fmt::format(" ({} more such answers not logged)", suppressed) : "");
  suppressed = 0;
}

// Looks an answer's headers up by name, as the retry and quota parsers take them.
std::function<std::string_view(std::string_view)> header_lookup(const upstream::Exchange& exchange) {
  return [&headers = exchange.response()](std::string_view name) {
    return std::string_view(headers[name]);
  };
}

// How long the provider asked to be left alone (Retry-After and its variants), if it said.
std::optional<resilience::Duration> requested_delay(const upstream::Exchange& exchange) {
  return resilience::provider_requested_delay(header_lookup(exchange),
                                              std::chrono::system_clock::now());
}

// The rate-limit figures an answer carries: a refusal's always, a success's when the endpoint's
// last reading is old or near a limit (QuotaState::wants_reading).
void record_quota(resilience::QuotaState& quota, const upstream::Exchange& exchange) {
  const auto now = util::coarse_steady_now();
  const unsigned status = exchange.status();
  if (status >= 200 && status < 300 && !quota.wants_reading(now)) return;
  quota.update(resilience::read_quota_headers(exchange.response(), util::coarse_system_now()), now);
}

// The header of an event stream the gateway sends, with the provider that served it and, on a
// route with a cache, what the cache did.
http::HeaderFieldList event_stream_header(std::string_view provider,
                                          std::string_view cache_status) {
  http::HeaderFieldList fields{{"Content-Type", "text/event-stream"},
                               {"Cache-Control", "no-cache"},
                               {"x-cutover-provider", provider}};
  if (!cache_status.empty()) fields.add("x-cutover-cache", cache_status);
  return fields;
}

// The header of a plain JSON answer the gateway sends whole.
http::HeaderFieldList json_answer_header(std::string_view provider, std::string_view cache_status) {
  http::HeaderFieldList fields{{"Content-Type", "application/json"},
                               {"x-cutover-provider", provider}};
  if (!cache_status.empty()) fields.add("x-cutover-cache", cache_status);
  return fields;
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
  std::shared_ptr<resilience::QuotaState> quota;
  // This worker's requests in flight on the endpoint, for least-outstanding balancing.
  unsigned outstanding = 0;
};

struct Gateway::ProviderRuntime {
  const config::Provider* config = nullptr;
  std::vector<EndpointRuntime> endpoints;
  std::shared_ptr<resilience::RetryBudget> budget;
  std::size_t rotation = 0;
  // The shapes of this provider's answers and stream chunks on this worker.
  providers::ShapeMemo answer_shapes{providers::AnswerShape::completion};
  providers::ShapeMemo chunk_shapes{providers::AnswerShape::chunk};
};

struct Gateway::Snapshot {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const HealthRegistry> health;
  std::unordered_map<std::string, ProviderRuntime> providers;
  std::shared_ptr<const migration::MigrationRoutes> migrations;
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
  // The request as providers of the OpenAI dialect get it (built on first use: see
  // providers/request_summary.h).
  providers::RequestDom& body;
  // The body as the client sent it, which every provider's request is spliced from.
  const providers::RequestBody& original;
  // False when the body is known to have no `stream_options`: its rewrite then needs no tree.
  bool body_has_stream_options = true;
  Clock::time_point deadline;
  providers::Usage usage;
  // Inline room for the endpoints of a few attempts: a request's first costs no allocation.
  boost::container::small_vector<const EndpointRuntime*, 4> tried;
  resilience::CircuitBreaker::Permit permit;
  // Set when a shadow mirrors this request: the served answer is collected for comparison.
  migration::AnswerBuilder* capture = nullptr;
  // The budget of the provider being tried, which pays for replays on a fresh connection too.
  resilience::RetryBudget* budget = nullptr;
  // Replays made by the current attempt's exchange.
  unsigned replays = 0;
  // The route's cache: what the answers say of it (hit, miss, bypass; empty without a cache),
  // and where a miss collects the answer's bytes as sent, to be stored once it is complete.
  std::string_view cache_status;
  std::string* cache_sink = nullptr;
  // The client's protocol, and its request as sent (the same as body and original for the
  // OpenAI protocols): a provider that speaks the client's format is sent this one.
  api::ClientProtocol protocol = api::ClientProtocol::chat_completions;
  providers::RequestDom* client_body = nullptr;
  const providers::RequestBody* client_original = nullptr;
  // Set when the client's request could not be decoded into the canonical form: only a
  // provider of the client's own format can take it.
  const std::string* decode_problem = nullptr;
};

struct Gateway::RequestOutcome {
  AccessRecord record;
  std::string error_name;
  std::string attempts_log;
  const providers::Usage* served_usage = nullptr;
  const config::Provider* served_provider = nullptr;
  // Served by the response cache: the answer, whose tokens and cost the ledger counts as saved.
  std::shared_ptr<const cache::CachedAnswer> cache_hit;
  // A migrated route: which side the sticky assignment chose, and what the candidate did.
  std::shared_ptr<migration::MigrationRuntime> migration;
  bool candidate_arm = false;
  unsigned candidate_attempts = 0;
  unsigned candidate_failures = 0;
  unsigned candidate_rate_limited = 0;  // of candidate_attempts, answered 429
  std::shared_ptr<migration::ShadowPairState> shadow_pair;
  unsigned retries_made = 0;
  bool budget_refused = false;
};

struct Gateway::ShadowLaunch {
  std::shared_ptr<migration::ShadowPairState> pair;
  std::string body;  // already rewritten for the candidate, in its dialect
  // An Anthropic client's own headers, for an Anthropic candidate.
  std::string anthropic_version;
  std::string anthropic_beta;
  ApiKind kind = ApiKind::chat_completions;
  bool stream = false;
  std::string request_id;
  std::string client_model;
};

// Why no endpoint of a provider could take a request, and when one may again.
struct Gateway::Refusal {
  std::string reason;
  bool throttled = false;
  // The earliest end of a throttle (when throttled) or of an open time; the epoch when unknown.
  Clock::time_point retry_at{};
  // Time spent waiting for a throttle to end, and whether an open breaker was bypassed.
  std::chrono::milliseconds waited{0};
  bool last_resort = false;
  // An endpoint was passed over because it reported its quota spent.
  bool quota_exhausted = false;
};

struct Gateway::AttemptOutcome {
  enum class Kind { delivered, passed_through, client_gone, failed };
  Kind kind = Kind::failed;
  // For delivered: false when the provider failed after the response had begun (mid-stream).
  bool healthy = true;
  AttemptFailure failure = AttemptFailure::reset;
  unsigned status = 0;  // the provider's HTTP status; 0 when there was none
  // What a failure says about itself. Apart, and only when there is one: an outcome travels up
  // through three or four coroutines' results, and moving three strings, a vector and an
  // optional each time was ~900 instructions of every delivered request.
  struct Detail {
    std::string code;
    std::string message;
    std::string body;  // the provider's error body, normalized, for HTTP failures
    std::vector<std::pair<std::string, std::string>> headers;
    std::optional<resilience::Duration> provider_delay;
  };
  // To read: an outcome without a failure reads as an empty detail, and reading allocates none.
  const Detail& detail() const {
    static const Detail kNone;
    return detail_ ? *detail_ : kNone;
  }
  // To fill in (or take from): allocated on first use.
  Detail& writable_detail() {
    if (!detail_) detail_ = std::make_unique<Detail>();
    return *detail_;
  }
  std::unique_ptr<Detail> detail_;
  // The gateway's own limit (connection pool) refused: says nothing about the provider.
  bool gateway_limit = false;
  // Times the request was sent again on a fresh connection after a reused one failed before
  // any answer: each one reached the provider (which may have run it) and took a retry.
  unsigned replays = 0;
  // The answer was larger than limits.max_response_bytes: not retried, not a breaker failure.
  bool answer_too_large = false;
  // The request has no faithful equivalent in the provider's dialect: nothing was sent; the
  // next provider of the chain may take it.
  bool untranslatable = false;
};

Gateway::Gateway(Executor executor, unsigned worker_index, unsigned worker_count,
                 AccessLog& access_log, observability::WorkerMetrics* metrics)
    : executor_(std::move(executor)),
      worker_index_(worker_index),
      worker_count_(std::max(1u, worker_count)),
      access_log_(access_log),
      metrics_(metrics) {}

void Gateway::apply(std::shared_ptr<const config::Config> config, const TlsContexts& tls,
                    std::shared_ptr<const HealthRegistry> health,
                    std::shared_ptr<const migration::MigrationRoutes> migrations) {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->migrations = std::move(migrations);
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
      endpoint_runtime.quota = provider_health.quotas.at(i);
      endpoint_runtime.pool = std::make_unique<upstream::ConnectionPool>(
          executor_, upstream::PoolTarget{provider.name, endpoint.address, provider.timeouts},
          endpoint.address.tls ? context : nullptr, per_worker);
      runtime.endpoints.push_back(std::move(endpoint_runtime));
    }
    snapshot->providers.emplace(provider.name, std::move(runtime));
  }
  for (const auto& key : config->client_keys) snapshot->client_names[key.sha256_hex] = key.name;
  max_response_bytes_ = config->max_response_bytes;
  response_memory().set_limit(config->max_buffered_response_bytes);
  snapshot->health = std::move(health);
  snapshot->config = std::move(config);
  snapshot_ = std::move(snapshot);
}

void Gateway::abort_all() {
  for (auto& flight : in_flight_) flight.exchange->abort();
  for (auto& flight : shadows_in_flight_) flight.exchange->abort();
  if (!snapshot_) return;
  for (auto& [name, provider] : snapshot_->providers) {
    for (auto& endpoint : provider.endpoints) endpoint.pool->close_idle();
  }
}

void Gateway::watch_slow_requests(std::chrono::milliseconds after) {
  const auto now = Clock::now();
  for (auto& flight : in_flight_) {
    if (now - flight.since < after || flight.responder->watching() ||
        flight.responder->client_gone()) {
      continue;
    }
    // Between two of the request's own operations: no write of it is in flight now.
    flight.responder->watch_for_disconnect([exchange = flight.exchange] { exchange->abort(); });
  }
}

const std::string* Gateway::authenticate(const http::IncomingRequest& request,
                                         const Snapshot& snapshot) const {
  static const std::string kAnonymous = "anonymous";
  std::string_view token;
  const auto authorization = http::field_value(request.message, bhttp::field::authorization);
  if (authorization.size() > 7 && boost::beast::iequals(authorization.substr(0, 7), "bearer ")) {
    token = authorization.substr(7);
  } else if (auto api_key = http::field_value(request.message, "x-api-key"); !api_key.empty()) {
    token = api_key;
  }
  if (!token.empty()) {
    if (auto cached = snapshot.accepted_tokens.find(token); cached != snapshot.accepted_tokens.end()) {
      return cached->second;
    }
    auto found = snapshot.client_names.find(util::sha256_hex(token));
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

// The access-log line of a request answered without the attempt loop (health, models, errors
// before routing, count_tokens): no provider, model or usage to tell.
void Gateway::log_unproxied(const http::IncomingRequest& request, const http::Responder& responder,
                            std::string_view error) {
  AccessRecord record;
  record.request_id = request.request_id;
  record.method = request.message.method_string();
  record.route = path_of(request.message.target());
  record.status = responder.status();
  record.error = error;
  record.latency_ms = milliseconds_since(request.received_at);
  access_log_.record(record);
}

Awaitable<void> Gateway::handle(http::IncomingRequest& request, http::Responder& responder) {
  auto snapshot = snapshot_;
  const auto method = request.message.method();
  const auto path = path_of(request.message.target());
  auto log_simple = [&](std::string_view error) { log_unproxied(request, responder, error); };
  auto wrong_method = [&](std::string_view allowed) -> Awaitable<void> {
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

  const auto protocol = api::protocol_for_path(path);
  const auto error_format = api::error_format_for(path);
  const bool anthropic_path = error_format != nullptr;
  if (anthropic_path) responder.set_error_format(error_format);
  const bool count_tokens = path == "/v1/messages/count_tokens";
  if (!protocol && !count_tokens && path != "/v1/models") {
    // GET/DELETE /v1/responses/{id}: nothing is stored, so no response can be found again.
    const bool stored_response = path.starts_with("/v1/responses/");
    // Built before the co_await: GCC 12 destroys a conditional's temporaries twice there.
    std::string message = "no route for " + std::string(path);
    if (stored_response) {
      message = "no response '" + std::string(path.substr(14)) +
                "': this gateway is stateless and stores no responses";
    }
    co_await responder.send_error(404, message, "invalid_request_error",
                                  stored_response ? "not_found" : "unknown_url");
    log_simple(stored_response ? "not_found" : "unknown_url");
    co_return;
  }
  const bool posted = protocol || count_tokens;
  if (!posted && method != bhttp::verb::get) co_return co_await wrong_method("GET");
  if (posted && method != bhttp::verb::post) co_return co_await wrong_method("POST");

  const std::string* client_name = authenticate(request, *snapshot);
  if (client_name == nullptr) {
    co_await responder.send_error(401,
                                  anthropic_path
                                      ? "missing or invalid API key; send 'x-api-key: KEY' with a "
                                        "key the gateway is configured with"
                                      : "missing or invalid API key; send 'Authorization: Bearer "
                                        "KEY' with a key the gateway is configured with",
                                  "authentication_error", "invalid_api_key");
    log_simple("invalid_api_key");
    co_return;
  }
  if (count_tokens) co_return co_await forward_count_tokens(request, responder, *snapshot);
  if (!protocol) {
    co_await list_models(request, responder, *snapshot);
    log_simple("");
    co_return;
  }
  co_await proxy(request, responder, std::move(snapshot), *protocol, *client_name);
}

Awaitable<void> Gateway::forward_count_tokens(http::IncomingRequest& request,
                                              http::Responder& responder, Snapshot& snapshot) {
  std::string error_name;
  auto log = [&] { log_unproxied(request, responder, error_name); };
  auto reject = [&](unsigned status, std::string message,
                    std::string_view code) -> Awaitable<void> {
    error_name = code;
    co_await responder.send_error(status, message, "invalid_request_error", code);
    log();
  };
  boost::system::error_code parse_error;
  json::value parsed = json::parse(request.message.body(), parse_error);
  const auto* model = parsed.is_object() ? parsed.get_object().if_contains("model") : nullptr;
  if (parse_error || model == nullptr || !model->is_string()) {
    co_return co_await reject(400, "the body must be a JSON object with a string 'model'", "invalid_request");
  }
  const std::string client_model(model->get_string());
  auto route = snapshot.config->routes.find(client_model);
  if (route == snapshot.config->routes.end()) {
    co_return co_await reject(404, "the model '" + client_model + "' is not routed by this gateway",
                              "model_not_found");
  }
  auto& provider = snapshot.providers.at(route->second.provider);
  if (provider.config->dialect != config::Dialect::anthropic) {
    // No estimate is passed off as a count: only the provider's own tokenizer is exact.
    co_return co_await reject(404,
                              "token counting for '" + client_model + "' needs its provider's own "
                              "tokenizer; provider '" + provider.config->name +
                              "' speaks the OpenAI dialect, which has no count_tokens endpoint",
                              "not_found");
  }
  EndpointRuntime* endpoint = nullptr;
  for (auto& candidate : provider.endpoints) {
    if (auto permit = candidate.breaker->try_acquire(Clock::now())) {
      candidate.breaker->release(permit);
      endpoint = &candidate;
      break;
    }
  }
  if (endpoint == nullptr) {
    co_return co_await reject(503, "provider '" + provider.config->name + "' is circuit-open",
                              "circuit_open");
  }
  const providers::RequestBody original(request.message.body());
  upstream::Request upstream_request(endpoint->config->address,
                                     providers::anthropic::kCountTokensPath);
  upstream_request.body() = original.rewrite(parsed.get_object(),
                                             provider.config->models.at(client_model), false, false);
  upstream_request.add_field("Content-Type", "application/json");
  upstream_request.add_field("x-request-id", request.request_id);
  set_provider_headers(upstream_request, *provider.config, endpoint->config->api_key,
                       http::field_value(request.message, "anthropic-version"),
                       http::field_value(request.message, "anthropic-beta"));
  upstream::Exchange exchange(*endpoint->pool, Clock::now() + provider.config->timeouts.total);
  std::string body;
  auto error = co_await exchange.start(upstream_request, [] { return false; });
  if (!error) error = co_await exchange.read_all(body, kMaxErrorBodyBytes);
  if (error) {
    co_return co_await reject(502, "provider '" + provider.config->name + "': " + error->message,
                              std::string(upstream::failure_name(error->kind)));
  }
  const unsigned status = exchange.status();
  bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status), 11};
  response.set(bhttp::field::content_type, "application/json");
  response.set("x-cutover-provider", provider.config->name);
  for (const auto& field : exchange.response()) {
    if (is_forwarded_response_header(field.name_string())) response.set(field.name_string(), field.value());
  }
  if (status >= 200 && status < 300) {
    response.body() = std::move(body);
  } else {
    error_name = "upstream_status";
    response.body() = api::anthropic::error_body_from(
        providers::normalize_error_body(body, status, endpoint->config->api_key, request.request_id),
        status, request.request_id);
  }
  co_await responder.send(std::move(response));
  log();
}

bool Gateway::route_needs_translation(const Snapshot& snapshot, const json::object& request) {
  const auto* model = request.if_contains("model");
  if (model == nullptr || !model->is_string()) return true;
  const auto route = snapshot.config->routes.find(std::string(model->get_string()));
  if (route == snapshot.config->routes.end()) return true;
  auto openai_dialect = [&](std::string_view name) {
    const auto found = snapshot.providers.find(std::string(name));
    return found == snapshot.providers.end() ||
           found->second.config->dialect != config::Dialect::anthropic;
  };
  if (openai_dialect(route->second.provider)) return true;
  for (const auto& fallback : route->second.fallback) {
    if (openai_dialect(fallback)) return true;
  }
  if (snapshot.migrations) {
    const auto migration = snapshot.migrations->find(route->first);
    if (migration != snapshot.migrations->end() &&
        openai_dialect(migration->second->settings().candidate)) {
      return true;
    }
  }
  return false;
}

Awaitable<void> Gateway::list_models(http::IncomingRequest&, http::Responder& responder,
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
                                                 RequestContext& context, Refusal& refusal,
                                                 bool heed_quotas, Clock::time_point now) {
  // Least outstanding requests per unit of weight, endpoints this request has not tried first,
  // and a rotating start so equal endpoints share the load. An endpoint that reported its quota
  // spent until a reset still ahead is passed over while `heed_quotas`.
  auto quota_spent = [&](const EndpointRuntime& endpoint) {
    if (!heed_quotas) return false;
    const auto until = endpoint.quota->exhausted_until(now);
    if (!until) return false;
    if (!refusal.throttled && (refusal.retry_at == Clock::time_point{} || *until < refusal.retry_at)) {
      refusal.retry_at = *until;
    }
    refusal.quota_exhausted = true;
    if (refusal.reason.empty()) refusal.reason = "quota_exhausted";
    return true;
  };
  auto note_refusal = [&](const resilience::CircuitBreaker::Permit& permit) {
    const bool throttled = permit.refusal == resilience::CircuitBreaker::Refusal::throttled;
    if (throttled && (!refusal.throttled || permit.retry_at < refusal.retry_at)) {
      refusal.retry_at = permit.retry_at;
    } else if (!throttled && !refusal.throttled && permit.retry_at != Clock::time_point{} &&
               (refusal.retry_at == Clock::time_point{} || permit.retry_at < refusal.retry_at)) {
      refusal.retry_at = permit.retry_at;
    }
    refusal.throttled = refusal.throttled || throttled;
    refusal.reason = refusal.throttled ? "throttled" : "circuit_open";
  };
  refusal = Refusal{};
  if (provider.endpoints.size() == 1) {
    auto& only = provider.endpoints.front();
    if (quota_spent(only)) return nullptr;
    auto permit = only.breaker->try_acquire(now);
    if (permit) {
      context.permit = permit;
      return &only;
    }
    note_refusal(permit);
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
  for (auto* endpoint : order) {
    if (quota_spent(*endpoint)) continue;
    auto permit = endpoint->breaker->try_acquire(now);
    if (permit) {
      context.permit = permit;
      return endpoint;
    }
    note_refusal(permit);
  }
  return nullptr;
}

Awaitable<Gateway::EndpointRuntime*> Gateway::last_resort_endpoint(
    ProviderRuntime& provider, RequestContext& context, const resilience::RetryPolicy& policy,
    Refusal& refusal) {
  // Each pick describes its own refusal afresh; the time waited adds up across them.
  std::chrono::milliseconds waited{0};
  for (unsigned waits = 0;; ++waits) {
    // A reported quota steers between alternatives; with none left the provider decides, as
    // it would without the gateway (a 429 then throttles as usual).
    const auto now = Clock::now();
    if (refusal.quota_exhausted) {
      auto* endpoint = pick_endpoint(provider, context, refusal, false, now);
      refusal.waited = waited;
      if (endpoint != nullptr) co_return endpoint;
    }
    if (refusal.throttled) {
      // The provider asked for a pause and nobody else can serve the request: honour a short
      // pause inside the deadline (as the official SDKs would), then send.
      const bool short_enough = refusal.retry_at - now <= policy.max_retry_after &&
                                refusal.retry_at < context.deadline;
      if (!short_enough || waits >= policy.max_attempts) co_return nullptr;
      waited += std::chrono::duration_cast<std::chrono::milliseconds>(refusal.retry_at - now);
      SteadyTimer pause(executor_, refusal.retry_at);
      co_await pause.async_wait(asio::as_tuple(use_awaitable));
      auto* endpoint = pick_endpoint(provider, context, refusal, true, Clock::now());
      refusal.waited = waited;
      if (endpoint != nullptr) co_return endpoint;
      continue;
    }
    for (auto& candidate : provider.endpoints) {
      auto permit = candidate.breaker->try_acquire_last_resort(now);
      if (permit) {
        context.permit = permit;
        refusal.last_resort = true;
        co_return &candidate;
      }
    }
    co_return nullptr;
  }
}

// `client_name` lives in `snapshot`, which this frame keeps alive.
Awaitable<void> Gateway::proxy(http::IncomingRequest& request, http::Responder& responder,
                               std::shared_ptr<Snapshot> snapshot, api::ClientProtocol protocol,
                               const std::string& client_name) {
  const auto kind = api::canonical_kind(protocol);
  const auto& config = *snapshot->config;

  // Filled along the way and handed, once, to the observers.
  RequestOutcome observed;
  auto& record = observed.record;
  record.request_id = request.request_id;
  record.method = request.message.method_string();
  record.route = path_of(request.message.target());
  record.client_key = client_name;
  auto& error_name = observed.error_name;
  auto& attempts_log = observed.attempts_log;
  auto& served_usage = observed.served_usage;
  auto& served_provider = observed.served_provider;
  auto& migration = observed.migration;
  auto& candidate_arm = observed.candidate_arm;
  auto& candidate_attempts = observed.candidate_attempts;
  auto& candidate_failures = observed.candidate_failures;
  auto& candidate_rate_limited = observed.candidate_rate_limited;
  auto& retries_made = observed.retries_made;
  auto& budget_refused = observed.budget_refused;
  auto finish = [&] { observe(observed, request, responder); };
  auto reject = [&](unsigned status, std::string message, std::string_view type,
                    std::string_view code) -> Awaitable<void> {
    error_name = code;
    co_await responder.send_error(status, message, type, code);
    finish();
  };

  // A tree of the request, when one is built (a Messages or Responses client, or an OpenAI
  // client's body that something needs as a tree), takes one 4 KiB block first: most bodies fit
  // in it. The block is not in this frame, which lives as long as the request: an OpenAI
  // client's request builds no tree, and 4 KiB of frame for each request in flight is memory
  // (and pages) for nothing.
  json::monotonic_resource parse_memory(4096);
  // An OpenAI client's request is read without a tree, which is built only if something needs
  // it (a body field as sticky key, a shadow, a client's stream_options, another dialect; the
  // cache's key is written from the text); Messages and Responses requests are decoded from one.
  const bool openai_client = protocol != api::ClientProtocol::responses &&
                             protocol != api::ClientProtocol::anthropic_messages;
  providers::RequestShape shape;
  std::optional<providers::RequestSummary> summary;
  json::value parsed;
  boost::system::error_code parse_error;
  bool not_object = false;
  EarlyCacheKey early;
  if (openai_client) {
    if (!snapshot->health->caches().empty()) {
      early = early_cache_key(request, *snapshot, record.route, client_name, kind, shape);
    }
    summary = early.summary ? std::move(early.summary)
                            : providers::summarize_request(request.message.body(), kind, shape);
    parse_error = summary->parse_error;
    not_object = summary->not_object;
  } else {
    parsed = json::parse(request.message.body(), parse_error, &parse_memory);
    not_object = !parse_error && !parsed.is_object();
  }
  if (parse_error) {
    co_return co_await reject(400, "request body is not valid JSON: " + parse_error.message(),
                              "invalid_request_error", "invalid_json");
  }
  if (not_object) {
    co_return co_await reject(400, "request body must be a JSON object", "invalid_request_error",
                              "invalid_json");
  }
  // Messages and Responses clients are decoded into the canonical exchange (a chat request);
  // the OpenAI protocols are the canonical form already.
  // A Messages request that only native Anthropic providers can serve is never decoded: it
  // passes through as it came.
  const bool translated_client =
      protocol == api::ClientProtocol::responses ||
      (protocol == api::ClientProtocol::anthropic_messages &&
       route_needs_translation(*snapshot, parsed.get_object()));
  json::object canonical;
  std::string canonical_text;
  // What the canonical form could not carry. A Messages request with it still goes, as it is,
  // to a native Anthropic provider (a field cutover does not know reaches the provider); a
  // provider that needs the request translated refuses it, naming the field.
  std::optional<std::string> decode_problem;
  if (translated_client) {
    decode_problem = protocol == api::ClientProtocol::anthropic_messages
                         ? api::anthropic::to_chat_request(parsed.get_object(), canonical)
                         : api::responses::to_chat_request(parsed.get_object(), canonical);
    if (decode_problem && protocol != api::ClientProtocol::anthropic_messages) {
      co_return co_await reject(400, *decode_problem, "invalid_request_error", "invalid_request");
    }
    if (!decode_problem) canonical_text = util::serialize_finite(canonical);
  }
  // Made after parsing: reserving simdjson's padding, where the summary did not locate the
  // model, may move the body's bytes.
  const providers::RequestBody client_original(request.message.body(),
                                               summary ? &*summary : nullptr);
  std::optional<providers::RequestDom> client_dom;
  if (openai_client) {
    client_dom.emplace(std::string_view(request.message.body()), json::storage_ptr(&parse_memory));
  } else {
    client_dom.emplace(parsed.get_object());
  }
  const bool decoded = translated_client && !decode_problem;
  std::optional<providers::RequestBody> canonical_original;
  std::optional<providers::RequestDom> canonical_dom;
  if (decoded) {
    canonical_original.emplace(canonical_text);
    canonical_dom.emplace(canonical);
  }
  RequestContext context{request,
                         responder,
                         record,
                         kind,
                         std::move(shape),
                         decoded ? *canonical_dom : *client_dom,
                         decoded ? *canonical_original : client_original};
  context.protocol = protocol;
  context.client_body = &*client_dom;
  context.client_original = &client_original;
  context.decode_problem = decode_problem ? &*decode_problem : nullptr;
  // A Messages request the canonical form could not carry is checked as it is: its model,
  // messages and stream flag sit where a chat request has them.
  auto problem = summary ? std::move(summary->problem)
                         : providers::validate_request(context.body.get(), kind, context.shape);
  if (summary) context.body_has_stream_options = summary->has_stream_options;
  if (problem) {
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
  served_usage = &context.usage;
  // The route's response cache: a hit is answered here, before any provider or migration arm
  // (it is neither side's answer, so it is no sample for the gates either).
  // The early key was written for this route's cache when the hint named this request's model.
  const bool hinted = early.cache != nullptr;
  auto cache = hinted ? std::move(early.cache) : snapshot->health->cache_for(context.shape.model);
  std::string cache_key;
  std::string cache_body;
  if (cache) {
    const auto choice =
        hinted ? early.choice : cache_choice(request, *cache, *snapshot, context.shape.model);
    // Whether an OpenAI client's exact text is new to the cache, to be remembered with its key
    // once it hits: a miss does not pay for texts that may never come again.
    bool unknown_text = hinted && early.unknown_text;
    // Both arms views: `"" : client_name` would make a std::string that dies with the line.
    const std::string_view tenant =
        cache->settings().shared_across_keys ? std::string_view() : std::string_view(client_name);
    std::optional<cache::RequestKey> key;
    if (hinted) {
      key = std::move(early.key);
    } else if (choice != CacheChoice::bypass) {
      key = request_key_of(*cache, context, openai_client, tenant, unknown_text);
    }
    if (!key || (choice != CacheChoice::use && !key->deterministic)) {
      cache->count_bypass();
      context.cache_status = "bypass";
      cache.reset();
    } else {
      cache_key = std::move(key->text);
      // An in-process cache answers at once: no coroutine frame for its lookup.
      std::shared_ptr<const cache::CachedAnswer> hit;
      if (cache->is_shared()) {
        hit = co_await cache->lookup(cache_key);
      } else {
        hit = cache->find(cache_key);
      }
      if (hit) {
        if (unknown_text) {
          cache->remember_text(
              cache_text_of(context, tenant), cache_key,
              {key->deterministic, context.shape, context.body_has_stream_options});
        }
        record.provider = "cache";
        record.prompt_tokens = hit->prompt_tokens;
        record.completion_tokens = hit->completion_tokens;
        record.time_to_first_token_ms = milliseconds_since(request.received_at);
        observed.cache_hit = hit;
        co_await serve_cached(responder, *hit);
        if (responder.client_gone()) error_name = "client_disconnected";
        finish();
        co_return;
      }
      context.cache_status = "miss";
      context.cache_sink = &cache_body;
    }
  }
  boost::container::small_vector<std::string_view, 4> chain{route->second.provider};
  for (const auto& fallback : route->second.fallback) chain.push_back(fallback);
  if (snapshot->migrations) {
    if (auto found = snapshot->migrations->find(context.shape.model); found != snapshot->migrations->end()) {
      migration = found->second;
    }
  }
  if (migration) {
    const auto& settings = migration->settings();
    const double weight = migration->weight();
    if (weight > 0) {
      auto key = sticky_source(settings.sticky, request, context.body.get(), client_name);
      if (key.empty())
        key = sticky_source(settings.sticky_fallback, request, context.body.get(), client_name);
      candidate_arm = routing::goes_to_candidate(routing::sticky_position(settings.salt, key), weight);
    }
    record.migration_arm = candidate_arm ? "candidate" : "primary";
    if (candidate_arm) {
      // The primary backs the candidate up: a failing candidate costs the client nothing.
      chain.assign({settings.candidate, settings.primary});
      for (const auto& fallback : route->second.fallback) {
        if (fallback != settings.candidate) chain.push_back(fallback);
      }
    } else if (migration->shadowing() && kind != ApiKind::embeddings &&
               uniform01() < settings.shadow.sample_rate &&
               migration->shadow_limiter.try_acquire(Clock::now()) ==
                   migration::ShadowLimiter::Refusal::none) {
      launch_shadow(context, snapshot, observed);
    }
  }
  // The route's deadline spans every attempt, fallbacks included (as Envoy's route timeout),
  // from the request's arrival.
  context.deadline = request.received_at +
                     snapshot->providers.at(route->second.provider).config->timeouts.total;
  // The time for the retry budgets, breakers and deadline checks between attempts: read after
  // each attempt (its latency needs that read anyway) and after a pause.
  auto now = request.received_at;

  std::optional<AttemptOutcome> last_failure;
  // Set when the last thing that happened was a provider refusing (throttled, open): the
  // answer then says when to come back rather than repeating an older failure.
  std::optional<Refusal> final_refusal;
  std::vector<std::string> refusals;
  unsigned attempts = 0;
  // True only when the last provider had every attempt its policy allows, at least the SDK's
  // own attempts over at least its retry span, for a failure the policy retries: only then may
  // the answer tell the SDK not to add retries of its own.
  bool retries_exhausted = false;
  auto log_attempt = [&](std::string_view provider, long endpoint, std::string_view result,
                         double ms) {
    if (access_log_.enabled()) append_attempt(attempts_log, provider, endpoint, result, ms);
  };

  for (std::size_t position = 0; position < chain.size(); ++position) {
    const bool last_option = position + 1 == chain.size();
    auto& provider = snapshot->providers.at(std::string(chain[position]));
    const auto& policy = route->second.retry ? *route->second.retry : provider.config->retry;
    provider.budget->record_request(now);
    record.provider = provider.config->name;
    record.provider_model = provider.config->models.at(context.shape.model);
    served_provider = provider.config;
    context.budget = provider.budget.get();
    retries_exhausted = false;
    auto first_attempt_at = now;
    const bool is_candidate = migration && provider.config->name == migration->settings().candidate;
    for (unsigned attempt_number = 0; attempt_number < policy.max_attempts; ++attempt_number) {
      if (attempt_number > 0 && !provider.budget->try_acquire_retry(now)) {
        budget_refused = true;
        refusals.push_back("provider '" + provider.config->name + "': retry budget spent");
        log_attempt(provider.config->name, -1, "retry_budget_exhausted", 0);
        break;
      }
      Refusal refusal;
      auto* endpoint = pick_endpoint(provider, context, refusal, true, now);
      if (endpoint == nullptr && last_option) {
        endpoint = co_await last_resort_endpoint(provider, context, policy, refusal);
      }
      if (refusal.waited.count() > 0) {
        log_attempt(provider.config->name, -1, "waited_for_throttle",
                    static_cast<double>(refusal.waited.count()));
      }
      if (endpoint == nullptr) {
        refusals.push_back("provider '" + provider.config->name + "': " + refusal.reason);
        log_attempt(provider.config->name, -1, refusal.reason, 0);
        final_refusal = std::move(refusal);
        break;
      }
      final_refusal.reset();
      context.tried.push_back(endpoint);
      if (attempt_number > 0) ++retries_made;
      const auto permit = context.permit;
      const auto attempt_started = Clock::now();
      ++attempts;
      auto outcome = co_await attempt(context, provider, *endpoint);
      outcome.replays = context.replays;
      attempts += outcome.replays;
      retries_made += outcome.replays;
      now = Clock::now();
      const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - attempt_started);
      settle_breaker(*endpoint->breaker, permit, outcome, elapsed, now);
      if (is_candidate && !outcome.gateway_limit && !outcome.untranslatable &&
          outcome.kind != AttemptOutcome::Kind::client_gone) {
        candidate_attempts += 1 + outcome.replays;
        if (outcome.kind == AttemptOutcome::Kind::failed || !outcome.healthy) ++candidate_failures;
        if (outcome.status == 429) ++candidate_rate_limited;
      }
      log_attempt(provider.config->name, static_cast<long>(endpoint->index),
                  attempt_result(outcome, responder, refusal.last_resort),
                  milliseconds_since(attempt_started, now));
      if (outcome.kind != AttemptOutcome::Kind::failed) {
        if (cache && outcome.kind == AttemptOutcome::Kind::delivered && outcome.healthy &&
            responder.status() == 200) {
          cache->keep(std::move(cache_key), cached_answer(std::move(cache_body), context,
                                                          *provider.config, record.provider_model));
        }
        if (outcome.kind == AttemptOutcome::Kind::client_gone) error_name = "client_disconnected";
        if (outcome.kind == AttemptOutcome::Kind::delivered && !outcome.healthy) error_name = outcome.detail().code;
        if (outcome.kind == AttemptOutcome::Kind::passed_through) error_name = "upstream_status";
        finish();
        co_return;
      }
      const bool retryable = policy.retries(outcome.failure, outcome.status) &&
                             !outcome.gateway_limit && !outcome.untranslatable;
      last_failure = std::move(outcome);
      if (attempt_number == 0) first_attempt_at = attempt_started;
      retries_exhausted = retryable && attempt_number + 1 >= policy.max_attempts &&
                          attempt_number + 1 >= kSdkDefaultAttempts &&
                          attempt_started - first_attempt_at >= kSdkRetrySpan;
      if (!retryable || attempt_number + 1 >= policy.max_attempts) break;
      auto delay = resilience::backoff_delay(policy, attempt_number, uniform01);
      if (last_failure->detail().provider_delay) {
        // A provider that asks for a long pause is not hammered: fail over instead.
        if (*last_failure->detail().provider_delay > policy.max_retry_after) break;
        delay = std::max(delay, *last_failure->detail().provider_delay);
      }
      if (now + delay >= context.deadline) break;  // never sleep past the deadline
      if (delay.count() > 0) {
        SteadyTimer pause(executor_, delay);
        co_await pause.async_wait(asio::as_tuple(use_awaitable));
        // Precisely: the pause ended at a throttle's end, which the coarse clock may not have
        // reached yet.
        now = Clock::now();
      }
    }
  }

  auto response = final_answer(request.request_id, last_failure, final_refusal, refusals,
                               retries_exhausted, error_name);
  response.body() = api::error_body_from(protocol, std::move(response.body()),
                                         response.result_int(), request.request_id);
  response.set("x-cutover-attempts", std::to_string(attempts));
  if (!context.cache_status.empty()) response.set("x-cutover-cache", context.cache_status);
  co_await responder.send(std::move(response));
  finish();
}

namespace {
// The tokens and cost of an answer, as a metrics observation and a usage event both carry them.
template <typename Sink>
void copy_tokens_and_cost(const providers::Usage* usage, const accounting::Cost& cost, Sink& sink) {
  if (usage != nullptr) {
    sink.prompt_tokens = usage->prompt_tokens;
    sink.completion_tokens = usage->completion_tokens;
    sink.cached_prompt_tokens = usage->cached_prompt_tokens;
  }
  if (cost.priced) {
    sink.cost = cost.amount;
    sink.currency = cost.currency;
  }
}
}  // namespace

// The observers of a finished request, each fed once from its outcome: the migration's sample
// and shadow pair, metrics, the usage ledger and the access log, all this worker's shards.
void Gateway::observe(RequestOutcome& outcome, const http::IncomingRequest& request,
                      const http::Responder& responder) {
  auto& record = outcome.record;
  record.status = responder.status();
  record.error = outcome.error_name;
  record.latency_ms = milliseconds_since(request.received_at);
  const auto* usage = outcome.served_usage != nullptr && outcome.served_usage->present
                          ? outcome.served_usage
                          : nullptr;
  accounting::Cost cost;
  if (outcome.served_provider != nullptr && usage != nullptr) {
    cost = accounting::cost_of(*outcome.served_provider, record.provider_model, *usage);
    if (cost.priced) record.cost = cost.amount;
  }
  const unsigned status = responder.status();
  // Passed-through 4xx are the client's own mistakes; everything else that failed counts.
  const bool client_error =
      status >= 500 || status == 429 || (status < 400 && !outcome.error_name.empty());
  if (outcome.migration) observe_migration(outcome, responder, client_error);
  if (metrics_ != nullptr) {
    observability::RequestObservation observation;
    observation.provider = record.provider;
    observation.model = record.client_model;
    observation.status = status;
    observation.latency_seconds = record.latency_ms / 1000;
    observation.ttft_seconds =
        record.time_to_first_token_ms >= 0 ? record.time_to_first_token_ms / 1000 : -1;
    copy_tokens_and_cost(usage, cost, observation);
    observation.retries = outcome.retries_made;
    observation.budget_refused = outcome.budget_refused;
    metrics_->observe(observation);
  }
  if (ledger_ != nullptr && outcome.served_provider != nullptr) {
    accounting::UsageEvent event;
    event.at_unix_ms = util::unix_ms_now();
    event.provider = record.provider;
    event.model = record.client_model;
    event.provider_model = record.provider_model;
    event.client_key = record.client_key;
    event.error = client_error;
    copy_tokens_and_cost(usage, cost, event);
    ledger_->add(worker_index_, event);
  }
  if (ledger_ != nullptr && outcome.cache_hit != nullptr) record_cache_saving(outcome, client_error);
  close_attempts(outcome.attempts_log);
  record.attempts_json = outcome.attempts_log;
  access_log_.record(record);
}

// A cache hit in the ledger: what the provider that first answered would have charged again.
void Gateway::record_cache_saving(const RequestOutcome& outcome, bool client_error) {
  const auto& record = outcome.record;
  const auto& answer = *outcome.cache_hit;
  accounting::UsageEvent event;
  event.at_unix_ms = util::unix_ms_now();
  event.cache_hit = true;
  event.provider = answer.provider;
  event.model = record.client_model;
  event.provider_model = answer.provider_model;
  event.client_key = record.client_key;
  event.error = client_error;
  event.prompt_tokens = answer.prompt_tokens;
  event.completion_tokens = answer.completion_tokens;
  event.cost = answer.cost;
  event.currency = answer.currency;
  ledger_->add(worker_index_, event);
}

// A migrated route's request: its sample for the gates (unless the client left), and the
// primary's side of its shadow pair.
void Gateway::observe_migration(RequestOutcome& outcome, const http::Responder& responder,
                                bool client_error) {
  const auto& record = outcome.record;
  auto& migration = *outcome.migration;
  const bool client_left =
      responder.client_gone() || outcome.error_name == "client_disconnected";
  if (!client_left) {
    migration::RequestSample sample;
    sample.candidate_arm = outcome.candidate_arm;
    sample.fell_back = outcome.candidate_arm && outcome.served_provider != nullptr &&
                       outcome.served_provider->name != migration.settings().candidate;
    sample.counted_as_error = client_error || sample.fell_back;
    sample.latency_ms = record.latency_ms;
    sample.ttft_ms = record.time_to_first_token_ms;
    if (record.stream && record.completion_tokens > 1 && record.time_to_first_token_ms >= 0) {
      sample.tpot_ms = (record.latency_ms - record.time_to_first_token_ms) /
                       static_cast<double>(record.completion_tokens - 1);
    }
    sample.candidate_attempts = outcome.candidate_attempts;
    sample.candidate_attempt_failures = outcome.candidate_failures;
    sample.candidate_rate_limited = outcome.candidate_rate_limited;
    if (const auto* usage = outcome.served_usage; usage != nullptr && usage->present) {
      sample.tokens = static_cast<std::uint64_t>(std::max<std::int64_t>(
          usage->prompt_tokens + usage->completion_tokens, 0));
    }
    migration.record(worker_index_, sample);
  }
  if (auto& pair = outcome.shadow_pair) {
    const unsigned status = responder.status();
    migration::SideResult side;
    side.status = static_cast<int>(client_error ? (status < 400 ? 502 : status) : status);
    side.error = outcome.error_name;
    side.latency_ms = record.latency_ms;
    side.ttft_ms =
        record.time_to_first_token_ms >= 0 ? record.time_to_first_token_ms : record.latency_ms;
    if (outcome.served_usage) side.usage = *outcome.served_usage;
    side.cost = std::max(record.cost, 0.0);
    side.answer = pair->primary_builder.take(pair->json_mode());
    pair->primary_done(std::move(side), client_left);
  }
}

void Gateway::settle_breaker(resilience::CircuitBreaker& breaker,
                             const resilience::CircuitBreaker::Permit& permit,
                             const AttemptOutcome& outcome, std::chrono::milliseconds elapsed,
                             Clock::time_point now) {
  using Kind = AttemptOutcome::Kind;
  switch (outcome.kind) {
    case Kind::delivered:
      if (outcome.healthy) {
        breaker.on_success(permit, elapsed, now);
      } else {
        breaker.on_failure(permit, elapsed, now);
      }
      return;
    case Kind::passed_through:
    case Kind::client_gone:
      breaker.release(permit);
      return;
    case Kind::failed:
      if (outcome.gateway_limit || outcome.untranslatable) {
        breaker.release(permit);
      } else if (outcome.failure == AttemptFailure::rate_limited) {
        breaker.on_throttled(permit, now + outcome.detail().provider_delay.value_or(kDefaultThrottle));
      } else if (outcome.answer_too_large) {
        breaker.release(permit);
      } else if (outcome.failure == AttemptFailure::invalid_response) {
        breaker.on_unreadable_answer(permit, elapsed, now);
      } else {
        breaker.on_failure(permit, elapsed, now);
      }
      return;
  }
}

std::string Gateway::attempt_result(const AttemptOutcome& outcome, const http::Responder& responder,
                                    bool last_resort) {
  using Kind = AttemptOutcome::Kind;
  std::string result = outcome.kind == Kind::failed
                           ? (outcome.status && !outcome.untranslatable ? std::to_string(outcome.status)
                                                                        : outcome.detail().code)
                           : (outcome.kind == Kind::client_gone ? "client_disconnected"
                                                                : std::to_string(responder.status()));
  if (outcome.replays > 0) result += " after a replay";
  if (last_resort) result += " (last resort through an open breaker)";
  return result;
}

namespace {
// Retry-After in whole seconds (rounded up, at least 1) and retry-after-ms, which the official
// SDKs read first.
void set_retry_after(bhttp::response<bhttp::string_body>& response, Clock::duration wait) {
  const auto ms = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
  response.set(bhttp::field::retry_after, std::to_string((ms + 999) / 1000));
  response.set("retry-after-ms", std::to_string(ms));
}
}  // namespace

// The answer when no provider delivered. Never worse than the provider alone: a throttle is a
// 429 with the time left, an open breaker a 503 with the time until it probes again, and the
// SDK is told not to retry only when this gateway already made every retry its policy allows.
bhttp::response<bhttp::string_body> Gateway::final_answer(
    const std::string& request_id, std::optional<AttemptOutcome>& last_failure,
    const std::optional<Refusal>& final_refusal, const std::vector<std::string>& refusals,
    bool retries_exhausted, std::string& error_name) {
  bhttp::response<bhttp::string_body> response;
  response.version(11);
  response.set(bhttp::field::content_type, "application/json");
  bool should_retry = !retries_exhausted;
  const auto now = Clock::now();
  if (final_refusal || !last_failure) {
    std::string message = "no provider could take the request:";
    for (const auto& refusal : refusals) message += " " + refusal + ";";
    message.pop_back();
    const bool throttled = final_refusal && final_refusal->throttled;
    const auto retry_at = final_refusal ? final_refusal->retry_at : Clock::time_point{};
    response.result(throttled ? 429 : 503);
    set_retry_after(response, retry_at > now ? retry_at - now : Clock::duration(std::chrono::seconds(1)));
    error_name = throttled ? "throttled" : "circuit_open";
    response.body() = providers::error_body(message, throttled ? "requests" : "upstream_error",
                                            throttled ? "rate_limit_exceeded" : "circuit_open",
                                            request_id);
    should_retry = true;
  } else if (last_failure->status != 0) {
    for (const auto& [name, value] : last_failure->detail().headers) response.set(name, value);
    response.result(last_failure->status);
    response.body() = std::move(last_failure->writable_detail().body);
    error_name = "upstream_status";
    should_retry = should_retry || last_failure->status == 429;
  } else {
    const bool timeout = last_failure->failure == AttemptFailure::timeout;
    response.result(last_failure->gateway_limit ? 503 : (timeout ? 504 : 502));
    if (last_failure->gateway_limit) set_retry_after(response, std::chrono::seconds(1));
    response.body() = providers::error_body(last_failure->detail().message,
                                            timeout ? "timeout_error" : "upstream_error",
                                            last_failure->detail().code, request_id);
    error_name = last_failure->detail().code;
    should_retry = should_retry || last_failure->gateway_limit;
  }
  response.set("x-should-retry", should_retry ? "true" : "false");
  return response;
}

std::optional<std::string> Gateway::provider_request_body(const RequestContext& context,
                                                          const config::Provider& provider,
                                                          bool ask_usage, std::string& body) {
  const auto& provider_model = provider.models.at(context.shape.model);
  if (provider.dialect == config::Dialect::anthropic) {
    if (context.kind != ApiKind::chat_completions) {
      return "the Messages API has no " + std::string(providers::api_path(context.kind)) +
             " endpoint";
    }
    if (context.protocol == api::ClientProtocol::anthropic_messages) {
      body = context.client_original->rewrite(context.client_body->get(), provider_model, false,
                                              false);
      return std::nullopt;
    }
    if (context.decode_problem) return *context.decode_problem;
    return providers::anthropic::to_messages_request(context.body.get(), provider_model,
                                                     provider.default_max_tokens, body);
  }
  if (context.decode_problem) return *context.decode_problem;
  const json::value* stream_options =
      context.body_has_stream_options ? context.body.get().if_contains("stream_options") : nullptr;
  body = context.original.rewrite(stream_options, provider_model, ask_usage,
                                  context.shape.client_requested_usage);
  return std::nullopt;
}

void Gateway::set_provider_headers(upstream::Request& upstream_request,
                                   const config::Provider& provider, const std::string& api_key,
                                   std::string_view anthropic_version,
                                   std::string_view anthropic_beta) {
  upstream_request.add_field("User-Agent", kUserAgent);
  if (provider.dialect == config::Dialect::anthropic) {
    if (!api_key.empty()) upstream_request.add_field("x-api-key", api_key);
    upstream_request.add_field("anthropic-version", anthropic_version.empty()
                                                        ? provider.anthropic_version
                                                        : anthropic_version);
    if (!anthropic_beta.empty()) upstream_request.add_field("anthropic-beta", anthropic_beta);
    return;
  }
  if (!api_key.empty()) upstream_request.add_field("Authorization", "Bearer ", api_key);
}

Awaitable<Gateway::AttemptOutcome> Gateway::attempt(RequestContext& context,
                                                    ProviderRuntime& provider_runtime,
                                                    EndpointRuntime& endpoint) {
  const auto& provider = *provider_runtime.config;
  const auto& address = endpoint.config->address;
  const auto& api_key = endpoint.config->api_key;
  const auto kind = context.kind;
  auto& request = context.request;
  auto& responder = context.responder;
  const auto& shape = context.shape;

  const bool ask_usage = shape.stream && provider.stream_usage && !shape.client_requested_usage;
  if (context.capture) *context.capture = migration::AnswerBuilder();
  if (context.cache_sink) context.cache_sink->clear();
  upstream::Request upstream_request(address, providers::request_path(provider.dialect, kind));
  if (auto problem = provider_request_body(context, provider, ask_usage, upstream_request.body())) {
    AttemptOutcome outcome;
    outcome.untranslatable = true;
    outcome.failure = AttemptFailure::invalid_response;
    outcome.status = 400;
    auto& detail = outcome.writable_detail();
    detail.code = "unsupported_by_provider";
    detail.message = "provider '" + provider.name + "' (" +
                     (provider.dialect == config::Dialect::anthropic ? "Anthropic" : "OpenAI") +
                     " dialect) cannot take this request: " + *problem;
    detail.body = providers::error_body(detail.message, "invalid_request_error",
                                        "unsupported_parameter", request.request_id);
    co_return outcome;
  }
  upstream_request.add_field("Content-Type", "application/json");
  upstream_request.add_field("Accept", shape.stream ? "text/event-stream" : "application/json");
  upstream_request.add_field("x-request-id", request.request_id);
  const bool anthropic_client = context.protocol == api::ClientProtocol::anthropic_messages;
  set_provider_headers(upstream_request, provider, api_key,
                       anthropic_client ? http::field_value(request.message, "anthropic-version")
                                        : "",
                       anthropic_client ? http::field_value(request.message, "anthropic-beta")
                                        : "");

  const auto sent_at = util::coarse_steady_now();
  upstream::Exchange exchange(*endpoint.pool,
                              std::min(context.deadline, sent_at + provider.timeouts.total));
  InFlight flight(exchange, &responder, sent_at);
  in_flight_.push_back(flight);
  ++endpoint.outstanding;
  struct Cleanup {
    http::Responder& responder;
    unsigned& outstanding;
    ~Cleanup() {
      responder.stop_watching();
      --outstanding;
    }
  } cleanup{responder, endpoint.outstanding};

  context.replays = 0;
  endpoint.quota->on_request_sent();
  auto error_before_answer = co_await exchange.start(upstream_request, [&context] {
    return context.budget == nullptr || context.budget->try_acquire_retry(Clock::now());
  });
  context.replays = exchange.replays();
  if (error_before_answer) co_return transport_failure(responder, *error_before_answer);
  record_quota(*endpoint.quota, exchange);

  const unsigned upstream_status = exchange.status();
  if (upstream_status < 200 || upstream_status >= 300) {
    co_return co_await refused_answer(context, provider, exchange, api_key);
  }

  providers::ResponseIdentity identity;
  identity.id_prefix = kind == ApiKind::chat_completions ? "chatcmpl-" : "cmpl-";
  identity.id_suffix = request.request_id;
  identity.created = std::chrono::duration_cast<std::chrono::seconds>(
                         util::coarse_system_now().time_since_epoch())
                         .count();
  identity.client_model = shape.model;
  std::optional<api::AnswerEncoder> encoder;
  if (!api::passes_through(context.protocol, provider.dialect == config::Dialect::anthropic)) {
    encoder.emplace(context.protocol, context.client_body->get(),
                    client_answer_id(context.protocol, request.request_id), shape.model,
                    identity.created);
  }

  const auto content_type = exchange.response()[bhttp::field::content_type];
  const bool upstream_streams = content_type.find("text/event-stream") != std::string_view::npos;
  if (!shape.stream || !upstream_streams) {
    co_return co_await deliver_plain(context, provider_runtime, exchange, identity, encoder, api_key);
  }
  co_return co_await deliver_stream(context, provider_runtime, exchange, identity, encoder,
                                    ask_usage, api_key);
}

Gateway::AttemptOutcome Gateway::transport_failure(const http::Responder& responder,
                                                   const upstream::UpstreamError& error) {
  AttemptOutcome outcome;
  if (error.kind == upstream::FailureKind::cancelled || responder.client_gone()) {
    outcome.kind = AttemptOutcome::Kind::client_gone;
    return outcome;
  }
  outcome.failure = failure_of(error.kind);
  outcome.gateway_limit = error.kind == upstream::FailureKind::pool_exhausted;
  outcome.writable_detail().code = upstream::failure_name(error.kind);
  outcome.writable_detail().message = error.message;
  return outcome;
}

Gateway::AttemptOutcome Gateway::invalid_response(std::string message) {
  AttemptOutcome outcome;
  outcome.failure = AttemptFailure::invalid_response;
  outcome.writable_detail().code = "invalid_upstream_response";
  outcome.writable_detail().message = std::move(message);
  return outcome;
}

// A status other than 2xx: 429 and 5xx are failures the loop may retry or fail over; any other
// 4xx is about the request itself and passed to the client as it is, never retried.
Awaitable<Gateway::AttemptOutcome> Gateway::refused_answer(RequestContext& context,
                                                           const config::Provider& provider,
                                                           upstream::Exchange& exchange,
                                                           const std::string& api_key) {
  const unsigned upstream_status = exchange.status();
  std::string body;
  if (auto error = co_await exchange.read_all(body, kMaxErrorBodyBytes)) {
    co_return transport_failure(context.responder, *error);
  }
  AttemptOutcome outcome;
  outcome.status = upstream_status;
  auto& detail = outcome.writable_detail();
  for (const auto& field : exchange.response()) {
    if (is_forwarded_response_header(field.name_string())) {
      detail.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
  }
  detail.body = providers::normalize_error_body(body, upstream_status, api_key,
                                                context.request.request_id);
  if (upstream_status == 429 || upstream_status >= 500) {
    outcome.failure = upstream_status == 429 ? AttemptFailure::rate_limited : AttemptFailure::server_error;
    detail.code = std::to_string(upstream_status);
    detail.provider_delay = requested_delay(exchange);
    co_return outcome;
  }
  bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(upstream_status), 11};
  for (const auto& [name, value] : detail.headers) response.set(name, value);
  response.set(bhttp::field::content_type, "application/json");
  response.set("x-cutover-provider", provider.name);
  if (!context.cache_status.empty()) response.set("x-cutover-cache", context.cache_status);
  response.body() = api::error_body_from(context.protocol, std::move(detail.body),
                                         upstream_status, context.request.request_id);
  co_await context.responder.send(std::move(response));
  outcome.kind = AttemptOutcome::Kind::passed_through;
  co_return outcome;
}

Awaitable<Gateway::AttemptOutcome> Gateway::deliver_plain(
    RequestContext& context, ProviderRuntime& provider_runtime, upstream::Exchange& exchange,
    const providers::ResponseIdentity& identity, std::optional<api::AnswerEncoder>& encoder,
    const std::string& api_key) {
  const auto& provider = *provider_runtime.config;
  std::string body;
  ResponseMemory::Reservation reservation(response_memory());
  if (auto problem = co_await read_answer(exchange, body, reservation, max_response_bytes_)) {
    if (problem->transport) co_return transport_failure(context.responder, *problem->transport);
    AttemptOutcome outcome;
    outcome.failure = AttemptFailure::invalid_response;
    outcome.gateway_limit = problem->memory_exhausted;
    auto& detail = outcome.writable_detail();
    detail.code = problem->memory_exhausted ? "response_memory_exhausted" : "response_too_large";
    detail.message = "provider '" + provider.name + "': " + problem->message;
    outcome.answer_too_large = !problem->memory_exhausted;
    co_return outcome;
  }
  if (answer_needs_no_tree(context, provider, encoder)) {
    // Most answers need nothing but the client's model name: read in place, spliced, sent.
    providers::PlainAnswer answer(body, provider_runtime.answer_shapes);
    if (auto spliced = answer.spliced(context.shape.model)) {
      record_first_byte(context, exchange);
      if (answer.usage().present) context.usage = answer.usage();
      record_usage(context);
      co_return co_await send_plain(context, provider, std::move(*spliced));
    }
  }
  co_return co_await deliver_plain_tree(context, provider_runtime, exchange, identity, encoder,
                                        api_key, body);
}

Awaitable<Gateway::AttemptOutcome> Gateway::deliver_plain_tree(
    RequestContext& context, ProviderRuntime& provider_runtime, upstream::Exchange& exchange,
    const providers::ResponseIdentity& identity, std::optional<api::AnswerEncoder>& encoder,
    const std::string& api_key, std::string& body) {
  const auto& provider = *provider_runtime.config;
  unsigned char response_buffer[8192];
  json::monotonic_resource response_memory_resource(response_buffer, sizeof response_buffer);
  boost::system::error_code ec;
  json::value value = json::parse(body, ec, &response_memory_resource);
  // An Anthropic message becomes a chat completion beside it: a native Anthropic client is
  // sent the message itself.
  json::value converted;
  std::optional<std::string> problem;
  if (ec) {
    problem = "a body that is not JSON (" + ec.message() + ")";
  } else if (provider.dialect == config::Dialect::anthropic && !encoder && !context.capture &&
             !context.shape.stream && value.is_object() &&
             value.get_object().if_contains("content") != nullptr) {
    // Passed through to a native client and compared with nothing: only its usage is read.
    context.usage = providers::anthropic::usage_of(value);
  } else if (provider.dialect == config::Dialect::anthropic) {
    json::object completion(&response_memory_resource);
    if (auto invalid = providers::anthropic::to_chat_completion(value, identity, context.usage,
                                                                completion)) {
      problem = "an invalid response: " + *invalid;
    }
    converted = std::move(completion);
  } else if (auto invalid = providers::normalize_response(value, context.kind, identity,
                                                          context.usage)) {
    problem = "an invalid response: " + *invalid;
  }
  if (problem) {
    log_unreadable_answer(provider.name, exchange, body, *problem, api_key);
    co_return invalid_response("provider '" + provider.name + "' returned " + *problem);
  }
  const json::value& canonical = converted.is_object() ? converted : value;
  if (context.capture) context.capture->add_response(canonical);
  record_first_byte(context, exchange);
  record_usage(context);
  if (context.shape.stream) {
    // The provider answered a streaming request with a plain body: the client asked for a
    // stream, so it gets the answer as one.
    co_return co_await deliver_as_stream(context, provider_runtime, canonical.get_object(), encoder);
  }
  if (encoder) {
    co_return co_await send_plain(context, provider, encoder->encode(canonical.get_object()));
  }
  // The client's own format: passed on, its model named as the client named it.
  if (provider.dialect == config::Dialect::anthropic) {
    value.get_object()["model"] = context.shape.model;
  }
  co_return co_await send_plain(context, provider, json::serialize(value));
}

// An OpenAI chat completion for an OpenAI client, which no shadow compares and no encoder
// translates: PlainAnswer can tell whether it needs anything but its model, without a DOM.
bool Gateway::answer_needs_no_tree(const RequestContext& context, const config::Provider& provider,
                                   const std::optional<api::AnswerEncoder>& encoder) {
  return provider.dialect == config::Dialect::openai && context.kind == ApiKind::chat_completions &&
         !encoder && !context.capture && !context.shape.stream;
}

void Gateway::record_first_byte(RequestContext& context, const upstream::Exchange& exchange) {
  context.record.time_to_first_token_ms =
      milliseconds_since(context.request.received_at, exchange.first_byte_at());
}

void Gateway::record_usage(RequestContext& context) {
  if (!context.usage.present) return;
  context.record.prompt_tokens = context.usage.prompt_tokens;
  context.record.completion_tokens = context.usage.completion_tokens;
}

Awaitable<Gateway::AttemptOutcome> Gateway::send_plain(RequestContext& context,
                                                       const config::Provider& provider,
                                                       std::string body) {
  const auto header = json_answer_header(provider.name, context.cache_status);
  co_await context.responder.send(200, header, body);
  // Written: a route with a cache keeps the body itself, without a copy.
  if (context.cache_sink) *context.cache_sink = std::move(body);
  AttemptOutcome outcome;
  outcome.kind = context.responder.client_gone() ? AttemptOutcome::Kind::client_gone
                                                 : AttemptOutcome::Kind::delivered;
  co_return outcome;
}

// Streaming: forward event by event. The client's header waits for the first event that has
// something to send, so a provider that fails before producing anything can still be retried
// or failed over.
Awaitable<Gateway::AttemptOutcome> Gateway::deliver_stream(
    RequestContext& context, ProviderRuntime& provider_runtime, upstream::Exchange& exchange,
    const providers::ResponseIdentity& identity, std::optional<api::AnswerEncoder>& encoder,
    bool ask_usage, const std::string& api_key) {
  using Kind = AttemptOutcome::Kind;
  const auto& provider = *provider_runtime.config;
  auto& responder = context.responder;
  auto& record = context.record;
  auto& request = context.request;
  const bool anthropic_provider = provider.dialect == config::Dialect::anthropic;
  // A native Anthropic client of a native Anthropic provider gets the provider's events as
  // they came; canonical chunks are built only for a shadow comparison, usage is always read.
  const bool native_events = !encoder && anthropic_provider;
  providers::CanonicalStream reader(provider.dialect, context.kind, identity,
                                    anthropic_provider ? !context.shape.client_requested_usage
                                                       : ask_usage,
                                    !native_events || context.capture != nullptr);
  providers::SseParser parser;
  parser.take_data_strings_from(spare_event_data_);
  // An OpenAI client of an OpenAI provider, whose chunks no shadow compares: most chunks need
  // only their model renamed, which providers/chunk_forwarding does without parsing them into a
  // DOM.
  const bool chunks_in_place = !anthropic_provider && !encoder && !context.capture &&
                               context.kind == ApiKind::chat_completions;
  // Written as Boost.JSON's serializer writes it, without its machinery for a name that needs no
  // escaping.
  const std::string model_json = [&] {
    std::string json;
    if (chunks_in_place) util::append_json_string(json, context.shape.model);
    return json;
  }();
  StreamBuffersLease buffers(spare_stream_buffers_);
  std::string& raw = buffers->raw;
  std::string& out = buffers->out;
  std::vector<providers::SseEvent>& events = buffers->events;
  bool done = false;
  std::optional<std::string> stream_problem;
  std::optional<upstream::UpstreamError> stream_error;
  // Sends what a read produced when the socket takes it at once; false when the stream cannot
  // go on (the client is gone) or `out` must wait for room (await finish_chunk() first). Not a
  // coroutine: most chunks cost no frame and no trip through the scheduler.
  auto send_out_at_once = [&](bool& waiting) {
    waiting = false;
    if (out.empty()) return true;
    if (!responder.started()) {
      record.time_to_first_token_ms = milliseconds_since(request.received_at);
      if (!responder.start_stream(event_stream_header(provider.name, context.cache_status))) {
        return false;
      }
    }
    if (context.cache_sink) context.cache_sink->append(out);
    waiting = !responder.send_chunk_at_once(out);
    return waiting || !responder.client_gone();
  };
  // The last piece of a complete stream leaves in the same write as the stream's end (and, for
  // a short answer, as its header): one write to the client where there were three.
  auto finish_out = [&]() -> Awaitable<void> {
    if (!out.empty() && !responder.started()) {
      record.time_to_first_token_ms = milliseconds_since(request.received_at);
      if (!responder.start_stream(event_stream_header(provider.name, context.cache_status))) {
        co_return;
      }
    }
    if (context.cache_sink) context.cache_sink->append(out);
    co_await responder.end_stream(out);
    out.clear();
  };
  // One event read into a DOM, its output appended to `out`; a problem ends the stream. A
  // lambda rather than a part of the coroutine: its 4 KiB of parse memory are on the thread's
  // stack while it runs, not in the frame of every stream (GCC keeps every local of a
  // coroutine's body in its frame).
  auto read_event_tree = [&](const providers::SseEvent& event) {
    unsigned char chunk_buffer[4096];
    // A fresh resource per event: Boost.JSON 1.81's monotonic_resource keeps doubling its
    // next block across release(), which ran a long stream of large events out of memory.
    json::monotonic_resource chunk_memory(chunk_buffer, sizeof chunk_buffer);
    json::value parsed;
    auto result = reader.read(event, parsed, &chunk_memory, context.usage, [&](json::value& chunk) {
      if (context.capture) context.capture->add_chunk(chunk);
      if (native_events) return;
      if (encoder) {
        encoder->on_chunk(chunk.get_object(), out);
        return;
      }
      if (!event.event.empty()) out.append("event: ").append(event.event).append("\n");
      out += sse_data(json::serialize(chunk));
    });
    if (result.problem) {
      stream_problem = std::move(result.problem);
      return;
    }
    if (result.provider_error) {
      providers::redact(*result.provider_error, api_key);
      if (!encoder && !anthropic_provider) {
        // An OpenAI client of an OpenAI provider got the error object as its own event;
        // only the key a provider may echo is removed from it.
        providers::redact(out, api_key);
        return;
      }
      stream_problem = "the provider streamed an error: " + *result.provider_error;
      return;
    }
    if (result.end_marker && !encoder && !anthropic_provider) out += sse_data("[DONE]");
    if (native_events) append_native_event(event, parsed, context.shape.model, out);
  };
  while (!done && !stream_problem && !stream_error) {
    raw.clear();
    bool read_more = false;
    auto error = exchange.read_buffered(raw, done, read_more);
    if (!error && read_more) error = co_await exchange.read_from_socket(raw, done);
    if (error) {
      stream_error = error;
      break;
    }
    // Room for what this read forwards, made once: the events' bytes and a longer model name in
    // each (grown event by event, the string was reallocated about eight times a stream); an
    // event takes more than 32 bytes.
    out.reserve(out.size() + raw.size() + (raw.size() / 32 + 1) * model_json.size());
    std::string_view unread = raw;
    if (chunks_in_place) {
      // Whole one-line events at the front of the read that match a chunk shape the provider
      // sent before are forwarded from the read's bytes, without a copy of their own; the
      // parser takes over at the first that does not.
      unread.remove_prefix(providers::forward_kept_chunks(unread, parser, reader,
                                                          provider_runtime.chunk_shapes, ask_usage,
                                                          model_json, context.usage, out));
    }
    if (!parser.feed(unread, events)) stream_problem = "an event line exceeds the size limit";
    if (done) parser.finish(events);
    for (auto& event : events) {
      if (stream_problem) break;
      if (chunks_in_place &&
          providers::forward_event_in_place(event, reader, provider_runtime.chunk_shapes, ask_usage,
                                            model_json, context.usage, out)) {
        continue;
      }
      read_event_tree(event);
    }
    give_back_event_data(events);
    const bool complete_and_held = done && !stream_problem && reader.saw_end_marker();
    if (complete_and_held) continue;
    bool waiting = false;
    if (!send_out_at_once(waiting)) break;
    // Not `waiting && !co_await ...`: GCC 12 evaluates a co_await in a short circuit anyway.
    if (waiting) {
      const bool sent = co_await responder.finish_chunk();
      if (!sent) break;
    }
    out.clear();
  }
  if (context.usage.present) {
    record.prompt_tokens = context.usage.prompt_tokens;
    record.completion_tokens = context.usage.completion_tokens;
  }

  AttemptOutcome outcome;
  if (responder.client_gone()) {
    exchange.abort();
    outcome.kind = Kind::client_gone;
    co_return outcome;
  }
  const bool ended_cleanly = !stream_problem && !stream_error;
  bool complete = ended_cleanly && reader.saw_end_marker();
  if (ended_cleanly && !complete && reader.saw_finish() && (responder.started() || encoder)) {
    // Every event arrived, the last with its finish reason, and the connection ended cleanly:
    // only the end marker is missing, which the SDKs themselves do not require.
    if (!encoder) out += api::stream_end_event(context.protocol);
    complete = true;
  }
  if (!complete && ended_cleanly) stream_problem = "the stream ended before its end marker";
  if (complete) {
    if (encoder) encoder->finish(out);
    co_await finish_out();
    outcome.kind = responder.client_gone() ? Kind::client_gone : Kind::delivered;
    co_return outcome;
  }
  if (!responder.started()) {
    if (stream_error) co_return transport_failure(responder, *stream_error);
    co_return invalid_response("provider '" + provider.name + "' sent an invalid stream: " + *stream_problem);
  }
  // Bytes are out: no retry now. The client's error event makes its SDK raise rather than
  // return a silently truncated answer.
  const std::string message =
      stream_error ? stream_error->message
                   : "provider '" + provider.name + "' sent an invalid stream: " + *stream_problem;
  outcome.kind = Kind::delivered;
  outcome.healthy = false;
  outcome.writable_detail().code =
      stream_error ? std::string(upstream::failure_name(stream_error->kind)) : "invalid_upstream_response";
  exchange.abort();
  out.clear();
  if (encoder) {
    encoder->fail(502, outcome.detail().code, message, request.request_id, out);
  } else {
    out = api::stream_error_event(context.protocol, 502, outcome.detail().code, message, request.request_id);
  }
  co_await responder.end_stream(out);
  co_return outcome;
}

Gateway::StreamBuffersLease::StreamBuffersLease(std::vector<StreamBuffers>& spares)
    : spares_(spares) {
  if (spares_.empty()) {
    buffers_.events.reserve(16);  // a read usually completes a handful of events
    return;
  }
  buffers_ = std::move(spares_.back());
  spares_.pop_back();
}

Gateway::StreamBuffersLease::~StreamBuffersLease() {
  // Bounds on what a worker keeps: the buffers of as many streams as a busy worker has under
  // way at once, each no larger than a few reads.
  constexpr std::size_t kSpareSets = 64;
  constexpr std::size_t kSpareBufferBytes = 64 * 1024;
  if (spares_.size() >= kSpareSets || buffers_.raw.capacity() > kSpareBufferBytes ||
      buffers_.out.capacity() > kSpareBufferBytes) {
    return;
  }
  buffers_.raw.clear();
  buffers_.out.clear();
  buffers_.events.clear();
  spares_.push_back(std::move(buffers_));
}

void Gateway::give_back_event_data(std::vector<providers::SseEvent>& events) {
  // Bounds on what a worker keeps: a stream's worth of ordinary events.
  constexpr std::size_t kSpareStrings = 64;
  constexpr std::size_t kSpareStringBytes = 8 * 1024;
  for (auto& event : events) {
    if (spare_event_data_.size() == kSpareStrings) break;
    if (event.data.capacity() <= kSpareStringBytes) {
      spare_event_data_.push_back(std::move(event.data));
    }
  }
  events.clear();
}

std::optional<cache::RequestKey> Gateway::request_key_of(cache::ResponseCache& cache,
                                                         RequestContext& context,
                                                         bool openai_client,
                                                         std::string_view tenant,
                                                         bool& unknown_text) {
  // Keyed by the client's path: each protocol's answers are stored in its own format.
  const std::string_view kind = context.record.route;
  const bool stream = context.shape.stream;
  if (!openai_client) return cache::request_key(context.body.get(), kind, stream, tenant);
  // An OpenAI client's key is written from its body's text, without the tree, unless the cache
  // remembers the text.
  cache::RequestKey key;
  if (const auto known = cache.known_text(cache_text_of(context, tenant), key.text); known.found) {
    key.deterministic = known.reading.deterministic;
    return key;
  }
  unknown_text = true;
  return cache::request_key(context.request.message.body(), kind, stream, tenant);
}

cache::RequestText Gateway::cache_text_of(const RequestContext& context, std::string_view tenant) {
  return {context.request.message.body(), context.record.route, tenant};
}

Gateway::EarlyCacheKey Gateway::early_cache_key(const http::IncomingRequest& request,
                                                const Snapshot& snapshot, std::string_view route,
                                                const std::string& client_name,
                                                providers::ApiKind kind,
                                                providers::RequestShape& shape) {
  EarlyCacheKey early;
  const std::string_view body = request.message.body();
  const auto hint = providers::model_hint(body);
  if (!hint) return early;
  auto cache = snapshot.health->cache_for(*hint);
  if (!cache) return early;
  early.choice = cache_choice(request, *cache, snapshot, *hint);
  if (early.choice == CacheChoice::bypass) return early;
  const std::string_view tenant =
      cache->settings().shared_across_keys ? std::string_view() : std::string_view(client_name);
  cache::RequestKey key;
  if (auto known = cache->known_text({body, route, tenant}, key.text); known.found) {
    // Remembered after a hit, so the summary found no problem in it.
    key.deterministic = known.reading.deterministic;
    early.key = std::move(key);
    shape = std::move(known.reading.shape);
    early.summary.emplace();
    early.summary->has_stream_options = known.reading.has_stream_options;
  } else {
    auto both = cache::summarize_with_key(body, kind, shape, route, tenant);
    early.summary = std::move(both.summary);
    early.key = std::move(both.key);
    early.unknown_text = true;
  }
  // A wrong guess keeps the summary (the body's own) but not the key: another route's cache may
  // key its requests otherwise (another tenant). Compared here, while the hint is a valid view:
  // reserving room in the body later (RequestBody) may move its bytes.
  if (shape.model == *hint) {
    early.cache = std::move(cache);
  } else {
    early.key.reset();
    early.unknown_text = false;
  }
  return early;
}

Gateway::CacheChoice Gateway::cache_choice(const http::IncomingRequest& request,
                                           const cache::ResponseCache& cache,
                                           const Snapshot& snapshot, std::string_view model) {
  const auto control = http::field_value(request.message, bhttp::field::cache_control);
  if (control.find("no-cache") != std::string_view::npos ||
      control.find("no-store") != std::string_view::npos) {
    return CacheChoice::bypass;
  }
  const auto choice = http::field_value(request.message, "x-cutover-cache");
  if (boost::beast::iequals(choice, "bypass")) return CacheChoice::bypass;
  if (!cache.settings().during_canary && snapshot.migrations) {
    if (auto found = snapshot.migrations->find(model); found != snapshot.migrations->end()) {
      const double weight = found->second->weight();
      if (weight > 0 && weight < 1) return CacheChoice::bypass;
    }
  }
  return boost::beast::iequals(choice, "use") ? CacheChoice::use : CacheChoice::if_deterministic;
}

cache::CachedAnswer Gateway::cached_answer(std::string body, const RequestContext& context,
                                           const config::Provider& provider,
                                           std::string_view provider_model) {
  cache::CachedAnswer answer;
  answer.body = std::move(body);
  answer.stream = context.shape.stream;
  answer.provider = provider.name;
  answer.provider_model = provider_model;
  if (context.usage.present) {
    answer.prompt_tokens = context.usage.prompt_tokens;
    answer.completion_tokens = context.usage.completion_tokens;
    const auto cost = accounting::cost_of(provider, provider_model, context.usage);
    if (cost.priced) {
      answer.cost = cost.amount;
      answer.currency = cost.currency;
    }
  }
  return answer;
}

Awaitable<void> Gateway::serve_cached(http::Responder& responder,
                                      const cache::CachedAnswer& answer) {
  if (!answer.stream) {
    // The cached bytes are written as they are kept: `answer` outlives the write.
    const auto header = json_answer_header(answer.provider, "hit");
    co_await responder.send(200, header, answer.body);
    co_return;
  }
  if (!responder.start_stream(event_stream_header(answer.provider, "hit"))) co_return;
  co_await responder.end_stream(answer.body);
}

Awaitable<Gateway::AttemptOutcome> Gateway::deliver_as_stream(
    RequestContext& context, ProviderRuntime& provider, const json::object& response,
    std::optional<api::AnswerEncoder>& encoder) {
  using Kind = AttemptOutcome::Kind;
  auto& responder = context.responder;
  std::string events;
  const bool include_usage = context.shape.client_requested_usage || encoder.has_value();
  for (const auto& chunk : providers::stream_chunks_from_response(response, context.kind, include_usage)) {
    if (encoder) {
      encoder->on_chunk(json::parse(chunk).get_object(), events);
    } else {
      events += sse_data(chunk);
    }
  }
  if (encoder) {
    encoder->finish(events);
  } else {
    events += sse_data("[DONE]");
  }
  if (context.cache_sink) *context.cache_sink = events;
  AttemptOutcome outcome;
  outcome.kind = Kind::client_gone;
  if (!responder.start_stream(event_stream_header(provider.config->name, context.cache_status))) {
    co_return outcome;
  }
  co_await responder.end_stream(events);
  outcome.kind = responder.client_gone() ? Kind::client_gone : Kind::delivered;
  co_return outcome;
}

// Mirrors the request to the migration's candidate: built here, in the candidate's dialect,
// and run fire-and-forget on the shadow thread (or this worker). A request the candidate's
// dialect cannot express is not mirrored (it is no sample).
void Gateway::launch_shadow(RequestContext& context, const std::shared_ptr<Snapshot>& snapshot,
                            RequestOutcome& outcome) {
  const auto& request = context.request;
  const auto& candidate =
      *snapshot->providers.at(outcome.migration->settings().candidate).config;
  auto launch = std::make_shared<ShadowLaunch>();
  if (provider_request_body(context, candidate, context.shape.stream, launch->body)) return;
  // A copy outside the request's parse buffer: the shadow outlives this frame.
  json::object copy(context.body.get(), json::storage_ptr());
  std::string prompt_json;
  if (const auto* messages = copy.if_contains("messages")) {
    prompt_json = json::serialize(*messages);
  } else if (const auto* prompt = copy.if_contains("prompt")) {
    prompt_json = json::serialize(*prompt);
  }
  launch->pair = std::make_shared<migration::ShadowPairState>(
      outcome.migration, worker_index_, request.request_id, context.shape.model,
      context.shape.stream, asks_for_json(copy), std::move(prompt_json));
  if (context.protocol == api::ClientProtocol::anthropic_messages) {
    launch->anthropic_version = http::field_value(request.message, "anthropic-version");
    launch->anthropic_beta = http::field_value(request.message, "anthropic-beta");
  }
  launch->kind = context.kind;
  launch->stream = context.shape.stream;
  launch->request_id = request.request_id;
  launch->client_model = context.shape.model;
  outcome.shadow_pair = launch->pair;
  context.capture = &outcome.shadow_pair->primary_builder;
  outcome.record.shadowed = true;
  if (shadow_worker_ == nullptr) {
    asio::co_spawn(executor_, run_shadow(snapshot, std::move(launch)), asio::detached);
    return;
  }
  // The shadow thread uses its own snapshot: its connections belong to its event loop.
  asio::post(shadow_worker_->executor_, [shadow = shadow_worker_, launch = std::move(launch)]() mutable {
    asio::co_spawn(shadow->executor_, shadow->run_shadow(shadow->snapshot_, std::move(launch)),
                   asio::detached);
  });
}

// The candidate's side of a shadow pair: fire-and-forget on this worker, with its own deadline,
// never tied to the client (a client that leaves must not bias the sample towards fast answers).
Awaitable<void> Gateway::run_shadow(std::shared_ptr<Snapshot> snapshot,
                                    std::shared_ptr<ShadowLaunch> launch) {
  auto& pair = *launch->pair;
  const auto& settings = pair.runtime().settings();
  migration::SideResult side;
  const auto started = Clock::now();
  // The worker that mirrored the request may have a newer configuration than this snapshot
  // for a moment during a reload.
  const auto found = snapshot->providers.find(settings.candidate);
  if (found == snapshot->providers.end() ||
      !found->second.config->models.contains(launch->client_model)) {
    side.error = "candidate_not_configured";
    pair.candidate_done(std::move(side));
    co_return;
  }
  const auto& candidate_config = *found->second.config;
  const auto& candidate_model = candidate_config.models.at(launch->client_model);
  const auto* candidate_price = candidate_config.price_for(candidate_model);
  auto report = [&] {
    side.latency_ms = milliseconds_since(started);
    if (side.ttft_ms <= 0) side.ttft_ms = side.latency_ms;
    if (metrics_ != nullptr) {
      observability::RequestObservation observation;
      observation.provider = settings.candidate;
      observation.model = launch->client_model;
      observation.status = static_cast<unsigned>(side.status);
      observation.latency_seconds = side.latency_ms / 1000;
      observation.ttft_seconds = side.ttft_ms / 1000;
      observation.prompt_tokens = side.usage.prompt_tokens;
      observation.completion_tokens = side.usage.completion_tokens;
      observation.cached_prompt_tokens = side.usage.cached_prompt_tokens;
      observation.cost = side.cost;
      if (candidate_price != nullptr) observation.currency = candidate_price->currency;
      observation.shadow = true;
      metrics_->observe(observation);
    }
    if (ledger_ != nullptr) {
      accounting::UsageEvent event;
      event.at_unix_ms = util::unix_ms_now();
      event.provider = settings.candidate;
      event.model = launch->client_model;
      event.provider_model = candidate_model;
      event.client_key = "shadow";
      event.shadow = true;
      event.error = side.status < 200 || side.status >= 300;
      event.prompt_tokens = side.usage.prompt_tokens;
      event.cached_prompt_tokens = side.usage.cached_prompt_tokens;
      event.completion_tokens = side.usage.completion_tokens;
      event.cost = side.cost;
      if (candidate_price != nullptr) event.currency = candidate_price->currency;
      ledger_->add(worker_index_, event);
    }
    pair.candidate_done(std::move(side));
  };
  auto& provider = found->second;
  EndpointRuntime* endpoint = nullptr;
  resilience::CircuitBreaker::Permit permit;
  for (auto& candidate : provider.endpoints) {
    permit = candidate.breaker->try_acquire(Clock::now());
    if (permit) {
      endpoint = &candidate;
      break;
    }
  }
  if (endpoint == nullptr) {
    side.error = "circuit_open";
    report();
    co_return;
  }
  const auto& address = endpoint->config->address;
  upstream::Request upstream_request(
      address, providers::request_path(candidate_config.dialect, launch->kind));
  upstream_request.add_field("Content-Type", "application/json");
  upstream_request.add_field("Accept", launch->stream ? "text/event-stream" : "application/json");
  upstream_request.add_field("x-request-id", launch->request_id);
  upstream_request.add_field("x-cutover-shadow", "1");
  set_provider_headers(upstream_request, candidate_config, endpoint->config->api_key,
                       launch->anthropic_version, launch->anthropic_beta);
  upstream_request.body() = std::move(launch->body);

  upstream::Exchange exchange(*endpoint->pool, started + settings.shadow.timeout);
  InFlight flight(exchange, nullptr, started);
  shadows_in_flight_.push_back(flight);
  ++endpoint->outstanding;
  struct Cleanup {
    unsigned& outstanding;
    ~Cleanup() { --outstanding; }
  } cleanup{endpoint->outstanding};
  auto& breaker = *endpoint->breaker;
  auto settle = [&](bool healthy) {
    const auto now = Clock::now();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
    if (healthy) {
      breaker.on_success(permit, elapsed, now);
    } else {
      breaker.on_failure(permit, elapsed, now);
    }
  };

  auto* budget = provider.budget.get();
  endpoint->quota->on_request_sent();
  if (auto error = co_await exchange.start(
          upstream_request, [budget] { return budget->try_acquire_retry(Clock::now()); })) {
    side.error = std::string(upstream::failure_name(error->kind));
    if (error->kind == upstream::FailureKind::cancelled ||
        error->kind == upstream::FailureKind::pool_exhausted) {
      breaker.release(permit);
    } else {
      settle(false);
    }
    report();
    co_return;
  }
  record_quota(*endpoint->quota, exchange);
  side.status = static_cast<int>(exchange.status());
  if (side.status < 200 || side.status >= 300) {
    std::string ignored;
    co_await exchange.read_all(ignored, kMaxErrorBodyBytes);
    side.error = std::to_string(side.status);
    if (side.status == 429) {
      breaker.on_throttled(permit, Clock::now() + requested_delay(exchange).value_or(kDefaultThrottle));
    } else if (side.status >= 500) {
      settle(false);
    } else {
      breaker.release(permit);
    }
    report();
    co_return;
  }
  providers::ResponseIdentity identity;
  identity.id_prefix = "shadow-";
  identity.id_suffix = launch->request_id;
  identity.client_model = launch->client_model;
  migration::AnswerBuilder builder;
  auto fail = [&](std::string code) {
    side.status = 502;
    side.error = std::move(code);
    settle(false);
  };
  const auto content_type = exchange.response()[bhttp::field::content_type];
  if (!launch->stream || content_type.find("text/event-stream") == std::string_view::npos) {
    std::string body;
    ResponseMemory::Reservation reservation(response_memory());
    if (auto problem = co_await read_answer(exchange, body, reservation, max_response_bytes_)) {
      if (problem->transport) {
        fail(std::string(upstream::failure_name(problem->transport->kind)));
      } else {
        side.status = 502;
        side.error = problem->memory_exhausted ? "response_memory_exhausted" : "response_too_large";
        breaker.release(permit);
      }
    } else {
      side.ttft_ms = milliseconds_since(started, exchange.first_byte_at());
      boost::system::error_code ec;
      json::value value = json::parse(body, ec);
      if (ec || providers::canonical_completion(candidate_config.dialect, value, launch->kind,
                                                identity, side.usage)) {
        fail("invalid_upstream_response");
      } else {
        builder.add_response(value);
        settle(true);
      }
    }
  } else {
    providers::SseParser parser;
    providers::CanonicalStream reader(candidate_config.dialect, launch->kind, identity, false);
    std::vector<providers::SseEvent> events;
    std::string raw;
    bool done = false;
    std::optional<std::string> problem;
    while (!done && !problem) {
      raw.clear();
      if (auto error = co_await exchange.read_some(raw, done)) {
        problem = std::string(upstream::failure_name(error->kind));
        break;
      }
      if (!parser.feed(raw, events)) problem = "invalid_upstream_response";
      if (done) parser.finish(events);
      for (auto& event : events) {
        json::value parsed;
        const auto result = reader.read(event, parsed, json::storage_ptr(), side.usage,
                                        [&](json::value& chunk) {
                                          if (side.ttft_ms <= 0) side.ttft_ms = milliseconds_since(started);
                                          builder.add_chunk(chunk);
                                        });
        if (result.problem || result.provider_error) {
          problem = "invalid_upstream_response";
          break;
        }
      }
      events.clear();
    }
    if (!problem && !reader.saw_end_marker() && !reader.saw_finish()) problem = "stream_truncated";
    if (problem) {
      exchange.abort();
      fail(*problem);
    } else {
      settle(true);
    }
  }
  if (side.usage.present) {
    side.cost = accounting::cost_of(candidate_config, candidate_model, side.usage).amount;
  }
  side.answer = builder.take(pair.json_mode());
  report();
}

}  // namespace cutover::proxy
