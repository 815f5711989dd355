// The Redis state store against a real redis-server: compare-and-set with its journal, Redis's
// clock on the stage, the fencing term, the lease, and what an unreachable Redis looks like.
#include "store/redis_state_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "redis_server.h"
#include "util/clock.h"

namespace cutover::testing {
namespace {

using store::CommitResult;

store::MigrationRecord record(std::int64_t generation, double weight, int stage) {
  store::MigrationRecord r;
  r.migration = "m";
  r.state = "canary";
  r.weight = weight;
  r.stage = stage;
  r.stage_started_unix_ms = 1;  // replaced by Redis's clock
  r.generation = generation;
  r.config_fingerprint = "fp";
  r.annotations = R"({"reason":"x"})";
  return r;
}

store::Transition transition(std::int64_t generation, double before, double after,
                             std::string trigger) {
  store::Transition t;
  t.migration = "m";
  t.generation = generation;
  t.at_unix_ms = 1;
  t.from_state = generation == 1 ? "" : "canary";
  t.to_state = "canary";
  t.weight_before = before;
  t.weight_after = after;
  t.trigger = std::move(trigger);
  t.detail = R"({"figures":[1,2]})";
  return t;
}

class RedisStateStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<store::RedisStateStore> open(
      std::string replica, std::chrono::milliseconds lease = std::chrono::seconds(3)) {
    config::RedisStore settings;
    settings.host = "127.0.0.1";
    settings.port = redis_.port();
    settings.key_prefix = "test";
    settings.replica = std::move(replica);
    settings.lease = lease;
    settings.display_url = redis_.url();
    return store::open_redis_store(settings, ":memory:");
  }

  RedisServer redis_;
};

TEST_F(RedisStateStoreTest, CommitWritesTheRecordAndItsJournalEntryStampedWithRedisTime) {
  auto store = open("a");
  EXPECT_FALSE(store->load("m"));
  const auto before = util::unix_ms_now();
  auto committed =
      store->commit_as(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0, std::nullopt);
  ASSERT_EQ(committed.result, CommitResult::committed);
  EXPECT_GE(committed.at_unix_ms, before - 1000);
  EXPECT_LE(committed.at_unix_ms, util::unix_ms_now() + 1000);

  auto loaded = store->load("m");
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->generation, 1);
  EXPECT_DOUBLE_EQ(loaded->weight, 0.05);
  EXPECT_EQ(loaded->state, "canary");
  EXPECT_EQ(loaded->config_fingerprint, "fp");
  EXPECT_EQ(loaded->annotations, R"({"reason":"x"})");
  EXPECT_EQ(loaded->stage_started_unix_ms, committed.at_unix_ms);

  auto history = store->history("m", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].generation, 1);
  EXPECT_EQ(history[0].at_unix_ms, committed.at_unix_ms);
  EXPECT_EQ(history[0].trigger, "created");
  EXPECT_EQ(history[0].detail, R"({"figures":[1,2]})");
  EXPECT_DOUBLE_EQ(history[0].weight_after, 0.05);
}

TEST_F(RedisStateStoreTest, AnEntryThatMovesNothingKeepsTheStageClockAndAMoveRestartsIt) {
  auto store = open("a");
  const auto first =
      store->commit_as(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0, std::nullopt);
  ASSERT_EQ(first.result, CommitResult::committed);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // A capacity hold: same state, stage and weight, a new generation and journal entry.
  const auto hold = store->commit_as(record(2, 0.05, 0), transition(2, 0.05, 0.05, "gates:capacity_hold"),
                                     1, std::nullopt);
  ASSERT_EQ(hold.result, CommitResult::committed);
  EXPECT_GT(hold.at_unix_ms, first.at_unix_ms);
  EXPECT_EQ(store->load("m")->stage_started_unix_ms, first.at_unix_ms);
  EXPECT_EQ(store->load("m")->generation, 2);
  EXPECT_EQ(store->history("m", 10).back().trigger, "gates:capacity_hold");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto advance =
      store->commit_as(record(3, 0.25, 1), transition(3, 0.05, 0.25, "gates:pass"), 2, std::nullopt);
  ASSERT_EQ(advance.result, CommitResult::committed);
  EXPECT_EQ(store->load("m")->stage_started_unix_ms, advance.at_unix_ms);
  EXPECT_GT(advance.at_unix_ms, first.at_unix_ms);
}

store::ShadowPair shadow_pair(std::string request_id, double score) {
  store::ShadowPair p;
  p.migration = "m";
  p.at_unix_ms = 1'700'000'000'000;
  p.request_id = std::move(request_id);
  p.model = "gpt-4";
  p.primary_status = 200;
  p.candidate_status = 200;
  p.primary_latency_ms = 120.5;
  p.candidate_latency_ms = 80.25;
  p.primary_cost = 0.002;
  p.candidate_cost = 0.001;
  p.score = score;
  p.json_equal = -1;
  p.prompt_hash = "hash";
  p.prompt_text = "the prompt, kept on the replica";
  return p;
}

TEST_F(RedisStateStoreTest, EveryReplicasShadowPairsAreTheFleetsWithoutTheirTexts) {
  auto a = open("a");
  auto b = open("b");
  a->record_shadow_pairs({shadow_pair("r1", 0.9), shadow_pair("r2", 0.8)}, 3);
  b->record_shadow_pairs({shadow_pair("r3", 0.7), shadow_pair("r4", 0.6)}, 3);
  // Any replica reads the fleet's newest pairs, up to the retention.
  const auto pairs = a->shadow_pairs("m", 10);
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0].request_id, "r2");
  EXPECT_EQ(pairs[2].request_id, "r4");
  EXPECT_DOUBLE_EQ(pairs[2].score, 0.6);
  EXPECT_DOUBLE_EQ(pairs[2].candidate_latency_ms, 80.25);
  EXPECT_DOUBLE_EQ(pairs[2].primary_cost, 0.002);
  EXPECT_EQ(pairs[2].json_equal, -1);
  EXPECT_EQ(pairs[2].prompt_hash, "hash");
  EXPECT_TRUE(pairs[2].prompt_text.empty()) << "texts stay in the replica's own file";
  EXPECT_EQ(b->shadow_pairs("m", 2).size(), 2u);
  // Without Redis, a replica's own pairs (its local file, texts included) are what it has.
  redis_.stop();
  const auto own = b->shadow_pairs("m", 10);
  ASSERT_EQ(own.size(), 2u);
  EXPECT_EQ(own[0].request_id, "r3");
  EXPECT_EQ(own[0].prompt_text, "the prompt, kept on the replica");
}

TEST_F(RedisStateStoreTest, StaleGenerationIsRefusedAndWritesNothing) {
  auto store = open("a");
  ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0),
            CommitResult::committed);
  ASSERT_EQ(store->commit(record(2, 0.25, 1), transition(2, 0.05, 0.25, "gates:pass"), 1),
            CommitResult::committed);
  EXPECT_EQ(store->commit(record(2, 0.5, 1), transition(2, 0.05, 0.5, "operator:late"), 1),
            CommitResult::stale_generation);
  EXPECT_DOUBLE_EQ(store->load("m")->weight, 0.25);
  auto history = store->history("m", 10);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].generation, 1);
  EXPECT_EQ(history[1].generation, 2);
}

TEST_F(RedisStateStoreTest, TwoReplicasRacingOnOneGenerationCommitExactlyOnce) {
  auto a = open("a");
  auto b = open("b");
  ASSERT_EQ(a->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0),
            CommitResult::committed);
  const auto first = a->commit(record(2, 0.25, 1), transition(2, 0.05, 0.25, "a"), 1);
  const auto second = b->commit(record(2, 0.5, 1), transition(2, 0.05, 0.5, "b"), 1);
  EXPECT_EQ(first, CommitResult::committed);
  EXPECT_EQ(second, CommitResult::stale_generation);
  EXPECT_EQ(b->history("m", 10).size(), 2u);
}

TEST_F(RedisStateStoreTest, OnlyOneReplicaHoldsTheLeaseAndEachNewHolderGetsAHigherTerm) {
  auto a = open("a");
  auto b = open("b");
  auto term_a = a->hold_lease(std::nullopt);
  ASSERT_TRUE(term_a);
  EXPECT_FALSE(b->hold_lease(std::nullopt));
  EXPECT_EQ(a->hold_lease(term_a), term_a);  // renewal keeps the term
  EXPECT_EQ(b->leader(), "a|" + std::to_string(*term_a));
  a->release_lease(*term_a);
  auto term_b = b->hold_lease(std::nullopt);
  ASSERT_TRUE(term_b);
  EXPECT_GT(*term_b, *term_a);
  EXPECT_FALSE(a->hold_lease(term_a));
}

TEST_F(RedisStateStoreTest, LeaderWhoseLeaseWasTakenCannotCommitButAnOperatorCan) {
  auto a = open("a", std::chrono::milliseconds(1000));
  auto b = open("b", std::chrono::milliseconds(1000));
  auto term_a = a->hold_lease(std::nullopt);
  ASSERT_TRUE(term_a);
  const store::Fence fence_a{"a", *term_a};
  ASSERT_EQ(a->commit_as(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0, fence_a).result,
            CommitResult::committed);
  // a stops renewing (paused, partitioned): its lease expires and b takes over.
  std::optional<std::int64_t> term_b;
  ASSERT_TRUE(wait_until([&] { return (term_b = b->hold_lease(std::nullopt)).has_value(); }));
  EXPECT_EQ(
      a->commit_as(record(2, 0.25, 1), transition(2, 0.05, 0.25, "gates:pass"), 1, fence_a).result,
      CommitResult::not_leader);
  EXPECT_EQ(a->load("m")->generation, 1);
  EXPECT_EQ(b->commit_as(record(2, 0.25, 1), transition(2, 0.05, 0.25, "gates:pass"), 1,
                         store::Fence{"b", *term_b})
                .result,
            CommitResult::committed);
  EXPECT_EQ(a->commit_as(record(3, 0, 1), transition(3, 0.25, 0, "operator:alice"), 2, std::nullopt)
                .result,
            CommitResult::committed);
}

TEST_F(RedisStateStoreTest, CommitStillWorksAfterRedisForgetsItsScripts) {
  auto store = open("a");
  ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0),
            CommitResult::committed);
  ASSERT_EQ(redis_.command({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_EQ(store->commit(record(2, 0.25, 1), transition(2, 0.05, 0.25, "gates:pass"), 1),
            CommitResult::committed);
}

TEST_F(RedisStateStoreTest, KeysCarryThePrefixSoSeveralGatewaysCanShareOneRedis) {
  auto store = open("a");
  ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0),
            CommitResult::committed);
  EXPECT_EQ(redis_.command({"HGET", "{test}:migration:m", "generation"}), "1");
  EXPECT_EQ(redis_.command({"LLEN", "{test}:migration:m:journal"}), "1");
}

TEST_F(RedisStateStoreTest, UnreachableRedisIsUnavailableNotEmptyAndRecoversWhenItReturns) {
  auto store = open("a");
  ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "created"), 0),
            CommitResult::committed);
  EXPECT_TRUE(store->up());
  redis_.stop();
  EXPECT_THROW(store->load("m"), store::StoreUnavailable);
  EXPECT_FALSE(store->up());
  EXPECT_EQ(store->commit(record(2, 0.25, 1), transition(2, 0.05, 0.25, "x"), 1),
            CommitResult::failed);
  EXPECT_FALSE(store->hold_lease(std::nullopt));
  redis_.start();
  // The store reconnects at most once a second; the restarted Redis saved nothing.
  EXPECT_TRUE(wait_until([&] {
    try {
      return !store->load("m").has_value();
    } catch (const store::StoreUnavailable&) {
      return false;
    }
  }));
  EXPECT_TRUE(store->up());
}

}  // namespace
}  // namespace cutover::testing
