#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "http/server.h"

namespace cutover::http {
namespace {

using namespace std::chrono_literals;

// What a Responder on one end of a loopback connection writes, as the other end reads it.
std::string bytes_written(bool keep_alive,
                          const std::function<asio::awaitable<void>(Responder&)>& respond) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket reader(io);
  reader.connect(acceptor.local_endpoint());
  auto connection = std::make_shared<ClientConnection>(acceptor.accept());
  ServerLimits limits;
  auto responder = std::make_shared<Responder>(connection, limits, keep_alive, "req_1");
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await respond(*responder);
        responder.reset();
        connection->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send);
        done = true;
      },
      asio::detached);
  while (!done && io.run_one_for(10s) > 0) {
  }
  EXPECT_TRUE(done) << "the response was never written";
  std::string bytes;
  boost::system::error_code ec;
  asio::read(reader, asio::dynamic_buffer(bytes), ec);
  EXPECT_EQ(ec, asio::error::eof);
  return bytes;
}

TEST(ResponderTest, AHeaderGivenAsFieldsIsWrittenAsTheSameMessageWouldBe) {
  for (const bool keep_alive : {true, false}) {
    const std::string body = R"({"id":"chatcmpl-1"})";
    const auto from_fields = bytes_written(keep_alive, [&](Responder& responder) -> asio::awaitable<void> {
      // Named: GCC 12 cannot keep a braced temporary with an array across a co_await.
      const HeaderFieldList fields{{"Content-Type", "application/json"},
                                   {"x-cutover-provider", "openai"},
                                   {"x-cutover-cache", "hit"}};
      co_await responder.send(200, fields, body);
    });
    const auto from_message = bytes_written(keep_alive, [&](Responder& responder) -> asio::awaitable<void> {
      bhttp::response<bhttp::empty_body> header{bhttp::status::ok, 11};
      header.set(bhttp::field::content_type, "application/json");
      header.set("x-cutover-provider", "openai");
      header.set("x-cutover-cache", "hit");
      co_await responder.send(std::move(header), body);
    });
    EXPECT_EQ(from_fields, from_message);
    EXPECT_EQ(from_fields.substr(0, 17), "HTTP/1.1 200 OK\r\n");
    EXPECT_NE(from_fields.find("x-request-id: req_1\r\n"), std::string::npos);
    EXPECT_EQ(from_fields.find("Connection: close") != std::string::npos, !keep_alive);
    EXPECT_EQ(from_fields.substr(from_fields.size() - body.size()), body);
  }
}

TEST(ResponderTest, AStreamStartedWithFieldsIsWrittenAsTheSameMessageWouldBe) {
  const auto stream = [](Responder& responder, bool from_fields) -> asio::awaitable<void> {
    if (from_fields) {
      EXPECT_TRUE(responder.start_stream(
          {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}}));
    } else {
      bhttp::response<bhttp::empty_body> header{bhttp::status::ok, 11};
      header.set(bhttp::field::content_type, "text/event-stream");
      header.set(bhttp::field::cache_control, "no-cache");
      co_await responder.begin_stream(std::move(header));
    }
    co_await responder.send_chunk("data: {}\n\n");
    co_await responder.end_stream("data: [DONE]\n\n");
  };
  const auto from_fields = bytes_written(true, [&](Responder& responder) { return stream(responder, true); });
  const auto from_message = bytes_written(true, [&](Responder& responder) { return stream(responder, false); });
  EXPECT_EQ(from_fields, from_message);
  EXPECT_NE(from_fields.find("Transfer-Encoding: chunked\r\n\r\n"), std::string::npos);
  EXPECT_NE(from_fields.find("data: [DONE]"), std::string::npos);
}

}  // namespace
}  // namespace cutover::http
