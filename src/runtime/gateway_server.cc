#include "runtime/gateway_server.h"

#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <algorithm>
#include <cerrno>
#include <future>
#include <stdexcept>

#include "admin/admin_api.h"
#include "api/front_end.h"
#include "http/server.h"
#include "proxy/access_log.h"
#include "proxy/gateway.h"
#include "upstream/connection_pool.h"
#include "util/thread_name.h"

namespace cutover::runtime {

namespace asio = boost::asio;

namespace {
constexpr auto kAccessLogFlushInterval = std::chrono::milliseconds(200);
// A client that leaves is noticed within twice this; faster requests never pay for the watch.
constexpr auto kDisconnectWatchAfter = std::chrono::milliseconds(50);

std::shared_ptr<const http::ServerLimits> limits_from(const config::Config& config) {
  auto limits = std::make_shared<http::ServerLimits>();
  limits->max_body_bytes = config.max_body_bytes;
  limits->request_timeout = config.request_timeout;
  limits->keep_alive_timeout = config.keep_alive_timeout;
  limits->max_connections = config.max_client_connections;
  return limits;
}

proxy::TlsContexts build_tls_contexts(const config::Config& config) {
  proxy::TlsContexts contexts;
  for (const auto& provider : config.providers) {
    const bool any_tls = std::any_of(provider.endpoints.begin(), provider.endpoints.end(),
                                     [](const auto& endpoint) { return endpoint.address.tls; });
    if (!any_tls) continue;
    try {
      contexts[provider.name] = upstream::make_tls_context(provider.ca_file);
    } catch (const std::exception& e) {
      throw std::runtime_error("provider '" + provider.name + "': cannot set up TLS: " + e.what());
    }
  }
  return contexts;
}

// How much nicer than the workers the shadow thread runs: live requests take the CPU from it
// whenever both are runnable, so mirroring never queues a client's request behind a shadow's
// work. CFS weighs nice +10 at about a tenth; it still gets any idle CPU. Relative, so a service
// started at another nice value keeps the gap (and never asks to raise a priority).
constexpr int kShadowThreadNiceIncrement = 10;

// Runs an event loop until it runs out of work; an exception that escapes a handler is logged
// and the loop goes on, so one bad request cannot stop a thread that serves thousands.
void run_loop(asio::io_context& context, const char* name) {
  for (;;) {
    try {
      context.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("{} loop caught an unexpected exception: {}", name, e.what());
    }
  }
}

// Runs `function` on the worker's thread and waits for its result.
template <typename Function>
auto run_on(asio::io_context& context, Function function) {
  auto task = std::make_shared<std::packaged_task<decltype(function())()>>(std::move(function));
  auto future = task->get_future();
  asio::post(context, [task] { (*task)(); });
  return future.get();
}
}  // namespace

struct GatewayServer::Worker {
  Worker(const config::Config& config, unsigned index, unsigned worker_count,
         const asio::ip::tcp::endpoint& at, observability::WorkerMetrics* metrics,
         std::shared_ptr<http::ConnectionCount> connections)
      // Each worker's sockets are used from its own thread only, so the reactor needs no
      // locking; posts from the control thread (reload, drain) stay safe.
      : context(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
        guard(asio::make_work_guard(context)),
        access_log(config.access_log),
        gateway(context.get_executor(), index, worker_count, access_log, metrics),
        listener(context, at,
                 [this](http::IncomingRequest& request, http::Responder& responder) {
                   return gateway.handle(request, responder);
                 },
                 limits_from(config), std::move(connections)),
        flush_timer(context),
        watch_timer(context) {
    listener.set_error_format_for_target(&api::error_format_for);
  }

  void schedule_flush() {
    flush_timer.expires_after(kAccessLogFlushInterval);
    flush_timer.async_wait([this](boost::system::error_code ec) {
      access_log.flush();
      // `stopping`, not only the error code: an expiry already queued when shutdown cancels the
      // timer completes without error and would otherwise keep the loop alive forever.
      if (!ec && !stopping) schedule_flush();
    });
  }

  void schedule_disconnect_watch() {
    watch_timer.expires_after(kDisconnectWatchAfter);
    watch_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping) return;
      gateway.watch_slow_requests(kDisconnectWatchAfter);
      schedule_disconnect_watch();
    });
  }

  asio::io_context context;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  proxy::AccessLog access_log;
  proxy::Gateway gateway;
  http::Listener listener;
  asio::steady_timer flush_timer;
  asio::steady_timer watch_timer;
  bool stopping = false;
  std::thread thread;
};

// Shadow requests run here, on one thread of their own at a lower priority, with their own
// upstream connections: a worker only decides to mirror a request and posts it over.
struct GatewayServer::ShadowWorker {
  ShadowWorker(unsigned index, unsigned pool_shares, observability::WorkerMetrics* metrics)
      : context(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
        guard(asio::make_work_guard(context)),
        access_log("off"),
        gateway(context.get_executor(), index, pool_shares, access_log, metrics) {}

  asio::io_context context;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  proxy::AccessLog access_log;
  proxy::Gateway gateway;
  std::thread thread;
};

// The admin listener runs on a thread of its own, away from the workers' event loops.
struct GatewayServer::AdminServer {
  AdminServer(GatewayServer& server, const asio::ip::tcp::endpoint& at)
      : context(1),
        guard(asio::make_work_guard(context)),
        api([&server] { return server.config(); }, [&server] { return server.health(); },
            [&server] { return server.migrations(); }, [&server] { return server.scrape_metrics(); }),
        listener(context, at,
                 [this](http::IncomingRequest& request, http::Responder& responder) {
                   return api.handle(request, responder);
                 },
                 std::make_shared<http::ServerLimits>()) {}

  asio::io_context context;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  admin::AdminApi api;
  http::Listener listener;
  std::thread thread;
};

std::shared_ptr<const proxy::HealthRegistry> GatewayServer::health() const {
  std::lock_guard lock(state_mutex_);
  return health_;
}

std::shared_ptr<cache::SharedCacheStore> GatewayServer::shared_cache_for(const config::Config& config) {
  const bool cached = std::any_of(config.routes.begin(), config.routes.end(),
                                  [](const auto& route) { return route.second.cache.has_value(); });
  if (!config.redis || !cached) return nullptr;
  const auto& redis = *config.redis;
  auto identity = fmt::format("{}:{}/{} {}", redis.host, redis.port, redis.database, redis.key_prefix);
  if (!shared_cache_ || identity != shared_cache_redis_) {
    shared_cache_ = std::make_shared<cache::SharedCacheStore>(redis);
    shared_cache_redis_ = std::move(identity);
  }
  return shared_cache_;
}

migration::MigrationEngine::QuotaSource GatewayServer::quota_source() const {
  return [this](const std::string& provider) -> std::optional<migration::CandidateQuota> {
    // The registry in force now: a reload replaces it, keeping the quotas of unchanged endpoints.
    const auto health = this->health();
    const auto& providers = health->providers();
    const auto found = providers.find(provider);
    if (found == providers.end()) return std::nullopt;
    const auto now = std::chrono::steady_clock::now();
    std::vector<resilience::QuotaState::Snapshot> endpoints;
    for (const auto& quota : found->second.quotas) endpoints.push_back(quota->snapshot(now));
    return migration::sum_endpoint_quotas(endpoints);
  };
}

std::shared_ptr<migration::MigrationEngine> GatewayServer::migrations() const {
  std::lock_guard lock(state_mutex_);
  return engine_;
}

void GatewayServer::flush_usage() {
  if (ledger_) ledger_->flush();
  if (auto engine = migrations()) engine->flush();
}

std::string GatewayServer::scrape_metrics() const {
  if (!metrics_) return {};
  using observability::ExtraFamily;
  using observability::Sample;
  const auto config = this->config();
  const auto health = this->health();
  const auto now = std::chrono::steady_clock::now();
  ExtraFamily breaker_state{"cutover_circuit_breaker_state",
                            "1 for the state each provider endpoint's breaker is in",
                            prometheus::MetricType::Gauge, {}};
  ExtraFamily breaker_trips{"cutover_circuit_breaker_trips_total", "Times each breaker opened",
                            prometheus::MetricType::Counter, {}};
  ExtraFamily budget_requests{"cutover_retry_budget_window_requests",
                              "Requests in each provider's retry budget window",
                              prometheus::MetricType::Gauge, {}};
  ExtraFamily budget_retries{"cutover_retry_budget_window_retries",
                             "Retries in each provider's retry budget window",
                             prometheus::MetricType::Gauge, {}};
  for (const auto& provider : config->providers) {
    const auto& provider_health = health->provider(provider.name);
    for (std::size_t i = 0; i < provider.endpoints.size(); ++i) {
      const auto snapshot = provider_health.breakers[i]->snapshot(now);
      for (auto state : {resilience::BreakerState::closed, resilience::BreakerState::open,
                         resilience::BreakerState::half_open, resilience::BreakerState::forced_open,
                         resilience::BreakerState::disabled}) {
        breaker_state.samples.push_back(
            Sample{{{"provider", provider.name},
                    {"endpoint", std::to_string(i)},
                    {"state", std::string(resilience::state_name(state))}},
                   snapshot.state == state ? 1.0 : 0.0});
      }
      breaker_trips.samples.push_back(
          Sample{{{"provider", provider.name}, {"endpoint", std::to_string(i)}},
                 static_cast<double>(snapshot.trips)});
    }
    const auto totals = provider_health.budget->window_totals(now);
    budget_requests.samples.push_back(Sample{{{"provider", provider.name}}, static_cast<double>(totals.requests)});
    budget_retries.samples.push_back(Sample{{{"provider", provider.name}}, static_cast<double>(totals.retries)});
  }
  ExtraFamily connections_open{"cutover_client_connections",
                               "Client connections open across all workers",
                               prometheus::MetricType::Gauge,
                               {Sample{{}, static_cast<double>(client_connections_->open())}}};
  ExtraFamily connections_refused{
      "cutover_client_connections_refused_total",
      "Client connections answered 503 because limits.max_client_connections were open",
      prometheus::MetricType::Counter,
      {Sample{{}, static_cast<double>(client_connections_->refused())}}};
  ExtraFamily quota_remaining{"cutover_provider_quota_remaining",
                              "Requests or tokens an endpoint last reported left before its reset, "
                              "less the requests sent since",
                              prometheus::MetricType::Gauge, {}};
  ExtraFamily quota_exhausted{"cutover_provider_quota_exhausted",
                              "1 while an endpoint reports its quota spent until a reset ahead",
                              prometheus::MetricType::Gauge, {}};
  for (const auto& provider : config->providers) {
    const auto& quotas = health->provider(provider.name).quotas;
    for (std::size_t i = 0; i < quotas.size(); ++i) {
      const auto snapshot = quotas[i]->snapshot(now);
      if (!snapshot.reported) continue;
      const std::string endpoint = std::to_string(i);
      for (const auto& [kind, left] : {std::pair{"requests", snapshot.requests_remaining},
                                       std::pair{"tokens", snapshot.tokens_remaining}}) {
        if (!left) continue;
        quota_remaining.samples.push_back(Sample{
            {{"provider", provider.name}, {"endpoint", endpoint}, {"kind", kind}},
            static_cast<double>(*left)});
      }
      quota_exhausted.samples.push_back(Sample{{{"provider", provider.name}, {"endpoint", endpoint}},
                                               snapshot.exhausted ? 1.0 : 0.0});
    }
  }
  ExtraFamily cache_requests{"cutover_cache_requests_total",
                             "Requests on routes with a response cache, by result (hit, miss, bypass)",
                             prometheus::MetricType::Counter, {}};
  ExtraFamily cache_entries{"cutover_cache_entries", "Answers held by each model's response cache",
                            prometheus::MetricType::Gauge, {}};
  ExtraFamily cache_bytes{"cutover_cache_bytes",
                          "Bytes of the answers and keys each model's response cache holds",
                          prometheus::MetricType::Gauge, {}};
  ExtraFamily cache_evictions{"cutover_cache_evictions_total",
                              "Answers evicted to stay within max_entries and max_bytes (in a "
                              "fleet: those this replica's answers evicted from Redis)",
                              prometheus::MetricType::Counter, {}};
  ExtraFamily cache_saved_tokens{"cutover_cache_saved_tokens_total",
                                 "Tokens that cache hits did not send to a provider",
                                 prometheus::MetricType::Counter, {}};
  ExtraFamily cache_saved_cost{"cutover_cache_saved_cost_total",
                               "Cost of the answers served from the cache instead of a provider",
                               prometheus::MetricType::Counter, {}};
  for (const auto& [model, cache] : health->caches()) {
    const auto stats = cache->stats();
    for (const auto& [result, count] : {std::pair<const char*, std::uint64_t>{"hit", stats.hits},
                                        {"miss", stats.misses},
                                        {"bypass", stats.bypasses}}) {
      cache_requests.samples.push_back(
          Sample{{{"model", model}, {"result", result}}, static_cast<double>(count)});
    }
    cache_entries.samples.push_back(Sample{{{"model", model}}, static_cast<double>(stats.entries)});
    cache_bytes.samples.push_back(Sample{{{"model", model}}, static_cast<double>(stats.bytes)});
    cache_evictions.samples.push_back(
        Sample{{{"model", model}}, static_cast<double>(stats.evictions)});
    cache_saved_tokens.samples.push_back(
        Sample{{{"model", model}}, static_cast<double>(stats.tokens_saved)});
    cache_saved_cost.samples.push_back(Sample{{{"model", model}}, stats.cost_saved});
  }
  std::vector<ExtraFamily> extra{std::move(breaker_state),    std::move(breaker_trips),
                                 std::move(budget_requests),  std::move(budget_retries),
                                 std::move(connections_open), std::move(connections_refused),
                                 std::move(cache_requests),   std::move(cache_entries),
                                 std::move(cache_bytes),      std::move(cache_evictions),
                                 std::move(cache_saved_tokens), std::move(cache_saved_cost),
                                 std::move(quota_remaining),  std::move(quota_exhausted)};
  if (auto engine = migrations()) {
    for (auto& family : engine->metric_families()) extra.push_back(std::move(family));
  }
  return metrics_->scrape(extra);
}

std::shared_ptr<const config::Config> GatewayServer::config() const {
  std::lock_guard lock(state_mutex_);
  return config_;
}

GatewayServer::GatewayServer(std::shared_ptr<const config::Config> config)
    : config_(std::move(config)) {
  unsigned count = config_->workers;
  if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(config_->listen.address, ec);
  if (ec) throw std::runtime_error("listen address '" + config_->listen.address + "' is invalid");
  asio::ip::tcp::endpoint endpoint(address, config_->listen.port);
  const auto tls = build_tls_contexts(*config_);
  health_ = proxy::HealthRegistry::build(*config_, nullptr, shared_cache_for(*config_));
  if (!config_->migrations.empty()) {
    engine_ = std::make_shared<migration::MigrationEngine>(config_, count);
    engine_->set_quota_source(quota_source());
  }
  // Shard `count` of the metrics and the usage ledger is the shadow thread's.
  if (config_->metrics) metrics_ = std::make_unique<observability::MetricsRegistry>(count + 1);
  if (config_->uses_state_store_file()) {
    try {
      ledger_ = std::make_unique<accounting::UsageLedger>(config_->state_store, count + 1);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("usage ledger: ") + e.what());
    }
  }
  // The workers share each provider's max_connections; the shadow thread, which only ever
  // connects to candidates, has one worker's share of its own on top, so mirroring never takes
  // connections from live requests.
  const unsigned pool_shares = count;
  shadow_worker_ = std::make_unique<ShadowWorker>(count, pool_shares,
                                                  metrics_ ? &metrics_->worker(count) : nullptr);
  shadow_worker_->gateway.apply(config_, tls, health_, engine_ ? engine_->routes() : nullptr);
  shadow_worker_->gateway.set_usage_ledger(ledger_.get());
  for (unsigned i = 0; i < count; ++i) {
    try {
      workers_.push_back(std::make_unique<Worker>(*config_, i, pool_shares, endpoint,
                                                  metrics_ ? &metrics_->worker(i) : nullptr,
                                                  client_connections_));
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("cannot listen on " + config_->listen.address + ":" +
                               std::to_string(endpoint.port()) + ": " + e.code().message());
    }
    // With port 0 the first worker gets an ephemeral port; the others must share it.
    endpoint.port(workers_.front()->listener.local_endpoint().port());
    workers_.back()->gateway.apply(config_, tls, health_, engine_ ? engine_->routes() : nullptr);
    workers_.back()->gateway.set_usage_ledger(ledger_.get());
    workers_.back()->gateway.set_shadow_worker(&shadow_worker_->gateway);
  }
  port_ = endpoint.port();
  if (config_->admin) {
    const auto& listen = config_->admin->listen;
    const auto admin_address = asio::ip::make_address(listen.address, ec);
    if (ec) throw std::runtime_error("admin listen address '" + listen.address + "' is invalid");
    try {
      admin_ = std::make_unique<AdminServer>(*this, asio::ip::tcp::endpoint(admin_address, listen.port));
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("cannot listen for the admin API on " + listen.address + ":" +
                               std::to_string(listen.port) + ": " + e.code().message());
    }
    admin_port_ = admin_->listener.local_endpoint().port();
  }
}

GatewayServer::~GatewayServer() { shutdown(std::chrono::milliseconds(0)); }

void GatewayServer::start() {
  // Weights are resumed from the store before the first request is accepted.
  if (engine_) engine_->start();
  if (admin_) {
    admin_->listener.start();
    admin_->thread = std::thread([context = &admin_->context] {
      util::name_this_thread("cutover-admin");
      context->run();
    });
  }
  shadow_worker_->thread = std::thread([context = &shadow_worker_->context] {
    util::name_this_thread("cutover-shadow");
    const auto self = static_cast<id_t>(::gettid());
    errno = 0;
    const int current = ::getpriority(PRIO_PROCESS, self);
    const int lowered = std::min(19, (errno == 0 ? current : 0) + kShadowThreadNiceIncrement);
    if (::setpriority(PRIO_PROCESS, self, lowered) != 0) {
      spdlog::warn("shadow thread: cannot lower its priority; shadows share the CPU with live requests");
    }
    run_loop(*context, "shadow");
  });
  for (std::size_t index = 0; index < workers_.size(); ++index) {
    auto& worker = workers_[index];
    worker->listener.start();
    worker->schedule_flush();
    worker->schedule_disconnect_watch();
    worker->thread = std::thread([context = &worker->context, index] {
      util::name_this_thread("cutover-w" + std::to_string(index));
      run_loop(*context, "worker");
    });
  }
}

namespace {

// What names the state store: the SQLite file, or the Redis, key prefix and replica of a fleet.
std::string state_store_identity(const config::Config& config) {
  if (!config.redis) return config.state_store;
  const auto& redis = *config.redis;
  return fmt::format("redis {}:{}/{} {} {} {}", redis.host, redis.port, redis.database,
                     redis.key_prefix, redis.replica, config.state_store);
}

}  // namespace

std::optional<std::string> GatewayServer::reload(std::shared_ptr<const config::Config> config) {
  // The journal a migration is judged and committed against cannot change under it: moving a
  // gateway to another store (or into or out of a fleet) is a restart.
  if (state_store_identity(*config) != state_store_identity(*config_)) {
    return std::string("state_store changed; it changes only on restart (the running gateway keeps ") +
           (config_->redis ? config_->redis->display_url : config_->state_store) + ")";
  }
  if (config->listen.address != config_->listen.address ||
      config->listen.port != config_->listen.port || config->workers != config_->workers) {
    spdlog::warn("reload: listen address and workers change only on restart; keeping {}:{}",
                 config_->listen.address, port_);
  }
  proxy::TlsContexts tls;
  try {
    tls = build_tls_contexts(*config);
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
  auto limits = limits_from(*config);
  auto health = proxy::HealthRegistry::build(*config, health_.get(), shared_cache_for(*config));
  auto engine = engine_;
  try {
    if (engine) {
      engine->reload(config);
    } else if (!config->migrations.empty()) {
      engine = std::make_shared<migration::MigrationEngine>(config, worker_count());
      engine->set_quota_source(quota_source());
      engine->start();
    }
  } catch (const std::exception& e) {
    return std::string("migrations: ") + e.what();
  }
  auto routes = engine ? engine->routes() : nullptr;
  // The shadow thread first: a worker on the new configuration may post it a shadow at once.
  if (shadow_worker_->thread.joinable()) {
    run_on(shadow_worker_->context, [&] { shadow_worker_->gateway.apply(config, tls, health, routes); });
  } else {
    shadow_worker_->gateway.apply(config, tls, health, routes);
  }
  for (auto& worker : workers_) {
    run_on(worker->context, [&] {
      worker->gateway.apply(config, tls, health, routes);
      worker->listener.set_limits(limits);
    });
  }
  std::lock_guard lock(state_mutex_);
  config_ = std::move(config);
  health_ = std::move(health);
  engine_ = std::move(engine);
  return std::nullopt;
}

std::size_t GatewayServer::open_sessions() {
  std::size_t total = 0;
  for (auto& worker : workers_) {
    if (worker->context.stopped()) continue;
    total += run_on(worker->context, [&] { return worker->listener.active_sessions(); });
  }
  return total;
}

void GatewayServer::shutdown(std::chrono::milliseconds deadline) {
  if (stopped_) return;
  stopped_ = true;
  const bool running = !workers_.empty() && workers_.front()->thread.joinable();
  if (running) {
    for (auto& worker : workers_) {
      run_on(worker->context, [&] {
        worker->gateway.set_draining();
        worker->listener.drain();
      });
    }
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until && open_sessions() > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (auto left = open_sessions()) {
      spdlog::warn("drain deadline reached with {} connections still open; closing them", left);
    }
  }
  // Unwind every coroutine on its own thread (closing sockets, aborting exchanges) so the
  // contexts run out of work and their threads return; nothing is torn down mid-operation.
  for (auto& worker : workers_) {
    auto close = [&worker] {
      worker->stopping = true;
      worker->listener.close_all();
      worker->gateway.abort_all();
      worker->flush_timer.cancel();
      worker->watch_timer.cancel();
      worker->guard.reset();
    };
    if (running) {
      asio::post(worker->context, close);
    } else {
      close();
    }
  }
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
    worker->access_log.flush();
  }
  // After the workers, which post shadows to it until they stop.
  auto close_shadows = [shadow = shadow_worker_.get()] {
    shadow->gateway.abort_all();
    shadow->guard.reset();
  };
  if (shadow_worker_->thread.joinable()) {
    asio::post(shadow_worker_->context, close_shadows);
    shadow_worker_->thread.join();
  } else {
    close_shadows();
  }
  if (admin_) {
    asio::post(admin_->context, [admin = admin_.get()] {
      admin->listener.close_all();
      admin->guard.reset();
    });
    if (admin_->thread.joinable()) {
      admin_->thread.join();
    } else {
      admin_->listener.close_all();
    }
  }
  // Last: workers (and their shadows) are gone, so no pair is posted to a stopped engine.
  if (engine_) engine_->stop();
  if (ledger_) ledger_->flush();
}

}  // namespace cutover::runtime
