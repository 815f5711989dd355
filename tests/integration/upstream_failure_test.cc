// Provider failures reach the client as one clear OpenAI-style error: never a crash, a hang or a
// response the SDKs cannot parse.
#include <boost/json.hpp>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
using simulate::Fault;
using simulate::FakeReply;

class UpstreamFailureTest : public GatewayTest {
 protected:
  // The last data event of a stream whose headers were already sent.
  json::value stream_error_event(const std::string& body) {
    auto events = data_events(body);
    if (events.empty()) return nullptr;
    return json::parse(events.back());
  }
};

TEST_F(UpstreamFailureTest, ConnectionRefusedGives502) {
  boost::asio::io_context context;
  boost::asio::ip::tcp::acceptor probe(context, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto closed_port = probe.local_endpoint().port();
  probe.close();
  start_gateway("http://127.0.0.1:" + std::to_string(closed_port) + "/v1");
  expect_openai_error(client().post("/v1/chat/completions", chat_body()), 502, "connect_error");
}

TEST_F(UpstreamFailureTest, SlowFirstByteGives504) {
  start(reply_with([](FakeReply& reply) { reply.delay = std::chrono::milliseconds(3000); }));
  auto reply = client().post("/v1/chat/completions", chat_body());
  expect_openai_error(reply, 504, "first_byte_timeout");
  EXPECT_EQ(json::parse(reply.body).at("error").at("type"), "timeout_error");
}

TEST_F(UpstreamFailureTest, ResetBeforeResponseGives502) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::reset_before_response; }));
  expect_openai_error(client().post("/v1/chat/completions", chat_body()), 502, "connection_reset");
}

TEST_F(UpstreamFailureTest, ResetMidBodyGives502) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::reset_mid_body; }));
  expect_openai_error(client().post("/v1/chat/completions", chat_body()), 502, "connection_reset");
}

TEST_F(UpstreamFailureTest, MalformedJsonGives502) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::malformed_body; }));
  expect_openai_error(client().post("/v1/chat/completions", chat_body()), 502, "invalid_upstream_response");
}

TEST_F(UpstreamFailureTest, ResponseMissingChoicesGives502) {
  start(reply_with([](FakeReply& reply) { reply.body = R"({"id":"x","object":"chat.completion"})"; }));
  expect_openai_error(client().post("/v1/chat/completions", chat_body()), 502, "invalid_upstream_response");
}

TEST_F(UpstreamFailureTest, InvalidHttpGives502) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::invalid_http; }));
  auto reply = client().post("/v1/chat/completions", chat_body());
  EXPECT_EQ(reply.status, 502u) << reply.body;
}

TEST_F(UpstreamFailureTest, ProviderStatusPassesThroughWithRetryAfter) {
  start(reply_with([](FakeReply& reply) {
    reply.status = 429;
    reply.headers = {{"retry-after", "7"}, {"x-ratelimit-reset-requests", "7s"}};
    reply.body = R"({"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}})";
  }));
  auto reply = client().post("/v1/chat/completions", chat_body());
  expect_openai_error(reply, 429, "rate_limit_exceeded");
  EXPECT_EQ(reply.header("retry-after"), "7");
  EXPECT_EQ(reply.header("x-ratelimit-reset-requests"), "7s");
  EXPECT_EQ(json::parse(reply.body).at("error").at("message"), "slow down");
}

TEST_F(UpstreamFailureTest, MalformedFirstStreamEventGives502BeforeAnyHeader) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::malformed_body; }));
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  auto reply = downstream.read_stream();
  expect_openai_error(reply, 502, "invalid_upstream_response");
}

TEST_F(UpstreamFailureTest, TruncatedStreamEndsWithAnErrorEvent) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::truncate_stream; }));
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  auto reply = downstream.read_stream();
  ASSERT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.body.find("[DONE]"), std::string::npos);
  auto last = stream_error_event(reply.body);
  ASSERT_TRUE(last.is_object()) << reply.body;
  EXPECT_TRUE(last.as_object().contains("error")) << reply.body;
}

TEST_F(UpstreamFailureTest, StalledStreamEndsAfterTheIdleTimeout) {
  start(reply_with([](FakeReply& reply) { reply.fault = Fault::stall_after_first_chunk; }));
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  auto reply = downstream.read_stream();
  ASSERT_EQ(reply.status, 200u);
  auto last = stream_error_event(reply.body);
  ASSERT_TRUE(last.is_object()) << reply.body;
  EXPECT_EQ(last.at("error").at("code"), "idle_timeout") << reply.body;
}

TEST_F(UpstreamFailureTest, ProviderClosingKeptAliveConnectionIsRetriedTransparently) {
  // Every answer closes the connection, so each next request finds its pooled connection dead.
  start(reply_with([](FakeReply& reply) { reply.close_after = true; }));
  auto downstream = client();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(downstream.post("/v1/chat/completions", chat_body()).status, 200u);
  }
  EXPECT_EQ(upstream_->connections_accepted(), 5u);
}

TEST_F(UpstreamFailureTest, EveryConcurrentRequestGetsExactlyOneResponse) {
  // Owned by the script, which the provider's thread may still hold after the test body ends.
  auto serial = std::make_shared<std::atomic<int>>(0);
  start([serial](const simulate::FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    switch ((*serial)++ % 4) {
      case 0: reply.fault = Fault::reset_before_response; break;
      case 1: reply.status = 500; reply.body = R"({"error":{"message":"boom"}})"; break;
      case 2: reply.fault = Fault::malformed_body; break;
      default: break;
    }
    return reply;
  }, GatewayOptions{.workers = 2});
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto downstream = client();
      for (int i = 0; i < 25; ++i) {
        auto reply = downstream.post("/v1/chat/completions", chat_body());
        // 503 once the breaker has tripped on the 75 % failure rate.
        if (reply.status == 200 || reply.status == 500 || reply.status == 502 || reply.status == 503) {
          ++answered;
        } else {
          ADD_FAILURE() << reply.status << " " << reply.body;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(answered.load(), 100);
}

}  // namespace
}  // namespace cutover::testing
