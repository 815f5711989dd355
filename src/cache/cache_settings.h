// A route's response cache as configured (`routes[].cache`); see cache/response_cache.h.
#pragma once

#include <chrono>
#include <cstddef>

namespace cutover::cache {

struct CacheSettings {
  std::chrono::milliseconds ttl{300'000};
  // Bounds of each model's cache on the route.
  std::size_t max_bytes = 64 * 1024 * 1024;
  std::size_t max_entries = 10'000;
  // One cache for every client key instead of one per key.
  bool shared_across_keys = false;
  // Whether hits may be served while a migration of the model is in its canary.
  bool during_canary = true;
};

}  // namespace cutover::cache
