// TLS to providers, configuration reload and draining shutdown.
#include <boost/asio/ssl.hpp>
#include <boost/json.hpp>
#include <cstdlib>
#include <future>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
namespace ssl = boost::asio::ssl;
using simulate::FakeReply;

// A throwaway CA and a server certificate for "localhost" signed by it, made with openssl.
class TestPki {
 public:
  TestPki() {
    directory_ = std::filesystem::temp_directory_path() /
                 ("cutover-pki-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(directory_);
    const auto d = directory_.string();
    const std::string script =
        "cd '" + d + "' && "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj '/CN=cutover test CA' >/dev/null 2>&1 && "
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj '/CN=localhost' >/dev/null 2>&1 && "
        "printf 'subjectAltName=DNS:localhost\\n' > ext.cnf && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile ext.cnf >/dev/null 2>&1";
    ok_ = std::system(script.c_str()) == 0;
  }
  ~TestPki() { std::filesystem::remove_all(directory_); }

  bool ok() const { return ok_; }
  std::string ca_file() const { return (directory_ / "ca.pem").string(); }

  std::shared_ptr<ssl::context> server_context() const {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
    context->use_certificate_chain_file((directory_ / "server.pem").string());
    context->use_private_key_file((directory_ / "server.key").string(), ssl::context::pem);
    return context;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path directory_;
  bool ok_ = false;
};

class TlsUpstreamTest : public GatewayTest {
 protected:
  void start_tls(const std::string& host, const std::string& provider_extra) {
    ASSERT_TRUE(pki_.ok()) << "openssl could not create the test certificates";
    upstream_ = std::make_unique<simulate::FakeProvider>(simulate::default_reply, 0, "127.0.0.1",
                                                        pki_.server_context());
    start_gateway("https://" + host + ":" + std::to_string(upstream_->port()) + "/v1",
                  GatewayOptions{.provider_extra = provider_extra});
  }
  TestPki pki_;
};

TEST_F(TlsUpstreamTest, VerifiedAgainstTheConfiguredCa) {
  start_tls("localhost", "    ca_file: " + pki_.ca_file() + "\n");
  auto downstream = client();
  auto reply = downstream.post("/v1/chat/completions", chat_body());
  ASSERT_EQ(reply.status, 200u) << reply.body;
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  auto stream = downstream.read_stream();
  EXPECT_EQ(data_events(stream.body).back(), "[DONE]");
  EXPECT_EQ(upstream_->connections_accepted(), 1u) << "the TLS connection is kept alive";
}

TEST_F(TlsUpstreamTest, UnknownCaIsRefused) {
  start_tls("localhost", "");  // system store only: the test CA is not trusted
  auto reply = client().post("/v1/chat/completions", chat_body());
  EXPECT_EQ(reply.status, 502u);
  EXPECT_NE(reply.body.find("TLS handshake failed"), std::string::npos) << reply.body;
  EXPECT_EQ(upstream_->requests_received(), 0u);
}

TEST_F(TlsUpstreamTest, HostnameMismatchIsRefused) {
  // The certificate names localhost; connecting by IP must fail the hostname check.
  start_tls("127.0.0.1", "    ca_file: " + pki_.ca_file() + "\n");
  auto reply = client().post("/v1/chat/completions", chat_body());
  EXPECT_EQ(reply.status, 502u);
  EXPECT_EQ(upstream_->requests_received(), 0u);
}

TEST_F(GatewayTest, AReloadThatMovesTheStateStoreIsRefusedAndChangesNothing) {
  start(simulate::default_reply);
  GatewayOptions moved;
  moved.top_extra = "state_store: redis://127.0.0.1:6399/0\n";
  auto fresh = load_config(gateway_yaml(upstream_->base_url(), moved,
                                        "{gpt-4: gpt-5-preview, embed: text-embedding-3-small}"));
  ASSERT_TRUE(fresh);
  const auto refused = server_->reload(fresh);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->find("state_store changed"), std::string::npos) << *refused;
  // Nothing of the refused configuration applies: the old model map still does.
  ASSERT_EQ(client().post("/v1/chat/completions", chat_body()).status, 200u);
  EXPECT_EQ(upstream_->recorded_requests().back().json.at("model"), "gpt-4.1");
}

TEST_F(GatewayTest, ReloadAppliesNewModelMapWithoutDroppingConnections) {
  start(simulate::default_reply);
  auto downstream = client();
  ASSERT_EQ(downstream.post("/v1/chat/completions", chat_body()).status, 200u);
  auto fresh = load_config(gateway_yaml(upstream_->base_url(), {},
                                        "{gpt-4: gpt-5-preview, embed: text-embedding-3-small}"));
  ASSERT_FALSE(server_->reload(fresh));
  // Same client connection, new mapping.
  ASSERT_EQ(downstream.post("/v1/chat/completions", chat_body()).status, 200u);
  auto requests = upstream_->recorded_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].json.at("model"), "gpt-4.1");
  EXPECT_EQ(requests[1].json.at("model"), "gpt-5-preview");
}

TEST_F(GatewayTest, ReloadKeepsStreamsInFlight) {
  start(reply_with([](FakeReply& reply) { reply.event_interval = std::chrono::milliseconds(40); }));
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  bool reloaded = false;
  auto reply = downstream.read_stream([&](std::string_view) {
    if (reloaded) return;
    reloaded = true;
    EXPECT_FALSE(server_->reload(load_config(gateway_yaml(upstream_->base_url(), {}))));
  });
  EXPECT_TRUE(reloaded);
  EXPECT_EQ(data_events(reply.body).back(), "[DONE]");
}

// Streams a chat completion and starts a shutdown with `deadline` as its first piece arrives.
struct StreamDuringShutdown {
  Reply reply;
  std::future<void> shutdown;
};
StreamDuringShutdown stream_during_shutdown(runtime::GatewayServer& server,
                                            std::chrono::milliseconds deadline) {
  TestClient downstream(server.port());
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  StreamDuringShutdown result;
  result.reply = downstream.read_stream([&](std::string_view) {
    if (!result.shutdown.valid()) {
      result.shutdown = std::async(std::launch::async, [&server, deadline] { server.shutdown(deadline); });
    }
  });
  return result;
}

TEST_F(GatewayTest, DrainLetsStreamsFinishAndRefusesNewConnections) {
  start(reply_with([](FakeReply& reply) { reply.event_interval = std::chrono::milliseconds(40); }));
  auto [reply, shutdown] = stream_during_shutdown(*server_, std::chrono::seconds(10));
  EXPECT_EQ(data_events(reply.body).back(), "[DONE]") << "the stream in flight completed";
  shutdown.get();
  EXPECT_THROW(TestClient{server_->port()}, boost::system::system_error);
}

TEST_F(GatewayTest, DrainDeadlineClosesWhatIsLeft) {
  start(reply_with([](FakeReply& reply) { reply.fault = simulate::Fault::stall_after_first_chunk; }),
        GatewayOptions{.provider_extra = "", .top_extra = ""});
  auto [reply, shutdown] = stream_during_shutdown(*server_, std::chrono::milliseconds(200));
  ASSERT_TRUE(shutdown.valid());
  EXPECT_EQ(shutdown.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(reply.body.find("[DONE]"), std::string::npos);
}

// The deadlines on provider and client connections keep a timer waiting past the operation
// they timed (see util/socket_deadline.h); with hour-long timeouts, a shutdown that left those
// waits behind would not return for an hour.
TEST_F(GatewayTest, ShutdownReturnsWhileIdleConnectionsHaveHourLongTimeouts) {
  upstream_ = std::make_unique<simulate::FakeProvider>(simulate::default_reply);
  auto yaml = gateway_yaml(upstream_->base_url(), GatewayOptions{
      .provider_extra = "", .top_extra = "limits: {keep_alive_timeout: 1h}\n"});
  const std::string short_timeouts = "{connect: 1s, first_byte: 2s, idle: 1s, total: 10s}";
  yaml.replace(yaml.find(short_timeouts), short_timeouts.size(),
               "{connect: 1h, first_byte: 1h, idle: 1h, total: 2h}");
  auto config = load_config(yaml);
  ASSERT_TRUE(config);
  server_ = std::make_unique<runtime::GatewayServer>(config);
  server_->start();
  auto downstream = client();
  ASSERT_EQ(downstream.post("/v1/chat/completions", chat_body()).status, 200u);
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  EXPECT_EQ(data_events(downstream.read_stream().body).back(), "[DONE]");
  // The client's connection is still open and idle; the provider's is idle in the pool.
  auto shutdown = std::async(std::launch::async, [this] { server_->shutdown(std::chrono::seconds(0)); });
  EXPECT_EQ(shutdown.wait_for(std::chrono::seconds(30)), std::future_status::ready);
}

}  // namespace
}  // namespace cutover::testing
