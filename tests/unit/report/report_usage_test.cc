// `cutover report usage` over several replicas' files: the fleet's usage is the sum of theirs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <sstream>

#include "report/report.h"
#include "store/state_store.h"

namespace cutover::report {
namespace {

namespace json = boost::json;

store::UsageRow row(std::string traffic, std::int64_t requests, std::int64_t prompt, double cost) {
  store::UsageRow r;
  r.minute_unix_ms = 1'700'000'040'000;
  r.provider = "primary";
  r.model = "gpt-4";
  r.provider_model = "gpt-4.1";
  r.client_key = "app";
  r.traffic = std::move(traffic);
  r.requests = requests;
  r.prompt_tokens = prompt;
  r.cost = cost;
  r.currency = "USD";
  if (r.traffic == "cache") {
    r.prompt_tokens = 0;
    r.cost = 0;
    r.saved_tokens = prompt;
    r.saved_cost = cost;
  }
  return r;
}

class ReportUsageTest : public ::testing::Test {
 protected:
  std::string replica_file(const std::string& name, std::vector<store::UsageRow> rows) {
    const auto path = directory_ / (name + ".db");
    store::open_sqlite_store(path.string())->record_usage(rows);
    return path.string();
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  std::filesystem::path directory_ = [] {
    auto path = std::filesystem::temp_directory_path() /
                ("cutover-report-usage-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    return path;
  }();
};

TEST_F(ReportUsageTest, EachReplicasFileAddsUpToTheFleetsUsage) {
  UsageOptions options;
  options.store_paths = {replica_file("r1", {row("live", 3, 300, 0.3), row("cache", 2, 200, 0.2)}),
                         replica_file("r2", {row("live", 5, 500, 0.5)}),
                         replica_file("r3", {row("cache", 1, 100, 0.1)})};
  options.by = {"traffic"};
  options.format = "json";
  std::ostringstream out, error;
  ASSERT_EQ(report_usage(options, out, error), 0) << error.str();
  const auto rows = json::parse(out.str()).as_array();
  ASSERT_EQ(rows.size(), 2u) << out.str();
  for (const auto& entry : rows) {
    if (entry.at("traffic") == "live") {
      EXPECT_EQ(entry.at("requests"), 8);
      EXPECT_EQ(entry.at("prompt_tokens"), 800);
      EXPECT_NEAR(entry.at("cost").as_double(), 0.8, 1e-12);
      EXPECT_EQ(entry.at("saved_tokens"), 0);
    } else {
      EXPECT_EQ(entry.at("traffic"), "cache");
      EXPECT_EQ(entry.at("requests"), 3);
      EXPECT_EQ(entry.at("prompt_tokens"), 0);
      EXPECT_EQ(entry.at("saved_tokens"), 300);
      EXPECT_NEAR(entry.at("saved_cost").as_double(), 0.3, 1e-12);
    }
  }
}

TEST_F(ReportUsageTest, CsvCarriesWhatTheCacheSaved) {
  UsageOptions options;
  options.store_paths = {replica_file("one", {row("cache", 2, 200, 0.2)})};
  options.by = {"provider", "traffic"};
  std::ostringstream out, error;
  ASSERT_EQ(report_usage(options, out, error), 0) << error.str();
  EXPECT_EQ(out.str(),
            "provider,traffic,requests,errors,prompt_tokens,cached_prompt_tokens,completion_tokens,"
            "cost,currency,saved_tokens,saved_cost\n"
            "primary,cache,2,0,0,0,0,0,USD,200,0.2\n");
}

}  // namespace
}  // namespace cutover::report
