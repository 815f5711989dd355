#include "migration/controller.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace cutover::migration {

namespace json = boost::json;

namespace {

constexpr std::string_view kPhaseNames[] = {"shadow",       "canary",      "paused", "promoted",
                                            "rolling_back", "rolled_back", "aborted"};
constexpr std::string_view kActionNames[] = {"pause",      "resume",   "promote", "promote_full",
                                             "set_weight", "rollback", "abort"};

// Boost.JSON writes infinities and NaN as tokens JSON does not have; an unbounded figure is null.
json::value finite(double value) {
  return std::isfinite(value) ? json::value(value) : json::value(nullptr);
}

std::string percent(double share) { return fmt::format("{:.2f}%", share * 100); }

std::string_view measure_name(config::LatencyGate::Measure measure) {
  switch (measure) {
    case config::LatencyGate::Measure::total:
      return "latency";
    case config::LatencyGate::Measure::time_to_first_token:
      return "ttft";
    case config::LatencyGate::Measure::time_per_output_token:
      return "tpot";
  }
  return "latency";
}

const std::vector<double>& samples_of(const ArmWindow& arm, config::LatencyGate::Measure measure) {
  switch (measure) {
    case config::LatencyGate::Measure::time_to_first_token:
      return arm.ttft_ms;
    case config::LatencyGate::Measure::time_per_output_token:
      return arm.tpot_ms;
    default:
      return arm.latency_ms;
  }
}

GateResult rate_gate(std::string name, std::uint64_t failures, std::uint64_t trials,
                     double max_rate, double confidence) {
  const auto judgement = judge_error_rate(failures, trials, max_rate, confidence);
  GateResult gate;
  gate.name = std::move(name);
  gate.verdict = judgement.verdict;
  gate.summary = fmt::format("{}/{} = {} ({:.0f}% bounds {}–{}) vs max {}", failures, trials,
                             trials ? percent(judgement.observed) : "n/a", confidence * 100,
                             percent(judgement.bounds.lower), percent(judgement.bounds.upper),
                             percent(max_rate));
  gate.figures = {{"failures", failures},
                  {"trials", trials},
                  {"observed", finite(judgement.observed)},
                  {"lower", finite(judgement.bounds.lower)},
                  {"upper", finite(judgement.bounds.upper)},
                  {"max", max_rate}};
  return gate;
}

std::string describe_capacity(const CapacityJudgement::Dimension& dimension, std::string_view unit) {
  std::string text = fmt::format("~{:.0f} {}/min", dimension.needed, unit);
  if (dimension.over) {
    text += dimension.remaining
                ? fmt::format(", the candidate reports {:.0f} left (limit {:.0f}/min)",
                              *dimension.remaining, dimension.limit)
                : fmt::format(", the candidate reports limit {:.0f}/min", dimension.limit);
    text += fmt::format(", allowing {:.0f}", dimension.allowed);
  } else {
    text += fmt::format(" of its limit {:.0f}/min ({})", dimension.limit, percent(dimension.share));
  }
  return text;
}

// The verdict, a readable line and flat figures (so that ctl and the dashboard list them).
GateResult capacity_gate(const CapacityJudgement& judgement, double next_weight, double max_share,
                         double window_minutes) {
  GateResult gate;
  gate.name = "capacity";
  gate.verdict = judgement.verdict;
  gate.figures = {{"applicable", judgement.applicable},
                  {"next_weight", next_weight},
                  {"max_share", max_share},
                  {"window_minutes", window_minutes}};
  if (!judgement.applicable) {
    gate.summary = "not applicable: the candidate reports no rate limits";
    return gate;
  }
  std::vector<std::string> parts;
  auto add = [&](const char* prefix, const char* unit, const CapacityJudgement::Dimension& d) {
    if (!d.reported) return;
    const std::string key(prefix);
    gate.figures[key + "_needed"] = d.needed;
    gate.figures[key + "_limit"] = d.limit;
    gate.figures[key + "_remaining"] = d.remaining ? json::value(*d.remaining) : json::value(nullptr);
    gate.figures[key + "_allowed"] = d.allowed;
    gate.figures[key + "_share"] = d.share;
    // A hold names only what it ran out of.
    if (judgement.verdict == Verdict::pass || d.over) parts.push_back(describe_capacity(d, unit));
  };
  add("requests", "req", judgement.requests);
  add("tokens", "tokens", judgement.tokens);
  std::string joined;
  for (const auto& part : parts) joined += (joined.empty() ? "" : "; ") + part;
  gate.summary = fmt::format("next stage ({}) needs {}; at most {} of the quota may be used",
                             percent(next_weight), joined, percent(max_share));
  return gate;
}

json::object parse_object(const std::string& text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec || !value.is_object()) return {};
  return value.get_object();
}

std::int64_t int_field(const json::object& object, std::string_view key, std::int64_t fallback) {
  const auto* value = object.if_contains(key);
  return value && value->is_int64() ? value->get_int64() : fallback;
}

bool bool_field(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  return value && value->is_bool() && value->get_bool();
}

std::string string_field(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  return value && value->is_string() ? std::string(value->get_string()) : std::string();
}

}  // namespace

std::string_view phase_name(Phase phase) { return kPhaseNames[static_cast<int>(phase)]; }

std::optional<Phase> phase_named(std::string_view name) {
  for (int i = 0; i < 7; ++i) {
    if (kPhaseNames[i] == name) return static_cast<Phase>(i);
  }
  return std::nullopt;
}

std::string_view action_name(Action action) { return kActionNames[static_cast<int>(action)]; }

std::optional<Action> action_named(std::string_view name) {
  for (int i = 0; i < 7; ++i) {
    if (kActionNames[i] == name) return static_cast<Action>(i);
  }
  if (name == "promote-full") return Action::promote_full;
  if (name == "set-weight") return Action::set_weight;
  return std::nullopt;
}

json::object Evaluation::to_json() const {
  json::array list;
  for (const auto& gate : gates) {
    list.push_back(json::object{{"gate", gate.name},
                                {"verdict", verdict_name(gate.verdict)},
                                {"summary", gate.summary},
                                {"figures", gate.figures}});
  }
  return json::object{{"at_unix_ms", at_unix_ms},
                      {"verdict", verdict_name(overall)},
                      {"candidate_requests", candidate_requests},
                      {"primary_requests", primary_requests},
                      {"shadow_pairs", pairs},
                      {"gates", std::move(list)}};
}

Controller::Controller(const config::Migration& settings, store::StateStore& store, NowMs now_ms)
    : settings_(settings),
      store_(store),
      now_ms_(std::move(now_ms)),
      error_change_(settings.gates.max_error_rate, settings.gates.confidence),
      attempt_error_change_(settings.gates.max_attempt_error_rate, settings.gates.confidence),
      journal_errors_(util::LogThrottle::kDefaultInterval, [this] {
        return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms_()));
      }) {}

void Controller::watch_for_change(const WindowSnapshot& window) {
  auto gained = [](std::uint64_t now, std::uint64_t& seen) {
    // Counts only grow within a window; smaller means a new one began.
    const auto delta = now >= seen ? now - seen : now;
    seen = now;
    return delta;
  };
  const auto requests = gained(window.candidate.requests, seen_requests_);
  const auto errors = gained(window.candidate.errors, seen_errors_);
  const auto attempts = gained(window.candidate_attempts, seen_attempts_);
  const auto attempt_failures = gained(window.candidate_attempt_failures, seen_attempt_failures_);
  error_change_.add(errors, requests);
  attempt_error_change_.add(attempt_failures, attempts);
}

void Controller::change_gates(Evaluation& out) const {
  auto report = [&](const char* name, const RateChangeDetector& detector, double max_rate) {
    // Only a failing verdict: a pass is the stage window's to give, and a detector that has seen
    // nothing wrong must not hold a stage as inconclusive.
    if (!detector.alarmed()) return;
    const auto failures = detector.failures_in_run();
    const auto trials = detector.trials_in_run();
    GateResult gate;
    gate.name = name;
    gate.verdict = Verdict::fail;
    gate.summary = fmt::format(
        "{}/{} = {} since the candidate was last within its limit; log-likelihood {:.1f} ≥ {:.1f} "
        "that it fails at {} rather than at most {}",
        failures, trials, trials ? percent(static_cast<double>(failures) / trials) : "n/a",
        detector.statistic(), detector.threshold(), percent(detector.risen_rate()),
        percent(max_rate));
    gate.figures = {{"failures", failures},
                    {"trials", trials},
                    {"statistic", finite(detector.statistic())},
                    {"threshold", finite(detector.threshold())},
                    {"max", max_rate}};
    out.gates.push_back(std::move(gate));
  };
  report("error_rate_change", error_change_, settings_.gates.max_error_rate);
  report("attempt_error_rate_change", attempt_error_change_, settings_.gates.max_attempt_error_rate);
}

Phase Controller::initial_phase() const {
  return settings_.shadow.sample_rate > 0 ? Phase::shadow : Phase::canary;
}

double Controller::initial_weight() const {
  return initial_phase() == Phase::shadow ? 0.0 : settings_.stages.front().weight;
}

bool Controller::shadowing() const {
  if (settings_.shadow.sample_rate <= 0) return false;
  switch (phase_) {
    case Phase::shadow:
      return true;
    case Phase::canary:
    case Phase::paused:
      return settings_.shadow.during_canary && record_.weight < 1.0;
    default:
      return false;
  }
}

std::optional<store::Transition> Controller::start(bool retried) {
  // The engine gives every (re)started migration a fresh window.
  window_started_ms_ = now_ms_();
  auto stored = store_.load(settings_.name);
  if (stored && stored->config_fingerprint == settings_.fingerprint) {
    record_ = *stored;
    phase_ = phase_named(record_.state).value_or(Phase::paused);
    annotations_ = parse_object(record_.annotations);
    return std::nullopt;
  }
  std::string trigger = "created";
  json::object detail;
  if (stored) {
    // A different candidate (or ladder) is a new run: everything goes back to the primary.
    record_ = *stored;
    phase_ = phase_named(record_.state).value_or(Phase::paused);
    trigger = "config_change";
    detail = {{"previous_fingerprint", stored->config_fingerprint},
              {"fingerprint", settings_.fingerprint}};
  } else {
    record_.migration = settings_.name;
    record_.state = std::string(phase_name(initial_phase()));
  }
  auto transition = transition_to(initial_phase(), initial_weight(), 0, trigger, std::move(detail), {});
  // Another replica started it first: take what it wrote.
  if (!transition && last_commit_ == store::CommitResult::stale_generation && !retried) {
    return start(true);
  }
  if (!transition) throw std::runtime_error("cannot write migration '" + settings_.name + "' to the state store");
  return transition;
}

std::optional<store::Transition> Controller::transition_to(Phase phase, double weight, int stage,
                                                           std::string trigger, json::object detail,
                                                           json::object annotations) {
  const auto now = now_ms_();
  store::MigrationRecord next = record_;
  next.migration = settings_.name;
  next.state = std::string(phase_name(phase));
  next.weight = weight;
  next.stage = stage;
  next.stage_started_unix_ms = now;
  next.generation = record_.generation + 1;
  next.config_fingerprint = settings_.fingerprint;
  next.annotations = json::serialize(annotations);

  store::Transition transition;
  transition.migration = settings_.name;
  transition.generation = next.generation;
  transition.at_unix_ms = now;
  transition.from_state = record_.generation == 0 ? "" : record_.state;
  transition.to_state = next.state;
  transition.weight_before = record_.generation == 0 ? 0 : record_.weight;
  transition.weight_after = weight;
  transition.trigger = std::move(trigger);
  transition.detail = json::serialize(detail);
  const auto committed = store_.commit_as(next, transition, record_.generation, fence_);
  const auto result = committed.result;
  last_commit_ = result;
  if (result != store::CommitResult::committed) {
    journal_errors_.error(fmt::format(
        "migration {}: cannot journal {} -> {} ({}); keeping {} at {}", settings_.name,
        record_.state, next.state,
        result == store::CommitResult::stale_generation ? "another writer moved it"
        : result == store::CommitResult::not_leader     ? "this replica's lease is gone"
                                                        : "state store write failed",
        record_.state, percent(record_.weight)));
    return std::nullopt;
  }
  window_started_ms_ = now;
  // A shared store stamps its own clock, the same for every replica.
  next.stage_started_unix_ms = committed.at_unix_ms;
  transition.at_unix_ms = committed.at_unix_ms;
  record_ = std::move(next);
  phase_ = phase;
  annotations_ = std::move(annotations);
  // The engine starts a new window with every transition; evidence of the old weight is spent.
  seen_requests_ = seen_errors_ = seen_attempts_ = seen_attempt_failures_ = 0;
  error_change_.reset();
  attempt_error_change_.reset();
  spdlog::info("migration {}: {} -> {} at {} ({})", settings_.name, transition.from_state,
               transition.to_state, percent(weight), transition.trigger);
  return transition;
}

void Controller::judge_latency(const WindowSnapshot& window, Evaluation& out) const {
  const auto& gates = settings_.gates;
  const bool shadow_phase = phase_ == Phase::shadow;
  for (const auto& gate : settings_.gates.latency) {
    const auto measure = measure_name(gate.measure);
    const std::string name = fmt::format("{}_p{:.0f}", measure, gate.quantile * 100);
    // In the shadow phase only paired samples exist: the same prompts sent to both sides.
    std::vector<double> candidate_samples;
    std::vector<double> primary_samples;
    if (shadow_phase) {
      if (gate.measure == config::LatencyGate::Measure::time_per_output_token) continue;
      for (const auto& pair : window.pairs) {
        if (!pair.compared) continue;
        const bool ttft = gate.measure == config::LatencyGate::Measure::time_to_first_token;
        candidate_samples.push_back(ttft ? pair.candidate_ttft_ms : pair.candidate_latency_ms);
        primary_samples.push_back(ttft ? pair.primary_ttft_ms : pair.primary_latency_ms);
      }
    } else {
      candidate_samples = samples_of(window.candidate, gate.measure);
      primary_samples = samples_of(window.primary, gate.measure);
    }
    GateResult result;
    result.name = name;
    std::vector<Verdict> verdicts;
    std::string summary;
    if (gate.max) {
      const auto judged = judge_quantile(candidate_samples, gate.quantile,
                                         static_cast<double>(gate.max->count()), gates.confidence,
                                         gates.min_latency_samples);
      verdicts.push_back(judged.verdict);
      summary += fmt::format("candidate {:.1f} ms (n={}) vs max {} ms", judged.estimate.point,
                             judged.estimate.samples, gate.max->count());
      result.figures["candidate"] = finite(judged.estimate.point);
      result.figures["candidate_lower"] = finite(judged.estimate.lower);
      result.figures["candidate_samples"] = judged.estimate.samples;
      result.figures["max_ms"] = gate.max->count();
    }
    if (gate.max_ratio) {
      const auto baseline_key = std::string(measure) + std::to_string(gate.quantile);
      std::optional<double> reference;
      if (primary_samples.size() >= gates.min_latency_samples) {
        reference = estimate_quantile(primary_samples, gate.quantile, gates.confidence).point;
        primary_baseline_[baseline_key] = *reference;
      } else if (auto known = primary_baseline_.find(baseline_key); known != primary_baseline_.end()) {
        reference = known->second;
      }
      if (!summary.empty()) summary += "; ";
      if (!reference) {
        verdicts.push_back(Verdict::inconclusive);
        summary += fmt::format("primary has {} samples, needs {}", primary_samples.size(),
                               gates.min_latency_samples);
      } else {
        const double limit = *reference * *gate.max_ratio;
        const auto judged = judge_quantile(candidate_samples, gate.quantile, limit,
                                           gates.confidence, gates.min_latency_samples);
        verdicts.push_back(judged.verdict);
        summary += fmt::format("candidate {:.1f} ms (n={}) vs primary {:.1f} ms × {:.2f}",
                               judged.estimate.point, judged.estimate.samples, *reference,
                               *gate.max_ratio);
        result.figures["candidate"] = finite(judged.estimate.point);
        result.figures["candidate_lower"] = finite(judged.estimate.lower);
        result.figures["candidate_upper"] = finite(judged.estimate.upper);
        result.figures["candidate_samples"] = judged.estimate.samples;
        result.figures["primary"] = *reference;
        result.figures["max_ratio"] = *gate.max_ratio;
      }
    }
    result.verdict = combine(verdicts);
    result.summary = std::move(summary);
    out.gates.push_back(std::move(result));
  }
}

Evaluation Controller::judge(const WindowSnapshot& window) const {
  const auto& gates = settings_.gates;
  Evaluation out;
  out.at_unix_ms = now_ms_();
  out.candidate_requests = window.candidate.requests;
  out.primary_requests = window.primary.requests;
  out.pairs = window.pairs.size();
  std::uint64_t shadow_failures = 0;
  std::vector<double> scores;
  for (const auto& pair : window.pairs) {
    if (pair.candidate_failed) ++shadow_failures;
    if (pair.compared) scores.push_back(pair.score);
  }
  if (phase_ == Phase::shadow) {
    out.gates.push_back(rate_gate("shadow_error_rate", shadow_failures, window.pairs.size(),
                                  gates.max_attempt_error_rate, gates.confidence));
  } else {
    out.gates.push_back(rate_gate("error_rate", window.candidate.errors, window.candidate.requests,
                                  gates.max_error_rate, gates.confidence));
    out.gates.push_back(rate_gate("attempt_error_rate", window.candidate_attempt_failures,
                                  window.candidate_attempts, gates.max_attempt_error_rate,
                                  gates.confidence));
    out.gates.push_back(rate_gate("rate_limited", window.candidate_rate_limited,
                                  window.candidate_attempts, gates.max_rate_limited_share,
                                  gates.confidence));
    change_gates(out);
  }
  judge_latency(window, out);
  judge_capacity_gate(window, out);
  const bool pairs_expected = phase_ == Phase::shadow || shadowing();
  if (gates.min_agreement && pairs_expected) {
    const auto judged =
        judge_mean_at_least(scores, *gates.min_agreement, gates.confidence, gates.min_shadow_pairs);
    GateResult gate;
    gate.name = "agreement";
    gate.verdict = judged.verdict;
    gate.summary = fmt::format("mean {:.3f} over {} pairs ({:.0f}% bounds {:.3f}–{:.3f}) vs min {:.2f}",
                               judged.mean, judged.samples, gates.confidence * 100,
                               judged.bounds.lower, judged.bounds.upper, *gates.min_agreement);
    gate.figures = {{"mean", finite(judged.mean)},
                    {"pairs", judged.samples},
                    {"lower", finite(judged.bounds.lower)},
                    {"upper", finite(judged.bounds.upper)},
                    {"min", *gates.min_agreement}};
    out.gates.push_back(std::move(gate));
  }
  std::vector<Verdict> verdicts;
  for (const auto& gate : out.gates) verdicts.push_back(gate.verdict);
  out.overall = combine(verdicts);
  return out;
}

std::optional<double> Controller::next_weight() const {
  Phase from = phase_;
  int stage = record_.stage;
  if (from == Phase::paused) {
    from = phase_named(string_field(annotations_, "resume_phase")).value_or(Phase::canary);
    stage = static_cast<int>(int_field(annotations_, "resume_stage", stage));
  }
  const auto& stages = settings_.stages;
  if (from == Phase::shadow) return stages.front().weight;
  if (from != Phase::canary) return std::nullopt;
  const auto next = static_cast<std::size_t>(stage) + 1;
  return next < stages.size() ? stages[next].weight : 1.0;
}

void Controller::judge_capacity_gate(const WindowSnapshot& window, Evaluation& out) const {
  const auto next = next_weight();
  if (!next || *next <= record_.weight) return;
  RouteTraffic traffic;
  traffic.requests = window.primary.requests + window.candidate.requests;
  traffic.tokens = window.primary.tokens + window.candidate.tokens;
  traffic.candidate_requests = window.candidate.requests + window.pairs.size();
  traffic.candidate_tokens = window.candidate.tokens;
  traffic.minutes = static_cast<double>(std::max<std::int64_t>(now_ms_() - window_started_ms_, 0)) /
                    60'000.0;
  const auto& shadow = settings_.shadow;
  // Mirroring goes on after the next step (until 100 %), and spends the candidate's quota too.
  const double shadow_rate = shadow.during_canary && *next < 1.0 ? shadow.sample_rate : 0.0;
  const auto judgement = judge_capacity(project_candidate_load(traffic, *next, shadow_rate),
                                        current_candidate_load(traffic),
                                        window.candidate_quota.value_or(CandidateQuota{}),
                                        settings_.gates.max_quota_share);
  out.gates.push_back(
      capacity_gate(judgement, *next, settings_.gates.max_quota_share, traffic.minutes));
}

std::optional<store::Transition> Controller::commit_breach(const Evaluation& evaluation) {
  if (phase_ != Phase::canary && phase_ != Phase::paused && phase_ != Phase::promoted &&
      phase_ != Phase::rolling_back) {
    return std::nullopt;
  }
  fence_.reset();
  return breach(evaluation);
}

std::optional<store::Transition> Controller::breach(const Evaluation& evaluation) {
  json::object detail = evaluation.to_json();
  std::string failed;
  for (const auto& gate : evaluation.gates) {
    if (gate.verdict == Verdict::fail) {
      failed += failed.empty() ? gate.name : "," + gate.name;
      detail["breach"] = gate.summary;
    }
  }
  json::object annotations{{"automatic", true}, {"reason", "gate breach: " + failed}};
  const auto& steps = settings_.rollback.steps;
  if (settings_.rollback.gradual_on_breach && !steps.empty() && phase_ != Phase::rolling_back) {
    std::size_t step = 0;
    while (step + 1 < steps.size() && steps[step] >= record_.weight) ++step;
    annotations["rollback_step"] = static_cast<std::int64_t>(step);
    return transition_to(Phase::rolling_back, steps[step], record_.stage, "gate:" + failed,
                         std::move(detail), std::move(annotations));
  }
  return transition_to(Phase::rolled_back, 0, record_.stage, "gate:" + failed, std::move(detail),
                       std::move(annotations));
}

std::optional<store::Transition> Controller::advance(std::string trigger, json::object detail) {
  const auto& stages = settings_.stages;
  Phase from = phase_;
  int stage = record_.stage;
  if (from == Phase::paused) {
    from = phase_named(string_field(annotations_, "resume_phase")).value_or(Phase::canary);
    stage = static_cast<int>(int_field(annotations_, "resume_stage", stage));
  }
  if (from == Phase::shadow) {
    return transition_to(Phase::canary, stages.front().weight, 0, std::move(trigger),
                         std::move(detail), {});
  }
  const int next = stage + 1;
  if (next >= static_cast<int>(stages.size())) {
    return transition_to(Phase::promoted, 1.0, stage, std::move(trigger), std::move(detail), {});
  }
  return transition_to(Phase::canary, stages[next].weight, next, std::move(trigger),
                       std::move(detail), {});
}

void Controller::journal_capacity_hold() {
  auto annotations = annotations_;
  annotations["capacity_hold"] = true;
  store::MigrationRecord next = record_;
  next.generation = record_.generation + 1;
  next.annotations = json::serialize(annotations);
  store::Transition transition;
  transition.migration = settings_.name;
  transition.generation = next.generation;
  transition.at_unix_ms = now_ms_();
  transition.from_state = transition.to_state = record_.state;
  transition.weight_before = transition.weight_after = record_.weight;
  transition.trigger = "gates:capacity_hold";
  transition.detail = json::serialize(last_.to_json());
  const auto committed = store_.commit_as(next, transition, record_.generation, fence_);
  last_commit_ = committed.result;
  if (committed.result != store::CommitResult::committed) {
    journal_errors_.error(fmt::format("migration {}: cannot journal its capacity hold at {}",
                                      settings_.name, percent(record_.weight)));
    return;
  }
  // Nothing moved: the stage keeps its clock (a shared store keeps it too, the weight, state
  // and stage being unchanged) and the window keeps its evidence.
  transition.at_unix_ms = committed.at_unix_ms;
  record_ = std::move(next);
  annotations_ = std::move(annotations);
  capacity_hold_ = std::move(transition);
}

const Evaluation& Controller::assess(const WindowSnapshot& window) {
  if (phase_ == Phase::promoted || phase_ == Phase::rolled_back || phase_ == Phase::aborted) {
    return last_;
  }
  if (phase_ != Phase::shadow) watch_for_change(window);
  last_ = judge(window);
  return last_;
}

bool Controller::adopt(const store::MigrationRecord& record) {
  if (record.generation == record_.generation) return false;
  record_ = record;
  phase_ = phase_named(record_.state).value_or(Phase::paused);
  annotations_ = parse_object(record_.annotations);
  window_started_ms_ = now_ms_();
  seen_requests_ = seen_errors_ = seen_attempts_ = seen_attempt_failures_ = 0;
  error_change_.reset();
  attempt_error_change_.reset();
  return true;
}

std::optional<store::Transition> Controller::evaluate(const WindowSnapshot& window,
                                                      std::optional<store::Fence> fence) {
  fence_ = std::move(fence);
  struct ClearFence {
    std::optional<store::Fence>& fence;
    ~ClearFence() { fence.reset(); }
  } clear{fence_};
  if (phase_ == Phase::promoted || phase_ == Phase::rolled_back || phase_ == Phase::aborted) {
    return std::nullopt;
  }
  if (phase_ != Phase::shadow) watch_for_change(window);
  last_ = judge(window);
  holding_for_capacity_ = false;
  const auto now = now_ms_();
  const auto elapsed = now - record_.stage_started_unix_ms;

  if (phase_ == Phase::rolling_back) {
    if (last_.overall == Verdict::fail && record_.weight > 0) {
      // A breach during a gradual rollback only speeds it up.
      json::object detail = last_.to_json();
      return transition_to(Phase::rolled_back, 0, record_.stage, "gate:rollback_speedup",
                           std::move(detail), annotations_);
    }
    if (elapsed < settings_.rollback.step_duration.count()) return std::nullopt;
    const auto& steps = settings_.rollback.steps;
    const auto step = static_cast<std::size_t>(int_field(annotations_, "rollback_step", 0)) + 1;
    auto annotations = annotations_;
    if (step >= steps.size() || steps[step] <= 0) {
      return transition_to(Phase::rolled_back, 0, record_.stage, "rollback:step", {}, annotations);
    }
    annotations["rollback_step"] = static_cast<std::int64_t>(step);
    return transition_to(Phase::rolling_back, steps[step], record_.stage, "rollback:step", {},
                         std::move(annotations));
  }
  if (last_.overall == Verdict::fail) {
    // Safety first in every phase, paused included: a held weight is still traffic.
    return breach(last_);
  }
  if (phase_ == Phase::paused) return std::nullopt;

  const bool shadow = phase_ == Phase::shadow;
  const auto dwell = shadow ? settings_.shadow.min_duration : settings_.stages[record_.stage].min_duration;
  const bool enough = shadow ? last_.pairs >= settings_.shadow.min_pairs
                             : last_.candidate_requests >= settings_.stages[record_.stage].min_requests;
  if (elapsed < dwell.count()) return std::nullopt;
  if (enough && last_.overall == Verdict::pass) {
    auto detail = last_.to_json();
    return advance("gates:pass", std::move(detail));
  }
  // The candidate is healthy but could not carry the next weight: wait at this one for its quota
  // (or the route's traffic) to change. Not a lack of data, so no pause for insufficient data.
  if (enough && last_.overall == Verdict::hold) {
    holding_for_capacity_ = true;
    if (!bool_field(annotations_, "capacity_hold")) journal_capacity_hold();
    return std::nullopt;
  }
  // Never read "no data" as a pass: hold, and after enough dwells say so by pausing.
  const auto patience = std::max<std::int64_t>(dwell.count(), 1000) *
                        (1 + settings_.gates.inconclusive_dwells_before_pause);
  if (elapsed >= patience) {
    json::object annotations{{"reason", "insufficient_data"},
                             {"resume_phase", phase_name(phase_)},
                             {"resume_stage", record_.stage},
                             {"automatic", true}};
    auto detail = last_.to_json();
    return transition_to(Phase::paused, record_.weight, record_.stage, "gates:insufficient_data",
                         std::move(detail), std::move(annotations));
  }
  return std::nullopt;
}

CommandResult Controller::apply(const Command& command) {
  CommandResult result;
  if (command.expected_generation != record_.generation) {
    result.http_status = 409;
    result.error = fmt::format(
        "generation {} is stale: migration '{}' is at generation {} ({}); read its status and "
        "decide again",
        command.expected_generation, settings_.name, record_.generation, record_.state);
    return result;
  }
  auto refuse = [&](std::string message) {
    result.http_status = 400;
    result.error = std::move(message);
    return result;
  };
  const std::string trigger = "operator:" + command.actor;
  json::object detail;
  if (!command.reason.empty()) detail["reason"] = command.reason;
  const bool live = phase_ == Phase::shadow || phase_ == Phase::canary || phase_ == Phase::paused;
  std::optional<store::Transition> transition;
  switch (command.action) {
    case Action::pause: {
      if (phase_ != Phase::shadow && phase_ != Phase::canary) {
        return refuse("only a shadowing or canary migration can be paused; it is " + record_.state);
      }
      json::object annotations{{"reason", command.reason.empty() ? "operator" : command.reason},
                               {"resume_phase", phase_name(phase_)},
                               {"resume_stage", record_.stage}};
      transition = transition_to(Phase::paused, record_.weight, record_.stage, trigger,
                                 std::move(detail), std::move(annotations));
      break;
    }
    case Action::resume: {
      if (phase_ == Phase::paused) {
        const auto resume = phase_named(string_field(annotations_, "resume_phase")).value_or(Phase::canary);
        transition = transition_to(resume, record_.weight, record_.stage, trigger, std::move(detail), {});
      } else if (phase_ == Phase::rolled_back || phase_ == Phase::aborted) {
        // A fresh run from the start of the ladder, decided by a person.
        transition = transition_to(initial_phase(), initial_weight(), 0, trigger, std::move(detail), {});
      } else {
        return refuse("nothing to resume: the migration is " + record_.state);
      }
      break;
    }
    case Action::promote:
      if (!live) return refuse("only a shadowing, canary or paused migration can be promoted; it is " + record_.state);
      transition = advance(trigger, std::move(detail));
      break;
    case Action::promote_full:
      if (!live) return refuse("only a shadowing, canary or paused migration can be promoted; it is " + record_.state);
      transition = transition_to(Phase::promoted, 1.0, static_cast<int>(settings_.stages.size()) - 1,
                                 trigger, std::move(detail), {});
      break;
    case Action::set_weight: {
      if (!live) return refuse("the weight can be set only while shadowing, in canary or paused; it is " + record_.state);
      if (!command.weight || !std::isfinite(*command.weight) || *command.weight < 0 || *command.weight > 1) {
        return refuse("set_weight needs a weight from 0 to 1");
      }
      const auto& stages = settings_.stages;
      int stage = static_cast<int>(stages.size()) - 1;
      for (int i = 0; i < static_cast<int>(stages.size()); ++i) {
        if (stages[i].weight >= *command.weight) {
          stage = i;
          break;
        }
      }
      transition = transition_to(Phase::canary, *command.weight, stage, trigger, std::move(detail), {});
      break;
    }
    case Action::rollback: {
      if (phase_ == Phase::rolled_back || phase_ == Phase::aborted) {
        return refuse("nothing to roll back: the migration is " + record_.state);
      }
      const auto& steps = settings_.rollback.steps;
      auto annotations = phase_ == Phase::rolling_back ? annotations_ : json::object{};
      annotations["automatic"] = false;
      annotations["reason"] = command.reason.empty() ? "operator rollback" : command.reason;
      std::size_t step = 0;
      if (phase_ == Phase::rolling_back) {
        // A second rollback speeds the first up: the next step now.
        step = static_cast<std::size_t>(int_field(annotations_, "rollback_step", 0)) + 1;
      } else {
        while (step < steps.size() && steps[step] >= record_.weight) ++step;
      }
      if (step >= steps.size() || steps[step] <= 0) {
        transition = transition_to(Phase::rolled_back, 0, record_.stage, trigger, std::move(detail),
                                   std::move(annotations));
      } else {
        annotations["rollback_step"] = static_cast<std::int64_t>(step);
        transition = transition_to(Phase::rolling_back, steps[step], record_.stage, trigger,
                                   std::move(detail), std::move(annotations));
      }
      break;
    }
    case Action::abort:
      if (phase_ == Phase::aborted) return refuse("the migration is already aborted");
      transition = transition_to(Phase::aborted, 0, record_.stage, trigger, std::move(detail),
                                 {{"reason", command.reason.empty() ? "operator abort" : command.reason}});
      break;
  }
  if (!transition && last_commit_ == store::CommitResult::stale_generation) {
    result.http_status = 409;
    result.error = fmt::format(
        "generation {} is stale: another replica moved migration '{}' on; read its status and "
        "decide again",
        command.expected_generation, settings_.name);
    return result;
  }
  if (!transition) {
    result.http_status = 500;
    result.error = "the state store refused the transition; nothing changed";
    return result;
  }
  result.transition = std::move(transition);
  return result;
}

}  // namespace cutover::migration
