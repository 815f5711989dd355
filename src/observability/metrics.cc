#include "observability/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <map>
#include <tuple>

namespace cutover::observability {

namespace {

constexpr std::array<const char*, 6> kStatusClasses = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

prometheus::ClientMetric::Histogram to_histogram(const std::array<std::uint64_t, kLatencyBuckets.size()>& buckets,
                                                 std::uint64_t count, double sum) {
  prometheus::ClientMetric::Histogram out;
  out.sample_count = count;
  out.sample_sum = sum;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    out.bucket.push_back({cumulative, kLatencyBuckets[i]});
  }
  out.bucket.push_back({count, std::numeric_limits<double>::infinity()});
  return out;
}

}  // namespace

void WorkerMetrics::Histogram::add(double value) {
  ++count;
  sum += value;
  const auto at = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), value);
  if (at != kLatencyBuckets.end()) ++buckets[static_cast<std::size_t>(at - kLatencyBuckets.begin())];
}

void WorkerMetrics::observe(const RequestObservation& o) {
  std::lock_guard lock(mutex_);
  key_.clear();
  key_.append(o.provider).push_back('\x1f');
  key_.append(o.model).push_back(o.shadow ? 's' : 'l');
  auto found = series_.find(std::string_view(key_));
  if (found == series_.end()) {
    Series fresh;
    fresh.provider = o.provider.empty() ? "none" : std::string(o.provider);
    fresh.model = std::string(o.model);
    fresh.shadow = o.shadow;
    found = series_.emplace(key_, std::move(fresh)).first;
  }
  auto& series = found->second;
  const auto status_class = o.status >= 100 && o.status < 600 ? o.status / 100 : 0;
  ++series.by_status_class[status_class];
  series.latency.add(o.latency_seconds);
  if (o.ttft_seconds >= 0) series.ttft.add(o.ttft_seconds);
  series.prompt_tokens += static_cast<std::uint64_t>(std::max<std::int64_t>(o.prompt_tokens, 0));
  series.completion_tokens += static_cast<std::uint64_t>(std::max<std::int64_t>(o.completion_tokens, 0));
  series.cached_prompt_tokens +=
      static_cast<std::uint64_t>(std::max<std::int64_t>(o.cached_prompt_tokens, 0));
  series.cost += o.cost;
  if (!o.currency.empty() && series.currency.empty()) series.currency = std::string(o.currency);
  series.retries += o.retries;
  series.budget_refusals += o.budget_refused;
}

MetricsRegistry::MetricsRegistry(unsigned workers) {
  for (unsigned i = 0; i < std::max(1u, workers); ++i) {
    workers_.push_back(std::make_unique<WorkerMetrics>());
  }
}

std::string MetricsRegistry::scrape(const std::vector<ExtraFamily>& extra) const {
  // Merge the shards: same provider, model and traffic kind from every worker.
  std::map<std::tuple<std::string, std::string, bool>, WorkerMetrics::Series> merged;
  for (const auto& worker : workers_) {
    std::lock_guard lock(worker->mutex_);
    for (const auto& [key, s] : worker->series_) {
      auto& into = merged[{s.provider, s.model, s.shadow}];
      into.provider = s.provider;
      into.model = s.model;
      into.shadow = s.shadow;
      for (std::size_t i = 0; i < s.by_status_class.size(); ++i) into.by_status_class[i] += s.by_status_class[i];
      auto add = [](WorkerMetrics::Histogram& to, const WorkerMetrics::Histogram& from) {
        for (std::size_t i = 0; i < to.buckets.size(); ++i) to.buckets[i] += from.buckets[i];
        to.count += from.count;
        to.sum += from.sum;
      };
      add(into.latency, s.latency);
      add(into.ttft, s.ttft);
      into.prompt_tokens += s.prompt_tokens;
      into.completion_tokens += s.completion_tokens;
      into.cached_prompt_tokens += s.cached_prompt_tokens;
      into.cost += s.cost;
      if (into.currency.empty()) into.currency = s.currency;
      into.retries += s.retries;
      into.budget_refusals += s.budget_refusals;
    }
  }
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  using prometheus::MetricType;
  MetricFamily requests{"cutover_requests_total", "Client requests by provider, model and status class", MetricType::Counter, {}};
  MetricFamily shadow_requests{"cutover_shadow_requests_total", "Shadow requests to migration candidates by provider, model and status class", MetricType::Counter, {}};
  MetricFamily latency{"cutover_request_duration_seconds", "Time from request received to last byte sent", MetricType::Histogram, {}};
  MetricFamily ttft{"cutover_time_to_first_token_seconds", "Time from request received to the first token (first byte of a plain answer)", MetricType::Histogram, {}};
  MetricFamily tokens{"cutover_tokens_total", "Tokens reported by providers, by direction and traffic (live or shadow)", MetricType::Counter, {}};
  MetricFamily cost{"cutover_cost_total", "Cost from the price table, by currency and traffic (live or shadow)", MetricType::Counter, {}};
  MetricFamily retries{"cutover_retries_total", "Retries the gateway made", MetricType::Counter, {}};
  MetricFamily refusals{"cutover_retry_budget_refusals_total", "Retries refused because the retry budget was spent", MetricType::Counter, {}};
  auto labels = [](std::initializer_list<std::pair<const char*, std::string>> list) {
    std::vector<ClientMetric::Label> out;
    for (const auto& [name, value] : list) out.push_back({name, value});
    return out;
  };
  for (const auto& [key, s] : merged) {
    const std::string traffic = s.shadow ? "shadow" : "live";
    for (std::size_t i = 0; i < s.by_status_class.size(); ++i) {
      if (s.by_status_class[i] == 0) continue;
      ClientMetric metric;
      metric.label = labels({{"provider", s.provider}, {"model", s.model}, {"status_class", kStatusClasses[i]}});
      metric.counter.value = static_cast<double>(s.by_status_class[i]);
      (s.shadow ? shadow_requests : requests).metric.push_back(std::move(metric));
    }
    ClientMetric duration;
    duration.label = labels({{"provider", s.provider}, {"model", s.model}, {"traffic", traffic}});
    duration.histogram = to_histogram(s.latency.buckets, s.latency.count, s.latency.sum);
    latency.metric.push_back(duration);
    if (s.ttft.count > 0) {
      ClientMetric first_token;
      first_token.label = duration.label;
      first_token.histogram = to_histogram(s.ttft.buckets, s.ttft.count, s.ttft.sum);
      ttft.metric.push_back(std::move(first_token));
    }
    for (const auto& [direction, value] :
         {std::make_pair("input", s.prompt_tokens - std::min(s.prompt_tokens, s.cached_prompt_tokens)),
          std::make_pair("cached_input", s.cached_prompt_tokens),
          std::make_pair("output", s.completion_tokens)}) {
      ClientMetric metric;
      metric.label = labels({{"provider", s.provider}, {"model", s.model}, {"direction", direction}, {"traffic", traffic}});
      metric.counter.value = static_cast<double>(value);
      tokens.metric.push_back(std::move(metric));
    }
    if (!s.currency.empty()) {
      ClientMetric metric;
      metric.label = labels({{"provider", s.provider}, {"model", s.model}, {"currency", s.currency}, {"traffic", traffic}});
      metric.counter.value = s.cost;
      cost.metric.push_back(std::move(metric));
    }
    if (!s.shadow) {
      ClientMetric retried;
      retried.label = labels({{"provider", s.provider}, {"model", s.model}});
      retried.counter.value = static_cast<double>(s.retries);
      retries.metric.push_back(retried);
      ClientMetric refused;
      refused.label = retried.label;
      refused.counter.value = static_cast<double>(s.budget_refusals);
      refusals.metric.push_back(std::move(refused));
    }
  }
  std::vector<MetricFamily> families = {std::move(requests), std::move(shadow_requests), std::move(latency),
                                        std::move(ttft),     std::move(tokens),          std::move(cost),
                                        std::move(retries),  std::move(refusals)};
  for (const auto& family : extra) {
    MetricFamily out{family.name, family.help, family.type, {}};
    for (const auto& sample : family.samples) {
      ClientMetric metric;
      for (const auto& [name, value] : sample.labels) metric.label.push_back({name, value});
      if (family.type == MetricType::Counter) {
        metric.counter.value = sample.value;
      } else {
        metric.gauge.value = sample.value;
      }
      out.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(out));
  }
  // One label order everywhere (alphabetical), whoever built the sample.
  for (auto& family : families) {
    for (auto& metric : family.metric) std::sort(metric.label.begin(), metric.label.end());
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace cutover::observability
