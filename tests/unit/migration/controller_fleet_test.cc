// The controller over a store several replicas share: gate transitions carry the leader's fence,
// operators' commands do not, the store's clock stamps the stage, a stale commit is a conflict,
// and a record another replica committed is adopted.
#include <gtest/gtest.h>

#include "config/config.h"
#include "migration/controller.h"

namespace cutover::migration {
namespace {

using std::chrono::milliseconds;

config::Migration settings() {
  config::Migration m;
  m.name = "to-relay";
  m.models = {"gpt-4"};
  m.primary = "openai";
  m.candidate = "relay";
  m.salt = "to-relay";
  m.stages = {{0.05, milliseconds(10'000), 100}, {1.0, milliseconds(10'000), 100}};
  m.gates.max_error_rate = 0.05;
  m.gates.max_attempt_error_rate = 0.10;
  m.gates.confidence = 0.95;
  m.gates.min_latency_samples = 59;
  m.gates.latency = {};
  m.fingerprint = "v1";
  return m;
}

WindowSnapshot healthy() {
  WindowSnapshot w;
  w.candidate.requests = 400;
  w.candidate_attempts = 400;
  w.primary.requests = 1000;
  return w;
}

// A SQLite store that behaves like a shared one: its own clock, fences recorded, and a result
// the test may force.
class SharedStoreFake : public store::StateStore {
 public:
  store::CommitResult commit(const store::MigrationRecord& next,
                             const store::Transition& transition,
                             std::int64_t expected_generation) override {
    return inner_->commit(next, transition, expected_generation);
  }
  store::Committed commit_as(const store::MigrationRecord& next,
                             const store::Transition& transition, std::int64_t expected_generation,
                             const std::optional<store::Fence>& fence) override {
    fences.push_back(fence);
    if (forced) return {*forced, 0};
    auto stamped = next;
    stamped.stage_started_unix_ms = kStoreClock;
    auto journaled = transition;
    journaled.at_unix_ms = kStoreClock;
    return {inner_->commit(stamped, journaled, expected_generation), kStoreClock};
  }
  std::optional<store::MigrationRecord> load(std::string_view m) override {
    return inner_->load(m);
  }
  std::vector<store::Transition> history(std::string_view m, std::size_t limit) override {
    return inner_->history(m, limit);
  }
  void record_shadow_pairs(const std::vector<store::ShadowPair>& p, std::size_t r) override {
    inner_->record_shadow_pairs(p, r);
  }
  std::vector<store::ShadowPair> shadow_pairs(std::string_view m, std::size_t limit) override {
    return inner_->shadow_pairs(m, limit);
  }
  void record_usage(const std::vector<store::UsageRow>& rows) override {
    inner_->record_usage(rows);
  }
  std::vector<store::UsageRow> usage(std::int64_t from, std::int64_t to) override {
    return inner_->usage(from, to);
  }

  static constexpr std::int64_t kStoreClock = 1'600'000'000'000;
  std::vector<std::optional<store::Fence>> fences;
  std::optional<store::CommitResult> forced;

 private:
  std::unique_ptr<store::StateStore> inner_ = store::open_sqlite_store(":memory:");
};

class ControllerFleetTest : public ::testing::Test {
 protected:
  ControllerFleetTest() : controller_(settings_, store_, [this] { return now_ms_; }) {
    controller_.start();
  }
  Command command(Action action) {
    Command out;
    out.action = action;
    out.expected_generation = controller_.record().generation;
    out.actor = "alice";
    return out;
  }

  config::Migration settings_ = settings();
  SharedStoreFake store_;
  std::int64_t now_ms_ = 1'700'000'000'000;
  Controller controller_;
};

TEST_F(ControllerFleetTest, TheStoresClockStampsTheStageAndTheJournal) {
  EXPECT_EQ(controller_.record().stage_started_unix_ms, SharedStoreFake::kStoreClock);
  EXPECT_EQ(store_.history("to-relay", 1).front().at_unix_ms, SharedStoreFake::kStoreClock);
}

TEST_F(ControllerFleetTest, GateTransitionsCarryTheLeadersFenceAndOperatorsCommandsNone) {
  now_ms_ = SharedStoreFake::kStoreClock + 20'000;
  ASSERT_TRUE(controller_.evaluate(healthy(), store::Fence{"a", 7}));
  ASSERT_TRUE(store_.fences.back());
  EXPECT_EQ(store_.fences.back()->replica, "a");
  EXPECT_EQ(store_.fences.back()->term, 7);
  ASSERT_EQ(controller_.apply(command(Action::pause)).http_status, 200u);
  EXPECT_FALSE(store_.fences.back());
}

TEST_F(ControllerFleetTest, ALeaderWithoutItsLeaseChangesNothing) {
  now_ms_ = SharedStoreFake::kStoreClock + 20'000;
  store_.forced = store::CommitResult::not_leader;
  EXPECT_FALSE(controller_.evaluate(healthy(), store::Fence{"a", 7}));
  EXPECT_EQ(controller_.record().generation, 1);
  EXPECT_DOUBLE_EQ(controller_.weight(), 0.05);
}

TEST_F(ControllerFleetTest, ACommandBeatenByAnotherReplicaIsAConflict) {
  store_.forced = store::CommitResult::stale_generation;
  auto result = controller_.apply(command(Action::pause));
  EXPECT_EQ(result.http_status, 409u);
  EXPECT_EQ(controller_.phase(), Phase::canary);
}

TEST_F(ControllerFleetTest, AssessingABreachJudgesItWithoutWritingAnything) {
  auto failing = healthy();
  failing.candidate.errors = 400;
  failing.candidate_attempt_failures = 400;
  const auto writes = store_.fences.size();
  EXPECT_EQ(controller_.assess(failing).overall, Verdict::fail);
  EXPECT_EQ(store_.fences.size(), writes);
  EXPECT_EQ(controller_.phase(), Phase::canary);
  EXPECT_EQ(controller_.record().generation, 1);
}

TEST_F(ControllerFleetTest, ARecordAnotherReplicaCommittedIsAdopted) {
  EXPECT_FALSE(controller_.adopt(controller_.record()));
  Controller other(settings_, store_, [this] { return now_ms_; });
  other.start();
  auto pause = command(Action::pause);
  ASSERT_EQ(other.apply(pause).http_status, 200u);
  EXPECT_TRUE(controller_.adopt(*store_.load("to-relay")));
  EXPECT_EQ(controller_.phase(), Phase::paused);
  EXPECT_EQ(controller_.record().generation, 2);
  ASSERT_EQ(controller_.apply(command(Action::resume)).http_status, 200u);
  EXPECT_EQ(controller_.phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(controller_.weight(), 0.05);
}

}  // namespace
}  // namespace cutover::migration
