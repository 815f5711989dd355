// Gateway configuration: the YAML file turned into immutable, validated structs.
//
// A Config is built once per load (startup or SIGHUP) and never mutated afterwards; requests in
// flight keep the snapshot they started with through a shared_ptr<const Config>.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/cache_settings.h"
#include "resilience/circuit_breaker.h"
#include "resilience/retry_budget.h"
#include "resilience/retry_policy.h"

namespace cutover::config {

using Milliseconds = std::chrono::milliseconds;

struct UpstreamTimeouts {
  Milliseconds connect{5'000};
  // From the request's last byte sent to the response's first byte (headers).
  Milliseconds first_byte{60'000};
  // Longest silence between two chunks of a response body (streams included).
  Milliseconds idle{30'000};
  // Whole exchange, first connect attempt to last body byte.
  Milliseconds total{600'000};
};

// Where a provider lives, split out of its base URL.
struct Endpoint {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  // Path prefix every API route is appended to, without a trailing slash ("/v1").
  std::string base_path;
};

// One place a provider answers (a region, an account): its own URL and key, and its own
// connection pool and circuit breaker at run time.
struct ProviderEndpoint {
  std::string base_url;
  Endpoint address;
  // The resolved secret. Never logged; `api_key_source` names where it came from.
  std::string api_key;
  std::string api_key_source;
  unsigned weight = 1;
};

// What a provider charges for one model, per million tokens.
struct Price {
  double input_per_million = 0;
  double cached_input_per_million = 0;
  // Tokens written to a provider's prompt cache (Anthropic charges them apart, above input).
  double cache_write_per_million = 0;
  double output_per_million = 0;
  std::string currency = "USD";
};

// The wire format a provider speaks: OpenAI's chat completions (with completions and
// embeddings), or Anthropic's Messages natively.
enum class Dialect { openai, anthropic };

struct Provider {
  std::string name;
  Dialect dialect = Dialect::openai;
  // Sent as anthropic-version to an Anthropic provider unless the client sent its own.
  std::string anthropic_version = "2023-06-01";
  // Anthropic requires max_tokens; a request translated from a client that set none gets this.
  std::int64_t default_max_tokens = 4096;
  // At least one; `base_url` + `api_key_*` at the provider level is the one-endpoint shorthand.
  std::vector<ProviderEndpoint> endpoints;
  std::optional<std::string> ca_file;
  // Client-facing model name -> the provider's own identifier.
  std::map<std::string, std::string> models;
  UpstreamTimeouts timeouts;
  // Upper bound on open connections to each endpoint across all workers.
  std::size_t max_connections = 256;
  // Ask for usage in streams (stream_options.include_usage) when the client did not.
  bool stream_usage = true;
  resilience::RetryPolicy retry;
  resilience::RetryBudgetSettings retry_budget;
  resilience::BreakerSettings breaker;
  // Keyed by the provider's own model identifier (the right-hand side of `models`).
  std::map<std::string, Price, std::less<>> prices;

  const Price* price_for(std::string_view provider_model) const;
};

struct Route {
  std::string model;
  std::string provider;
  // Providers that serve the request, in order, when the one before failed, is circuit-open or
  // out of retry budget, and nothing has been sent to the client yet.
  std::vector<std::string> fallback;
  // Replaces the providers' own retry policy for this route when set.
  std::optional<resilience::RetryPolicy> retry;
  // Answers to deterministic requests kept and served again (see cache/response_cache.h).
  std::optional<cache::CacheSettings> cache;
};

struct ClientKey {
  std::string name;
  // Lower-case hex SHA-256 of the key; keys from environment variables are hashed at load.
  std::string sha256_hex;
};

struct Listener {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;
};

// The operators' listener: separate from client traffic, loopback by default, and
// authenticated by its own token, never by a client key.
struct Admin {
  Listener listen{"127.0.0.1", 9090};
  std::string token_sha256_hex;
};

// Where a request's sticky key comes from: the same key always lands on the same side.
struct StickyKey {
  enum class Source { header, user_field, client_key, request_id };
  Source source = Source::header;
  std::string header = "x-user-id";  // for Source::header
};

// One step of the canary ladder: the candidate's share, held at least `min_duration` and until
// the candidate has served `min_requests` in the step.
struct Stage {
  double weight = 0;
  Milliseconds min_duration{60'000};
  std::uint64_t min_requests = 100;
};

// A latency gate on one quantile of one measure, against an absolute limit, a ratio to the
// primary over the same window, or both.
struct LatencyGate {
  enum class Measure { total, time_to_first_token, time_per_output_token };
  Measure measure = Measure::total;
  double quantile = 0.95;
  std::optional<Milliseconds> max;
  std::optional<double> max_ratio;
};

struct Gates {
  // Candidate requests that failed as the client saw them, or that fell back to the primary.
  double max_error_rate = 0.01;
  // The candidate's own attempts, retries included.
  double max_attempt_error_rate = 0.05;
  // The candidate's attempts the provider answered 429, fallen back or not.
  double max_rate_limited_share = 0.05;
  // The most of the candidate's reported quota (per minute) the next stage's projected traffic
  // may need; a stage that would need more holds at its weight.
  double max_quota_share = 0.8;
  // Two-sided level of the bounds: 0.99 keeps repeated looks from rolling back by chance.
  double confidence = 0.99;
  std::vector<LatencyGate> latency;
  std::size_t min_latency_samples = 59;
  // Mean agreement score of shadow pairs; unset: not gated.
  std::optional<double> min_agreement;
  std::size_t min_shadow_pairs = 50;
  // Dwells without enough data before the migration pauses itself.
  unsigned inconclusive_dwells_before_pause = 3;
};

struct ShadowSettings {
  double sample_rate = 0;
  std::size_t max_in_flight = 32;
  // Spend caps per rolling hour; 0 means no cap.
  std::uint64_t max_tokens_per_hour = 0;
  double max_cost_per_hour = 0;
  Milliseconds timeout{60'000};
  // Store prompts and outputs with each pair; otherwise hashes and scores only.
  bool store_text = false;
  std::size_t retention = 10'000;
  // The shadow phase before any live traffic moves: held at least this long and until
  // `min_pairs` pairs are compared.
  Milliseconds min_duration{0};
  std::size_t min_pairs = 50;
  // Keep mirroring primary-served requests while the canary runs (paired samples for gates).
  bool during_canary = true;
};

struct RollbackPlan {
  // Weights to walk down through after an operator's rollback (the last reaches 0); empty
  // means straight to 0.
  std::vector<double> steps;
  Milliseconds step_duration{30'000};
  // Gate breaches go to 0 at once unless this is set.
  bool gradual_on_breach = false;
};

struct Webhook {
  std::string url;
  Milliseconds timeout{5'000};
};

struct Migration {
  std::string name;
  std::vector<std::string> models;
  std::string primary;
  std::string candidate;
  StickyKey sticky;
  // For requests that lack the sticky key.
  StickyKey sticky_fallback{StickyKey::Source::request_id, ""};
  std::string salt;
  ShadowSettings shadow;
  std::vector<Stage> stages;
  Gates gates;
  RollbackPlan rollback;
  std::vector<Webhook> webhooks;
  Milliseconds evaluation_interval{250};
  // Digest of what defines the run (candidate endpoints and models, stages); a change
  // restarts the migration from the primary.
  std::string fingerprint;
};

// A Redis server shared by several replicas, which then hold one record and journal per
// migration and elect one leader to judge the gates (README, "Running several replicas").
struct RedisStore {
  std::string host;
  std::uint16_t port = 6379;
  int database = 0;
  std::string user;      // empty: AUTH with the password alone (or no AUTH without one)
  std::string password;  // from the URL or from `password_env`
  // Every key starts with "{<key_prefix>}:", so gateways and test runs can share one Redis and
  // every script touches one cluster slot.
  std::string key_prefix = "cutover";
  Milliseconds connect_timeout{500};
  Milliseconds command_timeout{250};
  // How long a leader's lease lasts without a renewal; it is renewed about every second.
  Milliseconds lease{3'000};
  // How long a replica that cannot reach Redis keeps routing by the last weight it knew before it
  // sends every migrated request to the primary.
  Milliseconds primary_only_after{60'000};
  // Names this replica in the leader key; defaults to "<hostname>:<pid>".
  std::string replica;
  // The URL as written, password removed, for logs and `ctl get`.
  std::string display_url;
};

struct Config {
  Listener listen;
  // Absent when the file has no admin section.
  std::optional<Admin> admin;
  // Event-loop threads; 0 means one per core.
  unsigned workers = 0;
  std::size_t max_body_bytes = 10 * 1024 * 1024;
  // A plain answer is read whole before it is normalized: each is capped, and so is what all
  // answers being read at once may hold together (refused with 503 past it, never grown).
  std::size_t max_response_bytes = 64 * 1024 * 1024;
  std::size_t max_buffered_response_bytes = 256 * 1024 * 1024;
  // A request whose header and body have not fully arrived in time gets 408.
  Milliseconds request_timeout{30'000};
  Milliseconds keep_alive_timeout{75'000};
  // How long SIGTERM waits for in-flight requests (streams included) before closing them.
  Milliseconds drain_timeout{30'000};
  // "-" is standard output, "off" disables the access log, anything else is a file path.
  std::string access_log = "-";
  // Prometheus metrics at /metrics on the admin listener; off saves their small cost.
  bool metrics = true;
  bool allow_unauthenticated = false;
  std::vector<ClientKey> client_keys;
  std::vector<Provider> providers;
  // Keyed by client-facing model name.
  std::map<std::string, Route> routes;
  std::vector<Migration> migrations;
  // SQLite file holding migration state, shadow pairs and usage; ":memory:" keeps nothing.
  // With `redis` set, only shadow pairs and usage stay in this local file (`local_file`).
  std::string state_store = "cutover-state.db";
  // Set when `state_store` is a redis:// URL (or a map with one).
  std::optional<RedisStore> redis;
  // Set when the file names a state store: usage is then recorded there even without migrations.
  bool state_store_configured = false;

  // Client connections open at once across all workers (limits.max_client_connections); past
  // it a new connection is answered 503 and closed.
  std::size_t max_client_connections = 10'000;

  const Provider* find_provider(std::string_view name) const;
  // Whether serving opens the state store file: it is named or migrations need it.
  bool uses_state_store_file() const {
    return (state_store_configured || !migrations.empty()) && state_store != ":memory:";
  }
};

// Whether loading reads the secrets a file names (keys from variables and files, the admin token).
enum class Secrets {
  // Every secret is read; a missing one is an error. For anything that serves traffic.
  required,
  // None is read, none may be missing: keys and the admin token stay empty and the checks on
  // them are skipped. For offline tools such as `cutover report`, which need only the state
  // store's path and the prices; a Config loaded this way must never serve.
  unresolved,
};

// Reads environment variables; injectable so tests do not touch the process environment.
using EnvironmentLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvironmentLookup process_environment();

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<std::string> errors;       // one message per mistake, each naming where it is
  // Allowed but risky choices (an admin listener reachable from other machines), one message
  // each; they never stop a load.
  std::vector<std::string> warnings;
};

LoadResult load_from_string(const std::string& yaml, const EnvironmentLookup& environment,
                            const std::string& source_name = "<config>",
                            const std::string& base_directory = ".",
                            Secrets secrets = Secrets::required);
LoadResult load_from_file(const std::string& path, const EnvironmentLookup& environment,
                          Secrets secrets = Secrets::required);

}  // namespace cutover::config
