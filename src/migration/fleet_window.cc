#include "migration/fleet_window.h"

#include <cmath>
#include <limits>
#include <optional>

namespace cutover::migration {

namespace json = boost::json;

namespace {

constexpr std::size_t kPairFields = 7;
// Pairs carry their figures as integers: whole microseconds and millionths of a score. Boost.JSON
// 1.81 parses about one double in eight one bit off what it wrote, which integers are not, and
// the text is half as long.
constexpr double kMicrosecondsPerMs = 1e3;
constexpr double kScoreUnits = 1e6;
// Past 2^53 a double no longer holds every integer; no latency comes near (285 years).
constexpr double kLargestFixedPoint = 9007199254740992.0;

json::value fixed_point_json(double value, double units) {
  const double scaled = std::round(value * units);
  if (!std::isfinite(scaled) || std::abs(scaled) > kLargestFixedPoint) return nullptr;
  return static_cast<std::int64_t>(scaled);
}

// A null figure (one that was not finite) reads back as NaN.
std::optional<double> fixed_point_from_json(const json::value& json, double units) {
  if (json.is_null()) return std::numeric_limits<double>::quiet_NaN();
  if (json.is_int64()) return static_cast<double>(json.get_int64()) / units;
  if (const auto count = count_from_json(json)) return static_cast<double>(*count) / units;
  return std::nullopt;
}

std::optional<bool> flag_from_json(const json::value& json) {
  const auto flag = count_from_json(json);
  if (!flag || *flag > 1) return std::nullopt;
  return *flag == 1;
}

std::optional<std::uint64_t> count_field(const json::object& object, std::string_view key) {
  const auto* field = object.if_contains(key);
  return field ? count_from_json(*field) : std::nullopt;
}

std::optional<LogHistogram> histogram_field(const json::object& object, std::string_view key) {
  const auto* field = object.if_contains(key);
  return field ? LogHistogram::from_json(*field) : std::nullopt;
}

json::object arm_json(const ArmWindow& arm) {
  return json::object{{"requests", arm.requests},
                      {"errors", arm.errors},
                      {"fallbacks", arm.fallbacks},
                      {"tokens", arm.tokens},
                      {"latency", arm.latency_histogram.to_json()},
                      {"ttft", arm.ttft_histogram.to_json()},
                      {"tpot", arm.tpot_histogram.to_json()}};
}

// The arm's counters and histograms; its sample vectors stay empty.
std::optional<ArmWindow> arm_from_json(const json::value& json) {
  const auto* object = json.if_object();
  if (!object) return std::nullopt;
  const auto requests = count_field(*object, "requests");
  const auto errors = count_field(*object, "errors");
  const auto fallbacks = count_field(*object, "fallbacks");
  const auto tokens = count_field(*object, "tokens");
  auto latency = histogram_field(*object, "latency");
  auto ttft = histogram_field(*object, "ttft");
  auto tpot = histogram_field(*object, "tpot");
  if (!requests || !errors || !fallbacks || !tokens || !latency || !ttft || !tpot)
    return std::nullopt;
  ArmWindow arm;
  arm.requests = *requests;
  arm.errors = *errors;
  arm.fallbacks = *fallbacks;
  arm.tokens = *tokens;
  arm.latency_histogram = std::move(*latency);
  arm.ttft_histogram = std::move(*ttft);
  arm.tpot_histogram = std::move(*tpot);
  return arm;
}

void add_arm(const ArmWindow& from, ArmWindow& to) {
  to.requests += from.requests;
  to.errors += from.errors;
  to.fallbacks += from.fallbacks;
  to.tokens += from.tokens;
  to.latency_histogram.merge(from.latency_histogram);
  to.ttft_histogram.merge(from.ttft_histogram);
  to.tpot_histogram.merge(from.tpot_histogram);
}

json::array pair_json(const PairSample& pair) {
  return json::array{pair.candidate_failed ? 1 : 0,
                     pair.compared ? 1 : 0,
                     fixed_point_json(pair.score, kScoreUnits),
                     fixed_point_json(pair.primary_latency_ms, kMicrosecondsPerMs),
                     fixed_point_json(pair.candidate_latency_ms, kMicrosecondsPerMs),
                     fixed_point_json(pair.primary_ttft_ms, kMicrosecondsPerMs),
                     fixed_point_json(pair.candidate_ttft_ms, kMicrosecondsPerMs)};
}

std::optional<PairSample> pair_from_json(const json::value& json) {
  const auto* fields = json.if_array();
  if (!fields || fields->size() != kPairFields) return std::nullopt;
  const auto candidate_failed = flag_from_json((*fields)[0]);
  const auto compared = flag_from_json((*fields)[1]);
  const auto score = fixed_point_from_json((*fields)[2], kScoreUnits);
  const auto primary_latency = fixed_point_from_json((*fields)[3], kMicrosecondsPerMs);
  const auto candidate_latency = fixed_point_from_json((*fields)[4], kMicrosecondsPerMs);
  const auto primary_ttft = fixed_point_from_json((*fields)[5], kMicrosecondsPerMs);
  const auto candidate_ttft = fixed_point_from_json((*fields)[6], kMicrosecondsPerMs);
  if (!candidate_failed || !compared || !score || !primary_latency || !candidate_latency ||
      !primary_ttft || !candidate_ttft)
    return std::nullopt;
  PairSample pair;
  pair.candidate_failed = *candidate_failed;
  pair.compared = *compared;
  pair.score = *score;
  pair.primary_latency_ms = *primary_latency;
  pair.candidate_latency_ms = *candidate_latency;
  pair.primary_ttft_ms = *primary_ttft;
  pair.candidate_ttft_ms = *candidate_ttft;
  return pair;
}

std::optional<std::vector<PairSample>> pairs_from_json(const json::value* json) {
  const auto* list = json ? json->if_array() : nullptr;
  if (!list) return std::nullopt;
  std::vector<PairSample> pairs;
  pairs.reserve(list->size());
  for (const auto& entry : *list) {
    auto pair = pair_from_json(entry);
    if (!pair) return std::nullopt;
    pairs.push_back(*pair);
  }
  return pairs;
}

}  // namespace

json::object contribution_json(const WindowSnapshot& local, const std::vector<PairSample>& pairs,
                               std::size_t max_pairs) {
  json::array pair_list;
  const std::size_t first = pairs.size() > max_pairs ? pairs.size() - max_pairs : 0;
  pair_list.reserve(pairs.size() - first);
  for (std::size_t i = first; i < pairs.size(); ++i) pair_list.push_back(pair_json(pairs[i]));
  return json::object{{"v", kContributionVersion},
                      {"lifetime_requests", local.lifetime_requests},
                      {"candidate_attempts", local.candidate_attempts},
                      {"candidate_attempt_failures", local.candidate_attempt_failures},
                      {"candidate_rate_limited", local.candidate_rate_limited},
                      {"primary", arm_json(local.primary)},
                      {"candidate", arm_json(local.candidate)},
                      {"pairs", std::move(pair_list)}};
}

bool add_contribution(const json::value& contribution, WindowSnapshot& fleet) {
  const auto* object = contribution.if_object();
  if (!object) return false;
  if (count_field(*object, "v") != std::optional<std::uint64_t>(kContributionVersion)) return false;
  const auto lifetime_requests = count_field(*object, "lifetime_requests");
  const auto attempts = count_field(*object, "candidate_attempts");
  const auto attempt_failures = count_field(*object, "candidate_attempt_failures");
  const auto rate_limited = count_field(*object, "candidate_rate_limited");
  const auto* primary_json = object->if_contains("primary");
  const auto* candidate_json = object->if_contains("candidate");
  const auto primary = primary_json ? arm_from_json(*primary_json) : std::nullopt;
  const auto candidate = candidate_json ? arm_from_json(*candidate_json) : std::nullopt;
  auto pairs = pairs_from_json(object->if_contains("pairs"));
  // Everything is read before anything is added, so a malformed contribution adds nothing.
  if (!lifetime_requests || !attempts || !attempt_failures || !rate_limited || !primary ||
      !candidate || !pairs)
    return false;
  add_arm(*primary, fleet.primary);
  add_arm(*candidate, fleet.candidate);
  fleet.lifetime_requests += *lifetime_requests;
  fleet.candidate_attempts += *attempts;
  fleet.candidate_attempt_failures += *attempt_failures;
  fleet.candidate_rate_limited += *rate_limited;
  fleet.pairs.insert(fleet.pairs.end(), pairs->begin(), pairs->end());
  return true;
}

void expand_histograms(WindowSnapshot& fleet, std::size_t max_samples) {
  for (ArmWindow* arm : {&fleet.primary, &fleet.candidate}) {
    arm->latency_ms = arm->latency_histogram.representative_samples(max_samples);
    arm->ttft_ms = arm->ttft_histogram.representative_samples(max_samples);
    arm->tpot_ms = arm->tpot_histogram.representative_samples(max_samples);
  }
}

}  // namespace cutover::migration
