#include "migration/window.h"

#include <gtest/gtest.h>

namespace cutover::migration {
namespace {

RequestSample candidate(bool error) {
  RequestSample sample;
  sample.candidate_arm = true;
  sample.counted_as_error = error;
  sample.latency_ms = 10;
  sample.candidate_attempts = 1;
  sample.candidate_attempt_failures = error ? 1 : 0;
  return sample;
}

TEST(StatsShardTest, CountsAStageAndKeepsCountingAcrossMerges) {
  StatsShard shard;
  for (int i = 0; i < 50; ++i) shard.record(candidate(false), 1);
  for (int i = 0; i < 5; ++i) shard.record(candidate(true), 1);
  WindowSnapshot first;
  shard.merge_into(first, 1);
  EXPECT_EQ(first.candidate.requests, 55u);
  EXPECT_EQ(first.candidate.errors, 5u);
  EXPECT_EQ(first.candidate_attempt_failures, 5u);
  EXPECT_EQ(first.candidate.latency_ms.size(), 50u);
  shard.record(candidate(false), 1);
  WindowSnapshot second;
  shard.merge_into(second, 1);
  // The controller reads what each evaluation added from the difference.
  EXPECT_EQ(second.candidate.requests, 56u);
  EXPECT_EQ(second.candidate_attempts, 56u);
}

TEST(StatsShardTest, ANewEpochStartsEmptyAndIgnoresOldRecords) {
  StatsShard shard;
  shard.record(candidate(true), 1);
  shard.record(candidate(false), 2);
  shard.record(candidate(true), 1);  // began before the transition: dropped
  WindowSnapshot out;
  shard.merge_into(out, 2);
  EXPECT_EQ(out.candidate.requests, 1u);
  EXPECT_EQ(out.candidate.errors, 0u);
  EXPECT_EQ(out.lifetime_requests, 3u);
}

}  // namespace
}  // namespace cutover::migration
