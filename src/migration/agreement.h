// How far a candidate's answer agrees with the primary's answer to the same prompt (a shadow
// pair), reduced to one score in [0, 1] that the agreement gate averages.
//
// Free text is compared on normalized tokens (token F1 as in SQuAD, and ROUGE-L); structured
// output (JSON mode, tool calls) is compared as parsed JSON, because key order and spacing carry
// no meaning there while one wrong value does.
//
// Pure functions without state; any thread may call them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace cutover::migration {

// What one side answered: the first choice of a response, or of a stream's chunks put together.
struct Answer {
  std::string text;             // the assistant message's content
  std::string tool_calls_json;  // the tool calls as a JSON array, as the provider sent them; ""
                                // when none
  std::string finish_reason;
  bool json_mode = false;  // the request asked for response_format json_object or json_schema
};

// ROUGE-L compares at most this many leading tokens per side, bounding its O(n m) work.
inline constexpr std::size_t kRougeTokenCap = 2000;

struct Agreement {
  // Texts identical once leading and trailing whitespace is trimmed, and tool calls equal.
  bool exact_match = false;
  // Token F1 (multiset overlap) in [0, 1]; 1 when both sides have no tokens.
  double similarity = 0;
  // ROUGE-L F1 (longest common subsequence, so word order counts) in [0, 1]; 1 when both are
  // empty.
  double rouge_l = 0;
  // Whether each side's structured output parses: its text in JSON mode, and its tool calls
  // (including every call's arguments) when it has any. Set in JSON mode or when either side
  // made tool calls.
  std::optional<bool> primary_json_valid;
  std::optional<bool> candidate_json_valid;
  // In JSON mode, when both texts parse: equal as JSON values (object key order ignored).
  std::optional<bool> json_equal;
  // When either side made tool calls: the same functions in the same order with equal parsed
  // arguments. Call ids are ignored, as each provider makes up its own.
  std::optional<bool> tool_calls_equal;
  // Candidate tokens over primary tokens; 1 when both are empty, the candidate's count when only
  // the primary is empty.
  double length_ratio = 1;
  bool finish_reason_equal = false;
  // What the gate averages:
  //   1 for an exact match;
  //   structured output (JSON mode or tool calls): 0 when either side's does not parse (a
  //   client would fail on it), 1 when it is structurally equal, else the similarity;
  //   free text: the similarity. Token F1 rather than ROUGE-L, because a paraphrase that
  //   reorders clauses is as good an answer, which F1 forgives and ROUGE-L does not.
  double score = 0;
};

// Compares `candidate` with `primary`, the reference. Tokens are split on whitespace after
// ASCII lower-casing and removing ASCII punctuation; bytes outside ASCII are kept as they are.
// JSON (in JSON mode, and tool calls' names and arguments) is tokenized by its keys, in sorted
// order, and scalar values, so that serialization details do not count as differences; tool
// call tokens follow the text's, so answers that differ only in their calls do not score 1.
Agreement compare_answers(const Answer& primary, const Answer& candidate);

}  // namespace cutover::migration
