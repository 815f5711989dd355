// The migration record, its journal and the leader's lease in Redis: the store several replicas
// of one gateway share (README, "Running several replicas").
//
// Keys, all under the hash tag "{<key_prefix>}" so every script touches one cluster slot:
//   {p}:migration:<name>          HASH    the record: state, weight, stage, stage_started_unix_ms,
//                                         generation, config_fingerprint, annotations, migration
//   {p}:migration:<name>:journal  LIST    one JSON object per transition, oldest first; its
//                                         generations are 1..N, since only a commit appends
//   {p}:leader                    STRING  "<replica>|<term>" with a PX expiry: the leader's lease
//   {p}:term                      STRING  INCR counter: the fencing term of each new lease
//   {p}:migration:<name>:window:<generation>
//                                 HASH    replica -> its latest contribution to the window that
//                                         began with that generation (migration/fleet_window.h);
//                                         cumulative, so a retried write replaces, never adds;
//                                         expires 10 minutes after the last write
//   {p}:replicas                  HASH    replica -> Redis's time of its last contribution: the
//                                         fleet's heartbeats
//   {p}:migration:<name>:pairs    LIST    every replica's shadow pairs (figures and hashes, not the
//                                         texts), oldest first, trimmed to the migration's
//                                         shadow.retention: the fleet's shadow report and projection
//
// A commit is one Lua script (EVALSHA, EVAL on NOSCRIPT): it checks the expected generation and,
// for a fenced commit, that the leader key still holds this replica's term; it stamps the stage
// clock from Redis's TIME and writes the record and the journal entry together. Usage rows and the
// shadow pairs' texts stay in a SQLite file on each replica (`local`); the pairs' figures are
// shared as well, so any replica's shadow report covers the fleet.
//
// Synchronous hiredis, one connection, guarded by a mutex: call it from the engine's thread, never
// from an event loop. After a failed command the connection is dropped and reopened on the next
// call, at most once a second; each change between reachable and unreachable is logged once.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "store/state_store.h"

struct redisContext;
struct redisReply;

namespace cutover::store {

class RedisStateStore : public StateStore {
 public:
  RedisStateStore(config::RedisStore settings, std::unique_ptr<StateStore> local);
  ~RedisStateStore() override;
  RedisStateStore(const RedisStateStore&) = delete;
  RedisStateStore& operator=(const RedisStateStore&) = delete;

  CommitResult commit(const MigrationRecord& next, const Transition& transition,
                      std::int64_t expected_generation) override;
  Committed commit_as(const MigrationRecord& next, const Transition& transition,
                      std::int64_t expected_generation, const std::optional<Fence>& fence) override;
  // Throws StoreUnavailable when Redis cannot be reached or answers an error.
  std::optional<MigrationRecord> load(std::string_view migration) override;
  // Empty when Redis cannot be reached.
  std::vector<Transition> history(std::string_view migration, std::size_t limit) override;

  void record_shadow_pairs(const std::vector<ShadowPair>& pairs, std::size_t retention) override;
  std::vector<ShadowPair> shadow_pairs(std::string_view migration, std::size_t limit) override;
  void record_usage(const std::vector<UsageRow>& rows) override;
  std::vector<UsageRow> usage(std::int64_t from_unix_ms, std::int64_t to_unix_ms) override;

  // Takes the lease when nobody holds it (a new term from INCR) or extends it when this replica
  // holds `term`, for settings().lease. Returns the term this replica holds now; nullopt when
  // another replica holds the lease or Redis cannot be reached.
  std::optional<std::int64_t> hold_lease(std::optional<std::int64_t> term);
  // Gives the lease up when this replica still holds `term`, so another takes over at once.
  void release_lease(std::int64_t term);
  // "<replica>|<term>" of the current leader; empty when none; nullopt when unreachable.
  std::optional<std::string> leader();

  // Writes this replica's cumulative contribution to the window that began with `generation`,
  // and its heartbeat, in one step. False when Redis cannot be reached.
  bool publish_window(std::string_view migration, std::int64_t generation,
                      const std::string& contribution);
  // Every replica's latest contribution to that window (replica, contribution); nullopt when
  // Redis cannot be reached.
  std::optional<std::vector<std::pair<std::string, std::string>>> window(std::string_view migration,
                                                                         std::int64_t generation);
  struct Heartbeat {
    std::string replica;
    std::int64_t age_ms = 0;  // by Redis's clock
  };
  // The replicas that contributed in the last `within`, newest first; nullopt when unreachable.
  std::optional<std::vector<Heartbeat>> heartbeats(std::chrono::milliseconds within);

  // Whether the last command reached Redis.
  bool up() const;
  const config::RedisStore& settings() const { return settings_; }
  std::string key(std::string_view suffix) const;

 private:
  struct ReplyDeleter {
    void operator()(redisReply* reply) const;
  };
  using Reply = std::unique_ptr<redisReply, ReplyDeleter>;
  struct Script {
    std::string body;
    std::string sha1;
  };

  std::string window_key(std::string_view migration, std::int64_t generation) const;
  std::string pairs_key(std::string_view migration) const;
  bool connect_locked();
  void disconnect_locked(const std::string& why);
  // Null when the command did not reach Redis (the connection is then dropped); an error reply
  // is returned as is.
  Reply command_locked(const std::vector<std::string>& argv);
  Reply eval_locked(const Script& script, const std::vector<std::string>& keys,
                    const std::vector<std::string>& args);
  void mark_up_locked();

  config::RedisStore settings_;
  std::unique_ptr<StateStore> local_;
  mutable std::mutex mutex_;
  redisContext* context_ = nullptr;
  bool up_ = false;
  bool ever_connected_ = false;
  bool reported_down_ = false;
  std::chrono::steady_clock::time_point next_attempt_{};
  Script commit_script_;
  Script lease_script_;
  Script release_script_;
  Script window_script_;
  Script pairs_script_;
};

// Connects lazily: opening never fails because Redis is down (the store then reports
// StoreUnavailable until it answers). Throws std::runtime_error when `local_file` cannot be opened.
std::unique_ptr<RedisStateStore> open_redis_store(const config::RedisStore& settings,
                                                  const std::string& local_file);

}  // namespace cutover::store
