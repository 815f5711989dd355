// The request path: authenticate, route a client model to a provider, rewrite the request for
// it, exchange with the provider, normalize the answer (plain or SSE event by event) and log.
//
// One Gateway per worker thread; it owns that worker's connection pools. A configuration reload
// hands it a new snapshot through apply(); requests in flight keep the snapshot they began with.
#pragma once

#include <boost/asio.hpp>
#include <boost/intrusive/list.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "accounting/usage_ledger.h"
#include "api/front_end.h"
#include "config/config.h"
#include "http/server.h"
#include "migration/runtime.h"
#include "observability/metrics.h"
#include "providers/sse.h"
#include "proxy/access_log.h"
#include "proxy/provider_health.h"
#include "proxy/response_memory.h"
#include "upstream/connection_pool.h"

namespace cutover::providers {
class CanonicalStream;
class PlainAnswer;
class ShapeMemo;
}  // namespace cutover::providers

namespace cutover::proxy {

// TLS contexts per provider name, built once per configuration load and shared by workers.
using TlsContexts = std::map<std::string, std::shared_ptr<boost::asio::ssl::context>>;

class Gateway {
 public:
  // `metrics` may be null (metrics off).
  Gateway(Executor executor, unsigned worker_index, unsigned worker_count, AccessLog& access_log,
          observability::WorkerMetrics* metrics = nullptr);

  // Installs a configuration; call on this worker's thread.
  void apply(std::shared_ptr<const config::Config> config, const TlsContexts& tls,
             std::shared_ptr<const HealthRegistry> health,
             std::shared_ptr<const migration::MigrationRoutes> migrations = nullptr);
  void set_draining() { draining_ = true; }
  // Where usage is recorded; null when no state store keeps it. Call before serving.
  void set_usage_ledger(accounting::UsageLedger* ledger) { ledger_ = ledger; }
  // Where this worker's shadow requests run (another thread's Gateway with its own connections);
  // without one they run on this worker. Call before serving.
  void set_shadow_worker(Gateway* shadow) { shadow_worker_ = shadow; }
  // Cancels every upstream exchange in flight, shadows included (shutdown after the drain
  // deadline).
  void abort_all();
  // Starts watching, for each request waiting on a provider longer than `after`, whether its
  // client has gone. Called periodically by the worker: most answers arrive within
  // milliseconds, and arming a socket watch for every request cost about 8 % of throughput.
  void watch_slow_requests(std::chrono::milliseconds after);

  Awaitable<void> handle(http::IncomingRequest& request, http::Responder& responder);

 private:
  struct Snapshot;
  void log_unproxied(const http::IncomingRequest& request, const http::Responder& responder,
                     std::string_view error);
  struct ProviderRuntime;
  struct EndpointRuntime;
  struct RequestContext;
  struct AttemptOutcome;
  struct RequestOutcome;

  Awaitable<void> proxy(http::IncomingRequest& request, http::Responder& responder,
                        std::shared_ptr<Snapshot> snapshot, api::ClientProtocol protocol,
                        const std::string& client_name);
  // Whether a Messages request may meet a provider that does not speak Messages natively (its
  // route's provider, fallbacks or migration candidate), so it must be decoded.
  static bool route_needs_translation(const Snapshot& snapshot, const boost::json::object& request);
  // POST /v1/messages/count_tokens: a native Anthropic provider counts; nothing else can.
  Awaitable<void> forward_count_tokens(http::IncomingRequest& request, http::Responder& responder,
                                       Snapshot& snapshot);
  Awaitable<AttemptOutcome> attempt(RequestContext& context, ProviderRuntime& provider,
                                    EndpointRuntime& endpoint);
  // The request's body in the provider's dialect; a message naming what the dialect cannot
  // express otherwise.
  static std::optional<std::string> provider_request_body(const RequestContext& context,
                                                          const config::Provider& provider,
                                                          bool ask_usage, std::string& body);
  // Authentication and version headers in the provider's dialect; an Anthropic client's own
  // anthropic-version and anthropic-beta go to an Anthropic provider.
  static void set_provider_headers(upstream::Request& upstream_request,
                                   const config::Provider& provider, const std::string& api_key,
                                   std::string_view anthropic_version,
                                   std::string_view anthropic_beta);
  static AttemptOutcome transport_failure(const http::Responder& responder,
                                          const upstream::UpstreamError& error);
  static AttemptOutcome invalid_response(std::string message);
  Awaitable<AttemptOutcome> refused_answer(RequestContext& context,
                                           const config::Provider& provider,
                                           upstream::Exchange& exchange,
                                           const std::string& api_key);
  Awaitable<AttemptOutcome> deliver_plain(RequestContext& context, ProviderRuntime& provider,
                                          upstream::Exchange& exchange,
                                          const providers::ResponseIdentity& identity,
                                          std::optional<api::AnswerEncoder>& encoder,
                                          const std::string& api_key);
  // deliver_plain()'s answer read into a DOM: a coroutine of its own, so that its 8 KiB of
  // parse memory are not in the frame of every answer spliced in place.
  Awaitable<AttemptOutcome> deliver_plain_tree(RequestContext& context, ProviderRuntime& provider,
                                               upstream::Exchange& exchange,
                                               const providers::ResponseIdentity& identity,
                                               std::optional<api::AnswerEncoder>& encoder,
                                               const std::string& api_key, std::string& body);
  static bool answer_needs_no_tree(const RequestContext& context, const config::Provider& provider,
                                   const std::optional<api::AnswerEncoder>& encoder);
  static void record_first_byte(RequestContext& context, const upstream::Exchange& exchange);
  static void record_usage(RequestContext& context);
  Awaitable<AttemptOutcome> send_plain(RequestContext& context, const config::Provider& provider,
                                       std::string body);
  Awaitable<AttemptOutcome> deliver_stream(RequestContext& context, ProviderRuntime& provider,
                                           upstream::Exchange& exchange,
                                           const providers::ResponseIdentity& identity,
                                           std::optional<api::AnswerEncoder>& encoder,
                                           bool ask_usage, const std::string& api_key);
  // Clears `events`, keeping their data strings in spare_event_data_ for the next events.
  void give_back_event_data(std::vector<providers::SseEvent>& events);
  // A stream's buffers: what a read brought, what goes to the client, the read's events. Kept
  // by the worker between streams (StreamBuffersLease), so a stream does not allocate them.
  struct StreamBuffers {
    std::string raw;
    std::string out;
    std::vector<providers::SseEvent> events;
  };
  class StreamBuffersLease {
   public:
    explicit StreamBuffersLease(std::vector<StreamBuffers>& spares);
    ~StreamBuffersLease();
    StreamBuffersLease(const StreamBuffersLease&) = delete;
    StreamBuffersLease& operator=(const StreamBuffersLease&) = delete;
    StreamBuffers* operator->() { return &buffers_; }

   private:
    std::vector<StreamBuffers>& spares_;
    StreamBuffers buffers_;
  };
  struct Refusal;
  // `now`: the request's latest reading of the steady clock.
  EndpointRuntime* pick_endpoint(ProviderRuntime& provider, RequestContext& context,
                                 Refusal& refusal, bool heed_quotas,
                                 std::chrono::steady_clock::time_point now);
  // For a request's last option, after pick_endpoint found nothing (as `refusal` says): an
  // endpoint past its reported quota, else a short throttle waited out inside the deadline, else
  // the request let through an open breaker as a last resort. A coroutine of its own so that the
  // usual request, whose first pick succeeds, spends no coroutine frame on it.
  Awaitable<EndpointRuntime*> last_resort_endpoint(ProviderRuntime& provider,
                                                   RequestContext& context,
                                                   const resilience::RetryPolicy& policy,
                                                   Refusal& refusal);
  void observe(RequestOutcome& outcome, const http::IncomingRequest& request,
               const http::Responder& responder);
  void observe_migration(RequestOutcome& outcome, const http::Responder& responder,
                         bool client_error);
  void record_cache_saving(const RequestOutcome& outcome, bool client_error);
  static void settle_breaker(resilience::CircuitBreaker& breaker,
                             const resilience::CircuitBreaker::Permit& permit,
                             const AttemptOutcome& outcome, std::chrono::milliseconds elapsed,
                             std::chrono::steady_clock::time_point now);
  static std::string attempt_result(const AttemptOutcome& outcome,
                                    const http::Responder& responder, bool last_resort);
  static boost::beast::http::response<boost::beast::http::string_body> final_answer(
      const std::string& request_id, std::optional<AttemptOutcome>& last_failure,
      const std::optional<Refusal>& final_refusal, const std::vector<std::string>& refusals,
      bool retries_exhausted, std::string& error_name);
  // What a request's headers and the route's migration let the cache do: nothing, answer any
  // request (the opt-in header), or one that declares itself deterministic.
  enum class CacheChoice { bypass, use, if_deterministic };
  static CacheChoice cache_choice(const http::IncomingRequest& request,
                                  const cache::ResponseCache& cache, const Snapshot& snapshot,
                                  std::string_view model);
  // Before an OpenAI client's request is summarized: when its body names (providers::model_hint)
  // a route with a cache that its headers do not bypass, the key and the summary, from the texts
  // that cache remembers (no parse) or from one parse for both, so that a request the cache has
  // not seen is parsed once and one it knows not at all. A guess: the gateway uses the key only
  // when the summary's model is the hinted one (the summary is the body's own either way).
  struct EarlyCacheKey {
    // The route's cache, when the guess was right; null otherwise (then key is empty too).
    std::shared_ptr<cache::ResponseCache> cache;
    CacheChoice choice = CacheChoice::if_deterministic;
    std::optional<cache::RequestKey> key;
    bool unknown_text = false;  // as request_key_of sets it
    std::optional<providers::RequestSummary> summary;
  };
  static EarlyCacheKey early_cache_key(const http::IncomingRequest& request,
                                       const Snapshot& snapshot, std::string_view route,
                                       const std::string& client_name, providers::ApiKind kind,
                                       providers::RequestShape& shape);
  // The request's cache key, or none when its body is not an object; `unknown_text` is set when
  // the key of an OpenAI client's exact text (cache_text_of) was written, not remembered (to
  // remember once the key is used).
  static std::optional<cache::RequestKey> request_key_of(cache::ResponseCache& cache,
                                                         RequestContext& context,
                                                         bool openai_client,
                                                         std::string_view tenant,
                                                         bool& unknown_text);
  static cache::RequestText cache_text_of(const RequestContext& context, std::string_view tenant);
  static cache::CachedAnswer cached_answer(std::string body, const RequestContext& context,
                                           const config::Provider& provider,
                                           std::string_view provider_model);
  Awaitable<void> serve_cached(http::Responder& responder, const cache::CachedAnswer& answer);
  Awaitable<AttemptOutcome> deliver_as_stream(RequestContext& context, ProviderRuntime& provider,
                                              const boost::json::object& response,
                                              std::optional<api::AnswerEncoder>& encoder);
  struct ShadowLaunch;
  void launch_shadow(RequestContext& context, const std::shared_ptr<Snapshot>& snapshot,
                     RequestOutcome& outcome);
  Awaitable<void> run_shadow(std::shared_ptr<Snapshot> snapshot,
                             std::shared_ptr<ShadowLaunch> launch);
  Awaitable<void> list_models(http::IncomingRequest& request, http::Responder& responder,
                              const Snapshot& snapshot);
  const std::string* authenticate(const http::IncomingRequest& request,
                                  const Snapshot& snapshot) const;

  Executor executor_;
  unsigned worker_index_;
  unsigned worker_count_;
  AccessLog& access_log_;
  observability::WorkerMetrics* metrics_;
  accounting::UsageLedger* ledger_ = nullptr;
  Gateway* shadow_worker_ = nullptr;
  std::shared_ptr<Snapshot> snapshot_;
  bool draining_ = false;
  std::size_t max_response_bytes_ = 64 * 1024 * 1024;
  static ResponseMemory& response_memory() { return process_response_memory(); }
  // An exchange under way, linked into in_flight_ or shadows_in_flight_ by the attempt that owns
  // it and unlinked when that attempt's frame ends: no allocation and no hashing a request.
  struct InFlight : boost::intrusive::list_base_hook<
                        boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
    InFlight(upstream::Exchange& exchange, http::Responder* responder,
             std::chrono::steady_clock::time_point since)
        : exchange(&exchange), responder(responder), since(since) {}
    upstream::Exchange* exchange;
    http::Responder* responder;  // null for a shadow exchange, which no client waits for
    std::chrono::steady_clock::time_point since;
  };
  using InFlightList =
      boost::intrusive::list<InFlight, boost::intrusive::constant_time_size<false>>;
  InFlightList in_flight_;
  // Shadow exchanges are not tied to a client: only shutdown cancels them.
  InFlightList shadows_in_flight_;
  // Streamed events' data strings, read and given back, for the next events to fill
  // (SseParser::take_data_strings_from): an allocation an event spared.
  std::vector<std::string> spare_event_data_;
  std::vector<StreamBuffers> spare_stream_buffers_;
};

}  // namespace cutover::proxy
