#include "config/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "util/sha256.h"

namespace cutover::config {
namespace {

EnvironmentLookup fake_environment(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto found = values.find(name);
    if (found == values.end()) return std::nullopt;
    return found->second;
  };
}

const char* kValid = R"(
listen: 127.0.0.1:9000
auth:
  client_keys:
    - name: app
      key_env: CLIENT_KEY
providers:
  primary:
    base_url: https://api.example.com/v1/
    api_key_env: PRIMARY_KEY
    models:
      gpt-4: gpt-4.1
      deepseek-chat: deepseek-v3.2
    timeouts: {connect: 2s, first_byte: 30s, idle: 500ms, total: 2m}
    max_connections: 32
routes:
  - models: [gpt-4, deepseek-chat]
    provider: primary
)";

TEST(ConfigTest, ValidFileLoadsWithEveryField) {
  auto result = load_from_string(kValid, fake_environment({{"CLIENT_KEY", "ck"}, {"PRIMARY_KEY", "pk"}}));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  const auto& config = *result.config;
  EXPECT_EQ(config.listen.port, 9000);
  ASSERT_EQ(config.providers.size(), 1u);
  const auto& provider = config.providers.front();
  ASSERT_EQ(provider.endpoints.size(), 1u);
  const auto& endpoint = provider.endpoints.front();
  EXPECT_TRUE(endpoint.address.tls);
  EXPECT_EQ(endpoint.address.host, "api.example.com");
  EXPECT_EQ(endpoint.address.port, 443);
  EXPECT_EQ(endpoint.address.base_path, "/v1");
  EXPECT_EQ(endpoint.api_key, "pk");
  EXPECT_EQ(provider.models.at("gpt-4"), "gpt-4.1");
  EXPECT_EQ(provider.timeouts.connect, std::chrono::seconds(2));
  EXPECT_EQ(provider.timeouts.idle, std::chrono::milliseconds(500));
  EXPECT_EQ(provider.timeouts.total, std::chrono::minutes(2));
  EXPECT_EQ(provider.max_connections, 32u);
  EXPECT_EQ(config.routes.at("deepseek-chat").provider, "primary");
  EXPECT_EQ(config.client_keys.front().sha256_hex, util::sha256_hex("ck"));
}

}  // namespace
}  // namespace cutover::config

namespace cutover::config {
namespace {

std::vector<std::string> errors_of(const std::string& yaml,
                                   std::map<std::string, std::string> env = {{"K", "v"}}) {
  return load_from_string(yaml, fake_environment(std::move(env))).errors;
}

bool any_contains(const std::vector<std::string>& errors, std::string_view text) {
  for (const auto& error : errors) {
    if (error.find(text) != std::string::npos) return true;
  }
  return false;
}

const char* kMinimalTail = R"(
providers:
  p:
    base_url: http://127.0.0.1:1/v1
    api_key_env: K
    models: {m: pm}
routes:
  - models: [m]
    provider: p
)";

TEST(ConfigValidationTest, UnknownKeyIsNamedWithItsLine) {
  auto errors = errors_of(std::string("auth: {allow_unauthenticated: true}\nlisten_port: 80\n") + kMinimalTail);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find(":2: listen_port: unknown key"), std::string::npos) << errors[0];
}

TEST(ConfigValidationTest, MissingBaseUrlIsReported) {
  auto errors = errors_of(R"(
auth: {allow_unauthenticated: true}
providers:
  p:
    api_key_env: K
    models: {m: pm}
routes: [{models: [m], provider: p}]
)");
  EXPECT_TRUE(any_contains(errors, "providers.p: missing required key base_url"));
}

TEST(ConfigValidationTest, BadUrlsAreRejected) {
  for (const char* url : {"ftp://host/v1", "not a url", "http:///v1", "https://h/v1?x=1"}) {
    auto errors = errors_of(std::string(R"(
auth: {allow_unauthenticated: true}
providers:
  p:
    base_url: ")") + url + R"("
    api_key_env: K
    models: {m: pm}
routes: [{models: [m], provider: p}]
)");
    EXPECT_TRUE(any_contains(errors, "providers.p.base_url")) << url;
  }
}

TEST(ConfigValidationTest, UnsetKeyVariableIsReported) {
  auto errors = errors_of(std::string("auth: {allow_unauthenticated: true}\n") + kMinimalTail, {});
  EXPECT_TRUE(any_contains(errors, "environment variable K is not set"));
}

TEST(ConfigValidationTest, KeyWrittenInTheFileIsRefused) {
  auto errors = errors_of(R"(
auth: {allow_unauthenticated: true}
providers:
  p:
    base_url: http://h/v1
    api_key: sk-secret
    models: {m: pm}
routes: [{models: [m], provider: p}]
)");
  EXPECT_TRUE(any_contains(errors, "providers.p.api_key: unknown key"));
  EXPECT_TRUE(any_contains(errors, "needs exactly one of api_key_env"));
}

TEST(ConfigValidationTest, EveryMistakeIsReportedAtOnce) {
  auto errors = errors_of(R"(
workers: many
auth: {client_keys: [{name: a, sha256: xyz}]}
providers:
  p:
    base_url: gopher://h
    api_key_env: MISSING
    models: {m: pm}
    timeouts: {connect: soon}
routes:
  - models: [m, unknown-model]
    provider: p
  - models: [x]
    provider: nobody
)");
  EXPECT_TRUE(any_contains(errors, "workers: must be a whole number"));
  EXPECT_TRUE(any_contains(errors, "sha256: must be 64 hexadecimal characters"));
  EXPECT_TRUE(any_contains(errors, "must use http or https"));
  EXPECT_TRUE(any_contains(errors, "MISSING is not set"));
  EXPECT_TRUE(any_contains(errors, "'soon' is not a positive duration"));
  EXPECT_TRUE(any_contains(errors, "no model map entry for 'unknown-model'"));
  EXPECT_TRUE(any_contains(errors, "unknown provider 'nobody'"));
  EXPECT_GE(errors.size(), 7u);
}

TEST(ConfigValidationTest, NoClientKeysNeedsExplicitOptIn) {
  auto errors = errors_of(kMinimalTail);
  EXPECT_TRUE(any_contains(errors, "no client_keys configured"));
}

TEST(ConfigValidationTest, ModelRoutedTwiceIsRejected) {
  auto errors = errors_of(R"(
auth: {allow_unauthenticated: true}
providers:
  p: {base_url: "http://h/v1", api_key_env: K, models: {m: pm}}
routes:
  - {models: [m], provider: p}
  - {models: m, provider: p}
)");
  EXPECT_TRUE(any_contains(errors, "model 'm' is routed twice"));
}

TEST(ConfigValidationTest, InvalidYamlGivesLine) {
  auto errors = errors_of("providers: [\n  unclosed: {\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("invalid YAML"), std::string::npos);
}

TEST(ConfigValidationTest, ListenAcceptsHostPortAndIpv6) {
  auto result = load_from_string(std::string("listen: \"[::1]:8443\"\nauth: {allow_unauthenticated: true}\n") + kMinimalTail,
                                 fake_environment({{"K", "v"}}));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  EXPECT_EQ(result.config->listen.address, "::1");
  EXPECT_EQ(result.config->listen.port, 8443);
}

TEST(ConfigValidationTest, KeyFileIsReadRelativeToTheConfig) {
  const auto directory = std::filesystem::temp_directory_path() / "cutover-config-test";
  std::filesystem::create_directories(directory);
  {
    std::ofstream(directory / "key.txt") << "sk-from-file\n";
  }
  auto result = load_from_string(R"(
auth: {allow_unauthenticated: true}
providers:
  p: {base_url: "http://h/v1", api_key_file: key.txt, models: {m: pm}}
routes: [{models: [m], provider: p}]
)",
                                 fake_environment({}), "test.yaml", directory.string());
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  EXPECT_EQ(result.config->providers[0].endpoints[0].api_key, "sk-from-file");
  EXPECT_EQ(result.config->providers[0].endpoints[0].api_key_source, "file:key.txt");
}

TEST(ConfigValidationTest, KeysAndVersionsThatCannotBeHeaderValuesAreRefused) {
  const auto directory = std::filesystem::temp_directory_path() / "cutover-config-test";
  std::filesystem::create_directories(directory);
  {
    std::ofstream(directory / "two-lines.txt") << "sk-first-line\nX-Injected: 1\n";
  }
  const std::string secret = "sk-env\r\nX-Injected: 1";
  auto result = load_from_string(R"(
auth: {allow_unauthenticated: true}
providers:
  p: {base_url: "http://h/v1", api_key_file: two-lines.txt, models: {m: pm}}
  q: {base_url: "http://h/v1", api_key_env: KEY, models: {n: qn}}
  a: {base_url: "http://h/v1", dialect: anthropic, no_api_key: true, models: {o: ao},
      anthropic_version: "2023-06-01\nX-Injected: 1"}
routes: [{models: [m], provider: p}, {models: [n], provider: q}, {models: [o], provider: a}]
)",
                                 fake_environment({{"KEY", secret}}), "test.yaml",
                                 directory.string());
  EXPECT_FALSE(result.config);
  EXPECT_TRUE(any_contains(result.errors, "two-lines.txt' holds a control character"));
  EXPECT_TRUE(any_contains(result.errors, "variable KEY holds a control character"));
  EXPECT_TRUE(any_contains(result.errors, "anthropic_version"));
  for (const auto& error : result.errors) {
    EXPECT_EQ(error.find("sk-"), std::string::npos) << "a key quoted in: " << error;
  }

  // A trailing line break in a key file is trimmed, and a tab is a header value's own.
  {
    std::ofstream(directory / "tabbed.txt") << "sk-with\ttab\r\n";
  }
  auto tabbed = load_from_string(R"(
auth: {allow_unauthenticated: true}
providers:
  p: {base_url: "http://h/v1", api_key_file: tabbed.txt, models: {m: pm}}
routes: [{models: [m], provider: p}]
)",
                                 fake_environment({}), "test.yaml", directory.string());
  ASSERT_TRUE(tabbed.errors.empty()) << tabbed.errors.front();
  EXPECT_EQ(tabbed.config->providers[0].endpoints[0].api_key, "sk-with\ttab");
}

TEST(ConfigValidationTest, AdminListenerNeedsItsOwnToken) {
  const auto tail = std::string(kMinimalTail);
  auto same = load_from_string("auth: {client_keys: [{name: a, key_env: K}]}\n"
                               "admin: {listen: 127.0.0.1:9191, token_env: K}\n" + tail,
                               fake_environment({{"K", "shared-secret-0123456789"}}));
  EXPECT_TRUE(any_contains(same.errors, "the admin token must differ from every client key"));
  auto missing = errors_of("auth: {allow_unauthenticated: true}\nadmin: {listen: 127.0.0.1:9191}\n" + tail);
  EXPECT_TRUE(any_contains(missing, "needs exactly one of token_env"));
  auto ok = load_from_string("auth: {allow_unauthenticated: true}\n"
                             "admin: {listen: 127.0.0.1:9191, token_env: T}\n" + tail,
                             fake_environment({{"K", "v"}, {"T", "admin-token-0123456789"}}));
  ASSERT_TRUE(ok.errors.empty()) << ok.errors.front();
  EXPECT_EQ(ok.config->admin->listen.port, 9191);
  EXPECT_EQ(ok.config->admin->token_sha256_hex, util::sha256_hex("admin-token-0123456789"));
}

TEST(ConfigValidationTest, ShortAdminTokensAreRefused) {
  const auto yaml = "auth: {allow_unauthenticated: true}\n"
                    "admin: {listen: 127.0.0.1:9191, token_env: T}\n" + std::string(kMinimalTail);
  auto fifteen = load_from_string(yaml, fake_environment({{"K", "v"}, {"T", "admin-token-123"}}));
  EXPECT_FALSE(fifteen.config);
  EXPECT_TRUE(any_contains(fifteen.errors, "the admin token in T has 15 characters; it needs at "
                                           "least 16"));
  auto sixteen = load_from_string(yaml, fake_environment({{"K", "v"}, {"T", "admin-token-1234"}}));
  EXPECT_TRUE(sixteen.errors.empty()) << sixteen.errors.front();
}

TEST(ConfigValidationTest, AdminListenerOnANonLoopbackAddressIsAWarningOnly) {
  const auto tail = "auth: {allow_unauthenticated: true}\n" + std::string(kMinimalTail);
  const auto environment = fake_environment({{"K", "v"}, {"T", "admin-token-0123456789"}});
  for (const char* listen : {"0.0.0.0:9191", "\"[::]:9191\"", "192.0.2.10:9191"}) {
    auto open = load_from_string(
        std::string("admin: {listen: ") + listen + ", token_env: T}\n" + tail, environment);
    EXPECT_TRUE(open.errors.empty()) << listen << ": " << open.errors.front();
    EXPECT_TRUE(any_contains(open.warnings, "is not a loopback address")) << listen;
  }
  for (const char* listen : {"127.0.0.1:9191", "\"[::1]:9191\""}) {
    auto loopback = load_from_string(
        std::string("admin: {listen: ") + listen + ", token_env: T}\n" + tail, environment);
    EXPECT_TRUE(loopback.errors.empty()) << listen << ": " << loopback.errors.front();
    EXPECT_TRUE(loopback.warnings.empty()) << listen << ": " << loopback.warnings.front();
  }
}

TEST(ConfigValidationTest, UnresolvedSecretsLoadWithoutTheirVariablesOrFiles) {
  const std::string yaml = R"(
auth: {client_keys: [{name: app, key_env: UNSET_CLIENT_KEY}, {name: ci, key_env: UNSET_CI_KEY}]}
admin: {listen: 127.0.0.1:9191, token_env: UNSET_ADMIN_TOKEN}
state_store: /var/lib/cutover/state.db
providers:
  p: {base_url: "http://h/v1", api_key_env: UNSET_PROVIDER_KEY, models: {m: pm}}
  q: {base_url: "http://h/v1", api_key_file: /nonexistent/key.txt, models: {m: qm}}
routes: [{models: [m], provider: p}]
)";
  auto required = load_from_string(yaml, fake_environment({}));
  EXPECT_FALSE(required.config);
  EXPECT_TRUE(any_contains(required.errors, "UNSET_ADMIN_TOKEN is not set"));

  auto offline = load_from_string(yaml, fake_environment({}), "report.yaml", ".",
                                  Secrets::unresolved);
  ASSERT_TRUE(offline.errors.empty()) << offline.errors.front();
  EXPECT_EQ(offline.config->state_store, "/var/lib/cutover/state.db");
  ASSERT_EQ(offline.config->client_keys.size(), 2u);
  EXPECT_EQ(offline.config->client_keys[0].sha256_hex, "");
  EXPECT_EQ(offline.config->admin->token_sha256_hex, "");
  EXPECT_EQ(offline.config->providers[0].endpoints[0].api_key, "");
  EXPECT_EQ(offline.config->providers[0].endpoints[0].api_key_source, "env:UNSET_PROVIDER_KEY");
}

TEST(ConfigValidationTest, ResilienceSettingsAreParsedAndChecked) {
  auto result = load_from_string(R"(
auth: {allow_unauthenticated: true}
providers:
  p:
    models: {m: pm}
    endpoints:
      - {base_url: "http://a/v1", api_key_env: K, weight: 3}
      - {base_url: "http://b/v1", api_key_env: K}
    retry: {max_attempts: 2, retry_on: [connect_error, 429, 503], backoff_base: 10ms, backoff_max: 2s}
    retry_budget: {ratio: 0.1, min_retries_per_second: 2, window: 30s}
    breaker: {failure_rate: 0.25, window: time, window_size: 60, minimum_calls: 10, open_duration: 5s, half_open_probes: 1}
  q: {base_url: "http://q/v1", api_key_env: K, models: {m: qm}}
routes:
  - {models: [m], provider: p, fallback: [q], retry: {max_attempts: 1}}
)", fake_environment({{"K", "v"}}));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  const auto& p = *result.config->find_provider("p");
  ASSERT_EQ(p.endpoints.size(), 2u);
  EXPECT_EQ(p.endpoints[0].weight, 3u);
  EXPECT_EQ(p.retry.max_attempts, 2u);
  EXPECT_TRUE(p.retry.retry_rate_limited);
  EXPECT_FALSE(p.retry.retry_reset);
  EXPECT_EQ(p.retry.retry_statuses, (std::set<unsigned>{503}));
  EXPECT_EQ(p.retry_budget.window, std::chrono::seconds(30));
  EXPECT_EQ(p.breaker.window, resilience::BreakerSettings::Window::time);
  EXPECT_EQ(p.breaker.half_open_permits, 1u);
  const auto& route = result.config->routes.at("m");
  EXPECT_EQ(route.fallback, (std::vector<std::string>{"q"}));
  ASSERT_TRUE(route.retry);
  EXPECT_EQ(route.retry->max_attempts, 1u);

  auto errors = errors_of(R"(
auth: {allow_unauthenticated: true}
providers:
  p:
    base_url: "http://a/v1"
    api_key_env: K
    models: {m: pm}
    retry: {retry_on: [404]}
    breaker: {window: sliding, open_duration: 10s, max_open_duration: 1s}
routes:
  - {models: [m], provider: p, fallback: [p, ghost]}
)");
  EXPECT_TRUE(any_contains(errors, "'404' is not retryable"));
  EXPECT_TRUE(any_contains(errors, "must be count or time"));
  EXPECT_TRUE(any_contains(errors, "max_open_duration must not be shorter"));
  EXPECT_TRUE(any_contains(errors, "appears twice in the chain"));
  EXPECT_TRUE(any_contains(errors, "unknown provider 'ghost'"));
}

TEST(ConfigValidationTest, SizesTakeBinaryAndDecimalUnits) {
  auto result = load_from_string(R"(
auth: {allow_unauthenticated: true}
limits: {max_body_bytes: 20MiB, max_response_bytes: 5MB, max_buffered_response_bytes: 1Gi}
providers:
  p: {base_url: "http://a/v1", api_key_env: K, models: {m: pm, n: pn, o: po}}
routes:
  - {models: [m], provider: p, cache: {max_bytes: 256MiB}}
  - {models: [n], provider: p, cache: {max_bytes: 65536}}
  - {models: [o], provider: p, cache: {max_bytes: 64kB}}
)", fake_environment({{"K", "v"}}));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  EXPECT_EQ(result.config->max_body_bytes, 20u << 20);
  EXPECT_EQ(result.config->max_response_bytes, 5'000'000u);
  EXPECT_EQ(result.config->max_buffered_response_bytes, 1u << 30);
  EXPECT_EQ(result.config->routes.at("m").cache->max_bytes, 256u << 20);
  EXPECT_EQ(result.config->routes.at("n").cache->max_bytes, 65536u);
  EXPECT_EQ(result.config->routes.at("o").cache->max_bytes, 64'000u);

  auto errors = errors_of(R"(
auth: {allow_unauthenticated: true}
limits: {max_body_bytes: 64 MiB, max_response_bytes: 1KiB}
providers:
  p: {base_url: "http://a/v1", api_key_env: K, models: {m: pm, n: pn, o: po, q: pq}}
routes:
  - {models: [m], provider: p, cache: {max_bytes: 256mb}}
  - {models: [n], provider: p, cache: {max_bytes: MiB}}
  - {models: [q], provider: p, cache: {max_bytes: 64KB}}
  - {models: [o], provider: p, cache: {max_bytes: 100000Gi}}
)");
  EXPECT_TRUE(any_contains(errors, "limits.max_body_bytes: '64 MiB' is not a size"))
      << errors.size();
  EXPECT_TRUE(any_contains(errors, "'256mb' is not a size such as 67108864, 64MiB or 64MB"));
  EXPECT_TRUE(any_contains(errors, "'MiB' is not a size"));
  EXPECT_TRUE(any_contains(errors, "'64KB' is not a size")) << "1000 or 1024: refused, not guessed";
  EXPECT_TRUE(any_contains(errors, "max_bytes: must be between 1024 and 68719476736 bytes"));
  EXPECT_FALSE(any_contains(errors, "max_response_bytes")) << "1KiB is the smallest allowed";
}

}  // namespace
}  // namespace cutover::config

namespace cutover::config {
namespace {

TEST(ConfigDialectTest, AProviderDeclaresItsDialect) {
  auto result = load_from_string(R"(
auth: {allow_unauthenticated: true}
providers:
  claude:
    dialect: anthropic
    anthropic_version: "2023-06-01"
    default_max_tokens: 1024
    base_url: https://api.anthropic.example/v1
    api_key_env: K
    models: {claude-sonnet-4-5: claude-sonnet-4-5-20250929}
    prices: {claude-sonnet-4-5-20250929: {input: 3, cached_input: 0.3, cache_write: 3.75, output: 15}}
  relay:
    base_url: https://relay.example/v1
    api_key_env: K
    models: {claude-sonnet-4-5: claude-sonnet-4.5}
routes:
  - models: [claude-sonnet-4-5]
    provider: claude
)", [](const std::string&) -> std::optional<std::string> { return "v"; });
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  auto named = [&](std::string_view name) -> const Provider& {
    for (const auto& provider : result.config->providers) {
      if (provider.name == name) return provider;
    }
    throw std::out_of_range(std::string(name));
  };
  const auto& claude = named("claude");
  const auto& relay = named("relay");
  EXPECT_EQ(claude.dialect, Dialect::anthropic);
  EXPECT_EQ(claude.default_max_tokens, 1024);
  EXPECT_EQ(relay.dialect, Dialect::openai);
  EXPECT_EQ(relay.anthropic_version, "2023-06-01");
  const auto* price = claude.price_for("claude-sonnet-4-5-20250929");
  ASSERT_NE(price, nullptr);
  EXPECT_DOUBLE_EQ(price->cache_write_per_million, 3.75);
}

TEST(ConfigDialectTest, AnUnknownDialectIsNamed) {
  auto errors = errors_of(R"(
auth: {allow_unauthenticated: true}
providers:
  p:
    dialect: gemini
    base_url: http://127.0.0.1:1/v1
    api_key_env: K
    models: {m: pm}
routes:
  - models: [m]
    provider: p
)");
  EXPECT_TRUE(any_contains(errors, "dialect: must be openai (chat completions) or anthropic"))
      << (errors.empty() ? "" : errors.front());
}

}  // namespace
}  // namespace cutover::config
