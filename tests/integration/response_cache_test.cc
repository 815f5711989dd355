// The response cache over real sockets: hits served without touching the provider, per-key
// isolation, streamed replay, bypasses, and the header that says which.
#include <boost/json.hpp>

#include <filesystem>

#include "admin/ctl.h"
#include "gateway_fixture.h"
#include "redis_server.h"
#include "report/report.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;

constexpr char kOtherKey[] = "other-client-secret";
constexpr char kAdminToken[] = "cache-test-admin-token-0123456789";

class CacheTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayOptions options{"    retry: {max_attempts: 1}\n"};
    options.top_extra = "admin: {listen: 127.0.0.1:0, token_env: ADMIN_TOKEN}\n";
    upstream_ = std::make_unique<simulate::FakeProvider>(simulate::default_reply);
    auto yaml = gateway_yaml(upstream_->base_url(), options);
    // A second client key, and a cache on the route.
    auto insert_after = [&yaml](const std::string& line, const std::string& added) {
      yaml.insert(yaml.find(line) + line.size(), added);
    };
    insert_after("      key_env: CLIENT_KEY\n", "    - name: other\n      key_env: OTHER_KEY\n");
    insert_after("    provider: primary\n", "    cache: {ttl: 1m, max_entries: 100}\n");
    customize(yaml);
    auto environment = [](const std::string& name) -> std::optional<std::string> {
      if (name == "CLIENT_KEY") return kClientKey;
      if (name == "OTHER_KEY") return kOtherKey;
      if (name == "ADMIN_TOKEN") return kAdminToken;
      if (name == "PROVIDER_KEY") return kProviderKey;
      return std::nullopt;
    };
    auto loaded = config::load_from_string(yaml, environment);
    ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front();
    server_ = std::make_unique<runtime::GatewayServer>(loaded.config);
    server_->start();
  }

  // A test's own changes to the configuration.
  virtual void customize(std::string&) {}

  Reply ask(const std::string& body, const std::string& key = kClientKey,
            std::vector<std::pair<std::string, std::string>> headers = {}) {
    headers.emplace_back("authorization", "Bearer " + key);
    return client().request(http::verb::post, "/v1/chat/completions", body, headers);
  }
};

const std::string kDeterministic =
    R"({"model":"gpt-4","temperature":0,"messages":[{"role":"user","content":"what is two and two"}]})";

TEST_F(CacheTest, ASecondIdenticalRequestIsServedWithoutTheProvider) {
  auto first = ask(kDeterministic);
  ASSERT_EQ(first.status, 200u) << first.body;
  EXPECT_EQ(first.header("x-cutover-cache"), "miss");
  auto second = ask(kDeterministic);
  ASSERT_EQ(second.status, 200u);
  EXPECT_EQ(second.header("x-cutover-cache"), "hit");
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(upstream_->requests_received(), 1u);
}

TEST_F(CacheTest, AnswersAreNeverSharedAcrossClientKeys) {
  ASSERT_EQ(ask(kDeterministic).header("x-cutover-cache"), "miss");
  EXPECT_EQ(ask(kDeterministic, kOtherKey).header("x-cutover-cache"), "miss");
  EXPECT_EQ(upstream_->requests_received(), 2u);
}

TEST_F(CacheTest, NonDeterministicRequestsAndNoCacheBypass) {
  const std::string creative =
      R"({"model":"gpt-4","temperature":0.7,"messages":[{"role":"user","content":"a poem"}]})";
  EXPECT_EQ(ask(creative).header("x-cutover-cache"), "bypass");
  EXPECT_EQ(ask(creative).header("x-cutover-cache"), "bypass");
  ask(kDeterministic);
  EXPECT_EQ(ask(kDeterministic, kClientKey, {{"cache-control", "no-cache"}}).header("x-cutover-cache"),
            "bypass");
  EXPECT_EQ(ask(creative, kClientKey, {{"x-cutover-cache", "use"}}).header("x-cutover-cache"), "miss")
      << "the opt-in header makes any request cacheable";
  EXPECT_EQ(upstream_->requests_received(), 5u);
}

// The cache remembers a request's exact text with its key: the same bytes hit without a parse,
// other bytes of the same request hit through the key, and a text kept under the opt-in header
// is still no deterministic request without it.
TEST_F(CacheTest, RememberedTextsHitAsTheirKeysDo) {
  const std::string creative =
      R"({"model":"gpt-4","temperature":0.7,"messages":[{"role":"user","content":"a poem"}]})";
  EXPECT_EQ(ask(creative, kClientKey, {{"x-cutover-cache", "use"}}).header("x-cutover-cache"),
            "miss");
  EXPECT_EQ(ask(creative, kClientKey, {{"x-cutover-cache", "use"}}).header("x-cutover-cache"),
            "hit");
  EXPECT_EQ(ask(creative).header("x-cutover-cache"), "bypass");
  ASSERT_EQ(ask(kDeterministic).header("x-cutover-cache"), "miss");
  EXPECT_EQ(ask(kDeterministic).header("x-cutover-cache"), "hit");
  const std::string reordered =
      R"({ "messages":[{"content":"what is two and two","role":"user"}],"temperature":0,"model":"gpt-4"})";
  EXPECT_EQ(ask(reordered).header("x-cutover-cache"), "hit");
  EXPECT_EQ(ask(reordered).header("x-cutover-cache"), "hit");
  EXPECT_EQ(ask(kDeterministic, kOtherKey).header("x-cutover-cache"), "miss")
      << "the tenant is part of the remembered text";
  EXPECT_EQ(upstream_->requests_received(), 4u);
}

// gpt-4's answers are per client key, embed's shared by all keys.
class CacheHintTest : public CacheTest {
 protected:
  void customize(std::string& yaml) override {
    const std::string one_route =
        "  - models: [gpt-4, embed]\n    provider: primary\n    cache: {ttl: 1m, max_entries: "
        "100}\n";
    ASSERT_NE(yaml.find(one_route), std::string::npos) << yaml;
    yaml.replace(yaml.find(one_route), one_route.size(),
                 "  - models: [gpt-4]\n    provider: primary\n    cache: {ttl: 1m}\n"
                 "  - models: [embed]\n    provider: primary\n"
                 "    cache: {ttl: 1m, shared_across_keys: true}\n");
  }
};

// A request the cache has not seen is read once for its summary and its key, for the cache its
// body's first "model" key names: a guess, here wrong (the metadata's model comes first), which
// must not key the request as the other route's cache would (shared across client keys).
TEST_F(CacheHintTest, AModelNamedEarlierInTheBodyDoesNotChooseTheCache) {
  const std::string body =
      R"({"metadata":{"model":"embed"},"model":"gpt-4","temperature":0,"messages":[{"role":"user","content":"two and two"}]})";
  auto first = ask(body);
  ASSERT_EQ(first.status, 200u) << first.body;
  EXPECT_EQ(first.header("x-cutover-cache"), "miss");
  EXPECT_EQ(ask(body, kOtherKey).header("x-cutover-cache"), "miss")
      << "gpt-4's answers are never shared across client keys";
  EXPECT_EQ(ask(body).header("x-cutover-cache"), "hit");
  EXPECT_EQ(ask(body, kOtherKey).header("x-cutover-cache"), "hit");
  EXPECT_EQ(upstream_->requests_received(), 2u);
  // The guess right: embed's answers are shared across keys.
  const std::string shared =
      R"({"model":"embed","temperature":0,"messages":[{"role":"user","content":"two and two"}]})";
  ASSERT_EQ(ask(shared).header("x-cutover-cache"), "miss");
  EXPECT_EQ(ask(shared, kOtherKey).header("x-cutover-cache"), "hit");
  EXPECT_EQ(upstream_->requests_received(), 3u);
}

TEST_F(CacheTest, AStreamedAnswerIsReplayedAsItsEvents) {
  const std::string body =
      R"({"model":"gpt-4","seed":42,"stream":true,"messages":[{"role":"user","content":"count to three"}]})";
  auto stream_once = [&] {
    auto downstream = client();
    downstream.send(http::verb::post, "/v1/chat/completions", body,
                    {{"authorization", std::string("Bearer ") + kClientKey}});
    return downstream.read_stream();
  };
  auto first = stream_once();
  ASSERT_EQ(first.status, 200u);
  EXPECT_EQ(first.header("x-cutover-cache"), "miss");
  auto second = stream_once();
  ASSERT_EQ(second.status, 200u);
  EXPECT_EQ(second.header("x-cutover-cache"), "hit");
  EXPECT_EQ(second.header("content-type"), "text/event-stream");
  EXPECT_EQ(data_events(second.body), data_events(first.body));
  EXPECT_EQ(data_events(second.body).back(), "[DONE]");
  EXPECT_EQ(upstream_->requests_received(), 1u);
}

// A remembered text carries the summary it was read with: when its answer is gone, the request
// goes to the provider as the first one did (its own stream_options kept and amended, not added
// again beside it).
TEST_F(CacheTest, ARememberedTextWhoseAnswerWasEvictedGoesAsTheFirstDid) {
  const std::string streamed =
      R"({"model":"gpt-4","seed":7,"stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},"messages":[{"role":"user","content":"count"}]})";
  ASSERT_EQ(ask(streamed).header("x-cutover-cache"), "miss");
  ASSERT_EQ(ask(streamed).header("x-cutover-cache"), "hit");
  for (int i = 0; i < 100; ++i) {  // a cache of 100: the streamed answer is evicted
    ASSERT_EQ(ask(R"({"model":"gpt-4","seed":)" + std::to_string(i) +
                  R"(,"messages":[{"role":"user","content":"x"}]})")
                  .header("x-cutover-cache"),
              "miss");
  }
  const auto again = ask(streamed);
  ASSERT_EQ(again.status, 200u) << again.body;
  EXPECT_EQ(again.header("x-cutover-cache"), "miss");
  EXPECT_EQ(again.body.find("\"usage\""), std::string::npos) << "the client asked for no usage";
  const auto sent = upstream_->recorded_requests();
  ASSERT_EQ(sent.size(), 102u);
  EXPECT_EQ(sent.back().body, sent.front().body);
  const auto options = json::parse(sent.back().body).at("stream_options");
  EXPECT_EQ(options.at("include_usage"), true) << "the gateway's accounting asks for usage";
  EXPECT_EQ(options.at("include_obfuscation"), false) << "the client's own option kept";
}

TEST_F(CacheTest, ErrorsAreNeverCached) {
  upstream_->set_script(reply_with([](simulate::FakeReply& reply) { reply.status = 500; }));
  EXPECT_EQ(ask(kDeterministic).status, 500u);
  upstream_->set_script(simulate::default_reply);
  auto after = ask(kDeterministic);
  EXPECT_EQ(after.status, 200u);
  EXPECT_EQ(after.header("x-cutover-cache"), "miss");
  EXPECT_EQ(upstream_->requests_received(), 2u);
}

TEST_F(CacheTest, StatsCountHitsMissesAndWhatWasSaved) {
  ask(kDeterministic);
  ask(kDeterministic);
  ask(kDeterministic);
  auto cache = server_->health()->cache_for("gpt-4");
  ASSERT_TRUE(cache);
  const auto stats = cache->stats();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_GT(stats.tokens_saved, 0u);
  EXPECT_EQ(cache->purge(), 1u);
  EXPECT_EQ(ask(kDeterministic).header("x-cutover-cache"), "miss");
}

TEST_F(CacheTest, OperatorsSeeAndPurgeTheCache) {
  ask(kDeterministic);
  ask(kDeterministic);
  admin::CtlTarget target{"http://127.0.0.1:" + std::to_string(server_->admin_port()), kAdminToken};
  std::ostringstream out, error;
  ASSERT_EQ(admin::run_ctl(target, {"cache"}, out, error), 0) << error.str();
  EXPECT_NE(out.str().find("HITS"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("gpt-4"), std::string::npos) << out.str();
  std::ostringstream purged;
  ASSERT_EQ(admin::run_ctl(target, {"cache", "purge"}, purged, error), 0) << error.str();
  EXPECT_NE(purged.str().find("purged 1 entries"), std::string::npos) << purged.str();
  EXPECT_EQ(ask(kDeterministic).header("x-cutover-cache"), "miss");
}

TEST_F(CacheTest, MetricsCountResultsEntriesBytesAndEvictions) {
  // 101 different answers into a cache of 100: the first is evicted.
  for (int i = 0; i <= 100; ++i) {
    const auto body =
        R"({"model":"gpt-4","temperature":0,"messages":[{"role":"user","content":"question )" +
        std::to_string(i) + R"("}]})";
    ASSERT_EQ(ask(body).header("x-cutover-cache"), "miss");
  }
  ask(kDeterministic);
  ask(kDeterministic);
  const auto stats = server_->health()->cache_for("gpt-4")->stats();
  ASSERT_EQ(stats.evictions, 2u);
  ASSERT_GT(stats.bytes, 0u);
  const std::string token = std::string("Bearer ") + kAdminToken;
  TestClient admin(server_->admin_port());
  const auto metrics =
      admin.request(http::verb::get, "/metrics", "", {{"authorization", token}}).body;
  for (const std::string& expected : std::vector<std::string>{
           R"(cutover_cache_requests_total{model="gpt-4",result="miss"} 102)",
           R"(cutover_cache_requests_total{model="gpt-4",result="hit"} 1)",
           R"(cutover_cache_entries{model="gpt-4"} 100)",
           R"(cutover_cache_evictions_total{model="gpt-4"} 2)",
           "cutover_cache_bytes{model=\"gpt-4\"} " + std::to_string(stats.bytes)}) {
    EXPECT_NE(metrics.find(expected), std::string::npos) << expected << "\n"
                                                         << metrics.substr(0, 3000);
  }
}

TEST(CacheLedgerTest, HitsAreInTheUsageLedgerAsWhatTheySavedNotAsSpend) {
  simulate::FakeProvider provider(simulate::default_reply);
  const auto state = std::filesystem::temp_directory_path() /
                     ("cutover-cache-ledger-" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(state);
  GatewayOptions options{"    retry: {max_attempts: 1}\n"
                         "    prices: {gpt-4.1: {input: 2.0, output: 8.0}}\n"};
  options.top_extra = "state_store: " + state.string() + "\n";
  auto yaml = gateway_yaml(provider.base_url(), options);
  yaml.insert(yaml.find("    provider: primary\n") + 22, "    cache: {ttl: 1m}\n");
  auto config = load_config(yaml);
  ASSERT_TRUE(config);
  {
    runtime::GatewayServer server(config);
    server.start();
    TestClient client(server.port());
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(client.post("/v1/chat/completions", kDeterministic).status, 200u);
    }
    server.shutdown(std::chrono::milliseconds(0));
  }
  EXPECT_EQ(provider.requests_received(), 1u);
  report::UsageOptions usage;
  usage.store_paths = {state.string()};
  usage.by = {"provider", "traffic"};
  usage.format = "json";
  std::ostringstream out, error;
  ASSERT_EQ(report::report_usage(usage, out, error), 0) << error.str();
  const auto rows = json::parse(out.str()).as_array();
  const json::object* live = nullptr;
  const json::object* cached = nullptr;
  for (const auto& row : rows) {
    if (row.at("traffic") == "live") live = &row.as_object();
    if (row.at("traffic") == "cache") cached = &row.as_object();
  }
  ASSERT_NE(live, nullptr) << out.str();
  ASSERT_NE(cached, nullptr) << out.str();
  EXPECT_EQ(live->at("requests"), 1);
  EXPECT_GT(live->at("cost").as_double(), 0);
  // The two hits: counted under the provider that first answered, spending nothing, saving twice
  // what the first answer cost.
  EXPECT_EQ(cached->at("provider"), "primary");
  EXPECT_EQ(cached->at("requests"), 2);
  EXPECT_EQ(cached->at("prompt_tokens"), 0);
  EXPECT_EQ(cached->at("cost").as_double(), 0);
  const auto first_tokens = live->at("prompt_tokens").as_int64() + live->at("completion_tokens").as_int64();
  EXPECT_EQ(cached->at("saved_tokens").as_int64(), 2 * first_tokens);
  EXPECT_NEAR(cached->at("saved_cost").as_double(), 2 * live->at("cost").as_double(), 1e-12);
  EXPECT_EQ(cached->at("currency"), "USD");
  std::filesystem::remove(state);
  std::filesystem::remove(state.string() + "-wal");
  std::filesystem::remove(state.string() + "-shm");
}

TEST(CacheDuringCanaryTest, HitsAreNotServedWhileTheCandidateHasAShareIfTheRouteSaysSo) {
  simulate::FakeProvider primary(simulate::default_reply);
  simulate::FakeProvider candidate(simulate::default_reply);
  const std::string yaml =
      "listen: 127.0.0.1:0\nworkers: 1\naccess_log: \"off\"\nstate_store: \":memory:\"\n"
      "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}\n"
      "providers:\n"
      "  primary: {base_url: " + primary.base_url() + ", api_key_env: PROVIDER_KEY, models: {gpt-4: p}}\n"
      "  candidate: {base_url: " + candidate.base_url() + ", api_key_env: PROVIDER_KEY, models: {gpt-4: c}}\n"
      "routes:\n  - {models: [gpt-4], provider: primary, cache: {during_canary: false}}\n"
      "migrations:\n"
      "  - name: to-candidate\n    models: [gpt-4]\n    primary: primary\n    candidate: candidate\n"
      "    evaluation_interval: 50ms\n"
      "    stages: [{weight: 50%, min_duration: 1h, min_requests: 100000}]\n";
  auto environment = [](const std::string& name) -> std::optional<std::string> {
    if (name == "CLIENT_KEY") return kClientKey;
    if (name == "PROVIDER_KEY") return kProviderKey;
    return std::nullopt;
  };
  auto loaded = config::load_from_string(yaml, environment);
  ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front();
  runtime::GatewayServer server(loaded.config);
  server.start();
  TestClient client(server.port());
  // Once the canary's weight is published every deterministic request bypasses the cache.
  std::string seen;
  for (int i = 0; i < 100 && seen != "bypass"; ++i) {
    seen = std::string(client.post("/v1/chat/completions", kDeterministic).header("x-cutover-cache"));
    if (seen != "bypass") std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(seen, "bypass");
  for (int i = 0; i < 5; ++i) {
    auto reply = client.post("/v1/chat/completions", kDeterministic);
    EXPECT_EQ(reply.status, 200u);
    EXPECT_EQ(reply.header("x-cutover-cache"), "bypass");
  }
  server.shutdown(std::chrono::milliseconds(0));
}

// Two replicas of one gateway sharing the fleet's Redis: one replica's answer is the other's
// hit, still per client key; a purge on either empties it for both; without Redis, both serve.
class FleetCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<runtime::GatewayServer> replica(const std::string& name) {
    const std::string yaml =
        "listen: 127.0.0.1:0\nworkers: 1\naccess_log: \"off\"\n"
        "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}, {name: other, key_env: OTHER_KEY}]}\n"
        "admin: {listen: 127.0.0.1:0, token_env: ADMIN_TOKEN}\n"
        "state_store: {url: \"" + redis_.url() + "\", key_prefix: fleet-cache-test, replica: " + name +
        ", local_file: \":memory:\", connect_timeout: 200ms, command_timeout: 200ms}\n"
        "providers:\n"
        "  primary: {base_url: " + provider_.base_url() +
        ", api_key_env: PROVIDER_KEY, models: {gpt-4: p}, retry: {max_attempts: 1}}\n"
        "routes:\n  - {models: [gpt-4], provider: primary, cache: {ttl: 1m}}\n";
    auto environment = [](const std::string& variable) -> std::optional<std::string> {
      if (variable == "CLIENT_KEY") return kClientKey;
      if (variable == "OTHER_KEY") return kOtherKey;
      if (variable == "ADMIN_TOKEN") return kAdminToken;
      if (variable == "PROVIDER_KEY") return kProviderKey;
      return std::nullopt;
    };
    auto loaded = config::load_from_string(yaml, environment);
    EXPECT_TRUE(loaded.errors.empty()) << loaded.errors.front();
    auto server = std::make_unique<runtime::GatewayServer>(loaded.config);
    server->start();
    return server;
  }

  static std::string ask(runtime::GatewayServer& server, const std::string& key = kClientKey) {
    auto reply = TestClient(server.port()).post("/v1/chat/completions", kDeterministic, key);
    EXPECT_EQ(reply.status, 200u) << reply.body;
    return std::string(reply.header("x-cutover-cache"));
  }

  // The shared store writes behind the answer: wait until the other replica sees it.
  static std::string ask_until_hit(runtime::GatewayServer& server, const std::string& key = kClientKey) {
    std::string seen;
    for (int i = 0; i < 100 && seen != "hit"; ++i) {
      seen = ask(server, key);
      if (seen != "hit") std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return seen;
  }

  RedisServer redis_;
  simulate::FakeProvider provider_{simulate::default_reply};
};

TEST_F(FleetCacheTest, OneReplicasAnswerIsAnothersHitButNeverAnotherKeys) {
  auto first = replica("one");
  auto second = replica("two");
  EXPECT_EQ(ask(*first), "miss");
  ASSERT_EQ(ask_until_hit(*second), "hit");
  const auto provider_calls = provider_.requests_received();
  EXPECT_EQ(ask(*first), "hit");
  EXPECT_EQ(provider_.requests_received(), provider_calls);
  // Another client key (another tenant) never gets these answers, on either replica.
  EXPECT_EQ(ask(*second, kOtherKey), "miss");
  EXPECT_EQ(second->health()->cache_for("gpt-4")->stats().hits, 1u);

  // The admin API of either replica shows the fleet's entries and purges them for both. Stores
  // are written behind: the other tenant's answer reaches Redis shortly after its reply.
  TestClient admin(first->admin_port());
  json::value shown;
  for (int i = 0; i < 100; ++i) {
    shown = json::parse(admin.request(http::verb::get, "/admin/v1/cache", "",
                                      {{"authorization", std::string("Bearer ") + kAdminToken}})
                            .body);
    if (shown.at("caches").at(0).at("entries") == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto& cache = shown.at("caches").at(0);
  EXPECT_EQ(cache.at("shared"), true);
  EXPECT_EQ(cache.at("entries"), 2) << json::serialize(shown);
  auto purged = json::parse(admin.request(http::verb::post, "/admin/v1/cache/purge", "",
                                          {{"authorization", std::string("Bearer ") + kAdminToken}})
                                .body);
  EXPECT_EQ(purged.at("purged"), 2) << json::serialize(purged);
  EXPECT_EQ(ask(*second), "miss");
}

TEST_F(FleetCacheTest, WithoutRedisEveryRequestIsStillServed) {
  auto first = replica("one");
  redis_.stop();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ask(*first), "miss");
  EXPECT_EQ(provider_.requests_received(), 3u);
  redis_.start();
  // Back: the fleet's cache works again once the store reconnects (at most a second later).
  std::string seen;
  for (int i = 0; i < 100 && seen != "hit"; ++i) {
    seen = ask(*first);
    if (seen != "hit") std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(seen, "hit");
}

}  // namespace
}  // namespace cutover::testing
