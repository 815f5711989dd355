// A latency distribution that replicas can add together exactly: counts in fixed logarithmic
// buckets, the same buckets on every replica, so merging is adding counts bucket by bucket and a
// fleet's histogram is exactly the histogram of all its samples.
//
// Buckets. Bucket 0 holds every value at or below kLowestBoundMs (1 µs), zero and negative
// values included. Bucket i > 0 holds the values in (kLowestBoundMs · kGrowth^(i-1),
// kLowestBoundMs · kGrowth^i], so upper_bound(i) = kLowestBoundMs · kGrowth^i. The last bucket
// (upper bound about 1.004 · 10^7 ms, 2.8 hours) also takes every value above it.
//
// Error. A quantile is reported as the upper bound of the bucket that holds its nearest rank
// ceil(q · n), so it is never below the exact sample quantile and at most kGrowth - 1 = 2 %
// above it: a "p99 ≤ X" gate never passes on a rounding error. The two exceptions are documented
// where they happen: values at or below 1 µs are reported as 1 µs (an absolute error of at most
// 1 µs), and values beyond the last bucket are reported as its upper bound, 10^7 ms, which is
// below them but far above any limit a gate sets.
//
// Memory. Counts are stored for the buckets from the lowest to the highest one used only, and
// nothing at all while the histogram is empty: latencies from 10 ms to 100 s span about 470
// buckets (3.7 KiB).
//
// Not thread-safe; the owner serializes access (StatsShard holds its mutex).
#pragma once

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace cutover::migration {

class LogHistogram {
 public:
  static constexpr double kGrowth = 1.02;
  static constexpr double kLowestBoundMs = 1e-3;
  // The fewest buckets whose last upper bound reaches 10^7 ms: 1 + ceil(ln(10^10) / ln(1.02)).
  static constexpr std::size_t kBucketCount = 1164;
  // Tells the JSON form of these buckets from a form with other buckets (another growth factor)
  // that a replica running another version might send.
  static constexpr std::int64_t kScheme = 1;

  // The largest value bucket `bucket` (< kBucketCount) holds.
  static double upper_bound(std::size_t bucket);
  // The bucket that holds `value_ms`; NaN has none (kBucketCount).
  static std::size_t bucket_of(double value_ms);

  // Counts `value_ms` `count` times; NaN is ignored.
  void add(double value_ms, std::uint64_t count = 1);
  // Adds every count of `other`: exact, and the same in any order.
  void merge(const LogHistogram& other);
  // Forgets every count; keeps the storage, since a shard refills it in the next window.
  void clear();

  std::uint64_t count() const { return total_; }
  bool empty() const { return total_ == 0; }
  std::uint64_t count_in_bucket(std::size_t bucket) const;

  // The upper bound of the bucket holding rank ceil(q · n) of the n values (q clamped to
  // [0, 1], rank at least 1), computed as estimate_quantile computes its point; NaN when empty.
  double quantile(double q) const;

  // min(count(), max) values standing for the histogram in code that takes quantiles of a vector
  // of samples: the k-th (k = 1..m) is the upper bound of the bucket holding rank
  // ceil(k · n / m), so the vector is sorted, ends with the maximum's bucket, and its own
  // nearest-rank quantile at any q is at or above quantile(q), never below. With n ≤ max it is
  // every value rounded up to its bucket's bound, and its quantiles are exactly quantile(q).
  std::vector<double> representative_samples(std::size_t max) const;

  // {"s": kScheme, "b": [bucket, count, bucket, count, ...]} with the buckets that hold values,
  // in increasing order.
  boost::json::object to_json() const;
  // The histogram to_json wrote; none, without throwing, when `json` is not that form: another
  // scheme, a bucket out of range or out of order, a count that is not a non-negative integer.
  static std::optional<LogHistogram> from_json(const boost::json::value& json);

  bool operator==(const LogHistogram& other) const = default;

 private:
  void reserve_bucket(std::size_t bucket);
  // The upper bound of the bucket holding the rank-th smallest value (1 ≤ rank ≤ count()).
  double bound_at_rank(std::uint64_t rank) const;

  // Counts of buckets first_bucket_, first_bucket_ + 1, ...; the first and last are never 0.
  std::vector<std::uint64_t> counts_;
  std::size_t first_bucket_ = 0;
  std::uint64_t total_ = 0;
};

// A count as JSON may carry it: a non-negative integer, or a double that is one exactly (as a
// Lua script's cjson may write it). None for anything else.
std::optional<std::uint64_t> count_from_json(const boost::json::value& json);

}  // namespace cutover::migration
