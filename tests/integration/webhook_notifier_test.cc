// Migration webhooks delivered over real loopback sockets to a scripted fake receiver.
#include "migration/webhook_notifier.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>

#include "test_client.h"

namespace cutover::testing {
namespace {

namespace ssl = asio::ssl;
using migration::WebhookNotifier;
using migration::WebhookStats;
using migration::WebhookTarget;
using namespace std::chrono_literals;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// How the fake receiver answers one request.
struct HookAnswer {
  HookAnswer(unsigned status = 200, std::vector<std::pair<std::string, std::string>> headers = {},
             bool stall = false)
      : status(status), headers(std::move(headers)), stall(stall) {}
  unsigned status;
  std::vector<std::pair<std::string, std::string>> headers;
  bool stall;  // hold the answer back until release()
};

struct ReceivedHook {
  std::string target;
  http::fields headers;
  std::string body;
};

// An HTTP(S) webhook receiver on 127.0.0.1 with its own thread; records every request and
// answers as `script` says for the request's index (0 for the first).
class FakeWebhook {
 public:
  using Script = std::function<HookAnswer(std::size_t index)>;

  explicit FakeWebhook(
      Script script = [](std::size_t) { return HookAnswer{}; },
      std::shared_ptr<ssl::context> tls = nullptr)
      : script_(std::move(script)),
        tls_(std::move(tls)),
        acceptor_(context_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(context_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { context_.run(); });
  }
  ~FakeWebhook() {
    context_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string url(const std::string& target = "/hook",
                  const std::string& host = "127.0.0.1") const {
    return (tls_ ? "https://" : "http://") + host + ":" + std::to_string(port()) + target;
  }
  std::vector<ReceivedHook> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return received_.size();
  }
  std::vector<std::string> bodies() const {
    std::vector<std::string> out;
    for (auto& hook : received()) out.push_back(hook.body);
    return out;
  }
  // Answers the stalled requests, and from now on answers at once.
  void release() {
    asio::post(context_, [this] {
      released_ = true;
      for (auto* gate : stalled_) gate->cancel();
    });
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [error, socket] = co_await acceptor_.async_accept(kTuple);
      if (error) co_return;
      asio::co_spawn(context_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(asio::ip::tcp::socket socket) {
    if (!tls_) {
      beast::tcp_stream stream(std::move(socket));
      co_await serve(stream);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls_);
    auto [error] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
    if (!error) co_await serve(stream);
  }

  template <typename Stream>
  asio::awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    auto [read_error, read] = co_await http::async_read(stream, buffer, request, kTuple);
    if (read_error) co_return;
    std::size_t index;
    {
      std::lock_guard lock(mutex_);
      index = received_.size();
      received_.push_back({std::string(request.target()), request.base(), request.body()});
    }
    const auto answer = script_(index);
    if (answer.stall && !released_) {
      asio::steady_timer gate(context_, asio::steady_timer::time_point::max());
      stalled_.push_back(&gate);
      co_await gate.async_wait(kTuple);
      std::erase(stalled_, &gate);
    }
    http::response<http::string_body> response{static_cast<http::status>(answer.status), 11};
    for (const auto& [name, value] : answer.headers) response.set(name, value);
    response.body() = "ok";
    response.keep_alive(false);
    response.prepare_payload();
    co_await http::async_write(stream, response, kTuple);
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(asio::ip::tcp::socket::shutdown_send,
                                                      ignored);
  }

  Script script_;
  std::shared_ptr<ssl::context> tls_;
  asio::io_context context_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<ReceivedHook> received_;
  // Server thread only.
  bool released_ = false;
  std::vector<asio::steady_timer*> stalled_;
};

HookAnswer stall(std::size_t) { return HookAnswer(200, {}, true); }

// A loopback port nothing listens on: bound once, then closed.
std::uint16_t closed_port() {
  asio::io_context context;
  asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

WebhookTarget target_for(std::string url) {
  WebhookTarget target;
  target.url = std::move(url);
  target.timeout = 5s;
  return target;
}

class WebhookNotifierTest : public ::testing::Test {
 protected:
  void TearDown() override { EXPECT_TRUE(finish()) << "io_context run() did not return"; }

  void make(std::vector<WebhookTarget> targets, std::chrono::milliseconds backoff = 2ms,
            std::optional<std::string> ca_file = std::nullopt) {
    notifier_ = std::make_unique<WebhookNotifier>(io_.get_executor(), std::move(targets), backoff,
                                                  std::move(ca_file));
  }
  // Runs the io_context on its own thread, as the controller's loop would.
  void start() {
    runner_ = std::async(std::launch::async, [this] { io_.run(); });
  }
  // Stops the notifier and waits for run() to return; a hang fails instead of blocking the test.
  bool finish() {
    if (notifier_) notifier_->stop();
    if (!runner_.valid()) return true;
    const bool returned = runner_.wait_for(5s) == std::future_status::ready;
    if (!returned) io_.stop();
    runner_.get();
    return returned;
  }
  WebhookStats stats() const { return notifier_->stats(); }

  asio::io_context io_;
  std::unique_ptr<WebhookNotifier> notifier_;
  std::future<void> runner_;
};

TEST_F(WebhookNotifierTest, DeliversOnceWithTheExactBodyAndHeaders) {
  FakeWebhook receiver;
  auto target = target_for(receiver.url("/services/T0/B0/secret?x=1"));
  target.headers = {{"Authorization", "Bearer hook-secret"}};
  make({target});
  start();
  const std::string body = R"({"text":"migration chat: shadow to canary, stage 1 at 5%"})";
  notifier_->notify(body);

  ASSERT_TRUE(eventually([&] { return stats().delivered == 1; }));
  auto received = receiver.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].body, body);
  EXPECT_EQ(received[0].target, "/services/T0/B0/secret?x=1");
  EXPECT_EQ(received[0].headers[http::field::content_type], "application/json");
  EXPECT_EQ(received[0].headers[http::field::user_agent], "cutover/0.1");
  EXPECT_EQ(received[0].headers[http::field::host], "127.0.0.1:" + std::to_string(receiver.port()));
  EXPECT_EQ(received[0].headers[http::field::authorization], "Bearer hook-secret");
  EXPECT_EQ(stats().attempts, 1u);
  EXPECT_EQ(stats().failed, 0u);
}

TEST_F(WebhookNotifierTest, RetriesServerErrorsThenDelivers) {
  FakeWebhook receiver([](std::size_t index) { return HookAnswer{index < 2 ? 500u : 200u}; });
  make({target_for(receiver.url())});
  start();
  notifier_->notify(R"({"text":"promoted"})");

  ASSERT_TRUE(eventually([&] { return stats().delivered == 1; }));
  EXPECT_EQ(stats().attempts, 3u);
  EXPECT_EQ(stats().failed, 0u);
  EXPECT_EQ(receiver.bodies(), std::vector<std::string>(3, R"({"text":"promoted"})"));
}

TEST_F(WebhookNotifierTest, HonoursRetryAfterOnTooManyRequests) {
  FakeWebhook receiver([](std::size_t index) {
    if (index == 0) return HookAnswer{429, {{"Retry-After", "0"}}};
    return HookAnswer{};
  });
  // A backoff of up to a minute would outlast the deadline below: only Retry-After is quick.
  make({target_for(receiver.url())}, 60s);
  start();
  notifier_->notify(R"({"text":"paused"})");

  ASSERT_TRUE(eventually([&] { return stats().delivered == 1; }));
  EXPECT_EQ(stats().attempts, 2u);
}

TEST_F(WebhookNotifierTest, FailsAtOnceOnClientError) {
  FakeWebhook receiver([](std::size_t) { return HookAnswer{400}; });
  make({target_for(receiver.url())});
  start();
  notifier_->notify(R"({"text":"aborted"})");

  ASSERT_TRUE(eventually([&] { return stats().failed == 1; }));
  EXPECT_EQ(stats().attempts, 1u);
  EXPECT_EQ(stats().delivered, 0u);
  EXPECT_EQ(receiver.count(), 1u);
}

TEST_F(WebhookNotifierTest, UnreachableTargetFailsAfterMaxAttemptsAndNotifyNeverWaits) {
  auto target = target_for("http://127.0.0.1:" + std::to_string(closed_port()) + "/hook");
  target.max_attempts = 3;
  make({target});
  // The io_context is not running yet: a notify() that waited for any I/O would hang here.
  notifier_->notify(R"({"text":"rolled back"})");
  EXPECT_EQ(stats().attempts, 0u);
  start();

  ASSERT_TRUE(eventually([&] { return stats().failed == 1; }));
  EXPECT_EQ(stats().attempts, 3u);
  EXPECT_EQ(stats().delivered, 0u);
}

TEST_F(WebhookNotifierTest, SilentTargetTimesOutAndIsRetried) {
  FakeWebhook receiver(stall);
  auto target = target_for(receiver.url());
  target.timeout = 100ms;
  target.max_attempts = 2;
  make({target});
  start();
  notifier_->notify(R"({"text":"canary"})");

  ASSERT_TRUE(eventually([&] { return stats().failed == 1; }));
  EXPECT_EQ(stats().attempts, 2u);
  EXPECT_EQ(receiver.count(), 2u);
}

TEST_F(WebhookNotifierTest, DeliversMessagesInOrderAcrossRetries) {
  FakeWebhook receiver([](std::size_t index) { return HookAnswer{index == 0 ? 503u : 200u}; });
  make({target_for(receiver.url())});
  start();
  notifier_->notify("1");
  notifier_->notify("2");
  notifier_->notify("3");

  ASSERT_TRUE(eventually([&] { return stats().delivered == 3; }));
  EXPECT_EQ(receiver.bodies(), (std::vector<std::string>{"1", "1", "2", "3"}));
}

TEST_F(WebhookNotifierTest, SlowTargetDoesNotDelayAnother) {
  FakeWebhook slow(stall);
  FakeWebhook fast;
  make({target_for(slow.url()), target_for(fast.url())});
  start();
  notifier_->notify(R"({"text":"shadow"})");

  ASSERT_TRUE(eventually([&] { return stats().delivered == 1 && slow.count() == 1; }));
  EXPECT_EQ(fast.count(), 1u);
  slow.release();
  ASSERT_TRUE(eventually([&] { return stats().delivered == 2; }));
}

TEST_F(WebhookNotifierTest, FullQueueDropsTheOldestWaitingMessage) {
  FakeWebhook receiver([](std::size_t index) { return HookAnswer(200, {}, index == 0); });
  auto target = target_for(receiver.url());
  target.timeout = 30s;
  make({target});
  start();
  notifier_->notify("0");
  ASSERT_TRUE(eventually([&] { return receiver.count() == 1; }));

  // "0" is in flight and counts towards the 256; 255 wait behind it, so 45 of 300 are dropped.
  for (int i = 1; i <= 300; ++i) notifier_->notify(std::to_string(i));
  EXPECT_EQ(stats().dropped, 45u);
  receiver.release();

  ASSERT_TRUE(eventually([&] { return stats().delivered == 256; }));
  std::vector<std::string> expected{"0"};
  for (int i = 46; i <= 300; ++i) expected.push_back(std::to_string(i));
  EXPECT_EQ(receiver.bodies(), expected);
}

TEST_F(WebhookNotifierTest, StopWithDeliveriesPendingLetsRunReturn) {
  FakeWebhook silent(stall);
  auto in_flight = target_for(silent.url());
  in_flight.timeout = 30s;
  auto backing_off = target_for("http://127.0.0.1:" + std::to_string(closed_port()) + "/hook");
  make({in_flight, backing_off}, 60s);
  start();
  for (int i = 0; i < 3; ++i) notifier_->notify(std::to_string(i));
  ASSERT_TRUE(eventually([&] { return silent.count() == 1 && stats().attempts >= 2; }));

  notifier_->stop();
  notifier_->stop();  // idempotent
  EXPECT_TRUE(finish());
  EXPECT_EQ(stats().delivered, 0u);
}

TEST_F(WebhookNotifierTest, DestroyingTheNotifierMidDeliveryIsSafe) {
  FakeWebhook silent(stall);
  auto target = target_for(silent.url());
  target.timeout = 30s;
  make({target});
  start();
  notifier_->notify(R"({"text":"shadow"})");
  ASSERT_TRUE(eventually([&] { return silent.count() == 1; }));

  notifier_.reset();  // stops; the coroutine unwinds on the io_context thread afterwards
  EXPECT_TRUE(finish());
}

// A throwaway CA and a certificate for "localhost" signed by it, made with openssl.
class TestPki {
 public:
  TestPki() {
    directory_ = std::filesystem::temp_directory_path() /
                 ("cutover-webhook-pki-" + std::to_string(::getpid()));
    std::filesystem::create_directories(directory_);
    const std::string script =
        "cd '" + directory_.string() +
        "' && "
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
  std::filesystem::path directory_;
  bool ok_ = false;
};

TEST_F(WebhookNotifierTest, DeliversOverTlsVerifiedAgainstTheConfiguredCa) {
  TestPki pki;
  if (!pki.ok()) GTEST_SKIP() << "openssl could not create the test certificates";
  FakeWebhook receiver([](std::size_t) { return HookAnswer{}; }, pki.server_context());
  make({target_for(receiver.url("/hook", "localhost"))}, 2ms, pki.ca_file());
  start();
  notifier_->notify(R"({"text":"promoted"})");

  ASSERT_TRUE(eventually([&] { return stats().delivered == 1; }));
  EXPECT_EQ(receiver.bodies(), std::vector<std::string>{R"({"text":"promoted"})"});
}

TEST_F(WebhookNotifierTest, RefusesACertificateFromAnUntrustedCa) {
  TestPki pki;
  if (!pki.ok()) GTEST_SKIP() << "openssl could not create the test certificates";
  FakeWebhook receiver([](std::size_t) { return HookAnswer{}; }, pki.server_context());
  auto target = target_for(receiver.url("/hook", "localhost"));
  target.max_attempts = 1;
  make({target});  // system store only
  start();
  notifier_->notify(R"({"text":"promoted"})");

  ASSERT_TRUE(eventually([&] { return stats().failed == 1; }));
  EXPECT_EQ(receiver.count(), 0u);
}

TEST(WebhookUrl, AcceptsHttpAndHttpsUrls) {
  EXPECT_EQ(migration::validate_webhook_url("https://hooks.slack.com/services/T/B/x"),
            std::nullopt);
  EXPECT_EQ(migration::validate_webhook_url("http://127.0.0.1:8080/hook?token=a"), std::nullopt);
  EXPECT_EQ(migration::validate_webhook_url("HTTPS://[::1]/"), std::nullopt);
  EXPECT_EQ(migration::validate_webhook_url("http://example.com"), std::nullopt);
  EXPECT_EQ(migration::validate_webhook_url("http://example.com:65535/"), std::nullopt);
}

TEST(WebhookUrl, RejectsOtherSchemesAndMalformedUrls) {
  for (const char* url :
       {"ftp://example.com/hook", "example.com/hook", "", "https://", "http://example.com:99999/",
        "http://example.com:0/", "https://user:pw@example.com/", "http://exa mple.com/"}) {
    EXPECT_NE(migration::validate_webhook_url(url), std::nullopt) << url;
  }
}

TEST(WebhookUrl, ErrorMessageDoesNotRepeatTheUrl) {
  const auto error = migration::validate_webhook_url("ftp://example.com/secret-token");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->find("secret-token"), std::string::npos) << *error;
}

TEST(WebhookNotifierConfig, RejectsAnInvalidUrlOrHeaderAtConstruction) {
  asio::io_context io;
  EXPECT_THROW(WebhookNotifier(io.get_executor(), {target_for("ftp://example.com/")}),
               std::invalid_argument);
  auto target = target_for("http://127.0.0.1:9/hook");
  target.headers = {{"X-Token", "a\r\nInjected: yes"}};
  EXPECT_THROW(WebhookNotifier(io.get_executor(), {target}), std::invalid_argument);
}

}  // namespace
}  // namespace cutover::testing
