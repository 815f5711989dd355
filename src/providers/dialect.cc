#include "providers/dialect.h"

namespace cutover::providers {

namespace json = boost::json;


std::string_view request_path(config::Dialect dialect, ApiKind kind) {
  if (dialect == config::Dialect::anthropic) return anthropic::kMessagesPath;
  return api_path(kind);
}

std::optional<std::string> canonical_completion(config::Dialect dialect, json::value& value,
                                                ApiKind kind, const ResponseIdentity& identity,
                                                Usage& usage) {
  if (dialect == config::Dialect::openai) return normalize_response(value, kind, identity, usage);
  json::object completion(value.storage());
  if (auto problem = anthropic::to_chat_completion(value, identity, usage, completion)) {
    return problem;
  }
  value = std::move(completion);
  return std::nullopt;
}

CanonicalStream::CanonicalStream(config::Dialect dialect, ApiKind kind, ResponseIdentity identity,
                                 bool strip_usage, bool chunks_wanted)
    : dialect_(dialect),
      kind_(kind),
      identity_(identity),
      strip_usage_(strip_usage),
      chunks_wanted_(chunks_wanted),
      anthropic_(std::move(identity)) {}

CanonicalStream::EventResult CanonicalStream::read_native(const json::object& data, Usage& usage) {
  EventResult result;
  const auto* type = data.if_contains("type");
  std::string_view name;
  if (type != nullptr && type->is_string()) name = type->get_string();
  if (name == "message_start") {
    if (const auto* message = data.if_contains("message")) usage = anthropic::usage_of(*message);
  } else if (name == "message_delta") {
    // The final output count; newer API versions repeat the input counts here too.
    const auto counted = anthropic::usage_of(data);
    const auto* counts = data.if_contains("usage");
    if (counted.present) {
      if (counts->get_object().contains("input_tokens")) {
        usage = counted;
      } else {
        usage.present = true;
        usage.completion_tokens = counted.completion_tokens;
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
      }
    }
    const auto* delta = data.if_contains("delta");
    const auto* stop = delta != nullptr && delta->is_object()
                           ? delta->get_object().if_contains("stop_reason")
                           : nullptr;
    saw_finish_ = saw_finish_ || (stop != nullptr && !stop->is_null());
  } else if (name == "message_stop") {
    saw_end_marker_ = result.end_marker = true;
  } else if (name == "error") {
    const auto* error = data.if_contains("error");
    const auto* message = error != nullptr && error->is_object()
                              ? error->get_object().if_contains("message")
                              : nullptr;
    result.provider_error = message != nullptr && message->is_string()
                                ? std::string(message->get_string())
                                : "upstream error";
  }
  return result;
}

CanonicalStream::EventResult CanonicalStream::read(
    const SseEvent& event, json::value& parsed, json::storage_ptr storage, Usage& usage,
    const std::function<void(json::value&)>& on_chunk) {
  EventResult result;
  if (dialect_ == config::Dialect::openai && event.data == "[DONE]") {
    saw_end_marker_ = result.end_marker = true;
    return result;
  }
  boost::system::error_code ec;
  parsed = json::parse(event.data, ec, std::move(storage));
  if (ec) {
    result.problem = "a stream event is not JSON";
    return result;
  }
  if (dialect_ == config::Dialect::openai) {
    ChunkOutcome outcome;
    if (auto problem = normalize_stream_chunk(parsed, kind_, identity_, strip_usage_, usage, outcome)) {
      result.problem = std::move(problem);
      return result;
    }
    saw_finish_ = saw_finish_ || chunk_finishes(parsed);
    if (outcome.is_error) {
      const auto* error = parsed.get_object().if_contains("error");
      const auto* message = error && error->is_object() ? error->get_object().if_contains("message")
                                                        : nullptr;
      result.provider_error = message && message->is_string() ? std::string(message->get_string())
                                                              : "upstream error";
    }
    if (!outcome.drop) on_chunk(parsed);
    return result;
  }
  if (!parsed.is_object()) {
    result.problem = "a stream event is not a JSON object";
    return result;
  }
  if (!chunks_wanted_) return read_native(parsed.get_object(), usage);
  decoded_.clear();
  if (auto problem = anthropic_.on_event(parsed.get_object(), decoded_, usage)) {
    result.problem = std::move(problem);
    return result;
  }
  for (auto& chunk : decoded_) {
    saw_finish_ = saw_finish_ || chunk_finishes(chunk);
    const auto* choices = chunk.if_contains("choices");
    const bool usage_only = chunk.contains("usage") && choices != nullptr && choices->is_array() &&
                            choices->get_array().empty();
    if (usage_only && strip_usage_) continue;
    json::value value(std::move(chunk));
    on_chunk(value);
  }
  if (anthropic_.provider_error()) result.provider_error = *anthropic_.provider_error();
  if (anthropic_.finished()) saw_end_marker_ = result.end_marker = true;
  return result;
}

}  // namespace cutover::providers
