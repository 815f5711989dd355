// `state_store`: a SQLite path as before, a redis:// URL, or a map with a URL and fleet settings.
#include <gtest/gtest.h>

#include "config/config.h"

namespace cutover::config {
namespace {

const char* kBase = R"(
listen: 127.0.0.1:9000
auth: {allow_unauthenticated: true}
providers:
  primary: {base_url: https://api.example.com/v1, api_key_env: KEY, models: {gpt-4: gpt-4.1}}
routes:
  - {models: [gpt-4], provider: primary}
)";

LoadResult load(const std::string& state_store,
                std::map<std::string, std::string> environment = {{"KEY", "k"}}) {
  return load_from_string(
      std::string(kBase) + "state_store: " + state_store + "\n",
      [environment](const std::string& name) -> std::optional<std::string> {
        auto found = environment.find(name);
        if (found == environment.end()) return std::nullopt;
        return found->second;
      },
      "<config>", "/srv/cutover");
}

std::string all_errors(const LoadResult& result) {
  std::string out;
  for (const auto& error : result.errors) out += error + "\n";
  return out;
}

TEST(StateStoreConfigTest, APlainPathStaysASqliteFileBesideTheConfiguration) {
  auto result = load("state.db");
  ASSERT_TRUE(result.config) << all_errors(result);
  EXPECT_FALSE(result.config->redis);
  EXPECT_EQ(result.config->state_store, "/srv/cutover/state.db");
}

TEST(StateStoreConfigTest, ARedisUrlGivesHostPortDatabaseUserAndPassword) {
  auto result = load("redis://alice:s%40cret@10.0.0.7:6390/2");
  ASSERT_TRUE(result.config) << all_errors(result);
  const auto& redis = *result.config->redis;
  EXPECT_EQ(redis.host, "10.0.0.7");
  EXPECT_EQ(redis.port, 6390);
  EXPECT_EQ(redis.database, 2);
  EXPECT_EQ(redis.user, "alice");
  EXPECT_EQ(redis.password, "s@cret");
  EXPECT_EQ(redis.key_prefix, "cutover");
  EXPECT_EQ(redis.display_url, "redis://alice@10.0.0.7:6390/2");
  EXPECT_FALSE(redis.replica.empty());
  // Shadow pairs and usage stay in a local file.
  EXPECT_EQ(result.config->state_store, "/srv/cutover/cutover-local.db");
}

TEST(StateStoreConfigTest, ARedisUrlWithoutPortOrDatabaseTakesTheDefaults) {
  auto result = load("redis://redis.internal");
  ASSERT_TRUE(result.config) << all_errors(result);
  EXPECT_EQ(result.config->redis->port, 6379);
  EXPECT_EQ(result.config->redis->database, 0);
  EXPECT_TRUE(result.config->redis->password.empty());
}

TEST(StateStoreConfigTest, TheMapFormTakesPasswordFromTheEnvironmentAndFleetSettings) {
  auto result = load(
      "{url: 'redis://cutover@127.0.0.1:6379/1', password_env: REDIS_PASSWORD, key_prefix: team-a, "
      "connect_timeout: 200ms, command_timeout: 100ms, lease: 5s, replica: pod-1, local_file: "
      "local.db}",
      {{"KEY", "k"}, {"REDIS_PASSWORD", "from-env"}});
  ASSERT_TRUE(result.config) << all_errors(result);
  const auto& redis = *result.config->redis;
  EXPECT_EQ(redis.user, "cutover");
  EXPECT_EQ(redis.password, "from-env");
  EXPECT_EQ(redis.key_prefix, "team-a");
  EXPECT_EQ(redis.connect_timeout, std::chrono::milliseconds(200));
  EXPECT_EQ(redis.command_timeout, std::chrono::milliseconds(100));
  EXPECT_EQ(redis.lease, std::chrono::seconds(5));
  EXPECT_EQ(redis.replica, "pod-1");
  EXPECT_EQ(result.config->state_store, "/srv/cutover/local.db");
}

TEST(StateStoreConfigTest, TheReplicaNameCanComeFromTheEnvironmentAndOutageSettings) {
  auto result = load("{url: 'redis://127.0.0.1:6379', replica_env: POD_NAME, primary_only_after: 2m}",
                     {{"KEY", "k"}, {"POD_NAME", "cutover-7d9f-x2k4"}});
  ASSERT_TRUE(result.config) << all_errors(result);
  EXPECT_EQ(result.config->redis->replica, "cutover-7d9f-x2k4");
  EXPECT_EQ(result.config->redis->primary_only_after, std::chrono::minutes(2));
  EXPECT_EQ(load("{url: 'redis://127.0.0.1:6379'}").config->redis->primary_only_after,
            std::chrono::seconds(60));
  auto unset = load("{url: 'redis://127.0.0.1:6379', replica_env: POD_NAME}");
  EXPECT_FALSE(unset.config);
  EXPECT_NE(all_errors(unset).find("POD_NAME"), std::string::npos) << all_errors(unset);
  auto both = load("{url: 'redis://127.0.0.1:6379', replica: a, replica_env: POD_NAME}",
                   {{"KEY", "k"}, {"POD_NAME", "b"}});
  EXPECT_FALSE(both.config);
  EXPECT_NE(all_errors(both).find("not both"), std::string::npos) << all_errors(both);
}

TEST(StateStoreConfigTest, MalformedRedisUrlsAreConfigurationErrors) {
  for (const char* url :
       {"'redis://'", "'redis://host:port'", "'redis://host:6379/abc'",
        "'redis://host:6379/0?tls=1'", "'redis://host:6379/99'", "'redis://host:70000'"}) {
    auto result = load(url);
    EXPECT_FALSE(result.config) << url;
    EXPECT_NE(all_errors(result).find("state_store"), std::string::npos)
        << url << ": " << all_errors(result);
  }
}

TEST(StateStoreConfigTest, AMissingPasswordVariableIsAConfigurationError) {
  auto result = load("{url: 'redis://127.0.0.1:6379', password_env: REDIS_PASSWORD}");
  EXPECT_FALSE(result.config);
  EXPECT_NE(all_errors(result).find("REDIS_PASSWORD"), std::string::npos) << all_errors(result);
}

TEST(StateStoreConfigTest, TheMapFormNeedsARedisUrlAndKnownKeys) {
  EXPECT_FALSE(load("{url: state.db}").config);
  EXPECT_FALSE(load("{key_prefix: x}").config);
  auto result = load("{url: 'redis://127.0.0.1', prefix: x}");
  EXPECT_FALSE(result.config);
  EXPECT_NE(all_errors(result).find("unknown key"), std::string::npos) << all_errors(result);
  EXPECT_FALSE(load("{url: 'redis://127.0.0.1', key_prefix: 'a:b'}").config);
  EXPECT_FALSE(load("{url: 'redis://127.0.0.1', lease: 200ms}").config);
}

}  // namespace
}  // namespace cutover::config
