// A gateway in front of a scripted fake provider, both on loopback ephemeral ports.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "config/config.h"
#include "runtime/gateway_server.h"
#include "simulate/fake_provider.h"
#include "test_client.h"

namespace cutover::testing {

inline constexpr char kClientKey[] = "client-secret";
inline constexpr char kProviderKey[] = "sk-provider-secret-123";

struct GatewayOptions {
  // Extra YAML lines under the provider (indented 4 spaces). Core tests make one attempt so a
  // failure shows as it happened; resilience tests configure retries themselves.
  std::string provider_extra = "    retry: {max_attempts: 1}\n";
  std::string top_extra;       // extra top-level YAML
  std::string access_log;      // path; empty means "off"
  unsigned workers = 1;
};

inline std::string gateway_yaml(const std::string& base_url, const GatewayOptions& options,
                                const std::string& model_map = "{gpt-4: gpt-4.1, embed: text-embedding-3-small}") {
  std::ostringstream yaml;
  yaml << "listen: 127.0.0.1:0\n"
       << "workers: " << options.workers << "\n"
       << "access_log: \"" << (options.access_log.empty() ? "off" : options.access_log) << "\"\n"
       << "auth:\n  client_keys:\n    - name: app\n      key_env: CLIENT_KEY\n"
       << options.top_extra << "providers:\n  primary:\n    base_url: " << base_url << "\n"
       << "    api_key_env: PROVIDER_KEY\n"
       << "    models: " << model_map << "\n"
       << "    timeouts: {connect: 1s, first_byte: 2s, idle: 1s, total: 10s}\n"
       << options.provider_extra << "routes:\n  - models: [gpt-4, embed]\n    provider: primary\n";
  return yaml.str();
}

inline std::shared_ptr<const config::Config> load_config(const std::string& yaml) {
  auto environment = [](const std::string& name) -> std::optional<std::string> {
    if (name == "CLIENT_KEY") return kClientKey;
    if (name == "PROVIDER_KEY") return kProviderKey;
    return std::nullopt;
  };
  auto result = config::load_from_string(yaml, environment);
  for (const auto& error : result.errors) ADD_FAILURE() << error;
  return result.config;
}

class GatewayTest : public ::testing::Test {
 protected:
  void start(simulate::Script script, GatewayOptions options = {},
             std::shared_ptr<boost::asio::ssl::context> upstream_tls = nullptr) {
    upstream_ = std::make_unique<simulate::FakeProvider>(std::move(script), 0, "127.0.0.1",
                                                        std::move(upstream_tls));
    start_gateway(upstream_->base_url(), options);
  }

  void start_gateway(const std::string& base_url, GatewayOptions options = {}) {
    auto config = load_config(gateway_yaml(base_url, options));
    ASSERT_TRUE(config);
    server_ = std::make_unique<runtime::GatewayServer>(config);
    server_->start();
  }

  void TearDown() override {
    if (server_) server_->shutdown(std::chrono::milliseconds(0));
    server_.reset();
    upstream_.reset();
  }

  TestClient client() { return TestClient(server_->port()); }

  std::unique_ptr<simulate::FakeProvider> upstream_;
  std::unique_ptr<runtime::GatewayServer> server_;
};

inline simulate::Script reply_with(std::function<void(simulate::FakeReply&)> adjust) {
  return [adjust](const simulate::FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    adjust(reply);
    return reply;
  };
}

inline std::string text_of(const boost::json::value& value) {
  return value.is_string() ? std::string(value.get_string()) : boost::json::serialize(value);
}

// An OpenAI-schema error with the expected status and code, and the gateway's request id.
inline void expect_openai_error(const Reply& reply, unsigned status, std::string_view code) {
  EXPECT_EQ(reply.status, status) << reply.body;
  auto body = boost::json::parse(reply.body);
  EXPECT_EQ(text_of(body.at("error").at("code")), code) << reply.body;
  EXPECT_TRUE(body.at("error").at("message").is_string());
  EXPECT_TRUE(body.at("error").at("type").is_string());
  EXPECT_FALSE(reply.header("x-request-id").empty());
}

inline std::vector<std::string> data_events(const std::string& stream_body) {
  std::vector<std::string> events;
  std::size_t at = 0;
  while ((at = stream_body.find("data: ", at)) != std::string::npos) {
    const auto end = stream_body.find("\n\n", at);
    events.push_back(stream_body.substr(at + 6, end - at - 6));
    at = end;
  }
  return events;
}

}  // namespace cutover::testing
