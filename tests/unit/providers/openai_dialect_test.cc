#include "providers/openai_dialect.h"

#include <gtest/gtest.h>

namespace cutover::providers {
namespace {

namespace json = boost::json;

ResponseIdentity identity() { return ResponseIdentity{"chatcmpl-gw", 1700000000, "gpt-4"}; }

TEST(ValidateRequestTest, AcceptsAWellFormedChatRequest) {
  RequestShape shape;
  auto body = json::parse(R"({"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},
                              "messages":[{"role":"user","content":"hi"}]})").as_object();
  EXPECT_FALSE(validate_request(body, ApiKind::chat_completions, shape));
  EXPECT_EQ(shape.model, "gpt-4");
  EXPECT_TRUE(shape.stream);
  EXPECT_TRUE(shape.client_requested_usage);
}

TEST(ValidateRequestTest, NamesTheProblem) {
  struct Case {
    const char* body;
    ApiKind kind;
    const char* message;
  } cases[] = {
      {R"({"messages":[{"role":"user"}]})", ApiKind::chat_completions, "'model' is required"},
      {R"({"model":4,"messages":[{"role":"user"}]})", ApiKind::chat_completions, "'model' must be"},
      {R"({"model":"m"})", ApiKind::chat_completions, "'messages' is required"},
      {R"({"model":"m","messages":"hi"})", ApiKind::chat_completions, "'messages' must be an array"},
      {R"({"model":"m","messages":[]})", ApiKind::chat_completions, "must not be empty"},
      {R"({"model":"m","messages":[3]})", ApiKind::chat_completions, "'messages[0]'"},
      {R"({"model":"m","messages":[{"role":"user"}],"stream":"yes"})", ApiKind::chat_completions,
       "'stream' must be a boolean"},
      {R"({"model":"m"})", ApiKind::completions, "'prompt' is required"},
      {R"({"model":"m"})", ApiKind::embeddings, "'input' is required"},
      {R"({"model":"m","input":"x","stream":true})", ApiKind::embeddings, "cannot be streamed"},
  };
  for (const auto& c : cases) {
    RequestShape shape;
    auto problem = validate_request(json::parse(c.body).as_object(), c.kind, shape);
    ASSERT_TRUE(problem) << c.body;
    EXPECT_NE(problem->find(c.message), std::string::npos) << *problem;
  }
}

TEST(NormalizeResponseTest, RelayQuirksBecomeOpenAiSchema) {
  auto body = json::parse(R"({"model":"deepseek-v3.2","choices":[{"message":{"content":"hi"},
      "finish_reason":"eos"}],"usage":{"prompt_tokens":5,"generated_tokens":7}})");
  Usage usage;
  ASSERT_FALSE(normalize_response(body, ApiKind::chat_completions, identity(), usage));
  const auto& object = body.as_object();
  EXPECT_EQ(object.at("id"), "chatcmpl-gw");
  EXPECT_EQ(object.at("object"), "chat.completion");
  EXPECT_EQ(object.at("created"), 1700000000);
  EXPECT_EQ(object.at("model"), "gpt-4");
  EXPECT_TRUE(object.at("system_fingerprint").is_null());
  const auto& choice = object.at("choices").at(0);
  EXPECT_EQ(choice.at("finish_reason"), "stop");
  EXPECT_EQ(choice.at("index"), 0);
  EXPECT_EQ(choice.at("message").at("role"), "assistant");
  EXPECT_EQ(object.at("usage").at("completion_tokens"), 7);
  EXPECT_EQ(object.at("usage").at("total_tokens"), 12);
  EXPECT_FALSE(object.at("usage").as_object().contains("generated_tokens"));
  EXPECT_TRUE(usage.present);
  EXPECT_EQ(usage.prompt_tokens, 5);
  EXPECT_EQ(usage.completion_tokens, 7);
}

TEST(NormalizeResponseTest, KeepsTheProvidersIdAndCreated) {
  auto body = json::parse(R"({"id":"abc","created":"1690000000","choices":[{"message":{"role":"assistant","content":null,"tool_calls":[]},"finish_reason":"tool_use"}]})");
  Usage usage;
  ASSERT_FALSE(normalize_response(body, ApiKind::chat_completions, identity(), usage));
  EXPECT_EQ(body.at("id"), "abc");
  EXPECT_EQ(body.at("created"), 1690000000);
  EXPECT_EQ(body.at("choices").at(0).at("finish_reason"), "tool_calls");
  EXPECT_FALSE(usage.present);
}

TEST(NormalizeResponseTest, UnrepairableBodiesAreErrors) {
  for (const char* text : {R"([1,2])", R"({"choices":"no"})", R"({"object":"chat.completion"})",
                           R"({"choices":[{"finish_reason":"stop"}]})",
                           R"({"choices":[{"message":{"content":5}}]})"}) {
    auto body = json::parse(text);
    Usage usage;
    EXPECT_TRUE(normalize_response(body, ApiKind::chat_completions, identity(), usage)) << text;
  }
}

TEST(NormalizeResponseTest, EmbeddingsGetObjectAndIndex) {
  auto body = json::parse(R"({"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":3}})");
  Usage usage;
  ASSERT_FALSE(normalize_response(body, ApiKind::embeddings, identity(), usage));
  EXPECT_EQ(body.at("object"), "list");
  EXPECT_EQ(body.at("data").at(0).at("object"), "embedding");
  EXPECT_EQ(body.at("data").at(0).at("index"), 0);
  EXPECT_EQ(body.at("usage").at("total_tokens"), 3);
  EXPECT_FALSE(body.at("usage").as_object().contains("completion_tokens"));
}

TEST(NormalizeStreamChunkTest, UsageOnlyChunkIsDroppedWhenTheGatewayAskedForIt) {
  auto chunk = json::parse(R"({"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}})");
  Usage usage;
  ChunkOutcome outcome;
  ASSERT_FALSE(normalize_stream_chunk(chunk, ApiKind::chat_completions, identity(), true, usage, outcome));
  EXPECT_TRUE(outcome.drop);
  EXPECT_EQ(usage.completion_tokens, 3);
}

TEST(NormalizeStreamChunkTest, UsageChunkIsKeptWhenTheClientAskedForIt) {
  auto chunk = json::parse(R"({"choices":[],"usage":{"input_tokens":2,"output_tokens":3}})");
  Usage usage;
  ChunkOutcome outcome;
  ASSERT_FALSE(normalize_stream_chunk(chunk, ApiKind::chat_completions, identity(), false, usage, outcome));
  EXPECT_FALSE(outcome.drop);
  EXPECT_EQ(chunk.at("usage").at("completion_tokens"), 3);
  EXPECT_EQ(chunk.at("object"), "chat.completion.chunk");
}

TEST(NormalizeStreamChunkTest, UsageRidingOnAContentChunkIsStripped) {
  auto chunk = json::parse(R"({"choices":[{"delta":{"content":"x"},"finish_reason":"eos"}],
                              "usage":{"prompt_tokens":1,"completion_tokens":1}})");
  Usage usage;
  ChunkOutcome outcome;
  ASSERT_FALSE(normalize_stream_chunk(chunk, ApiKind::chat_completions, identity(), true, usage, outcome));
  EXPECT_FALSE(outcome.drop);
  EXPECT_FALSE(chunk.as_object().contains("usage"));
  EXPECT_EQ(chunk.at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_TRUE(usage.present);
}

TEST(NormalizeStreamChunkTest, ErrorChunkIsFlagged) {
  auto chunk = json::parse(R"({"error":{"message":"overloaded"}})");
  Usage usage;
  ChunkOutcome outcome;
  ASSERT_FALSE(normalize_stream_chunk(chunk, ApiKind::chat_completions, identity(), true, usage, outcome));
  EXPECT_TRUE(outcome.is_error);
}

TEST(FinishReasonTest, MapsProviderDialects) {
  EXPECT_EQ(normalize_finish_reason("eos"), "stop");
  EXPECT_EQ(normalize_finish_reason("end_turn"), "stop");
  EXPECT_EQ(normalize_finish_reason("max_tokens"), "length");
  EXPECT_EQ(normalize_finish_reason("tool_use"), "tool_calls");
  EXPECT_EQ(normalize_finish_reason("content_filter"), "content_filter");
}

TEST(ErrorBodyTest, ProviderErrorIsNormalizedAndTheKeyRedacted) {
  auto text = normalize_error_body(
      R"({"error":{"message":"Incorrect API key provided: sk-live-123"}})", 401, "sk-live-123", "req_1");
  EXPECT_EQ(text.find("sk-live-123"), std::string::npos);
  auto body = json::parse(text);
  EXPECT_EQ(body.at("error").at("type"), "authentication_error");
  EXPECT_EQ(body.at("error").at("request_id"), "req_1");
  EXPECT_NE(std::string(body.at("error").at("message").as_string()).find("[redacted]"), std::string::npos);
}

TEST(ErrorBodyTest, NonJsonErrorIsWrapped) {
  auto body = json::parse(normalize_error_body("<html>Bad Gateway</html>", 503, "", "req_2"));
  EXPECT_EQ(body.at("error").at("type"), "upstream_error");
  EXPECT_NE(std::string(body.at("error").at("message").as_string()).find("HTTP 503"), std::string::npos);
}

TEST(StreamChunksFromResponseTest, ChatAnswerBecomesDeltasWithToolCallIndexes) {
  auto response = json::parse(R"({"id":"chatcmpl-1","object":"chat.completion","created":5,
      "model":"gpt-4","system_fingerprint":null,
      "choices":[{"index":0,"message":{"role":"assistant","content":null,
        "tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"{}"}},
                      {"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}}]},
        "finish_reason":"tool_calls"}],
      "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})");
  auto chunks = stream_chunks_from_response(response.as_object(), ApiKind::chat_completions, true);
  ASSERT_EQ(chunks.size(), 2u);
  auto first = json::parse(chunks[0]);
  EXPECT_EQ(first.at("object"), "chat.completion.chunk");
  EXPECT_EQ(first.at("id"), "chatcmpl-1");
  const auto& choice = first.at("choices").at(0);
  EXPECT_FALSE(choice.as_object().contains("message"));
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  EXPECT_EQ(choice.at("delta").at("tool_calls").at(1).at("index"), 1);
  EXPECT_EQ(choice.at("delta").at("tool_calls").at(1).at("id"), "call_b");
  auto usage = json::parse(chunks[1]);
  EXPECT_TRUE(usage.at("choices").as_array().empty());
  EXPECT_EQ(usage.at("usage").at("total_tokens"), 7);

  EXPECT_EQ(stream_chunks_from_response(response.as_object(), ApiKind::chat_completions, false).size(),
            1u) << "no usage chunk unless the client asked for one";
}

TEST(StreamChunksFromResponseTest, TextCompletionKeepsItsShape) {
  auto response = json::parse(R"({"id":"cmpl-1","object":"text_completion","created":5,"model":"m",
      "choices":[{"index":0,"text":"hello","finish_reason":"length","logprobs":null}]})");
  auto chunks = stream_chunks_from_response(response.as_object(), ApiKind::completions, true);
  ASSERT_EQ(chunks.size(), 1u);
  auto chunk = json::parse(chunks[0]);
  EXPECT_EQ(chunk.at("object"), "text_completion");
  EXPECT_EQ(chunk.at("choices").at(0).at("text"), "hello");
  EXPECT_EQ(chunk.at("choices").at(0).at("finish_reason"), "length");
}

}  // namespace
}  // namespace cutover::providers
