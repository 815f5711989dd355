#include "providers/dialect.h"

#include <gtest/gtest.h>

namespace cutover::providers {
namespace {

namespace json = boost::json;

ResponseIdentity identity() { return ResponseIdentity{"chatcmpl-gw", 1700000000, "claude"}; }

struct Collected {
  std::vector<json::value> chunks;
  std::vector<CanonicalStream::EventResult> results;
};

Collected read_all(CanonicalStream& stream, const std::vector<SseEvent>& events, Usage& usage) {
  Collected collected;
  for (const auto& event : events) {
    json::value parsed;
    collected.results.push_back(stream.read(event, parsed, {}, usage, [&](json::value& chunk) {
      collected.chunks.emplace_back(chunk, json::storage_ptr());
    }));
  }
  return collected;
}

TEST(DialectTest, PathsFollowTheDialect) {
  EXPECT_EQ(request_path(config::Dialect::openai, ApiKind::chat_completions), "/chat/completions");
  EXPECT_EQ(request_path(config::Dialect::openai, ApiKind::embeddings), "/embeddings");
  EXPECT_EQ(request_path(config::Dialect::anthropic, ApiKind::chat_completions), "/messages");
}

TEST(DialectTest, AnOpenAIStreamEndsAtDoneAndDropsTheUsageTheGatewayAskedFor) {
  CanonicalStream stream(config::Dialect::openai, ApiKind::chat_completions, identity(), true);
  Usage usage;
  auto collected = read_all(stream, {
      {"", R"({"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]})"},
      {"", R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"},
      {"", R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})"},
      {"", "[DONE]"}}, usage);
  EXPECT_EQ(collected.chunks.size(), 2u);
  EXPECT_TRUE(stream.saw_finish());
  EXPECT_TRUE(stream.saw_end_marker());
  EXPECT_TRUE(collected.results.back().end_marker);
  EXPECT_TRUE(usage.present);
  EXPECT_EQ(usage.completion_tokens, 1);
}

TEST(DialectTest, AnOpenAIErrorObjectIsReportedAndHandedOn) {
  CanonicalStream stream(config::Dialect::openai, ApiKind::chat_completions, identity(), false);
  Usage usage;
  auto collected = read_all(stream, {{"", R"({"error":{"message":"overloaded","type":"server_error"}})"}}, usage);
  ASSERT_EQ(collected.results.size(), 1u);
  EXPECT_EQ(collected.results[0].provider_error, "overloaded");
  EXPECT_EQ(collected.chunks.size(), 1u);
}

std::vector<SseEvent> anthropic_stream() {
  return {
      {"message_start", R"({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}})"},
      {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
      {"ping", R"({"type":"ping"})"},
      {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})"},
      {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
      {"message_delta", R"({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}})"},
      {"message_stop", R"({"type":"message_stop"})"},
  };
}

TEST(DialectTest, AnAnthropicStreamBecomesChatChunksEndingAtMessageStop) {
  CanonicalStream stream(config::Dialect::anthropic, ApiKind::chat_completions, identity(), false);
  Usage usage;
  auto collected = read_all(stream, anthropic_stream(), usage);
  std::string text;
  bool usage_chunk = false;
  for (const auto& chunk : collected.chunks) {
    EXPECT_EQ(chunk.at("object"), "chat.completion.chunk");
    EXPECT_EQ(chunk.at("model"), "claude");
    for (const auto& choice : chunk.at("choices").as_array()) {
      if (const auto* content = choice.at("delta").as_object().if_contains("content");
          content && content->is_string()) {
        text += content->as_string();
      }
    }
    usage_chunk = usage_chunk || chunk.as_object().contains("usage");
  }
  EXPECT_EQ(text, "Hello");
  EXPECT_TRUE(usage_chunk);
  EXPECT_TRUE(stream.saw_finish());
  EXPECT_TRUE(stream.saw_end_marker());
  EXPECT_EQ(usage.prompt_tokens, 12);
  EXPECT_EQ(usage.completion_tokens, 5);
}

TEST(DialectTest, AnAnthropicUsageChunkIsReadButNotHandedOnWhenStripped) {
  CanonicalStream stream(config::Dialect::anthropic, ApiKind::chat_completions, identity(), true);
  Usage usage;
  auto collected = read_all(stream, anthropic_stream(), usage);
  for (const auto& chunk : collected.chunks) EXPECT_FALSE(chunk.as_object().contains("usage"));
  EXPECT_TRUE(usage.present);
  EXPECT_EQ(usage.completion_tokens, 5);
}

TEST(DialectTest, AStreamPassedThroughIsReadForUsageAndItsEndWithoutChunks) {
  CanonicalStream full(config::Dialect::anthropic, ApiKind::chat_completions, identity(), false);
  CanonicalStream native(config::Dialect::anthropic, ApiKind::chat_completions, identity(), false,
                         /*chunks_wanted=*/false);
  Usage full_usage;
  Usage native_usage;
  read_all(full, anthropic_stream(), full_usage);
  auto collected = read_all(native, anthropic_stream(), native_usage);
  EXPECT_TRUE(collected.chunks.empty());
  EXPECT_TRUE(native.saw_finish());
  EXPECT_TRUE(native.saw_end_marker());
  EXPECT_TRUE(native_usage.present);
  EXPECT_EQ(native_usage.prompt_tokens, full_usage.prompt_tokens);
  EXPECT_EQ(native_usage.completion_tokens, full_usage.completion_tokens);
  EXPECT_EQ(native_usage.total_tokens, full_usage.total_tokens);

  CanonicalStream broken(config::Dialect::anthropic, ApiKind::chat_completions, identity(), false,
                         false);
  Usage usage;
  auto results = read_all(broken, {anthropic_stream()[0],
      {"error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"}}, usage);
  EXPECT_EQ(results.results.back().provider_error, "Overloaded");
  EXPECT_EQ(usage.prompt_tokens, 12);
}

TEST(DialectTest, AnAnthropicErrorEventIsTheProvidersError) {
  CanonicalStream stream(config::Dialect::anthropic, ApiKind::chat_completions, identity(), false);
  Usage usage;
  auto collected = read_all(stream, {anthropic_stream()[0],
      {"error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"}}, usage);
  EXPECT_EQ(collected.results.back().provider_error, "Overloaded");
  EXPECT_FALSE(stream.saw_end_marker());
}

TEST(DialectTest, AnEventThatIsNotJsonBreaksTheStream) {
  for (auto dialect : {config::Dialect::openai, config::Dialect::anthropic}) {
    CanonicalStream stream(dialect, ApiKind::chat_completions, identity(), false);
    Usage usage;
    auto collected = read_all(stream, {{"", "{not json"}}, usage);
    EXPECT_TRUE(collected.results[0].problem);
  }
}

TEST(DialectTest, APlainAnthropicMessageBecomesACanonicalCompletion) {
  auto value = json::parse(R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
      "content":[{"type":"text","text":"Hi"}],"stop_reason":"max_tokens","stop_sequence":null,
      "usage":{"input_tokens":10,"output_tokens":2,"cache_read_input_tokens":5,"cache_creation_input_tokens":3}})");
  Usage usage;
  ASSERT_FALSE(canonical_completion(config::Dialect::anthropic, value, ApiKind::chat_completions,
                                    identity(), usage));
  EXPECT_EQ(value.at("object"), "chat.completion");
  EXPECT_EQ(value.at("choices").at(0).at("finish_reason"), "length");
  // OpenAI's prompt_tokens include what the cache served and what was written to it.
  EXPECT_EQ(usage.prompt_tokens, 18);
  EXPECT_EQ(usage.cached_prompt_tokens, 5);
  EXPECT_EQ(usage.cache_creation_prompt_tokens, 3);
}

}  // namespace
}  // namespace cutover::providers
