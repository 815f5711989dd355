#include "admin/ctl.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <iomanip>
#include <ostream>
#include <sstream>

namespace cutover::admin {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace json = boost::json;

namespace {

struct Answer {
  unsigned status = 0;
  std::string body;
};

Answer call(const CtlTarget& target, bhttp::verb method, const std::string& path) {
  auto url = boost::urls::parse_absolute_uri(target.admin_url);
  if (!url || url->scheme() != "http") {
    throw std::runtime_error("admin URL '" + target.admin_url + "' must be http://HOST:PORT");
  }
  const auto host = std::string(url->host());
  const auto port = url->has_port() ? std::string(url->port()) : std::string("80");
  asio::io_context context;
  asio::ip::tcp::resolver resolver(context);
  boost::beast::tcp_stream stream(context);
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(resolver.resolve(host, port));
  bhttp::request<bhttp::string_body> request{method, path, 11};
  request.set(bhttp::field::host, host);
  request.set(bhttp::field::authorization, "Bearer " + target.token);
  request.prepare_payload();
  bhttp::write(stream, request);
  boost::beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> response;
  bhttp::read(stream, buffer, response);
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

void print_table(std::ostream& out, const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) widths[i] = headers[i].size();
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out << std::left << std::setw(static_cast<int>(widths[i]) + 2) << cells[i];
    }
    out << "\n";
  };
  line(headers);
  for (const auto& row : rows) line(row);
}

void print_breakers(std::ostream& out, const json::array& breakers) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : breakers) {
    rows.push_back({text(b.at("provider")), text(b.at("endpoint")), text(b.at("state")),
                    text(b.at("failure_rate")), text(b.at("slow_call_rate")), text(b.at("calls")),
                    text(b.at("trips")), b.at("throttled").as_bool() ? "yes" : "no",
                    text(b.at("open_for_ms")), text(b.at("base_url"))});
  }
  print_table(out, {"PROVIDER", "ENDPOINT", "STATE", "FAILURES", "SLOW", "CALLS", "TRIPS",
                    "THROTTLED", "OPEN_MS", "URL"},
              rows);
}

}  // namespace

int run_ctl(const CtlTarget& target, const std::vector<std::string>& words, std::ostream& out,
            std::ostream& error) {
  const std::string usage =
      "usage: cutover ctl breakers | breaker PROVIDER ENDPOINT force_open|disable|reset | budgets";
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
    if (words[0] == "breakers") {
      print_breakers(out, body.at("breakers").as_array());
    } else if (words[0] == "breaker") {
      print_breakers(out, json::array{body});
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
