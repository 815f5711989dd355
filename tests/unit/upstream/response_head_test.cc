#include "upstream/response_head.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <string>
#include <utility>
#include <vector>

namespace cutover::upstream {
namespace {

namespace bhttp = boost::beast::http;

// Feeds `bytes` to the parser at once; returns what it consumed and the error it reported.
std::pair<std::size_t, boost::beast::error_code> put(ResponseParser& parser, std::string_view bytes) {
  boost::beast::error_code ec;
  const auto used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  return {used, ec};
}

// Feeds `bytes` that must parse without error.
void put_cleanly(ResponseParser& parser, std::string_view bytes) {
  auto [used, ec] = put(parser, bytes);
  EXPECT_FALSE(ec) << ec.message();
}

// Reads the whole body of a parser whose header is done, in pieces of at most `piece` bytes.
std::string read_body(ResponseParser& parser, std::string_view rest, std::size_t piece) {
  std::string body;
  while (!parser.is_done()) {
    const std::size_t before = body.size();
    parser.set_body_sink(&body, piece);
    auto [used, ec] = put(parser, rest);
    if (ec && ec != bhttp::error::need_buffer) {
      ADD_FAILURE() << "parse error: " << ec.message();
      break;
    }
    EXPECT_LE(body.size() - before, piece);
    EXPECT_EQ(body.size() - before, piece - parser.body_room());
    rest.remove_prefix(used);
    if (used == 0 && body.size() == before && !parser.is_done()) {
      ADD_FAILURE() << "no progress with " << rest.size() << " bytes left";
      break;
    }
  }
  return body;
}

TEST(ResponseHeadTest, KeepsTheStatusAndTheFieldsInOrderAsSpelled) {
  ResponseHead head;
  ResponseParser parser(head);
  parser.eager(false);
  const std::string header =
      "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 7\r\n"
      "X-RateLimit-Remaining-Requests: 0\r\nContent-Length: 2\r\n\r\n";
  auto [used, ec] = put(parser, header + "{}");
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(parser.is_header_done());
  EXPECT_EQ(used, header.size());
  EXPECT_EQ(head.result_int(), 429u);
  EXPECT_EQ(head.version(), 11);
  ASSERT_EQ(head.size(), 4u);
  std::vector<std::pair<std::string, std::string>> fields;
  for (const auto& field : head) fields.emplace_back(field.name_string(), field.value());
  const std::vector<std::pair<std::string, std::string>> expected{
      {"Content-Type", "application/json"},
      {"Retry-After", "7"},
      {"X-RateLimit-Remaining-Requests", "0"},
      {"Content-Length", "2"}};
  EXPECT_EQ(fields, expected);
}

TEST(ResponseHeadTest, LooksNamesUpWithoutCaseAndGivesTheFirstOfRepeatedFields) {
  ResponseHead head;
  ResponseParser parser(head);
  put_cleanly(parser,
              "HTTP/1.1 200 OK\r\nx-request-id: first\r\nX-Request-ID: second\r\n"
              "content-type: text/event-stream\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(head["X-REQUEST-ID"], "first");
  EXPECT_EQ(head[bhttp::field::content_type], "text/event-stream");
  EXPECT_EQ(head["retry-after"], "");
  EXPECT_EQ(head[bhttp::field::retry_after], "");
  EXPECT_TRUE(parser.is_done());
}

TEST(ResponseHeadTest, ANewParserStartsTheReusedHeadAfresh) {
  ResponseHead head;
  {
    ResponseParser first(head);
    put_cleanly(first, "HTTP/1.1 500 Oops\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(head["retry-after"], "3");
  }
  ResponseParser second(head);
  EXPECT_EQ(head.size(), 0u);
  EXPECT_EQ(head.result_int(), 0u);
  put_cleanly(second, "HTTP/1.0 201 Created\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(head.result_int(), 201u);
  EXPECT_EQ(head.version(), 10);
  EXPECT_EQ(head["retry-after"], "");
  EXPECT_EQ(head["location"], "/x");
  EXPECT_FALSE(second.keep_alive());
}

TEST(ResponseHeadTest, ABodyOfKnownLengthFillsTheBuffersItIsGiven) {
  ResponseHead head;
  ResponseParser parser(head);
  const std::string body = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\"}";
  const std::string header =
      "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  put_cleanly(parser, header);
  ASSERT_TRUE(parser.is_header_done());
  // No buffer yet: the parser asks for one rather than dropping bytes.
  auto [none, need] = put(parser, body);
  EXPECT_EQ(none, 0u);
  EXPECT_EQ(need, bhttp::error::need_buffer);
  EXPECT_EQ(read_body(parser, body, 7), body);
  EXPECT_TRUE(parser.keep_alive());
}

TEST(ResponseHeadTest, AChunkedBodyArrivesWithoutItsChunkFraming) {
  ResponseHead head;
  ResponseParser parser(head);
  put_cleanly(parser, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_TRUE(parser.chunked());
  const std::string chunks =
      "e\r\ndata: {\"a\":1}\n\r\n6\r\n\ndata:\r\n9\r\n [DONE]\n\n\r\n0\r\n\r\n";
  EXPECT_EQ(read_body(parser, chunks, 5), "data: {\"a\":1}\n\ndata: [DONE]\n\n");
}

TEST(ResponseHeadTest, InvalidHttpIsAnErrorNotAField) {
  ResponseHead head;
  ResponseParser parser(head);
  auto [used, ec] = put(parser, "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n");
  EXPECT_TRUE(ec);
  EXPECT_EQ(head.size(), 0u);
}

}  // namespace
}  // namespace cutover::upstream
