// The running gateway: one worker thread per core, each with its own io_context, listener,
// connection pools and access-log buffer, so the request path shares no lock between workers.
//
// Reload and drain are driven from a control thread (the one that owns GatewayServer).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
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
  std::shared_ptr<const proxy::HealthRegistry> health() const { return health_; }

 private:
  struct Worker;
  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const proxy::HealthRegistry> health_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace cutover::runtime
