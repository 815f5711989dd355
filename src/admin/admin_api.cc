#include "admin/admin_api.h"

#include <boost/json.hpp>
#include <charconv>

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
  out["open_for_ms"] =
      snapshot.open_until
          ? std::chrono::duration_cast<std::chrono::milliseconds>(*snapshot.open_until - now).count()
          : 0;
  return out;
}

}  // namespace

AdminApi::AdminApi(std::function<std::shared_ptr<const config::Config>()> config,
                   std::function<std::shared_ptr<const proxy::HealthRegistry>()> health)
    : config_(std::move(config)), health_(std::move(health)) {}

boost::asio::awaitable<void> AdminApi::handle(http::IncomingRequest& request,
                                              http::Responder& responder) {
  const auto target = std::string_view(request.message.target());
  const auto path = target.substr(0, target.find('?'));
  auto reply = [&](unsigned status, json::value body) -> boost::asio::awaitable<void> {
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

  const auto config = config_();
  const auto authorization = request.message[bhttp::field::authorization];
  const bool bearer =
      authorization.size() > 7 && boost::beast::iequals(authorization.substr(0, 7), "bearer ");
  if (!config->admin || !bearer ||
      config::sha256_hex(authorization.substr(7)) != config->admin->token_sha256_hex) {
    const std::string message =
        "the admin API needs 'Authorization: Bearer <admin token>'; client keys are not accepted";
    co_await responder.send_error(401, message, "authentication_error", "invalid_admin_token");
    co_return;
  }

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
  const std::string message = "no admin route for " +
                              std::string(request.message.method_string()) + " " + std::string(path);
  co_await responder.send_error(404, message, "invalid_request_error", "unknown_url");
}

}  // namespace cutover::admin
