// The migration state store: each migration's current record and its journal of transitions.
//
// A transition is committed (journaled and durable) before the new weight is applied, and only
// when the caller holds the migration's current generation, so two concurrent operator commands
// cannot interleave. SQLite is the embedded implementation; Redis (redis_state_store.h) is the
// one several replicas share. Nothing outside store/ touches SQL or Redis.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "util/log_throttle.h"

namespace cutover::store {

struct MigrationRecord {
  std::string migration;
  std::string state;  // e.g. "canary"
  double weight = 0;  // candidate share, 0 to 1
  int stage = 0;
  // Absolute time the current stage began, so a restart does not reset its dwell.
  std::int64_t stage_started_unix_ms = 0;
  std::int64_t generation = 0;
  // Identifies the candidate's configuration; a change restarts the migration at step 0.
  std::string config_fingerprint;
  // JSON object of what a state needs besides the columns above: a pause's reason and the state
  // to resume, the rollback ladder's step, whether the last rollback was automatic.
  std::string annotations = "{}";
};

struct Transition {
  std::string migration;
  std::int64_t generation = 0;  // the generation this transition created
  std::int64_t at_unix_ms = 0;
  std::string from_state;
  std::string to_state;
  double weight_before = 0;
  double weight_after = 0;
  std::string trigger;  // "gate:error_rate", "operator:alice", ...
  std::string detail;   // JSON: the figures behind the decision
};

// One shadowed request: the primary's answer as the client got it beside the candidate's.
// Prompt and outputs are stored only when the migration says so; hashes always.
struct ShadowPair {
  std::string migration;
  std::int64_t at_unix_ms = 0;
  std::string request_id;
  std::string model;
  bool streamed = false;
  int primary_status = 0;
  int candidate_status = 0;  // 0: no HTTP answer (transport failure, timeout)
  std::string candidate_error;
  double primary_latency_ms = 0;
  double candidate_latency_ms = 0;
  double primary_ttft_ms = 0;
  double candidate_ttft_ms = 0;
  std::int64_t primary_prompt_tokens = 0;
  std::int64_t primary_completion_tokens = 0;
  std::int64_t candidate_prompt_tokens = 0;
  std::int64_t candidate_completion_tokens = 0;
  double primary_cost = 0;
  double candidate_cost = 0;
  std::string primary_finish_reason;
  std::string candidate_finish_reason;
  bool exact_match = false;
  double similarity = 0;
  double rouge_l = 0;
  double length_ratio = 0;
  int candidate_json_valid = -1;  // -1 not applicable, 0 no, 1 yes
  int json_equal = -1;
  int tool_calls_equal = -1;
  double score = 0;
  std::string prompt_hash;
  std::string primary_output_hash;
  std::string candidate_output_hash;
  std::string prompt_text;
  std::string primary_text;
  std::string candidate_text;
};

// Usage per minute and per (provider, model, provider's model, client key, traffic), for
// reconciliation with provider invoices. Rows with the same key and minute add up. Traffic is
// "live", "shadow", or "cache": answers the response cache served, whose rows spend nothing and
// carry, in saved_*, what the provider that first answered would have charged again.
struct UsageRow {
  std::int64_t minute_unix_ms = 0;  // start of the minute
  std::string provider;
  std::string model;  // client-facing
  std::string provider_model;
  std::string client_key;  // the key's configured name, never the key
  std::string traffic = "live";  // "shadow", "cache"
  std::int64_t requests = 0;
  std::int64_t errors = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double cost = 0;
  std::string currency;
  std::int64_t saved_tokens = 0;
  double saved_cost = 0;
};

// not_leader: a fenced commit whose lease term is no longer the current leader's.
enum class CommitResult { committed, stale_generation, not_leader, failed };

// The leader's lease, as a store shared by several replicas checks it: the replica's name and
// the fencing term it got when it took the lease.
struct Fence {
  std::string replica;
  std::int64_t term = 0;
};

struct Committed {
  CommitResult result = CommitResult::failed;
  // When the store journaled it: the store's own clock where it has one (Redis), else the
  // transition's at_unix_ms. The record's stage clock is this time too.
  std::int64_t at_unix_ms = 0;
};

// Thrown by load() when the store cannot be reached (a shared store only; SQLite throws nothing
// but its own errors), so a caller can tell "nothing stored" from "cannot know".
class StoreUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Writes `next` as the migration's record and appends `transition`, atomically and durably,
  // if the stored generation is `expected_generation` (0 for a migration not stored yet).
  virtual CommitResult commit(const MigrationRecord& next, const Transition& transition,
                              std::int64_t expected_generation) = 0;
  // commit() as the given writer: with a fence, only while that lease term is the leader's,
  // checked in the same atomic step (a gate's transition); without, for anyone (an operator's).
  // Stores without leases ignore the fence.
  virtual Committed commit_as(const MigrationRecord& next, const Transition& transition,
                              std::int64_t expected_generation, const std::optional<Fence>& fence) {
    (void)fence;
    return {commit(next, transition, expected_generation), transition.at_unix_ms};
  }
  virtual std::optional<MigrationRecord> load(std::string_view migration) = 0;
  // The newest `limit` transitions, oldest first.
  virtual std::vector<Transition> history(std::string_view migration, std::size_t limit) = 0;

  // Appends pairs in one transaction, then keeps only each migration's newest `retention`.
  virtual void record_shadow_pairs(const std::vector<ShadowPair>& pairs,
                                   std::size_t retention) = 0;
  // The newest `limit` pairs, oldest first.
  virtual std::vector<ShadowPair> shadow_pairs(std::string_view migration, std::size_t limit) = 0;

  // Adds rows to the ledger in one transaction.
  virtual void record_usage(const std::vector<UsageRow>& rows) = 0;
  // Rows whose minute lies in [from, to), oldest first.
  virtual std::vector<UsageRow> usage(std::int64_t from_unix_ms, std::int64_t to_unix_ms) = 0;
};

// Opens (creating if needed) a SQLite store at `path` in WAL mode with full fsync on commit.
// Throws std::runtime_error with SQLite's message when the file cannot be opened. Reads that fail
// throw std::runtime_error; writes that fail are logged, each distinct failure at most once a
// minute as `now` tells time, with the path, what was being written and SQLite's reason.
std::unique_ptr<StateStore> open_sqlite_store(
    const std::string& path, util::LogThrottle::Clock now = std::chrono::steady_clock::now);

// Why a SQLite store at `path` could not be used, found without creating or changing anything:
// its directory must exist and be writable (SQLite keeps its -wal and -shm files beside it), and
// a file already there must open as a writable SQLite database. nullopt when it can be used;
// ":memory:" always can.
std::optional<std::string> sqlite_store_problem(const std::string& path);

}  // namespace cutover::store
