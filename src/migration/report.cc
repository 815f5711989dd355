#include "migration/report.h"

#include <algorithm>
#include <cmath>

#include "migration/statistics.h"

namespace cutover::migration {

namespace json = boost::json;

namespace {

json::value quantile_or_null(std::vector<double> samples, double q) {
  if (samples.empty()) return nullptr;
  return estimate_quantile(std::move(samples), q, 0.95).point;
}

bool succeeded(int status) { return status >= 200 && status < 300; }

}  // namespace

json::object summarize_pairs(const std::vector<store::ShadowPair>& pairs) {
  std::uint64_t failures = 0, exact = 0, json_checked = 0, json_valid = 0, finish_equal = 0;
  double score_sum = 0, similarity_sum = 0, rouge_sum = 0, length_sum = 0;
  double primary_cost = 0, candidate_cost = 0;
  std::int64_t primary_in = 0, primary_out = 0, candidate_in = 0, candidate_out = 0;
  std::vector<double> primary_latency, candidate_latency, primary_ttft, candidate_ttft;
  std::vector<std::uint64_t> buckets(10, 0);
  std::uint64_t compared = 0;
  for (const auto& p : pairs) {
    primary_cost += p.primary_cost;
    candidate_cost += p.candidate_cost;
    primary_in += p.primary_prompt_tokens;
    primary_out += p.primary_completion_tokens;
    candidate_in += p.candidate_prompt_tokens;
    candidate_out += p.candidate_completion_tokens;
    primary_latency.push_back(p.primary_latency_ms);
    primary_ttft.push_back(p.primary_ttft_ms);
    if (!succeeded(p.candidate_status)) {
      ++failures;
      continue;
    }
    candidate_latency.push_back(p.candidate_latency_ms);
    candidate_ttft.push_back(p.candidate_ttft_ms);
    if (!succeeded(p.primary_status)) continue;
    ++compared;
    exact += p.exact_match;
    score_sum += p.score;
    similarity_sum += p.similarity;
    rouge_sum += p.rouge_l;
    length_sum += p.length_ratio;
    finish_equal += p.primary_finish_reason == p.candidate_finish_reason;
    if (p.candidate_json_valid >= 0) {
      ++json_checked;
      json_valid += static_cast<std::uint64_t>(p.candidate_json_valid);
    }
    buckets[std::min<std::size_t>(9, static_cast<std::size_t>(std::max(0.0, p.score) * 10))]++;
  }
  json::array histogram;
  for (auto count : buckets) histogram.push_back(count);
  auto share = [](std::uint64_t part, std::uint64_t whole) -> json::value {
    if (whole == 0) return nullptr;
    return static_cast<double>(part) / static_cast<double>(whole);
  };
  auto mean = [&](double sum) -> json::value {
    if (compared == 0) return nullptr;
    return sum / static_cast<double>(compared);
  };
  auto side = [&](std::vector<double>& latency, std::vector<double>& ttft, std::int64_t in,
                  std::int64_t out, double cost) {
    return json::object{{"latency_p50_ms", quantile_or_null(latency, 0.5)},
                        {"latency_p95_ms", quantile_or_null(latency, 0.95)},
                        {"ttft_p50_ms", quantile_or_null(ttft, 0.5)},
                        {"ttft_p95_ms", quantile_or_null(ttft, 0.95)},
                        {"prompt_tokens", in},
                        {"completion_tokens", out},
                        {"cost", cost}};
  };
  return json::object{
      {"pairs", pairs.size()},
      {"compared", compared},
      {"candidate_failures", failures},
      {"exact_match_rate", share(exact, compared)},
      {"mean_score", mean(score_sum)},
      {"mean_similarity", mean(similarity_sum)},
      {"mean_rouge_l", mean(rouge_sum)},
      {"mean_length_ratio", mean(length_sum)},
      {"finish_reason_agreement", share(finish_equal, compared)},
      {"json_valid_rate", share(json_valid, json_checked)},
      {"json_checked", json_checked},
      {"score_histogram", std::move(histogram)},
      {"primary", side(primary_latency, primary_ttft, primary_in, primary_out, primary_cost)},
      {"candidate", side(candidate_latency, candidate_ttft, candidate_in, candidate_out, candidate_cost)}};
}

json::object project_costs(const std::vector<store::ShadowPair>& pairs,
                           double live_requests_per_day, const std::string& currency) {
  // Only pairs both sides answered: a failed side has no cost to compare.
  double primary_cost = 0, candidate_cost = 0, score_sum = 0;
  std::uint64_t both = 0, candidate_failures = 0;
  std::vector<double> primary_latency, candidate_latency;
  for (const auto& p : pairs) {
    if (!succeeded(p.candidate_status)) {
      ++candidate_failures;
      continue;
    }
    if (!succeeded(p.primary_status)) continue;
    ++both;
    primary_cost += p.primary_cost;
    candidate_cost += p.candidate_cost;
    score_sum += p.score;
    primary_latency.push_back(p.primary_latency_ms);
    candidate_latency.push_back(p.candidate_latency_ms);
  }
  json::object out{{"currency", currency},
                   {"pairs", pairs.size()},
                   {"compared", both},
                   {"live_requests_per_day", live_requests_per_day > 0 ? json::value(live_requests_per_day)
                                                                       : json::value(nullptr)}};
  const double per_month = live_requests_per_day * 30;
  if (both == 0) {
    for (const char* key : {"primary_cost_per_request", "candidate_cost_per_request",
                            "monthly_cost_primary", "monthly_cost_candidate", "monthly_difference",
                            "agreement_mean"}) {
      out[key] = nullptr;
    }
  } else {
    const double primary_each = primary_cost / static_cast<double>(both);
    const double candidate_each = candidate_cost / static_cast<double>(both);
    out["primary_cost_per_request"] = primary_each;
    out["candidate_cost_per_request"] = candidate_each;
    out["agreement_mean"] = score_sum / static_cast<double>(both);
    if (per_month > 0) {
      out["monthly_cost_primary"] = primary_each * per_month;
      out["monthly_cost_candidate"] = candidate_each * per_month;
      out["monthly_difference"] = (candidate_each - primary_each) * per_month;
    } else {
      out["monthly_cost_primary"] = nullptr;
      out["monthly_cost_candidate"] = nullptr;
      out["monthly_difference"] = nullptr;
    }
  }
  out["latency_p95_ms"] = json::object{{"primary", quantile_or_null(primary_latency, 0.95)},
                                       {"candidate", quantile_or_null(candidate_latency, 0.95)}};
  out["candidate_failure_rate"] =
      pairs.empty() ? json::value(nullptr)
                    : json::value(static_cast<double>(candidate_failures) / static_cast<double>(pairs.size()));
  return out;
}

}  // namespace cutover::migration
