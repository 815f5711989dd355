// `cutover simulate traffic`'s generator against a real gateway over loopback: what it sends
// (users, streams, keep-alive) and what it reports (answers, errors, providers).
#include "simulate/traffic.h"

#include <atomic>
#include <set>
#include <thread>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

using simulate::FakeReply;
using simulate::Fault;
using simulate::TrafficGenerator;
using simulate::TrafficOptions;

class TrafficTest : public GatewayTest {
 protected:
  TrafficOptions options(std::uint64_t requests) {
    TrafficOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(server_->port());
    options.api_key = kClientKey;
    options.model = "gpt-4";
    options.users = 5;
    options.concurrency = 4;
    options.requests = requests;
    options.stream_share = 0.5;
    options.seed = 42;
    return options;
  }
};

TEST_F(TrafficTest, EveryRequestIsAnsweredAndCountedByTheProviderThatServedIt) {
  start(simulate::default_reply);
  auto summary = TrafficGenerator(options(60)).run();
  EXPECT_EQ(summary.requests, 60u);
  EXPECT_EQ(summary.ok, 60u);
  EXPECT_EQ(summary.errors, 0u) << summary.first_error;
  EXPECT_EQ(summary.by_provider, (std::map<std::string, std::uint64_t>{{"primary", 60}}));
  EXPECT_GT(summary.streamed, 0u);
  EXPECT_LT(summary.streamed, 60u);
  EXPECT_GT(summary.p50_ms, 0);
  EXPECT_LE(summary.p50_ms, summary.p95_ms);
  EXPECT_LE(summary.p95_ms, summary.p99_ms);
  const auto json = summary.to_json();
  for (const char* key :
       {"requests", "ok", "errors", "by_provider", "p50_ms", "p95_ms", "p99_ms"}) {
    EXPECT_TRUE(json.contains(key)) << key;
  }
}

TEST_F(TrafficTest, LoadIsSpreadOverSeveralGateways) {
  start(simulate::default_reply);
  // The second "gateway" is the provider itself, which counts what reaches it directly.
  auto settings = options(40);
  settings.more_urls = {upstream_->base_url()};
  auto summary = TrafficGenerator(settings).run();
  EXPECT_EQ(summary.ok, 40u) << summary.first_error;
  // Half the clients talk to each: the gateway's answers name the provider, the direct ones don't.
  EXPECT_GT(summary.by_provider["primary"], 0u);
  EXPECT_GT(summary.by_provider["unknown"], 0u);
  EXPECT_EQ(summary.by_provider["primary"] + summary.by_provider["unknown"], 40u);
  settings.more_urls = {"https://127.0.0.1:1"};
  EXPECT_TRUE(simulate::validate(settings).has_value());
}

TEST_F(TrafficTest, RequestsCarryTheUserInHeaderAndBodyOverKeptAliveConnections) {
  start(simulate::default_reply);
  auto settings = options(40);
  settings.url = upstream_->base_url();  // straight to the provider, which sees each connection
  auto summary = TrafficGenerator(settings).run();
  EXPECT_EQ(summary.ok, 40u) << summary.first_error;
  EXPECT_EQ(summary.by_provider, (std::map<std::string, std::uint64_t>{{"unknown", 40}}));
  EXPECT_LE(upstream_->connections_accepted(), 4u);
  std::set<std::string> users;
  for (const auto& request : upstream_->recorded_requests()) {
    const auto user = text_of(request.json.at("user"));
    EXPECT_EQ(user.rfind("user-", 0), 0u) << user;
    EXPECT_EQ(request.header("x-user-id"), user);
    EXPECT_EQ(request.header("authorization"), std::string("Bearer ") + kClientKey);
    users.insert(user);
  }
  EXPECT_GT(users.size(), 1u);
  EXPECT_LE(users.size(), 5u);
}

TEST_F(TrafficTest, ErrorStatusesAndErrorEventsInStreamsAreClientVisibleErrors) {
  std::atomic<unsigned> count{0};
  GatewayOptions gateway;
  gateway.provider_extra += "    breaker: {minimum_calls: 1000, window_size: 1000}\n";
  start(
      [&](const simulate::FakeRequest& request) {
        auto reply = simulate::default_reply(request);
        const auto n = count++;
        if (n % 4 == 0) reply.status = 500;
        if (n % 4 == 1) reply.fault = Fault::truncate_stream;
        return reply;
      },
      gateway);
  auto settings = options(40);
  settings.stream_share = 1;
  auto summary = TrafficGenerator(settings).run();
  EXPECT_EQ(summary.requests, 40u);
  EXPECT_EQ(summary.ok + summary.errors, 40u);
  EXPECT_EQ(summary.errors, 20u) << summary.first_error;
  EXPECT_EQ(summary.errors_by_kind["sse_error"], 10u) << boost::json::serialize(summary.to_json());
}

TEST_F(TrafficTest, TransportFailuresAreCountedAsErrors) {
  start(simulate::default_reply);
  auto settings = options(3);
  settings.url = "http://127.0.0.1:" + std::to_string(upstream_->port());
  upstream_.reset();  // nothing listens there any more
  auto summary = TrafficGenerator(settings).run();
  EXPECT_EQ(summary.errors, 3u);
  EXPECT_EQ(summary.errors_by_kind["connect"], 3u);
}

TEST_F(TrafficTest, StopEndsARunWithoutLimitAfterTheRequestsInFlight) {
  start(simulate::default_reply);
  auto settings = options(0);
  settings.requests.reset();
  settings.rate = 200;
  TrafficGenerator generator(settings);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    generator.stop();
  });
  auto summary = generator.run();
  stopper.join();
  EXPECT_GT(summary.requests, 10u);
  EXPECT_LT(summary.requests, 200u);
  EXPECT_EQ(summary.errors, 0u) << summary.first_error;
}

TEST(TrafficOptionsTest, DurationsAndOptionsAreChecked) {
  EXPECT_EQ(simulate::parse_duration("30s"), std::chrono::seconds(30));
  EXPECT_EQ(simulate::parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(simulate::parse_duration("2m"), std::chrono::minutes(2));
  EXPECT_FALSE(simulate::parse_duration("soon"));
  EXPECT_FALSE(simulate::parse_duration("0s"));
  TrafficOptions options;
  EXPECT_FALSE(simulate::validate(options));
  options.url = "https://gateway.example";
  EXPECT_TRUE(simulate::validate(options));
  options.url = "http://127.0.0.1:8080";
  options.concurrency = 0;
  EXPECT_TRUE(simulate::validate(options));
}

}  // namespace
}  // namespace cutover::testing
