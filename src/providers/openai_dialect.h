// The OpenAI wire dialect: validating client requests, rewriting them for a provider, and turning
// whatever an "OpenAI-compatible" provider answers into the schema the official SDKs expect.
//
// Pure functions over Boost.JSON values: no I/O, callable from any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cutover::providers {

enum class ApiKind { chat_completions, completions, embeddings };

std::string_view api_path(ApiKind kind);

struct Usage {
  bool present = false;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t total_tokens = 0;
  // Of prompt_tokens: read from the provider's prompt cache, and written to it (Anthropic
  // prices writes apart; in chat usage cutover carries them as
  // prompt_tokens_details.cache_creation_tokens).
  std::int64_t cached_prompt_tokens = 0;
  std::int64_t cache_creation_prompt_tokens = 0;
};

// Checks what the gateway itself needs of a client request. Returns a message naming the first
// problem, and fills `stream` and `client_requested_usage`.
struct RequestShape {
  std::string model;
  bool stream = false;
  bool client_requested_usage = false;
};
std::optional<std::string> validate_request(const boost::json::object& body, ApiKind kind,
                                            RequestShape& shape);

// Rewriting a request for a provider: see providers/request_body.h.

// Fields a provider may omit, filled the same way for every chunk of one response. Views of
// strings that outlive the response (the request's id, the model the client named): a stream's
// readers copy the identity, which cost two allocations a request when it held strings.
struct ResponseIdentity {
  // The response's id is `id_prefix` followed by `id_suffix` (the gateway's "chatcmpl-" and the
  // request's id); id() writes it out, which only answers built from a tree need.
  std::string_view id_prefix;
  std::int64_t created = 0;
  std::string_view client_model;
  std::string_view id_suffix;

  std::string id() const {
    std::string whole;
    whole.reserve(id_prefix.size() + id_suffix.size());
    whole.append(id_prefix).append(id_suffix);
    return whole;
  }
};

// Normalizes a complete (non-streamed) response in place. Returns an error message when the body
// cannot be made valid; the caller answers 502 then.
std::optional<std::string> normalize_response(boost::json::value& body, ApiKind kind,
                                              const ResponseIdentity& identity, Usage& usage);

struct ChunkOutcome {
  // The chunk only carried usage the gateway asked for; it must not reach the client.
  bool drop = false;
  bool is_error = false;  // the provider streamed an error object
};
// Normalizes one streamed chunk in place; `strip_usage` removes usage the client did not ask for.
std::optional<std::string> normalize_stream_chunk(boost::json::value& chunk, ApiKind kind,
                                                  const ResponseIdentity& identity,
                                                  bool strip_usage, Usage& usage,
                                                  ChunkOutcome& outcome);

// A complete (normalized) chat or text completion as the chunks of a stream, for a provider
// that answered a streaming request with a plain body: the client asked for a stream and gets
// one. One chunk per choice carrying the whole message as its delta and its finish reason,
// then the usage chunk when `include_usage` and the response has usage. [DONE] is not included.
std::vector<std::string> stream_chunks_from_response(const boost::json::object& response,
                                                     ApiKind kind, bool include_usage);

// True when a (normalized) stream chunk ends a choice: one of its choices has a finish reason.
bool chunk_finishes(const boost::json::value& chunk);
bool chunk_finishes(const boost::json::object& chunk);

// The usage a response reports, whatever the provider called its fields.
Usage extract_usage(const boost::json::value& usage);

// Maps a provider's finish reason onto OpenAI's set (stop, length, tool_calls, content_filter,
// function_call).
std::string_view normalize_finish_reason(std::string_view reason);

// Builds the body of an error response in OpenAI's schema.
std::string error_body(std::string_view message, std::string_view type, std::string_view code,
                       std::string_view request_id);

// Turns a provider's error body into OpenAI's schema, keeping its message when it has one and
// removing every occurrence of `secret` (providers echo keys back in 401 messages).
std::string normalize_error_body(std::string_view raw, unsigned status, std::string_view secret,
                                 std::string_view request_id);

// Removes every occurrence of `secret` from `text`.
void redact(std::string& text, std::string_view secret);

}  // namespace cutover::providers
