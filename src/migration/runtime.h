// The data path's view of a migration: the weight and shadow switch the controller publishes,
// the shards workers record outcomes into, and the shadow limits. Shared by every worker and
// the engine; everything a worker touches per request is an atomic or its own shard.
#pragma once

#include <atomic>
#include <chrono>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "migration/window.h"
#include "store/state_store.h"

namespace cutover::migration {

// Caps on shadow traffic: in-flight requests and spend per rolling hour. Overflow is dropped and
// counted, never queued.
class ShadowLimiter {
 public:
  explicit ShadowLimiter(const config::ShadowSettings& settings) : settings_(settings) {}

  enum class Refusal { none, in_flight, spend };
  // Takes an in-flight slot; release() gives it back when the shadow ends.
  Refusal try_acquire(std::chrono::steady_clock::time_point now);
  void release() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  void add_spend(std::uint64_t tokens, double cost, std::chrono::steady_clock::time_point now);

  std::uint64_t dropped_in_flight() const { return dropped_in_flight_.load(std::memory_order_relaxed); }
  std::uint64_t dropped_spend() const { return dropped_spend_.load(std::memory_order_relaxed); }
  std::uint64_t started() const { return started_.load(std::memory_order_relaxed); }
  std::size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  std::uint64_t tokens_this_hour() const { return hour_tokens_.load(std::memory_order_relaxed); }
  double cost_this_hour() const { return hour_micro_cost_.load(std::memory_order_relaxed) / 1e6; }

 private:
  void roll_hour(std::chrono::steady_clock::time_point now);

  config::ShadowSettings settings_;
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::uint64_t> started_{0};
  std::atomic<std::uint64_t> dropped_in_flight_{0};
  std::atomic<std::uint64_t> dropped_spend_{0};
  std::atomic<std::int64_t> hour_started_ns_{0};
  std::atomic<std::uint64_t> hour_tokens_{0};
  std::atomic<std::uint64_t> hour_micro_cost_{0};
};

// A finished shadow pair on its way to the engine.
struct FinishedPair {
  store::ShadowPair pair;
  PairSample sample;
};

class MigrationRuntime {
 public:
  // Pending pairs each worker keeps for the engine at most: it drains them every evaluation, so
  // only a runtime without an engine reaches this. Beyond it pairs are dropped and counted.
  static constexpr std::size_t kMaxPendingPairsPerWorker = 50'000;

  MigrationRuntime(std::shared_ptr<const config::Config> config, const config::Migration& migration,
                   unsigned worker_count)
      : config_(std::move(config)), migration_(migration), shadow_limiter(migration.shadow) {
    for (unsigned i = 0; i < std::max(1u, worker_count); ++i) {
      shards_.push_back(std::make_unique<StatsShard>());
      pair_shards_.push_back(std::make_unique<PairShard>());
    }
  }

  const config::Migration& settings() const { return migration_; }

  double weight() const { return weight_.load(std::memory_order_acquire); }
  bool shadowing() const { return shadowing_.load(std::memory_order_acquire); }
  std::uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  void record(unsigned worker, const RequestSample& sample) {
    shards_[worker % shards_.size()]->record(sample, epoch());
  }

  // Controller side.
  void publish(double weight, bool shadowing) {
    weight_.store(weight, std::memory_order_release);
    shadowing_.store(shadowing, std::memory_order_release);
  }
  // Starts a new window: the gates judge each stage on its own traffic.
  void next_epoch() { epoch_.fetch_add(1, std::memory_order_acq_rel); }
  WindowSnapshot collect() {
    WindowSnapshot snapshot;
    const auto current = epoch();
    for (auto& shard : shards_) shard->merge_into(snapshot, current);
    return snapshot;
  }

  // Worker side: a finished pair waits in the worker's own shard until the engine's next
  // evaluation takes it. Posting each pair to the engine's thread instead cost a wake-up (an
  // epoll_ctl and often a futex) per shadowed request.
  void record_pair(unsigned worker, store::ShadowPair pair, const PairSample& sample) {
    auto& shard = *pair_shards_[worker % pair_shards_.size()];
    std::lock_guard lock(shard.mutex);
    if (shard.pending.size() >= kMaxPendingPairsPerWorker) {
      pairs_dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    shard.pending.push_back(FinishedPair{std::move(pair), sample});
  }
  // Engine side: every pair recorded since the last call, appended to `out`.
  void take_pairs(std::vector<FinishedPair>& out) {
    for (auto& shard : pair_shards_) {
      std::vector<FinishedPair> taken;
      {
        std::lock_guard lock(shard->mutex);
        taken.swap(shard->pending);
      }
      std::move(taken.begin(), taken.end(), std::back_inserter(out));
    }
  }
  std::uint64_t pairs_dropped() const { return pairs_dropped_.load(std::memory_order_relaxed); }

 private:
  struct PairShard {
    std::mutex mutex;
    std::vector<FinishedPair> pending;
  };

  std::shared_ptr<const config::Config> config_;
  const config::Migration& migration_;
  std::atomic<double> weight_{0};
  std::atomic<bool> shadowing_{false};
  std::atomic<std::uint64_t> epoch_{1};
  std::vector<std::unique_ptr<StatsShard>> shards_;
  std::vector<std::unique_ptr<PairShard>> pair_shards_;
  std::atomic<std::uint64_t> pairs_dropped_{0};

 public:
  ShadowLimiter shadow_limiter;
};

// Migrations by client-facing model, as one worker's snapshot sees them.
using MigrationRoutes = std::map<std::string, std::shared_ptr<MigrationRuntime>, std::less<>>;

}  // namespace cutover::migration
