#include "providers/sse.h"

#include <gtest/gtest.h>

#include "providers/answer_scan.h"

namespace cutover::providers {
namespace {

std::vector<SseEvent> parse_in_pieces(std::string_view stream, std::size_t piece) {
  SseParser parser;
  std::vector<SseEvent> events;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    EXPECT_TRUE(parser.feed(stream.substr(at, piece), events));
  }
  return events;
}

TEST(SseParserTest, EventsSplitAtEveryByteBoundaryParseTheSame) {
  const std::string stream =
      "data: {\"a\":1}\n\n: keep-alive comment\n\nevent: error\ndata: {\"b\":2}\r\n\r\n"
      "data: line one\ndata: line two\n\ndata: [DONE]\n\n";
  for (std::size_t piece : {1u, 2u, 3u, 7u, 1000u}) {
    auto events = parse_in_pieces(stream, piece);
    ASSERT_EQ(events.size(), 4u) << "piece size " << piece;
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[1].event, "error");
    EXPECT_EQ(events[1].data, "{\"b\":2}");
    EXPECT_EQ(events[2].data, "line one\nline two");
    EXPECT_EQ(events[3].data, "[DONE]");
  }
}

TEST(SseParserTest, LoneCarriageReturnsEndLines) {
  auto events = parse_in_pieces("data:x\r\rdata:y\r\r", 1);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "x");
  EXPECT_EQ(events[1].data, "y");
}

TEST(SseParserTest, UnfinishedEventIsPendingNotEmitted) {
  SseParser parser;
  std::vector<SseEvent> events;
  parser.feed("data: {\"partial\"", events);
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(parser.has_partial_event());
}

TEST(SseParserTest, OverlongLineMarksStreamMalformed) {
  SseParser parser(16);
  std::vector<SseEvent> events;
  EXPECT_FALSE(parser.feed("data: " + std::string(64, 'x'), events));
  EXPECT_FALSE(parser.feed("\n\n", events));
  EXPECT_TRUE(events.empty());
}

TEST(SseParserTest, FinishHandsOutALastEventWithoutItsBlankLine) {
  for (std::string_view ending : {"data: [DONE]\n", "data: [DONE]\r\n", "data: [DONE]"}) {
    SseParser parser;
    std::vector<SseEvent> events;
    parser.feed(std::string("data: {\"a\":1}\n\n") + std::string(ending), events);
    ASSERT_EQ(events.size(), 1u);
    parser.finish(events);
    ASSERT_EQ(events.size(), 2u) << ending;
    EXPECT_EQ(events[1].data, "[DONE]");
  }
}

TEST(SseParserTest, FinishAfterACompleteStreamAddsNothing) {
  SseParser parser;
  std::vector<SseEvent> events;
  parser.feed("data: x\n\n", events);
  parser.finish(events);
  EXPECT_EQ(events.size(), 1u);
}

}  // namespace
}  // namespace cutover::providers

namespace cutover::providers {
namespace {

TEST(SseParserTest, ALineOfExactlyTheLimitIsKeptAcrossPieces) {
  SseParser parser(16);
  std::vector<SseEvent> events;
  // "data: " and ten bytes: sixteen, the limit, in two pieces.
  EXPECT_TRUE(parser.feed("data: 01234", events));
  EXPECT_TRUE(parser.feed("56789\n\n", events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "0123456789");
  SseParser strict(16);
  events.clear();
  EXPECT_TRUE(strict.feed("data: 01234", events));
  EXPECT_FALSE(strict.feed("567890\n\n", events));
  EXPECT_TRUE(events.empty());
}

TEST(SseParserTest, ManyEventsInOnePieceComeOutInOrder) {
  SseParser parser;
  std::vector<SseEvent> events;
  std::string bytes;
  for (int i = 0; i < 13; ++i) bytes += "data: {\"n\":" + std::to_string(i) + "}\r\n\r\n";
  bytes += ": keep-alive\n\nevent: ping\ndata: a\ndata: b\n\n";
  ASSERT_TRUE(parser.feed(bytes, events));
  ASSERT_EQ(events.size(), 14u);
  for (int i = 0; i < 13; ++i) EXPECT_EQ(events[i].data, "{\"n\":" + std::to_string(i) + "}");
  EXPECT_EQ(events[13].event, "ping");
  EXPECT_EQ(events[13].data, "a\nb");
  EXPECT_FALSE(parser.has_partial_event());
}

// The gateway scans an OpenAI chunk in place (PlainAnswer), which needs simdjson's padding past
// the bytes: a one-line event comes with that room, so the scan neither copies nor grows it.
TEST(SseParserTest, AOneLineEventHasRoomForTheInPlaceScan) {
  SseParser parser;
  std::vector<SseEvent> events;
  const std::string chunk(300, 'x');
  ASSERT_TRUE(parser.feed("data: " + chunk + "\n\n", events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, chunk);
  EXPECT_GE(events[0].data.capacity(), chunk.size() + PlainAnswer::kPadding);
  const char* const before = events[0].data.data();
  const PlainAnswer scanned(events[0].data, AnswerShape::chunk);
  EXPECT_EQ(events[0].data.data(), before);
  EXPECT_EQ(events[0].data, chunk);
}

TEST(SseParserTest, EventsFillTheSpareStringsGivenBack) {
  std::vector<std::string> spare(2);
  spare[0].reserve(1000);
  spare[1].reserve(2000);
  spare[1] = "left over";
  const char* first_room = spare[1].data();  // the last one is taken first
  const char* second_room = spare[0].data();
  SseParser parser;
  parser.take_data_strings_from(spare);
  std::vector<SseEvent> events;
  ASSERT_TRUE(
      parser.feed("data: {\"a\":1}\n\ndata: line one\ndata: line two\n\ndata: x\n\n", events));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[0].data.data(), first_room);
  EXPECT_EQ(events[1].data, "line one\nline two");
  EXPECT_EQ(events[1].data.data(), second_room);
  EXPECT_EQ(events[2].data, "x");  // none left: a string of its own
  EXPECT_TRUE(spare.empty());
}

// The gateway reads a read's leading one-line data events as views (whole_data_event), when
// their data holds no CR (a kept chunk shape's match), and feeds the parser the rest: for every
// stream and every way it is cut into reads, the events must be the ones feeding it all would
// make.
std::vector<SseEvent> read_with_views(std::string_view stream, std::size_t piece,
                                      std::size_t max_line_bytes, std::size_t& views) {
  SseParser parser(max_line_bytes);
  std::vector<SseEvent> events;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    auto unread = stream.substr(at, piece);
    std::size_t size = 0;
    while (const auto data = parser.whole_data_event(unread, size)) {
      if (data->find('\r') != std::string_view::npos) break;
      EXPECT_LE(size, unread.size());
      events.push_back(SseEvent{"", std::string(*data)});
      unread.remove_prefix(size);
      ++views;
    }
    if (!parser.feed(unread, events)) break;
  }
  parser.finish(events);
  return events;
}

TEST(SseParserTest, WholeDataEventsTakenAsViewsAreTheEventsFeedMakes) {
  const std::vector<std::string> streams = {
      "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n",
      "data:no space\n\ndata:  two spaces\n\ndata:\n\ndata\n\n",
      "data: {\"a\":1}\r\n\r\ndata: x\rdata: y\r\rdata: z\n\n",
      ": comment\n\ndata: after a comment\n\nevent: ping\ndata: named\n\ndata: plain\n\n",
      "data: one\ndata: two\n\ndata: {\"c\":3}\n\nid: 7\ndata: with id\n\n",
      "data: a line over the limit of thirty-two bytes\n\ndata: short\n\n",
      "data: no blank line at the end\n",
      "data: ends mid-line",
  };
  std::size_t views = 0;
  for (const auto& stream : streams) {
    for (std::size_t piece : {1u, 2u, 5u, 9u, 17u, 1000u}) {
      const auto expected = [&] {
        SseParser parser(32);
        std::vector<SseEvent> events;
        for (std::size_t at = 0; at < stream.size(); at += piece) {
          if (!parser.feed(std::string_view(stream).substr(at, piece), events)) break;
        }
        parser.finish(events);
        return events;
      }();
      const auto events = read_with_views(stream, piece, 32, views);
      ASSERT_EQ(events.size(), expected.size()) << stream << " in pieces of " << piece;
      for (std::size_t i = 0; i < events.size(); ++i) {
        EXPECT_EQ(events[i].event, expected[i].event) << stream << " in pieces of " << piece;
        EXPECT_EQ(events[i].data, expected[i].data) << stream << " in pieces of " << piece;
      }
    }
  }
  EXPECT_GT(views, 0u);  // the views were taken, not only the parser's path
}

TEST(SseParserTest, AWholeDataEventIsOnlyTakenBetweenEvents) {
  std::size_t size = 0;
  SseParser parser;
  std::vector<SseEvent> events;
  const auto data = parser.whole_data_event("data: {\"a\":1}\n\ndata: next", size);
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(*data, "{\"a\":1}");
  EXPECT_EQ(size, 15u);  // "data: " and the data, two line feeds
  // Not without its blank line, not with CRLF line ends, not a named event.
  EXPECT_FALSE(parser.whole_data_event("data: x\n", size));
  EXPECT_FALSE(parser.whole_data_event("data: x\ndata: y\n\n", size));
  EXPECT_FALSE(parser.whole_data_event("data: x\r\n\r\n", size));
  // A CR inside the line is the caller's to find (the parser would end the line there).
  EXPECT_EQ(parser.whole_data_event("data: x\ry\n\n", size), "x\ry");
  EXPECT_FALSE(parser.whole_data_event("event: e\ndata: x\n\n", size));
  // Not while a line, a field or a CR's LF of an earlier read is pending.
  ASSERT_TRUE(parser.feed("data: {\"par", events));
  EXPECT_FALSE(parser.whole_data_event("data: x\n\n", size));
  ASSERT_TRUE(parser.feed("t\":1}\n", events));
  EXPECT_FALSE(parser.whole_data_event("data: x\n\n", size));
  ASSERT_TRUE(parser.feed("\ndata: y\r", events));
  EXPECT_FALSE(parser.whole_data_event("\ndata: x\n\n", size));
  ASSERT_TRUE(parser.feed("\r", events));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_FALSE(parser.whole_data_event("data: x\n\n", size));  // the CR's LF may come first
  ASSERT_TRUE(parser.feed("\n", events));
  EXPECT_TRUE(parser.whole_data_event("data: x\n\n", size));
  // Not a line the parser would refuse as too long.
  SseParser strict(8);
  EXPECT_FALSE(strict.whole_data_event("data: 123456789\n\n", size));
  EXPECT_TRUE(strict.whole_data_event("data: 1\n\n", size));
}

}  // namespace
}  // namespace cutover::providers
