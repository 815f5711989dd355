#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "store/state_store.h"

namespace cutover::store {
namespace {

class SqliteStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("cutover-store-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    remove_files();
  }
  void TearDown() override { remove_files(); }
  void remove_files() {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::filesystem::remove(path_.string() + suffix);
    }
  }

  static MigrationRecord record(std::int64_t generation, double weight, int stage) {
    return MigrationRecord{"gpt-4o-to-relay", "canary", weight, stage, 1700000000000 + stage,
                           generation, "candidate-v1"};
  }
  static Transition transition(std::int64_t generation, double before, double after,
                               std::string trigger) {
    return Transition{"gpt-4o-to-relay", generation, 1700000000000 + generation, "canary",
                      "canary", before, after, std::move(trigger), R"({"error_rate":0.001})"};
  }

  std::filesystem::path path_;
};

TEST_F(SqliteStateStoreTest, CommittedStateSurvivesARestart) {
  {
    auto store = open_sqlite_store(path_.string());
    ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "operator:start"), 0),
              CommitResult::committed);
    ASSERT_EQ(store->commit(record(2, 0.25, 1), transition(2, 0.05, 0.25, "gates:pass"), 1),
              CommitResult::committed);
  }
  auto reopened = open_sqlite_store(path_.string());
  auto loaded = reopened->load("gpt-4o-to-relay");
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->generation, 2);
  EXPECT_DOUBLE_EQ(loaded->weight, 0.25);
  EXPECT_EQ(loaded->stage, 1);
  EXPECT_EQ(loaded->stage_started_unix_ms, 1700000000001) << "the dwell clock is not reset";
  EXPECT_EQ(loaded->config_fingerprint, "candidate-v1");
  auto journal = reopened->history("gpt-4o-to-relay", 10);
  ASSERT_EQ(journal.size(), 2u);
  EXPECT_EQ(journal[0].trigger, "operator:start");
  EXPECT_EQ(journal[1].trigger, "gates:pass");
  EXPECT_DOUBLE_EQ(journal[1].weight_before, 0.05);
  EXPECT_EQ(journal[1].detail, R"({"error_rate":0.001})");
}

TEST_F(SqliteStateStoreTest, StaleGenerationIsRefusedAndNothingIsWritten) {
  auto store = open_sqlite_store(path_.string());
  ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "operator:start"), 0),
            CommitResult::committed);
  EXPECT_EQ(store->commit(record(2, 0.5, 2), transition(2, 0.05, 0.5, "operator:late"), 0),
            CommitResult::stale_generation);
  EXPECT_EQ(store->load("gpt-4o-to-relay")->generation, 1);
  EXPECT_EQ(store->history("gpt-4o-to-relay", 10).size(), 1u);
}

TEST_F(SqliteStateStoreTest, ConcurrentCommandsOnTheSameGenerationApplyOnce) {
  auto store = open_sqlite_store(path_.string());
  ASSERT_EQ(store->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "operator:start"), 0),
            CommitResult::committed);
  std::atomic<int> committed{0}, stale{0};
  std::vector<std::thread> operators;
  for (int i = 0; i < 4; ++i) {
    operators.emplace_back([&, i] {
      auto result = store->commit(record(2, 0.1 * i, 1),
                                  transition(2, 0.05, 0.1 * i, "operator:" + std::to_string(i)), 1);
      if (result == CommitResult::committed) ++committed;
      if (result == CommitResult::stale_generation) ++stale;
    });
  }
  for (auto& thread : operators) thread.join();
  EXPECT_EQ(committed.load(), 1);
  EXPECT_EQ(stale.load(), 3);
  EXPECT_EQ(store->history("gpt-4o-to-relay", 10).size(), 2u);
}

TEST_F(SqliteStateStoreTest, TwoConnectionsToOneFileStillCompareAndSwap) {
  auto first = open_sqlite_store(path_.string());
  auto second = open_sqlite_store(path_.string());
  ASSERT_EQ(first->commit(record(1, 0.05, 0), transition(1, 0, 0.05, "operator:start"), 0),
            CommitResult::committed);
  EXPECT_EQ(second->commit(record(2, 0.25, 1), transition(2, 0.05, 0.25, "replica-b"), 1),
            CommitResult::committed);
  EXPECT_EQ(first->commit(record(2, 0.5, 1), transition(2, 0.05, 0.5, "replica-a"), 1),
            CommitResult::stale_generation) << "replica a saw generation 1, but b moved on";
  EXPECT_DOUBLE_EQ(first->load("gpt-4o-to-relay")->weight, 0.25);
}

TEST_F(SqliteStateStoreTest, HistoryReturnsTheNewestOldestFirst) {
  auto store = open_sqlite_store(path_.string());
  for (int g = 1; g <= 5; ++g) {
    ASSERT_EQ(store->commit(record(g, 0.1 * g, g), transition(g, 0.1 * (g - 1), 0.1 * g, "step"), g - 1),
              CommitResult::committed);
  }
  auto last_two = store->history("gpt-4o-to-relay", 2);
  ASSERT_EQ(last_two.size(), 2u);
  EXPECT_EQ(last_two[0].generation, 4);
  EXPECT_EQ(last_two[1].generation, 5);
  EXPECT_FALSE(store->load("another-migration"));
}

TEST_F(SqliteStateStoreTest, UnopenablePathThrowsWithAMessage) {
  EXPECT_THROW(open_sqlite_store("/nonexistent-directory/state.db"), std::runtime_error);
}

TEST_F(SqliteStateStoreTest, ShadowPairsKeepOnlyTheNewestPerMigration) {
  auto store = open_sqlite_store(path_.string());
  std::vector<ShadowPair> pairs;
  for (int i = 0; i < 7; ++i) {
    ShadowPair pair;
    pair.migration = i % 2 ? "a" : "b";
    pair.request_id = "r" + std::to_string(i);
    pair.score = i / 10.0;
    pair.candidate_status = 200;
    pairs.push_back(pair);
  }
  store->record_shadow_pairs(pairs, 2);
  const auto a = store->shadow_pairs("a", 100);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].request_id, "r3");
  EXPECT_EQ(a[1].request_id, "r5");
  EXPECT_DOUBLE_EQ(a[1].score, 0.5);
  EXPECT_EQ(store->shadow_pairs("b", 100).size(), 2u);
  // The migrations' records are untouched by pair writes.
  EXPECT_FALSE(store->load("a"));
}

TEST_F(SqliteStateStoreTest, UsageRowsWithTheSameKeyAddUpAcrossWrites) {
  auto store = open_sqlite_store(path_.string());
  UsageRow row;
  row.minute_unix_ms = 1'700'000'040'000;
  row.provider = "openai";
  row.model = "gpt-4o";
  row.provider_model = "gpt-4o-2024";
  row.client_key = "checkout";
  row.requests = 3;
  row.prompt_tokens = 30;
  row.completion_tokens = 12;
  row.cost = 0.5;
  row.currency = "USD";
  store->record_usage({row});
  store->record_usage({row});
  row.traffic = "shadow";
  store->record_usage({row});
  const auto rows = store->usage(0, 2'000'000'000'000);
  ASSERT_EQ(rows.size(), 2u);
  const auto& live = rows[0].traffic == "live" ? rows[0] : rows[1];
  EXPECT_EQ(live.requests, 6);
  EXPECT_EQ(live.prompt_tokens, 60);
  EXPECT_DOUBLE_EQ(live.cost, 1.0);
  EXPECT_EQ(live.currency, "USD");
  EXPECT_TRUE(store->usage(1'700'000'100'000, 2'000'000'000'000).empty());
}

// What spdlog's default logger writes while it lives, one message a line.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_)) {
    sink_->set_pattern("%v");
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::istringstream in(stream_.str());
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

 private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// Makes every later write of usage fail the way a full disk would, from a second connection.
void refuse_usage_writes(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TRIGGER refuse_usage BEFORE INSERT ON usage BEGIN "
                         "SELECT RAISE(ABORT, 'simulated: database or disk is full'); END;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
}

TEST_F(SqliteStateStoreTest, AFailedWriteIsLoggedWithThePathAndSqlitesReason) {
  auto store = open_sqlite_store(path_.string());
  refuse_usage_writes(path_);
  LogCapture log;
  store->record_usage({UsageRow{.minute_unix_ms = 60'000, .provider = "openai", .requests = 1}});
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("state store '" + path_.string() + "'"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("cannot record usage"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("simulated: database or disk is full"), std::string::npos) << lines[0];
}

TEST_F(SqliteStateStoreTest, APersistentWriteFailureIsLoggedOnceAMinuteWithItsRepeats) {
  auto now = std::chrono::steady_clock::time_point{};
  auto store = open_sqlite_store(path_.string(), [&now] { return now; });
  refuse_usage_writes(path_);
  LogCapture log;
  const UsageRow row{.minute_unix_ms = 60'000, .provider = "openai", .requests = 1};
  // A flush every 250 ms for a minute.
  for (int i = 0; i < 240; ++i) {
    store->record_usage({row});
    now += std::chrono::milliseconds(250);
  }
  store->record_usage({row});
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].find("repeated"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("repeated 239 more times"), std::string::npos) << lines[1];
}

TEST_F(SqliteStateStoreTest, AFailedReadNamesThePathAndSqlitesReason) {
  std::ofstream(path_) << "not a database, only text that is long enough to have a header";
  try {
    auto store = open_sqlite_store(path_.string());
    FAIL() << "a text file opened as a store";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path_.string()), std::string::npos) << message;
    EXPECT_NE(message.find("file is not a database"), std::string::npos) << message;
  }
}

TEST_F(SqliteStateStoreTest, ProblemCheckAcceptsUsableStoresWithoutCreatingOne) {
  EXPECT_EQ(sqlite_store_problem(":memory:"), std::nullopt);
  EXPECT_EQ(sqlite_store_problem(path_.string()), std::nullopt);
  EXPECT_FALSE(std::filesystem::exists(path_)) << "checking created the file";
  open_sqlite_store(path_.string());
  EXPECT_EQ(sqlite_store_problem(path_.string()), std::nullopt);
}

TEST_F(SqliteStateStoreTest, ProblemCheckNamesAMissingDirectory) {
  EXPECT_EQ(sqlite_store_problem("/nonexistent-directory/state.db"),
            "directory '/nonexistent-directory' does not exist");
}

TEST_F(SqliteStateStoreTest, ProblemCheckRefusesAFileThatIsNotADatabase) {
  std::ofstream(path_) << "not a database, only text that is long enough to have a header";
  const auto problem = sqlite_store_problem(path_.string());
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("file is not a database"), std::string::npos) << *problem;
}

}  // namespace
}  // namespace cutover::store
