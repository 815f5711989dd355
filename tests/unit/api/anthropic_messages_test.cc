#include "api/anthropic_messages.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace cutover::api::anthropic {
namespace {

namespace json = boost::json;

json::object parse_object(std::string_view text) { return json::parse(text).as_object(); }

// Decodes `request`, expecting success.
json::object decode(std::string_view request) {
  json::object chat;
  auto problem = to_chat_request(parse_object(request), chat);
  EXPECT_FALSE(problem) << *problem;
  return chat;
}

// Decodes `request`, expecting a refusal; returns its message.
std::string refusal(std::string_view request) {
  json::object chat;
  auto problem = to_chat_request(parse_object(request), chat);
  EXPECT_TRUE(problem) << request;
  return problem.value_or("");
}

constexpr std::string_view kHead = R"("model":"claude-sonnet-4-5","max_tokens":1024,)";

std::string request(std::string_view rest) {
  return "{" + std::string(kHead) + std::string(rest) + "}";
}

// ---------------------------------------------------------------- request

TEST(AnthropicRequestTest, MinimalRequestKeepsModelAndMaxTokens) {
  auto chat = decode(request(R"("messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("model"), "claude-sonnet-4-5");
  EXPECT_EQ(chat.at("max_tokens"), 1024);
  EXPECT_EQ(chat.at("messages"), json::parse(R"([{"role":"user","content":"hi"}])"));
  EXPECT_FALSE(chat.contains("stream"));
  EXPECT_FALSE(chat.contains("tools"));
}

TEST(AnthropicRequestTest, RequiredFieldsUseAnthropicWording) {
  EXPECT_EQ(refusal(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})"),
            "max_tokens: field required");
  EXPECT_EQ(refusal(R"({"max_tokens":5,"messages":[{"role":"user","content":"hi"}]})"),
            "model: field required");
  EXPECT_EQ(refusal(R"({"model":"m","max_tokens":5})"), "messages: field required");
}

TEST(AnthropicRequestTest, SystemStringOrBlocksBecomesTheFirstMessage) {
  auto chat =
      decode(request(R"("system":"Be brief.","messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("messages").at(0), json::parse(R"({"role":"system","content":"Be brief."})"));
  chat =
      decode(request(R"("system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}},
      {"type":"text","text":"B"}],"messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("messages").at(0), json::parse(R"({"role":"system","content":"A\n\nB"})"));
  EXPECT_EQ(chat.at("messages").as_array().size(), 2u);
}

TEST(AnthropicRequestTest, UserBlocksBecomeParts) {
  auto chat = decode(request(R"("messages":[{"role":"user","content":[
      {"type":"text","text":"What is this?","cache_control":{"type":"ephemeral"}},
      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},
      {"type":"image","source":{"type":"url","url":"https://x.test/cat.jpg"}}]}])"));
  EXPECT_EQ(chat.at("messages").at(0), json::parse(R"({"role":"user","content":[
      {"type":"text","text":"What is this?"},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
      {"type":"image_url","image_url":{"url":"https://x.test/cat.jpg"}}]})"));
}

TEST(AnthropicRequestTest, SingleTextBlockBecomesAString) {
  auto chat =
      decode(request(R"("messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}])"));
  EXPECT_EQ(chat.at("messages").at(0), json::parse(R"({"role":"user","content":"hi"})"));
}

TEST(AnthropicRequestTest, PlainTextDocumentsPassTheirText) {
  auto chat = decode(request(R"("messages":[{"role":"user","content":[
      {"type":"document","source":{"type":"text","media_type":"text/plain","data":"The doc."},
       "title":"t"},
      {"type":"document","source":{"type":"content","content":[{"type":"text","text":"P1"},
       {"type":"text","text":"P2"}]}},
      {"type":"text","text":"Summarize"}]}])"));
  EXPECT_EQ(chat.at("messages").at(0).at("content"),
            json::parse(R"([{"type":"text","text":"The doc."},
      {"type":"text","text":"P1\n\nP2"},{"type":"text","text":"Summarize"}])"));
}

TEST(AnthropicRequestTest, RefusesWhatHasNoEquivalentByPath) {
  EXPECT_EQ(refusal(request(R"("messages":[{"role":"user","content":[{"type":"text","text":"x"},
      {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"}}]}])")),
            "messages[0].content[1].type: a document without a plain-text source has no "
            "chat-completions equivalent");
  EXPECT_NE(refusal(request(R"("messages":[{"role":"user","content":[{"type":"image",
      "source":{"type":"file","file_id":"file_1"}}]}])"))
                .find("messages[0].content[0].source.type"),
            std::string::npos);
  EXPECT_NE(refusal(request(R"("messages":[{"role":"user","content":[{"type":"document",
      "source":{"type":"text","data":"x"},"citations":{"enabled":true}}]}])"))
                .find("messages[0].content[0].citations"),
            std::string::npos);
  EXPECT_NE(refusal(request(R"("messages":[{"role":"assistant","content":[{"type":"server_tool_use",
      "id":"s","name":"web_search","input":{}}]}])"))
                .find("messages[0].content[0].type"),
            std::string::npos);
  EXPECT_NE(refusal(request(R"("messages":[{"role":"user","content":[{"type":"tool_use","id":"a",
      "name":"f","input":{}}]}])"))
                .find("not supported in user turns"),
            std::string::npos);
  for (auto field : {"mcp_servers", "container", "context_management", "frobnicate"}) {
    auto message = refusal(
        request(std::string("\"") + field + R"(":{},"messages":[{"role":"user","content":"hi"}])"));
    EXPECT_EQ(message.rfind(field, 0), 0u) << message;
  }
}

TEST(AnthropicRequestTest, ToolRoundTripKeepsToolMessagesRightAfterTheCall) {
  auto chat = decode(request(R"("messages":[
      {"role":"user","content":"Weather in Paris and Rome?"},
      {"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},
        {"type":"text","text":"Checking."},
        {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}},
        {"type":"tool_use","id":"toolu_2","name":"weather","input":{"city":"Rome"}}]},
      {"role":"user","content":[{"type":"text","text":"Thanks, and be quick."},
        {"type":"tool_result","tool_use_id":"toolu_1","content":"18C"},
        {"type":"tool_result","tool_use_id":"toolu_2","is_error":true,
         "content":[{"type":"text","text":"timeout"},{"type":"text","text":"retry later"}]}]}])"));
  EXPECT_EQ(chat.at("messages"), json::parse(R"([
      {"role":"user","content":"Weather in Paris and Rome?"},
      {"role":"assistant","content":"Checking.","tool_calls":[
        {"id":"toolu_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
        {"id":"toolu_2","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Rome\"}"}}]},
      {"role":"tool","tool_call_id":"toolu_1","content":"18C"},
      {"role":"tool","tool_call_id":"toolu_2","content":"Error: timeout\n\nretry later"},
      {"role":"user","content":"Thanks, and be quick."}])"));
}

TEST(AnthropicRequestTest, ToolResultImagesMoveToTheFollowingUserMessage) {
  auto chat = decode(request(R"("messages":[
      {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"shot","input":{}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[
        {"type":"text","text":"captured"},
        {"type":"image","source":{"type":"url","url":"https://x.test/s.png"}}]}]}])"));
  EXPECT_EQ(chat.at("messages"), json::parse(R"([
      {"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function",
        "function":{"name":"shot","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"t","content":"captured"},
      {"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x.test/s.png"}}]}])"));
}

TEST(AnthropicRequestTest, ThinkingOnlyAssistantTurnIsSkipped) {
  auto chat = decode(request(R"("messages":[{"role":"user","content":"a"},
      {"role":"assistant","content":[{"type":"redacted_thinking","data":"xx"}]},
      {"role":"user","content":"b"}])"));
  EXPECT_EQ(chat.at("messages"), json::parse(R"([{"role":"user","content":"a"},
      {"role":"user","content":"b"}])"));
}

TEST(AnthropicRequestTest, ToolsAndToolChoice) {
  const std::string tools = R"("tools":[{"name":"weather","description":"Get weather",
      "input_schema":{"type":"object","properties":{"city":{"type":"string"}}},
      "cache_control":{"type":"ephemeral"}},{"type":"custom","name":"noop","input_schema":{"type":"object"},
      "strict":true}],)";
  auto chat = decode(request(tools + R"("messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("tools"), json::parse(R"([{"type":"function","function":{"name":"weather",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}}},"description":"Get weather"}},
      {"type":"function","function":{"name":"noop","parameters":{"type":"object"},"strict":true}}])"));
  EXPECT_FALSE(chat.contains("tool_choice"));
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type":"auto"})", R"("auto")"},
      {R"({"type":"any"})", R"("required")"},
      {R"({"type":"none"})", R"("none")"},
      {R"({"type":"tool","name":"weather"})",
       R"({"type":"function","function":{"name":"weather"}})"},
  };
  for (const auto& [choice, expected] : cases) {
    chat = decode(request(tools + R"("tool_choice":)" + choice +
                          R"(,"messages":[{"role":"user","content":"hi"}])"));
    EXPECT_EQ(chat.at("tool_choice"), json::parse(expected)) << choice;
    EXPECT_FALSE(chat.contains("parallel_tool_calls"));
  }
  chat = decode(request(tools + R"("tool_choice":{"type":"any","disable_parallel_tool_use":true},
      "messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("parallel_tool_calls"), false);
  chat = decode(request(R"("tool_choice":{"type":"auto","disable_parallel_tool_use":true},
      "messages":[{"role":"user","content":"hi"}])"));
  EXPECT_FALSE(chat.contains("tool_choice"));
  EXPECT_FALSE(chat.contains("parallel_tool_calls"));
}

TEST(AnthropicRequestTest, ServerToolsAndSchemalessToolsAreRefused) {
  EXPECT_EQ(refusal(request(R"("tools":[{"type":"web_search_20250305","name":"web_search"}],
      "messages":[{"role":"user","content":"hi"}])"))
                .rfind("tools[0].type: server tools", 0),
            0u);
  EXPECT_EQ(
      refusal(request(R"("tools":[{"name":"f"}],"messages":[{"role":"user","content":"hi"}])")),
      "tools[0].input_schema: field required");
  EXPECT_EQ(refusal(request(R"("tool_choice":{"type":"sometimes"},
      "messages":[{"role":"user","content":"hi"}])"))
                .rfind("tool_choice.type", 0),
            0u);
}

TEST(AnthropicRequestTest, SamplingStreamAndMetadata) {
  auto chat = decode(request(R"("stop_sequences":["END","STOP"],"temperature":0.2,"top_p":0.9,
      "top_k":40,"service_tier":"auto","cache_control":{"type":"ephemeral"},"stream":true,
      "metadata":{"user_id":"u-42"},"messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("stop"), json::parse(R"(["END","STOP"])"));
  EXPECT_EQ(chat.at("temperature"), 0.2);
  EXPECT_EQ(chat.at("top_p"), 0.9);
  EXPECT_EQ(chat.at("stream"), true);
  EXPECT_EQ(chat.at("stream_options"), json::parse(R"({"include_usage":true})"));
  EXPECT_EQ(chat.at("user"), "u-42");
  for (auto dropped : {"top_k", "service_tier", "cache_control", "metadata", "stop_sequences"}) {
    EXPECT_FALSE(chat.contains(dropped)) << dropped;
  }
}

TEST(AnthropicRequestTest, ThinkingAndOutputConfigMapToReasoningAndResponseFormat) {
  const std::pair<int, const char*> budgets[] = {{1024, "low"}, {8000, "medium"}, {32000, "high"}};
  for (const auto& [budget, effort] : budgets) {
    auto chat =
        decode(request(R"("thinking":{"type":"enabled","budget_tokens":)" + std::to_string(budget) +
                       R"(},"messages":[{"role":"user","content":"hi"}])"));
    EXPECT_EQ(chat.at("reasoning_effort"), effort) << budget;
  }
  auto chat = decode(
      request(R"("thinking":{"type":"disabled"},"messages":[{"role":"user","content":"hi"}])"));
  EXPECT_FALSE(chat.contains("reasoning_effort"));
  chat = decode(request(R"("thinking":{"type":"enabled","budget_tokens":1024},
      "output_config":{"effort":"max","format":{"type":"json_schema","schema":{"type":"object"}}},
      "messages":[{"role":"user","content":"hi"}])"));
  EXPECT_EQ(chat.at("reasoning_effort"), "high");
  EXPECT_EQ(chat.at("response_format"), json::parse(R"({"type":"json_schema","json_schema":
      {"name":"response","schema":{"type":"object"},"strict":true}})"));
  EXPECT_EQ(refusal(request(
                R"("thinking":{"type":"enabled"},"messages":[{"role":"user","content":"hi"}])")),
            "thinking.budget_tokens: field required");
}

TEST(AnthropicRequestTest, BadInputGetsAMessageNamingTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"model":"m","max_tokens":"9","messages":[{"role":"user","content":"hi"}]})",
       "max_tokens:"},
      {R"({"model":"m","max_tokens":1e300,"messages":[{"role":"user","content":"hi"}]})",
       "max_tokens:"},
      {R"({"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]})",
       "max_tokens:"},
      {R"({"model":7,"max_tokens":9,"messages":[]})", "model:"},
      {R"({"model":"m","max_tokens":9,"messages":{}})", "messages:"},
      {R"({"model":"m","max_tokens":9,"messages":[]})", "messages:"},
      {R"({"model":"m","max_tokens":9,"messages":[3]})", "messages[0]:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"system","content":"x"}]})",
       "messages[0].role:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user"}]})", "messages[0].content:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":5}]})",
       "messages[0].content:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":[]}]})",
       "messages[0].content:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":["x"]}]})",
       "messages[0].content[0]:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"type":"text","text":5}]}]})",
       "messages[0].content[0].text:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"text":"x"}]}]})",
       "messages[0].content[0].type:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"assistant","content":[{"type":"tool_use",
          "id":"a","name":"f","input":"{}"}]}]})",
       "messages[0].content[0].input:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})",
       "messages[0].content[0].tool_use_id:"},
      {R"({"model":"m","max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result",
          "tool_use_id":"a","content":[{"type":"document"}]}]}]})",
       "messages[0].content[0].content[0].type:"},
      {R"({"model":"m","max_tokens":9,"temperature":"hot","messages":[{"role":"user","content":"x"}]})",
       "temperature:"},
      {R"({"model":"m","max_tokens":9,"stream":"yes","messages":[{"role":"user","content":"x"}]})",
       "stream:"},
      {R"({"model":"m","max_tokens":9,"system":5,"messages":[{"role":"user","content":"x"}]})",
       "system:"},
      {R"({"model":"m","max_tokens":9,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]})",
       "system[0].type:"},
      {R"({"model":"m","max_tokens":9,"tools":{},"messages":[{"role":"user","content":"x"}]})",
       "tools:"},
      {R"({"model":"m","max_tokens":9,"tools":[{"name":"f","input_schema":[]}],"messages":[{"role":"user","content":"x"}]})",
       "tools[0].input_schema:"},
      {R"({"model":"m","max_tokens":9,"stop_sequences":[1],"messages":[{"role":"user","content":"x"}]})",
       "stop_sequences[0]:"},
      {R"({"model":"m","max_tokens":9,"metadata":{"user_id":1},"messages":[{"role":"user","content":"x"}]})",
       "metadata.user_id:"},
      {R"({"model":"m","max_tokens":9,"thinking":{"type":"enabled","budget_tokens":"a"},"messages":[{"role":"user","content":"x"}]})",
       "thinking.budget_tokens:"},
  };
  for (const auto& [body, prefix] : cases) {
    auto message = refusal(body);
    EXPECT_EQ(message.rfind(prefix, 0), 0u) << body << " -> " << message;
  }
}

TEST(AnthropicRequestTest, AHistoryOfOnlyThinkingIsRefused) {
  EXPECT_EQ(refusal(request(R"("messages":[{"role":"assistant","content":[
      {"type":"thinking","thinking":"x","signature":"s"}]}])")),
            "messages: no message is left once thinking blocks are dropped");
}

TEST(AnthropicRequestTest, IntegralDoubleMaxTokensIsAccepted) {
  auto chat =
      decode(R"({"model":"m","max_tokens":512.0,"messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(chat.at("max_tokens"), 512);
}

// ---------------------------------------------------------------- response

json::object completion(std::string_view message, std::string_view finish,
                        std::string_view usage = R"({"prompt_tokens":100,"completion_tokens":20,
                            "total_tokens":120,"prompt_tokens_details":{"cached_tokens":30,
                            "cache_creation_tokens":10}})") {
  return parse_object(R"({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x",
      "choices":[{"index":0,"message":)" +
                      std::string(message) + R"(,"finish_reason":")" + std::string(finish) +
                      R"("}],"usage":)" + std::string(usage) + "}");
}

TEST(AnthropicResponseTest, TextMessageWithUsageExcludingCachedTokens) {
  auto message = to_message(completion(R"({"role":"assistant","content":"Hello"})", "stop"),
                            "msg_1", "claude-sonnet-4-5");
  EXPECT_EQ(message, json::parse(R"({"id":"msg_1","type":"message","role":"assistant",
      "model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello"}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":60,"output_tokens":20,"cache_read_input_tokens":30,
               "cache_creation_input_tokens":10}})"));
}

TEST(AnthropicResponseTest, ToolCallsBecomeToolUseBlocksAndForceToolUse) {
  auto message = to_message(completion(R"({"role":"assistant","content":"",
      "tool_calls":[{"id":"functions.Bash:0","type":"function","function":{"name":"Bash",
        "arguments":"{\"cmd\":\"ls\"}"}},
      {"id":"","type":"function","function":{"name":"noargs","arguments":""}},
      {"id":"c3","type":"function","function":{"name":"broken","arguments":"{\"a\":"}},
      {"id":"c4","type":"function","function":{"name":"list","arguments":"[1,2]"}}]})",
                                       "stop"),
                            "msg_1", "claude");
  EXPECT_EQ(message.at("content"), json::parse(R"([
      {"type":"tool_use","id":"functions_Bash_0","name":"Bash","input":{"cmd":"ls"}},
      {"type":"tool_use","id":"toolu_msg_1_1","name":"noargs","input":{}},
      {"type":"tool_use","id":"c3","name":"broken","input":{"_raw":"{\"a\":"}},
      {"type":"tool_use","id":"c4","name":"list","input":{"_raw":"[1,2]"}}])"));
  EXPECT_EQ(message.at("stop_reason"), "tool_use");
}

TEST(AnthropicResponseTest, FinishReasonsMapToStopReasons) {
  const std::pair<const char*, const char*> cases[] = {
      {"stop", "end_turn"},          {"length", "max_tokens"}, {"tool_calls", "tool_use"},
      {"content_filter", "refusal"}, {"weird", "end_turn"},
  };
  for (const auto& [finish, reason] : cases) {
    auto message =
        to_message(completion(R"({"role":"assistant","content":"x"})", finish), "m", "c");
    EXPECT_EQ(message.at("stop_reason"), reason) << finish;
  }
  // A truncated call must not be run: length wins over the tool call.
  auto cut = to_message(completion(R"({"role":"assistant","content":null,"tool_calls":[{"id":"a",
      "type":"function","function":{"name":"f","arguments":"{\"x"}}]})",
                                   "length"),
                        "m", "c");
  EXPECT_EQ(cut.at("stop_reason"), "max_tokens");
}

TEST(AnthropicResponseTest, RelayStopStringBecomesStopSequence) {
  auto body = completion(R"({"role":"assistant","content":"x"})", "stop");
  body["choices"].as_array()[0].as_object()["stop_reason"] = "END";
  auto message = to_message(body, "m", "c");
  EXPECT_EQ(message.at("stop_reason"), "stop_sequence");
  EXPECT_EQ(message.at("stop_sequence"), "END");
}

TEST(AnthropicResponseTest, RefusalBecomesTextAndRefusal) {
  auto message = to_message(
      completion(R"({"role":"assistant","content":null,"refusal":"I can't."})", "stop"), "m", "c");
  EXPECT_EQ(message.at("content"), json::parse(R"([{"type":"text","text":"I can't."}])"));
  EXPECT_EQ(message.at("stop_reason"), "refusal");
}

TEST(AnthropicResponseTest, EmptyOrGarbageCompletionStillGivesAValidMessage) {
  for (auto body : {R"({})", R"({"choices":"x","usage":[1]})", R"({"choices":[5,{"message":7}]})",
                    R"({"choices":[{"message":{"content":[{"type":"text","text":"a"},
                        {"type":"text","text":"b"}],"tool_calls":[3,{"function":5}]}}],
                        "usage":{"prompt_tokens":1e300}})"}) {
    auto message = to_message(parse_object(body), "m", "c");
    EXPECT_EQ(message.at("type"), "message") << body;
    EXPECT_TRUE(message.at("content").is_array());
    EXPECT_TRUE(message.at("usage").at("input_tokens").is_int64());
  }
  auto empty = to_message(completion(R"({"role":"assistant","content":""})", "stop"), "m", "c");
  EXPECT_TRUE(empty.at("content").as_array().empty());
  // Cached tokens larger than the prompt never make input_tokens negative.
  auto odd = to_message(completion(R"({"content":"x"})", "stop",
                                   R"({"prompt_tokens":5,"completion_tokens":1,
                                       "prompt_tokens_details":{"cached_tokens":9}})"),
                        "m", "c");
  EXPECT_EQ(odd.at("usage").at("input_tokens"), 0);
}

// ---------------------------------------------------------------- stream

struct Event {
  std::string name;
  json::object data;
};

std::vector<Event> parse_events(std::string_view sse) {
  std::vector<Event> events;
  while (!sse.empty()) {
    const auto end = sse.find("\n\n");
    EXPECT_NE(end, std::string_view::npos) << "unterminated event";
    if (end == std::string_view::npos) break;
    const auto frame = sse.substr(0, end);
    sse.remove_prefix(end + 2);
    EXPECT_EQ(frame.rfind("event: ", 0), 0u) << frame;
    const auto newline = frame.find('\n');
    Event event{std::string(frame.substr(7, newline - 7)), {}};
    const auto data = frame.substr(newline + 1);
    EXPECT_EQ(data.rfind("data: ", 0), 0u) << frame;
    event.data = json::parse(data.substr(6)).as_object();
    EXPECT_EQ(event.data.at("type"), json::value(event.name))
        << "data.type must repeat the event name";
    events.push_back(std::move(event));
  }
  return events;
}

std::vector<std::string> names(const std::vector<Event>& events) {
  std::vector<std::string> result;
  for (const auto& event : events) result.push_back(event.name);
  return result;
}

// What the SDKs' MessageStream does with the events (anthropic-sdk-typescript
// src/lib/MessageStream.ts #accumulateMessage), plus the invariants they rely on: message_start
// first, blocks numbered in order, one open at a time, deltas of the block's own kind.
json::object accumulate(const std::vector<Event>& events) {
  json::object snapshot;
  std::vector<std::string> tool_json;
  int open = -1;
  bool stopped = false;
  for (const auto& event : events) {
    EXPECT_FALSE(stopped) << "event after message_stop: " << event.name;
    if (event.name == "ping") continue;
    if (event.name == "message_start") {
      EXPECT_TRUE(snapshot.empty()) << "second message_start";
      snapshot = event.data.at("message").as_object();
      continue;
    }
    EXPECT_FALSE(snapshot.empty()) << event.name << " before message_start";
    if (snapshot.empty()) return snapshot;
    auto& content = snapshot["content"].as_array();
    const auto index = event.data.contains("index") ? event.data.at("index").to_number<int>() : -1;
    if (event.name == "content_block_start") {
      EXPECT_EQ(open, -1) << "a block opened while another is open";
      EXPECT_EQ(index, static_cast<int>(content.size())) << "blocks must be numbered in order";
      content.push_back(event.data.at("content_block"));
      tool_json.emplace_back();
      open = index;
    } else if (event.name == "content_block_delta") {
      EXPECT_GE(index, 0);
      EXPECT_LT(index, static_cast<int>(content.size()));
      if (index < 0 || index >= static_cast<int>(content.size())) continue;
      auto& block = content[index].as_object();
      const auto& delta = event.data.at("delta").as_object();
      if (delta.at("type") == "text_delta") {
        EXPECT_EQ(block.at("type"), "text");
        EXPECT_EQ(index, open) << "text delta for a closed block";
        block["text"] =
            std::string(block.at("text").as_string()) + std::string(delta.at("text").as_string());
      } else {
        EXPECT_EQ(delta.at("type"), "input_json_delta");
        EXPECT_EQ(block.at("type"), "tool_use");
        tool_json[index] += delta.at("partial_json").as_string();
      }
    } else if (event.name == "content_block_stop") {
      EXPECT_EQ(index, open) << "stop for a block that is not open";
      open = -1;
    } else if (event.name == "message_delta") {
      EXPECT_EQ(open, -1) << "message_delta with a block open";
      snapshot["stop_reason"] = event.data.at("delta").at("stop_reason");
      snapshot["stop_sequence"] = event.data.at("delta").at("stop_sequence");
      for (const auto& [key, value] : event.data.at("usage").as_object()) {
        if (!value.is_null()) snapshot["usage"].as_object()[key] = value;
      }
    } else if (event.name == "message_stop") {
      stopped = true;
    } else {
      ADD_FAILURE() << "unexpected event " << event.name;
    }
  }
  EXPECT_TRUE(stopped) << "no message_stop";
  auto& content = snapshot["content"].as_array();
  for (std::size_t i = 0; i < content.size(); ++i) {
    if (content[i].at("type") == "tool_use" && !tool_json[i].empty()) {
      content[i].as_object()["input"] = json::parse(tool_json[i]);
    }
  }
  return snapshot;
}

std::string run_stream(StreamEncoder& encoder, std::initializer_list<std::string_view> chunks) {
  std::string out;
  for (auto chunk : chunks) encoder.on_chunk(parse_object(chunk), out);
  encoder.finish(out);
  return out;
}

std::string delta_chunk(std::string_view delta, std::string_view finish = "null") {
  return R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"g","choices":[{"index":0,
      "delta":)" +
         std::string(delta) + R"(,"finish_reason":)" + std::string(finish) + "}]}";
}

const std::string kUsageChunk =
    R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"g",
    "choices":[],"usage":{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57,
    "prompt_tokens_details":{"cached_tokens":20,"cache_creation_tokens":5}}})";

TEST(AnthropicStreamTest, TextStreamMatchesAnthropicsEventOrder) {
  StreamEncoder encoder("msg_1", "claude-sonnet-4-5");
  std::string out;
  encoder.on_chunk(parse_object(delta_chunk(R"({"role":"assistant","content":""})")), out);
  encoder.on_chunk(parse_object(delta_chunk(R"({"content":"Hel"})")), out);
  encoder.on_chunk(parse_object(delta_chunk(R"({"content":"lo"})")), out);
  encoder.on_chunk(parse_object(delta_chunk(R"({})", R"("stop")")), out);
  const auto before_usage = out.size();
  encoder.on_chunk(parse_object(kUsageChunk), out);
  EXPECT_EQ(out.size(), before_usage) << "the finish and usage chunks emit nothing by themselves";
  encoder.finish(out);
  auto events = parse_events(out);
  EXPECT_EQ(names(events),
            (std::vector<std::string>{"message_start", "ping", "content_block_start",
                                      "content_block_delta", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"}));
  EXPECT_EQ(events[0].data.at("message"), json::parse(R"({"id":"msg_1","type":"message",
      "role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,
      "stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0,"cache_read_input_tokens":0,
      "cache_creation_input_tokens":0}})"));
  EXPECT_EQ(events[2].data, json::parse(R"({"type":"content_block_start","index":0,
      "content_block":{"type":"text","text":""}})"));
  EXPECT_EQ(events[3].data, json::parse(R"({"type":"content_block_delta","index":0,
      "delta":{"type":"text_delta","text":"Hel"}})"));
  EXPECT_EQ(events[6].data, json::parse(R"({"type":"message_delta",
      "delta":{"stop_reason":"end_turn","stop_sequence":null},
      "usage":{"input_tokens":25,"output_tokens":7,"cache_read_input_tokens":20,
               "cache_creation_input_tokens":5}})"));
  auto message = accumulate(events);
  EXPECT_EQ(message.at("content"), json::parse(R"([{"type":"text","text":"Hello"}])"));
  EXPECT_EQ(message.at("usage").at("input_tokens"), 25);
}

TEST(AnthropicStreamTest, TextThenParallelToolCalls) {
  StreamEncoder encoder("msg_1", "c");
  auto out = run_stream(
      encoder,
      {
          delta_chunk(R"({"role":"assistant","content":"Let me check."})"),
          delta_chunk(R"({"tool_calls":[{"index":0,"id":"call_a","type":"function",
          "function":{"name":"weather","arguments":""}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":1,"id":"call_b","type":"function",
          "function":{"name":"time","arguments":"{}"}}]})"),
          delta_chunk(R"({})", R"("tool_calls")"),
          kUsageChunk,
      });
  auto events = parse_events(out);
  EXPECT_EQ(names(events),
            (std::vector<std::string>{
                "message_start", "ping", "content_block_start", "content_block_delta",
                "content_block_stop", "content_block_start", "content_block_delta",
                "content_block_delta", "content_block_stop", "content_block_start",
                "content_block_delta", "content_block_stop", "message_delta", "message_stop"}));
  EXPECT_EQ(events[5].data, json::parse(R"({"type":"content_block_start","index":1,
      "content_block":{"type":"tool_use","id":"call_a","name":"weather","input":{}}})"));
  EXPECT_EQ(events[6].data.at("delta"), json::parse(R"({"type":"input_json_delta",
      "partial_json":"{\"city\":"})"));
  auto message = accumulate(events);
  EXPECT_EQ(message.at("content"), json::parse(R"([{"type":"text","text":"Let me check."},
      {"type":"tool_use","id":"call_a","name":"weather","input":{"city":"Paris"}},
      {"type":"tool_use","id":"call_b","name":"time","input":{}}])"));
  EXPECT_EQ(message.at("stop_reason"), "tool_use");
}

TEST(AnthropicStreamTest, TextAfterAToolCallOpensANewTextBlock) {
  StreamEncoder encoder("m", "c");
  auto message = accumulate(parse_events(run_stream(
      encoder,
      {
          delta_chunk(
              R"({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]})"),
          delta_chunk(R"({"content":"done"})"),
          delta_chunk(R"({})", R"("stop")"),
      })));
  EXPECT_EQ(message.at("content"), json::parse(R"([
      {"type":"tool_use","id":"a","name":"f","input":{}},{"type":"text","text":"done"}])"));
  EXPECT_EQ(message.at("stop_reason"), "tool_use") << "a tool call forces tool_use over stop";
}

TEST(AnthropicStreamTest, InterleavedCallsSendLatePiecesBeforeMessageDelta) {
  StreamEncoder encoder("m", "c");
  auto events = parse_events(run_stream(
      encoder,
      {
          delta_chunk(
              R"({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}},
                                    {"index":1,"id":"b","function":{"name":"g","arguments":"{\"y\":"}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"1}"}},
                                    {"index":1,"function":{"arguments":"2}"}}]})"),
          delta_chunk(R"({})", R"("tool_calls")"),
      }));
  // Call 0's block closed when call 1 began; its late "1}" goes to block 0 before message_delta.
  ASSERT_GE(events.size(), 4u);
  const auto& late = events[events.size() - 3];
  EXPECT_EQ(late.data, json::parse(R"({"type":"content_block_delta","index":0,
      "delta":{"type":"input_json_delta","partial_json":"1}"}})"));
  auto message = accumulate(events);
  EXPECT_EQ(message.at("content"),
            json::parse(R"([{"type":"tool_use","id":"a","name":"f","input":{"x":1}},
      {"type":"tool_use","id":"b","name":"g","input":{"y":2}}])"));
}

TEST(AnthropicStreamTest, ANewIdAtAReusedIndexIsANewCall) {
  StreamEncoder encoder("m", "c");
  auto message = accumulate(parse_events(run_stream(
      encoder,
      {
          delta_chunk(
              R"({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":0,"id":"a","function":{"arguments":"1}"}}]})"),
          delta_chunk(
              R"({"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}]})"),
          delta_chunk(R"({})", R"("tool_calls")"),
      })));
  EXPECT_EQ(message.at("content"),
            json::parse(R"([{"type":"tool_use","id":"a","name":"f","input":{"x":1}},
      {"type":"tool_use","id":"b","name":"g","input":{}}])"));
}

TEST(AnthropicStreamTest, FinishWithoutChunksIsACompleteEmptyMessage) {
  StreamEncoder encoder("m", "c");
  std::string out;
  encoder.finish(out);
  auto events = parse_events(out);
  EXPECT_EQ(names(events),
            (std::vector<std::string>{"message_start", "ping", "message_delta", "message_stop"}));
  auto message = accumulate(events);
  EXPECT_TRUE(message.at("content").as_array().empty());
  EXPECT_EQ(message.at("stop_reason"), "end_turn");
  std::string again;
  encoder.finish(again);
  encoder.on_chunk(parse_object(delta_chunk(R"({"content":"late"})")), again);
  EXPECT_TRUE(again.empty()) << "nothing after the stream finished";
}

TEST(AnthropicStreamTest, ContentAndFinishInOneChunk) {
  StreamEncoder encoder("m", "c");
  auto message = accumulate(parse_events(run_stream(
      encoder, {
                   delta_chunk(R"({"role":"assistant","content":"All of it"})", R"("length")"),
               })));
  EXPECT_EQ(message.at("content"), json::parse(R"([{"type":"text","text":"All of it"}])"));
  EXPECT_EQ(message.at("stop_reason"), "max_tokens");
}

TEST(AnthropicStreamTest, ArgumentsThatAreNotAnObjectArriveAsRaw) {
  StreamEncoder encoder("m", "c");
  auto message = accumulate(parse_events(run_stream(
      encoder,
      {
          delta_chunk(
              R"({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"  "}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"ls -la"}}]})"),
          delta_chunk(R"({})", R"("tool_calls")"),
      })));
  EXPECT_EQ(message.at("content").at(0).at("input"), json::parse(R"({"_raw":"  ls -la"})"));
}

TEST(AnthropicStreamTest, ArgumentsThatBreakAfterStreamingFailTheStream) {
  StreamEncoder encoder("m", "c");
  std::string out;
  encoder.on_chunk(
      parse_object(delta_chunk(
          R"({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"a\":1}"}}]})")),
      out);
  encoder.on_chunk(parse_object(delta_chunk(
                       R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"b\":2}"}}]})")),
                   out);
  encoder.finish(out);
  auto events = parse_events(out);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().name, "error");
  EXPECT_EQ(events.back().data.at("error").at("type"), "api_error");
}

TEST(AnthropicStreamTest, ToolIdsAreMadeValid) {
  StreamEncoder encoder("msg_9", "c");
  auto message = accumulate(parse_events(run_stream(
      encoder,
      {
          delta_chunk(
              R"({"tool_calls":[{"index":0,"id":"functions.Bash:0","function":{"name":"Bash"}}]})"),
          delta_chunk(R"({"tool_calls":[{"index":1,"function":{"name":"Read"}}]})"),
      })));
  EXPECT_EQ(message.at("content").at(0).at("id"), "functions_Bash_0");
  EXPECT_EQ(message.at("content").at(1).at("id"), "toolu_msg_9_1");
  EXPECT_EQ(message.at("stop_reason"), "tool_use");
}

TEST(AnthropicStreamTest, RefusalAndStopSequence) {
  StreamEncoder refused("m", "c");
  auto message = accumulate(parse_events(run_stream(
      refused, {delta_chunk(R"({"refusal":"No."})"), delta_chunk(R"({})", R"("stop")")})));
  EXPECT_EQ(message.at("stop_reason"), "refusal");
  EXPECT_EQ(message.at("content"), json::parse(R"([{"type":"text","text":"No."}])"));
  StreamEncoder stopped("m", "c");
  auto chunk = parse_object(delta_chunk(R"({"content":"a"})", R"("stop")"));
  chunk["choices"].as_array()[0].as_object()["stop_reason"] = "###";
  std::string out;
  stopped.on_chunk(chunk, out);
  stopped.finish(out);
  message = accumulate(parse_events(out));
  EXPECT_EQ(message.at("stop_reason"), "stop_sequence");
  EXPECT_EQ(message.at("stop_sequence"), "###");
}

TEST(AnthropicStreamTest, FailSendsAnErrorEventOnce) {
  StreamEncoder encoder("m", "c");
  std::string out;
  encoder.on_chunk(parse_object(delta_chunk(R"({"content":"par"})")), out);
  encoder.fail(529, "upstream overloaded", out);
  encoder.finish(out);
  encoder.fail(500, "again", out);
  auto events = parse_events(out);
  ASSERT_EQ(events.back().name, "error");
  EXPECT_EQ(events.back().data, json::parse(R"({"type":"error","error":{"type":"overloaded_error",
      "message":"upstream overloaded"}})"));
  EXPECT_EQ(names(events).size(), 5u) << "message_start, ping, block start, delta, error";
}

TEST(AnthropicStreamTest, FailBeforeAnyChunkIsJustTheErrorEvent) {
  StreamEncoder encoder("m", "c");
  std::string out;
  encoder.fail(502, "upstream closed", out);
  auto events = parse_events(out);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, json::parse(R"({"type":"error","error":{"type":"api_error",
      "message":"upstream closed"}})"));
}

TEST(AnthropicStreamTest, BadChunksNeverBreakTheStream) {
  StreamEncoder encoder("m", "c");
  auto message = accumulate(parse_events(run_stream(
      encoder, {
                   R"({"choices":"x"})",
                   R"({"choices":[7,{"index":0,"delta":5}]})",
                   R"({"choices":[{"index":0,"delta":{"content":7,"tool_calls":[1,{"index":"z"},
          {"index":0,"function":"f"}]}}],"usage":"lots"})",
                   R"({"choices":[{"index":1,"delta":{"content":"other choice"}}]})",
                   R"({"usage":{"prompt_tokens":1e300}})",
               })));
  EXPECT_EQ(message.at("type"), "message");
}

// ---------------------------------------------------------------- errors and ids

TEST(AnthropicErrorTest, ErrorTypeByStatus) {
  const std::pair<unsigned, const char*> cases[] = {
      {400, "invalid_request_error"},
      {401, "authentication_error"},
      {403, "permission_error"},
      {404, "not_found_error"},
      {413, "request_too_large"},
      {429, "rate_limit_error"},
      {503, "overloaded_error"},
      {529, "overloaded_error"},
      {500, "api_error"},
      {502, "api_error"},
      {504, "api_error"},
      {422, "invalid_request_error"},
  };
  for (const auto& [status, type] : cases) EXPECT_EQ(error_type(status), type) << status;
}

TEST(AnthropicErrorTest, ErrorBody) {
  EXPECT_EQ(json::parse(error_body(429, "slow down", "req_1")), json::parse(R"({"type":"error",
      "error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"})"));
  EXPECT_EQ(json::parse(error_body(400, "max_tokens: field required", "")), json::parse(R"({
      "type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}})"));
}

TEST(AnthropicErrorTest, ErrorBodyFromOpenAiAnthropicAndGarbage) {
  EXPECT_EQ(
      json::parse(error_body_from(R"({"error":{"message":"Rate limit reached","type":"requests",
      "code":"rate_limit_exceeded"}})",
                                  429, "req")),
      json::parse(R"({"type":"error","error":{"type":"rate_limit_error",
      "message":"Rate limit reached"},"request_id":"req"})"));
  EXPECT_EQ(json::parse(error_body_from(R"({"type":"error","error":{"type":"billing_error",
      "message":"Credit balance too low"},"request_id":"req_up"})",
                                        400, "")),
            json::parse(R"({"type":"error","error":{"type":"billing_error",
      "message":"Credit balance too low"},"request_id":"req_up"})"));
  // An OpenAI `type` is not Anthropic's: the status decides.
  EXPECT_EQ(
      json::parse(error_body_from(R"({"error":{"message":"m","type":"server_error"}})", 502, ""))
          .at("error")
          .at("type"),
      "api_error");
  EXPECT_EQ(
      json::parse(error_body_from(R"({"error":"bad key"})", 401, "")).at("error").at("message"),
      "bad key");
  EXPECT_EQ(
      json::parse(error_body_from(R"({"message":"gone"})", 404, "")).at("error").at("message"),
      "gone");
  for (auto garbage : {"<html>502 Bad Gateway</html>", "", "[1,2]", R"({"error":{"message":5}})"}) {
    auto body = json::parse(error_body_from(garbage, 503, "r"));
    EXPECT_EQ(body.at("error").at("type"), "overloaded_error") << garbage;
    EXPECT_EQ(body.at("error").at("message"), "the service is overloaded (HTTP 503)") << garbage;
  }
}

TEST(AnthropicIdTest, ValidToolId) {
  EXPECT_EQ(valid_tool_id("toolu_01A-b", "x"), "toolu_01A-b");
  EXPECT_EQ(valid_tool_id("functions.Bash:0", "x"), "functions_Bash_0");
  EXPECT_EQ(valid_tool_id("call é", "x"), "call___");
  EXPECT_EQ(valid_tool_id("", "msg_1_0"), "toolu_msg_1_0");
  EXPECT_EQ(valid_tool_id("", "a.b"), "toolu_a_b");
  EXPECT_EQ(valid_tool_id("a:b", "x"), valid_tool_id("a:b", "y"));
}

}  // namespace
}  // namespace cutover::api::anthropic
