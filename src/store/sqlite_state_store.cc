#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <stdexcept>

#include "store/state_store.h"
#include "util/log_throttle.h"

namespace cutover::store {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS migrations (
  migration TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  weight REAL NOT NULL,
  stage INTEGER NOT NULL,
  stage_started_unix_ms INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  config_fingerprint TEXT NOT NULL,
  annotations TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS transitions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  migration TEXT NOT NULL,
  generation INTEGER NOT NULL,
  at_unix_ms INTEGER NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  weight_before REAL NOT NULL,
  weight_after REAL NOT NULL,
  trigger TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_migration ON transitions (migration, id);
CREATE TABLE IF NOT EXISTS shadow_pairs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  migration TEXT NOT NULL,
  at_unix_ms INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  model TEXT NOT NULL,
  streamed INTEGER NOT NULL,
  primary_status INTEGER NOT NULL,
  candidate_status INTEGER NOT NULL,
  candidate_error TEXT NOT NULL,
  primary_latency_ms REAL NOT NULL,
  candidate_latency_ms REAL NOT NULL,
  primary_ttft_ms REAL NOT NULL,
  candidate_ttft_ms REAL NOT NULL,
  primary_prompt_tokens INTEGER NOT NULL,
  primary_completion_tokens INTEGER NOT NULL,
  candidate_prompt_tokens INTEGER NOT NULL,
  candidate_completion_tokens INTEGER NOT NULL,
  primary_cost REAL NOT NULL,
  candidate_cost REAL NOT NULL,
  primary_finish_reason TEXT NOT NULL,
  candidate_finish_reason TEXT NOT NULL,
  exact_match INTEGER NOT NULL,
  similarity REAL NOT NULL,
  rouge_l REAL NOT NULL,
  length_ratio REAL NOT NULL,
  candidate_json_valid INTEGER NOT NULL,
  json_equal INTEGER NOT NULL,
  tool_calls_equal INTEGER NOT NULL,
  score REAL NOT NULL,
  prompt_hash TEXT NOT NULL,
  primary_output_hash TEXT NOT NULL,
  candidate_output_hash TEXT NOT NULL,
  prompt_text TEXT NOT NULL,
  primary_text TEXT NOT NULL,
  candidate_text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS shadow_pairs_by_migration ON shadow_pairs (migration, id);
CREATE TABLE IF NOT EXISTS usage (
  minute_unix_ms INTEGER NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  provider_model TEXT NOT NULL,
  client_key TEXT NOT NULL,
  traffic TEXT NOT NULL,
  requests INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  cached_prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost REAL NOT NULL,
  currency TEXT NOT NULL,
  saved_tokens INTEGER NOT NULL DEFAULT 0,
  saved_cost REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (minute_unix_ms, provider, model, provider_model, client_key, traffic)
);
)sql";

#define kPairColumns                                                                      \
  "migration, at_unix_ms, request_id, model, streamed, primary_status, candidate_status, "     \
  "candidate_error, primary_latency_ms, candidate_latency_ms, primary_ttft_ms, "              \
  "candidate_ttft_ms, primary_prompt_tokens, primary_completion_tokens, "                     \
  "candidate_prompt_tokens, candidate_completion_tokens, primary_cost, candidate_cost, "      \
  "primary_finish_reason, candidate_finish_reason, exact_match, similarity, rouge_l, "        \
  "length_ratio, candidate_json_valid, json_equal, tool_calls_equal, score, prompt_hash, "    \
  "primary_output_hash, candidate_output_hash, prompt_text, primary_text, candidate_text"

// SQLite's reason for the last failure on `db`: its message, and what the result code means
// when that adds anything ("disk I/O error" beside the message of a failed write, say).
std::string sqlite_reason(sqlite3* db) {
  std::string reason = sqlite3_errmsg(db);
  const std::string meaning = sqlite3_errstr(sqlite3_extended_errcode(db));
  if (meaning != reason && meaning != "not an error") reason += " (" + meaning + ")";
  return reason;
}

// Thrown inside the store with SQLite's reason only; the store adds its path and what it was
// doing before the message leaves it.
class SqliteFailure : public std::runtime_error {
 public:
  explicit SqliteFailure(sqlite3* db) : std::runtime_error(sqlite_reason(db)) {}
};

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &statement_, nullptr) != SQLITE_OK) throw SqliteFailure(db);
  }
  ~Statement() { sqlite3_finalize(statement_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::string_view text) {
    sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int index, std::int64_t value) {
    sqlite3_bind_int64(statement_, index, value);
    return *this;
  }
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, bool value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, double value) {
    sqlite3_bind_double(statement_, index, value);
    return *this;
  }
  // Runs a statement that returns no rows.
  void run() {
    if (sqlite3_step(statement_) != SQLITE_DONE) throw SqliteFailure(db_);
  }
  // Steps to the next row; false after the last one.
  bool next_row() {
    const int result = sqlite3_step(statement_);
    if (result == SQLITE_ROW) return true;
    if (result == SQLITE_DONE) return false;
    throw SqliteFailure(db_);
  }
  void reset() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }
  std::string text(int column) const {
    const auto* value = sqlite3_column_text(statement_, column);
    return value ? std::string(reinterpret_cast<const char*>(value)) : std::string();
  }
  std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
  double real(int column) const { return sqlite3_column_double(statement_, column); }

 private:
  sqlite3* db_;
  sqlite3_stmt* statement_ = nullptr;
};

class SqliteStateStore final : public StateStore {
 public:
  SqliteStateStore(const std::string& path, util::LogThrottle::Clock now)
      : path_(path), errors_(util::LogThrottle::kDefaultInterval, std::move(now)) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      std::string message = db_ ? sqlite_reason(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error("cannot open state store '" + path + "': " + message);
    }
    try {
      sqlite3_busy_timeout(db_, 5000);
      // WAL with synchronous=FULL: a commit returns only once the journal is on disk.
      execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
      execute(kSchema);
    } catch (const SqliteFailure& e) {
      sqlite3_close(db_);
      throw std::runtime_error("cannot open state store '" + path + "': " + e.what());
    }
    // Files written before annotations existed; fails harmlessly when the column is there.
    try_execute("ALTER TABLE migrations ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}'");
    // And before the ledger counted what the response cache saved.
    try_execute("ALTER TABLE usage ADD COLUMN saved_tokens INTEGER NOT NULL DEFAULT 0");
    try_execute("ALTER TABLE usage ADD COLUMN saved_cost REAL NOT NULL DEFAULT 0");
  }
  ~SqliteStateStore() override { sqlite3_close(db_); }

  CommitResult commit(const MigrationRecord& next, const Transition& transition,
                      std::int64_t expected_generation) override {
    std::lock_guard lock(mutex_);
    try {
      execute("BEGIN IMMEDIATE");
      std::int64_t stored_generation = 0;
      {
        Statement select(db_, "SELECT generation FROM migrations WHERE migration = ?");
        select.bind(1, next.migration);
        if (select.next_row()) stored_generation = select.integer(0);
      }
      if (stored_generation != expected_generation) {
        try_execute("ROLLBACK");
        return CommitResult::stale_generation;
      }
      Statement upsert(db_,
                       "INSERT INTO migrations (migration, state, weight, stage, "
                       "stage_started_unix_ms, generation, config_fingerprint, annotations) "
                       "VALUES (?,?,?,?,?,?,?,?) "
                       "ON CONFLICT(migration) DO UPDATE SET state=excluded.state, "
                       "weight=excluded.weight, stage=excluded.stage, "
                       "stage_started_unix_ms=excluded.stage_started_unix_ms, "
                       "generation=excluded.generation, config_fingerprint=excluded.config_fingerprint, "
                       "annotations=excluded.annotations");
      upsert.bind(1, next.migration).bind(2, next.state).bind(3, next.weight)
          .bind(4, static_cast<std::int64_t>(next.stage)).bind(5, next.stage_started_unix_ms)
          .bind(6, next.generation).bind(7, next.config_fingerprint).bind(8, next.annotations);
      upsert.run();
      Statement append(db_,
                       "INSERT INTO transitions (migration, generation, at_unix_ms, from_state, "
                       "to_state, weight_before, weight_after, trigger, detail) "
                       "VALUES (?,?,?,?,?,?,?,?,?)");
      append.bind(1, transition.migration).bind(2, transition.generation)
          .bind(3, transition.at_unix_ms).bind(4, transition.from_state)
          .bind(5, transition.to_state).bind(6, transition.weight_before)
          .bind(7, transition.weight_after).bind(8, transition.trigger)
          .bind(9, transition.detail);
      append.run();
      execute("COMMIT");
    } catch (const SqliteFailure& e) {
      try_execute("ROLLBACK");
      report_write_failure("journal migration '" + next.migration + "'", e.what());
      return CommitResult::failed;
    }
    return CommitResult::committed;
  }

  std::optional<MigrationRecord> load(std::string_view migration) override {
    return read("load migration '" + std::string(migration) + "'",
                [&] { return load_unguarded(migration); });
  }

  std::vector<Transition> history(std::string_view migration, std::size_t limit) override {
    return read("read the history of migration '" + std::string(migration) + "'",
                [&] { return history_unguarded(migration, limit); });
  }

  std::vector<ShadowPair> shadow_pairs(std::string_view migration, std::size_t limit) override {
    return read("read the shadow pairs of migration '" + std::string(migration) + "'",
                [&] { return shadow_pairs_unguarded(migration, limit); });
  }

  std::vector<UsageRow> usage(std::int64_t from_unix_ms, std::int64_t to_unix_ms) override {
    return read("read usage", [&] { return usage_unguarded(from_unix_ms, to_unix_ms); });
  }

  void record_shadow_pairs(const std::vector<ShadowPair>& pairs, std::size_t retention) override {
    if (pairs.empty()) return;
    write("record shadow pairs", [&] { record_shadow_pairs_unguarded(pairs, retention); });
  }

  void record_usage(const std::vector<UsageRow>& rows) override {
    if (rows.empty()) return;
    write("record usage", [&] { record_usage_unguarded(rows); });
  }

 private:
  // Runs `body` under the connection's lock; a failure leaves as an exception naming the file,
  // what was being read and SQLite's reason.
  template <typename Body>
  auto read(const std::string& action, Body body) -> decltype(body()) {
    std::lock_guard lock(mutex_);
    try {
      return body();
    } catch (const SqliteFailure& e) {
      throw std::runtime_error(describe_failure(action, e.what()));
    }
  }

  // Runs `body` in one transaction under the connection's lock; a failure rolls it back and is
  // logged (throttled), since the writers are loops that have no one to tell.
  template <typename Body>
  void write(const std::string& action, Body body) {
    std::lock_guard lock(mutex_);
    try {
      execute("BEGIN IMMEDIATE");
      body();
      execute("COMMIT");
    } catch (const SqliteFailure& e) {
      try_execute("ROLLBACK");
      report_write_failure(action, e.what());
    }
  }

  std::string describe_failure(std::string_view action, std::string_view reason) const {
    return "state store '" + path_ + "': cannot " + std::string(action) + ": " +
           std::string(reason);
  }

  void report_write_failure(std::string_view action, std::string_view reason) {
    errors_.error(describe_failure(action, reason));
  }

  std::optional<MigrationRecord> load_unguarded(std::string_view migration) {
    Statement select(db_,
                     "SELECT state, weight, stage, stage_started_unix_ms, generation, "
                     "config_fingerprint, annotations FROM migrations WHERE migration = ?");
    select.bind(1, migration);
    if (!select.next_row()) return std::nullopt;
    MigrationRecord record;
    record.migration = std::string(migration);
    record.state = select.text(0);
    record.weight = select.real(1);
    record.stage = static_cast<int>(select.integer(2));
    record.stage_started_unix_ms = select.integer(3);
    record.generation = select.integer(4);
    record.config_fingerprint = select.text(5);
    record.annotations = select.text(6);
    return record;
  }

  std::vector<Transition> history_unguarded(std::string_view migration, std::size_t limit) {
    Statement select(db_,
                     "SELECT generation, at_unix_ms, from_state, to_state, weight_before, "
                     "weight_after, trigger, detail FROM (SELECT * FROM transitions WHERE "
                     "migration = ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC");
    select.bind(1, migration).bind(2, static_cast<std::int64_t>(limit));
    std::vector<Transition> out;
    while (select.next_row()) {
      Transition t;
      t.migration = std::string(migration);
      t.generation = select.integer(0);
      t.at_unix_ms = select.integer(1);
      t.from_state = select.text(2);
      t.to_state = select.text(3);
      t.weight_before = select.real(4);
      t.weight_after = select.real(5);
      t.trigger = select.text(6);
      t.detail = select.text(7);
      out.push_back(std::move(t));
    }
    return out;
  }

  void record_shadow_pairs_unguarded(const std::vector<ShadowPair>& pairs, std::size_t retention) {
    {
      Statement insert(db_, "INSERT INTO shadow_pairs (" kPairColumns ") VALUES (?,?,?,?,?,?,?,?,?,?,"
                            "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
      std::set<std::string_view> migrations;
      for (const auto& p : pairs) {
        migrations.insert(p.migration);
        insert.reset();
        insert.bind(1, p.migration).bind(2, p.at_unix_ms).bind(3, p.request_id).bind(4, p.model)
            .bind(5, p.streamed).bind(6, p.primary_status).bind(7, p.candidate_status)
            .bind(8, p.candidate_error).bind(9, p.primary_latency_ms)
            .bind(10, p.candidate_latency_ms).bind(11, p.primary_ttft_ms)
            .bind(12, p.candidate_ttft_ms).bind(13, p.primary_prompt_tokens)
            .bind(14, p.primary_completion_tokens).bind(15, p.candidate_prompt_tokens)
            .bind(16, p.candidate_completion_tokens).bind(17, p.primary_cost)
            .bind(18, p.candidate_cost).bind(19, p.primary_finish_reason)
            .bind(20, p.candidate_finish_reason).bind(21, p.exact_match).bind(22, p.similarity)
            .bind(23, p.rouge_l).bind(24, p.length_ratio).bind(25, p.candidate_json_valid)
            .bind(26, p.json_equal).bind(27, p.tool_calls_equal).bind(28, p.score)
            .bind(29, p.prompt_hash).bind(30, p.primary_output_hash)
            .bind(31, p.candidate_output_hash).bind(32, p.prompt_text).bind(33, p.primary_text)
            .bind(34, p.candidate_text);
        insert.run();
      }
      for (auto migration : migrations) {
        Statement trim(db_,
                       "DELETE FROM shadow_pairs WHERE migration = ?1 AND id <= (SELECT id FROM "
                       "shadow_pairs WHERE migration = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)");
        trim.bind(1, migration).bind(2, static_cast<std::int64_t>(retention));
        trim.run();
      }
    }
  }

  std::vector<ShadowPair> shadow_pairs_unguarded(std::string_view migration, std::size_t limit) {
    Statement select(db_, "SELECT " kPairColumns " FROM (SELECT * FROM shadow_pairs WHERE "
                          "migration = ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC");
    select.bind(1, migration).bind(2, static_cast<std::int64_t>(limit));
    std::vector<ShadowPair> out;
    while (select.next_row()) {
      ShadowPair p;
      int c = 0;
      p.migration = select.text(c++);
      p.at_unix_ms = select.integer(c++);
      p.request_id = select.text(c++);
      p.model = select.text(c++);
      p.streamed = select.integer(c++) != 0;
      p.primary_status = static_cast<int>(select.integer(c++));
      p.candidate_status = static_cast<int>(select.integer(c++));
      p.candidate_error = select.text(c++);
      p.primary_latency_ms = select.real(c++);
      p.candidate_latency_ms = select.real(c++);
      p.primary_ttft_ms = select.real(c++);
      p.candidate_ttft_ms = select.real(c++);
      p.primary_prompt_tokens = select.integer(c++);
      p.primary_completion_tokens = select.integer(c++);
      p.candidate_prompt_tokens = select.integer(c++);
      p.candidate_completion_tokens = select.integer(c++);
      p.primary_cost = select.real(c++);
      p.candidate_cost = select.real(c++);
      p.primary_finish_reason = select.text(c++);
      p.candidate_finish_reason = select.text(c++);
      p.exact_match = select.integer(c++) != 0;
      p.similarity = select.real(c++);
      p.rouge_l = select.real(c++);
      p.length_ratio = select.real(c++);
      p.candidate_json_valid = static_cast<int>(select.integer(c++));
      p.json_equal = static_cast<int>(select.integer(c++));
      p.tool_calls_equal = static_cast<int>(select.integer(c++));
      p.score = select.real(c++);
      p.prompt_hash = select.text(c++);
      p.primary_output_hash = select.text(c++);
      p.candidate_output_hash = select.text(c++);
      p.prompt_text = select.text(c++);
      p.primary_text = select.text(c++);
      p.candidate_text = select.text(c++);
      out.push_back(std::move(p));
    }
    return out;
  }

  void record_usage_unguarded(const std::vector<UsageRow>& rows) {
    {
      Statement upsert(db_,
                       "INSERT INTO usage (minute_unix_ms, provider, model, provider_model, client_key, "
                       "traffic, requests, errors, prompt_tokens, cached_prompt_tokens, "
                       "completion_tokens, cost, currency, saved_tokens, saved_cost) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                       "requests = requests + excluded.requests, errors = errors + excluded.errors, "
                       "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                       "cached_prompt_tokens = cached_prompt_tokens + excluded.cached_prompt_tokens, "
                       "completion_tokens = completion_tokens + excluded.completion_tokens, "
                       "cost = cost + excluded.cost, "
                       "saved_tokens = saved_tokens + excluded.saved_tokens, "
                       "saved_cost = saved_cost + excluded.saved_cost, "
                       "currency = CASE WHEN currency = '' THEN excluded.currency ELSE currency END");
      for (const auto& r : rows) {
        upsert.reset();
        upsert.bind(1, r.minute_unix_ms).bind(2, r.provider).bind(3, r.model)
            .bind(4, r.provider_model).bind(5, r.client_key).bind(6, r.traffic)
            .bind(7, r.requests).bind(8, r.errors).bind(9, r.prompt_tokens)
            .bind(10, r.cached_prompt_tokens).bind(11, r.completion_tokens).bind(12, r.cost)
            .bind(13, r.currency).bind(14, r.saved_tokens).bind(15, r.saved_cost);
        upsert.run();
      }
    }
  }

  std::vector<UsageRow> usage_unguarded(std::int64_t from_unix_ms, std::int64_t to_unix_ms) {
    Statement select(db_,
                     "SELECT minute_unix_ms, provider, model, provider_model, client_key, traffic, "
                     "requests, errors, prompt_tokens, cached_prompt_tokens, completion_tokens, cost, "
                     "currency, saved_tokens, saved_cost FROM usage WHERE minute_unix_ms >= ? AND minute_unix_ms < ? "
                     "ORDER BY minute_unix_ms, provider, model, client_key, traffic");
    select.bind(1, from_unix_ms).bind(2, to_unix_ms);
    std::vector<UsageRow> out;
    while (select.next_row()) {
      UsageRow r;
      r.minute_unix_ms = select.integer(0);
      r.provider = select.text(1);
      r.model = select.text(2);
      r.provider_model = select.text(3);
      r.client_key = select.text(4);
      r.traffic = select.text(5);
      r.requests = select.integer(6);
      r.errors = select.integer(7);
      r.prompt_tokens = select.integer(8);
      r.cached_prompt_tokens = select.integer(9);
      r.completion_tokens = select.integer(10);
      r.cost = select.real(11);
      r.currency = select.text(12);
      r.saved_tokens = select.integer(13);
      r.saved_cost = select.real(14);
      out.push_back(std::move(r));
    }
    return out;
  }

  void execute(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) throw SqliteFailure(db_);
  }
  bool try_execute(const char* sql) {
    return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
  }

  // The controller, the admin thread and a restart's replay may call concurrently; SQLite's
  // connection is not to be shared between threads unguarded.
  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  const std::string path_;
  util::LogThrottle errors_;
};

}  // namespace

std::unique_ptr<StateStore> open_sqlite_store(const std::string& path,
                                              util::LogThrottle::Clock now) {
  return std::make_unique<SqliteStateStore>(path, std::move(now));
}

std::optional<std::string> sqlite_store_problem(const std::string& path) {
  if (path == ":memory:") return std::nullopt;
  const std::filesystem::path file(path);
  const auto directory = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  std::error_code ignored;
  if (!std::filesystem::is_directory(directory, ignored)) {
    return "directory '" + directory.string() + "' does not exist";
  }
  if (::access(directory.c_str(), W_OK | X_OK) != 0) {
    return "directory '" + directory.string() + "' is not writable: " + std::strerror(errno);
  }
  if (!std::filesystem::exists(file, ignored)) return std::nullopt;
  if (std::filesystem::is_directory(file, ignored)) return "it is a directory";
  // Without SQLITE_OPEN_CREATE nothing is created; reading the schema is what tells a database
  // from any other file.
  sqlite3* db = nullptr;
  std::optional<std::string> problem;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    problem = db ? sqlite_reason(db) : "out of memory";
  } else if (sqlite3_db_readonly(db, "main") == 1) {
    problem = "the file is not writable";
  } else if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
             SQLITE_OK) {
    problem = sqlite_reason(db);
  }
  sqlite3_close(db);
  return problem;
}

}  // namespace cutover::store
