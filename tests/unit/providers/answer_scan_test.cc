#include "providers/answer_scan.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "providers/openai_dialect.h"

namespace cutover::providers {
namespace {

namespace json = boost::json;

constexpr std::string_view kClientModel = "gpt-4o";

// An answer of OpenAI's as it comes (577 bytes), with refusal, annotations and token details.
constexpr std::string_view kOpenAiAnswer =
    R"({"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJK","object":"chat.completion","created":1741569952,)"
    R"("model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant",)"
    R"("content":"Hi! How can I help?","refusal":null,"annotations":[]},"logprobs":null,)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,)"
    R"("total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},)"
    R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
    R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},)"
    R"("system_fingerprint":"fp_fc9f1d7035"})";

// What the gateway does today: a DOM, normalize_response(), serialize.
struct DomPath {
  bool ok = false;
  json::value normalized;
  Usage usage;
};

DomPath dom_path(std::string_view body) {
  DomPath result;
  boost::system::error_code ec;
  result.normalized = json::parse(body, ec);
  if (ec) return result;
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  result.ok =
      !normalize_response(result.normalized, ApiKind::chat_completions, identity, result.usage);
  return result;
}

std::vector<std::optional<std::string_view>> finish_reasons(const PlainAnswer& answer) {
  return {answer.finish_reasons().begin(), answer.finish_reasons().end()};
}

void expect_same_usage(const Usage& scanned, const Usage& dom, std::string_view body) {
  EXPECT_EQ(scanned.present, dom.present) << body;
  EXPECT_EQ(scanned.prompt_tokens, dom.prompt_tokens) << body;
  EXPECT_EQ(scanned.completion_tokens, dom.completion_tokens) << body;
  EXPECT_EQ(scanned.total_tokens, dom.total_tokens) << body;
  EXPECT_EQ(scanned.cached_prompt_tokens, dom.cached_prompt_tokens) << body;
  EXPECT_EQ(scanned.cache_creation_prompt_tokens, dom.cache_creation_prompt_tokens) << body;
}

// The scan agrees with the DOM path on a body: same usage and finish reasons, and where it says
// the model is all that changes, the spliced body parses to the normalized DOM.
void expect_equivalent(std::string body, bool needs_only_model) {
  const auto dom = dom_path(body);
  ASSERT_TRUE(dom.ok) << body;
  PlainAnswer answer(body);
  ASSERT_TRUE(answer.is_completion()) << body;
  EXPECT_EQ(answer.needs_only_model(), needs_only_model) << body;
  expect_same_usage(answer.usage(), dom.usage, body);
  const auto& choices = dom.normalized.at("choices").as_array();
  ASSERT_EQ(answer.finish_reasons().size(), choices.size()) << body;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    const auto& reason = choices[i].at("finish_reason");
    if (reason.is_null()) {
      EXPECT_FALSE(answer.finish_reasons()[i].has_value()) << body;
    } else {
      EXPECT_EQ(answer.finish_reasons()[i], std::string_view(reason.as_string())) << body;
    }
  }
  const auto spliced = answer.spliced(kClientModel);
  ASSERT_EQ(spliced.has_value(), needs_only_model) << body;
  if (spliced) {
    EXPECT_EQ(json::parse(*spliced), dom.normalized) << *spliced;
  }
}

TEST(PlainAnswerTest, AgreesWithTheDomPathOnRealLookingAnswers) {
  struct Case {
    const char* name;
    std::string body;
    bool needs_only_model;
  } cases[] = {
      {"openai plain", std::string(kOpenAiAnswer), true},
      {"cached tokens",
       R"({"id":"chatcmpl-1","object":"chat.completion","created":1741569952,"model":"gpt-4o",)"
       R"("choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"logprobs":null,)"
       R"("finish_reason":"stop"}],"usage":{"prompt_tokens":2006,"completion_tokens":300,)"
       R"("total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}},)"
       R"("system_fingerprint":null})",
       true},
      {"tool calls",
       R"({"id":"chatcmpl-2","object":"chat.completion","created":1741569952,"model":"gpt-4o",)"
       R"("choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[)"
       R"({"id":"call_a","type":"function","function":{"name":"get_weather",)"
       R"("arguments":"{\"city\":\"Paris\"}"}}],"refusal":null},"finish_reason":"tool_calls"}],)"
       R"("usage":{"prompt_tokens":80,"completion_tokens":17,"total_tokens":97},)"
       R"("system_fingerprint":"fp_1"})",
       true},
      {"multiple choices",
       R"({"id":"chatcmpl-3","object":"chat.completion","created":1,"model":"m","choices":[)"
       R"({"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"},)"
       R"({"index":1,"message":{"role":"assistant","content":"b"},"finish_reason":"length"},)"
       R"({"index":2,"message":{"role":"assistant","content":"c"},"finish_reason":null}],)"
       R"("usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8},)"
       R"("system_fingerprint":"fp"})",
       true},
      {"usage absent",
       R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
       R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
       R"("finish_reason":"stop"}]})",
       true},
      {"usage null",
       R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
       R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
       R"("finish_reason":"stop"}],"usage":null})",
       true},
      {"relay quirks",
       R"({"model":"deepseek-v3.2","choices":[{"message":{"content":"hi"},"finish_reason":"eos"}],)"
       R"("usage":{"prompt_tokens":5,"generated_tokens":7}})",
       false},
      {"deepseek usage extras",
       R"({"id":"x","object":"chat.completion","created":1,"model":"deepseek-chat",)"
       R"("system_fingerprint":"fp","choices":[{"index":0,"message":{"role":"assistant",)"
       R"("content":"a"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,)"
       R"("completion_tokens":2,"total_tokens":12,"prompt_cache_hit_tokens":8,)"
       R"("prompt_cache_miss_tokens":2}})",
       false},
      {"empty choices",
       R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
       R"("choices":[]})",
       true},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    expect_equivalent(c.body, c.needs_only_model);
  }
}

TEST(PlainAnswerTest, SplicesOnlyTheModelKeepingEveryOtherByte) {
  std::string body =
      "{\n  \"id\" : \"chatcmpl-1\",\n  \"object\": \"chat.completion\",\n  \"created\": 17,\n"
      "  \"model\" :  \"gpt-4o-2024-08-06\"  ,\n  \"x-extra\": [1.50, 1e400, "
      "12345678901234567890123],\n"
      "  \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"hi\"},"
      " \"finish_reason\": \"stop\"}],\n  \"system_fingerprint\": null\n}\n";
  // 1e400 and a 23-digit integer: the DOM path would rewrite them, but simdjson refuses them.
  PlainAnswer refused(body);
  EXPECT_FALSE(refused.is_completion());

  body =
      "{\n  \"id\" : \"chatcmpl-1\",\n  \"object\": \"chat.completion\",\n  \"created\": 17,\n"
      "  \"model\" :  \"gpt-4o-2024-08-06\"  ,\n  \"x-extra\": [1.50, 0.10000000000000000001],\n"
      "  \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"hi\"},"
      " \"finish_reason\": \"stop\"}],\n  \"system_fingerprint\": null\n}\n";
  PlainAnswer answer(body);
  ASSERT_TRUE(answer.needs_only_model());
  EXPECT_EQ(answer.model_bytes(), "\"gpt-4o-2024-08-06\"");
  EXPECT_EQ(
      *answer.spliced("gpt-4o"),
      "{\n  \"id\" : \"chatcmpl-1\",\n  \"object\": \"chat.completion\",\n  \"created\": 17,\n"
      "  \"model\" :  \"gpt-4o\"  ,\n  \"x-extra\": [1.50, 0.10000000000000000001],\n"
      "  \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": "
      "\"hi\"}, \"finish_reason\": \"stop\"}],\n  \"system_fingerprint\": null\n}\n");
}

TEST(PlainAnswerTest, NumbersTheDomPathWouldBreakAreKeptAsWritten) {
  // Boost.JSON 1.81 reads 0e2040 as NaN and writes it back as `NaN`, which is not JSON.
  std::string body =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"x-score":0e2040})";
  const auto dom = dom_path(body);
  ASSERT_TRUE(dom.ok);
  EXPECT_NE(json::serialize(dom.normalized).find("NaN"), std::string::npos);
  PlainAnswer answer(body);
  ASSERT_TRUE(answer.needs_only_model());
  const auto spliced = answer.spliced(kClientModel);
  EXPECT_NE(spliced->find(R"("x-score":0e2040})"), std::string::npos);
}

TEST(PlainAnswerTest, ModelTwiceTakesTheDomPath) {
  // The DOM keeps one `model` (Boost.JSON keeps the last value of a repeated key) and sets it;
  // the scan does not guess and leaves the answer to the DOM path.
  std::string body =
      R"({"id":"x","object":"chat.completion","created":1,"model":"a","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"model":"b"})";
  const auto dom = dom_path(body);
  ASSERT_TRUE(dom.ok);
  EXPECT_EQ(json::serialize(dom.normalized).find("\"model\""),
            json::serialize(dom.normalized).rfind("\"model\""));
  PlainAnswer answer(body);
  EXPECT_TRUE(answer.is_completion());
  EXPECT_FALSE(answer.needs_only_model());
  EXPECT_TRUE(answer.model_bytes().empty());
  EXPECT_FALSE(answer.spliced(kClientModel));
}

TEST(PlainAnswerTest, OtherRepeatedKeysCountWithTheirLastValueAsInTheDom) {
  expect_equivalent(
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,)"
      R"("total_tokens":2},"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}})",
      false);
  expect_equivalent(
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop","finish_reason":"max_tokens"}]})",
      false);
  // A repeated key the scan does not read is passed as it is: parsed, it is the DOM's answer.
  expect_equivalent(
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("service_tier":"a","choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"service_tier":"b"})",
      true);
}

TEST(PlainAnswerTest, ModelNamesAreEscapedAsTheDomPathWritesThem) {
  std::string body =
      R"({"id":"x","object":"chat.completion","created":1,"model":"gpt\u002d4o\/mini \"q\"",)"
      R"("system_fingerprint":"f","choices":[{"index":0,"message":{"role":"assistant",)"
      R"("content":"a"},"finish_reason":"stop"}]})";
  PlainAnswer answer(body);
  ASSERT_TRUE(answer.needs_only_model());
  EXPECT_EQ(answer.model_bytes(), R"("gpt\u002d4o\/mini \"q\"")");
  const std::string client = "we\"ird\\name/\xc3\xa9\xf0\x9f\x99\x82\x01";
  const auto spliced = answer.spliced(client);
  ASSERT_TRUE(spliced);
  const auto model_start = spliced->find("\"model\":") + 8;
  EXPECT_EQ(spliced->substr(model_start, spliced->find(",\"system") - model_start),
            json::serialize(json::string(client)));
  EXPECT_EQ(json::parse(*spliced).at("model").as_string(), client);
}

TEST(PlainAnswerTest, EscapedAndUnicodeContentIsPassedAsWritten) {
  // The DOM path would write \u00e9 as UTF-8 and drop the escaped slash: the scan keeps both.
  const std::string content = R"("caf\u00e9 \"quoted\" \/ \ud83d\ude00 日本語 🙂\n\t\\")";
  std::string body =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":)" +
      content + R"(},"finish_reason":"stop"}]})";
  expect_equivalent(body, true);
  PlainAnswer answer(body);
  EXPECT_NE(answer.spliced(kClientModel)->find(content), std::string::npos);
}

TEST(PlainAnswerTest, EscapedKeysAreRecognised) {
  std::string body =
      R"({"id":"x","ob\u006aect":"chat.completion","created":1,"mod\u0065l":"m",)"
      R"("system_fingerprint":"f","choices":[{"index":0,"message":{"role":"assistant",)"
      R"("content":"a"},"finish_reason":"stop"}]})";
  expect_equivalent(body, true);
  PlainAnswer answer(body);
  EXPECT_EQ(answer.model_bytes(), "\"m\"");

  // Keys the scan matches on their raw bytes, written with escapes, in every object it reads.
  std::string nested =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("ch\u006fices":[{"ind\u0065x":0,"m\u0065ssage":{"r\u006fle":"assistant",)"
      R"("c\u006fntent":"a"},"finish\u005freason":"length"}],)"
      R"("us\u0061ge":{"pr\u006fmpt_tokens":7,"completion_t\u006fkens":3,"total_tokens":10,)"
      R"("prompt_tokens_details":{"c\u0061ched_tokens":2}}})";
  expect_equivalent(nested, true);
  PlainAnswer escaped(nested);
  ASSERT_TRUE(escaped.is_completion());
  EXPECT_EQ(finish_reasons(escaped), (std::vector<std::optional<std::string_view>>{"length"}));
  EXPECT_EQ(escaped.usage().prompt_tokens, 7);
  EXPECT_EQ(escaped.usage().completion_tokens, 3);
  EXPECT_EQ(escaped.usage().cached_prompt_tokens, 2);
}

// A key is read from the document's bytes up to its closing quote unless it holds an escape:
// an escaped quote or backslash must not end it early, and a key after it must still be found.
TEST(PlainAnswerTest, KeysWithEscapedQuotesAndBackslashesAreReadWhole) {
  std::string body =
      R"({"id":"x","object":"chat.completion","created":1,"say \"model\"":"not it",)"
      R"("back\\":1,"model":"m","system_fingerprint":"f","choices":[{"index":0,)"
      R"("message":{"role":"assistant","content":"a","note\"s":2},"finish_reason":"stop"}],)"
      R"("usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}})";
  expect_equivalent(body, true);
  PlainAnswer answer(body);
  ASSERT_TRUE(answer.is_completion());
  EXPECT_EQ(answer.model_bytes(), "\"m\"");
  EXPECT_EQ(answer.usage().prompt_tokens, 4);

  // The same model key twice, once escaped: the DOM keeps the last, so the scan must see both.
  std::string twice =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","mod\u0065l":"n",)"
      R"("system_fingerprint":"f","choices":[{"index":0,"message":{"role":"assistant",)"
      R"("content":"a"},"finish_reason":"stop"}]})";
  expect_equivalent(twice, false);
  EXPECT_EQ(PlainAnswer(twice).model_bytes(), "");
}

TEST(PlainAnswerTest, NumbersWhereStringsAreExpectedTakeTheDomPath) {
  const std::string head = R"({"id":"x","object":"chat.completion","created":1,)";
  const std::string choice =
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"}])";
  for (
      const std::string& body : std::vector<std::string>{
          head + R"("model":5,"system_fingerprint":"f",)" + choice + "}",
          R"({"id":5,"object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)" +
              choice + "}",
          R"({"id":"x","object":7,"created":1,"model":"m","system_fingerprint":"f",)" + choice +
              "}",
          head + R"("model":"m","system_fingerprint":"f","choices":[{"index":0,)"
                 R"("message":{"role":1,"content":"a"},"finish_reason":"stop"}]})",
      }) {
    SCOPED_TRACE(body);
    expect_equivalent(body, false);
  }
  // A number where the DOM path needs text is a 502 there: not "only the model" here either.
  for (const std::string& body : std::vector<std::string>{
           head + R"("model":"m","system_fingerprint":"f","choices":[{"index":0,)"
                  R"("message":{"role":"assistant","content":5},"finish_reason":"stop"}]})",
           head + R"("model":"m","system_fingerprint":"f","choices":[{"index":0,)"
                  R"("message":{"role":"assistant","content":"a"},"finish_reason":1}]})",
       }) {
    SCOPED_TRACE(body);
    EXPECT_FALSE(dom_path(body).ok);
    std::string copy = body;
    EXPECT_FALSE(PlainAnswer(copy).needs_only_model());
  }
}

TEST(PlainAnswerTest, CountsAreReadAsNormalizeResponseReadsThem) {
  const std::string head =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"usage":)";
  for (
      const char* usage : {
          R"({"prompt_tokens":"12","completion_tokens":" 7","total_tokens":"+19"})",
          R"({"prompt_tokens":"12abc","completion_tokens":"abc","total_tokens":"0x10"})",
          R"({"prompt_tokens":"99999999999999999999","completion_tokens":-3})",
          R"({"prompt_tokens":12.9,"completion_tokens":-2.5,"total_tokens":1e300})",
          // simdjson 3.0.1 reads the first as 2e-06; the DOM path's Boost.JSON reads 1.0
          R"({"prompt_tokens":0.99999999999999999999999,"completion_tokens":7.92233720368547758089,)"
          R"("total_tokens":4.99999999999999999999})",
          R"({"prompt_tokens":18446744073709551615,"completion_tokens":9223372036854775807})",
          R"({"prompt_tokens":true,"completion_tokens":null,"total_tokens":{}})",
          R"({"input_tokens":4,"output_tokens":5,"cache_read_input_tokens":3})",
          R"({"prompt_token_count":4,"candidates_token_count":5,"total_token_count":"9"})",
          R"({"prompt_tokens":"x","input_tokens":8,"completion_tokens":1})",
          R"({"prompt_tokens":1,"prompt_tokens":"bad","completion_tokens":1,"input_tokens":6})",
          R"({"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"cached_tokens":1,)"
          R"("prompt_tokens_details":{"cached_tokens":"9","cache_creation_tokens":2.5}})",
          R"({"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"cached_tokens":1,)"
          R"("prompt_tokens_details":null})",
          R"({"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,)"
          R"("prompt_tokens_details":{"cached_tokens":4},"prompt_tokens_details":[]})",
          R"({"total_tokens":0})",
          R"({"cached_tokens":5})",
          R"({})",
          R"(5)",
          R"("12")",
          R"([1,2,3])",
      }) {
    SCOPED_TRACE(usage);
    expect_equivalent(head + usage + "}", false);
  }
}

TEST(PlainAnswerTest, ExactlyOpenAiUsagePassesWithIntegerCounts) {
  const std::string head =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"usage":)";
  expect_equivalent(head + R"({"total_tokens":3,"completion_tokens":2,"prompt_tokens":1,)"
                           R"("completion_tokens_details":{"reasoning_tokens":1}}})",
                    true);
  expect_equivalent(head + R"({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3.0}})",
                    false);
  expect_equivalent(head + R"({"prompt_tokens":1,"completion_tokens":2}})", false);
  for (
      const char* usage : {
          R"({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":null})",
          R"({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"completion_tokens_details":[]})",
          R"({"prompt_tokens":18446744073709551615,"completion_tokens":2,"total_tokens":3})",
      }) {
    SCOPED_TRACE(usage);
    expect_equivalent(head + usage + "}", false);
  }
}

TEST(PlainAnswerTest, WhatNormalizeResponseWouldFillTakesTheDomPath) {
  const std::string top =
      R"("id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f")";
  const std::string choice =
      R"({"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"})";
  auto completion = [](std::string_view top_fields, std::string_view one_choice) {
    return "{" + std::string(top_fields) + R"(,"choices":[)" + std::string(one_choice) + "]}";
  };
  expect_equivalent(completion(top, choice), true);
  const std::vector<std::string> changed_top = {
      R"("object":"chat.completion","created":1,"model":"m","system_fingerprint":"f")",
      R"("id":"","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f")",
      R"("id":"x","object":"chat.completion","model":"m","system_fingerprint":"f")",
      R"("id":"x","object":"chat.completion","created":"1","model":"m","system_fingerprint":"f")",
      R"("id":"x","object":"chat.completion","created":1.0,"model":"m","system_fingerprint":"f")",
      R"("id":"x","created":1,"model":"m","system_fingerprint":"f")",
      R"("id":"x","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"f")",
      R"("id":"x","object":"chat.completion","created":1,"model":"m")",
      R"("id":"x","object":"chat.completion","created":1,"system_fingerprint":"f")",
  };
  for (const auto& fields : changed_top) {
    SCOPED_TRACE(fields);
    expect_equivalent(completion(fields, choice), false);
  }
  const std::vector<std::string> changed_choice = {
      R"({"message":{"role":"assistant","content":"a"},"finish_reason":"stop"})",
      R"({"index":"0","message":{"role":"assistant","content":"a"},"finish_reason":"stop"})",
      R"({"index":0,"message":{"role":"assistant","content":"a"}})",
      R"({"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"end_turn"})",
      R"({"index":0,"message":{"content":"a"},"finish_reason":"stop"})",
      R"({"index":0,"message":{"role":"assistant","tool_calls":[]},"finish_reason":"stop"})",
  };
  for (const auto& one_choice : changed_choice) {
    SCOPED_TRACE(one_choice);
    expect_equivalent(completion(top, one_choice), false);
  }
}

TEST(PlainAnswerTest, FinishReasonsAreNormalizedPerChoice) {
  std::string body =
      R"({"choices":[{"message":{"content":"a"},"finish_reason":"max_tokens"},)"
      R"({"message":{"content":"b"},"finish_reason":"tool_use"},{"message":{"content":"c"}},)"
      R"({"message":{"content":"d"},"finish_reason":null},)"
      R"({"message":{"content":"e"},"finish_reason":"content_filter"}]})";
  expect_equivalent(body, false);
  PlainAnswer answer(body);
  using Reason = std::optional<std::string_view>;
  EXPECT_EQ(finish_reasons(answer), (std::vector<Reason>{"length", "tool_calls", std::nullopt,
                                                         std::nullopt, "content_filter"}));
}

TEST(PlainAnswerTest, WhatIsNotACompletionIsLeftToTheDomPath) {
  for (std::string body : {"[1]", R"({"data":[]})", R"({"choices":{}})", R"("choices")", "",
                           R"({"choices":[],"choices":5})", R"({"error":{"message":"x"}})"}) {
    PlainAnswer answer(body);
    EXPECT_FALSE(answer.is_completion()) << body;
    EXPECT_FALSE(answer.needs_only_model()) << body;
    EXPECT_FALSE(answer.usage().present) << body;
    EXPECT_TRUE(answer.finish_reasons().empty()) << body;
  }
}

TEST(PlainAnswerTest, WhatBoostJsonRefusesIsRefused) {
  const std::string head =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
      R"("finish_reason":"stop"}],"extra":)";
  for (const std::string extra : {
           R"("bad \x escape")",
           R"("\ud800 lone")",
           R"("\udc00")",
           "\"ctl \x01\"",
           "\"\xc0\x80 overlong\"",
           "\"\xed\xa0\x80 surrogate\"",
           "tru",
           "nul",
           "01",
           "1.",
           "-",
           "[1,]",
           R"({"a":1,})",
           R"({"a" 1})",
           "[1 2]",
           "NaN",
           "'x'",
           "0e0010040078410413792",
           "1e-99999999999",
           "-0.0E+2147483648",
       }) {
    std::string body = head + extra + "}";
    boost::system::error_code ec;
    json::parse(body, ec);
    ASSERT_TRUE(ec) << body;
    PlainAnswer answer(body);
    EXPECT_FALSE(answer.is_completion()) << body;
    EXPECT_FALSE(answer.spliced(kClientModel)) << body;
    EXPECT_TRUE(answer.finish_reasons().empty()) << body;
  }
  for (std::string body : {head + "1}}", head + "1} x", head + "1}{}", head + "1"}) {
    PlainAnswer answer(body);
    EXPECT_FALSE(answer.is_completion()) << body;
  }
}

TEST(PlainAnswerTest, NestingIsLimitedAsBoostJsonLimitsIt) {
  const std::string head =
      R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"a","x":)";
  // The top-level object, choices, the choice and the message are four levels.
  auto nested = [&](int levels) {
    return head + std::string(levels - 4, '[') + std::string(levels - 4, ']') +
           R"(},"finish_reason":"stop"}]})";
  };
  auto nested_objects = [&](int levels) {
    std::string inner = "1";
    for (int i = 4; i < levels; ++i) inner = R"({"a":)" + inner + "}";
    return head + inner + R"(},"finish_reason":"stop"}]})";
  };
  expect_equivalent(nested(32), true);
  expect_equivalent(nested_objects(32), true);
  for (std::string deep : {nested(33), nested_objects(33)}) {
    boost::system::error_code ec;
    json::parse(deep, ec);
    ASSERT_TRUE(ec);
    EXPECT_FALSE(PlainAnswer(deep).is_completion()) << deep;
  }
}

TEST(PlainAnswerTest, NineMebibyteAnswerIsScannedAndSpliced) {
  std::string content;
  content.reserve(9u << 20);
  while (content.size() < (9u << 20)) content += R"(Lorem ipsum \"dolor\" sit amet, caf\u00e9.\n)";
  std::string body =
      R"({"id":"chatcmpl-big","object":"chat.completion","created":1741569952,"model":"m-large",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":")" +
      content +
      R"("},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2359296,)"
      R"("total_tokens":2359299},"system_fingerprint":"fp"})";
  expect_equivalent(body, true);
  PlainAnswer answer(body);
  const auto spliced = answer.spliced(kClientModel);
  ASSERT_TRUE(spliced);
  EXPECT_EQ(spliced->size(), body.size() - std::string_view("\"m-large\"").size() +
                                 std::string_view("\"gpt-4o\"").size());
  EXPECT_NE(spliced->find(content), std::string::npos);
  EXPECT_EQ(answer.usage().completion_tokens, 2359296);
  EXPECT_EQ(finish_reasons(answer), (std::vector<std::optional<std::string_view>>{"length"}));
}

// What the gateway does with a stream event without the scan: a DOM, normalize_stream_chunk()
// (usage kept: stripping is the caller's decision), serialize.
struct ChunkDomPath {
  bool ok = false;
  json::value normalized;
  Usage usage;
};

ChunkDomPath chunk_dom_path(std::string_view event) {
  ChunkDomPath result;
  boost::system::error_code ec;
  result.normalized = json::parse(event, ec);
  if (ec) return result;
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  ChunkOutcome outcome;
  result.ok = !normalize_stream_chunk(result.normalized, ApiKind::chat_completions, identity,
                                      false, result.usage, outcome) &&
              !outcome.is_error;
  return result;
}

void expect_chunk_equivalent(std::string event, bool needs_only_model) {
  const auto dom = chunk_dom_path(event);
  PlainAnswer chunk(event, AnswerShape::chunk);
  EXPECT_EQ(chunk.needs_only_model(), needs_only_model) << event;
  if (!dom.ok) {
    EXPECT_FALSE(chunk.needs_only_model()) << event;
    return;
  }
  expect_same_usage(chunk.usage(), dom.usage, event);
  if (!chunk.needs_only_model()) return;
  const auto& choices = dom.normalized.at("choices").as_array();
  EXPECT_EQ(chunk.choice_count(), choices.size()) << event;
  std::string spliced = "prefix:";
  chunk.append_spliced(spliced, json::serialize(json::string_view(kClientModel)));
  ASSERT_EQ(spliced.substr(0, 7), "prefix:");
  EXPECT_EQ(json::parse(spliced.substr(7)), dom.normalized) << spliced;
}

constexpr std::string_view kChunkStart =
    R"({"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1767225600,)"
    R"("model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3",)";

TEST(PlainAnswerChunkTest, AgreesWithTheDomPathOnAStreamsEvents) {
  const std::string start(kChunkStart);
  // Role, content, finish and usage chunks as OpenAI streams them, and variants.
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":{"role":"assistant","content":"",)"
                                  R"("refusal":null},"logprobs":null,"finish_reason":null}],"usage":null})",
                          true);
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":{"content":"Hel\"lo \u00e9"},)"
                                  R"("logprobs":null,"finish_reason":null}]})",
                          true);
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":{},"logprobs":null,)"
                                  R"("finish_reason":"stop"}],"usage":null})",
                          true);
  expect_chunk_equivalent(start + R"("choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,)"
                                  R"("total_tokens":21,"prompt_tokens_details":{"cached_tokens":3}}})",
                          true);
  // Usage that reports no tokens is left as it is.
  expect_chunk_equivalent(start + R"("choices":[],"usage":{}})", true);
  expect_chunk_equivalent(start + R"("choices":[],"usage":"none"})", true);
  // Tool call deltas, no system_fingerprint.
  expect_chunk_equivalent(
      R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,)"
      R"("delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":)"
      R"({"name":"f","arguments":""}}]},"finish_reason":null}]})",
      true);
}

TEST(PlainAnswerChunkTest, LeavesToTheDomWhatNormalizationWouldChange) {
  const std::string start(kChunkStart);
  // A finish reason of another vocabulary, a missing delta or finish reason or index, an
  // object of the plain kind, an error event, content that is not text: the DOM path decides.
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":{},"finish_reason":"end_turn"}]})",
                          false);
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"finish_reason":null}]})", false);
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":{}}]})", false);
  expect_chunk_equivalent(start + R"("choices":[{"delta":{},"finish_reason":null}]})", false);
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":{"content":7},"finish_reason":null}]})",
                          false);
  expect_chunk_equivalent(start + R"("choices":[{"index":0,"delta":"x","finish_reason":null}]})", false);
  expect_chunk_equivalent(start + R"("error":{"message":"overloaded"},"choices":[]})", false);
  expect_chunk_equivalent(
      R"({"id":"c","object":"chat.completion","created":1,"model":"m","choices":[]})", false);
  expect_chunk_equivalent(R"({"object":"chat.completion.chunk","created":1,"model":"m","choices":[]})",
                          false);
  expect_chunk_equivalent(
      R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","model":"n","choices":[]})",
      false);
  expect_chunk_equivalent(R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m"})", false);
  // Usage under other names is rewritten into OpenAI's.
  expect_chunk_equivalent(start + R"("choices":[],"usage":{"input_tokens":9,"output_tokens":"12"}})",
                          false);
}

TEST(PlainAnswerChunkTest, ARepeatedUsageCountsWithItsLastValueNullOrNot) {
  const std::string start(kChunkStart);
  const std::string figures = R"({"prompt_tokens":9,"completion_tokens":12,"total_tokens":21})";
  // The null shortcut must forget figures read before it, and figures after it must count.
  expect_chunk_equivalent(start + R"("choices":[],"usage":)" + figures + R"(,"usage":null})", false);
  expect_chunk_equivalent(start + R"("choices":[],"usage":null,"usage":)" + figures + "}", false);
  const auto chunk = [](std::string text) {
    return PlainAnswer(text, AnswerShape::chunk).usage().present;
  };
  EXPECT_FALSE(chunk(start + R"("choices":[],"usage":)" + figures + R"(,"usage":null})"));
  EXPECT_TRUE(chunk(start + R"("choices":[],"usage":null,"usage":)" + figures + "}"));
  EXPECT_FALSE(chunk(start + R"("choices":[],"usage":null})"));
}

TEST(PlainAnswerChunkTest, ReportsFinishReasonsAndChoiceCounts) {
  std::string event(kChunkStart);
  event += R"("choices":[{"index":0,"delta":{},"finish_reason":"length"},)"
           R"({"index":1,"delta":{},"finish_reason":null}]})";
  PlainAnswer chunk(event, AnswerShape::chunk);
  ASSERT_TRUE(chunk.needs_only_model());
  EXPECT_EQ(chunk.choice_count(), 2u);
  EXPECT_EQ(finish_reasons(chunk),
            (std::vector<std::optional<std::string_view>>{"length", std::nullopt}));
  EXPECT_FALSE(chunk.usage().present);
}

// Scans `event` with `memo` and on its own, and expects the same verdicts and the same client
// bytes from both.
void expect_memo_agrees(ShapeMemo& memo, std::string event) {
  std::string alone = event;
  const PlainAnswer fresh(alone, memo.shape());
  const PlainAnswer memoized(event, memo);
  EXPECT_EQ(memoized.is_completion(), fresh.is_completion()) << event;
  EXPECT_EQ(memoized.needs_only_model(), fresh.needs_only_model()) << event;
  expect_same_usage(memoized.usage(), fresh.usage(), event);
  EXPECT_EQ(finish_reasons(memoized), finish_reasons(fresh)) << event;
  EXPECT_EQ(memoized.model_bytes(), fresh.model_bytes()) << event;
  EXPECT_EQ(memoized.spliced(kClientModel), fresh.spliced(kClientModel)) << event;
}

std::string content_chunk(std::string_view content_json) {
  return std::string(kChunkStart) + R"("choices":[{"index":0,"delta":{"content":)" +
         std::string(content_json) + R"(},"logprobs":null,"finish_reason":null}],"usage":null})";
}

TEST(ShapeMemoChunkTest, ContentChunksTakeTheKeptVerdict) {
  ShapeMemo memo(AnswerShape::chunk);
  const std::string start(kChunkStart);
  expect_memo_agrees(
      memo, start + R"("choices":[{"index":0,"delta":{"role":"assistant","content":"",)"
                    R"("refusal":null},"logprobs":null,"finish_reason":null}],"usage":null})");
  EXPECT_EQ(memo.reuses(), 0u);
  expect_memo_agrees(memo, content_chunk(R"("Hello")"));
  EXPECT_EQ(memo.reuses(), 0u);  // its role key is gone: another shape, scanned and kept
  const std::vector<std::string_view> contents = {
      R"("")",
      R"(" world, and a longer piece of text than before")",
      R"("esc\"aped\\ \/ \b\f\n\r\t")",
      R"("caf\u00e9 \u4e2d \ud83d\ude00")",
      "\"raw utf-8: caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"",
      R"("'single' {braces} [brackets] ,:")",
  };
  for (const auto content : contents) expect_memo_agrees(memo, content_chunk(content));
  EXPECT_EQ(memo.reuses(), contents.size());
  expect_memo_agrees(memo, start + R"("choices":[{"index":0,"delta":{},"logprobs":null,)"
                                   R"("finish_reason":"stop"}],"usage":null})");
  expect_memo_agrees(memo, start + R"("choices":[],"usage":{"prompt_tokens":9,)"
                                   R"("completion_tokens":12,"total_tokens":21}})");
  EXPECT_EQ(memo.reuses(), contents.size());
}

TEST(ShapeMemoChunkTest, FreeStringsBeforeTheModelMoveItsBytes) {
  // A relay's padding of varying length ahead of `model`: the model's bytes are found where they
  // moved to, and the tool call's arguments vary too.
  const auto chunk = [](std::string_view pad, std::string_view arguments) {
    return R"({"obfuscation":")" + std::string(pad) +
           R"(","id":"c","object":"chat.completion.chunk","created":1,"model":"m-1",)"
           R"("choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":")" +
           std::string(arguments) + R"("}}]},"finish_reason":null}]})";
  };
  ShapeMemo memo(AnswerShape::chunk);
  expect_memo_agrees(memo, chunk("x", "{"));
  expect_memo_agrees(memo, chunk("xyzxyzxyz", R"(\"city\")"));
  expect_memo_agrees(memo, chunk("", ":"));
  EXPECT_EQ(memo.reuses(), 2u);
}

TEST(ShapeMemoChunkTest, ChangesOutsideFreeStringsAreScannedAgain) {
  ShapeMemo memo(AnswerShape::chunk);
  expect_memo_agrees(memo, content_chunk(R"("a")"));
  std::string other_model = content_chunk(R"("b")");
  other_model.replace(other_model.find("gpt-4.1"), 7, "gpt-4.2");
  const std::vector<std::string> changed = {
      other_model,
      content_chunk("7"),
      content_chunk("null"),
      // A quote inside the content ends the string early: what follows is not the kept bytes.
      content_chunk(R"("a","role":"b")"),
      content_chunk(R"("a"},"logprobs":null,"finish_reason":"length"}],"x":{"y":"")"),
      content_chunk(R"("a" )"),
      content_chunk(R"("a")") + " x",
  };
  for (const auto& event : changed) {
    const auto before = memo.reuses();
    expect_memo_agrees(memo, event);
    EXPECT_EQ(memo.reuses(), before) << event;
  }
}

TEST(ShapeMemoChunkTest, StringsEitherParserMightRefuseAreScannedAgain) {
  const std::vector<std::string> refused = {
      R"("lone high \ud83d")", R"("lone low \ude00")",   R"("high then other \ud83d\u0041")",
      R"("bad escape \x")",    R"("short \u12")",        R"("not hex \u12g4")",
      "\"control \x01 char\"", "\"tab \t raw\"",         "\"bad utf-8 \xc3\x28\"",
      "\"overlong \xc0\xaf\"", "\"cut utf-8 \xe4\xb8\"", R"("backslash at the end \")",
  };
  for (const auto& content : refused) {
    ShapeMemo memo(AnswerShape::chunk);
    expect_memo_agrees(memo, content_chunk(R"("kept")"));
    expect_memo_agrees(memo, content_chunk(content));
    EXPECT_EQ(memo.reuses(), 0u) << content;
  }
}

TEST(ShapeMemoChunkTest, ChunksItCannotKeepLeaveItAsItWas) {
  ShapeMemo memo(AnswerShape::chunk);
  expect_memo_agrees(memo, content_chunk(R"("a")"));
  // More slots than it keeps; a chunk the DOM path must read is not kept.
  std::string many = std::string(kChunkStart) + R"("choices":[{"index":0,"delta":{"content":"a"},)"
                                                R"("finish_reason":null}],"x":[)";
  for (std::size_t i = 0; i < ShapeMemo::kMaxSlots; ++i) many += i == 0 ? "1" : ",1";
  many += "]}";
  expect_memo_agrees(memo, many);
  expect_memo_agrees(memo, many);
  expect_memo_agrees(memo, std::string(kChunkStart) + R"("choices":[{"index":0,"delta":{},)"
                                                      R"("finish_reason":"end_turn"}]})");
  EXPECT_EQ(memo.reuses(), 0u);
  expect_memo_agrees(memo, content_chunk(R"("b")"));
  EXPECT_EQ(memo.reuses(), 1u);
}

// A chunk as OpenAI streams it, with the parts that change from stream to stream as arguments.
std::string stream_chunk(std::string_view id_json, std::string_view created_json,
                         std::string_view delta_json, std::string_view finish_json = "null") {
  return R"({"id":)" + std::string(id_json) + R"(,"object":"chat.completion.chunk","created":)" +
         std::string(created_json) +
         R"(,"model":"gpt-4.1-2025-04-14","system_fingerprint":"fp_b3","choices":[{"index":0,)"
         R"("delta":)" +
         std::string(delta_json) + R"(,"logprobs":null,"finish_reason":)" +
         std::string(finish_json) + R"(}],"usage":null})";
}

std::string usage_chunk(std::string_view id_json, int completion_tokens) {
  return R"({"id":)" + std::string(id_json) +
         R"(,"object":"chat.completion.chunk","created":1767225600,"model":"gpt-4.1-2025-04-14",)"
         R"("choices":[],"usage":{"prompt_tokens":9,"completion_tokens":)" +
         std::to_string(completion_tokens) + R"(,"total_tokens":)" +
         std::to_string(9 + completion_tokens) + "}}";
}

TEST(ShapeMemoChunkTest, TheNextStreamsChunksTakeTheKeptVerdicts) {
  ShapeMemo memo(AnswerShape::chunk);
  const auto stream = [&](std::string_view id, std::string_view created, int tokens) {
    expect_memo_agrees(memo, stream_chunk(id, created, R"({"role":"assistant","content":""})"));
    expect_memo_agrees(memo, stream_chunk(id, created, R"({"content":"Hi"})"));
    expect_memo_agrees(memo, stream_chunk(id, created, R"({"content":" there"})"));
    expect_memo_agrees(memo, stream_chunk(id, created, "{}", R"("stop")"));
    expect_memo_agrees(memo, usage_chunk(id, tokens));
  };
  stream(R"("chatcmpl-A1")", "1767225600", 2);
  EXPECT_EQ(memo.reuses(), 1u);  // the second content chunk
  // Another id (longer), another second, other figures: every chunk matches, and the usage
  // chunk's figures are its own (expect_memo_agrees compares them with a scan's).
  stream(R"("chatcmpl-B22")", "1767225601", 12345);
  EXPECT_EQ(memo.reuses(), 6u);
  expect_memo_agrees(memo, usage_chunk(R"("chatcmpl-B22")", -7));
  EXPECT_EQ(memo.reuses(), 7u);
}

// The gateway reads a stream's chunks as views of the provider's bytes from the kept shapes
// alone: no padding past them, nothing scanned when none matches, and what matches reported as
// a scan reports it.
TEST(ShapeMemoChunkTest, KeptShapesAloneReadAViewOrNothing) {
  ShapeMemo memo(AnswerShape::chunk);
  const auto read_alone = [&](const std::string& chunk) {
    // Exactly the chunk's bytes on the heap: a read past them is AddressSanitizer's to report.
    const auto bytes = std::make_unique<char[]>(chunk.size());
    std::memcpy(bytes.get(), chunk.data(), chunk.size());
    const std::string_view view(bytes.get(), chunk.size());
    const PlainAnswer kept(view, memo, PlainAnswer::KeptShapesOnly{});
    std::string copy = chunk;
    const PlainAnswer fresh(copy, AnswerShape::chunk);
    if (kept.is_completion()) {
      EXPECT_EQ(kept.needs_only_model(), fresh.needs_only_model()) << chunk;
      expect_same_usage(kept.usage(), fresh.usage(), chunk);
      EXPECT_EQ(finish_reasons(kept), finish_reasons(fresh)) << chunk;
      EXPECT_EQ(kept.spliced(kClientModel), fresh.spliced(kClientModel)) << chunk;
      EXPECT_GE(kept.model_bytes().data(), view.data());
      EXPECT_LE(kept.model_bytes().data() + kept.model_bytes().size(), view.data() + view.size());
    } else {
      EXPECT_FALSE(kept.needs_only_model());
    }
    return kept.is_completion();
  };
  const auto content = stream_chunk(R"("chatcmpl-A1")", "1767225600", R"({"content":"Hi"})");
  EXPECT_FALSE(read_alone(content));  // nothing kept yet
  EXPECT_EQ(memo.reuses(), 0u);
  std::string first = content;
  const PlainAnswer scanned(first, memo);  // scanned and kept
  EXPECT_TRUE(
      read_alone(stream_chunk(R"("chatcmpl-A1")", "1767225600", R"({"content":" there"})")));
  EXPECT_TRUE(
      read_alone(stream_chunk(R"("chatcmpl-B2")", "1767225601", R"({"content":"\u00e9"})")));
  EXPECT_EQ(memo.reuses(), 2u);
  EXPECT_FALSE(read_alone(stream_chunk(R"("chatcmpl-A1")", "1767225600", "{}", R"("stop")")));
  EXPECT_FALSE(read_alone(stream_chunk(R"("chatcmpl-A1")", "1767225600", R"({"content":1})")));
  EXPECT_FALSE(read_alone("[DONE]"));
  EXPECT_EQ(memo.reuses(), 2u);
}

// A slot whose value has varied is read where it stands; the others are compared with the bytes
// around them at once, and when one of those differs after all (a new stream's id, an integer
// that only begins like the kept one) the chunk is read slot by slot and the slot noted.
TEST(ShapeMemoChunkTest, SlotsThatHeldAreReadAgainWhenTheyVary) {
  ShapeMemo memo(AnswerShape::chunk);
  // `created` last before the content: the bytes compared at once end with an integer.
  const auto chunk = [](std::string_view id, std::string_view created, std::string_view content) {
    return R"({"id":)" + std::string(id) +
           R"(,"object":"chat.completion.chunk","model":"m-1",)"
           R"("created":)" +
           std::string(created) + R"(,"choices":[{"index":0,"delta":{"content":)" +
           std::string(content) + R"(},"finish_reason":null}]})";
  };
  expect_memo_agrees(memo, chunk(R"("a")", "17", R"("x")"));  // kept
  expect_memo_agrees(memo, chunk(R"("a")", "17", R"("y")"));  // the content varies
  expect_memo_agrees(memo, chunk(R"("a")", "17", R"("zz")"));
  expect_memo_agrees(memo, chunk(R"("a")", "175", R"("w")"));  // 175 is not 17
  expect_memo_agrees(memo, chunk(R"("a")", "175", R"("v")"));
  expect_memo_agrees(memo, chunk(R"("a")", "1", R"("v")"));
  expect_memo_agrees(memo, chunk(R"("b")", "175", R"("u")"));
  expect_memo_agrees(memo, chunk(R"("bb")", "9", R"("t")"));
  expect_memo_agrees(memo, chunk(R"("bb")", "9", R"("")"));
  EXPECT_EQ(memo.reuses(), 8u);
  // What is no slot still tells shapes apart.
  std::string other = chunk(R"("bb")", "9", R"("s")");
  other.replace(other.find("\"index\":0"), 9, "\"index\":1");
  expect_memo_agrees(memo, other);
  expect_memo_agrees(memo, chunk(R"("bb")", "9", "1"));     // not a string: scanned, not kept
  expect_memo_agrees(memo, chunk(R"("")", "9", R"("s")"));  // an empty id: not kept either
  EXPECT_EQ(memo.reuses(), 8u);

  // The same with `created` the last slot: the bytes compared at once end where the tail begins.
  ShapeMemo last(AnswerShape::chunk);
  const auto created_last = [](std::string_view created) {
    return R"({"id":"a","object":"chat.completion.chunk","model":"m-1","choices":[],"created":)" +
           std::string(created) + "}";
  };
  expect_memo_agrees(last, created_last("17"));
  expect_memo_agrees(last, created_last("17"));
  expect_memo_agrees(last, created_last("175"));
  expect_memo_agrees(last, created_last("1"));
  expect_memo_agrees(last, created_last("1"));
  EXPECT_EQ(last.reuses(), 4u);
}

TEST(ShapeMemoChunkTest, IdAndCreatedVaryOnlyWithinTheirKinds) {
  const std::string content = R"({"content":"x"})";
  // Values the scan takes as the kept chunk's: a non-empty id, an integer that fits int64.
  const std::vector<std::pair<std::string_view, std::string_view>> taken = {
      {R"("c-2")", "1767225601"},
      {R"("\u0063")", "0"},
      {R"("c")", "-0"},
      {R"("c")", "-1767225600"},
      {R"("c")", "999999999999999999"},
  };
  // How many chunks took the kept verdict after a chunk with this id and created.
  const auto reuses_after = [&](std::string_view id, std::string_view created) {
    ShapeMemo memo(AnswerShape::chunk);
    expect_memo_agrees(memo, stream_chunk(R"("c-1")", "1767225600", content));
    expect_memo_agrees(memo, stream_chunk(id, created, content));
    return memo.reuses();
  };
  for (const auto& [id, created] : taken) {
    EXPECT_EQ(reuses_after(id, created), 1u) << id << " " << created;
  }
  // Values it reads again: an empty id, an id or created of another type, numbers that are not
  // plain integers, integers past 18 digits, JSON that is not.
  const std::vector<std::pair<std::string_view, std::string_view>> scanned = {
      {R"("")", "1767225600"},
      {"7", "1767225600"},
      {R"("c")", R"("1767225600")"},
      {R"("c")", "1.5"},
      {R"("c")", "1e3"},
      {R"("c")", "1767225600.0"},
      {R"("c")", "0123"},
      {R"("c")", "-"},
      {R"("c")", "9223372036854775807"},
      {R"("c")", "9223372036854775808"},
      {R"("c")", "+1"},
      {R"("c")", "null"},
      {R"("c")", " 1"},
  };
  for (const auto& [id, created] : scanned) {
    EXPECT_EQ(reuses_after(id, created), 0u) << id << " " << created;
  }
}

TEST(ShapeMemoChunkTest, TheLeastRecentlyMatchedShapeMakesRoom) {
  ShapeMemo memo(AnswerShape::chunk);
  // Five shapes: deltas with another key each.
  const auto shape = [](int n) {
    return stream_chunk(R"("c")", "1", R"({"content":"x","k)" + std::to_string(n) + R"(":1})");
  };
  for (int n = 0; n < 4; ++n) expect_memo_agrees(memo, shape(n));
  for (int n = 1; n < 4; ++n) expect_memo_agrees(memo, shape(n));  // shape 0 is now the oldest
  EXPECT_EQ(memo.reuses(), 3u);
  expect_memo_agrees(memo, shape(4));  // kept in shape 0's place
  EXPECT_EQ(memo.reuses(), 3u);
  for (int n = 1; n < 5; ++n) expect_memo_agrees(memo, shape(n));
  EXPECT_EQ(memo.reuses(), 7u);
  expect_memo_agrees(memo, shape(0));
  EXPECT_EQ(memo.reuses(), 7u);
}

// kOpenAiAnswer with what varies from answer to answer as arguments.
std::string openai_answer(std::string_view id, std::string_view created, std::string_view content,
                          int prompt, int completion, int cached, int reasoning) {
  std::string body(kOpenAiAnswer);
  const auto replace = [&](std::string_view from, std::string_view to) {
    const auto at = body.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    body.replace(at, from.size(), to);
  };
  replace("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJK", id);
  replace("1741569952", created);
  replace("Hi! How can I help?", content);
  replace(R"("prompt_tokens":19,"completion_tokens":10,"total_tokens":29)",
          R"("prompt_tokens":)" + std::to_string(prompt) + R"(,"completion_tokens":)" +
              std::to_string(completion) + R"(,"total_tokens":)" +
              std::to_string(prompt + completion));
  replace(R"("cached_tokens":0)", R"("cached_tokens":)" + std::to_string(cached));
  replace(R"("reasoning_tokens":0)", R"("reasoning_tokens":)" + std::to_string(reasoning));
  return body;
}

TEST(ShapeMemoAnswerTest, AnswersOfOneShapeTakeTheKeptVerdictWithTheirOwnUsage) {
  ShapeMemo memo(AnswerShape::completion);
  expect_memo_agrees(memo, openai_answer("chatcmpl-1", "1741569952", "Hi!", 19, 10, 0, 0));
  EXPECT_EQ(memo.reuses(), 0u);
  expect_memo_agrees(memo, openai_answer("chatcmpl-22", "1741569999",
                                         "A longer answer, with \\\"quotes\\\" and caf\\u00e9.",
                                         1234, 567, 1024, 64));
  expect_memo_agrees(memo, openai_answer("x", "0", "", 0, 0, 0, 0));
  expect_memo_agrees(memo,
                     openai_answer("chatcmpl-3", "1741569952", std::string(5000, 'a'), 7, 8, 3, 1));
  EXPECT_EQ(memo.reuses(), 3u);
  // The usage is the answer's own, as a scan reads it.
  std::string body = openai_answer("chatcmpl-4", "1741569952", "ok", 321, 45, 300, 2);
  const PlainAnswer answer(body, memo);
  EXPECT_EQ(memo.reuses(), 4u);
  EXPECT_TRUE(answer.usage().present);
  EXPECT_EQ(answer.usage().prompt_tokens, 321);
  EXPECT_EQ(answer.usage().completion_tokens, 45);
  EXPECT_EQ(answer.usage().total_tokens, 366);
  EXPECT_EQ(answer.usage().cached_prompt_tokens, 300);
}

TEST(ShapeMemoAnswerTest, CountsInAnotherFormAreScannedAgain) {
  ShapeMemo memo(AnswerShape::completion);
  const std::string kept = openai_answer("chatcmpl-1", "1741569952", "Hi!", 19, 10, 0, 0);
  expect_memo_agrees(memo, kept);
  const auto with = [&](std::string_view from, std::string_view to) {
    std::string body = kept;
    body.replace(body.find(from), from.size(), to);
    return body;
  };
  const std::vector<std::string> others = {
      with(R"("prompt_tokens":19)", R"("prompt_tokens":19.0)"),
      with(R"("prompt_tokens":19)", R"("prompt_tokens":"19")"),
      with(R"("prompt_tokens":19)", R"("prompt_tokens":1e1)"),
      with(R"("total_tokens":29)", R"("total_tokens":1234567890123456789)"),
      with(R"("cached_tokens":0)", R"("cached_tokens":null)"),
      with(R"("completion_tokens":10)", R"("completion_tokens":010)"),
  };
  for (const auto& body : others) {
    const auto before = memo.reuses();
    expect_memo_agrees(memo, body);
    EXPECT_EQ(memo.reuses(), before) << body;
  }
}

TEST(ShapeMemoAnswerTest, ARepeatedCachedCountLeavesTheAnswerToTheDom) {
  // The DOM counts the last of two; a slot could not tell which, so the scan hands it on.
  std::string body(kOpenAiAnswer);
  body.replace(body.find(R"("cached_tokens":0)"), 17, R"("cached_tokens":5,"cached_tokens":7)");
  expect_equivalent(body, false);
  ShapeMemo memo(AnswerShape::completion);
  expect_memo_agrees(memo, body);
  expect_memo_agrees(memo, body);
  EXPECT_EQ(memo.reuses(), 0u);
}

}  // namespace
}  // namespace cutover::providers
