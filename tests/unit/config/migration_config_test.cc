#include <gtest/gtest.h>

#include "accounting/cost.h"
#include "config/config.h"

namespace cutover::config {
namespace {

std::optional<std::string> environment(const std::string& name) {
  if (name == "CLIENT_KEY" || name == "OPENAI_KEY" || name == "RELAY_KEY") return "k-" + name;
  return std::nullopt;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

std::string yaml_with(const std::string& migration, const std::string& relay_extra = "") {
  return R"(
auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}
state_store: ":memory:"
providers:
  openai:
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_KEY
    models: {gpt-4o: gpt-4o-2024-08-06}
    prices: {gpt-4o-2024-08-06: {input: 2.5, cached_input: 1.25, output: 10}}
  relay:
    base_url: https://relay.example.com/v1
    api_key_env: RELAY_KEY
    models: {gpt-4o: relay-4o}
)" + relay_extra + R"(
routes:
  - {models: [gpt-4o], provider: openai}
migrations:
)" + migration;
}

constexpr char kFullMigration[] = R"(
  - name: openai-to-relay
    models: [gpt-4o]
    primary: openai
    candidate: relay
    sticky_key: header:X-User-Id
    sticky_fallback: client_key
    shadow: {sample_rate: 10%, max_in_flight: 8, max_tokens_per_hour: 100000, timeout: 20s, store_text: true, retention: 500, min_duration: 5m, min_pairs: 80}
    stages:
      - {weight: 5%, min_duration: 10m, min_requests: 200}
      - {weight: 0.25, min_duration: 10m}
      - {weight: 100%}
    gates:
      max_error_rate: 1%
      max_attempt_error_rate: 0.05
      confidence: 0.99
      latency:
        - {measure: total, quantile: p95, max_ratio: 1.3}
        - {measure: ttft, quantile: p99, max: 2s}
      min_agreement: 0.8
    rollback: {steps: [25%, 10%], step_duration: 1m}
    webhooks: [https://hooks.example.com/T000/B000, {url: "http://127.0.0.1:9/x", timeout: 2s}]
    evaluation_interval: 200ms
)";

TEST(MigrationConfigTest, EveryKeyLoads) {
  auto result = load_from_string(yaml_with(kFullMigration), environment);
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  const auto& m = result.config->migrations.at(0);
  EXPECT_EQ(m.name, "openai-to-relay");
  EXPECT_EQ(m.sticky.source, StickyKey::Source::header);
  EXPECT_EQ(m.sticky.header, "x-user-id");
  EXPECT_EQ(m.sticky_fallback.source, StickyKey::Source::client_key);
  EXPECT_EQ(m.salt, "openai-to-relay");
  EXPECT_DOUBLE_EQ(m.shadow.sample_rate, 0.10);
  EXPECT_EQ(m.shadow.max_in_flight, 8u);
  EXPECT_EQ(m.shadow.min_pairs, 80u);
  EXPECT_TRUE(m.shadow.store_text);
  ASSERT_EQ(m.stages.size(), 3u);
  EXPECT_DOUBLE_EQ(m.stages[0].weight, 0.05);
  EXPECT_EQ(m.stages[0].min_requests, 200u);
  EXPECT_DOUBLE_EQ(m.stages[1].weight, 0.25);
  EXPECT_EQ(m.stages[1].min_requests, 100u);  // the default
  EXPECT_DOUBLE_EQ(m.gates.max_error_rate, 0.01);
  ASSERT_EQ(m.gates.latency.size(), 2u);
  EXPECT_EQ(m.gates.latency[1].measure, LatencyGate::Measure::time_to_first_token);
  EXPECT_DOUBLE_EQ(m.gates.latency[1].quantile, 0.99);
  EXPECT_EQ(m.gates.latency[1].max, std::chrono::milliseconds(2000));
  EXPECT_EQ(m.gates.min_agreement, 0.8);
  EXPECT_EQ(m.rollback.steps, (std::vector<double>{0.25, 0.10, 0.0}));
  ASSERT_EQ(m.webhooks.size(), 2u);
  EXPECT_EQ(m.webhooks[1].timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(m.evaluation_interval, std::chrono::milliseconds(200));
  EXPECT_EQ(m.fingerprint.size(), 16u);
}

TEST(MigrationConfigTest, DefaultsGateLatencyAgainstThePrimary) {
  auto result = load_from_string(yaml_with(R"(
  - {name: m, models: [gpt-4o], primary: openai, candidate: relay, stages: [{weight: 50%}]}
)"), environment);
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  const auto& m = result.config->migrations.at(0);
  ASSERT_EQ(m.gates.latency.size(), 1u);
  EXPECT_EQ(m.gates.latency[0].max_ratio, 1.5);
  EXPECT_EQ(m.sticky.header, "x-user-id");
  EXPECT_EQ(m.sticky_fallback.source, StickyKey::Source::request_id);
  EXPECT_EQ(m.evaluation_interval, std::chrono::milliseconds(250));
}

TEST(MigrationConfigTest, QuotaAndRateLimitGatesLoadWithDefaults) {
  auto single = load_from_string(yaml_with(R"(
  - {name: n, models: [gpt-4o], primary: openai, candidate: relay, stages: [{weight: 50%}],
     gates: {max_quota_share: 60%, max_rate_limited_share: 0.02}}
)"), environment);
  ASSERT_TRUE(single.errors.empty()) << single.errors.front();
  const auto& gates = single.config->migrations.at(0).gates;
  EXPECT_DOUBLE_EQ(gates.max_quota_share, 0.60);
  EXPECT_DOUBLE_EQ(gates.max_rate_limited_share, 0.02);
  const Gates defaults;
  EXPECT_DOUBLE_EQ(defaults.max_quota_share, 0.80);
  EXPECT_DOUBLE_EQ(defaults.max_rate_limited_share, 0.05);
}

TEST(MigrationConfigTest, AZeroQuotaShareIsRefused) {
  auto result = load_from_string(yaml_with(R"(
  - {name: n, models: [gpt-4o], primary: openai, candidate: relay, stages: [{weight: 50%}],
     gates: {max_quota_share: 0%, max_rate_limited_share: 150%}}
)"), environment);
  std::string all;
  for (const auto& error : result.errors) all += error + "\n";
  EXPECT_NE(all.find("max_quota_share: must be above 0%"), std::string::npos) << all;
  EXPECT_NE(all.find("max_rate_limited_share"), std::string::npos) << all;
}

TEST(MigrationConfigTest, MistakesAreReportedEachWithWhere) {
  auto result = load_from_string(yaml_with(R"(
  - name: bad
    models: [gpt-4o, unknown-model]
    primary: relay
    candidate: relay
    sticky_key: cookie
    stages:
      - {weight: 50%}
      - {weight: 20%}
      - {weight: 120%}
    gates:
      latency: [{measure: total, quantile: p95}]
    rollback: {steps: [10%, 30%]}
    webhooks: [ftp://example.com]
    evaluation_interval: 5s
)"), environment);
  std::string all;
  for (const auto& error : result.errors) all += error + "\n";
  for (const char* expected :
       {"must differ from the primary", "model 'unknown-model' has no route",
        "is routed to 'openai', not to the primary 'relay'", "must be header:NAME, user, client_key or request_id",
        "stage weights must increase", "must be a percentage from 0% to 100%",
        "needs max (a duration), max_ratio (to the primary) or both", "rollback weights must decrease",
        "url must start with http:// or https://", "must be at most 1s"}) {
    EXPECT_NE(all.find(expected), std::string::npos) << "missing: " << expected << "\n" << all;
  }
  EXPECT_NE(all.find("<config>:"), std::string::npos);
}

TEST(MigrationConfigTest, CandidateWithoutTheModelIsRefused) {
  auto result = load_from_string(replaced(yaml_with(R"(
  - {name: m, models: [gpt-4o], primary: openai, candidate: relay, stages: [{weight: 50%}]}
)"), "models: {gpt-4o: relay-4o}", "models: {other: relay-4o}"), environment);
  ASSERT_FALSE(result.errors.empty());
  EXPECT_NE(result.errors.front().find("candidate 'relay' has no model map entry for 'gpt-4o'"),
            std::string::npos)
      << result.errors.front();
}

TEST(MigrationConfigTest, FingerprintFollowsTheCandidateNotItsKey) {
  const std::string migration = R"(
  - {name: m, models: [gpt-4o], primary: openai, candidate: relay, stages: [{weight: 50%}]}
)";
  auto base = load_from_string(yaml_with(migration), environment);
  auto other_key = load_from_string(yaml_with(migration), [](const std::string& name) {
    auto value = environment(name);
    return value ? std::optional<std::string>(*value + "-rotated") : std::nullopt;
  });
  auto other_url = load_from_string(replaced(yaml_with(migration), "relay.example.com", "relay2.example.com"),
                                    environment);
  ASSERT_TRUE(base.config && other_key.config && other_url.config);
  EXPECT_EQ(base.config->migrations[0].fingerprint, other_key.config->migrations[0].fingerprint);
  EXPECT_NE(base.config->migrations[0].fingerprint, other_url.config->migrations[0].fingerprint);
}

TEST(PriceTest, CostSplitsCachedInputFromTheRestAndIsZeroWithoutUsage) {
  auto result = load_from_string(yaml_with(R"(
  - {name: m, models: [gpt-4o], primary: openai, candidate: relay, stages: [{weight: 50%}]}
)"), environment);
  ASSERT_TRUE(result.config);
  const auto& openai = *result.config->find_provider("openai");
  providers::Usage usage;
  usage.present = true;
  usage.prompt_tokens = 1'000'000;
  usage.cached_prompt_tokens = 400'000;
  usage.completion_tokens = 100'000;
  const auto cost = accounting::cost_of(openai, "gpt-4o-2024-08-06", usage);
  EXPECT_TRUE(cost.priced);
  // 600k × 2.5 + 400k × 1.25 + 100k × 10, per million.
  EXPECT_DOUBLE_EQ(cost.amount, 1.5 + 0.5 + 1.0);
  EXPECT_EQ(openai.price_for("gpt-4o-2024-08-06")->currency, "USD");
  EXPECT_FALSE(accounting::cost_of(openai, "unpriced", usage).priced);
  usage.present = false;
  EXPECT_FALSE(accounting::cost_of(openai, "gpt-4o-2024-08-06", usage).priced);
  // Cached tokens beyond the prompt are clamped instead of producing a negative cost.
  usage.present = true;
  usage.prompt_tokens = 10;
  usage.cached_prompt_tokens = 50;
  usage.completion_tokens = 0;
  EXPECT_DOUBLE_EQ(accounting::cost_of(openai, "gpt-4o-2024-08-06", usage).amount, 10 * 1.25 / 1e6);
}

}  // namespace
}  // namespace cutover::config
