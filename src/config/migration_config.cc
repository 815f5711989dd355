// Parsing of the `migrations` list: who moves where, how traffic is split, the ladder of stages,
// the gates that judge each stage, the rollback plan and who hears about transitions.
#include <algorithm>
#include <set>

#include "config/validator.h"
#include "migration/webhook_notifier.h"
#include "util/sha256.h"

namespace cutover::config::detail {

namespace {

// Shares are written as a fraction (0.05) or a percentage ("5%").
std::optional<double> share_at(Validator& v, const YAML::Node& node, const std::string& path) {
  if (node.IsScalar() && !node.Scalar().empty() && node.Scalar().back() == '%') {
    const std::string number = node.Scalar().substr(0, node.Scalar().size() - 1);
    double value = 0;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec == std::errc() && end == number.data() + number.size() && value >= 0 && value <= 100) {
      return value / 100;
    }
    v.error(node, path, "must be a percentage from 0% to 100%");
    return std::nullopt;
  }
  return ratio_at(v, node, path, 0, 1);
}

std::optional<StickyKey> sticky_at(Validator& v, const YAML::Node& node, const std::string& path) {
  const auto text = v.string_at(node, path);
  if (!text) return std::nullopt;
  StickyKey key;
  if (text->rfind("header:", 0) == 0 && text->size() > 7) {
    key.source = StickyKey::Source::header;
    key.header = text->substr(7);
    std::transform(key.header.begin(), key.header.end(), key.header.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  } else if (*text == "user") {
    key.source = StickyKey::Source::user_field;
  } else if (*text == "client_key") {
    key.source = StickyKey::Source::client_key;
  } else if (*text == "request_id") {
    key.source = StickyKey::Source::request_id;
  } else {
    v.error(node, path, "must be header:NAME, user, client_key or request_id");
    return std::nullopt;
  }
  return key;
}

std::optional<double> quantile_at(Validator& v, const YAML::Node& node, const std::string& path) {
  if (node.IsScalar() && node.Scalar().size() > 1 && node.Scalar()[0] == 'p') {
    const std::string digits = node.Scalar().substr(1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec == std::errc() && end == digits.data() + digits.size() && value >= 1 && value <= 99) {
      return value / 100.0;
    }
  }
  v.error(node, path, "must be a percentile such as p50, p95 or p99");
  return std::nullopt;
}

void parse_shadow(Validator& v, const YAML::Node& node, const std::string& path,
                  ShadowSettings& shadow) {
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path,
                        {"sample_rate", "max_in_flight", "max_tokens_per_hour",
                         "max_cost_per_hour", "timeout", "store_text", "retention",
                         "min_duration", "min_pairs", "during_canary"});
  if (node["sample_rate"]) {
    shadow.sample_rate = share_at(v, node["sample_rate"], path + ".sample_rate").value_or(0);
  }
  if (node["max_in_flight"]) {
    shadow.max_in_flight = v.integer_at<std::size_t>(node["max_in_flight"],
                                                     path + ".max_in_flight", 1, 100'000)
                               .value_or(shadow.max_in_flight);
  }
  if (node["max_tokens_per_hour"]) {
    shadow.max_tokens_per_hour =
        v.integer_at<std::uint64_t>(node["max_tokens_per_hour"], path + ".max_tokens_per_hour", 0,
                                    1ull << 50)
            .value_or(0);
  }
  if (node["max_cost_per_hour"]) {
    shadow.max_cost_per_hour =
        ratio_at(v, node["max_cost_per_hour"], path + ".max_cost_per_hour", 0, 1e9).value_or(0);
  }
  if (node["timeout"]) shadow.timeout = v.duration_at(node["timeout"], path + ".timeout").value_or(shadow.timeout);
  if (node["store_text"]) shadow.store_text = v.bool_at(node["store_text"], path + ".store_text").value_or(false);
  if (node["retention"]) {
    shadow.retention =
        v.integer_at<std::size_t>(node["retention"], path + ".retention", 1, 100'000'000)
            .value_or(shadow.retention);
  }
  if (node["min_duration"]) {
    shadow.min_duration =
        v.duration_at(node["min_duration"], path + ".min_duration").value_or(shadow.min_duration);
  }
  if (node["min_pairs"]) {
    shadow.min_pairs = v.integer_at<std::size_t>(node["min_pairs"], path + ".min_pairs", 0, 1'000'000)
                           .value_or(shadow.min_pairs);
  }
  if (node["during_canary"]) {
    shadow.during_canary = v.bool_at(node["during_canary"], path + ".during_canary").value_or(true);
  }
}

void parse_stages(Validator& v, const YAML::Node& node, const std::string& path,
                  std::vector<Stage>& stages) {
  if (!node.IsSequence() || node.size() == 0) {
    v.error(node, path, "must be a non-empty list of {weight, min_duration, min_requests}");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string spath = path + "[" + std::to_string(i) + "]";
    const auto& entry = node[i];
    if (!v.expect_map(entry, spath)) continue;
    v.reject_unknown_keys(entry, spath, {"weight", "min_duration", "min_requests"});
    Stage stage;
    if (!entry["weight"]) {
      v.error(entry, spath, "missing required key weight");
      continue;
    }
    stage.weight = share_at(v, entry["weight"], spath + ".weight").value_or(0);
    if (entry["min_duration"]) {
      stage.min_duration =
          v.duration_at(entry["min_duration"], spath + ".min_duration").value_or(stage.min_duration);
    }
    if (entry["min_requests"]) {
      stage.min_requests = v.integer_at<std::uint64_t>(entry["min_requests"],
                                                       spath + ".min_requests", 0, 1ull << 40)
                               .value_or(stage.min_requests);
    }
    if (stage.weight <= 0) {
      v.error(entry["weight"], spath + ".weight", "must be above 0%");
    } else if (!stages.empty() && stage.weight <= stages.back().weight) {
      v.error(entry["weight"], spath + ".weight", "stage weights must increase");
    }
    stages.push_back(stage);
  }
}

void parse_gates(Validator& v, const YAML::Node& node, const std::string& path, Gates& gates) {
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path,
                        {"max_error_rate", "max_attempt_error_rate", "max_rate_limited_share",
                         "max_quota_share", "confidence", "latency", "min_latency_samples",
                         "min_agreement", "min_shadow_pairs", "inconclusive_dwells_before_pause"});
  if (node["max_error_rate"]) {
    gates.max_error_rate = share_at(v, node["max_error_rate"], path + ".max_error_rate")
                               .value_or(gates.max_error_rate);
  }
  if (node["max_attempt_error_rate"]) {
    gates.max_attempt_error_rate =
        share_at(v, node["max_attempt_error_rate"], path + ".max_attempt_error_rate")
            .value_or(gates.max_attempt_error_rate);
  }
  if (node["max_rate_limited_share"]) {
    gates.max_rate_limited_share =
        share_at(v, node["max_rate_limited_share"], path + ".max_rate_limited_share")
            .value_or(gates.max_rate_limited_share);
  }
  if (node["max_quota_share"]) {
    const auto share = share_at(v, node["max_quota_share"], path + ".max_quota_share");
    if (share && *share <= 0) {
      v.error(node["max_quota_share"], path + ".max_quota_share",
              "must be above 0% (it would hold every stage)");
    } else if (share) {
      gates.max_quota_share = *share;
    }
  }
  if (node["confidence"]) {
    gates.confidence = ratio_at(v, node["confidence"], path + ".confidence", 0.5, 0.9999)
                           .value_or(gates.confidence);
  }
  if (node["min_latency_samples"]) {
    gates.min_latency_samples = v.integer_at<std::size_t>(node["min_latency_samples"],
                                                          path + ".min_latency_samples", 1, 1'000'000)
                                    .value_or(gates.min_latency_samples);
  }
  if (node["min_agreement"]) {
    gates.min_agreement = ratio_at(v, node["min_agreement"], path + ".min_agreement", 0, 1);
  }
  if (node["min_shadow_pairs"]) {
    gates.min_shadow_pairs = v.integer_at<std::size_t>(node["min_shadow_pairs"],
                                                       path + ".min_shadow_pairs", 1, 1'000'000)
                                 .value_or(gates.min_shadow_pairs);
  }
  if (node["inconclusive_dwells_before_pause"]) {
    gates.inconclusive_dwells_before_pause =
        v.integer_at<unsigned>(node["inconclusive_dwells_before_pause"],
                               path + ".inconclusive_dwells_before_pause", 1, 1000)
            .value_or(gates.inconclusive_dwells_before_pause);
  }
  if (const auto& latency = node["latency"]) {
    gates.latency.clear();
    if (!latency.IsSequence()) {
      v.error(latency, path + ".latency", "must be a list of {measure, quantile, max, max_ratio}");
      return;
    }
    for (std::size_t i = 0; i < latency.size(); ++i) {
      const std::string lpath = path + ".latency[" + std::to_string(i) + "]";
      const auto& entry = latency[i];
      if (!v.expect_map(entry, lpath)) continue;
      v.reject_unknown_keys(entry, lpath, {"measure", "quantile", "max", "max_ratio"});
      LatencyGate gate;
      const auto measure = entry["measure"] ? v.string_at(entry["measure"], lpath + ".measure").value_or("")
                                            : std::string("total");
      if (measure == "total") {
        gate.measure = LatencyGate::Measure::total;
      } else if (measure == "ttft" || measure == "time_to_first_token") {
        gate.measure = LatencyGate::Measure::time_to_first_token;
      } else if (measure == "tpot" || measure == "time_per_output_token") {
        gate.measure = LatencyGate::Measure::time_per_output_token;
      } else {
        v.error(entry["measure"], lpath + ".measure", "must be total, ttft or tpot");
      }
      if (entry["quantile"]) gate.quantile = quantile_at(v, entry["quantile"], lpath + ".quantile").value_or(0.95);
      if (entry["max"]) gate.max = v.duration_at(entry["max"], lpath + ".max");
      if (entry["max_ratio"]) gate.max_ratio = ratio_at(v, entry["max_ratio"], lpath + ".max_ratio", 1, 100);
      if (!gate.max && !gate.max_ratio) {
        v.error(entry, lpath, "needs max (a duration), max_ratio (to the primary) or both");
      }
      gates.latency.push_back(gate);
    }
  }
}

void parse_rollback(Validator& v, const YAML::Node& node, const std::string& path,
                    RollbackPlan& plan) {
  if (!v.expect_map(node, path)) return;
  v.reject_unknown_keys(node, path, {"steps", "step_duration", "gradual_on_breach"});
  if (const auto& steps = node["steps"]) {
    if (!steps.IsSequence()) {
      v.error(steps, path + ".steps", "must be a list of decreasing weights ending at 0%");
    } else {
      for (std::size_t i = 0; i < steps.size(); ++i) {
        const auto weight = share_at(v, steps[i], path + ".steps[" + std::to_string(i) + "]");
        if (!weight) continue;
        if (!plan.steps.empty() && *weight >= plan.steps.back()) {
          v.error(steps[i], path + ".steps", "rollback weights must decrease");
        }
        plan.steps.push_back(*weight);
      }
      if (!plan.steps.empty() && plan.steps.back() != 0) plan.steps.push_back(0);
    }
  }
  if (node["step_duration"]) {
    plan.step_duration =
        v.duration_at(node["step_duration"], path + ".step_duration").value_or(plan.step_duration);
  }
  if (node["gradual_on_breach"]) {
    plan.gradual_on_breach =
        v.bool_at(node["gradual_on_breach"], path + ".gradual_on_breach").value_or(false);
  }
}

void parse_webhooks(Validator& v, const YAML::Node& node, const std::string& path,
                    std::vector<Webhook>& webhooks) {
  if (!node.IsSequence()) {
    v.error(node, path, "must be a list of {url, timeout}");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string wpath = path + "[" + std::to_string(i) + "]";
    const auto& entry = node[i];
    Webhook webhook;
    if (entry.IsScalar()) {
      webhook.url = entry.Scalar();
    } else if (v.expect_map(entry, wpath)) {
      v.reject_unknown_keys(entry, wpath, {"url", "timeout"});
      if (entry["url"]) webhook.url = v.string_at(entry["url"], wpath + ".url").value_or("");
      if (entry["timeout"]) {
        webhook.timeout = v.duration_at(entry["timeout"], wpath + ".timeout").value_or(webhook.timeout);
      }
    } else {
      continue;
    }
    if (webhook.url.rfind("http://", 0) != 0 && webhook.url.rfind("https://", 0) != 0) {
      v.error(entry, wpath, "url must start with http:// or https://");
      continue;
    }
    if (auto problem = migration::validate_webhook_url(webhook.url)) {
      v.error(entry, wpath, *problem);
      continue;
    }
    webhooks.push_back(std::move(webhook));
  }
}

std::string sticky_text(const StickyKey& key) {
  switch (key.source) {
    case StickyKey::Source::header:
      return "header:" + key.header;
    case StickyKey::Source::user_field:
      return "user";
    case StickyKey::Source::client_key:
      return "client_key";
    case StickyKey::Source::request_id:
      return "request_id";
  }
  return "";
}

// What defines a run: a change to any of it sends traffic back to the primary and restarts.
std::string fingerprint_of(const Migration& migration, const Provider& candidate) {
  std::ostringstream out;
  out << migration.primary << '|' << migration.candidate << '|' << migration.salt << '|'
      << sticky_text(migration.sticky) << '|';
  for (const auto& model : migration.models) {
    out << model << '=' << candidate.models.at(model) << ',';
  }
  out << '|';
  for (const auto& endpoint : candidate.endpoints) {
    out << endpoint.base_url << '#' << endpoint.weight << ',';
  }
  out << '|';
  for (const auto& stage : migration.stages) {
    out << stage.weight << '/' << stage.min_duration.count() << '/' << stage.min_requests << ',';
  }
  return util::sha256_hex(out.str()).substr(0, 16);
}

}  // namespace

void parse_migrations(Validator& v, const YAML::Node& node, Config& config) {
  if (!node.IsSequence()) {
    v.error(node, "migrations", "must be a list of migrations");
    return;
  }
  std::set<std::string> names;
  std::set<std::string> migrated_models;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const auto& entry = node[i];
    std::string path = "migrations[" + std::to_string(i) + "]";
    if (!v.expect_map(entry, path)) continue;
    v.reject_unknown_keys(entry, path,
                          {"name", "models", "primary", "candidate", "sticky_key",
                           "sticky_fallback", "salt", "shadow", "stages", "gates", "rollback",
                           "webhooks", "evaluation_interval"});
    Migration migration;
    if (!entry["name"] || !entry["primary"] || !entry["candidate"] || !entry["models"] ||
        !entry["stages"]) {
      v.error(entry, path, "needs name, models, primary, candidate and stages");
      continue;
    }
    migration.name = v.string_at(entry["name"], path + ".name").value_or("");
    if (migration.name.empty() ||
        migration.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-_.") != std::string::npos) {
      v.error(entry["name"], path + ".name", "must be letters, digits, '-', '_' or '.'");
      continue;
    }
    if (!names.insert(migration.name).second) {
      v.error(entry["name"], path + ".name", "migration '" + migration.name + "' appears twice");
    }
    path = "migrations." + migration.name;
    migration.primary = v.string_at(entry["primary"], path + ".primary").value_or("");
    migration.candidate = v.string_at(entry["candidate"], path + ".candidate").value_or("");
    const Provider* primary = config.find_provider(migration.primary);
    const Provider* candidate = config.find_provider(migration.candidate);
    if (primary == nullptr) {
      v.error(entry["primary"], path + ".primary", "unknown provider '" + migration.primary + "'");
    }
    if (candidate == nullptr) {
      v.error(entry["candidate"], path + ".candidate",
              "unknown provider '" + migration.candidate + "'");
    }
    if (primary != nullptr && primary == candidate) {
      v.error(entry["candidate"], path + ".candidate", "must differ from the primary");
    }
    if (entry["models"].IsScalar()) {
      migration.models.push_back(entry["models"].Scalar());
    } else if (entry["models"].IsSequence()) {
      for (const auto& model : entry["models"]) migration.models.push_back(model.as<std::string>(""));
    } else {
      v.error(entry["models"], path + ".models", "must be a model name or a list of them");
    }
    for (const auto& model : migration.models) {
      auto route = config.routes.find(model);
      if (route == config.routes.end()) {
        v.error(entry["models"], path + ".models", "model '" + model + "' has no route");
        continue;
      }
      if (primary && route->second.provider != migration.primary) {
        v.error(entry["models"], path + ".models",
                "model '" + model + "' is routed to '" + route->second.provider +
                    "', not to the primary '" + migration.primary + "'");
      }
      if (candidate && !candidate->models.contains(model)) {
        v.error(entry["models"], path + ".models",
                "candidate '" + migration.candidate + "' has no model map entry for '" + model + "'");
      }
      if (!migrated_models.insert(model).second) {
        v.error(entry["models"], path + ".models",
                "model '" + model + "' is in more than one migration");
      }
    }
    migration.salt = migration.name;
    if (entry["salt"]) migration.salt = v.string_at(entry["salt"], path + ".salt").value_or(migration.salt);
    if (entry["sticky_key"]) {
      if (auto key = sticky_at(v, entry["sticky_key"], path + ".sticky_key")) migration.sticky = *key;
    }
    if (entry["sticky_fallback"]) {
      if (auto key = sticky_at(v, entry["sticky_fallback"], path + ".sticky_fallback")) {
        migration.sticky_fallback = *key;
      }
    }
    if (entry["shadow"]) parse_shadow(v, entry["shadow"], path + ".shadow", migration.shadow);
    parse_stages(v, entry["stages"], path + ".stages", migration.stages);
    migration.gates.latency.push_back(LatencyGate{LatencyGate::Measure::total, 0.95, std::nullopt, 1.5});
    if (entry["gates"]) parse_gates(v, entry["gates"], path + ".gates", migration.gates);
    if (entry["rollback"]) parse_rollback(v, entry["rollback"], path + ".rollback", migration.rollback);
    if (entry["webhooks"]) parse_webhooks(v, entry["webhooks"], path + ".webhooks", migration.webhooks);
    if (entry["evaluation_interval"]) {
      migration.evaluation_interval =
          v.duration_at(entry["evaluation_interval"], path + ".evaluation_interval")
              .value_or(migration.evaluation_interval);
      if (migration.evaluation_interval > Milliseconds(1000)) {
        v.error(entry["evaluation_interval"], path + ".evaluation_interval",
                "must be at most 1s: a breach must reach weight 0 within a second");
      }
    }
    if (candidate != nullptr && primary != nullptr) {
      bool models_ok = std::all_of(migration.models.begin(), migration.models.end(),
                                   [&](const auto& m) { return candidate->models.contains(m); });
      if (models_ok) migration.fingerprint = fingerprint_of(migration, *candidate);
    }
    config.migrations.push_back(std::move(migration));
  }
}

}  // namespace cutover::config::detail
