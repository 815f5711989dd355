// An exact-match cache of answers for requests that declare themselves deterministic
// (`temperature: 0`, a `seed`, or the opt-in header), the mitigation for rate limits that a
// migration playbook names beside backoff.
//
// Keyed by a digest of the normalized request (the model as the client named it, every field
// that can change the answer, keys in a canonical order) and, unless the route shares it, the
// client key's name. Holds only complete, successful answers: a plain body, or a stream's events
// as they were sent, replayed as they were. Bounded by entries and bytes (least recently used
// goes first) and by a time to live. Sharded, a small mutex per shard, never held across I/O;
// the clock is injectable.
//
// In a fleet the answers live in the fleet's Redis instead (use_shared, cache/shared_cache.h), so
// every replica serves what one kept; hits, misses and savings are still counted per process.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache_settings.h"
#include "cache/cached_answer.h"
#include "cache/shared_cache.h"

namespace cutover::cache {

// True when the request declares its answer deterministic: temperature 0 or a seed.
bool declares_deterministic(const boost::json::object& body);

// The key of a request: SHA-256 (hex) over the endpoint kind, whether it streams, the tenant
// (empty when shared) and the body's fields that can change the answer, serialized with sorted
// keys. Left out: stream, stream_options, user, metadata, store (they change the form or the
// bookkeeping of an answer, not the answer).
std::string cache_key(const boost::json::object& body, std::string_view kind, bool stream,
                      std::string_view tenant);

class ResponseCache {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ResponseCache(CacheSettings settings, std::function<Clock::time_point()> now = nullptr);

  const CacheSettings& settings() const { return settings_; }

  // Keeps answers in `store`, under `scope` (this cache's name there, e.g. the model), within
  // this cache's settings, instead of in this process. Call before the cache serves: lookup and
  // keep read the backend without a lock.
  void use_shared(std::shared_ptr<SharedCacheStore> store, std::string scope);
  bool is_shared() const { return shared_ != nullptr; }

  // The gateway's entry points, on any thread; the cache must outlive them. They use the shared
  // store when there is one, else this process's shards (then they complete at once).
  // The fresh answer kept under `key`, or null; counts a hit (with what it saved) or a miss.
  // `key` must stay alive until the lookup completes (co_await it at once).
  Awaitable<std::shared_ptr<const CachedAnswer>> lookup(const std::string& key);
  // Keeps a complete answer; one larger than the byte bound is not kept. Fire and forget.
  void keep(std::string key, CachedAnswer answer);
  // Drops every entry, here and in the shared store; how many there were, nullopt when the
  // shared store could not be reached.
  Awaitable<std::optional<std::size_t>> purge_all();
  // The entries and bytes in the shared store; nullopt without one or when it cannot be reached
  // (stats() counts this process's shards only).
  Awaitable<std::optional<SharedCacheStore::Usage>> shared_usage() const;

  // This process's shards only, synchronously.
  // The answer stored under `key` and still fresh; counts a hit or a miss.
  std::shared_ptr<const CachedAnswer> find(std::string_view key);
  // Stores a complete answer; one larger than the byte bound is not kept.
  void store(std::string key, CachedAnswer answer);
  void count_bypass() { bypasses_.fetch_add(1, std::memory_order_relaxed); }
  // Drops every entry; returns how many there were.
  std::size_t purge();

  struct Stats {
    std::uint64_t hits = 0, misses = 0, bypasses = 0, evictions = 0;
    std::uint64_t entries = 0, bytes = 0;
    std::uint64_t tokens_saved = 0;
    double cost_saved = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const CachedAnswer> answer;
    Clock::time_point expires;
    std::size_t bytes = 0;
  };
  // Keys are SHA-256 digests in hex: eight of their characters hash as well as std::hash's pass
  // over all 64. The shards take the first eight, each shard's index the last eight.
  struct KeyHash {
    std::size_t operator()(std::string_view key) const noexcept;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::list<Entry> recency;  // most recently used first
    // Views of the keys their entries hold: one copy of each key. Open addressing: a miss looks
    // a key up, inserts it and evicts another, and a node-based map spent an allocation and three
    // cold cache lines on each (perf of bench/cache.sh's miss run: 1.5 us a miss in the map).
    boost::unordered_flat_map<std::string_view, std::list<Entry>::iterator, KeyHash> index;
    std::size_t bytes = 0;
    std::uint64_t tokens_saved = 0;
    double cost_saved = 0;
  };
  Shard& shard_for(std::string_view key);
  void erase(Shard& shard, std::list<Entry>::iterator entry);
  void count_hit_locked(Shard& shard, const CachedAnswer& answer);
  void count_lookup(std::string_view key, const CachedAnswer* answer);

  CacheSettings settings_;
  std::function<Clock::time_point()> now_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::size_t shard_max_entries_;
  std::size_t shard_max_bytes_;
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, bypasses_{0}, evictions_{0};
  // Entries this replica's answers evicted from the shared store: counted when Redis answers,
  // on the store's thread, maybe after this cache is gone.
  std::shared_ptr<std::atomic<std::uint64_t>> shared_evictions_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  std::shared_ptr<SharedCacheStore> shared_;
  std::string shared_scope_;
};

}  // namespace cutover::cache
