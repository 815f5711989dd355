// The simulated provider restarts gracefully (the demo restarts its candidate mid-run): an
// answer in progress when it is told to drain still completes, and no new connection is taken.
#include <gtest/gtest.h>

#include <future>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

TEST(FakeProviderDrainTest, AnAnswerInProgressCompletesAndNewConnectionsAreRefused) {
  simulate::FakeProvider provider(reply_with([](simulate::FakeReply& reply) {
    reply.delay = std::chrono::milliseconds(300);
  }));
  const auto port = provider.port();
  auto answer = std::async(std::launch::async, [port] {
    TestClient client(port);
    return client.post("/v1/chat/completions", chat_body());
  });
  ASSERT_TRUE(eventually([&] { return provider.requests_in_flight() == 1; }));
  provider.drain(std::chrono::seconds(2));
  const auto reply = answer.get();
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_EQ(provider.requests_completed(), 1u);
  EXPECT_THROW(TestClient{port}, boost::system::system_error);
}

}  // namespace
}  // namespace cutover::testing
