#include "migration/agreement.h"

#include <gtest/gtest.h>

#include <string>

namespace cutover::migration {
namespace {

Answer text(std::string content, std::string finish_reason = "stop") {
  Answer answer;
  answer.text = std::move(content);
  answer.finish_reason = std::move(finish_reason);
  return answer;
}

Answer json_text(std::string content) {
  Answer answer = text(std::move(content));
  answer.json_mode = true;
  return answer;
}

Answer tool_calls(std::string calls_json) {
  Answer answer;
  answer.tool_calls_json = std::move(calls_json);
  answer.finish_reason = "tool_calls";
  return answer;
}

std::string repeated(const std::string& word, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += word + " ";
  return out;
}

TEST(AnswerAgreement, IdenticalTextsMatchExactly) {
  const auto agreement = compare_answers(text("The answer is 42."), text("The answer is 42."));
  EXPECT_TRUE(agreement.exact_match);
  EXPECT_EQ(agreement.similarity, 1.0);
  EXPECT_EQ(agreement.rouge_l, 1.0);
  EXPECT_EQ(agreement.length_ratio, 1.0);
  EXPECT_TRUE(agreement.finish_reason_equal);
  EXPECT_EQ(agreement.score, 1.0);
  EXPECT_FALSE(agreement.primary_json_valid.has_value());
  EXPECT_FALSE(agreement.json_equal.has_value());
  EXPECT_FALSE(agreement.tool_calls_equal.has_value());
}

TEST(AnswerAgreement, SurroundingWhitespaceStillMatchesExactly) {
  EXPECT_TRUE(compare_answers(text("Hello world\n"), text("  Hello world")).exact_match);
}

TEST(AnswerAgreement, InnerWhitespaceIsNoExactMatchButFullSimilarity) {
  const auto agreement = compare_answers(text("Hello world"), text("Hello \n  world"));
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_EQ(agreement.similarity, 1.0);
  EXPECT_EQ(agreement.score, 1.0);
}

TEST(AnswerAgreement, CaseAndPunctuationAreNormalizedAway) {
  const auto agreement = compare_answers(text("hello world"), text("Hello, World!"));
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_EQ(agreement.similarity, 1.0);
}

TEST(AnswerAgreement, ParaphraseScoresItsTokenF1) {
  // Primary: paris is the capital of france (6); candidate: the capital is paris (4).
  // Overlap 4: precision 1, recall 4/6, F1 0.8. Longest common subsequence "the capital":
  // precision 2/4, recall 2/6, ROUGE-L 0.4.
  const auto agreement =
      compare_answers(text("Paris is the capital of France."), text("The capital is Paris."));
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_NEAR(agreement.similarity, 0.8, 1e-12);
  EXPECT_NEAR(agreement.rouge_l, 0.4, 1e-12);
  EXPECT_NEAR(agreement.length_ratio, 4.0 / 6, 1e-12);
  EXPECT_NEAR(agreement.score, 0.8, 1e-12);
}

TEST(AnswerAgreement, RepeatedTokensCountOnce) {
  // the cat sat on the mat / a cat sat on a mat: "the" twice and "a" twice overlap nowhere.
  const auto agreement =
      compare_answers(text("The cat sat on the mat."), text("A cat sat on a mat!"));
  EXPECT_NEAR(agreement.similarity, 4.0 / 6, 1e-12);
}

TEST(AnswerAgreement, RougeLWeighsWordOrder) {
  // Lin (2004)'s example: against "police killed the gunman", "police kill the gunman" keeps
  // three words in order, "the gunman kill police" only two.
  const auto kept =
      compare_answers(text("police killed the gunman"), text("police kill the gunman"));
  EXPECT_NEAR(kept.rouge_l, 0.75, 1e-12);
  const auto reordered =
      compare_answers(text("police killed the gunman"), text("the gunman kill police"));
  EXPECT_NEAR(reordered.rouge_l, 0.5, 1e-12);
  EXPECT_NEAR(reordered.similarity, 0.75, 1e-12);
  // The same words in another order: full F1, which the score uses, but ROUGE-L halves.
  const auto swapped =
      compare_answers(text("police killed the gunman"), text("the gunman killed police"));
  EXPECT_EQ(swapped.similarity, 1.0);
  EXPECT_NEAR(swapped.rouge_l, 0.5, 1e-12);
  EXPECT_EQ(swapped.score, 1.0);
}

TEST(AnswerAgreement, LengthRatioIsCandidateOverPrimaryTokens) {
  EXPECT_NEAR(compare_answers(text("one two three four"), text("one two")).length_ratio, 0.5,
              1e-12);
  EXPECT_NEAR(compare_answers(text("one"), text("one two three")).length_ratio, 3.0, 1e-12);
  EXPECT_NEAR(compare_answers(text(""), text("one two three")).length_ratio, 3.0, 1e-12);
}

TEST(AnswerAgreement, BothEmptyAgreeFully) {
  const auto agreement = compare_answers(text(""), text(" \n"));
  EXPECT_TRUE(agreement.exact_match);
  EXPECT_EQ(agreement.similarity, 1.0);
  EXPECT_EQ(agreement.rouge_l, 1.0);
  EXPECT_EQ(agreement.length_ratio, 1.0);
  EXPECT_EQ(agreement.score, 1.0);
}

TEST(AnswerAgreement, OneSideEmptyAgreesNotAtAll) {
  const auto agreement = compare_answers(text("something"), text(""));
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_EQ(agreement.similarity, 0.0);
  EXPECT_EQ(agreement.rouge_l, 0.0);
  EXPECT_EQ(agreement.length_ratio, 0.0);
  EXPECT_EQ(agreement.score, 0.0);
}

TEST(AnswerAgreement, DifferentFinishReasonsAreReported) {
  const auto agreement = compare_answers(text("cut", "length"), text("cut", "stop"));
  EXPECT_FALSE(agreement.finish_reason_equal);
  EXPECT_TRUE(agreement.exact_match);
}

TEST(AnswerAgreement, NonAsciiBytesAreKeptAsTheyAre) {
  EXPECT_EQ(compare_answers(text("Déjà vu, café"), text("déjà vu café")).similarity, 1.0);
  EXPECT_NEAR(compare_answers(text("déjà vu"), text("deja vu")).similarity, 0.5, 1e-12);
}

TEST(AnswerAgreement, JsonModeIgnoresKeyOrderAndSpacing) {
  const auto agreement = compare_answers(json_text(R"({"name":"Ada","tags":[1,2]})"),
                                         json_text(R"( { "tags": [1, 2], "name": "Ada" } )"));
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_EQ(agreement.primary_json_valid, true);
  EXPECT_EQ(agreement.candidate_json_valid, true);
  EXPECT_EQ(agreement.json_equal, true);
  EXPECT_EQ(agreement.similarity, 1.0);
  EXPECT_EQ(agreement.score, 1.0);
}

TEST(AnswerAgreement, JsonModeWithADifferentValueScoresItsSimilarity) {
  // Tokens: name ada tags 1 2 against name ada tags 1 3.
  const auto agreement = compare_answers(json_text(R"({"name":"Ada","tags":[1,2]})"),
                                         json_text(R"({"tags":[1,3],"name":"Ada"})"));
  EXPECT_EQ(agreement.json_equal, false);
  EXPECT_NEAR(agreement.similarity, 0.8, 1e-12);
  EXPECT_NEAR(agreement.score, 0.8, 1e-12);
}

TEST(AnswerAgreement, InvalidJsonFromTheCandidateScoresZero) {
  const auto agreement =
      compare_answers(json_text(R"({"name":"Ada"})"), json_text(R"({"name":"Ada")"));
  EXPECT_EQ(agreement.primary_json_valid, true);
  EXPECT_EQ(agreement.candidate_json_valid, false);
  EXPECT_FALSE(agreement.json_equal.has_value());
  EXPECT_EQ(agreement.score, 0.0);
}

TEST(AnswerAgreement, IdenticalJsonTextMatchesExactly) {
  const auto agreement = compare_answers(json_text(R"({"a":1})"), json_text(R"({"a":1})"));
  EXPECT_TRUE(agreement.exact_match);
  EXPECT_EQ(agreement.json_equal, true);
  EXPECT_EQ(agreement.score, 1.0);
}

TEST(AnswerAgreement, ToolCallsEqualDespiteIdsAndArgumentOrder) {
  const auto agreement = compare_answers(
      tool_calls(R"([{"id":"call_1","type":"function","function":{"name":"get_weather",)"
                 R"("arguments":"{\"city\":\"Paris\",\"unit\":\"c\"}"}}])"),
      tool_calls(R"([{"id":"toolu_9","type":"function","function":{"name":"get_weather",)"
                 R"("arguments":"{\"unit\": \"c\", \"city\": \"Paris\"}"}}])"));
  EXPECT_EQ(agreement.tool_calls_equal, true);
  EXPECT_EQ(agreement.primary_json_valid, true);
  EXPECT_EQ(agreement.candidate_json_valid, true);
  EXPECT_FALSE(agreement.json_equal.has_value());
  EXPECT_TRUE(agreement.exact_match);
  EXPECT_EQ(agreement.score, 1.0);
}

TEST(AnswerAgreement, ToolCallsWithDifferentArgumentsScoreTheirSimilarity) {
  // Tokens ("_" is punctuation): getweather city paris unit c / getweather city london unit c.
  const auto agreement =
      compare_answers(tool_calls(R"([{"function":{"name":"get_weather",)"
                                 R"("arguments":"{\"city\":\"Paris\",\"unit\":\"c\"}"}}])"),
                      tool_calls(R"([{"function":{"name":"get_weather",)"
                                 R"("arguments":"{\"city\":\"London\",\"unit\":\"c\"}"}}])"));
  EXPECT_EQ(agreement.tool_calls_equal, false);
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_NEAR(agreement.similarity, 0.8, 1e-12);
  EXPECT_NEAR(agreement.score, 0.8, 1e-12);
}

TEST(AnswerAgreement, ToolCallsToDifferentFunctionsDiffer) {
  const auto agreement =
      compare_answers(tool_calls(R"([{"function":{"name":"search","arguments":"{}"}}])"),
                      tool_calls(R"([{"function":{"name":"browse","arguments":"{}"}}])"));
  EXPECT_EQ(agreement.tool_calls_equal, false);
  EXPECT_LT(agreement.score, 1.0);
}

TEST(AnswerAgreement, ToolCallOrderMatters) {
  const std::string first = R"({"function":{"name":"a","arguments":"{\"x\":1}"}})";
  const std::string second = R"({"function":{"name":"b","arguments":"{\"y\":2}"}})";
  const auto agreement = compare_answers(tool_calls("[" + first + "," + second + "]"),
                                         tool_calls("[" + second + "," + first + "]"));
  EXPECT_EQ(agreement.tool_calls_equal, false);
  EXPECT_FALSE(agreement.exact_match);
}

TEST(AnswerAgreement, EmptyArgumentsEqualAnEmptyObject) {
  const auto agreement =
      compare_answers(tool_calls(R"([{"function":{"name":"now","arguments":""}}])"),
                      tool_calls(R"([{"function":{"name":"now","arguments":"{}"}}])"));
  EXPECT_EQ(agreement.tool_calls_equal, true);
  EXPECT_EQ(agreement.candidate_json_valid, true);
}

TEST(AnswerAgreement, TruncatedToolArgumentsScoreZero) {
  const auto agreement =
      compare_answers(tool_calls(R"([{"function":{"name":"f","arguments":"{\"a\":1}"}}])"),
                      tool_calls(R"([{"function":{"name":"f","arguments":"{\"a\":"}}])"));
  EXPECT_EQ(agreement.primary_json_valid, true);
  EXPECT_EQ(agreement.candidate_json_valid, false);
  EXPECT_EQ(agreement.tool_calls_equal, false);
  EXPECT_EQ(agreement.score, 0.0);
}

TEST(AnswerAgreement, ToolCallAgainstATextAnswerDisagrees) {
  const auto agreement = compare_answers(
      text("It is sunny in Paris."),
      tool_calls(R"([{"function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}])"));
  EXPECT_EQ(agreement.tool_calls_equal, false);
  EXPECT_EQ(agreement.primary_json_valid, true);
  EXPECT_EQ(agreement.candidate_json_valid, true);
  EXPECT_FALSE(agreement.exact_match);
  EXPECT_FALSE(agreement.finish_reason_equal);
  EXPECT_LT(agreement.score, 0.5);
}

TEST(AnswerAgreement, JsonModeAnswerOfOnlyToolCallsNeedsNoJsonText) {
  Answer primary = tool_calls(R"([{"function":{"name":"f","arguments":"{\"a\":1}"}}])");
  primary.json_mode = true;
  Answer candidate = primary;
  candidate.tool_calls_json = R"([{"id":"x","function":{"name":"f","arguments":"{\"a\":1}"}}])";
  const auto agreement = compare_answers(primary, candidate);
  EXPECT_EQ(agreement.primary_json_valid, true);
  EXPECT_EQ(agreement.candidate_json_valid, true);
  EXPECT_EQ(agreement.score, 1.0);
}

TEST(AnswerAgreement, RougeLComparesOnlyTheLeadingTokens) {
  // The first kRougeTokenCap tokens agree and the rest differ: ROUGE-L sees only the agreement,
  // token F1 all of it.
  const int cap = static_cast<int>(kRougeTokenCap);
  const auto agreement = compare_answers(text(repeated("same", cap) + repeated("left", 3 * cap)),
                                         text(repeated("same", cap) + repeated("right", 3 * cap)));
  EXPECT_EQ(agreement.rouge_l, 1.0);
  EXPECT_NEAR(agreement.similarity, 0.25, 1e-12);
  EXPECT_EQ(agreement.length_ratio, 1.0);
}

TEST(AnswerAgreement, LongInputsAreCompared) {
  const auto agreement = compare_answers(text(repeated("alpha beta", 100'000)),
                                         text(repeated("alpha gamma", 100'000)));
  EXPECT_NEAR(agreement.similarity, 0.5, 1e-12);
  EXPECT_NEAR(agreement.rouge_l, 0.5, 1e-12);
}

}  // namespace
}  // namespace cutover::migration
