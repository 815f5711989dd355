// The client-facing HTTP server's own behaviour in front of the gateway: interim answers and
// the limit on open connections.
#include <poll.h>

#include <algorithm>
#include <initializer_list>
#include <string_view>
#include <vector>

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

// The header's lines after the status line, as sent.
std::vector<std::string> header_lines(const std::string& answer) {
  std::vector<std::string> lines;
  const auto end = answer.find("\r\n\r\n");
  std::size_t at = answer.find("\r\n") + 2;
  while (at < end) {
    const auto next = answer.find("\r\n", at);
    lines.push_back(answer.substr(at, next - at));
    at = next + 2;
  }
  return lines;
}

std::size_t lines_starting(const std::vector<std::string>& lines, std::string_view prefix) {
  return std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
    return line.size() >= prefix.size() && beast::iequals(line.substr(0, prefix.size()), prefix);
  });
}

// Writes a chat request by hand, with `extra` fields and Connection: close; returns the whole
// answer.
std::string answer_to_closing_request(TestClient& client, const std::string& body,
                                      const std::string& extra = "") {
  client.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Authorization: Bearer client-secret\r\nContent-Type: application/json\r\n" +
                   extra + "Connection: close\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\n\r\n" + body);
  return client.read_until_close();
}

// Expects exactly one header line of `answer` to start with each of `once`, and none with any
// of `never`.
void expect_header_lines(const std::string& answer, std::initializer_list<std::string_view> once,
                         std::initializer_list<std::string_view> never) {
  const auto lines = header_lines(answer);
  for (const auto prefix : once) EXPECT_EQ(lines_starting(lines, prefix), 1u) << prefix << answer;
  for (const auto prefix : never) EXPECT_EQ(lines_starting(lines, prefix), 0u) << prefix << answer;
}

TEST_F(GatewayTest, ProviderRequestsCarryTheGatewaysFieldsOnceEachInOrder) {
  start(simulate::default_reply);
  auto downstream = client();
  const auto reply = downstream.request(
      http::verb::post, "/v1/chat/completions", chat_body(),
      {{"authorization", "Bearer client-secret"}, {"x-request-id", "trace-7"},
       {"anthropic-version", "2023-06-01"}, {"x-api-key", "client-secret"}});
  ASSERT_EQ(reply.status, 200u) << reply.body;
  const auto requests = upstream_->recorded_requests();
  ASSERT_EQ(requests.size(), 1u);
  std::vector<std::string> names;
  for (const auto& [name, value] : requests[0].headers) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"Host", "Content-Type", "Accept", "x-request-id",
                                             "User-Agent", "Authorization", "Content-Length"}));
  EXPECT_EQ(requests[0].header("content-length"), std::to_string(requests[0].body.size()));
  EXPECT_EQ(requests[0].header("authorization"), std::string("Bearer ") + kProviderKey);
  EXPECT_EQ(requests[0].header("x-request-id"), "trace-7");
  EXPECT_EQ(requests[0].header("accept"), "application/json");
  EXPECT_EQ(requests[0].header("host"), "127.0.0.1:" + std::to_string(upstream_->port()))
      << "a provider on a port of its own is named with it";
}

TEST_F(GatewayTest, AnswersCarryServerIdAndFramingOnceEach) {
  start(simulate::default_reply);
  const auto body = chat_body();
  auto kept = client();
  const auto kept_reply = kept.request(http::verb::post, "/v1/chat/completions", body,
                                       {{"authorization", "Bearer client-secret"},
                                        {"x-request-id", "trace-9"}});
  ASSERT_EQ(kept_reply.status, 200u) << kept_reply.body;
  EXPECT_EQ(kept_reply.header("server"), "cutover");
  EXPECT_EQ(kept_reply.header("x-request-id"), "trace-9");
  EXPECT_EQ(kept_reply.header("content-length"), std::to_string(kept_reply.body.size()));
  EXPECT_EQ(kept_reply.headers.count(http::field::connection), 0u) << "HTTP/1.1 keeps alive";

  auto closing = client();
  const auto answer = answer_to_closing_request(closing, body, "x-request-id: trace-9\r\n");
  ASSERT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
  expect_header_lines(answer,
                      {"Server: cutover", "x-request-id: trace-9", "Connection: close",
                       "Content-Length: "},
                      {"Transfer-Encoding"});
  const auto lines = header_lines(answer);
  const auto length_line = std::find_if(lines.begin(), lines.end(), [](const auto& line) {
    return line.rfind("Content-Length: ", 0) == 0;
  });
  ASSERT_NE(length_line, lines.end()) << answer;
  const auto length = std::stoul(length_line->substr(16));
  EXPECT_EQ(answer.size() - (answer.find("\r\n\r\n") + 4), length);
}

TEST_F(GatewayTest, StreamedAnswersAreChunkedWithoutALength) {
  start(simulate::default_reply);
  auto downstream = client();
  const auto answer = answer_to_closing_request(downstream, chat_body(true));
  ASSERT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
  expect_header_lines(answer,
                      {"Transfer-Encoding: chunked", "Server: cutover", "x-request-id: req_",
                       "Connection: close"},
                      {"Content-Length"});
  EXPECT_NE(answer.find("data: [DONE]"), std::string::npos) << answer;
  EXPECT_EQ(answer.substr(answer.size() - 5), "0\r\n\r\n");
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
