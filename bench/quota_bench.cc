// Issue #15: what quota bookkeeping costs a request, natively (bench/cache.sh counts it under
// callgrind, which cannot see the kernel's share of a request nor the CPU's parallelism).
//
// One request's worth of the gateway's quota work on one endpoint: exhausted_until() before the
// attempt, on_request_sent(), then record_quota() on the answer's header (read_quota_headers over
// its fields and QuotaState::update, when QuotaState::wants_reading, or on every answer in the
// EveryAnswer runs, as near a limit). The answer's header is the one bench/cache.sh's upstreams send:
// nginx's five fields plus six rate-limit fields, under the names the gateway reads (quota) or
// under names it ignores (control, its run e). Their difference is the bookkeeping.
// Built on demand: `make bench-quota` (or the target bench_quota).
#include <benchmark/benchmark.h>

#include <boost/beast/http.hpp>
#include <chrono>
#include <string>

#include "resilience/quota.h"

namespace {

namespace http = boost::beast::http;

http::response_header<> answer_header(const std::string& prefix) {
  http::response_header<> header;
  header.result(http::status::ok);
  header.version(11);
  header.set(http::field::server, "nginx/1.22.1");
  header.set(http::field::date, "Mon, 30 Nov 2026 14:00:00 GMT");
  header.set(http::field::content_type, "application/json");
  header.set(http::field::content_length, "567");
  header.set(http::field::connection, "keep-alive");
  header.insert(prefix + "-ratelimit-limit-requests", "1000000000");
  header.insert(prefix + "-ratelimit-remaining-requests", "999999999");
  header.insert(prefix + "-ratelimit-reset-requests", "1s");
  header.insert(prefix + "-ratelimit-limit-tokens", "100000000000");
  header.insert(prefix + "-ratelimit-remaining-tokens", "99999999950");
  header.insert(prefix + "-ratelimit-reset-tokens", "6m0s");
  return header;
}

// `every_answer`: read every answer's headers, as the gateway does near a limit; otherwise as
// it does with room, a success's headers only when QuotaState::wants_reading says so.
void request_cycle(benchmark::State& state, const std::string& prefix, bool every_answer) {
  const auto header = answer_header(prefix);
  cutover::resilience::QuotaState quota;
  using Clock = std::chrono::steady_clock;
  for (auto _ : state) {
    const auto now = Clock::now();
    benchmark::DoNotOptimize(quota.exhausted_until(now));
    quota.on_request_sent();
    if (every_answer || quota.wants_reading(now)) {
      quota.update(
          cutover::resilience::read_quota_headers(header, std::chrono::system_clock::now()), now);
    }
  }
  if (prefix == "x" && !quota.snapshot(Clock::now()).reported) state.SkipWithError("nothing read");
  if (prefix != "x" && quota.snapshot(Clock::now()).reported) state.SkipWithError("read a control");
}

void BM_QuotaHeaders(benchmark::State& state) { request_cycle(state, "x", false); }
void BM_ControlHeaders(benchmark::State& state) { request_cycle(state, "z", false); }
void BM_QuotaHeadersEveryAnswer(benchmark::State& state) { request_cycle(state, "x", true); }
void BM_ControlHeadersEveryAnswer(benchmark::State& state) { request_cycle(state, "z", true); }

}  // namespace

BENCHMARK(BM_QuotaHeaders);
BENCHMARK(BM_ControlHeaders);
BENCHMARK(BM_QuotaHeadersEveryAnswer);
BENCHMARK(BM_ControlHeadersEveryAnswer);
BENCHMARK_MAIN();
