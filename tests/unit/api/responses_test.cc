#include "api/responses.h"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cutover::api::responses {
namespace {

namespace json = boost::json;

json::object parse_object(std::string_view text) { return json::parse(text).as_object(); }

json::object chat_of(std::string_view request_text) {
  json::object chat;
  auto problem = to_chat_request(parse_object(request_text), chat);
  EXPECT_FALSE(problem) << *problem;
  return chat;
}

std::string problem_of(std::string_view request_text) {
  json::object chat;
  auto problem = to_chat_request(parse_object(request_text), chat);
  EXPECT_TRUE(problem) << request_text;
  return problem.value_or("");
}

// ---------------------------------------------------------------------------------------------
// Request decoding.

TEST(ResponsesRequestTest, StringInputAndInstructionsBecomeSystemThenUser) {
  auto chat = chat_of(R"({"model":"gpt-x","instructions":"Be brief.","input":"Hi"})");
  EXPECT_EQ(chat.at("model"), "gpt-x");
  EXPECT_EQ(chat.at("messages"), json::parse(R"([{"role":"system","content":"Be brief."},
                                                 {"role":"user","content":"Hi"}])"));
  EXPECT_FALSE(chat.contains("stream"));
  EXPECT_FALSE(chat.contains("tools"));
  chat = chat_of(R"({"model":"gpt-x","instructions":"","input":"Hi"})");
  EXPECT_EQ(chat.at("messages"), json::parse(R"([{"role":"user","content":"Hi"}])"));
}

TEST(ResponsesRequestTest, MessageItemsKeepRolesAndContent) {
  auto chat = chat_of(R"({"model":"m","input":[
      {"type":"message","role":"developer","content":"rules"},
      {"role":"system","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},
      {"role":"user","content":"question"},
      {"type":"message","role":"assistant","id":"msg_1","status":"completed",
       "content":[{"type":"output_text","text":"answer","annotations":[]}]},
      {"role":"user","content":[{"type":"input_text","text":"one"},{"type":"input_text","text":"two"}]}]})");
  EXPECT_EQ(chat.at("messages"), json::parse(R"([
      {"role":"system","content":"rules"},
      {"role":"system","content":"a\nb"},
      {"role":"user","content":"question"},
      {"role":"assistant","content":"answer"},
      {"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]}])"));
}

TEST(ResponsesRequestTest, ImagesBecomeImageUrlPartsWithTheirDetail) {
  auto chat = chat_of(R"({"model":"m","input":[{"role":"user","content":[
      {"type":"input_text","text":"what is this?"},
      {"type":"input_image","image_url":"https://x/cat.png","detail":"low"},
      {"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}]})");
  EXPECT_EQ(chat.at("messages").at(0).at("content"), json::parse(R"([
      {"type":"text","text":"what is this?"},
      {"type":"image_url","image_url":{"url":"https://x/cat.png","detail":"low"}},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}])"));
}

TEST(ResponsesRequestTest, UploadedFileImagesAreRefusedByName) {
  auto problem = problem_of(R"({"model":"m","input":[{"role":"user","content":[
      {"type":"input_text","text":"x"},{"type":"input_image","file_id":"file-1"}]}]})");
  EXPECT_NE(problem.find("'input[0].content[1].file_id'"), std::string::npos) << problem;
}

TEST(ResponsesRequestTest, ConsecutiveFunctionCallsJoinOneAssistantMessage) {
  auto chat = chat_of(R"({"model":"m","input":[
      {"role":"user","content":"weather and time?"},
      {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"xyz"},
      {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},
      {"type":"function_call","call_id":"call_a","name":"weather","arguments":"{\"city\":\"Oslo\"}"},
      {"type":"function_call","id":"fc_2","call_id":"call_b","name":"time","arguments":"{}","status":"completed"},
      {"type":"function_call_output","call_id":"call_a","output":"rain"},
      {"type":"function_call_output","call_id":"call_b","output":[{"type":"input_text","text":"12:00"}]},
      {"type":"function_call","call_id":"call_c","name":"time","arguments":"{}"},
      {"type":"function_call_output","call_id":"call_c","output":"13:00"}]})");
  EXPECT_EQ(chat.at("messages"), json::parse(R"([
      {"role":"user","content":"weather and time?"},
      {"role":"assistant","content":"Checking.","tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}},
        {"id":"call_b","type":"function","function":{"name":"time","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"call_a","content":"rain"},
      {"role":"tool","tool_call_id":"call_b","content":"12:00"},
      {"role":"assistant","content":null,"tool_calls":[
        {"id":"call_c","type":"function","function":{"name":"time","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"call_c","content":"13:00"}])"));
}

TEST(ResponsesRequestTest, ImagesReturnedByToolsFollowTheRunOfToolMessages) {
  auto chat = chat_of(R"({"model":"m","input":[
      {"type":"function_call","call_id":"a","name":"shot","arguments":"{}"},
      {"type":"function_call","call_id":"b","name":"shot","arguments":"{}"},
      {"type":"function_call_output","call_id":"a","output":[
        {"type":"input_text","text":"screen"},{"type":"input_image","image_url":"https://x/1.png"}]},
      {"type":"function_call_output","call_id":"b","output":"done"}]})");
  const auto& messages = chat.at("messages").as_array();
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_EQ(messages[1], json::parse(R"({"role":"tool","tool_call_id":"a","content":"screen"})"));
  EXPECT_EQ(messages[2].at("role"), "tool");
  EXPECT_EQ(messages[3].at("role"), "user");
  EXPECT_EQ(messages[3].at("content").at(1),
            json::parse(R"({"type":"image_url","image_url":{"url":"https://x/1.png"}})"));
}

TEST(ResponsesRequestTest, ItemsThatNeedStoredStateAreRefusedByName) {
  auto problem = problem_of(R"({"model":"m","input":[{"role":"user","content":"hi"},
      {"type":"item_reference","id":"msg_1"}]})");
  EXPECT_NE(problem.find("'input[1].type'"), std::string::npos) << problem;
  EXPECT_NE(problem.find("item_reference"), std::string::npos) << problem;
  problem = problem_of(R"({"model":"m","input":[{"type":"web_search_call","id":"ws"}]})");
  EXPECT_NE(problem.find("'input[0].type' \"web_search_call\""), std::string::npos) << problem;
}

TEST(ResponsesRequestTest, FunctionToolsAreNestedWithStrict) {
  auto chat = chat_of(R"({"model":"m","input":"hi","tools":[
      {"type":"function","name":"weather","description":"Forecast","strict":true,
       "parameters":{"type":"object","properties":{"city":{"type":"string"}}}},
      {"type":"function","name":"noop","parameters":null,"strict":null}],
      "tool_choice":{"type":"function","name":"weather"},"parallel_tool_calls":false})");
  EXPECT_EQ(chat.at("tools"), json::parse(R"([
      {"type":"function","function":{"name":"weather","description":"Forecast",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}},
      {"type":"function","function":{"name":"noop"}}])"));
  EXPECT_EQ(chat.at("tool_choice"),
            json::parse(R"({"type":"function","function":{"name":"weather"}})"));
  EXPECT_EQ(chat.at("parallel_tool_calls"), false);
}

TEST(ResponsesRequestTest, HostedToolsAreRefusedByName) {
  for (const char* type : {"web_search", "web_search_preview", "file_search", "code_interpreter",
                           "computer_use_preview", "mcp", "image_generation", "local_shell",
                           "custom"}) {
    auto problem = problem_of(std::string(R"({"model":"m","input":"hi","tools":[
        {"type":"function","name":"f"},{"type":")") + type + R"("}]})");
    EXPECT_NE(problem.find("'tools[1].type' \"" + std::string(type) + "\""), std::string::npos)
        << problem;
  }
}

TEST(ResponsesRequestTest, ToolChoiceModesPassAndNeedTools) {
  for (const char* mode : {"auto", "none", "required"}) {
    auto chat = chat_of(std::string(R"({"model":"m","input":"hi","tools":[{"type":"function",
        "name":"f"}],"tool_choice":")") + mode + "\"}");
    EXPECT_EQ(chat.at("tool_choice"), mode);
  }
  // OpenAI refuses tool settings without tools, so they are left out.
  auto chat = chat_of(R"({"model":"m","input":"hi","tools":[],"tool_choice":"auto",
                          "parallel_tool_calls":true})");
  EXPECT_FALSE(chat.contains("tools"));
  EXPECT_FALSE(chat.contains("tool_choice"));
  EXPECT_FALSE(chat.contains("parallel_tool_calls"));
  auto problem = problem_of(R"({"model":"m","input":"hi","tool_choice":{"type":"file_search"}})");
  EXPECT_NE(problem.find("'tool_choice.type' \"file_search\""), std::string::npos) << problem;
}

TEST(ResponsesRequestTest, SamplingLimitsAndReasoningMap) {
  auto chat = chat_of(R"({"model":"m","input":"hi","max_output_tokens":300,"temperature":0.2,
      "top_p":0.9,"reasoning":{"effort":"low","summary":"auto"},"user":"u-1",
      "metadata":{"k":"v"},"store":true})");
  EXPECT_EQ(chat.at("max_completion_tokens"), 300);
  EXPECT_EQ(chat.at("temperature"), 0.2);
  EXPECT_EQ(chat.at("top_p"), 0.9);
  EXPECT_EQ(chat.at("reasoning_effort"), "low");
  EXPECT_EQ(chat.at("user"), "u-1");
  EXPECT_FALSE(chat.contains("metadata"));
  EXPECT_FALSE(chat.contains("store"));
  EXPECT_FALSE(chat.contains("max_tokens"));
}

TEST(ResponsesRequestTest, TextFormatBecomesResponseFormat) {
  auto chat = chat_of(R"({"model":"m","input":"hi","text":{"format":{"type":"text"}}})");
  EXPECT_FALSE(chat.contains("response_format"));
  chat = chat_of(R"({"model":"m","input":"hi","text":{"format":{"type":"json_object"}}})");
  EXPECT_EQ(chat.at("response_format"), json::parse(R"({"type":"json_object"})"));
  chat = chat_of(R"({"model":"m","input":"hi","text":{"verbosity":"low","format":{
      "type":"json_schema","name":"person","strict":true,
      "schema":{"type":"object","properties":{"name":{"type":"string"}}}}}})");
  EXPECT_EQ(chat.at("response_format"), json::parse(R"({"type":"json_schema","json_schema":{
      "name":"person","schema":{"type":"object","properties":{"name":{"type":"string"}}},
      "strict":true}})"));
}

TEST(ResponsesRequestTest, StreamAsksForTheUsageChunk) {
  auto chat = chat_of(R"({"model":"m","input":"hi","stream":true,
                          "stream_options":{"include_obfuscation":false}})");
  EXPECT_EQ(chat.at("stream"), true);
  EXPECT_EQ(chat.at("stream_options"), json::parse(R"({"include_usage":true})"));
}

TEST(ResponsesRequestTest, StatefulFieldsAreRefusedByName) {
  struct Case {
    const char* field;
    const char* body;
  } cases[] = {
      {"'previous_response_id'", R"({"model":"m","input":"hi","previous_response_id":"resp_1"})"},
      {"'conversation'", R"({"model":"m","input":"hi","conversation":"conv_1"})"},
      {"'background'", R"({"model":"m","input":"hi","background":true})"},
      {"'prompt'", R"({"model":"m","input":"hi","prompt":{"id":"pmpt_1"}})"},
      {"'truncation'", R"({"model":"m","input":"hi","truncation":"auto"})"},
      {"'include[1]'", R"({"model":"m","input":"hi","include":["reasoning.encrypted_content",
                          "message.output_text.logprobs"]})"},
      {"'frequency_penalty'", R"({"model":"m","input":"hi","frequency_penalty":1})"},
  };
  for (const auto& c : cases) {
    auto problem = problem_of(c.body);
    EXPECT_NE(problem.find(c.field), std::string::npos) << problem;
  }
}

TEST(ResponsesRequestTest, HarmlessFieldsAreAccepted) {
  auto chat = chat_of(R"({"model":"m","input":"hi","store":false,"background":false,
      "previous_response_id":null,"truncation":"disabled","service_tier":"auto",
      "safety_identifier":"s","prompt_cache_key":"k","include":["reasoning.encrypted_content"],
      "top_logprobs":0,"max_tool_calls":3,"prompt_cache_retention":"24h"})");
  EXPECT_EQ(chat.size(), 2u);  // model and messages
}

TEST(ResponsesRequestTest, MalformedRequestsGetAMessage) {
  struct Case {
    const char* body;
    const char* message;
  } cases[] = {
      {R"({"input":"hi"})", "'model'"},
      {R"({"model":3,"input":"hi"})", "'model'"},
      {R"({"model":"m"})", "'input' is required"},
      {R"({"model":"m","input":5})", "'input' must be"},
      {R"({"model":"m","input":[]})", "'input' holds no message"},
      {R"({"model":"m","input":[7]})", "'input[0]' must be an object"},
      {R"({"model":"m","input":[{"type":4}]})", "'input[0].type'"},
      {R"({"model":"m","input":[{"role":"tool","content":"x"}]})", "'input[0].role'"},
      {R"({"model":"m","input":[{"role":"user"}]})", "'input[0].content'"},
      {R"({"model":"m","input":[{"role":"user","content":[{"text":"x"}]}]})",
       "'input[0].content[0].type'"},
      {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":{}}]}]})",
       "'input[0].content[0].text'"},
      {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]})",
       "\"input_file\""},
      {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_image"}]}]})",
       "'input[0].content[0].image_url'"},
      {R"({"model":"m","input":[{"role":"system","content":[{"type":"input_image",
          "image_url":"u"}]}]})", "only in a user message"},
      {R"({"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]})",
       "'input[0].call_id'"},
      {R"({"model":"m","input":[{"type":"function_call","call_id":"c","name":"f",
          "arguments":{"a":1}}]})", "'input[0].arguments'"},
      {R"({"model":"m","input":[{"type":"function_call_output","call_id":"c"}]})",
       "'input[0].output'"},
      {R"({"model":"m","input":[{"type":"function_call_output","output":"x"}]})",
       "'input[0].call_id'"},
      {R"({"model":"m","input":"hi","instructions":[1]})", "'instructions'"},
      {R"({"model":"m","input":"hi","tools":{}})", "'tools' must be an array"},
      {R"({"model":"m","input":"hi","tools":[1]})", "'tools[0]'"},
      {R"({"model":"m","input":"hi","tools":[{"name":"f"}]})", "'tools[0].type'"},
      {R"({"model":"m","input":"hi","tools":[{"type":"function"}]})", "'tools[0].name'"},
      {R"({"model":"m","input":"hi","tools":[{"type":"function","name":"f","parameters":"x"}]})",
       "'tools[0].parameters'"},
      {R"({"model":"m","input":"hi","tool_choice":"any"})", "'tool_choice'"},
      {R"({"model":"m","input":"hi","tool_choice":{"type":"function"}})", "'tool_choice.name'"},
      {R"({"model":"m","input":"hi","tool_choice":3})", "'tool_choice'"},
      {R"({"model":"m","input":"hi","parallel_tool_calls":"yes"})", "'parallel_tool_calls'"},
      {R"({"model":"m","input":"hi","max_output_tokens":0})", "'max_output_tokens'"},
      {R"({"model":"m","input":"hi","max_output_tokens":1.5})", "'max_output_tokens'"},
      {R"({"model":"m","input":"hi","temperature":"hot"})", "'temperature'"},
      {R"({"model":"m","input":"hi","text":"json"})", "'text'"},
      {R"({"model":"m","input":"hi","text":{"format":{"type":"xml"}}})", "'text.format.type'"},
      {R"({"model":"m","input":"hi","text":{"format":{"type":"json_schema","schema":{}}}})",
       "'text.format.name'"},
      {R"({"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"n"}}})",
       "'text.format.schema'"},
      {R"({"model":"m","input":"hi","reasoning":{"effort":1}})", "'reasoning.effort'"},
      {R"({"model":"m","input":"hi","stream":"yes"})", "'stream'"},
      {R"({"model":"m","input":"hi","store":"no"})", "'store'"},
      {R"({"model":"m","input":"hi","metadata":[]})", "'metadata'"},
      {R"({"model":"m","input":"hi","include":"all"})", "'include'"},
  };
  for (const auto& c : cases) {
    auto problem = problem_of(c.body);
    EXPECT_NE(problem.find(c.message), std::string::npos) << c.body << " -> " << problem;
  }
}

// ---------------------------------------------------------------------------------------------
// Response encoding.

const char* kRequest = R"({"model":"alias","input":"hi","instructions":"Be brief.",
    "tools":[{"type":"function","name":"weather","parameters":{"type":"object"}}],
    "tool_choice":"auto","temperature":0.5,"max_output_tokens":100,"metadata":{"k":"v"},
    "user":"u","reasoning":{"effort":"low"}})";

TEST(ResponsesResponseTest, TextCompletionBecomesAFullResponse) {
  auto completion = parse_object(R"({"id":"chatcmpl-1","object":"chat.completion","created":1,
      "model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},
      "finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,
      "total_tokens":13,"prompt_tokens_details":{"cached_tokens":4,"cache_creation_tokens":2},
      "completion_tokens_details":{"reasoning_tokens":1}}})");
  auto response = to_response(completion, parse_object(kRequest), "resp_abc", "alias", 1700);
  EXPECT_EQ(json::value(response), json::parse(R"({"id":"resp_abc","object":"response",
      "created_at":1700,"status":"completed","background":false,"error":null,
      "incomplete_details":null,"instructions":"Be brief.","max_output_tokens":100,
      "max_tool_calls":null,"model":"alias",
      "output":[{"id":"msg_abc_0","type":"message","status":"completed","role":"assistant",
        "content":[{"type":"output_text","text":"Hello!","annotations":[],"logprobs":[]}]}],
      "parallel_tool_calls":true,"previous_response_id":null,
      "reasoning":{"effort":"low","summary":null},"store":false,"temperature":0.5,
      "text":{"format":{"type":"text"}},"tool_choice":"auto",
      "tools":[{"type":"function","name":"weather","parameters":{"type":"object"}}],
      "top_p":null,"truncation":"disabled",
      "usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4,"cache_write_tokens":2},
        "output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":13},
      "user":"u","metadata":{"k":"v"}})"));
}

TEST(ResponsesResponseTest, ToolCallsBecomeFunctionCallItems) {
  auto completion = parse_object(R"({"choices":[{"index":0,"message":{"role":"assistant",
      "content":"Let me check.","tool_calls":[
        {"id":"call_a","type":"function","function":{"name":"weather","arguments":"{\"c\":1}"}},
        {"id":"call_a","type":"function","function":{"name":"time","arguments":"{}"}},
        {"type":"function","function":{"name":"date"}}]},"finish_reason":"tool_calls"}]})");
  auto response = to_response(completion, json::object(), "resp_x", "m", 1);
  EXPECT_EQ(response.at("status"), "completed");
  EXPECT_EQ(response.at("output"), json::parse(R"([
      {"id":"msg_x_0","type":"message","status":"completed","role":"assistant",
       "content":[{"type":"output_text","text":"Let me check.","annotations":[],"logprobs":[]}]},
      {"id":"fc_x_1","type":"function_call","status":"completed","call_id":"call_a",
       "name":"weather","arguments":"{\"c\":1}"},
      {"id":"fc_x_2","type":"function_call","status":"completed","call_id":"call_x_2",
       "name":"time","arguments":"{}"},
      {"id":"fc_x_3","type":"function_call","status":"completed","call_id":"call_x_3",
       "name":"date","arguments":""}])"));
  EXPECT_TRUE(response.at("usage").is_null());
  EXPECT_EQ(response.at("tools"), json::array());
  EXPECT_EQ(response.at("metadata"), json::object());
}

TEST(ResponsesResponseTest, TruncatedAndFilteredAnswersAreIncomplete) {
  for (auto [finish, reason] : {std::pair{"length", "max_output_tokens"},
                                std::pair{"content_filter", "content_filter"}}) {
    auto completion = parse_object(std::string(R"({"choices":[{"message":{"content":"Hal"},
        "finish_reason":")") + finish + "\"}]}");
    auto response = to_response(completion, json::object(), "resp_1", "m", 1);
    EXPECT_EQ(response.at("status"), "incomplete");
    EXPECT_EQ(response.at("incomplete_details"), json::parse(
        std::string(R"({"reason":")") + reason + "\"}"));
    EXPECT_EQ(response.at("output").at(0).at("status"), "incomplete");
  }
}

TEST(ResponsesResponseTest, RefusalBecomesARefusalPart) {
  auto completion = parse_object(R"({"choices":[{"message":{"content":null,
      "refusal":"I can't help with that."},"finish_reason":"stop"}]})");
  auto response = to_response(completion, json::object(), "resp_1", "m", 1);
  EXPECT_EQ(response.at("output").at(0).at("content"),
            json::parse(R"([{"type":"refusal","refusal":"I can't help with that."}])"));
}

TEST(ResponsesResponseTest, EchoesTheTextFormatAskedFor) {
  auto request = parse_object(R"({"text":{"verbosity":"low"},"tool_choice":"required",
                                  "parallel_tool_calls":false,"top_p":0.3})");
  auto response = to_response(json::object(), request, "resp_1", "m", 1);
  EXPECT_EQ(response.at("text"), json::parse(R"({"verbosity":"low","format":{"type":"text"}})"));
  EXPECT_EQ(response.at("tool_choice"), "required");
  EXPECT_EQ(response.at("parallel_tool_calls"), false);
  EXPECT_EQ(response.at("top_p"), 0.3);
}

TEST(ResponsesResponseTest, MalformedCompletionsStillGiveAValidResponse) {
  for (const char* body : {R"({})", R"({"choices":3})", R"({"choices":[7]})",
                           R"({"choices":[{"message":"x","finish_reason":5}]})",
                           R"({"choices":[{"message":{"content":[{"type":"text","text":"a"},3],
                               "tool_calls":[3,{"function":7},{"function":{"name":5,
                               "arguments":{"x":1}}}]}}],"usage":{"prompt_tokens":-4,
                               "completion_tokens":1e300,"total_tokens":"x"}})"}) {
    auto response = to_response(parse_object(body), json::object(), "resp_1", "m", 1);
    EXPECT_EQ(response.at("object"), "response") << body;
    EXPECT_TRUE(response.at("output").is_array()) << body;
    EXPECT_EQ(response.at("status"), "completed") << body;
  }
  auto response = to_response(parse_object(R"({"choices":[{"message":{"content":[
      {"type":"text","text":"a"},3],"tool_calls":[{"function":{"name":5,"arguments":{"x":1}}}]}}]})"),
      json::object(), "resp_1", "m", 1);
  EXPECT_EQ(response.at("output").at(0).at("content").at(0).at("text"), "a");
  EXPECT_EQ(response.at("output").at(1).at("arguments"), R"({"x":1})");
}

// ---------------------------------------------------------------------------------------------
// Streaming: the events, and a replica of what openai-node's ResponseStream accumulator checks
// (src/internal/responses/response-accumulator.ts): it throws on anything below.

struct Event {
  std::string name;
  json::object data;
};

std::vector<Event> parse_sse(const std::string& text) {
  std::vector<Event> events;
  std::size_t position = 0;
  while (position < text.size()) {
    const auto end = text.find("\n\n", position);
    if (end == std::string::npos) throw std::runtime_error("unterminated event");
    const auto block = text.substr(position, end - position);
    position = end + 2;
    const auto newline = block.find('\n');
    if (block.rfind("event: ", 0) != 0 || newline == std::string::npos ||
        block.compare(newline + 1, 6, "data: ") != 0) {
      throw std::runtime_error("malformed event: " + block);
    }
    events.push_back({block.substr(7, newline - 7),
                      json::parse(block.substr(newline + 7)).as_object()});
  }
  return events;
}

void check_identities(const json::array& output) {
  std::set<std::string> identities;
  for (const auto& item : output) {
    const auto& object = item.as_object();
    const auto& id = object.at("id").as_string();
    if (id.empty() || !identities.insert("id:" + std::string(id)).second) {
      throw std::runtime_error("duplicate or empty item id");
    }
    if (object.at("type") == "function_call") {
      const auto& call = object.at("call_id").as_string();
      if (call.empty() || !identities.insert("call:" + std::string(call)).second) {
        throw std::runtime_error("duplicate or empty call_id");
      }
    }
  }
}

json::object& addressed_item(json::object& snapshot, const json::object& event,
                             std::string_view expected_type) {
  auto& output = snapshot.at("output").as_array();
  const auto index = event.at("output_index").as_int64();
  if (index < 0 || index >= static_cast<std::int64_t>(output.size())) {
    throw std::runtime_error("missing output at index " + std::to_string(index));
  }
  auto& item = output[index].as_object();
  if (event.contains("item_id") && item.at("id") != event.at("item_id")) {
    throw std::runtime_error("item_id mismatch");
  }
  if (!expected_type.empty() && item.at("type").as_string() != expected_type) {
    throw std::runtime_error("wrong item type");
  }
  return item;
}

json::object& addressed_part(json::object& snapshot, const json::object& event) {
  auto& content = addressed_item(snapshot, event, "message").at("content").as_array();
  const auto index = event.at("content_index").as_int64();
  if (index < 0 || index >= static_cast<std::int64_t>(content.size())) {
    throw std::runtime_error("missing content at index " + std::to_string(index));
  }
  return content[index].as_object();
}

void apply_item_event(json::object& snapshot, const std::string& type, const json::object& e) {
  auto& output = snapshot.at("output").as_array();
  if (type == "response.output_item.added") {
    if (e.at("output_index").as_int64() != static_cast<std::int64_t>(output.size())) {
      throw std::runtime_error("output_item.added out of order");
    }
    output.push_back(e.at("item"));
    check_identities(output);
  } else if (type == "response.output_item.done") {
    auto& item = addressed_item(snapshot, e, "");
    const auto& done = e.at("item").as_object();
    const bool call_id_changed =
        item.if_contains("call_id") != nullptr && item.at("call_id") != done.at("call_id");
    if (item.at("id") != done.at("id") || item.at("type") != done.at("type") || call_id_changed) {
      throw std::runtime_error("output_item.done changes the item's identity");
    }
    item = done;
  } else if (type == "response.content_part.added") {
    auto& content = addressed_item(snapshot, e, "message").at("content").as_array();
    if (e.at("content_index").as_int64() != static_cast<std::int64_t>(content.size())) {
      throw std::runtime_error("content_part.added out of order");
    }
    content.push_back(e.at("part"));
  } else if (type == "response.content_part.done") {
    addressed_part(snapshot, e) = e.at("part").as_object();
  } else if (type == "response.output_text.delta" || type == "response.output_text.done") {
    auto& part = addressed_part(snapshot, e);
    if (part.at("type") != "output_text") throw std::runtime_error("not an output_text part");
    const bool delta = type == "response.output_text.delta";
    part["text"] = delta ? std::string(part.at("text").as_string()) +
                               std::string(e.at("delta").as_string())
                         : std::string(e.at("text").as_string());
  } else if (type == "response.refusal.delta" || type == "response.refusal.done") {
    auto& part = addressed_part(snapshot, e);
    if (part.at("type") != "refusal") throw std::runtime_error("not a refusal part");
    const bool delta = type == "response.refusal.delta";
    part["refusal"] = delta ? std::string(part.at("refusal").as_string()) +
                                  std::string(e.at("delta").as_string())
                            : std::string(e.at("refusal").as_string());
  } else if (type == "response.function_call_arguments.delta") {
    auto& item = addressed_item(snapshot, e, "function_call");
    item["arguments"] = std::string(item.at("arguments").as_string()) +
                        std::string(e.at("delta").as_string());
  } else if (type == "response.function_call_arguments.done") {
    addressed_item(snapshot, e, "function_call")["arguments"] = e.at("arguments");
  } else {
    throw std::runtime_error("unexpected event " + type);
  }
}

// Replays the events as the SDK does; returns the accumulated snapshot just before the final
// lifecycle event replaced it, and the final response.
struct Replay {
  std::vector<Event> events;
  json::object streamed;  // built from the item events
  json::object final_response;
};

Replay replay(const std::string& sse) {
  Replay result;
  result.events = parse_sse(sse);
  std::optional<json::object> snapshot;
  std::int64_t expected_sequence = 0;
  for (const auto& event : result.events) {
    const std::string type(event.data.at("type").as_string());
    if (type != event.name) throw std::runtime_error("event name differs from type");
    if (event.data.at("sequence_number").as_int64() != expected_sequence++) {
      throw std::runtime_error("sequence_number not 0,1,2...");
    }
    if (event.data.contains("error")) throw std::runtime_error("the SDK throws on data.error");
    if (!snapshot && type != "response.created") {
      throw std::runtime_error("first event is not response.created");
    }
    if (type == "response.created" || type == "response.in_progress" ||
        type == "response.completed" || type == "response.incomplete" ||
        type == "response.failed") {
      if (snapshot) result.streamed = *snapshot;
      snapshot = event.data.at("response").as_object();
      check_identities(snapshot->at("output").as_array());
      result.final_response = *snapshot;
    } else {
      apply_item_event(*snapshot, type, event.data);
    }
  }
  return result;
}

std::vector<std::string> names(const Replay& result) {
  std::vector<std::string> list;
  for (const auto& event : result.events) list.push_back(event.name);
  return list;
}

json::object chunk(std::string_view delta, std::string_view finish = "") {
  json::object choice{{"index", 0}, {"delta", json::parse(delta)}};
  choice["finish_reason"] = finish.empty() ? json::value(nullptr) : json::value(finish);
  return {{"id", "chatcmpl-1"},
          {"object", "chat.completion.chunk"},
          {"created", 1},
          {"model", "m"},
          {"choices", json::array{std::move(choice)}}};
}

json::object usage_chunk() {
  return parse_object(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,
      "model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,
      "total_tokens":12,"prompt_tokens_details":{"cached_tokens":2}}})");
}

std::string stream(const std::vector<json::object>& chunks, const json::object& request = {}) {
  StreamEncoder encoder("resp_s", request, "alias", 1700);
  std::string out;
  for (const auto& c : chunks) encoder.on_chunk(c, out);
  encoder.finish(out);
  return out;
}

TEST(ResponsesStreamTest, TextStreamFollowsOpenAisEventOrder) {
  auto result = replay(stream({chunk(R"({"role":"assistant","content":""})"),
                               chunk(R"({"content":"Hel"})"), chunk(R"({"content":"lo"})"),
                               chunk("{}", "stop"), usage_chunk()},
                              parse_object(kRequest)));
  EXPECT_EQ(names(result), (std::vector<std::string>{
      "response.created", "response.in_progress", "response.output_item.added",
      "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.completed"}));
  const auto& created = result.events[0].data.at("response");
  EXPECT_EQ(created.at("status"), "in_progress");
  EXPECT_EQ(created.at("output"), json::array());
  EXPECT_EQ(created.at("instructions"), "Be brief.");
  EXPECT_EQ(result.events[2].data, json::parse(R"({"type":"response.output_item.added",
      "output_index":0,"item":{"id":"msg_s_0","type":"message","status":"in_progress",
      "role":"assistant","content":[]},"sequence_number":2})"));
  EXPECT_EQ(result.events[3].data, json::parse(R"({"type":"response.content_part.added",
      "item_id":"msg_s_0","output_index":0,"content_index":0,"part":{"type":"output_text",
      "text":"","annotations":[],"logprobs":[]},"sequence_number":3})"));
  EXPECT_EQ(result.events[4].data, json::parse(R"({"type":"response.output_text.delta",
      "item_id":"msg_s_0","output_index":0,"content_index":0,"delta":"Hel","logprobs":[],
      "sequence_number":4})"));
  EXPECT_EQ(result.events[6].data.at("text"), "Hello");
  const auto& final_response = result.final_response;
  EXPECT_EQ(final_response.at("status"), "completed");
  EXPECT_EQ(final_response.at("output"), result.streamed.at("output"));
  EXPECT_EQ(final_response.at("output").at(0).at("content").at(0).at("text"), "Hello");
  EXPECT_EQ(final_response.at("usage"), json::parse(R"({"input_tokens":7,
      "input_tokens_details":{"cached_tokens":2,"cache_write_tokens":0},"output_tokens":5,
      "output_tokens_details":{"reasoning_tokens":0},"total_tokens":12})"));
}

TEST(ResponsesStreamTest, StreamedAndPlainAnswersAgree) {
  auto request = parse_object(kRequest);
  auto streamed = replay(stream({chunk(R"({"content":"Hi"})"),
                                 chunk(R"({"tool_calls":[{"index":0,"id":"call_1","type":"function",
                                     "function":{"name":"weather","arguments":"{}"}}]})"),
                                 chunk("{}", "tool_calls"), usage_chunk()},
                                request));
  auto plain = to_response(parse_object(R"({"choices":[{"message":{"content":"Hi","tool_calls":[
      {"id":"call_1","type":"function","function":{"name":"weather","arguments":"{}"}}]},
      "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":7,"completion_tokens":5,
      "total_tokens":12,"prompt_tokens_details":{"cached_tokens":2}}})"),
                           request, "resp_s", "alias", 1700);
  EXPECT_EQ(streamed.final_response, plain);
}

TEST(ResponsesStreamTest, ParallelToolCallsWithInterleavedArguments) {
  auto result = replay(stream({
      chunk(R"({"content":"Checking."})"),
      chunk(R"({"tool_calls":[{"index":0,"id":"call_a","type":"function",
                 "function":{"name":"weather","arguments":""}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"c\":"}}]})"),
      chunk(R"({"tool_calls":[{"index":1,"id":"call_b","type":"function",
                 "function":{"name":"time","arguments":"{"}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"1}"}},
                              {"index":1,"function":{"arguments":"}"}}]})"),
      chunk("{}", "tool_calls"), usage_chunk()}));
  EXPECT_EQ(names(result), (std::vector<std::string>{
      "response.created", "response.in_progress",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.function_call_arguments.delta",
      "response.output_item.added", "response.function_call_arguments.delta",
      "response.function_call_arguments.delta", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done",
      "response.function_call_arguments.done", "response.output_item.done",
      "response.completed"}));
  EXPECT_EQ(result.events[8].data.at("item"), json::parse(R"({"id":"fc_s_1",
      "type":"function_call","status":"in_progress","call_id":"call_a","name":"weather",
      "arguments":""})"));
  EXPECT_EQ(result.events[9].data, json::parse(R"({"type":"response.function_call_arguments.delta",
      "item_id":"fc_s_1","output_index":1,"delta":"{\"c\":","sequence_number":9})"));
  const auto& output = result.final_response.at("output").as_array();
  ASSERT_EQ(output.size(), 3u);
  EXPECT_EQ(output[1].at("arguments"), R"({"c":1})");
  EXPECT_EQ(output[2].at("arguments"), "{}");
  EXPECT_EQ(output[2].at("call_id"), "call_b");
  EXPECT_EQ(output, result.streamed.at("output"));
}

TEST(ResponsesStreamTest, TextAfterAToolCallOpensANewMessage) {
  auto result = replay(stream({
      chunk(R"({"tool_calls":[{"index":0,"id":"call_a","function":{"name":"f","arguments":"{}"}}]})"),
      chunk(R"({"content":"and more"})"), chunk("{}", "stop")}));
  const auto& output = result.final_response.at("output").as_array();
  ASSERT_EQ(output.size(), 2u);
  EXPECT_EQ(output[0].at("type"), "function_call");
  EXPECT_EQ(output[1].at("type"), "message");
  EXPECT_EQ(output, result.streamed.at("output"));
}

TEST(ResponsesStreamTest, RepeatedOrMissingCallIdsAreReplaced) {
  auto result = replay(stream({
      chunk(R"({"tool_calls":[{"index":0,"id":"same","function":{"name":"f"}}]})"),
      chunk(R"({"tool_calls":[{"index":1,"id":"same","function":{"name":"g"}}]})"),
      chunk(R"({"tool_calls":[{"index":2,"function":{"name":"h"}}]})"),
      chunk("{}", "tool_calls")}));
  const auto& output = result.final_response.at("output").as_array();
  ASSERT_EQ(output.size(), 3u);
  EXPECT_EQ(output[0].at("call_id"), "same");
  EXPECT_EQ(output[1].at("call_id"), "call_s_1");
  EXPECT_EQ(output[2].at("call_id"), "call_s_2");
}

TEST(ResponsesStreamTest, NamesSentInPiecesAreJoined) {
  auto result = replay(stream({
      chunk(R"({"tool_calls":[{"index":0,"id":"c","function":{"name":"get_"}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"name":"weather","arguments":"{}"}}]})"),
      chunk(R"({"tool_calls":[{"index":0,"function":{"name":"get_weather"}}]})"),
      chunk("{}", "tool_calls")}));
  EXPECT_EQ(result.final_response.at("output").at(0).at("name"), "get_weather");
}

TEST(ResponsesStreamTest, LengthEndsWithResponseIncomplete) {
  auto result = replay(stream({chunk(R"({"content":"Hal"})"), chunk("{}", "length"),
                               usage_chunk()}));
  EXPECT_EQ(result.events.back().name, "response.incomplete");
  EXPECT_EQ(result.final_response.at("status"), "incomplete");
  EXPECT_EQ(result.final_response.at("incomplete_details"),
            json::parse(R"({"reason":"max_output_tokens"})"));
  EXPECT_EQ(result.final_response.at("output").at(0).at("status"), "incomplete");
  EXPECT_EQ(result.final_response.at("usage").at("output_tokens"), 5);
  result = replay(stream({chunk(R"({"content":"x"})"), chunk("{}", "content_filter")}));
  EXPECT_EQ(result.final_response.at("incomplete_details").at("reason"), "content_filter");
}

TEST(ResponsesStreamTest, RefusalStreamsAsARefusalPart) {
  auto result = replay(stream({chunk(R"({"content":"Well"})"), chunk(R"({"refusal":"No."})"),
                               chunk("{}", "stop")}));
  EXPECT_EQ(result.final_response.at("output").at(0).at("content"), json::parse(R"([
      {"type":"output_text","text":"Well","annotations":[],"logprobs":[]},
      {"type":"refusal","refusal":"No."}])"));
  EXPECT_EQ(result.final_response.at("output"), result.streamed.at("output"));
}

TEST(ResponsesStreamTest, FinishWithoutChunksIsStillAValidStream) {
  auto result = replay(stream({}));
  EXPECT_EQ(names(result), (std::vector<std::string>{"response.created", "response.in_progress",
                                                     "response.completed"}));
  EXPECT_EQ(result.final_response.at("output"), json::array());
  EXPECT_TRUE(result.final_response.at("usage").is_null());
}

TEST(ResponsesStreamTest, FinishWithoutAFinishReasonClosesOpenItems) {
  auto result = replay(stream({chunk(R"({"content":"partial"})")}));
  EXPECT_EQ(result.final_response.at("status"), "completed");
  EXPECT_EQ(result.final_response.at("output").at(0).at("status"), "completed");
}

TEST(ResponsesStreamTest, FailBeforeAnythingStillStartsTheStream) {
  StreamEncoder encoder("resp_f", json::object(), "m", 1);
  std::string out;
  encoder.fail("server_error", "upstream broke", out);
  auto result = replay(out);
  EXPECT_EQ(names(result), (std::vector<std::string>{"response.created", "response.in_progress",
                                                     "response.failed"}));
  EXPECT_EQ(result.final_response.at("status"), "failed");
  EXPECT_EQ(result.final_response.at("error"),
            json::parse(R"({"code":"server_error","message":"upstream broke"})"));
}

TEST(ResponsesStreamTest, FailMidStreamKeepsWhatWasSaid) {
  StreamEncoder encoder("resp_f", json::object(), "m", 1);
  std::string out;
  encoder.on_chunk(chunk(R"({"content":"Hel"})"), out);
  encoder.fail("server_error", "upstream broke", out);
  encoder.on_chunk(chunk(R"({"content":"lo"})"), out);
  encoder.finish(out);
  auto result = replay(out);
  EXPECT_EQ(result.events.back().name, "response.failed");
  EXPECT_EQ(result.final_response.at("output").at(0).at("status"), "incomplete");
  EXPECT_EQ(result.final_response.at("output").at(0).at("content").at(0).at("text"), "Hel");
}

TEST(ResponsesStreamTest, NothingFollowsTheFinalEvent) {
  StreamEncoder encoder("resp_f", json::object(), "m", 1);
  std::string out;
  encoder.on_chunk(chunk(R"({"content":"a"})", "stop"), out);
  encoder.finish(out);
  const auto length = out.size();
  encoder.finish(out);
  encoder.on_chunk(chunk(R"({"content":"b"})"), out);
  encoder.fail("server_error", "late", out);
  EXPECT_EQ(out.size(), length);
  EXPECT_EQ(replay(out).final_response.at("output").at(0).at("content").at(0).at("text"), "a");
}

TEST(ResponsesStreamTest, DeltasAfterTheFinishReasonAndOtherChoicesAreIgnored) {
  auto other_choice = parse_object(R"({"choices":[{"index":1,"delta":{"content":"other"},
                                       "finish_reason":null}]})");
  auto result = replay(stream({other_choice, chunk(R"({"content":"mine"})", "stop"),
                               chunk(R"({"content":"late"})"), usage_chunk()}));
  const auto& output = result.final_response.at("output").as_array();
  ASSERT_EQ(output.size(), 1u);
  EXPECT_EQ(output[0].at("content").at(0).at("text"), "mine");
  EXPECT_EQ(result.final_response.at("usage").at("total_tokens"), 12);
}

TEST(ResponsesStreamTest, MalformedChunksNeverBreakTheStream) {
  auto result = replay(stream({
      parse_object(R"({"choices":7})"), parse_object(R"({"choices":[3,{"delta":5}]})"),
      parse_object(R"({"choices":[{"delta":{"content":5,"tool_calls":[4,{"index":"x",
          "function":3},{"index":0,"function":{"arguments":{"a":1}}}]}}]})"),
      parse_object(R"({"usage":{"prompt_tokens":"many"}})"),
      parse_object(R"({"choices":[{"delta":{},"finish_reason":7}]})")}));
  EXPECT_EQ(result.events.back().name, "response.completed");
}

TEST(ResponsesStreamTest, EncoderMovesWithItsState) {
  StreamEncoder first("resp_m", json::object(), "m", 1);
  std::string out;
  first.on_chunk(chunk(R"({"content":"a"})"), out);
  StreamEncoder second(std::move(first));
  second.on_chunk(chunk(R"({"content":"b"})", "stop"), out);
  second.finish(out);
  EXPECT_EQ(replay(out).final_response.at("output").at(0).at("content").at(0).at("text"), "ab");
}

}  // namespace
}  // namespace cutover::api::responses
