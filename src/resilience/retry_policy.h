// When and how long to wait before trying a request again: which failures retry, exponential
// backoff with full jitter, and the provider's own word on it (Retry-After and the rate-limit
// reset headers). Pure logic; time and randomness come in as arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace cutover::resilience {

using Duration = std::chrono::milliseconds;

// What went wrong with one attempt, as far as retrying is concerned.
enum class AttemptFailure {
  connect_error,   // could not connect (nothing was sent)
  reset,           // connection reset or closed before the response
  timeout,         // connect or first-byte timeout
  rate_limited,    // HTTP 429
  server_error,    // HTTP 5xx; the status says which
  invalid_response,  // 2xx whose body or stream could not be made valid
};

struct RetryPolicy {
  // Attempts per provider, the first included.
  unsigned max_attempts = 3;
  bool retry_connect_error = true;
  bool retry_reset = true;
  bool retry_timeout = true;
  bool retry_rate_limited = true;
  bool retry_invalid_response = false;
  std::set<unsigned> retry_statuses{502, 503, 504};
  Duration backoff_base{25};
  Duration backoff_max{1'000};
  // A provider's Retry-After longer than this is treated as "not now": fail over instead.
  Duration max_retry_after{60'000};

  bool retries(AttemptFailure failure, unsigned status) const;
};

// Full jitter: uniform in [0, min(max, base * 2^retry)]. `uniform01` returns values in [0, 1).
Duration backoff_delay(const RetryPolicy& policy, unsigned retry_number,
                       const std::function<double()>& uniform01);

// The wait a provider asks for, from (in order) retry-after-ms, retry-after (delta-seconds or
// HTTP-date), x-ratelimit-reset-requests and x-ratelimit-reset-tokens ("1s", "6m0s", "250ms").
// `header` looks a header up by lower-case name and returns an empty view when absent.
std::optional<Duration> provider_requested_delay(
    const std::function<std::string_view(std::string_view)>& header,
    std::chrono::system_clock::time_point now);

// Parses Go-style durations as OpenAI sends them: "1s", "6m0s", "1.5s", "20ms", "1h2m".
std::optional<Duration> parse_reset_duration(std::string_view text);

// Parses an RFC 7231 HTTP-date (IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT").
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);

}  // namespace cutover::resilience
