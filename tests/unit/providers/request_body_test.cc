#include "providers/request_body.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "providers/request_summary.h"
#include "providers/simdjson_parser.h"

namespace cutover::providers {
namespace {

namespace json = boost::json;

struct Rewritten {
  std::string text;
  bool located = false;
};

Rewritten rewrite(std::string body, std::string_view model, bool ask_usage) {
  const auto parsed = json::parse(body);
  RequestBody original(body);
  bool client_usage = false;
  if (const auto* options = parsed.as_object().if_contains("stream_options");
      options && options->is_object()) {
    const auto* include = options->as_object().if_contains("include_usage");
    client_usage = include && include->is_bool() && include->as_bool();
  }
  return {original.rewrite(parsed.as_object(), model, ask_usage, client_usage), original.located()};
}

TEST(RequestBodyTest, NumbersReachTheProviderAsSent) {
  const std::string body =
      R"({"model":"gpt-4o","max_tokens": 1e400,"seed":12345678901234567890123,)"
      R"("temperature":0.10000000000000000001,"messages":[{"role":"user","content":"hi"}]})";
  const auto result = rewrite(body, "gpt-4o-2024-08-06", false);
  ASSERT_TRUE(result.located);
  EXPECT_EQ(result.text,
            R"({"model":"gpt-4o-2024-08-06","max_tokens": 1e400,"seed":12345678901234567890123,)"
            R"("temperature":0.10000000000000000001,"messages":[{"role":"user","content":"hi"}]})");
}

TEST(RequestBodyTest, KeepsKeyOrderWhitespaceAndUnknownFields) {
  const std::string body = "{\n  \"x-vendor\": {\"a\": [1, 2.50]},\n  \"model\" : \"m\" ,\n  \"messages\": []\n}\n";
  const auto result = rewrite(body, "provider/m", false);
  EXPECT_EQ(result.text,
            "{\n  \"x-vendor\": {\"a\": [1, 2.50]},\n  \"model\" : \"provider/m\" ,\n  \"messages\": []\n}\n");
}

TEST(RequestBodyTest, ModelNamesAreEscaped) {
  const auto result = rewrite(R"({"model":"a","messages":[]})", R"(we"ird\name)", false);
  EXPECT_EQ(json::parse(result.text).at("model"), R"(we"ird\name)");
}

TEST(RequestBodyTest, AsksForStreamUsageByInsertingOrEditingStreamOptions) {
  auto inserted = rewrite(R"({"model":"a","stream":true,"seed":1e400})", "b", true);
  EXPECT_EQ(inserted.text, R"({"model":"b","stream":true,"seed":1e400,"stream_options":{"include_usage":true}})");

  auto edited = rewrite(R"({"stream_options":{"include_obfuscation":false},"model":"a","stream":true})", "b", true);
  EXPECT_EQ(edited.text,
            R"({"stream_options":{"include_obfuscation":false,"include_usage":true},"model":"b","stream":true})");

  auto replaced_null = rewrite(R"({"model":"a","stream_options":null})", "b", true);
  EXPECT_EQ(replaced_null.text, R"({"model":"b","stream_options":{"include_usage":true}})");

  auto empty = rewrite(R"({})", "b", true);
  EXPECT_EQ(json::parse(empty.text).at("stream_options").at("include_usage"), true);
}

TEST(RequestBodyTest, ClientsOwnUsageRequestIsKeptAndAFalseOneDropped) {
  auto kept = rewrite(R"({"model":"a","stream_options":{"include_usage":true}})", "b", false);
  EXPECT_EQ(kept.text, R"({"model":"b","stream_options":{"include_usage":true}})");
  auto dropped = rewrite(R"({"model":"a","stream_options":{"include_usage":false}})", "b", false);
  EXPECT_EQ(dropped.text, R"({"model":"b","stream_options":{}})");
  auto untouched = rewrite(R"({"model":"a","stream":false})", "b", false);
  EXPECT_EQ(untouched.text, R"({"model":"b","stream":false})");
}

TEST(RequestBodyTest, EveryDuplicateOwnedKeyIsRewritten) {
  auto result = rewrite(R"({"model":"a","messages":[],"model":"c"})", "b", false);
  EXPECT_EQ(result.text, R"({"model":"b","messages":[],"model":"b"})");
}

TEST(RequestBodyTest, AKeyRepeatedManyTimesIsStillSplicedAndNumbersKeptAsSent) {
  // Found by fuzz/request_summary_fuzz.cc: past a fixed number of spans the body was serialized
  // from its tree, where Boost.JSON 1.81 reads `0e400` as NaN and writes it as invalid JSON.
  std::string body = "{";
  std::string expected = "{";
  for (int i = 0; i < 12; ++i) {
    body += R"("model":"a)" + std::to_string(i) + R"(",)";
    expected += R"("model":"b",)";
  }
  body += R"("seed":0e400,"n":123456789012345678901234567890})";
  expected += R"("seed":0e400,"n":123456789012345678901234567890})";
  auto result = rewrite(body, "b", false);
  EXPECT_TRUE(result.located);
  EXPECT_EQ(result.text, expected);
}

TEST(RequestBodyTest, StreamOptionsWithNumbersPastADoubleAreRewrittenAsValidJson) {
  // Found by fuzz/request_summary_fuzz.cc: Boost.JSON 1.81 reads 0e400 as NaN and 1e400 as
  // infinity, which its serializer writes as `NaN` and `Infinity`.
  auto result =
      rewrite(R"({"model":"a","stream_options":{"x":0e400,"y":[1e400,-1e400]}})", "b", true);
  EXPECT_EQ(result.text,
            R"({"model":"b","stream_options":{"x":0,"y":[1e400,-1e400],"include_usage":true}})");
  boost::system::error_code ec;
  json::parse(result.text, ec);
  EXPECT_FALSE(ec) << result.text;
}

TEST(RequestBodyTest, NestedModelFieldsAreNotTouched) {
  auto result = rewrite(R"({"metadata":{"model":"keep"},"model":"a"})", "b", false);
  EXPECT_EQ(result.text, R"({"metadata":{"model":"keep"},"model":"b"})");
}

TEST(RequestBodyTest, EscapedKeysAreRecognised) {
  auto result = rewrite(R"({"mod\u0065l":"a"})", "b", false);
  EXPECT_EQ(json::parse(result.text).at("model"), "b");
  EXPECT_EQ(json::parse(result.text).as_object().size(), 1u);
}

TEST(RequestBodyTest, EscapesAndUnicodeOutsideTheModelAreSentAsWritten) {
  const std::string messages =
      R"("messages":[{"role":"user","content":"caf\u00e9 \"q\" \/ \ud83d\ude00 日本語 🙂\n"}])";
  const auto result = rewrite(R"({"model":"gpt-4o",)" + messages + "}", "provider/modèle-🙂", false);
  ASSERT_TRUE(result.located);
  EXPECT_EQ(result.text, R"({"model":"provider/modèle-🙂",)" + messages + "}");
}

TEST(RequestBodyTest, ANonStringModelIsReplacedWhole) {
  // validate_request() refuses these before a rewrite; RequestBody still splices the whole value.
  EXPECT_EQ(rewrite(R"({"model":5,"messages":[]})", "b", false).text, R"({"model":"b","messages":[]})");
  EXPECT_EQ(rewrite(R"({"model":{"a":[1, "}"]} ,"messages":[]})", "b", false).text,
            R"({"model":"b" ,"messages":[]})");
}

// Where the request's summary found its `model` values, the body is not walked again; every
// rewrite must be the one a walk gives.
TEST(RequestBodyTest, ABodyLocatedByItsSummaryIsRewrittenAsAWalkedOne) {
  const std::vector<std::string> located_by_summary = {
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]})",
      " {\n \"model\" :\t\"gpt-4o\" , \"messages\":[{\"role\":\"user\"}] } \n",
      R"({"messages":[{"role":"user","model":"inner"}],"metadata":{"model":"x"},"model":"m"})",
      R"({"model":"a","messages":[{"role":"user"}],"model":"c","seed":0e400})",
      R"({"mod\u0065l":"a","messages":[{"role":"user","content":"caf\u00e9 🙂"}]})",
      R"({"model":"modèle-🙂","messages":[{"role":"user"}],"stream":true})",
  };
  for (const auto& text : located_by_summary) {
    RequestShape shape;
    const auto summary = summarize_request(text, ApiKind::chat_completions, shape);
    ASSERT_FALSE(summary.problem) << text;
    ASSERT_FALSE(summary.model_values.empty()) << text;
    for (const auto& [offset, size] : summary.model_values) {
      EXPECT_EQ(text[offset], '"') << text;
      EXPECT_EQ(text[offset + size - 1], '"') << text;
    }
    std::string summarized_text = text;
    const RequestBody by_summary(summarized_text, &summary);
    std::string walked_text = text;
    const RequestBody walked(walked_text);
    for (const bool ask_usage : {false, true}) {
      EXPECT_EQ(by_summary.rewrite(nullptr, "provider/m \"q\"", ask_usage, false),
                walked.rewrite(nullptr, "provider/m \"q\"", ask_usage, false))
          << text;
    }
    EXPECT_TRUE(by_summary.located());
  }
}

TEST(RequestBodyTest, ASummaryLeavesTheBodyToAWalkWhenAModelIsNotAPlainStringInPlace) {
  const std::vector<std::string> walked = {
      R"({"model":"gpt\u002d4o","messages":[{"role":"user"}]})",
      R"({"model":"\u0067pt-4o","messages":[{"role":"user"}]})",
      R"({"model":"a\"b","messages":[{"role":"user"}]})",
      R"({"model":5,"model":"gpt-4o","messages":[{"role":"user"}]})",
      R"({"model":"gpt-4o","messages":[{"role":"user"}],"model":"x\ty"})",
  };
  for (const auto& text : walked) {
    RequestShape shape;
    const auto summary = summarize_request(text, ApiKind::chat_completions, shape);
    EXPECT_TRUE(summary.model_values.empty()) << text;
  }
}

TEST(RequestBodyTest, NineMebibyteRequestIsSpliced) {
  std::string content;
  content.reserve(9u << 20);
  while (content.size() < (9u << 20)) content += R"(Lorem ipsum \"dolor\" sit amet, caf\u00e9.\n)";
  const std::string tail = R"(,"messages":[{"role":"user","content":")" + content + R"("}],"seed":1e400})";
  const auto result = rewrite(R"({"model":"a")" + tail, "provider-model", true);
  ASSERT_TRUE(result.located);
  EXPECT_EQ(result.text,
            R"({"model":"provider-model")" + tail.substr(0, tail.size() - 1) +
                R"(,"stream_options":{"include_usage":true}})");
}

TEST(RequestBodyTest, ALargeBodyLeavesNoLargeParserBehind) {
  // A 9 MiB request: located and rewritten as any other, after which this thread's parser holds
  // no more than 64 KiB (it would otherwise keep about six bytes per byte of the largest body).
  std::string body = R"({"model":"gpt-4o","messages":[{"role":"user","content":")";
  body.append(9 * 1024 * 1024, 'x');
  body.append(R"("}]})");
  const auto result = rewrite(body, "gpt-4o-2024-08-06", false);
  ASSERT_TRUE(result.located);
  EXPECT_TRUE(result.text.starts_with(R"({"model":"gpt-4o-2024-08-06","messages":)"));
  EXPECT_EQ(result.text.size(), body.size() + 11);
  EXPECT_LE(thread_parser().capacity(), 64u * 1024);
}

}  // namespace
}  // namespace cutover::providers
