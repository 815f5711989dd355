#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http/server.h"

namespace cutover::http {
namespace {

using namespace std::chrono_literals;

// Runs `respond` on a Responder over `connection` until it is done, then ends the connection's
// sending side so that the reader sees the end of what was written.
void respond_and_close(asio::io_context& io, const std::shared_ptr<ClientConnection>& connection,
                       bool keep_alive, const std::function<Awaitable<void>(Responder&)>& respond) {
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
}

// What a Responder on one end of a loopback connection writes, as the other end reads it.
std::string bytes_written(bool keep_alive,
                          const std::function<Awaitable<void>(Responder&)>& respond) {
  asio::io_context io;
  TcpAcceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  TcpSocket reader(io);
  reader.connect(acceptor.local_endpoint());
  auto connection = std::make_shared<ClientConnection>(acceptor.accept());
  respond_and_close(io, connection, keep_alive, respond);
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

// What a Responder writes to a client that reads as it is written, through socket buffers far
// smaller than the response: the writes that do not fit at once must wait for room.
std::string bytes_read_while_written(const std::function<Awaitable<void>(Responder&)>& respond) {
  asio::io_context io;
  TcpAcceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  TcpSocket reader(io);
  reader.open(asio::ip::tcp::v4());
  reader.set_option(asio::socket_base::receive_buffer_size(4096));
  reader.connect(acceptor.local_endpoint());
  auto connection = std::make_shared<ClientConnection>(acceptor.accept());
  connection->socket.set_option(asio::socket_base::send_buffer_size(4096));
  std::string bytes;
  std::thread reading([&] {
    boost::system::error_code ec;
    asio::read(reader, asio::dynamic_buffer(bytes), ec);
  });
  respond_and_close(io, connection, true, respond);
  reading.join();
  return bytes;
}

TEST(ResponderTest, AnAnswerLargerThanTheSocketTakesAtOnceIsWrittenWhole) {
  std::string body(1 << 20, 'x');
  for (std::size_t i = 0; i < body.size(); i += 7) body[i] = static_cast<char>('a' + i % 26);
  const auto written = bytes_read_while_written([&](Responder& responder) -> Awaitable<void> {
    const HeaderFieldList fields{{"Content-Type", "application/json"}};
    EXPECT_TRUE(co_await responder.send(200, fields, body));
  });
  const auto at = written.find("\r\n\r\n");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NE(written.find("Content-Length: 1048576\r\n"), std::string::npos);
  EXPECT_TRUE(written.substr(at + 4) == body) << "the body differs from what was sent";
}

TEST(ResponderTest, AChunkLargerThanTheSocketTakesAtOnceWaitsAndIsFramedWhole) {
  std::string piece(1 << 20, 'y');
  for (std::size_t i = 0; i < piece.size(); i += 5) piece[i] = static_cast<char>('A' + i % 26);
  const std::string small = "data: {}\n\n";
  const auto written = bytes_read_while_written([&](Responder& responder) -> Awaitable<void> {
    EXPECT_TRUE(responder.start_stream({{"Content-Type", "text/event-stream"}}));
    EXPECT_FALSE(responder.send_chunk_at_once(piece)) << "a mebibyte fitted a 4 KiB socket";
    EXPECT_TRUE(co_await responder.finish_chunk());
    // Not `at_once || co_await finish`: GCC 12 evaluates a co_await in a short circuit anyway.
    if (!responder.send_chunk_at_once(small)) {
      EXPECT_TRUE(co_await responder.finish_chunk());
    }
    EXPECT_TRUE(co_await responder.end_stream(piece));
  });
  std::string chunks;
  for (const std::string_view data :
       {std::string_view(piece), std::string_view(small), std::string_view(piece)}) {
    chunks += beast::buffers_to_string(bhttp::make_chunk(asio::buffer(data)));
  }
  chunks += beast::buffers_to_string(bhttp::make_chunk_last());
  const auto at = written.find("\r\n\r\n");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NE(written.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_TRUE(written.substr(at + 4) == chunks) << "the chunks differ from what was sent";
}

}  // namespace
}  // namespace cutover::http
