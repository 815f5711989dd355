#include "migration/fleet_window.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "migration/statistics.h"

namespace cutover::migration {
namespace {

namespace json = boost::json;

constexpr double kQuantiles[] = {0.5, 0.9, 0.95, 0.99, 0.999};

// A request as a replica might see it: mostly fine, sometimes failing or falling back.
RequestSample random_request(std::mt19937_64& random) {
  auto chance = [&random](double p) { return std::bernoulli_distribution(p)(random); };
  RequestSample sample;
  sample.candidate_arm = chance(0.3);
  sample.counted_as_error = chance(0.02);
  sample.fell_back = sample.candidate_arm && chance(0.01);
  sample.latency_ms = std::lognormal_distribution<double>(std::log(800.0), 0.7)(random);
  sample.ttft_ms = chance(0.8) ? sample.latency_ms * 0.2 : -1;  // streams only
  sample.tpot_ms = sample.ttft_ms >= 0 ? std::exponential_distribution<double>(40)(random) : -1;
  sample.candidate_attempts = sample.candidate_arm ? 1 + chance(0.05) : 0;
  sample.candidate_attempt_failures = sample.candidate_attempts > 1 ? 1 : 0;
  sample.candidate_rate_limited = sample.candidate_attempt_failures && chance(0.5) ? 1 : 0;
  sample.tokens = std::uniform_int_distribution<std::uint64_t>(10, 3000)(random);
  return sample;
}

PairSample random_pair(std::mt19937_64& random) {
  PairSample pair;
  pair.candidate_failed = std::bernoulli_distribution(0.05)(random);
  pair.compared = !pair.candidate_failed;
  pair.score = std::uniform_real_distribution<double>(0, 1)(random);
  pair.primary_latency_ms = std::uniform_real_distribution<double>(100, 3000)(random);
  pair.candidate_latency_ms = std::uniform_real_distribution<double>(100, 3000)(random);
  pair.primary_ttft_ms = pair.primary_latency_ms / 5;
  pair.candidate_ttft_ms = pair.candidate_latency_ms / 4;
  return pair;
}

bool same_pair(const PairSample& a, const PairSample& b) {
  auto same = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  return a.candidate_failed == b.candidate_failed && a.compared == b.compared &&
         same(a.score, b.score) && same(a.primary_latency_ms, b.primary_latency_ms) &&
         same(a.candidate_latency_ms, b.candidate_latency_ms) &&
         same(a.primary_ttft_ms, b.primary_ttft_ms) &&
         same(a.candidate_ttft_ms, b.candidate_ttft_ms);
}

// A pair as a contribution carries it: the score in millionths, times in whole microseconds.
PairSample as_carried(PairSample pair) {
  pair.score = std::round(pair.score * 1e6) / 1e6;
  for (double* ms : {&pair.primary_latency_ms, &pair.candidate_latency_ms, &pair.primary_ttft_ms,
                     &pair.candidate_ttft_ms})
    *ms = std::round(*ms * 1e3) / 1e3;
  return pair;
}

void expect_same_counts(const ArmWindow& actual, const ArmWindow& expected, const char* arm) {
  EXPECT_EQ(actual.requests, expected.requests) << arm;
  EXPECT_EQ(actual.errors, expected.errors) << arm;
  EXPECT_EQ(actual.fallbacks, expected.fallbacks) << arm;
  EXPECT_EQ(actual.tokens, expected.tokens) << arm;
  EXPECT_EQ(actual.latency_histogram, expected.latency_histogram) << arm;
  EXPECT_EQ(actual.ttft_histogram, expected.ttft_histogram) << arm;
  EXPECT_EQ(actual.tpot_histogram, expected.tpot_histogram) << arm;
}

void expect_same_counts(const WindowSnapshot& actual, const WindowSnapshot& expected) {
  expect_same_counts(actual.primary, expected.primary, "primary");
  expect_same_counts(actual.candidate, expected.candidate, "candidate");
  EXPECT_EQ(actual.candidate_attempts, expected.candidate_attempts);
  EXPECT_EQ(actual.candidate_attempt_failures, expected.candidate_attempt_failures);
  EXPECT_EQ(actual.candidate_rate_limited, expected.candidate_rate_limited);
  EXPECT_EQ(actual.lifetime_requests, expected.lifetime_requests);
  ASSERT_EQ(actual.pairs.size(), expected.pairs.size());
  for (std::size_t i = 0; i < actual.pairs.size(); ++i)
    EXPECT_TRUE(same_pair(actual.pairs[i], expected.pairs[i])) << "pair " << i;
}

// What the store hands the leader: the contribution as text.
json::value through_the_store(const json::object& contribution) {
  return json::parse(json::serialize(contribution));
}

// Every field different from every other, so that a field read into the wrong one shows.
WindowSnapshot distinctive_window() {
  WindowSnapshot window;
  window.primary.requests = 1001;
  window.primary.errors = 1002;
  window.primary.fallbacks = 1003;
  window.primary.tokens = 1004;
  window.primary.latency_histogram.add(10);
  window.primary.ttft_histogram.add(20);
  window.primary.tpot_histogram.add(30);
  window.candidate.requests = 2001;
  window.candidate.errors = 2002;
  window.candidate.fallbacks = 2003;
  window.candidate.tokens = 2004;
  window.candidate.latency_histogram.add(40, 2);
  window.candidate.ttft_histogram.add(50, 3);
  window.candidate.tpot_histogram.add(60, 4);
  window.candidate_attempts = 3001;
  window.candidate_attempt_failures = 3002;
  window.candidate_rate_limited = 3003;
  window.lifetime_requests = 4001;
  return window;
}

TEST(FleetWindowTest, ThreeReplicasAddUpExactlyToOneWindowOfAllTheirTraffic) {
  std::mt19937_64 random(12);
  StatsShard replicas[3];
  StatsShard everything;
  std::vector<PairSample> replica_pairs[3];
  std::vector<PairSample> all_pairs;
  for (int i = 0; i < 30000; ++i) {
    const auto sample = random_request(random);
    const auto replica = std::uniform_int_distribution<int>(0, 2)(random);
    replicas[replica].record(sample, 1);
    everything.record(sample, 1);
    if (i % 50 == 0) {
      const auto pair = random_pair(random);
      replica_pairs[replica].push_back(pair);
      all_pairs.push_back(pair);
    }
  }
  WindowSnapshot fleet;
  std::vector<PairSample> pairs_in_replica_order;
  for (int replica = 0; replica < 3; ++replica) {
    WindowSnapshot local;
    replicas[replica].merge_into(local, 1);
    ASSERT_TRUE(add_contribution(
        through_the_store(contribution_json(local, replica_pairs[replica])), fleet));
    for (const auto& pair : replica_pairs[replica])
      pairs_in_replica_order.push_back(as_carried(pair));
  }
  WindowSnapshot expected;
  everything.merge_into(expected, 1);
  expected.pairs = pairs_in_replica_order;
  expect_same_counts(fleet, expected);
  EXPECT_EQ(fleet.pairs.size(), all_pairs.size());
  EXPECT_EQ(fleet.primary.requests + fleet.candidate.requests, 30000u);
}

TEST(FleetWindowTest, AContributionRoundTripsEveryField) {
  std::vector<PairSample> pairs;
  PairSample failed;
  failed.candidate_failed = true;
  failed.score = 0.25;
  failed.primary_latency_ms = 123.456;
  failed.candidate_latency_ms = std::numeric_limits<double>::infinity();  // not finite: null
  failed.primary_ttft_ms = 7.5;
  failed.candidate_ttft_ms = 8.5;
  PairSample compared;
  compared.compared = true;
  compared.score = 0.875;
  compared.primary_latency_ms = 1;
  compared.candidate_latency_ms = 2;
  compared.primary_ttft_ms = 3;
  compared.candidate_ttft_ms = 4;
  pairs = {failed, compared};

  WindowSnapshot fleet;
  ASSERT_TRUE(
      add_contribution(through_the_store(contribution_json(distinctive_window(), pairs)), fleet));
  auto expected = distinctive_window();
  expected.pairs = pairs;
  expected.pairs[0].candidate_latency_ms = std::numeric_limits<double>::quiet_NaN();
  expect_same_counts(fleet, expected);
}

TEST(FleetWindowTest, APairsTimesTravelInMicrosecondsAndItsScoreInMillionths) {
  PairSample pair;
  pair.compared = true;
  pair.score = 0.123456789;
  pair.primary_latency_ms = 1942.1705331098347;
  pair.candidate_latency_ms = 0.0004;
  pair.primary_ttft_ms = 99.9995;
  pair.candidate_ttft_ms = 12;
  WindowSnapshot fleet;
  ASSERT_TRUE(
      add_contribution(through_the_store(contribution_json(WindowSnapshot(), {pair})), fleet));
  ASSERT_EQ(fleet.pairs.size(), 1u);
  EXPECT_EQ(fleet.pairs[0].score, 0.123457);
  EXPECT_EQ(fleet.pairs[0].primary_latency_ms, 1942.171);
  EXPECT_EQ(fleet.pairs[0].candidate_latency_ms, 0);
  EXPECT_EQ(fleet.pairs[0].primary_ttft_ms, 100);
  EXPECT_EQ(fleet.pairs[0].candidate_ttft_ms, 12);
}

TEST(FleetWindowTest, AContributionCarriesTheNewestPairsOnly) {
  std::mt19937_64 random(3);
  std::vector<PairSample> pairs;
  for (int i = 0; i < 5; ++i) pairs.push_back(random_pair(random));
  WindowSnapshot fleet;
  ASSERT_TRUE(add_contribution(contribution_json(WindowSnapshot(), pairs, 2), fleet));
  ASSERT_EQ(fleet.pairs.size(), 2u);
  EXPECT_TRUE(same_pair(fleet.pairs[0], as_carried(pairs[3])));
  EXPECT_TRUE(same_pair(fleet.pairs[1], as_carried(pairs[4])));
}

// The store keeps the latest contribution per replica; adding one twice is what it prevents.
TEST(FleetWindowTest, AddingTheSameContributionTwiceWouldCountItTwice) {
  const auto contribution = through_the_store(contribution_json(distinctive_window(), {}));
  WindowSnapshot fleet;
  ASSERT_TRUE(add_contribution(contribution, fleet));
  ASSERT_TRUE(add_contribution(contribution, fleet));
  EXPECT_EQ(fleet.candidate.requests, 2 * 2001u);
  EXPECT_EQ(fleet.candidate.latency_histogram.count(), 4u);
}

TEST(FleetWindowTest, AMalformedContributionIsRejectedAndAddsNothing) {
  const auto good = contribution_json(distinctive_window(), {PairSample()});
  auto with = [&good](auto change) {
    json::value contribution = good;
    change(contribution.as_object());
    return contribution;
  };
  const std::vector<std::pair<std::string, json::value>> malformed = {
      {"not an object", json::array{1, 2}},
      {"another version", with([](json::object& c) { c["v"] = 2; })},
      {"no version", with([](json::object& c) { c.erase("v"); })},
      {"no lifetime", with([](json::object& c) { c.erase("lifetime_requests"); })},
      {"negative attempts", with([](json::object& c) { c["candidate_attempts"] = -1; })},
      {"fractional failures", with([](json::object& c) { c["candidate_attempt_failures"] = 0.5; })},
      {"string count", with([](json::object& c) { c["candidate_rate_limited"] = "3"; })},
      {"no primary", with([](json::object& c) { c.erase("primary"); })},
      {"arm not an object", with([](json::object& c) { c["candidate"] = 1; })},
      {"arm without tokens",
       with([](json::object& c) { c["candidate"].as_object().erase("tokens"); })},
      {"negative requests",
       with([](json::object& c) { c["primary"].as_object()["requests"] = -4; })},
      {"bad histogram", with([](json::object& c) {
         c["primary"].as_object()["ttft"] = json::object{{"s", 1}};
       })},
      {"histogram bucket out of range", with([](json::object& c) {
         c["candidate"].as_object()["tpot"] = json::object{{"s", 1}, {"b", json::array{5000, 1}}};
       })},
      {"no pairs", with([](json::object& c) { c.erase("pairs"); })},
      {"pair too short", with([](json::object& c) {
         c["pairs"] = json::array{json::array{0, 1}};
       })},
      {"pair flag 2", with([](json::object& c) {
         c["pairs"] = json::array{json::array{2, 1, 0, 0, 0, 0, 0}};
       })},
      {"pair measurement a string", with([](json::object& c) {
         c["pairs"] = json::array{json::array{0, 1, "0.5", 0, 0, 0, 0}};
       })},
      {"pair latency fractional", with([](json::object& c) {
         c["pairs"] = json::array{json::array{0, 1, 5, 0.5, 0, 0, 0}};
       })},
  };
  for (const auto& [what, contribution] : malformed) {
    WindowSnapshot fleet = distinctive_window();
    fleet.pairs = {PairSample()};
    const WindowSnapshot before = fleet;
    bool added = true;
    EXPECT_NO_THROW(added = add_contribution(contribution, fleet)) << what;
    EXPECT_FALSE(added) << what;
    expect_same_counts(fleet, before);
  }
  WindowSnapshot fleet;
  EXPECT_TRUE(add_contribution(good, fleet)) << "the unchanged contribution is fine";
}

TEST(FleetWindowTest, ExpandedSamplesHaveTheHistogramsQuantilesWhenTheyFit) {
  std::mt19937_64 random(21);
  StatsShard shard;
  for (int i = 0; i < 3000; ++i) shard.record(random_request(random), 1);
  WindowSnapshot local;
  shard.merge_into(local, 1);
  WindowSnapshot fleet;
  ASSERT_TRUE(add_contribution(contribution_json(local, {}), fleet));
  expand_histograms(fleet);
  for (const ArmWindow* arm : {&fleet.primary, &fleet.candidate}) {
    const std::pair<const std::vector<double>*, const LogHistogram*> measures[] = {
        {&arm->latency_ms, &arm->latency_histogram},
        {&arm->ttft_ms, &arm->ttft_histogram},
        {&arm->tpot_ms, &arm->tpot_histogram}};
    for (const auto& [samples, histogram] : measures) {
      ASSERT_GT(histogram->count(), 59u);
      ASSERT_EQ(samples->size(), histogram->count());
      for (double q : kQuantiles)
        EXPECT_EQ(estimate_quantile(*samples, q, 0.95).point, histogram->quantile(q)) << q;
    }
  }
}

TEST(FleetWindowTest, ExpandedSamplesAreCappedAndNeverUnderstateTheFleetsQuantiles) {
  std::mt19937_64 random(22);
  LogHistogram latency;
  std::vector<double> exact;
  for (int i = 0; i < 100000; ++i) {
    const double value = std::lognormal_distribution<double>(std::log(500.0), 1.0)(random);
    latency.add(value);
    exact.push_back(value);
  }
  WindowSnapshot fleet;
  fleet.candidate.latency_histogram = latency;
  fleet.candidate.latency_ms = {1, 2, 3};  // the leader's own reservoir: replaced
  expand_histograms(fleet, 4096);
  ASSERT_EQ(fleet.candidate.latency_ms.size(), 4096u);
  EXPECT_TRUE(fleet.candidate.ttft_ms.empty());
  EXPECT_TRUE(fleet.primary.latency_ms.empty());
  for (double q : kQuantiles) {
    const double expanded = estimate_quantile(fleet.candidate.latency_ms, q, 0.95).point;
    EXPECT_GE(expanded, latency.quantile(q)) << q;
    EXPECT_GE(expanded, estimate_quantile(exact, q, 0.95).point) << q;
    // One representative sample stands for n / 4096 values: a rank that much higher at most.
    EXPECT_LE(expanded, latency.quantile(q + 1.0 / 4096)) << q;
  }
}

}  // namespace
}  // namespace cutover::migration
