#include "admin/ctl.h"

#include "util/table.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <algorithm>
#include <cctype>
#include <ctime>
#include <iomanip>
#include <optional>
#include <ostream>
#include <sstream>

namespace cutover::admin {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using util::print_table;

namespace {

struct Answer {
  unsigned status = 0;
  std::string body;
};

// "Connection refused" as it reads inside a sentence.
std::string lower_first(std::string text) {
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// Thrown with one line a person can act on; Boost's own messages name source files.
[[noreturn]] void unreachable(const std::string& where, const boost::system::error_code& ec) {
  const bool nobody_listening = ec == asio::error::connection_refused;
  throw std::runtime_error(
      "cannot reach the admin API at " + where + ": " + lower_first(ec.message()) +
      (nobody_listening ? " (is the gateway running with an admin section?)" : ""));
}

[[noreturn]] void broken_exchange(const std::string& where, const boost::system::error_code& ec) {
  throw std::runtime_error("the admin API at " + where + " did not answer: " +
                           lower_first(ec.message()));
}

Answer call(const CtlTarget& target, bhttp::verb method, const std::string& path,
            const std::string& body = {}) {
  auto url = boost::urls::parse_absolute_uri(target.admin_url);
  if (!url || url->scheme() != "http") {
    throw std::runtime_error("admin URL '" + target.admin_url + "' must be http://HOST:PORT");
  }
  const auto host = std::string(url->host());
  const auto port = url->has_port() ? std::string(url->port()) : std::string("80");
  const auto where = std::string(url->encoded_host_and_port());
  asio::io_context context;
  asio::ip::tcp::resolver resolver(context);
  boost::beast::tcp_stream stream(context);
  boost::system::error_code ec;
  const auto addresses = resolver.resolve(host, port, ec);
  if (ec) unreachable(where, ec);
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(addresses, ec);
  if (ec) unreachable(where, ec);
  bhttp::request<bhttp::string_body> request{method, path, 11};
  request.set(bhttp::field::host, host);
  request.set(bhttp::field::authorization, "Bearer " + target.token);
  if (!body.empty()) {
    request.set(bhttp::field::content_type, "application/json");
    request.body() = body;
  }
  request.prepare_payload();
  bhttp::write(stream, request, ec);
  if (ec) broken_exchange(where, ec);
  boost::beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> response;
  bhttp::read(stream, buffer, response, ec);
  if (ec) broken_exchange(where, ec);
  return {response.result_int(), response.body()};
}

std::string text(const json::value& value) {
  if (value.is_string()) return std::string(value.get_string());
  if (value.is_double()) {
    std::ostringstream out;
    out << std::fixed << std::setprecision(2) << value.get_double();
    return out.str();
  }
  return json::serialize(value);
}


void print_breakers(std::ostream& out, const json::array& breakers) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : breakers) {
    rows.push_back({text(b.at("provider")), text(b.at("endpoint")), text(b.at("state")),
                    text(b.at("failure_rate")), text(b.at("slow_call_rate")), text(b.at("calls")),
                    text(b.at("trips")), b.at("throttled").as_bool() ? "yes" : "no",
                    text(b.at("open_for_ms")), text(b.at("last_resort_calls")),
                    text(b.at("base_url"))});
  }
  print_table(out, {"PROVIDER", "ENDPOINT", "STATE", "FAILURES", "SLOW", "CALLS", "TRIPS",
                    "THROTTLED", "OPEN_MS", "LAST_RESORT", "URL"},
              rows);
}

void print_quotas(std::ostream& out, const json::array& quotas) {
  std::vector<std::vector<std::string>> rows;
  auto figure = [](const json::value& value) { return value.is_null() ? std::string("-") : text(value); };
  for (const auto& q : quotas) {
    rows.push_back({text(q.at("provider")), text(q.at("endpoint")),
                    figure(q.at("requests_remaining")) + "/" + figure(q.at("request_limit")),
                    figure(q.at("requests_reset_ms")),
                    figure(q.at("tokens_remaining")) + "/" + figure(q.at("token_limit")),
                    figure(q.at("tokens_reset_ms")), q.at("exhausted").as_bool() ? "yes" : "no",
                    text(q.at("base_url"))});
  }
  print_table(out, {"PROVIDER", "ENDPOINT", "REQUESTS LEFT", "RESET_MS", "TOKENS LEFT", "RESET_MS",
                    "EXHAUSTED", "URL"},
              rows);
}

std::string percent(const json::value& share) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << share.to_number<double>() * 100 << "%";
  return out.str();
}

std::string clock_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::ostringstream out;
  out << std::put_time(&utc, "%Y-%m-%d %H:%M:%S") << "Z";
  return out.str();
}

std::string age(std::int64_t ms) {
  std::ostringstream out;
  if (ms >= 3'600'000) out << ms / 3'600'000 << "h";
  if (ms >= 60'000) out << (ms / 60'000) % 60 << "m";
  out << (ms / 1000) % 60 << "s";
  return out.str();
}

void print_transitions(std::ostream& out, const json::array& transitions) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : transitions) {
    std::string from = text(t.at("from"));
    rows.push_back({clock_time(t.at("at_unix_ms").to_number<std::int64_t>()),
                    text(t.at("generation")), (from.empty() ? "-" : from) + " → " + text(t.at("to")),
                    percent(t.at("weight_before")) + " → " + percent(t.at("weight_after")),
                    text(t.at("trigger"))});
    const auto& detail = t.at("detail");
    if (detail.is_object()) {
      if (const auto* breach = detail.get_object().if_contains("breach")) {
        rows.push_back({"", "", "", "", "  " + text(*breach)});
      }
      if (const auto* reason = detail.get_object().if_contains("reason")) {
        rows.push_back({"", "", "", "", "  reason: " + text(*reason)});
      }
    }
  }
  print_table(out, {"TIME", "GEN", "PHASE", "WEIGHT", "TRIGGER"}, rows);
}

// Like `kubectl argo rollouts get rollout`: where the migration is, its ladder, its gates.
void print_migration(std::ostream& out, const json::object& m, const json::array& recent) {
  const auto& stages = m.at("stages").as_array();
  out << "Name:        " << text(m.at("name")) << "\n"
      << "Models:      " << json::serialize(m.at("models")) << "  (" << text(m.at("primary"))
      << " → " << text(m.at("candidate")) << ")\n"
      << "Phase:       " << text(m.at("phase"));
  const auto phase = text(m.at("phase"));
  if (phase == "canary" || phase == "paused") {
    out << "  (stage " << m.at("stage").to_number<std::int64_t>() + 1 << " of " << stages.size()
        << ")";
  }
  out << "\n"
      << "Weight:      " << percent(m.at("weight")) << " to the candidate\n"
      << "Generation:  " << text(m.at("generation")) << "\n"
      << "In phase:    " << age(m.at("stage_elapsed_ms").to_number<std::int64_t>()) << "\n";
  if (const auto* store = m.if_contains("store"); store && store->is_object()) {
    const auto& shared = store->as_object();
    if (text(shared.at("kind")) == "redis") {
      const auto leader = text(shared.at("leader"));
      out << "Store:       redis, "
          << (shared.at("up").as_bool() ? "up" : "UNREACHABLE (failing static)") << "; replica "
          << text(shared.at("replica")) << ", leader " << (leader.empty() ? "none" : leader)
          << (shared.at("leading").as_bool() ? " (this replica)" : "") << "\n";
      if (const auto* replicas = shared.if_contains("replicas"); replicas && replicas->is_array()) {
        out << "Replicas:    ";
        const char* separator = "";
        for (const auto& replica : replicas->as_array()) {
          out << separator << text(replica.at("replica")) << " (seen "
              << age(replica.at("last_seen_ms_ago").to_number<std::int64_t>()) << " ago)";
          separator = ", ";
        }
        out << "\n";
      }
      if (const auto* merged = shared.if_contains("window_replicas"); merged && merged->is_array()) {
        out << "Gates judge: the traffic of " << merged->as_array().size() << " replica(s)\n";
      }
    }
  }
  const auto& annotations = m.at("annotations").as_object();
  if (const auto* reason = annotations.if_contains("reason")) out << "Reason:      " << text(*reason) << "\n";
  const auto& shadow = m.at("shadow").as_object();
  out << "Shadow:      " << (m.at("shadowing").as_bool() ? "on" : "off") << ", sample "
      << percent(shadow.at("sample_rate")) << ", " << text(shadow.at("pairs_recorded"))
      << " pairs, in flight " << text(shadow.at("in_flight")) << ", dropped "
      << text(shadow.at("dropped_in_flight")) << " (in-flight cap) + "
      << text(shadow.at("dropped_spend")) << " (spend cap)\n";
  out << "Stages:\n";
  for (const auto& stage : stages) {
    const auto state = text(stage.at("state"));
    const char* mark = state == "done" ? "✔" : state == "current" ? "►" : "·";
    out << "  " << mark << " " << std::left << std::setw(8) << percent(stage.at("weight"))
        << " min " << age(stage.at("min_duration_ms").to_number<std::int64_t>()) << ", "
        << text(stage.at("min_requests")) << " candidate requests\n";
  }
  const auto& evaluation = m.at("evaluation").as_object();
  out << "Gates:       " << text(evaluation.at("verdict")) << " (candidate "
      << text(evaluation.at("candidate_requests")) << " requests, primary "
      << text(evaluation.at("primary_requests")) << ", shadow pairs "
      << text(evaluation.at("shadow_pairs")) << ")\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& gate : evaluation.at("gates").as_array()) {
    rows.push_back({"  " + text(gate.at("gate")), text(gate.at("verdict")), text(gate.at("summary"))});
  }
  if (!rows.empty()) print_table(out, {"  GATE", "VERDICT", "FIGURES"}, rows);
  if (!recent.empty()) {
    out << "Recent transitions:\n";
    print_transitions(out, recent);
  }
}

void print_shadow(std::ostream& out, const json::object& s) {
  auto side = [&](const char* name) {
    const auto& x = s.at(name).as_object();
    return std::vector<std::string>{name, text(x.at("latency_p50_ms")), text(x.at("latency_p95_ms")),
                                    text(x.at("ttft_p50_ms")), text(x.at("ttft_p95_ms")),
                                    text(x.at("prompt_tokens")), text(x.at("completion_tokens")),
                                    text(x.at("cost"))};
  };
  out << "Pairs: " << text(s.at("pairs")) << " (compared " << text(s.at("compared"))
      << ", candidate failures " << text(s.at("candidate_failures")) << ")\n"
      << "Agreement: mean score " << text(s.at("mean_score")) << ", exact match "
      << percent(s.at("exact_match_rate")) << ", token F1 " << text(s.at("mean_similarity"))
      << ", ROUGE-L " << text(s.at("mean_rouge_l")) << ", length ratio "
      << text(s.at("mean_length_ratio")) << ", finish reason agreement "
      << percent(s.at("finish_reason_agreement")) << "\n";
  out << "Score histogram (0.0–1.0 in tenths): " << json::serialize(s.at("score_histogram")) << "\n";
  print_table(out, {"SIDE", "P50_MS", "P95_MS", "TTFT_P50", "TTFT_P95", "TOKENS_IN", "TOKENS_OUT", "COST"},
              {side("primary"), side("candidate")});
}

std::optional<double> parse_share(const std::string& word) {
  try {
    std::size_t used = 0;
    double value = std::stod(word, &used);
    if (used == word.size() - 1 && word.back() == '%') value /= 100;
    else if (used != word.size()) return std::nullopt;
    if (value < 0 || value > 1) return std::nullopt;
    return value;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

int run_ctl(const CtlTarget& target, const std::vector<std::string>& words, std::ostream& out,
            std::ostream& error) {
  const std::string usage =
      "usage: cutover ctl breakers | breaker PROVIDER ENDPOINT force_open|disable|reset | budgets | quotas\n"
      "       cutover ctl cache | cache purge\n"
      "       cutover ctl migrations | get NAME | history NAME | shadow NAME\n"
      "       cutover ctl pause|resume|promote|promote-full|rollback|abort NAME [REASON...]\n"
      "       cutover ctl set-weight NAME WEIGHT   (0.25 or 25%)";
  static const std::vector<std::string> kActions = {"pause",    "resume", "promote", "promote-full",
                                                    "rollback", "abort",  "set-weight"};
  if (words.empty()) {
    error << usage << "\n";
    return 2;
  }
  try {
    Answer answer;
    if (words[0] == "breakers" && words.size() == 1) {
      answer = call(target, bhttp::verb::get, "/admin/v1/breakers");
    } else if (words[0] == "breaker" && words.size() == 4) {
      answer = call(target, bhttp::verb::post,
                    "/admin/v1/breakers/" + words[1] + "/" + words[2] + "/" + words[3]);
    } else if (words[0] == "budgets" && words.size() == 1) {
      answer = call(target, bhttp::verb::get, "/admin/v1/retry-budgets");
    } else if (words[0] == "quotas" && words.size() == 1) {
      answer = call(target, bhttp::verb::get, "/admin/v1/quotas");
    } else if (words[0] == "cache" && words.size() == 1) {
      answer = call(target, bhttp::verb::get, "/admin/v1/cache");
    } else if (words[0] == "cache" && words.size() == 2 && words[1] == "purge") {
      answer = call(target, bhttp::verb::post, "/admin/v1/cache/purge");
    } else if (words[0] == "migrations" && words.size() == 1) {
      answer = call(target, bhttp::verb::get, "/admin/v1/migrations");
    } else if ((words[0] == "get" || words[0] == "status") && words.size() == 2) {
      answer = call(target, bhttp::verb::get, "/admin/v1/migrations/" + words[1]);
    } else if (words[0] == "history" && words.size() == 2) {
      answer = call(target, bhttp::verb::get, "/admin/v1/migrations/" + words[1] + "/history?limit=50");
    } else if (words[0] == "shadow" && words.size() == 2) {
      answer = call(target, bhttp::verb::get, "/admin/v1/migrations/" + words[1] + "/shadow");
    } else if (std::find(kActions.begin(), kActions.end(), words[0]) != kActions.end() &&
               words.size() >= 2) {
      // Read, then act on what was read: the generation makes a concurrent change fail loudly
      // instead of being overridden.
      auto current = call(target, bhttp::verb::get, "/admin/v1/migrations/" + words[1]);
      auto status = json::parse(current.body);
      if (current.status != 200) {
        error << "admin API answered " << current.status << ": "
              << text(status.at("error").at("message")) << "\n";
        return 1;
      }
      json::object command{{"generation", status.at("generation")}};
      const char* user = std::getenv("USER");
      command["actor"] = user ? user : "cli";
      std::size_t reason_from = 2;
      if (words[0] == "set-weight") {
        const auto weight = words.size() >= 3 ? parse_share(words[2]) : std::nullopt;
        if (!weight) {
          error << "set-weight needs a weight from 0 to 1 or 0% to 100%\n";
          return 2;
        }
        command["weight"] = *weight;
        reason_from = 3;
      }
      std::string reason;
      for (std::size_t i = reason_from; i < words.size(); ++i) reason += (reason.empty() ? "" : " ") + words[i];
      if (!reason.empty()) command["reason"] = reason;
      answer = call(target, bhttp::verb::post, "/admin/v1/migrations/" + words[1] + "/" + words[0],
                    json::serialize(command));
    } else {
      error << usage << "\n";
      return 2;
    }
    auto body = json::parse(answer.body);
    if (answer.status != 200) {
      error << "admin API answered " << answer.status << ": "
            << text(body.at("error").at("message")) << "\n";
      return 1;
    }
    if (words[0] == "migrations") {
      std::vector<std::vector<std::string>> rows;
      for (const auto& m : body.at("migrations").as_array()) {
        rows.push_back({text(m.at("name")), text(m.at("primary")) + " → " + text(m.at("candidate")),
                        text(m.at("phase")), percent(m.at("weight")),
                        std::to_string(m.at("stage").to_number<std::int64_t>() + 1) + "/" +
                            text(m.at("stages")),
                        text(m.at("generation")), text(m.at("verdict"))});
      }
      print_table(out, {"NAME", "MOVE", "PHASE", "WEIGHT", "STAGE", "GEN", "GATES"}, rows);
    } else if (words[0] == "get" || words[0] == "status") {
      auto history = call(target, bhttp::verb::get, "/admin/v1/migrations/" + words[1] + "/history?limit=5");
      json::array recent;
      if (history.status == 200) recent = json::parse(history.body).at("transitions").as_array();
      print_migration(out, body.as_object(), recent);
    } else if (words[0] == "history") {
      print_transitions(out, body.at("transitions").as_array());
    } else if (words[0] == "shadow") {
      print_shadow(out, body.as_object());
    } else if (std::find(kActions.begin(), kActions.end(), words[0]) != kActions.end()) {
      out << words[1] << ": " << text(body.at("transition").at("from")) << " → "
          << text(body.at("phase")) << " at " << percent(body.at("weight")) << " (generation "
          << text(body.at("generation")) << ")\n";
    } else if (words[0] == "breakers") {
      print_breakers(out, body.at("breakers").as_array());
    } else if (words[0] == "breaker") {
      print_breakers(out, json::array{body});
    } else if (words[0] == "quotas") {
      print_quotas(out, body.at("quotas").as_array());
    } else if (words[0] == "cache") {
      if (words.size() == 2) out << "purged " << text(body.at("purged")) << " entries\n";
      if (const auto* error = body.as_object().if_contains("error")) out << text(*error) << "\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& c : body.at("caches").as_array()) {
        const bool shared = c.as_object().contains("shared");
        rows.push_back({text(c.at("model")), shared ? "redis" : "memory", text(c.at("entries")), text(c.at("bytes")),
                        text(c.at("hits")), text(c.at("misses")), text(c.at("bypasses")),
                        text(c.at("evictions")), text(c.at("tokens_saved")), text(c.at("cost_saved"))});
      }
      print_table(out, {"MODEL", "STORE", "ENTRIES", "BYTES", "HITS", "MISSES", "BYPASSES", "EVICTIONS",
                        "TOKENS SAVED", "COST SAVED"},
                  rows);
    } else {
      std::vector<std::vector<std::string>> rows;
      for (const auto& b : body.at("retry_budgets").as_array()) {
        rows.push_back({text(b.at("provider")), text(b.at("window_requests")),
                        text(b.at("window_retries")), text(b.at("ratio")),
                        text(b.at("window_seconds")) + "s"});
      }
      print_table(out, {"PROVIDER", "REQUESTS", "RETRIES", "RATIO", "WINDOW"}, rows);
    }
    return 0;
  } catch (const std::exception& e) {
    error << "cutover ctl: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace cutover::admin
