#include "proxy/provider_health.h"

#include <sstream>

namespace cutover::proxy {

namespace {
std::string budget_fingerprint(const config::Provider& provider) {
  std::ostringstream out;
  out << provider.retry_budget.ratio << '/' << provider.retry_budget.min_retries_per_second << '/'
      << provider.retry_budget.window.count();
  return out.str();
}

std::string breaker_fingerprint(const config::Provider& provider,
                                const config::ProviderEndpoint& endpoint) {
  const auto& b = provider.breaker;
  std::ostringstream out;
  out << endpoint.base_url << '|' << b.failure_rate_threshold << '/' << b.slow_call_duration.count()
      << '/' << b.slow_call_rate_threshold << '/' << static_cast<int>(b.window) << '/'
      << b.window_size << '/' << b.minimum_calls << '/' << b.open_duration.count() << '/'
      << b.max_open_duration.count() << '/' << b.half_open_permits;
  return out.str();
}
bool same_settings(const cache::CacheSettings& a, const cache::CacheSettings& b) {
  return a.ttl == b.ttl && a.max_bytes == b.max_bytes && a.max_entries == b.max_entries &&
         a.shared_across_keys == b.shared_across_keys && a.during_canary == b.during_canary;
}
}  // namespace

std::shared_ptr<const HealthRegistry> HealthRegistry::build(
    const config::Config& config, const HealthRegistry* previous,
    std::shared_ptr<cache::SharedCacheStore> shared) {
  auto registry = std::make_shared<HealthRegistry>();
  for (const auto& provider : config.providers) {
    ProviderHealth health;
    Fingerprints prints;
    prints.budget = budget_fingerprint(provider);
    const ProviderHealth* old = nullptr;
    const Fingerprints* old_prints = nullptr;
    if (previous != nullptr && previous->providers_.contains(provider.name)) {
      old = &previous->providers_.at(provider.name);
      old_prints = &previous->fingerprints_.at(provider.name);
    }
    health.budget = old && old_prints->budget == prints.budget
                        ? old->budget
                        : std::make_shared<resilience::RetryBudget>(provider.retry_budget);
    for (const auto& endpoint : provider.endpoints) {
      const auto print = breaker_fingerprint(provider, endpoint);
      std::shared_ptr<resilience::CircuitBreaker> breaker;
      std::shared_ptr<resilience::QuotaState> quota;
      for (std::size_t i = 0; old && i < old_prints->breakers.size(); ++i) {
        if (old_prints->breakers[i] == print) breaker = old->breakers[i];
        // A quota belongs to the endpoint's account, whatever the breaker's settings.
        if (old_prints->urls[i] == endpoint.base_url) quota = old->quotas[i];
      }
      if (!breaker) breaker = std::make_shared<resilience::CircuitBreaker>(provider.breaker);
      if (!quota) quota = std::make_shared<resilience::QuotaState>();
      health.breakers.push_back(std::move(breaker));
      health.quotas.push_back(std::move(quota));
      prints.urls.push_back(endpoint.base_url);
      prints.breakers.push_back(print);
    }
    registry->providers_.emplace(provider.name, std::move(health));
    registry->fingerprints_.emplace(provider.name, std::move(prints));
  }
  for (const auto& [model, route] : config.routes) {
    if (!route.cache) continue;
    std::shared_ptr<cache::ResponseCache> kept;
    if (previous != nullptr) {
      if (auto old = previous->cache_for(model);
          old && same_settings(old->settings(), *route.cache) && old->is_shared() == (shared != nullptr)) {
        kept = std::move(old);
      }
    }
    if (!kept) {
      kept = std::make_shared<cache::ResponseCache>(*route.cache);
      if (shared) kept->use_shared(shared, model);
    }
    registry->caches_[model] = std::move(kept);
  }
  return registry;
}

}  // namespace cutover::proxy
