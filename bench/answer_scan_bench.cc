// Issue #14: a provider's plain chat completion on its way to the client, two ways.
//
//   dom:         what Gateway::deliver_plain does today: json::parse into the same 8 KiB
//                stack-first monotonic buffer, normalize_response(), json::serialize().
//   scan_splice: providers::PlainAnswer (simdjson on-demand, every byte validated), then
//                spliced(): the provider's bytes with only `model` replaced.
//
// For a 577-byte answer shaped like OpenAI's and a 20 KiB one. Both start from the body as read
// (a std::string with simdjson's padding reserved, as read_answer would reserve it) and end with
// the client's body in a std::string. `allocs` counts calls to operator new per answer.
// Built on demand: `make bench-answer-scan` (or the target bench_answer_scan).
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <atomic>
#include <boost/json.hpp>
#include <cstdlib>
#include <new>
#include <string>

#include "providers/answer_scan.h"
#include "providers/chunk_forwarding.h"
#include "providers/openai_dialect.h"
#include "providers/sse.h"

namespace {

std::atomic<std::size_t> allocations{0};

}  // namespace

// Counting replacements; GCC cannot tell that these frees match these news.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

namespace json = boost::json;
using namespace cutover::providers;

constexpr std::string_view kClientModel = "gpt-4o";

constexpr std::string_view kHead =
    R"({"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJK","object":"chat.completion","created":1741569952,)"
    R"("model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant",)"
    R"("content":")";
constexpr std::string_view kTail =
    R"(","refusal":null,"annotations":[]},"logprobs":null,)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,)"
    R"("total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},)"
    R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
    R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},)"
    R"("system_fingerprint":"fp_fc9f1d7035"})";

// The answer with `size` bytes in all: its content is prose with the escapes a model writes.
std::string answer_of_size(std::size_t size) {
  std::string content = "Hi! How can I help?";
  const std::string_view prose =
      R"(Here is the \"plan\":\n1. Read the file \/etc\/hosts;\n2. caf\u00e9 au lait. )";
  if (size > kHead.size() + kTail.size() + content.size()) {
    content.clear();
    while (kHead.size() + content.size() + kTail.size() < size) content += prose;
    content.resize(size - kHead.size() - kTail.size());
    while (content.back() == '\\') content.back() = ' ';
  }
  std::string body;
  body.reserve(size + simdjson::SIMDJSON_PADDING);
  body.append(kHead).append(content).append(kTail);
  return body;
}

void dom(benchmark::State& state) {
  const std::string body = answer_of_size(static_cast<std::size_t>(state.range(0)));
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  const auto before = allocations.load();
  for (auto _ : state) {
    unsigned char buffer[8192];
    json::monotonic_resource memory(buffer, sizeof buffer);
    boost::system::error_code ec;
    json::value value = json::parse(body, ec, &memory);
    Usage usage;
    if (ec || normalize_response(value, ApiKind::chat_completions, identity, usage)) {
      state.SkipWithError("not normalized");
      break;
    }
    std::string out = json::serialize(value);
    benchmark::DoNotOptimize(out);
    benchmark::DoNotOptimize(usage);
  }
  state.counters["bytes"] = static_cast<double>(body.size());
  state.counters["allocs"] = benchmark::Counter(static_cast<double>(allocations.load() - before),
                                                benchmark::Counter::kAvgIterations);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}

void scan_splice(benchmark::State& state) {
  std::string body = answer_of_size(static_cast<std::size_t>(state.range(0)));
  const auto before = allocations.load();
  for (auto _ : state) {
    const PlainAnswer answer(body);
    auto out = answer.spliced(kClientModel);
    if (!out) {
      state.SkipWithError("scan not enough");
      break;
    }
    benchmark::DoNotOptimize(out);
    benchmark::DoNotOptimize(answer.usage());
  }
  state.counters["bytes"] = static_cast<double>(body.size());
  state.counters["allocs"] = benchmark::Counter(static_cast<double>(allocations.load() - before),
                                                benchmark::Counter::kAvgIterations);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}

// The scan alone: what reading usage and finish reasons costs without producing a body.
void scan_only(benchmark::State& state) {
  std::string body = answer_of_size(static_cast<std::size_t>(state.range(0)));
  const auto before = allocations.load();
  for (auto _ : state) {
    const PlainAnswer answer(body);
    benchmark::DoNotOptimize(answer.needs_only_model());
    benchmark::DoNotOptimize(answer.usage());
  }
  state.counters["bytes"] = static_cast<double>(body.size());
  state.counters["allocs"] = benchmark::Counter(static_cast<double>(allocations.load() - before),
                                                benchmark::Counter::kAvgIterations);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}

// A stream as bench/pinned.py's upstream sends it: the role chunk, nine content chunks, the
// finish chunk, the usage chunk and the end marker, 3,787 bytes in one read.
std::string pinned_stream() {
  const std::string head =
      R"(data: {"id":"chatcmpl-CbenchPinned14reference0002","object":"chat.completion.chunk",)"
      R"("created":1767225600,"model":"gpt-4.1-2025-04-14","service_tier":"default",)"
      R"("system_fingerprint":"fp_b3f1157249","choices":)";
  const auto choice = [](std::string_view delta, std::string_view finish) {
    return std::string(R"([{"index":0,"delta":)") + std::string(delta) +
           R"(,"logprobs":null,"finish_reason":)" + std::string(finish) + "}]";
  };
  std::string stream = head +
                       choice(R"({"role":"assistant","content":"","refusal":null})", "null") +
                       R"(,"usage":null})" + "\n\n";
  for (const std::string_view word :
       {"Hello", "!", " How", " can", " I", " help", " you", " today", "?"}) {
    stream += head + choice(R"({"content":")" + std::string(word) + R"("})", "null") +
              R"(,"usage":null})" + "\n\n";
  }
  stream += head + choice("{}", R"("stop")") + R"(,"usage":null})" + "\n\n";
  stream += head + R"([],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,)"
                   R"("prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},)"
                   R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
                   R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}})"
                   "\n\n";
  stream += "data: [DONE]\n\n";
  return stream;
}

// A stream's chunks as Gateway::deliver_stream forwards an OpenAI provider's to an OpenAI
// client once the provider's chunk shapes are kept: the one-line events at the front of the read
// matched against the kept shapes and written out with the client's model
// (providers::forward_kept_chunks), the usage chunk kept (the client asked for it), the end
// marker noted.
void stream_in_place(benchmark::State& state) {
  const std::string stream = pinned_stream();
  ShapeMemo memo(AnswerShape::chunk);
  const std::string model_json = json::serialize(json::string_view(kClientModel));
  const ResponseIdentity identity{"chatcmpl-gw", 1700000000, kClientModel};
  std::string out;
  Usage usage;
  {
    SseParser parser;
    CanonicalStream reader(cutover::config::Dialect::openai, ApiKind::chat_completions, identity,
                           false);
    std::vector<SseEvent> events;
    parser.feed(stream, events);
    for (auto& event : events) {
      forward_event_in_place(event, reader, memo, false, model_json, usage, out);
    }
  }
  out.reserve(2 * stream.size());
  std::size_t taken_in_all = 0;
  const auto before = allocations.load();
  for (auto _ : state) {
    out.clear();
    const SseParser parser;
    CanonicalStream reader(cutover::config::Dialect::openai, ApiKind::chat_completions, identity,
                           false);
    taken_in_all +=
        forward_kept_chunks(stream, parser, reader, memo, false, model_json, usage, out);
    benchmark::DoNotOptimize(out);
  }
  if (taken_in_all != stream.size() * state.iterations()) {
    state.SkipWithError("a chunk was not forwarded in place");
  }
  state.counters["events"] = 12;
  state.counters["allocs"] = benchmark::Counter(static_cast<double>(allocations.load() - before),
                                                benchmark::Counter::kAvgIterations);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
}

BENCHMARK(dom)->Arg(577)->Arg(20 * 1024);
BENCHMARK(scan_splice)->Arg(577)->Arg(20 * 1024);
BENCHMARK(scan_only)->Arg(577)->Arg(20 * 1024);
BENCHMARK(stream_in_place);

}  // namespace

BENCHMARK_MAIN();
