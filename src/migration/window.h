// What the gates judge: the current window's figures for each side of a migration.
//
// Workers record every migrated request into their own shard (a mutex only the controller ever
// contends for, once per evaluation), so the request path shares no lock between workers. The
// controller merges the shards into a WindowSnapshot. Latency samples are kept in bounded
// reservoirs: a window of millions of requests costs the same memory as one of thousands. The
// same samples are also counted in log histograms, which other replicas can add to exactly
// (fleet_window.h); the reservoirs stay what a lone gateway's gates judge.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "migration/capacity.h"
#include "migration/log_histogram.h"

namespace cutover::migration {

// One finished client request on a migrated route.
struct RequestSample {
  bool candidate_arm = false;  // the sticky assignment sent it to the candidate
  // The client got an error, or (on the candidate arm) the candidate did not serve it: a
  // request that fell back to the primary counts against the candidate.
  bool counted_as_error = false;
  bool fell_back = false;
  double latency_ms = -1;
  double ttft_ms = -1;
  double tpot_ms = -1;  // time per output token after the first
  unsigned candidate_attempts = 0;
  unsigned candidate_attempt_failures = 0;
  // Candidate attempts the provider answered 429, fallen back or not.
  unsigned candidate_rate_limited = 0;
  // Prompt and completion tokens of the answer served, from its usage: the route's token rate.
  std::uint64_t tokens = 0;
};

struct ArmWindow {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t fallbacks = 0;
  std::uint64_t tokens = 0;
  std::vector<double> latency_ms;
  std::vector<double> ttft_ms;
  std::vector<double> tpot_ms;
  // Every sample the vectors above draw from, counted: what a replica shares with its fleet.
  LogHistogram latency_histogram;
  LogHistogram ttft_histogram;
  LogHistogram tpot_histogram;
};

// One shadow pair's figures, as far as the gates need them.
struct PairSample {
  bool candidate_failed = false;
  // Both sides answered, so the outputs and latencies can be compared.
  bool compared = false;
  double score = 0;
  double primary_latency_ms = 0;
  double candidate_latency_ms = 0;
  double primary_ttft_ms = 0;
  double candidate_ttft_ms = 0;
};

struct WindowSnapshot {
  ArmWindow primary;
  ArmWindow candidate;
  std::uint64_t candidate_attempts = 0;
  std::uint64_t candidate_attempt_failures = 0;
  std::uint64_t candidate_rate_limited = 0;
  std::vector<PairSample> pairs;
  // Every live request on the route since start, across windows: the route's volume.
  std::uint64_t lifetime_requests = 0;
  // What the candidate's endpoints report of their rate limits as the window is taken; none
  // when nobody supplied it (the capacity gate is then not applicable).
  std::optional<CandidateQuota> candidate_quota;
};

// Reservoir sampling (Vitter's algorithm R): every sample of the window is equally likely to
// be kept, whatever the window's length.
class Reservoir {
 public:
  explicit Reservoir(std::size_t capacity = 2048) : capacity_(capacity) {}
  void add(double value, std::mt19937_64& random);
  void merge_into(std::vector<double>& out) const { out.insert(out.end(), kept_.begin(), kept_.end()); }
  void clear() {
    kept_.clear();
    seen_ = 0;
  }

 private:
  std::size_t capacity_;
  std::uint64_t seen_ = 0;
  std::vector<double> kept_;
};

class StatsShard {
 public:
  void record(const RequestSample& sample, std::uint64_t epoch);
  // Adds this shard's figures for `epoch` to `out`; figures of another epoch are stale.
  void merge_into(WindowSnapshot& out, std::uint64_t epoch);

 private:
  struct Arm {
    std::uint64_t requests = 0, errors = 0, fallbacks = 0, tokens = 0;
    Reservoir latency, ttft, tpot;
    LogHistogram latency_histogram, ttft_histogram, tpot_histogram;
    void clear();
  };
  void roll_to(std::uint64_t epoch);

  std::mutex mutex_;
  std::uint64_t epoch_ = 0;
  Arm primary_, candidate_;
  std::uint64_t candidate_attempts_ = 0, candidate_attempt_failures_ = 0;
  std::uint64_t candidate_rate_limited_ = 0;
  std::uint64_t lifetime_requests_ = 0;
  std::mt19937_64 random_{0x5eed};
};

}  // namespace cutover::migration
