#include "providers/openai_dialect.h"

#include <cmath>

namespace cutover::providers {

namespace json = boost::json;

std::string_view api_path(ApiKind kind) {
  switch (kind) {
    case ApiKind::chat_completions:
      return "/chat/completions";
    case ApiKind::completions:
      return "/completions";
    case ApiKind::embeddings:
      return "/embeddings";
  }
  return "";
}

std::optional<std::string> validate_request(const json::object& body, ApiKind kind,
                                            RequestShape& shape) {
  const auto* model = body.if_contains("model");
  if (model == nullptr) return "'model' is required";
  if (!model->is_string() || model->get_string().empty()) return "'model' must be a non-empty string";
  shape.model = model->get_string();

  if (const auto* stream = body.if_contains("stream")) {
    if (!stream->is_bool() && !stream->is_null()) return "'stream' must be a boolean";
    shape.stream = stream->is_bool() && stream->get_bool();
  }
  if (kind == ApiKind::embeddings && shape.stream) return "embeddings cannot be streamed";
  if (const auto* options = body.if_contains("stream_options")) {
    if (!options->is_object() && !options->is_null()) return "'stream_options' must be an object";
    if (options->is_object()) {
      if (const auto* include = options->get_object().if_contains("include_usage")) {
        shape.client_requested_usage = include->is_bool() && include->get_bool();
      }
    }
  }

  switch (kind) {
    case ApiKind::chat_completions: {
      const auto* messages = body.if_contains("messages");
      if (messages == nullptr) return "'messages' is required";
      if (!messages->is_array()) return "'messages' must be an array";
      if (messages->get_array().empty()) return "'messages' must not be empty";
      for (std::size_t i = 0; i < messages->get_array().size(); ++i) {
        const auto& message = messages->get_array()[i];
        if (!message.is_object() || !message.get_object().contains("role")) {
          return "'messages[" + std::to_string(i) + "]' must be an object with a 'role'";
        }
      }
      break;
    }
    case ApiKind::completions:
      if (!body.contains("prompt")) return "'prompt' is required";
      break;
    case ApiKind::embeddings:
      if (!body.contains("input")) return "'input' is required";
      break;
  }
  return std::nullopt;
}

std::string_view normalize_finish_reason(std::string_view reason) {
  if (reason == "stop" || reason == "length" || reason == "tool_calls" ||
      reason == "content_filter" || reason == "function_call") {
    return reason;
  }
  if (reason == "max_tokens" || reason == "model_length" || reason == "max_output_tokens") {
    return "length";
  }
  if (reason == "tool_use" || reason == "tool_call" || reason == "function") return "tool_calls";
  if (reason == "safety" || reason == "content_filtered" || reason == "sensitive") {
    return "content_filter";
  }
  // "eos", "eos_token", "end_turn", "stop_sequence" and anything unknown end a normal answer.
  return "stop";
}

namespace {

std::optional<std::int64_t> as_count(const json::value* value) {
  if (value == nullptr) return std::nullopt;
  if (value->is_int64()) return value->get_int64();
  if (value->is_uint64()) return static_cast<std::int64_t>(value->get_uint64());
  // Token counts beyond 2^53 are nonsense; refusing them also keeps the cast defined.
  if (value->is_double() && std::isfinite(value->get_double()) &&
      std::fabs(value->get_double()) < 9.0e15) {
    return static_cast<std::int64_t>(value->get_double());
  }
  if (value->is_string()) {
    try {
      return std::stoll(std::string(value->get_string()));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<std::int64_t> first_count(const json::object& usage,
                                        std::initializer_list<std::string_view> names) {
  for (auto name : names) {
    if (auto count = as_count(usage.if_contains(name))) return count;
  }
  return std::nullopt;
}

// Rewrites a usage object into OpenAI's field names; returns what it reports.
Usage normalize_usage(json::value& value, ApiKind kind) {
  Usage usage = extract_usage(value);
  if (!usage.present) return usage;
  json::object normalized;
  normalized["prompt_tokens"] = usage.prompt_tokens;
  if (kind != ApiKind::embeddings) normalized["completion_tokens"] = usage.completion_tokens;
  normalized["total_tokens"] = usage.total_tokens;
  const auto& original = value.get_object();
  for (auto detail : {"prompt_tokens_details", "completion_tokens_details"}) {
    if (const auto* d = original.if_contains(detail); d != nullptr && d->is_object()) {
      normalized[detail] = *d;
    }
  }
  value = std::move(normalized);
  return usage;
}

void fill_identity(json::object& body, std::string_view object_type,
                   const ResponseIdentity& identity) {
  auto* id = body.if_contains("id");
  if (id == nullptr || !id->is_string() || id->get_string().empty()) body["id"] = identity.id();
  body["object"] = object_type;
  auto* created = body.if_contains("created");
  if (created == nullptr || !as_count(created)) {
    body["created"] = identity.created;
  } else if (!created->is_int64()) {
    body["created"] = *as_count(created);
  }
  body["model"] = identity.client_model;
}

std::optional<std::string> normalize_choices(json::object& body, ApiKind kind, bool streamed) {
  auto* choices = body.if_contains("choices");
  if (choices == nullptr || !choices->is_array()) return "response has no 'choices' array";
  auto& array = choices->get_array();
  for (std::size_t i = 0; i < array.size(); ++i) {
    if (!array[i].is_object()) return "choice " + std::to_string(i) + " is not an object";
    auto& choice = array[i].get_object();
    if (!as_count(choice.if_contains("index"))) choice["index"] = static_cast<std::int64_t>(i);
    auto* reason = choice.if_contains("finish_reason");
    if (reason == nullptr) {
      choice["finish_reason"] = nullptr;
    } else if (reason->is_string()) {
      *reason = normalize_finish_reason(reason->get_string());
    } else if (!reason->is_null()) {
      return "choice " + std::to_string(i) + " has a non-string finish_reason";
    }
    if (kind == ApiKind::chat_completions) {
      const char* field = streamed ? "delta" : "message";
      auto* message = choice.if_contains(field);
      if (message == nullptr && streamed) {
        choice[field] = json::object();
        continue;
      }
      if (message == nullptr || !message->is_object()) {
        return "choice " + std::to_string(i) + " has no '" + field + "' object";
      }
      auto& m = message->get_object();
      if (!streamed && !m.contains("role")) m["role"] = "assistant";
      if (!streamed && !m.contains("content")) m["content"] = nullptr;
      if (const auto* content = m.if_contains("content");
          content != nullptr && !content->is_string() && !content->is_null()) {
        return "choice " + std::to_string(i) + " has content that is neither text nor null";
      }
    } else {
      auto* text = choice.if_contains("text");
      if (text == nullptr) {
        choice["text"] = "";
      } else if (!text->is_string()) {
        return "choice " + std::to_string(i) + " has a non-string 'text'";
      }
    }
  }
  return std::nullopt;
}

}  // namespace

Usage extract_usage(const json::value& value) {
  Usage usage;
  if (!value.is_object()) return usage;
  const auto& object = value.get_object();
  auto prompt = first_count(object, {"prompt_tokens", "input_tokens", "prompt_token_count"});
  auto completion = first_count(
      object, {"completion_tokens", "generated_tokens", "output_tokens", "candidates_token_count"});
  auto total = first_count(object, {"total_tokens", "total_token_count"});
  if (!prompt && !completion && !total) return usage;
  usage.present = true;
  usage.prompt_tokens = prompt.value_or(0);
  usage.completion_tokens = completion.value_or(0);
  usage.total_tokens = total.value_or(usage.prompt_tokens + usage.completion_tokens);
  if (const auto* details = object.if_contains("prompt_tokens_details");
      details != nullptr && details->is_object()) {
    usage.cached_prompt_tokens =
        as_count(details->get_object().if_contains("cached_tokens")).value_or(0);
    usage.cache_creation_prompt_tokens =
        as_count(details->get_object().if_contains("cache_creation_tokens")).value_or(0);
  } else if (auto cached = first_count(object, {"cache_read_input_tokens", "cached_tokens"})) {
    usage.cached_prompt_tokens = *cached;
  }
  return usage;
}

std::optional<std::string> normalize_response(json::value& body, ApiKind kind,
                                              const ResponseIdentity& identity, Usage& usage) {
  if (!body.is_object()) return "response is not a JSON object";
  auto& object = body.get_object();
  if (kind == ApiKind::embeddings) {
    auto* data = object.if_contains("data");
    if (data == nullptr || !data->is_array()) return "embeddings response has no 'data' array";
    auto& items = data->get_array();
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_object() || !items[i].get_object().contains("embedding")) {
        return "embedding " + std::to_string(i) + " has no 'embedding'";
      }
      auto& item = items[i].get_object();
      item["object"] = "embedding";
      if (!as_count(item.if_contains("index"))) item["index"] = static_cast<std::int64_t>(i);
    }
    object["object"] = "list";
    object["model"] = identity.client_model;
  } else {
    if (auto error = normalize_choices(object, kind, false)) return error;
    fill_identity(object, kind == ApiKind::chat_completions ? "chat.completion" : "text_completion",
                  identity);
    if (!object.contains("system_fingerprint")) object["system_fingerprint"] = nullptr;
  }
  if (auto* u = object.if_contains("usage"); u != nullptr && !u->is_null()) {
    usage = normalize_usage(*u, kind);
    if (!usage.present) object.erase("usage");
  }
  return std::nullopt;
}

namespace {
json::object chunk_delta(const json::object& message) {
  json::object delta;
  for (const auto& [key, value] : message) {
    if (key != "tool_calls" || !value.is_array()) {
      delta[key] = value;
      continue;
    }
    // Streamed tool calls carry their position in the message.
    json::array calls;
    for (std::size_t i = 0; i < value.get_array().size(); ++i) {
      json::object call = value.get_array()[i].is_object() ? value.get_array()[i].get_object()
                                                           : json::object();
      call["index"] = static_cast<std::int64_t>(i);
      calls.push_back(std::move(call));
    }
    delta[key] = std::move(calls);
  }
  return delta;
}
}  // namespace

bool chunk_finishes(const json::object& chunk) {
  const auto* choices = chunk.if_contains("choices");
  if (choices == nullptr || !choices->is_array()) return false;
  for (const auto& choice : choices->get_array()) {
    const auto* reason = choice.is_object() ? choice.get_object().if_contains("finish_reason") : nullptr;
    if (reason != nullptr && reason->is_string() && !reason->get_string().empty()) return true;
  }
  return false;
}

bool chunk_finishes(const json::value& chunk) {
  return chunk.is_object() && chunk_finishes(chunk.get_object());
}

std::vector<std::string> stream_chunks_from_response(const json::object& response, ApiKind kind,
                                                     bool include_usage) {
  const bool chat = kind == ApiKind::chat_completions;
  json::object header;
  for (const char* key : {"id", "created", "model", "system_fingerprint"}) {
    if (const auto* value = response.if_contains(key)) header[key] = *value;
  }
  header["object"] = chat ? "chat.completion.chunk" : "text_completion";
  std::vector<std::string> chunks;
  if (const auto* choices = response.if_contains("choices"); choices && choices->is_array()) {
    for (const auto& choice : choices->get_array()) {
      if (!choice.is_object()) continue;
      json::object streamed = choice.get_object();
      if (chat) {
        const auto* message = streamed.if_contains("message");
        streamed["delta"] = message && message->is_object() ? chunk_delta(message->get_object())
                                                             : json::object();
        streamed.erase("message");
      }
      json::object chunk = header;
      chunk["choices"] = json::array{std::move(streamed)};
      chunks.push_back(json::serialize(chunk));
    }
  }
  if (const auto* usage = response.if_contains("usage"); include_usage && usage && usage->is_object()) {
    json::object chunk = header;
    chunk["choices"] = json::array();
    chunk["usage"] = *usage;
    chunks.push_back(json::serialize(chunk));
  }
  return chunks;
}

std::optional<std::string> normalize_stream_chunk(json::value& chunk, ApiKind kind,
                                                  const ResponseIdentity& identity,
                                                  bool strip_usage, Usage& usage,
                                                  ChunkOutcome& outcome) {
  outcome = ChunkOutcome{};
  if (!chunk.is_object()) return "stream chunk is not a JSON object";
  auto& object = chunk.get_object();
  if (object.contains("error")) {
    outcome.is_error = true;
    return std::nullopt;
  }
  bool has_usage = false;
  if (auto* u = object.if_contains("usage"); u != nullptr && !u->is_null()) {
    Usage reported = normalize_usage(*u, kind);
    if (reported.present) {
      usage = reported;
      has_usage = true;
    }
  }
  if (!object.contains("choices")) object["choices"] = json::array();
  if (auto error = normalize_choices(object, kind, true)) return error;
  if (has_usage && strip_usage) {
    if (object.at("choices").get_array().empty()) {
      outcome.drop = true;
      return std::nullopt;
    }
    object.erase("usage");
  }
  fill_identity(object,
                kind == ApiKind::chat_completions ? "chat.completion.chunk" : "text_completion",
                identity);
  return std::nullopt;
}

std::string error_body(std::string_view message, std::string_view type, std::string_view code,
                       std::string_view request_id) {
  json::object error;
  error["message"] = message;
  error["type"] = type;
  error["param"] = nullptr;
  error["code"] = code;
  if (!request_id.empty()) error["request_id"] = request_id;
  json::object body;
  body["error"] = std::move(error);
  return json::serialize(body);
}

void redact(std::string& text, std::string_view secret) {
  if (secret.empty()) return;
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
    text.replace(at, secret.size(), "[redacted]");
  }
}

std::string normalize_error_body(std::string_view raw, unsigned status, std::string_view secret,
                                 std::string_view request_id) {
  std::string text(raw);
  redact(text, secret);
  boost::system::error_code ec;
  auto parsed = json::parse(text, ec);
  const char* type = status == 429   ? "rate_limit_error"
                     : status == 401 ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status < 500  ? "invalid_request_error"
                                     : "upstream_error";
  if (!ec && parsed.is_object()) {
    auto& object = parsed.get_object();
    auto* error = object.if_contains("error");
    if (error != nullptr && error->is_object()) {
      auto& e = error->get_object();
      if (!e.contains("message") || !e.at("message").is_string()) e["message"] = "upstream error";
      if (!e.contains("type")) e["type"] = type;
      if (!e.contains("code")) e["code"] = nullptr;
      if (!e.contains("param")) e["param"] = nullptr;
      if (!request_id.empty()) e["request_id"] = request_id;
      return json::serialize(json::object{{"error", std::move(e)}});
    }
    if (error != nullptr && error->is_string()) {
      return error_body(error->get_string(), type, "upstream_error", request_id);
    }
    if (auto* message = object.if_contains("message"); message != nullptr && message->is_string()) {
      return error_body(message->get_string(), type, "upstream_error", request_id);
    }
  }
  std::string message = "provider answered HTTP " + std::to_string(status);
  if (!text.empty()) message += ": " + text.substr(0, 512);
  return error_body(message, type, "upstream_error", request_id);
}

}  // namespace cutover::providers
