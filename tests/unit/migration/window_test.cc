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

TEST(StatsShardTest, RecentFiguresCoverOnlyTheLastThirtySeconds) {
  StatsShard shard;
  for (int i = 0; i < 50; ++i) shard.record(candidate(false), 1, 1000);
  for (int i = 0; i < 5; ++i) shard.record(candidate(true), 1, 1020);
  WindowSnapshot early;
  shard.merge_into(early, 1, 1021);
  EXPECT_EQ(early.candidate.requests, 55u);
  EXPECT_EQ(early.recent_candidate_requests, 55u);
  EXPECT_EQ(early.recent_candidate_errors, 5u);
  WindowSnapshot later;
  shard.merge_into(later, 1, 1045);
  // The stage window keeps everything; the recent one only what is younger than 30 s.
  EXPECT_EQ(later.candidate.requests, 55u);
  EXPECT_EQ(later.recent_candidate_requests, 5u);
  EXPECT_EQ(later.recent_candidate_attempt_failures, 5u);
  WindowSnapshot gone;
  shard.merge_into(gone, 1, 1100);
  EXPECT_EQ(gone.recent_candidate_requests, 0u);
}

TEST(StatsShardTest, ANewEpochStartsEmptyAndIgnoresOldRecords) {
  StatsShard shard;
  shard.record(candidate(true), 1, 1000);
  shard.record(candidate(false), 2, 1001);
  shard.record(candidate(true), 1, 1001);  // began before the transition: dropped
  WindowSnapshot out;
  shard.merge_into(out, 2, 1002);
  EXPECT_EQ(out.candidate.requests, 1u);
  EXPECT_EQ(out.candidate.errors, 0u);
  EXPECT_EQ(out.recent_candidate_requests, 1u);
  EXPECT_EQ(out.recent_candidate_errors, 0u);
  EXPECT_EQ(out.lifetime_requests, 3u);
}

}  // namespace
}  // namespace cutover::migration
