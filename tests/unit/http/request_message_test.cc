#include "http/request_message.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <string>
#include <vector>

#include "http/fields.h"

namespace cutover::http {
namespace {

namespace bhttp = boost::beast::http;

// Feeds `bytes` to the parser, a piece at a time as a socket might deliver them; returns the
// first error other than need_more.
boost::beast::error_code parse(RequestParser& parser, std::string_view bytes,
                               std::size_t piece = 1 << 20) {
  std::string pending;
  while (!bytes.empty() || !pending.empty()) {
    const auto take = std::min(piece, bytes.size());
    pending.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    boost::beast::error_code ec;
    const auto used = parser.put(boost::asio::buffer(pending.data(), pending.size()), ec);
    pending.erase(0, used);
    if (ec == bhttp::error::need_more) {
      if (bytes.empty()) return ec;
      continue;
    }
    if (ec || parser.is_done()) return ec;
  }
  return {};
}

TEST(RequestMessageTest, KeepsTheStartLineAndTheFieldsInOrderAsSpelled) {
  RequestMessage message;
  RequestParser parser(message);
  const auto ec = parse(parser,
                        "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\n"
                        "Authorization: Bearer k\r\nx-Request-ID: req_7\r\nX-Custom: a\r\n"
                        "x-custom: b\r\nContent-Length: 2\r\n\r\n{}");
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  EXPECT_EQ(message.method(), bhttp::verb::post);
  EXPECT_EQ(message.method_string(), "POST");
  EXPECT_EQ(message.target(), "/v1/chat/completions?x=1");
  EXPECT_EQ(message.version(), 11u);
  EXPECT_EQ(message.body(), "{}");
  std::vector<std::string> names;
  for (const auto& field : message) names.emplace_back(field.name_string());
  EXPECT_EQ(names, (std::vector<std::string>{"Host", "Authorization", "x-Request-ID", "X-Custom",
                                             "x-custom", "Content-Length"}));
  EXPECT_EQ(message.field(1).name(), bhttp::field::authorization);
  EXPECT_EQ(message.field(3).name(), bhttp::field::unknown);
  EXPECT_EQ(message[bhttp::field::authorization], "Bearer k");
  EXPECT_EQ(message["X-REQUEST-ID"], "req_7");
  EXPECT_EQ(message["x-custom"], "a") << "the first of a repeated field";
  EXPECT_EQ(message["absent"], "");
  EXPECT_EQ(field_value(message, "x-request-id"), "req_7");
}

TEST(RequestMessageTest, ManyLongFieldsOutgrowTheFirstBufferIntact) {
  std::string header = "POST /v1/messages HTTP/1.1\r\n";
  for (int i = 0; i < 40; ++i) {
    header += "x-field-" + std::to_string(i) + ": " + std::string(50 + i, 'a' + i % 26) + "\r\n";
  }
  header += "Content-Length: 0\r\n\r\n";
  RequestMessage message;
  RequestParser parser(message);
  ASSERT_FALSE(parse(parser, header, 7));
  ASSERT_EQ(message.size(), 41u);
  EXPECT_EQ(message.target(), "/v1/messages");
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(message["x-field-" + std::to_string(i)], std::string(50 + i, 'a' + i % 26)) << i;
  }
}

TEST(RequestMessageTest, ReadsKnownLengthAndChunkedBodiesWhole) {
  const std::string body(100000, 'x');
  {
    RequestMessage message;
    RequestParser parser(message);
    ASSERT_FALSE(parse(parser,
                       "POST / HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\n\r\n" + body,
                       4096));
    EXPECT_EQ(message.body(), body);
  }
  {
    RequestMessage message;
    RequestParser parser(message);
    ASSERT_FALSE(parse(parser,
                       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                       "6\r\n world\r\n0\r\n\r\n",
                       3));
    EXPECT_EQ(message.body(), "hello world");
  }
}

TEST(RequestMessageTest, TheParsersLimitsStillHold) {
  {
    RequestMessage message;
    RequestParser parser(message);
    parser.body_limit(10);
    EXPECT_EQ(parse(parser, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), bhttp::error::body_limit);
    EXPECT_EQ(message.target(), "/") << "the start line is kept before the limit fails";
  }
  {
    RequestMessage message;
    RequestParser parser(message);
    parser.body_limit(10);
    EXPECT_EQ(parse(parser, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"),
              bhttp::error::body_limit);
  }
  {
    RequestMessage message;
    RequestParser parser(message);
    parser.header_limit(64);
    EXPECT_EQ(parse(parser, "POST / HTTP/1.1\r\nx-long: " + std::string(100, 'a') + "\r\n\r\n"),
              bhttp::error::header_limit);
  }
}

TEST(RequestMessageTest, KeepAliveIsTheParsersReading) {
  struct Case {
    std::string header;
    bool keep_alive;
  };
  for (const auto& [header, keep_alive] :
       {Case{"GET / HTTP/1.1\r\n\r\n", true}, Case{"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
        Case{"GET / HTTP/1.0\r\n\r\n", false},
        Case{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true}}) {
    RequestMessage message;
    RequestParser parser(message);
    ASSERT_FALSE(parse(parser, header)) << header;
    EXPECT_EQ(parser.keep_alive(), keep_alive) << header;
    EXPECT_EQ(message.version(), header.find("HTTP/1.0") != std::string::npos ? 10u : 11u);
  }
}

TEST(RequestMessageTest, InvalidHttpIsRefused) {
  RequestMessage message;
  RequestParser parser(message);
  EXPECT_TRUE(parse(parser, "POST / HTTP/1.1\r\nbad header\r\n\r\n"));
}

TEST(RequestMessageTest, AClearedMessageKeepsItsRoomAndNothingOfTheLastRequest) {
  // The worker reads its next request into the message the last one used.
  RequestMessage message;
  {
    RequestParser parser(message);
    ASSERT_FALSE(parse(parser,
                       "POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer first\r\n"
                       "X-Tenant: a\r\nContent-Length: 38\r\n\r\n"
                       "{\"model\":\"first\",\"messages\":[1,2,3,4]}"));
  }
  const auto kept = message.retained_bytes();
  EXPECT_GT(kept, 0u);
  message.clear();
  EXPECT_EQ(message.retained_bytes(), kept);
  EXPECT_EQ(message.size(), 0u);
  EXPECT_TRUE(message.body().empty());
  EXPECT_EQ(message.method(), bhttp::verb::unknown);
  EXPECT_EQ(message.target(), "");

  RequestParser parser(message);
  ASSERT_FALSE(parse(parser, "GET /v1/models HTTP/1.0\r\nHost: gw\r\n\r\n"));
  EXPECT_EQ(message.method(), bhttp::verb::get);
  EXPECT_EQ(message.target(), "/v1/models");
  EXPECT_EQ(message.version(), 10u);
  EXPECT_EQ(message.size(), 1u);
  EXPECT_EQ(message[bhttp::field::authorization], "");
  EXPECT_EQ(message["X-Tenant"], "");
  EXPECT_EQ(message[bhttp::field::host], "gw");
  EXPECT_TRUE(message.body().empty());
}

}  // namespace
}  // namespace cutover::http
