// The Anthropic Messages front-end codec: what a client on the official Anthropic SDK sends to
// POST /v1/messages, decoded into the canonical exchange (an OpenAI chat-completions request),
// and the canonical answer (a normalized chat completion, or its stream chunks) encoded back into
// Anthropic's message object and event stream.
//
// Pure functions and a per-stream state machine over Boost.JSON values: no I/O, any thread.
// providers/anthropic_dialect.h is the other direction (cutover calling a native Anthropic
// provider); the two share only the canonical format.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cutover::api::anthropic {

// Decodes a Messages request into a chat-completions request (model kept as the client named
// it). Returns a message naming the first field that cannot be honoured (the caller answers
// 400 invalid_request_error); documented harmless fields (cache_control, top_k, ...) are dropped.
// A streamed request asks for the usage chunk (stream_options.include_usage).
std::optional<std::string> to_chat_request(const boost::json::object& request,
                                           boost::json::object& chat);

// Encodes a normalized chat completion as an Anthropic message object with `id` and the
// client's model name. Usage: input_tokens exclude cached tokens (cache_read_input_tokens and
// cache_creation_input_tokens carry them).
boost::json::object to_message(const boost::json::object& completion, std::string_view id,
                               std::string_view client_model);

// Turns the chunks of one normalized chat-completions stream into Anthropic's event stream:
// message_start, one content block open at a time (text or tool_use, tool arguments as
// input_json_delta), message_delta with stop_reason and the final usage, message_stop.
// Each call appends complete SSE events ("event: NAME\ndata: JSON\n\n") to `out`.
class StreamEncoder {
 public:
  StreamEncoder(std::string id, std::string client_model);
  void on_chunk(const boost::json::object& chunk, std::string& out);
  // The canonical stream ended cleanly: closes the open block, sends message_delta and
  // message_stop.
  void finish(std::string& out);
  // The stream broke after it began: an `error` event, so the SDK raises rather than returning
  // a silently truncated message.
  void fail(unsigned status, std::string_view message, std::string& out);

 private:
  // One chat tool call (by its tool_calls index) and the tool_use block that carries it.
  struct ToolCall {
    enum class Shape { pending, object, raw };  // pending: only whitespace seen so far
    int block = -1;
    std::string id;         // as the provider sent it
    std::string arguments;  // every piece received, for the raw fallback
    std::string late;       // pieces received after the block closed, sent before message_delta
    Shape shape = Shape::pending;
    std::unique_ptr<boost::json::stream_parser> validator;  // set once the shape is object
  };

  void start(std::string& out);
  void open_text_block(std::string& out);
  void on_text(std::string_view text, std::string& out);
  void on_tool_call_piece(const boost::json::object& piece, std::string& out);
  void retire_if_reused(std::int64_t index, std::string_view id, std::string& out);
  // Feeds one argument piece to `call`; returns what may be streamed now, nullopt when the
  // arguments stopped being JSON after part of them was streamed.
  std::optional<std::string> accept_arguments(ToolCall& call, std::string_view piece);
  void close_open_block(std::string& out);
  void record_usage(const boost::json::value& usage);

  std::string id_;
  std::string client_model_;
  bool started_ = false;
  int open_block_ = -1;                // index of the open content block, -1 when none
  std::int64_t open_tool_index_ = -1;  // the chat tool_calls index the open tool_use block carries
  int next_block_ = 0;
  std::string finish_reason_;  // the chat finish reason, held until finish()
  std::string stop_sequence_;  // the stop string a vLLM-style relay reported, if any
  bool refused_ = false;       // the model streamed a refusal
  std::map<std::int64_t, ToolCall> tool_calls_;  // by chat tool_calls index
  std::vector<ToolCall> retired_calls_;          // calls whose index a later call reused
  std::int64_t input_tokens_ = 0;
  std::int64_t output_tokens_ = 0;
  std::int64_t cache_read_tokens_ = 0;
  std::int64_t cache_creation_tokens_ = 0;
  bool finished_ = false;
};

// Anthropic's error type for an HTTP status: 400 invalid_request_error, 401
// authentication_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 529 and 503 overloaded_error, other 5xx api_error.
std::string_view error_type(unsigned status);

// {"type":"error","error":{"type":...,"message":...}} (plus request_id when not empty).
std::string error_body(unsigned status, std::string_view message, std::string_view request_id);

// Re-encodes an error body in OpenAI's schema (or already in Anthropic's) into Anthropic's,
// keeping its message.
std::string error_body_from(std::string_view body, unsigned status, std::string_view request_id);

// A tool-call id valid for Anthropic (^[a-zA-Z0-9_-]+$): other characters become '_', an empty
// id becomes "toolu_" plus `fallback_suffix`. The same input always maps to the same output.
std::string valid_tool_id(std::string_view id, std::string_view fallback_suffix);

}  // namespace cutover::api::anthropic
