#include "providers/request_summary.h"

#include <gtest/gtest.h>

#include <string>

namespace cutover::providers {
namespace {

namespace json = boost::json;

struct Decision {
  std::string parse_error;  // empty when it parsed
  bool not_object = false;
  std::optional<std::string> problem;
  RequestShape shape;
};

Decision summarized(std::string_view body, ApiKind kind = ApiKind::chat_completions) {
  Decision decision;
  const auto summary = summarize_request(body, kind, decision.shape);
  if (summary.parse_error) decision.parse_error = summary.parse_error.message();
  decision.not_object = summary.not_object;
  decision.problem = summary.problem;
  return decision;
}

// What the gateway decided of the same body with a tree.
Decision from_tree(std::string_view body, ApiKind kind = ApiKind::chat_completions) {
  Decision decision;
  boost::system::error_code ec;
  const auto parsed = json::parse(body, ec);
  if (ec) {
    decision.parse_error = ec.message();
    return decision;
  }
  decision.not_object = !parsed.is_object();
  if (!decision.not_object)
    decision.problem = validate_request(parsed.get_object(), kind, decision.shape);
  return decision;
}

void expect_same_as_tree(std::string_view body) {
  SCOPED_TRACE(std::string(body.substr(0, 200)));
  for (auto kind : {ApiKind::chat_completions, ApiKind::completions, ApiKind::embeddings}) {
    const auto summary = summarized(body, kind);
    const auto tree = from_tree(body, kind);
    EXPECT_EQ(summary.parse_error, tree.parse_error);
    EXPECT_EQ(summary.not_object, tree.not_object);
    EXPECT_EQ(summary.problem, tree.problem);
    if (!tree.problem && tree.parse_error.empty() && !tree.not_object) {
      EXPECT_EQ(summary.shape.model, tree.shape.model);
      EXPECT_EQ(summary.shape.stream, tree.shape.stream);
      EXPECT_EQ(summary.shape.client_requested_usage, tree.shape.client_requested_usage);
    }
  }
}

TEST(RequestSummaryTest, ReadsAChatRequest) {
  const auto decision =
      summarized(R"({"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},)"
                 R"("messages":[{"role":"user","content":"hi"}],"temperature":0})");
  ASSERT_TRUE(decision.parse_error.empty());
  EXPECT_FALSE(decision.problem.has_value());
  EXPECT_EQ(decision.shape.model, "gpt-4o");
  EXPECT_TRUE(decision.shape.stream);
  EXPECT_TRUE(decision.shape.client_requested_usage);
}

TEST(RequestSummaryTest, TheLastOfADuplicateKeyWinsAsInATree) {
  const auto decision = summarized(
      R"({"model":"first","stream":true,"messages":[{"role":"u"}],"model":"second","stream":false})");
  EXPECT_FALSE(decision.problem.has_value());
  EXPECT_EQ(decision.shape.model, "second");
  EXPECT_FALSE(decision.shape.stream);
  expect_same_as_tree(R"({"model":"a","messages":[{"role":"u"}],"model":5})");
  expect_same_as_tree(R"({"model":5,"messages":[{"role":"u"}],"model":"b"})");
  expect_same_as_tree(R"({"model":"m","messages":[1],"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","messages":[{"role":"u"}],"messages":[]})");
  expect_same_as_tree(
      R"({"model":"m","stream_options":{"include_usage":true},"stream_options":{},"messages":[{"role":"u"}]})");
  expect_same_as_tree(
      R"({"model":"m","stream_options":{"include_usage":true,"include_usage":false},"messages":[{"role":"u"}]})");
  expect_same_as_tree(
      R"({"model":"m","stream_options":{"include_usage":false,"include_usage":true},"messages":[{"role":"u"}]})");
}

TEST(RequestSummaryTest, EscapedKeysAndStringsAreReadUnescaped) {
  const auto decision =
      summarized(R"({"mod\u0065l":"caf\u00e9 \ud83d\ude00 \"q\"","stre\u0061m":true,)"
                 R"("messages":[{"r\u006fle":"user"}]})");
  EXPECT_FALSE(decision.problem.has_value());
  EXPECT_EQ(decision.shape.model, "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\"");
  EXPECT_TRUE(decision.shape.stream);
  expect_same_as_tree(R"({"model":"\u0000","messages":[{"role":"u"}]})");
  expect_same_as_tree("{\"model\":\"\xe6\xa8\xa1\xe5\x9e\x8b\",\"messages\":[{\"role\":\"u\"}]}");
}

TEST(RequestSummaryTest, NumbersAndOtherTypesWhereStringsAreExpected) {
  expect_same_as_tree(R"({"model":5,"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":1e400,"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":["m"],"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":null,"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"","messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","stream":1,"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","stream":"true","messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","stream":null,"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","stream_options":"x","messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","stream_options":null,"messages":[{"role":"u"}]})");
  expect_same_as_tree(
      R"({"model":"m","stream_options":{"include_usage":1},"messages":[{"role":"u"}]})");
  expect_same_as_tree(
      R"({"model":"m","stream_options":{"include_usage":{"a":true}},"messages":[{"role":"u"}]})");
  expect_same_as_tree(R"({"model":"m","stream":true,"input":"x"})");
  EXPECT_EQ(summarized(R"({"model":7})").problem, "'model' must be a non-empty string");
}

TEST(RequestSummaryTest, MessagesAreCheckedAsValidateRequestDoes) {
  expect_same_as_tree(R"({"model":"m"})");
  expect_same_as_tree(R"({"model":"m","messages":{}})");
  expect_same_as_tree(R"({"model":"m","messages":[]})");
  expect_same_as_tree(R"({"model":"m","messages":[{"role":"u"},{"content":"x"}]})");
  expect_same_as_tree(R"({"model":"m","messages":[{"role":"u"},"x",{"a":1}]})");
  expect_same_as_tree(R"({"model":"m","messages":[{"role":"u"},[{"role":"u"}]]})");
  // A role nested deeper than the message itself is not the message's.
  expect_same_as_tree(R"({"model":"m","messages":[{"content":{"role":"u"}}]})");
  expect_same_as_tree(R"({"model":"m","messages":[{"content":[{"role":"u"}],"role":null}]})");
  EXPECT_EQ(summarized(R"({"model":"m","messages":[{"role":"u"},{"x":1}]})").problem,
            "'messages[1]' must be an object with a 'role'");
  expect_same_as_tree(R"({"model":"m","prompt":null})");
  expect_same_as_tree(R"({"model":"m","input":[1,2]})");
}

TEST(RequestSummaryTest, RefusesWhatJsonParseRefusesWithItsError) {
  for (const char* body :
       {"", " ", "{", R"({"model":"m",})", R"({"model":"m"} {})", R"({"model":"m"} x)",
        R"({'model':"m"})", R"({"model":"m" /* c */})", "{\"model\":\"\xff\"}", "[1,2]", "\"x\"",
        "3", "null", R"({"model":"m\x"})", R"({"model":01})"}) {
    expect_same_as_tree(body);
  }
  // Past json::parse's depth limit.
  std::string deep = R"({"model":"m","messages":[{"role":"u","content":)";
  for (int i = 0; i < 40; ++i) deep += "[";
  for (int i = 0; i < 40; ++i) deep += "]";
  deep += "}]}";
  expect_same_as_tree(deep);
  const auto decision = summarized(R"({"model":"m"} x)");
  EXPECT_FALSE(decision.parse_error.empty());
}

TEST(RequestSummaryTest, LongEscapedStringsArriveInParts) {
  // An escaped string longer than the parser's buffer is handed over in several parts.
  std::string model;
  for (int i = 0; i < 3000; ++i) model += R"(a\"b\u00e9)";
  std::string expected;
  for (int i = 0; i < 3000; ++i) expected += "a\"b\xc3\xa9";
  const auto body = R"({"model":")" + model + R"(","mess\u0061ges":[{"r\u006fle":"u"}]})";
  const auto decision = summarized(body);
  EXPECT_FALSE(decision.problem.has_value());
  EXPECT_EQ(decision.shape.model, expected);
  std::string long_key = R"({"model":"m","messages":[{"role":"u"}],")";
  for (int i = 0; i < 3000; ++i) long_key += R"(\u006d)";
  long_key += R"(":1})";
  expect_same_as_tree(long_key);
}

TEST(RequestSummaryTest, NineMebibyteBody) {
  std::string content;
  content.reserve(9u << 20);
  while (content.size() < (9u << 20)) content += R"(Lorem ipsum \"dolor\" sit amet, caf\u00e9.\n)";
  const std::string body = R"({"messages":[{"role":"user","content":")" + content +
                           R"("}],"seed":1e400,"model":"gpt-4o","stream":true})";
  const auto decision = summarized(body);
  ASSERT_TRUE(decision.parse_error.empty());
  EXPECT_FALSE(decision.problem.has_value());
  EXPECT_EQ(decision.shape.model, "gpt-4o");
  EXPECT_TRUE(decision.shape.stream);
  expect_same_as_tree(body);
}

TEST(RequestSummaryTest, ReportsWhetherStreamOptionsArePresent) {
  std::string_view body = R"({"model":"m","messages":[{"role":"u"}]})";
  RequestShape shape;
  EXPECT_FALSE(summarize_request(body, ApiKind::chat_completions, shape).has_stream_options);
  body = R"({"model":"m","stream_options":null,"messages":[{"role":"u"}]})";
  EXPECT_TRUE(summarize_request(body, ApiKind::chat_completions, shape).has_stream_options);
}

TEST(ModelHintTest, TheFirstPlainStringAfterAModelKey) {
  EXPECT_EQ(model_hint(R"({"model":"gpt-4o","messages":[]})"), "gpt-4o");
  // Python's json.dumps writes spaces after the colons; the SDK puts `messages` first.
  EXPECT_EQ(model_hint(R"({"messages": [{"role": "user"}], "model": "m-1"})"), "m-1");
  EXPECT_EQ(model_hint("{ \"model\"\n\t:\r \"m\" }"), "m");
  // A guess: a `model` key inside another value comes first, and counts.
  EXPECT_EQ(model_hint(R"({"metadata":{"model":"inner"},"model":"outer"})"), "inner");
  // Not a string there: the next `"model"` is looked at.
  EXPECT_EQ(model_hint(R"({"tools":[{"model":1}],"model":"m"})"), "m");
  // Inside a string the quotes are escaped, so text that reads "model" is never taken for a key.
  EXPECT_EQ(model_hint(R"({"messages":[{"content":"\"model\":\"no\""}],"model":"yes"})"), "yes");
  EXPECT_EQ(model_hint(R"({"model":"a\u0062"})"), std::nullopt) << "escaped: no guess";
  EXPECT_EQ(model_hint(R"({"model":")" + std::string(300, 'm') + "\"}"), std::nullopt);
  EXPECT_EQ(model_hint(R"({"model":"unterminated)"), std::nullopt);
  EXPECT_EQ(model_hint(R"({"messages":[]})"), std::nullopt);
  EXPECT_EQ(model_hint(R"({"model")"), std::nullopt);
  EXPECT_EQ(model_hint(""), std::nullopt);
}

TEST(RequestDomTest, BuildsTheTreeOnFirstUseOnly) {
  const std::string body = R"({"model":"m","messages":[{"role":"u"}],"n":2})";
  RequestDom dom(body, json::storage_ptr());
  EXPECT_FALSE(dom.built());
  auto& object = dom.get();
  EXPECT_TRUE(dom.built());
  EXPECT_EQ(object.at("n"), 2);
  EXPECT_EQ(&dom.get(), &object);

  json::object canonical{{"model", "c"}};
  RequestDom built(canonical);
  EXPECT_TRUE(built.built());
  EXPECT_EQ(&built.get(), &canonical);
}

TEST(RequestDomTest, TheTreeLivesInTheGivenMemory) {
  // The gateway hands the request frame's monotonic buffer: a tree copied out of it onto the
  // heap would cost an allocation per node.
  const std::string body =
      R"({"model":"m","messages":[{"role":"u","content":"a string too long to be short"}]})";
  unsigned char buffer[4096];
  json::monotonic_resource memory(buffer, sizeof buffer);
  RequestDom dom(body, json::storage_ptr(&memory));
  auto& object = dom.get();
  EXPECT_EQ(object.storage().get(), &memory);
  const auto& content =
      object.at("messages").as_array().at(0).as_object().at("content").as_string();
  const auto* bytes = reinterpret_cast<const unsigned char*>(content.data());
  EXPECT_TRUE(bytes >= buffer && bytes < buffer + sizeof buffer);
}

}  // namespace
}  // namespace cutover::providers
