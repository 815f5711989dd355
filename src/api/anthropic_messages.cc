// Anthropic Messages <-> canonical chat completions. The mapping, and every choice the two
// formats leave open, is listed here once; the functions below follow it.
//
// Request (to_chat_request):
// - `system` (string or text blocks, joined with "\n\n") -> a leading system message.
// - user turns: text -> text part; image base64 -> data: URL, image url -> its URL (a file
//   source is refused); document with a plain-text source (`text`, or `content` text blocks) ->
//   a text part, any other document is refused; tool_result -> one `tool` message each, sent
//   before the turn's own parts because chat wants tool messages right after the assistant turn
//   that called them. A tool_result's text blocks are joined; is_error prefixes "Error: " (chat
//   has no error flag, the model has to read it); its images move to the user message that
//   follows the tool messages (tool messages take text only).
// - assistant turns: text blocks joined with no separator (they are pieces of one answer),
//   tool_use -> tool_calls (input serialized as arguments); thinking / redacted_thinking are
//   dropped (their signatures cannot reach another model); a turn left empty is skipped. Chat
//   keeps text before tool calls, so text written after a tool_use moves ahead of it. A final
//   assistant turn (prefill) is forwarded, but chat models answer after it, not continue it.
// - tools {name, description, input_schema, strict} -> function tools; a typed tool other than
//   "custom" is a server tool and is refused. tool_choice auto/any/tool/none -> "auto" /
//   "required" / {function name} / "none", disable_parallel_tool_use -> parallel_tool_calls
//   false; both only when tools are given (chat rejects them otherwise).
// - max_tokens (required), stop_sequences -> stop, temperature, top_p, stream (+ include_usage),
//   metadata.user_id -> user; thinking.budget_tokens -> reasoning_effort (below 4096 low, below
//   16384 medium, else high), output_config.effort -> reasoning_effort (wins over thinking;
//   "max" -> high), output_config.format / output_format json_schema -> response_format.
// - Dropped as harmless: cache_control (anywhere), top_k (a sampling nuance chat lacks),
//   service_tier, citations on text blocks of the history.
// - Anything else (mcp_servers, container, context_management, unknown fields, server tools,
//   non-text documents, file sources, citations requested on documents) -> an error naming it.
//
// Response (to_message): text block when the content is not empty (a refusal counts as text),
// tool_use blocks with valid_tool_id ids and the arguments parsed. Arguments that are not a
// JSON object become {"_raw": "<the text>"}: the client sees what the model wrote and its
// schema check fails loudly instead of a tool running on an invented {}. Empty arguments are {}.
// stop_reason: stop -> end_turn (or stop_sequence when a relay names the matched string),
// length -> max_tokens, tool_calls -> tool_use, content_filter or a refusal -> refusal; tool
// calls force tool_use unless the answer was cut (length) or refused, since a client must not
// run a truncated call.
//
// Stream (StreamEncoder): see on_tool_call_piece for parallel and interleaved tool calls.
#include "api/anthropic_messages.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>

#include "providers/openai_dialect.h"

namespace cutover::api::anthropic {

namespace json = boost::json;

namespace {

using Problem = std::optional<std::string>;

// Anthropic's wording, so SDK users see the messages they know.
std::string field_required(std::string_view path) { return std::string(path) + ": field required"; }

std::string unsupported(std::string_view path, std::string_view why) {
  return std::string(path) + ": " + std::string(why);
}

std::string at_index(std::string_view path, std::size_t index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

std::string member(std::string_view path, std::string_view name) {
  return path.empty() ? std::string(name) : std::string(path) + "." + std::string(name);
}

// The first field of `object` outside `known`, refused by name: the Messages API itself rejects
// unknown fields, so a field here is one this gateway cannot honour.
Problem check_known_fields(const json::object& object,
                           std::initializer_list<std::string_view> known, std::string_view path) {
  for (const auto& field : object) {
    if (std::find(known.begin(), known.end(), field.key()) == known.end()) {
      return unsupported(member(path, field.key()),
                         "not supported by this gateway (no chat-completions equivalent)");
    }
  }
  return std::nullopt;
}

const json::string* string_field(const json::object& object, std::string_view name) {
  const auto* value = object.if_contains(name);
  return value != nullptr && value->is_string() ? &value->get_string() : nullptr;
}

// An integer, whatever JSON number form it came in; nullopt for anything else or out of range.
std::optional<std::int64_t> as_integer(const json::value& value) {
  if (value.is_int64()) return value.get_int64();
  if (value.is_uint64()) {
    if (value.get_uint64() > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(value.get_uint64());
  }
  if (value.is_double()) {
    const double number = value.get_double();
    // The range test also refuses NaN; beyond 2^53 a double holds no exact integer anyway.
    if (number >= -9.0e15 && number <= 9.0e15 && number == std::floor(number)) {
      return static_cast<std::int64_t>(number);
    }
  }
  return std::nullopt;
}

std::string_view type_of(const json::object& block) {
  const auto* type = string_field(block, "type");
  return type != nullptr ? std::string_view(*type) : std::string_view();
}

// Appends the `text` of one text block; any other block is refused by its path.
Problem append_text_block(const json::value& value, std::string_view path, std::string& text) {
  if (!value.is_object()) return unsupported(path, "must be an object");
  const auto& block = value.get_object();
  if (type_of(block) != "text") {
    return unsupported(member(path, "type"), "only text blocks are supported here");
  }
  if (auto problem =
          check_known_fields(block, {"type", "text", "cache_control", "citations"}, path)) {
    return problem;
  }
  const auto* piece = string_field(block, "text");
  if (piece == nullptr) return field_required(member(path, "text"));
  text += *piece;
  return std::nullopt;
}

// Joins text blocks (system prompts, tool results, document content).
Problem join_text_blocks(const json::array& blocks, std::string_view path, std::string_view glue,
                         std::string& joined) {
  for (std::size_t j = 0; j < blocks.size(); ++j) {
    if (j > 0) joined += glue;
    if (auto problem = append_text_block(blocks[j], at_index(path, j), joined)) return problem;
  }
  return std::nullopt;
}

Problem decode_system(const json::value& system, json::array& messages) {
  std::string text;
  if (system.is_string()) {
    text = system.get_string();
  } else if (system.is_array()) {
    if (auto problem = join_text_blocks(system.get_array(), "system", "\n\n", text)) return problem;
  } else {
    return unsupported("system", "must be a string or an array of text blocks");
  }
  if (!text.empty()) messages.push_back(json::object{{"role", "system"}, {"content", text}});
  return std::nullopt;
}

Problem decode_image(const json::object& block, std::string_view path, json::array& parts) {
  if (auto problem = check_known_fields(block, {"type", "source", "cache_control"}, path)) {
    return problem;
  }
  const auto* source_value = block.if_contains("source");
  if (source_value == nullptr || !source_value->is_object()) {
    return field_required(member(path, "source"));
  }
  const auto& source = source_value->get_object();
  const auto source_type = type_of(source);
  std::string url;
  if (source_type == "base64") {
    const auto* media_type = string_field(source, "media_type");
    const auto* data = string_field(source, "data");
    if (media_type == nullptr) return field_required(member(path, "source.media_type"));
    if (data == nullptr) return field_required(member(path, "source.data"));
    url = "data:" + std::string(*media_type) + ";base64," + std::string(*data);
  } else if (source_type == "url") {
    const auto* location = string_field(source, "url");
    if (location == nullptr) return field_required(member(path, "source.url"));
    url = *location;
  } else {
    return unsupported(member(path, "source.type"),
                       "only base64 and url image sources are supported (no file storage here)");
  }
  parts.push_back(json::object{{"type", "image_url"}, {"image_url", json::object{{"url", url}}}});
  return std::nullopt;
}

// A document reaches a chat model only as text: a plain-text source or content text blocks.
Problem decode_document(const json::object& block, std::string_view path, json::array& parts) {
  if (auto problem = check_known_fields(
          block, {"type", "source", "title", "context", "citations", "cache_control"}, path)) {
    return problem;
  }
  if (const auto* citations = block.if_contains("citations");
      citations != nullptr && citations->is_object() &&
      citations->get_object().contains("enabled") &&
      citations->get_object().at("enabled") == true) {
    return unsupported(member(path, "citations"), "citations cannot be produced by chat models");
  }
  const auto* source_value = block.if_contains("source");
  if (source_value == nullptr || !source_value->is_object()) {
    return field_required(member(path, "source"));
  }
  const auto& source = source_value->get_object();
  std::string text;
  if (type_of(source) == "text") {
    const auto* data = string_field(source, "data");
    if (data == nullptr) return field_required(member(path, "source.data"));
    text = *data;
  } else if (type_of(source) == "content" && source.contains("content") &&
             source.at("content").is_string()) {
    text = source.at("content").get_string();
  } else if (type_of(source) == "content" && source.contains("content") &&
             source.at("content").is_array()) {
    if (auto problem = join_text_blocks(source.at("content").get_array(),
                                        member(path, "source.content"), "\n\n", text)) {
      return problem;
    }
  } else {
    return unsupported(member(path, "type"),
                       "a document without a plain-text source has no chat-completions "
                       "equivalent");
  }
  parts.push_back(json::object{{"type", "text"}, {"text", text}});
  return std::nullopt;
}

// One tool_result -> one tool message; its images go to `moved_images` for the user message.
Problem decode_tool_result(const json::object& block, std::string_view path, json::array& tools,
                           json::array& moved_images) {
  if (auto problem = check_known_fields(
          block, {"type", "tool_use_id", "content", "is_error", "cache_control"}, path)) {
    return problem;
  }
  const auto* tool_use_id = string_field(block, "tool_use_id");
  if (tool_use_id == nullptr) return field_required(member(path, "tool_use_id"));
  std::string text;
  if (const auto* content = block.if_contains("content");
      content == nullptr || content->is_null()) {
  } else if (content->is_string()) {
    text = content->get_string();
  } else if (content->is_array()) {
    const auto& blocks = content->get_array();
    bool first_text = true;
    for (std::size_t k = 0; k < blocks.size(); ++k) {
      const auto block_path = at_index(member(path, "content"), k);
      if (blocks[k].is_object() && type_of(blocks[k].get_object()) == "image") {
        if (auto problem = decode_image(blocks[k].get_object(), block_path, moved_images)) {
          return problem;
        }
        continue;
      }
      if (!first_text) text += "\n\n";
      first_text = false;
      if (auto problem = append_text_block(blocks[k], block_path, text)) return problem;
    }
  } else {
    return unsupported(member(path, "content"), "must be a string or an array of blocks");
  }
  if (const auto* is_error = block.if_contains("is_error");
      is_error != nullptr && is_error->is_bool() && is_error->get_bool()) {
    text = text.empty() ? "Error" : "Error: " + text;
  }
  tools.push_back(
      json::object{{"role", "tool"}, {"tool_call_id", *tool_use_id}, {"content", text}});
  return std::nullopt;
}

Problem decode_user_turn(const json::array& blocks, std::string_view path, json::array& messages) {
  json::array tool_messages;
  json::array moved_images;
  json::array parts;
  for (std::size_t j = 0; j < blocks.size(); ++j) {
    const auto block_path = at_index(path, j);
    if (!blocks[j].is_object()) return unsupported(block_path, "must be an object");
    const auto& block = blocks[j].get_object();
    const auto type = type_of(block);
    Problem problem;
    if (type == "text") {
      std::string text;
      problem = append_text_block(block, block_path, text);
      if (!problem) parts.push_back(json::object{{"type", "text"}, {"text", text}});
    } else if (type == "image") {
      problem = decode_image(block, block_path, parts);
    } else if (type == "document") {
      problem = decode_document(block, block_path, parts);
    } else if (type == "tool_result") {
      problem = decode_tool_result(block, block_path, tool_messages, moved_images);
    } else {
      problem = unsupported(member(block_path, "type"),
                            "'" + std::string(type) + "' is not supported in user turns");
    }
    if (problem) return problem;
  }
  for (auto& message : tool_messages) messages.push_back(std::move(message));
  for (auto& part : parts) moved_images.push_back(std::move(part));
  if (moved_images.empty()) return std::nullopt;
  json::value content = std::move(moved_images);
  if (content.get_array().size() == 1 && content.get_array()[0].at("type") == "text") {
    content = json::value(content.get_array()[0].at("text"));
  }
  messages.push_back(json::object{{"role", "user"}, {"content", std::move(content)}});
  return std::nullopt;
}

Problem decode_tool_use(const json::object& block, std::string_view path, json::array& calls) {
  if (auto problem =
          check_known_fields(block, {"type", "id", "name", "input", "cache_control"}, path)) {
    return problem;
  }
  const auto* id = string_field(block, "id");
  const auto* name = string_field(block, "name");
  const auto* input = block.if_contains("input");
  if (id == nullptr) return field_required(member(path, "id"));
  if (name == nullptr) return field_required(member(path, "name"));
  if (input == nullptr || !input->is_object()) {
    return unsupported(member(path, "input"), "must be an object");
  }
  calls.push_back(json::object{
      {"id", *id},
      {"type", "function"},
      {"function", json::object{{"name", *name}, {"arguments", json::serialize(*input)}}}});
  return std::nullopt;
}

Problem decode_assistant_turn(const json::array& blocks, std::string_view path,
                              json::array& messages) {
  std::string text;
  json::array calls;
  for (std::size_t j = 0; j < blocks.size(); ++j) {
    const auto block_path = at_index(path, j);
    if (!blocks[j].is_object()) return unsupported(block_path, "must be an object");
    const auto& block = blocks[j].get_object();
    const auto type = type_of(block);
    Problem problem;
    if (type == "text") {
      problem = append_text_block(block, block_path, text);
    } else if (type == "tool_use") {
      problem = decode_tool_use(block, block_path, calls);
    } else if (type != "thinking" && type != "redacted_thinking") {
      problem = unsupported(member(block_path, "type"),
                            "'" + std::string(type) + "' is not supported in assistant turns");
    }
    if (problem) return problem;
  }
  if (text.empty() && calls.empty()) return std::nullopt;
  json::object message{{"role", "assistant"}};
  message["content"] = text.empty() ? json::value(nullptr) : json::value(text);
  if (!calls.empty()) message["tool_calls"] = std::move(calls);
  messages.push_back(std::move(message));
  return std::nullopt;
}

Problem decode_message(const json::value& value, std::size_t index, json::array& messages) {
  const auto path = at_index("messages", index);
  if (!value.is_object()) return unsupported(path, "must be an object");
  const auto& message = value.get_object();
  if (auto problem = check_known_fields(message, {"role", "content"}, path)) return problem;
  const auto* role = string_field(message, "role");
  if (role == nullptr) return field_required(member(path, "role"));
  if (*role != "user" && *role != "assistant") {
    return unsupported(member(path, "role"), "must be 'user' or 'assistant'");
  }
  const auto* content = message.if_contains("content");
  const auto content_path = member(path, "content");
  if (content == nullptr) return field_required(content_path);
  if (content->is_string()) {
    messages.push_back(json::object{{"role", *role}, {"content", content->get_string()}});
    return std::nullopt;
  }
  if (!content->is_array()) return unsupported(content_path, "must be a string or an array");
  if (content->get_array().empty()) return unsupported(content_path, "must not be empty");
  return *role == "user" ? decode_user_turn(content->get_array(), content_path, messages)
                         : decode_assistant_turn(content->get_array(), content_path, messages);
}

Problem decode_tools(const json::value& value, json::object& chat) {
  if (!value.is_array()) return unsupported("tools", "must be an array");
  json::array tools;
  for (std::size_t i = 0; i < value.get_array().size(); ++i) {
    const auto path = at_index("tools", i);
    const auto& item = value.get_array()[i];
    if (!item.is_object()) return unsupported(path, "must be an object");
    const auto& tool = item.get_object();
    if (const auto* type = tool.if_contains("type");
        type != nullptr && !(type->is_string() && type->get_string() == "custom")) {
      return unsupported(member(path, "type"),
                         "server tools (web search, code execution, computer use, ...) have no "
                         "chat-completions equivalent; only custom tools with input_schema are "
                         "supported");
    }
    if (auto problem = check_known_fields(
            tool, {"type", "name", "description", "input_schema", "strict", "cache_control"},
            path)) {
      return problem;
    }
    const auto* name = string_field(tool, "name");
    if (name == nullptr) return field_required(member(path, "name"));
    const auto* schema = tool.if_contains("input_schema");
    if (schema == nullptr) return field_required(member(path, "input_schema"));
    if (!schema->is_object()) return unsupported(member(path, "input_schema"), "must be an object");
    json::object function{{"name", *name}, {"parameters", *schema}};
    if (const auto* description = string_field(tool, "description")) {
      function["description"] = *description;
    }
    if (const auto* strict = tool.if_contains("strict"); strict != nullptr && strict->is_bool()) {
      function["strict"] = *strict;
    }
    tools.push_back(json::object{{"type", "function"}, {"function", std::move(function)}});
  }
  if (!tools.empty()) chat["tools"] = std::move(tools);
  return std::nullopt;
}

Problem decode_tool_choice(const json::value& value, json::object& chat) {
  if (!value.is_object()) return unsupported("tool_choice", "must be an object");
  const auto& choice = value.get_object();
  if (auto problem = check_known_fields(choice, {"type", "name", "disable_parallel_tool_use"},
                                        "tool_choice")) {
    return problem;
  }
  const auto type = type_of(choice);
  json::value mapped;
  if (type == "auto") {
    mapped = "auto";
  } else if (type == "any") {
    mapped = "required";
  } else if (type == "none") {
    mapped = "none";
  } else if (type == "tool") {
    const auto* name = string_field(choice, "name");
    if (name == nullptr) return field_required("tool_choice.name");
    mapped = json::object{{"type", "function"}, {"function", json::object{{"name", *name}}}};
  } else {
    return unsupported("tool_choice.type", "must be one of auto, any, tool, none");
  }
  // Chat rejects tool_choice and parallel_tool_calls without tools; Anthropic's are moot then.
  if (!chat.contains("tools")) return std::nullopt;
  chat["tool_choice"] = std::move(mapped);
  const auto* disable_parallel = choice.if_contains("disable_parallel_tool_use");
  if (type != "none" && disable_parallel != nullptr && disable_parallel->is_bool() &&
      disable_parallel->get_bool()) {
    chat["parallel_tool_calls"] = false;
  }
  return std::nullopt;
}

Problem decode_thinking(const json::value& value, json::object& chat) {
  if (!value.is_object()) return unsupported("thinking", "must be an object");
  const auto& thinking = value.get_object();
  if (auto problem =
          check_known_fields(thinking, {"type", "budget_tokens", "display"}, "thinking")) {
    return problem;
  }
  const auto type = type_of(thinking);
  // Adaptive thinking lets the model decide: the upstream's default effort is the equivalent.
  if (type == "disabled" || type == "adaptive") return std::nullopt;
  if (type != "enabled")
    return unsupported("thinking.type", "must be enabled, disabled or adaptive");
  const auto* budget_value = thinking.if_contains("budget_tokens");
  if (budget_value == nullptr) return field_required("thinking.budget_tokens");
  const auto budget = as_integer(*budget_value);
  if (!budget) return unsupported("thinking.budget_tokens", "must be an integer");
  chat["reasoning_effort"] = *budget < 4096 ? "low" : *budget < 16384 ? "medium" : "high";
  return std::nullopt;
}

Problem decode_output_format(const json::value& value, std::string_view path, json::object& chat) {
  if (!value.is_object()) return unsupported(path, "must be an object");
  const auto& format = value.get_object();
  if (auto problem = check_known_fields(format, {"type", "schema"}, path)) return problem;
  if (type_of(format) != "json_schema")
    return unsupported(member(path, "type"), "must be json_schema");
  const auto* schema = format.if_contains("schema");
  if (schema == nullptr || !schema->is_object()) return field_required(member(path, "schema"));
  chat["response_format"] = json::object{
      {"type", "json_schema"},
      {"json_schema", json::object{{"name", "response"}, {"schema", *schema}, {"strict", true}}}};
  return std::nullopt;
}

Problem decode_output_config(const json::value& value, json::object& chat) {
  if (!value.is_object()) return unsupported("output_config", "must be an object");
  const auto& config = value.get_object();
  if (auto problem = check_known_fields(config, {"effort", "format"}, "output_config")) {
    return problem;
  }
  if (const auto* format = config.if_contains("format"); format != nullptr && !format->is_null()) {
    if (auto problem = decode_output_format(*format, "output_config.format", chat)) return problem;
  }
  if (const auto* effort_value = config.if_contains("effort");
      effort_value != nullptr && !effort_value->is_null()) {
    const auto* effort = effort_value->if_string();
    if (effort == nullptr ||
        (*effort != "low" && *effort != "medium" && *effort != "high" && *effort != "max")) {
      return unsupported("output_config.effort", "must be low, medium, high or max");
    }
    chat["reasoning_effort"] = *effort == "max" ? json::string("high") : *effort;
  }
  return std::nullopt;
}

Problem decode_stop_sequences(const json::value& value, json::object& chat) {
  if (!value.is_array()) return unsupported("stop_sequences", "must be an array of strings");
  for (std::size_t i = 0; i < value.get_array().size(); ++i) {
    if (!value.get_array()[i].is_string()) {
      return unsupported(at_index("stop_sequences", i), "must be a string");
    }
  }
  if (!value.get_array().empty()) chat["stop"] = value;
  return std::nullopt;
}

Problem decode_metadata(const json::value& value, json::object& chat) {
  if (!value.is_object()) return unsupported("metadata", "must be an object");
  const auto& metadata = value.get_object();
  if (auto problem = check_known_fields(metadata, {"user_id"}, "metadata")) return problem;
  if (const auto* user = metadata.if_contains("user_id"); user != nullptr && !user->is_null()) {
    if (!user->is_string()) return unsupported("metadata.user_id", "must be a string");
    chat["user"] = *user;
  }
  return std::nullopt;
}

Problem decode_sampling(const json::object& request, json::object& chat) {
  const auto* max_tokens_value = request.if_contains("max_tokens");
  if (max_tokens_value == nullptr) return field_required("max_tokens");
  const auto max_tokens = as_integer(*max_tokens_value);
  if (!max_tokens || *max_tokens < 1) {
    return unsupported("max_tokens", "must be an integer of at least 1");
  }
  chat["max_tokens"] = *max_tokens;
  for (std::string_view name : {"temperature", "top_p"}) {
    const auto* value = request.if_contains(name);
    if (value == nullptr || value->is_null()) continue;
    if (!value->is_number()) return unsupported(name, "must be a number");
    chat[name] = *value;
  }
  if (const auto* stream = request.if_contains("stream"); stream != nullptr && !stream->is_null()) {
    if (!stream->is_bool()) return unsupported("stream", "must be a boolean");
    chat["stream"] = *stream;
    if (stream->get_bool()) chat["stream_options"] = json::object{{"include_usage", true}};
  }
  return std::nullopt;
}

// Optional fields whose decoder runs when present and not null, in this order: tools before
// tool_choice (which needs them), thinking before output_config (whose effort wins).
using FieldDecoder = Problem (*)(const json::value&, json::object&);
constexpr std::array<std::pair<std::string_view, FieldDecoder>, 7> kOptionalFields{{
    {"tools", decode_tools},
    {"tool_choice", decode_tool_choice},
    {"stop_sequences", decode_stop_sequences},
    {"metadata", decode_metadata},
    {"thinking", decode_thinking},
    {"output_format",
     [](const json::value& value, json::object& chat) {
       return decode_output_format(value, "output_format", chat);
     }},
    {"output_config", decode_output_config},
}};

}  // namespace

std::optional<std::string> to_chat_request(const json::object& request, json::object& chat) {
  chat = json::object{};
  if (auto problem = check_known_fields(
          request,
          {"model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p",
           "top_k", "stream", "metadata", "tools", "tool_choice", "thinking", "output_config",
           "output_format", "service_tier", "cache_control"},
          "")) {
    return problem;
  }
  const auto* model = request.if_contains("model");
  if (model == nullptr) return field_required("model");
  if (!model->is_string()) return unsupported("model", "must be a string");
  chat["model"] = *model;
  const auto* history = request.if_contains("messages");
  if (history == nullptr) return field_required("messages");
  if (!history->is_array()) return unsupported("messages", "must be an array");
  if (history->get_array().empty())
    return unsupported("messages", "at least one message is required");
  if (auto problem = decode_sampling(request, chat)) return problem;

  json::array messages;
  if (const auto* system = request.if_contains("system"); system != nullptr && !system->is_null()) {
    if (auto problem = decode_system(*system, messages)) return problem;
  }
  for (std::size_t i = 0; i < history->get_array().size(); ++i) {
    if (auto problem = decode_message(history->get_array()[i], i, messages)) return problem;
  }
  // Only thinking-only assistant turns can vanish; a chat request needs something to answer.
  if (messages.empty()) {
    return unsupported("messages", "no message is left once thinking blocks are dropped");
  }
  chat["messages"] = std::move(messages);
  for (const auto& [name, decode] : kOptionalFields) {
    const auto* value = request.if_contains(name);
    if (value == nullptr || value->is_null()) continue;
    if (auto problem = decode(*value, chat)) return problem;
  }
  return std::nullopt;
}

namespace {

struct AnthropicUsage {
  std::int64_t input = 0;
  std::int64_t output = 0;
  std::int64_t cache_read = 0;
  std::int64_t cache_creation = 0;
};

// Chat usage counts cached reads and writes inside prompt_tokens; Anthropic's input_tokens
// leaves both out.
std::optional<AnthropicUsage> anthropic_usage(const json::value& value) {
  const auto usage = providers::extract_usage(value);
  if (!usage.present) return std::nullopt;
  AnthropicUsage converted;
  converted.cache_read = std::max<std::int64_t>(usage.cached_prompt_tokens, 0);
  if (const auto* details = value.get_object().if_contains("prompt_tokens_details");
      details != nullptr && details->is_object()) {
    if (const auto* creation = details->get_object().if_contains("cache_creation_tokens")) {
      converted.cache_creation = std::max<std::int64_t>(as_integer(*creation).value_or(0), 0);
    }
  }
  converted.input = std::max<std::int64_t>(
      usage.prompt_tokens - converted.cache_read - converted.cache_creation, 0);
  converted.output = std::max<std::int64_t>(usage.completion_tokens, 0);
  return converted;
}

json::object usage_object(const AnthropicUsage& usage) {
  return json::object{{"input_tokens", usage.input},
                      {"output_tokens", usage.output},
                      {"cache_read_input_tokens", usage.cache_read},
                      {"cache_creation_input_tokens", usage.cache_creation}};
}

struct StopOutcome {
  std::string_view finish_reason;
  bool has_tool_calls = false;
  bool refused = false;
  std::string_view stop_sequence;  // a relay's matched stop string, empty when none
};

std::string_view stop_reason(const StopOutcome& outcome) {
  const auto finish = outcome.finish_reason;
  if (outcome.refused || finish == "content_filter") return "refusal";
  if (finish == "length") return "max_tokens";
  if (outcome.has_tool_calls || finish == "tool_calls" || finish == "function_call") {
    return "tool_use";
  }
  if (!outcome.stop_sequence.empty()) return "stop_sequence";
  return "end_turn";
}

// vLLM-style relays name the stop string that ended the answer in choices[].stop_reason.
std::string_view matched_stop_sequence(const json::object& choice) {
  const auto* matched = string_field(choice, "stop_reason");
  return matched != nullptr ? std::string_view(*matched) : std::string_view();
}

const json::object* first_choice(const json::object& body) {
  const auto* choices = body.if_contains("choices");
  if (choices == nullptr || !choices->is_array()) return nullptr;
  for (const auto& choice : choices->get_array()) {
    if (!choice.is_object()) continue;
    const auto* index = choice.get_object().if_contains("index");
    if (index == nullptr || as_integer(*index).value_or(0) == 0) return &choice.get_object();
  }
  return nullptr;
}

// The text of a message's content, whether a string or an array of text parts.
std::string content_text(const json::value* content) {
  if (content == nullptr) return {};
  if (content->is_string()) return std::string(content->get_string());
  std::string text;
  if (content->is_array()) {
    for (const auto& part : content->get_array()) {
      if (!part.is_object()) continue;
      if (const auto* piece = string_field(part.get_object(), "text")) text += *piece;
    }
  }
  return text;
}

const json::parse_options kArgumentParsing = [] {
  json::parse_options options;
  options.max_depth = 256;  // tool schemas nest deeper than Boost's default of 32
  return options;
}();

// Tool arguments as the tool_use input object; see the header comment of this file for _raw.
json::object tool_input(std::string_view arguments) {
  if (arguments.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  boost::system::error_code ec;
  auto parsed = json::parse(arguments, ec, {}, kArgumentParsing);
  if (!ec && parsed.is_object()) return std::move(parsed.get_object());
  return json::object{{"_raw", arguments}};
}

std::string tool_call_suffix(std::string_view message_id, std::size_t index) {
  return std::string(message_id) + "_" + std::to_string(index);
}

json::array tool_use_blocks(const json::object& message, std::string_view message_id) {
  json::array blocks;
  const auto* calls = message.if_contains("tool_calls");
  if (calls == nullptr || !calls->is_array()) return blocks;
  for (std::size_t i = 0; i < calls->get_array().size(); ++i) {
    const auto& item = calls->get_array()[i];
    if (!item.is_object()) continue;
    const auto& call = item.get_object();
    const auto* id = string_field(call, "id");
    const json::object* function = nullptr;
    if (const auto* value = call.if_contains("function"); value != nullptr && value->is_object()) {
      function = &value->get_object();
    }
    const json::string* name = function != nullptr ? string_field(*function, "name") : nullptr;
    const json::string* arguments =
        function != nullptr ? string_field(*function, "arguments") : nullptr;
    blocks.push_back(json::object{
        {"type", "tool_use"},
        {"id", valid_tool_id(id != nullptr ? std::string_view(*id) : std::string_view(),
                             tool_call_suffix(message_id, i))},
        {"name", name != nullptr ? std::string_view(*name) : std::string_view()},
        {"input",
         tool_input(arguments != nullptr ? std::string_view(*arguments) : std::string_view())}});
  }
  return blocks;
}

}  // namespace

json::object to_message(const json::object& completion, std::string_view id,
                        std::string_view client_model) {
  static const json::object kNoMessage;
  const auto* choice = first_choice(completion);
  const json::object* message = &kNoMessage;
  if (choice != nullptr) {
    if (const auto* value = choice->if_contains("message");
        value != nullptr && value->is_object()) {
      message = &value->get_object();
    }
  }
  json::array content;
  auto text = content_text(message->if_contains("content"));
  const auto refusal = content_text(message->if_contains("refusal"));
  if (text.empty()) text = refusal;
  if (!text.empty()) content.push_back(json::object{{"type", "text"}, {"text", text}});
  auto tools = tool_use_blocks(*message, id);
  StopOutcome outcome;
  outcome.has_tool_calls = !tools.empty();
  outcome.refused = !refusal.empty();
  if (choice != nullptr) {
    if (const auto* finish = string_field(*choice, "finish_reason"))
      outcome.finish_reason = *finish;
    outcome.stop_sequence = matched_stop_sequence(*choice);
  }
  for (auto& block : tools) content.push_back(std::move(block));
  const auto reason = stop_reason(outcome);
  const auto* usage = completion.if_contains("usage");
  return json::object{
      {"id", id},
      {"type", "message"},
      {"role", "assistant"},
      {"model", client_model},
      {"content", std::move(content)},
      {"stop_reason", reason},
      {"stop_sequence",
       reason == "stop_sequence" ? json::value(outcome.stop_sequence) : json::value(nullptr)},
      {"usage", usage_object(usage != nullptr ? anthropic_usage(*usage).value_or(AnthropicUsage{})
                                              : AnthropicUsage{})}};
}

// The stream, for a client's accumulator (the SDKs' MessageStream): message_start, then blocks
// numbered 0, 1, 2... in the order they open, one open at a time, each delta of its block's
// kind; message_delta (stop reason and the whole usage, input_tokens included) and
// message_stop only in finish(), because the usage chunk follows the finish_reason chunk.
namespace {

void emit(std::string& out, std::string_view event, const json::object& data) {
  out += "event: ";
  out += event;
  out += "\ndata: ";
  out += json::serialize(data);
  out += "\n\n";
}

void emit_delta(std::string& out, int block, json::object delta) {
  emit(
      out, "content_block_delta",
      json::object{{"type", "content_block_delta"}, {"index", block}, {"delta", std::move(delta)}});
}

void emit_json_delta(std::string& out, int block, std::string_view partial_json) {
  emit_delta(out, block,
             json::object{{"type", "input_json_delta"}, {"partial_json", partial_json}});
}

}  // namespace

StreamEncoder::StreamEncoder(std::string id, std::string client_model)
    : id_(std::move(id)), client_model_(std::move(client_model)) {}

void StreamEncoder::start(std::string& out) {
  if (started_) return;
  started_ = true;
  // The real input count is known only from the usage chunk; message_delta carries it.
  json::object message{{"id", id_},
                       {"type", "message"},
                       {"role", "assistant"},
                       {"model", client_model_},
                       {"content", json::array{}},
                       {"stop_reason", nullptr},
                       {"stop_sequence", nullptr},
                       {"usage", usage_object(AnthropicUsage{})}};
  emit(out, "message_start",
       json::object{{"type", "message_start"}, {"message", std::move(message)}});
  emit(out, "ping", json::object{{"type", "ping"}});
}

void StreamEncoder::on_chunk(const json::object& chunk, std::string& out) {
  if (finished_) return;
  start(out);
  if (const auto* choice = first_choice(chunk)) {
    const auto* delta = choice->if_contains("delta");
    if (delta != nullptr && delta->is_object()) {
      on_text(content_text(delta->get_object().if_contains("content")), out);
      const auto refusal = content_text(delta->get_object().if_contains("refusal"));
      if (!refusal.empty()) {
        refused_ = true;
        on_text(refusal, out);
      }
      const auto* calls = delta->get_object().if_contains("tool_calls");
      if (calls != nullptr && calls->is_array()) {
        for (const auto& piece : calls->get_array()) {
          if (finished_) return;
          if (piece.is_object()) on_tool_call_piece(piece.get_object(), out);
        }
      }
    }
    if (const auto* finish = string_field(*choice, "finish_reason")) {
      finish_reason_ = *finish;
      stop_sequence_ = matched_stop_sequence(*choice);
    }
  }
  if (const auto* usage = chunk.if_contains("usage"); usage != nullptr) record_usage(*usage);
}

void StreamEncoder::on_text(std::string_view text, std::string& out) {
  if (text.empty()) return;
  if (open_block_ == -1 || open_tool_index_ != -1) {
    close_open_block(out);
    open_text_block(out);
  }
  emit_delta(out, open_block_, json::object{{"type", "text_delta"}, {"text", text}});
}

void StreamEncoder::open_text_block(std::string& out) {
  open_block_ = next_block_++;
  emit(out, "content_block_start",
       json::object{{"type", "content_block_start"},
                    {"index", open_block_},
                    {"content_block", json::object{{"type", "text"}, {"text", ""}}}});
}

// A tool call's block opens when the call first appears, closing whatever was open, and its
// argument pieces stream while it stays the open block. Calls interleaved by index (a piece for
// call 0 after call 1 began) never reopen a closed block: the late pieces are held and sent as
// deltas of the call's own block index just before message_delta, which the SDKs' accumulators
// apply by index. Arguments are validated as they pass (Boost's incremental parser): a JSON
// object streams as it comes; text that does not start an object is held and sent at the
// block's close as {"_raw": text}, like to_message; text that stops being JSON after part of it
// was streamed cannot be taken back, so the stream fails with an error event.
void StreamEncoder::on_tool_call_piece(const json::object& piece, std::string& out) {
  const auto* index_value = piece.if_contains("index");
  const auto index = index_value != nullptr ? as_integer(*index_value).value_or(0) : 0;
  const json::object* function = nullptr;
  if (const auto* value = piece.if_contains("function"); value != nullptr && value->is_object()) {
    function = &value->get_object();
  }
  const auto* id = string_field(piece, "id");
  retire_if_reused(index, id != nullptr ? std::string_view(*id) : std::string_view(), out);
  auto [position, inserted] = tool_calls_.try_emplace(index);
  auto& call = position->second;
  if (inserted) {
    close_open_block(out);
    call.block = open_block_ = next_block_++;
    open_tool_index_ = index;
    if (id != nullptr) call.id = *id;
    const auto* name = function != nullptr ? string_field(*function, "name") : nullptr;
    json::object block{
        {"type", "tool_use"},
        {"id", valid_tool_id(id != nullptr ? std::string_view(*id) : std::string_view(),
                             id_ + "_" + std::to_string(call.block))},
        {"name", name != nullptr ? std::string_view(*name) : std::string_view()},
        {"input", json::object{}}};
    emit(out, "content_block_start",
         json::object{{"type", "content_block_start"},
                      {"index", call.block},
                      {"content_block", std::move(block)}});
  }
  const auto* arguments = function != nullptr ? string_field(*function, "arguments") : nullptr;
  if (arguments == nullptr || arguments->empty()) return;
  const bool open = index == open_tool_index_;
  auto streamable = accept_arguments(call, *arguments);
  if (!streamable || (!open && call.shape == ToolCall::Shape::raw)) {
    fail(502, "the model's tool-call arguments are not valid JSON and cannot be streamed", out);
    return;
  }
  if (streamable->empty()) return;
  if (open) {
    emit_json_delta(out, call.block, *streamable);
  } else {
    call.late += *streamable;
  }
}

// Some relays number every call 0 and tell them apart only by id: a new id at a known index is
// a new call, and the old one keeps its block (and any late pieces) under retired_calls_.
void StreamEncoder::retire_if_reused(std::int64_t index, std::string_view id, std::string& out) {
  const auto known = tool_calls_.find(index);
  if (known == tool_calls_.end() || id.empty() || id == known->second.id) return;
  if (open_tool_index_ == index) close_open_block(out);
  retired_calls_.push_back(std::move(known->second));
  tool_calls_.erase(known);
}

std::optional<std::string> StreamEncoder::accept_arguments(ToolCall& call, std::string_view piece) {
  call.arguments += piece;
  boost::system::error_code ec;
  switch (call.shape) {
    case ToolCall::Shape::pending: {
      const auto first = call.arguments.find_first_not_of(" \t\r\n");
      if (first == std::string::npos) return std::string();
      if (call.arguments[first] != '{') {
        call.shape = ToolCall::Shape::raw;
        return std::string();
      }
      call.shape = ToolCall::Shape::object;
      call.validator = std::make_unique<json::stream_parser>(json::storage_ptr(), kArgumentParsing);
      call.validator->write(call.arguments, ec);
      if (ec) return std::nullopt;
      return call.arguments;
    }
    case ToolCall::Shape::object:
      call.validator->write(piece, ec);
      if (ec) return std::nullopt;
      return std::string(piece);
    case ToolCall::Shape::raw:
      break;
  }
  return std::string();
}

void StreamEncoder::close_open_block(std::string& out) {
  if (open_block_ == -1) return;
  if (open_tool_index_ != -1) {
    const auto& call = tool_calls_.at(open_tool_index_);
    if (call.shape == ToolCall::Shape::raw) {
      emit_json_delta(out, call.block, json::serialize(json::object{{"_raw", call.arguments}}));
    }
  }
  emit(out, "content_block_stop",
       json::object{{"type", "content_block_stop"}, {"index", open_block_}});
  open_block_ = -1;
  open_tool_index_ = -1;
}

void StreamEncoder::record_usage(const json::value& value) {
  const auto usage = anthropic_usage(value);
  if (!usage) return;
  input_tokens_ = usage->input;
  output_tokens_ = usage->output;
  cache_read_tokens_ = usage->cache_read;
  cache_creation_tokens_ = usage->cache_creation;
}

void StreamEncoder::finish(std::string& out) {
  if (finished_) return;
  start(out);
  close_open_block(out);
  for (const auto& call : retired_calls_) {
    if (!call.late.empty()) emit_json_delta(out, call.block, call.late);
  }
  for (const auto& [index, call] : tool_calls_) {
    if (!call.late.empty()) emit_json_delta(out, call.block, call.late);
  }
  StopOutcome outcome;
  outcome.finish_reason = finish_reason_;
  outcome.has_tool_calls = !tool_calls_.empty() || !retired_calls_.empty();
  outcome.refused = refused_;
  outcome.stop_sequence = stop_sequence_;
  const auto reason = stop_reason(outcome);
  json::object delta{{"stop_reason", reason},
                     {"stop_sequence", reason == "stop_sequence" ? json::value(stop_sequence_)
                                                                 : json::value(nullptr)}};
  const AnthropicUsage usage{input_tokens_, output_tokens_, cache_read_tokens_,
                             cache_creation_tokens_};
  emit(out, "message_delta",
       json::object{
           {"type", "message_delta"}, {"delta", std::move(delta)}, {"usage", usage_object(usage)}});
  emit(out, "message_stop", json::object{{"type", "message_stop"}});
  finished_ = true;
}

void StreamEncoder::fail(unsigned status, std::string_view message, std::string& out) {
  if (finished_) return;
  emit(out, "error",
       json::object{{"type", "error"},
                    {"error", json::object{{"type", error_type(status)}, {"message", message}}}});
  finished_ = true;
}

std::string_view error_type(unsigned status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    default:
      break;
  }
  return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
}

std::string error_body(unsigned status, std::string_view message, std::string_view request_id) {
  json::object body{{"type", "error"},
                    {"error", json::object{{"type", error_type(status)}, {"message", message}}}};
  if (!request_id.empty()) body["request_id"] = request_id;
  return json::serialize(body);
}

namespace {

bool is_anthropic_error_type(std::string_view type) {
  static constexpr std::array<std::string_view, 10> kTypes{
      "invalid_request_error", "authentication_error", "billing_error",
      "permission_error",      "not_found_error",      "request_too_large",
      "rate_limit_error",      "timeout_error",        "api_error",
      "overloaded_error"};
  return std::find(kTypes.begin(), kTypes.end(), type) != kTypes.end();
}

std::string generic_message(unsigned status) {
  std::string_view what = "the upstream service failed";
  switch (status) {
    case 400:
      what = "the request was rejected";
      break;
    case 401:
      what = "authentication failed";
      break;
    case 403:
      what = "permission denied";
      break;
    case 404:
      what = "not found";
      break;
    case 413:
      what = "the request is too large";
      break;
    case 429:
      what = "rate limit exceeded";
      break;
    case 503:
    case 529:
      what = "the service is overloaded";
      break;
    default:
      if (status >= 400 && status < 500) what = "the request was rejected";
  }
  return std::string(what) + " (HTTP " + std::to_string(status) + ")";
}

}  // namespace

std::string error_body_from(std::string_view body, unsigned status, std::string_view request_id) {
  boost::system::error_code ec;
  const auto parsed = json::parse(body, ec);
  std::string message;
  std::string type(error_type(status));
  std::string id(request_id);
  if (!ec && parsed.is_object()) {
    const auto& object = parsed.get_object();
    const auto* error = object.if_contains("error");
    if (error != nullptr && error->is_object()) {
      if (const auto* text = string_field(error->get_object(), "message")) message = *text;
      // A native Anthropic body knows its type better than the status does (billing, timeout).
      const auto* native_type = string_field(error->get_object(), "type");
      if (type_of(object) == "error" && native_type != nullptr &&
          is_anthropic_error_type(*native_type)) {
        type = *native_type;
      }
    } else if (error != nullptr && error->is_string()) {
      message = error->get_string();
    } else if (const auto* text = string_field(object, "message")) {
      message = *text;
    }
    if (const auto* native_id = string_field(object, "request_id"); id.empty() && native_id) {
      id = *native_id;
    }
  }
  if (message.empty()) message = generic_message(status);
  json::object encoded{{"type", "error"},
                       {"error", json::object{{"type", type}, {"message", message}}}};
  if (!id.empty()) encoded["request_id"] = id;
  return json::serialize(encoded);
}

std::string valid_tool_id(std::string_view id, std::string_view fallback_suffix) {
  std::string valid = id.empty() ? "toolu_" + std::string(fallback_suffix) : std::string(id);
  for (auto& c : valid) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!allowed) c = '_';
  }
  return valid;
}

}  // namespace cutover::api::anthropic
