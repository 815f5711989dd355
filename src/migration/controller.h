// The migration controller: a state machine over one migration, driven by gate evaluations (at
// least every second) and by operators' commands, that journals every transition before the
// new weight applies.
//
// Phases: shadow → canary(stage i) → promoted, with paused beside them; rolling_back →
// rolled_back when a gate breaches or an operator rolls back; aborted at once on abort. Rollback
// is one-way: during it only rollback (next step now) and abort (0 % now) are accepted. Commands
// carry the generation they were decided on and fail with a conflict when it is stale.
//
// Pure logic over an injected clock and a StateStore: the engine owns threads and timers.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "config/config.h"
#include "migration/capacity.h"
#include "migration/statistics.h"
#include "migration/window.h"
#include "store/state_store.h"
#include "util/log_throttle.h"

namespace cutover::migration {

enum class Phase { shadow, canary, paused, promoted, rolling_back, rolled_back, aborted };
std::string_view phase_name(Phase phase);
std::optional<Phase> phase_named(std::string_view name);

struct GateResult {
  std::string name;  // "error_rate", "attempt_error_rate", "rate_limited", "capacity", ...
  Verdict verdict = Verdict::inconclusive;
  std::string summary;  // one readable line: "2/180 = 1.1% (99% bounds 0.2–5.0%) vs max 1%"
  boost::json::object figures;
};

struct Evaluation {
  std::int64_t at_unix_ms = 0;
  Verdict overall = Verdict::inconclusive;
  std::vector<GateResult> gates;
  std::uint64_t candidate_requests = 0;
  std::uint64_t primary_requests = 0;
  std::uint64_t pairs = 0;
  boost::json::object to_json() const;
};

enum class Action { pause, resume, promote, promote_full, set_weight, rollback, abort };
std::optional<Action> action_named(std::string_view name);
std::string_view action_name(Action action);

struct Command {
  Action action = Action::pause;
  std::int64_t expected_generation = 0;
  std::string actor = "operator";
  std::optional<double> weight;  // for set_weight
  std::string reason;
};

struct CommandResult {
  unsigned http_status = 200;  // 200, 400 (not valid now), 409 (stale generation), 500 (store)
  std::string error;
  std::optional<store::Transition> transition;
};

class Controller {
 public:
  using NowMs = std::function<std::int64_t()>;
  Controller(const config::Migration& settings, store::StateStore& store, NowMs now_ms);

  // Loads the stored record and resumes it exactly (phase, weight, stage clock), or starts the
  // migration when none is stored or the candidate's configuration changed. Returns the
  // transition it journaled, if any. Throws std::runtime_error when the store cannot be written,
  // store::StoreUnavailable when a shared store cannot be read. `retried`: internal, set when
  // another replica wrote the record first.
  std::optional<store::Transition> start(bool retried = false);

  // Judges the window and moves the migration on when the gates say so. With a fence (fleet
  // mode), a transition commits only while that lease term is the leader's.
  std::optional<store::Transition> evaluate(const WindowSnapshot& window,
                                            std::optional<store::Fence> fence = std::nullopt);

  // Judges the window without moving the migration or writing anything: for a replica that
  // cannot reach its shared store, whose verdict may only take its own traffic toward the primary.
  const Evaluation& assess(const WindowSnapshot& window);

  CommandResult apply(const Command& command);

  // Commits, without a fence, the breach that `evaluation` judged while the shared store could
  // not be reached (fleet mode): a move toward the primary, so any replica may make it. Nothing
  // when the stored generation moved meanwhile.
  std::optional<store::Transition> commit_breach(const Evaluation& evaluation);

  // Takes a record another replica committed (fleet mode), when its generation differs from the
  // one held. Returns whether anything changed; the engine then publishes the new weight.
  bool adopt(const store::MigrationRecord& record);
  // What the store said about the last transition tried.
  store::CommitResult last_commit() const { return last_commit_; }

  const store::MigrationRecord& record() const { return record_; }
  Phase phase() const { return phase_; }
  double weight() const { return record_.weight; }
  // Whether primary-served requests are mirrored to the candidate now.
  bool shadowing() const;
  const Evaluation& last_evaluation() const { return last_; }
  const config::Migration& settings() const { return settings_; }
  boost::json::object annotations() const { return annotations_; }
  // Whether the last evaluation kept a stage that was otherwise ready to advance, because the
  // candidate's quota could not carry the next weight.
  bool holding_for_capacity() const { return holding_for_capacity_; }
  // The journal entry of a capacity hold that the last evaluation committed, once: the engine
  // announces it. A hold is journaled once per stage, as an entry from a state to itself whose
  // record keeps the weight, the stage, its clock and the window's evidence.
  std::optional<store::Transition> take_capacity_hold() { return std::exchange(capacity_hold_, std::nullopt); }

 private:
  Evaluation judge(const WindowSnapshot& window) const;
  // Feeds the change detectors what the window gained since the last evaluation.
  void watch_for_change(const WindowSnapshot& window);
  void change_gates(Evaluation& out) const;
  void judge_latency(const WindowSnapshot& window, Evaluation& out) const;
  // Whether the candidate's reported quota can carry the next weight (capacity.h).
  void judge_capacity_gate(const WindowSnapshot& window, Evaluation& out) const;
  // The weight a passing stage would move to; none where the gates move nothing up.
  std::optional<double> next_weight() const;
  std::optional<store::Transition> transition_to(Phase phase, double weight, int stage,
                                                 std::string trigger, boost::json::object detail,
                                                 boost::json::object annotations);
  std::optional<store::Transition> breach(const Evaluation& evaluation);
  void journal_capacity_hold();
  std::optional<store::Transition> advance(std::string trigger, boost::json::object detail);
  Phase initial_phase() const;
  double initial_weight() const;

  const config::Migration& settings_;
  store::StateStore& store_;
  // The leader's fence while evaluate() runs; none for an operator's command or a start.
  std::optional<store::Fence> fence_;
  store::CommitResult last_commit_ = store::CommitResult::committed;
  NowMs now_ms_;
  store::MigrationRecord record_;
  Phase phase_ = Phase::shadow;
  boost::json::object annotations_;
  Evaluation last_;
  // The primary's latest quantiles with enough samples: the reference for relative gates once
  // the candidate takes all traffic and the primary's own window is empty.
  mutable std::map<std::string, double> primary_baseline_;
  // The gates' windows span a whole stage; these watch the candidate's newest requests for an
  // abrupt rise, however long the healthy stage before it (statistics.h).
  RateChangeDetector error_change_;
  RateChangeDetector attempt_error_change_;
  // When the current window began (the engine starts one with every transition and at start):
  // the span the capacity gate turns the window's counts into rates over.
  std::int64_t window_started_ms_ = 0;
  bool holding_for_capacity_ = false;
  std::optional<store::Transition> capacity_hold_;
  // What the current window held at the last evaluation: a transition starts a new one.
  std::uint64_t seen_requests_ = 0, seen_errors_ = 0, seen_attempts_ = 0, seen_attempt_failures_ = 0;
  // A transition the store refuses is tried again at every evaluation, four times a second.
  util::LogThrottle journal_errors_;
};

}  // namespace cutover::migration
