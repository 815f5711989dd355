// The native Anthropic provider dialect: the canonical exchange (an OpenAI chat-completions
// request) rewritten as a Messages request for a provider with `dialect: anthropic`, and what it
// answers (a message, or its event stream) normalized back into chat completions and chunks.
//
// Pure functions and a per-stream state machine over Boost.JSON values: no I/O, any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "providers/openai_dialect.h"

namespace cutover::providers::anthropic {

inline constexpr std::string_view kDefaultVersion = "2023-06-01";
inline constexpr std::string_view kMessagesPath = "/messages";
inline constexpr std::string_view kCountTokensPath = "/messages/count_tokens";

// Rewrites a chat-completions request as a Messages request body for `provider_model`: system
// and developer messages into `system`, content parts (text, image_url data and https URLs)
// into blocks, tools and tool_choice, assistant tool_calls into tool_use blocks and tool
// messages into tool_result blocks (consecutive ones merged into one user turn), stop into
// stop_sequences, max_tokens / max_completion_tokens (else `default_max_tokens`: Anthropic
// requires it). Returns a message naming the first field with no equivalent that would change
// the answer (n > 1, logprobs, ...); the caller answers 400 then.
std::optional<std::string> to_messages_request(const boost::json::object& chat,
                                               std::string_view provider_model,
                                               std::int64_t default_max_tokens, std::string& body);

// Normalizes a Messages response into a chat completion with `identity`'s id, created time
// and model. Fills `usage` (prompt_tokens include cache reads and writes, as OpenAI's do).
// Returns a message when the body is not a valid message.
std::optional<std::string> to_chat_completion(const boost::json::value& message,
                                              const ResponseIdentity& identity, Usage& usage,
                                              boost::json::object& completion);

// The usage a Messages response reports, in OpenAI's terms (as to_chat_completion fills it):
// what a message passed through to a native Anthropic client is accounted by.
Usage usage_of(const boost::json::value& message);

// Turns a Messages event stream into chat-completion chunks, event by event.
class StreamDecoder {
 public:
  explicit StreamDecoder(ResponseIdentity identity) : identity_(std::move(identity)) {}
  // One event's data (its `type` says which event). Appends zero or more chunks; the final
  // usage chunk (choices empty, usage set) follows the finish chunk when message_delta arrives.
  // Returns a message when the event is invalid for its place in the stream.
  std::optional<std::string> on_event(const boost::json::object& data,
                                      std::vector<boost::json::object>& chunks, Usage& usage);
  // message_stop was seen: the stream is complete.
  bool finished() const { return finished_; }
  // The provider streamed an `error` event: its message (the stream is over).
  const std::optional<std::string>& provider_error() const { return provider_error_; }

 private:
  // What a content block streams into: text becomes content, tool_use a tool call; thinking and
  // block types added later stream nothing a chat client can hold.
  enum class BlockKind { text, tool_use, ignored };
  struct Block {
    std::int64_t index = 0;  // the block's place in the message, as the events name it
    BlockKind kind = BlockKind::ignored;
    int tool_call = -1;  // the chunk's tool_calls index for a tool_use block
  };

  std::optional<std::string> on_message_start(const boost::json::object& data,
                                              std::vector<boost::json::object>& chunks);
  std::optional<std::string> on_block_start(const boost::json::object& data,
                                            std::vector<boost::json::object>& chunks);
  std::optional<std::string> on_block_delta(const boost::json::object& data,
                                            std::vector<boost::json::object>& chunks);
  std::optional<std::string> on_block_stop(const boost::json::object& data);
  void on_message_delta(const boost::json::object& data, std::vector<boost::json::object>& chunks);
  void read_usage(const boost::json::value* usage);
  void emit_finish(std::string_view stop_reason, std::vector<boost::json::object>& chunks);
  boost::json::object chunk(boost::json::object delta, boost::json::value finish_reason) const;
  boost::json::object usage_chunk() const;
  Usage current_usage() const;
  Block* find_block(std::int64_t index);

  ResponseIdentity identity_;
  bool finished_ = false;
  std::optional<std::string> provider_error_;
  bool role_sent_ = false;
  bool finish_sent_ = false;
  int tool_calls_ = 0;         // tool_use blocks seen so far (the next chunk tool_calls index)
  std::vector<Block> blocks_;  // the blocks started and not yet stopped
  std::int64_t next_block_index_ = 0;  // blocks start in order: the lowest index still to come
  std::int64_t input_tokens_ = 0;
  std::int64_t cache_read_tokens_ = 0;
  std::int64_t cache_creation_tokens_ = 0;
  std::int64_t output_tokens_ = 0;
};

// Anthropic's stop_reason as a chat finish_reason (end_turn, stop_sequence -> stop;
// max_tokens -> length; tool_use -> tool_calls; refusal -> content_filter).
std::string_view finish_reason(std::string_view stop_reason);

}  // namespace cutover::providers::anthropic
