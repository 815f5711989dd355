// Migration webhooks: every state transition is POSTed as a JSON message (Slack-compatible, the
// controller builds the body) to each configured URL, without ever blocking the controller.
//
// notify() only queues. Delivery runs as one coroutine per target on a strand of the executor it
// is given (the controller's io_context), so a slow or dead target delays nobody else. A 2xx
// delivers a message; 429, 5xx, connect errors and timeouts are retried with capped exponential
// backoff and full jitter (a Retry-After in seconds is honoured up to 30 s); any other answer
// fails the message at once. Logs name a target by host only: the path or query of a webhook URL
// and its extra headers may carry secrets.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/executor.h"

namespace cutover::migration {

struct WebhookTarget {
  std::string url;                          // http:// or https://
  std::chrono::milliseconds timeout{5000};  // per attempt, from connect to response header
  unsigned max_attempts = 5;                // 0 is taken as 1
  // Extra request headers (e.g. authorization); they may override the defaults.
  std::vector<std::pair<std::string, std::string>> headers;
};

struct WebhookStats {
  std::uint64_t delivered = 0;  // messages a target accepted with a 2xx
  std::uint64_t failed = 0;     // messages given up: a final 4xx or max_attempts exhausted
  std::uint64_t dropped = 0;    // messages pushed out of a full queue before being tried
  std::uint64_t attempts = 0;   // HTTP attempts, retries included
};

// Why `url` cannot be a webhook target (not absolute, not http or https, no host, a bad port, or
// userinfo, which belongs in a header), or nullopt when it can.
std::optional<std::string> validate_webhook_url(std::string_view url);

class WebhookNotifier {
 public:
  // Each target holds at most this many undelivered messages, the one being delivered included.
  static constexpr std::size_t kMaxUndelivered = 256;

  // Starts one delivery coroutine per target on `executor`, which must outlive this object. The
  // backoff before retry n is uniform in [0, min(base_backoff * 2^(n-1), 30 * base_backoff)].
  // https targets verify the peer against the system store, or `ca_file` when given. Throws
  // std::invalid_argument for an invalid URL or header (configuration is checked at startup).
  WebhookNotifier(Executor executor, std::vector<WebhookTarget> targets,
                  std::chrono::milliseconds base_backoff = std::chrono::milliseconds(500),
                  std::optional<std::string> ca_file = std::nullopt);
  // Calls stop(). Delivery coroutines still pending keep their own state alive and end as soon
  // as the executor runs them.
  ~WebhookNotifier();
  WebhookNotifier(const WebhookNotifier&) = delete;
  WebhookNotifier& operator=(const WebhookNotifier&) = delete;

  // Queues `json_body` for every target; never blocks and never does I/O, so any thread may call
  // it, the executor's own included. A full queue drops its oldest waiting message (counted in
  // `dropped`); the message already being delivered is kept. Ignored after stop().
  void notify(std::string json_body);

  // Counters over all targets; any thread.
  WebhookStats stats() const;

  // Cancels waits, backoffs and deliveries in flight and discards queued messages; the delivery
  // coroutines then end, so the executor's run() can return. Any thread; idempotent.
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace cutover::migration
