#include "migration/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>

#include "migration/fleet_window.h"
#include "migration/report.h"
#include "migration/statistics.h"
#include "migration/webhook_notifier.h"
#include "util/clock.h"
#include "util/thread_name.h"

namespace cutover::migration {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::size_t kMaxWindowPairs = 20'000;
constexpr std::size_t kSummaryPairs = 10'000;
constexpr std::int64_t kSeriesInterval = 1000;
constexpr std::int64_t kPairFlushInterval = 1000;
constexpr std::size_t kPairFlushBatch = 5000;
constexpr std::size_t kSeriesPoints = 3600;

json::object transition_json(const store::Transition& t) {
  boost::system::error_code ec;
  auto detail = json::parse(t.detail, ec);
  return json::object{{"generation", t.generation},
                      {"at_unix_ms", t.at_unix_ms},
                      {"from", t.from_state},
                      {"to", t.to_state},
                      {"weight_before", t.weight_before},
                      {"weight_after", t.weight_after},
                      {"trigger", t.trigger},
                      {"detail", ec ? json::value(t.detail) : detail}};
}

AdminReply not_found(const std::string& name) {
  return {404, json::object{{"error", json::object{{"message", "no migration named '" + name + "'"},
                                                   {"type", "invalid_request_error"},
                                                   {"code", "migration_not_found"}}}}};
}

}  // namespace

struct MigrationEngine::Migration {
  Migration(const config::Migration& settings, std::shared_ptr<MigrationRuntime> runtime,
            store::StateStore& store, asio::io_context& context)
      : runtime(std::move(runtime)),
        controller(settings, store, util::unix_ms_now),
        timer(context) {}

  std::shared_ptr<MigrationRuntime> runtime;
  Controller controller;
  // Fleet mode: whether the record has been read (or created) since this replica started.
  bool resumed = false;
  // Fleet mode: a breach judged here while the store was unreachable; the candidate's share is
  // held at 0 on this replica until the record's generation moves.
  bool local_breach = false;
  // What the gates said when they breached it: committed as they said it once Redis answers.
  std::optional<Evaluation> local_breach_evaluation;
  bool record_missing = false;
  // Fleet mode: when the record was last read, and whether a long outage has sent every migrated
  // request to the primary since.
  std::chrono::steady_clock::time_point last_read{};
  bool primary_only = false;
  asio::steady_timer timer;
  std::unique_ptr<WebhookNotifier> webhooks;
  std::vector<PairSample> window_pairs;
  std::uint64_t pairs_recorded = 0;
  std::uint64_t pairs_compared = 0;
  std::uint64_t pairs_candidate_failed = 0;
  double score_sum = 0;
  // One point a second of what the gates see, for the dashboard; the last hour is kept.
  std::deque<json::object> series;
  std::int64_t last_point_ms = 0;
  // (unix ms, lifetime requests) samples over the last hour: the route's live volume.
  std::deque<std::pair<std::int64_t, std::uint64_t>> volume;
  // Fleet mode: the generation the current window began with (a journaled capacity hold, which
  // moves nothing, keeps the window), and the replicas whose figures the last merge held.
  std::int64_t window_generation = 0;
  std::vector<std::string> window_replicas;
};

MigrationEngine::MigrationEngine(std::shared_ptr<const config::Config> config,
                                 unsigned worker_count)
    : config_(std::move(config)),
      worker_count_(std::max(1u, worker_count)),
      guard_(asio::make_work_guard(context_)) {
  if (config_->redis) {
    auto shared = store::open_redis_store(*config_->redis, config_->state_store);
    shared_ = shared.get();
    store_ = std::move(shared);
  } else {
    store_ =
        store::open_sqlite_store(config_->state_store.empty() ? ":memory:" : config_->state_store);
  }
  build(config_);
}

MigrationEngine::~MigrationEngine() { stop(); }

template <typename Function>
auto MigrationEngine::on_engine(Function function) -> decltype(function()) {
  if (!thread_.joinable() || std::this_thread::get_id() == thread_.get_id()) return function();
  auto task = std::make_shared<std::packaged_task<decltype(function())()>>(std::move(function));
  auto future = task->get_future();
  asio::post(context_, [task] { (*task)(); });
  return future.get();
}

void MigrationEngine::build(std::shared_ptr<const config::Config> config) {
  for (auto& [name, migration] : migrations_) {
    take_pairs(*migration);
    migration->timer.cancel();
    if (migration->webhooks) migration->webhooks->stop();
  }
  migrations_.clear();
  auto routes = std::make_shared<MigrationRoutes>();
  for (const auto& settings : config->migrations) {
    auto runtime = std::make_shared<MigrationRuntime>(config, settings, worker_count_);
    auto migration = std::make_unique<Migration>(settings, runtime, *store_, context_);
    if (!settings.webhooks.empty()) {
      std::vector<WebhookTarget> targets;
      for (const auto& webhook : settings.webhooks) {
        WebhookTarget target;
        target.url = webhook.url;
        target.timeout = webhook.timeout;
        targets.push_back(std::move(target));
      }
      migration->webhooks = std::make_unique<WebhookNotifier>(context_.get_executor(), std::move(targets));
    }
    for (const auto& model : settings.models) (*routes)[model] = runtime;
    migrations_.emplace(settings.name, std::move(migration));
  }
  std::lock_guard lock(routes_mutex_);
  routes_ = std::move(routes);
}

std::shared_ptr<const MigrationRoutes> MigrationEngine::routes() const {
  std::lock_guard lock(routes_mutex_);
  return routes_;
}

void MigrationEngine::resume(Migration& migration) {
  try {
    if (auto transition = migration.controller.start()) after_transition(migration, *transition);
    migration.resumed = true;
    migration.window_generation = migration.controller.record().generation;
    migration.last_read = std::chrono::steady_clock::now();
    migration.runtime->publish(migration.controller.weight(), migration.controller.shadowing());
  } catch (const store::StoreUnavailable& e) {
    // Never judged on a guess: the primary alone until the shared record can be read.
    migration.resumed = false;
    migration.runtime->publish(0, false);
    spdlog::warn(
        "migration {}: cannot read its shared record ({}); serving the primary only "
        "until the store answers",
        migration.controller.settings().name, e.what());
  }
  if (shared_) store_up_ = shared_->up();
}

bool MigrationEngine::holds_lease() const {
  return term_ && std::chrono::steady_clock::now() < lease_valid_until_;
}

void MigrationEngine::renew_lease() {
  if (!shared_) return;
  // Measured from when the renewal was sent: the lease may have started expiring in Redis then.
  const auto sent = std::chrono::steady_clock::now();
  const auto previous = term_;
  auto term = shared_->hold_lease(term_);
  if (term) {
    term_ = term;
    lease_valid_until_ = sent + config_->redis->lease * 2 / 3;
    leader_ = config_->redis->replica + "|" + std::to_string(*term);
    if (term != previous) {
      spdlog::info("fleet: this replica ({}) leads with term {}; it alone evaluates the gates",
                   config_->redis->replica, *term);
    }
  } else {
    if (previous) {
      spdlog::warn("fleet: this replica ({}) lost the lease of term {}; following",
                   config_->redis->replica, *previous);
    }
    term_.reset();
    if (auto leader = shared_->leader()) leader_ = *leader;
  }
  // Three lease periods without a contribution: the replica is gone (or cut off).
  if (auto heartbeats = shared_->heartbeats(config_->redis->lease * 3)) heartbeats_ = std::move(*heartbeats);
  store_up_ = shared_->up();
  leading_ = holds_lease();
}

void MigrationEngine::schedule_lease() {
  if (!shared_) return;
  const auto interval = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000),
                                                            config_->redis->lease / 3);
  lease_timer_->expires_after(interval);
  lease_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    renew_lease();
    schedule_lease();
  });
}

bool MigrationEngine::follow(Migration& migration) {
  if (!shared_) return true;
  if (!migration.resumed) {
    resume(migration);
    return migration.resumed;
  }
  std::optional<store::MigrationRecord> record;
  try {
    record = store_->load(migration.controller.settings().name);
  } catch (const store::StoreUnavailable&) {
    store_up_ = false;
    return false;
  }
  store_up_ = true;
  migration.last_read = std::chrono::steady_clock::now();
  if (!record) {
    // Redis lost its data (no AOF, a flush): hold the last weight rather than guess. A replica
    // that restarts creates the record afresh, and the others follow it.
    if (!migration.record_missing) {
      spdlog::error(
          "migration {}: its shared record is gone from the store (Redis lost its data?); "
          "holding {} at {:.2f}% until a replica restarts it",
          migration.controller.settings().name, migration.controller.record().state,
          migration.controller.weight() * 100);
    }
    migration.record_missing = true;
    return false;
  }
  migration.record_missing = false;
  if (record->config_fingerprint != migration.controller.settings().fingerprint) {
    // Another replica restarted the migration for a different candidate configuration (a
    // rolling change): this one holds its weight and judges nothing until it runs that one too.
    return false;
  }
  const auto before = migration.controller.record();
  if (migration.local_breach && record->generation == before.generation) {
    // Nothing moved while Redis was away: the breach this replica judged then is the fleet's now.
    if (auto transition = migration.controller.commit_breach(*migration.local_breach_evaluation)) {
      spdlog::warn("migration {}: the store answers again; committed the breach judged during the outage",
                   record->migration);
      migration.local_breach = false;
      migration.primary_only = false;
      after_transition(migration, *transition);
      return true;
    }
  }
  if (migration.primary_only && !migration.local_breach) {
    migration.primary_only = false;
    spdlog::info("migration {}: the store answers again; routing by its record ({} at {:.2f}%)",
                 record->migration, record->state, record->weight * 100);
    if (record->generation == before.generation) {
      migration.runtime->publish(migration.controller.weight(), migration.controller.shadowing());
    }
  }
  if (!migration.controller.adopt(*record)) return true;
  migration.local_breach = false;
  migration.primary_only = false;
  spdlog::info("migration {}: following generation {}: {} at {:.2f}% (was generation {}, {})",
               record->migration, record->generation, record->state, record->weight * 100,
               before.generation, before.state);
  migration.runtime->publish(migration.controller.weight(), migration.controller.shadowing());
  const bool moved = before.state != record->state || before.stage != record->stage ||
                     before.weight != record->weight;
  if (moved) {
    migration.runtime->next_epoch();
    migration.window_pairs.clear();
    migration.window_generation = record->generation;
  }
  return true;
}

void MigrationEngine::start() {
  if (started_) return;
  started_ = true;
  if (shared_) {
    lease_timer_ = std::make_unique<asio::steady_timer>(context_);
    renew_lease();
  }
  // Resumed before any worker routes a request, so the first request already sees the weight.
  for (auto& [name, migration] : migrations_) resume(*migration);
  for (auto& [name, migration] : migrations_) schedule(*migration);
  schedule_lease();
  thread_ = std::thread([this] {
    util::name_this_thread("cutover-engine");
    for (;;) {
      try {
        context_.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("migration engine caught an unexpected exception: {}", e.what());
      }
    }
  });
}

void MigrationEngine::reload(std::shared_ptr<const config::Config> config) {
  on_engine([&] {
    flush_pairs();
    build(config);
    config_ = config;
    for (auto& [name, migration] : migrations_) {
      resume(*migration);
      schedule(*migration);
    }
  });
}

void MigrationEngine::stop() {
  if (stopped_.exchange(true)) return;
  auto close = [this] {
    for (auto& [name, migration] : migrations_) take_pairs(*migration);
    flush_pairs();
    for (auto& [name, migration] : migrations_) {
      migration->timer.cancel();
      if (migration->webhooks) migration->webhooks->stop();
    }
    if (lease_timer_) lease_timer_->cancel();
    // Handing the lease back lets another replica lead at once instead of after its expiry.
    if (shared_ && term_) shared_->release_lease(*term_);
    term_.reset();
    leading_ = false;
    guard_.reset();
  };
  if (thread_.joinable()) {
    asio::post(context_, close);
    thread_.join();
  } else {
    close();
  }
}

void MigrationEngine::schedule(Migration& migration) {
  migration.timer.expires_after(migration.controller.settings().evaluation_interval);
  migration.timer.async_wait([this, &migration](boost::system::error_code ec) {
    if (ec || stopped_) return;
    tick(migration);
    schedule(migration);
  });
}

void MigrationEngine::take_pairs(Migration& migration) {
  std::vector<FinishedPair> taken;
  migration.runtime->take_pairs(taken);
  for (auto& [pair, sample] : taken) {
    if (migration.window_pairs.size() < kMaxWindowPairs) migration.window_pairs.push_back(sample);
    ++migration.pairs_recorded;
    migration.pairs_candidate_failed += sample.candidate_failed;
    if (sample.compared) {
      ++migration.pairs_compared;
      migration.score_sum += sample.score;
    }
    pending_pairs_.push_back(std::move(pair));
  }
}

void MigrationEngine::tick(Migration& migration) {
  take_pairs(migration);
  auto window = migration.runtime->collect();
  window.pairs = migration.window_pairs;
  if (quota_source_) window.candidate_quota = quota_source_(migration.controller.settings().candidate);
  if (!shared_) {
    if (auto transition = migration.controller.evaluate(window))
      after_transition(migration, *transition);
    announce_capacity_hold(migration);
  } else if (follow(migration)) {
    // Every replica shares its figures and reads the fleet's, so any replica's `ctl get` and
    // dashboard show what the leader judges; only the leader commits.
    if (auto fleet = fleet_window(migration, window)) {
      window = std::move(*fleet);
      if (holds_lease()) {
        ++evaluations_;
        const store::Fence fence{config_->redis->replica, *term_};
        if (auto transition = migration.controller.evaluate(window, fence)) {
          after_transition(migration, *transition);
        } else if (migration.controller.last_commit() == store::CommitResult::stale_generation) {
          follow(migration);
        }
        announce_capacity_hold(migration);
      } else {
        migration.controller.assess(window);
      }
    }
  } else if (migration.resumed) {
    // Fail static: judged here only to move this replica's traffic toward the primary.
    const auto& evaluation = migration.controller.assess(window);
    if (evaluation.overall == Verdict::fail && !migration.local_breach &&
        migration.controller.weight() > 0) {
      migration.local_breach = true;
      migration.local_breach_evaluation = evaluation;
      spdlog::warn(
          "migration {}: gates breached while the store is unreachable; this replica "
          "sends the candidate nothing until the shared record moves",
          migration.controller.settings().name);
      migration.runtime->publish(0, false);
    }
    const auto outage = std::chrono::steady_clock::now() - migration.last_read;
    if (!store_up_ && !migration.primary_only && outage >= config_->redis->primary_only_after) {
      migration.primary_only = true;
      spdlog::warn(
          "migration {}: the store has been unreachable for {} s; this replica sends every "
          "request to the primary until it answers",
          migration.controller.settings().name,
          std::chrono::duration_cast<std::chrono::seconds>(outage).count());
      migration.runtime->publish(0, false);
    }
  }
  const auto now = util::unix_ms_now();
  if (now - migration.last_point_ms >= kSeriesInterval) {
    migration.last_point_ms = now;
    migration.series.push_back(series_point(migration, window, now));
    while (migration.series.size() > kSeriesPoints) migration.series.pop_front();
    migration.volume.emplace_back(now, window.lifetime_requests);
    while (migration.volume.size() > kSeriesPoints) migration.volume.pop_front();
  }
  // Pairs go to disk in one transaction a second (or sooner when many wait): a commit per
  // evaluation would fsync four times a second for figures that are not the journal.
  if (now - last_pairs_flush_ms_ >= kPairFlushInterval || pending_pairs_.size() >= kPairFlushBatch) {
    last_pairs_flush_ms_ = now;
    flush_pairs();
  }
}

json::object MigrationEngine::series_point(Migration& migration, const WindowSnapshot& window,
                                           std::int64_t now) {
  auto side = [](const ArmWindow& arm) {
    auto quantile = [](const std::vector<double>& samples, double q) -> json::value {
      if (samples.empty()) return nullptr;
      return estimate_quantile(samples, q, 0.95).point;
    };
    return json::object{
        {"requests", arm.requests},
        {"errors", arm.errors},
        {"error_rate", arm.requests ? json::value(static_cast<double>(arm.errors) / arm.requests)
                                    : json::value(nullptr)},
        {"p50_ms", quantile(arm.latency_ms, 0.5)},
        {"p95_ms", quantile(arm.latency_ms, 0.95)},
        {"p99_ms", quantile(arm.latency_ms, 0.99)},
        {"ttft_p50_ms", quantile(arm.ttft_ms, 0.5)},
        {"ttft_p95_ms", quantile(arm.ttft_ms, 0.95)}};
  };
  double score_sum = 0;
  std::size_t compared = 0;
  for (const auto& pair : window.pairs) {
    if (!pair.compared) continue;
    score_sum += pair.score;
    ++compared;
  }
  return json::object{{"t", now},
                      {"weight", migration.controller.weight()},
                      {"phase", phase_name(migration.controller.phase())},
                      {"pairs", window.pairs.size()},
                      {"agreement_mean", compared ? json::value(score_sum / compared) : json::value(nullptr)},
                      {"primary", side(window.primary)},
                      {"candidate", side(window.candidate)}};
}

std::optional<WindowSnapshot> MigrationEngine::fleet_window(Migration& migration,
                                                            const WindowSnapshot& local) {
  const auto& name = migration.controller.settings().name;
  const auto contribution = json::serialize(contribution_json(local, migration.window_pairs));
  if (!shared_->publish_window(name, migration.window_generation, contribution)) return std::nullopt;
  auto contributions = shared_->window(name, migration.window_generation);
  if (!contributions) return std::nullopt;
  WindowSnapshot fleet;
  fleet.candidate_quota = local.candidate_quota;
  migration.window_replicas.clear();
  for (const auto& [replica, text] : *contributions) {
    boost::system::error_code ec;
    const auto value = json::parse(text, ec);
    if (ec || !add_contribution(value, fleet)) {
      spdlog::warn("migration {}: replica {}'s window figures are unreadable; left out", name, replica);
      continue;
    }
    migration.window_replicas.push_back(replica);
  }
  expand_histograms(fleet);
  return fleet;
}

void MigrationEngine::after_transition(Migration& migration, const store::Transition& transition) {
  // Journaled already: only now does the data path see the new weight.
  migration.runtime->publish(migration.controller.weight(), migration.controller.shadowing());
  migration.runtime->next_epoch();
  migration.window_pairs.clear();
  migration.window_generation = transition.generation;
  if (!migration.webhooks) return;
  std::string text = fmt::format("cutover: migration *{}* {} → {} (weight {:.1f}% → {:.1f}%), trigger {}",
                                 transition.migration, transition.from_state.empty() ? "new" : transition.from_state,
                                 transition.to_state, transition.weight_before * 100,
                                 transition.weight_after * 100, transition.trigger);
  boost::system::error_code ec;
  auto detail = json::parse(transition.detail, ec);
  if (!ec && detail.is_object()) {
    if (auto* breach = detail.get_object().if_contains("breach"); breach && breach->is_string()) {
      text += ": " + std::string(breach->get_string());
    }
  }
  auto message = transition_json(transition);
  message["migration"] = transition.migration;
  message["text"] = text;
  migration.webhooks->notify(json::serialize(message));
}

void MigrationEngine::announce_capacity_hold(Migration& migration) {
  auto hold = migration.controller.take_capacity_hold();
  if (!hold) return;
  std::string summary;
  for (const auto& gate : migration.controller.last_evaluation().gates) {
    if (gate.name == "capacity") summary = gate.summary;
  }
  spdlog::warn("migration {}: holds at {:.1f}% ({}): {}", hold->migration, hold->weight_after * 100,
               hold->to_state, summary);
  if (!migration.webhooks) return;
  // Shaped like a transition's message (it is one, from and to the same state), so receivers
  // need no new parser.
  auto message = transition_json(*hold);
  message["migration"] = hold->migration;
  message["text"] = fmt::format("cutover: migration *{}* holds at {:.1f}% ({}): {}", hold->migration,
                                hold->weight_after * 100, hold->to_state, summary);
  migration.webhooks->notify(json::serialize(message));
}

void MigrationEngine::flush_pairs() {
  if (pending_pairs_.empty()) return;
  // Each migration keeps its own number of pairs.
  std::map<std::string, std::vector<store::ShadowPair>> by_migration;
  for (auto& pair : pending_pairs_) by_migration[pair.migration].push_back(std::move(pair));
  pending_pairs_.clear();
  for (auto& [name, pairs] : by_migration) {
    std::size_t retention = 10'000;
    for (const auto& settings : config_->migrations) {
      if (settings.name == name) retention = settings.shadow.retention;
    }
    store_->record_shadow_pairs(pairs, retention);
  }
}

AdminReply MigrationEngine::list() {
  return on_engine([&] {
    json::array out;
    for (auto& [name, migration] : migrations_) {
      const auto& record = migration->controller.record();
      const auto& settings = migration->controller.settings();
      out.push_back(json::object{{"name", name},
                                 {"primary", settings.primary},
                                 {"candidate", settings.candidate},
                                 {"phase", record.state},
                                 {"weight", record.weight},
                                 {"stage", record.stage},
                                 {"stages", settings.stages.size()},
                                 {"generation", record.generation},
                                 {"verdict", verdict_name(migration->controller.last_evaluation().overall)}});
    }
    return AdminReply{200, json::object{{"migrations", std::move(out)}}};
  });
}

AdminReply MigrationEngine::status(const std::string& name) {
  return on_engine([&]() -> AdminReply {
    auto found = migrations_.find(name);
    if (found == migrations_.end()) return not_found(name);
    auto& migration = *found->second;
    const auto& controller = migration.controller;
    const auto& record = controller.record();
    const auto& settings = controller.settings();
    json::array stages;
    for (std::size_t i = 0; i < settings.stages.size(); ++i) {
      const auto& stage = settings.stages[i];
      std::string state = "pending";
      const auto phase = controller.phase();
      if (phase == Phase::promoted || (static_cast<int>(i) < record.stage && phase != Phase::shadow)) {
        state = "done";
      } else if (static_cast<int>(i) == record.stage &&
                 (phase == Phase::canary || phase == Phase::paused)) {
        state = "current";
      }
      stages.push_back(json::object{{"weight", stage.weight},
                                    {"min_duration_ms", stage.min_duration.count()},
                                    {"min_requests", stage.min_requests},
                                    {"state", state}});
    }
    const auto& limiter = migration.runtime->shadow_limiter;
    json::array replicas;
    for (const auto& heartbeat : heartbeats_) {
      replicas.push_back(json::object{{"replica", heartbeat.replica}, {"last_seen_ms_ago", heartbeat.age_ms}});
    }
    json::object body{
        {"name", name},
        {"models", json::value_from(settings.models)},
        {"primary", settings.primary},
        {"candidate", settings.candidate},
        {"phase", record.state},
        {"weight", record.weight},
        {"stage", record.stage},
        {"stages", std::move(stages)},
        {"generation", record.generation},
        {"stage_started_unix_ms", record.stage_started_unix_ms},
        {"stage_elapsed_ms", util::unix_ms_now() - record.stage_started_unix_ms},
        {"annotations", controller.annotations()},
        {"shadowing", controller.shadowing()},
        {"fingerprint", record.config_fingerprint},
        {"routed_weight", migration.runtime->weight()},
        {"store", json::object{{"kind", shared_ ? "redis" : "sqlite"},
                               {"up", store_up_.load()},
                               {"replica", shared_ ? config_->redis->replica : std::string()},
                               // The lease as this replica can vouch for it now: a replica
                               // resumed after a stall past its lease leads no more, whatever
                               // it last renewed.
                               {"leading", holds_lease()},
                               {"leader", leader_},
                               {"replicas", std::move(replicas)},
                               {"window_replicas", json::value_from(migration.window_replicas)}}},
        {"evaluation", controller.last_evaluation().to_json()},
        {"shadow", json::object{{"sample_rate", settings.shadow.sample_rate},
                                {"started", limiter.started()},
                                {"in_flight", limiter.in_flight()},
                                {"dropped_in_flight", limiter.dropped_in_flight()},
                                {"dropped_spend", limiter.dropped_spend()},
                                {"tokens_this_hour", limiter.tokens_this_hour()},
                                {"cost_this_hour", limiter.cost_this_hour()},
                                {"pairs_recorded", migration.pairs_recorded}}}};
    return AdminReply{200, std::move(body)};
  });
}

AdminReply MigrationEngine::history(const std::string& name, std::size_t limit) {
  return on_engine([&]() -> AdminReply {
    if (!migrations_.contains(name)) return not_found(name);
    json::array out;
    for (const auto& t : store_->history(name, limit)) out.push_back(transition_json(t));
    return AdminReply{200, json::object{{"migration", name}, {"transitions", std::move(out)}}};
  });
}

AdminReply MigrationEngine::shadow_summary(const std::string& name) {
  return on_engine([&]() -> AdminReply {
    if (!migrations_.contains(name)) return not_found(name);
    flush_pairs();
    auto body = summarize_pairs(store_->shadow_pairs(name, kSummaryPairs));
    body["migration"] = name;
    return AdminReply{200, std::move(body)};
  });
}

AdminReply MigrationEngine::series(const std::string& name, std::int64_t since_unix_ms) {
  return on_engine([&]() -> AdminReply {
    auto found = migrations_.find(name);
    if (found == migrations_.end()) return not_found(name);
    json::array points;
    for (const auto& point : found->second->series) {
      if (point.at("t").as_int64() > since_unix_ms) points.push_back(point);
    }
    return AdminReply{200, json::object{{"migration", name}, {"points", std::move(points)}}};
  });
}

AdminReply MigrationEngine::projection(const std::string& name) {
  return on_engine([&]() -> AdminReply {
    auto found = migrations_.find(name);
    if (found == migrations_.end()) return not_found(name);
    flush_pairs();
    auto& migration = *found->second;
    double per_day = 0;
    if (migration.volume.size() >= 2) {
      const auto& [first_ms, first_count] = migration.volume.front();
      const auto& [last_ms, last_count] = migration.volume.back();
      if (last_ms > first_ms) {
        per_day = static_cast<double>(last_count - first_count) * 86'400'000.0 /
                  static_cast<double>(last_ms - first_ms);
      }
    }
    const auto& settings = migration.controller.settings();
    std::string currency = "USD";
    for (const auto* provider_name : {&settings.candidate, &settings.primary}) {
      if (const auto* provider = config_->find_provider(*provider_name)) {
        if (const auto* price = provider->price_for(provider->models.at(settings.models.front()))) {
          currency = price->currency;
          break;
        }
      }
    }
    auto body = project_costs(store_->shadow_pairs(name, kSummaryPairs), per_day, currency);
    body["migration"] = name;
    return AdminReply{200, std::move(body)};
  });
}

AdminReply MigrationEngine::command(const std::string& name, const Command& command) {
  return on_engine([&]() -> AdminReply {
    auto found = migrations_.find(name);
    if (found == migrations_.end()) return not_found(name);
    auto& migration = *found->second;
    if (shared_) {
      // Decided on the newest shared record: a command from any replica sees every commit.
      if (!follow(migration)) {
        return AdminReply{
            503,
            json::object{
                {"error",
                 json::object{{"message",
                               "this replica cannot follow the shared record (the store is "
                               "unreachable, lost the record, or runs another configuration of the "
                               "migration); nothing changed"},
                              {"type", "api_error"},
                              {"code", "store_unavailable"}}}}};
      }
    }
    auto result = migration.controller.apply(command);
    if (result.http_status == 409 && shared_) follow(migration);
    if (result.http_status != 200) {
      const char* code = result.http_status == 409 ? "stale_generation"
                         : result.http_status == 400 ? "invalid_action"
                                                     : "store_failed";
      return AdminReply{result.http_status,
                        json::object{{"error", json::object{{"message", result.error},
                                                            {"type", "invalid_request_error"},
                                                            {"code", code}}}}};
    }
    after_transition(migration, *result.transition);
    return AdminReply{200, json::object{{"transition", transition_json(*result.transition)},
                                        {"generation", migration.controller.record().generation},
                                        {"phase", migration.controller.record().state},
                                        {"weight", migration.controller.weight()}}};
  });
}

std::vector<observability::ExtraFamily> MigrationEngine::metric_families() {
  return on_engine([&] {
    using observability::ExtraFamily;
    using observability::Sample;
    using Type = prometheus::MetricType;
    ExtraFamily weight{"cutover_migration_weight", "Share of the migrated traffic sent to the candidate (0 to 1)", Type::Gauge, {}};
    ExtraFamily phase{"cutover_migration_phase", "1 for the phase each migration is in", Type::Gauge, {}};
    ExtraFamily stage{"cutover_migration_stage", "Index of the migration's current stage", Type::Gauge, {}};
    ExtraFamily generation{"cutover_migration_generation", "Transitions journaled for the migration", Type::Gauge, {}};
    ExtraFamily pairs{"cutover_shadow_pairs_total", "Shadow pairs recorded", Type::Counter, {}};
    ExtraFamily failed{"cutover_shadow_candidate_failures_total", "Shadow requests the candidate failed", Type::Counter, {}};
    ExtraFamily dropped{"cutover_shadow_dropped_total", "Shadow requests not sent, by reason", Type::Counter, {}};
    ExtraFamily in_flight{"cutover_shadow_in_flight", "Shadow requests waiting on the candidate", Type::Gauge, {}};
    ExtraFamily score_sum{"cutover_shadow_agreement_score_sum", "Sum of the agreement scores of compared pairs", Type::Counter, {}};
    ExtraFamily score_count{"cutover_shadow_agreement_score_count", "Compared shadow pairs", Type::Counter, {}};
    ExtraFamily store_up{
        "cutover_store_up", "1 when the state store answered its last command", Type::Gauge, {}};
    ExtraFamily leader{"cutover_fleet_leader",
                       "1 when this replica holds the leader's lease (fleet mode)",
                       Type::Gauge,
                       {}};
    ExtraFamily last_seen{"cutover_fleet_replica_last_seen_seconds",
                          "Seconds since each replica of the fleet last wrote its window, by Redis's "
                          "clock (fleet mode; replicas silent for three leases are left out)",
                          Type::Gauge,
                          {}};
    store_up.samples.push_back(Sample{{}, store_up_.load() ? 1.0 : 0.0});
    leader.samples.push_back(Sample{{}, (!shared_ || holds_lease()) ? 1.0 : 0.0});
    for (const auto& heartbeat : heartbeats_) {
      last_seen.samples.push_back(
          Sample{{{"replica", heartbeat.replica}}, static_cast<double>(heartbeat.age_ms) / 1000});
    }
    for (auto& [name, migration] : migrations_) {
      const auto& record = migration->controller.record();
      const auto& limiter = migration->runtime->shadow_limiter;
      weight.samples.push_back(Sample{{{"migration", name}}, record.weight});
      for (int i = 0; i <= static_cast<int>(Phase::aborted); ++i) {
        const auto each = static_cast<Phase>(i);
        phase.samples.push_back(Sample{{{"migration", name}, {"phase", std::string(phase_name(each))}},
                                       migration->controller.phase() == each ? 1.0 : 0.0});
      }
      stage.samples.push_back(Sample{{{"migration", name}}, static_cast<double>(record.stage)});
      generation.samples.push_back(Sample{{{"migration", name}}, static_cast<double>(record.generation)});
      pairs.samples.push_back(Sample{{{"migration", name}}, static_cast<double>(migration->pairs_recorded)});
      failed.samples.push_back(Sample{{{"migration", name}}, static_cast<double>(migration->pairs_candidate_failed)});
      dropped.samples.push_back(Sample{{{"migration", name}, {"reason", "in_flight_cap"}},
                                       static_cast<double>(limiter.dropped_in_flight())});
      dropped.samples.push_back(Sample{{{"migration", name}, {"reason", "spend_cap"}},
                                       static_cast<double>(limiter.dropped_spend())});
      in_flight.samples.push_back(Sample{{{"migration", name}}, static_cast<double>(limiter.in_flight())});
      score_sum.samples.push_back(Sample{{{"migration", name}}, migration->score_sum});
      score_count.samples.push_back(Sample{{{"migration", name}}, static_cast<double>(migration->pairs_compared)});
    }
    return std::vector<ExtraFamily>{
        std::move(weight),    std::move(phase),       std::move(stage),    std::move(generation),
        std::move(pairs),     std::move(failed),      std::move(dropped),  std::move(in_flight),
        std::move(score_sum), std::move(score_count), std::move(store_up), std::move(leader),
        std::move(last_seen)};
  });
}

void MigrationEngine::flush() {
  on_engine([&] {
    for (auto& [name, migration] : migrations_) take_pairs(*migration);
    flush_pairs();
  });
}

double MigrationEngine::routed_weight(const std::string& name) const {
  auto routes = this->routes();
  for (const auto& [model, runtime] : *routes) {
    if (runtime->settings().name == name) return runtime->weight();
  }
  return 0;
}

std::pair<Phase, double> MigrationEngine::phase_of(const std::string& name) {
  return on_engine([&]() -> std::pair<Phase, double> {
    auto& migration = *migrations_.at(name);
    return {migration.controller.phase(), migration.controller.weight()};
  });
}

}  // namespace cutover::migration
