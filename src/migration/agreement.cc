// Shadow pair comparison: tokenization, token F1, ROUGE-L and structural JSON equality.
#include "migration/agreement.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cutover::migration {
namespace {

namespace json = boost::json;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_ascii_punctuation(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return (byte >= 0x21 && byte <= 0x2f) || (byte >= 0x3a && byte <= 0x40) ||
         (byte >= 0x5b && byte <= 0x60) || (byte >= 0x7b && byte <= 0x7e);
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// Lower-cased, punctuation removed (so "don't" and "dont" agree), split on whitespace.
void append_text_tokens(std::string_view text, std::vector<std::string>& tokens) {
  std::string token;
  for (const char c : text) {
    if (is_space(c)) {
      if (!token.empty()) tokens.push_back(std::move(token));
      token.clear();
    } else if (!is_ascii_punctuation(c)) {
      token.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
  }
  if (!token.empty()) tokens.push_back(std::move(token));
}

void append_json_tokens(const json::value& value, std::vector<std::string>& tokens) {
  switch (value.kind()) {
    case json::kind::object: {
      std::vector<const json::key_value_pair*> members;
      for (const auto& member : value.get_object()) members.push_back(&member);
      std::sort(members.begin(), members.end(),
                [](const auto* a, const auto* b) { return a->key() < b->key(); });
      for (const auto* member : members) {
        append_text_tokens(member->key(), tokens);
        append_json_tokens(member->value(), tokens);
      }
      break;
    }
    case json::kind::array:
      for (const auto& element : value.get_array()) append_json_tokens(element, tokens);
      break;
    case json::kind::string:
      append_text_tokens(value.get_string(), tokens);
      break;
    default:
      append_text_tokens(json::serialize(value), tokens);
      break;
  }
}

std::optional<json::value> parse_json(std::string_view text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec) return std::nullopt;
  return value;
}

struct ToolCall {
  std::string name;
  // The parsed arguments, or the raw string when they do not parse.
  json::value arguments;
};

struct ToolCalls {
  bool present = false;
  bool valid = true;
  std::vector<ToolCall> calls;
};

// Accepts OpenAI's [{"id", "type", "function": {"name", "arguments": "<json>"}}] and, leniently,
// calls without the "function" wrapper or with arguments already as an object.
ToolCalls parse_tool_calls(std::string_view tool_calls_json) {
  ToolCalls parsed;
  parsed.present = !trimmed(tool_calls_json).empty();
  if (!parsed.present) return parsed;
  const auto array = parse_json(tool_calls_json);
  if (!array || !array->is_array()) {
    parsed.valid = false;
    return parsed;
  }
  for (const auto& element : array->get_array()) {
    ToolCall call;
    const json::object* function = element.if_object();
    if (function != nullptr) {
      if (const auto* inner = function->if_contains("function"); inner && inner->is_object()) {
        function = &inner->get_object();
      }
    }
    if (function == nullptr) {
      parsed.valid = false;
      parsed.calls.push_back(std::move(call));
      continue;
    }
    if (const auto* name = function->if_contains("name"); name && name->is_string()) {
      call.name = name->get_string();
    } else {
      parsed.valid = false;
    }
    const json::value* arguments = function->if_contains("arguments");
    if (arguments == nullptr) {
      call.arguments = json::object();
    } else if (arguments->is_string()) {
      const std::string_view raw = arguments->get_string();
      // Some providers send "" for a function without parameters.
      if (trimmed(raw).empty()) {
        call.arguments = json::object();
      } else if (auto value = parse_json(raw)) {
        call.arguments = std::move(*value);
      } else {
        call.arguments = json::string(raw);
        parsed.valid = false;
      }
    } else {
      call.arguments = *arguments;
    }
    parsed.calls.push_back(std::move(call));
  }
  return parsed;
}

bool tool_calls_match(const ToolCalls& primary, const ToolCalls& candidate) {
  if (primary.calls.size() != candidate.calls.size()) return false;
  for (std::size_t i = 0; i < primary.calls.size(); ++i) {
    if (primary.calls[i].name != candidate.calls[i].name ||
        primary.calls[i].arguments != candidate.calls[i].arguments) {
      return false;
    }
  }
  return true;
}

struct Side {
  std::optional<json::value> text_json;  // in JSON mode, when the text parses
  ToolCalls tool_calls;
  std::vector<std::string> tokens;
};

Side read_side(const Answer& answer, bool json_mode) {
  Side side;
  if (json_mode) side.text_json = parse_json(answer.text);
  if (side.text_json) {
    append_json_tokens(*side.text_json, side.tokens);
  } else {
    append_text_tokens(answer.text, side.tokens);
  }
  side.tool_calls = parse_tool_calls(answer.tool_calls_json);
  for (const auto& call : side.tool_calls.calls) {
    append_text_tokens(call.name, side.tokens);
    append_json_tokens(call.arguments, side.tokens);
  }
  return side;
}

// Token ids shared by both sides, so the comparisons below work on integers.
struct TokenIds {
  std::vector<std::uint32_t> primary;
  std::vector<std::uint32_t> candidate;
  std::size_t distinct = 0;
};

TokenIds intern(const std::vector<std::string>& primary,
                const std::vector<std::string>& candidate) {
  TokenIds ids;
  std::unordered_map<std::string_view, std::uint32_t> known;
  const auto id_of = [&](const std::string& token) {
    const auto [it, inserted] = known.try_emplace(token, static_cast<std::uint32_t>(known.size()));
    return it->second;
  };
  ids.primary.reserve(primary.size());
  for (const auto& token : primary) ids.primary.push_back(id_of(token));
  ids.candidate.reserve(candidate.size());
  for (const auto& token : candidate) ids.candidate.push_back(id_of(token));
  ids.distinct = known.size();
  return ids;
}

double f1(std::size_t overlap, std::size_t primary_count, std::size_t candidate_count) {
  if (primary_count == 0 && candidate_count == 0) return 1;
  if (overlap == 0) return 0;
  const double precision = static_cast<double>(overlap) / static_cast<double>(candidate_count);
  const double recall = static_cast<double>(overlap) / static_cast<double>(primary_count);
  return 2 * precision * recall / (precision + recall);
}

double token_f1(const TokenIds& ids) {
  std::vector<std::size_t> primary_counts(ids.distinct, 0);
  for (const auto id : ids.primary) ++primary_counts[id];
  std::size_t overlap = 0;
  for (const auto id : ids.candidate) {
    if (primary_counts[id] > 0) {
      --primary_counts[id];
      ++overlap;
    }
  }
  return f1(overlap, ids.primary.size(), ids.candidate.size());
}

double rouge_l(const TokenIds& ids) {
  const std::size_t m = std::min(ids.primary.size(), kRougeTokenCap);
  const std::size_t n = std::min(ids.candidate.size(), kRougeTokenCap);
  // Two rows of the LCS table are enough for its length.
  std::vector<std::uint32_t> previous(n + 1, 0);
  std::vector<std::uint32_t> current(n + 1, 0);
  for (std::size_t i = 1; i <= m; ++i) {
    for (std::size_t j = 1; j <= n; ++j) {
      current[j] = ids.primary[i - 1] == ids.candidate[j - 1]
                       ? previous[j - 1] + 1
                       : std::max(previous[j], current[j - 1]);
    }
    std::swap(previous, current);
  }
  return f1(previous[n], m, n);
}

}  // namespace

Agreement compare_answers(const Answer& primary, const Answer& candidate) {
  const bool json_mode = primary.json_mode || candidate.json_mode;
  const Side primary_side = read_side(primary, json_mode);
  const Side candidate_side = read_side(candidate, json_mode);
  Agreement agreement;

  const TokenIds ids = intern(primary_side.tokens, candidate_side.tokens);
  agreement.similarity = token_f1(ids);
  agreement.rouge_l = rouge_l(ids);
  const auto primary_count = static_cast<double>(ids.primary.size());
  const auto candidate_count = static_cast<double>(ids.candidate.size());
  if (primary_count > 0) {
    agreement.length_ratio = candidate_count / primary_count;
  } else if (candidate_count > 0) {
    agreement.length_ratio = candidate_count;
  }
  agreement.finish_reason_equal = primary.finish_reason == candidate.finish_reason;

  const bool any_tool_calls = primary_side.tool_calls.present || candidate_side.tool_calls.present;
  if (any_tool_calls) {
    // Byte-identical calls agree even when they do not parse.
    agreement.tool_calls_equal =
        trimmed(primary.tool_calls_json) == trimmed(candidate.tool_calls_json) ||
        tool_calls_match(primary_side.tool_calls, candidate_side.tool_calls);
  }
  const bool structured = json_mode || any_tool_calls;
  if (structured) {
    // In JSON mode an answer that is only tool calls has no text to parse, and needs none.
    const auto valid = [json_mode](const Answer& answer, const Side& side) {
      const bool text_valid = !json_mode || side.text_json.has_value() ||
                              (trimmed(answer.text).empty() && side.tool_calls.present);
      return text_valid && side.tool_calls.valid;
    };
    agreement.primary_json_valid = valid(primary, primary_side);
    agreement.candidate_json_valid = valid(candidate, candidate_side);
  }
  if (json_mode && primary_side.text_json && candidate_side.text_json) {
    agreement.json_equal = *primary_side.text_json == *candidate_side.text_json;
  }

  agreement.exact_match =
      trimmed(primary.text) == trimmed(candidate.text) && agreement.tool_calls_equal.value_or(true);
  if (agreement.exact_match) {
    agreement.score = 1;
  } else if (structured) {
    const bool both_valid = *agreement.primary_json_valid && *agreement.candidate_json_valid;
    const bool structurally_equal =
        agreement.json_equal.value_or(!json_mode) && agreement.tool_calls_equal.value_or(true);
    agreement.score = !both_valid ? 0.0 : structurally_equal ? 1.0 : agreement.similarity;
  } else {
    agreement.score = agreement.similarity;
  }
  return agreement;
}

}  // namespace cutover::migration
