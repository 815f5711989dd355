// A simulated OpenAI-compatible provider: answers chat completions, completions and embeddings,
// plain and streamed, with programmable latency, status codes, schema quirks and faults
// (resets, malformed bodies, stalls). Backs `cutover simulate provider`, the demo and the
// integration tests, which script each reply with a function.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace cutover::simulate {

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
  truncate_stream,        // stream events, then end without [DONE]
  malformed_body,         // 200 with a body that is not JSON (or events that are not JSON)
  invalid_http,           // bytes that are not an HTTP response
};

// Relay-style deviations seen in the wild from "OpenAI-compatible" providers.
struct Quirks {
  bool eos_finish_reason = false;      // finish_reason "eos" instead of "stop"
  bool generated_tokens = false;       // usage.generated_tokens instead of completion_tokens
  bool omit_identity = false;          // no id, object, created, system_fingerprint
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
  std::chrono::milliseconds event_interval{0};
  Quirks quirks;
  std::string content;  // the answer's text; generated from the prompt when empty
  // Close the connection after answering while the response still announced keep-alive, as
  // providers' load balancers do with idle connections.
  bool close_after = false;
  // How a streamed answer is framed: chunked (the usual), one body announced by Content-Length
  // (relays behind a buffering proxy), or ended by closing the connection.
  enum class Framing { chunked, content_length, close_delimited };
  Framing framing = Framing::chunked;
  // Line ending of the SSE lines ("\r\n" as some servers write them).
  std::string line_end = "\n";
  // The last event ends with its line break only, without the blank line.
  bool omit_final_blank_line = false;
  // A plain JSON answer even when the request asked for a stream.
  bool plain_answer_to_stream = false;
};

using Script = std::function<FakeReply(const FakeRequest&)>;

// The answer the simulator gives by default: text derived from the prompt, usage counted in
// words, the model echoed back.
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
  double error_rate = 0;       // share of requests answered 500
  double rate_limit_rate = 0;  // share answered 429 with Retry-After
  Quirks quirks;
  std::string required_key;  // when set, other keys get 401
  // The provider's own model names; others get 404 model_not_found. Empty serves any name.
  std::vector<std::string> models;
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
  friend struct Impl;
};

}  // namespace cutover::simulate
