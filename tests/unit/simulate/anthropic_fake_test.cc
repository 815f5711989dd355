// The simulated provider as a native Anthropic Messages provider, and its tool calls in both
// formats, checked over HTTP with a small blocking client.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "simulate/fake_provider.h"

namespace cutover::simulate {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Response {
  unsigned status = 0;
  std::string body;
  http::fields headers;
  bool complete = false;  // the response ended as its framing says it should

  json::value json() const { return json::parse(body); }
};

Response post(std::uint16_t port, const std::string& target, const std::string& body,
              const Headers& headers = {}) {
  asio::io_context context;
  asio::ip::tcp::socket socket(context);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> request{http::verb::post, target, 11};
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::content_type, "application/json");
  for (const auto& [name, value] : headers) request.set(name, value);
  request.body() = body;
  request.prepare_payload();
  http::write(socket, request);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  boost::system::error_code error;
  http::read(socket, buffer, parser, error);
  Response response;
  response.status = parser.get().result_int();
  response.body = parser.get().body();
  response.headers = parser.get().base();
  response.complete = !error && parser.is_done();
  return response;
}

struct Event {
  std::string name;
  std::string data;
};

std::vector<Event> events_of(const std::string& body) {
  std::vector<Event> events;
  std::size_t start = 0;
  while (start < body.size()) {
    auto end = body.find("\n\n", start);
    if (end == std::string::npos) end = body.size();
    Event event;
    std::size_t line_start = start;
    while (line_start < end) {
      auto line_end = std::min(body.find('\n', line_start), end);
      const auto line = body.substr(line_start, line_end - line_start);
      if (line.starts_with("event: ")) event.name = line.substr(7);
      if (line.starts_with("data: ")) event.data = line.substr(6);
      line_start = line_end + 1;
    }
    if (!event.name.empty() || !event.data.empty()) events.push_back(std::move(event));
    start = end + 2;
  }
  return events;
}

std::vector<std::string> names_of(const std::vector<Event>& events) {
  std::vector<std::string> names;
  for (const auto& event : events) names.push_back(event.name);
  return names;
}

const std::string kWeatherSchema =
    R"({"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},)"
    R"("metric":{"type":"boolean"},"extra":{"type":"object"}},"required":["city"]})";

const json::value kExpectedArguments =
    json::parse(R"({"city":"weather in Paris","days":1,"metric":true,"extra":null})");

std::string chat_with_tools(bool stream) {
  return R"({"model":"gpt-4o","stream":)" + std::string(stream ? "true" : "false") +
         R"(,"messages":[{"role":"user","content":"weather in Paris please, today"}],)"
         R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":)" +
         kWeatherSchema + "}}]}";
}

std::string messages_with_tools(bool stream) {
  return R"({"model":"claude-sonnet-4","max_tokens":256,"stream":)" +
         std::string(stream ? "true" : "false") +
         R"(,"messages":[{"role":"user","content":)"
         R"([{"type":"text","text":"weather in Paris please"}]}],)"
         R"("tools":[{"type":"web_search_20250305","name":"web_search"},)"
         R"({"name":"get_weather","description":"forecast","input_schema":)" +
         kWeatherSchema + "}]}";
}

const std::string kPlainMessage =
    R"({"model":"claude-sonnet-4","max_tokens":256,"system":[{"type":"text","text":"Be brief."}],)"
    R"("messages":[{"role":"user","content":"hello there"},)"
    R"({"role":"assistant","content":[{"type":"text","text":"Hi!"}]},)"
    R"({"role":"user","content":[{"type":"text","text":"say something"}]}]})";

std::string streamed(std::string body) {
  body.insert(1, R"("stream":true,)");
  return body;
}

class AnthropicFakeTest : public ::testing::Test {
 protected:
  FakeProvider provider_{default_reply};

  Response send(const std::string& target, const std::string& body, const Headers& headers = {}) {
    return post(provider_.port(), target, body, headers);
  }
};

TEST_F(AnthropicFakeTest, PlainMessageHasAnthropicsShape) {
  const auto response = send("/v1/messages", kPlainMessage);
  ASSERT_EQ(response.status, 200u) << response.body;
  const auto message = response.json().as_object();
  EXPECT_TRUE(message.at("id").as_string().starts_with("msg_sim"));
  EXPECT_EQ(message.at("type"), "message");
  EXPECT_EQ(message.at("role"), "assistant");
  EXPECT_EQ(message.at("model"), "claude-sonnet-4");
  const auto& content = message.at("content").as_array();
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0].at("type"), "text");
  EXPECT_EQ(content[0].at("text"), "This is a simulated answer to: Be brief. hello there Hi! say");
  EXPECT_EQ(message.at("stop_reason"), "end_turn");
  EXPECT_TRUE(message.at("stop_sequence").is_null());
  const auto& usage = message.at("usage");
  EXPECT_EQ(usage.at("input_tokens"), 7) << "system and every message's text blocks, in words";
  EXPECT_EQ(usage.at("output_tokens"), 12);
  EXPECT_EQ(usage.at("cache_read_input_tokens"), 0);
  EXPECT_EQ(usage.at("cache_creation_input_tokens"), 0);
}

TEST_F(AnthropicFakeTest, StreamedMessageSendsNamedEventsInAnthropicsOrder) {
  const auto response = send("/v1/messages?beta=true", streamed(kPlainMessage));
  ASSERT_EQ(response.status, 200u) << response.body;
  EXPECT_EQ(response.headers[http::field::content_type], "text/event-stream");
  const auto events = events_of(response.body);
  auto names = names_of(events);
  ASSERT_GE(names.size(), 8u) << response.body;
  std::vector<std::string> expected{"message_start", "content_block_start", "ping"};
  expected.insert(expected.end(), names.size() - 6, "content_block_delta");
  expected.insert(expected.end(), {"content_block_stop", "message_delta", "message_stop"});
  EXPECT_EQ(names, expected);

  std::string text;
  for (const auto& event : events) {
    const auto data = json::parse(event.data);
    EXPECT_EQ(data.at("type").as_string(), event.name) << "each event's data names its own type";
    if (event.name == "content_block_delta") {
      EXPECT_EQ(data.at("delta").at("type"), "text_delta");
      text += data.at("delta").at("text").as_string();
    }
  }
  EXPECT_EQ(text, "This is a simulated answer to: Be brief. hello there Hi! say");
  const auto start = json::parse(events.front().data).at("message");
  EXPECT_TRUE(start.at("content").as_array().empty());
  EXPECT_EQ(start.at("usage").at("input_tokens"), 7);
  EXPECT_EQ(start.at("usage").at("output_tokens"), 1);
  EXPECT_EQ(json::parse(events[1].data).at("content_block"),
            json::parse(R"({"type":"text","text":""})"));
  const auto delta = json::parse(events[events.size() - 2].data);
  EXPECT_EQ(delta.at("delta"), json::parse(R"({"stop_reason":"end_turn","stop_sequence":null})"));
  EXPECT_EQ(delta.at("usage").at("output_tokens"), 12);
}

TEST_F(AnthropicFakeTest, NamedEventsSurviveAContentLengthFraming) {
  provider_.set_script([](const FakeRequest& request) {
    auto reply = default_reply(request);
    reply.framing = FakeReply::Framing::content_length;
    reply.line_end = "\r\n";
    return reply;
  });
  auto response = send("/v1/messages", streamed(kPlainMessage));
  ASSERT_EQ(response.status, 200u);
  EXPECT_TRUE(response.complete);
  EXPECT_TRUE(response.body.starts_with("event: message_start\r\ndata: {")) << response.body;
  EXPECT_TRUE(
      response.body.ends_with("event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n"));
}

TEST_F(AnthropicFakeTest, TruncatedStreamEndsBeforeMessageStop) {
  provider_.set_script([](const FakeRequest& request) {
    auto reply = default_reply(request);
    reply.fault = Fault::truncate_stream;
    reply.framing = FakeReply::Framing::close_delimited;
    return reply;
  });
  const auto names = names_of(events_of(send("/v1/messages", streamed(kPlainMessage)).body));
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.back(), "message_delta");
}

TEST_F(AnthropicFakeTest, MalformedStreamBreaksTheFirstEventsData) {
  provider_.set_script([](const FakeRequest& request) {
    auto reply = default_reply(request);
    reply.fault = Fault::malformed_body;
    return reply;
  });
  const auto events = events_of(send("/v1/messages", streamed(kPlainMessage)).body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().name, "message_start");
  boost::system::error_code error;
  json::parse(events.front().data, error);
  EXPECT_TRUE(error) << events.front().data;
}

TEST_F(AnthropicFakeTest, OpenAiStreamsKeepUnnamedEvents) {
  const auto response =
      send("/v1/chat/completions",
           R"({"model":"m","stream":true,"messages":[{"role":"user","content":"one two"}]})");
  const auto events = events_of(response.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(response.body.find("event:"), std::string::npos);
  EXPECT_EQ(events.back().data, "[DONE]");
}

TEST_F(AnthropicFakeTest, CountTokensAnswersTheInputTokens) {
  const auto response = send("/v1/messages/count_tokens", streamed(kPlainMessage));
  ASSERT_EQ(response.status, 200u) << response.body;
  EXPECT_EQ(response.json(), json::parse(R"({"input_tokens":7})"));
}

TEST_F(AnthropicFakeTest, ChatCallsTheFirstToolWithArgumentsFromItsSchema) {
  const auto response = send("/v1/chat/completions", chat_with_tools(false));
  ASSERT_EQ(response.status, 200u) << response.body;
  const auto choice = response.json().at("choices").at(0);
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  EXPECT_TRUE(choice.at("message").at("content").is_null());
  const auto& calls = choice.at("message").at("tool_calls").as_array();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0].at("id").as_string().starts_with("call_sim"));
  EXPECT_TRUE(calls[0].at("id").as_string().ends_with("_0"));
  EXPECT_EQ(calls[0].at("type"), "function");
  EXPECT_EQ(calls[0].at("function").at("name"), "get_weather");
  EXPECT_EQ(json::parse(calls[0].at("function").at("arguments").as_string()), kExpectedArguments);
}

TEST_F(AnthropicFakeTest, StreamedChatToolCallArrivesInPieces) {
  const auto events = events_of(send("/v1/chat/completions", chat_with_tools(true)).body);
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.back().data, "[DONE]");
  const auto opening = json::parse(events[0].data).at("choices").at(0).at("delta");
  EXPECT_EQ(opening.at("role"), "assistant");
  const auto& call = opening.at("tool_calls").at(0);
  EXPECT_EQ(call.at("index"), 0);
  EXPECT_TRUE(call.at("id").as_string().starts_with("call_sim"));
  EXPECT_EQ(call.at("function").at("name"), "get_weather");
  EXPECT_EQ(call.at("function").at("arguments"), "");
  std::string arguments;
  int pieces = 0;
  for (std::size_t i = 1; i + 2 < events.size(); ++i) {
    const auto part =
        json::parse(events[i].data).at("choices").at(0).at("delta").at("tool_calls").at(0);
    EXPECT_EQ(part.at("index"), 0);
    arguments += part.at("function").at("arguments").as_string();
    ++pieces;
  }
  EXPECT_GE(pieces, 2);
  EXPECT_EQ(json::parse(arguments), kExpectedArguments);
  EXPECT_EQ(json::parse(events[events.size() - 2].data).at("choices").at(0).at("finish_reason"),
            "tool_calls");
}

TEST_F(AnthropicFakeTest, MessagesCallTheFirstClientToolWithToolUse) {
  const auto response = send("/v1/messages", messages_with_tools(false));
  ASSERT_EQ(response.status, 200u) << response.body;
  const auto message = response.json();
  EXPECT_EQ(message.at("stop_reason"), "tool_use");
  const auto& content = message.at("content").as_array();
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0].at("type"), "tool_use");
  EXPECT_TRUE(content[0].at("id").as_string().starts_with("toolu_sim"));
  EXPECT_EQ(content[0].at("name"), "get_weather") << "the server tool is not the client's to run";
  EXPECT_EQ(content[0].at("input"), kExpectedArguments);
}

TEST_F(AnthropicFakeTest, StreamedToolUseArrivesAsInputJsonDeltas) {
  const auto events = events_of(send("/v1/messages", messages_with_tools(true)).body);
  ASSERT_GE(events.size(), 7u);
  EXPECT_EQ(events[0].name, "message_start");
  EXPECT_EQ(events[1].name, "content_block_start");
  const auto block = json::parse(events[1].data).at("content_block");
  EXPECT_EQ(block.at("type"), "tool_use");
  EXPECT_EQ(block.at("name"), "get_weather");
  EXPECT_EQ(block.at("input"), json::object{});
  EXPECT_EQ(events[2].name, "ping");
  std::string input;
  std::size_t i = 3;
  for (; i < events.size() && events[i].name == "content_block_delta"; ++i) {
    const auto delta = json::parse(events[i].data).at("delta");
    EXPECT_EQ(delta.at("type"), "input_json_delta");
    input += delta.at("partial_json").as_string();
  }
  EXPECT_GE(i - 3, 2u) << "the input arrives in pieces";
  EXPECT_EQ(json::parse(input), kExpectedArguments);
  ASSERT_EQ(events.size(), i + 3);
  EXPECT_EQ(events[i].name, "content_block_stop");
  EXPECT_EQ(json::parse(events[i + 1].data).at("delta").at("stop_reason"), "tool_use");
  EXPECT_EQ(events[i + 2].name, "message_stop");
}

TEST_F(AnthropicFakeTest, ToolResultsAreEchoedInBothFormats) {
  const auto chat = send(
      "/v1/chat/completions",
      R"({"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{}}}],)"
      R"("messages":[{"role":"user","content":"go"},{"role":"assistant","content":null,)"
      R"("tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},)"
      R"({"role":"tool","tool_call_id":"c1","content":"22 degrees"}]})");
  const auto choice = chat.json().at("choices").at(0);
  EXPECT_EQ(choice.at("message").at("content"), "Tool said: 22 degrees");
  EXPECT_EQ(choice.at("finish_reason"), "stop");

  const auto messages =
      send("/v1/messages",
           R"({"model":"c","max_tokens":9,"tools":[{"name":"f","input_schema":{"type":"object"}}],)"
           R"("messages":[{"role":"user","content":"go"},{"role":"assistant","content":)"
           R"([{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":)"
           R"([{"type":"tool_result","tool_use_id":"t1","content":)"
           R"([{"type":"text","text":"22 degrees"}]}]}]})");
  const auto message = messages.json();
  EXPECT_EQ(message.at("content").at(0).at("text"), "Tool said: 22 degrees");
  EXPECT_EQ(message.at("stop_reason"), "end_turn");
}

TEST_F(AnthropicFakeTest, ToolChoiceNoneAnswersWithText) {
  auto body = messages_with_tools(false);
  body.insert(1, R"("tool_choice":{"type":"none"},)");
  const auto message = send("/v1/messages", body).json();
  EXPECT_EQ(message.at("stop_reason"), "end_turn");
  EXPECT_EQ(message.at("content").at(0).at("type"), "text");
}

TEST_F(AnthropicFakeTest, MarkerAsksForAnError) {
  const auto overloaded = send(
      "/v1/messages",
      R"({"model":"c","max_tokens":9,"messages":[{"role":"user","content":"hi [simulate:529]"}]})");
  EXPECT_EQ(overloaded.status, 529u);
  EXPECT_EQ(overloaded.json(),
            json::parse(
                R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"));

  const auto limited = send(
      "/v1/chat/completions",
      R"({"model":"m","stream":true,"messages":[{"role":"user","content":"[simulate:429] hi"}]})");
  EXPECT_EQ(limited.status, 429u);
  EXPECT_EQ(limited.headers["retry-after"], "1");
  EXPECT_EQ(limited.json().at("error").at("type"), "rate_limit_error");

  const auto ignored =
      send("/v1/chat/completions",
           R"({"model":"m","messages":[{"role":"user","content":"[simulate:200] [simulate:x]"}]})");
  EXPECT_EQ(ignored.status, 200u) << "only error statuses are simulated";
}

TEST_F(AnthropicFakeTest, OddlyShapedRequestsStillGetAnAnswer) {
  const std::vector<std::string> bodies{
      "not json",
      R"({"stream":true,"messages":5,"tools":[1,{"function":3},{"name":7}],"system":{}})",
      R"({"messages":[1,{"role":"tool"}],"tools":"x","tool_choice":[]})",
      R"({"stream":true,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})",
      R"({"tools":[{"name":"f","input_schema":{"properties":{"a":{"type":["null","string"]},)"
      R"("b":{"type":7},"c":5}}}],"messages":[{"role":"user","content":"[simulate:9999] hi"}]})"};
  for (const auto& target : {"/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens"}) {
    for (const auto& body : bodies) {
      EXPECT_EQ(send(target, body).status, 200u) << target << " " << body;
    }
  }
  const auto message = send("/v1/messages", bodies.back()).json();
  EXPECT_EQ(message.at("content").at(0).at("input"), json::parse(R"({"a":"[simulate:9999] hi",)"
                                                                 R"("b":null,"c":null})"));
}

Profile anthropic_profile() {
  auto profile = *profile_named("fast");
  profile.dialect = Dialect::anthropic;
  return profile;
}

TEST(AnthropicProfileTest, ChecksTheKeyFromXApiKeyOrBearer) {
  auto profile = anthropic_profile();
  profile.required_key = "sk-ant-right";
  FakeProvider provider(profile_script(profile));
  const auto missing = post(provider.port(), "/v1/messages", kPlainMessage);
  EXPECT_EQ(missing.status, 401u);
  EXPECT_EQ(missing.json().at("type"), "error");
  EXPECT_EQ(missing.json().at("error").at("type"), "authentication_error");
  EXPECT_EQ(
      post(provider.port(), "/v1/messages", kPlainMessage, {{"x-api-key", "sk-ant-wrong"}}).status,
      401u);
  EXPECT_EQ(
      post(provider.port(), "/v1/messages", kPlainMessage, {{"x-api-key", "sk-ant-right"}}).status,
      200u);
  EXPECT_EQ(post(provider.port(), "/v1/messages", kPlainMessage,
                 {{"authorization", "Bearer sk-ant-right"}})
                .status,
            200u);
}

TEST(AnthropicProfileTest, EachDialectRefusesTheOthersPathsInItsOwnSchema) {
  FakeProvider anthropic(profile_script(anthropic_profile()));
  const auto chat = post(anthropic.port(), "/v1/chat/completions",
                         R"({"model":"m","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(chat.status, 404u);
  EXPECT_EQ(chat.json().at("error").at("type"), "not_found_error");
  EXPECT_EQ(post(anthropic.port(), "/v1/embeddings", R"({"model":"m","input":"x"})").status, 404u);
  EXPECT_EQ(post(anthropic.port(), "/v1/messages/count_tokens", kPlainMessage).json(),
            json::parse(R"({"input_tokens":7})"));

  FakeProvider openai(profile_script(*profile_named("fast")));
  const auto messages = post(openai.port(), "/v1/messages", kPlainMessage);
  EXPECT_EQ(messages.status, 404u);
  EXPECT_EQ(messages.json().at("error").at("type"), "invalid_request_error");
  EXPECT_FALSE(messages.json().as_object().contains("type"));
}

TEST(AnthropicProfileTest, ErrorsUseAnthropicsSchema) {
  auto failing = anthropic_profile();
  failing.error_rate = 1;
  FakeProvider failing_provider(profile_script(failing));
  const auto failed = post(failing_provider.port(), "/v1/messages", kPlainMessage);
  EXPECT_EQ(failed.status, 500u);
  EXPECT_EQ(failed.json().at("error").at("type"), "api_error");

  auto limited = anthropic_profile();
  limited.rate_limit_rate = 1;
  FakeProvider limited_provider(profile_script(limited));
  const auto refused = post(limited_provider.port(), "/v1/messages", kPlainMessage);
  EXPECT_EQ(refused.status, 429u);
  EXPECT_EQ(refused.headers["retry-after"], "1");
  EXPECT_EQ(refused.json().at("error").at("type"), "rate_limit_error");

  auto picky = anthropic_profile();
  picky.models = {"claude-haiku"};
  FakeProvider picky_provider(profile_script(picky));
  const auto unknown = post(picky_provider.port(), "/v1/messages", kPlainMessage);
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_EQ(unknown.json().at("error").at("type"), "not_found_error");
}

TEST(AnthropicProfileTest, MarkerWinsOverTheProfilesOwnAnswer) {
  FakeProvider provider(profile_script(anthropic_profile()));
  const auto response = post(provider.port(), "/v1/messages",
                             R"({"model":"c","max_tokens":9,"system":"[simulate:503]",)"
                             R"("messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(response.status, 503u);
  // The gateway's own mapping, which Anthropic's SDK reads as an overload.
  EXPECT_EQ(response.json().at("error").at("type"), "overloaded_error");
}

}  // namespace
}  // namespace cutover::simulate
