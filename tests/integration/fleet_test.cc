// Fleet mode: several migration engines (one per replica) sharing one redis-server. One judges,
// every one follows, operators act from any, and a replica without Redis fails static.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>

#include "config/config.h"
#include "migration/engine.h"
#include "redis_server.h"

namespace cutover::testing {
namespace {

using migration::Action;
using migration::Command;
using migration::MigrationEngine;
using migration::Phase;

constexpr char kMigration[] = "to-candidate";

class FleetTest : public ::testing::Test {
 protected:
  static constexpr char kLadder[] =
      "      - {weight: 5%, min_duration: 1h, min_requests: 30}\n"
      "      - {weight: 50%, min_duration: 1h, min_requests: 30}\n"
      "      - {weight: 100%, min_duration: 1h, min_requests: 30}\n";

  std::shared_ptr<const config::Config> config_for(const std::string& replica,
                                                   const std::string& stages = kLadder) {
    const std::string yaml =
        "listen: 127.0.0.1:0\n"
        "auth: {allow_unauthenticated: true}\n"
        "state_store:\n"
        "  url: " +
        redis_.url() +
        "\n"
        "  key_prefix: fleet-test\n"
        "  replica: " +
        replica +
        "\n"
        "  lease: 3s\n"
        "  local_file: \":memory:\"\n"
        "providers:\n"
        "  primary: {base_url: http://127.0.0.1:9/v1, api_key_env: KEY, models: {gpt-4: p}}\n"
        "  candidate: {base_url: http://127.0.0.1:9/v1, api_key_env: KEY, models: {gpt-4: c}}\n"
        "routes:\n  - {models: [gpt-4], provider: primary}\n"
        "migrations:\n"
        "  - name: to-candidate\n"
        "    models: [gpt-4]\n"
        "    primary: primary\n"
        "    candidate: candidate\n"
        "    evaluation_interval: 50ms\n"
        "    stages:\n" +
        stages;
    auto result = config::load_from_string(
        yaml, [](const std::string&) -> std::optional<std::string> { return std::string("k"); });
    for (const auto& error : result.errors) ADD_FAILURE() << error;
    return result.config;
  }

  std::unique_ptr<MigrationEngine> replica(const std::string& name,
                                           const std::string& stages = kLadder) {
    auto engine = std::make_unique<MigrationEngine>(config_for(name, stages), 1);
    engine->start();
    return engine;
  }

  static std::int64_t generation(MigrationEngine& engine) {
    return engine.status(kMigration).body.at("generation").as_int64();
  }

  static migration::AdminReply act(MigrationEngine& engine, Action action, std::int64_t generation,
                                   std::optional<double> weight = std::nullopt) {
    Command command;
    command.action = action;
    command.expected_generation = generation;
    command.actor = "alice";
    command.weight = weight;
    return engine.command(kMigration, command);
  }

  static std::string error_code(const migration::AdminReply& reply) {
    return std::string(reply.body.at("error").at("code").as_string());
  }

  RedisServer redis_;
};

TEST_F(FleetTest, OnlyTheLeaderEvaluatesTheGates) {
  auto a = replica("a");
  auto b = replica("b");
  ASSERT_TRUE(wait_until([&] { return a->evaluations() >= 5; }));
  EXPECT_TRUE(a->leading());
  EXPECT_FALSE(b->leading());
  EXPECT_EQ(b->evaluations(), 0u);
  EXPECT_EQ(b->status(kMigration).body.at("store").at("leader").as_string(),
            a->status(kMigration).body.at("store").at("leader").as_string());
}

TEST_F(FleetTest, BothReplicasStartOnTheSameRecord) {
  auto a = replica("a");
  auto b = replica("b");
  EXPECT_EQ(generation(*a), 1);
  EXPECT_EQ(generation(*b), 1);
  EXPECT_DOUBLE_EQ(a->routed_weight(kMigration), 0.05);
  EXPECT_DOUBLE_EQ(b->routed_weight(kMigration), 0.05);
}

TEST_F(FleetTest, AnOperatorsWeightOnTheLeaderReachesTheFollowerWithinASecond) {
  auto a = replica("a");
  auto b = replica("b");
  auto reply = act(*a, Action::set_weight, generation(*a), 0.5);
  ASSERT_EQ(reply.status, 200u) << boost::json::serialize(reply.body);
  EXPECT_DOUBLE_EQ(a->routed_weight(kMigration), 0.5);  // the committer applies it at once
  EXPECT_TRUE(wait_until([&] { return b->routed_weight(kMigration) == 0.5; }));
  EXPECT_EQ(generation(*b), 2);
}

TEST_F(FleetTest, AnOperatorsPauseOnTheFollowerHoldsTheLeader) {
  auto a = replica("a");
  auto b = replica("b");
  ASSERT_TRUE(wait_until([&] { return a->leading(); }));
  auto reply = act(*b, Action::pause, generation(*b));
  ASSERT_EQ(reply.status, 200u) << boost::json::serialize(reply.body);
  EXPECT_TRUE(wait_until([&] { return a->phase_of(kMigration).first == Phase::paused; }));
  EXPECT_DOUBLE_EQ(a->routed_weight(kMigration), 0.05);
}

TEST_F(FleetTest, AStaleGenerationFromAnotherReplicaIsAConflict) {
  auto a = replica("a");
  auto b = replica("b");
  const auto seen = generation(*b);
  ASSERT_EQ(act(*a, Action::set_weight, seen, 0.5).status, 200u);
  auto reply = act(*b, Action::pause, seen);
  EXPECT_EQ(reply.status, 409u);
  EXPECT_EQ(error_code(reply), "stale_generation");
  EXPECT_DOUBLE_EQ(b->routed_weight(kMigration), 0.5);
}

TEST_F(FleetTest, WhenTheLeaderStopsAnotherReplicaTakesOver) {
  auto a = replica("a");
  auto b = replica("b");
  ASSERT_TRUE(wait_until([&] { return a->leading(); }));
  a->stop();
  EXPECT_TRUE(wait_until([&] { return b->leading() && b->evaluations() > 0; }));
}

TEST_F(FleetTest, RedisDownKeepsTheLastWeightAndRefusesCommandsUntilItReturns) {
  auto a = replica("a");
  auto b = replica("b");
  ASSERT_EQ(act(*a, Action::set_weight, generation(*a), 0.5).status, 200u);
  ASSERT_TRUE(wait_until([&] { return b->routed_weight(kMigration) == 0.5; }));
  redis_.stop();
  ASSERT_TRUE(wait_until([&] { return !a->store_up() && !b->store_up(); }));
  EXPECT_TRUE(wait_until([&] { return !a->leading(); }));
  EXPECT_DOUBLE_EQ(a->routed_weight(kMigration), 0.5);
  EXPECT_DOUBLE_EQ(b->routed_weight(kMigration), 0.5);
  auto reply = act(*b, Action::promote_full, generation(*b));
  EXPECT_EQ(reply.status, 503u);
  EXPECT_EQ(b->phase_of(kMigration).first, Phase::canary);
  redis_.start();
  EXPECT_TRUE(wait_until([&] { return a->store_up() && b->store_up(); }));
  EXPECT_TRUE(wait_until([&] { return a->leading() || b->leading(); }));
  EXPECT_DOUBLE_EQ(b->routed_weight(kMigration), 0.5);
}

TEST_F(FleetTest, AReplicaStartingWhileRedisIsDownServesThePrimaryUntilItCanRead) {
  {
    auto a = replica("a");
    ASSERT_EQ(act(*a, Action::set_weight, generation(*a), 0.5).status, 200u);
  }
  redis_.stop();
  auto b = replica("b");
  EXPECT_FALSE(b->store_up());
  EXPECT_DOUBLE_EQ(b->routed_weight(kMigration), 0.0);
  redis_.start();
  // The restarted test Redis saved nothing, so the replica creates the record afresh.
  EXPECT_TRUE(wait_until([&] { return b->routed_weight(kMigration) == 0.05; }));
  EXPECT_TRUE(b->store_up());
}

TEST_F(FleetTest, AReplicaOnTheOldConfigurationHoldsItsWeightWhenAnotherRestartsTheMigration) {
  auto a = replica("a");
  ASSERT_EQ(act(*a, Action::set_weight, generation(*a), 0.5).status, 200u);
  // b runs a new ladder: the migration restarts from its first stage, for b's configuration.
  auto b = replica("b", "      - {weight: 10%, min_duration: 1h, min_requests: 30}\n");
  EXPECT_EQ(generation(*b), 3);
  EXPECT_DOUBLE_EQ(b->routed_weight(kMigration), 0.1);
  auto reply = act(*a, Action::promote_full, generation(*a));
  EXPECT_EQ(reply.status, 503u);
  EXPECT_EQ(generation(*a), 2);
  EXPECT_DOUBLE_EQ(a->routed_weight(kMigration), 0.5);
}

}  // namespace
}  // namespace cutover::testing
