#include "cache/response_cache.h"

#include <algorithm>

namespace cutover::cache {

ResponseCache::ResponseCache(CacheSettings settings, std::function<Clock::time_point()> now)
    : settings_(settings), now_(now ? std::move(now) : [] { return Clock::now(); }) {
  settings_.max_entries = std::max<std::size_t>(1, settings_.max_entries);
  // Small caches keep one exact bound; large ones spread their entries over shards, each with
  // its share of both bounds (so an answer over a sixteenth of max_bytes, 4 MiB by default, is
  // not kept there).
  const bool large = settings_.max_entries >= 1024 && settings_.max_bytes >= 64 * 1024 * 1024;
  const std::size_t count = large ? 16 : 1;
  for (std::size_t i = 0; i < count; ++i) shards_.push_back(std::make_unique<Shard>());
  shard_max_entries_ = (settings_.max_entries + count - 1) / count;
  shard_max_bytes_ = std::max<std::size_t>(1, settings_.max_bytes / count);
}

ResponseCache::Shard& ResponseCache::shard_for(const Hashed& key) {
  // The hash's high bits: the maps' buckets take the low ones (after their own mixing).
  return *shards_[(key.hash >> 32) % shards_.size()];
}

void ResponseCache::erase(Shard& shard, std::list<Entry>::iterator entry) {
  shard.bytes -= entry->bytes;
  shard.index.erase(Hashed{entry->key, entry->hash});
  shard.recency.erase(entry);
}

std::shared_ptr<const CachedAnswer> ResponseCache::find(std::string_view text) {
  const auto key = hashed(text);
  auto& shard = shard_for(key);
  const auto now = now_();
  std::lock_guard lock(shard.mutex);
  auto found = shard.index.find(key);
  if (found == shard.index.end() || found->second->expires <= now) {
    if (found != shard.index.end()) erase(shard, found->second);
    misses_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  shard.recency.splice(shard.recency.begin(), shard.recency, found->second);
  const auto& answer = found->second->answer;
  count_hit_locked(shard, *answer);
  return answer;
}

// The body's hash alone (hashing the endpoint and tenant too cost a hit 200 instructions): the
// same body from several tenants or endpoints shares a hash, and the equality tells them apart.
std::size_t ResponseCache::text_hash(const RequestText& text) {
  return std::hash<std::string_view>{}(text.body);
}

bool ResponseCache::TextEqual::operator()(const StoredText& stored,
                                          const TextProbe& probe) const noexcept {
  return stored.body_size == probe.pieces.body.size() && is_request_text(stored.text, probe.pieces);
}

ResponseCache::KnownText ResponseCache::known_text(const RequestText& text, std::string& key) {
  const TextProbe probe{text, text_hash(text)};
  auto& shard = shard_for(Hashed{text.body, probe.hash});
  std::lock_guard lock(shard.mutex);
  const auto found = shard.texts.find(probe);
  if (found == shard.texts.end()) return {};
  key.assign(found->second.key);
  return {true, found->second.reading};
}

void ResponseCache::remember_text(const RequestText& text, std::string_view key,
                                  TextReading reading) {
  const std::size_t bytes = request_text_size(text) + key.size() + reading.shape.model.size();
  // One that could never fit is refused before it makes the shard forget the others.
  if (bytes > shard_max_bytes_ / 8) return;
  const TextProbe probe{text, text_hash(text)};
  auto& shard = shard_for(Hashed{text.body, probe.hash});
  std::lock_guard lock(shard.mutex);
  if (shard.texts.contains(probe)) return;
  if (shard.texts.size() >= shard_max_entries_ || shard.text_bytes + bytes > shard_max_bytes_ / 8) {
    shard.texts.clear();
    shard.text_bytes = 0;
  }
  shard.texts.emplace(
      StoredText{request_text(text.body, text.kind, text.tenant), probe.hash, text.body.size()},
      TextAlias{std::string(key), std::move(reading)});
  shard.text_bytes += bytes;
}

void ResponseCache::count_hit_locked(Shard& shard, const CachedAnswer& answer) {
  shard.tokens_saved += static_cast<std::uint64_t>(answer.prompt_tokens + answer.completion_tokens);
  shard.cost_saved += answer.cost;
  hits_.fetch_add(1, std::memory_order_relaxed);
}

void ResponseCache::count_lookup(std::string_view key, const CachedAnswer* answer) {
  if (!answer) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto& shard = shard_for(hashed(key));
  std::lock_guard lock(shard.mutex);
  count_hit_locked(shard, *answer);
}

void ResponseCache::use_shared(std::shared_ptr<SharedCacheStore> store, std::string scope) {
  shared_ = std::move(store);
  shared_scope_ = std::move(scope);
}

Awaitable<std::shared_ptr<const CachedAnswer>> ResponseCache::lookup(const std::string& key) {
  if (!shared_) co_return find(key);
  // Held here so the store outlives the lookup whatever happens to this cache's backend.
  const auto store = shared_;
  auto answer = co_await store->find(shared_scope_, shared_key(key));
  count_lookup(key, answer.get());
  co_return answer;
}

void ResponseCache::keep(std::string key, CachedAnswer answer) {
  if (!shared_) {
    store(std::move(key), std::move(answer));
    return;
  }
  shared_->store(shared_scope_, shared_key(key), std::move(answer), settings_, shared_evictions_);
}

Awaitable<std::optional<std::size_t>> ResponseCache::purge_all() {
  const std::size_t here = purge();
  if (!shared_) co_return here;
  const auto store = shared_;
  const auto there = co_await store->purge(shared_scope_);
  if (!there) co_return std::nullopt;
  co_return here + *there;
}

Awaitable<std::optional<SharedCacheStore::Usage>> ResponseCache::shared_usage() const {
  if (!shared_) co_return std::nullopt;
  const auto store = shared_;
  co_return co_await store->usage(shared_scope_);
}

void ResponseCache::store(std::string key, CachedAnswer answer) {
  const std::size_t bytes = answer.body.size() + key.size() + sizeof(Entry);
  if (bytes > shard_max_bytes_) return;
  const auto hash = hashed(key).hash;
  auto& shard = shard_for(Hashed{key, hash});
  const auto expires = now_() + settings_.ttl;
  auto shared = std::make_shared<const CachedAnswer>(std::move(answer));
  std::lock_guard lock(shard.mutex);
  if (auto found = shard.index.find(Hashed{key, hash}); found != shard.index.end()) {
    erase(shard, found->second);
  }
  while (!shard.recency.empty() &&
         (shard.index.size() >= shard_max_entries_ || shard.bytes + bytes > shard_max_bytes_)) {
    erase(shard, std::prev(shard.recency.end()));
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  shard.recency.push_front(Entry{std::move(key), hash, std::move(shared), expires, bytes});
  shard.index.emplace(Hashed{shard.recency.front().key, hash}, shard.recency.begin());
  shard.bytes += bytes;
}

std::size_t ResponseCache::purge() {
  std::size_t dropped = 0;
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    dropped += shard->index.size();
    shard->index.clear();
    shard->texts.clear();
    shard->text_bytes = 0;
    shard->recency.clear();
    shard->bytes = 0;
  }
  return dropped;
}

ResponseCache::Stats ResponseCache::stats() const {
  Stats stats;
  stats.hits = hits_.load(std::memory_order_relaxed);
  stats.misses = misses_.load(std::memory_order_relaxed);
  stats.bypasses = bypasses_.load(std::memory_order_relaxed);
  stats.evictions = evictions_.load(std::memory_order_relaxed) +
                    shared_evictions_->load(std::memory_order_relaxed);
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    stats.entries += shard->index.size();
    stats.bytes += shard->bytes;
    stats.tokens_saved += shard->tokens_saved;
    stats.cost_saved += shard->cost_saved;
  }
  return stats;
}

}  // namespace cutover::cache
