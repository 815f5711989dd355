#include "report/report.h"

#include <boost/json.hpp>
#include <algorithm>
#include <ctime>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include "migration/report.h"
#include "store/redis_state_store.h"
#include "store/state_store.h"
#include "util/clock.h"
#include "util/table.h"

namespace cutover::report {

namespace json = boost::json;
using util::print_table;

namespace {

constexpr std::int64_t kDayMs = 86'400'000;

std::string iso_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::ostringstream out;
  out << std::put_time(&utc, "%Y-%m-%dT%H:%M:%SZ");
  return out.str();
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string dimension(const store::UsageRow& row, const std::string& by) {
  if (by == "provider") return row.provider;
  if (by == "model") return row.model;
  if (by == "provider_model") return row.provider_model;
  if (by == "key") return row.client_key;
  if (by == "traffic") return row.traffic;
  if (by == "minute") return iso_time(row.minute_unix_ms);
  if (by == "hour") return iso_time(row.minute_unix_ms - row.minute_unix_ms % 3'600'000);
  if (by == "day") return iso_time(row.minute_unix_ms - row.minute_unix_ms % kDayMs).substr(0, 10);
  return {};
}


std::string number(const json::value& value, int precision = 2) {
  if (value.is_null()) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << value.to_number<double>();
  return out.str();
}

std::string percent(const json::value& value) {
  if (value.is_null()) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << value.to_number<double>() * 100 << "%";
  return out.str();
}

}  // namespace

std::optional<std::int64_t> parse_time(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::stoll(text) * 1000;
  }
  for (const char* format : {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"}) {
    std::tm parts{};
    std::istringstream in(text);
    in >> std::get_time(&parts, format);
    if (!in.fail() && in.peek() == EOF) return static_cast<std::int64_t>(timegm(&parts)) * 1000;
  }
  return std::nullopt;
}

int report_usage(const UsageOptions& options, std::ostream& out, std::ostream& error) {
  static const std::set<std::string> kDimensions = {"provider", "model", "provider_model", "key",
                                                    "traffic",  "minute", "hour",          "day"};
  for (const auto& by : options.by) {
    if (!kDimensions.contains(by)) {
      error << "cutover report usage: cannot group by '" << by
            << "'; use provider, model, provider_model, key, traffic, minute, hour or day\n";
      return 2;
    }
  }
  if (options.format != "csv" && options.format != "json") {
    error << "cutover report usage: --format must be csv or json\n";
    return 2;
  }
  std::vector<store::UsageRow> rows;
  for (const auto& path : options.store_paths) {
    auto store = store::open_sqlite_store(path);
    auto some = store->usage(options.from_unix_ms.value_or(0),
                             options.to_unix_ms.value_or(util::unix_ms_now() + 60'000));
    rows.insert(rows.end(), std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
  }
  struct Totals {
    std::int64_t requests = 0, errors = 0, prompt = 0, cached = 0, completion = 0, saved_tokens = 0;
    double cost = 0, saved_cost = 0;
    std::string currency;
  };
  std::map<std::vector<std::string>, Totals> groups;
  for (const auto& row : rows) {
    std::vector<std::string> key;
    for (const auto& by : options.by) key.push_back(dimension(row, by));
    auto& totals = groups[key];
    totals.requests += row.requests;
    totals.errors += row.errors;
    totals.prompt += row.prompt_tokens;
    totals.cached += row.cached_prompt_tokens;
    totals.completion += row.completion_tokens;
    totals.cost += row.cost;
    totals.saved_tokens += row.saved_tokens;
    totals.saved_cost += row.saved_cost;
    if (!row.currency.empty()) {
      if (totals.currency.empty()) totals.currency = row.currency;
      if (totals.currency != row.currency) totals.currency = "mixed";
    }
  }
  if (options.format == "json") {
    json::array list;
    for (const auto& [key, totals] : groups) {
      json::object entry;
      for (std::size_t i = 0; i < key.size(); ++i) entry[options.by[i]] = key[i];
      entry["requests"] = totals.requests;
      entry["errors"] = totals.errors;
      entry["prompt_tokens"] = totals.prompt;
      entry["cached_prompt_tokens"] = totals.cached;
      entry["completion_tokens"] = totals.completion;
      entry["cost"] = totals.cost;
      entry["currency"] = totals.currency;
      entry["saved_tokens"] = totals.saved_tokens;
      entry["saved_cost"] = totals.saved_cost;
      list.push_back(std::move(entry));
    }
    out << json::serialize(list) << "\n";
    return 0;
  }
  for (const auto& by : options.by) out << by << ",";
  out << "requests,errors,prompt_tokens,cached_prompt_tokens,completion_tokens,cost,currency,saved_tokens,saved_cost\n";
  for (const auto& [key, totals] : groups) {
    for (const auto& value : key) out << csv_field(value) << ",";
    out << totals.requests << "," << totals.errors << "," << totals.prompt << "," << totals.cached
        << "," << totals.completion << "," << std::setprecision(10) << totals.cost << ","
        << csv_field(totals.currency) << "," << totals.saved_tokens << "," << totals.saved_cost
        << "\n";
  }
  return 0;
}

int report_migration(const MigrationReportOptions& options, std::ostream& out, std::ostream& error) {
  std::unique_ptr<store::StateStore> store;
  if (options.redis) {
    store = store::open_redis_store(*options.redis, options.store_path);
  } else {
    store = store::open_sqlite_store(options.store_path);
  }
  std::optional<store::MigrationRecord> record;
  try {
    record = store->load(options.migration);
  } catch (const store::StoreUnavailable& e) {
    error << "cutover report migration: cannot read the fleet's Redis at "
          << options.redis->display_url << ": " << e.what() << "\n";
    return 1;
  }
  if (!record) {
    error << "cutover report migration: no migration named '" << options.migration << "' in "
          << (options.redis ? options.redis->display_url : options.store_path) << "\n";
    return 1;
  }
  const auto history = store->history(options.migration, 20);
  const auto pairs = store->shadow_pairs(options.migration, 10'000);
  // Live volume: the migration's models over the last day, scaled to a day if younger.
  const auto now = util::unix_ms_now();
  std::int64_t requests = 0;
  std::int64_t first_minute = now;
  for (const auto& row : store->usage(now - kDayMs, now + 60'000)) {
    if (row.traffic != "live") continue;
    if (std::find(options.models.begin(), options.models.end(), row.model) == options.models.end()) continue;
    requests += row.requests;
    first_minute = std::min(first_minute, row.minute_unix_ms);
  }
  const double span_ms = std::max<double>(60'000, static_cast<double>(now - first_minute));
  const double per_day = requests > 0 ? static_cast<double>(requests) * kDayMs / span_ms : 0;
  const auto summary = migration::summarize_pairs(pairs);
  const auto projection = migration::project_costs(pairs, per_day, options.currency);
  if (options.format == "json") {
    json::array transitions;
    for (const auto& t : history) {
      transitions.push_back(json::object{{"generation", t.generation}, {"at", iso_time(t.at_unix_ms)},
                                         {"from", t.from_state}, {"to", t.to_state},
                                         {"weight_before", t.weight_before},
                                         {"weight_after", t.weight_after}, {"trigger", t.trigger}});
    }
    out << json::serialize(json::object{{"migration", options.migration},
                                        {"phase", record->state},
                                        {"weight", record->weight},
                                        {"stage", record->stage},
                                        {"generation", record->generation},
                                        {"history", std::move(transitions)},
                                        {"shadow", summary},
                                        {"projection", projection}})
        << "\n";
    return 0;
  }
  out << "Migration:   " << options.migration << "\n"
      << "Phase:       " << record->state << " (stage " << record->stage + 1 << ")\n"
      << "Weight:      " << percent(json::value(record->weight)) << " to the candidate\n"
      << "Generation:  " << record->generation << "\n\nTransitions\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : history) {
    rows.push_back({iso_time(t.at_unix_ms), std::to_string(t.generation),
                    (t.from_state.empty() ? "-" : t.from_state) + " → " + t.to_state,
                    percent(json::value(t.weight_before)) + " → " + percent(json::value(t.weight_after)),
                    t.trigger});
  }
  print_table(out, {"TIME", "GEN", "PHASE", "WEIGHT", "TRIGGER"}, rows);
  const auto& p = summary.at("primary").as_object();
  const auto& c = summary.at("candidate").as_object();
  out << "\nShadow comparison (" << summary.at("pairs").to_number<std::int64_t>() << " pairs, "
      << summary.at("compared").to_number<std::int64_t>() << " compared, "
      << summary.at("candidate_failures").to_number<std::int64_t>() << " candidate failures)\n";
  print_table(out, {"", "PRIMARY", "CANDIDATE"},
              {{"latency p50 ms", number(p.at("latency_p50_ms"), 1), number(c.at("latency_p50_ms"), 1)},
               {"latency p95 ms", number(p.at("latency_p95_ms"), 1), number(c.at("latency_p95_ms"), 1)},
               {"ttft p95 ms", number(p.at("ttft_p95_ms"), 1), number(c.at("ttft_p95_ms"), 1)},
               {"completion tokens", number(p.at("completion_tokens"), 0), number(c.at("completion_tokens"), 0)},
               {"cost", number(p.at("cost"), 6), number(c.at("cost"), 6)}});
  out << "Agreement: mean score " << number(summary.at("mean_score"), 3) << ", exact match "
      << percent(summary.at("exact_match_rate")) << ", ROUGE-L " << number(summary.at("mean_rouge_l"), 3)
      << ", finish reasons agree " << percent(summary.at("finish_reason_agreement")) << "\n";
  out << "\nShould we move? (30 days at " << number(projection.at("live_requests_per_day"), 0)
      << " live requests a day, " << options.currency << ")\n";
  print_table(out, {"", "TODAY (PRIMARY)", "AT 100% CANDIDATE", "DIFFERENCE"},
              {{"cost per request", number(projection.at("primary_cost_per_request"), 6),
                number(projection.at("candidate_cost_per_request"), 6), ""},
               {"monthly cost", number(projection.at("monthly_cost_primary")),
                number(projection.at("monthly_cost_candidate")), number(projection.at("monthly_difference"))},
               {"latency p95 ms", number(projection.at("latency_p95_ms").at("primary"), 1),
                number(projection.at("latency_p95_ms").at("candidate"), 1), ""},
               {"agreement", "", number(projection.at("agreement_mean"), 3), ""},
               {"candidate failures", "", percent(projection.at("candidate_failure_rate")), ""}});
  return 0;
}

}  // namespace cutover::report
