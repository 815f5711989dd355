// The running gateway: one worker thread per core, each with its own io_context, listener,
// connection pools and access-log buffer, so the request path shares no lock between workers.
//
// Reload and drain are driven from a control thread (the one that owns GatewayServer).
#pragma once

#include <atomic>
#include <mutex>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "http/server.h"
#include "accounting/usage_ledger.h"
#include "migration/engine.h"
#include "observability/metrics.h"
#include "proxy/provider_health.h"

namespace cutover::runtime {

class GatewayServer {
 public:
  // Binds the listener; throws std::runtime_error with a readable message when it cannot.
  explicit GatewayServer(std::shared_ptr<const config::Config> config);
  ~GatewayServer();
  GatewayServer(const GatewayServer&) = delete;
  GatewayServer& operator=(const GatewayServer&) = delete;

  void start();
  std::uint16_t port() const { return port_; }
  // The admin listener's port; 0 when the configuration has no admin section.
  std::uint16_t admin_port() const { return admin_port_; }
  unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }

  // Installs a new configuration on every worker; connections stay open. Returns an error
  // message (and keeps the old configuration) when it cannot be applied.
  std::optional<std::string> reload(std::shared_ptr<const config::Config> config);

  // Stops accepting, lets in-flight requests (streams included) finish up to `deadline`, then
  // closes what is left and joins the workers. Idempotent.
  void shutdown(std::chrono::milliseconds deadline);

  // Client connections open across all workers, for tests and the drain loop.
  std::size_t open_sessions();

  // The health registry a worker uses, to inspect breakers and budgets (tests, admin API).
  std::shared_ptr<const proxy::HealthRegistry> health() const;
  std::shared_ptr<const config::Config> config() const;
  // The migration engine; null while the configuration has no migrations.
  std::shared_ptr<migration::MigrationEngine> migrations() const;
  // Writes the usage and shadow pairs recorded so far to the state store (they are written
  // every few seconds anyway).
  void flush_usage();
  // The Prometheus text exposition; empty when metrics are off.
  std::string scrape_metrics() const;

 private:
  // The migration engine's view of the candidates' quotas, read from the health registry.
  migration::MigrationEngine::QuotaSource quota_source() const;
  // The fleet's response cache store for `config`: none without Redis or a cached route; the
  // one already open while the Redis it names is the same.
  std::shared_ptr<cache::SharedCacheStore> shared_cache_for(const config::Config& config);

  struct Worker;
  struct ShadowWorker;
  struct AdminServer;
  // Read by the admin thread, replaced by reload(): guarded, never touched on the request path.
  mutable std::mutex state_mutex_;
  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const proxy::HealthRegistry> health_;
  std::shared_ptr<cache::SharedCacheStore> shared_cache_;
  std::string shared_cache_redis_;  // host, port, database and key prefix it was opened for
  std::shared_ptr<migration::MigrationEngine> engine_;
  std::unique_ptr<observability::MetricsRegistry> metrics_;
  std::unique_ptr<accounting::UsageLedger> ledger_;
  std::unique_ptr<AdminServer> admin_;
  std::uint16_t admin_port_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<ShadowWorker> shadow_worker_;
  // Shared by every worker's listener against limits.max_client_connections.
  std::shared_ptr<http::ConnectionCount> client_connections_ =
      std::make_shared<http::ConnectionCount>();
  std::uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace cutover::runtime
