// Prometheus metrics: requests, errors, latency and time-to-first-token histograms, tokens and
// cost (live and shadow), retries and budget refusals per provider and model; breaker and
// migration state are read from their owners at scrape time.
//
// Each worker records into its own shard (a mutex only a scrape contends for), so the request
// path shares no lock between workers. prometheus-cpp's core provides the data model and the
// text exposition; the shards are merged into its MetricFamily structs per scrape.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <prometheus/metric_family.h>

namespace cutover::observability {

struct RequestObservation {
  std::string_view provider;  // empty when no provider was reached
  std::string_view model;     // the client-facing model
  unsigned status = 0;
  double latency_seconds = 0;
  double ttft_seconds = -1;  // negative: not applicable
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t cached_prompt_tokens = 0;
  double cost = 0;
  std::string_view currency;
  unsigned retries = 0;
  bool budget_refused = false;
  bool shadow = false;  // a shadow request to a migration's candidate, not live traffic
};

inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

class WorkerMetrics {
 public:
  void observe(const RequestObservation& observation);

 private:
  friend class MetricsRegistry;
  struct Histogram {
    std::array<std::uint64_t, kLatencyBuckets.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
    void add(double value);
  };
  struct Series {
    std::string provider;
    std::string model;
    bool shadow = false;
    std::array<std::uint64_t, 6> by_status_class{};  // 0: no status, 1xx..5xx
    Histogram latency;
    Histogram ttft;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0, cached_prompt_tokens = 0;
    double cost = 0;
    std::string currency;
    std::uint64_t retries = 0, budget_refusals = 0;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Series, Hash, std::equal_to<>> series_;
  std::string key_;  // reused to look series up without allocating
};

// One gauge or counter value with its labels, supplied by a collector at scrape time.
struct Sample {
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};
struct ExtraFamily {
  std::string name;
  std::string help;
  prometheus::MetricType type = prometheus::MetricType::Gauge;
  std::vector<Sample> samples;
};

class MetricsRegistry {
 public:
  explicit MetricsRegistry(unsigned workers);
  WorkerMetrics& worker(unsigned index) { return *workers_[index % workers_.size()]; }
  // The text exposition of every worker's series plus `extra` (breakers, budgets, migrations).
  std::string scrape(const std::vector<ExtraFamily>& extra) const;

 private:
  std::vector<std::unique_ptr<WorkerMetrics>> workers_;
};

}  // namespace cutover::observability
