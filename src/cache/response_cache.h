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
#pragma once

#include <boost/json.hpp>

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
#include <unordered_map>
#include <vector>

#include "cache/cache_settings.h"

namespace cutover::cache {

struct CachedAnswer {
  std::string body;  // the plain JSON body, or the stream's SSE text including [DONE]
  bool stream = false;
  std::string provider;  // the one that answered first
  std::string provider_model;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double cost = 0;  // what that answer cost, which each hit saves
  std::string currency;
};

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

  // The answer stored under `key` and still fresh; counts a hit or a miss.
  std::shared_ptr<const CachedAnswer> find(const std::string& key);
  // Stores a complete answer; one larger than the byte bound is not kept.
  void store(const std::string& key, CachedAnswer answer);
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
  struct Shard {
    mutable std::mutex mutex;
    std::list<Entry> recency;  // most recently used first
    std::unordered_map<std::string, std::list<Entry>::iterator> index;
    std::size_t bytes = 0;
    std::uint64_t tokens_saved = 0;
    double cost_saved = 0;
  };
  Shard& shard_for(const std::string& key);
  void erase(Shard& shard, std::list<Entry>::iterator entry);

  CacheSettings settings_;
  std::function<Clock::time_point()> now_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::size_t shard_max_entries_;
  std::size_t shard_max_bytes_;
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, bypasses_{0}, evictions_{0};
};

}  // namespace cutover::cache
