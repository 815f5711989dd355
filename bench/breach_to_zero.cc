// Breach-to-zero benchmark: how long a migration keeps sending live traffic to a candidate after
// the candidate starts failing (issue #4's target: weight 0 within 1 s of the breach).
//
//   build-bench/breach_to_zero [--repetitions 20] [--intervals 250,100] [--failure-rates 1,0.3]
//                              [--clients 4] [--delay-ms 10] [--warmup-ms 1000]
//                              [--state-store :memory:|PATH]
//   build-bench/breach_to_zero --history-table
//
// Everything runs in this process on 127.0.0.1: two scripted fake providers (primary and
// candidate) and a real gateway (runtime::GatewayServer, 2 workers, state store ":memory:") with
// one migration held in canary at 50 % (a single stage with a one-hour dwell, so it never
// advances; --state-store PATH journals to a SQLite file instead, removed before each repetition).
// Client threads send chat completions, each with a new x-user-id so the sticky split
// sends about half to the candidate. Each repetition uses a fresh gateway and fresh fakes:
//
//   warm-up   both providers healthy for --warmup-ms plus a random share of one evaluation
//             interval (the window fills with successes; T0 lands anywhere in the timer's period)
//   T0        the candidate's script is switched to answer 500 (every request, or a share of
//             them spread evenly)
//   T1        the first 500 leaves the candidate (its script time plus the reply delay)
//   T2        the weight the workers route by (MigrationRuntime::weight) reads 0; polled every
//             1 ms, together with MigrationEngine::phase_of (the controller's view)
//
// Reported per configuration: T2 − T1 (breach to zero) and T2 − T0, median and max; the failures
// and trials the error_rate gate counted (from the journaled transition), the 500s the candidate
// had sent by T2, the gate that fired, and the requests clients saw fail (fallback to the primary
// should hide every candidate failure: the target is 0). Gate settings are the defaults
// (max_error_rate 1 %, max_attempt_error_rate 5 %, confidence 0.99, latency p95 ≤ 1.5 × primary).
//
// --history-table prints, instead, how many candidate requests the error_rate gate (the stage
// window's bound) and the error_rate_change detector need after a failure starts, by failure share
// and by how many healthy requests the stage's window already holds, computed with the gates' own
// statistics.
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "migration/engine.h"
#include "migration/statistics.h"
#include "runtime/gateway_server.h"
#include "simulate/fake_provider.h"
#include "test_client.h"

namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using cutover::simulate::FakeProvider;
using cutover::simulate::FakeReply;
using cutover::simulate::FakeRequest;

constexpr char kClientKey[] = "bench-client-key";
constexpr char kMigration[] = "breach";

struct Options {
  int repetitions = 20;
  std::vector<int> intervals_ms{250, 100};
  std::vector<double> failure_rates{1.0, 0.3};
  unsigned clients = 4;
  int delay_ms = 10;
  int warmup_ms = 1000;
  int timeout_ms = 10'000;
  bool history_table_only = false;
  // ":memory:" or a file path (removed before each repetition): a file makes the journal write
  // that precedes every weight change a real SQLite commit.
  std::string state_store = ":memory:";
};

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// What the candidate did after T0, written by its script on the fake's threads.
struct CandidateLog {
  std::atomic<std::int64_t> first_failure_ticks{0};  // steady_clock ticks: when the first 500 was sent
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> requests{0};
  // When the answer to the n-th request after T0 was sent (steady_clock ticks), for the first
  // kRecorded requests.
  static constexpr std::size_t kRecorded = 1 << 16;
  std::vector<std::atomic<std::int64_t>> sent_at = std::vector<std::atomic<std::int64_t>>(kRecorded);
};

cutover::simulate::Script healthy(std::chrono::milliseconds delay) {
  return [delay](const FakeRequest& request) {
    auto reply = cutover::simulate::default_reply(request);
    reply.delay = delay;
    return reply;
  };
}

// Answers 500 to a share `rate` of requests, spread evenly (rate 0.3: 3 of every 10).
cutover::simulate::Script failing(double rate, std::chrono::milliseconds delay,
                                  std::shared_ptr<CandidateLog> log) {
  return [rate, delay, log](const FakeRequest& request) {
    auto reply = cutover::simulate::default_reply(request);
    reply.delay = delay;
    const auto n = log->requests.fetch_add(1);
    const bool fail = static_cast<std::uint64_t>((n + 1) * rate) != static_cast<std::uint64_t>(n * rate);
    const auto sent = (Clock::now() + delay).time_since_epoch().count();
    if (n < CandidateLog::kRecorded) log->sent_at[n] = sent;
    if (fail) {
      reply.status = 500;
      reply.body = R"({"error":{"message":"candidate failing","type":"server_error"}})";
      std::int64_t expected = 0;
      log->first_failure_ticks.compare_exchange_strong(expected, sent);
      log->failures.fetch_add(1);
    }
    return reply;
  };
}

std::string gateway_yaml(const FakeProvider& primary, const FakeProvider& candidate, int interval_ms,
                         const std::string& state_store) {
  return "listen: 127.0.0.1:0\nworkers: 2\naccess_log: \"off\"\nstate_store: \"" + state_store + "\"\n"
         "auth: {client_keys: [{name: bench, key_env: CLIENT_KEY}]}\n"
         "providers:\n"
         "  primary:\n"
         "    base_url: " + primary.base_url() + "\n"
         "    no_api_key: true\n"
         "    models: {gpt-4: primary-model}\n"
         "    retry: {max_attempts: 1}\n"
         "  candidate:\n"
         "    base_url: " + candidate.base_url() + "\n"
         "    no_api_key: true\n"
         "    models: {gpt-4: candidate-model}\n"
         "    retry: {max_attempts: 1}\n"
         // The breaker stays closed: every candidate-arm request reaches the candidate, so the
         // gates alone take it out of traffic.
         "    breaker: {minimum_calls: 10000, window_size: 10000}\n"
         "routes:\n  - {models: [gpt-4], provider: primary}\n"
         "migrations:\n"
         "  - name: " + kMigration + "\n"
         "    models: [gpt-4]\n"
         "    primary: primary\n"
         "    candidate: candidate\n"
         "    sticky_key: header:x-user-id\n"
         "    evaluation_interval: " + std::to_string(interval_ms) + "ms\n"
         "    stages:\n"
         "      - {weight: 50%, min_duration: 1h}\n";
}

// Client threads, each on its own keep-alive connection, until stop().
class Traffic {
 public:
  Traffic(std::uint16_t port, unsigned threads) {
    for (unsigned t = 0; t < threads; ++t) {
      threads_.emplace_back([this, port, t] { run(port, t); });
    }
  }
  ~Traffic() { stop(); }
  void stop() {
    running_ = false;
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  std::uint64_t requests() const { return requests_; }
  std::uint64_t errors() const { return errors_; }
  std::uint64_t by_candidate() const { return by_candidate_; }

 private:
  void run(std::uint16_t port, unsigned t) {
    std::optional<cutover::testing::TestClient> client;
    const std::string body = R"({"model":"gpt-4","messages":[{"role":"user","content":"hello"}]})";
    for (std::uint64_t i = 0; running_; ++i) {
      try {
        if (!client) client.emplace(port);
        client->send(cutover::testing::http::verb::post, "/v1/chat/completions", body,
                     {{"authorization", std::string("Bearer ") + kClientKey},
                      {"x-user-id", "user-" + std::to_string(t) + "-" + std::to_string(i)}});
        auto reply = client->read();
        ++requests_;
        if (reply.status != 200) ++errors_;
        if (reply.header("x-cutover-provider") == "candidate") ++by_candidate_;
      } catch (const std::exception&) {
        if (!running_) break;
        ++errors_;
        client.reset();
      }
    }
  }

  std::atomic<bool> running_{true};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> by_candidate_{0};
  std::vector<std::thread> threads_;
};

// The smallest number of candidate requests after a failure starts (failing at share `rate`,
// spread evenly as the candidate's script does) for the default gates (max 1 %, confidence 0.99)
// to fail, when the stage's window already holds `healthy` successful candidate requests: the
// window's error_rate bound is diluted by them, the change detector is not.
std::uint64_t window_requests_to_breach(std::uint64_t healthy, double rate) {
  auto fails = [&](std::uint64_t k) {
    const auto failures = static_cast<std::uint64_t>(k * rate);
    return cutover::migration::judge_error_rate(failures, healthy + k, 0.01, 0.99).verdict ==
           cutover::migration::Verdict::fail;
  };
  std::uint64_t high = 1;
  while (!fails(high)) {
    high *= 2;
    if (high > (1ull << 40)) return 0;
  }
  std::uint64_t low = high / 2;  // does not fail (or 0)
  while (high - low > 1) {
    const auto middle = low + (high - low) / 2;
    (fails(middle) ? high : low) = middle;
  }
  return high;
}

std::uint64_t detector_requests_to_breach(double rate) {
  cutover::migration::RateChangeDetector detector(0.01, 0.99);
  std::uint64_t failures = 0;
  for (std::uint64_t k = 1; k <= 1'000'000; ++k) {
    const auto due = static_cast<std::uint64_t>(k * rate);
    detector.add(due - failures, 1);
    failures = due;
    if (detector.alarmed()) return k;
  }
  return 0;
}

std::uint64_t requests_to_breach(std::uint64_t healthy, double rate) {
  const auto window = window_requests_to_breach(healthy, rate);
  const auto detector = detector_requests_to_breach(rate);
  if (window == 0 || detector == 0) return std::max(window, detector);
  return std::min(window, detector);
}

struct Repetition {
  bool reached_zero = false;
  double breach_to_zero_ms = 0;  // T2 - T1 (data path)
  double switch_to_zero_ms = 0;  // T2 - T0 (data path)
  double engine_lag_ms = 0;      // controller's weight 0 seen by phase_of, minus T2
  // T2 minus the moment the evidence sufficed: when the answer to the k-th candidate request
  // after T0 was sent, k being what requests_to_breach() says the error_rate gate needs given
  // the healthy candidate requests before T0. Negative or missing when another gate fired first.
  std::optional<double> evidence_to_zero_ms;
  std::uint64_t healthy_before = 0;
  std::uint64_t requests_needed = 0;
  std::uint64_t candidate_500s_at_zero = 0;
  std::uint64_t gate_failures = 0;
  std::uint64_t gate_trials = 0;
  std::string trigger;
  std::uint64_t client_requests = 0;
  std::uint64_t client_errors = 0;
  std::uint64_t candidate_requests_after_zero = 0;  // arrivals more than 50 ms after T2
};

// From the journaled transition to rolled_back: what fired, and the failures and trials the
// error_rate gate (candidate-arm requests the candidate did not serve) had counted by then.
void read_breach(cutover::migration::MigrationEngine& engine, Repetition& out) {
  auto reply = engine.history(kMigration, 20);
  for (const auto& item : reply.body.at("transitions").as_array()) {
    const auto& t = item.as_object();
    if (t.at("to").as_string() != "rolled_back") continue;
    out.trigger = json::value_to<std::string>(t.at("trigger"));
    const auto* detail = t.at("detail").if_object();
    if (!detail || !detail->contains("gates")) return;
    for (const auto& gate : detail->at("gates").as_array()) {
      const auto& g = gate.as_object();
      if (g.at("gate").as_string() != "error_rate") continue;
      const auto& figures = g.at("figures").as_object();
      out.gate_failures = figures.at("failures").to_number<std::uint64_t>();
      out.gate_trials = figures.at("trials").to_number<std::uint64_t>();
      return;
    }
  }
}

Repetition repeat_once(const Options& options, int interval_ms, double failure_rate) {
  const std::chrono::milliseconds delay(options.delay_ms);
  auto primary = std::make_unique<FakeProvider>(healthy(delay), 0, "127.0.0.1", nullptr, 2);
  auto candidate = std::make_unique<FakeProvider>(healthy(delay), 0, "127.0.0.1", nullptr, 2);
  auto environment = [](const std::string& name) -> std::optional<std::string> {
    if (name == "CLIENT_KEY") return kClientKey;
    return std::nullopt;
  };
  if (options.state_store != ":memory:") {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(options.state_store + suffix);
  }
  auto loaded = cutover::config::load_from_string(
      gateway_yaml(*primary, *candidate, interval_ms, options.state_store), environment);
  if (!loaded.config) {
    for (const auto& error : loaded.errors) std::cerr << "config: " << error << "\n";
    std::exit(2);
  }
  auto server = std::make_unique<cutover::runtime::GatewayServer>(loaded.config);
  server->start();
  auto engine = server->migrations();
  const auto runtime = engine->routes()->at("gpt-4");

  Repetition out;
  Traffic traffic(server->port(), options.clients);
  // A random share of one interval on top of the warm-up, so T0 falls at any point of the
  // evaluation timer's period instead of always just after a tick.
  static std::mt19937 random{std::random_device{}()};
  const int phase_ms = std::uniform_int_distribution<int>(0, interval_ms - 1)(random);
  std::this_thread::sleep_for(std::chrono::milliseconds(options.warmup_ms + phase_ms));
  if (runtime->weight() != 0.5 || candidate->requests_received() == 0) {
    std::cerr << "warm-up: weight " << runtime->weight() << ", candidate requests "
              << candidate->requests_received() << "; expected 0.5 and some\n";
    std::exit(2);
  }

  auto log = std::make_shared<CandidateLog>();
  const auto t0 = Clock::now();
  candidate->set_script(failing(failure_rate, delay, log));
  // Every candidate request so far was answered by the healthy script: the window's successes.
  out.healthy_before = candidate->requests_received();
  std::optional<Clock::time_point> data_zero, engine_zero;
  const auto until = t0 + std::chrono::milliseconds(options.timeout_ms);
  while ((!data_zero || !engine_zero) && Clock::now() < until) {
    if (!data_zero && runtime->weight() == 0) {
      data_zero = Clock::now();
      out.candidate_500s_at_zero = log->failures;
    }
    if (!engine_zero && engine->phase_of(kMigration).second == 0) engine_zero = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (data_zero) {
    // Requests already routed to the candidate when the weight changed may still arrive; after
    // 50 ms nothing new should.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto settled = candidate->requests_received();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    out.candidate_requests_after_zero = candidate->requests_received() - settled;
  }
  traffic.stop();
  out.client_requests = traffic.requests();
  out.client_errors = traffic.errors();
  if (data_zero && engine_zero && log->first_failure_ticks != 0) {
    const Clock::time_point t1{Clock::duration(log->first_failure_ticks.load())};
    out.reached_zero = true;
    out.breach_to_zero_ms = ms_between(t1, *data_zero);
    out.switch_to_zero_ms = ms_between(t0, *data_zero);
    out.engine_lag_ms = ms_between(*data_zero, *engine_zero);
    out.requests_needed = requests_to_breach(out.healthy_before, failure_rate);
    if (out.requests_needed > 0 && out.requests_needed <= std::min<std::uint64_t>(log->requests, CandidateLog::kRecorded)) {
      const Clock::time_point enough{Clock::duration(log->sent_at[out.requests_needed - 1].load())};
      out.evidence_to_zero_ms = ms_between(enough, *data_zero);
    }
    read_breach(*engine, out);
  }
  server->shutdown(std::chrono::milliseconds(0));
  server.reset();
  return out;
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double position = q * (values.size() - 1);
  const auto below = static_cast<std::size_t>(position);
  const auto above = std::min(below + 1, values.size() - 1);
  return values[below] + (values[above] - values[below]) * (position - below);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) out.push_back(item);
  return out;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << flag << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (flag == "--repetitions") {
      options.repetitions = std::stoi(value());
    } else if (flag == "--intervals") {
      options.intervals_ms.clear();
      for (const auto& item : split(value())) options.intervals_ms.push_back(std::stoi(item));
    } else if (flag == "--failure-rates") {
      options.failure_rates.clear();
      for (const auto& item : split(value())) options.failure_rates.push_back(std::stod(item));
    } else if (flag == "--clients") {
      options.clients = static_cast<unsigned>(std::stoul(value()));
    } else if (flag == "--delay-ms") {
      options.delay_ms = std::stoi(value());
    } else if (flag == "--warmup-ms") {
      options.warmup_ms = std::stoi(value());
    } else if (flag == "--state-store") {
      options.state_store = value();
    } else if (flag == "--history-table") {
      options.history_table_only = true;
    } else {
      std::cerr << "usage: breach_to_zero [--repetitions N] [--intervals MS,...] "
                   "[--failure-rates R,...] [--clients N] [--delay-ms MS] [--warmup-ms MS] [--state-store PATH] "
                   "| --history-table\n";
      std::exit(2);
    }
  }
  return options;
}

void print_history_table() {
  const std::vector<std::uint64_t> histories{0, 200, 1'000, 10'000, 100'000, 1'000'000};
  const std::vector<double> rates{1.0, 0.3, 0.05, 0.02};
  std::printf("\n| healthy candidate requests already in the stage's window |");
  for (const double rate : rates) {
    std::printf(" failing %.0f %%: window bound | failing %.0f %%: change detector |", rate * 100, rate * 100);
  }
  std::printf("\n|---:|");
  for (std::size_t i = 0; i < rates.size(); ++i) std::printf("---:|---:|");
  std::printf("\n");
  for (const auto healthy : histories) {
    std::printf("| %llu |", static_cast<unsigned long long>(healthy));
    for (const double rate : rates) {
      const auto window = window_requests_to_breach(healthy, rate);
      const auto detector = detector_requests_to_breach(rate);
      std::printf(" %llu (%llu) | %llu (%llu) |", static_cast<unsigned long long>(window),
                  static_cast<unsigned long long>(window * rate),
                  static_cast<unsigned long long>(detector),
                  static_cast<unsigned long long>(detector * rate));
    }
    std::printf("\n");
  }
  std::printf("\n(requests (failures) after the failure starts until the gate fails, computed with the gates' own "
              "judge_error_rate and RateChangeDetector: default max_error_rate 1 %%, confidence 0.99; "
              "the breach is seen at the next evaluation tick after that)\n");
}

}  // namespace

int main(int argc, char** argv) {
  const auto options = parse(argc, argv);
  if (options.history_table_only) {
    print_history_table();
    return 0;
  }
  spdlog::set_level(spdlog::level::warn);
  struct Row {
    int interval_ms;
    double failure_rate;
    std::vector<Repetition> runs;
  };
  std::vector<Row> rows;
  const auto started = Clock::now();
  for (const int interval : options.intervals_ms) {
    for (const double rate : options.failure_rates) {
      Row row{interval, rate, {}};
      for (int r = 0; r < options.repetitions; ++r) {
        auto run = repeat_once(options, interval, rate);
        std::fprintf(stderr,
                     "[breach] interval %d ms, failing %.0f%%, run %d: %s breach->0 %.1f ms, "
                     "switch->0 %.1f ms, evidence->0 %.1f ms (%llu healthy before, %llu needed), "
                     "engine lag %.1f ms, gate %s %llu/%llu, candidate 500s %llu, "
                     "client errors %llu/%llu, candidate requests after 0: %llu\n",
                     interval, rate * 100, r + 1, run.reached_zero ? "" : "NOT REACHED", run.breach_to_zero_ms,
                     run.switch_to_zero_ms, run.evidence_to_zero_ms.value_or(-1),
                     static_cast<unsigned long long>(run.healthy_before),
                     static_cast<unsigned long long>(run.requests_needed), run.engine_lag_ms,
                     run.trigger.c_str(),
                     static_cast<unsigned long long>(run.gate_failures),
                     static_cast<unsigned long long>(run.gate_trials),
                     static_cast<unsigned long long>(run.candidate_500s_at_zero),
                     static_cast<unsigned long long>(run.client_errors),
                     static_cast<unsigned long long>(run.client_requests),
                     static_cast<unsigned long long>(run.candidate_requests_after_zero));
        row.runs.push_back(std::move(run));
      }
      rows.push_back(std::move(row));
    }
  }

  bool all_met = true;
  auto max_of = [](const std::vector<double>& values) {
    return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  };
  std::printf("| evaluation_interval | candidate fails | runs reaching 0 | breach → 0 ms: median / p90 / max | "
              "switch → 0 ms: median (max) | evidence → 0 ms: median (max) | healthy candidate requests "
              "before T0; needed after, median | error_rate gate failures at rollback: median (max) | "
              "candidate 500s sent by then: median (max) | gates that fired | client errors / requests | "
              "candidate requests > 50 ms after 0 |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
  for (const auto& row : rows) {
    std::vector<double> breach, switched, evidence, healthy, needed, failures, sent;
    std::map<std::string, int> triggers;
    std::uint64_t errors = 0, requests = 0, late = 0;
    int reached = 0;
    for (const auto& run : row.runs) {
      errors += run.client_errors;
      requests += run.client_requests;
      late += run.candidate_requests_after_zero;
      if (!run.reached_zero) continue;
      ++reached;
      breach.push_back(run.breach_to_zero_ms);
      switched.push_back(run.switch_to_zero_ms);
      if (run.evidence_to_zero_ms) evidence.push_back(*run.evidence_to_zero_ms);
      healthy.push_back(static_cast<double>(run.healthy_before));
      needed.push_back(static_cast<double>(run.requests_needed));
      failures.push_back(static_cast<double>(run.gate_failures));
      sent.push_back(static_cast<double>(run.candidate_500s_at_zero));
      ++triggers[run.trigger];
    }
    std::string fired;
    for (const auto& [name, count] : triggers) {
      fired += (fired.empty() ? "" : ", ") + name + " ×" + std::to_string(count);
    }
    all_met = all_met && reached == static_cast<int>(row.runs.size()) && max_of(breach) <= 1000 && errors == 0;
    std::printf("| %d ms | %.0f %% | %d/%zu | %.0f / %.0f / %.0f | %.0f (%.0f) | %.0f (%.0f) | %.0f; %.0f | "
                "%.0f (%.0f) | %.0f (%.0f) | %s | %llu / %llu | %llu |\n",
                row.interval_ms, row.failure_rate * 100, reached, row.runs.size(), quantile(breach, 0.5),
                quantile(breach, 0.9), max_of(breach), quantile(switched, 0.5), max_of(switched),
                quantile(evidence, 0.5), max_of(evidence), quantile(healthy, 0.5), quantile(needed, 0.5),
                quantile(failures, 0.5), max_of(failures), quantile(sent, 0.5), max_of(sent), fired.c_str(),
                static_cast<unsigned long long>(errors), static_cast<unsigned long long>(requests),
                static_cast<unsigned long long>(late));
  }
  std::printf("\n%d repetitions per row, %u client threads, provider delay %d ms, healthy warm-up %d ms "
              "plus 0 to 1 interval at random, state store %s; took %.0f s. Target (weight 0 within 1 s of the first "
              "failure in every run, no client error): %s\n",
              options.repetitions, options.clients, options.delay_ms, options.warmup_ms,
              options.state_store.c_str(), ms_between(started, Clock::now()) / 1000, all_met ? "met" : "MISSED");
  return all_met ? 0 : 1;
}
