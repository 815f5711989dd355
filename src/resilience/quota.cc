#include "resilience/quota.h"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <ctime>
#include <string>

#include "resilience/retry_policy.h"

namespace cutover::resilience {

namespace {

// Eight ASCII digits at `text` as their value, or false when any of them is not a digit:
// the digits are combined pairwise in a 64-bit word (1+1 → 2, 2+2 → 4, 4+4 → 8) with three
// multiplications instead of eight steps of a loop.
bool eight_digits(const char* text, std::uint64_t& value) {
  std::uint64_t word;
  std::memcpy(&word, text, 8);
  if constexpr (std::endian::native != std::endian::little) word = __builtin_bswap64(word);
  // Every byte is 0x30-0x39: its high nibble is 3, and adding 6 keeps it 3.
  constexpr std::uint64_t kHigh = 0xF0F0F0F0F0F0F0F0ULL, kThrees = 0x3030303030303030ULL;
  if ((word & kHigh) != kThrees || ((word + 0x0606060606060606ULL) & kHigh) != kThrees) return false;
  word &= 0x0F0F0F0F0F0F0F0FULL;
  word = (word * 10 + (word >> 8)) & 0x00FF00FF00FF00FFULL;      // pairs of digits
  word = (word * 100 + (word >> 16)) & 0x0000FFFF0000FFFFULL;    // fours
  value = (word * 10000 + (word >> 32)) & 0xFFFFFFFFULL;          // all eight
  return true;
}

// A count as the headers write it: decimal digits only, at most 18 of them (libstdc++'s from_chars
// took about 300 instructions for an 11-digit figure, a digit loop about 120; this about 50).
std::optional<std::int64_t> whole_number(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::uint64_t value = 0;
  std::size_t at = 0;
  for (; at + 8 <= text.size(); at += 8) {
    std::uint64_t eight;
    if (!eight_digits(text.data() + at, eight)) return std::nullopt;
    value = value * 100'000'000 + eight;
  }
  for (; at < text.size(); ++at) {
    const auto digit = static_cast<unsigned char>(text[at] - '0');
    if (digit > 9) return std::nullopt;
    value = value * 10 + digit;
  }
  return static_cast<std::int64_t>(value);
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

// The twelve names read, lower-case, with what each gives.
struct QuotaHeaderName {
  std::string_view name;
  bool anthropic;
  bool tokens;
  enum Figure { kLimit, kRemaining, kReset } figure;
};
constexpr QuotaHeaderName kQuotaHeaderNames[] = {
    {"x-ratelimit-limit-requests", false, false, QuotaHeaderName::kLimit},
    {"x-ratelimit-remaining-requests", false, false, QuotaHeaderName::kRemaining},
    {"x-ratelimit-reset-requests", false, false, QuotaHeaderName::kReset},
    {"x-ratelimit-limit-tokens", false, true, QuotaHeaderName::kLimit},
    {"x-ratelimit-remaining-tokens", false, true, QuotaHeaderName::kRemaining},
    {"x-ratelimit-reset-tokens", false, true, QuotaHeaderName::kReset},
    {"anthropic-ratelimit-requests-limit", true, false, QuotaHeaderName::kLimit},
    {"anthropic-ratelimit-requests-remaining", true, false, QuotaHeaderName::kRemaining},
    {"anthropic-ratelimit-requests-reset", true, false, QuotaHeaderName::kReset},
    {"anthropic-ratelimit-tokens-limit", true, true, QuotaHeaderName::kLimit},
    {"anthropic-ratelimit-tokens-remaining", true, true, QuotaHeaderName::kRemaining},
    {"anthropic-ratelimit-tokens-reset", true, true, QuotaHeaderName::kReset},
};
// Whether `name` is `lower` (a lower-case name of letters and dashes, as long as `name`, 24 to
// 38 characters as every name read is) in any case. Five eight-byte words cover any such length
// (the last two overlap the others when the name is shorter), compared without a branch:
// setting bit 5 folds A-Z onto a-z and leaves a-z and '-' as they are; the only other byte it
// would fold onto one of those is a control character, which no header name holds.
bool is_name_ignoring_case(std::string_view name, std::string_view lower) {
  constexpr std::uint64_t kFold = 0x2020202020202020ULL;
  auto differs_at = [&](std::size_t at) {
    std::uint64_t word, expected;
    std::memcpy(&word, name.data() + at, 8);
    std::memcpy(&expected, lower.data() + at, 8);
    return (word | kFold) ^ expected;
  };
  const std::size_t last = name.size() - 8;
  return (differs_at(0) | differs_at(8) | differs_at(16) |
          differs_at(std::min<std::size_t>(24, last)) | differs_at(last)) == 0;
}

constexpr std::size_t kShortestQuotaHeader = QuotaHeaderReader::kShortestName;
constexpr std::size_t kLongestQuotaHeader = QuotaHeaderReader::kLongestName;
static_assert(QuotaHeaderReader::kShortestName >= 24, "is_name_ignoring_case reads 24 bytes");
static_assert(QuotaHeaderReader::kLongestName <= 40, "is_name_ignoring_case reads 32 + 8 bytes");
constexpr bool every_name_fits_the_filter() {
  bool shortest = false, longest = false;
  for (const auto& known : kQuotaHeaderNames) {
    const auto size = known.name.size();
    if (size < kShortestQuotaHeader || size > kLongestQuotaHeader || size % 2 ||
        (known.name[0] != 'x' && known.name[0] != 'a')) {
      return false;
    }
    shortest = shortest || size == kShortestQuotaHeader;
    longest = longest || size == kLongestQuotaHeader;
  }
  return shortest && longest;
}
static_assert(every_name_fits_the_filter(), "QuotaHeaderReader::offer() would turn a name away");

// The names by length: each of the eight lengths (all even, 24 to 38) holds at most two, and
// where it holds two, one character tells them apart, so a field is compared with one name.
struct NamesOfOneLength {
  const QuotaHeaderName* names[2] = {nullptr, nullptr};
  std::size_t differs_at = 0;  // the first place where the two names differ
};
constexpr std::size_t kLengthSlots = (kLongestQuotaHeader - kShortestQuotaHeader) / 2 + 1;
constexpr auto kNamesByLength = [] {
  std::array<NamesOfOneLength, kLengthSlots> slots{};
  for (const auto& known : kQuotaHeaderNames) {
    auto& slot = slots[(known.name.size() - kShortestQuotaHeader) / 2];
    slot.names[slot.names[0] ? 1 : 0] = &known;
  }
  for (auto& slot : slots) {
    if (!slot.names[1]) continue;
    while (slot.names[0]->name[slot.differs_at] == slot.names[1]->name[slot.differs_at]) {
      ++slot.differs_at;
    }
  }
  return slots;
}();

// The one name of `name`'s length it could be, or null.
const QuotaHeaderName* candidate_name(std::string_view name) {
  const auto& slot = kNamesByLength[(name.size() - kShortestQuotaHeader) / 2];
  if (slot.names[1] && (name[slot.differs_at] | 0x20) == slot.names[1]->name[slot.differs_at]) {
    return slot.names[1];
  }
  return slot.names[0];
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

void QuotaHeaderReader::offer_candidate(std::string_view name, std::string_view value) {
  const auto* known = candidate_name(name);
  if (!known || !is_name_ignoring_case(name, known->name)) return;
  auto& reading = known->anthropic ? anthropic_ : openai_;
  auto& dimension = known->tokens ? reading.tokens : reading.requests;
  switch (known->figure) {
    case QuotaHeaderName::kLimit:
      if (!dimension.limit) dimension.limit = whole_number(value);
      break;
    case QuotaHeaderName::kRemaining:
      if (!dimension.remaining) dimension.remaining = whole_number(value);
      break;
    case QuotaHeaderName::kReset:
      if (!dimension.reset_in) dimension.reset_in = reset_delay(value, now_);
      break;
  }
}

QuotaReading QuotaHeaderReader::reading() const {
  QuotaReading reading = openai_;
  fill_missing(reading.requests, anthropic_.requests);
  fill_missing(reading.tokens, anthropic_.tokens);
  return reading;
}

void QuotaState::merge(Dimension& into, const QuotaReading::Dimension& reading, TimePoint now) {
  if (reading.limit) into.limit.store(*reading.limit, std::memory_order_relaxed);
  if (reading.remaining) into.remaining.store(*reading.remaining, std::memory_order_relaxed);
  if (reading.reset_in) {
    const auto at = now + std::chrono::duration_cast<TimePoint::duration>(*reading.reset_in);
    into.reset_at.store(at.time_since_epoch().count(), std::memory_order_relaxed);
  }
}

std::optional<std::int64_t> QuotaState::figure(const std::atomic<std::int64_t>& value) {
  const auto read = value.load(std::memory_order_relaxed);
  if (read == kAbsent) return std::nullopt;
  return read;
}

void QuotaState::update(const QuotaReading& reading, TimePoint now) {
  if (reading.empty()) {
    // An endpoint that reports nothing is looked at again after the interval: most never will.
    if (!reported_.load(std::memory_order_acquire)) {
      quiet_for(std::numeric_limits<std::int64_t>::max(), now);
    }
    return;
  }
  merge(requests_, reading.requests, now);
  merge(tokens_, reading.tokens, now);
  sent_since_reading_.store(0, std::memory_order_relaxed);
  const auto request_room = room_of(requests_);
  if (request_room > 0 && room_of(tokens_) > 0) {
    quiet_for(request_room, now);
  } else {
    quiet_until_.store(kAbsent, std::memory_order_relaxed);
  }
  reported_.store(true, std::memory_order_release);
}

// What is left beyond a quarter of the limit; unbounded for a dimension with nothing left to
// report, none for a figure left without its limit.
std::int64_t QuotaState::room_of(const Dimension& dimension) {
  const auto remaining = figure(dimension.remaining);
  if (!remaining) return std::numeric_limits<std::int64_t>::max();
  const auto limit = figure(dimension.limit);
  if (!limit || *limit <= 0) return 0;
  return *remaining - *limit / 4;
}

void QuotaState::quiet_for(std::int64_t requests, TimePoint now) {
  quiet_requests_.store(requests, std::memory_order_relaxed);
  quiet_until_.store((now + kQuietInterval).time_since_epoch().count(), std::memory_order_relaxed);
}

bool QuotaState::wants_reading(TimePoint now) const {
  if (now.time_since_epoch().count() >= quiet_until_.load(std::memory_order_relaxed)) return true;
  return sent_since_reading_.load(std::memory_order_relaxed) >=
         quiet_requests_.load(std::memory_order_relaxed);
}

void QuotaState::on_request_sent() {
  if (!reported_.load(std::memory_order_acquire)) return;
  sent_since_reading_.fetch_add(1, std::memory_order_relaxed);
}

std::optional<QuotaState::TimePoint> QuotaState::out_until(const Dimension& dimension,
                                                           std::int64_t sent, TimePoint now) {
  const auto remaining = figure(dimension.remaining);
  const auto reset_ticks = figure(dimension.reset_at);
  if (!remaining || !reset_ticks) return std::nullopt;
  const TimePoint reset_at{TimePoint::duration(*reset_ticks)};
  if (reset_at <= now || *remaining - sent > 0) return std::nullopt;
  return reset_at;
}

std::optional<QuotaState::TimePoint> QuotaState::exhausted_until(TimePoint now) const {
  if (!reported_.load(std::memory_order_acquire)) return std::nullopt;
  // Requests sent since the reading each take one request; their tokens are not known yet, so
  // the token side is judged on the provider's own figure.
  const auto requests =
      out_until(requests_, sent_since_reading_.load(std::memory_order_relaxed), now);
  const auto tokens = out_until(tokens_, 0, now);
  if (requests && tokens) return std::max(*requests, *tokens);
  return requests ? requests : tokens;
}

bool QuotaState::exhausted(TimePoint now) const { return exhausted_until(now).has_value(); }

QuotaState::Snapshot QuotaState::snapshot(TimePoint now) const {
  Snapshot snapshot;
  snapshot.exhausted = exhausted(now);
  snapshot.reported = reported_.load(std::memory_order_acquire);
  snapshot.request_limit = figure(requests_.limit);
  if (const auto remaining = figure(requests_.remaining)) {
    snapshot.requests_remaining = *remaining - sent_since_reading_.load(std::memory_order_relaxed);
  }
  snapshot.token_limit = figure(tokens_.limit);
  snapshot.tokens_remaining = figure(tokens_.remaining);
  auto left =
      [now](const std::atomic<std::int64_t>& ticks) -> std::optional<std::chrono::milliseconds> {
    const auto read = figure(ticks);
    if (!read) return std::nullopt;
    const TimePoint at{TimePoint::duration(*read)};
    if (at <= now) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
  };
  snapshot.requests_reset_in = left(requests_.reset_at);
  snapshot.tokens_reset_in = left(tokens_.reset_at);
  return snapshot;
}

}  // namespace cutover::resilience
