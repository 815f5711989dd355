#include "migration/runtime.h"

#include <gtest/gtest.h>

#include <memory>

namespace cutover::migration {
namespace {

store::ShadowPair pair_for(std::string request_id) {
  store::ShadowPair pair;
  pair.migration = "to-relay";
  pair.request_id = std::move(request_id);
  return pair;
}

class MigrationRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    settings_.name = "to-relay";
    runtime_ = std::make_unique<MigrationRuntime>(std::make_shared<config::Config>(), settings_, 2);
  }
  config::Migration settings_;
  std::unique_ptr<MigrationRuntime> runtime_;
};

TEST_F(MigrationRuntimeTest, PairsFromEveryWorkerReachTheEngineOnce) {
  PairSample compared;
  compared.compared = true;
  compared.score = 0.75;
  runtime_->record_pair(0, pair_for("a"), compared);
  runtime_->record_pair(1, pair_for("b"), PairSample{});
  runtime_->record_pair(0, pair_for("c"), PairSample{});
  std::vector<FinishedPair> taken;
  runtime_->take_pairs(taken);
  ASSERT_EQ(taken.size(), 3u);
  std::vector<std::string> ids;
  for (const auto& finished : taken) ids.push_back(finished.pair.request_id);
  // Each worker's pairs in their order; workers one after the other.
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "c", "b"}));
  EXPECT_TRUE(taken[0].sample.compared);
  EXPECT_DOUBLE_EQ(taken[0].sample.score, 0.75);
  std::vector<FinishedPair> again;
  runtime_->take_pairs(again);
  EXPECT_TRUE(again.empty());
  EXPECT_EQ(runtime_->pairs_dropped(), 0u);
}

TEST_F(MigrationRuntimeTest, AWorkerNobodyDrainsDropsAndCountsBeyondItsCap) {
  const auto cap = MigrationRuntime::kMaxPendingPairsPerWorker;
  for (std::size_t i = 0; i < cap + 5; ++i) runtime_->record_pair(1, store::ShadowPair{}, PairSample{});
  EXPECT_EQ(runtime_->pairs_dropped(), 5u);
  std::vector<FinishedPair> taken;
  runtime_->take_pairs(taken);
  EXPECT_EQ(taken.size(), cap);
  // Drained, the worker records again.
  runtime_->record_pair(1, store::ShadowPair{}, PairSample{});
  taken.clear();
  runtime_->take_pairs(taken);
  EXPECT_EQ(taken.size(), 1u);
}

}  // namespace
}  // namespace cutover::migration
