#include "migration/runtime.h"

namespace cutover::migration {

namespace {
constexpr auto kHour = std::chrono::hours(1);
}

void ShadowLimiter::roll_hour(std::chrono::steady_clock::time_point now) {
  const auto now_ns = now.time_since_epoch().count();
  auto started = hour_started_ns_.load(std::memory_order_relaxed);
  if (now_ns - started < std::chrono::nanoseconds(kHour).count()) return;
  // One thread wins the roll; the others see the fresh hour.
  if (hour_started_ns_.compare_exchange_strong(started, now_ns, std::memory_order_relaxed)) {
    hour_tokens_.store(0, std::memory_order_relaxed);
    hour_micro_cost_.store(0, std::memory_order_relaxed);
  }
}

ShadowLimiter::Refusal ShadowLimiter::try_acquire(std::chrono::steady_clock::time_point now) {
  roll_hour(now);
  if ((settings_.max_tokens_per_hour > 0 &&
       hour_tokens_.load(std::memory_order_relaxed) >= settings_.max_tokens_per_hour) ||
      (settings_.max_cost_per_hour > 0 && cost_this_hour() >= settings_.max_cost_per_hour)) {
    dropped_spend_.fetch_add(1, std::memory_order_relaxed);
    return Refusal::spend;
  }
  auto current = in_flight_.load(std::memory_order_relaxed);
  do {
    if (current >= settings_.max_in_flight) {
      dropped_in_flight_.fetch_add(1, std::memory_order_relaxed);
      return Refusal::in_flight;
    }
  } while (!in_flight_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
  started_.fetch_add(1, std::memory_order_relaxed);
  return Refusal::none;
}

void ShadowLimiter::add_spend(std::uint64_t tokens, double cost,
                              std::chrono::steady_clock::time_point now) {
  roll_hour(now);
  hour_tokens_.fetch_add(tokens, std::memory_order_relaxed);
  hour_micro_cost_.fetch_add(static_cast<std::uint64_t>(cost * 1e6), std::memory_order_relaxed);
}

}  // namespace cutover::migration
