// The migration engine: runs every migration's controller on a thread of its own, evaluates the
// gates on a timer (at most every second, 250 ms by default), publishes weights to the workers
// only after the transition is journaled, stores shadow pairs in batches, and posts transitions
// to webhooks. Workers never wait for it; the admin API talks to it through a queue.
//
// Fleet mode (a Redis state store): every replica reads each migration's record every evaluation
// and publishes its weight; only the replica holding the leader's lease (renewed about every
// second on this thread) evaluates the gates, and its transitions commit only while its fencing
// term is the leader's. Operators' commands commit from any replica by compare-and-set. When Redis
// cannot be reached a replica keeps the last weight it knew, never advances, and only moves
// toward the primary (a local breach drops its own candidate share to 0); a replica that starts
// while Redis is down serves the primary only until it can read the record.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config/config.h"
#include "migration/controller.h"
#include "migration/runtime.h"
#include "observability/metrics.h"
#include "store/redis_state_store.h"
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

  // What a provider's endpoints report of their rate limits, summed (capacity.h); none when the
  // provider is unknown.
  using QuotaSource = std::function<std::optional<CandidateQuota>(const std::string& provider)>;
  // The capacity gate's view of each candidate's quota. Set before start(); without one the
  // capacity gate is not applicable.
  void set_quota_source(QuotaSource source) { quota_source_ = std::move(source); }

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
  // The weight the workers route a migration by right now (it differs from the record's while a
  // replica without its store holds a local breach).
  double routed_weight(const std::string& name) const;

  // Fleet mode: whether this replica holds the leader's lease, how many gate evaluations it ran
  // as leader, and whether its shared store answered last. Safe from any thread.
  bool leading() const { return leading_.load(); }
  std::uint64_t evaluations() const { return evaluations_.load(); }
  bool store_up() const { return store_up_.load(); }

 private:
  struct Migration;
  void build(std::shared_ptr<const config::Config> config);
  void schedule(Migration& migration);
  // Moves the pairs the workers finished into the window and the write queue.
  void take_pairs(Migration& migration);
  void tick(Migration& migration);
  // Fleet mode: reads the shared record and publishes its weight when another replica moved it.
  // Returns false when the store cannot be read.
  bool follow(Migration& migration);
  // Loads or creates the migration's record and publishes its weight; with a shared store that
  // cannot be read, the migration serves the primary only and is resumed on a later tick.
  void resume(Migration& migration);
  void renew_lease();
  void schedule_lease();
  bool holds_lease() const;
  void after_transition(Migration& migration, const store::Transition& transition);
  // Fleet mode: writes this replica's window to the store, then reads every replica's and
  // merges them, the figures the gates judge. Nullopt when the store cannot be reached.
  std::optional<WindowSnapshot> fleet_window(Migration& migration, const WindowSnapshot& local);
  // Logs and posts to the webhooks, once per generation, that a ready stage holds for capacity.
  void announce_capacity_hold(Migration& migration);
  void flush_pairs();
  boost::json::object series_point(Migration& migration, const WindowSnapshot& window,
                                   std::int64_t now);
  template <typename Function>
  auto on_engine(Function function) -> decltype(function());

  std::shared_ptr<const config::Config> config_;
  QuotaSource quota_source_;
  unsigned worker_count_;
  std::unique_ptr<store::StateStore> store_;
  // The same object as store_ in fleet mode, else null.
  store::RedisStateStore* shared_ = nullptr;
  std::optional<std::int64_t> term_;
  std::chrono::steady_clock::time_point lease_valid_until_{};
  std::string leader_;  // "<replica>|<term>" as last read
  // The replicas that contributed lately, as of the last lease renewal.
  std::vector<store::RedisStateStore::Heartbeat> heartbeats_;
  std::atomic<bool> leading_{false};
  std::atomic<std::uint64_t> evaluations_{0};
  std::atomic<bool> store_up_{true};
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
  std::unique_ptr<boost::asio::steady_timer> lease_timer_;
  // Set by stop() on the caller's thread, read by the timers on the engine's.
  std::atomic<bool> stopped_{false};
};

}  // namespace cutover::migration
