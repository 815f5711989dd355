// The OpenAI Responses front-end codec (stateless subset): POST /v1/responses decoded into the
// canonical exchange (a chat-completions request), and the canonical answer encoded back as a
// Response object or the Responses event stream.
//
// Pure functions and a per-stream state machine over Boost.JSON values: no I/O, any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cutover::api::responses {

// Decodes a Responses request: `input` as a string or items (messages with input_text /
// input_image / output_text parts, function_call, function_call_output; reasoning items
// dropped), `instructions`, function tools, tool_choice, max_output_tokens, text.format,
// reasoning.effort, temperature, top_p, user/metadata. `store` is accepted (answered false).
// Returns a message naming the first field that needs server state or hosted tools
// (previous_response_id, conversation, background, item_reference, non-function tools); the
// caller answers 400 then. A streamed request asks for the usage chunk.
std::optional<std::string> to_chat_request(const boost::json::object& request,
                                           boost::json::object& chat);

// Encodes a normalized chat completion as a Response object ("object":"response",
// status completed or incomplete with incomplete_details.reason max_output_tokens, output
// items: a message with output_text and function_call items, usage with input/output tokens
// and their details). Echoes the request's instructions, tools, tool_choice, temperature,
// top_p, max_output_tokens, metadata, text; `store` false.
boost::json::object to_response(const boost::json::object& completion,
                                const boost::json::object& request, std::string_view id,
                                std::string_view client_model, std::int64_t created_at);

// Turns the chunks of one normalized chat-completions stream into the Responses event stream:
// response.created, response.in_progress, output_item.added / content_part.added /
// output_text.delta ... done events, function_call_arguments.delta/done, then
// response.completed (or response.incomplete). Every event carries `sequence_number`; each
// call appends complete SSE events ("event: NAME\ndata: JSON\n\n").
class StreamEncoder {
 public:
  StreamEncoder(std::string id, const boost::json::object& request, std::string client_model,
                std::int64_t created_at);
  ~StreamEncoder();
  StreamEncoder(StreamEncoder&&) noexcept;
  void on_chunk(const boost::json::object& chunk, std::string& out);
  void finish(std::string& out);
  // The stream broke after it began: response.failed with the error.
  void fail(std::string_view code, std::string_view message, std::string& out);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cutover::api::responses
