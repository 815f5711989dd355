#include "resilience/quota.h"

#include <charconv>
#include <ctime>
#include <string>

#include "resilience/retry_policy.h"

namespace cutover::resilience {

namespace {

std::optional<std::int64_t> whole_number(std::string_view text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

// A reset as a duration ("6m0s", "1.5s") or, as Anthropic sends it, an RFC 3339 time.
std::optional<std::chrono::milliseconds> reset_delay(std::string_view text,
                                                     std::chrono::system_clock::time_point now) {
  if (text.empty()) return std::nullopt;
  if (auto delay = parse_reset_duration(text)) return delay;
  if (auto seconds = whole_number(text)) return std::chrono::seconds(*seconds);
  if (auto at = parse_rfc3339(text)) {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(*at - now));
  }
  return std::nullopt;
}

QuotaReading::Dimension read_dimension(
    const std::function<std::string_view(std::string_view)>& header, std::string_view limit,
    std::string_view remaining, std::string_view reset, std::chrono::system_clock::time_point now) {
  QuotaReading::Dimension dimension;
  dimension.limit = whole_number(header(limit));
  dimension.remaining = whole_number(header(remaining));
  dimension.reset_in = reset_delay(header(reset), now);
  return dimension;
}

// A relay may send Anthropic's headers instead of OpenAI's: they fill what the first left out.
void fill_missing(QuotaReading::Dimension& into, const QuotaReading::Dimension& from) {
  if (into.empty()) into = from;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)
  if (text.size() < 20) return std::nullopt;
  std::tm parts{};
  auto field = [&](std::size_t at, std::size_t length) -> std::optional<int> {
    int value = 0;
    auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + length, value);
    if (ec != std::errc() || end != text.data() + at + length) return std::nullopt;
    return value;
  };
  const auto year = field(0, 4), month = field(5, 2), day = field(8, 2);
  const auto hour = field(11, 2), minute = field(14, 2), second = field(17, 2);
  if (!year || !month || !day || !hour || !minute || !second || text[4] != '-' ||
      text[7] != '-' || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
      text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  parts.tm_year = *year - 1900;
  parts.tm_mon = *month - 1;
  parts.tm_mday = *day;
  parts.tm_hour = *hour;
  parts.tm_min = *minute;
  parts.tm_sec = *second;
  std::size_t at = 19;
  double fraction = 0;
  if (at < text.size() && text[at] == '.') {
    double scale = 0.1;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, scale /= 10) {
      fraction += (text[at] - '0') * scale;
    }
  }
  if (at >= text.size()) return std::nullopt;
  int offset_minutes = 0;
  if (text[at] == 'Z' || text[at] == 'z') {
    ++at;
  } else if ((text[at] == '+' || text[at] == '-') && at + 6 == text.size() && text[at + 3] == ':') {
    const auto hours = field(at + 1, 2), minutes = field(at + 4, 2);
    if (!hours || !minutes) return std::nullopt;
    offset_minutes = (text[at] == '-' ? -1 : 1) * (*hours * 60 + *minutes);
    at += 6;
  }
  if (at != text.size()) return std::nullopt;
  const auto seconds = timegm(&parts);
  if (seconds == -1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(seconds) - std::chrono::minutes(offset_minutes) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(fraction));
}

QuotaReading read_quota_headers(const std::function<std::string_view(std::string_view)>& header,
                                std::chrono::system_clock::time_point now) {
  QuotaReading reading;
  reading.requests = read_dimension(header, "x-ratelimit-limit-requests",
                                    "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", now);
  reading.tokens = read_dimension(header, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                                  "x-ratelimit-reset-tokens", now);
  fill_missing(reading.requests,
               read_dimension(header, "anthropic-ratelimit-requests-limit",
                              "anthropic-ratelimit-requests-remaining",
                              "anthropic-ratelimit-requests-reset", now));
  fill_missing(reading.tokens, read_dimension(header, "anthropic-ratelimit-tokens-limit",
                                              "anthropic-ratelimit-tokens-remaining",
                                              "anthropic-ratelimit-tokens-reset", now));
  return reading;
}

void QuotaState::merge(Dimension& into, const QuotaReading::Dimension& reading, TimePoint now) {
  if (reading.limit) into.limit = reading.limit;
  if (reading.remaining) into.remaining = reading.remaining;
  if (reading.reset_in) into.reset_at = now + *reading.reset_in;
}

void QuotaState::update(const QuotaReading& reading, TimePoint now) {
  if (reading.empty()) return;
  std::lock_guard lock(mutex_);
  merge(requests_, reading.requests, now);
  merge(tokens_, reading.tokens, now);
  sent_since_reading_ = 0;
  reported_ = true;
}

void QuotaState::on_request_sent() {
  std::lock_guard lock(mutex_);
  if (reported_) ++sent_since_reading_;
}

std::optional<QuotaState::TimePoint> QuotaState::out_until(const Dimension& dimension,
                                                           std::int64_t sent,
                                                           TimePoint now) const {
  if (!dimension.remaining || !dimension.reset_at || *dimension.reset_at <= now) return std::nullopt;
  if (*dimension.remaining - sent > 0) return std::nullopt;
  return dimension.reset_at;
}

std::optional<QuotaState::TimePoint> QuotaState::exhausted_until(TimePoint now) const {
  std::lock_guard lock(mutex_);
  // Requests sent since the reading each take one request; their tokens are not known yet, so
  // the token side is judged on the provider's own figure.
  const auto requests = out_until(requests_, sent_since_reading_, now);
  const auto tokens = out_until(tokens_, 0, now);
  if (requests && tokens) return std::max(*requests, *tokens);
  return requests ? requests : tokens;
}

bool QuotaState::exhausted(TimePoint now) const { return exhausted_until(now).has_value(); }

QuotaState::Snapshot QuotaState::snapshot(TimePoint now) const {
  Snapshot snapshot;
  snapshot.exhausted = exhausted(now);
  std::lock_guard lock(mutex_);
  snapshot.reported = reported_;
  snapshot.request_limit = requests_.limit;
  if (requests_.remaining) snapshot.requests_remaining = *requests_.remaining - sent_since_reading_;
  snapshot.token_limit = tokens_.limit;
  snapshot.tokens_remaining = tokens_.remaining;
  auto left = [now](const std::optional<TimePoint>& at) -> std::optional<std::chrono::milliseconds> {
    if (!at || *at <= now) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::milliseconds>(*at - now);
  };
  snapshot.requests_reset_in = left(requests_.reset_at);
  snapshot.tokens_reset_in = left(tokens_.reset_at);
  return snapshot;
}

}  // namespace cutover::resilience
