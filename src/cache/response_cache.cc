#include "cache/response_cache.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <boost/container/small_vector.hpp>

#include "util/json_string.h"
#include "util/sha256.h"

namespace cutover::cache {

namespace json = boost::json;

namespace {

constexpr std::string_view kLeftOut[] = {"stream", "stream_options", "user", "metadata", "store"};

// Writes a body with every object's keys sorted (Boost.JSON keeps them in the order they came,
// and a key must not depend on it). Strings (util/json_string), integers, booleans and null are
// written directly, doubles through one serializer and a stack buffer: the bytes are Boost.JSON's
// in every case. Each object's members go through an inline vector: a miss computes a key for
// every request, so nothing here allocates but the output.
class CanonicalWriter {
 public:
  explicit CanonicalWriter(std::string& out) : out_(out) {}

  // The request body, less the top-level fields that do not change the answer.
  void write_body(const json::object& body) { write_object(body, true); }

 private:
  void write(const json::value& value) {
    if (value.is_object()) {
      write_object(value.get_object(), false);
    } else if (value.is_array()) {
      out_.push_back('[');
      bool first = true;
      for (const auto& item : value.get_array()) {
        if (!first) out_.push_back(',');
        first = false;
        write(item);
      }
      out_.push_back(']');
    } else if (value.is_string()) {
      write_string(value.get_string());
    } else if (value.is_int64()) {
      write_number(value.get_int64());
    } else if (value.is_uint64()) {
      write_number(value.get_uint64());
    } else if (value.is_bool()) {
      out_.append(value.get_bool() ? "true" : "false");
    } else if (value.is_null()) {
      out_.append("null");
    } else {
      serializer_.reset(&value);
      drain();
    }
  }

  void write_string(json::string_view text) {
    util::append_json_string(out_, std::string_view(text.data(), text.size()));
  }

  template <typename Integer>
  void write_number(Integer number) {
    char digits[24];
    out_.append(digits, std::to_chars(digits, digits + sizeof digits, number).ptr);
  }

  void write_object(const json::object& object, bool leave_out) {
    boost::container::small_vector<const json::key_value_pair*, 16> members;
    for (const auto& member : object) {
      if (leave_out &&
          std::find(std::begin(kLeftOut), std::end(kLeftOut), member.key()) != std::end(kLeftOut)) {
        continue;
      }
      members.push_back(&member);
    }
    std::sort(members.begin(), members.end(),
              [](const auto* a, const auto* b) { return a->key() < b->key(); });
    out_.push_back('{');
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (i > 0) out_.push_back(',');
      write_string(members[i]->key());
      out_.push_back(':');
      write(members[i]->value());
    }
    out_.push_back('}');
  }

  void drain() {
    while (!serializer_.done()) out_.append(serializer_.read(buffer_, sizeof buffer_));
  }

  std::string& out_;
  json::serializer serializer_;
  char buffer_[256];
};

bool is_zero(const json::value& value) {
  return (value.is_int64() && value.get_int64() == 0) || (value.is_uint64() && value.get_uint64() == 0) ||
         (value.is_double() && value.get_double() == 0.0);
}

}  // namespace

bool declares_deterministic(const json::object& body) {
  if (const auto* temperature = body.if_contains("temperature"); temperature && is_zero(*temperature)) {
    return true;
  }
  const auto* seed = body.if_contains("seed");
  return seed != nullptr && !seed->is_null();
}

std::string cache_key(const json::object& body, std::string_view kind, bool stream,
                      std::string_view tenant) {
  std::string text;
  text.reserve(256);
  text.append(kind).push_back('\n');
  text.append(stream ? "stream" : "plain").push_back('\n');
  text.append(tenant).push_back('\n');
  CanonicalWriter(text).write_body(body);
  return util::sha256_hex(text);
}

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

std::size_t ResponseCache::KeyHash::operator()(std::string_view key) const noexcept {
  if (key.size() < 16) return std::hash<std::string_view>{}(key);
  std::uint64_t tail;
  std::memcpy(&tail, key.data() + key.size() - 8, 8);
  return static_cast<std::size_t>(tail);
}

ResponseCache::Shard& ResponseCache::shard_for(std::string_view key) {
  std::uint64_t head = 0;
  if (key.size() >= 16) {
    std::memcpy(&head, key.data(), 8);
  } else {
    head = std::hash<std::string_view>{}(key);
  }
  return *shards_[head % shards_.size()];
}

void ResponseCache::erase(Shard& shard, std::list<Entry>::iterator entry) {
  shard.bytes -= entry->bytes;
  shard.index.erase(entry->key);
  shard.recency.erase(entry);
}

std::shared_ptr<const CachedAnswer> ResponseCache::find(std::string_view key) {
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
  auto& shard = shard_for(key);
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
  auto answer = co_await store->find(shared_scope_, key);
  count_lookup(key, answer.get());
  co_return answer;
}

void ResponseCache::keep(std::string key, CachedAnswer answer) {
  if (!shared_) {
    store(std::move(key), std::move(answer));
    return;
  }
  shared_->store(shared_scope_, std::move(key), std::move(answer), settings_, shared_evictions_);
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
  auto& shard = shard_for(key);
  const auto expires = now_() + settings_.ttl;
  auto shared = std::make_shared<const CachedAnswer>(std::move(answer));
  std::lock_guard lock(shard.mutex);
  if (auto found = shard.index.find(key); found != shard.index.end()) erase(shard, found->second);
  while (!shard.recency.empty() &&
         (shard.index.size() >= shard_max_entries_ || shard.bytes + bytes > shard_max_bytes_)) {
    erase(shard, std::prev(shard.recency.end()));
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  shard.recency.push_front(Entry{std::move(key), std::move(shared), expires, bytes});
  shard.index.emplace(shard.recency.front().key, shard.recency.begin());
  shard.bytes += bytes;
}

std::size_t ResponseCache::purge() {
  std::size_t dropped = 0;
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    dropped += shard->index.size();
    shard->index.clear();
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
