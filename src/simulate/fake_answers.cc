#include "simulate/fake_answers.h"

#include "api/anthropic_messages.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <sstream>

namespace cutover::simulate {

namespace json = boost::json;

namespace {
std::atomic<std::size_t> reply_serial{0};

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t count_words(std::string_view text) {
  std::int64_t words = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

const json::value* field(const json::value& value, std::string_view key) {
  if (!value.is_object()) return nullptr;
  return value.get_object().if_contains(key);
}

std::string_view string_or_empty(const json::value* value) {
  return value && value->is_string() ? std::string_view(value->get_string()) : std::string_view();
}

const json::array* messages_of(const json::value& body) {
  const auto* messages = field(body, "messages");
  return messages && messages->is_array() ? &messages->get_array() : nullptr;
}

// A content value's text: the string itself, or its text blocks joined by spaces (Anthropic's
// blocks and OpenAI's content parts share that shape).
std::string text_of(const json::value* content) {
  if (!content) return {};
  if (content->is_string()) return std::string(content->get_string());
  std::string text;
  if (!content->is_array()) return text;
  for (const auto& block : content->get_array()) {
    if (string_or_empty(field(block, "type")) != "text") continue;
    if (!text.empty()) text.push_back(' ');
    text.append(string_or_empty(field(block, "text")));
  }
  return text;
}

// OpenAI's prompt reads string contents only, as it always has: usage counts the gateway's
// tests compare against depend on it.
std::string openai_prompt_text(const json::value& body) {
  std::string text;
  if (const auto* messages = messages_of(body)) {
    for (const auto& message : *messages) {
      if (const auto* content = field(message, "content"); content && content->is_string()) {
        text.append(content->get_string()).push_back(' ');
      }
    }
  }
  for (auto name : {"prompt", "input"}) {
    text.append(string_or_empty(field(body, name)));
  }
  return text;
}

std::string anthropic_prompt_text(const json::value& body) {
  std::string text = text_of(field(body, "system"));
  if (const auto* messages = messages_of(body)) {
    for (const auto& message : *messages) {
      const auto content = text_of(field(message, "content"));
      if (content.empty()) continue;
      if (!text.empty()) text.push_back(' ');
      text += content;
    }
  }
  return text;
}

std::string prompt_text(const FakeRequest& request) {
  return dialect_of_target(request.target) == Dialect::anthropic
             ? anthropic_prompt_text(request.json)
             : openai_prompt_text(request.json);
}

std::string model_of(const json::value& body) {
  const auto* model = field(body, "model");
  return model && model->is_string() ? std::string(model->get_string()) : "simulated-model";
}

std::string first_words(std::string_view text, int count) {
  std::istringstream words{std::string(text)};
  std::string first, word;
  for (int i = 0; i < count && words >> word; ++i) first += (i ? " " : "") + word;
  return first;
}

// ---- Conversation reading: tools declared, tool results, the [simulate:STATUS] marker ----

// The text of the tool results the conversation ends with; nullopt when its last message is
// not a tool result.
std::optional<std::string> trailing_tool_result(const json::value& body, Dialect dialect) {
  const auto* messages = messages_of(body);
  if (!messages || messages->empty()) return std::nullopt;
  const auto& last = messages->back();
  const auto role = string_or_empty(field(last, "role"));
  if (dialect == Dialect::openai) {
    if (role != "tool") return std::nullopt;
    return text_of(field(last, "content"));
  }
  const auto* content = field(last, "content");
  if (role != "user" || !content || !content->is_array()) return std::nullopt;
  std::optional<std::string> result;
  for (const auto& block : content->get_array()) {
    if (string_or_empty(field(block, "type")) != "tool_result") continue;
    const auto text = text_of(field(block, "content"));
    result = result ? *result + " " + text : text;
  }
  return result;
}

// The text of the last user turn that has any (an Anthropic turn of tool results has none).
std::string last_user_text(const json::value& body) {
  const auto* messages = messages_of(body);
  if (!messages) return {};
  for (auto message = messages->rbegin(); message != messages->rend(); ++message) {
    if (string_or_empty(field(*message, "role")) != "user") continue;
    auto text = text_of(field(*message, "content"));
    if (!text.empty()) return text;
  }
  return {};
}

struct DeclaredTool {
  std::string name;
  const json::object* properties = nullptr;  // its schema's, when it has any
};

// The first tool the client can run: chat's first function, Anthropic's first tool with an
// input_schema (the others are server tools Anthropic runs itself).
std::optional<DeclaredTool> first_client_tool(const json::value& body, Dialect dialect) {
  const auto* tools = field(body, "tools");
  if (!tools || !tools->is_array()) return std::nullopt;
  const bool chat = dialect == Dialect::openai;
  for (const auto& tool : tools->get_array()) {
    const json::value* definition = chat ? field(tool, "function") : &tool;
    const json::value* schema =
        definition ? field(*definition, chat ? "parameters" : "input_schema") : nullptr;
    const auto name = definition ? string_or_empty(field(*definition, "name")) : "";
    if (name.empty() || (!chat && !schema)) continue;
    const json::value* properties = schema ? field(*schema, "properties") : nullptr;
    return DeclaredTool{std::string(name), properties && properties->is_object()
                                               ? &properties->get_object()
                                               : nullptr};
  }
  return std::nullopt;
}

// tool_choice "none" (chat) or {"type": "none"} (Anthropic) forbids calling tools.
bool tools_forbidden(const json::value& body) {
  const auto* choice = field(body, "tool_choice");
  if (!choice) return false;
  if (choice->is_string()) return choice->get_string() == "none";
  return string_or_empty(field(*choice, "type")) == "none";
}

// A schema's type; for a list of types (["string", "null"]) the first that is not "null".
std::string_view schema_type(const json::value& schema) {
  const auto* type = field(schema, "type");
  if (type && type->is_array()) {
    for (const auto& entry : type->get_array()) {
      if (entry.is_string() && entry.get_string() != "null") return entry.get_string();
    }
  }
  return string_or_empty(type);
}

json::object arguments_for(const DeclaredTool& tool, const std::string& user_text) {
  json::object arguments;
  if (!tool.properties) return arguments;
  for (const auto& [name, schema] : *tool.properties) {
    const auto type = schema_type(schema);
    if (type == "string") {
      arguments[name] = first_words(user_text, 3);
    } else if (type == "integer" || type == "number") {
      arguments[name] = 1;
    } else if (type == "boolean") {
      arguments[name] = true;
    } else {
      arguments[name] = nullptr;
    }
  }
  return arguments;
}

// The status a `[simulate:STATUS]` marker in the prompt asks for, when one asks for an error.
std::optional<unsigned> requested_status(std::string_view prompt) {
  constexpr std::string_view marker = "[simulate:";
  for (auto at = prompt.find(marker); at != std::string_view::npos;
       at = prompt.find(marker, at + 1)) {
    const auto rest = prompt.substr(at + marker.size());
    const auto end = rest.find(']');
    if (end == std::string_view::npos) return std::nullopt;
    unsigned status = 0;
    const auto [stop, error] = std::from_chars(rest.data(), rest.data() + end, status);
    if (error == std::errc() && stop == rest.data() + end && status >= 400 && status <= 599) {
      return status;
    }
  }
  return std::nullopt;
}

// ---- Answer bodies ----

// Output tokens: the text's words, or for tool calls each name and serialized arguments'.
std::int64_t answer_words(const FakeReply& reply) {
  if (reply.tool_calls.empty()) return count_words(reply.content);
  std::int64_t words = 0;
  for (const auto& call : reply.tool_calls) {
    words += count_words(call.name) + count_words(json::serialize(call.arguments));
  }
  return words;
}

std::string call_id(std::string_view prefix, std::size_t serial, std::size_t index) {
  return std::string(prefix) + std::to_string(serial) + "_" + std::to_string(index);
}

std::vector<std::string> split_words_keep_spaces(const std::string& content) {
  std::vector<std::string> pieces;
  std::string current;
  for (char c : content) {
    current.push_back(c);
    if (c == ' ') {
      pieces.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) pieces.push_back(std::move(current));
  return pieces;
}

// Serialized tool arguments in `count` pieces (fewer for tiny texts, at least two for any
// object), never splitting a UTF-8 character: clients must reassemble them.
std::vector<std::string> split_in_pieces(std::string_view text, std::size_t count) {
  std::vector<std::string> pieces;
  std::size_t start = 0;
  for (std::size_t i = 1; i <= count; ++i) {
    std::size_t end = i == count ? text.size() : text.size() * i / count;
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    if (end <= start) continue;
    pieces.emplace_back(text.substr(start, end - start));
    start = end;
  }
  return pieces;
}

json::object usage_object(std::int64_t prompt, std::int64_t completion, const Quirks& quirks) {
  json::object usage;
  usage["prompt_tokens"] = prompt;
  usage[quirks.generated_tokens ? "generated_tokens" : "completion_tokens"] = completion;
  usage["total_tokens"] = prompt + completion;
  return usage;
}

void add_identity(json::object& object, std::string_view type, const std::string& model,
                  const Quirks& quirks, std::size_t serial) {
  object["model"] = model;
  if (quirks.omit_identity) return;
  object["id"] = "chatcmpl-sim" + std::to_string(serial);
  object["object"] = type;
  object["created"] = unix_now();
  object["system_fingerprint"] = "fp_simulated";
}

bool include_usage(const json::value& body) {
  const auto* options = field(body, "stream_options");
  const auto* flag = options ? field(*options, "include_usage") : nullptr;
  return flag && flag->is_bool() && flag->get_bool();
}

std::string_view text_finish_reason(const Quirks& quirks) {
  return quirks.eos_finish_reason ? "eos" : "stop";
}

std::string embeddings_body(const FakeRequest& request) {
  const auto prompt_tokens = prompt_words(request);
  json::array vector;
  for (int i = 0; i < 8; ++i) vector.push_back(static_cast<double>((prompt_tokens + i) % 7) / 7.0);
  json::object body;
  body["object"] = "list";
  body["data"] =
      json::array{json::object{{"object", "embedding"}, {"index", 0}, {"embedding", vector}}};
  body["model"] = model_of(request.json);
  body["usage"] = json::object{{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}};
  return json::serialize(body);
}

json::array chat_tool_calls(const FakeReply& reply, std::size_t serial) {
  json::array calls;
  for (std::size_t i = 0; i < reply.tool_calls.size(); ++i) {
    const auto& call = reply.tool_calls[i];
    calls.push_back(json::object{
        {"id", call_id("call_sim", serial, i)},
        {"type", "function"},
        {"function",
         json::object{{"name", call.name}, {"arguments", json::serialize(call.arguments)}}}});
  }
  return calls;
}

std::string openai_body(const FakeRequest& request, const FakeReply& reply) {
  const bool chat = path_of(request.target).ends_with("/chat/completions");
  const auto serial = ++reply_serial;
  json::object body;
  add_identity(body, chat ? "chat.completion" : "text_completion", model_of(request.json),
               reply.quirks, serial);
  json::object choice{{"index", 0}};
  if (chat && !reply.tool_calls.empty()) {
    choice["finish_reason"] = "tool_calls";
    choice["message"] = json::object{{"role", "assistant"},
                                     {"content", nullptr},
                                     {"tool_calls", chat_tool_calls(reply, serial)}};
  } else if (chat) {
    choice["finish_reason"] = text_finish_reason(reply.quirks);
    choice["message"] = json::object{{"role", "assistant"}, {"content", reply.content}};
  } else {
    choice["finish_reason"] = text_finish_reason(reply.quirks);
    choice["text"] = reply.content;
  }
  body["choices"] = json::array{std::move(choice)};
  const auto completion_tokens = chat ? answer_words(reply) : count_words(reply.content);
  body["usage"] = usage_object(prompt_words(request), completion_tokens, reply.quirks);
  return json::serialize(body);
}

json::object anthropic_usage(std::int64_t input, std::int64_t output) {
  return json::object{{"input_tokens", input},
                      {"output_tokens", output},
                      {"cache_read_input_tokens", 0},
                      {"cache_creation_input_tokens", 0}};
}

// A message's fields before its content: id, type, role, model.
json::object anthropic_message_head(const FakeRequest& request, std::size_t serial) {
  return json::object{{"id", "msg_sim" + std::to_string(serial)},
                      {"type", "message"},
                      {"role", "assistant"},
                      {"model", model_of(request.json)}};
}

std::string_view anthropic_stop_reason(const FakeReply& reply) {
  return reply.tool_calls.empty() ? "end_turn" : "tool_use";
}

std::string anthropic_body(const FakeRequest& request, const FakeReply& reply) {
  const auto serial = ++reply_serial;
  json::array content;
  if (reply.tool_calls.empty()) {
    content.push_back(json::object{{"type", "text"}, {"text", reply.content}});
  }
  for (std::size_t i = 0; i < reply.tool_calls.size(); ++i) {
    const auto& call = reply.tool_calls[i];
    content.push_back(json::object{{"type", "tool_use"},
                                   {"id", call_id("toolu_sim", serial, i)},
                                   {"name", call.name},
                                   {"input", call.arguments}});
  }
  auto body = anthropic_message_head(request, serial);
  body["content"] = std::move(content);
  body["stop_reason"] = anthropic_stop_reason(reply);
  body["stop_sequence"] = nullptr;
  body["usage"] = anthropic_usage(prompt_words(request), answer_words(reply));
  return json::serialize(body);
}

// ---- Streams ----

class ChatChunks {
 public:
  ChatChunks(const FakeRequest& request, const FakeReply& reply)
      : request_(request),
        reply_(reply),
        chat_(path_of(request.target).ends_with("/chat/completions")),
        model_(model_of(request.json)),
        serial_(++reply_serial) {}

  std::vector<SseEvent> events() {
    const bool calls_tools = chat_ && !reply_.tool_calls.empty();
    if (calls_tools) {
      add_tool_calls();
    } else {
      add_text();
    }
    add(chunk(chat_ ? json::value(json::object{}) : json::value(""),
              json::string(calls_tools ? "tool_calls" : text_finish_reason(reply_.quirks))));
    if (include_usage(request_.json)) add_usage();
    add("[DONE]");
    return std::move(events_);
  }

 private:
  void add(std::string data) { events_.push_back({{}, std::move(data)}); }

  json::object identity() const {
    json::object object;
    add_identity(object, chat_ ? "chat.completion.chunk" : "text_completion", model_, reply_.quirks,
                 serial_);
    return object;
  }

  std::string chunk(json::value delta_or_text, json::value finish) const {
    auto object = identity();
    json::object choice{{"index", 0}, {"finish_reason", std::move(finish)}};
    choice[chat_ ? "delta" : "text"] = std::move(delta_or_text);
    object["choices"] = json::array{std::move(choice)};
    return json::serialize(object);
  }

  void add_text() {
    if (chat_) add(chunk(json::object{{"role", "assistant"}, {"content", ""}}, nullptr));
    for (const auto& word : split_words_keep_spaces(reply_.content)) {
      add(chat_ ? chunk(json::object{{"content", word}}, nullptr)
                : chunk(json::string(word), nullptr));
    }
  }

  // Each call opens with its id, name and empty arguments (the first with the role), then its
  // arguments follow in pieces, as OpenAI streams them.
  void add_tool_calls() {
    for (std::size_t i = 0; i < reply_.tool_calls.size(); ++i) {
      const auto& call = reply_.tool_calls[i];
      json::object opening{{"index", i},
                           {"id", call_id("call_sim", serial_, i)},
                           {"type", "function"},
                           {"function", json::object{{"name", call.name}, {"arguments", ""}}}};
      json::object delta;
      if (i == 0) delta = json::object{{"role", "assistant"}, {"content", nullptr}};
      delta["tool_calls"] = json::array{std::move(opening)};
      add(chunk(std::move(delta), nullptr));
      for (const auto& piece : split_in_pieces(json::serialize(call.arguments), 3)) {
        json::object part{{"index", i}, {"function", json::object{{"arguments", piece}}}};
        add(chunk(json::object{{"tool_calls", json::array{std::move(part)}}}, nullptr));
      }
    }
  }

  void add_usage() {
    auto object = identity();
    object["choices"] = json::array();
    const auto completion = chat_ ? answer_words(reply_) : count_words(reply_.content);
    object["usage"] = usage_object(prompt_words(request_), completion, reply_.quirks);
    add(json::serialize(object));
  }

  const FakeRequest& request_;
  const FakeReply& reply_;
  const bool chat_;
  const std::string model_;
  const std::size_t serial_;
  std::vector<SseEvent> events_;
};

class AnthropicEvents {
 public:
  AnthropicEvents(const FakeRequest& request, const FakeReply& reply)
      : request_(request), reply_(reply), serial_(++reply_serial) {}

  // message_start, the content blocks (a ping after the first opens), message_delta with the
  // stop reason and output tokens, message_stop: the order Anthropic streams them in.
  std::vector<SseEvent> events() {
    auto message = anthropic_message_head(request_, serial_);
    message["content"] = json::array();
    message["stop_reason"] = nullptr;
    message["stop_sequence"] = nullptr;
    message["usage"] = anthropic_usage(prompt_words(request_), 1);
    add("message_start", {{"message", std::move(message)}});
    if (reply_.tool_calls.empty()) {
      add_text_block();
    } else {
      add_tool_use_blocks();
    }
    add("message_delta", {{"delta", json::object{{"stop_reason", anthropic_stop_reason(reply_)},
                                                 {"stop_sequence", nullptr}}},
                          {"usage", json::object{{"output_tokens", answer_words(reply_)}}}});
    add("message_stop", {});
    return std::move(events_);
  }

 private:
  void add(std::string_view type, json::object fields) {
    json::object data{{"type", type}};
    for (auto& [key, value] : fields) data[key] = std::move(value);
    events_.push_back({std::string(type), json::serialize(data)});
  }

  void add_text_block() {
    add("content_block_start",
        {{"index", 0}, {"content_block", json::object{{"type", "text"}, {"text", ""}}}});
    add("ping", {});
    for (const auto& word : split_words_keep_spaces(reply_.content)) {
      add("content_block_delta",
          {{"index", 0}, {"delta", json::object{{"type", "text_delta"}, {"text", word}}}});
    }
    add("content_block_stop", {{"index", 0}});
  }

  void add_tool_use_blocks() {
    for (std::size_t i = 0; i < reply_.tool_calls.size(); ++i) {
      const auto& call = reply_.tool_calls[i];
      add("content_block_start",
          {{"index", i},
           {"content_block", json::object{{"type", "tool_use"},
                                          {"id", call_id("toolu_sim", serial_, i)},
                                          {"name", call.name},
                                          {"input", json::object{}}}}});
      if (i == 0) add("ping", {});
      for (const auto& piece : split_in_pieces(json::serialize(call.arguments), 3)) {
        add("content_block_delta",
            {{"index", i},
             {"delta", json::object{{"type", "input_json_delta"}, {"partial_json", piece}}}});
      }
      add("content_block_stop", {{"index", i}});
    }
  }

  const FakeRequest& request_;
  const FakeReply& reply_;
  const std::size_t serial_;
  std::vector<SseEvent> events_;
};
}  // namespace

Dialect dialect_of_target(std::string_view target) {
  const auto path = path_of(target);
  return path.ends_with("/messages") || path.ends_with("/messages/count_tokens")
             ? Dialect::anthropic
             : Dialect::openai;
}

bool is_count_tokens_target(std::string_view target) {
  return path_of(target).ends_with("/messages/count_tokens");
}

std::int64_t prompt_words(const FakeRequest& request) { return count_words(prompt_text(request)); }

std::string default_text(const FakeRequest& request) {
  return "This is a simulated answer to: " + first_words(prompt_text(request), 6);
}

std::string openai_error_body(std::string_view message, std::string_view type,
                              const json::value& code) {
  return json::serialize(
      json::object{{"error", json::object{{"message", message}, {"type", type}, {"code", code}}}});
}

std::string anthropic_error_body(std::string_view type, std::string_view message) {
  return json::serialize(json::object{
      {"type", "error"}, {"error", json::object{{"type", type}, {"message", message}}}});
}

FakeReply error_reply(Dialect dialect, unsigned status) {
  FakeReply reply;
  reply.status = status;
  if (status == 429) reply.headers.emplace_back("retry-after", "1");
  const std::string message = status == 529
                                  ? "Overloaded"
                                  : "simulated " + std::to_string(status) + ", as the prompt asked";
  if (dialect == Dialect::anthropic) {
    reply.body = anthropic_error_body(api::anthropic::error_type(status), message);
  } else if (status == 429) {
    reply.body = openai_error_body(message, "rate_limit_error", "rate_limit_exceeded");
  } else {
    reply.body =
        openai_error_body(message, status >= 500 ? "server_error" : "invalid_request_error",
                          status == 401 ? json::value("invalid_api_key") : json::value());
  }
  return reply;
}

FakeReply default_reply(const FakeRequest& request) {
  const auto dialect = dialect_of_target(request.target);
  if (auto status = requested_status(prompt_text(request))) return error_reply(dialect, *status);
  FakeReply reply;
  if (auto result = trailing_tool_result(request.json, dialect)) {
    reply.content = "Tool said: " + *result;
    return reply;
  }
  if (!tools_forbidden(request.json)) {
    if (auto tool = first_client_tool(request.json, dialect)) {
      reply.tool_calls.push_back({tool->name, arguments_for(*tool, last_user_text(request.json))});
    }
  }
  reply.content = default_text(request);
  return reply;
}

std::string plain_body(const FakeRequest& request, const FakeReply& reply) {
  const auto path = path_of(request.target);
  if (path.ends_with("/messages/count_tokens")) {
    return json::serialize(json::object{{"input_tokens", prompt_words(request)}});
  }
  if (path.ends_with("/messages")) return anthropic_body(request, reply);
  if (path.ends_with("/embeddings")) return embeddings_body(request);
  return openai_body(request, reply);
}

std::vector<SseEvent> stream_events(const FakeRequest& request, const FakeReply& reply) {
  if (reply.named_events) return *reply.named_events;
  if (reply.events) {
    std::vector<SseEvent> events;
    for (const auto& data : *reply.events) events.push_back({{}, data});
    return events;
  }
  if (dialect_of_target(request.target) == Dialect::anthropic) {
    return AnthropicEvents(request, reply).events();
  }
  return ChatChunks(request, reply).events();
}

bool ends_stream(const SseEvent& event) {
  return event.data == "[DONE]" || event.name == "message_stop";
}

std::string sse_text(const SseEvent& event, std::string_view line_end, bool blank_line) {
  std::string text;
  if (!event.name.empty()) {
    text.append("event: ").append(event.name).append(line_end);
  }
  text.append("data: ").append(event.data).append(line_end);
  if (blank_line) text.append(line_end);
  return text;
}

}  // namespace cutover::simulate
