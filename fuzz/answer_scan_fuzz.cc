// Fuzz target: scanning any body never crashes and never takes what Boost.JSON refuses; where the
// scan reads a completion its usage and finish reasons are the DOM path's, and where it says only
// the model changes, the spliced body parses to exactly what normalize_response() makes. The same
// for a stream event read as a chunk, against normalize_stream_chunk(), for a chunk read after
// another through a ShapeMemo, against the same chunk scanned alone, and for a stream's chunks
// taken from a read's bytes (providers/chunk_forwarding), against the same events parsed.
#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "providers/answer_scan.h"
#include "providers/chunk_forwarding.h"
#include "providers/openai_dialect.h"
#include "providers/sse.h"

namespace {

namespace json = boost::json;
using namespace cutover::providers;

// A client's model name that needs escaping.
constexpr std::string_view kClientModel = "gpt-4o \"mini\"\\/\xc3\xa9";

void check(bool condition) {
  if (!condition) std::abort();
}

bool same_usage(const Usage& a, const Usage& b) {
  return a.present == b.present && a.prompt_tokens == b.prompt_tokens &&
         a.completion_tokens == b.completion_tokens && a.total_tokens == b.total_tokens &&
         a.cached_prompt_tokens == b.cached_prompt_tokens &&
         a.cache_creation_prompt_tokens == b.cache_creation_prompt_tokens;
}

// Boost.JSON's equality, except that NaN equals NaN: Boost.JSON 1.81 reads 0e2040 as NaN, in
// the spliced body as in the DOM path's.
bool same_value(const json::value& a, const json::value& b) {
  if (a.is_double() && b.is_double()) {
    return a.get_double() == b.get_double() ||
           (std::isnan(a.get_double()) && std::isnan(b.get_double()));
  }
  if (a.is_object() && b.is_object()) {
    if (a.get_object().size() != b.get_object().size()) return false;
    for (const auto& [key, value] : a.get_object()) {
      const auto* other = b.get_object().if_contains(key);
      if (other == nullptr || !same_value(value, *other)) return false;
    }
    return true;
  }
  if (a.is_array() && b.is_array()) {
    const auto& x = a.get_array();
    const auto& y = b.get_array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!same_value(x[i], y[i])) return false;
    }
    return true;
  }
  return a == b;
}

// Checks one body against the DOM path.
void check_body(std::string text) {
  const PlainAnswer answer(text);

  boost::system::error_code ec;
  const json::value parsed = json::parse(text, ec);
  if (ec) {
    check(!answer.is_completion() && !answer.spliced(kClientModel));
    return;
  }
  json::value normalized = parsed;
  Usage usage;
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  const bool normalizes =
      !normalize_response(normalized, ApiKind::chat_completions, identity, usage);

  if (answer.is_completion()) {
    const auto* choices = parsed.is_object() ? parsed.get_object().if_contains("choices") : nullptr;
    check(choices != nullptr && choices->is_array());
    check(answer.finish_reasons().size() == choices->get_array().size());
  }
  if (answer.is_completion() && normalizes) {
    check(same_usage(answer.usage(), usage));
    const auto& choices = normalized.get_object().at("choices").get_array();
    for (std::size_t i = 0; i < choices.size(); ++i) {
      const auto& reason = choices[i].get_object().at("finish_reason");
      const auto scanned = answer.finish_reasons()[i];
      check(reason.is_null() ? !scanned : scanned && *scanned == reason.get_string());
    }
  }
  const auto spliced = answer.spliced(kClientModel);
  check(spliced.has_value() == answer.needs_only_model());
  if (spliced) {
    check(normalizes);
    check(same_value(json::parse(*spliced), normalized));
  }
}

// Checks one stream event, read as a chunk, against the DOM path.
void check_chunk(std::string text) {
  const PlainAnswer chunk(text, AnswerShape::chunk);
  boost::system::error_code ec;
  const json::value parsed = json::parse(text, ec);
  if (ec) {
    check(!chunk.is_completion() && !chunk.needs_only_model());
    return;
  }
  if (!chunk.needs_only_model()) return;
  json::value normalized = parsed;
  Usage usage;
  ChunkOutcome outcome;
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  check(!normalize_stream_chunk(normalized, ApiKind::chat_completions, identity, false, usage,
                                outcome));
  check(!outcome.is_error && !outcome.drop);
  check(same_usage(chunk.usage(), usage));
  check(chunk.choice_count() == normalized.get_object().at("choices").get_array().size());
  std::string spliced;
  chunk.append_spliced(spliced, json::serialize(json::string_view(kClientModel)));
  check(same_value(json::parse(spliced), normalized));
}

// A chunk that passes with only its model changed, with a hole where the input goes.
constexpr std::string_view kChunkHoles[][2] = {
    {R"({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",)"
     R"("choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"extra":)",
     "}"},
    {R"({"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":)",
     "}"},
    {R"({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",)"
     R"("choices":[{"index":0,"delta":)",
     R"(,"finish_reason":null}]})"},
};

// Answers whose verdict a ShapeMemo keeps, with a hole inside (or in place of) a slot: a free
// string, the id, `created`, a usage count, an integer. The memo is first given the answer with
// the filler in the hole, then the input's; or in between the answer with the second filler,
// which the memo matches and so learns that the hole's slot varies.
struct MemoHole {
  AnswerShape shape;
  std::string_view before;
  std::string_view filler;
  std::string_view after;
  std::string_view second_filler;
};
constexpr MemoHole kMemoHoles[] = {
    {AnswerShape::chunk,
     R"({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",)"
     R"("choices":[{"index":0,"delta":{"content":")",
     "a", R"("},"finish_reason":null}],"usage":null})", "b"},
    {AnswerShape::chunk,
     R"({"id":"x","object":"chat.completion.chunk","created":1,"model":"m",)"
     R"("choices":[{"index":0,"delta":{"content":)",
     R"("a")", R"(},"finish_reason":null}],"usage":null})", R"("b")"},
    {AnswerShape::chunk, R"({"p":")", "a",
     R"(","id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[]})", "b"},
    {AnswerShape::chunk, R"({"id":)", R"("a")",
     R"(,"object":"chat.completion.chunk","created":1,"model":"m","choices":[]})", R"("b")"},
    {AnswerShape::chunk, R"({"id":"x","object":"chat.completion.chunk","created":)", "1",
     R"(,"model":"m","choices":[]})", "2"},
    {AnswerShape::chunk,
     R"({"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],)"
     R"("usage":{"prompt_tokens":)",
     "1", R"(,"completion_tokens":2,"total_tokens":3}})", "2"},
    {AnswerShape::completion,
     R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":")",
     "a", R"("},"finish_reason":"stop"}]})", "b"},
    {AnswerShape::completion,
     R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"}],)"
     R"("usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,)"
     R"("prompt_tokens_details":{"cached_tokens":)",
     "0", R"(,"audio_tokens":0}}})", "1"},
    {AnswerShape::completion,
     R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"}],)"
     R"("usage":{"prompt_tokens":1,"completion_tokens":)",
     "2", R"(,"total_tokens":3,"completion_tokens_details":{"reasoning_tokens":7}}})", "3"},
    {AnswerShape::completion,
     R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"}],)"
     R"("usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,)"
     R"("completion_tokens_details":{"reasoning_tokens":)",
     "7", R"(}}})", "8"},
};

// The memo's verdict for the input's answer is the one the answer gets alone: read slot by slot
// (the memo has only kept the filler's answer), or with the hole's slot known to vary (it has
// also matched the second filler's).
void check_memo_hole(const MemoHole& hole, bool learned, std::string_view input) {
  ShapeMemo memo(hole.shape);
  const auto with = [&](std::string_view filling) {
    return std::string(hole.before) + std::string(filling) + std::string(hole.after);
  };
  std::string kept = with(hole.filler);
  check(PlainAnswer(kept, memo).needs_only_model());
  if (learned) {
    std::string second = with(hole.second_filler);
    check(PlainAnswer(second, memo).needs_only_model());
    check(memo.reuses() == 1);
  }
  std::string answer = with(input);
  std::string alone = answer;
  const PlainAnswer memoized(answer, memo);
  const PlainAnswer fresh(alone, hole.shape);
  check(memoized.is_completion() == fresh.is_completion());
  check(memoized.needs_only_model() == fresh.needs_only_model());
  check(same_usage(memoized.usage(), fresh.usage()));
  check(std::equal(memoized.finish_reasons().begin(), memoized.finish_reasons().end(),
                   fresh.finish_reasons().begin(), fresh.finish_reasons().end()));
  check(memoized.spliced(kClientModel) == fresh.spliced(kClientModel));
}

void check_memo(std::string_view input) {
  for (const auto& hole : kMemoHoles) {
    for (const bool learned : {false, true}) check_memo_hole(hole, learned, input);
  }
}

// What a stream's chunks become on their way to an OpenAI client (providers/chunk_forwarding):
// the bytes written, markers for the events left to the DOM path, the usage and finish noted.
struct Forwarded {
  std::string out;
  Usage usage;
  bool saw_finish = false;
};

void forward_parsed(std::vector<SseEvent>& events, CanonicalStream& reader, ShapeMemo& memo,
                    std::string_view model_json, Forwarded& result) {
  for (auto& event : events) {
    if (!forward_event_in_place(event, reader, memo, true, model_json, result.usage, result.out)) {
      result.out += "<tree>" + event.data;
    }
  }
  events.clear();
}

// `stream` read in pieces of `piece` bytes, each read's leading events taken from its bytes when
// `at_front` (as the gateway reads) or every event through the parser; `memo` keeps the shapes.
Forwarded forward_stream(std::string_view stream, std::size_t piece, bool at_front,
                         ShapeMemo& memo) {
  const std::string model_json = json::serialize(json::string_view(kClientModel));
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  CanonicalStream reader(cutover::config::Dialect::openai, ApiKind::chat_completions, identity,
                         true);
  SseParser parser(4096);
  std::vector<SseEvent> events;
  Forwarded result;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    auto read = stream.substr(at, piece);
    if (at_front) {
      const std::size_t taken = forward_kept_chunks(read, parser, reader, memo, true, model_json,
                                                    result.usage, result.out);
      check(taken <= read.size());
      read.remove_prefix(taken);
    }
    if (!parser.feed(read, events)) return result;
    forward_parsed(events, reader, memo, model_json, result);
  }
  parser.finish(events);
  forward_parsed(events, reader, memo, model_json, result);
  result.saw_finish = reader.saw_finish();
  return result;
}

// The input as a stream's event and as bytes between kept chunks: the gateway's way of reading
// gives the client what the parser's way gives, the second time with the chunks' shapes kept.
void check_stream(std::string_view input) {
  const std::string chunk =
      R"(data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",)"
      R"("choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"usage":null})"
      "\n\n";
  const std::string usage =
      R"(data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],)"
      R"("usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}})"
      "\n\n";
  const std::string stream = chunk + chunk + "data: " + std::string(input) + "\n\n" + chunk +
                             std::string(input) + usage + chunk + "data: [DONE]\n\n";
  for (const std::size_t piece : {std::size_t{7}, std::size_t{200}, stream.size()}) {
    ShapeMemo gateway_memo(AnswerShape::chunk);
    ShapeMemo reference_memo(AnswerShape::chunk);
    for (int round = 0; round < 2; ++round) {
      const auto gateway = forward_stream(stream, piece, true, gateway_memo);
      const auto reference = forward_stream(stream, piece, false, reference_memo);
      check(gateway.out == reference.out);
      check(same_usage(gateway.usage, reference.usage));
      check(gateway.saw_finish == reference.saw_finish);
    }
  }
}

// A completion that passes with only its model changed, with a hole where the input goes: most
// random bodies are not completions at all, and the differential check needs ones that are.
constexpr std::string_view kHoles[][2] = {
    {R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
     R"("finish_reason":"stop"}],"extra":)",
     "}"},
    {R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
     R"("finish_reason":"stop"}],"usage":)",
     "}"},
    {R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a","x":)",
     R"(},"finish_reason":"stop"}]})"},
    {R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":)",
     "}"},
    {R"({"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"f",)"
     R"("choices":[{"index":0,"message":{"role":"assistant","content":"a"},)"
     R"("finish_reason":"stop"}],)",
     "}"},
};

// Checks `input` alone and inside each hole.
template <std::size_t N, typename Check>
void check_in_holes(std::string_view input, const std::string_view (&holes)[N][2], Check check) {
  check(std::string(input));
  for (const auto& [before, after] : holes) {
    std::string body;
    body.reserve(before.size() + input.size() + after.size());
    body.append(before).append(input).append(after);
    check(std::move(body));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_in_holes(input, kHoles, check_body);
  check_in_holes(input, kChunkHoles, check_chunk);
  check_memo(input);
  check_stream(input);
  return 0;
}
