// What a provider endpoint says about its own rate limits, read from the headers of every
// answer, so the gateway can stop sending to an endpoint that is about to run out instead of
// collecting 429s.
//
// OpenAI sends x-ratelimit-{limit,remaining,reset}-{requests,tokens} (resets as Go durations,
// "6m0s"); Anthropic sends anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} (resets
// as RFC 3339 times), and relays copy one of the two. Between two answers the gateway counts
// what it sent itself, so the estimate of what is left falls with each request in flight.
// Thread-safe without a lock: each figure is its own atomic (see QuotaState). Time is an argument.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace cutover::resilience {

struct QuotaReading {
  struct Dimension {
    std::optional<std::int64_t> limit;
    std::optional<std::int64_t> remaining;
    std::optional<std::chrono::milliseconds> reset_in;
    bool empty() const { return !limit && !remaining && !reset_in; }
  };
  Dimension requests;
  Dimension tokens;
  bool empty() const { return requests.empty() && tokens.empty(); }
};

// Reads an answer's rate-limit headers in one pass over its fields: offer() every field, then
// reading(). Names match case-insensitively; any other field is turned away by its length and
// first character, so the pass costs an answer without the headers next to nothing (looking
// each of the twelve names up in Beast's field set cost about 9,000 instructions an answer).
// Where a field repeats, its first valid value counts.
class QuotaHeaderReader {
 public:
  explicit QuotaHeaderReader(std::chrono::system_clock::time_point now) : now_(now) {}
  // Inline, so that the fields turned away cost no call: every name read starts with x or a and
  // has an even number of characters from 24 to 38.
  void offer(std::string_view name, std::string_view value) {
    if (name.size() < kShortestName || name.size() > kLongestName || name.size() % 2) return;
    if (const char first = static_cast<char>(name[0] | 0x20); first != 'x' && first != 'a') return;
    offer_candidate(name, value);
  }
  // OpenAI's figures; Anthropic's fill a dimension for which OpenAI's headers said nothing.
  QuotaReading reading() const;

  static constexpr std::size_t kShortestName = 24;  // x-ratelimit-limit-tokens
  static constexpr std::size_t kLongestName = 38;   // anthropic-ratelimit-requests-remaining

 private:
  void offer_candidate(std::string_view name, std::string_view value);

  std::chrono::system_clock::time_point now_;
  QuotaReading openai_;
  QuotaReading anthropic_;
};

// The reading of a field set that iterates as Beast's does (name_string(), value()).
template <class Fields>
QuotaReading read_quota_headers(const Fields& fields, std::chrono::system_clock::time_point now) {
  QuotaHeaderReader reader(now);
  for (const auto& field : fields) reader.offer(field.name_string(), field.value());
  return reader.reading();
}

// Parses an RFC 3339 time ("2026-11-29T22:10:05Z", "…05.250+01:00").
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

// Figures are read and written one by one, without a lock, because every worker sends to the
// same endpoints: a request counted while an answer's figures land may count against the old
// reading or the new one, and a snapshot may mix two readings' figures. An estimate of what is
// left tolerates both, so it needs no lock that every worker's requests would share.
class QuotaState {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // An answer's headers. A reading without any rate-limit header changes no figure; before the
  // endpoint's first report it only starts the interval until the next look (wants_reading).
  void update(const QuotaReading& reading, TimePoint now);
  // Whether a successful answer's headers are worth reading. Not within kQuietInterval of a
  // reading that left every reported figure more than a quarter of its limit, while the requests
  // sent since have not used that room up: an endpoint is passed over only when a figure reaches
  // zero, and the requests it is sent are counted between readings anyway. Reading six headers
  // cost about 3 % of a request's instructions (bench/cache.sh, d / e), and looking through an
  // answer's fields for them about 1.4 %. Always near a limit and for a figure reported without
  // its limit; an endpoint that has reported nothing yet is looked at once an interval; the
  // caller reads refusals regardless. What the pause costs: others' use of a shared quota is seen
  // up to 50 ms later, beside the time to first byte by which an answer's figures are old when they
  // come.
  bool wants_reading(TimePoint now) const;
  static constexpr std::chrono::milliseconds kQuietInterval{50};
  // A request sent to the endpoint, before its answer tells the new figures.
  void on_request_sent();

  // True when the endpoint reported that its requests or tokens run out before their reset:
  // nothing left to send (counting what was sent since), and the reset still ahead.
  bool exhausted(TimePoint now) const;
  // When an exhausted endpoint's quota resets (the later of the two that ran out).
  std::optional<TimePoint> exhausted_until(TimePoint now) const;

  struct Snapshot {
    bool reported = false;
    std::optional<std::int64_t> request_limit, requests_remaining;
    std::optional<std::int64_t> token_limit, tokens_remaining;
    std::optional<std::chrono::milliseconds> requests_reset_in, tokens_reset_in;
    bool exhausted = false;
  };
  Snapshot snapshot(TimePoint now) const;

 private:
  // A figure the endpoint has not reported. Counts are never negative and a reset is a steady
  // clock reading, so no real figure takes this value.
  static constexpr std::int64_t kAbsent = std::numeric_limits<std::int64_t>::min();
  struct Dimension {
    std::atomic<std::int64_t> limit{kAbsent};
    std::atomic<std::int64_t> remaining{kAbsent};
    std::atomic<std::int64_t> reset_at{kAbsent};  // steady clock, in its own ticks
  };
  static void merge(Dimension& into, const QuotaReading::Dimension& reading, TimePoint now);
  static std::optional<std::int64_t> figure(const std::atomic<std::int64_t>& value);
  static std::optional<TimePoint> out_until(const Dimension& dimension, std::int64_t sent,
                                            TimePoint now);

  Dimension requests_;
  Dimension tokens_;
  // Requests sent since the last reading: they use up quota the provider has not reported yet.
  std::atomic<std::int64_t> sent_since_reading_{0};
  // Set once, by the first reading, and never cleared: until then the endpoint has nothing to
  // count or judge, and on_request_sent() and exhausted_until() return at once.
  std::atomic<bool> reported_{false};
  // wants_reading()'s terms, set by each reading: until when (steady clock ticks; kAbsent: read
  // every answer) and how many requests sent since the reading leave every figure room.
  static std::int64_t room_of(const Dimension& dimension);
  // No reading wanted for an interval from `now`, nor until `requests` more are sent.
  void quiet_for(std::int64_t requests, TimePoint now);
  std::atomic<std::int64_t> quiet_until_{kAbsent};
  std::atomic<std::int64_t> quiet_requests_{0};
};

}  // namespace cutover::resilience
