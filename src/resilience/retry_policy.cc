#include "resilience/retry_policy.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <ctime>

namespace cutover::resilience {

bool RetryPolicy::retries(AttemptFailure failure, unsigned status) const {
  switch (failure) {
    case AttemptFailure::connect_error:
      return retry_connect_error;
    case AttemptFailure::reset:
      return retry_reset;
    case AttemptFailure::timeout:
      return retry_timeout;
    case AttemptFailure::rate_limited:
      return retry_rate_limited;
    case AttemptFailure::server_error:
      return retry_statuses.contains(status);
    case AttemptFailure::invalid_response:
      return retry_invalid_response;
  }
  return false;
}

Duration backoff_delay(const RetryPolicy& policy, unsigned retry_number,
                       const std::function<double()>& uniform01) {
  const double base = static_cast<double>(policy.backoff_base.count());
  const double ceiling = std::min(static_cast<double>(policy.backoff_max.count()),
                                  base * std::pow(2.0, std::min(retry_number, 30u)));
  return Duration(static_cast<std::int64_t>(ceiling * std::clamp(uniform01(), 0.0, 1.0)));
}

namespace {

// Reads an unsigned decimal ("6", "1.5") off the front of `text`, as reset durations write their
// amounts. std::from_chars for double goes through strtod in libstdc++ 12: thousands of
// instructions a header, on every answer that carries rate-limit headers (counted under
// callgrind). False when no digit comes first.
bool read_decimal(std::string_view& text, double& amount) {
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t at = 0;
  amount = 0;
  for (; at < text.size() && is_digit(text[at]); ++at) amount = amount * 10 + (text[at] - '0');
  if (at == 0) return false;
  if (at < text.size() && text[at] == '.') {
    // The fraction's digits as one integer over a power of ten: "0.25" is exactly 25 / 100, as
    // strtod would read it, where adding 0.2 and 0.05 would not be.
    std::uint64_t fraction = 0;
    std::uint64_t scale = 1;
    for (++at; at < text.size() && is_digit(text[at]); ++at) {
      if (scale >= 1'000'000'000'000'000'000ULL) continue;  // digits past the 19th change nothing
      fraction = fraction * 10 + static_cast<std::uint64_t>(text[at] - '0');
      scale *= 10;
    }
    amount += static_cast<double>(fraction) / static_cast<double>(scale);
  }
  text.remove_prefix(at);
  return true;
}

}  // namespace

std::optional<Duration> parse_reset_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  bool any = false;
  while (!text.empty()) {
    double amount = 0;
    if (!read_decimal(text, amount)) return std::nullopt;
    double unit_ms = 0;
    if (text.starts_with("ms")) {
      unit_ms = 1;
      text.remove_prefix(2);
    } else if (text.starts_with("s")) {
      unit_ms = 1000;
      text.remove_prefix(1);
    } else if (text.starts_with("m")) {
      unit_ms = 60'000;
      text.remove_prefix(1);
    } else if (text.starts_with("h")) {
      unit_ms = 3'600'000;
      text.remove_prefix(1);
    } else if (text.empty() && !any) {
      unit_ms = 1000;  // a bare number is seconds
    } else {
      return std::nullopt;
    }
    total_ms += amount * unit_ms;
    any = true;
  }
  if (total_ms > 1e12) return std::nullopt;
  return Duration(static_cast<std::int64_t>(std::ceil(total_ms)));
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
  std::tm parts{};
  const std::string copy(text);
  const char* end = strptime(copy.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &parts);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const std::time_t seconds = timegm(&parts);
  if (seconds < 0) return std::nullopt;
  return std::chrono::system_clock::from_time_t(seconds);
}

std::optional<Duration> provider_requested_delay(
    const std::function<std::string_view(std::string_view)>& header,
    std::chrono::system_clock::time_point now) {
  if (auto value = header("retry-after-ms"); !value.empty()) {
    double ms = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
    if (ec == std::errc() && end == value.data() + value.size() && ms >= 0 && ms < 1e12) {
      return Duration(static_cast<std::int64_t>(std::ceil(ms)));
    }
  }
  if (auto value = header("retry-after"); !value.empty()) {
    std::int64_t seconds = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc() && end == value.data() + value.size() && seconds >= 0 &&
        seconds < 1'000'000'000) {
      return Duration(seconds * 1000);
    }
    if (auto date = parse_http_date(value)) {
      return std::max(Duration(0), std::chrono::duration_cast<Duration>(*date - now));
    }
  }
  std::optional<Duration> longest;
  for (auto name : {"x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"}) {
    if (auto value = header(name); !value.empty()) {
      if (auto delay = parse_reset_duration(value)) {
        longest = longest ? std::max(*longest, *delay) : *delay;
      }
    }
  }
  return longest;
}

}  // namespace cutover::resilience
