#include "api/responses.h"

#include <cmath>
#include <set>
#include <utility>
#include <vector>

#include "providers/openai_dialect.h"

namespace cutover::api::responses {

namespace json = boost::json;

namespace {

using Problem = std::optional<std::string>;

std::string quoted(std::string_view path) { return "'" + std::string(path) + "'"; }

// JSON indexes as int64, the kind Boost.JSON gives parsed numbers.
std::int64_t as_index(std::size_t index) { return static_cast<std::int64_t>(index); }

std::string indexed(std::string_view base, std::size_t index) {
  return std::string(base) + "[" + std::to_string(index) + "]";
}

bool is_number(const json::value& value) {
  return value.is_int64() || value.is_uint64() || value.is_double();
}

const json::value* present(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  return value == nullptr || value->is_null() ? nullptr : value;
}

std::string_view string_or(const json::object& object, std::string_view key,
                           std::string_view fallback) {
  const auto* value = object.if_contains(key);
  return value != nullptr && value->is_string() ? std::string_view(value->get_string())
                                                : fallback;
}

// A token count from a usage object; anything that is not a sane non-negative integer is 0.
std::int64_t count_of(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  if (value == nullptr) return 0;
  if (value->is_int64()) return std::max<std::int64_t>(value->get_int64(), 0);
  if (value->is_uint64()) {
    return value->get_uint64() > 9'000'000'000'000'000ULL
               ? 0
               : static_cast<std::int64_t>(value->get_uint64());
  }
  if (value->is_double() && std::isfinite(value->get_double()) && value->get_double() >= 0 &&
      value->get_double() < 9.0e15) {
    return static_cast<std::int64_t>(value->get_double());
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Request: top-level fields.

enum class FieldRule {
  decoded,    // read by to_chat_request below
  harmless,   // accepted and dropped: it does not change the answer
  stateful,   // needs server state cutover does not keep: refused unless null
};

struct KnownField {
  std::string_view name;
  FieldRule rule;
};

constexpr KnownField kKnownFields[] = {
    {"model", FieldRule::decoded},
    {"input", FieldRule::decoded},
    {"instructions", FieldRule::decoded},
    {"tools", FieldRule::decoded},
    {"tool_choice", FieldRule::decoded},
    {"parallel_tool_calls", FieldRule::decoded},
    {"max_output_tokens", FieldRule::decoded},
    {"temperature", FieldRule::decoded},
    {"top_p", FieldRule::decoded},
    {"text", FieldRule::decoded},
    {"reasoning", FieldRule::decoded},
    {"user", FieldRule::decoded},
    {"metadata", FieldRule::decoded},
    {"store", FieldRule::decoded},
    {"stream", FieldRule::decoded},
    {"background", FieldRule::decoded},
    {"include", FieldRule::decoded},
    {"truncation", FieldRule::decoded},
    {"stream_options", FieldRule::harmless},  // only include_obfuscation, a transport detail
    {"service_tier", FieldRule::harmless},
    {"safety_identifier", FieldRule::harmless},
    {"prompt_cache_key", FieldRule::harmless},
    {"prompt_cache_retention", FieldRule::harmless},
    {"top_logprobs", FieldRule::harmless},    // logprobs are only returned through `include`
    {"max_tool_calls", FieldRule::harmless},  // limits hosted tools, which are refused anyway
    {"previous_response_id", FieldRule::stateful},
    {"conversation", FieldRule::stateful},
    {"prompt", FieldRule::stateful},
};

Problem check_top_level_fields(const json::object& request) {
  for (const auto& [key, value] : request) {
    const KnownField* known = nullptr;
    for (const auto& field : kKnownFields) {
      if (field.name == key) known = &field;
    }
    if (known == nullptr) return "unsupported parameter " + quoted(key);
    if (known->rule == FieldRule::stateful && !value.is_null()) {
      return quoted(key) +
             " is not supported: this gateway is stateless; send the whole conversation in "
             "'input'";
    }
  }
  if (const auto* background = present(request, "background")) {
    if (!background->is_bool()) return "'background' must be a boolean";
    if (background->get_bool()) {
      return "'background' is not supported: this gateway does not keep responses to poll";
    }
  }
  if (const auto* store = present(request, "store"); store != nullptr && !store->is_bool()) {
    return "'store' must be a boolean";
  }
  if (const auto* truncation = present(request, "truncation")) {
    if (!truncation->is_string()) return "'truncation' must be a string";
    if (truncation->get_string() != "disabled") {
      return "'truncation' must be \"disabled\": the gateway cannot shorten the conversation";
    }
  }
  if (const auto* include = present(request, "include")) {
    if (!include->is_array()) return "'include' must be an array";
    const auto& values = include->get_array();
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!values[i].is_string()) return quoted(indexed("include", i)) + " must be a string";
      // Every other value adds output of hosted tools or reasoning, which this gateway never
      // produces, so asking for it changes nothing.
      if (values[i].get_string() == "message.output_text.logprobs") {
        return quoted(indexed("include", i)) +
               " \"message.output_text.logprobs\" is not supported";
      }
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Request: input items.

struct TextParts {
  json::array parts;  // chat content parts: text and image_url
  bool has_image = false;
};

std::string joined_text(const json::array& parts) {
  std::string text;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) text += "\n";
    text += parts[i].at("text").as_string();
  }
  return text;
}

Problem decode_image_part(const json::object& part, const std::string& path, TextParts& out) {
  if (present(part, "file_id") != nullptr) {
    return quoted(path + ".file_id") +
           " is not supported: uploaded files are not available here; send image_url (an URL "
           "or a data URL)";
  }
  const auto* url = present(part, "image_url");
  if (url == nullptr || !url->is_string()) {
    return quoted(path + ".image_url") + " must be a string";
  }
  json::object image{{"url", url->get_string()}};
  if (const auto* detail = present(part, "detail")) {
    if (!detail->is_string()) return quoted(path + ".detail") + " must be a string";
    image["detail"] = detail->get_string();
  }
  out.parts.push_back(json::object{{"type", "image_url"}, {"image_url", std::move(image)}});
  out.has_image = true;
  return std::nullopt;
}

// The parts of a message's content (or of a function_call_output's output) as chat parts.
Problem decode_parts(const json::array& parts, const std::string& path, TextParts& out) {
  for (std::size_t j = 0; j < parts.size(); ++j) {
    const auto part_path = indexed(path, j);
    if (!parts[j].is_object()) return quoted(part_path) + " must be an object";
    const auto& part = parts[j].get_object();
    const auto* type = part.if_contains("type");
    if (type == nullptr || !type->is_string()) {
      return quoted(part_path + ".type") + " must be a string";
    }
    const auto& kind = type->get_string();
    if (kind == "input_text" || kind == "output_text" || kind == "refusal") {
      const auto* text = part.if_contains(kind == "refusal" ? "refusal" : "text");
      if (text == nullptr || !text->is_string()) {
        return quoted(part_path + (kind == "refusal" ? ".refusal" : ".text")) +
               " must be a string";
      }
      out.parts.push_back(json::object{{"type", "text"}, {"text", text->get_string()}});
    } else if (kind == "input_image") {
      if (auto problem = decode_image_part(part, part_path, out)) return problem;
    } else {
      return quoted(part_path + ".type") + " \"" + std::string(kind) + "\" is not supported";
    }
  }
  return std::nullopt;
}

// Walks `input` once, keeping what the chat format needs of its neighbours: function calls join
// the assistant message before them, and images returned by tools wait until the run of tool
// messages ends (chat tool messages carry text only and must follow their assistant message).
class InputDecoder {
 public:
  explicit InputDecoder(json::array& messages) : messages_(messages) {}

  Problem decode(const json::array& items) {
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (auto problem = decode_item(items[i], indexed("input", i))) return problem;
    }
    flush_tool_images();
    return std::nullopt;
  }

 private:
  Problem decode_item(const json::value& value, const std::string& path) {
    if (!value.is_object()) return quoted(path) + " must be an object";
    const auto& item = value.get_object();
    const auto* type = present(item, "type");
    if (type != nullptr && !type->is_string()) return quoted(path + ".type") + " must be a string";
    const std::string_view kind = type != nullptr ? std::string_view(type->get_string())
                                                  : std::string_view("message");
    if (kind == "message") return decode_message(item, path);
    if (kind == "function_call") return decode_function_call(item, path);
    if (kind == "function_call_output") return decode_function_call_output(item, path);
    // Reasoning the model did in an earlier turn: chat models cannot take it back (it may even
    // be encrypted), and leaving it out does not change what the conversation says.
    if (kind == "reasoning") return std::nullopt;
    if (kind == "item_reference") {
      return quoted(path + ".type") +
             " \"item_reference\" is not supported: items are not persisted here; send the item "
             "itself";
    }
    return quoted(path + ".type") + " \"" + std::string(kind) + "\" is not supported";
  }

  Problem decode_message(const json::object& item, const std::string& path) {
    const auto* role = item.if_contains("role");
    if (role == nullptr || !role->is_string()) return quoted(path + ".role") + " must be a string";
    const auto& name = role->get_string();
    if (name != "user" && name != "assistant" && name != "system" && name != "developer") {
      return quoted(path + ".role") + " \"" + std::string(name) + "\" is not supported";
    }
    TextParts content;
    const auto* raw = item.if_contains("content");
    if (raw != nullptr && raw->is_string()) {
      content.parts.push_back(json::object{{"type", "text"}, {"text", raw->get_string()}});
    } else if (raw != nullptr && raw->is_array()) {
      if (auto problem = decode_parts(raw->get_array(), path + ".content", content)) {
        return problem;
      }
    } else {
      return quoted(path + ".content") + " must be a string or an array";
    }
    if (content.has_image && name != "user") {
      return quoted(path + ".content") + " may hold images only in a user message";
    }
    flush_tool_images();
    json::object message;
    // Generic chat backends do not all know the developer role; for chat models the two mean
    // the same.
    message["role"] = name == "developer" ? "system" : name;
    if (name == "user" && (content.has_image || content.parts.size() > 1)) {
      message["content"] = std::move(content.parts);
    } else {
      message["content"] = joined_text(content.parts);
    }
    messages_.push_back(std::move(message));
    assistant_open_ = name == "assistant";
    return std::nullopt;
  }

  Problem decode_function_call(const json::object& item, const std::string& path) {
    for (const char* field : {"call_id", "name", "arguments"}) {
      const auto* value = item.if_contains(field);
      if (value == nullptr || !value->is_string()) {
        return quoted(path + "." + field) + " must be a string";
      }
    }
    if (item.at("call_id").get_string().empty()) {
      return quoted(path + ".call_id") + " must not be empty";
    }
    flush_tool_images();
    json::object call{{"id", item.at("call_id")},
                      {"type", "function"},
                      {"function", {{"name", item.at("name")},
                                    {"arguments", item.at("arguments")}}}};
    if (!assistant_open_) {
      messages_.push_back(json::object{{"role", "assistant"}, {"content", nullptr}});
      assistant_open_ = true;
    }
    auto& assistant = messages_.back().as_object();
    auto* calls = assistant.if_contains("tool_calls");
    if (calls == nullptr) calls = &(assistant["tool_calls"] = json::array());
    calls->as_array().push_back(std::move(call));
    return std::nullopt;
  }

  Problem decode_function_call_output(const json::object& item, const std::string& path) {
    const auto* call_id = item.if_contains("call_id");
    if (call_id == nullptr || !call_id->is_string() || call_id->get_string().empty()) {
      return quoted(path + ".call_id") + " must be a non-empty string";
    }
    TextParts output;
    const auto* raw = item.if_contains("output");
    std::string text;
    if (raw != nullptr && raw->is_string()) {
      text = raw->get_string();
    } else if (raw != nullptr && raw->is_array()) {
      if (auto problem = decode_parts(raw->get_array(), path + ".output", output)) return problem;
      json::array texts;
      for (auto& part : output.parts) {
        if (part.at("type") == "text") {
          texts.push_back(part);
        } else {
          tool_images_.push_back(part);
        }
      }
      text = joined_text(texts);
    } else {
      return quoted(path + ".output") + " must be a string or an array";
    }
    messages_.push_back(
        json::object{{"role", "tool"}, {"tool_call_id", *call_id}, {"content", text}});
    assistant_open_ = false;
    return std::nullopt;
  }

  void flush_tool_images() {
    if (tool_images_.empty()) return;
    json::array content{json::object{{"type", "text"}, {"text", "Images returned by the tools:"}}};
    for (auto& image : tool_images_) content.push_back(std::move(image));
    tool_images_.clear();
    messages_.push_back(json::object{{"role", "user"}, {"content", std::move(content)}});
    assistant_open_ = false;
  }

  json::array& messages_;
  json::array tool_images_;
  bool assistant_open_ = false;  // the last message is an assistant turn function calls may join
};

// ---------------------------------------------------------------------------------------------
// Request: tools, tool choice, output format and sampling.

Problem decode_tools(const json::object& request, json::object& chat) {
  const auto* tools = present(request, "tools");
  if (tools == nullptr) return std::nullopt;
  if (!tools->is_array()) return "'tools' must be an array";
  json::array chat_tools;
  const auto& list = tools->get_array();
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto path = indexed("tools", i);
    if (!list[i].is_object()) return quoted(path) + " must be an object";
    const auto& tool = list[i].get_object();
    const auto* type = tool.if_contains("type");
    if (type == nullptr || !type->is_string()) return quoted(path + ".type") + " must be a string";
    if (type->get_string() != "function") {
      return quoted(path + ".type") + " \"" + std::string(type->get_string()) +
             "\" is not supported: only function tools can be served here";
    }
    const auto* name = tool.if_contains("name");
    if (name == nullptr || !name->is_string() || name->get_string().empty()) {
      return quoted(path + ".name") + " must be a non-empty string";
    }
    json::object function{{"name", *name}};
    if (const auto* description = present(tool, "description")) {
      if (!description->is_string()) return quoted(path + ".description") + " must be a string";
      function["description"] = *description;
    }
    if (const auto* parameters = present(tool, "parameters")) {
      if (!parameters->is_object()) return quoted(path + ".parameters") + " must be an object";
      function["parameters"] = *parameters;
    }
    if (const auto* strict = present(tool, "strict")) {
      if (!strict->is_bool()) return quoted(path + ".strict") + " must be a boolean";
      function["strict"] = *strict;
    }
    chat_tools.push_back(json::object{{"type", "function"}, {"function", std::move(function)}});
  }
  if (!chat_tools.empty()) chat["tools"] = std::move(chat_tools);
  return std::nullopt;
}

Problem decode_tool_choice(const json::object& request, json::object& chat) {
  const auto* choice = present(request, "tool_choice");
  if (const auto* parallel = present(request, "parallel_tool_calls")) {
    if (!parallel->is_bool()) return "'parallel_tool_calls' must be a boolean";
    // OpenAI refuses tool settings in a request without tools.
    if (chat.contains("tools")) chat["parallel_tool_calls"] = *parallel;
  }
  if (choice == nullptr) return std::nullopt;
  json::value chat_choice;
  if (choice->is_string()) {
    const auto& mode = choice->get_string();
    if (mode != "auto" && mode != "none" && mode != "required") {
      return "'tool_choice' \"" + std::string(mode) + "\" is not supported";
    }
    chat_choice = mode;
  } else if (choice->is_object()) {
    const auto& object = choice->get_object();
    const auto type = string_or(object, "type", "");
    if (type != "function") {
      return "'tool_choice.type' \"" + std::string(type) + "\" is not supported";
    }
    const auto* name = object.if_contains("name");
    if (name == nullptr || !name->is_string() || name->get_string().empty()) {
      return "'tool_choice.name' must be a non-empty string";
    }
    chat_choice = json::object{{"type", "function"}, {"function", {{"name", *name}}}};
  } else {
    return "'tool_choice' must be a string or an object";
  }
  if (chat.contains("tools")) chat["tool_choice"] = std::move(chat_choice);
  return std::nullopt;
}

Problem decode_text_format(const json::object& request, json::object& chat) {
  const auto* text = present(request, "text");
  if (text == nullptr) return std::nullopt;
  if (!text->is_object()) return "'text' must be an object";
  // text.verbosity is a length hint the chat backend may not know; dropping it keeps the answer.
  const auto* format = present(text->get_object(), "format");
  if (format == nullptr) return std::nullopt;
  if (!format->is_object()) return "'text.format' must be an object";
  const auto& object = format->get_object();
  const auto type = string_or(object, "type", "");
  if (type == "text") return std::nullopt;
  if (type == "json_object") {
    chat["response_format"] = {{"type", "json_object"}};
    return std::nullopt;
  }
  if (type != "json_schema") {
    return "'text.format.type' \"" + std::string(type) + "\" is not supported";
  }
  const auto* name = object.if_contains("name");
  if (name == nullptr || !name->is_string()) return "'text.format.name' must be a string";
  const auto* schema = object.if_contains("schema");
  if (schema == nullptr || !schema->is_object()) return "'text.format.schema' must be an object";
  json::object json_schema{{"name", *name}, {"schema", *schema}};
  if (const auto* description = present(object, "description")) {
    if (!description->is_string()) return "'text.format.description' must be a string";
    json_schema["description"] = *description;
  }
  if (const auto* strict = present(object, "strict")) {
    if (!strict->is_bool()) return "'text.format.strict' must be a boolean";
    json_schema["strict"] = *strict;
  }
  chat["response_format"] = {{"type", "json_schema"}, {"json_schema", std::move(json_schema)}};
  return std::nullopt;
}

Problem decode_sampling(const json::object& request, json::object& chat) {
  for (const char* field : {"temperature", "top_p"}) {
    if (const auto* value = present(request, field)) {
      if (!is_number(*value)) return quoted(field) + " must be a number";
      chat[field] = *value;
    }
  }
  if (const auto* limit = present(request, "max_output_tokens")) {
    const bool positive = (limit->is_int64() && limit->get_int64() > 0) || limit->is_uint64();
    if (!positive) return "'max_output_tokens' must be a positive integer";
    chat["max_completion_tokens"] = *limit;
  }
  if (const auto* reasoning = present(request, "reasoning")) {
    if (!reasoning->is_object()) return "'reasoning' must be an object";
    // reasoning.summary asks for summaries of reasoning items, which are never returned here.
    if (const auto* effort = present(reasoning->get_object(), "effort")) {
      if (!effort->is_string()) return "'reasoning.effort' must be a string";
      chat["reasoning_effort"] = *effort;
    }
  }
  if (const auto* user = present(request, "user")) {
    if (!user->is_string()) return "'user' must be a string";
    chat["user"] = *user;
  }
  // metadata is the client's own bookkeeping, echoed in the response; OpenAI chat refuses it
  // unless the completion is stored, so it is not forwarded.
  if (const auto* metadata = present(request, "metadata"); metadata && !metadata->is_object()) {
    return "'metadata' must be an object";
  }
  if (const auto* stream = present(request, "stream")) {
    if (!stream->is_bool()) return "'stream' must be a boolean";
    if (stream->get_bool()) {
      chat["stream"] = true;
      chat["stream_options"] = {{"include_usage", true}};
    }
  }
  return std::nullopt;
}

Problem decode_messages(const json::object& request, json::array& messages) {
  if (const auto* instructions = present(request, "instructions")) {
    if (!instructions->is_string()) return "'instructions' must be a string";
    // An empty system message says nothing, and some backends refuse one.
    if (!instructions->get_string().empty()) {
      messages.push_back(json::object{{"role", "system"}, {"content", *instructions}});
    }
  }
  const auto* input = present(request, "input");
  if (input == nullptr) return "'input' is required";
  if (input->is_string()) {
    messages.push_back(json::object{{"role", "user"}, {"content", *input}});
  } else if (input->is_array()) {
    if (auto problem = InputDecoder(messages).decode(input->get_array())) return problem;
  } else {
    return "'input' must be a string or an array";
  }
  if (messages.empty()) return "'input' holds no message";
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Response: output items, usage and the echoed request.

struct Part {
  bool refusal = false;
  std::string text;
};

struct OutputItem {
  bool function_call = false;
  std::string id;
  std::string status = "in_progress";
  std::vector<Part> parts;  // a message's content
  std::string call_id;      // a function call's fields
  std::string name;
  std::string arguments;
};

json::object part_json(const Part& part) {
  if (part.refusal) return {{"type", "refusal"}, {"refusal", part.text}};
  return {{"type", "output_text"},
          {"text", part.text},
          {"annotations", json::array()},
          {"logprobs", json::array()}};
}

json::object item_json(const OutputItem& item) {
  if (item.function_call) {
    return {{"id", item.id},           {"type", "function_call"}, {"status", item.status},
            {"call_id", item.call_id}, {"name", item.name},       {"arguments", item.arguments}};
  }
  json::array content;
  for (const auto& part : item.parts) content.push_back(part_json(part));
  return {{"id", item.id},
          {"type", "message"},
          {"status", item.status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

// Item ids derive from the response id, so they are unique in the response and stable.
std::string item_id(std::string_view prefix, std::string_view response_id, std::size_t index) {
  if (response_id.substr(0, 5) == "resp_") response_id.remove_prefix(5);
  return std::string(prefix) + std::string(response_id) + "_" + std::to_string(index);
}

// The SDK rejects a response whose function calls share a call_id (and a function_call_output
// could not say which call it answers), so a missing or repeated id is replaced.
std::string unique_call_id(std::string_view proposed, std::string_view response_id,
                           std::size_t index, std::set<std::string>& taken) {
  std::string id(proposed);
  if (id.empty() || taken.count(id) != 0) id = item_id("call_", response_id, index);
  taken.insert(id);
  return id;
}

json::value usage_json(const json::value* usage) {
  if (usage == nullptr || !usage->is_object()) return nullptr;
  const auto counts = providers::extract_usage(*usage);
  if (!counts.present) return nullptr;
  std::int64_t cache_writes = 0;
  std::int64_t reasoning = 0;
  const auto& object = usage->get_object();
  if (const auto* details = object.if_contains("prompt_tokens_details");
      details != nullptr && details->is_object()) {
    cache_writes = count_of(details->get_object(), "cache_creation_tokens");
  }
  if (const auto* details = object.if_contains("completion_tokens_details");
      details != nullptr && details->is_object()) {
    reasoning = count_of(details->get_object(), "reasoning_tokens");
  }
  // Responses counts input tokens as chat counts prompt tokens: cache reads and writes included.
  return json::object{
      {"input_tokens", counts.prompt_tokens},
      {"input_tokens_details",
       {{"cached_tokens", counts.cached_prompt_tokens}, {"cache_write_tokens", cache_writes}}},
      {"output_tokens", counts.completion_tokens},
      {"output_tokens_details", {{"reasoning_tokens", reasoning}}},
      {"total_tokens", counts.total_tokens}};
}

json::value echoed(const json::object& request, std::string_view key, json::value fallback) {
  const auto* value = present(request, key);
  return value != nullptr ? *value : fallback;
}

// The response object without its outcome (status, output, usage): what the request asked for,
// echoed as OpenAI does.
json::object response_shell(const json::object& request, std::string_view id,
                            std::string_view client_model, std::int64_t created_at) {
  json::object text{{"format", {{"type", "text"}}}};
  if (const auto* asked = present(request, "text"); asked != nullptr && asked->is_object()) {
    text = asked->get_object();
    if (present(text, "format") == nullptr) text["format"] = {{"type", "text"}};
  }
  json::object reasoning{{"effort", nullptr}, {"summary", nullptr}};
  if (const auto* asked = present(request, "reasoning"); asked && asked->is_object()) {
    reasoning["effort"] = echoed(asked->get_object(), "effort", nullptr);
    reasoning["summary"] = echoed(asked->get_object(), "summary", nullptr);
  }
  return {{"id", id},
          {"object", "response"},
          {"created_at", created_at},
          {"status", "in_progress"},
          {"background", false},
          {"error", nullptr},
          {"incomplete_details", nullptr},
          {"instructions", echoed(request, "instructions", nullptr)},
          {"max_output_tokens", echoed(request, "max_output_tokens", nullptr)},
          {"max_tool_calls", echoed(request, "max_tool_calls", nullptr)},
          {"model", client_model},
          {"output", json::array()},
          {"parallel_tool_calls", echoed(request, "parallel_tool_calls", true)},
          {"previous_response_id", nullptr},
          {"reasoning", std::move(reasoning)},
          {"store", false},
          {"temperature", echoed(request, "temperature", nullptr)},
          {"text", std::move(text)},
          {"tool_choice", echoed(request, "tool_choice", "auto")},
          {"tools", echoed(request, "tools", json::array())},
          {"top_p", echoed(request, "top_p", nullptr)},
          {"truncation", "disabled"},
          {"usage", nullptr},
          {"user", echoed(request, "user", nullptr)},
          {"metadata", echoed(request, "metadata", json::object())}};
}

// Why an answer stopped short, in Responses' terms; empty when it did not.
std::string_view incomplete_reason(std::string_view finish_reason) {
  const auto normalized = providers::normalize_finish_reason(finish_reason);
  if (normalized == "length") return "max_output_tokens";
  if (normalized == "content_filter") return "content_filter";
  return {};
}

void set_outcome(json::object& response, std::string_view finish_reason,
                 const std::vector<OutputItem>& items, json::value usage) {
  const auto reason = incomplete_reason(finish_reason);
  response["status"] = reason.empty() ? "completed" : "incomplete";
  if (!reason.empty()) response["incomplete_details"] = {{"reason", reason}};
  json::array output;
  for (const auto& item : items) output.push_back(item_json(item));
  response["output"] = std::move(output);
  response["usage"] = std::move(usage);
}

std::string text_of(const json::value* content) {
  if (content == nullptr) return {};
  if (content->is_string()) return std::string(content->get_string());
  std::string text;
  if (content->is_array()) {
    for (const auto& part : content->get_array()) {
      if (part.is_object()) text += string_or(part.get_object(), "text", "");
    }
  }
  return text;
}

std::string arguments_of(const json::object& function) {
  const auto* arguments = function.if_contains("arguments");
  if (arguments == nullptr || arguments->is_null()) return {};
  if (arguments->is_string()) return std::string(arguments->get_string());
  return json::serialize(*arguments);
}

std::vector<OutputItem> completion_items(const json::object& message, std::string_view id,
                                         std::string_view status) {
  std::vector<OutputItem> items;
  OutputItem text_item;
  if (auto text = text_of(message.if_contains("content")); !text.empty()) {
    text_item.parts.push_back(Part{false, std::move(text)});
  }
  if (auto refusal = string_or(message, "refusal", ""); !refusal.empty()) {
    text_item.parts.push_back(Part{true, std::string(refusal)});
  }
  if (!text_item.parts.empty()) {
    text_item.id = item_id("msg_", id, 0);
    text_item.status = status;
    items.push_back(std::move(text_item));
  }
  const auto* calls = message.if_contains("tool_calls");
  if (calls == nullptr || !calls->is_array()) return items;
  std::set<std::string> call_ids;
  for (const auto& value : calls->get_array()) {
    if (!value.is_object()) continue;
    const auto& call = value.get_object();
    const auto* function = call.if_contains("function");
    if (function == nullptr || !function->is_object()) continue;
    OutputItem item;
    item.function_call = true;
    item.id = item_id("fc_", id, items.size());
    item.status = status;
    item.call_id = unique_call_id(string_or(call, "id", ""), id, items.size(), call_ids);
    item.name = string_or(function->get_object(), "name", "");
    item.arguments = arguments_of(function->get_object());
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

std::optional<std::string> to_chat_request(const json::object& request, json::object& chat) {
  chat = json::object();
  if (auto problem = check_top_level_fields(request)) return problem;
  const auto* model = request.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty()) {
    return "'model' must be a non-empty string";
  }
  chat["model"] = *model;
  json::array messages;
  if (auto problem = decode_messages(request, messages)) return problem;
  chat["messages"] = std::move(messages);
  for (auto decode : {decode_tools, decode_tool_choice, decode_text_format, decode_sampling}) {
    if (auto problem = decode(request, chat)) return problem;
  }
  return std::nullopt;
}

json::object to_response(const json::object& completion, const json::object& request,
                         std::string_view id, std::string_view client_model,
                         std::int64_t created_at) {
  auto response = response_shell(request, id, client_model, created_at);
  std::string_view finish_reason = "stop";
  std::vector<OutputItem> items;
  const auto* choices = completion.if_contains("choices");
  if (choices != nullptr && choices->is_array() && !choices->get_array().empty() &&
      choices->get_array().front().is_object()) {
    const auto& choice = choices->get_array().front().get_object();
    finish_reason = string_or(choice, "finish_reason", "stop");
    const auto* message = choice.if_contains("message");
    if (message != nullptr && message->is_object()) {
      const auto status = incomplete_reason(finish_reason).empty() ? "completed" : "incomplete";
      items = completion_items(message->get_object(), id, status);
    }
  }
  set_outcome(response, finish_reason, items, usage_json(completion.if_contains("usage")));
  return response;
}

// ---------------------------------------------------------------------------------------------
// Streaming.

struct StreamEncoder::State {
  std::string id;
  json::object shell;  // response_shell of the request
  std::int64_t sequence = 0;
  bool started = false;
  bool finish_seen = false;  // deltas after the finish reason are ignored
  bool ended = false;        // the final event is out; nothing more is written
  std::string finish_reason;
  json::value usage;
  std::vector<OutputItem> items;
  std::optional<std::size_t> open_message;            // index in items of the open message
  std::vector<std::pair<std::int64_t, std::size_t>> tools;  // chat tool index -> items index
  std::set<std::string> call_ids;

  void emit(std::string_view type, json::object fields, std::string& out) {
    json::object event{{"type", type}};
    for (auto& [key, value] : fields) event[key] = std::move(value);
    event["sequence_number"] = sequence++;
    out += "event: ";
    out += type;
    out += "\ndata: ";
    out += json::serialize(event);
    out += "\n\n";
  }

  json::object snapshot(std::string_view status) const {
    auto response = shell;
    response["status"] = status;
    return response;
  }

  void start(std::string& out) {
    if (started) return;
    started = true;
    emit("response.created", {{"response", snapshot("in_progress")}}, out);
    emit("response.in_progress", {{"response", snapshot("in_progress")}}, out);
  }

  json::object item_address(std::size_t index) const {
    return {{"item_id", items[index].id}, {"output_index", as_index(index)}};
  }

  std::size_t add_item(OutputItem item, std::string& out) {
    const auto index = items.size();
    items.push_back(std::move(item));
    emit("response.output_item.added",
         {{"output_index", as_index(index)}, {"item", item_json(items[index])}}, out);
    return index;
  }

  json::object part_address(std::size_t index) const {
    auto fields = item_address(index);
    fields["content_index"] = as_index(items[index].parts.size() - 1);
    return fields;
  }

  void open_part(std::size_t index, bool refusal, std::string& out) {
    items[index].parts.push_back(Part{refusal, ""});
    auto fields = part_address(index);
    fields["part"] = part_json(items[index].parts.back());
    emit("response.content_part.added", std::move(fields), out);
  }

  void close_part(std::size_t index, std::string& out) {
    const auto& part = items[index].parts.back();
    auto done = part_address(index);
    if (part.refusal) {
      done["refusal"] = part.text;
      emit("response.refusal.done", std::move(done), out);
    } else {
      done["text"] = part.text;
      done["logprobs"] = json::array();
      emit("response.output_text.done", std::move(done), out);
    }
    auto fields = part_address(index);
    fields["part"] = part_json(part);
    emit("response.content_part.done", std::move(fields), out);
  }

  void close_item(std::size_t index, std::string_view status, std::string& out) {
    auto& item = items[index];
    if (item.status != "in_progress") return;
    if (item.function_call) {
      auto fields = item_address(index);
      fields["arguments"] = item.arguments;
      emit("response.function_call_arguments.done", std::move(fields), out);
    } else {
      close_part(index, out);
      open_message.reset();
    }
    item.status = status;
    emit("response.output_item.done", {{"output_index", as_index(index)}, {"item", item_json(item)}},
         out);
  }

  void close_all(std::string_view status, std::string& out) {
    for (std::size_t i = 0; i < items.size(); ++i) close_item(i, status, out);
  }

  // Text and refusal deltas go to one message item, each kind in its own content part.
  void on_text(std::string_view delta, bool refusal, std::string& out) {
    if (delta.empty()) return;
    if (!open_message) {
      OutputItem message;
      message.id = item_id("msg_", id, items.size());
      open_message = add_item(std::move(message), out);
      open_part(*open_message, refusal, out);
    } else if (items[*open_message].parts.back().refusal != refusal) {
      close_part(*open_message, out);
      open_part(*open_message, refusal, out);
    }
    items[*open_message].parts.back().text += delta;
    auto fields = part_address(*open_message);
    fields["delta"] = delta;
    if (!refusal) fields["logprobs"] = json::array();
    emit(refusal ? "response.refusal.delta" : "response.output_text.delta", std::move(fields), out);
  }

  std::optional<std::size_t> tool_item(std::int64_t chat_index) const {
    for (const auto& [index, item] : tools) {
      if (index == chat_index) return item;
    }
    return std::nullopt;
  }

  // Tool calls stay open until the finish reason: providers may interleave the arguments of
  // parallel calls, and a closed item cannot take more. Text ends at the first call, as
  // OpenAI's own order has it; text after a call becomes a new message item.
  void on_tool_call(const json::object& call, std::size_t position, std::string& out) {
    std::int64_t chat_index = static_cast<std::int64_t>(position);
    if (const auto* index = call.if_contains("index"); index != nullptr && index->is_int64()) {
      chat_index = index->get_int64();
    }
    const json::object empty;
    const auto* function_value = call.if_contains("function");
    const auto& function = function_value != nullptr && function_value->is_object()
                               ? function_value->get_object()
                               : empty;
    auto index = tool_item(chat_index);
    if (!index) {
      if (open_message) close_item(*open_message, "completed", out);
      OutputItem item;
      item.function_call = true;
      item.id = item_id("fc_", id, items.size());
      item.call_id = unique_call_id(string_or(call, "id", ""), id, items.size(), call_ids);
      item.name = string_or(function, "name", "");
      index = add_item(std::move(item), out);
      tools.emplace_back(chat_index, *index);
    } else if (const auto name = string_or(function, "name", "");
               !name.empty() && items[*index].name != name) {
      // The name came in pieces after the first one; output_item.done carries it whole.
      items[*index].name += name;
    }
    const auto arguments = arguments_of(function);
    if (arguments.empty() || items[*index].status != "in_progress") return;
    items[*index].arguments += arguments;
    auto fields = item_address(*index);
    fields["delta"] = arguments;
    emit("response.function_call_arguments.delta", std::move(fields), out);
  }

  void on_choice(const json::object& choice, std::string& out) {
    if (const auto* delta = choice.if_contains("delta"); delta != nullptr && delta->is_object()) {
      const auto& fields = delta->get_object();
      if (const auto* content = fields.if_contains("content"); content && content->is_string()) {
        on_text(content->get_string(), false, out);
      }
      if (const auto* refusal = fields.if_contains("refusal"); refusal && refusal->is_string()) {
        on_text(refusal->get_string(), true, out);
      }
      if (const auto* calls = fields.if_contains("tool_calls"); calls && calls->is_array()) {
        const auto& list = calls->get_array();
        for (std::size_t i = 0; i < list.size(); ++i) {
          if (list[i].is_object()) on_tool_call(list[i].get_object(), i, out);
        }
      }
    }
    if (const auto* reason = choice.if_contains("finish_reason"); reason && reason->is_string()) {
      finish_reason = reason->get_string();
      finish_seen = true;
      close_all(incomplete_reason(finish_reason).empty() ? "completed" : "incomplete", out);
    }
  }

  void final_event(std::string& out) {
    auto response = shell;
    set_outcome(response, finish_reason, items, usage_json(&usage));
    const bool complete = response["status"] == "completed";
    emit(complete ? "response.completed" : "response.incomplete",
         {{"response", std::move(response)}}, out);
    ended = true;
  }
};

StreamEncoder::StreamEncoder(std::string id, const json::object& request,
                             std::string client_model, std::int64_t created_at)
    : state_(std::make_unique<State>()) {
  state_->shell = response_shell(request, id, client_model, created_at);
  state_->id = std::move(id);
}

StreamEncoder::~StreamEncoder() = default;
StreamEncoder::StreamEncoder(StreamEncoder&&) noexcept = default;

void StreamEncoder::on_chunk(const json::object& chunk, std::string& out) {
  auto& state = *state_;
  if (state.ended) return;
  state.start(out);
  if (const auto* usage = chunk.if_contains("usage"); usage != nullptr && usage->is_object()) {
    state.usage = *usage;
  }
  if (state.finish_seen) return;
  const auto* choices = chunk.if_contains("choices");
  if (choices == nullptr || !choices->is_array()) return;
  // A Response has one answer: only the first choice is followed.
  for (const auto& choice : choices->get_array()) {
    if (!choice.is_object()) continue;
    const auto* index = choice.get_object().if_contains("index");
    if (index != nullptr && !(index->is_int64() && index->get_int64() == 0)) continue;
    state.on_choice(choice.get_object(), out);
    break;
  }
}

void StreamEncoder::finish(std::string& out) {
  auto& state = *state_;
  if (state.ended) return;
  state.start(out);
  state.close_all(incomplete_reason(state.finish_reason).empty() ? "completed" : "incomplete",
                  out);
  state.final_event(out);
}

void StreamEncoder::fail(std::string_view code, std::string_view message, std::string& out) {
  auto& state = *state_;
  if (state.ended) return;
  state.start(out);
  for (auto& item : state.items) {
    if (item.status == "in_progress") item.status = "incomplete";
  }
  auto response = state.shell;
  json::array output;
  for (const auto& item : state.items) output.push_back(item_json(item));
  response["status"] = "failed";
  response["error"] = {{"code", code}, {"message", message}};
  response["output"] = std::move(output);
  response["usage"] = usage_json(&state.usage);
  state.emit("response.failed", {{"response", std::move(response)}}, out);
  state.ended = true;
}

}  // namespace cutover::api::responses
