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

TEST(StatsShardTest, HistogramsCountEverySampleTheReservoirsDrawFrom) {
  StatsShard shard;
  // More than a reservoir keeps: the histogram still counts them all.
  for (int i = 0; i < 3000; ++i) {
    auto sample = candidate(false);
    sample.latency_ms = 10 + i;
    sample.ttft_ms = i % 2 ? 5 : -1;  // only streams have a first token
    sample.tpot_ms = i % 3 ? -1 : 0.5;
    shard.record(sample, 1);
  }
  shard.record(candidate(true), 1);  // a failure's latency is not the side's speed
  RequestSample primary;
  primary.latency_ms = 20;
  shard.record(primary, 1);
  WindowSnapshot out;
  shard.merge_into(out, 1);
  EXPECT_EQ(out.candidate.latency_ms.size(), 2048u);
  EXPECT_EQ(out.candidate.latency_histogram.count(), 3000u);
  EXPECT_EQ(out.candidate.ttft_histogram.count(), 1500u);
  EXPECT_EQ(out.candidate.tpot_histogram.count(), 1000u);
  EXPECT_DOUBLE_EQ(out.candidate.latency_histogram.quantile(1),
                   LogHistogram::upper_bound(LogHistogram::bucket_of(3009)));
  EXPECT_EQ(out.primary.latency_histogram.count(), 1u);
  EXPECT_TRUE(out.primary.ttft_histogram.empty());
}

TEST(StatsShardTest, HistogramsOfTwoShardsMergeAndANewEpochClearsThem) {
  StatsShard first, second;
  first.record(candidate(false), 1);
  second.record(candidate(false), 1);
  second.record(candidate(false), 1);
  WindowSnapshot both;
  first.merge_into(both, 1);
  second.merge_into(both, 1);
  EXPECT_EQ(both.candidate.latency_histogram.count(), 3u);
  first.record(candidate(false), 2);
  WindowSnapshot next;
  first.merge_into(next, 2);
  EXPECT_EQ(next.candidate.latency_histogram.count(), 1u);
}

}  // namespace
}  // namespace cutover::migration
