// The migration engine: runs every migration's controller on a thread of its own, evaluates the
// gates on a timer (at most every second, 250 ms by default), publishes weights to the workers
// only after the transition is journaled, stores shadow pairs in batches, and posts transitions
// to webhooks. Workers never wait for it; the admin API talks to it through a queue.
#pragma once

#include <atomic>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.h"
#include "migration/controller.h"
#include "migration/runtime.h"
#include "observability/metrics.h"
#include "store/state_store.h"

namespace cutover::migration {

class WebhookNotifier;

struct AdminReply {
  unsigned status = 200;
  boost::json::value body;
};

class MigrationEngine {
 public:
  // Opens the state store named by the configuration. Throws std::runtime_error when it cannot
  // be opened or a migration's state cannot be written.
  MigrationEngine(std::shared_ptr<const config::Config> config, unsigned worker_count);
  ~MigrationEngine();
  MigrationEngine(const MigrationEngine&) = delete;
  MigrationEngine& operator=(const MigrationEngine&) = delete;

  // Resumes or creates every migration, publishes its weight and starts evaluating.
  void start();
  // Takes a reloaded configuration: migrations are rebuilt from it and resumed from the store
  // (a changed candidate restarts its migration there).
  void reload(std::shared_ptr<const config::Config> config);
  void stop();

  // What workers route by; replaced on reload.
  std::shared_ptr<const MigrationRoutes> routes() const;

  // Admin operations, safe from any thread; they run on the engine's thread.
  AdminReply list();
  AdminReply status(const std::string& name);
  AdminReply history(const std::string& name, std::size_t limit);
  AdminReply shadow_summary(const std::string& name);
  // One point a second of the gates' window (weight, errors, latency, agreement), newest hour.
  AdminReply series(const std::string& name, std::int64_t since_unix_ms);
  // Monthly cost at 100 % candidate against today, from shadow pairs and live volume.
  AdminReply projection(const std::string& name);
  AdminReply command(const std::string& name, const Command& command);

  // Weight, phase, shadow pairs, drops and agreement of every migration, for /metrics.
  std::vector<observability::ExtraFamily> metric_families();

  // Writes the shadow pairs received so far to the store (done every evaluation anyway).
  void flush();

  // For tests and the demo: a migration's phase and weight right now.
  std::pair<Phase, double> phase_of(const std::string& name);

 private:
  struct Migration;
  void build(std::shared_ptr<const config::Config> config);
  void schedule(Migration& migration);
  // Moves the pairs the workers finished into the window and the write queue.
  void take_pairs(Migration& migration);
  void tick(Migration& migration);
  void after_transition(Migration& migration, const store::Transition& transition);
  void flush_pairs();
  boost::json::object series_point(Migration& migration, const WindowSnapshot& window,
                                   std::int64_t now);
  template <typename Function>
  auto on_engine(Function function) -> decltype(function());

  std::shared_ptr<const config::Config> config_;
  unsigned worker_count_;
  std::unique_ptr<store::StateStore> store_;
  // Shadow pair counts and agreement scores survive window resets: they are counters.
  boost::asio::io_context context_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
  // Owned and touched by the engine thread only.
  std::map<std::string, std::unique_ptr<Migration>> migrations_;
  std::vector<store::ShadowPair> pending_pairs_;
  std::int64_t last_pairs_flush_ms_ = 0;
  mutable std::mutex routes_mutex_;
  std::shared_ptr<const MigrationRoutes> routes_;
  bool started_ = false;
  // Set by stop() on the caller's thread, read by the timers on the engine's.
  std::atomic<bool> stopped_{false};
};

}  // namespace cutover::migration
