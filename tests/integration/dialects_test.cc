// Issue #13 over real sockets, where the provider's side can be inspected: what a native
// Anthropic provider is sent, what passes through untouched, streams that break after their
// first byte, and requests a dialect cannot express.
#include <gtest/gtest.h>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;

constexpr char kAnthropicProvider[] = "    dialect: anthropic\n    retry: {max_attempts: 1}\n";

std::string messages_body(bool stream = false, std::string extra = "") {
  return R"({"model":"gpt-4","max_tokens":64,"stream":)" + std::string(stream ? "true" : "false") +
         extra + R"(,"messages":[{"role":"user","content":"hello there gateway"}]})";
}

Reply post_messages(TestClient client, std::string body,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  headers.emplace_back("x-api-key", kClientKey);
  return client.request(http::verb::post, "/v1/messages", std::move(body), std::move(headers));
}

// The event names of an SSE body, in order.
std::vector<std::string> event_names(const std::string& body) {
  std::vector<std::string> names;
  std::size_t at = 0;
  while ((at = body.find("event: ", at)) != std::string::npos) {
    const auto end = body.find('\n', at);
    names.push_back(body.substr(at + 7, end - at - 7));
    at = end;
  }
  return names;
}

TEST_F(GatewayTest, NativeAnthropicClientIsPassedThroughWithOnlyTheModelRenamed) {
  start(reply_with([](simulate::FakeReply&) {}), {.provider_extra = kAnthropicProvider});
  auto reply = post_messages(client(), messages_body(false, R"(,"a_field_cutover_does_not_know":{"x":[1e400]})"),
                             {{"anthropic-version", "2023-06-01"}, {"anthropic-beta", "tools-2099"}});
  ASSERT_EQ(reply.status, 200u) << reply.body;
  auto message = json::parse(reply.body);
  EXPECT_EQ(message.at("type"), "message");
  EXPECT_EQ(message.at("model"), "gpt-4");
  EXPECT_EQ(reply.header("x-cutover-provider"), "primary");

  auto requests = upstream_->recorded_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/v1/messages");
  // Byte for byte but the model: a number no DOM could carry survives.
  EXPECT_NE(requests[0].body.find(R"("a_field_cutover_does_not_know":{"x":[1e400]})"), std::string::npos)
      << requests[0].body;
  EXPECT_NE(requests[0].body.find(R"("model":"gpt-4.1")"), std::string::npos) << requests[0].body;
  EXPECT_EQ(requests[0].header("x-api-key"), kProviderKey);
  EXPECT_EQ(requests[0].header("authorization"), "");
  EXPECT_EQ(requests[0].header("anthropic-version"), "2023-06-01");
  EXPECT_EQ(requests[0].header("anthropic-beta"), "tools-2099");
}

TEST_F(GatewayTest, ChatClientOfAnAnthropicProviderIsTranslatedBothWays) {
  start(reply_with([](simulate::FakeReply&) {}), {.provider_extra = kAnthropicProvider});
  auto reply = client().post("/v1/chat/completions",
                             R"({"model":"gpt-4","messages":[{"role":"system","content":"Be brief."},
                                 {"role":"user","content":"hello there gateway"}],"stop":"END"})");
  ASSERT_EQ(reply.status, 200u) << reply.body;
  auto completion = json::parse(reply.body);
  EXPECT_EQ(completion.at("object"), "chat.completion");
  EXPECT_EQ(completion.at("model"), "gpt-4");
  EXPECT_EQ(completion.at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_GT(completion.at("usage").at("prompt_tokens").as_int64(), 0);

  auto requests = upstream_->recorded_requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& sent = requests[0].json.as_object();
  EXPECT_EQ(requests[0].target, "/v1/messages");
  EXPECT_EQ(sent.at("model"), "gpt-4.1");
  EXPECT_EQ(text_of(sent.at("system")).find("Be brief.") != std::string::npos, true) << requests[0].body;
  EXPECT_EQ(sent.at("stop_sequences"), json::array{"END"});
  // Anthropic requires max_tokens: the provider's default stands in for the client's none.
  EXPECT_EQ(sent.at("max_tokens"), 4096);
  EXPECT_EQ(requests[0].header("anthropic-version"), "2023-06-01");
}

TEST_F(GatewayTest, AFieldTheProvidersDialectCannotExpressIsA400NamingIt) {
  start(reply_with([](simulate::FakeReply&) {}), {.provider_extra = kAnthropicProvider});
  auto reply = client().post("/v1/chat/completions",
                             R"({"model":"gpt-4","n":3,"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(reply.status, 400u) << reply.body;
  EXPECT_NE(reply.body.find("n"), std::string::npos);
  EXPECT_TRUE(upstream_->recorded_requests().empty()) << "nothing is sent that cannot be honoured";
}

TEST_F(GatewayTest, AnthropicErrorsAreInAnthropicsSchema) {
  start(reply_with([](simulate::FakeReply&) {}));
  auto unauthenticated = client().request(http::verb::post, "/v1/messages", messages_body(),
                                          {{"x-api-key", "wrong"}});
  EXPECT_EQ(unauthenticated.status, 401u);
  auto body = json::parse(unauthenticated.body);
  EXPECT_EQ(body.at("type"), "error");
  EXPECT_EQ(body.at("error").at("type"), "authentication_error");

  auto unknown_model = post_messages(client(), R"({"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(unknown_model.status, 404u);
  EXPECT_EQ(json::parse(unknown_model.body).at("error").at("type"), "not_found_error");

  auto not_json = post_messages(client(), "{nope");
  EXPECT_EQ(not_json.status, 400u);
  EXPECT_EQ(json::parse(not_json.body).at("error").at("type"), "invalid_request_error");
}

TEST_F(GatewayTest, AStreamThatBreaksAfterItsFirstByteEndsWithTheClientsErrorEvent) {
  start(reply_with([](simulate::FakeReply& reply) {
    reply.content = "one two three four five six";
    reply.fault = simulate::Fault::reset_mid_body;
  }));
  auto messages = post_messages(client(), messages_body(true));
  ASSERT_EQ(messages.status, 200u) << messages.body;
  auto names = event_names(messages.body);
  ASSERT_FALSE(names.empty()) << messages.body;
  EXPECT_EQ(names.front(), "message_start");
  EXPECT_EQ(names.back(), "error") << messages.body;
  EXPECT_EQ(std::count(names.begin(), names.end(), "message_stop"), 0) << messages.body;

  auto responses = client().post("/v1/responses", R"({"model":"gpt-4","input":"hello","stream":true})");
  ASSERT_EQ(responses.status, 200u) << responses.body;
  names = event_names(responses.body);
  ASSERT_FALSE(names.empty()) << responses.body;
  EXPECT_EQ(names.front(), "response.created");
  EXPECT_EQ(names.back(), "response.failed") << responses.body;
}

TEST_F(GatewayTest, ResponsesFieldsThatNeedServerStateAreRefused) {
  start(reply_with([](simulate::FakeReply&) {}));
  for (const char* field : {R"("previous_response_id":"resp_1")", R"("background":true)",
                            R"("conversation":"conv_1")"}) {
    auto reply = client().post("/v1/responses",
                               std::string(R"({"model":"gpt-4","input":"hi",)") + field + "}");
    EXPECT_EQ(reply.status, 400u) << field << ": " << reply.body;
    const std::string name = std::string(field).substr(1, std::string(field).find('"', 1) - 1);
    EXPECT_NE(reply.body.find(name), std::string::npos) << reply.body;
  }
  auto stored = client().request(http::verb::get, "/v1/responses/resp_1", "",
                                 {{"authorization", std::string("Bearer ") + kClientKey}});
  EXPECT_EQ(stored.status, 404u);
  EXPECT_TRUE(upstream_->recorded_requests().empty());
}

TEST_F(GatewayTest, CountTokensNeedsANativeAnthropicProvider) {
  start(reply_with([](simulate::FakeReply&) {}));
  auto reply = client().request(http::verb::post, "/v1/messages/count_tokens",
                                R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})",
                                {{"x-api-key", kClientKey}});
  EXPECT_EQ(reply.status, 404u) << reply.body;
  EXPECT_EQ(json::parse(reply.body).at("error").at("type"), "not_found_error");
  EXPECT_TRUE(upstream_->recorded_requests().empty()) << "no estimate passed off as a count";
}

}  // namespace
}  // namespace cutover::testing

namespace cutover::testing {
namespace {

TEST_F(GatewayTest, ABodyTooLargeForMessagesIsRefusedInAnthropicsSchema) {
  start(reply_with([](simulate::FakeReply&) {}), {.top_extra = "limits: {max_body_bytes: 1024}\n"});
  const std::string body = messages_body(false, R"(,"metadata":{"user_id":")" +
                                                    std::string(4096, 'x') + R"("})");
  auto messages = post_messages(client(), body);
  EXPECT_EQ(messages.status, 413u) << messages.body;
  auto error = json::parse(messages.body);
  EXPECT_EQ(error.at("type"), "error");
  EXPECT_EQ(error.at("error").at("type"), "request_too_large");

  auto chat = client().post("/v1/chat/completions", body);
  EXPECT_EQ(chat.status, 413u);
  EXPECT_EQ(json::parse(chat.body).at("error").at("code"), "request_too_large");
}

}  // namespace
}  // namespace cutover::testing
