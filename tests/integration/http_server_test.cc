// The client-facing HTTP server's own behaviour in front of the gateway: interim answers and
// the limit on open connections.
#include <poll.h>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

// Whether the server has sent something to read, waiting at most a few seconds so that a
// missing answer fails the test instead of hanging it.
bool answer_arrives(TestClient& client) {
  pollfd ready{client.socket().native_handle(), POLLIN, 0};
  return ::poll(&ready, 1, 5'000) == 1;
}

std::string read_interim_answer(TestClient& client) {
  asio::streambuf received;
  asio::read_until(client.socket(), received, "\r\n\r\n");
  return std::string(asio::buffers_begin(received.data()), asio::buffers_end(received.data()));
}

std::string header_expecting_continue(std::size_t content_length) {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         "Authorization: Bearer client-secret\r\nContent-Type: application/json\r\n"
         "Expect: 100-continue\r\nContent-Length: " +
         std::to_string(content_length) + "\r\n\r\n";
}

TEST_F(GatewayTest, ExpectContinueIsAnsweredBeforeTheBodyIsSent) {
  start(simulate::default_reply);
  auto downstream = client();
  const auto body = chat_body();
  downstream.write_raw(header_expecting_continue(body.size()));
  ASSERT_TRUE(answer_arrives(downstream)) << "no 100 Continue while the client holds its body";
  EXPECT_EQ(read_interim_answer(downstream), "HTTP/1.1 100 Continue\r\n\r\n");
  downstream.write_raw(body);
  const auto reply = downstream.read();
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(upstream_->requests_received(), 1u);
}

TEST_F(GatewayTest, ExpectContinueWithATooLargeBodyGets413Instead) {
  start(simulate::default_reply, GatewayOptions{.top_extra = "limits: {max_body_bytes: 2048}\n"});
  auto downstream = client();
  downstream.write_raw(header_expecting_continue(4096));
  ASSERT_TRUE(answer_arrives(downstream));
  const auto answer = downstream.read_until_close();
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_NE(answer.find("request_too_large"), std::string::npos) << answer;
  EXPECT_EQ(upstream_->requests_received(), 0u);
}

TEST_F(GatewayTest, ConnectionsPastTheLimitAreAnswered503AndClosed) {
  start(simulate::default_reply,
        GatewayOptions{.top_extra = "limits: {max_client_connections: 1}\n"});
  auto holder = client();
  ASSERT_EQ(holder.post("/v1/chat/completions", chat_body()).status, 200u);

  auto refused_client = client();
  const auto refused = refused_client.post("/v1/chat/completions", chat_body());
  expect_openai_error(refused, 503, "too_many_connections");
  EXPECT_EQ(refused.header("connection"), "close");
  EXPECT_EQ(upstream_->requests_received(), 1u) << "the refused request went nowhere";
  EXPECT_NE(server_->scrape_metrics().find("cutover_client_connections_refused_total 1\n"),
            std::string::npos)
      << server_->scrape_metrics();

  // The holder's place is given back when it leaves.
  holder.close();
  EXPECT_TRUE(eventually([&] {
    auto next = client();
    return next.post("/v1/chat/completions", chat_body()).status == 200;
  }));
}

}  // namespace
}  // namespace cutover::testing
