#include "providers/anthropic_dialect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "util/json_string.h"

// How the chat-completions request maps onto a Messages request, and the choices made where the
// two disagree:
// - system and developer messages, wherever they stand, are joined with blank lines into the
//   top-level `system` (Messages has no system turn).
// - Consecutive turns of one role are merged into one turn, since Messages requires user and
//   assistant turns to alternate; tool messages become tool_result blocks of a user turn, placed
//   before any text of that turn (Messages wants the results first).
// - Tool-call ids are made valid for Messages (^[a-zA-Z0-9_-]+$): other characters become '_'
//   and, when anything changed, a hash of the original id is appended so that two ids that
//   differ only in such characters stay different. The same mapping serves tool_use and
//   tool_result, so a conversation keeps its pairs.
// - temperature must lie in Anthropic's 0..1: a higher value is refused rather than clamped,
//   because clamping changes how random the answer is without telling anyone.
// - reasoning_effort enables extended thinking with a budget per level (kThinkingBudgets).
//   Anthropic counts thinking inside max_tokens and wants max_tokens above the budget: a
//   client's max is kept and the budget held to half of it (never below Anthropic's minimum of
//   1024, so a max of 1024 or less is refused); without a client max the default grows by the
//   budget, so the visible answer keeps its room. Thinking is not enabled when the request
//   continues a tool loop (its last turn holds tool results for the previous assistant turn):
//   Anthropic then requires that turn's signed thinking blocks, which chat completions cannot carry
//   back.
// - response_format json_schema becomes `output_config.format` (Anthropic's structured outputs);
//   json_object has no equivalent (Anthropic constrains only to a full schema) and is refused.
// - top_k, which some OpenAI-compatible clients send, passes through: Messages has it.
// - Fields with no equivalent that would change the answer are refused naming the field;
//   seed, service_tier, store, metadata, stream_options, prompt_cache_key and
//   parallel_tool_calls:true are dropped as harmless. Fields this dialect does not know are
//   refused too: silence could change the answer.
//
// Answers: thinking and redacted_thinking blocks are dropped (chat completions has no field for
// them, and their signatures cannot round-trip), as are block types only hosted tools produce.

namespace cutover::providers::anthropic {

namespace json = boost::json;

namespace {

using Problem = std::optional<std::string>;

// Token counts and sizes beyond 2^53 are nonsense; refusing them keeps every sum defined.
constexpr double kMaxCount = 9.0e15;

std::optional<std::int64_t> as_integer(const json::value& value) {
  if (value.is_int64()) return value.get_int64();
  if (value.is_uint64() && value.get_uint64() <= static_cast<std::uint64_t>(kMaxCount)) {
    return static_cast<std::int64_t>(value.get_uint64());
  }
  if (value.is_double() && std::isfinite(value.get_double()) &&
      std::fabs(value.get_double()) < kMaxCount &&
      std::trunc(value.get_double()) == value.get_double()) {
    return static_cast<std::int64_t>(value.get_double());
  }
  return std::nullopt;
}

std::optional<double> as_number(const json::value& value) {
  if (value.is_int64()) return static_cast<double>(value.get_int64());
  if (value.is_uint64()) return static_cast<double>(value.get_uint64());
  if (value.is_double()) return value.get_double();
  return std::nullopt;
}

// A usage count as reported, or 0 when absent or unreadable.
std::int64_t count_of(const json::object& usage, std::string_view name) {
  const auto* value = usage.if_contains(name);
  if (value == nullptr) return 0;
  auto count = as_integer(*value);
  return count && *count > 0 && *count < static_cast<std::int64_t>(kMaxCount) ? *count : 0;
}

bool holds(const json::value& value, std::string_view text) {
  return value.is_string() && value.get_string() == text;
}

std::string quoted(std::string_view field) { return "'" + std::string(field) + "'"; }

std::string no_equivalent(std::string_view field) {
  return quoted(field) + " has no equivalent on an Anthropic provider";
}

// ---------------------------------------------------------------------------------------------
// Request: fields outside messages.

// A field whose value is its neutral default (absent, null, 1 choice, no penalties, ...) is
// harmless; any other value would change the answer, and Messages cannot express it.
bool is_neutral(std::string_view field, const json::value& value) {
  if (value.is_null()) return true;
  if (field == "n") return as_integer(value) == 1;
  if (field == "logprobs") return value.is_bool() && !value.get_bool();
  if (field == "top_logprobs") return as_integer(value) == 0;
  if (field == "logit_bias") return value.is_object() && value.get_object().empty();
  if (field == "presence_penalty" || field == "frequency_penalty") return as_number(value) == 0.0;
  if (field == "modalities") {
    const auto only_text = [](const json::value& m) { return holds(m, "text"); };
    return value.is_array() &&
           std::all_of(value.get_array().begin(), value.get_array().end(), only_text);
  }
  if (field == "functions") return value.is_array() && value.get_array().empty();
  return false;  // audio, prediction, function_call, web_search_options, verbosity
}

// Lists a few lines long read better than one name a line.
// clang-format off
constexpr std::string_view kNeutralOnlyFields[] = {
    "n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty",
    "audio", "modalities", "prediction", "functions", "function_call", "web_search_options",
    "verbosity"};

// Fields translated below.
constexpr std::string_view kTranslatedFields[] = {
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "top_k", "stop", "stream",
    "response_format", "reasoning_effort", "user", "safety_identifier"};

// Fields dropped because they do not change the answer: Anthropic always reports usage in a
// stream, seeds and service tiers are best-effort hints, and storing or caching hints concern
// only OpenAI's side.
constexpr std::string_view kDroppedFields[] = {
    "stream_options", "metadata", "seed", "service_tier", "store", "prompt_cache_key"};
// clang-format on

template <std::size_t N>
bool listed(const std::string_view (&list)[N], std::string_view name) {
  return std::find(std::begin(list), std::end(list), name) != std::end(list);
}

Problem refuse_unmappable_fields(const json::object& chat) {
  for (const auto& [key, value] : chat) {
    if (listed(kNeutralOnlyFields, key)) {
      if (!is_neutral(key, value)) return no_equivalent(key);
    } else if (!listed(kTranslatedFields, key) && !listed(kDroppedFields, key)) {
      return no_equivalent(key);
    }
  }
  return std::nullopt;
}

std::string hex_hash(std::string_view text) {
  std::uint32_t hash = 2166136261u;  // FNV-1a: short, stable across runs and builds
  for (unsigned char c : text) hash = (hash ^ c) * 16777619u;
  char out[9];
  std::snprintf(out, sizeof out, "%08x", hash);
  return out;
}

bool valid_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::string tool_use_id(std::string_view id) {
  std::string out(id);
  bool changed = false;
  for (char& c : out) {
    if (!valid_id_char(c)) {
      c = '_';
      changed = true;
    }
  }
  if (changed) out += "_" + hex_hash(id);
  return out;
}

Problem translate_tool(const json::value& tool, const std::string& path, json::array& tools) {
  if (!tool.is_object()) return quoted(path) + " must be an object";
  const auto* type = tool.get_object().if_contains("type");
  if (type != nullptr && !holds(*type, "function")) {
    return no_equivalent(path + ".type") + " (only function tools)";
  }
  const auto* function = tool.get_object().if_contains("function");
  if (function == nullptr || !function->is_object()) {
    return quoted(path + ".function") + " must be an object";
  }
  const auto& f = function->get_object();
  const auto* name = f.if_contains("name");
  if (name == nullptr || !name->is_string() || name->get_string().empty()) {
    return quoted(path + ".function.name") + " must be a non-empty string";
  }
  json::object translated{{"name", name->get_string()}};
  if (const auto* description = f.if_contains("description");
      description != nullptr && !description->is_null()) {
    if (!description->is_string()) {
      return quoted(path + ".function.description") + " must be a string";
    }
    translated["description"] = description->get_string();
  }
  const auto* parameters = f.if_contains("parameters");
  if (parameters == nullptr || parameters->is_null()) {
    translated["input_schema"] = json::object{{"type", "object"}};
  } else if (parameters->is_object()) {
    translated["input_schema"] = parameters->get_object();
  } else {
    return quoted(path + ".function.parameters") + " must be an object";
  }
  // Both APIs validate a strict tool's input against its schema.
  if (const auto* strict = f.if_contains("strict"); strict != nullptr && strict->is_bool()) {
    if (strict->get_bool()) translated["strict"] = true;
  }
  tools.push_back(std::move(translated));
  return std::nullopt;
}

Problem translate_tools(const json::object& chat, json::object& body) {
  const auto* tools = chat.if_contains("tools");
  if (tools == nullptr || tools->is_null()) return std::nullopt;
  if (!tools->is_array()) return "'tools' must be an array";
  json::array translated;
  for (std::size_t i = 0; i < tools->get_array().size(); ++i) {
    const std::string path = "tools[" + std::to_string(i) + "]";
    if (auto problem = translate_tool(tools->get_array()[i], path, translated)) return problem;
  }
  if (!translated.empty()) body["tools"] = std::move(translated);
  return std::nullopt;
}

Problem translate_tool_choice(const json::object& chat, json::object& body) {
  const bool has_tools = body.contains("tools");
  const auto* choice = chat.if_contains("tool_choice");
  json::object translated;
  if (choice == nullptr || choice->is_null()) {
    translated["type"] = "auto";
  } else if (choice->is_string()) {
    const auto& name = choice->get_string();
    if (name == "auto") {
      translated["type"] = "auto";
    } else if (name == "required") {
      translated["type"] = "any";
    } else if (name == "none") {
      translated["type"] = "none";
    } else {
      return "'tool_choice' must be auto, required, none or a function";
    }
  } else if (choice->is_object()) {
    const auto* function = choice->get_object().if_contains("function");
    const auto* name = function != nullptr && function->is_object()
                           ? function->get_object().if_contains("name")
                           : nullptr;
    if (name == nullptr || !name->is_string() || name->get_string().empty()) {
      return no_equivalent("tool_choice") + " (only a function name)";
    }
    translated["type"] = "tool";
    translated["name"] = name->get_string();
  } else {
    return "'tool_choice' must be a string or an object";
  }
  const std::string type(translated["type"].get_string());
  if (!has_tools) {
    // Without tools, auto and none both mean "answer in text", as Messages does by default.
    if (type == "any" || type == "tool") return "'tool_choice' requires 'tools'";
    return std::nullopt;
  }
  const auto* parallel = chat.if_contains("parallel_tool_calls");
  if (parallel != nullptr && !parallel->is_null() && !parallel->is_bool()) {
    return "'parallel_tool_calls' must be a boolean";
  }
  if (parallel != nullptr && parallel->is_bool() && !parallel->get_bool() && type != "none") {
    translated["disable_parallel_tool_use"] = true;
  }
  const bool is_default = type == "auto" && !translated.contains("disable_parallel_tool_use");
  if (!is_default || (choice != nullptr && !choice->is_null())) {
    body["tool_choice"] = std::move(translated);
  }
  return std::nullopt;
}

Problem translate_sampling(const json::object& chat, json::object& body) {
  if (const auto* temperature = chat.if_contains("temperature");
      temperature != nullptr && !temperature->is_null()) {
    auto value = as_number(*temperature);
    if (!value || *value < 0.0 || *value > 1.0) {
      return "'temperature' must be between 0 and 1 for an Anthropic provider";
    }
    body["temperature"] = *value;
  }
  if (const auto* top_p = chat.if_contains("top_p"); top_p != nullptr && !top_p->is_null()) {
    auto value = as_number(*top_p);
    if (!value || *value < 0.0 || *value > 1.0) return "'top_p' must be between 0 and 1";
    body["top_p"] = *value;
  }
  if (const auto* top_k = chat.if_contains("top_k"); top_k != nullptr && !top_k->is_null()) {
    auto value = as_integer(*top_k);
    if (!value || *value < 1) return "'top_k' must be a positive integer";
    body["top_k"] = *value;
  }
  if (const auto* stop = chat.if_contains("stop"); stop != nullptr && !stop->is_null()) {
    json::array sequences;
    if (stop->is_string()) {
      sequences.push_back(stop->get_string());
    } else if (stop->is_array()) {
      for (const auto& sequence : stop->get_array()) {
        if (!sequence.is_string()) return "'stop' must be a string or an array of strings";
        sequences.push_back(sequence.get_string());
      }
    } else {
      return "'stop' must be a string or an array of strings";
    }
    if (!sequences.empty()) body["stop_sequences"] = std::move(sequences);
  }
  return std::nullopt;
}

Problem translate_stream_and_user(const json::object& chat, json::object& body) {
  if (const auto* stream = chat.if_contains("stream"); stream != nullptr && !stream->is_null()) {
    if (!stream->is_bool()) return "'stream' must be a boolean";
    if (stream->get_bool()) body["stream"] = true;
  }
  // OpenAI's newer safety_identifier replaces user; both identify the end user.
  for (const char* field : {"user", "safety_identifier"}) {
    const auto* user = chat.if_contains(field);
    if (user == nullptr || user->is_null()) continue;
    if (!user->is_string()) return quoted(field) + " must be a string";
    if (!user->get_string().empty() && !body.contains("metadata")) {
      body["metadata"] = json::object{{"user_id", user->get_string()}};
    }
  }
  return std::nullopt;
}

Problem translate_response_format(const json::object& chat, json::object& body) {
  const auto* format = chat.if_contains("response_format");
  if (format == nullptr || format->is_null()) return std::nullopt;
  const auto* type = format->is_object() ? format->get_object().if_contains("type") : nullptr;
  if (type == nullptr || !type->is_string()) return "'response_format' must have a 'type'";
  if (type->get_string() == "text") return std::nullopt;
  if (type->get_string() != "json_schema") {
    return no_equivalent("response_format") + " (type " + std::string(type->get_string()) +
           "; json_schema is supported)";
  }
  const auto* spec = format->get_object().if_contains("json_schema");
  const auto* schema =
      spec != nullptr && spec->is_object() ? spec->get_object().if_contains("schema") : nullptr;
  if (schema == nullptr || !schema->is_object()) {
    return "'response_format.json_schema.schema' must be an object";
  }
  body["output_config"] =
      json::object{{"format", json::object{{"type", "json_schema"}, {"schema", *schema}}}};
  return std::nullopt;
}

struct ThinkingBudget {
  std::string_view effort;
  std::int64_t tokens;
};
// Anthropic's minimum budget is 1024; each level roughly doubles or quadruples the last.
constexpr ThinkingBudget kThinkingBudgets[] = {
    {"minimal", 1024}, {"low", 2048}, {"medium", 8192}, {"high", 16384}, {"xhigh", 32768}};
constexpr std::int64_t kMinThinkingBudget = 1024;

// The thinking budget for reasoning_effort, 0 when thinking stays off.
Problem thinking_budget(const json::object& chat, std::int64_t& budget) {
  budget = 0;
  const auto* effort = chat.if_contains("reasoning_effort");
  if (effort == nullptr || effort->is_null()) return std::nullopt;
  if (!effort->is_string()) return "'reasoning_effort' must be a string";
  if (effort->get_string() == "none") return std::nullopt;
  for (const auto& level : kThinkingBudgets) {
    if (effort->get_string() == level.effort) {
      budget = level.tokens;
      return std::nullopt;
    }
  }
  return "'reasoning_effort' must be none, minimal, low, medium, high or xhigh";
}

// Anthropic refuses extended thinking with changed sampling or a forced tool.
Problem thinking_conflicts(const json::object& body) {
  if (const auto* t = body.if_contains("temperature"); t != nullptr && t->get_double() != 1.0) {
    return "'temperature' cannot be combined with 'reasoning_effort' on an Anthropic provider";
  }
  if (const auto* p = body.if_contains("top_p"); p != nullptr && p->get_double() < 0.95) {
    return "'top_p' below 0.95 cannot be combined with 'reasoning_effort' on an Anthropic provider";
  }
  if (body.contains("top_k")) {
    return "'top_k' cannot be combined with 'reasoning_effort' on an Anthropic provider";
  }
  if (const auto* choice = body.if_contains("tool_choice")) {
    const auto& type = choice->get_object().at("type");
    if (holds(type, "any") || holds(type, "tool")) {
      return "a forced 'tool_choice' cannot be combined with 'reasoning_effort' on an Anthropic "
             "provider";
    }
  }
  return std::nullopt;
}

bool has_block(const json::value& turn, std::string_view type) {
  for (const auto& block : turn.at("content").get_array()) {
    if (holds(block.at("type"), type)) return true;
  }
  return false;
}

// The request continues a tool loop: its last turn answers the tool calls of the turn before.
bool continues_tool_loop(const json::array& messages) {
  if (messages.size() < 2) return false;
  const auto& last = messages.back();
  const auto& previous = messages[messages.size() - 2];
  return holds(last.at("role"), "user") && has_block(last, "tool_result") &&
         has_block(previous, "tool_use");
}

Problem translate_limits(const json::object& chat, std::int64_t default_max_tokens,
                         json::object& body) {
  std::optional<std::int64_t> max_tokens;
  for (const char* field : {"max_completion_tokens", "max_tokens"}) {
    const auto* value = chat.if_contains(field);
    if (value == nullptr || value->is_null()) continue;
    auto count = as_integer(*value);
    if (!count || *count < 1) return quoted(field) + " must be a positive integer";
    max_tokens = *count;
    break;
  }
  // A misconfigured default must still give Anthropic a valid max_tokens, and room to add to.
  default_max_tokens = std::clamp<std::int64_t>(default_max_tokens, 1, kMaxCount);
  std::int64_t budget = 0;
  if (auto problem = thinking_budget(chat, budget)) return problem;
  if (budget > 0 && continues_tool_loop(body.at("messages").get_array())) budget = 0;
  if (budget == 0) {
    body["max_tokens"] = max_tokens.value_or(default_max_tokens);
    return std::nullopt;
  }
  if (auto problem = thinking_conflicts(body)) return problem;
  if (!max_tokens) {
    max_tokens = default_max_tokens + budget;
  } else if (*max_tokens <= kMinThinkingBudget) {
    return "'reasoning_effort' needs a max_completion_tokens above " +
           std::to_string(kMinThinkingBudget) + " on an Anthropic provider";
  } else {
    // Thinking may take at most half of the client's max, so the answer keeps the other half.
    budget = std::max(kMinThinkingBudget, std::min(budget, *max_tokens / 2));
  }
  body["max_tokens"] = *max_tokens;
  body["thinking"] = json::object{{"type", "enabled"}, {"budget_tokens", budget}};
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Request: messages.

// Builds alternating turns: a message of the same role as the turn before joins that turn.
class TurnList {
 public:
  void add(std::string_view role, json::array blocks) {
    if (blocks.empty()) return;
    if (turns_.empty() || !holds(turns_.back().at("role"), role)) {
      turns_.push_back(json::object{{"role", role}, {"content", json::array()}});
    }
    auto& content = turns_.back().at("content").get_array();
    for (auto& block : blocks) {
      if (holds(block.at("type"), "tool_result")) {
        // Messages wants a turn's tool results ahead of its other blocks.
        auto results_end = std::find_if(content.begin(), content.end(), [](const json::value& b) {
          return !holds(b.at("type"), "tool_result");
        });
        content.insert(results_end, std::move(block));
      } else {
        content.push_back(std::move(block));
      }
    }
  }
  json::array take() { return std::move(turns_); }

 private:
  json::array turns_;
};

json::object text_block(std::string_view text) {
  return json::object{{"type", "text"}, {"text", text}};
}

// A data: URL as a base64 source, or nothing when it is not one.
std::optional<json::object> base64_source(std::string_view url) {
  if (!url.starts_with("data:")) return std::nullopt;
  const auto comma = url.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  const auto header = url.substr(5, comma - 5);
  if (!header.ends_with(";base64")) return std::nullopt;
  const auto media_type = header.substr(0, header.find(';'));
  if (media_type.empty()) return std::nullopt;
  return json::object{
      {"type", "base64"}, {"media_type", media_type}, {"data", url.substr(comma + 1)}};
}

Problem translate_image(const json::object& part, const std::string& path, json::array& blocks) {
  const auto* image = part.if_contains("image_url");
  const json::value* url =
      image != nullptr && image->is_object() ? image->get_object().if_contains("url") : image;
  if (url == nullptr || !url->is_string()) {
    return quoted(path + ".image_url.url") + " must be a string";
  }
  const std::string_view text = url->get_string();
  json::object source;
  if (auto encoded = base64_source(text)) {
    source = std::move(*encoded);
  } else if (text.starts_with("https://") || text.starts_with("http://")) {
    source = json::object{{"type", "url"}, {"url", text}};
  } else {
    return quoted(path + ".image_url.url") + " must be an https or base64 data URL";
  }
  blocks.push_back(json::object{{"type", "image"}, {"source", std::move(source)}});
  return std::nullopt;
}

// A PDF sent inline as a chat `file` part becomes a document block.
Problem translate_file(const json::object& part, const std::string& path, json::array& blocks) {
  const auto* file = part.if_contains("file");
  if (file == nullptr || !file->is_object()) return quoted(path + ".file") + " must be an object";
  const auto& f = file->get_object();
  if (f.contains("file_id")) return no_equivalent(path + ".file.file_id");
  const auto* data = f.if_contains("file_data");
  auto source =
      data != nullptr && data->is_string() ? base64_source(data->get_string()) : std::nullopt;
  if (!source || !holds(source->at("media_type"), "application/pdf")) {
    return quoted(path + ".file.file_data") + " must be a base64 data URL of a PDF";
  }
  json::object document{{"type", "document"}, {"source", std::move(*source)}};
  if (const auto* name = f.if_contains("filename"); name != nullptr && name->is_string()) {
    document["title"] = name->get_string();
  }
  blocks.push_back(std::move(document));
  return std::nullopt;
}

enum class PartsAllowed { text_only, user_media };

// Content as a string or parts, appended as blocks. Empty text is skipped: Messages refuses
// empty text blocks.
Problem translate_content(const json::value& content, const std::string& path, PartsAllowed allowed,
                          json::array& blocks) {
  if (content.is_null()) return std::nullopt;
  if (content.is_string()) {
    if (!content.get_string().empty()) blocks.push_back(text_block(content.get_string()));
    return std::nullopt;
  }
  if (!content.is_array()) return quoted(path) + " must be a string or an array of parts";
  for (std::size_t j = 0; j < content.get_array().size(); ++j) {
    const std::string part_path = path + "[" + std::to_string(j) + "]";
    const auto& part = content.get_array()[j];
    const auto* type = part.is_object() ? part.get_object().if_contains("type") : nullptr;
    if (type == nullptr || !type->is_string()) return quoted(part_path) + " must have a 'type'";
    const auto& kind = type->get_string();
    const auto& p = part.get_object();
    if (kind == "text" || kind == "refusal") {
      // An assistant's refusal part is text it said; only its field name differs.
      const auto* text = p.if_contains(kind == "text" ? "text" : "refusal");
      if (text == nullptr || !text->is_string()) {
        return quoted(part_path + "." + std::string(kind)) + " must be a string";
      }
      if (!text->get_string().empty()) blocks.push_back(text_block(text->get_string()));
      continue;
    }
    if (allowed == PartsAllowed::user_media && kind == "image_url") {
      if (auto problem = translate_image(p, part_path, blocks)) return problem;
      continue;
    }
    if (allowed == PartsAllowed::user_media && kind == "file") {
      if (auto problem = translate_file(p, part_path, blocks)) return problem;
      continue;
    }
    return no_equivalent(part_path + ".type") + " (" + std::string(kind) + ")";
  }
  return std::nullopt;
}

// A tool call's arguments as the tool_use input object.
Problem tool_input(const json::object& function, const std::string& call_path, json::value& input) {
  const auto* arguments = function.if_contains("arguments");
  input = json::object();
  if (arguments != nullptr && arguments->is_string()) {
    const std::string_view text = arguments->get_string();
    // A call with no arguments is often sent as "".
    if (text.find_first_not_of(" \t\r\n") != std::string_view::npos) {
      boost::system::error_code ec;
      input = json::parse(text, ec);
      if (ec) input = nullptr;
    }
  } else if (arguments != nullptr && !arguments->is_null()) {
    input = *arguments;  // some clients send the object itself
  }
  if (!input.is_object()) {
    return quoted(call_path + ".function.arguments") + " must be a JSON object";
  }
  return std::nullopt;
}

Problem translate_tool_call(const json::value& call, const std::string& call_path,
                            json::array& blocks) {
  if (!call.is_object()) return quoted(call_path) + " must be an object";
  const auto* id = call.get_object().if_contains("id");
  if (id == nullptr || !id->is_string() || id->get_string().empty()) {
    return quoted(call_path + ".id") + " must be a non-empty string";
  }
  const auto* function = call.get_object().if_contains("function");
  const auto* name = function != nullptr && function->is_object()
                         ? function->get_object().if_contains("name")
                         : nullptr;
  if (name == nullptr || !name->is_string() || name->get_string().empty()) {
    return quoted(call_path + ".function.name") + " must be a non-empty string";
  }
  json::value input;
  if (auto problem = tool_input(function->get_object(), call_path, input)) return problem;
  blocks.push_back(json::object{{"type", "tool_use"},
                                {"id", tool_use_id(id->get_string())},
                                {"name", name->get_string()},
                                {"input", std::move(input)}});
  return std::nullopt;
}

Problem translate_tool_calls(const json::object& message, const std::string& path,
                             json::array& blocks) {
  const auto* calls = message.if_contains("tool_calls");
  if (calls == nullptr || calls->is_null()) return std::nullopt;
  if (!calls->is_array()) return quoted(path + ".tool_calls") + " must be an array";
  for (std::size_t j = 0; j < calls->get_array().size(); ++j) {
    const std::string call_path = path + ".tool_calls[" + std::to_string(j) + "]";
    if (auto problem = translate_tool_call(calls->get_array()[j], call_path, blocks)) {
      return problem;
    }
  }
  return std::nullopt;
}

Problem translate_tool_result(const json::object& message, const std::string& path,
                              json::array& blocks) {
  const auto* id = message.if_contains("tool_call_id");
  if (id == nullptr || !id->is_string() || id->get_string().empty()) {
    return quoted(path + ".tool_call_id") + " must be a non-empty string";
  }
  json::object result{{"type", "tool_result"}, {"tool_use_id", tool_use_id(id->get_string())}};
  if (const auto* content = message.if_contains("content")) {
    json::array parts;
    if (auto problem =
            translate_content(*content, path + ".content", PartsAllowed::text_only, parts)) {
      return problem;
    }
    if (content->is_string() && !parts.empty()) {
      result["content"] = content->get_string();
    } else if (!parts.empty()) {
      result["content"] = std::move(parts);
    }
  }
  blocks.push_back(std::move(result));
  return std::nullopt;
}

// One chat message into the system text or the turns.
Problem translate_message(const json::object& message, const std::string& path, std::string& system,
                          TurnList& turns) {
  const auto* role_value = message.if_contains("role");
  if (role_value == nullptr || !role_value->is_string()) {
    return quoted(path + ".role") + " must be a string";
  }
  const std::string_view role = role_value->get_string();
  const auto* content_value = message.if_contains("content");
  const json::value none;
  const auto& content = content_value != nullptr ? *content_value : none;
  const std::string content_path = path + ".content";
  json::array blocks;
  if (role == "system" || role == "developer") {
    if (auto problem = translate_content(content, content_path, PartsAllowed::text_only, blocks)) {
      return problem;
    }
    for (const auto& block : blocks) {
      if (!system.empty()) system += "\n\n";
      system += block.at("text").get_string();
    }
  } else if (role == "user") {
    if (auto problem = translate_content(content, content_path, PartsAllowed::user_media, blocks)) {
      return problem;
    }
    if (blocks.empty()) return quoted(content_path) + " must not be empty";
    turns.add("user", std::move(blocks));
  } else if (role == "assistant") {
    if (const auto* call = message.if_contains("function_call"); call && !call->is_null()) {
      return no_equivalent(path + ".function_call") + " (use tool_calls)";
    }
    if (auto problem = translate_content(content, content_path, PartsAllowed::text_only, blocks)) {
      return problem;
    }
    if (auto problem = translate_tool_calls(message, path, blocks)) return problem;
    // An assistant turn that said nothing adds nothing; Messages would refuse it as empty.
    turns.add("assistant", std::move(blocks));
  } else if (role == "tool") {
    if (auto problem = translate_tool_result(message, path, blocks)) return problem;
    turns.add("user", std::move(blocks));
  } else {
    return no_equivalent(path + ".role") + " (" + std::string(role) + ")";
  }
  return std::nullopt;
}

Problem translate_messages(const json::object& chat, json::object& body) {
  const auto* messages = chat.if_contains("messages");
  if (messages == nullptr || !messages->is_array() || messages->get_array().empty()) {
    return "'messages' must be a non-empty array";
  }
  std::string system;
  TurnList turns;
  for (std::size_t i = 0; i < messages->get_array().size(); ++i) {
    const std::string path = "messages[" + std::to_string(i) + "]";
    const auto& message = messages->get_array()[i];
    if (!message.is_object()) return quoted(path) + " must be an object with a 'role'";
    if (auto problem = translate_message(message.get_object(), path, system, turns)) {
      return problem;
    }
  }
  auto turn_array = turns.take();
  if (turn_array.empty()) return "'messages' must hold a user or assistant message";
  if (!system.empty()) body["system"] = system;
  body["messages"] = std::move(turn_array);
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Answers.

json::object usage_object(const Usage& usage) {
  return json::object{
      {"prompt_tokens", usage.prompt_tokens},
      {"completion_tokens", usage.completion_tokens},
      {"total_tokens", usage.total_tokens},
      {"prompt_tokens_details",
       json::object{{"cached_tokens", usage.cached_prompt_tokens},
                    {"cache_creation_tokens", usage.cache_creation_prompt_tokens}}}};
}

Usage make_usage(std::int64_t input, std::int64_t cache_read, std::int64_t cache_creation,
                 std::int64_t output) {
  Usage usage;
  usage.present = true;
  usage.prompt_tokens = input + cache_read + cache_creation;
  usage.completion_tokens = output;
  usage.total_tokens = usage.prompt_tokens + output;
  usage.cached_prompt_tokens = cache_read;
  usage.cache_creation_prompt_tokens = cache_creation;
  return usage;
}

// The provider's error message in an error-shaped body, if it is one.
std::optional<std::string> provider_error_message(const json::object& body) {
  const auto* error = body.if_contains("error");
  const auto* type = body.if_contains("type");
  if (error == nullptr &&
      !(type != nullptr && type->is_string() && type->get_string() == "error")) {
    return std::nullopt;
  }
  if (error != nullptr && error->is_object()) {
    if (const auto* message = error->get_object().if_contains("message");
        message != nullptr && message->is_string()) {
      return std::string(message->get_string());
    }
  }
  return std::string("the provider answered an error without a message");
}

std::string_view chat_finish_reason(const json::value* stop_reason, bool has_tool_calls) {
  std::string_view reason = stop_reason != nullptr && stop_reason->is_string()
                                ? finish_reason(stop_reason->get_string())
                                : std::string_view("stop");
  // A turn that produced tool calls asks for them to run, whatever Anthropic called its stop.
  return has_tool_calls && reason == "stop" ? "tool_calls" : reason;
}

Problem translate_block(const json::value& block, std::size_t i, std::string& text,
                        json::array& tool_calls) {
  const std::string path = "content[" + std::to_string(i) + "]";
  const auto* type = block.is_object() ? block.get_object().if_contains("type") : nullptr;
  if (type == nullptr || !type->is_string()) return "message " + path + " has no 'type'";
  const auto& b = block.get_object();
  if (type->get_string() == "text") {
    const auto* piece = b.if_contains("text");
    if (piece == nullptr || !piece->is_string()) return "message " + path + " has no text";
    text += piece->get_string();
  } else if (type->get_string() == "tool_use") {
    const auto* id = b.if_contains("id");
    const auto* name = b.if_contains("name");
    if (id == nullptr || !id->is_string() || name == nullptr || !name->is_string()) {
      return "message " + path + " is a tool_use without an id and a name";
    }
    const auto* input = b.if_contains("input");
    json::object function{
        {"name", name->get_string()},
        {"arguments",
         input != nullptr && !input->is_null() ? json::serialize(*input) : std::string("{}")}};
    tool_calls.push_back(json::object{
        {"id", id->get_string()}, {"type", "function"}, {"function", std::move(function)}});
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> to_messages_request(const json::object& chat,
                                               std::string_view provider_model,
                                               std::int64_t default_max_tokens, std::string& body) {
  if (auto problem = refuse_unmappable_fields(chat)) return problem;
  json::object request;
  request["model"] = provider_model;
  if (auto problem = translate_messages(chat, request)) return problem;
  if (auto problem = translate_tools(chat, request)) return problem;
  if (auto problem = translate_tool_choice(chat, request)) return problem;
  if (auto problem = translate_sampling(chat, request)) return problem;
  if (auto problem = translate_stream_and_user(chat, request)) return problem;
  if (auto problem = translate_response_format(chat, request)) return problem;
  if (auto problem = translate_limits(chat, default_max_tokens, request)) return problem;
  body = util::serialize_finite(request);
  return std::nullopt;
}

std::optional<std::string> to_chat_completion(const json::value& message,
                                              const ResponseIdentity& identity, Usage& usage,
                                              json::object& completion) {
  if (!message.is_object()) return "Anthropic response is not a JSON object";
  const auto& m = message.get_object();
  if (auto error = provider_error_message(m)) return "provider error: " + *error;
  const auto* type = m.if_contains("type");
  if (type != nullptr && !(type->is_string() && type->get_string() == "message")) {
    return "Anthropic response is not a message";
  }
  const auto* content = m.if_contains("content");
  if (content == nullptr || !content->is_array()) return "Anthropic message has no 'content' array";
  std::string text;
  json::array tool_calls;
  for (std::size_t i = 0; i < content->get_array().size(); ++i) {
    if (auto problem = translate_block(content->get_array()[i], i, text, tool_calls)) {
      return problem;
    }
  }
  const bool has_text =
      std::any_of(content->get_array().begin(), content->get_array().end(),
                  [](const json::value& b) { return holds(b.get_object().at("type"), "text"); });
  json::object reply{{"role", "assistant"}};
  reply["content"] = has_text ? json::value(text) : json::value(nullptr);
  const bool has_tool_calls = !tool_calls.empty();
  if (has_tool_calls) reply["tool_calls"] = std::move(tool_calls);

  json::object choice{{"index", 0}, {"message", std::move(reply)}, {"logprobs", nullptr}};
  choice["finish_reason"] = chat_finish_reason(m.if_contains("stop_reason"), has_tool_calls);
  completion = json::object{{"id", identity.id()},
                            {"object", "chat.completion"},
                            {"created", identity.created},
                            {"model", identity.client_model},
                            {"choices", json::array{std::move(choice)}},
                            {"system_fingerprint", nullptr}};
  usage = usage_of(message);
  if (usage.present) completion["usage"] = usage_object(usage);
  return std::nullopt;
}

Usage usage_of(const json::value& message) {
  const auto* m = message.if_object();
  const auto* u = m != nullptr ? m->if_contains("usage") : nullptr;
  if (u == nullptr || !u->is_object()) return Usage{};
  const auto& counts = u->get_object();
  return make_usage(count_of(counts, "input_tokens"), count_of(counts, "cache_read_input_tokens"),
                    count_of(counts, "cache_creation_input_tokens"),
                    count_of(counts, "output_tokens"));
}

std::string_view finish_reason(std::string_view stop_reason) {
  if (stop_reason == "max_tokens" || stop_reason == "model_context_window_exceeded") {
    return "length";
  }
  if (stop_reason == "tool_use") return "tool_calls";
  if (stop_reason == "refusal") return "content_filter";
  // end_turn, stop_sequence, pause_turn (a server tool paused a long turn) and any reason added
  // later end an ordinary answer.
  return "stop";
}

// ---------------------------------------------------------------------------------------------
// Streams.

json::object StreamDecoder::chunk(json::object delta, json::value finish_reason) const {
  json::object choice{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}};
  choice["finish_reason"] = std::move(finish_reason);
  return json::object{{"id", identity_.id()},
                      {"object", "chat.completion.chunk"},
                      {"created", identity_.created},
                      {"model", identity_.client_model},
                      {"choices", json::array{std::move(choice)}}};
}

Usage StreamDecoder::current_usage() const {
  return make_usage(input_tokens_, cache_read_tokens_, cache_creation_tokens_, output_tokens_);
}

json::object StreamDecoder::usage_chunk() const {
  return json::object{{"id", identity_.id()},         {"object", "chat.completion.chunk"},
                      {"created", identity_.created}, {"model", identity_.client_model},
                      {"choices", json::array()},     {"usage", usage_object(current_usage())}};
}

StreamDecoder::Block* StreamDecoder::find_block(std::int64_t index) {
  for (auto& block : blocks_) {
    if (block.index == index) return &block;
  }
  return nullptr;
}

// Counts present in a usage object replace the ones known: message_delta's are cumulative.
void StreamDecoder::read_usage(const json::value* usage) {
  if (usage == nullptr || !usage->is_object()) return;
  const auto& counts = usage->get_object();
  const std::pair<std::string_view, std::int64_t*> fields[] = {
      {"input_tokens", &input_tokens_},
      {"cache_read_input_tokens", &cache_read_tokens_},
      {"cache_creation_input_tokens", &cache_creation_tokens_},
      {"output_tokens", &output_tokens_}};
  for (const auto& [name, count] : fields) {
    const auto* value = counts.if_contains(name);
    if (value != nullptr && !value->is_null()) *count = count_of(counts, name);
  }
}

std::optional<std::string> StreamDecoder::on_message_start(const json::object& data,
                                                           std::vector<json::object>& chunks) {
  if (role_sent_) return "a second message_start";
  const auto* message = data.if_contains("message");
  if (message == nullptr || !message->is_object()) return "message_start has no 'message'";
  read_usage(message->get_object().if_contains("usage"));
  role_sent_ = true;
  chunks.push_back(chunk(json::object{{"role", "assistant"}, {"content", ""}}, nullptr));
  return std::nullopt;
}

namespace {
std::optional<std::int64_t> block_index(const json::object& data) {
  const auto* index = data.if_contains("index");
  auto value = index != nullptr ? as_integer(*index) : std::nullopt;
  if (!value || *value < 0) return std::nullopt;
  return value;
}
}  // namespace

std::optional<std::string> StreamDecoder::on_block_start(const json::object& data,
                                                         std::vector<json::object>& chunks) {
  auto index = block_index(data);
  if (!index) return "content_block_start has no valid 'index'";
  // Blocks start in their order in the message, so an index at or below one already started
  // is a block started twice or out of order.
  if (*index < next_block_index_) {
    return "content block " + std::to_string(*index) + " started twice or out of order";
  }
  const auto* block = data.if_contains("content_block");
  const auto* type =
      block != nullptr && block->is_object() ? block->get_object().if_contains("type") : nullptr;
  if (type == nullptr || !type->is_string()) return "content_block_start has no block type";
  const auto& b = block->get_object();
  Block opened{*index, BlockKind::ignored, -1};
  if (type->get_string() == "text") {
    opened.kind = BlockKind::text;
    const auto* text = b.if_contains("text");
    if (text != nullptr && text->is_string() && !text->get_string().empty()) {
      chunks.push_back(chunk(json::object{{"content", text->get_string()}}, nullptr));
    }
  } else if (type->get_string() == "tool_use") {
    const auto* id = b.if_contains("id");
    const auto* name = b.if_contains("name");
    if (id == nullptr || !id->is_string() || name == nullptr || !name->is_string()) {
      return "tool_use block " + std::to_string(*index) + " has no id and name";
    }
    opened.kind = BlockKind::tool_use;
    opened.tool_call = tool_calls_++;
    // The input arrives as input_json_delta pieces; a start that already carries it whole
    // (some relays do) gives it as the first piece.
    const auto* input = b.if_contains("input");
    const bool has_input = input != nullptr && input->is_object() && !input->get_object().empty();
    json::object call{{"index", opened.tool_call},
                      {"id", id->get_string()},
                      {"type", "function"},
                      {"function", json::object{{"name", name->get_string()},
                                                {"arguments", has_input ? json::serialize(*input)
                                                                        : std::string()}}}};
    chunks.push_back(chunk(json::object{{"tool_calls", json::array{std::move(call)}}}, nullptr));
  }
  next_block_index_ = *index + 1;
  blocks_.push_back(opened);
  return std::nullopt;
}

std::optional<std::string> StreamDecoder::on_block_delta(const json::object& data,
                                                         std::vector<json::object>& chunks) {
  auto index = block_index(data);
  if (!index) return "content_block_delta has no valid 'index'";
  Block* block = find_block(*index);
  if (block == nullptr) {
    return "content_block_delta for block " + std::to_string(*index) +
           (*index < next_block_index_ ? " after its stop" : " that never started");
  }
  const auto* delta = data.if_contains("delta");
  const auto* type =
      delta != nullptr && delta->is_object() ? delta->get_object().if_contains("type") : nullptr;
  if (type == nullptr || !type->is_string()) return "content_block_delta has no delta type";
  const auto& d = delta->get_object();
  const bool is_text = type->get_string() == "text_delta";
  const bool is_json = type->get_string() == "input_json_delta";
  // Thinking, signature and citation deltas, later delta types, and whatever streams into a
  // block this decoder ignores carry nothing a chat client can hold.
  if ((!is_text && !is_json) || block->kind == BlockKind::ignored) return std::nullopt;
  if (is_text != (block->kind == BlockKind::text)) {
    return std::string(type->get_string()) + " for block " + std::to_string(*index) +
           " of another type";
  }
  const auto* piece = d.if_contains(is_text ? "text" : "partial_json");
  if (piece == nullptr || !piece->is_string()) {
    return std::string(type->get_string()) + " without its text";
  }
  if (piece->get_string().empty()) return std::nullopt;
  if (is_text) {
    chunks.push_back(chunk(json::object{{"content", piece->get_string()}}, nullptr));
  } else {
    json::object call{{"index", block->tool_call},
                      {"function", json::object{{"arguments", piece->get_string()}}}};
    chunks.push_back(chunk(json::object{{"tool_calls", json::array{std::move(call)}}}, nullptr));
  }
  return std::nullopt;
}

std::optional<std::string> StreamDecoder::on_block_stop(const json::object& data) {
  auto index = block_index(data);
  if (!index) return "content_block_stop has no valid 'index'";
  const auto open = std::find_if(blocks_.begin(), blocks_.end(),
                                 [&](const Block& block) { return block.index == *index; });
  if (open == blocks_.end()) {
    return "content_block_stop for block " + std::to_string(*index) + " that is not open";
  }
  // Only open blocks are kept: a long stream holds no more than the blocks it streams into.
  blocks_.erase(open);
  return std::nullopt;
}

void StreamDecoder::emit_finish(std::string_view stop_reason, std::vector<json::object>& chunks) {
  const json::value reason = stop_reason.empty() ? json::value(nullptr) : json::value(stop_reason);
  chunks.push_back(
      chunk(json::object(), json::string(chat_finish_reason(&reason, tool_calls_ > 0))));
  finish_sent_ = true;
}

void StreamDecoder::on_message_delta(const json::object& data, std::vector<json::object>& chunks) {
  read_usage(data.if_contains("usage"));
  const auto* delta = data.if_contains("delta");
  const auto* stop = delta != nullptr && delta->is_object()
                         ? delta->get_object().if_contains("stop_reason")
                         : nullptr;
  const bool finishes = stop != nullptr && stop->is_string() && !finish_sent_;
  if (finishes) emit_finish(stop->get_string(), chunks);
  // The finish is followed by the usage known so far, even when this delta reports none; a
  // later delta that does report usage updates it with another usage chunk.
  const auto* usage = data.if_contains("usage");
  if (finishes || (usage != nullptr && usage->is_object())) chunks.push_back(usage_chunk());
}

std::optional<std::string> StreamDecoder::on_event(const json::object& data,
                                                   std::vector<json::object>& chunks,
                                                   Usage& usage) {
  const auto* type_value = data.if_contains("type");
  if (type_value == nullptr || !type_value->is_string()) return "stream event has no 'type'";
  const std::string_view type = type_value->get_string();
  if (type == "ping") return std::nullopt;
  if (finished_ || provider_error_)
    return "event '" + std::string(type) + "' after the stream ended";
  if (type == "error") {
    const auto* error = data.if_contains("error");
    const auto* message = error != nullptr && error->is_object()
                              ? error->get_object().if_contains("message")
                              : nullptr;
    provider_error_ = message != nullptr && message->is_string()
                          ? std::string(message->get_string())
                          : std::string("the provider streamed an error without a message");
    return std::nullopt;
  }
  if (type == "message_start") {
    auto problem = on_message_start(data, chunks);
    if (!problem) usage = current_usage();
    return problem;
  }
  if (!role_sent_) return "'" + std::string(type) + "' before message_start";
  std::optional<std::string> problem;
  if (type == "content_block_start") {
    problem = on_block_start(data, chunks);
  } else if (type == "content_block_delta") {
    problem = on_block_delta(data, chunks);
  } else if (type == "content_block_stop") {
    problem = on_block_stop(data);
  } else if (type == "message_delta") {
    on_message_delta(data, chunks);
  } else if (type == "message_stop") {
    // A stream that never said why it stopped still ends its choice and reports its usage.
    if (!finish_sent_) {
      emit_finish("", chunks);
      chunks.push_back(usage_chunk());
    }
    finished_ = true;
  }
  // Anthropic may add event types; the ones this decoder does not know carry nothing for it.
  usage = current_usage();
  return problem;
}

}  // namespace cutover::providers::anthropic
