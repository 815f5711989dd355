#include "migration/capacity.h"

#include <gtest/gtest.h>

namespace cutover::migration {
namespace {

using std::chrono::milliseconds;

resilience::QuotaState::Snapshot endpoint(std::optional<std::int64_t> request_limit,
                                          std::optional<std::int64_t> requests_remaining,
                                          std::optional<milliseconds> reset_in = milliseconds(30'000)) {
  resilience::QuotaState::Snapshot snapshot;
  snapshot.reported = true;
  snapshot.request_limit = request_limit;
  snapshot.requests_remaining = requests_remaining;
  snapshot.requests_reset_in = reset_in;
  return snapshot;
}

CandidateQuota requests_quota(double limit, std::optional<double> remaining = std::nullopt) {
  CandidateQuota quota;
  quota.requests.limit = limit;
  quota.requests.remaining = remaining;
  return quota;
}

// Ten minutes of a route carrying 1,000 requests a minute and 500 tokens a request.
RouteTraffic busy_route() {
  RouteTraffic traffic;
  traffic.requests = 10'000;
  traffic.tokens = 5'000'000;
  traffic.candidate_requests = 500;  // 5 % of it
  traffic.candidate_tokens = 250'000;
  traffic.minutes = 10;
  return traffic;
}

TEST(CapacityTest, QuotasAddUpOverTheEndpointsThatReportThem) {
  auto silent = endpoint(std::nullopt, std::nullopt, std::nullopt);
  silent.reported = false;
  const auto quota = sum_endpoint_quotas({endpoint(100, 40), endpoint(200, 150), silent});
  ASSERT_TRUE(quota.requests.limit);
  EXPECT_DOUBLE_EQ(*quota.requests.limit, 300);
  ASSERT_TRUE(quota.requests.remaining);
  EXPECT_DOUBLE_EQ(*quota.requests.remaining, 190);
  EXPECT_FALSE(quota.tokens.limit);
  EXPECT_TRUE(quota.reported());
}

TEST(CapacityTest, AnEndpointPastItsResetCountsWithItsWholeLimit) {
  // The second endpoint's reset has passed: its 0 left is stale, the quota refilled since.
  const auto quota = sum_endpoint_quotas({endpoint(100, 40), endpoint(100, 0, std::nullopt)});
  EXPECT_DOUBLE_EQ(*quota.requests.remaining, 140);
  // Sent since the reading past the provider's figure: nothing left, not less than nothing.
  const auto overdrawn = sum_endpoint_quotas({endpoint(100, -3)});
  EXPECT_DOUBLE_EQ(*overdrawn.requests.remaining, 0);
}

TEST(CapacityTest, NoReportedLimitMeansNoQuota) {
  EXPECT_FALSE(sum_endpoint_quotas({}).reported());
  const auto only_remaining = sum_endpoint_quotas({endpoint(std::nullopt, 40)});
  EXPECT_FALSE(only_remaining.reported());
}

TEST(CapacityTest, ProjectionScalesTheRouteToTheNextWeightWithTheShadowMirror) {
  const auto at_half = project_candidate_load(busy_route(), 0.5, 0);
  EXPECT_DOUBLE_EQ(at_half.requests_per_minute, 500);
  EXPECT_DOUBLE_EQ(at_half.tokens_per_minute, 250'000);
  // A 10 % mirror of the primary's remaining half adds 5 %.
  EXPECT_DOUBLE_EQ(project_candidate_load(busy_route(), 0.5, 0.1).requests_per_minute, 550);
  EXPECT_DOUBLE_EQ(current_candidate_load(busy_route()).requests_per_minute, 50);
  RouteTraffic empty;
  EXPECT_DOUBLE_EQ(project_candidate_load(empty, 1.0, 0).requests_per_minute, 0);
}

TEST(CapacityTest, ASmallQuotaHoldsTheNextStage) {
  const auto needed = project_candidate_load(busy_route(), 0.5, 0);  // 500 req/min
  const auto judged = judge_capacity(needed, current_candidate_load(busy_route()),
                                     requests_quota(400), 0.8);
  EXPECT_EQ(judged.verdict, Verdict::hold);
  EXPECT_TRUE(judged.applicable);
  EXPECT_TRUE(judged.requests.over);
  EXPECT_DOUBLE_EQ(judged.requests.needed, 500);
  EXPECT_DOUBLE_EQ(judged.requests.allowed, 320);
  EXPECT_DOUBLE_EQ(judged.requests.share, 1.25);
}

TEST(CapacityTest, ALargeQuotaLetsTheStageAdvance) {
  const auto needed = project_candidate_load(busy_route(), 0.5, 0);
  const auto judged = judge_capacity(needed, current_candidate_load(busy_route()),
                                     requests_quota(10'000, 9'000), 0.8);
  EXPECT_EQ(judged.verdict, Verdict::pass);
  EXPECT_FALSE(judged.requests.over);
  EXPECT_DOUBLE_EQ(judged.requests.share, 0.05);
}

TEST(CapacityTest, TheShareBoundsWhatTheLimitWouldAllow) {
  const auto needed = project_candidate_load(busy_route(), 0.5, 0);  // 500 of 600: 83 %
  EXPECT_EQ(judge_capacity(needed, {}, requests_quota(600), 0.8).verdict, Verdict::hold);
  EXPECT_EQ(judge_capacity(needed, {}, requests_quota(600), 0.9).verdict, Verdict::pass);
}

TEST(CapacityTest, WhatIsLeftBoundsItWhenOthersShareTheQuota) {
  const auto needed = project_candidate_load(busy_route(), 0.5, 0);  // 500 req/min
  const auto current = current_candidate_load(busy_route());         // 50 req/min
  // Plenty of limit, but others spend most of it: 300 left plus the 50 already ours.
  const auto judged = judge_capacity(needed, current, requests_quota(2'000, 300), 0.8);
  EXPECT_EQ(judged.verdict, Verdict::hold);
  EXPECT_DOUBLE_EQ(judged.requests.allowed, 350);
  EXPECT_EQ(judge_capacity(needed, current, requests_quota(2'000, 600), 0.8).verdict,
            Verdict::pass);
}

TEST(CapacityTest, NoQuotaDataIsNotApplicableAndNeverHolds) {
  const auto needed = project_candidate_load(busy_route(), 1.0, 0);
  const auto judged = judge_capacity(needed, {}, CandidateQuota{}, 0.8);
  EXPECT_EQ(judged.verdict, Verdict::pass);
  EXPECT_FALSE(judged.applicable);
}

TEST(CapacityTest, TokensCanBeWhatRunsOut) {
  const auto needed = project_candidate_load(busy_route(), 0.5, 0);  // 250,000 tokens/min
  CandidateQuota quota = requests_quota(10'000);
  quota.tokens.limit = 200'000;
  const auto judged = judge_capacity(needed, {}, quota, 0.8);
  EXPECT_EQ(judged.verdict, Verdict::hold);
  EXPECT_FALSE(judged.requests.over);
  EXPECT_TRUE(judged.tokens.over);
  EXPECT_DOUBLE_EQ(judged.tokens.share, 1.25);
}

}  // namespace
}  // namespace cutover::migration
