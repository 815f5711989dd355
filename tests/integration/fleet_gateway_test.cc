// Fleet mode end to end: gateways sharing one redis-server, driven through their admin APIs and
// their client listeners, in front of fake providers.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <boost/json.hpp>
#include <memory>
#include <sstream>

#include "config/config.h"
#include "redis_server.h"
#include "report/report.h"
#include "runtime/gateway_server.h"
#include "simulate/fake_provider.h"
#include "test_client.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;
using simulate::FakeProvider;

constexpr char kClient[] = "client-secret";
constexpr char kAdmin[] = "fleet-admin-token-0123456789";

class FleetGatewayTest : public ::testing::Test {
 protected:
  FleetGatewayTest()
      : primary_(std::make_unique<FakeProvider>(
            [this](const simulate::FakeRequest& request) {
              auto reply = simulate::default_reply(request);
              reply.delay = std::chrono::milliseconds(answer_delay_ms_.load());
              return reply;
            },
            0, "127.0.0.1", nullptr, 2)),
        candidate_(std::make_unique<FakeProvider>(
            [this](const simulate::FakeRequest& request) {
              auto reply = simulate::default_reply(request);
              reply.delay = std::chrono::milliseconds(answer_delay_ms_.load());
              if (candidate_fails_) {
                reply.status = 500;
                reply.body = R"({"error":{"message":"candidate down","type":"server_error"}})";
              }
              return reply;
            },
            0, "127.0.0.1", nullptr, 2)) {}

  std::unique_ptr<runtime::GatewayServer> gateway(const std::string& replica,
                                                  const std::string& stages,
                                                  const std::string& store_extra = "",
                                                  const std::string& redis_url = "") {
    const std::string yaml =
        "listen: 127.0.0.1:0\nworkers: 1\naccess_log: \"off\"\n"
        "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}\n"
        "admin: {listen: 127.0.0.1:0, token_env: ADMIN_TOKEN}\n"
        "state_store:\n"
        "  url: " +
        (redis_url.empty() ? redis_.url() : redis_url) +
        "\n"
        "  key_prefix: fleet-gateway-test\n"
        "  replica: " +
        replica +
        "\n"
        "  lease: 3s\n"
        "  local_file: \":memory:\"\n" +
        store_extra +
        "providers:\n"
        "  primary:\n"
        "    base_url: " +
        primary_->base_url() +
        "\n"
        "    api_key_env: PROVIDER_KEY\n"
        "    models: {gpt-4: primary-model}\n"
        "    retry: {max_attempts: 1}\n"
        "  candidate:\n"
        "    base_url: " +
        candidate_->base_url() +
        "\n"
        "    api_key_env: PROVIDER_KEY\n"
        "    models: {gpt-4: candidate-model}\n"
        "    retry: {max_attempts: 1}\n"
        "routes:\n  - {models: [gpt-4], provider: primary}\n"
        "migrations:\n"
        "  - name: to-candidate\n"
        "    models: [gpt-4]\n"
        "    primary: primary\n"
        "    candidate: candidate\n"
        "    evaluation_interval: 50ms\n"
        "    stages:\n" +
        stages;
    auto result =
        config::load_from_string(yaml, [](const std::string& name) -> std::optional<std::string> {
          if (name == "CLIENT_KEY") return kClient;
          if (name == "ADMIN_TOKEN") return kAdmin;
          return std::string("sk-provider");
        });
    // A configuration this test got wrong fails the test instead of crashing the binary.
    if (!result.errors.empty()) throw std::runtime_error(result.errors.front());
    auto server = std::make_unique<runtime::GatewayServer>(result.config);
    server->start();
    return server;
  }

  static Reply admin(runtime::GatewayServer& server, http::verb method, const std::string& path,
                     const std::string& body = "") {
    TestClient client(server.admin_port());
    return client.request(method, path, body, {{"authorization", std::string("Bearer ") + kAdmin}});
  }
  static json::object status(runtime::GatewayServer& server) {
    auto reply = admin(server, http::verb::get, "/admin/v1/migrations/to-candidate");
    EXPECT_EQ(reply.status, 200u) << reply.body;
    return json::parse(reply.body).as_object();
  }
  static Reply act(runtime::GatewayServer& server, const std::string& action,
                   std::int64_t generation, const std::string& extra = "") {
    return admin(server, http::verb::post, "/admin/v1/migrations/to-candidate/" + action,
                 "{\"generation\":" + std::to_string(generation) + extra + "}");
  }
  static unsigned chat(runtime::GatewayServer& server, const std::string& user) {
    TestClient client(server.port());
    return client
        .request(http::verb::post, "/v1/chat/completions", chat_body(),
                 {{"authorization", std::string("Bearer ") + kClient}, {"x-user-id", user}})
        .status;
  }

  // One gateway at 100 %; Redis goes away (`take_redis_away`), then the candidate fails until
  // the gates, judged locally, send this gateway's candidate share to 0. Clients still get
  // answers: the primary takes over each failed candidate attempt. Returns the generation before.
  std::int64_t breach_while_redis_is_away(const std::function<void()>& take_redis_away) {
    first_ = gateway("g1", "      - {weight: 100%, min_duration: 1h, min_requests: 30}\n");
    EXPECT_TRUE(wait_until([&] { return status(*first_).at("routed_weight").as_double() == 1.0; }));
    const auto generation = status(*first_).at("generation").as_int64();
    take_redis_away();
    EXPECT_TRUE(wait_until([&] { return !status(*first_).at("store").at("up").as_bool(); }));
    candidate_fails_ = true;
    int user = 0;
    EXPECT_TRUE(wait_until([&] {
      EXPECT_EQ(chat(*first_, "user-" + std::to_string(++user)), 200u);
      return status(*first_).at("routed_weight").as_double() == 0.0;
    }));
    return generation;
  }

  void TearDown() override {
    for (auto* server : {&first_, &second_}) {
      if (*server) (*server)->shutdown(std::chrono::milliseconds(0));
      server->reset();
    }
  }

  std::atomic<bool> candidate_fails_{false};
  // Both sides answer after this long: latency gates that compare them then judge tens of
  // milliseconds, not the scheduling noise of a loaded machine around one.
  std::atomic<int> answer_delay_ms_{0};
  RedisServer redis_;
  std::unique_ptr<FakeProvider> primary_;
  std::unique_ptr<FakeProvider> candidate_;
  std::unique_ptr<runtime::GatewayServer> first_;
  std::unique_ptr<runtime::GatewayServer> second_;
};

constexpr char kLadder[] =
    "      - {weight: 5%, min_duration: 1h, min_requests: 30}\n"
    "      - {weight: 100%, min_duration: 1h, min_requests: 30}\n";

TEST_F(FleetGatewayTest, AWeightSetThroughOneGatewayRoutesTheOthersTraffic) {
  first_ = gateway("g1", kLadder);
  second_ = gateway("g2", kLadder);
  const auto generation = status(*first_).at("generation").as_int64();
  auto reply = act(*first_, "set-weight", generation, ",\"weight\":1.0");
  ASSERT_EQ(reply.status, 200u) << reply.body;
  ASSERT_TRUE(wait_until([&] { return status(*second_).at("routed_weight").as_double() == 1.0; }));
  const auto before = candidate_->requests_received();
  EXPECT_EQ(chat(*second_, "user-1"), 200u);
  EXPECT_EQ(candidate_->requests_received(), before + 1);
  EXPECT_EQ(status(*second_).at("generation").as_int64(), generation + 1);
}

// The leader gets no traffic at all: only the figures the other replica shares can move it.
TEST_F(FleetGatewayTest, TheLeaderJudgesTheWholeFleetsTrafficNotItsOwn) {
  const std::string ladder =
      "      - {weight: 50%, min_duration: 3s, min_requests: 30}\n"
      "      - {weight: 100%, min_duration: 1h, min_requests: 100000}\n"
      // A few hundred requests can show an error rate under 10 %, not under 1 %. On a loaded
      // machine (sanitizers, -j2) the first stage's 30 requests can take longer than the four
      // dwells after which inconclusive gates pause a migration: that pause is not what this
      // test is about, so it waits as long as the test does.
      "    gates: {max_error_rate: 10%, inconclusive_dwells_before_pause: 100}\n";
  answer_delay_ms_ = 20;
  first_ = gateway("g1", ladder);
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("store").at("leading").as_bool(); }));
  second_ = gateway("g2", ladder);
  ASSERT_TRUE(wait_until([&] { return status(*second_).at("routed_weight").as_double() == 0.5; }));
  int user = 0;
  ASSERT_TRUE(wait_until([&] {
    for (int i = 0; i < 10; ++i) EXPECT_EQ(chat(*second_, "user-" + std::to_string(++user)), 200u);
    return status(*first_).at("weight").as_double() == 1.0;
  }, std::chrono::seconds(30))) << json::serialize(status(*first_));
  EXPECT_TRUE(status(*first_).at("store").at("leading").as_bool());
  // Both replicas' heartbeats are visible from either.
  const auto follower = status(*second_);
  std::vector<std::string> seen;
  for (const auto& replica : follower.at("store").at("replicas").as_array()) {
    seen.emplace_back(replica.at("replica").as_string());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"g1", "g2"})) << json::serialize(follower);
  const auto metrics = admin(*first_, http::verb::get, "/metrics").body;
  EXPECT_NE(metrics.find("cutover_fleet_replica_last_seen_seconds{replica=\"g2\"}"), std::string::npos)
      << metrics.substr(0, 2000);
  const auto history = admin(*first_, http::verb::get, "/admin/v1/migrations/to-candidate/history");
  EXPECT_NE(history.body.find("gates:pass"), std::string::npos) << history.body;
}

TEST_F(FleetGatewayTest, TheLeaderRollsBackOnABreachOnlyAnotherReplicaSaw) {
  first_ = gateway("g1", "      - {weight: 50%, min_duration: 1h, min_requests: 30}\n");
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("store").at("leading").as_bool(); }));
  second_ = gateway("g2", "      - {weight: 50%, min_duration: 1h, min_requests: 30}\n");
  ASSERT_TRUE(wait_until([&] { return status(*second_).at("routed_weight").as_double() == 0.5; }));
  candidate_fails_ = true;
  int user = 0;
  // Clients of the second replica still get answers (the primary takes over each failed
  // candidate attempt); the leader, which serves nobody, rolls the fleet back.
  ASSERT_TRUE(wait_until([&] {
    for (int i = 0; i < 10; ++i) EXPECT_EQ(chat(*second_, "user-" + std::to_string(++user)), 200u);
    return status(*first_).at("phase") == "rolled_back";
  })) << json::serialize(status(*first_));
  EXPECT_TRUE(wait_until([&] { return status(*second_).at("routed_weight").as_double() == 0.0; }));
}

TEST_F(FleetGatewayTest, TheReportReadsTheFleetsRecordAndJournalFromRedis) {
  first_ = gateway("g1", kLadder);
  const auto generation = status(*first_).at("generation").as_int64();
  ASSERT_EQ(act(*first_, "pause", generation).status, 200u);
  report::MigrationReportOptions options;
  options.store_path = ":memory:";
  options.migration = "to-candidate";
  options.format = "json";
  options.redis.emplace();
  options.redis->host = "127.0.0.1";
  options.redis->port = redis_.port();
  options.redis->key_prefix = "fleet-gateway-test";
  options.redis->replica = "report";
  options.redis->display_url = redis_.url();
  std::ostringstream out, error;
  ASSERT_EQ(report::report_migration(options, out, error), 0) << error.str();
  const auto report = json::parse(out.str());
  EXPECT_EQ(report.at("phase"), "paused");
  EXPECT_EQ(report.at("generation").as_int64(), generation + 1);
  EXPECT_EQ(report.at("history").as_array().back().at("to"), "paused");
  // Without Redis the report says so instead of inventing a state.
  redis_.stop();
  std::ostringstream none, why;
  EXPECT_EQ(report::report_migration(options, none, why), 1);
  EXPECT_NE(why.str().find("cannot read the fleet's Redis"), std::string::npos) << why.str();
}

TEST_F(FleetGatewayTest, AStaleGenerationOnTheOtherGatewayIsA409) {
  first_ = gateway("g1", kLadder);
  second_ = gateway("g2", kLadder);
  const auto generation = status(*second_).at("generation").as_int64();
  ASSERT_EQ(act(*first_, "pause", generation).status, 200u);
  auto reply = act(*second_, "set-weight", generation, ",\"weight\":1.0");
  EXPECT_EQ(reply.status, 409u);
  EXPECT_NE(reply.body.find("stale_generation"), std::string::npos) << reply.body;
}

TEST_F(FleetGatewayTest, AGatewayStartingWithoutRedisServesThePrimaryAndStaysReady) {
  redis_.stop();
  first_ = gateway("g1", "      - {weight: 100%, min_duration: 1h, min_requests: 30}\n");
  {
    TestClient client(first_->port());
    EXPECT_EQ(client.request(http::verb::get, "/readyz").status, 200u);
  }
  EXPECT_EQ(chat(*first_, "user-1"), 200u);
  EXPECT_EQ(candidate_->requests_received(), 0u);
  EXPECT_FALSE(status(*first_).at("store").at("up").as_bool());

  redis_.start();
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("routed_weight").as_double() == 1.0; }));
  EXPECT_EQ(chat(*first_, "user-1"), 200u);
  EXPECT_EQ(candidate_->requests_received(), 1u);

  // Redis goes away again: the last weight holds and the gateway stays ready.
  redis_.stop();
  ASSERT_TRUE(wait_until([&] { return !status(*first_).at("store").at("up").as_bool(); }));
  {
    TestClient client(first_->port());
    EXPECT_EQ(client.request(http::verb::get, "/readyz").status, 200u);
  }
  EXPECT_EQ(chat(*first_, "user-2"), 200u);
  EXPECT_EQ(candidate_->requests_received(), 2u);
  EXPECT_EQ(act(*first_, "pause", status(*first_).at("generation").as_int64()).status, 503u);
}

TEST_F(FleetGatewayTest, ABreachWhileRedisIsDownTakesOnlyThisGatewayToThePrimary) {
  const auto generation = breach_while_redis_is_away([&] { redis_.stop(); });
  // Nothing was committed: the shared record still says what it said.
  const auto after = status(*first_);
  EXPECT_EQ(after.at("generation").as_int64(), generation);
  EXPECT_EQ(after.at("phase").as_string(), "canary");
  const auto candidate_seen = candidate_->requests_received();
  EXPECT_EQ(chat(*first_, "user-next"), 200u);
  EXPECT_EQ(candidate_->requests_received(), candidate_seen);
}

TEST_F(FleetGatewayTest, ABreachJudgedDuringAnOutageIsCommittedWhenRedisAnswersAgain) {
  const auto generation = breach_while_redis_is_away([&] { redis_.freeze(); });
  EXPECT_EQ(status(*first_).at("generation").as_int64(), generation);
  redis_.thaw();
  // Redis kept the record, which nothing moved meanwhile: the breach is journaled as judged.
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("phase") == "rolled_back"; }))
      << json::serialize(status(*first_));
  const auto after = status(*first_);
  EXPECT_EQ(after.at("generation").as_int64(), generation + 1);
  EXPECT_EQ(after.at("routed_weight").as_double(), 0.0);
  const auto history = json::parse(
      admin(*first_, http::verb::get, "/admin/v1/migrations/to-candidate/history").body);
  const auto& last = history.at("transitions").as_array().back();
  EXPECT_EQ(last.at("generation").as_int64(), generation + 1);
  EXPECT_EQ(last.at("to"), "rolled_back");
  EXPECT_NE(std::string(last.at("trigger").as_string()).find("gate:"), std::string::npos)
      << json::serialize(last);
}

TEST_F(FleetGatewayTest, ALongOutageSendsEverythingToThePrimaryUntilRedisAnswers) {
  first_ = gateway("g1", "      - {weight: 100%, min_duration: 1h, min_requests: 30}\n",
                   "  primary_only_after: 3s\n");
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("routed_weight").as_double() == 1.0; }));
  redis_.freeze();
  ASSERT_TRUE(wait_until([&] { return !status(*first_).at("store").at("up").as_bool(); }));
  // Static at first: the last weight holds.
  const auto candidate_before = candidate_->requests_received();
  EXPECT_EQ(chat(*first_, "user-1"), 200u);
  EXPECT_EQ(candidate_->requests_received(), candidate_before + 1);
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("routed_weight").as_double() == 0.0; }));
  const auto candidate_seen = candidate_->requests_received();
  EXPECT_EQ(chat(*first_, "user-1"), 200u);
  EXPECT_EQ(candidate_->requests_received(), candidate_seen);
  EXPECT_EQ(status(*first_).at("phase"), "canary") << "nothing is committed for an outage";
  redis_.thaw();
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("routed_weight").as_double() == 1.0; }));
  EXPECT_EQ(chat(*first_, "user-1"), 200u);
  EXPECT_EQ(candidate_->requests_received(), candidate_seen + 1);
}

// Redis killed mid-canary and restarted from its append-only file: the weights hold meanwhile,
// nothing is promoted, and the fleet picks up the same record and journal afterwards.
TEST_F(FleetGatewayTest, RedisKilledAndRestartedWithItsDataLeavesTheFleetWhereItWas) {
  RedisServer durable(true);
  auto replica = [&](const std::string& name) {
    return gateway(name, kLadder, "", durable.url());
  };
  first_ = replica("g1");
  second_ = replica("g2");
  const auto generation = status(*first_).at("generation").as_int64();
  ASSERT_EQ(act(*second_, "set-weight", generation, ",\"weight\":0.5").status, 200u);
  ASSERT_TRUE(wait_until([&] { return status(*first_).at("routed_weight").as_double() == 0.5; }));
  durable.stop();
  ASSERT_TRUE(wait_until([&] { return !status(*first_).at("store").at("up").as_bool(); }));
  // Static: the weight holds on both, and nothing moves without the store.
  EXPECT_EQ(chat(*first_, "user-1"), 200u);
  EXPECT_EQ(status(*first_).at("routed_weight").as_double(), 0.5);
  EXPECT_EQ(status(*second_).at("routed_weight").as_double(), 0.5);
  EXPECT_EQ(act(*first_, "promote", generation + 1).status, 503u);
  durable.start();
  ASSERT_TRUE(wait_until([&] {
    return status(*first_).at("store").at("up").as_bool() && status(*second_).at("store").at("up").as_bool();
  }));
  for (auto* server : {first_.get(), second_.get()}) {
    const auto after = status(*server);
    EXPECT_EQ(after.at("generation").as_int64(), generation + 1);
    EXPECT_EQ(after.at("routed_weight").as_double(), 0.5);
    EXPECT_EQ(after.at("phase"), "canary");
  }
  const auto history = json::parse(
      admin(*second_, http::verb::get, "/admin/v1/migrations/to-candidate/history").body);
  const auto& transitions = history.at("transitions").as_array();
  ASSERT_EQ(transitions.size(), static_cast<std::size_t>(generation + 1));
  for (std::size_t i = 0; i < transitions.size(); ++i) {
    EXPECT_EQ(transitions[i].at("generation").as_int64(), static_cast<std::int64_t>(i + 1));
  }
}

}  // namespace
}  // namespace cutover::testing
