// Retries, retry budgets, circuit breakers, endpoints and fallback against fault-injecting fake
// providers. Assertions are on what clients and providers observe: statuses, which provider
// served, how many attempts each provider received.
#include <boost/json.hpp>

#include <sstream>

#include "admin/ctl.h"
#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
using simulate::FakeProvider;
using simulate::FakeReply;
using simulate::FakeRequest;
using simulate::Fault;

// Replies from a list, one per request, then the last one forever.
simulate::Script sequence(std::vector<std::function<void(FakeReply&)>> steps) {
  auto counter = std::make_shared<std::atomic<std::size_t>>(0);
  return [steps, counter](const FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    const auto index = std::min(counter->fetch_add(1), steps.size() - 1);
    steps[index](reply);
    return reply;
  };
}

void ok(FakeReply&) {}
void status_503(FakeReply& reply) {
  reply.status = 503;
  reply.body = R"({"error":{"message":"overloaded","type":"server_error"}})";
}

constexpr char kFallbackKey[] = "sk-fallback-key";
constexpr char kAdminToken[] = "admin-token-0123456789";

class ResilienceTest : public ::testing::Test {
 protected:
  // A route to `candidate` with `secondary` as its fallback when `with_fallback`.
  void start(simulate::Script candidate_script, const std::string& candidate_extra,
             bool with_fallback = false, simulate::Script secondary_script = simulate::default_reply,
             const std::string& top_extra = "") {
    candidate_ = std::make_unique<FakeProvider>(std::move(candidate_script));
    secondary_ = std::make_unique<FakeProvider>(std::move(secondary_script));
    std::string yaml =
        "listen: 127.0.0.1:0\nworkers: 1\naccess_log: \"off\"\n"
        "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}\n" + top_extra +
        "providers:\n"
        "  candidate:\n"
        "    base_url: " + candidate_->base_url() + "\n"
        "    api_key_env: PROVIDER_KEY\n"
        "    models: {gpt-4: candidate-model}\n"
        "    timeouts: {connect: 1s, first_byte: 500ms, idle: 500ms, total: 5s}\n" +
        candidate_extra +
        "  secondary:\n"
        "    base_url: " + secondary_->base_url() + "\n"
        "    api_key_env: FALLBACK_KEY\n"
        "    models: {gpt-4: secondary-model}\n"
        "routes:\n"
        "  - models: [gpt-4]\n"
        "    provider: candidate\n" +
        (with_fallback ? "    fallback: [secondary]\n" : "");
    start_yaml(yaml);
  }

  // One provider, `candidate`, with two endpoints in this order and no fallback.
  void start_with_endpoints(const FakeProvider& first, const FakeProvider& second) {
    start_yaml(
        "listen: 127.0.0.1:0\nworkers: 1\naccess_log: \"off\"\n"
        "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}\n"
        "providers:\n"
        "  candidate:\n"
        "    endpoints:\n"
        "      - {base_url: " +
        first.base_url() +
        ", api_key_env: PROVIDER_KEY}\n"
        "      - {base_url: " +
        second.base_url() +
        ", api_key_env: PROVIDER_KEY}\n"
        "    models: {gpt-4: candidate-model}\n"
        "routes:\n  - models: [gpt-4]\n    provider: candidate\n");
  }

  void start_yaml(const std::string& yaml) {
    auto environment = [](const std::string& name) -> std::optional<std::string> {
      if (name == "CLIENT_KEY") return kClientKey;
      if (name == "PROVIDER_KEY") return kProviderKey;
      if (name == "FALLBACK_KEY") return kFallbackKey;
      if (name == "ADMIN_TOKEN") return kAdminToken;
      return std::nullopt;
    };
    auto loaded = config::load_from_string(yaml, environment);
    ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front();
    server_ = std::make_unique<runtime::GatewayServer>(loaded.config);
    server_->start();
  }

  void TearDown() override {
    if (server_) server_->shutdown(std::chrono::milliseconds(0));
  }

  Reply chat(bool stream = false) {
    TestClient client(server_->port());
    if (!stream) return client.post("/v1/chat/completions", chat_body());
    client.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                {{"authorization", std::string("Bearer ") + kClientKey}});
    return client.read_stream();
  }

  resilience::CircuitBreaker& breaker(const std::string& provider, std::size_t endpoint = 0) {
    return *server_->health()->provider(provider).breakers.at(endpoint);
  }

  std::unique_ptr<FakeProvider> candidate_;
  std::unique_ptr<FakeProvider> secondary_;
  std::unique_ptr<runtime::GatewayServer> server_;
};

TEST_F(ResilienceTest, BurstOf503IsRetriedUntilSuccess) {
  start(sequence({status_503, status_503, ok}), "    retry: {max_attempts: 3, backoff_base: 1ms}\n");
  auto reply = chat();
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(candidate_->requests_received(), 3u);
}

TEST_F(ResilienceTest, PersistentFailureStopsAtMaxAttemptsAndTellsSdksNotToRetry) {
  // Three attempts spread over at least the SDK's own retry span (0.6 s asked between each):
  // the SDK would add nothing the gateway has not tried.
  start(sequence({[](FakeReply& reply) {
          status_503(reply);
          reply.headers = {{"retry-after-ms", "600"}};
        }}),
        "    retry: {max_attempts: 3, backoff_base: 1ms}\n");
  auto reply = chat();
  EXPECT_EQ(reply.status, 503u);
  EXPECT_EQ(reply.header("x-should-retry"), "false");
  EXPECT_EQ(reply.header("x-cutover-attempts"), "3");
  EXPECT_EQ(json::parse(reply.body).at("error").at("message"), "overloaded");
  EXPECT_EQ(candidate_->requests_received(), 3u);
}

TEST_F(ResilienceTest, RateLimitWithRetryAfterSecondsIsHonoured) {
  start(sequence({[](FakeReply& reply) {
                    reply.status = 429;
                    reply.headers = {{"retry-after", "1"}};
                    reply.body = R"({"error":{"message":"slow down"}})";
                  },
                  ok}),
        "    retry: {max_attempts: 2}\n");
  auto reply = chat();
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(candidate_->requests_received(), 2u);
}

TEST_F(ResilienceTest, RateLimitWithHttpDateIsHonoured) {
  start(sequence({[](FakeReply& reply) {
                    reply.status = 429;
                    const auto in_one_second = std::chrono::system_clock::now() + std::chrono::seconds(1);
                    const auto t = std::chrono::system_clock::to_time_t(in_one_second);
                    char date[64];
                    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", std::gmtime(&t));
                    reply.headers = {{"retry-after", date}};
                    reply.body = R"({"error":{"message":"slow down"}})";
                  },
                  ok}),
        "    retry: {max_attempts: 2}\n");
  EXPECT_EQ(chat().status, 200u);
  EXPECT_EQ(candidate_->requests_received(), 2u);
}

TEST_F(ResilienceTest, RateLimitBeyondTheDeadlineFailsOverAtOnce) {
  start(sequence({[](FakeReply& reply) {
          reply.status = 429;
          reply.headers = {{"retry-after", "30"}};
          reply.body = R"({"error":{"message":"daily limit"}})";
        }}),
        "    retry: {max_attempts: 3}\n", true);
  const auto began = std::chrono::steady_clock::now();
  auto reply = chat();
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(reply.header("x-cutover-provider"), "secondary");
  EXPECT_EQ(candidate_->requests_received(), 1u) << "the 30 s wait was not slept";
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(5));
}

TEST_F(ResilienceTest, RateLimitBeyondTheDeadlineWithoutFallbackPassesRetryAfterOn) {
  start(sequence({[](FakeReply& reply) {
          reply.status = 429;
          reply.headers = {{"retry-after", "30"}};
          reply.body = R"({"error":{"message":"daily limit"}})";
        }}),
        "    retry: {max_attempts: 3}\n");
  auto reply = chat();
  EXPECT_EQ(reply.status, 429u);
  EXPECT_EQ(reply.header("retry-after"), "30");
  // A rate limit passes: the SDK is told to come back after Retry-After, never not to.
  EXPECT_EQ(reply.header("x-should-retry"), "true");
  EXPECT_EQ(candidate_->requests_received(), 1u);
}

TEST_F(ResilienceTest, ThrottledEndpointIsSkippedUntilItsResetTime) {
  start(sequence({[](FakeReply& reply) {
                    reply.status = 429;
                    reply.headers = {{"retry-after", "30"}};
                  },
                  ok}),
        "    retry: {max_attempts: 1}\n", true);
  EXPECT_EQ(chat().header("x-cutover-provider"), "secondary");
  // The candidate said "30 s": the next requests do not even try it.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(chat().header("x-cutover-provider"), "secondary");
  EXPECT_EQ(candidate_->requests_received(), 1u);
  EXPECT_TRUE(breaker("candidate").snapshot(std::chrono::steady_clock::now()).throttled);
  EXPECT_EQ(breaker("candidate").state(std::chrono::steady_clock::now()),
            resilience::BreakerState::closed) << "a 429 is not a breaker failure";
}

TEST_F(ResilienceTest, ThrottledLastOptionWaitsOutAShortThrottleInsteadOfRefusing) {
  start(sequence({[](FakeReply& reply) {
                    reply.status = 429;
                    reply.headers = {{"retry-after-ms", "300"}};
                  },
                  ok}),
        "    retry: {max_attempts: 1}\n");
  auto throttled = chat();
  EXPECT_EQ(throttled.status, 429u) << "one attempt allowed: the provider's 429 is passed on";
  EXPECT_EQ(throttled.header("x-should-retry"), "true");
  EXPECT_EQ(throttled.header("retry-after-ms"), "300");
  // The endpoint is throttled and nobody else can serve: the next request waits for the
  // throttle's end inside its deadline and is served, where it used to get 503.
  auto next = chat();
  EXPECT_EQ(next.status, 200u) << next.body;
  EXPECT_EQ(candidate_->requests_received(), 2u);
}

TEST_F(ResilienceTest, ThrottleBeyondTheDeadlineAnswers429WithTheTimeLeft) {
  start(sequence({[](FakeReply& reply) {
          reply.status = 429;
          reply.headers = {{"retry-after", "30"}};
        }}),
        "    retry: {max_attempts: 1}\n");
  EXPECT_EQ(chat().status, 429u);
  auto refused = chat();
  EXPECT_EQ(refused.status, 429u) << refused.body;
  EXPECT_EQ(json::parse(refused.body).at("error").at("code"), "rate_limit_exceeded");
  EXPECT_EQ(refused.header("x-should-retry"), "true");
  const auto retry_after = std::stoi(std::string(refused.header("retry-after")));
  EXPECT_GE(retry_after, 29);
  EXPECT_LE(retry_after, 30);
  EXPECT_EQ(candidate_->requests_received(), 1u) << "the 30 s pause is respected";
}

TEST_F(ResilienceTest, HalfOfRequestsThrottledStillServesEveryClient) {
  // Every other request is refused with a 1 s Retry-After: each client request gets through on
  // the gateway's own retry after the pause, as the SDK's would straight to the provider.
  auto counter = std::make_shared<std::atomic<int>>(0);
  start([counter](const FakeRequest& request) {
          auto reply = simulate::default_reply(request);
          if (counter->fetch_add(1) % 2 == 0) {
            reply.status = 429;
            reply.headers = {{"retry-after-ms", "100"}};
          }
          return reply;
        },
        "    retry: {max_attempts: 3}\n");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(chat().status, 200u);
}

TEST_F(ResilienceTest, OpenBreakerOnTheLastOptionLetsRequestsThroughAsALastResort) {
  auto failing = std::make_shared<std::atomic<bool>>(true);
  start([failing](const FakeRequest& request) {
          auto reply = simulate::default_reply(request);
          if (*failing) status_503(reply);
          return reply;
        },
        "    retry: {max_attempts: 1}\n"
        "    breaker: {minimum_calls: 4, window_size: 10, open_duration: 60s}\n");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(chat().status, 503u);
  ASSERT_EQ(breaker("candidate").state(std::chrono::steady_clock::now()),
            resilience::BreakerState::open);
  // The provider recovers while the breaker is open for a minute: with no other option, the
  // gateway sends anyway instead of making an outage of its own.
  *failing = false;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(chat().status, 200u);
  EXPECT_EQ(candidate_->requests_received(), 9u);
  EXPECT_EQ(breaker("candidate").snapshot(std::chrono::steady_clock::now()).last_resort_calls, 5u);
}

TEST_F(ResilienceTest, OpenBreakerWithoutLastResortSaysWhenToComeBack) {
  start(sequence({status_503}),
        "    retry: {max_attempts: 1}\n"
        "    breaker: {minimum_calls: 4, window_size: 10, open_duration: 20s, last_resort_share: 0}\n");
  for (int i = 0; i < 4; ++i) chat();
  auto refused = chat();
  EXPECT_EQ(refused.status, 503u);
  EXPECT_EQ(json::parse(refused.body).at("error").at("code"), "circuit_open");
  EXPECT_EQ(refused.header("x-should-retry"), "true");
  const auto retry_after = std::stoi(std::string(refused.header("retry-after")));
  EXPECT_GE(retry_after, 17);
  EXPECT_LE(retry_after, 22);
  EXPECT_EQ(candidate_->requests_received(), 4u);
}

TEST_F(ResilienceTest, ReplayAfterAResetOnAReusedConnectionTakesARetry) {
  start(sequence({ok, [](FakeReply& reply) { reply.fault = Fault::reset_before_response; }, ok}),
        "    retry: {max_attempts: 1}\n");
  EXPECT_EQ(chat().status, 200u);
  // The pooled connection is reused; the provider reads the request and resets it. It may
  // have run it, so sending it again on a fresh connection is a retry like any other.
  EXPECT_EQ(chat().status, 200u);
  EXPECT_EQ(candidate_->requests_received(), 3u);
  const auto totals = server_->health()->provider("candidate").budget->window_totals(
      std::chrono::steady_clock::now());
  EXPECT_EQ(totals.retries, 1u);
}

TEST_F(ResilienceTest, NoReplayWithoutRetryBudget) {
  start(sequence({ok, [](FakeReply& reply) { reply.fault = Fault::reset_before_response; }, ok}),
        "    retry: {max_attempts: 1}\n"
        "    retry_budget: {ratio: 0, min_retries_per_second: 0}\n");
  EXPECT_EQ(chat().status, 200u);
  auto reply = chat();
  EXPECT_EQ(reply.status, 502u);
  EXPECT_EQ(reply.header("x-should-retry"), "true") << "one attempt: the SDK may add its own";
  EXPECT_EQ(candidate_->requests_received(), 2u);
}

TEST_F(ResilienceTest, AnEndpointThatReportsItsQuotaSpentIsPassedOver) {
  auto spent = std::make_unique<FakeProvider>([](const FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    reply.headers = {{"x-ratelimit-limit-requests", "60"},
                     {"x-ratelimit-remaining-requests", "0"},
                     {"x-ratelimit-reset-requests", "30s"}};
    return reply;
  });
  auto fresh = std::make_unique<FakeProvider>(simulate::default_reply);
  start_with_endpoints(*spent, *fresh);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(chat().status, 200u);
  // Its one answer said "no request left for 30 s": every later request goes to the other
  // endpoint instead of collecting 429s.
  EXPECT_EQ(spent->requests_received(), 1u);
  EXPECT_EQ(fresh->requests_received(), 9u);
  const auto quota = server_->health()->provider("candidate").quotas.at(0)->snapshot(
      std::chrono::steady_clock::now());
  EXPECT_TRUE(quota.exhausted);
  EXPECT_EQ(quota.request_limit, 60);
}

// An endpoint whose quota falls with every request (as OpenAI's does) is read often enough to be
// passed over when its last request is spent, not after its first 429, although the gateway
// does not read every answer while the endpoint has room (QuotaState::wants_reading).
TEST_F(ResilienceTest, AnEndpointRunningOutIsPassedOverBeforeItRefuses) {
  simulate::Profile limited;
  limited.latency = std::chrono::milliseconds(0);
  limited.jitter = std::chrono::milliseconds(0);
  limited.quota_requests = 12;
  auto running_out = std::make_unique<FakeProvider>(simulate::profile_script(limited));
  auto fresh = std::make_unique<FakeProvider>(simulate::default_reply);
  start_with_endpoints(*running_out, *fresh);
  for (int i = 0; i < 40; ++i) ASSERT_EQ(chat().status, 200u) << "request " << i;
  EXPECT_EQ(running_out->requests_received(), 12u) << "its quota, and not one request more";
  EXPECT_EQ(fresh->requests_received(), 28u);
  const auto quota = server_->health()
                         ->provider("candidate")
                         .quotas.at(0)
                         ->snapshot(std::chrono::steady_clock::now());
  EXPECT_TRUE(quota.exhausted);
  EXPECT_EQ(quota.requests_remaining, 0);
}

TEST_F(ResilienceTest, ASpentQuotaOnTheLastOptionLeavesTheDecisionToTheProvider) {
  start(reply_with([](FakeReply& reply) {
          reply.headers = {{"x-ratelimit-remaining-requests", "0"},
                           {"x-ratelimit-reset-requests", "30s"}};
        }),
        "    retry: {max_attempts: 1}\n");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(chat().status, 200u);
  EXPECT_EQ(candidate_->requests_received(), 3u);
}

TEST_F(ResilienceTest, ASpentQuotaSendsRequestsToTheFallbackFirst) {
  start(reply_with([](FakeReply& reply) {
          reply.headers = {{"x-ratelimit-remaining-requests", "0"},
                           {"x-ratelimit-reset-requests", "30s"}};
        }),
        "    retry: {max_attempts: 1}\n", true);
  EXPECT_EQ(chat().header("x-cutover-provider"), "candidate");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(chat().header("x-cutover-provider"), "secondary");
  EXPECT_EQ(candidate_->requests_received(), 1u);
}

TEST_F(ResilienceTest, ResetMidBodyIsRetried) {
  start(sequence({[](FakeReply& reply) { reply.fault = Fault::reset_mid_body; }, ok}),
        "    retry: {max_attempts: 2, backoff_base: 1ms}\n");
  EXPECT_EQ(chat().status, 200u);
  EXPECT_EQ(candidate_->requests_received(), 2u);
}

TEST_F(ResilienceTest, NothingIsRetriedOnceTheStreamHasBegun) {
  start(sequence({[](FakeReply& reply) { reply.fault = Fault::truncate_stream; }, ok}),
        "    retry: {max_attempts: 3, backoff_base: 1ms}\n", true);
  auto reply = chat(true);
  EXPECT_EQ(reply.status, 200u);
  EXPECT_NE(reply.body.find("\"error\""), std::string::npos) << reply.body;
  EXPECT_EQ(candidate_->requests_received(), 1u);
  EXPECT_EQ(secondary_->requests_received(), 0u);
}

TEST_F(ResilienceTest, StreamThatFailsBeforeItsFirstEventIsRetried) {
  start(sequence({[](FakeReply& reply) { reply.fault = Fault::reset_before_response; }, ok}),
        "    retry: {max_attempts: 2, backoff_base: 1ms}\n");
  auto reply = chat(true);
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(data_events(reply.body).back(), "[DONE]");
  EXPECT_EQ(candidate_->requests_received(), 2u);
}

TEST_F(ResilienceTest, SlowFirstByteFailsOverToTheFallback) {
  start(sequence({[](FakeReply& reply) { reply.delay = std::chrono::milliseconds(2000); }}),
        "    retry: {max_attempts: 1}\n", true);
  auto reply = chat();
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.header("x-cutover-provider"), "secondary");
}

TEST_F(ResilienceTest, MalformedJsonFailsOverToTheFallback) {
  start(sequence({[](FakeReply& reply) { reply.fault = Fault::malformed_body; }}),
        "    retry: {max_attempts: 1}\n", true);
  auto reply = chat();
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.header("x-cutover-provider"), "secondary");
}

TEST_F(ResilienceTest, FallbackUsesItsOwnModelNameAndKey) {
  start(sequence({status_503}), "    retry: {max_attempts: 1}\n", true);
  auto reply = chat();
  ASSERT_EQ(reply.status, 200u);
  EXPECT_EQ(json::parse(reply.body).at("model"), "gpt-4");
  auto request = secondary_->recorded_requests().at(0);
  EXPECT_EQ(request.json.at("model"), "secondary-model");
  EXPECT_EQ(request.header("authorization"), std::string("Bearer ") + kFallbackKey);
}

TEST_F(ResilienceTest, ClientErrorsPassThroughAndAreNeverRetried) {
  start(sequence({[](FakeReply& reply) {
          reply.status = 400;
          reply.body = R"({"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":"max_tokens","code":null}})";
        }}),
        "    retry: {max_attempts: 3}\n", true);
  auto reply = chat();
  EXPECT_EQ(reply.status, 400u);
  EXPECT_EQ(json::parse(reply.body).at("error").at("param"), "max_tokens");
  EXPECT_EQ(candidate_->requests_received(), 1u);
  EXPECT_EQ(secondary_->requests_received(), 0u);
}

TEST_F(ResilienceTest, RetryBudgetCapsRetriesAcrossRequests) {
  start(sequence({status_503}),
        "    retry: {max_attempts: 3, backoff_base: 1ms}\n"
        "    retry_budget: {ratio: 0.5, min_retries_per_second: 0, window: 10s}\n"
        "    breaker: {minimum_calls: 1000}\n");
  unsigned cut_short = 0;
  for (int i = 0; i < 10; ++i) {
    auto reply = chat();
    EXPECT_EQ(reply.status, 503u);
    // Whether the budget cut its retries short or its three attempts came within milliseconds,
    // a request has not had what the SDK's own retries would give it: the SDK may add them.
    EXPECT_EQ(reply.header("x-should-retry"), "true");
    cut_short += reply.header("x-cutover-attempts") == "3" ? 0 : 1;
  }
  EXPECT_GE(cut_short, 5u);
  // 10 requests, retries capped at 50 % of them: at most 15 attempts, not 30.
  EXPECT_LE(candidate_->requests_received(), 15u);
  EXPECT_GE(candidate_->requests_received(), 14u);
}

TEST_F(ResilienceTest, OpenBreakerSendsTrafficToTheFallbackAndLetsOnlyProbesThrough) {
  start(sequence({status_503}),
        "    retry: {max_attempts: 1}\n"
        "    breaker: {minimum_calls: 5, window_size: 10, failure_rate: 0.5, open_duration: 300ms, "
        "half_open_probes: 2}\n",
        true);
  for (int i = 0; i < 20; ++i) {
    auto reply = chat();
    EXPECT_EQ(reply.status, 200u) << "no client sees the candidate's failures";
    EXPECT_EQ(reply.header("x-cutover-provider"), "secondary");
  }
  EXPECT_EQ(candidate_->requests_received(), 5u) << "the breaker opened after 5 failures";
  EXPECT_EQ(breaker("candidate").state(std::chrono::steady_clock::now()), resilience::BreakerState::open);

  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  candidate_->set_script(simulate::default_reply);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(chat().status, 200u);
  // Two probes succeeded and closed it; the rest went to the candidate again.
  EXPECT_EQ(breaker("candidate").state(std::chrono::steady_clock::now()), resilience::BreakerState::closed);
  EXPECT_EQ(candidate_->requests_received(), 10u);
}

TEST_F(ResilienceTest, AllCircuitsOpenGives503WithoutTouchingProviders) {
  start(simulate::default_reply, "    retry: {max_attempts: 1}\n");
  breaker("candidate").force_open();
  auto reply = chat();
  EXPECT_EQ(reply.status, 503u);
  EXPECT_EQ(json::parse(reply.body).at("error").at("code"), "circuit_open");
  EXPECT_EQ(candidate_->requests_received(), 0u);
}

TEST_F(ResilienceTest, RequestsSpreadOverEndpointsAndAvoidADeadOne) {
  auto first = std::make_unique<FakeProvider>(simulate::default_reply);
  auto second = std::make_unique<FakeProvider>(simulate::default_reply);
  auto make_yaml = [&](const std::string& second_url) {
    return "listen: 127.0.0.1:0\nworkers: 1\naccess_log: \"off\"\n"
           "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}\n"
           "providers:\n  multi:\n    models: {gpt-4: m}\n"
           "    retry: {max_attempts: 2, backoff_base: 1ms}\n"
           "    endpoints:\n"
           "      - {base_url: \"" + first->base_url() + "\", api_key_env: PROVIDER_KEY}\n"
           "      - {base_url: \"" + second_url + "\", api_key_env: FALLBACK_KEY}\n"
           "routes: [{models: [gpt-4], provider: multi}]\n";
  };
  start_yaml(make_yaml(second->base_url()));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(chat().status, 200u);
  EXPECT_GT(first->requests_received(), 0u);
  EXPECT_GT(second->requests_received(), 0u);
  EXPECT_EQ(first->requests_received() + second->requests_received(), 10u);
  EXPECT_EQ(second->recorded_requests().at(0).header("authorization"),
            std::string("Bearer ") + kFallbackKey) << "each endpoint sends its own key";
  server_->shutdown(std::chrono::milliseconds(0));

  // The second endpoint refuses connections: every request still succeeds on the first.
  const auto dead_port = second->port();
  second.reset();
  start_yaml(make_yaml("http://127.0.0.1:" + std::to_string(dead_port) + "/v1"));
  const auto before = first->requests_received();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(chat().status, 200u);
  EXPECT_EQ(first->requests_received() - before, 10u);
}

class AdminApiTest : public ResilienceTest {
 protected:
  void SetUp() override {
    start(simulate::default_reply, "    retry: {max_attempts: 1}\n", true, simulate::default_reply,
          "admin: {listen: 127.0.0.1:0, token_env: ADMIN_TOKEN}\n");
  }
  Reply admin(http::verb method, const std::string& path, const std::string& token = kAdminToken) {
    TestClient client(server_->admin_port());
    return client.request(method, path, "", {{"authorization", "Bearer " + token}});
  }
  std::string ctl(std::vector<std::string> words) {
    std::ostringstream out, error;
    admin::CtlTarget target{"http://127.0.0.1:" + std::to_string(server_->admin_port()), kAdminToken};
    EXPECT_EQ(admin::run_ctl(target, words, out, error), 0) << error.str();
    return out.str();
  }
};

TEST_F(AdminApiTest, RefusesClientKeysAndMissingTokens) {
  EXPECT_EQ(admin(http::verb::get, "/admin/v1/breakers", kClientKey).status, 401u);
  TestClient anonymous(server_->admin_port());
  EXPECT_EQ(anonymous.request(http::verb::get, "/admin/v1/breakers").status, 401u);
  EXPECT_EQ(admin(http::verb::get, "/admin/v1/breakers").status, 200u);
}

TEST_F(AdminApiTest, RepeatedWrongTokensAreStillAnswered401AndTheRightOneStillWorks) {
  // Each failure in a row waits longer before its 401 (authentication_backoff_test.cc has the
  // figures); the answers still come, and the operator's token is not held up by them.
  for (int i = 0; i < 3; ++i) {
    expect_openai_error(admin(http::verb::get, "/admin/v1/breakers", "wrong-token-0123456789"),
                        401, "invalid_admin_token");
  }
  EXPECT_EQ(admin(http::verb::get, "/admin/v1/breakers").status, 200u);
}

TEST_F(AdminApiTest, ListsEveryEndpointsBreaker) {
  auto body = json::parse(admin(http::verb::get, "/admin/v1/breakers").body);
  const auto& breakers = body.at("breakers").as_array();
  ASSERT_EQ(breakers.size(), 2u);
  EXPECT_EQ(breakers[0].at("provider"), "candidate");
  EXPECT_EQ(breakers[0].at("state"), "closed");
}

TEST_F(AdminApiTest, ForcedOpenSendsTrafficToTheFallbackUntilReset) {
  auto forced = admin(http::verb::post, "/admin/v1/breakers/candidate/0/force_open");
  ASSERT_EQ(forced.status, 200u) << forced.body;
  EXPECT_EQ(json::parse(forced.body).at("state"), "forced_open");
  EXPECT_EQ(chat().header("x-cutover-provider"), "secondary");
  EXPECT_EQ(candidate_->requests_received(), 0u);
  ASSERT_EQ(admin(http::verb::post, "/admin/v1/breakers/candidate/0/reset").status, 200u);
  EXPECT_EQ(chat().header("x-cutover-provider"), "candidate");
}

TEST_F(AdminApiTest, UnknownEndpointOrActionIsAnError) {
  EXPECT_EQ(admin(http::verb::post, "/admin/v1/breakers/nobody/0/reset").status, 404u);
  EXPECT_EQ(admin(http::verb::post, "/admin/v1/breakers/candidate/7/reset").status, 404u);
  EXPECT_EQ(admin(http::verb::post, "/admin/v1/breakers/candidate/0/explode").status, 400u);
}

TEST_F(AdminApiTest, CtlPrintsBreakersAndBudgetsAsTables) {
  ctl({"breaker", "candidate", "0", "disable"});
  auto table = ctl({"breakers"});
  EXPECT_NE(table.find("PROVIDER"), std::string::npos) << table;
  EXPECT_NE(table.find("disabled"), std::string::npos) << table;
  EXPECT_NE(table.find("secondary"), std::string::npos) << table;
  chat();
  auto budgets = ctl({"budgets"});
  EXPECT_NE(budgets.find("candidate"), std::string::npos) << budgets;
  EXPECT_NE(budgets.find("RETRIES"), std::string::npos) << budgets;
}

TEST_F(AdminApiTest, QuotasShowWhatEachEndpointReported) {
  candidate_->set_script(reply_with([](FakeReply& reply) {
    reply.headers = {{"x-ratelimit-limit-requests", "500"},
                     {"x-ratelimit-remaining-requests", "321"},
                     {"x-ratelimit-reset-requests", "20s"}};
  }));
  ASSERT_EQ(chat().status, 200u);
  auto body = json::parse(admin(http::verb::get, "/admin/v1/quotas").body);
  const auto& first = body.at("quotas").at(0);
  EXPECT_EQ(first.at("provider"), "candidate");
  EXPECT_EQ(first.at("request_limit"), 500);
  EXPECT_EQ(first.at("requests_remaining"), 321);
  EXPECT_EQ(first.at("exhausted"), false);
  EXPECT_TRUE(body.at("quotas").at(1).at("request_limit").is_null()) << "the fallback said nothing";
  auto table = ctl({"quotas"});
  EXPECT_NE(table.find("321/500"), std::string::npos) << table;
  const auto metrics = admin(http::verb::get, "/metrics").body;
  EXPECT_NE(metrics.find(R"(cutover_provider_quota_remaining{endpoint="0",kind="requests",provider="candidate"} 321)"),
            std::string::npos)
      << metrics.substr(0, 4000);
}

}  // namespace
}  // namespace cutover::testing
