#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <string>

#include "simulate/fake_provider.h"

namespace cutover::simulate {
namespace {

FakeRequest chat_for(const std::string& model) {
  FakeRequest request;
  request.method = "POST";
  request.target = "/v1/chat/completions";
  request.body = R"({"model":")" + model + R"(","messages":[{"role":"user","content":"hi"}]})";
  request.json = boost::json::parse(request.body);
  return request;
}

std::vector<double> delays(const Profile& profile, int count) {
  auto script = profile_script(profile);
  std::vector<double> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(static_cast<double>(script(chat_for("m")).delay.count()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SimulatedProfileTest, ServesOnlyItsOwnModelNames) {
  Profile profile;
  profile.models = {"relay-gpt-4o"};
  auto script = profile_script(profile);
  EXPECT_EQ(script(chat_for("relay-gpt-4o")).status, 200u);
  const auto refused = script(chat_for("gpt-4o"));
  EXPECT_EQ(refused.status, 404u);
  ASSERT_TRUE(refused.body);
  EXPECT_EQ(boost::json::parse(*refused.body).at("error").at("code"), "model_not_found");
}

TEST(SimulatedProfileTest, UniformLatencyStaysWithinItsSpread) {
  Profile profile;
  profile.latency = std::chrono::milliseconds(100);
  profile.jitter = std::chrono::milliseconds(10);
  const auto sample = delays(profile, 2000);
  EXPECT_GE(sample.front(), 90);
  EXPECT_LE(sample.back(), 110);
}

TEST(SimulatedProfileTest, LognormalLatencyHasALongTailAroundItsMedian) {
  Profile profile;
  profile.latency = std::chrono::milliseconds(100);
  profile.jitter = std::chrono::milliseconds(50);  // σ = 0.5
  profile.distribution = Profile::Distribution::lognormal;
  const auto sample = delays(profile, 4000);
  const double median = sample[sample.size() / 2];
  const double p99 = sample[sample.size() * 99 / 100];
  EXPECT_NEAR(median, 100, 10);
  // e^(2.326 σ) ≈ 3.2 for σ = 0.5: far beyond what a uniform ± spread gives.
  EXPECT_GT(p99 / median, 2.5);
  EXPECT_LT(p99 / median, 4.0);
}

std::string header_of(const FakeReply& reply, const std::string& name) {
  for (const auto& [key, value] : reply.headers) {
    if (key == name) return value;
  }
  return {};
}

TEST(SimulatedProfileTest, AQuotaIsReportedFallingAndRefusedBeyond) {
  Profile profile;
  profile.latency = profile.jitter = std::chrono::milliseconds(0);
  profile.quota_requests = 2;
  auto script = profile_script(profile);
  const auto first = script(chat_for("m"));
  EXPECT_EQ(first.status, 200u);
  EXPECT_EQ(header_of(first, "x-ratelimit-limit-requests"), "2");
  EXPECT_EQ(header_of(first, "x-ratelimit-remaining-requests"), "1");
  const auto reset = header_of(first, "x-ratelimit-reset-requests");
  ASSERT_TRUE(reset.ends_with("ms")) << reset;
  const auto reset_ms = std::stoll(reset);
  EXPECT_GT(reset_ms, 50'000);
  EXPECT_LE(reset_ms, 60'000);
  const auto second = script(chat_for("m"));
  EXPECT_EQ(second.status, 200u);
  EXPECT_EQ(header_of(second, "x-ratelimit-remaining-requests"), "0");
  const auto third = script(chat_for("m"));
  EXPECT_EQ(third.status, 429u);
  EXPECT_EQ(header_of(third, "x-ratelimit-remaining-requests"), "0");
  EXPECT_FALSE(header_of(third, "retry-after").empty());
  ASSERT_TRUE(third.body);
  EXPECT_EQ(boost::json::parse(*third.body).at("error").at("type"), "rate_limit_error");
}

TEST(SimulatedProfileTest, NoQuotaNoRateLimitHeaders) {
  auto script = profile_script(Profile{});
  EXPECT_TRUE(header_of(script(chat_for("m")), "x-ratelimit-limit-requests").empty());
}

}  // namespace
}  // namespace cutover::simulate
