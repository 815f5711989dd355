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

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
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
#include "providers/request_summary.h"

namespace cutover::cache {

// True when the request declares its answer deterministic: temperature 0 or a seed.
bool declares_deterministic(const boost::json::object& body);

// A request's key and whether the request declares its answer deterministic.
//
// The key is the text itself, not a digest of it: the endpoint kind, whether it streams, the
// tenant (empty when shared), one per line, then the body's fields that can change the answer,
// serialized with every object's keys sorted. Left out: stream, stream_options, user, metadata,
// store (they change the form or the bookkeeping of an answer, not the answer). Entries are
// found by comparing whole keys, so two requests share an answer only when their keys are the
// same bytes; the shared store names its entries by the key's SHA-256 (shared_key).
struct RequestKey {
  std::string text;
  bool deterministic = false;
};

// Of a request's tree.
RequestKey request_key(const boost::json::object& body, std::string_view kind, bool stream,
                       std::string_view tenant);
// Of an OpenAI client's body as it came, read without a tree: the key request_key writes of the
// tree json::parse would make of it (duplicate keys included: the last one counts); nullopt when
// the body is not a JSON object.
std::optional<RequestKey> request_key(std::string_view body, std::string_view kind, bool stream,
                                      std::string_view tenant);

// An OpenAI client's body read once for both what the gateway reads before routing it and its
// key: summarize_request's summary of it (filling `shape`) and, when that names no problem,
// request_key(body, kind, shape.stream, tenant). A route with a cache would otherwise parse a
// request it has not seen twice.
struct SummaryAndKey {
  providers::RequestSummary summary;
  std::optional<RequestKey> key;
};
SummaryAndKey summarize_with_key(std::string_view body, providers::ApiKind api,
                                 providers::RequestShape& shape, std::string_view kind,
                                 std::string_view tenant);

// The name of a key's entry in the shared store: its SHA-256, in hex.
std::string shared_key(std::string_view key);

// A request's exact text as the cache remembers it: the endpoint kind and the tenant, one per
// line, then the body's bytes as they came (see ResponseCache::known_text). Not its stream flag:
// an OpenAI client's body says whether it streams, so its key is a function of these pieces.
std::string request_text(std::string_view body, std::string_view kind, std::string_view tenant);

// The same text in the pieces it is made of: the cache looks a text up by its pieces, so a
// request whose text it does not know costs no copy of its body.
struct RequestText {
  std::string_view body;
  std::string_view kind;
  std::string_view tenant;
};
// The size of request_text of these pieces, and whether `text` is it, without joining them.
std::size_t request_text_size(const RequestText& pieces);
bool is_request_text(std::string_view text, const RequestText& pieces);

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

  // Requests' exact texts (request_text) and the keys they had, in this process, with what the
  // gateway read of them besides. Writing a key costs a parse of the body; a client that asks the
  // same question again almost always sends the same bytes, and then its key and its summary are
  // found here instead (the gateway remembers a text when its key hits, so the second hit of the
  // same bytes is the first without a parse). Each shard
  // remembers at most as many texts as it holds entries, in at most an eighth of its bytes, and
  // forgets all of them at once when full: a forgotten text only costs its key's parse again. A key
  // is the same pure function of the text whenever it is written, so a remembered one is never
  // stale; the entry it names may be gone (a miss, as it would be).
  // What was read of a text besides its key: whether its body declares itself deterministic (as
  // RequestKey says), and summarize_request's reading of a body it found no problem in.
  struct TextReading {
    bool deterministic = false;
    providers::RequestShape shape;
    bool has_stream_options = false;
  };
  struct KnownText {
    bool found = false;
    TextReading reading;
  };
  // Copies the key remembered for `text` into `key` when there is one.
  KnownText known_text(const RequestText& text, std::string& key);
  void remember_text(const RequestText& text, std::string_view key, TextReading reading);
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
    std::size_t hash = 0;  // the key's
    std::shared_ptr<const CachedAnswer> answer;
    Clock::time_point expires;
    std::size_t bytes = 0;
  };
  // Keys and texts are whole requests, so hashing one is not free: it is hashed once (Hashed),
  // which picks its shard and is what the shard's maps look it up by (the index keeps it; the
  // texts' map hashes a text again when it stores it or grows).
  struct Hashed {
    std::string_view text;
    std::size_t hash;
  };
  static Hashed hashed(std::string_view text) {
    return {text, std::hash<std::string_view>{}(text)};
  }
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept { return hashed(key).hash; }
    std::size_t operator()(const Hashed& key) const noexcept { return key.hash; }
  };
  struct KeyEqual {
    using is_transparent = void;
    static std::string_view view(std::string_view key) { return key; }
    static std::string_view view(const Hashed& key) { return key.text; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const noexcept {
      return view(a) == view(b);
    }
  };
  struct TextAlias {
    std::string key;
    TextReading reading;
  };
  // A remembered text (request_text of its pieces) and text_hash of its pieces; a probe is the
  // pieces of a request's text and the same hash.
  struct StoredText {
    std::string text;
    std::size_t hash;
    std::size_t body_size;  // where the text's pieces meet is part of what it is
  };
  struct TextProbe {
    const RequestText& pieces;
    std::size_t hash;
  };
  static std::size_t text_hash(const RequestText& text);
  struct TextHash {
    using is_transparent = void;
    std::size_t operator()(const StoredText& text) const noexcept { return text.hash; }
    std::size_t operator()(const TextProbe& text) const noexcept { return text.hash; }
  };
  struct TextEqual {
    using is_transparent = void;
    bool operator()(const StoredText& a, const StoredText& b) const noexcept {
      return a.body_size == b.body_size && a.text == b.text;
    }
    bool operator()(const StoredText& a, const TextProbe& b) const noexcept;
    bool operator()(const TextProbe& a, const StoredText& b) const noexcept {
      return (*this)(b, a);
    }
  };
  struct Shard {
    mutable std::mutex mutex;
    std::list<Entry> recency;  // most recently used first
    // Views of the keys their entries hold, with their hashes: one copy of each key. Open
    // addressing: a miss looks a key up, inserts it and evicts another, and a node-based map spent
    // an allocation and three cold cache lines on each (perf of bench/cache.sh's miss run: 1.5 us a
    // miss in the map).
    boost::unordered_flat_map<Hashed, std::list<Entry>::iterator, KeyHash, KeyEqual> index;
    std::size_t bytes = 0;
    std::uint64_t tokens_saved = 0;
    double cost_saved = 0;
    // Texts whose shard this is (by the text's hash, not the key's), and the bytes they hold.
    boost::unordered_flat_map<StoredText, TextAlias, TextHash, TextEqual> texts;
    std::size_t text_bytes = 0;
  };
  Shard& shard_for(const Hashed& key);
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
