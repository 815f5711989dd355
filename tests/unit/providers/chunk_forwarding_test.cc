#include "providers/chunk_forwarding.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cutover::providers {
namespace {

constexpr std::string_view kClientModel = "gpt-4o";

std::string chunk_event(std::string_view id, std::string_view choices, std::string_view usage,
                        std::string_view field = "data: ") {
  return std::string(field) + R"({"id":")" + std::string(id) +
         R"(","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4.1-2025-04-14",)"
         R"("system_fingerprint":"fp_b3f1157249","choices":)" +
         std::string(choices) + R"(,"usage":)" + std::string(usage) + "}\n\n";
}

std::string choice(std::string_view delta, std::string_view finish = "null") {
  return R"([{"index":0,"delta":)" + std::string(delta) + R"(,"logprobs":null,"finish_reason":)" +
         std::string(finish) + "}]";
}

std::string content(std::string_view text) {
  return choice(R"({"content":")" + std::string(text) + R"("})");
}

// A content chunk's data: its event without "data: " and the blank line.
std::string data_of(std::string_view id, std::string_view text) {
  const std::string event = chunk_event(id, content(text), "null");
  return event.substr(6, event.size() - 8);
}

constexpr std::string_view kUsage =
    R"({"prompt_tokens":19,"completion_tokens":10,"total_tokens":29})";

// A stream as OpenAI sends it, `words` content chunks long, with the usage chunk.
std::string openai_stream(std::string_view id, const std::vector<std::string_view>& words) {
  std::string stream =
      chunk_event(id, choice(R"({"role":"assistant","content":"","refusal":null})"), "null");
  for (const auto word : words) stream += chunk_event(id, content(word), "null");
  stream += chunk_event(id, choice("{}", R"("stop")"), "null");
  stream += chunk_event(id, "[]", kUsage);
  return stream + "data: [DONE]\n\n";
}

// What the client gets, as far as these functions decide it: their bytes, and a marker for each
// event they leave to the DOM path.
struct Forwarded {
  std::string out;
  Usage usage;
  bool saw_finish = false;
  bool saw_end_marker = false;
  std::size_t taken_at_front = 0;  // bytes forward_kept_chunks() took
};

CanonicalStream openai_reader(bool strip_usage) {
  static const ResponseIdentity identity{"chatcmpl-", 1700000000, kClientModel, "gw"};
  return CanonicalStream(config::Dialect::openai, ApiKind::chat_completions, identity, strip_usage);
}

void forward_parsed(std::vector<SseEvent>& events, CanonicalStream& reader, ShapeMemo& memo,
                    bool strip_usage, const std::string& model_json, Forwarded& result) {
  for (auto& event : events) {
    if (!forward_event_in_place(event, reader, memo, strip_usage, model_json, result.usage,
                                result.out)) {
      result.out += "<tree:" + event.event + ":" + event.data + ">";
    }
  }
  events.clear();
}

// The stream cut into reads of `piece` bytes. `at_front`: as the gateway reads a stream, each
// read's leading events that match a kept shape taken from its bytes, the rest fed to the parser;
// otherwise every event through the parser, then forward_event_in_place(): the reference.
Forwarded forward_stream(std::string_view stream, std::size_t piece, bool strip_usage,
                         ShapeMemo& memo, bool at_front) {
  const std::string model_json = boost::json::serialize(boost::json::string_view(kClientModel));
  auto reader = openai_reader(strip_usage);
  SseParser parser;
  std::vector<SseEvent> events;
  Forwarded result;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    auto read = stream.substr(at, piece);
    if (at_front) {
      const std::size_t taken = forward_kept_chunks(read, parser, reader, memo, strip_usage,
                                                    model_json, result.usage, result.out);
      EXPECT_LE(taken, read.size());
      result.taken_at_front += taken;
      read.remove_prefix(taken);
    }
    EXPECT_TRUE(parser.feed(read, events));
    forward_parsed(events, reader, memo, strip_usage, model_json, result);
  }
  parser.finish(events);
  forward_parsed(events, reader, memo, strip_usage, model_json, result);
  result.saw_finish = reader.saw_finish();
  result.saw_end_marker = reader.saw_end_marker();
  return result;
}

Forwarded through_the_parser(std::string_view stream, std::size_t piece, bool strip_usage,
                             ShapeMemo& memo) {
  return forward_stream(stream, piece, strip_usage, memo, false);
}

Forwarded as_the_gateway(std::string_view stream, std::size_t piece, bool strip_usage,
                         ShapeMemo& memo) {
  return forward_stream(stream, piece, strip_usage, memo, true);
}

void expect_same(const Forwarded& gateway, const Forwarded& reference, const std::string& what) {
  EXPECT_EQ(gateway.out, reference.out) << what;
  EXPECT_EQ(gateway.saw_finish, reference.saw_finish) << what;
  EXPECT_EQ(gateway.saw_end_marker, reference.saw_end_marker) << what;
  EXPECT_EQ(gateway.usage.present, reference.usage.present) << what;
  EXPECT_EQ(gateway.usage.prompt_tokens, reference.usage.prompt_tokens) << what;
  EXPECT_EQ(gateway.usage.completion_tokens, reference.usage.completion_tokens) << what;
  EXPECT_EQ(gateway.usage.total_tokens, reference.usage.total_tokens) << what;
}

// For streams that mix kept shapes with what they cannot vouch for, cut into reads of every
// size, the gateway's way gives the client the bytes, usage and finish the parser's way gives.
TEST(ChunkForwardingTest, EventsTakenAtTheFrontOfAReadAreForwardedAsTheParsersPathForwardsThem) {
  const std::string id = "chatcmpl-A1";
  const std::vector<std::string> streams = {
      openai_stream(id, {"Hello", "!", " How", " can", " I", " help", "?"}),
      // "data:" without its space, a comment, a named event, an error, a chunk of another shape.
      chunk_event(id, content("a"), "null") + chunk_event(id, content("b"), "null", "data:") +
          ": keep-alive\n\n" + chunk_event(id, content("c"), "null") + "event: ping\ndata: {}\n\n" +
          chunk_event(id, content("d"), "null") + R"(data: {"error":{"message":"overloaded"}})" +
          "\n\n" + chunk_event(id, content(R"(\u00e9\"quoted\")"), "null") +
          chunk_event(id, choice(R"({"content":"x","tool_calls":[]})"), "null") +
          chunk_event(id, content("e"), "null") + "data:[DONE]\n\n",
      // A CR inside a kept shape's line (it ends the line there), a data event of two lines
      // (the parser joins them with a line feed), usage riding on a content chunk, CRLF line
      // ends.
      chunk_event(id, content("a"), "null") + chunk_event(id, content("b"), "null") + "data: " +
          data_of(id, "c").insert(40, "\r") + "\n\n" + chunk_event(id, content("d"), "null") +
          "data: " + data_of(id, "e").insert(20, "\ndata: ") + "\n\n" + "data: " +
          data_of(id, "f").insert(10, "\ndata: ") + "\n\n" + chunk_event(id, content("g"), kUsage) +
          chunk_event(id, content("h"), "null") + "data: " + data_of(id, "i") + "\r\n\r\n" +
          chunk_event(id, content("j"), "null") + "event: done\ndata: [DONE]\n\n",
  };
  std::size_t taken = 0;
  for (const bool strip_usage : {false, true}) {
    for (std::size_t index = 0; index < streams.size(); ++index) {
      for (const std::size_t piece : {1u, 7u, 64u, 300u, 100000u}) {
        const std::string what = "stream " + std::to_string(index) + " in pieces of " +
                                 std::to_string(piece) + (strip_usage ? ", usage stripped" : "");
        ShapeMemo reference_memo(AnswerShape::chunk);
        ShapeMemo gateway_memo(AnswerShape::chunk);
        // Twice: the second time the shapes are kept from the start.
        for (int round = 0; round < 2; ++round) {
          const auto reference =
              through_the_parser(streams[index], piece, strip_usage, reference_memo);
          const auto gateway = as_the_gateway(streams[index], piece, strip_usage, gateway_memo);
          expect_same(gateway, reference, what);
          taken += gateway.taken_at_front;
        }
      }
    }
  }
  EXPECT_GT(taken, 0u);  // events were taken at the front, not only through the parser
}

// Once the shapes are kept, a whole stream in one read is taken at the front, its end marker
// included, and goes out as the provider sent it but for the model; the usage chunk the client
// did not ask for is dropped, its usage noted.
TEST(ChunkForwardingTest, AKeptStreamIsTakenWholeWithTheClientsModel) {
  const std::string stream = openai_stream("chatcmpl-B2", {"Hi", " there"});
  for (const bool strip_usage : {false, true}) {
    ShapeMemo memo(AnswerShape::chunk);
    as_the_gateway(stream, stream.size(), strip_usage, memo);  // the shapes learned
    const auto gateway = as_the_gateway(stream, stream.size(), strip_usage, memo);
    EXPECT_EQ(gateway.taken_at_front, stream.size());
    std::string expected = stream;
    if (strip_usage) {
      const std::string usage_event = chunk_event("chatcmpl-B2", "[]", kUsage);
      const auto at = expected.find(usage_event);
      ASSERT_NE(at, std::string::npos);
      expected.erase(at, usage_event.size());
    }
    for (std::size_t at = 0; (at = expected.find("gpt-4.1-2025-04-14", at)) != std::string::npos;) {
      expected.replace(at, 18, kClientModel);
    }
    EXPECT_EQ(gateway.out, expected) << (strip_usage ? "usage stripped" : "usage kept");
    EXPECT_TRUE(gateway.usage.present);
    EXPECT_EQ(gateway.usage.total_tokens, 29);
    EXPECT_TRUE(gateway.saw_finish);
    EXPECT_TRUE(gateway.saw_end_marker);
  }
}

// A chunk shape is never kept from data with a line break in it (an event of two data lines):
// data read at the front of a read is a line's, and must match only shapes without one.
TEST(ChunkForwardingTest, NoShapeIsKeptFromDataWithALineBreak) {
  ShapeMemo memo(AnswerShape::chunk);
  std::string two_lines = chunk_event("chatcmpl-C3", content("a"), "null").substr(6);
  two_lines.resize(two_lines.size() - 2);
  const auto comma = two_lines.find(',');
  std::string joined = two_lines.substr(0, comma + 1) + "\n" + two_lines.substr(comma + 1);
  ASSERT_TRUE(PlainAnswer(joined, memo).needs_only_model());  // it passes, scanned
  const PlainAnswer again(std::string_view(joined), memo, PlainAnswer::KeptShapesOnly{});
  EXPECT_FALSE(again.is_completion());  // but was not kept
  ASSERT_TRUE(PlainAnswer(two_lines, memo).needs_only_model());
  const PlainAnswer one_line(std::string_view(two_lines), memo, PlainAnswer::KeptShapesOnly{});
  EXPECT_TRUE(one_line.needs_only_model());  // the one-line form is
}

}  // namespace
}  // namespace cutover::providers
