// The `cutover` binary run as a subprocess: what an operator sees from the command line.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "store/state_store.h"

namespace cutover::testing {
namespace {

struct Finished {
  int exit_status = -1;
  std::string output;  // stdout and stderr together
};

// Runs the binary with `arguments` under `environment` ("NAME=value ...", prepended to the
// command through env(1), which starts from an empty environment with -i).
Finished run_cutover(const std::string& arguments, const std::string& environment = "") {
  const std::string command =
      "env -i " + environment + " " + CUTOVER_BINARY + " " + arguments + " 2>&1";
  Finished finished;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return finished;
  char chunk[4096];
  while (const auto read = std::fread(chunk, 1, sizeof chunk, pipe))
    finished.output.append(chunk, read);
  const int status = ::pclose(pipe);
  finished.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return finished;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("cutover-cli-" + std::to_string(::getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  std::string write_config(const std::string& yaml) {
    const auto path = directory_ / "cutover.yaml";
    std::ofstream(path) << yaml;
    return path.string();
  }

  std::filesystem::path directory_;
};

// Every secret comes from a variable that the commands below leave unset.
std::string config_with_secrets_from_environment(const std::string& state_store) {
  return R"(
auth: {client_keys: [{name: app, key_env: UNSET_CLIENT_KEY}]}
admin: {listen: 127.0.0.1:0, token_env: UNSET_ADMIN_TOKEN}
state_store: )" +
         state_store + R"(
providers:
  openai:
    base_url: https://api.openai.com/v1
    api_key_env: UNSET_OPENAI_KEY
    models: {gpt-4o: gpt-4o-2024-08-06}
  relay:
    base_url: https://relay.example.com/v1
    api_key_env: UNSET_RELAY_KEY
    models: {gpt-4o: relay-4o}
    prices: {relay-4o: {input: 1, output: 4, currency: EUR}}
routes:
  - {models: [gpt-4o], provider: openai}
migrations:
  - name: openai-to-relay
    models: [gpt-4o]
    primary: openai
    candidate: relay
    stages: [{weight: 100%}]
)";
}

TEST_F(CliTest, VersionNamesTheAllocatorThatServesMalloc) {
  const auto finished = run_cutover("version");
  ASSERT_EQ(finished.exit_status, 0) << finished.output;
#ifdef CUTOVER_EXPECT_MIMALLOC
  // Linked and in place of malloc: no ", linked but not in place of malloc" after the version.
  EXPECT_TRUE(std::regex_search(finished.output, std::regex("allocator: mimalloc [0-9.]+\n")))
      << finished.output;
#else
  EXPECT_NE(finished.output.find("allocator: glibc malloc\n"), std::string::npos) << finished.output;
#endif
}

TEST_F(CliTest, ReportsLoadAConfigWhoseSecretsAreNotInTheEnvironment) {
  const auto store_path = (directory_ / "state.db").string();
  {
    auto store = store::open_sqlite_store(store_path);
    store->record_usage({store::UsageRow{.minute_unix_ms = 1'700'000'040'000,
                                         .provider = "openai",
                                         .model = "gpt-4o",
                                         .requests = 3}});
    ASSERT_EQ(store->commit(
                  store::MigrationRecord{"openai-to-relay", "shadow", 0, 0, 0, 1, "f"},
                  store::Transition{"openai-to-relay", 1, 0, "", "shadow", 0, 0, "start", "{}"}, 0),
              store::CommitResult::committed);
  }
  const auto config = write_config(config_with_secrets_from_environment(store_path));

  const auto usage = run_cutover("report usage --config " + config + " --from 2020-01-01");
  EXPECT_EQ(usage.exit_status, 0) << usage.output;
  EXPECT_NE(usage.output.find("openai,gpt-4o,3,"), std::string::npos) << usage.output;

  const auto migration = run_cutover("report migration openai-to-relay --config " + config);
  EXPECT_EQ(migration.exit_status, 0) << migration.output;
  EXPECT_NE(migration.output.find("shadow"), std::string::npos) << migration.output;
}

TEST_F(CliTest, ServeStillRequiresTheSecretsAReportDoesNot) {
  const auto config =
      write_config(config_with_secrets_from_environment((directory_ / "state.db").string()));
  const auto check = run_cutover("serve --check-config --config " + config);
  EXPECT_EQ(check.exit_status, 2) << check.output;
  EXPECT_NE(check.output.find("UNSET_ADMIN_TOKEN is not set"), std::string::npos) << check.output;
}

TEST_F(CliTest, CheckConfigRefusesAStateStoreInAMissingDirectory) {
  const auto config = write_config(R"(
auth: {allow_unauthenticated: true}
state_store: /nonexistent-cutover-directory/state.db
providers: {p: {base_url: "http://127.0.0.1:1/v1", no_api_key: true, models: {m: pm}}}
routes: [{models: [m], provider: p}]
)");
  const auto check = run_cutover("serve --check-config --config " + config);
  EXPECT_EQ(check.exit_status, 2) << check.output;
  EXPECT_NE(check.output.find("state_store: cannot use '/nonexistent-cutover-directory/state.db': "
                              "directory '/nonexistent-cutover-directory' does not exist"),
            std::string::npos)
      << check.output;
}

TEST_F(CliTest, CheckConfigRefusesAStateStoreThatIsNotADatabase) {
  const auto store_path = (directory_ / "notes.txt").string();
  std::ofstream(store_path) << "these are an operator's notes, not a SQLite database at all";
  const auto config = write_config(R"(
auth: {allow_unauthenticated: true}
state_store: )" + store_path + R"(
providers: {p: {base_url: "http://127.0.0.1:1/v1", no_api_key: true, models: {m: pm}}}
routes: [{models: [m], provider: p}]
)");
  const auto check = run_cutover("serve --check-config --config " + config);
  EXPECT_EQ(check.exit_status, 2) << check.output;
  EXPECT_NE(check.output.find("cannot use '" + store_path + "': file is not a database"),
            std::string::npos)
      << check.output;
}

TEST_F(CliTest, CheckConfigAcceptsAStateStoreItWouldCreate) {
  const auto store_path = (directory_ / "state.db").string();
  const auto config = write_config(R"(
auth: {allow_unauthenticated: true}
state_store: )" + store_path + R"(
providers: {p: {base_url: "http://127.0.0.1:1/v1", no_api_key: true, models: {m: pm}}}
routes: [{models: [m], provider: p}]
)");
  const auto check = run_cutover("serve --check-config --config " + config);
  EXPECT_EQ(check.exit_status, 0) << check.output;
  EXPECT_FALSE(std::filesystem::exists(store_path)) << "a check must not create the store";
}

TEST_F(CliTest, CheckConfigWarnsAboutAnAdminListenerOnEveryAddress) {
  const auto config = write_config(R"(
auth: {allow_unauthenticated: true}
admin: {listen: 0.0.0.0:9090, token_env: ADMIN_TOKEN}
providers: {p: {base_url: "http://127.0.0.1:1/v1", no_api_key: true, models: {m: pm}}}
routes: [{models: [m], provider: p}]
)");
  const auto check =
      run_cutover("serve --check-config --config " + config, "ADMIN_TOKEN=admin-token-0123456789");
  EXPECT_EQ(check.exit_status, 0) << check.output;
  EXPECT_NE(check.output.find("0.0.0.0 is not a loopback address"), std::string::npos)
      << check.output;
}

// A port nothing listens on: bound, then released.
std::uint16_t closed_port() {
  boost::asio::io_context context;
  boost::asio::ip::tcp::acceptor acceptor(context, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

TEST_F(CliTest, CtlSaysPlainlyWhenTheAdminApiIsNotListening) {
  const auto port = std::to_string(closed_port());
  const auto ctl = run_cutover("ctl --admin-url http://127.0.0.1:" + port + " migrations",
                               "CUTOVER_ADMIN_TOKEN=admin-token-0123456789");
  EXPECT_NE(ctl.exit_status, 0);
  EXPECT_EQ(ctl.output, "cutover ctl: cannot reach the admin API at 127.0.0.1:" + port +
                            ": connection refused (is the gateway running with an admin "
                            "section?)\n");
}

}  // namespace
}  // namespace cutover::testing
