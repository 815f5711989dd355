// Health state shared by every worker: a circuit breaker per provider endpoint and a retry
// budget per provider. A reload keeps the state of endpoints and providers that did not change,
// so a reload never closes an open breaker or refills a spent budget by accident.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "cache/response_cache.h"
#include "resilience/circuit_breaker.h"
#include "resilience/quota.h"
#include "resilience/retry_budget.h"

namespace cutover::proxy {

struct ProviderHealth {
  std::shared_ptr<resilience::RetryBudget> budget;
  // One per endpoint, in the order of config::Provider::endpoints.
  std::vector<std::shared_ptr<resilience::CircuitBreaker>> breakers;
  // What each endpoint last reported of its rate limits (same order).
  std::vector<std::shared_ptr<resilience::QuotaState>> quotas;
};

class HealthRegistry {
 public:
  // Builds the registry for `config`, taking over state from `previous` where a provider's
  // settings and endpoint URL are unchanged. With `shared`, the routes' caches keep their
  // answers in the fleet's Redis.
  static std::shared_ptr<const HealthRegistry> build(
      const config::Config& config, const HealthRegistry* previous,
      std::shared_ptr<cache::SharedCacheStore> shared = nullptr);

  const ProviderHealth& provider(const std::string& name) const { return providers_.at(name); }
  // The response cache of a routed model, or null when its route has none. A reload keeps a
  // cache whose settings did not change, entries included.
  std::shared_ptr<cache::ResponseCache> cache_for(std::string_view model) const {
    auto found = caches_.find(model);
    return found == caches_.end() ? nullptr : found->second;
  }
  const std::map<std::string, std::shared_ptr<cache::ResponseCache>, std::less<>>& caches() const {
    return caches_;
  }
  const std::map<std::string, ProviderHealth>& providers() const { return providers_; }

 private:
  struct Fingerprints {
    std::string budget;
    std::vector<std::string> breakers;
    std::vector<std::string> urls;
  };
  std::map<std::string, ProviderHealth> providers_;
  std::map<std::string, std::shared_ptr<cache::ResponseCache>, std::less<>> caches_;
  std::map<std::string, Fingerprints> fingerprints_;
};

}  // namespace cutover::proxy
