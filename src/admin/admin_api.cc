#include "admin/admin_api.h"

#include <boost/json.hpp>
#include <algorithm>
#include <charconv>

#include "admin/dashboard.h"
#include "util/sha256.h"

namespace cutover::admin {

namespace json = boost::json;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto end = path.find('/');
    parts.push_back(path.substr(0, end));
    if (end == std::string_view::npos) break;
    path.remove_prefix(end);
  }
  return parts;
}

json::object breaker_json(const std::string& provider, std::size_t index,
                          const config::ProviderEndpoint& endpoint,
                          resilience::CircuitBreaker& breaker) {
  const auto now = Clock::now();
  const auto snapshot = breaker.snapshot(now);
  json::object out;
  out["provider"] = provider;
  out["endpoint"] = index;
  out["base_url"] = endpoint.base_url;
  out["state"] = resilience::state_name(snapshot.state);
  out["failure_rate"] = snapshot.failure_rate;
  out["slow_call_rate"] = snapshot.slow_call_rate;
  out["calls"] = snapshot.calls;
  out["trips"] = snapshot.trips;
  out["throttled"] = snapshot.throttled;
  out["last_resort_calls"] = snapshot.last_resort_calls;
  out["open_for_ms"] =
      snapshot.open_until
          ? std::chrono::duration_cast<std::chrono::milliseconds>(*snapshot.open_until - now).count()
          : 0;
  return out;
}

json::object cache_json(const std::string& model, const cache::ResponseCache& cache) {
  const auto stats = cache.stats();
  json::object out;
  out["model"] = model;
  out["entries"] = stats.entries;
  out["bytes"] = stats.bytes;
  out["hits"] = stats.hits;
  out["misses"] = stats.misses;
  out["bypasses"] = stats.bypasses;
  out["evictions"] = stats.evictions;
  out["tokens_saved"] = stats.tokens_saved;
  out["cost_saved"] = stats.cost_saved;
  out["ttl_ms"] = cache.settings().ttl.count();
  return out;
}

// What an endpoint last reported of its rate limits; null where it reported nothing.
json::object quota_json(const std::string& provider, std::size_t index,
                        const config::ProviderEndpoint& endpoint, const resilience::QuotaState& quota) {
  const auto snapshot = quota.snapshot(Clock::now());
  auto number = [](const auto& value) -> json::value {
    if (!value) return nullptr;
    if constexpr (std::is_same_v<std::decay_t<decltype(*value)>, std::chrono::milliseconds>) {
      return value->count();
    } else {
      return *value;
    }
  };
  json::object out;
  out["provider"] = provider;
  out["endpoint"] = index;
  out["base_url"] = endpoint.base_url;
  out["reported"] = snapshot.reported;
  out["request_limit"] = number(snapshot.request_limit);
  out["requests_remaining"] = number(snapshot.requests_remaining);
  out["requests_reset_ms"] = number(snapshot.requests_reset_in);
  out["token_limit"] = number(snapshot.token_limit);
  out["tokens_remaining"] = number(snapshot.tokens_remaining);
  out["tokens_reset_ms"] = number(snapshot.tokens_reset_in);
  out["exhausted"] = snapshot.exhausted;
  return out;
}

}  // namespace

AdminApi::AdminApi(std::function<std::shared_ptr<const config::Config>()> config,
                   std::function<std::shared_ptr<const proxy::HealthRegistry>()> health,
                   std::function<std::shared_ptr<migration::MigrationEngine>()> migrations,
                   std::function<std::string()> metrics,
                   AuthenticationBackoff::Settings backoff)
    : config_(std::move(config)),
      health_(std::move(health)),
      migrations_(std::move(migrations)),
      metrics_(std::move(metrics)),
      backoff_(backoff) {}

Awaitable<void> AdminApi::handle(http::IncomingRequest& request, http::Responder& responder) {
  const auto target = std::string_view(request.message.target());
  const auto path = target.substr(0, target.find('?'));
  auto reply = [&](unsigned status, json::value body) -> Awaitable<void> {
    bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status), 11};
    response.set(bhttp::field::content_type, "application/json");
    response.body() = json::serialize(body);
    co_await responder.send(std::move(response));
  };
  if (path == "/healthz") {
    json::object ok;
    ok["status"] = "ok";
    co_return co_await reply(200, std::move(ok));
  }
  if (path == "/dashboard" && request.message.method() == bhttp::verb::get) {
    // The page holds no data, only a script that asks this API with the operator's token.
    bhttp::response<bhttp::string_body> page{bhttp::status::ok, 11};
    page.set(bhttp::field::content_type, "text/html; charset=utf-8");
    page.set(bhttp::field::cache_control, "no-store");
    page.set("Content-Security-Policy",
             "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
             "img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
    page.set("X-Content-Type-Options", "nosniff");
    page.body() = std::string(dashboard_html());
    co_await responder.send(std::move(page));
    co_return;
  }

  const auto config = config_();
  const auto authorization = request.message[bhttp::field::authorization];
  const bool bearer =
      authorization.size() > 7 && boost::beast::iequals(authorization.substr(0, 7), "bearer ");
  if (!config->admin || !bearer ||
      util::sha256_hex(authorization.substr(7)) != config->admin->token_sha256_hex) {
    // A timer, not a sleep: the admin thread goes on serving other connections meanwhile.
    SteadyTimer pause(co_await boost::asio::this_coro::executor, backoff_.failed());
    co_await pause.async_wait(boost::asio::as_tuple(use_awaitable));
    const std::string message =
        "the admin API needs 'Authorization: Bearer <admin token>'; client keys are not accepted";
    co_await responder.send_error(401, message, "authentication_error", "invalid_admin_token");
    co_return;
  }
  backoff_.succeeded();

  const auto health = health_();
  const auto parts = split_path(path);
  const auto method = request.message.method();
  auto find_breaker = [&](std::string_view provider_name, std::string_view index_text)
      -> std::pair<const config::Provider*, std::size_t> {
    const auto* provider = config->find_provider(provider_name);
    if (provider == nullptr) return {nullptr, 0};
    std::size_t index = 0;
    auto [end, ec] = std::from_chars(index_text.data(), index_text.data() + index_text.size(), index);
    if (ec != std::errc() || end != index_text.data() + index_text.size() ||
        index >= provider->endpoints.size()) {
      return {nullptr, 0};
    }
    return {provider, index};
  };

  if (parts.size() == 3 && parts[0] == "admin" && parts[1] == "v1" && parts[2] == "breakers" &&
      method == bhttp::verb::get) {
    json::array breakers;
    for (const auto& provider : config->providers) {
      const auto& provider_health = health->provider(provider.name);
      for (std::size_t i = 0; i < provider.endpoints.size(); ++i) {
        breakers.push_back(
            breaker_json(provider.name, i, provider.endpoints[i], *provider_health.breakers[i]));
      }
    }
    json::object body;
    body["breakers"] = std::move(breakers);
    co_return co_await reply(200, std::move(body));
  }
  if (parts.size() == 6 && parts[0] == "admin" && parts[1] == "v1" && parts[2] == "breakers" &&
      method == bhttp::verb::post) {
    auto [provider, index] = find_breaker(parts[3], parts[4]);
    if (provider == nullptr) {
      const std::string message = "no such provider endpoint";
      co_await responder.send_error(404, message, "invalid_request_error", "not_found");
      co_return;
    }
    auto& breaker = *health->provider(provider->name).breakers[index];
    const auto action = parts[5];
    if (action == "force_open") {
      breaker.force_open();
    } else if (action == "disable") {
      breaker.disable();
    } else if (action == "reset") {
      breaker.reset();
    } else {
      const std::string message =
          "unknown action '" + std::string(action) + "'; use force_open, disable or reset";
      co_await responder.send_error(400, message, "invalid_request_error", "unknown_action");
      co_return;
    }
    auto body = breaker_json(provider->name, index, provider->endpoints[index], breaker);
    co_return co_await reply(200, std::move(body));
  }
  if (parts.size() >= 3 && parts[0] == "admin" && parts[1] == "v1" && parts[2] == "cache") {
    const bool purge = parts.size() == 4 && parts[3] == "purge" && method == bhttp::verb::post;
    if (!purge && !(parts.size() == 3 && method == bhttp::verb::get)) {
      co_await responder.send_error(404, "use GET /admin/v1/cache or POST /admin/v1/cache/purge",
                                    "invalid_request_error", "not_found");
      co_return;
    }
    json::array caches;
    std::size_t purged = 0;
    bool unreachable = false;
    for (const auto& [model, cache] : health->caches()) {
      if (purge) {
        const auto dropped = co_await cache->purge_all();
        if (dropped) purged += *dropped;
        unreachable = unreachable || !dropped;
      }
      auto entry = cache_json(model, *cache);
      // A fleet's cache: what Redis holds, for every replica; null when it cannot be reached.
      if (cache->is_shared()) {
        entry["shared"] = true;
        const auto usage = co_await cache->shared_usage();
        entry["entries"] = usage ? json::value(usage->entries) : json::value(nullptr);
        entry["bytes"] = usage ? json::value(usage->bytes) : json::value(nullptr);
      }
      caches.push_back(std::move(entry));
    }
    json::object body;
    body["caches"] = std::move(caches);
    if (purge) {
      body["purged"] = purged;
      if (unreachable) body["error"] = "the fleet's Redis could not be reached: its cache was not purged";
    }
    co_return co_await reply(200, std::move(body));
  }
  if (parts.size() == 3 && parts[0] == "admin" && parts[1] == "v1" && parts[2] == "quotas" &&
      method == bhttp::verb::get) {
    json::array quotas;
    for (const auto& provider : config->providers) {
      const auto& provider_health = health->provider(provider.name);
      for (std::size_t i = 0; i < provider.endpoints.size(); ++i) {
        quotas.push_back(quota_json(provider.name, i, provider.endpoints[i], *provider_health.quotas[i]));
      }
    }
    json::object body;
    body["quotas"] = std::move(quotas);
    co_return co_await reply(200, std::move(body));
  }
  if (parts.size() == 3 && parts[0] == "admin" && parts[1] == "v1" && parts[2] == "retry-budgets" &&
      method == bhttp::verb::get) {
    json::array budgets;
    const auto now = Clock::now();
    for (const auto& provider : config->providers) {
      const auto& budget = *health->provider(provider.name).budget;
      const auto totals = budget.window_totals(now);
      json::object entry;
      entry["provider"] = provider.name;
      entry["window_requests"] = totals.requests;
      entry["window_retries"] = totals.retries;
      entry["ratio"] = budget.settings().ratio;
      entry["window_seconds"] = budget.settings().window.count();
      budgets.push_back(std::move(entry));
    }
    json::object body;
    body["retry_budgets"] = std::move(budgets);
    co_return co_await reply(200, std::move(body));
  }
  if (path == "/metrics" && method == bhttp::verb::get) {
    auto exposition = metrics_();
    if (exposition.empty()) {
      co_await responder.send_error(404, "metrics are off in this configuration (metrics: false)",
                                    "invalid_request_error", "metrics_off");
      co_return;
    }
    bhttp::response<bhttp::string_body> response{bhttp::status::ok, 11};
    response.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.body() = std::move(exposition);
    co_await responder.send(std::move(response));
    co_return;
  }
  if (parts.size() >= 3 && parts[0] == "admin" && parts[1] == "v1" && parts[2] == "migrations") {
    auto engine = migrations_();
    if (!engine) {
      if (parts.size() == 3 && method == bhttp::verb::get) {
        json::object empty;
        empty["migrations"] = json::array();
        co_return co_await reply(200, std::move(empty));
      }
      co_await responder.send_error(404, "the configuration has no migrations",
                                    "invalid_request_error", "migration_not_found");
      co_return;
    }
    migration::AdminReply result;
    const std::string name = parts.size() > 3 ? std::string(parts[3]) : std::string();
    const auto query = target.find('?') == std::string_view::npos
                           ? std::string_view()
                           : target.substr(target.find('?') + 1);
    if (parts.size() == 3 && method == bhttp::verb::get) {
      result = engine->list();
    } else if (parts.size() == 4 && method == bhttp::verb::get) {
      result = engine->status(name);
    } else if (parts.size() == 5 && parts[4] == "history" && method == bhttp::verb::get) {
      std::size_t limit = 100;
      if (auto at = query.find("limit="); at != std::string_view::npos) {
        const auto digits = query.substr(at + 6, query.find('&', at) - at - 6);
        std::from_chars(digits.data(), digits.data() + digits.size(), limit);
        limit = std::clamp<std::size_t>(limit, 1, 10'000);
      }
      result = engine->history(name, limit);
    } else if (parts.size() == 5 && parts[4] == "shadow" && method == bhttp::verb::get) {
      result = engine->shadow_summary(name);
    } else if (parts.size() == 5 && parts[4] == "projection" && method == bhttp::verb::get) {
      result = engine->projection(name);
    } else if (parts.size() == 5 && parts[4] == "series" && method == bhttp::verb::get) {
      std::int64_t since = 0;
      if (auto at = query.find("since="); at != std::string_view::npos) {
        const auto digits = query.substr(at + 6, query.find('&', at) - at - 6);
        std::from_chars(digits.data(), digits.data() + digits.size(), since);
      }
      result = engine->series(name, since);
    } else if (parts.size() == 5 && method == bhttp::verb::post) {
      const auto action = migration::action_named(parts[4]);
      if (!action) {
        co_await responder.send_error(
            404,
            "unknown migration action '" + std::string(parts[4]) +
                "'; use pause, resume, promote, promote-full, set-weight, rollback or abort",
            "invalid_request_error", "unknown_action");
        co_return;
      }
      boost::system::error_code ec;
      auto body = json::parse(request.message.body(), ec);
      const auto* object = body.if_object();
      const auto* generation = object ? object->if_contains("generation") : nullptr;
      if (ec || object == nullptr || generation == nullptr || !generation->is_int64()) {
        co_await responder.send_error(
            400,
            "send a JSON body with the migration's current generation, e.g. "
            "{\"generation\": 7}; read it from GET /admin/v1/migrations/" + name,
            "invalid_request_error", "missing_generation");
        co_return;
      }
      migration::Command command;
      command.action = *action;
      command.expected_generation = generation->get_int64();
      if (const auto* actor = object->if_contains("actor"); actor && actor->is_string()) {
        command.actor = std::string(actor->get_string()).substr(0, 64);
      }
      if (const auto* reason = object->if_contains("reason"); reason && reason->is_string()) {
        command.reason = std::string(reason->get_string()).substr(0, 512);
      }
      if (const auto* weight = object->if_contains("weight"); weight && weight->is_number()) {
        command.weight = weight->to_number<double>();
      }
      result = engine->command(name, command);
    } else {
      co_await responder.send_error(405, "method not allowed on " + std::string(path),
                                    "invalid_request_error", "method_not_allowed");
      co_return;
    }
    co_return co_await reply(result.status, std::move(result.body));
  }
  const std::string message = "no admin route for " +
                              std::string(request.message.method_string()) + " " + std::string(path);
  co_await responder.send_error(404, message, "invalid_request_error", "unknown_url");
}

}  // namespace cutover::admin
