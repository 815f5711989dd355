// The admin API, served on its own listener: what the resilience layer sees (breakers, retry
// budgets) and the operators' levers on it (force a breaker open, disable it, reset it); each
// migration's status, history and shadow comparison, and the commands that move it.
// Authenticated by the admin token only; client keys are refused.
#pragma once

#include <boost/asio.hpp>
#include <functional>
#include <memory>

#include "admin/authentication_backoff.h"
#include "config/config.h"
#include "http/server.h"
#include "migration/engine.h"
#include "proxy/provider_health.h"

namespace cutover::admin {

class AdminApi {
 public:
  // Both getters are called per request and must be safe from the admin thread. `backoff`
  // paces the answers to failed authentications (tests shorten it).
  AdminApi(std::function<std::shared_ptr<const config::Config>()> config,
           std::function<std::shared_ptr<const proxy::HealthRegistry>()> health,
           std::function<std::shared_ptr<migration::MigrationEngine>()> migrations,
           std::function<std::string()> metrics,
           AuthenticationBackoff::Settings backoff = {});

  Awaitable<void> handle(http::IncomingRequest& request, http::Responder& responder);

 private:
  std::function<std::shared_ptr<const config::Config>()> config_;
  std::function<std::shared_ptr<const proxy::HealthRegistry>()> health_;
  std::function<std::shared_ptr<migration::MigrationEngine>()> migrations_;
  std::function<std::string()> metrics_;
  AuthenticationBackoff backoff_;
};

}  // namespace cutover::admin
