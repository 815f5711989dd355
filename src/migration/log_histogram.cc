#include "migration/log_histogram.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace cutover::migration {

namespace json = boost::json;

namespace {

using Bounds = std::array<double, LogHistogram::kBucketCount>;

// One table, so that bucket_of and upper_bound agree to the last bit: a value is never counted
// above the bound its quantile reports.
const Bounds& bucket_bounds() {
  static const Bounds bounds = [] {
    Bounds out{};
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] =
          LogHistogram::kLowestBoundMs * std::pow(LogHistogram::kGrowth, static_cast<double>(i));
    return out;
  }();
  return bounds;
}

// ceil(k · n / m) without the rounding of doubles, which would move a rank by one at large n.
std::uint64_t ceil_share(std::uint64_t k, std::uint64_t n, std::uint64_t m) {
  const unsigned __int128 product = static_cast<unsigned __int128>(k) * n;
  return static_cast<std::uint64_t>((product + m - 1) / m);
}

}  // namespace

double LogHistogram::upper_bound(std::size_t bucket) {
  return bucket_bounds()[std::min(bucket, kBucketCount - 1)];
}

std::size_t LogHistogram::bucket_of(double value_ms) {
  if (std::isnan(value_ms)) return kBucketCount;
  const auto& bounds = bucket_bounds();
  if (value_ms <= bounds.front()) return 0;
  if (value_ms > bounds.back()) return kBucketCount - 1;
  // The logarithm lands on the bucket or next to it; the table has the last word.
  const double estimate = std::ceil(std::log(value_ms / kLowestBoundMs) / std::log(kGrowth));
  auto bucket = static_cast<std::size_t>(std::clamp(estimate, 1.0, double(kBucketCount - 1)));
  while (bounds[bucket] < value_ms) ++bucket;
  while (bounds[bucket - 1] >= value_ms) --bucket;
  return bucket;
}

void LogHistogram::reserve_bucket(std::size_t bucket) {
  if (counts_.empty()) {
    first_bucket_ = bucket;
    counts_.assign(1, 0);
  } else if (bucket < first_bucket_) {
    counts_.insert(counts_.begin(), first_bucket_ - bucket, 0);
    first_bucket_ = bucket;
  } else if (bucket >= first_bucket_ + counts_.size()) {
    counts_.resize(bucket - first_bucket_ + 1, 0);
  }
}

void LogHistogram::add(double value_ms, std::uint64_t count) {
  // A zero count would leave an empty bucket at an edge, and histograms with the same counts
  // would then compare unequal.
  if (count == 0 || std::isnan(value_ms)) return;
  const auto bucket = bucket_of(value_ms);
  reserve_bucket(bucket);
  counts_[bucket - first_bucket_] += count;
  total_ += count;
}

void LogHistogram::merge(const LogHistogram& other) {
  if (other.empty()) return;
  reserve_bucket(other.first_bucket_);
  reserve_bucket(other.first_bucket_ + other.counts_.size() - 1);
  const auto offset = other.first_bucket_ - first_bucket_;
  for (std::size_t i = 0; i < other.counts_.size(); ++i) counts_[offset + i] += other.counts_[i];
  total_ += other.total_;
}

void LogHistogram::clear() {
  counts_.clear();
  first_bucket_ = 0;
  total_ = 0;
}

std::uint64_t LogHistogram::count_in_bucket(std::size_t bucket) const {
  if (bucket < first_bucket_ || bucket >= first_bucket_ + counts_.size()) return 0;
  return counts_[bucket - first_bucket_];
}

double LogHistogram::bound_at_rank(std::uint64_t rank) const {
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    below += counts_[i];
    if (below >= rank) return upper_bound(first_bucket_ + i);
  }
  return upper_bound(first_bucket_ + counts_.size() - 1);
}

double LogHistogram::quantile(double q) const {
  if (empty()) return std::numeric_limits<double>::quiet_NaN();
  // The same nearest rank as estimate_quantile, epsilon included, so that a histogram and the
  // samples it counted name the same order statistic.
  const double rank = std::ceil(static_cast<double>(total_) * std::clamp(q, 0.0, 1.0) - 1e-9);
  return bound_at_rank(
      std::clamp<std::uint64_t>(static_cast<std::uint64_t>(std::max(rank, 1.0)), 1, total_));
}

std::vector<double> LogHistogram::representative_samples(std::size_t max) const {
  const std::uint64_t m = std::min<std::uint64_t>(total_, max);
  std::vector<double> out;
  out.reserve(m);
  // One walk over the buckets: the ranks only grow.
  std::size_t i = 0;
  std::uint64_t below = m ? counts_[0] : 0;
  for (std::uint64_t k = 1; k <= m; ++k) {
    const auto rank = ceil_share(k, total_, m);
    while (below < rank) below += counts_[++i];
    out.push_back(upper_bound(first_bucket_ + i));
  }
  return out;
}

json::object LogHistogram::to_json() const {
  json::array buckets;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0) continue;
    buckets.emplace_back(first_bucket_ + i);
    buckets.emplace_back(counts_[i]);
  }
  return json::object{{"s", kScheme}, {"b", std::move(buckets)}};
}

std::optional<LogHistogram> LogHistogram::from_json(const json::value& json) {
  const auto* object = json.if_object();
  if (!object) return std::nullopt;
  const auto* scheme = object->if_contains("s");
  if (!scheme || count_from_json(*scheme) != std::optional<std::uint64_t>(kScheme))
    return std::nullopt;
  const auto* buckets = object->if_contains("b") ? object->at("b").if_array() : nullptr;
  if (!buckets || buckets->size() % 2 != 0) return std::nullopt;
  LogHistogram out;
  std::optional<std::uint64_t> previous;
  for (std::size_t i = 0; i < buckets->size(); i += 2) {
    const auto bucket = count_from_json((*buckets)[i]);
    const auto count = count_from_json((*buckets)[i + 1]);
    if (!bucket || *bucket >= kBucketCount || (previous && *bucket <= *previous))
      return std::nullopt;
    if (!count || *count > std::numeric_limits<std::uint64_t>::max() - out.total_)
      return std::nullopt;
    previous = bucket;
    if (*count == 0) continue;
    out.reserve_bucket(*bucket);
    out.counts_[*bucket - out.first_bucket_] += *count;
    out.total_ += *count;
  }
  return out;
}

std::optional<std::uint64_t> count_from_json(const json::value& json) {
  if (json.is_uint64()) return json.get_uint64();
  if (json.is_int64()) {
    if (json.get_int64() < 0) return std::nullopt;
    return static_cast<std::uint64_t>(json.get_int64());
  }
  if (json.is_double()) {
    // Beyond 2^53 a double no longer tells neighbouring integers apart.
    const double value = json.get_double();
    if (value < 0 || value > 9007199254740992.0 || std::floor(value) != value) return std::nullopt;
    return static_cast<std::uint64_t>(value);
  }
  return std::nullopt;
}

}  // namespace cutover::migration
