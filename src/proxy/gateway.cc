#include "proxy/gateway.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <unordered_map>

#include "providers/openai_dialect.h"
#include "providers/sse.h"

namespace cutover::proxy {

namespace asio = boost::asio;
namespace json = boost::json;
namespace bhttp = boost::beast::http;
using providers::ApiKind;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;
constexpr std::size_t kMaxErrorBodyBytes = 1024 * 1024;
constexpr std::string_view kUserAgent = "cutover/0.1";

double milliseconds_since(Clock::time_point start, Clock::time_point end = Clock::now()) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// Status the client sees for a failure that produced no provider response.
unsigned status_for(const upstream::UpstreamError& error) {
  if (error.is_timeout()) return 504;
  if (error.kind == upstream::FailureKind::pool_exhausted) return 503;
  return 502;
}

// Response headers worth passing on: they tell the client's SDK how long to back off.
bool is_forwarded_response_header(std::string_view name) {
  return boost::beast::iequals(name, "retry-after") || boost::beast::iequals(name, "retry-after-ms") ||
         (name.size() > 12 && boost::beast::iequals(name.substr(0, 12), "x-ratelimit-"));
}

std::string sse_data(std::string_view payload) {
  std::string event;
  event.reserve(payload.size() + 8);
  event.append("data: ").append(payload).append("\n\n");
  return event;
}
}  // namespace

struct Gateway::Snapshot {
  std::shared_ptr<const config::Config> config;
  std::unordered_map<std::string, std::unique_ptr<upstream::ConnectionPool>> pools;
  std::unordered_map<std::string, std::string> client_names;  // key digest -> key name
};

Gateway::Gateway(asio::any_io_executor executor, unsigned worker_count, AccessLog& access_log)
    : executor_(std::move(executor)),
      worker_count_(std::max(1u, worker_count)),
      access_log_(access_log) {}

void Gateway::apply(std::shared_ptr<const config::Config> config, const TlsContexts& tls) {
  auto snapshot = std::make_shared<Snapshot>();
  for (const auto& provider : config->providers) {
    // The provider's connection limit is shared out between workers.
    const auto per_worker = (provider.max_connections + worker_count_ - 1) / worker_count_;
    auto context = tls.contains(provider.name) ? tls.at(provider.name) : nullptr;
    snapshot->pools.emplace(provider.name, std::make_unique<upstream::ConnectionPool>(
                                               executor_, provider, context, per_worker));
  }
  for (const auto& key : config->client_keys) snapshot->client_names[key.sha256_hex] = key.name;
  snapshot->config = std::move(config);
  snapshot_ = std::move(snapshot);
}

void Gateway::abort_all() {
  for (auto* exchange : in_flight_) exchange->abort();
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
    auto found = snapshot.client_names.find(config::sha256_hex(token));
    if (found != snapshot.client_names.end()) return &found->second;
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
    if (method != bhttp::verb::get && method != bhttp::verb::head) co_return co_await wrong_method("GET");
    const bool ready = path == "/healthz" || (!draining_ && snapshot);
    bhttp::response<bhttp::string_body> response{ready ? bhttp::status::ok
                                                       : bhttp::status::service_unavailable,
                                                 11};
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
    co_await responder.send_error(404, "no route for " + std::string(path), "invalid_request_error",
                                  "unknown_url");
    log_simple("unknown_url");
    co_return;
  }
  if (kind < 0 && method != bhttp::verb::get) co_return co_await wrong_method("GET");
  if (kind >= 0 && method != bhttp::verb::post) co_return co_await wrong_method("POST");

  if (authenticate(request, *snapshot) == nullptr) {
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
  co_await proxy(request, responder, std::move(snapshot), kind);
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

asio::awaitable<void> Gateway::proxy(http::IncomingRequest& request, http::Responder& responder,
                                     std::shared_ptr<Snapshot> snapshot, int api_kind) {
  const auto kind = static_cast<ApiKind>(api_kind);
  const auto& config = *snapshot->config;
  const std::string* client_name = authenticate(request, *snapshot);

  AccessRecord record;
  record.request_id = request.request_id;
  record.method = request.message.method_string();
  record.route = path_of(request.message.target());
  record.client_key = *client_name;
  std::string error_name;
  auto finish = [&] {
    record.status = responder.status();
    record.error = error_name;
    record.latency_ms = milliseconds_since(request.received_at);
    access_log_.record(record);
  };
  auto reject = [&](unsigned status, std::string message, std::string_view type,
                    std::string_view code) -> asio::awaitable<void> {
    error_name = code;
    co_await responder.send_error(status, message, type, code);
    finish();
  };

  boost::system::error_code parse_error;
  json::value parsed = json::parse(request.message.body(), parse_error);
  if (parse_error) {
    co_return co_await reject(400, "request body is not valid JSON: " + parse_error.message(),
                              "invalid_request_error", "invalid_json");
  }
  if (!parsed.is_object()) {
    co_return co_await reject(400, "request body must be a JSON object", "invalid_request_error",
                              "invalid_json");
  }
  providers::RequestShape shape;
  if (auto problem = providers::validate_request(parsed.get_object(), kind, shape)) {
    co_return co_await reject(400, *problem, "invalid_request_error", "invalid_request");
  }
  record.client_model = shape.model;
  record.stream = shape.stream;

  auto route = config.routes.find(shape.model);
  if (route == config.routes.end()) {
    co_return co_await reject(404,
                              "the model '" + shape.model +
                                  "' does not exist or is not routed by this gateway",
                              "invalid_request_error", "model_not_found");
  }
  auto& pool = *snapshot->pools.at(route->second.provider);
  const auto& provider = pool.provider();
  const auto& provider_model = provider.models.at(shape.model);
  record.provider = provider.name;
  record.provider_model = provider_model;

  const bool ask_usage = shape.stream && provider.stream_usage && !shape.client_requested_usage;
  bhttp::request<bhttp::string_body> upstream_request{
      bhttp::verb::post, provider.endpoint.base_path + std::string(providers::api_path(kind)), 11};
  upstream_request.set(bhttp::field::host, provider.endpoint.host);
  upstream_request.set(bhttp::field::content_type, "application/json");
  upstream_request.set(bhttp::field::accept,
                       shape.stream ? "text/event-stream" : "application/json");
  upstream_request.set(bhttp::field::user_agent, kUserAgent);
  upstream_request.set("x-request-id", request.request_id);
  if (!provider.api_key.empty()) {
    upstream_request.set(bhttp::field::authorization, "Bearer " + provider.api_key);
  }
  upstream_request.keep_alive(true);
  upstream_request.body() =
      providers::rewrite_request(std::move(parsed.get_object()), provider_model, ask_usage);
  upstream_request.prepare_payload();

  const auto deadline = Clock::now() + provider.timeouts.total;
  upstream::Exchange exchange(pool, deadline);
  responder.watch_for_disconnect([&exchange] { exchange.abort(); });
  in_flight_.insert(&exchange);
  struct Cleanup {
    http::Responder& responder;
    std::unordered_set<upstream::Exchange*>& in_flight;
    upstream::Exchange* exchange;
    ~Cleanup() {
      responder.stop_watching();
      in_flight.erase(exchange);
    }
  } cleanup{responder, in_flight_, &exchange};

  auto fail_upstream = [&](const upstream::UpstreamError& error) -> asio::awaitable<void> {
    error_name = upstream::failure_name(error.kind);
    if (error.kind == upstream::FailureKind::cancelled || responder.client_gone()) {
      error_name = "client_disconnected";
      finish();
      co_return;
    }
    const unsigned status = status_for(error);
    co_await responder.send_error(status, error.message,
                                  status == 504 ? "timeout_error" : "upstream_error",
                                  upstream::failure_name(error.kind));
    finish();
  };

  if (auto error = co_await exchange.start(upstream_request)) {
    co_return co_await fail_upstream(*error);
  }

  const unsigned upstream_status = exchange.status();
  if (upstream_status < 200 || upstream_status >= 300) {
    std::string body;
    if (auto error = co_await exchange.read_all(body, kMaxErrorBodyBytes)) {
      co_return co_await fail_upstream(*error);
    }
    bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(upstream_status), 11};
    for (const auto& field : exchange.response()) {
      if (is_forwarded_response_header(field.name_string())) {
        response.set(field.name_string(), field.value());
      }
    }
    response.set(bhttp::field::content_type, "application/json");
    response.set("x-cutover-provider", provider.name);
    response.body() =
        providers::normalize_error_body(body, upstream_status, provider.api_key, request.request_id);
    error_name = "upstream_status";
    co_await responder.send(std::move(response));
    finish();
    co_return;
  }

  providers::ResponseIdentity identity;
  identity.id = (kind == ApiKind::chat_completions ? "chatcmpl-" : "cmpl-") + request.request_id;
  identity.created = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  identity.client_model = shape.model;
  providers::Usage usage;
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
      co_return co_await fail_upstream(*error);
    }
    boost::system::error_code ec;
    json::value value = json::parse(body, ec);
    std::optional<std::string> invalid;
    if (ec) {
      invalid = "provider '" + provider.name + "' returned a body that is not JSON";
    } else if (auto problem = providers::normalize_response(value, kind, identity, usage)) {
      invalid = "provider '" + provider.name + "' returned an invalid response: " + *problem;
    } else if (shape.stream) {
      invalid = "provider '" + provider.name + "' answered a streaming request without a stream";
    }
    if (invalid) {
      co_return co_await reject(502, *invalid, "upstream_error", "invalid_upstream_response");
    }
    bhttp::response<bhttp::string_body> response{bhttp::status::ok, 11};
    response.set(bhttp::field::content_type, "application/json");
    response.set("x-cutover-provider", provider.name);
    response.body() = json::serialize(value);
    record.time_to_first_token_ms = milliseconds_since(request.received_at, exchange.first_byte_at());
    record_usage();
    co_await responder.send(std::move(response));
    if (responder.client_gone()) error_name = "client_disconnected";
    finish();
    co_return;
  }

  // Streaming: forward event by event. The client's header waits for the first valid event so a
  // provider that fails before producing anything still gets a clean error status.
  providers::SseParser parser;
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
      boost::system::error_code ec;
      json::value chunk = json::parse(event.data, ec);
      if (ec) {
        stream_problem = "a stream event is not JSON";
        break;
      }
      providers::ChunkOutcome outcome;
      if (auto problem = providers::normalize_stream_chunk(chunk, kind, identity, ask_usage, usage,
                                                           outcome)) {
        stream_problem = *problem;
        break;
      }
      if (outcome.drop) continue;
      if (outcome.is_error) {
        if (auto* e = chunk.get_object().if_contains("error"); e && e->is_object()) {
          json::value message = e->get_object().contains("message") ? e->get_object().at("message")
                                                                    : json::value("upstream error");
          std::string text = message.is_string() ? std::string(message.get_string()) : "upstream error";
          providers::redact(text, provider.api_key);
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

  if (responder.client_gone()) {
    exchange.abort();
    error_name = "client_disconnected";
    finish();
    co_return;
  }
  if (!saw_done && !stream_problem && !stream_error) {
    stream_problem = "the stream ended before [DONE]";
  }
  if (stream_problem || stream_error) {
    const std::string message =
        stream_error ? stream_error->message
                     : "provider '" + provider.name + "' sent an invalid stream: " + *stream_problem;
    const std::string code = stream_error ? std::string(upstream::failure_name(stream_error->kind))
                                          : "invalid_upstream_response";
    if (!responder.started()) {
      if (stream_error) co_return co_await fail_upstream(*stream_error);
      co_return co_await reject(502, message, "upstream_error", code);
    }
    // Headers are out: the SDKs raise an APIError when a stream carries an error event.
    error_name = code;
    exchange.abort();
    co_await responder.send_chunk(
        sse_data(providers::error_body(message, "upstream_error", code, request.request_id)));
    co_await responder.end_stream();
    finish();
    co_return;
  }
  co_await responder.end_stream();
  if (responder.client_gone()) error_name = "client_disconnected";
  finish();
}

}  // namespace cutover::proxy
