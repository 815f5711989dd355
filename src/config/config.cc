#include "config/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/validator.h"
#include "util/sha256.h"

namespace cutover::config {

const Price* Provider::price_for(std::string_view provider_model) const {
  auto found = prices.find(provider_model);
  return found == prices.end() ? nullptr : &found->second;
}

const Provider* Config::find_provider(std::string_view name) const {
  for (const auto& provider : providers) {
    if (provider.name == name) return &provider;
  }
  return nullptr;
}

EnvironmentLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

namespace {

using detail::Validator;
using detail::ratio_at;

// Short enough to guess from a script against the admin listener; `openssl rand -hex 32` is ample.
constexpr std::size_t kMinAdminTokenLength = 16;

// Only an IP literal can be checked here; the listener refuses anything else at startup.
bool reachable_from_other_machines(const std::string& address) {
  boost::system::error_code ec;
  const auto parsed = boost::asio::ip::make_address(address, ec);
  return !ec && !parsed.is_loopback();
}

void parse_listen(Validator& v, const YAML::Node& node, Listener& listen, const std::string& path) {
  if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      v.error(node, path, "must be HOST:PORT, e.g. 127.0.0.1:8080");
      return;
    }
    auto host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    YAML::Node port_node(text.substr(colon + 1));
    if (auto port = v.integer_at<unsigned>(port_node, path, 0, 65535)) {
      listen.address = host;
      listen.port = static_cast<std::uint16_t>(*port);
    }
    return;
  }
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path, {"address", "port"});
  if (node["address"]) {
    if (auto address = v.string_at(node["address"], path + ".address")) listen.address = *address;
  }
  if (node["port"]) {
    if (auto port = v.integer_at<unsigned>(node["port"], path + ".port", 0, 65535)) {
      listen.port = static_cast<std::uint16_t>(*port);
    }
  }
}

void parse_base_url(Validator& v, const YAML::Node& node, const std::string& path,
                    ProviderEndpoint& endpoint) {
  auto text = v.string_at(node, path);
  if (!text) return;
  endpoint.base_url = *text;
  auto parsed = boost::urls::parse_absolute_uri(*text);
  if (!parsed) {
    v.error(node, path, "'" + *text + "' is not a valid absolute URL");
    return;
  }
  const auto scheme = parsed->scheme();
  if (scheme != "http" && scheme != "https") {
    v.error(node, path, "'" + *text + "' must use http or https");
    return;
  }
  if (parsed->host().empty()) {
    v.error(node, path, "'" + *text + "' has no host");
    return;
  }
  if (parsed->has_query() || parsed->has_fragment() || parsed->has_userinfo()) {
    v.error(node, path, "'" + *text + "' must not carry a query, fragment or credentials");
    return;
  }
  auto& address = endpoint.address;
  address.tls = scheme == "https";
  const auto encoded_host = parsed->encoded_host_address();
  std::string host(encoded_host.data(), encoded_host.size());
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  address.host = host;
  address.port = parsed->has_port() ? parsed->port_number() : (address.tls ? 443 : 80);
  if (parsed->has_port() && address.port == 0) {
    v.error(node, path, "'" + *text + "' has an invalid port");
  }
  const auto encoded_path = parsed->encoded_path();
  std::string base_path(encoded_path.data(), encoded_path.size());
  while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
  address.base_path = base_path;
}

void parse_admin(Validator& v, const YAML::Node& node, Config& config) {
  if (!v.expect_map(node, "admin")) return;
  v.reject_unknown_keys(node, "admin", {"listen", "token_env", "token_sha256"});
  Admin admin;
  if (node["listen"]) parse_listen(v, node["listen"], admin.listen, "admin.listen");
  if (reachable_from_other_machines(admin.listen.address)) {
    v.warning(node["listen"], "admin.listen",
              admin.listen.address + " is not a loopback address: the admin API, which can move "
              "traffic between providers, is reachable from other machines");
  }
  if (static_cast<bool>(node["token_env"]) == static_cast<bool>(node["token_sha256"])) {
    v.error(node, "admin",
            "needs exactly one of token_env (a variable name) or token_sha256 (hex digest)");
    return;
  }
  if (node["token_env"]) {
    auto variable = v.string_at(node["token_env"], "admin.token_env");
    if (!variable) return;
    if (v.resolves_secrets()) {
      auto token = v.read_environment(node["token_env"], "admin.token_env", *variable);
      if (!token) return;
      if (token->size() < kMinAdminTokenLength) {
        v.error(node["token_env"], "admin.token_env",
                "the admin token in " + *variable + " has " + std::to_string(token->size()) +
                    " characters; it needs at least " + std::to_string(kMinAdminTokenLength) +
                    " (e.g. from `openssl rand -hex 32`)");
        return;
      }
      admin.token_sha256_hex = util::sha256_hex(*token);
    }
  } else {
    auto digest = v.string_at(node["token_sha256"], "admin.token_sha256").value_or("");
    if (digest.size() != 64 || digest.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
      v.error(node["token_sha256"], "admin.token_sha256", "must be 64 hexadecimal characters");
      return;
    }
    for (auto& c : digest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    admin.token_sha256_hex = digest;
  }
  config.admin = std::move(admin);
}

// base_url and exactly one way to get the key, from `node` (a provider or one of its endpoints).
void parse_endpoint(Validator& v, const YAML::Node& node, const std::string& path,
                    ProviderEndpoint& endpoint) {
  if (!node["base_url"]) {
    v.error(node, path, "missing required key base_url");
  } else {
    parse_base_url(v, node["base_url"], path + ".base_url", endpoint);
  }
  const bool has_env = static_cast<bool>(node["api_key_env"]);
  const bool has_file = static_cast<bool>(node["api_key_file"]);
  bool no_key = false;
  if (node["no_api_key"]) {
    no_key = v.bool_at(node["no_api_key"], path + ".no_api_key").value_or(false);
  }
  if (has_env + has_file + no_key != 1) {
    v.error(node, path,
            "needs exactly one of api_key_env (a variable name), api_key_file (a path) or "
            "no_api_key: true; keys are never written in the file");
  } else if (has_env) {
    if (auto variable = v.string_at(node["api_key_env"], path + ".api_key_env")) {
      endpoint.api_key_source = "env:" + *variable;
      if (!v.resolves_secrets()) return;
      if (auto key = v.read_environment(node["api_key_env"], path + ".api_key_env", *variable)) {
        endpoint.api_key = *key;
      }
    }
  } else if (has_file) {
    if (auto file = v.string_at(node["api_key_file"], path + ".api_key_file")) {
      endpoint.api_key_source = "file:" + *file;
      if (!v.resolves_secrets()) return;
      if (auto key = v.read_secret_file(node["api_key_file"], path + ".api_key_file", *file)) {
        endpoint.api_key = *key;
      }
    }
  }
}

void parse_retry(Validator& v, const YAML::Node& node, const std::string& path,
                 resilience::RetryPolicy& retry) {
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path,
                        {"max_attempts", "retry_on", "backoff_base", "backoff_max",
                         "max_retry_after"});
  if (node["max_attempts"]) {
    retry.max_attempts = v.integer_at<unsigned>(node["max_attempts"], path + ".max_attempts", 1, 10)
                             .value_or(retry.max_attempts);
  }
  if (const auto& on = node["retry_on"]) {
    if (!on.IsSequence()) {
      v.error(on, path + ".retry_on",
              "must be a list of: connect_error, reset, timeout, invalid_response, 429, 5xx codes");
    } else {
      retry.retry_connect_error = retry.retry_reset = retry.retry_timeout = false;
      retry.retry_rate_limited = retry.retry_invalid_response = false;
      retry.retry_statuses.clear();
      for (const auto& item : on) {
        const auto text = item.IsScalar() ? item.Scalar() : std::string();
        unsigned status = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), status);
        if (text == "connect_error") {
          retry.retry_connect_error = true;
        } else if (text == "reset") {
          retry.retry_reset = true;
        } else if (text == "timeout") {
          retry.retry_timeout = true;
        } else if (text == "invalid_response") {
          retry.retry_invalid_response = true;
        } else if (text == "429") {
          retry.retry_rate_limited = true;
        } else if (ec == std::errc() && end == text.data() + text.size() && status >= 500 &&
                   status <= 599) {
          retry.retry_statuses.insert(status);
        } else {
          v.error(item, path + ".retry_on",
                  "'" + text + "' is not retryable (use connect_error, reset, timeout, "
                  "invalid_response, 429 or a 5xx status; other 4xx are never retried)");
        }
      }
    }
  }
  auto duration = [&](const char* key, resilience::Duration& target) {
    if (node[key]) target = v.duration_at(node[key], path + "." + key).value_or(target);
  };
  duration("backoff_base", retry.backoff_base);
  duration("backoff_max", retry.backoff_max);
  duration("max_retry_after", retry.max_retry_after);
}

void parse_retry_budget(Validator& v, const YAML::Node& node, const std::string& path,
                        resilience::RetryBudgetSettings& budget) {
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path, {"ratio", "min_retries_per_second", "window"});
  if (node["ratio"]) budget.ratio = ratio_at(v, node["ratio"], path + ".ratio", 0, 10).value_or(budget.ratio);
  if (node["min_retries_per_second"]) {
    budget.min_retries_per_second =
        ratio_at(v, node["min_retries_per_second"], path + ".min_retries_per_second", 0, 10000)
            .value_or(budget.min_retries_per_second);
  }
  if (node["window"]) {
    if (auto window = v.duration_at(node["window"], path + ".window")) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*window);
      if (seconds.count() < 1 || seconds.count() > 120) {
        v.error(node["window"], path + ".window", "must be from 1s to 120s");
      } else {
        budget.window = seconds;
      }
    }
  }
}

void parse_breaker(Validator& v, const YAML::Node& node, const std::string& path,
                   resilience::BreakerSettings& breaker) {
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path,
                        {"failure_rate", "slow_call_rate", "slow_call_duration", "window",
                         "window_size", "minimum_calls", "open_duration", "max_open_duration",
                         "half_open_probes", "last_resort_share"});
  if (node["failure_rate"]) {
    breaker.failure_rate_threshold = ratio_at(v, node["failure_rate"], path + ".failure_rate", 0.01, 1)
                                         .value_or(breaker.failure_rate_threshold);
  }
  if (node["slow_call_rate"]) {
    breaker.slow_call_rate_threshold =
        ratio_at(v, node["slow_call_rate"], path + ".slow_call_rate", 0.01, 1)
            .value_or(breaker.slow_call_rate_threshold);
  }
  if (node["window"]) {
    const auto kind = v.string_at(node["window"], path + ".window").value_or("");
    if (kind == "count") {
      breaker.window = resilience::BreakerSettings::Window::count;
    } else if (kind == "time") {
      breaker.window = resilience::BreakerSettings::Window::time;
    } else {
      v.error(node["window"], path + ".window", "must be count or time");
    }
  }
  if (node["window_size"]) {
    breaker.window_size = v.integer_at<unsigned>(node["window_size"], path + ".window_size", 1, 10000)
                              .value_or(breaker.window_size);
  }
  if (node["minimum_calls"]) {
    breaker.minimum_calls =
        v.integer_at<unsigned>(node["minimum_calls"], path + ".minimum_calls", 1, 100000)
            .value_or(breaker.minimum_calls);
  }
  if (node["last_resort_share"]) {
    breaker.last_resort_share =
        ratio_at(v, node["last_resort_share"], path + ".last_resort_share", 0, 1)
            .value_or(breaker.last_resort_share);
  }
  if (node["half_open_probes"]) {
    breaker.half_open_permits =
        v.integer_at<unsigned>(node["half_open_probes"], path + ".half_open_probes", 1, 1000)
            .value_or(breaker.half_open_permits);
  }
  auto duration = [&](const char* key, std::chrono::milliseconds& target) {
    if (node[key]) target = v.duration_at(node[key], path + "." + key).value_or(target);
  };
  duration("slow_call_duration", breaker.slow_call_duration);
  duration("open_duration", breaker.open_duration);
  duration("max_open_duration", breaker.max_open_duration);
  if (breaker.max_open_duration < breaker.open_duration) {
    v.error(node, path, "max_open_duration must not be shorter than open_duration");
  }
}

// Prices per million tokens, keyed by the provider's model identifier:
//   prices: {gpt-4.1: {input: 2.00, cached_input: 0.50, output: 8.00, currency: USD}}
void parse_prices(Validator& v, const YAML::Node& node, const std::string& path,
                  Provider& provider) {
  if (!v.expect_map(node, path)) return;
  for (const auto& entry : node) {
    const auto model = entry.first.as<std::string>("");
    const std::string mpath = path + "." + model;
    if (!v.expect_map(entry.second, mpath)) continue;
    v.reject_unknown_keys(entry.second, mpath, {"input", "cached_input", "cache_write", "output", "currency"});
    Price price;
    auto amount = [&](const char* key, double& target) {
      if (entry.second[key]) {
        target = ratio_at(v, entry.second[key], mpath + "." + key, 0, 1e6).value_or(0);
      }
    };
    amount("input", price.input_per_million);
    amount("output", price.output_per_million);
    price.cached_input_per_million = price.input_per_million;
    amount("cached_input", price.cached_input_per_million);
    price.cache_write_per_million = price.input_per_million;
    amount("cache_write", price.cache_write_per_million);
    if (entry.second["currency"]) {
      price.currency = v.string_at(entry.second["currency"], mpath + ".currency").value_or("USD");
    }
    provider.prices[model] = price;
  }
}

void parse_response_limits(Validator& v, const YAML::Node& limits, Config& config) {
  if (limits["max_response_bytes"]) {
    config.max_response_bytes =
        v.byte_size_at(limits["max_response_bytes"], "limits.max_response_bytes", 1024, 1ull << 34)
            .value_or(config.max_response_bytes);
  }
  if (limits["max_buffered_response_bytes"]) {
    config.max_buffered_response_bytes =
        v.byte_size_at(limits["max_buffered_response_bytes"], "limits.max_buffered_response_bytes",
                       1024, 1ull << 36)
            .value_or(config.max_buffered_response_bytes);
  }
  if (config.max_buffered_response_bytes < config.max_response_bytes) {
    v.error(limits, "limits",
            "max_buffered_response_bytes must not be smaller than max_response_bytes");
  }
}

void parse_provider(Validator& v, const std::string& name, const YAML::Node& node,
                    Provider& provider) {
  const std::string path = "providers." + name;
  provider.name = name;
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path,
                        {"base_url", "api_key_env", "api_key_file", "no_api_key", "endpoints",
                         "ca_file", "models", "timeouts", "max_connections", "stream_usage",
                         "retry", "retry_budget", "breaker", "prices", "dialect",
                         "anthropic_version", "default_max_tokens"});
  if (node["dialect"]) {
    const auto dialect = v.string_at(node["dialect"], path + ".dialect").value_or("openai");
    if (dialect == "anthropic") {
      provider.dialect = Dialect::anthropic;
    } else if (dialect != "openai") {
      v.error(node["dialect"], path + ".dialect",
              "must be openai (chat completions) or anthropic (Messages), not '" + dialect + "'");
    }
  }
  if (node["anthropic_version"]) {
    provider.anthropic_version =
        v.string_at(node["anthropic_version"], path + ".anthropic_version")
            .value_or(provider.anthropic_version);
    if (!Validator::fits_a_header(provider.anthropic_version)) {
      v.error(node["anthropic_version"], path + ".anthropic_version",
              std::string("the version ") + Validator::kNotAHeaderValue);
    }
  }
  if (node["default_max_tokens"]) {
    provider.default_max_tokens =
        v.integer_at<std::int64_t>(node["default_max_tokens"], path + ".default_max_tokens", 1,
                                   10'000'000)
            .value_or(provider.default_max_tokens);
  }
  if (const auto& endpoints = node["endpoints"]) {
    if (node["base_url"] || node["api_key_env"] || node["api_key_file"] || node["no_api_key"]) {
      v.error(node, path,
              "give either endpoints or base_url with its key at the provider level, not both");
    }
    if (!endpoints.IsSequence() || endpoints.size() == 0) {
      v.error(endpoints, path + ".endpoints", "must be a non-empty list of endpoints");
    } else {
      for (std::size_t i = 0; i < endpoints.size(); ++i) {
        const std::string epath = path + ".endpoints[" + std::to_string(i) + "]";
        ProviderEndpoint endpoint;
        if (!v.expect_map(endpoints[i], epath)) continue;
        v.reject_unknown_keys(endpoints[i], epath,
                              {"base_url", "api_key_env", "api_key_file", "no_api_key", "weight"});
        parse_endpoint(v, endpoints[i], epath, endpoint);
        if (endpoints[i]["weight"]) {
          endpoint.weight =
              v.integer_at<unsigned>(endpoints[i]["weight"], epath + ".weight", 1, 1000).value_or(1);
        }
        provider.endpoints.push_back(std::move(endpoint));
      }
    }
  } else {
    ProviderEndpoint endpoint;
    parse_endpoint(v, node, path, endpoint);
    provider.endpoints.push_back(std::move(endpoint));
  }
  if (node["retry"]) parse_retry(v, node["retry"], path + ".retry", provider.retry);
  if (node["retry_budget"]) {
    parse_retry_budget(v, node["retry_budget"], path + ".retry_budget", provider.retry_budget);
  }
  if (node["breaker"]) parse_breaker(v, node["breaker"], path + ".breaker", provider.breaker);

  if (node["ca_file"]) {
    if (auto file = v.string_at(node["ca_file"], path + ".ca_file")) {
      const auto full = v.resolve_path(*file);
      if (!std::filesystem::exists(full)) {
        v.error(node["ca_file"], path + ".ca_file", "file '" + full + "' does not exist");
      }
      provider.ca_file = full;
    }
  }

  if (!node["models"]) {
    v.error(node, path, "missing required key models (client-facing name: provider's name)");
  } else if (!node["models"].IsMap() || node["models"].size() == 0) {
    v.error(node["models"], path + ".models",
            "must map at least one client-facing model name to the provider's model name");
  } else {
    for (const auto& entry : node["models"]) {
      const auto client_model = entry.first.as<std::string>("");
      if (!entry.second.IsScalar() || entry.second.Scalar().empty()) {
        v.error(entry.second, path + ".models." + client_model,
                "must be the provider's model name");
        continue;
      }
      provider.models[client_model] = entry.second.Scalar();
    }
  }

  if (const auto& timeouts = node["timeouts"]) {
    const std::string tpath = path + ".timeouts";
    if (v.expect_map(timeouts, tpath)) {
      v.reject_unknown_keys(timeouts, tpath, {"connect", "first_byte", "idle", "total"});
      auto set = [&](const char* key, Milliseconds& target) {
        if (timeouts[key]) {
          if (auto d = v.duration_at(timeouts[key], tpath + "." + key)) target = *d;
        }
      };
      set("connect", provider.timeouts.connect);
      set("first_byte", provider.timeouts.first_byte);
      set("idle", provider.timeouts.idle);
      set("total", provider.timeouts.total);
    }
  }
  if (node["max_connections"]) {
    if (auto limit = v.integer_at<std::size_t>(node["max_connections"], path + ".max_connections",
                                               1, 100'000)) {
      provider.max_connections = *limit;
    }
  }
  if (node["stream_usage"]) {
    if (auto flag = v.bool_at(node["stream_usage"], path + ".stream_usage")) {
      provider.stream_usage = *flag;
    }
  }
  if (const auto& prices = node["prices"]) parse_prices(v, prices, path + ".prices", provider);
}

void parse_auth(Validator& v, const YAML::Node& node, Config& config) {
  if (!v.expect_map(node, "auth")) return;
  v.reject_unknown_keys(node, "auth", {"client_keys", "allow_unauthenticated"});
  if (node["allow_unauthenticated"]) {
    config.allow_unauthenticated =
        v.bool_at(node["allow_unauthenticated"], "auth.allow_unauthenticated").value_or(false);
  }
  const auto& keys = node["client_keys"];
  if (!keys) return;
  if (!keys.IsSequence()) {
    v.error(keys, "auth.client_keys", "must be a list");
    return;
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto& entry = keys[i];
    const std::string path = "auth.client_keys[" + std::to_string(i) + "]";
    if (!v.expect_map(entry, path)) continue;
    v.reject_unknown_keys(entry, path, {"name", "key_env", "sha256"});
    ClientKey key;
    key.name = entry["name"] ? v.string_at(entry["name"], path + ".name").value_or("") : "";
    if (key.name.empty()) v.error(entry, path, "missing required key name");
    if (static_cast<bool>(entry["key_env"]) == static_cast<bool>(entry["sha256"])) {
      v.error(entry, path, "needs exactly one of key_env (a variable name) or sha256 (hex digest)");
      continue;
    }
    if (entry["key_env"]) {
      auto variable = v.string_at(entry["key_env"], path + ".key_env");
      if (!variable) continue;
      if (v.resolves_secrets()) {
        auto value = v.read_environment(entry["key_env"], path + ".key_env", *variable);
        if (!value) continue;
        key.sha256_hex = util::sha256_hex(*value);
      }
    } else {
      auto digest = v.string_at(entry["sha256"], path + ".sha256").value_or("");
      const bool hex = digest.size() == 64 &&
                       digest.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
      if (!hex) {
        v.error(entry["sha256"], path + ".sha256", "must be 64 hexadecimal characters");
        continue;
      }
      for (auto& c : digest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      key.sha256_hex = digest;
    }
    config.client_keys.push_back(std::move(key));
  }
}

// routes[].cache: {ttl: 5m, max_bytes: 64MiB, max_entries, shared_across_keys,
// during_canary}; `cache: true` takes the defaults.
std::optional<cache::CacheSettings> parse_cache(Validator& v, const YAML::Node& node,
                                                const std::string& path) {
  cache::CacheSettings settings;
  if (node.IsScalar()) {
    if (v.bool_at(node, path).value_or(false)) return settings;
    return std::nullopt;
  }
  if (!v.expect_map(node, path)) return std::nullopt;
  v.reject_unknown_keys(node, path,
                        {"ttl", "max_bytes", "max_entries", "shared_across_keys", "during_canary"});
  if (node["ttl"]) settings.ttl = v.duration_at(node["ttl"], path + ".ttl").value_or(settings.ttl);
  if (node["max_bytes"]) {
    settings.max_bytes = v.byte_size_at(node["max_bytes"], path + ".max_bytes", 1024, 1ull << 36)
                             .value_or(settings.max_bytes);
  }
  if (node["max_entries"]) {
    settings.max_entries =
        v.integer_at<std::size_t>(node["max_entries"], path + ".max_entries", 1, 100'000'000)
            .value_or(settings.max_entries);
  }
  if (node["shared_across_keys"]) {
    settings.shared_across_keys =
        v.bool_at(node["shared_across_keys"], path + ".shared_across_keys").value_or(false);
  }
  if (node["during_canary"]) {
    settings.during_canary = v.bool_at(node["during_canary"], path + ".during_canary").value_or(true);
  }
  return settings;
}

void parse_routes(Validator& v, const YAML::Node& node, Config& config) {
  if (!node.IsSequence()) {
    v.error(node, "routes", "must be a list of {models: [...], provider: NAME}");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const auto& entry = node[i];
    const std::string path = "routes[" + std::to_string(i) + "]";
    if (!v.expect_map(entry, path)) continue;
    v.reject_unknown_keys(entry, path, {"models", "provider", "fallback", "retry", "cache"});
    if (!entry["provider"] || !entry["models"]) {
      v.error(entry, path, "needs both models and provider");
      continue;
    }
    auto provider_name = v.string_at(entry["provider"], path + ".provider");
    if (!provider_name) continue;
    const Provider* provider = config.find_provider(*provider_name);
    if (provider == nullptr) {
      v.error(entry["provider"], path + ".provider", "unknown provider '" + *provider_name + "'");
      continue;
    }
    std::vector<std::string> models;
    if (entry["models"].IsScalar()) {
      models.push_back(entry["models"].Scalar());
    } else if (entry["models"].IsSequence()) {
      for (const auto& model : entry["models"]) models.push_back(model.as<std::string>(""));
    } else {
      v.error(entry["models"], path + ".models", "must be a model name or a list of them");
      continue;
    }
    std::vector<const Provider*> fallbacks;
    if (const auto& fallback = entry["fallback"]) {
      if (!fallback.IsSequence()) {
        v.error(fallback, path + ".fallback", "must be a list of provider names");
      } else {
        for (const auto& item : fallback) {
          const auto name = item.as<std::string>("");
          const Provider* other = config.find_provider(name);
          if (other == nullptr) {
            v.error(item, path + ".fallback", "unknown provider '" + name + "'");
          } else if (other == provider || std::find(fallbacks.begin(), fallbacks.end(), other) != fallbacks.end()) {
            v.error(item, path + ".fallback", "provider '" + name + "' appears twice in the chain");
          } else {
            fallbacks.push_back(other);
          }
        }
      }
    }
    std::optional<resilience::RetryPolicy> retry;
    if (entry["retry"]) {
      retry = provider->retry;
      parse_retry(v, entry["retry"], path + ".retry", *retry);
    }
    std::optional<cache::CacheSettings> cache;
    if (entry["cache"]) cache = parse_cache(v, entry["cache"], path + ".cache");
    for (const auto& model : models) {
      for (const auto* other : fallbacks) {
        if (!other->models.contains(model)) {
          v.error(entry["fallback"], path + ".fallback",
                  "fallback provider '" + other->name + "' has no model map entry for '" + model + "'");
        }
      }
      if (model.empty()) {
        v.error(entry["models"], path + ".models", "model names must not be empty");
        continue;
      }
      if (!provider->models.contains(model)) {
        v.error(entry["models"], path + ".models",
                "provider '" + *provider_name + "' has no model map entry for '" + model + "'");
        continue;
      }
      if (config.routes.contains(model)) {
        v.error(entry["models"], path + ".models", "model '" + model + "' is routed twice");
        continue;
      }
      Route route{model, *provider_name, {}, retry, cache};
      for (const auto* other : fallbacks) route.fallback.push_back(other->name);
      config.routes[model] = std::move(route);
    }
  }
}

}  // namespace

namespace {

bool is_redis_url(std::string_view text) { return text.starts_with("redis://"); }

// redis://[user[:password]@]host[:port][/db]; the password may instead come from the environment.
void parse_redis_url(Validator& v, const YAML::Node& node, const std::string& path,
                     const std::string& text, RedisStore& redis) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    v.error(node, path, "'" + text + "' is not a URL such as redis://user:password@host:6379/0");
    return;
  }
  const auto& url = *parsed;
  if (url.scheme() != "redis") {
    v.error(node, path, "the scheme must be redis:// (rediss:// and TLS are not supported)");
    return;
  }
  redis.host = url.host_address();
  if (redis.host.empty()) v.error(node, path, "the Redis URL needs a host");
  if (url.has_port()) {
    const auto port = url.port_number();
    if (port == 0) {
      v.error(node, path, "the Redis URL's port must be a number from 1 to 65535");
    } else {
      redis.port = port;
    }
  }
  if (url.has_userinfo()) {
    redis.user = url.user();
    if (url.has_password()) redis.password = url.password();
  }
  const std::string db = url.path();
  if (!db.empty() && db != "/") {
    int number = -1;
    const auto digits = std::string_view(db).substr(1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
    if (ec != std::errc() || end != digits.data() + digits.size() || number < 0 || number > 15) {
      v.error(node, path,
              "the Redis URL's path must be a database number from 0 to 15, not '" + db + "'");
    } else {
      redis.database = number;
    }
  }
  if (url.has_query() || url.has_fragment()) {
    v.error(node, path, "the Redis URL takes no query or fragment");
  }
  redis.display_url = "redis://" + (redis.user.empty() ? "" : redis.user + "@") + redis.host + ":" +
                      std::to_string(redis.port) + "/" + std::to_string(redis.database);
}

std::string default_replica_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "replica") + ":" + std::to_string(getpid());
}

// `state_store` is a SQLite path, a redis:// URL, or a map whose `url` is a redis:// URL.
void parse_state_store(Validator& v, const YAML::Node& node, Config& config) {
  config.state_store_configured = true;
  std::string text;
  const YAML::Node* map = nullptr;
  if (node.IsMap()) {
    map = &node;
    v.reject_unknown_keys(node, "state_store",
                          {"url", "password_env", "key_prefix", "connect_timeout",
                           "command_timeout", "lease", "primary_only_after", "replica",
                           "replica_env", "local_file"});
    if (!node["url"]) {
      v.error(node, "state_store.url", "missing required key url (a redis:// URL)");
      return;
    }
    text = v.string_at(node["url"], "state_store.url").value_or("");
    if (!is_redis_url(text)) {
      v.error(
          node["url"], "state_store.url",
          "must be a redis:// URL; write a SQLite path as the plain string state_store: <path>");
      return;
    }
  } else {
    text = v.string_at(node, "state_store").value_or("");
    if (!is_redis_url(text)) {
      config.state_store = text == ":memory:" || text.empty() ? text : v.resolve_path(text);
      if (config.state_store.empty()) v.error(node, "state_store", "must not be empty");
      return;
    }
  }
  const std::string path = map ? "state_store.url" : "state_store";
  RedisStore redis;
  parse_redis_url(v, map ? node["url"] : node, path, text, redis);
  redis.replica = default_replica_name();
  // Shadow pairs and the usage ledger stay on each replica (README, "Running several replicas").
  config.state_store = v.resolve_path("cutover-local.db");
  if (map) {
    if (node["password_env"]) {
      if (auto variable = v.string_at(node["password_env"], "state_store.password_env")) {
        if (!redis.password.empty()) {
          v.error(node["password_env"], "state_store.password_env",
                  "the URL already has a password; give it in one place only");
        } else if (auto password = v.read_environment(node["password_env"],
                                                      "state_store.password_env", *variable)) {
          redis.password = *password;
        }
      }
    }
    if (node["key_prefix"]) {
      redis.key_prefix = v.string_at(node["key_prefix"], "state_store.key_prefix").value_or("");
      const bool clean = !redis.key_prefix.empty() &&
                         redis.key_prefix.find_first_of("{}: \t\r\n") == std::string::npos;
      if (!clean) {
        v.error(node["key_prefix"], "state_store.key_prefix",
                "must be a non-empty word without braces, colons or spaces");
      }
    }
    auto duration = [&](const char* key, Milliseconds& target) {
      if (node[key]) {
        target = v.duration_at(node[key], std::string("state_store.") + key).value_or(target);
      }
    };
    duration("connect_timeout", redis.connect_timeout);
    duration("command_timeout", redis.command_timeout);
    duration("lease", redis.lease);
    duration("primary_only_after", redis.primary_only_after);
    if (redis.lease < Milliseconds(1'000)) {
      v.error(node["lease"], "state_store.lease",
              "must be at least 1s (it is renewed every second or so)");
    }
    if (node["replica"] && node["replica_env"]) {
      v.error(node["replica_env"], "state_store.replica_env", "give replica or replica_env, not both");
    }
    if (node["replica_env"]) {
      // A pod's name from the downward API, say: stable across restarts, unlike the pid.
      if (auto variable = v.string_at(node["replica_env"], "state_store.replica_env")) {
        if (auto name = v.read_environment(node["replica_env"], "state_store.replica_env", *variable)) {
          redis.replica = *name;
          if (redis.replica.empty() || redis.replica.find('|') != std::string::npos) {
            v.error(node["replica_env"], "state_store.replica_env",
                    "the variable " + *variable + " must hold a non-empty name without '|'");
          }
        }
      }
    }
    if (node["replica"]) {
      redis.replica = v.string_at(node["replica"], "state_store.replica").value_or(redis.replica);
      if (redis.replica.empty() || redis.replica.find('|') != std::string::npos) {
        v.error(node["replica"], "state_store.replica", "must be a non-empty name without '|'");
      }
    }
    if (node["local_file"]) {
      auto local = v.string_at(node["local_file"], "state_store.local_file").value_or("");
      config.state_store = local == ":memory:" || local.empty() ? local : v.resolve_path(local);
      if (local.empty()) v.error(node["local_file"], "state_store.local_file", "must not be empty");
    }
  }
  config.redis = std::move(redis);
}

}  // namespace

LoadResult load_from_string(const std::string& yaml, const EnvironmentLookup& environment,
                            const std::string& source_name, const std::string& base_directory,
                            Secrets secrets) {
  LoadResult result;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    result.errors.push_back(source_name + ":" + std::to_string(e.mark.line + 1) +
                            ": invalid YAML: " + e.msg);
    return result;
  }
  Validator v(source_name, environment, base_directory, secrets);
  auto config = std::make_shared<Config>();
  if (!root.IsMap()) {
    v.error(root, "(top level)", "must be a mapping");
    result.errors = v.take_errors();
    return result;
  }
  v.reject_unknown_keys(root, "",
                        {"listen", "workers", "limits", "drain_timeout", "access_log", "auth",
                         "admin", "providers", "routes", "migrations", "state_store", "metrics"});
  if (root["listen"]) parse_listen(v, root["listen"], config->listen, "listen");
  if (root["admin"]) parse_admin(v, root["admin"], *config);
  if (root["workers"]) {
    config->workers = v.integer_at<unsigned>(root["workers"], "workers", 0, 1024).value_or(0);
  }
  if (const auto& limits = root["limits"]) {
    if (v.expect_map(limits, "limits")) {
      v.reject_unknown_keys(limits, "limits",
                            {"max_body_bytes", "request_timeout", "keep_alive_timeout",
                             "max_response_bytes", "max_buffered_response_bytes",
                             "max_client_connections"});
      parse_response_limits(v, limits, *config);
      if (limits["max_body_bytes"]) {
        config->max_body_bytes =
            v.byte_size_at(limits["max_body_bytes"], "limits.max_body_bytes", 1024, 1ull << 32)
                .value_or(config->max_body_bytes);
      }
      if (limits["request_timeout"]) {
        config->request_timeout = v.duration_at(limits["request_timeout"], "limits.request_timeout")
                                      .value_or(config->request_timeout);
      }
      if (limits["keep_alive_timeout"]) {
        config->keep_alive_timeout =
            v.duration_at(limits["keep_alive_timeout"], "limits.keep_alive_timeout")
                .value_or(config->keep_alive_timeout);
      }
      if (limits["max_client_connections"]) {
        config->max_client_connections =
            v.integer_at<std::size_t>(limits["max_client_connections"],
                                      "limits.max_client_connections", 1, 1'000'000)
                .value_or(config->max_client_connections);
      }
    }
  }
  if (root["drain_timeout"]) {
    config->drain_timeout =
        v.duration_at(root["drain_timeout"], "drain_timeout").value_or(config->drain_timeout);
  }
  if (root["access_log"]) {
    config->access_log = v.string_at(root["access_log"], "access_log").value_or("-");
  }
  if (root["metrics"]) config->metrics = v.bool_at(root["metrics"], "metrics").value_or(true);
  if (root["auth"]) parse_auth(v, root["auth"], *config);
  // Unread secrets (Secrets::unresolved) are empty and cannot be compared.
  if (config->admin && !config->admin->token_sha256_hex.empty()) {
    for (const auto& key : config->client_keys) {
      if (key.sha256_hex == config->admin->token_sha256_hex) {
        v.error(root["admin"], "admin", "the admin token must differ from every client key");
      }
    }
  }
  if (config->client_keys.empty() && !config->allow_unauthenticated) {
    v.error(root["auth"] ? root["auth"] : root, "auth",
            "no client_keys configured; add keys or set allow_unauthenticated: true");
  }

  if (!root["providers"]) {
    v.error(root, "providers", "missing required key providers");
  } else if (v.expect_map(root["providers"], "providers")) {
    for (const auto& entry : root["providers"]) {
      Provider provider;
      parse_provider(v, entry.first.as<std::string>(""), entry.second, provider);
      config->providers.push_back(std::move(provider));
    }
  }
  if (!root["routes"]) {
    v.error(root, "routes", "missing required key routes");
  } else {
    parse_routes(v, root["routes"], *config);
  }
  if (root["state_store"]) parse_state_store(v, root["state_store"], *config);
  if (root["migrations"]) detail::parse_migrations(v, root["migrations"], *config);

  result.errors = v.take_errors();
  result.warnings = v.take_warnings();
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_from_file(const std::string& path, const EnvironmentLookup& environment,
                          Secrets secrets) {
  std::ifstream in(path);
  if (!in) {
    LoadResult result;
    result.errors.push_back(path + ": cannot open configuration file");
    return result;
  }
  std::stringstream content;
  content << in.rdbuf();
  auto directory = std::filesystem::path(path).parent_path().string();
  if (directory.empty()) directory = ".";
  return load_from_string(content.str(), environment, path, directory, secrets);
}

}  // namespace cutover::config
