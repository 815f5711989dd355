// The migration engine end to end: two fake providers behind a real gateway, real client
// traffic, compressed stage timings. Assertions are on what clients saw, what each provider
// received, and what the admin API and the journal say.
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <sys/resource.h>
#include <unistd.h>

#include "admin/ctl.h"
#include "gateway_fixture.h"
#include "report/report.h"
#include "store/state_store.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
using simulate::FakeProvider;
using simulate::FakeReply;
using simulate::FakeRequest;

constexpr char kAdminToken[] = "admin-token-0123456789";
constexpr char kCandidateKey[] = "sk-candidate-key-456";

struct MigrationOptions {
  std::string stages =
      "      - {weight: 20%, min_duration: 300ms, min_requests: 30}\n"
      "      - {weight: 50%, min_duration: 300ms, min_requests: 30}\n"
      "      - {weight: 100%, min_duration: 300ms, min_requests: 30}\n";
  std::string gates =
      "    gates:\n"
      "      max_error_rate: 2%\n"
      "      max_attempt_error_rate: 2%\n"
      "      confidence: 0.95\n"
      "      min_latency_samples: 30\n"
      "      inconclusive_dwells_before_pause: 100\n"
      "      latency: [{measure: total, quantile: p95, max_ratio: 1.8}]\n";
  std::string shadow;
  std::string extra;  // more keys under the migration
  std::string state_store = ":memory:";
  // More keys under each provider (indented 4 spaces), such as its dialect.
  std::string primary_extra;
  std::string candidate_extra;
};

class MigrationTest : public ::testing::Test {
 protected:
  void start(simulate::Script primary_script, simulate::Script candidate_script,
             MigrationOptions options = {}) {
    primary_ = std::make_unique<FakeProvider>(std::move(primary_script), 0, "127.0.0.1", nullptr, 4);
    candidate_ = std::make_unique<FakeProvider>(std::move(candidate_script), 0, "127.0.0.1", nullptr, 4);
    options_ = options;
    start_gateway();
  }

  void start_gateway() {
    std::string yaml =
        "listen: 127.0.0.1:0\nworkers: 2\naccess_log: \"off\"\n"
        "auth: {client_keys: [{name: app, key_env: CLIENT_KEY}]}\n"
        "admin: {listen: 127.0.0.1:0, token_env: ADMIN_TOKEN}\n"
        "state_store: \"" + options_.state_store + "\"\n"
        "providers:\n"
        "  primary:\n"
        "    base_url: " + primary_->base_url() + "\n"
        "    api_key_env: PROVIDER_KEY\n"
        "    models: {gpt-4: primary-model}\n"
        "    timeouts: {connect: 1s, first_byte: 5s, idle: 5s, total: 10s}\n"
        "    retry: {max_attempts: 1}\n"
        "    prices: {primary-model: {input: 2.0, output: 8.0}}\n" + options_.primary_extra +
        "  candidate:\n"
        "    base_url: " + candidate_->base_url() + "\n"
        "    api_key_env: CANDIDATE_KEY\n"
        "    models: {gpt-4: candidate-model}\n"
        "    timeouts: {connect: 1s, first_byte: 5s, idle: 5s, total: 10s}\n"
        "    retry: {max_attempts: 1}\n"
        "    breaker: {minimum_calls: 1000, window_size: 1000}\n"
        "    prices: {candidate-model: {input: 1.0, output: 4.0}}\n" + options_.candidate_extra +
        "routes:\n  - {models: [gpt-4], provider: primary}\n"
        "migrations:\n"
        "  - name: to-candidate\n"
        "    models: [gpt-4]\n"
        "    primary: primary\n"
        "    candidate: candidate\n"
        "    sticky_key: header:x-user-id\n"
        "    evaluation_interval: 50ms\n"
        "    stages:\n" + options_.stages + options_.gates + options_.shadow + options_.extra;
    auto environment = [](const std::string& name) -> std::optional<std::string> {
      if (name == "CLIENT_KEY") return kClientKey;
      if (name == "PROVIDER_KEY") return kProviderKey;
      if (name == "CANDIDATE_KEY") return kCandidateKey;
      if (name == "ADMIN_TOKEN") return kAdminToken;
      return std::nullopt;
    };
    auto result = config::load_from_string(yaml, environment);
    for (const auto& error : result.errors) ADD_FAILURE() << error;
    ASSERT_TRUE(result.config);
    server_ = std::make_unique<runtime::GatewayServer>(result.config);
    server_->start();
  }

  void TearDown() override {
    stop_traffic();
    if (server_) server_->shutdown(std::chrono::milliseconds(0));
    server_.reset();
    primary_.reset();
    candidate_.reset();
  }

  // Client load from several users, until stop_traffic(); every third request streams. With
  // `anthropic_clients` they speak Anthropic's Messages API, authenticated by x-api-key.
  void start_traffic(unsigned threads = 4, bool anthropic_clients = false) {
    running_ = true;
    for (unsigned t = 0; t < threads; ++t) {
      traffic_.emplace_back([this, t, anthropic_clients] {
        std::optional<TestClient> client;
        for (unsigned i = 0; running_; ++i) {
          try {
            if (!client) client.emplace(server_->port());
            const std::string user = "user-" + std::to_string(t) + "-" + std::to_string(i % 97);
            const bool stream = i % 3 == 0;
            const std::string body =
                std::string(R"({"model":"gpt-4","max_tokens":64,"stream":)") +
                (stream ? "true" : "false") + R"(,"messages":[{"role":"user","content":"hello number )" +
                std::to_string(i % 13) + R"("}]})";
            if (anthropic_clients) {
              client->send(http::verb::post, "/v1/messages", body,
                           {{"x-api-key", kClientKey}, {"x-user-id", user}});
            } else {
              client->send(http::verb::post, "/v1/chat/completions", body,
                           {{"authorization", std::string("Bearer ") + kClientKey}, {"x-user-id", user}});
            }
            auto reply = stream ? client->read_stream() : client->read();
            ++requests_;
            const bool stream_error = stream && reply.body.find("\"error\"") != std::string::npos;
            if (reply.status != 200 || stream_error) {
              ++client_errors_;
              std::lock_guard lock(errors_mutex_);
              last_error_ = std::to_string(reply.status) + " " + reply.body.substr(0, 300);
            }
            if (reply.header("x-cutover-provider") == "candidate") ++served_by_candidate_;
          } catch (const std::exception& e) {
            if (!running_) break;
            ++client_errors_;
            client.reset();
          }
        }
      });
    }
  }

  void stop_traffic() {
    running_ = false;
    for (auto& thread : traffic_) thread.join();
    traffic_.clear();
  }

  // Polls the engine until `phase` (or `timeout`); returns whether it was reached.
  bool wait_for(migration::Phase phase, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (server_->migrations()->phase_of("to-candidate").first == phase) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  Reply admin(http::verb method, const std::string& path, const std::string& body = "") {
    TestClient client(server_->admin_port());
    return client.request(method, path, body, {{"authorization", std::string("Bearer ") + kAdminToken}});
  }
  json::object status() {
    auto reply = admin(http::verb::get, "/admin/v1/migrations/to-candidate");
    EXPECT_EQ(reply.status, 200u) << reply.body;
    return json::parse(reply.body).as_object();
  }
  Reply act(const std::string& action, std::int64_t generation, const std::string& extra = "") {
    return admin(http::verb::post, "/admin/v1/migrations/to-candidate/" + action,
                 "{\"generation\":" + std::to_string(generation) + extra + "}");
  }
  json::array history() {
    auto reply = admin(http::verb::get, "/admin/v1/migrations/to-candidate/history");
    return json::parse(reply.body).at("transitions").as_array();
  }
  std::string ctl(std::vector<std::string> words) {
    std::ostringstream out, error;
    admin::CtlTarget target{"http://127.0.0.1:" + std::to_string(server_->admin_port()), kAdminToken};
    EXPECT_EQ(admin::run_ctl(target, words, out, error), 0) << error.str();
    return out.str();
  }
  std::string last_error() {
    std::lock_guard lock(errors_mutex_);
    return last_error_;
  }

  MigrationOptions options_;
  std::unique_ptr<FakeProvider> primary_;
  std::unique_ptr<FakeProvider> candidate_;
  std::unique_ptr<runtime::GatewayServer> server_;
  std::atomic<bool> running_{false};
  std::vector<std::thread> traffic_;
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> client_errors_{0};
  std::atomic<std::uint64_t> served_by_candidate_{0};
  std::mutex errors_mutex_;
  std::string last_error_;
};

// The provider delay of tests where a healthy candidate must walk to promoted. The latency gate
// compares the candidate at 100 % with the primary's p95 from an earlier stage; the provider's own
// delay has to dominate the gateway's time on a loaded machine (a sanitizer build beside other
// tests added 24 ms to one side and 54 ms to the other), or an equal candidate reads 1.8x slower.
constexpr std::chrono::milliseconds kHealthyDelay{25};
// How long such a walk may take on that machine (it needs 59 candidate samples per stage).
constexpr std::chrono::seconds kWalkLimit{90};

simulate::Script with_delay(std::chrono::milliseconds delay) {
  return [delay](const FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    reply.delay = delay;
    return reply;
  };
}

// Every `every`-th request fails with a 500.
simulate::Script failing_every(unsigned every, std::chrono::milliseconds delay) {
  auto counter = std::make_shared<std::atomic<unsigned>>(0);
  return [counter, every, delay](const FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    reply.delay = delay;
    if (counter->fetch_add(1) % every == 0) {
      reply.status = 500;
      reply.body = R"({"error":{"message":"candidate overloaded","type":"server_error"}})";
    }
    return reply;
  };
}

TEST_F(MigrationTest, HealthyCandidateWalksEveryStageToPromoted) {
  start(with_delay(kHealthyDelay), with_delay(kHealthyDelay));
  start_traffic();
  ASSERT_TRUE(wait_for(migration::Phase::promoted, kWalkLimit)) << ctl({"get", "to-candidate"});
  stop_traffic();
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  const auto transitions = history();
  std::vector<double> weights;
  for (const auto& t : transitions) weights.push_back(t.at("weight_after").to_number<double>());
  EXPECT_EQ(weights, (std::vector<double>{0.2, 0.5, 1.0, 1.0}));
  EXPECT_EQ(transitions.back().at("to"), "promoted");
  EXPECT_EQ(transitions[1].at("trigger"), "gates:pass");
  // Once promoted every request goes to the candidate.
  auto reply = TestClient(server_->port()).post("/v1/chat/completions",
                                                R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(reply.header("x-cutover-provider"), "candidate");
  // The candidate got its own key and model name, never the primary's.
  for (const auto& request : candidate_->recorded_requests()) {
    EXPECT_EQ(request.header("authorization"), std::string("Bearer ") + kCandidateKey);
    EXPECT_EQ(request.json.at("model"), "candidate-model");
  }
}

TEST_F(MigrationTest, ErroringCandidateIsRolledBackWithNoClientVisibleError) {
  // 5 % of the candidate's answers fail, against a 2 % limit. The latency gate is loosened so
  // that only the error gates can decide, however busy the machine running the test is.
  MigrationOptions options;
  const auto ratio = options.gates.find("max_ratio: 1.8");
  ASSERT_NE(ratio, std::string::npos);
  options.gates.replace(ratio, std::strlen("max_ratio: 1.8"), "max_ratio: 20");
  start(with_delay(std::chrono::milliseconds(5)), failing_every(20, std::chrono::milliseconds(5)), options);
  start_traffic();
  ASSERT_TRUE(wait_for(migration::Phase::rolled_back)) << ctl({"get", "to-candidate"});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto candidate_after_rollback = candidate_->requests_received();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop_traffic();
  // Fallback to the primary hid every candidate failure from the clients...
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  // ...and still counted against the candidate.
  const auto last = history().back();
  EXPECT_EQ(last.at("to"), "rolled_back");
  EXPECT_NE(std::string(last.at("trigger").as_string()).find("error_rate"), std::string::npos);
  EXPECT_EQ(last.at("weight_after").to_number<double>(), 0.0);
  // At weight 0 the candidate gets no more live traffic, and nothing promotes it again.
  EXPECT_EQ(candidate_->requests_received(), candidate_after_rollback);
  EXPECT_EQ(server_->migrations()->phase_of("to-candidate").first, migration::Phase::rolled_back);
}

TEST_F(MigrationTest, SlowCandidateIsRolledBackOnRelativeLatency) {
  // Three times the primary's latency, against a limit of 1.8 times its p95. Long enough that
  // the gateway's own time (much longer under sanitizers) cannot bring the ratio under 1.8.
  start(with_delay(std::chrono::milliseconds(30)), with_delay(std::chrono::milliseconds(90)));
  start_traffic();
  ASSERT_TRUE(wait_for(migration::Phase::rolled_back)) << ctl({"get", "to-candidate"});
  stop_traffic();
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  EXPECT_EQ(history().back().at("trigger"), "gate:latency_p95");
}

TEST_F(MigrationTest, PauseHoldsTheWeightAndResumeContinues) {
  start(with_delay(std::chrono::milliseconds(5)), with_delay(std::chrono::milliseconds(5)));
  auto paused = act("pause", status().at("generation").as_int64());
  ASSERT_EQ(paused.status, 200u) << paused.body;
  start_traffic();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto held = status();
  EXPECT_EQ(held.at("phase"), "paused");
  EXPECT_EQ(held.at("weight").to_number<double>(), 0.2);
  EXPECT_GT(served_by_candidate_.load(), 0u);
  ASSERT_EQ(act("resume", held.at("generation").as_int64()).status, 200u);
  EXPECT_TRUE(wait_for(migration::Phase::promoted));
  stop_traffic();
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
}

TEST_F(MigrationTest, StaleGenerationIsAConflictAndChangesNothing) {
  start(simulate::default_reply, simulate::default_reply);
  const auto generation = status().at("generation").as_int64();
  ASSERT_EQ(act("promote", generation).status, 200u);
  auto stale = act("abort", generation);
  EXPECT_EQ(stale.status, 409u);
  EXPECT_EQ(json::parse(stale.body).at("error").at("code"), "stale_generation");
  EXPECT_EQ(status().at("weight").to_number<double>(), 0.5);
  EXPECT_EQ(act("promote", generation + 1, R"(,"reason":"looks good")").status, 200u);
  EXPECT_EQ(act("abort", 0).status, 409u);
  EXPECT_EQ(admin(http::verb::post, "/admin/v1/migrations/to-candidate/abort", "{}").status, 400u);
}

TEST_F(MigrationTest, AbortSendsEveryRequestToThePrimaryAtOnce) {
  start(simulate::default_reply, simulate::default_reply);
  ASSERT_EQ(act("promote-full", status().at("generation").as_int64()).status, 200u);
  TestClient client(server_->port());
  const std::string body = R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})";
  EXPECT_EQ(client.post("/v1/chat/completions", body).header("x-cutover-provider"), "candidate");
  ASSERT_EQ(act("abort", status().at("generation").as_int64()).status, 200u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(client.post("/v1/chat/completions", body).header("x-cutover-provider"), "primary");
  }
  EXPECT_EQ(status().at("phase"), "aborted");
}

TEST_F(MigrationTest, GradualRollbackWalksDownTheConfiguredSteps) {
  MigrationOptions options;
  options.extra = "    rollback: {steps: [30%, 10%], step_duration: 200ms}\n";
  start(simulate::default_reply, simulate::default_reply, options);
  ASSERT_EQ(act("set-weight", status().at("generation").as_int64(), R"(,"weight":0.5)").status, 200u);
  ASSERT_EQ(act("rollback", status().at("generation").as_int64()).status, 200u);
  EXPECT_EQ(status().at("phase"), "rolling_back");
  ASSERT_TRUE(wait_for(migration::Phase::rolled_back, std::chrono::seconds(5)));
  std::vector<double> weights;
  for (const auto& t : history()) weights.push_back(t.at("weight_after").to_number<double>());
  EXPECT_EQ(weights, (std::vector<double>{0.2, 0.5, 0.3, 0.1, 0.0}));
}

TEST_F(MigrationTest, StickyAssignmentKeepsEachUserOnOneSide) {
  start(simulate::default_reply, simulate::default_reply);
  ASSERT_EQ(act("set-weight", status().at("generation").as_int64(), R"(,"weight":0.5)").status, 200u);
  TestClient client(server_->port());
  const std::string authorization = std::string("Bearer ") + kClientKey;
  unsigned candidate_users = 0;
  for (int user = 0; user < 40; ++user) {
    std::set<std::string> sides;
    for (int i = 0; i < 3; ++i) {
      client.send(http::verb::post, "/v1/chat/completions",
                  R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})",
                  {{"authorization", authorization},
                   {"x-user-id", "sticky-" + std::to_string(user)}});
      sides.insert(client.read().header("x-cutover-provider"));
    }
    EXPECT_EQ(sides.size(), 1u) << "user " << user;
    candidate_users += sides.contains("candidate");
  }
  EXPECT_GT(candidate_users, 8u);
  EXPECT_LT(candidate_users, 32u);
}

TEST_F(MigrationTest, RestartMidRolloutResumesWhereItWas) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("cutover-migration-restart-" + std::to_string(::getpid()) + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  MigrationOptions options;
  options.state_store = path.string();
  start(simulate::default_reply, simulate::default_reply, options);
  ASSERT_EQ(act("promote", status().at("generation").as_int64()).status, 200u);
  const auto before = status();
  server_->shutdown(std::chrono::milliseconds(0));
  server_.reset();
  start_gateway();
  const auto after = status();
  EXPECT_EQ(after.at("phase"), "canary");
  EXPECT_EQ(after.at("weight").to_number<double>(), 0.5);
  EXPECT_EQ(after.at("generation"), before.at("generation"));
  EXPECT_EQ(after.at("stage_started_unix_ms"), before.at("stage_started_unix_ms"));
  server_->shutdown(std::chrono::milliseconds(0));
  server_.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
}

TEST_F(MigrationTest, ShadowPairsAreRecordedWithTheirFigures) {
  MigrationOptions options;
  options.shadow = "    shadow: {sample_rate: 100%, min_pairs: 100000, min_duration: 1h}\n";
  start(with_delay(std::chrono::milliseconds(5)), with_delay(std::chrono::milliseconds(30)), options);
  TestClient client(server_->port());
  for (int i = 0; i < 12; ++i) {
    const bool stream = i % 2 == 1;
    client.send(http::verb::post, "/v1/chat/completions",
                std::string(R"({"model":"gpt-4","stream":)") + (stream ? "true" : "false") +
                    R"(,"messages":[{"role":"user","content":"compare me please"}]})",
                {{"authorization", std::string("Bearer ") + kClientKey}});
    auto reply = stream ? client.read_stream() : client.read();
    ASSERT_EQ(reply.status, 200u);
    // The client only ever sees the primary.
    EXPECT_EQ(reply.header("x-cutover-provider"), "primary");
  }
  // Shadows finish on their own time.
  json::object summary;
  for (int i = 0; i < 100; ++i) {
    summary = json::parse(admin(http::verb::get, "/admin/v1/migrations/to-candidate/shadow").body).as_object();
    if (summary.at("pairs").to_number<int>() == 12) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(summary.at("pairs").to_number<int>(), 12);
  EXPECT_EQ(summary.at("compared").to_number<int>(), 12);
  // Both simulated providers answer a prompt with the same text.
  EXPECT_EQ(summary.at("exact_match_rate").to_number<double>(), 1.0);
  EXPECT_EQ(summary.at("mean_score").to_number<double>(), 1.0);
  const auto& primary = summary.at("primary").as_object();
  const auto& candidate = summary.at("candidate").as_object();
  EXPECT_GT(candidate.at("latency_p50_ms").to_number<double>(), primary.at("latency_p50_ms").to_number<double>());
  EXPECT_GT(candidate.at("latency_p50_ms").to_number<double>(), 25.0);
  EXPECT_GT(candidate.at("completion_tokens").to_number<std::int64_t>(), 0);
  // Same tokens at half the price.
  EXPECT_NEAR(candidate.at("cost").to_number<double>() * 2, primary.at("cost").to_number<double>(), 1e-9);
  EXPECT_GT(primary.at("cost").to_number<double>(), 0);
  auto projection = json::parse(admin(http::verb::get, "/admin/v1/migrations/to-candidate/projection").body).as_object();
  EXPECT_EQ(projection.at("compared").to_number<int>(), 12);
  EXPECT_EQ(projection.at("currency"), "USD");
  EXPECT_NEAR(projection.at("primary_cost_per_request").to_number<double>(),
              2 * projection.at("candidate_cost_per_request").to_number<double>(), 1e-12);
  EXPECT_EQ(projection.at("agreement_mean").to_number<double>(), 1.0);
  // The series gains a point a second, each with the window's figures.
  json::array points;
  auto latest_requests = [&] {
    return points.empty() ? 0 : points.back().at("primary").at("requests").to_number<int>();
  };
  for (int i = 0; i < 150 && latest_requests() < 12; ++i) {
    points = json::parse(admin(http::verb::get, "/admin/v1/migrations/to-candidate/series").body)
                 .at("points").as_array();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  ASSERT_FALSE(points.empty());
  EXPECT_EQ(points.back().at("phase"), "shadow");
  EXPECT_EQ(points.back().at("primary").at("requests").to_number<int>(), 12);
  const auto shadows = candidate_->recorded_requests();
  ASSERT_EQ(shadows.size(), 12u);
  for (const auto& request : shadows) {
    EXPECT_EQ(request.header("x-cutover-shadow"), "1");
    EXPECT_EQ(request.header("authorization"), std::string("Bearer ") + kCandidateKey);
    EXPECT_EQ(request.json.at("model"), "candidate-model");
  }
  EXPECT_EQ(status().at("phase"), "shadow");
}

TEST_F(MigrationTest, HungShadowUpstreamNeverSlowsThePrimary) {
  MigrationOptions options;
  options.shadow = "    shadow: {sample_rate: 100%, max_in_flight: 2, timeout: 3s, min_duration: 1h}\n";
  start(simulate::default_reply, with_delay(std::chrono::milliseconds(2500)), options);
  TestClient client(server_->port());
  for (int i = 0; i < 10; ++i) {
    auto reply = client.post("/v1/chat/completions",
                             R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})");
    ASSERT_EQ(reply.status, 200u);
  }
  // Ten answers arrived while the first two shadows were still waiting on the candidate: had a
  // primary answer waited for its shadow, each shadow would have ended before the next request
  // and all ten would have started.
  const auto shadow = status().at("shadow").as_object();
  EXPECT_EQ(shadow.at("started").to_number<int>(), 2);
  EXPECT_EQ(shadow.at("dropped_in_flight").to_number<int>(), 8);
}

// Threads of this process whose nice value is `nice`, with the CPU time (ns) each has used.
std::vector<long long> cpu_ns_of_threads_at_nice(int nice) {
  std::vector<long long> used;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto after_name = stat.rfind(')');
    if (after_name == std::string::npos) continue;
    std::istringstream fields(stat.substr(after_name + 2));
    std::vector<std::string> field;
    for (std::string f; fields >> f;) field.push_back(f);
    // Fields from the state on (field 3): nice is field 19.
    if (field.size() < 17 || std::stoi(field[16]) != nice) continue;
    // schedstat's first figure: nanoseconds on a CPU, exact where stat's ticks are sampled.
    std::ifstream schedstat(task.path() / "schedstat");
    long long on_cpu = 0;
    schedstat >> on_cpu;
    used.push_back(on_cpu);
  }
  return used;
}

TEST_F(MigrationTest, ShadowsRunOnTheirOwnLowerPriorityThread) {
  const int base = ::getpriority(PRIO_PROCESS, 0);
  if (base >= 19) GTEST_SKIP() << "at nice 19 no thread can be made nicer";
  const int shadow_nice = std::min(19, base + 10);
  ASSERT_TRUE(cpu_ns_of_threads_at_nice(shadow_nice).empty());
  MigrationOptions options;
  options.shadow = "    shadow: {sample_rate: 100%, min_pairs: 100000, min_duration: 1h}\n";
  // This test is about where shadows run, not how fast: no gate may end the shadow phase.
  options.gates = "    gates: {latency: [{measure: total, quantile: p95, max: 60s}]}\n";
  start(with_delay(std::chrono::milliseconds(3)), with_delay(std::chrono::milliseconds(3)), options);
  // The shadow thread (and nothing else of the gateway's) runs 10 nicer than the rest: the
  // kernel gives the workers the CPU first whenever both want it.
  // The thread lowers its own priority as it starts, maybe after start() has returned.
  auto niced = cpu_ns_of_threads_at_nice(shadow_nice);
  for (int i = 0; i < 200 && niced.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    niced = cpu_ns_of_threads_at_nice(shadow_nice);
  }
  ASSERT_FALSE(niced.empty());
  TestClient client(server_->port());
  for (int i = 0; i < 200; ++i) {
    auto reply = client.post("/v1/chat/completions",
                             R"({"model":"gpt-4","messages":[{"role":"user","content":"mirror me"}]})");
    ASSERT_EQ(reply.status, 200u);
    EXPECT_EQ(reply.header("x-cutover-provider"), "primary");
  }
  for (int i = 0; i < 200 && candidate_->requests_received() < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(candidate_->requests_received(), 200u);
  json::object shadow;
  for (int i = 0; i < 200; ++i) {
    shadow = status().at("shadow").as_object();
    if (shadow.at("pairs_recorded").to_number<int>() == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(shadow.at("pairs_recorded").to_number<int>(), 200);
  // The shadows' work was done there.
  long long before = 0, after = 0;
  for (const auto t : niced) before += t;
  for (const auto t : cpu_ns_of_threads_at_nice(shadow_nice)) after += t;
  EXPECT_GT(after, before);
}

TEST_F(MigrationTest, TransitionsArePostedToWebhooks) {
  auto hook = std::make_unique<FakeProvider>([](const FakeRequest&) {
    FakeReply reply;
    reply.body = "ok";
    return reply;
  });
  MigrationOptions options;
  options.extra = "    webhooks: [" + hook->base_url() + "/hooks/migrations]\n";
  start(simulate::default_reply, simulate::default_reply, options);
  ASSERT_EQ(act("abort", status().at("generation").as_int64(), R"(,"reason":"testing hooks")").status, 200u);
  std::vector<FakeRequest> received;
  for (int i = 0; i < 200 && received.size() < 2; ++i) {
    received = hook->recorded_requests();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(received.size(), 2u);  // created, then aborted
  const auto& message = received[1].json;
  EXPECT_EQ(message.at("to"), "aborted");
  EXPECT_EQ(message.at("migration"), "to-candidate");
  EXPECT_NE(std::string(message.at("text").as_string()).find("aborted"), std::string::npos);
  EXPECT_EQ(message.at("trigger"), "operator:operator");
}

// A candidate that answers like default_reply and reports `limit` requests a minute, all of them
// left: the gateway's quota awareness never passes it over, so only the capacity gate can tell.
simulate::Script reporting_request_limit(
    std::int64_t limit, std::chrono::milliseconds delay = std::chrono::milliseconds(5)) {
  return [limit, delay](const FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    reply.delay = delay;
    reply.headers = {{"x-ratelimit-limit-requests", std::to_string(limit)},
                     {"x-ratelimit-remaining-requests", std::to_string(limit)},
                     {"x-ratelimit-reset-requests", "1m0s"}};
    return reply;
  };
}

const json::object* gate_named(const json::object& status, std::string_view name) {
  for (const auto& gate : status.at("evaluation").at("gates").as_array()) {
    if (gate.at("gate").as_string() == name) return &gate.as_object();
  }
  return nullptr;
}

TEST_F(MigrationTest, ACandidateReportingASmallQuotaHoldsAtTheStageBeforeItCouldNotCarry) {
  auto hook = std::make_unique<FakeProvider>([](const FakeRequest&) {
    FakeReply reply;
    reply.body = "ok";
    return reply;
  });
  MigrationOptions options;
  options.extra = "    webhooks: [" + hook->base_url() + "/hooks/migrations]\n";
  // 10 requests a minute: whatever this machine's pace, half the route's traffic needs more.
  start(with_delay(std::chrono::milliseconds(5)), reporting_request_limit(10), options);
  start_traffic();
  json::object held;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    held = status();
    if (held.at("evaluation").at("verdict") == "hold") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(held.at("evaluation").at("verdict"), "hold") << ctl({"get", "to-candidate"});
  // Held well past the stage's dwell: still at 20 %, no rollback, no pause; the hold journaled
  // once, from canary to canary at the same weight, with the capacity gate's figures.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  held = status();
  stop_traffic();
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  EXPECT_EQ(held.at("phase"), "canary");
  EXPECT_EQ(held.at("weight").to_number<double>(), 0.2);
  const auto journal = history();
  ASSERT_EQ(journal.size(), 2u);
  EXPECT_EQ(journal[1].at("trigger"), "gates:capacity_hold");
  EXPECT_EQ(journal[1].at("from"), "canary");
  EXPECT_EQ(journal[1].at("to"), "canary");
  EXPECT_EQ(journal[1].at("weight_after").to_number<double>(), 0.2);
  EXPECT_NE(json::serialize(journal[1].at("detail")).find("requests_needed"), std::string::npos);
  const auto* capacity = gate_named(held, "capacity");
  ASSERT_NE(capacity, nullptr) << json::serialize(held);
  EXPECT_EQ(capacity->at("verdict"), "hold");
  const auto& figures = capacity->at("figures").as_object();
  EXPECT_EQ(figures.at("requests_limit").to_number<double>(), 10.0);
  EXPECT_EQ(figures.at("next_weight").to_number<double>(), 0.5);
  EXPECT_GT(figures.at("requests_needed").to_number<double>(), 8.0);
  const std::string summary(capacity->at("summary").as_string());
  EXPECT_NE(summary.find("next stage (50.00%) needs ~"), std::string::npos) << summary;
  EXPECT_NE(summary.find("limit 10/min"), std::string::npos) << summary;
  const auto shown = ctl({"get", "to-candidate"});
  EXPECT_NE(shown.find("capacity"), std::string::npos) << shown;
  EXPECT_NE(shown.find("rate_limited"), std::string::npos) << shown;
  // The hold is announced once to the webhooks, shaped like a transition that moved nothing.
  std::vector<FakeRequest> received;
  for (int i = 0; i < 200 && received.size() < 2; ++i) {
    received = hook->recorded_requests();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(received.size(), 2u);  // created, then the hold
  EXPECT_EQ(received[1].json.at("trigger"), "gates:capacity_hold");
  EXPECT_NE(std::string(received[1].json.at("text").as_string()).find("needs ~"), std::string::npos);
}

TEST_F(MigrationTest, ACandidateReportingALargeQuotaWalksToPromoted) {
  start(with_delay(kHealthyDelay), reporting_request_limit(100'000'000, kHealthyDelay));
  start_traffic();
  ASSERT_TRUE(wait_for(migration::Phase::promoted, kWalkLimit)) << ctl({"get", "to-candidate"});
  stop_traffic();
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  // Each step's journal entry carries the capacity verdict it passed, with its figures.
  const auto transitions = history();
  ASSERT_GE(transitions.size(), 2u);
  bool journaled = false;
  for (const auto& gate : transitions[1].at("detail").at("gates").as_array()) {
    if (gate.at("gate") != "capacity") continue;
    journaled = true;
    EXPECT_EQ(gate.at("verdict"), "pass");
    EXPECT_EQ(gate.at("figures").at("requests_limit").to_number<double>(), 1e8);
  }
  EXPECT_TRUE(journaled) << json::serialize(transitions[1]);
}

// Every `every`-th answer is a 429 asking for a millisecond's wait, so that the endpoint is
// tried again at once rather than passed over while throttled.
simulate::Script throttling_every(unsigned every) {
  auto counter = std::make_shared<std::atomic<unsigned>>(0);
  return [counter, every](const FakeRequest& request) {
    auto reply = simulate::default_reply(request);
    reply.delay = std::chrono::milliseconds(5);
    if (counter->fetch_add(1) % every == 0) {
      reply.status = 429;
      reply.body = R"({"error":{"message":"rate limit reached","type":"rate_limit_error"}})";
      reply.headers = {{"retry-after-ms", "1"}};
    }
    return reply;
  };
}

TEST_F(MigrationTest, ACandidateAnsweringMany429sIsRolledBackByTheRateLimitedGate) {
  // The error gates cannot fail at 100 %: only the 429 share (20 % against 5 %) decides.
  MigrationOptions options;
  options.gates =
      "    gates:\n"
      "      max_error_rate: 100%\n"
      "      max_attempt_error_rate: 100%\n"
      "      max_rate_limited_share: 5%\n"
      "      confidence: 0.95\n"
      "      min_latency_samples: 30\n"
      "      inconclusive_dwells_before_pause: 100\n"
      "      latency: [{measure: total, quantile: p95, max_ratio: 20}]\n";
  start(with_delay(std::chrono::milliseconds(5)), throttling_every(5), options);
  start_traffic();
  ASSERT_TRUE(wait_for(migration::Phase::rolled_back)) << ctl({"get", "to-candidate"});
  stop_traffic();
  // Every throttled request fell back to the primary, and still counted against the candidate.
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  const auto last = history().back();
  EXPECT_EQ(last.at("trigger"), "gate:rate_limited");
  EXPECT_EQ(last.at("weight_before").to_number<double>(), 0.2);
}

TEST_F(MigrationTest, CtlPrintsStatusHistoryAndActs) {
  start(simulate::default_reply, simulate::default_reply);
  const auto listing = ctl({"migrations"});
  EXPECT_NE(listing.find("to-candidate"), std::string::npos);
  EXPECT_NE(listing.find("20.00%"), std::string::npos);
  const auto promoted = ctl({"promote", "to-candidate", "ready"});
  EXPECT_NE(promoted.find("canary at 50.00%"), std::string::npos) << promoted;
  const auto view = ctl({"get", "to-candidate"});
  EXPECT_NE(view.find("Phase:       canary  (stage 2 of 3)"), std::string::npos) << view;
  EXPECT_NE(view.find("✔ 20.00%"), std::string::npos) << view;
  EXPECT_NE(view.find("► 50.00%"), std::string::npos) << view;
  const auto log = ctl({"history", "to-candidate"});
  EXPECT_NE(log.find("reason: ready"), std::string::npos) << log;
}


namespace metrics_scrape {

// Prometheus text exposition as {"name{label=\"v\",...}" -> value}; comments skipped.
std::map<std::string, double> parse_exposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) {
      ADD_FAILURE() << "malformed exposition line: " << line;
      continue;
    }
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

}  // namespace metrics_scrape

TEST_F(MigrationTest, MetricsExposeTrafficCostAndMigrationState) {
  MigrationOptions options;
  options.shadow = "    shadow: {sample_rate: 100%, min_duration: 1h}\n";
  start(simulate::default_reply, simulate::default_reply, options);
  TestClient client(server_->port());
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(client.post("/v1/chat/completions",
                          R"({"model":"gpt-4","messages":[{"role":"user","content":"one two three"}]})")
                  .status,
              200u);
  }
  std::map<std::string, double> samples;
  for (int i = 0; i < 100; ++i) {
    auto reply = admin(http::verb::get, "/metrics");
    ASSERT_EQ(reply.status, 200u);
    EXPECT_NE(reply.header("content-type").find("text/plain"), std::string::npos);
    samples = metrics_scrape::parse_exposition(reply.body);
    // A request is counted just after its answer is sent; the shadow pair on its own time.
    if (samples[R"(cutover_shadow_pairs_total{migration="to-candidate"})"] == 5 &&
        samples[R"(cutover_requests_total{model="gpt-4",provider="primary",status_class="2xx"})"] == 5) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ((samples[R"(cutover_requests_total{model="gpt-4",provider="primary",status_class="2xx"})"]), 5);
  EXPECT_EQ((samples[R"(cutover_shadow_requests_total{model="gpt-4",provider="candidate",status_class="2xx"})"]), 5);
  EXPECT_EQ((samples[R"(cutover_request_duration_seconds_count{model="gpt-4",provider="primary",traffic="live"})"]), 5);
  EXPECT_EQ((samples[R"(cutover_request_duration_seconds_bucket{model="gpt-4",provider="primary",traffic="live",le="+Inf"})"]), 5);
  const double input = samples[R"(cutover_tokens_total{direction="input",model="gpt-4",provider="primary",traffic="live"})"];
  const double output = samples[R"(cutover_tokens_total{direction="output",model="gpt-4",provider="primary",traffic="live"})"];
  EXPECT_GT(input, 0);
  EXPECT_GT(output, 0);
  // The price table: 2 per million input tokens, 8 per million output tokens.
  EXPECT_NEAR((samples[R"(cutover_cost_total{currency="USD",model="gpt-4",provider="primary",traffic="live"})"]),
              (input * 2 + output * 8) / 1e6, 1e-12);
  EXPECT_GT((samples[R"(cutover_cost_total{currency="USD",model="gpt-4",provider="candidate",traffic="shadow"})"]), 0);
  EXPECT_EQ((samples[R"(cutover_migration_weight{migration="to-candidate"})"]), 0);
  EXPECT_EQ((samples[R"(cutover_migration_phase{migration="to-candidate",phase="shadow"})"]), 1);
  EXPECT_EQ((samples[R"(cutover_migration_phase{migration="to-candidate",phase="canary"})"]), 0);
  EXPECT_EQ((samples[R"(cutover_shadow_pairs_total{migration="to-candidate"})"]), 5);
  EXPECT_EQ((samples[R"(cutover_shadow_agreement_score_count{migration="to-candidate"})"]), 5);
  EXPECT_EQ((samples[R"(cutover_circuit_breaker_state{endpoint="0",provider="candidate",state="closed"})"]), 1);
  EXPECT_EQ((samples[R"(cutover_circuit_breaker_state{endpoint="0",provider="candidate",state="open"})"]), 0);
  // A streamed answer's usage (asked for by the gateway, not shown to the client) is counted
  // and priced the same way.
  client.send(http::verb::post, "/v1/chat/completions",
              R"({"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"stream these words"}]})",
              {{"authorization", std::string("Bearer ") + kClientKey}});
  const auto streamed = client.read_stream();
  ASSERT_EQ(streamed.status, 200u);
  EXPECT_EQ(streamed.body.find("\"usage\""), std::string::npos) << "usage the client did not ask for";
  std::map<std::string, double> after;
  for (int i = 0; i < 100; ++i) {
    after = metrics_scrape::parse_exposition(admin(http::verb::get, "/metrics").body);
    if (after[R"(cutover_requests_total{model="gpt-4",provider="primary",status_class="2xx"})"] == 6) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double output_after = after.at(R"(cutover_tokens_total{direction="output",model="gpt-4",provider="primary",traffic="live"})");
  const double input_after = after.at(R"(cutover_tokens_total{direction="input",model="gpt-4",provider="primary",traffic="live"})");
  EXPECT_GT(output_after, output);
  EXPECT_GT(input_after, input);
  EXPECT_NEAR(after.at(R"(cutover_cost_total{currency="USD",model="gpt-4",provider="primary",traffic="live"})"),
              (input_after * 2 + output_after * 8) / 1e6, 1e-12);
  // Operators' metrics are behind the admin token like everything else on that listener.
  TestClient anonymous(server_->admin_port());
  EXPECT_EQ(anonymous.request(http::verb::get, "/metrics").status, 401u);
}

TEST_F(MigrationTest, ChangingTheCandidateMidRunSendsEverythingBackToThePrimary) {
  start(simulate::default_reply, simulate::default_reply);
  ASSERT_EQ(act("set-weight", status().at("generation").as_int64(), R"(,"weight":0.5)").status, 200u);
  auto moved = std::make_unique<FakeProvider>(simulate::default_reply);
  auto config = server_->config();
  auto changed = std::make_shared<config::Config>(*config);
  for (auto& provider : changed->providers) {
    if (provider.name != "candidate") continue;
    provider.endpoints[0].base_url = moved->base_url();
    provider.endpoints[0].address.port = moved->port();
  }
  // What the loader computes for the new candidate address.
  changed->migrations[0].fingerprint = "changed-candidate";
  ASSERT_FALSE(server_->reload(changed).has_value());
  const auto after = status();
  EXPECT_EQ(after.at("phase"), "canary");
  EXPECT_EQ(after.at("weight").to_number<double>(), 0.2);
  EXPECT_EQ(history().back().at("trigger"), "config_change");
  EXPECT_EQ(history().back().at("weight_before").to_number<double>(), 0.5);
}

TEST_F(MigrationTest, UsageIsExportedFromTheStoreForReconciliation) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("cutover-usage-export-" + std::to_string(::getpid()) + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  MigrationOptions options;
  options.state_store = path.string();
  options.shadow = "    shadow: {sample_rate: 100%, min_duration: 1h}\n";
  start(simulate::default_reply, simulate::default_reply, options);
  TestClient client(server_->port());
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(client.post("/v1/chat/completions",
                          R"({"model":"gpt-4","messages":[{"role":"user","content":"count these five words"}]})")
                  .status,
              200u);
  }
  // Shadows finish on their own; then everything is on disk.
  for (int i = 0; i < 100 && status().at("shadow").at("pairs_recorded").to_number<int>() < 7; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  report::UsageOptions export_options;
  export_options.store_paths = {path.string()};
  export_options.by = {"provider", "model", "key", "traffic"};
  export_options.format = "json";
  std::ostringstream out, error;
  json::array rows;
  // Usage is added just after each answer is sent; flush until all of it is on disk.
  auto total_requests = [&] {
    std::int64_t total = 0;
    for (const auto& row : rows) total += row.at("requests").to_number<std::int64_t>();
    return total;
  };
  for (int i = 0; i < 100 && total_requests() < 14; ++i) {
    server_->flush_usage();
    out.str("");
    ASSERT_EQ(report::report_usage(export_options, out, error), 0) << error.str();
    rows = json::parse(out.str()).as_array();
    if (total_requests() < 14) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(rows.size(), 2u) << out.str();
  const auto& live = rows[0].at("traffic") == "live" ? rows[0] : rows[1];
  const auto& shadow = rows[0].at("traffic") == "live" ? rows[1] : rows[0];
  EXPECT_EQ(live.at("provider"), "primary");
  EXPECT_EQ(live.at("key"), "app");
  EXPECT_EQ(live.at("requests").to_number<int>(), 7);
  EXPECT_EQ(live.at("errors").to_number<int>(), 0);
  const auto prompt = live.at("prompt_tokens").to_number<double>();
  const auto completion = live.at("completion_tokens").to_number<double>();
  EXPECT_GT(prompt, 0);
  EXPECT_NEAR(live.at("cost").to_number<double>(), (prompt * 2 + completion * 8) / 1e6, 1e-12);
  EXPECT_EQ(live.at("currency"), "USD");
  EXPECT_EQ(shadow.at("provider"), "candidate");
  EXPECT_EQ(shadow.at("requests").to_number<int>(), 7);
  EXPECT_NEAR(shadow.at("cost").to_number<double>(), live.at("cost").to_number<double>() / 2, 1e-12);

  // The same through the command line, as CSV.
  const auto csv_path = path.string() + ".csv";
  const std::string command = std::string(CUTOVER_BINARY) + " report usage --store " + path.string() +
                              " --by provider,traffic --from 2020-01-01 > " + csv_path;
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::ifstream csv(csv_path);
  std::string header, first, second;
  std::getline(csv, header);
  std::getline(csv, first);
  std::getline(csv, second);
  EXPECT_EQ(header, "provider,traffic,requests,errors,prompt_tokens,cached_prompt_tokens,completion_tokens,cost,currency,saved_tokens,saved_cost");
  EXPECT_EQ(first.rfind("candidate,shadow,7,0,", 0), 0u) << first;
  EXPECT_EQ(second.rfind("primary,live,7,0,", 0), 0u) << second;

  // And the migration report reads the same store.
  const std::string report_command = std::string(CUTOVER_BINARY) + " report migration to-candidate --store " +
                                     path.string() + " > " + csv_path;
  ASSERT_EQ(std::system(report_command.c_str()), 0);
  std::ifstream report_file(csv_path);
  const std::string text((std::istreambuf_iterator<char>(report_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Phase:       shadow"), std::string::npos) << text;
  EXPECT_NE(text.find("Shadow comparison (7 pairs, 7 compared, 0 candidate failures)"), std::string::npos) << text;
  EXPECT_NE(text.find("Should we move?"), std::string::npos) << text;

  server_->shutdown(std::chrono::milliseconds(0));
  server_.reset();
  for (const char* suffix : {"", "-wal", "-shm", ".csv"}) std::filesystem::remove(path.string() + suffix);
}
}  // namespace
}  // namespace cutover::testing

namespace cutover::testing {
namespace {

// Issue #13: a migration whose sides speak different dialects, here a native Anthropic primary
// and an OpenAI-compatible candidate, with clients on Anthropic's SDK.
MigrationOptions across_dialects(MigrationOptions options = {}) {
  options.primary_extra = "    dialect: anthropic\n";
  return options;
}

TEST_F(MigrationTest, ShadowPairsAcrossDialectsAreComparedOnTheNormalizedAnswer) {
  MigrationOptions options = across_dialects();
  options.shadow = "    shadow: {sample_rate: 100%, min_pairs: 100000, min_duration: 1h}\n";
  start(with_delay(std::chrono::milliseconds(5)), with_delay(std::chrono::milliseconds(5)), options);
  TestClient client(server_->port());
  for (int i = 0; i < 10; ++i) {
    const bool stream = i % 2 == 1;
    client.send(http::verb::post, "/v1/messages",
                std::string(R"({"model":"gpt-4","max_tokens":50,"stream":)") + (stream ? "true" : "false") +
                    R"(,"messages":[{"role":"user","content":"compare me please"}]})",
                {{"x-api-key", kClientKey}});
    auto reply = stream ? client.read_stream() : client.read();
    ASSERT_EQ(reply.status, 200u) << reply.body;
    EXPECT_EQ(reply.header("x-cutover-provider"), "primary");
    // The client gets its own format from the native provider.
    EXPECT_NE(reply.body.find(stream ? "event: message_stop" : R"("type":"message")"), std::string::npos)
        << reply.body;
  }
  json::object summary;
  for (int i = 0; i < 100; ++i) {
    summary = json::parse(admin(http::verb::get, "/admin/v1/migrations/to-candidate/shadow").body).as_object();
    if (summary.at("compared").to_number<int>() == 10) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(summary.at("compared").to_number<int>(), 10);
  // One Anthropic message, one chat completion, the same text: the comparison sees them equal.
  EXPECT_EQ(summary.at("exact_match_rate").to_number<double>(), 1.0);
  EXPECT_GT(summary.at("candidate").at("completion_tokens").to_number<std::int64_t>(), 0);
  EXPECT_GT(summary.at("primary").at("completion_tokens").to_number<std::int64_t>(), 0);

  for (const auto& request : primary_->recorded_requests()) {
    EXPECT_EQ(request.target, "/v1/messages");
    EXPECT_EQ(request.header("x-api-key"), kProviderKey);
    EXPECT_EQ(request.json.at("model"), "primary-model");
  }
  const auto shadows = candidate_->recorded_requests();
  ASSERT_EQ(shadows.size(), 10u);
  for (const auto& request : shadows) {
    EXPECT_EQ(request.target, "/v1/chat/completions");
    EXPECT_EQ(request.header("authorization"), std::string("Bearer ") + kCandidateKey);
    EXPECT_EQ(request.header("x-api-key"), "");
    EXPECT_EQ(request.json.at("model"), "candidate-model");
    EXPECT_EQ(request.json.at("max_tokens"), 50);
  }
}

TEST_F(MigrationTest, AnthropicClientsMoveAcrossDialectsToPromotedStickily) {
  start(with_delay(kHealthyDelay), with_delay(kHealthyDelay), across_dialects());
  start_traffic(4, /*anthropic_clients=*/true);
  EXPECT_TRUE(wait_for(migration::Phase::promoted, kWalkLimit))
      << "phase " << status().at("phase");
  stop_traffic();
  EXPECT_EQ(client_errors_.load(), 0u) << last_error();
  EXPECT_GT(served_by_candidate_.load(), 0u);
  for (const auto& request : candidate_->recorded_requests()) {
    ASSERT_EQ(request.target, "/v1/chat/completions");
  }
}

}  // namespace
}  // namespace cutover::testing
