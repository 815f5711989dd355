#include <sqlite3.h>

#include <mutex>
#include <stdexcept>

#include "store/state_store.h"

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
  config_fingerprint TEXT NOT NULL
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
)sql";

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &statement_, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db));
    }
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
  Statement& bind(int index, double value) {
    sqlite3_bind_double(statement_, index, value);
    return *this;
  }
  int step() { return sqlite3_step(statement_); }
  std::string text(int column) const {
    const auto* value = sqlite3_column_text(statement_, column);
    return value ? std::string(reinterpret_cast<const char*>(value)) : std::string();
  }
  std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
  double real(int column) const { return sqlite3_column_double(statement_, column); }

 private:
  sqlite3_stmt* statement_ = nullptr;
};

class SqliteStateStore final : public StateStore {
 public:
  explicit SqliteStateStore(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error("cannot open state store '" + path + "': " + message);
    }
    sqlite3_busy_timeout(db_, 5000);
    // WAL with synchronous=FULL: a commit returns only once the journal is on disk.
    execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    execute(kSchema);
  }
  ~SqliteStateStore() override { sqlite3_close(db_); }

  CommitResult commit(const MigrationRecord& next, const Transition& transition,
                      std::int64_t expected_generation) override {
    std::lock_guard lock(mutex_);
    if (!try_execute("BEGIN IMMEDIATE")) return CommitResult::failed;
    try {
      std::int64_t stored_generation = 0;
      {
        Statement select(db_, "SELECT generation FROM migrations WHERE migration = ?");
        select.bind(1, next.migration);
        if (select.step() == SQLITE_ROW) stored_generation = select.integer(0);
      }
      if (stored_generation != expected_generation) {
        try_execute("ROLLBACK");
        return CommitResult::stale_generation;
      }
      Statement upsert(db_,
                       "INSERT INTO migrations (migration, state, weight, stage, "
                       "stage_started_unix_ms, generation, config_fingerprint) VALUES (?,?,?,?,?,?,?) "
                       "ON CONFLICT(migration) DO UPDATE SET state=excluded.state, "
                       "weight=excluded.weight, stage=excluded.stage, "
                       "stage_started_unix_ms=excluded.stage_started_unix_ms, "
                       "generation=excluded.generation, config_fingerprint=excluded.config_fingerprint");
      upsert.bind(1, next.migration).bind(2, next.state).bind(3, next.weight)
          .bind(4, static_cast<std::int64_t>(next.stage)).bind(5, next.stage_started_unix_ms)
          .bind(6, next.generation).bind(7, next.config_fingerprint);
      if (upsert.step() != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
      Statement append(db_,
                       "INSERT INTO transitions (migration, generation, at_unix_ms, from_state, "
                       "to_state, weight_before, weight_after, trigger, detail) "
                       "VALUES (?,?,?,?,?,?,?,?,?)");
      append.bind(1, transition.migration).bind(2, transition.generation)
          .bind(3, transition.at_unix_ms).bind(4, transition.from_state)
          .bind(5, transition.to_state).bind(6, transition.weight_before)
          .bind(7, transition.weight_after).bind(8, transition.trigger)
          .bind(9, transition.detail);
      if (append.step() != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
    } catch (const std::exception&) {
      try_execute("ROLLBACK");
      return CommitResult::failed;
    }
    return try_execute("COMMIT") ? CommitResult::committed : CommitResult::failed;
  }

  std::optional<MigrationRecord> load(std::string_view migration) override {
    std::lock_guard lock(mutex_);
    Statement select(db_,
                     "SELECT state, weight, stage, stage_started_unix_ms, generation, "
                     "config_fingerprint FROM migrations WHERE migration = ?");
    select.bind(1, migration);
    if (select.step() != SQLITE_ROW) return std::nullopt;
    MigrationRecord record;
    record.migration = std::string(migration);
    record.state = select.text(0);
    record.weight = select.real(1);
    record.stage = static_cast<int>(select.integer(2));
    record.stage_started_unix_ms = select.integer(3);
    record.generation = select.integer(4);
    record.config_fingerprint = select.text(5);
    return record;
  }

  std::vector<Transition> history(std::string_view migration, std::size_t limit) override {
    std::lock_guard lock(mutex_);
    Statement select(db_,
                     "SELECT generation, at_unix_ms, from_state, to_state, weight_before, "
                     "weight_after, trigger, detail FROM (SELECT * FROM transitions WHERE "
                     "migration = ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC");
    select.bind(1, migration).bind(2, static_cast<std::int64_t>(limit));
    std::vector<Transition> out;
    while (select.step() == SQLITE_ROW) {
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

 private:
  void execute(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error ? error : "unknown error";
      sqlite3_free(error);
      throw std::runtime_error("sqlite: " + message);
    }
  }
  bool try_execute(const char* sql) {
    return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
  }

  // The controller, the admin thread and a restart's replay may call concurrently; SQLite's
  // connection is not to be shared between threads unguarded.
  std::mutex mutex_;
  sqlite3* db_ = nullptr;
};

}  // namespace

std::unique_ptr<StateStore> open_sqlite_store(const std::string& path) {
  return std::make_unique<SqliteStateStore>(path);
}

}  // namespace cutover::store
