// Any well-formed way a provider may frame its answer reaches the client whole: SSE chunked,
// announced by Content-Length, or ended by closing the connection; CRLF lines; a last event
// without its blank line; a plain JSON answer to a streaming request. And what the client
// sent reaches the provider as sent, numbers included.
#include <boost/json.hpp>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
using simulate::FakeReply;

// The text the client received in a stream's content deltas, and whether it ended in [DONE].
struct StreamedAnswer {
  std::string content;
  bool done = false;
  bool error = false;
};

StreamedAnswer read_answer(const std::string& body) {
  StreamedAnswer answer;
  for (const auto& event : data_events(body)) {
    if (event == "[DONE]") {
      answer.done = true;
      continue;
    }
    auto chunk = json::parse(event);
    if (chunk.as_object().contains("error")) {
      answer.error = true;
      continue;
    }
    for (const auto& choice : chunk.at("choices").as_array()) {
      const auto* delta = choice.as_object().if_contains("delta");
      if (delta == nullptr) continue;
      if (const auto* content = delta->as_object().if_contains("content"); content && content->is_string()) {
        answer.content += content->as_string();
      }
    }
  }
  return answer;
}

class FramingTest : public GatewayTest {
 protected:
  Reply stream_through(const std::function<void(FakeReply&)>& adjust) {
    start(reply_with([adjust](FakeReply& reply) {
            reply.content = "one two three four five six";
            reply.event_interval = std::chrono::milliseconds(2);
            adjust(reply);
          }),
          GatewayOptions{"    retry: {max_attempts: 1}\n"});
    auto downstream = client();
    downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                    {{"authorization", std::string("Bearer ") + kClientKey}});
    return downstream.read_stream();
  }

  void expect_whole(const Reply& reply) {
    ASSERT_EQ(reply.status, 200u) << reply.body;
    EXPECT_EQ(reply.header("content-type"), "text/event-stream");
    const auto answer = read_answer(reply.body);
    EXPECT_FALSE(answer.error) << reply.body;
    EXPECT_TRUE(answer.done) << reply.body;
    EXPECT_EQ(answer.content, "one two three four five six") << reply.body;
    EXPECT_EQ(upstream_->requests_received(), 1u);
  }
};

TEST_F(FramingTest, StreamFramedByContentLength) {
  expect_whole(stream_through([](FakeReply& reply) {
    reply.framing = FakeReply::Framing::content_length;
  }));
}

TEST_F(FramingTest, StreamFramedByContentLengthArrivingAllAtOnce) {
  expect_whole(stream_through([](FakeReply& reply) {
    reply.framing = FakeReply::Framing::content_length;
    reply.event_interval = std::chrono::milliseconds(0);
  }));
}

TEST_F(FramingTest, StreamEndedByClosingTheConnection) {
  expect_whole(stream_through([](FakeReply& reply) {
    reply.framing = FakeReply::Framing::close_delimited;
  }));
}

TEST_F(FramingTest, StreamWithCrlfLineEndings) {
  expect_whole(stream_through([](FakeReply& reply) { reply.line_end = "\r\n"; }));
}

TEST_F(FramingTest, LastEventWithoutItsBlankLine) {
  expect_whole(stream_through([](FakeReply& reply) {
    reply.framing = FakeReply::Framing::content_length;
    reply.omit_final_blank_line = true;
  }));
}

TEST_F(FramingTest, LastEventWithoutItsBlankLineOnAClosedConnection) {
  expect_whole(stream_through([](FakeReply& reply) {
    reply.framing = FakeReply::Framing::close_delimited;
    reply.omit_final_blank_line = true;
    reply.line_end = "\r\n";
  }));
}

TEST_F(FramingTest, PlainAnswerToAStreamingRequestBecomesAStream) {
  expect_whole(stream_through([](FakeReply& reply) { reply.plain_answer_to_stream = true; }));
}

std::string chunk_event(std::string_view delta, std::string_view finish) {
  return std::string(R"({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",)") +
         R"("choices":[{"index":0,"delta":)" + std::string(delta) + R"(,"finish_reason":)" +
         std::string(finish) + "}]}";
}

TEST_F(FramingTest, CleanEndAfterTheFinishReasonWithoutDoneIsComplete) {
  auto reply = stream_through([](FakeReply& reply) {
    reply.events = std::vector<std::string>{
        chunk_event(R"({"role":"assistant","content":"one two three "})", "null"),
        chunk_event(R"({"content":"four five six"})", "null"), chunk_event("{}", R"("stop")")};
  });
  expect_whole(reply);
  EXPECT_EQ(data_events(reply.body).back(), "[DONE]") << "the missing marker is added";
}

TEST_F(FramingTest, CleanEndBeforeAnyFinishReasonIsATruncation) {
  auto reply = stream_through([](FakeReply& reply) {
    reply.events = std::vector<std::string>{
        chunk_event(R"({"role":"assistant","content":"one two "})", "null")};
  });
  ASSERT_EQ(reply.status, 200u);
  const auto answer = read_answer(reply.body);
  EXPECT_TRUE(answer.error) << "never a silent truncation: " << reply.body;
  EXPECT_FALSE(answer.done);
}

TEST_F(FramingTest, LongStreamOfLargeEventsIsForwardedWhole) {
  // Forty events of 64 KiB each: every event is parsed with memory of its own.
  std::string word(64 * 1024, 'w');
  std::string content;
  for (int i = 0; i < 40; ++i) content += word + " ";
  start(reply_with([content](FakeReply& reply) { reply.content = content; }),
        GatewayOptions{"    retry: {max_attempts: 1}\n"});
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", std::string("Bearer ") + kClientKey}});
  auto reply = downstream.read_stream();
  ASSERT_EQ(reply.status, 200u);
  const auto answer = read_answer(reply.body);
  EXPECT_FALSE(answer.error);
  EXPECT_TRUE(answer.done);
  EXPECT_EQ(answer.content, content);
}

TEST_F(FramingTest, PlainAnswerToAStreamingRequestCarriesUsageWhenAsked) {
  start(reply_with([](FakeReply& reply) { reply.plain_answer_to_stream = true; }),
        GatewayOptions{"    retry: {max_attempts: 1}\n"});
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions",
                  R"({"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},)"
                  R"("messages":[{"role":"user","content":"hi"}]})",
                  {{"authorization", std::string("Bearer ") + kClientKey}});
  auto reply = downstream.read_stream();
  ASSERT_EQ(reply.status, 200u);
  auto events = data_events(reply.body);
  ASSERT_GE(events.size(), 3u) << reply.body;
  EXPECT_EQ(events.back(), "[DONE]");
  auto usage_chunk = json::parse(events[events.size() - 2]);
  EXPECT_EQ(usage_chunk.at("object"), "chat.completion.chunk");
  EXPECT_TRUE(usage_chunk.at("choices").as_array().empty());
  EXPECT_GT(usage_chunk.at("usage").at("completion_tokens").to_number<int>(), 0);
  auto first = json::parse(events.front());
  EXPECT_EQ(first.at("choices").at(0).at("delta").at("role"), "assistant");
  EXPECT_EQ(first.at("choices").at(0).at("finish_reason"), "stop");
}

TEST_F(GatewayTest, NumbersReachTheProviderAsTheClientWroteThem) {
  start(simulate::default_reply);
  const std::string body =
      R"({"model":"gpt-4","max_tokens": 1e400,"seed":12345678901234567890123,)"
      R"("messages":[{"role":"user","content":"hi"}]})";
  auto reply = client().post("/v1/chat/completions", body);
  ASSERT_EQ(reply.status, 200u) << reply.body;
  const auto sent = upstream_->recorded_requests().at(0).body;
  EXPECT_EQ(sent,
            R"({"model":"gpt-4.1","max_tokens": 1e400,"seed":12345678901234567890123,)"
            R"("messages":[{"role":"user","content":"hi"}]})");
}

// The answer's header is parsed where the first read left it when it came whole; one that takes
// more reads is read on by Beast from what the first read brought. Both requests go over the
// same client and provider connections (the second takes the read buffers the first gave back).
TEST_F(GatewayTest, AnswerWhoseHeaderArrivesInPiecesIsReadWhole) {
  start(reply_with([](FakeReply& reply) {
    reply.content = "in pieces";
    reply.header_pause = std::chrono::milliseconds(30);
  }));
  auto downstream = client();
  for (int round = 0; round < 2; ++round) {
    auto reply = downstream.post("/v1/chat/completions", chat_body());
    ASSERT_EQ(reply.status, 200u) << reply.body;
    EXPECT_EQ(json::parse(reply.body).at("choices").at(0).at("message").at("content"), "in pieces")
        << reply.body;
  }
  EXPECT_EQ(upstream_->requests_received(), 2u);
  EXPECT_EQ(upstream_->connections_accepted(), 1u);
  const auto recorded = upstream_->recorded_requests();
  EXPECT_EQ(recorded.at(0).connection_id, recorded.at(1).connection_id);
}

TEST_F(GatewayTest, AnswerOverTheLimitIsRefusedOnceNotRetried) {
  GatewayOptions options{"    retry: {max_attempts: 3}\n"};
  options.top_extra = "limits: {max_response_bytes: 65536}\n";
  start(reply_with([](FakeReply& reply) { reply.content = std::string(100'000, 'x'); }), options);
  auto reply = client().post("/v1/chat/completions", chat_body());
  expect_openai_error(reply, 502, "response_too_large");
  EXPECT_EQ(upstream_->requests_received(), 1u);
  EXPECT_EQ(server_->health()->provider("primary").breakers.at(0)->snapshot(
                std::chrono::steady_clock::now()).calls,
            0u)
      << "an answer too large for the gateway says nothing about the provider's health";
}

}  // namespace
}  // namespace cutover::testing
