#include "migration/controller.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "config/config.h"

namespace cutover::migration {
namespace {

using std::chrono::milliseconds;

config::Migration migration_settings() {
  config::Migration m;
  m.name = "to-relay";
  m.models = {"gpt-4"};
  m.primary = "openai";
  m.candidate = "relay";
  m.salt = "to-relay";
  m.stages = {{0.05, milliseconds(10'000), 100},
              {0.25, milliseconds(10'000), 100},
              {1.0, milliseconds(10'000), 100}};
  m.gates.max_error_rate = 0.05;
  m.gates.max_attempt_error_rate = 0.10;
  m.gates.confidence = 0.95;
  m.gates.latency = {{config::LatencyGate::Measure::total, 0.95, std::nullopt, 1.5}};
  m.gates.min_latency_samples = 59;
  m.rollback.steps = {0.10, 0.02, 0};
  m.rollback.step_duration = milliseconds(5'000);
  m.fingerprint = "v1";
  return m;
}

// `count` latencies spread evenly around `center` (±10 %).
std::vector<double> latencies(std::size_t count, double center) {
  std::vector<double> out;
  for (std::size_t i = 0; i < count; ++i) {
    out.push_back(center * (0.9 + 0.2 * static_cast<double>(i) / static_cast<double>(count)));
  }
  return out;
}

WindowSnapshot window(std::uint64_t candidate_requests, std::uint64_t candidate_errors,
                      double candidate_ms = 100, double primary_ms = 100) {
  WindowSnapshot w;
  w.candidate.requests = candidate_requests;
  w.candidate.errors = candidate_errors;
  w.candidate.latency_ms = latencies(candidate_requests - candidate_errors, candidate_ms);
  w.primary.requests = 1000;
  w.primary.latency_ms = latencies(1000, primary_ms);
  w.candidate_attempts = candidate_requests;
  w.candidate_attempt_failures = candidate_errors;
  return w;
}

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("cutover-controller-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    remove_files();
    store_ = store::open_sqlite_store(path_.string());
  }
  void TearDown() override {
    store_.reset();
    remove_files();
  }
  void remove_files() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_.string() + suffix);
  }
  std::unique_ptr<Controller> controller(const config::Migration& settings) {
    auto c = std::make_unique<Controller>(settings, *store_, [this] { return now_ms_; });
    c->start();
    return c;
  }
  Command command(Action action, const Controller& c) {
    Command out;
    out.action = action;
    out.expected_generation = c.record().generation;
    out.actor = "alice";
    return out;
  }

  void set_weight(Controller& c, double weight) {
    auto set = command(Action::set_weight, c);
    set.weight = weight;
    ASSERT_EQ(c.apply(set).http_status, 200u);
  }

  std::filesystem::path path_;
  std::unique_ptr<store::StateStore> store_;
  std::int64_t now_ms_ = 1'700'000'000'000;
};

TEST_F(ControllerTest, StartsInCanaryAtTheFirstStageAndJournalsIt) {
  auto settings = migration_settings();
  auto c = controller(settings);
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
  const auto history = store_->history("to-relay", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].trigger, "created");
  EXPECT_EQ(history[0].to_state, "canary");
}

TEST_F(ControllerTest, StartsInShadowWhenShadowingIsConfigured) {
  auto settings = migration_settings();
  settings.shadow.sample_rate = 0.5;
  auto c = controller(settings);
  EXPECT_EQ(c->phase(), Phase::shadow);
  EXPECT_DOUBLE_EQ(c->weight(), 0);
  EXPECT_TRUE(c->shadowing());
}

TEST_F(ControllerTest, HealthyCandidateWalksEveryStageOnlyAfterEachDwell) {
  auto settings = migration_settings();
  auto c = controller(settings);
  const auto healthy = window(400, 0);
  // The gates pass at once, but the stage's minimum duration has not elapsed.
  EXPECT_FALSE(c->evaluate(healthy));
  EXPECT_EQ(c->last_evaluation().overall, Verdict::pass);
  now_ms_ += 9'999;
  EXPECT_FALSE(c->evaluate(healthy));
  now_ms_ += 1;
  ASSERT_TRUE(c->evaluate(healthy));
  EXPECT_DOUBLE_EQ(c->weight(), 0.25);
  now_ms_ += 10'000;
  ASSERT_TRUE(c->evaluate(healthy));
  EXPECT_DOUBLE_EQ(c->weight(), 1.0);
  EXPECT_EQ(c->phase(), Phase::canary);
  now_ms_ += 10'000;
  ASSERT_TRUE(c->evaluate(healthy));
  EXPECT_EQ(c->phase(), Phase::promoted);
  EXPECT_FALSE(c->evaluate(window(400, 300)));  // promoted is final
  const auto history = store_->history("to-relay", 10);
  ASSERT_EQ(history.size(), 4u);
  EXPECT_EQ(history[1].trigger, "gates:pass");
  EXPECT_DOUBLE_EQ(history[1].weight_before, 0.05);
  EXPECT_DOUBLE_EQ(history[1].weight_after, 0.25);
}

TEST_F(ControllerTest, TooFewCandidateRequestsHoldTheStage) {
  auto settings = migration_settings();
  auto c = controller(settings);
  now_ms_ += 10'000;
  // Passing gates on 80 requests are not enough for a stage that asks for 100.
  auto few = window(80, 0);
  few.candidate.latency_ms = latencies(80, 100);
  EXPECT_FALSE(c->evaluate(few));
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
}

TEST_F(ControllerTest, ErrorBreachRollsBackToZeroAtOnceAndStaysThere) {
  auto settings = migration_settings();
  auto c = controller(settings);
  ASSERT_TRUE(c->evaluate(window(200, 30)));  // 15 % against a 5 % limit, mid-dwell
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_DOUBLE_EQ(c->weight(), 0);
  const auto last = store_->history("to-relay", 1).back();
  // The window's bounds and the change detector both see it (the attempt detector, watching a
  // 10 % limit, not yet).
  EXPECT_EQ(last.trigger, "gate:error_rate,attempt_error_rate,error_rate_change");
  EXPECT_NE(last.detail.find("breach"), std::string::npos);
  EXPECT_EQ(c->annotations().at("automatic").as_bool(), true);
  // No automatic promotion after an automatic rollback, however good the figures.
  now_ms_ += 60'000;
  EXPECT_FALSE(c->evaluate(window(400, 0)));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  // An operator restarts it from the first stage.
  auto resumed = c->apply(command(Action::resume, *c));
  ASSERT_EQ(resumed.http_status, 200u) << resumed.error;
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
}

TEST_F(ControllerTest, FewErrorsAreInconclusiveNotABreach) {
  auto settings = migration_settings();
  auto c = controller(settings);
  EXPECT_FALSE(c->evaluate(window(20, 2)));  // 10 % of 20: the lower bound is still below 5 %
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_EQ(c->last_evaluation().gates.front().verdict, Verdict::inconclusive);
}

TEST_F(ControllerTest, SlowCandidateBreachesTheRelativeLatencyGate) {
  auto settings = migration_settings();
  auto c = controller(settings);
  ASSERT_TRUE(c->evaluate(window(200, 0, 300, 100)));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_EQ(store_->history("to-relay", 1).back().trigger, "gate:latency_p95");
}

TEST_F(ControllerTest, LatencyNearTheLimitHolds) {
  auto settings = migration_settings();
  auto c = controller(settings);
  now_ms_ += 10'000;
  EXPECT_FALSE(c->evaluate(window(200, 0, 150, 100)));
  EXPECT_EQ(c->phase(), Phase::canary);
}

TEST_F(ControllerTest, NoDataPausesAfterSeveralDwells) {
  auto settings = migration_settings();
  settings.gates.inconclusive_dwells_before_pause = 2;
  auto c = controller(settings);
  WindowSnapshot empty;
  now_ms_ += 29'999;
  EXPECT_FALSE(c->evaluate(empty));
  now_ms_ += 1;
  ASSERT_TRUE(c->evaluate(empty));
  EXPECT_EQ(c->phase(), Phase::paused);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
  EXPECT_EQ(std::string(c->annotations().at("reason").as_string()), "insufficient_data");
  // Resuming returns to the stage it paused in.
  auto result = c->apply(command(Action::resume, *c));
  ASSERT_EQ(result.http_status, 200u);
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_EQ(c->record().stage, 0);
}

TEST_F(ControllerTest, PauseHoldsTheWeightButABreachStillRollsBack) {
  auto settings = migration_settings();
  auto c = controller(settings);
  ASSERT_EQ(c->apply(command(Action::pause, *c)).http_status, 200u);
  now_ms_ += 60'000;
  EXPECT_FALSE(c->evaluate(window(400, 0)));
  EXPECT_EQ(c->phase(), Phase::paused);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
  ASSERT_TRUE(c->evaluate(window(400, 100)));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
}

TEST_F(ControllerTest, StaleGenerationIsRefused) {
  auto settings = migration_settings();
  auto c = controller(settings);
  auto promote = command(Action::promote, *c);
  auto abort = command(Action::abort, *c);  // decided on the same generation
  ASSERT_EQ(c->apply(promote).http_status, 200u);
  const auto refused = c->apply(abort);
  EXPECT_EQ(refused.http_status, 409u);
  EXPECT_NE(refused.error.find("stale"), std::string::npos);
  EXPECT_DOUBLE_EQ(c->weight(), 0.25);
}

TEST_F(ControllerTest, OperatorCommandsMoveAsDocumented) {
  auto settings = migration_settings();
  auto c = controller(settings);
  set_weight(*c, 0.5);
  EXPECT_DOUBLE_EQ(c->weight(), 0.5);
  EXPECT_EQ(c->record().stage, 2);  // the first stage at or above 50 %
  auto bad = command(Action::set_weight, *c);
  bad.weight = 1.5;
  EXPECT_EQ(c->apply(bad).http_status, 400u);
  ASSERT_EQ(c->apply(command(Action::promote_full, *c)).http_status, 200u);
  EXPECT_EQ(c->phase(), Phase::promoted);
  EXPECT_DOUBLE_EQ(c->weight(), 1.0);
  EXPECT_EQ(store_->history("to-relay", 1).back().trigger, "operator:alice");
}

TEST_F(ControllerTest, GradualRollbackWalksDownAndASecondRollbackSpeedsItUp) {
  auto settings = migration_settings();
  auto c = controller(settings);
  set_weight(*c, 0.5);
  ASSERT_EQ(c->apply(command(Action::rollback, *c)).http_status, 200u);
  EXPECT_EQ(c->phase(), Phase::rolling_back);
  EXPECT_DOUBLE_EQ(c->weight(), 0.10);
  // One-way: no promotion or pause during a rollback.
  EXPECT_EQ(c->apply(command(Action::promote, *c)).http_status, 400u);
  EXPECT_EQ(c->apply(command(Action::pause, *c)).http_status, 400u);
  now_ms_ += 4'999;
  EXPECT_FALSE(c->evaluate(window(100, 0)));
  now_ms_ += 1;
  ASSERT_TRUE(c->evaluate(window(100, 0)));
  EXPECT_DOUBLE_EQ(c->weight(), 0.02);
  ASSERT_EQ(c->apply(command(Action::rollback, *c)).http_status, 200u);
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_DOUBLE_EQ(c->weight(), 0);
}

TEST_F(ControllerTest, AbortDuringGradualRollbackGoesToZeroAtOnce) {
  auto settings = migration_settings();
  auto c = controller(settings);
  set_weight(*c, 0.5);
  ASSERT_EQ(c->apply(command(Action::rollback, *c)).http_status, 200u);
  ASSERT_EQ(c->apply(command(Action::abort, *c)).http_status, 200u);
  EXPECT_EQ(c->phase(), Phase::aborted);
  EXPECT_DOUBLE_EQ(c->weight(), 0);
}

TEST_F(ControllerTest, BreachDuringGradualRollbackGoesToZero) {
  auto settings = migration_settings();
  auto c = controller(settings);
  set_weight(*c, 0.5);
  ASSERT_EQ(c->apply(command(Action::rollback, *c)).http_status, 200u);
  ASSERT_TRUE(c->evaluate(window(200, 40)));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_DOUBLE_EQ(c->weight(), 0);
}

TEST_F(ControllerTest, RestartResumesPhaseWeightAndStageClock) {
  auto settings = migration_settings();
  std::int64_t stage_started = 0;
  {
    auto c = controller(settings);
    now_ms_ += 10'000;
    ASSERT_TRUE(c->evaluate(window(400, 0)));
    stage_started = c->record().stage_started_unix_ms;
  }
  store_ = store::open_sqlite_store(path_.string());
  now_ms_ += 6'000;
  auto resumed = controller(settings);
  EXPECT_EQ(resumed->phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(resumed->weight(), 0.25);
  EXPECT_EQ(resumed->record().stage_started_unix_ms, stage_started);
  // The dwell counts from the original start: 4 more seconds, not 10.
  now_ms_ += 3'999;
  EXPECT_FALSE(resumed->evaluate(window(400, 0)));
  now_ms_ += 1;
  EXPECT_TRUE(resumed->evaluate(window(400, 0)));
  EXPECT_DOUBLE_EQ(resumed->weight(), 1.0);
}

TEST_F(ControllerTest, CandidateConfigurationChangeRestartsFromTheStart) {
  auto settings = migration_settings();
  {
    auto c = controller(settings);
    set_weight(*c, 0.5);
  }
  settings.fingerprint = "v2";
  auto c = controller(settings);
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
  const auto last = store_->history("to-relay", 1).back();
  EXPECT_EQ(last.trigger, "config_change");
  EXPECT_DOUBLE_EQ(last.weight_before, 0.5);
}

TEST_F(ControllerTest, ShadowPhaseAdvancesOnAgreementAndPairs) {
  auto settings = migration_settings();
  settings.shadow.sample_rate = 1.0;
  settings.shadow.min_pairs = 60;
  settings.shadow.min_duration = milliseconds(1'000);
  settings.gates.min_agreement = 0.8;
  settings.gates.min_shadow_pairs = 60;
  auto c = controller(settings);
  WindowSnapshot w;
  for (int i = 0; i < 80; ++i) {
    PairSample pair;
    pair.compared = true;
    pair.score = 0.95;
    pair.primary_latency_ms = 100 + i % 7;
    pair.candidate_latency_ms = 100 + i % 5;
    w.pairs.push_back(pair);
  }
  EXPECT_FALSE(c->evaluate(w));  // dwell
  now_ms_ += 1'000;
  ASSERT_TRUE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
}

TEST_F(ControllerTest, ShadowDisagreementRollsBackBeforeAnyTrafficMoves) {
  auto settings = migration_settings();
  settings.shadow.sample_rate = 1.0;
  settings.gates.min_agreement = 0.8;
  settings.gates.min_shadow_pairs = 30;
  auto c = controller(settings);
  WindowSnapshot w;
  for (int i = 0; i < 60; ++i) {
    PairSample pair;
    pair.compared = true;
    pair.score = i % 2 ? 0.2 : 0.3;
    pair.primary_latency_ms = pair.candidate_latency_ms = 100;
    w.pairs.push_back(pair);
  }
  ASSERT_TRUE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_EQ(store_->history("to-relay", 1).back().trigger, "gate:agreement");
}

TEST_F(ControllerTest, AFailureLateInALongHealthyStageRollsBackOnItsNewestRequests) {
  auto settings = migration_settings();
  auto c = controller(settings);
  // 20,000 healthy requests (0.3 % errors), then 200 more of which 30 % fail: the stage window
  // (0.6 % overall) still passes, the change detector sees the rise.
  EXPECT_FALSE(c->evaluate(window(20'000, 60)));
  const auto later = window(20'200, 120);
  ASSERT_TRUE(c->evaluate(later));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_DOUBLE_EQ(c->weight(), 0.0);
  EXPECT_EQ(store_->history("to-relay", 1).back().trigger,
            "gate:error_rate_change,attempt_error_rate_change");
  for (const auto& gate : c->last_evaluation().gates) {
    if (gate.name == "error_rate") {
      EXPECT_EQ(gate.verdict, Verdict::pass);
    }
    if (gate.name == "error_rate_change") {
      EXPECT_EQ(gate.figures.at("failures").as_uint64(), 60u);
      EXPECT_EQ(gate.figures.at("trials").as_uint64(), 200u);
    }
  }
}

TEST_F(ControllerTest, AHealthyCandidateNeverTripsTheChangeDetectorAndItNeverHoldsAStage) {
  auto settings = migration_settings();
  auto c = controller(settings);
  // Half the allowed error rate, 50 requests an evaluation, 200,000 requests: no breach. The
  // clock stands still so the stage's dwell never ends and only a breach could move it.
  std::mt19937_64 random(7);
  std::bernoulli_distribution fails(settings.gates.max_error_rate / 2);
  WindowSnapshot w;
  for (int evaluation = 0; evaluation < 4'000; ++evaluation) {
    for (int i = 0; i < 50; ++i) {
      const bool failed = fails(random);
      ++w.candidate.requests;
      ++w.candidate_attempts;
      w.candidate.errors += failed;
      w.candidate_attempt_failures += failed;
    }
    ASSERT_FALSE(c->evaluate(w)) << "evaluation " << evaluation;
  }
  EXPECT_EQ(c->phase(), Phase::canary);
  // After the dwell, with the gates passing, the stage advances: the detector only ever fails.
  now_ms_ += 10'000;
  auto healthy = window(400, 0);
  ASSERT_TRUE(c->evaluate(healthy));
  EXPECT_DOUBLE_EQ(c->weight(), 0.25);
}

CandidateQuota request_quota(double limit) {
  CandidateQuota quota;
  quota.requests.limit = limit;
  return quota;
}

const GateResult* gate_named(const Evaluation& evaluation, std::string_view name) {
  for (const auto& gate : evaluation.gates) {
    if (gate.name == name) return &gate;
  }
  return nullptr;
}

TEST_F(ControllerTest, ACandidateWithASmallQuotaHoldsAReadyStageWithoutPausingOrRollingBack) {
  auto settings = migration_settings();
  auto c = controller(settings);
  // 1,400 requests on the route in the stage's 10 s: 8,400 a minute, 2,100 at the next 25 %.
  auto w = window(400, 0);
  w.candidate_quota = request_quota(100);
  now_ms_ += 10'000;
  EXPECT_FALSE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_DOUBLE_EQ(c->weight(), 0.05);
  EXPECT_TRUE(c->holding_for_capacity());
  EXPECT_EQ(c->last_evaluation().overall, Verdict::hold);
  const auto* capacity = gate_named(c->last_evaluation(), "capacity");
  ASSERT_NE(capacity, nullptr);
  EXPECT_EQ(capacity->verdict, Verdict::hold);
  EXPECT_NEAR(capacity->figures.at("requests_needed").as_double(), 2100, 1e-6);
  EXPECT_DOUBLE_EQ(capacity->figures.at("requests_limit").as_double(), 100);
  EXPECT_DOUBLE_EQ(capacity->figures.at("requests_allowed").as_double(), 80);
  EXPECT_DOUBLE_EQ(capacity->figures.at("next_weight").as_double(), 0.25);
  EXPECT_NE(capacity->summary.find("needs ~2100 req/min"), std::string::npos) << capacity->summary;
  EXPECT_NE(capacity->summary.find("limit 100/min"), std::string::npos) << capacity->summary;
  // The hold is journaled once, from the state to itself: weight, stage and its clock kept.
  const auto stage_started = c->record().stage_started_unix_ms;
  auto hold = c->take_capacity_hold();
  ASSERT_TRUE(hold);
  EXPECT_FALSE(c->take_capacity_hold()) << "announced once";
  EXPECT_EQ(hold->trigger, "gates:capacity_hold");
  EXPECT_EQ(hold->from_state, "canary");
  EXPECT_EQ(hold->to_state, "canary");
  EXPECT_DOUBLE_EQ(hold->weight_after, 0.05);
  EXPECT_NE(hold->detail.find("requests_needed"), std::string::npos) << hold->detail;
  auto journal = store_->history("to-relay", 10);
  ASSERT_EQ(journal.size(), 2u);
  EXPECT_EQ(journal.back().trigger, "gates:capacity_hold");
  EXPECT_EQ(journal.back().generation, journal.front().generation + 1);
  EXPECT_EQ(store_->load("to-relay")->stage_started_unix_ms, stage_started);
  // Long past the patience for missing data: still held, never paused, journaled only once.
  now_ms_ += 60'000;
  EXPECT_FALSE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::canary);
  EXPECT_TRUE(c->holding_for_capacity());
  EXPECT_FALSE(c->take_capacity_hold());
  EXPECT_EQ(store_->history("to-relay", 10).size(), 2u);
  // Once the candidate reports room for it, the stage advances and journals the verdict.
  w.candidate_quota = request_quota(100'000);
  ASSERT_TRUE(c->evaluate(w));
  EXPECT_DOUBLE_EQ(c->weight(), 0.25);
  EXPECT_FALSE(c->holding_for_capacity());
  const auto last = store_->history("to-relay", 1).back();
  EXPECT_EQ(last.trigger, "gates:pass");
  EXPECT_NE(last.detail.find("\"capacity\""), std::string::npos);
  EXPECT_NE(last.detail.find("requests_needed"), std::string::npos);
}

TEST_F(ControllerTest, WithoutQuotaDataTheCapacityGateIsNotApplicable) {
  auto settings = migration_settings();
  auto c = controller(settings);
  now_ms_ += 10'000;
  ASSERT_TRUE(c->evaluate(window(400, 0)));
  EXPECT_DOUBLE_EQ(c->weight(), 0.25);
  const auto* capacity = gate_named(c->last_evaluation(), "capacity");
  ASSERT_NE(capacity, nullptr);
  EXPECT_EQ(capacity->verdict, Verdict::pass);
  EXPECT_FALSE(capacity->figures.at("applicable").as_bool());
}

TEST_F(ControllerTest, TheLastStageIsJudgedAgainstTheWholeRoute) {
  auto settings = migration_settings();
  settings.stages.back().weight = 0.5;
  auto c = controller(settings);
  set_weight(*c, 0.5);  // the last stage: the next step is promotion to 100 %
  auto w = window(400, 0);
  // 1,400 requests in 10 s, all of them the candidate's once promoted.
  w.candidate_quota = request_quota(9'000);
  now_ms_ += 10'000;
  EXPECT_FALSE(c->evaluate(w));
  EXPECT_TRUE(c->holding_for_capacity());
  EXPECT_NEAR(gate_named(c->last_evaluation(), "capacity")->figures.at("requests_needed").as_double(),
              8400, 1e-6);
  w.candidate_quota = request_quota(20'000);
  ASSERT_TRUE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::promoted);
}

TEST_F(ControllerTest, TheShadowPhaseCountsTheMirrorThatGoesOnInTheFirstStage) {
  auto settings = migration_settings();
  settings.shadow.sample_rate = 1.0;
  settings.shadow.min_pairs = 60;
  settings.shadow.min_duration = milliseconds(1'000);
  auto c = controller(settings);
  WindowSnapshot w;
  w.primary.requests = 100;  // 6,000 a minute, all mirrored at 5 % as at 0 %
  for (int i = 0; i < 80; ++i) {
    PairSample pair;
    pair.compared = true;
    pair.score = 0.95;
    pair.primary_latency_ms = 100 + i % 7;
    pair.candidate_latency_ms = 100 + i % 5;
    w.pairs.push_back(pair);
  }
  w.candidate_quota = request_quota(1'000);
  now_ms_ += 1'000;
  EXPECT_FALSE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::shadow);
  const auto* capacity = gate_named(c->last_evaluation(), "capacity");
  ASSERT_NE(capacity, nullptr);
  EXPECT_NEAR(capacity->figures.at("requests_needed").as_double(), 6000, 1e-6);
  EXPECT_DOUBLE_EQ(capacity->figures.at("next_weight").as_double(), 0.05);
}

TEST_F(ControllerTest, AConfidentShareOf429sRollsBackAsTheRateLimitedGate) {
  auto settings = migration_settings();
  auto c = controller(settings);
  // 10 % of the candidate's attempts throttled against a 5 % maximum; the attempt error rate
  // (10 % maximum) alone would not trip.
  auto w = window(400, 0);
  w.candidate_attempt_failures = 40;
  w.candidate_rate_limited = 40;
  ASSERT_TRUE(c->evaluate(w));
  EXPECT_EQ(c->phase(), Phase::rolled_back);
  EXPECT_EQ(store_->history("to-relay", 1).back().trigger, "gate:rate_limited");
  const auto* rate_limited = gate_named(c->last_evaluation(), "rate_limited");
  ASSERT_NE(rate_limited, nullptr);
  EXPECT_EQ(rate_limited->figures.at("failures").as_uint64(), 40u);
  EXPECT_EQ(rate_limited->figures.at("trials").as_uint64(), 400u);
}

TEST_F(ControllerTest, AFew429sAreNoBreach) {
  auto settings = migration_settings();
  auto c = controller(settings);
  auto w = window(400, 0);
  w.candidate_attempt_failures = 4;
  w.candidate_rate_limited = 4;  // 1 %
  now_ms_ += 10'000;
  ASSERT_TRUE(c->evaluate(w));
  EXPECT_DOUBLE_EQ(c->weight(), 0.25);
  EXPECT_EQ(gate_named(c->last_evaluation(), "rate_limited")->verdict, Verdict::pass);
}

}  // namespace
}  // namespace cutover::migration
