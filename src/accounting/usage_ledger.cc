#include "accounting/usage_ledger.h"
#include "util/thread_name.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>

namespace cutover::accounting {

namespace {
constexpr auto kFlushInterval = std::chrono::seconds(2);
constexpr std::int64_t kMinuteMs = 60'000;

std::string_view traffic_of(const UsageEvent& event) {
  if (event.cache_hit) return "cache";
  return event.shadow ? "shadow" : "live";
}
}  // namespace

UsageLedger::UsageLedger(const std::string& path, unsigned workers)
    : store_(store::open_sqlite_store(path)) {
  for (unsigned i = 0; i < std::max(1u, workers); ++i) shards_.push_back(std::make_unique<Shard>());
  thread_ = std::thread([this] {
    util::name_this_thread("cutover-usage");
    run();
  });
}

UsageLedger::~UsageLedger() {
  {
    std::lock_guard lock(wake_mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  flush();
}

void UsageLedger::add(unsigned worker, const UsageEvent& event) {
  auto& shard = *shards_[worker % shards_.size()];
  const auto minute = event.at_unix_ms - event.at_unix_ms % kMinuteMs;
  std::lock_guard lock(shard.mutex);
  shard.key.clear();
  fmt::format_to(std::back_inserter(shard.key), "{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}", minute,
                 event.provider, event.model, event.provider_model, event.client_key,
                 traffic_of(event).front());
  auto found = shard.rows.find(shard.key);
  if (found == shard.rows.end()) {
    store::UsageRow row;
    row.minute_unix_ms = minute;
    row.provider = event.provider;
    row.model = event.model;
    row.provider_model = event.provider_model;
    row.client_key = event.client_key;
    row.traffic = traffic_of(event);
    found = shard.rows.emplace(shard.key, std::move(row)).first;
  }
  auto& row = found->second;
  ++row.requests;
  row.errors += event.error;
  if (event.cache_hit) {
    row.saved_tokens += event.prompt_tokens + event.completion_tokens;
    row.saved_cost += event.cost;
    if (row.currency.empty()) row.currency = event.currency;
    return;
  }
  row.prompt_tokens += event.prompt_tokens;
  row.cached_prompt_tokens += event.cached_prompt_tokens;
  row.completion_tokens += event.completion_tokens;
  row.cost += event.cost;
  if (row.currency.empty()) row.currency = event.currency;
}

void UsageLedger::flush() {
  std::lock_guard flushing(flush_mutex_);
  std::vector<store::UsageRow> rows;
  for (auto& shard : shards_) {
    std::unordered_map<std::string, store::UsageRow> taken;
    {
      std::lock_guard lock(shard->mutex);
      taken.swap(shard->rows);
    }
    for (auto& [key, row] : taken) rows.push_back(std::move(row));
  }
  if (rows.empty()) return;
  store_->record_usage(rows);
}

void UsageLedger::run() {
  std::unique_lock lock(wake_mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, kFlushInterval, [this] { return stopping_; });
    lock.unlock();
    try {
      flush();
    } catch (const std::exception& e) {
      spdlog::error("usage ledger: cannot write to the state store: {}", e.what());
    }
    lock.lock();
  }
}

}  // namespace cutover::accounting
