// The front-end codecs: which client protocol a request speaks (by its path), how errors are
// written in that protocol's schema, and how the canonical answer (a normalized chat completion
// or its chunks) is encoded back for the client. The attempt loop deals only in the canonical
// form; this is the one place that knows all client protocols.
#pragma once

#include <boost/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/anthropic_messages.h"
#include "api/responses.h"
#include "providers/openai_dialect.h"

namespace cutover::api {

enum class ClientProtocol {
  chat_completions,
  completions,
  embeddings,
  anthropic_messages,  // POST /v1/messages
  responses,           // POST /v1/responses
};

// The protocol served at `path` (without query); nullopt when no POST route serves it.
std::optional<ClientProtocol> protocol_for_path(std::string_view path);

// The canonical API kind a protocol's requests are exchanged as.
providers::ApiKind canonical_kind(ClientProtocol protocol);

// Whether the client's own body is sent as is (model spliced) to a provider of this dialect:
// the same format in and out.
bool passes_through(ClientProtocol protocol, bool provider_is_anthropic);

// An error body in the client's schema: OpenAI's {"error":{message,type,code}} for the OpenAI
// protocols, Anthropic's {"type":"error","error":{type,message}} for Messages (its type chosen
// by status; `type` and `code` are OpenAI's and ignored there).
std::string error_body(ClientProtocol protocol, unsigned status, std::string_view message,
                       std::string_view type, std::string_view code,
                       std::string_view request_id);

// error_body for Anthropic's Messages protocol, in the shape of http::ErrorFormat.
std::string anthropic_error_body(unsigned status, std::string_view message, std::string_view type,
                                 std::string_view code, std::string_view request_id);

// The error format for a request target (its path, query ignored), in the shape of
// http::ErrorFormatForTarget: Anthropic's for /v1/messages and below, null (OpenAI's) otherwise.
using ErrorFormatFunction = std::string (*)(unsigned, std::string_view, std::string_view,
                                            std::string_view, std::string_view);
ErrorFormatFunction error_format_for(std::string_view target);

// Re-encodes an error body the gateway holds in OpenAI's schema for the client's protocol.
std::string error_body_from(ClientProtocol protocol, std::string openai_body, unsigned status,
                            std::string_view request_id);

// Encodes the canonical answer of one request for its client. Chat and text completions pass
// the canonical form through (they are the canonical form); Messages and Responses translate.
class AnswerEncoder {
 public:
  // `client_request` is the client's own decoded body (the Responses object echoes fields of
  // it); it must outlive the encoder. `id` is the answer's id in the client's protocol.
  AnswerEncoder(ClientProtocol protocol, const boost::json::object& client_request,
                std::string id, std::string client_model, std::int64_t created);
  ~AnswerEncoder();

  ClientProtocol protocol() const { return protocol_; }

  // The body of a plain answer from a canonical completion.
  std::string encode(const boost::json::object& completion) const;

  // Appends the SSE text for one canonical chunk.
  void on_chunk(const boost::json::object& chunk, std::string& out);
  // The canonical stream ended cleanly: whatever closes the client's stream ([DONE] for the
  // OpenAI protocols, message_stop, response.completed).
  void finish(std::string& out);
  // The stream broke after it began: the client protocol's error event.
  void fail(unsigned status, std::string_view code, std::string_view message,
            std::string_view request_id, std::string& out);

 private:
  // Created at the first event: plain answers never need them.
  anthropic::StreamEncoder& messages_stream();
  responses::StreamEncoder& responses_stream();

  ClientProtocol protocol_;
  const boost::json::object& client_request_;
  std::string id_;
  std::string client_model_;
  std::int64_t created_;
  std::unique_ptr<anthropic::StreamEncoder> messages_stream_;
  std::unique_ptr<responses::StreamEncoder> responses_stream_;
};

// The event that ends a stream cleanly in a protocol's own format, for a stream passed through
// whose provider left it out: [DONE] for the OpenAI protocols, message_stop for Messages.
std::string stream_end_event(ClientProtocol protocol);

// The event that ends a stream that broke after it began, in a protocol's own format: an error
// chunk for the OpenAI protocols, an `error` event for Messages.
std::string stream_error_event(ClientProtocol protocol, unsigned status, std::string_view code,
                               std::string_view message, std::string_view request_id);

// One SSE event carrying `payload` as its data ("data: PAYLOAD\n\n").
std::string sse_data(std::string_view payload);

}  // namespace cutover::api
