#include "api/front_end.h"

#include <gtest/gtest.h>

namespace cutover::api {
namespace {

namespace json = boost::json;

TEST(FrontEndTest, ThePathPicksTheProtocol) {
  EXPECT_EQ(protocol_for_path("/v1/chat/completions"), ClientProtocol::chat_completions);
  EXPECT_EQ(protocol_for_path("/v1/completions"), ClientProtocol::completions);
  EXPECT_EQ(protocol_for_path("/v1/embeddings"), ClientProtocol::embeddings);
  EXPECT_EQ(protocol_for_path("/v1/messages"), ClientProtocol::anthropic_messages);
  EXPECT_EQ(protocol_for_path("/v1/responses"), ClientProtocol::responses);
  EXPECT_FALSE(protocol_for_path("/v1/messages/count_tokens"));
  EXPECT_FALSE(protocol_for_path("/v1/responses/resp_1"));
  EXPECT_FALSE(protocol_for_path("/v2/chat/completions"));
}

TEST(FrontEndTest, OnlyTheSameFormatPassesThrough) {
  EXPECT_TRUE(passes_through(ClientProtocol::chat_completions, false));
  EXPECT_TRUE(passes_through(ClientProtocol::embeddings, false));
  EXPECT_TRUE(passes_through(ClientProtocol::anthropic_messages, true));
  EXPECT_FALSE(passes_through(ClientProtocol::anthropic_messages, false));
  EXPECT_FALSE(passes_through(ClientProtocol::chat_completions, true));
  EXPECT_FALSE(passes_through(ClientProtocol::responses, false));
  EXPECT_FALSE(passes_through(ClientProtocol::responses, true));
}

TEST(FrontEndTest, ErrorsFollowTheClientsSchema) {
  auto openai = json::parse(error_body(ClientProtocol::responses, 429, "slow down",
                                       "requests", "rate_limit_exceeded", "req-1"));
  EXPECT_EQ(openai.at("error").at("code"), "rate_limit_exceeded");
  EXPECT_EQ(openai.at("error").at("request_id"), "req-1");

  auto anthropic = json::parse(error_body(ClientProtocol::anthropic_messages, 529, "busy",
                                          "upstream_error", "529", "req-2"));
  EXPECT_EQ(anthropic.at("type"), "error");
  EXPECT_EQ(anthropic.at("error").at("type"), "overloaded_error");
  EXPECT_EQ(anthropic.at("error").at("message"), "busy");

  const std::string held = providers::error_body("no such model", "invalid_request_error",
                                                 "model_not_found", "req-3");
  EXPECT_EQ(error_body_from(ClientProtocol::chat_completions, held, 404, "req-3"), held);
  auto converted = json::parse(error_body_from(ClientProtocol::anthropic_messages, held, 404, "req-3"));
  EXPECT_EQ(converted.at("error").at("type"), "not_found_error");
  EXPECT_EQ(converted.at("error").at("message"), "no such model");
}

json::object chunk(std::string_view text) {
  return json::parse(R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",
                         "choices":[{"index":0,"delta":{"content":")" + std::string(text) +
                     R"("},"finish_reason":null}]})")
      .as_object();
}

TEST(FrontEndTest, ChatClientsGetTheCanonicalChunksAndDone) {
  json::object request;
  AnswerEncoder encoder(ClientProtocol::chat_completions, request, "chatcmpl-1", "m", 1);
  std::string out;
  encoder.on_chunk(chunk("hi"), out);
  encoder.finish(out);
  EXPECT_EQ(out.find("data: {"), 0u) << out;
  EXPECT_NE(out.find("\"hi\""), std::string::npos);
  EXPECT_TRUE(out.ends_with("data: [DONE]\n\n")) << out;
}

TEST(FrontEndTest, MessagesClientsGetAnthropicEvents) {
  json::object request;
  AnswerEncoder encoder(ClientProtocol::anthropic_messages, request, "msg_1", "claude", 1);
  std::string out;
  encoder.on_chunk(chunk("hi"), out);
  encoder.finish(out);
  EXPECT_EQ(out.find("event: message_start"), 0u) << out;
  EXPECT_NE(out.find("event: content_block_delta"), std::string::npos) << out;
  EXPECT_NE(out.find("event: message_stop"), std::string::npos) << out;
  EXPECT_EQ(out.find("[DONE]"), std::string::npos) << out;
}

TEST(FrontEndTest, ABrokenStreamEndsWithTheProtocolsErrorEvent) {
  json::object request{{"model", "m"}, {"input", "hi"}};
  for (auto [protocol, marker] : {std::pair{ClientProtocol::chat_completions, "\"error\""},
                                  std::pair{ClientProtocol::anthropic_messages, "event: error"},
                                  std::pair{ClientProtocol::responses, "response.failed"}}) {
    AnswerEncoder encoder(protocol, request, "id_1", "m", 1);
    std::string out;
    encoder.on_chunk(chunk("partial"), out);
    encoder.fail(502, "reset", "the provider reset the connection", "req-9", out);
    EXPECT_NE(out.find(marker), std::string::npos) << out;
    EXPECT_NE(out.find("the provider reset the connection"), std::string::npos) << out;
  }
}

TEST(FrontEndTest, APlainAnswerIsEncodedForItsClient) {
  auto completion = json::parse(R"({"id":"x","object":"chat.completion","created":1,"model":"m",
      "choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],
      "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})").as_object();
  json::object request{{"model", "m"}, {"input", "hi"}};
  auto message = json::parse(AnswerEncoder(ClientProtocol::anthropic_messages, request, "msg_1", "m", 1)
                                 .encode(completion));
  EXPECT_EQ(message.at("content").at(0).at("text"), "hello");
  EXPECT_EQ(message.at("stop_reason"), "end_turn");
  auto response = json::parse(AnswerEncoder(ClientProtocol::responses, request, "resp_1", "m", 1)
                                  .encode(completion));
  EXPECT_EQ(response.at("object"), "response");
  EXPECT_EQ(response.at("status"), "completed");
  auto chat = json::parse(AnswerEncoder(ClientProtocol::chat_completions, request, "c", "m", 1)
                              .encode(completion));
  EXPECT_EQ(chat, json::value(completion));
}

}  // namespace
}  // namespace cutover::api

namespace cutover::api {
namespace {

TEST(FrontEndTest, ServerErrorsOnMessagesPathsUseAnthropicsSchema) {
  EXPECT_NE(error_format_for("/v1/messages"), nullptr);
  EXPECT_NE(error_format_for("/v1/messages?beta=true"), nullptr);
  EXPECT_NE(error_format_for("/v1/messages/count_tokens"), nullptr);
  EXPECT_EQ(error_format_for("/v1/messagesX"), nullptr);
  EXPECT_EQ(error_format_for("/v1/chat/completions"), nullptr);
  EXPECT_EQ(error_format_for(""), nullptr);
}

}  // namespace
}  // namespace cutover::api
