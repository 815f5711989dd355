#include "config/config.h"

#include <gtest/gtest.h>

namespace cutover::config {
namespace {

EnvironmentLookup fake_environment(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto found = values.find(name);
    if (found == values.end()) return std::nullopt;
    return found->second;
  };
}

const char* kValid = R"(
listen: 127.0.0.1:9000
auth:
  client_keys:
    - name: app
      key_env: CLIENT_KEY
providers:
  primary:
    base_url: https://api.example.com/v1/
    api_key_env: PRIMARY_KEY
    models:
      gpt-4: gpt-4.1
      deepseek-chat: deepseek-v3.2
    timeouts: {connect: 2s, first_byte: 30s, idle: 500ms, total: 2m}
    max_connections: 32
routes:
  - models: [gpt-4, deepseek-chat]
    provider: primary
)";

TEST(ConfigTest, ValidFileLoadsWithEveryField) {
  auto result = load_from_string(kValid, fake_environment({{"CLIENT_KEY", "ck"}, {"PRIMARY_KEY", "pk"}}));
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  const auto& config = *result.config;
  EXPECT_EQ(config.listen.port, 9000);
  ASSERT_EQ(config.providers.size(), 1u);
  const auto& provider = config.providers.front();
  EXPECT_TRUE(provider.endpoint.tls);
  EXPECT_EQ(provider.endpoint.host, "api.example.com");
  EXPECT_EQ(provider.endpoint.port, 443);
  EXPECT_EQ(provider.endpoint.base_path, "/v1");
  EXPECT_EQ(provider.api_key, "pk");
  EXPECT_EQ(provider.models.at("gpt-4"), "gpt-4.1");
  EXPECT_EQ(provider.timeouts.connect, std::chrono::seconds(2));
  EXPECT_EQ(provider.timeouts.idle, std::chrono::milliseconds(500));
  EXPECT_EQ(provider.timeouts.total, std::chrono::minutes(2));
  EXPECT_EQ(provider.max_connections, 32u);
  EXPECT_EQ(config.routes.at("deepseek-chat").provider, "primary");
  EXPECT_EQ(config.client_keys.front().sha256_hex, sha256_hex("ck"));
}

}  // namespace
}  // namespace cutover::config
