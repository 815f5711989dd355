#include "admin/authentication_backoff.h"

#include <algorithm>

namespace cutover::admin {

std::chrono::milliseconds AuthenticationBackoff::failed() {
  ++consecutive_failures_;
  auto delay = settings_.first;
  // Doubling stops at the ceiling, long before the count could overflow a shift.
  for (unsigned i = 1; i < consecutive_failures_ && delay < settings_.longest; ++i) delay *= 2;
  return std::min(delay, settings_.longest);
}

}  // namespace cutover::admin
