#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>

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

}  // namespace
}  // namespace cutover::simulate
