#include "http/serialize.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace cutover::http {
namespace {

namespace bhttp = boost::beast::http;

// The header as Beast's own serializer writes it.
template <bool isRequest, class Body>
std::string beast_header(const bhttp::message<isRequest, Body>& message) {
  std::ostringstream out;
  out << message.base();
  return out.str();
}

template <bool isRequest, class Body>
std::string our_header(const bhttp::message<isRequest, Body>& message) {
  std::string out = "kept|";
  append_header(message, out);
  EXPECT_EQ(out.substr(0, 5), "kept|") << "appends, never replaces";
  return out.substr(5);
}

TEST(AppendHeaderTest, RequestsAreWrittenAsBeastWritesThem) {
  bhttp::request<bhttp::string_body> post{bhttp::verb::post, "/v1/chat/completions?x=1", 11};
  post.set(bhttp::field::host, "api.example.com");
  post.set(bhttp::field::content_type, "application/json");
  post.set("X-Custom-Case", "Value With Spaces");
  post.set("anthropic-version", "2023-06-01");
  post.body() = R"({"model":"m"})";
  post.prepare_payload();
  EXPECT_EQ(our_header(post), beast_header(post));
  EXPECT_EQ(our_header(post).substr(0, 41), "POST /v1/chat/completions?x=1 HTTP/1.1\r\nH");

  bhttp::request<bhttp::empty_body> unknown;
  unknown.method_string("PROPFIND-LIKE");
  unknown.target("*");
  unknown.version(10);
  unknown.keep_alive(true);
  EXPECT_EQ(our_header(unknown), beast_header(unknown));
  EXPECT_EQ(our_header(unknown).substr(0, 24), "PROPFIND-LIKE * HTTP/1.0");
}

TEST(AppendHeaderTest, ResponsesAreWrittenAsBeastWritesThem) {
  bhttp::response<bhttp::empty_body> ok{bhttp::status::ok, 11};
  ok.set(bhttp::field::content_type, "application/json");
  ok.set(bhttp::field::server, "cutover");
  ok.set("x-request-id", "req_1");
  ok.content_length(568);
  EXPECT_EQ(our_header(ok), beast_header(ok));

  bhttp::response<bhttp::empty_body> stream{bhttp::status::ok, 11};
  stream.set(bhttp::field::content_type, "text/event-stream");
  stream.chunked(true);
  stream.keep_alive(false);
  EXPECT_EQ(our_header(stream), beast_header(stream));

  bhttp::response<bhttp::string_body> throttled{bhttp::status::too_many_requests, 11};
  throttled.set(bhttp::field::retry_after, "3");
  throttled.body() = "{}";
  throttled.prepare_payload();
  EXPECT_EQ(our_header(throttled), beast_header(throttled));
  throttled.reason("Slow Down");
  EXPECT_EQ(our_header(throttled), beast_header(throttled));
  EXPECT_EQ(our_header(throttled).substr(0, 24), "HTTP/1.1 429 Slow Down\r\n");

  bhttp::response<bhttp::empty_body> odd;
  odd.result(599);
  odd.version(10);
  EXPECT_EQ(our_header(odd), beast_header(odd));
}

TEST(HeaderEndTest, CarriesTheLengthAndEndsTheHeader) {
  EXPECT_EQ(HeaderEnd(0).view(), "Content-Length: 0\r\n\r\n");
  EXPECT_EQ(HeaderEnd(9 * 1024 * 1024).view(), "Content-Length: 9437184\r\n\r\n");
  EXPECT_EQ(HeaderEnd(SIZE_MAX).view(), "Content-Length: 18446744073709551615\r\n\r\n");
  EXPECT_EQ(HeaderEnd(577).buffer().size(), HeaderEnd(577).view().size());
}

std::string text(boost::asio::const_buffer buffer) {
  return {static_cast<const char*>(buffer.data()), buffer.size()};
}

TEST(ChunkHeadTest, FramesAChunkAsBeastsMakeChunkDoes) {
  for (const std::size_t size : {1u, 9u, 10u, 15u, 16u, 255u, 256u, 4096u, 70000u, 1u << 24}) {
    const std::string data(size, 'x');
    const ChunkHead head(size);
    EXPECT_EQ(text(head.buffer()) + data + std::string(kChunkEnd),
              boost::beast::buffers_to_string(bhttp::make_chunk(boost::asio::buffer(data))))
        << size;
  }
  EXPECT_EQ(text(ChunkHead(0x1f).buffer()), "1f\r\n");
}

TEST(ChunkHeadTest, TheLastChunkIsBeastsWithoutTrailers) {
  EXPECT_EQ(std::string(kLastChunk), boost::beast::buffers_to_string(bhttp::make_chunk_last()));
  EXPECT_EQ(std::string(kChunkEndAndLastChunk), std::string(kChunkEnd) + std::string(kLastChunk));
}

}  // namespace
}  // namespace cutover::http
