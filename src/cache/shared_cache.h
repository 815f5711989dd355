// The response cache a fleet of gateways shares, in the fleet's Redis (the state store's server,
// `state_store: redis://...`): an answer one replica kept is served by every replica, under the
// same bounds as the in-process cache (time to live, max_entries, max_bytes, least recently used
// goes first). See cache/response_cache.h for what is cached and under which key.
//
// Keys of one scope (one model's cache on a route), all under the state store's hash tag
// "{<key_prefix>}" so every script touches one cluster slot:
//   {p}:cache:<scope>:entry:<key>  HASH    body, stream ("1"/"0"), provider, prompt_tokens,
//                                          completion_tokens, cost; PEXPIRE the time to live
//   {p}:cache:<scope>:recency      ZSET    key -> last use, ms on Redis's clock (LRU order)
//   {p}:cache:<scope>:expiry       ZSET    key -> when the entry expires, ms on Redis's clock
//   {p}:cache:<scope>:sizes        HASH    key -> the entry's bytes; also the list of the scope's
//                                          keys, so a purge needs no KEYS or SCAN
//   {p}:cache:<scope>:bytes        STRING  the sum of sizes
// The four bookkeeping keys expire no sooner than the latest entry, so an abandoned scope goes.
//
// Each operation is one Lua script (EVALSHA, EVAL on NOSCRIPT). A store first forgets the entries
// whose time passed (at most 256 a call), then writes, then evicts the least recently used until
// both bounds hold; an answer larger than max_bytes is not kept. A find reads the entry and
// marks it used, or forgets the bookkeeping of one that expired.
//
// Synchronous hiredis never runs on an event loop: the store owns one connection that only its
// own thread uses, fed by a bounded queue. A lookup that finds the queue full misses at once; a
// store that finds it full is dropped. After a failed command the connection is dropped and
// reopened at most once a second; until then every job fails at once (a miss, a dropped store),
// so an unreachable Redis costs one connect attempt a second (at most the connect timeout, which
// the jobs queued behind it wait for), and the gateway keeps serving. Each change between
// reachable and unreachable is logged once.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cache/cache_settings.h"
#include "cache/cached_answer.h"
#include "config/config.h"
#include "util/executor.h"

namespace cutover::cache {

class SharedCacheStore {
 public:
  static constexpr std::size_t kDefaultQueueLimit = 4096;

  struct Usage {
    std::uint64_t entries = 0;
    std::uint64_t bytes = 0;
  };

  // Connects lazily, on its own thread: constructing never waits for Redis nor fails because it
  // is down.
  explicit SharedCacheStore(config::RedisStore settings,
                            std::size_t queue_limit = kDefaultQueueLimit);
  // Completes every queued operation with its "unreachable" answer (a miss, nullopt) on its
  // caller's executor, then joins the thread (after the command in flight, at most the command
  // timeout). Callers' executors must outlive the store's pending operations.
  ~SharedCacheStore();
  SharedCacheStore(const SharedCacheStore&) = delete;
  SharedCacheStore& operator=(const SharedCacheStore&) = delete;

  // The answer kept under `key` in `scope` and still fresh, marked as just used; null on a miss,
  // when the queue is full, or when Redis cannot be reached. Any thread; resumes on the awaiting
  // coroutine's executor.
  Awaitable<std::shared_ptr<const CachedAnswer>> find(std::string scope, std::string key);
  // Keeps `answer` under `key` in `scope` within `bounds` (its ttl, max_entries, max_bytes),
  // evicting the least recently used. Fire and forget: dropped when the queue is full or Redis
  // cannot be reached. Any thread. The entries the store evicted to make room are added to
  // `evictions` when Redis has answered, if given (shared: the caller may be gone by then).
  void store(std::string scope, std::string key, CachedAnswer answer, const CacheSettings& bounds,
             std::shared_ptr<std::atomic<std::uint64_t>> evictions = nullptr);
  // Drops every entry of `scope`; how many live ones there were, nullopt when Redis could not be
  // reached (nothing was dropped then).
  Awaitable<std::optional<std::size_t>> purge(std::string scope);
  // The live entries of `scope` and their bytes; nullopt when Redis could not be reached.
  Awaitable<std::optional<Usage>> usage(std::string scope);

  // Whether the last command reached Redis.
  bool up() const { return up_.load(std::memory_order_relaxed); }
  // The bytes an answer counts for against max_bytes, here and in Redis.
  static std::size_t bytes_of(const std::string& key, const CachedAnswer& answer);

 private:
  struct Job;
  template <typename Result, typename Work, typename Handler>
  class Awaited;
  class Detached;
  class Connection;
  template <typename Result, typename Work>
  Awaitable<Result> submit(Work work, Result unreachable);
  void enqueue(std::unique_ptr<Job> job);
  void serve();
  std::string scope_key(const std::string& scope) const;

  const config::RedisStore settings_;
  const std::size_t queue_limit_;
  std::atomic<bool> up_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Job>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cutover::cache
