// A simulated provider: answers OpenAI-style chat completions, completions and embeddings, and
// Anthropic Messages (POST .../messages, .../messages/count_tokens), plain and streamed, with
// text or tool calls, programmable latency, status codes, schema quirks and faults (resets,
// malformed bodies, stalls). Backs `cutover simulate provider`, the demo and the integration
// tests, which script each reply with a function.
//
// A FakeProvider answers both APIs, each by its path; a Profile speaks one dialect and answers
// the other's paths 404 in its own error schema, as a real provider would.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cutover::simulate {

// The provider API spoken: OpenAI's (chat completions, completions, embeddings) or Anthropic's
// Messages API.
enum class Dialect { openai, anthropic };
// "openai" or "anthropic"; nullopt for any other name.
std::optional<Dialect> dialect_named(std::string_view name);
std::string_view dialect_name(Dialect dialect);

struct FakeRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  boost::json::value json;  // null when the body is not JSON
  std::size_t connection_id = 0;

  std::string header(std::string_view name) const;
  bool wants_stream() const;
};

enum class Fault {
  none,
  close_before_response,  // read the request, then close without a byte
  reset_before_response,  // read the request, then reset (RST) the connection
  reset_mid_body,         // send the header and part of the body, then reset
  stall_after_first_chunk,  // stream one event, then go silent
  // Stream events, then end without [DONE] (Anthropic: message_stop): a chunked stream by a
  // reset, an unchunked one by ending its framing cleanly there.
  truncate_stream,
  malformed_body,         // 200 with a body that is not JSON (or events that are not JSON)
  invalid_http,           // bytes that are not an HTTP response
};

// Relay-style deviations seen in the wild from "OpenAI-compatible" providers.
struct Quirks {
  bool eos_finish_reason = false;      // finish_reason "eos" instead of "stop"
  bool generated_tokens = false;       // usage.generated_tokens instead of completion_tokens
  bool omit_identity = false;          // no id, object, created, system_fingerprint
};

// One Server-Sent Event. Anthropic names its events (`event: message_start` before the data
// line); OpenAI does not, and an empty name writes the data line alone.
struct SseEvent {
  std::string name;
  std::string data;
};

// A tool call the answer makes: the tool's name and the arguments object it is called with.
struct ToolCall {
  std::string name;
  boost::json::object arguments;
};

struct FakeReply {
  unsigned status = 200;
  std::chrono::milliseconds delay{0};  // before the response header
  Fault fault = Fault::none;
  // Replaces the generated body (for plain replies and error statuses) when set.
  std::optional<std::string> body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Raw SSE data payloads to stream instead of the generated ones ("[DONE]" is not appended).
  std::optional<std::vector<std::string>> events;
  // Events with names (Anthropic's kind) to stream instead of the generated ones; wins over
  // `events`.
  std::optional<std::vector<SseEvent>> named_events;
  std::chrono::milliseconds event_interval{0};
  Quirks quirks;
  std::string content;  // the answer's text; generated from the prompt when empty
  // Tool calls made instead of answering with text (the content is then not sent): chat's
  // message.tool_calls with finish_reason "tool_calls", Anthropic's tool_use blocks with
  // stop_reason "tool_use". Legacy completions and embeddings ignore them.
  std::vector<ToolCall> tool_calls;
  // Close the connection after answering while the response still announced keep-alive, as
  // providers' load balancers do with idle connections.
  bool close_after = false;
  // How a streamed answer is framed: chunked (the usual), one body announced by Content-Length
  // (relays behind a buffering proxy), or ended by closing the connection.
  enum class Framing { chunked, content_length, close_delimited };
  Framing framing = Framing::chunked;
  // Line ending of the SSE lines ("\r\n" as some servers write them), for the two unchunked
  // framings; chunked streams always end lines with "\n".
  std::string line_end = "\n";
  // The last event ends with its line break only, without the blank line.
  bool omit_final_blank_line = false;
  // A plain JSON answer even when the request asked for a stream.
  bool plain_answer_to_stream = false;
  // A plain answer's header is written in two pieces this long apart (a provider whose header
  // takes more than one read to arrive); zero writes the answer at once.
  std::chrono::milliseconds header_pause{0};
};

using Script = std::function<FakeReply(const FakeRequest&)>;

// The answer the simulator gives by default, in the API the request's path belongs to: text
// derived from the prompt, usage counted in words (the prompt's words are its input tokens),
// the model echoed back. Besides:
//  - Tools. When the request declares tools (chat: tools[].function; Anthropic: tools[] with
//    input_schema; Anthropic's server tools have none), tool_choice is not "none" (or
//    {"type":"none"}), and the conversation's last message is not a tool result, the answer
//    calls the FIRST such tool, with arguments built from its JSON schema's
//    `properties`: a string is the first three words of the last user text, an integer or
//    number 1, a boolean true, anything else null.
//  - Tool results. When the last message is a tool result (chat: role "tool"; Anthropic: a user
//    turn holding tool_result blocks), the answer is "Tool said: " + the result's text, so a
//    round trip through a gateway can be checked end to end.
//  - Errors on request. A prompt containing `[simulate:STATUS]` with STATUS from 400 to 599
//    (say `[simulate:529]`) is answered that status with the API's error body: 429
//    rate_limit_error with `retry-after: 1`; 529 Anthropic overloaded_error "Overloaded";
//    other 5xx api_error (Anthropic) or server_error (OpenAI); 4xx the matching client error.
FakeReply default_reply(const FakeRequest& request);

// Named behaviour profiles for `cutover simulate provider --profile NAME`.
struct Profile {
  std::string name = "healthy";
  // Median time to the response header.
  std::chrono::milliseconds latency{20};
  // Uniform: latency ± jitter. Lognormal: latency × e^(σZ) with σ = jitter / latency (at least
  // 0.1), the long tail real providers show.
  enum class Distribution { uniform, lognormal };
  Distribution distribution = Distribution::uniform;
  std::chrono::milliseconds jitter{10};
  std::chrono::milliseconds event_interval{5};
  // The API served; the other API's paths get 404 in this one's error schema.
  Dialect dialect = Dialect::openai;
  double error_rate = 0;       // share of requests answered 500
  double rate_limit_rate = 0;  // share answered 429 with Retry-After
  Quirks quirks;
  // When set, other keys get 401. OpenAI reads it from `Authorization: Bearer`; Anthropic from
  // `x-api-key`, or `Authorization: Bearer` as its OAuth clients send it.
  std::string required_key;
  // The provider's own model names; others get 404 model_not_found. Empty serves any name.
  std::vector<std::string> models;
  // Requests a minute the provider allows, reported on every answer it serves (refusals aside)
  // as OpenAI does: x-ratelimit-limit-requests, x-ratelimit-remaining-requests (falling with
  // each request) and x-ratelimit-reset-requests (to the end of the minute, which starts with
  // the first request). Requests beyond it get 429 with Retry-After until then. 0: no quota.
  std::int64_t quota_requests = 0;
};
std::optional<Profile> profile_named(std::string_view name);
std::vector<std::string> profile_names();
Script profile_script(Profile profile);

// Serves on 127.0.0.1 (or the given address) in its own thread.
class FakeProvider {
 public:
  FakeProvider(Script script, std::uint16_t port = 0, std::string address = "127.0.0.1",
               std::shared_ptr<boost::asio::ssl::context> tls = nullptr, unsigned threads = 1);
  ~FakeProvider();
  FakeProvider(const FakeProvider&) = delete;
  FakeProvider& operator=(const FakeProvider&) = delete;

  std::uint16_t port() const { return port_; }
  std::string base_url() const;
  void set_script(Script script);

  // Stops accepting connections, closes each connection after its answer, and waits (at most
  // `limit`) for the answers in progress to finish, as a provider restarting gracefully does.
  void drain(std::chrono::milliseconds limit);

  std::size_t connections_accepted() const { return connections_; }
  std::size_t requests_received() const { return requests_; }
  std::size_t requests_in_flight() const { return in_flight_; }
  // Requests answered with a complete response (faults and cancelled streams excluded).
  std::size_t requests_completed() const { return completed_; }
  std::vector<FakeRequest> recorded_requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> requests_{0};
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::size_t> completed_{0};
  std::atomic<bool> draining_{false};
  friend struct Impl;
};

}  // namespace cutover::simulate
