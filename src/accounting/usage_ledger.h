// The usage ledger: tokens, requests and cost per minute, provider, model and client key, live
// and shadow apart, persisted in the state store for `cutover report usage` and reconciliation
// with provider invoices.
//
// Workers add to their own shard (a mutex only the flusher contends for); a thread of the
// ledger's own writes the shards to SQLite every two seconds, so no worker ever waits on disk.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/state_store.h"

namespace cutover::accounting {

struct UsageEvent {
  std::int64_t at_unix_ms = 0;
  std::string_view provider;
  std::string_view model;
  std::string_view provider_model;
  std::string_view client_key;
  bool shadow = false;
  // Served by the response cache: the tokens and cost below are what it saved, not spent.
  bool cache_hit = false;
  bool error = false;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double cost = 0;
  std::string_view currency;
};

class UsageLedger {
 public:
  // Opens its own connection to the store at `path`. Throws std::runtime_error when it cannot.
  UsageLedger(const std::string& path, unsigned workers);
  ~UsageLedger();
  UsageLedger(const UsageLedger&) = delete;
  UsageLedger& operator=(const UsageLedger&) = delete;

  void add(unsigned worker, const UsageEvent& event);
  // Writes everything added so far (tests, shutdown).
  void flush();

 private:
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, store::UsageRow> rows;
    std::string key;
  };
  void run();

  std::unique_ptr<store::StateStore> store_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::mutex flush_mutex_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cutover::accounting
