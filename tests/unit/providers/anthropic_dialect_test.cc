#include "providers/anthropic_dialect.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>

namespace cutover::providers::anthropic {
namespace {

namespace json = boost::json;

constexpr std::int64_t kDefaultMax = 4096;

// The Messages body for a chat request; fails the test when the request is refused.
json::object translate(std::string_view chat) {
  std::string body;
  auto problem =
      to_messages_request(json::parse(chat).as_object(), "claude-sonnet-4-5", kDefaultMax, body);
  EXPECT_FALSE(problem) << *problem;
  return problem ? json::object() : json::parse(body).as_object();
}

// The refusal a chat request gets; fails the test when it is translated.
std::string refusal(std::string_view chat) {
  std::string body;
  auto problem = to_messages_request(json::parse(chat).as_object(), "m", kDefaultMax, body);
  EXPECT_TRUE(problem) << chat << " was translated to " << body;
  return problem.value_or("");
}

#define EXPECT_REFUSED(chat, words) \
  EXPECT_NE(refusal(chat).find(words), std::string::npos) << refusal(chat)

constexpr std::string_view kHello = R"("messages":[{"role":"user","content":"Hello"}])";

std::string with_hello(std::string_view fields) {
  return "{\"model\":\"claude\"," + std::string(fields) + (fields.empty() ? "" : ",") +
         std::string(kHello) + "}";
}

// ---------------------------------------------------------------------------------------------
// Requests.

TEST(ToMessagesRequestTest, PlainRequestGetsProviderModelAndDefaultMaxTokens) {
  auto body = translate(with_hello(""));
  EXPECT_EQ(body, json::parse(R"({"model":"claude-sonnet-4-5","messages":[{"role":"user",
      "content":[{"type":"text","text":"Hello"}]}],"max_tokens":4096})"));
}

TEST(ToMessagesRequestTest, ANumberBoostJsonReadsAsNaNIsSentAsValidJson) {
  // Boost.JSON 1.81 parses 0e400 (zero) to NaN, which json::serialize writes as `NaN`; translate()
  // parses the body, so invalid JSON fails this test.
  auto body = translate(with_hello(R"("temperature":0e400)"));
  EXPECT_EQ(body.at("temperature"), 0);
}

TEST(ToMessagesRequestTest, SystemAndDeveloperMessagesJoinTheTopLevelSystem) {
  auto body = translate(R"({"model":"c","messages":[
      {"role":"system","content":"You are terse."},
      {"role":"developer","content":[{"type":"text","text":"Answer in French."},
                                     {"type":"text","text":"No emoji."}]},
      {"role":"user","content":"Hi"}]})");
  EXPECT_EQ(body.at("system"), "You are terse.\n\nAnswer in French.\n\nNo emoji.");
  ASSERT_EQ(body.at("messages").as_array().size(), 1u);
  EXPECT_EQ(body.at("messages").at(0).at("role"), "user");
}

TEST(ToMessagesRequestTest, UserPartsBecomeTextImageAndDocumentBlocks) {
  auto body = translate(R"({"model":"c","messages":[{"role":"user","content":[
      {"type":"text","text":"What is in these?"},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
      {"type":"image_url","image_url":{"url":"https://upload.wikimedia.org/cat.jpg"}},
      {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0x","filename":"a.pdf"}}
      ]}]})");
  EXPECT_EQ(body.at("messages").at(0).at("content"), json::parse(R"([
      {"type":"text","text":"What is in these?"},
      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
      {"type":"image","source":{"type":"url","url":"https://upload.wikimedia.org/cat.jpg"}},
      {"type":"document","source":{"type":"base64","media_type":"application/pdf",
       "data":"JVBERi0x"},"title":"a.pdf"}])"));
}

TEST(ToMessagesRequestTest, UnusableUserPartsAreRefusedByPath) {
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":[{"type":"image_url",
      "image_url":{"url":"ftp://x/cat.png"}}]}]})",
                 "'messages[0].content[0].image_url.url'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":[{"type":"image_url",
      "image_url":{"url":"data:image/png,notbase64"}}]}]})",
                 "'messages[0].content[0].image_url.url'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":[{"type":"text","text":"hi"},
      {"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]})",
                 "'messages[0].content[1].type'");
  EXPECT_REFUSED(
      R"({"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]})",
      "'messages[0].content[0].file.file_id'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":[{"type":"file",
      "file":{"file_data":"data:text/plain;base64,aGk="}}]}]})",
                 "'messages[0].content[0].file.file_data'");
  EXPECT_REFUSED(R"({"messages":[{"role":"system","content":[{"type":"image_url",
      "image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"hi"}]})",
                 "'messages[0].content[0].type'");
}

TEST(ToMessagesRequestTest, AssistantToolCallsBecomeToolUseBlocksAfterItsText) {
  auto body = translate(R"({"model":"c","messages":[
      {"role":"user","content":"Weather in SF and the time?"},
      {"role":"assistant","content":"Let me check.","tool_calls":[
        {"id":"toolu_01A","type":"function","function":{"name":"get_weather",
         "arguments":"{\"location\": \"San Francisco, CA\"}"}},
        {"id":"toolu_01B","type":"function","function":{"name":"get_time","arguments":""}}]}]})");
  EXPECT_EQ(body.at("messages").at(1), json::parse(R"({"role":"assistant","content":[
      {"type":"text","text":"Let me check."},
      {"type":"tool_use","id":"toolu_01A","name":"get_weather",
       "input":{"location":"San Francisco, CA"}},
      {"type":"tool_use","id":"toolu_01B","name":"get_time","input":{}}]})"));
}

TEST(ToMessagesRequestTest, ToolCallArgumentsThatAreNotAnObjectAreRefused) {
  for (const char* arguments : {R"("[1,2]")", R"("not json")", R"("42")", "7"}) {
    const std::string chat = std::string(R"({"messages":[{"role":"user","content":"x"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function",
        "function":{"name":"f","arguments":)") +
                             arguments + "}}]}]}";
    EXPECT_REFUSED(chat, "'messages[1].tool_calls[0].function.arguments'");
  }
}

TEST(ToMessagesRequestTest, ToolCallIdsAreMadeValidTheSameWayInUseAndResult) {
  auto body = translate(R"({"model":"c","messages":[
      {"role":"user","content":"run"},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"functions.Bash:0","type":"function","function":{"name":"Bash","arguments":"{}"}},
        {"id":"functions_Bash_0","type":"function","function":{"name":"Bash","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"functions.Bash:0","content":"ok"},
      {"role":"tool","tool_call_id":"functions_Bash_0","content":"ok too"}]})");
  const auto& uses = body.at("messages").at(1).at("content").as_array();
  const auto& results = body.at("messages").at(2).at("content").as_array();
  const std::string first(uses.at(0).at("id").as_string());
  EXPECT_TRUE(first.starts_with("functions_Bash_0_")) << first;
  EXPECT_EQ(
      first.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"),
      std::string::npos);
  EXPECT_EQ(uses.at(1).at("id"), "functions_Bash_0");  // an already valid id stays as it is
  EXPECT_NE(uses.at(0).at("id"), uses.at(1).at("id"));
  EXPECT_EQ(results.at(0).at("tool_use_id"), uses.at(0).at("id"));
  EXPECT_EQ(results.at(1).at("tool_use_id"), uses.at(1).at("id"));
  // Deterministic: the same conversation translates to the same ids every time.
  EXPECT_EQ(translate(R"({"messages":[{"role":"user","content":"run"},{"role":"assistant",
      "tool_calls":[{"id":"functions.Bash:0","type":"function","function":{"name":"Bash",
      "arguments":"{}"}}]}]})")
                .at("messages")
                .at(1)
                .at("content")
                .at(0)
                .at("id"),
            uses.at(0).at("id"));
}

TEST(ToMessagesRequestTest, ToolMessagesMergeIntoOneUserTurnAheadOfTheUsersText) {
  auto body = translate(R"({"model":"c","messages":[
      {"role":"user","content":"Weather and time in SF?"},
      {"role":"assistant","content":"","tool_calls":[
        {"id":"toolu_a","type":"function","function":{"name":"get_weather","arguments":"{}"}},
        {"id":"toolu_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"toolu_a","content":"15 degrees"},
      {"role":"tool","tool_call_id":"toolu_b","content":[{"type":"text","text":"3pm"}]},
      {"role":"user","content":"Thanks, and tomorrow?"}]})");
  const auto& messages = body.at("messages").as_array();
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages.at(1).at("content").as_array().size(), 2u);  // the empty text is skipped
  EXPECT_EQ(messages.at(2), json::parse(R"({"role":"user","content":[
      {"type":"tool_result","tool_use_id":"toolu_a","content":"15 degrees"},
      {"type":"tool_result","tool_use_id":"toolu_b","content":[{"type":"text","text":"3pm"}]},
      {"type":"text","text":"Thanks, and tomorrow?"}]})"));
}

TEST(ToMessagesRequestTest, ToolResultsGoFirstEvenWhenTheUserSpokeBeforeThem) {
  auto body = translate(R"({"messages":[{"role":"user","content":"go"},
      {"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f",
       "arguments":"{}"}}]},
      {"role":"user","content":"note"},
      {"role":"tool","tool_call_id":"t1","content":""}]})");
  EXPECT_EQ(body.at("messages").at(2).at("content"), json::parse(R"([
      {"type":"tool_result","tool_use_id":"t1"},{"type":"text","text":"note"}])"));
}

TEST(ToMessagesRequestTest, ConsecutiveTurnsOfOneRoleAreMerged) {
  auto body = translate(R"({"messages":[{"role":"user","content":"one"},
      {"role":"user","content":"two"},{"role":"assistant","content":"three"},
      {"role":"assistant","content":[{"type":"text","text":"four"},{"type":"refusal",
       "refusal":"no"}]},{"role":"assistant","content":null},{"role":"user","content":"five"}]})");
  EXPECT_EQ(body.at("messages"), json::parse(R"([
      {"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]},
      {"role":"assistant","content":[{"type":"text","text":"three"},{"type":"text","text":"four"},
       {"type":"text","text":"no"}]},
      {"role":"user","content":[{"type":"text","text":"five"}]}])"));
}

TEST(ToMessagesRequestTest, ToolsBecomeInputSchemas) {
  auto body = translate(with_hello(R"("tools":[
      {"type":"function","function":{"name":"get_weather","description":"Get the weather",
       "parameters":{"type":"object","properties":{"location":{"type":"string"}},
       "required":["location"]},"strict":true}},
      {"type":"function","function":{"name":"now"}}])"));
  EXPECT_EQ(body.at("tools"), json::parse(R"([
      {"name":"get_weather","description":"Get the weather","input_schema":{"type":"object",
       "properties":{"location":{"type":"string"}},"required":["location"]},"strict":true},
      {"name":"now","input_schema":{"type":"object"}}])"));
  EXPECT_FALSE(body.contains("tool_choice"));  // Anthropic's default is auto too
}

TEST(ToMessagesRequestTest, ToolChoiceMapsEachForm) {
  const std::string tools = R"("tools":[{"type":"function","function":{"name":"get_weather"}}],)";
  struct Case {
    const char* fields;
    const char* expected;
  } cases[] = {
      {R"("tool_choice":"auto")", R"({"type":"auto"})"},
      {R"("tool_choice":"required")", R"({"type":"any"})"},
      {R"("tool_choice":"none")", R"({"type":"none"})"},
      {R"("tool_choice":{"type":"function","function":{"name":"get_weather"}})",
       R"({"type":"tool","name":"get_weather"})"},
      {R"("parallel_tool_calls":false)", R"({"type":"auto","disable_parallel_tool_use":true})"},
      {R"("tool_choice":"required","parallel_tool_calls":false)",
       R"({"type":"any","disable_parallel_tool_use":true})"},
      {R"("tool_choice":"none","parallel_tool_calls":false)", R"({"type":"none"})"},
  };
  for (const auto& c : cases) {
    auto body = translate(with_hello(tools + c.fields));
    EXPECT_EQ(body.at("tool_choice"), json::parse(c.expected)) << c.fields;
  }
  EXPECT_FALSE(
      translate(with_hello(tools + R"("parallel_tool_calls":true)")).contains("tool_choice"));
}

TEST(ToMessagesRequestTest, ToolChoiceWithoutToolsIsOmittedOrRefused) {
  EXPECT_FALSE(translate(with_hello(R"("tool_choice":"none")")).contains("tool_choice"));
  EXPECT_FALSE(translate(with_hello(R"("tool_choice":"auto","parallel_tool_calls":false)"))
                   .contains("tool_choice"));
  EXPECT_REFUSED(with_hello(R"("tool_choice":"required")"), "'tool_choice' requires 'tools'");
  EXPECT_REFUSED(with_hello(R"("tools":[{"type":"function","function":{"name":"f"}}],
      "tool_choice":{"type":"allowed_tools","allowed_tools":{}})"),
                 "'tool_choice'");
  EXPECT_REFUSED(with_hello(R"("tools":[{"type":"custom","custom":{"name":"f"}}])"),
                 "'tools[0].type'");
}

TEST(ToMessagesRequestTest, StopBecomesStopSequences) {
  EXPECT_EQ(translate(with_hello(R"("stop":"END")")).at("stop_sequences"),
            json::parse(R"(["END"])"));
  EXPECT_EQ(translate(with_hello(R"("stop":["a","b"])")).at("stop_sequences"),
            json::parse(R"(["a","b"])"));
  EXPECT_FALSE(translate(with_hello(R"("stop":null)")).contains("stop_sequences"));
  EXPECT_REFUSED(with_hello(R"("stop":[1])"), "'stop'");
}

TEST(ToMessagesRequestTest, MaxCompletionTokensWinsOverMaxTokens) {
  EXPECT_EQ(translate(with_hello(R"("max_tokens":100)")).at("max_tokens"), 100);
  EXPECT_EQ(
      translate(with_hello(R"("max_tokens":100,"max_completion_tokens":200)")).at("max_tokens"),
      200);
  EXPECT_REFUSED(with_hello(R"("max_tokens":0)"), "'max_tokens' must be a positive integer");
  EXPECT_REFUSED(with_hello(R"("max_completion_tokens":"9")"), "'max_completion_tokens'");
  EXPECT_REFUSED(with_hello(R"("max_tokens":1e300)"), "'max_tokens'");
  EXPECT_REFUSED(with_hello(R"("max_tokens":18446744073709551615)"), "'max_tokens'");
}

TEST(ToMessagesRequestTest, AMisconfiguredDefaultStillGivesAValidMaxTokens) {
  std::string body;
  ASSERT_FALSE(to_messages_request(json::parse(with_hello("")).as_object(), "m", 0, body));
  EXPECT_EQ(json::parse(body).at("max_tokens"), 1);
  ASSERT_FALSE(
      to_messages_request(json::parse(with_hello(R"("reasoning_effort":"high")")).as_object(), "m",
                          std::numeric_limits<std::int64_t>::max(), body));
  EXPECT_GT(json::parse(body).at("max_tokens").as_int64(), 16384);
}

TEST(ToMessagesRequestTest, SamplingWithinAnthropicsRangesPassesThrough) {
  auto body = translate(with_hello(R"("temperature":0.7,"top_p":0.9,"top_k":40)"));
  EXPECT_EQ(body.at("temperature"), 0.7);
  EXPECT_EQ(body.at("top_p"), 0.9);
  EXPECT_EQ(body.at("top_k"), 40);
  EXPECT_EQ(translate(with_hello(R"("temperature":1)")).at("temperature"), 1.0);
  EXPECT_REFUSED(with_hello(R"("temperature":1.5)"), "'temperature' must be between 0 and 1");
  EXPECT_REFUSED(with_hello(R"("temperature":-0.1)"), "'temperature'");
  EXPECT_REFUSED(with_hello(R"("temperature":"hot")"), "'temperature'");
  EXPECT_REFUSED(with_hello(R"("top_p":2)"), "'top_p'");
  EXPECT_REFUSED(with_hello(R"("top_k":0)"), "'top_k'");
}

TEST(ToMessagesRequestTest, StreamAndUserMapAndStreamOptionsAreDropped) {
  auto body = translate(
      with_hello(R"("stream":true,"stream_options":{"include_usage":true},"user":"user-42")"));
  EXPECT_EQ(body.at("stream"), true);
  EXPECT_FALSE(body.contains("stream_options"));
  EXPECT_EQ(body.at("metadata"), json::parse(R"({"user_id":"user-42"})"));
  EXPECT_FALSE(translate(with_hello(R"("stream":false)")).contains("stream"));
  EXPECT_EQ(translate(with_hello(R"("safety_identifier":"h-1")")).at("metadata").at("user_id"),
            "h-1");
  EXPECT_REFUSED(with_hello(R"("user":5)"), "'user' must be a string");
}

TEST(ToMessagesRequestTest, ReasoningEffortEnablesThinkingWithABudgetUnderMaxTokens) {
  struct Case {
    const char* effort;
    std::int64_t budget;
  } cases[] = {
      {"minimal", 1024}, {"low", 2048}, {"medium", 8192}, {"high", 16384}, {"xhigh", 32768}};
  for (const auto& c : cases) {
    auto body = translate(with_hello(std::string(R"("reasoning_effort":")") + c.effort + "\""));
    EXPECT_EQ(body.at("thinking"),
              (json::object{{"type", "enabled"}, {"budget_tokens", c.budget}}));
    // Without a client max, the answer keeps the default room beside the thinking.
    EXPECT_EQ(body.at("max_tokens"), kDefaultMax + c.budget);
  }
  auto capped = translate(with_hello(R"("reasoning_effort":"high","max_completion_tokens":5000)"));
  EXPECT_EQ(capped.at("max_tokens"), 5000);
  EXPECT_EQ(capped.at("thinking").at("budget_tokens"), 2500);  // half, the answer keeps the rest
  auto tight = translate(with_hello(R"("reasoning_effort":"medium","max_tokens":1500)"));
  EXPECT_EQ(tight.at("thinking").at("budget_tokens"), 1024);  // Anthropic's minimum
  auto roomy = translate(with_hello(R"("reasoning_effort":"low","max_tokens":64000)"));
  EXPECT_EQ(roomy.at("max_tokens"), 64000);
  EXPECT_EQ(roomy.at("thinking").at("budget_tokens"), 2048);
  EXPECT_FALSE(translate(with_hello(R"("reasoning_effort":"none")")).contains("thinking"));
}

TEST(ToMessagesRequestTest, ReasoningEffortRefusesWhatThinkingCannotHonour) {
  EXPECT_REFUSED(with_hello(R"("reasoning_effort":"low","max_tokens":1000)"),
                 "'reasoning_effort' needs a max_completion_tokens above 1024");
  EXPECT_REFUSED(with_hello(R"("reasoning_effort":"low","temperature":0.2)"), "'temperature'");
  EXPECT_REFUSED(with_hello(R"("reasoning_effort":"low","top_p":0.5)"), "'top_p'");
  EXPECT_REFUSED(with_hello(R"("reasoning_effort":"low","top_k":5)"), "'top_k'");
  EXPECT_REFUSED(with_hello(R"("reasoning_effort":"low","tool_choice":"required",
      "tools":[{"type":"function","function":{"name":"f"}}])"),
                 "'tool_choice'");
  EXPECT_REFUSED(with_hello(R"("reasoning_effort":"extreme")"), "'reasoning_effort' must be");
  EXPECT_FALSE(translate(with_hello(R"("reasoning_effort":"low","temperature":1,"top_p":0.95)"))
                   .at("thinking")
                   .is_null());
}

TEST(ToMessagesRequestTest, ThinkingStaysOffWhenContinuingAToolLoop) {
  auto body = translate(R"({"reasoning_effort":"high","max_tokens":500,"messages":[
      {"role":"user","content":"weather?"},
      {"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"w",
       "arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"t","content":"sunny"}]})");
  EXPECT_FALSE(body.contains("thinking"));
  EXPECT_EQ(body.at("max_tokens"), 500);
}

TEST(ToMessagesRequestTest, JsonSchemaBecomesOutputConfigAndJsonObjectIsRefused) {
  auto body = translate(with_hello(R"("response_format":{"type":"json_schema","json_schema":{
      "name":"contact","strict":true,"schema":{"type":"object","properties":{"name":{"type":
      "string"}},"required":["name"],"additionalProperties":false}}})"));
  EXPECT_EQ(body.at("output_config"), json::parse(R"({"format":{"type":"json_schema","schema":{
      "type":"object","properties":{"name":{"type":"string"}},"required":["name"],
      "additionalProperties":false}}})"));
  EXPECT_FALSE(
      translate(with_hello(R"("response_format":{"type":"text"})")).contains("output_config"));
  EXPECT_REFUSED(with_hello(R"("response_format":{"type":"json_object"})"), "'response_format'");
  EXPECT_REFUSED(with_hello(R"("response_format":{"type":"json_schema","json_schema":{}})"),
                 "'response_format.json_schema.schema'");
}

TEST(ToMessagesRequestTest, FieldsThatWouldChangeTheAnswerAreRefusedByName) {
  const char* fields[][2] = {
      {R"("n":2)", "'n'"},
      {R"("logprobs":true)", "'logprobs'"},
      {R"("top_logprobs":3)", "'top_logprobs'"},
      {R"("logit_bias":{"50256":-100})", "'logit_bias'"},
      {R"("presence_penalty":0.5)", "'presence_penalty'"},
      {R"("frequency_penalty":-1)", "'frequency_penalty'"},
      {R"("audio":{"voice":"alloy","format":"wav"})", "'audio'"},
      {R"("modalities":["text","audio"])", "'modalities'"},
      {R"("prediction":{"type":"content","content":"x"})", "'prediction'"},
      {R"("functions":[{"name":"f"}])", "'functions'"},
      {R"("function_call":"auto")", "'function_call'"},
      {R"("web_search_options":{})", "'web_search_options'"},
      {R"("verbosity":"low")", "'verbosity'"},
      {R"("thinking":{"type":"enabled"})", "'thinking'"},
  };
  for (const auto& [field, name] : fields) {
    const auto problem = refusal(with_hello(field));
    EXPECT_NE(problem.find(name), std::string::npos) << field << ": " << problem;
    EXPECT_NE(problem.find("no equivalent"), std::string::npos) << problem;
  }
}

TEST(ToMessagesRequestTest, HarmlessFieldsAndNeutralValuesAreDropped) {
  auto body = translate(with_hello(R"("n":1,"logprobs":false,"top_logprobs":0,"logit_bias":{},
      "presence_penalty":0,"frequency_penalty":0.0,"modalities":["text"],"audio":null,
      "seed":7,"service_tier":"auto","store":false,"metadata":{"k":"v"},
      "prompt_cache_key":"p","parallel_tool_calls":true)"));
  EXPECT_EQ(body, translate(with_hello("")));
}

TEST(ToMessagesRequestTest, MalformedMessagesAreRefusedByPath) {
  EXPECT_REFUSED(R"({"model":"m","messages":[]})", "'messages' must be a non-empty array");
  EXPECT_REFUSED(R"({"model":"m"})", "'messages'");
  EXPECT_REFUSED(R"({"messages":{"role":"user"}})", "'messages'");
  EXPECT_REFUSED(R"({"messages":[{"role":"system","content":"only"}]})",
                 "must hold a user or assistant message");
  EXPECT_REFUSED(R"({"messages":[3]})", "'messages[0]' must be an object");
  EXPECT_REFUSED(R"({"messages":[{"role":7}]})", "'messages[0].role'");
  EXPECT_REFUSED(R"({"messages":[{"role":"function","content":"x"}]})", "'messages[0].role'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":""}]})",
                 "'messages[0].content' must not be empty");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":{"text":"x"}}]})",
                 "'messages[0].content'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":[{"type":"text","text":5}]}]})",
                 "'messages[0].content[0].text'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":[7]}]})", "'messages[0].content[0]'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":"x"},{"role":"tool","content":"r"}]})",
                 "'messages[1].tool_call_id'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant",
      "tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]})",
                 "'messages[1].tool_calls[0].id'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant",
      "tool_calls":[{"id":"a","function":{"arguments":"{}"}}]}]})",
                 "'messages[1].tool_calls[0].function.name'");
  EXPECT_REFUSED(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant",
      "function_call":{"name":"f","arguments":"{}"}}]})",
                 "'messages[1].function_call'");
  EXPECT_REFUSED(with_hello(R"("tools":{"name":"f"})"), "'tools' must be an array");
  EXPECT_REFUSED(with_hello(R"("tools":[{"type":"function","function":{"name":"f",
      "parameters":"{}"}}])"),
                 "'tools[0].function.parameters'");
  EXPECT_REFUSED(with_hello(R"("tools":[{"type":"function"}])"), "'tools[0].function'");
}

// ---------------------------------------------------------------------------------------------
// Answers.

ResponseIdentity identity() { return ResponseIdentity{"chatcmpl-gw1", 1718000000, "gpt-4o"}; }

json::object complete(std::string_view message, Usage& usage) {
  json::object completion;
  auto problem = to_chat_completion(json::parse(message), identity(), usage, completion);
  EXPECT_FALSE(problem) << *problem;
  return completion;
}

TEST(ToChatCompletionTest, TextMessageBecomesACompletionWithCachedUsage) {
  Usage usage;
  auto completion = complete(R"({"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message",
      "role":"assistant","model":"claude-sonnet-4-5-20250929",
      "content":[{"type":"text","text":"Hi! My name is Claude."}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":100,
               "cache_read_input_tokens":1800,"service_tier":"standard"}})",
                             usage);
  EXPECT_EQ(completion, json::parse(R"({"id":"chatcmpl-gw1","object":"chat.completion",
      "created":1718000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant",
      "content":"Hi! My name is Claude."},"logprobs":null,"finish_reason":"stop"}],
      "system_fingerprint":null,"usage":{"prompt_tokens":3995,"completion_tokens":503,
      "total_tokens":4498,"prompt_tokens_details":{"cached_tokens":1800,
      "cache_creation_tokens":100}}})"));
  EXPECT_TRUE(usage.present);
  EXPECT_EQ(usage.prompt_tokens, 3995);
  EXPECT_EQ(usage.completion_tokens, 503);
  EXPECT_EQ(usage.total_tokens, 4498);
  EXPECT_EQ(usage.cached_prompt_tokens, 1800);
  EXPECT_EQ(usage.cache_creation_prompt_tokens, 100);
}

TEST(ToChatCompletionTest, ToolUseBecomesToolCallsAndThinkingIsDropped) {
  Usage usage;
  auto completion = complete(R"({"id":"msg_01","type":"message","role":"assistant",
      "content":[{"type":"thinking","thinking":"The user wants weather...","signature":"EqQB"},
                 {"type":"redacted_thinking","data":"EmwKAhgB"},
                 {"type":"text","text":"I'll check "},{"type":"text","text":"the weather."},
                 {"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9",
                  "name":"get_weather","input":{"location":"San Francisco, CA","unit":"celsius"}}],
      "stop_reason":"tool_use","stop_sequence":null,
      "usage":{"input_tokens":472,"output_tokens":89}})",
                             usage);
  const auto& choice = completion.at("choices").at(0);
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  EXPECT_EQ(choice.at("message").at("content"), "I'll check the weather.");
  const auto& call = choice.at("message").at("tool_calls").at(0);
  EXPECT_EQ(call.at("id"), "toolu_01A09q90qw90lq917835lq9");
  EXPECT_EQ(call.at("type"), "function");
  EXPECT_EQ(call.at("function").at("name"), "get_weather");
  EXPECT_EQ(json::parse(call.at("function").at("arguments").as_string()),
            json::parse(R"({"location":"San Francisco, CA","unit":"celsius"})"));
  EXPECT_EQ(completion.at("usage").at("prompt_tokens"), 472);
  EXPECT_EQ(completion.at("usage").at("prompt_tokens_details").at("cached_tokens"), 0);
}

TEST(ToChatCompletionTest, ContentIsNullWithoutTextAndToolUseForcesToolCalls) {
  Usage usage;
  auto completion = complete(R"({"type":"message","role":"assistant","content":[
      {"type":"tool_use","id":"toolu_1","name":"now","input":{}}],"stop_reason":"end_turn"})",
                             usage);
  const auto& choice = completion.at("choices").at(0);
  EXPECT_TRUE(choice.at("message").at("content").is_null());
  EXPECT_EQ(choice.at("message").at("tool_calls").at(0).at("function").at("arguments"), "{}");
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  EXPECT_FALSE(usage.present);
  EXPECT_FALSE(completion.contains("usage"));
}

TEST(ToChatCompletionTest, StopReasonsMapToFinishReasons) {
  const char* cases[][2] = {{"end_turn", "stop"},     {"stop_sequence", "stop"},
                            {"max_tokens", "length"}, {"refusal", "content_filter"},
                            {"pause_turn", "stop"},   {"model_context_window_exceeded", "length"},
                            {"something_new", "stop"}};
  for (const auto& [stop_reason, expected] : cases) {
    Usage usage;
    auto completion = complete(std::string(R"({"type":"message","content":[{"type":"text",
        "text":"x"}],"stop_reason":")") +
                                   stop_reason + "\"}",
                               usage);
    EXPECT_EQ(completion.at("choices").at(0).at("finish_reason"), expected) << stop_reason;
  }
  Usage usage;
  EXPECT_EQ(complete(R"({"type":"message","content":[],"stop_reason":null})", usage)
                .at("choices")
                .at(0)
                .at("finish_reason"),
            "stop");
}

TEST(ToChatCompletionTest, ErrorsAndBrokenBodiesAreMessages) {
  struct Case {
    const char* body;
    const char* message;
  } cases[] = {
      {R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})",
       "Overloaded"},
      {R"({"type":"error"})", "provider error"},
      {R"([1,2])", "not a JSON object"},
      {R"("hello")", "not a JSON object"},
      {R"({"type":"completion","completion":"hi"})", "not a message"},
      {R"({"type":"message"})", "no 'content' array"},
      {R"({"type":"message","content":"hi"})", "no 'content' array"},
      {R"({"type":"message","content":[7]})", "content[0]"},
      {R"({"type":"message","content":[{"type":"text"}]})", "content[0] has no text"},
      {R"({"type":"message","content":[{"type":"tool_use","name":"f"}]})", "content[0]"},
  };
  for (const auto& c : cases) {
    Usage usage;
    json::object completion;
    auto problem = to_chat_completion(json::parse(c.body), identity(), usage, completion);
    ASSERT_TRUE(problem) << c.body;
    EXPECT_NE(problem->find(c.message), std::string::npos) << *problem;
  }
}

TEST(ToChatCompletionTest, UnreadableUsageCountsAreZero) {
  Usage usage;
  auto completion = complete(R"({"type":"message","content":[],"usage":{"input_tokens":-5,
      "output_tokens":1e300,"cache_read_input_tokens":"7","cache_creation_input_tokens":3}})",
                             usage);
  EXPECT_EQ(usage.prompt_tokens, 3);
  EXPECT_EQ(usage.completion_tokens, 0);
  EXPECT_EQ(completion.at("usage").at("total_tokens"), 3);
}

TEST(FinishReasonTest, MapsAnthropicStopReasons) {
  EXPECT_EQ(finish_reason("end_turn"), "stop");
  EXPECT_EQ(finish_reason("stop_sequence"), "stop");
  EXPECT_EQ(finish_reason("max_tokens"), "length");
  EXPECT_EQ(finish_reason("tool_use"), "tool_calls");
  EXPECT_EQ(finish_reason("refusal"), "content_filter");
  EXPECT_EQ(finish_reason(""), "stop");
}

// ---------------------------------------------------------------------------------------------
// Streams.

// What an OpenAI SDK's stream accumulator makes of the chunks.
struct Accumulated {
  std::string role;
  std::string content;
  std::map<std::int64_t, json::object> tool_calls;  // index -> {id, name, arguments}
  std::string finish_reason;
  std::optional<json::object> usage;
  int chunks_after_finish_with_choices = 0;
};

Accumulated accumulate(const std::vector<json::object>& chunks) {
  Accumulated out;
  for (const auto& chunk : chunks) {
    EXPECT_EQ(chunk.at("id"), "chatcmpl-gw1");
    EXPECT_EQ(chunk.at("object"), "chat.completion.chunk");
    EXPECT_EQ(chunk.at("created"), 1718000000);
    EXPECT_EQ(chunk.at("model"), "gpt-4o");
    const auto& choices = chunk.at("choices").as_array();
    if (const auto* usage = chunk.if_contains("usage")) {
      EXPECT_TRUE(choices.empty());
      out.usage = usage->as_object();
    }
    if (choices.empty()) continue;
    if (!out.finish_reason.empty()) ++out.chunks_after_finish_with_choices;
    const auto& choice = choices.at(0).as_object();
    EXPECT_EQ(choice.at("index"), 0);
    const auto& delta = choice.at("delta").as_object();
    if (const auto* role = delta.if_contains("role")) out.role = role->as_string();
    if (const auto* content = delta.if_contains("content")) out.content += content->as_string();
    if (const auto* calls = delta.if_contains("tool_calls")) {
      for (const auto& call : calls->as_array()) {
        auto& slot = out.tool_calls[call.at("index").as_int64()];
        if (const auto* id = call.as_object().if_contains("id")) {
          EXPECT_FALSE(slot.contains("id")) << "a tool call's id arrives once";
          EXPECT_EQ(call.at("type"), "function");
          slot["id"] = *id;
          slot["name"] = call.at("function").at("name");
          slot["arguments"] = "";
        }
        EXPECT_TRUE(slot.contains("id")) << "arguments before the call's first piece";
        if (!slot.contains("id")) continue;
        std::string arguments(slot["arguments"].as_string());
        arguments += call.at("function").at("arguments").as_string();
        slot["arguments"] = arguments;
      }
    }
    if (choice.at("finish_reason").is_string()) {
      out.finish_reason = choice.at("finish_reason").as_string();
    }
  }
  return out;
}

// Feeds events (one JSON object a line) to a decoder; fails on the first refused event.
struct Replay {
  StreamDecoder decoder{identity()};
  std::vector<json::object> chunks;
  Usage usage;

  std::optional<std::string> feed(std::string_view events) {
    std::size_t start = 0;
    while (start < events.size()) {
      auto end = events.find('\n', start);
      if (end == std::string_view::npos) end = events.size();
      const auto line = events.substr(start, end - start);
      start = end + 1;
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      if (auto problem = decoder.on_event(json::parse(line).as_object(), chunks, usage)) {
        return problem;
      }
    }
    return std::nullopt;
  }
};

// The basic streaming request of Anthropic's streaming docs.
constexpr std::string_view kTextStream = R"(
{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-opus-4-6","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}
{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
{"type":"ping"}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}
{"type":"content_block_stop","index":0}
{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}
{"type":"message_stop"}
)";

TEST(StreamDecoderTest, TextStreamRoundTripsIntoChunks) {
  Replay replay;
  ASSERT_FALSE(replay.feed(kTextStream));
  EXPECT_TRUE(replay.decoder.finished());
  EXPECT_FALSE(replay.decoder.provider_error());
  auto result = accumulate(replay.chunks);
  EXPECT_EQ(result.role, "assistant");
  EXPECT_EQ(result.content, "Hello!");
  EXPECT_EQ(result.finish_reason, "stop");
  EXPECT_EQ(result.chunks_after_finish_with_choices, 0);
  ASSERT_TRUE(result.usage);
  EXPECT_EQ(*result.usage, json::parse(R"({"prompt_tokens":25,"completion_tokens":15,
      "total_tokens":40,"prompt_tokens_details":{"cached_tokens":0,"cache_creation_tokens":0}})"));
  EXPECT_EQ(replay.usage.prompt_tokens, 25);
  EXPECT_EQ(replay.usage.completion_tokens, 15);
  // The usage chunk is the last one and follows the finish chunk.
  ASSERT_EQ(replay.chunks.size(), 5u);
  EXPECT_TRUE(replay.chunks.back().at("choices").as_array().empty());
  EXPECT_EQ(replay.chunks[3].at("choices").at(0).at("finish_reason"), "stop");
}

// The streaming request with tool use of Anthropic's streaming docs.
constexpr std::string_view kToolStream = R"(
{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-6","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}
{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
{"type":"ping"}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather for San Francisco, CA:"}}
{"type":"content_block_stop","index":0}
{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Fra"}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\""}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", \"unit\": \"fahr"}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"enheit\"}"}}
{"type":"content_block_stop","index":1}
{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}
{"type":"message_stop"}
)";

TEST(StreamDecoderTest, ToolUseStreamRoundTripsIntoToolCallPieces) {
  Replay replay;
  ASSERT_FALSE(replay.feed(kToolStream));
  auto result = accumulate(replay.chunks);
  EXPECT_EQ(result.content, "Okay, let's check the weather for San Francisco, CA:");
  ASSERT_EQ(result.tool_calls.size(), 1u);
  const auto& call = result.tool_calls.at(0);
  EXPECT_EQ(call.at("id"), "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
  EXPECT_EQ(call.at("name"), "get_weather");
  EXPECT_EQ(json::parse(call.at("arguments").as_string()),
            json::parse(R"({"location":"San Francisco, CA","unit":"fahrenheit"})"));
  EXPECT_EQ(result.finish_reason, "tool_calls");
  EXPECT_EQ(result.usage->at("completion_tokens"), 89);
  EXPECT_EQ(result.usage->at("prompt_tokens"), 472);
  // The first piece of the call carries its id and name with empty arguments.
  const auto& first = replay.chunks[3].at("choices").at(0).at("delta").at("tool_calls").at(0);
  EXPECT_EQ(first.at("index"), 0);
  EXPECT_EQ(first.at("function").at("arguments"), "");
}

TEST(StreamDecoderTest, ParallelToolUseBlocksGetConsecutiveIndexes) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"(
{"type":"message_start","message":{"id":"msg_p","type":"message","role":"assistant","content":[],"model":"claude-haiku-4-5-20251001","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":849,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":10,"service_tier":"standard"}}}
{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_A","name":"get_weather","input":{}}}
{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}
{"type":"content_block_stop","index":0}
{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_B","name":"get_time","input":{}}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"tz\":"}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"CET\"}"}}
{"type":"content_block_stop","index":1}
{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":849,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":47}}
{"type":"message_stop"}
)"));
  auto result = accumulate(replay.chunks);
  ASSERT_EQ(result.tool_calls.size(), 2u);
  EXPECT_EQ(result.tool_calls.at(0).at("id"), "toolu_A");
  EXPECT_EQ(result.tool_calls.at(1).at("id"), "toolu_B");
  EXPECT_EQ(json::parse(result.tool_calls.at(1).at("arguments").as_string()),
            json::parse(R"({"tz":"CET"})"));
  EXPECT_FALSE(result.content.size());
  EXPECT_EQ(result.finish_reason, "tool_calls");
}

// Extended thinking, as Anthropic's streaming docs show it.
TEST(StreamDecoderTest, ThinkingBlocksStreamNothing) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"(
{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-opus-4-6","stop_reason":null,"stop_sequence":null}}
{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}
{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 × 462 + 147"}}
{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n\nSo GCD(1071, 462) = 21"}}
{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}
{"type":"content_block_stop","index":0}
{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"}}
{"type":"content_block_stop","index":1}
{"type":"content_block_start","index":2,"content_block":{"type":"text","text":""}}
{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"The greatest common divisor of 1071 and 462 is **21**."}}
{"type":"content_block_stop","index":2}
{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null}}
{"type":"message_stop"}
)"));
  auto result = accumulate(replay.chunks);
  EXPECT_EQ(result.content, "The greatest common divisor of 1071 and 462 is **21**.");
  EXPECT_EQ(result.finish_reason, "stop");
  // No usage arrived at all: the finish is still followed by a usage chunk, with zeros.
  ASSERT_TRUE(result.usage);
  EXPECT_EQ(result.usage->at("total_tokens"), 0);
}

TEST(StreamDecoderTest, CacheCountsJoinThePromptAndLaterCountsReplaceEarlierOnes) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"(
{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":3000,"output_tokens":1}}}
{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}
{"type":"content_block_stop","index":0}
{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":12,"cache_read_input_tokens":null,"output_tokens":5}}
{"type":"message_stop"}
)"));
  auto result = accumulate(replay.chunks);
  EXPECT_EQ(result.finish_reason, "length");
  EXPECT_EQ(*result.usage, json::parse(R"({"prompt_tokens":3212,"completion_tokens":5,
      "total_tokens":3217,"prompt_tokens_details":{"cached_tokens":3000,
      "cache_creation_tokens":200}})"));
  EXPECT_EQ(replay.usage.cached_prompt_tokens, 3000);
  EXPECT_EQ(replay.usage.cache_creation_prompt_tokens, 200);
  EXPECT_EQ(replay.usage.total_tokens, 3217);
}

TEST(StreamDecoderTest, ErrorEventEndsTheStreamWithTheProvidersMessage) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"(
{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[]}}
{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once"}}
{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}
)"));
  ASSERT_TRUE(replay.decoder.provider_error());
  EXPECT_EQ(*replay.decoder.provider_error(), "Overloaded");
  EXPECT_FALSE(replay.decoder.finished());
  EXPECT_EQ(replay.chunks.size(), 2u);  // the error itself adds no chunk
  EXPECT_TRUE(replay.feed(R"({"type":"message_stop"})"));
}

TEST(StreamDecoderTest, ErrorEventBeforeAnythingElseIsStillTheProvidersError) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"({"type":"error","error":{"type":"api_error"}})"));
  ASSERT_TRUE(replay.decoder.provider_error());
  EXPECT_NE(replay.decoder.provider_error()->find("without a message"), std::string::npos);
}

TEST(StreamDecoderTest, UnknownEventsAndDeltasAreIgnored) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"(
{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[]}}
{"type":"future_event","payload":{}}
{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"type":"char_location"}}}
{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"cited"}}
{"type":"content_block_stop","index":0}
{"type":"content_block_start","index":1,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}
{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}
{"type":"content_block_stop","index":1}
{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}
{"type":"message_stop"}
)"));
  auto result = accumulate(replay.chunks);
  EXPECT_EQ(result.content, "cited");
  EXPECT_TRUE(result.tool_calls.empty());
  EXPECT_EQ(result.finish_reason, "stop");
}

TEST(StreamDecoderTest, MessageStopWithoutMessageDeltaStillFinishesTheChoice) {
  Replay replay;
  ASSERT_FALSE(replay.feed(R"(
{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":3,"output_tokens":0}}}
{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_x","name":"f","input":{"a":1}}}
{"type":"content_block_stop","index":0}
{"type":"message_stop"}
)"));
  auto result = accumulate(replay.chunks);
  EXPECT_EQ(result.finish_reason, "tool_calls");
  EXPECT_EQ(result.tool_calls.at(0).at("arguments"), R"({"a":1})");
  ASSERT_TRUE(result.usage);
  EXPECT_EQ(result.usage->at("prompt_tokens"), 3);
  EXPECT_TRUE(replay.decoder.finished());
}

TEST(StreamDecoderTest, EventsOutOfPlaceAreRefused) {
  const std::string start =
      R"({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[]}})"
      "\n";
  const std::string text_block =
      R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
      "\n";
  const std::string tool_block =
      R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}})"
      "\n";
  struct Case {
    std::string events;
    const char* message;
  } cases[] = {
      {R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})",
       "before message_start"},
      {start + start, "a second message_start"},
      {start +
           R"({"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"x"}})",
       "block 3 that never started"},
      {start + text_block + R"({"type":"content_block_stop","index":0})" + "\n" +
           R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}})",
       "after its stop"},
      {start + text_block + text_block, "started twice or out of order"},
      {start + R"({"type":"content_block_start","index":2,"content_block":{"type":"text"}})" +
           "\n" + R"({"type":"content_block_start","index":1,"content_block":{"type":"text"}})",
       "out of order"},
      {start + R"({"type":"content_block_stop","index":0})", "not open"},
      {start + tool_block +
           R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}})",
       "of another type"},
      {start + text_block +
           R"({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}})",
       "of another type"},
      {start + text_block +
           R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}})",
       "without its text"},
      {start + R"({"type":"message_stop"})" + "\n" + R"({"type":"message_start","message":{}})",
       "after the stream ended"},
      {R"({"kind":"ping"})", "no 'type'"},
      {R"({"type":"message_start"})", "no 'message'"},
      {start + R"({"type":"content_block_start","index":-1,"content_block":{"type":"text"}})",
       "no valid 'index'"},
      {start + R"({"type":"content_block_start","index":"0","content_block":{"type":"text"}})",
       "no valid 'index'"},
      {start + R"({"type":"content_block_start","index":0,"content_block":"text"})",
       "no block type"},
      {start + R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use"}})",
       "no id and name"},
      {start + text_block + R"({"type":"content_block_delta","index":0,"delta":"x"})",
       "no delta type"},
  };
  for (const auto& c : cases) {
    Replay replay;
    auto problem = replay.feed(c.events);
    ASSERT_TRUE(problem) << c.events;
    EXPECT_NE(problem->find(c.message), std::string::npos) << *problem;
  }
}

TEST(StreamDecoderTest, RoleChunkCarriesEmptyContentLikeOpenAis) {
  Replay replay;
  ASSERT_FALSE(replay.feed(
      R"({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[]}})"));
  ASSERT_EQ(replay.chunks.size(), 1u);
  EXPECT_EQ(replay.chunks[0], json::parse(R"({"id":"chatcmpl-gw1","object":"chat.completion.chunk",
      "created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant",
      "content":""},"logprobs":null,"finish_reason":null}]})"));
}

}  // namespace
}  // namespace cutover::providers::anthropic
