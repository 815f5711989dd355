// Simulated client load for `cutover simulate traffic` and the demo: many users sending plain and
// streamed chat completions through the gateway over keep-alive connections, with a progress
// report every second and a summary of what the clients saw (answers, errors, latency and which
// provider served each answer, from the `x-cutover-provider` response header).
//
// One event loop on the calling thread: `concurrency` coroutines, each owning one connection with
// one request in flight, paced together to `rate` requests per second.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cutover::simulate {

struct TrafficOptions {
  // The gateway's base URL, with or without the trailing /v1 (http only).
  std::string url = "http://127.0.0.1:8080";
  // Further gateways (a fleet's replicas): the clients are spread over `url` and these in turn,
  // each client keeping to one.
  std::vector<std::string> more_urls;
  // Sent as "Authorization: Bearer KEY" (x-api-key for Messages); no header when empty.
  std::string api_key;
  // The clients' API: OpenAI's chat completions, or Anthropic's Messages (as the Anthropic SDK).
  enum class Api { chat, messages };
  Api api = Api::chat;
  std::string model = "gpt-4o";
  unsigned users = 20;       // requests carry x-user-id and `user` "user-1" .. "user-N"
  unsigned concurrency = 8;  // connections, each with at most one request in flight
  double rate = 0;           // requests per second over all connections; 0: as fast as answered
  // Stop sending after this long or this many requests, whichever comes first; with neither,
  // only stop() ends the run.
  std::optional<std::chrono::milliseconds> duration;
  std::optional<std::uint64_t> requests;
  double stream_share = 0.3;                  // share of requests that ask for a stream
  std::chrono::milliseconds timeout{30'000};  // per request, from connect to the last byte
  std::uint64_t seed = 0;                     // 0 picks one at random
};

// The first problem with `options` as a sentence, or nothing when they are usable.
std::optional<std::string> validate(const TrafficOptions& options);

// "250ms", "30s", "2m", "1h" (a bare number is milliseconds); nothing when not a positive
// duration.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// One progress report: totals so far, and the figures of the last interval (about a second), or
// of the whole run in the final report.
struct TrafficProgress {
  bool final = false;
  double elapsed_s = 0;
  std::uint64_t sent = 0;  // requests started
  std::uint64_t ok = 0;
  std::uint64_t errors = 0;
  double interval_rate = 0;    // requests completed per second in the interval
  double interval_p50_ms = 0;  // NaN when none completed in the interval
  double interval_p95_ms = 0;
  std::map<std::string, std::uint64_t> interval_by_provider;  // answers served in the interval

  // "12s  sent 3612  ok 3600  errors 0 | 301 req/s  p50 24 ms  p95 61 ms | primary 90% ..."
  std::string line() const;
};

// What the clients saw over the whole run.
struct TrafficSummary {
  std::uint64_t requests = 0;  // completed: ok + errors (requests abandoned by a second stop()
                               // are in neither)
  std::uint64_t ok = 0;
  // Client-visible errors: a status other than 200, an error event in a stream, a stream that
  // ended before [DONE], a body that is not a completion, or a transport failure or timeout.
  std::uint64_t errors = 0;
  std::uint64_t streamed = 0;
  std::map<std::string, std::uint64_t> by_provider;     // ok answers by x-cutover-provider
  std::map<std::string, std::uint64_t> errors_by_kind;  // "status_502", "sse_error", "timeout", ...
  std::string first_error;  // one example, for the person reading the summary
  // Latency of completed requests, ok or not, as the client waited for them; 0 without any.
  // The JSON has them in whole milliseconds.
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
  double duration_s = 0;

  // {"requests","ok","errors","by_provider","p50_ms","p95_ms","p99_ms","streamed",
  //  "errors_by_kind","duration_ms"}
  boost::json::object to_json() const;
};

class TrafficGenerator {
 public:
  // Called on the run() thread about once a second, and once more at the end (final).
  using ProgressSink = std::function<void(const TrafficProgress&)>;

  // Throws std::invalid_argument when validate(options) finds a problem.
  explicit TrafficGenerator(TrafficOptions options, ProgressSink on_progress = {});
  ~TrafficGenerator();
  TrafficGenerator(const TrafficGenerator&) = delete;
  TrafficGenerator& operator=(const TrafficGenerator&) = delete;

  // Sends the load on the calling thread until the duration or request count is reached, or
  // stop() is called, and every request in flight has finished. Call once.
  TrafficSummary run();

  // Any thread, any time (also before run()). The first call stops sending and lets requests in
  // flight finish; a second one abandons them.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cutover::simulate
