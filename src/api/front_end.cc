#include "api/front_end.h"

namespace cutover::api {

namespace json = boost::json;

std::optional<ClientProtocol> protocol_for_path(std::string_view path) {
  if (path == "/v1/chat/completions") return ClientProtocol::chat_completions;
  if (path == "/v1/completions") return ClientProtocol::completions;
  if (path == "/v1/embeddings") return ClientProtocol::embeddings;
  if (path == "/v1/messages") return ClientProtocol::anthropic_messages;
  if (path == "/v1/responses") return ClientProtocol::responses;
  return std::nullopt;
}

providers::ApiKind canonical_kind(ClientProtocol protocol) {
  switch (protocol) {
    case ClientProtocol::completions:
      return providers::ApiKind::completions;
    case ClientProtocol::embeddings:
      return providers::ApiKind::embeddings;
    default:
      return providers::ApiKind::chat_completions;
  }
}

bool passes_through(ClientProtocol protocol, bool provider_is_anthropic) {
  return provider_is_anthropic ? protocol == ClientProtocol::anthropic_messages
                               : protocol != ClientProtocol::anthropic_messages &&
                                     protocol != ClientProtocol::responses;
}

std::string error_body(ClientProtocol protocol, unsigned status, std::string_view message,
                       std::string_view type, std::string_view code,
                       std::string_view request_id) {
  if (protocol == ClientProtocol::anthropic_messages) {
    return anthropic::error_body(status, message, request_id);
  }
  return providers::error_body(message, type, code, request_id);
}

std::string anthropic_error_body(unsigned status, std::string_view message, std::string_view type,
                                 std::string_view code, std::string_view request_id) {
  return error_body(ClientProtocol::anthropic_messages, status, message, type, code, request_id);
}

ErrorFormatFunction error_format_for(std::string_view target) {
  const auto path = target.substr(0, target.find('?'));
  const bool messages = path == "/v1/messages" || path.starts_with("/v1/messages/");
  return messages ? &anthropic_error_body : nullptr;
}

std::string error_body_from(ClientProtocol protocol, std::string openai_body, unsigned status,
                            std::string_view request_id) {
  if (protocol == ClientProtocol::anthropic_messages) {
    return anthropic::error_body_from(openai_body, status, request_id);
  }
  return openai_body;
}

std::string stream_end_event(ClientProtocol protocol) {
  if (protocol == ClientProtocol::anthropic_messages) {
    return "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
  }
  return sse_data("[DONE]");
}

std::string stream_error_event(ClientProtocol protocol, unsigned status, std::string_view code,
                               std::string_view message, std::string_view request_id) {
  if (protocol == ClientProtocol::anthropic_messages) {
    return "event: error\ndata: " + anthropic::error_body(status, message, request_id) + "\n\n";
  }
  return sse_data(providers::error_body(message, "upstream_error", code, request_id));
}

std::string sse_data(std::string_view payload) {
  std::string event;
  event.reserve(payload.size() + 8);
  event.append("data: ").append(payload).append("\n\n");
  return event;
}

AnswerEncoder::AnswerEncoder(ClientProtocol protocol, const json::object& client_request,
                             std::string id, std::string client_model, std::int64_t created)
    : protocol_(protocol),
      client_request_(client_request),
      id_(std::move(id)),
      client_model_(std::move(client_model)),
      created_(created) {}

AnswerEncoder::~AnswerEncoder() = default;

std::string AnswerEncoder::encode(const json::object& completion) const {
  switch (protocol_) {
    case ClientProtocol::anthropic_messages:
      return json::serialize(anthropic::to_message(completion, id_, client_model_));
    case ClientProtocol::responses:
      return json::serialize(
          responses::to_response(completion, client_request_, id_, client_model_, created_));
    default:
      return json::serialize(completion);
  }
}

anthropic::StreamEncoder& AnswerEncoder::messages_stream() {
  if (!messages_stream_) {
    messages_stream_ = std::make_unique<anthropic::StreamEncoder>(id_, client_model_);
  }
  return *messages_stream_;
}

responses::StreamEncoder& AnswerEncoder::responses_stream() {
  if (!responses_stream_) {
    responses_stream_ =
        std::make_unique<responses::StreamEncoder>(id_, client_request_, client_model_, created_);
  }
  return *responses_stream_;
}

void AnswerEncoder::on_chunk(const json::object& chunk, std::string& out) {
  switch (protocol_) {
    case ClientProtocol::anthropic_messages:
      messages_stream().on_chunk(chunk, out);
      return;
    case ClientProtocol::responses:
      responses_stream().on_chunk(chunk, out);
      return;
    default:
      out += sse_data(json::serialize(chunk));
  }
}

void AnswerEncoder::finish(std::string& out) {
  switch (protocol_) {
    case ClientProtocol::anthropic_messages:
      messages_stream().finish(out);
      return;
    case ClientProtocol::responses:
      responses_stream().finish(out);
      return;
    default:
      out += stream_end_event(protocol_);
  }
}

void AnswerEncoder::fail(unsigned status, std::string_view code, std::string_view message,
                         std::string_view request_id, std::string& out) {
  switch (protocol_) {
    case ClientProtocol::anthropic_messages:
      messages_stream().fail(status, message, out);
      return;
    case ClientProtocol::responses:
      responses_stream().fail(code, message, out);
      return;
    default:
      out += stream_error_event(protocol_, status, code, message, request_id);
  }
}

}  // namespace cutover::api
