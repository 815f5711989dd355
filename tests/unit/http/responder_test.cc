#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "http/server.h"

namespace cutover::http {
namespace {

using namespace std::chrono_literals;

// What a Responder on one end of a loopback connection writes, as the other end reads it.
std::string bytes_written(bool keep_alive,
                          const std::function<Awaitable<void>(Responder&)>& respond) {
  asio::io_context io;
  TcpAcceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  TcpSocket reader(io);
  reader.connect(acceptor.local_endpoint());
  auto connection = std::make_shared<ClientConnection>(acceptor.accept());
  ServerLimits limits;
  auto responder = std::make_shared<Responder>(connection, limits, keep_alive, "req_1");
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> Awaitable<void> {
        co_await respond(*responder);
        responder.reset();
        connection->socket.shutdown(TcpSocket::shutdown_send);
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

// The header Beast's own serializer writes for `message`.
std::string beast_header(const bhttp::response<bhttp::empty_body>& message) {
  std::ostringstream out;
  out << message.base();
  return out.str();
}

// The header a Beast message with the same fields, decorated as the responder decorates, has.
bhttp::response<bhttp::empty_body> decorated(bool keep_alive) {
  bhttp::response<bhttp::empty_body> header{bhttp::status::ok, 11};
  header.set(bhttp::field::content_type, "application/json");
  header.set("x-cutover-provider", "openai");
  header.set("x-cutover-cache", "hit");
  header.set(bhttp::field::server, "cutover");
  header.set("x-request-id", "req_1");
  header.keep_alive(keep_alive);
  return header;
}

TEST(ResponderTest, AnAnswerIsItsFieldsDecoratedAsBeastWritesThemThenTheBody) {
  for (const bool keep_alive : {true, false}) {
    const std::string body = R"({"id":"chatcmpl-1"})";
    const auto written = bytes_written(keep_alive, [&](Responder& responder) -> Awaitable<void> {
      // Named: GCC 12 cannot keep a braced temporary with an array across a co_await.
      const HeaderFieldList fields{{"Content-Type", "application/json"},
                                   {"x-cutover-provider", "openai"},
                                   {"x-cutover-cache", "hit"}};
      EXPECT_TRUE(co_await responder.send(200, fields, body));
    });
    auto expected = decorated(keep_alive);
    expected.content_length(body.size());
    EXPECT_EQ(written, beast_header(expected) + body);
    EXPECT_EQ(written.find("Connection: close") != std::string::npos, !keep_alive);
  }
}

TEST(ResponderTest, AStreamIsItsFieldsDecoratedAsBeastWritesThemThenItsChunks) {
  const auto written = bytes_written(true, [](Responder& responder) -> Awaitable<void> {
    EXPECT_TRUE(responder.start_stream({{"Content-Type", "application/json"},
                                        {"x-cutover-provider", "openai"},
                                        {"x-cutover-cache", "hit"}}));
    EXPECT_FALSE(responder.start_stream({})) << "a response has begun";
    co_await responder.send_chunk("data: {}\n\n");
    co_await responder.end_stream("data: [DONE]\n\n");
  });
  auto expected = decorated(true);
  expected.chunked(true);
  const auto header = beast_header(expected);
  ASSERT_GE(written.size(), header.size());
  EXPECT_EQ(written.substr(0, header.size()), header);
  EXPECT_EQ(written.substr(header.size()), "a\r\ndata: {}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
}

TEST(ResponderTest, ChunksOfEverySizeAreFramedAsBeastFramesThem) {
  const std::vector<std::string> pieces{std::string(1, 'a'), std::string(16, 'b'),
                                        std::string(255, 'c'), std::string(4096, 'd'),
                                        std::string(70000, 'e')};
  for (const bool with_last : {false, true}) {
    const auto written = bytes_written(true, [&](Responder& responder) -> Awaitable<void> {
      EXPECT_TRUE(responder.start_stream({{"Content-Type", "text/event-stream"}}));
      for (const auto& piece : pieces) EXPECT_TRUE(co_await responder.send_chunk(piece));
      EXPECT_TRUE(co_await responder.end_stream(with_last ? "data: [DONE]\n\n" : ""));
    });
    std::string chunks;
    for (const auto& piece : pieces) {
      chunks += beast::buffers_to_string(bhttp::make_chunk(asio::buffer(piece)));
    }
    if (with_last) chunks += beast::buffers_to_string(bhttp::make_chunk(asio::buffer(std::string_view("data: [DONE]\n\n"))));
    chunks += beast::buffers_to_string(bhttp::make_chunk_last());
    const auto body = written.find("\r\n\r\n");
    ASSERT_NE(body, std::string::npos);
    EXPECT_EQ(written.substr(body + 4), chunks) << (with_last ? "ended with a last chunk" : "ended bare");
  }
}

TEST(ResponderTest, AnEmptyStreamIsItsHeaderAndTheLastChunkInOneWrite) {
  const auto written = bytes_written(true, [](Responder& responder) -> Awaitable<void> {
    EXPECT_TRUE(responder.start_stream({{"Content-Type", "text/event-stream"}}));
    EXPECT_TRUE(co_await responder.end_stream());
  });
  ASSERT_GE(written.size(), 5u);
  EXPECT_EQ(written.substr(written.size() - 9), "\r\n\r\n0\r\n\r\n");
}

}  // namespace
}  // namespace cutover::http
