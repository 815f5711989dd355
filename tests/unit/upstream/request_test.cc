#include "upstream/request.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>
#include <sstream>
#include <string>

#include "http/serialize.h"

namespace cutover::upstream {
namespace {

namespace bhttp = boost::beast::http;

config::Endpoint endpoint(std::string host, std::uint16_t port, bool tls = false,
                          std::string base_path = "") {
  config::Endpoint address;
  address.tls = tls;
  address.host = std::move(host);
  address.port = port;
  address.base_path = std::move(base_path);
  return address;
}

std::string bytes_of(const Request& request) {
  return request.fields() + std::string(http::HeaderEnd(request.body().size()).view()) + request.body();
}

// What Beast wrote for the same request, the way the gateway built it before.
std::string beast_bytes(std::string_view target, std::string_view host,
                        const std::vector<std::pair<std::string, std::string>>& fields,
                        std::string body) {
  bhttp::request<bhttp::string_body> message{bhttp::verb::post, target, 11};
  message.set(bhttp::field::host, host);
  for (const auto& [name, value] : fields) message.set(name, value);
  message.keep_alive(true);
  message.body() = std::move(body);
  message.prepare_payload();
  std::ostringstream out;
  out << message;
  return out.str();
}

TEST(UpstreamRequestTest, BytesAreThoseBeastWroteForTheSameRequest) {
  const std::vector<std::pair<std::string, std::string>> openai = {
      {"Content-Type", "application/json"},
      {"Accept", "text/event-stream"},
      {"x-request-id", "req_0123456789abcdef"},
      {"User-Agent", "cutover/0.1"},
      {"Authorization", "Bearer sk-provider-key"}};
  Request request(endpoint("api.example.com", 8443, true, "/relay/v1"), "/chat/completions");
  for (const auto& [name, value] : openai) {
    if (name == "Authorization") {
      request.add_field(name, "Bearer ", "sk-provider-key");
    } else {
      request.add_field(name, value);
    }
  }
  request.body() = R"({"model":"gpt-4.1","stream":true})";
  EXPECT_EQ(bytes_of(request), beast_bytes("/relay/v1/chat/completions", "api.example.com:8443",
                                           openai, request.body()));

  const std::vector<std::pair<std::string, std::string>> anthropic = {
      {"Content-Type", "application/json"},
      {"x-request-id", "req_1"},
      {"User-Agent", "cutover/0.1"},
      {"x-api-key", "sk-ant-key"},
      {"anthropic-version", "2023-06-01"}};
  Request empty_body(endpoint("127.0.0.1", 80), "/v1/messages");
  for (const auto& [name, value] : anthropic) empty_body.add_field(name, value);
  EXPECT_EQ(bytes_of(empty_body), beast_bytes("/v1/messages", "127.0.0.1", anthropic, ""));
  EXPECT_NE(bytes_of(empty_body).find("\r\nContent-Length: 0\r\n\r\n"), std::string::npos);
}

TEST(UpstreamRequestTest, AValueEndsAtItsFirstLineBreak) {
  // A key or a client's header with a line break would otherwise add fields of its own.
  for (const std::string value :
       {"key\r\nX-Injected: 1", "k\nX-Injected: 1", "a-long-key-of-more-words\rX-Injected",
        "exactly-8\n", "sixteen-bytes-ok\r", "\r\nX-Injected: 1", "12345678901234\n"}) {
    Request request(endpoint("host", 443, true), "/v1/chat/completions");
    request.add_field("Authorization", "Bearer ", value);
    const auto cut = value.substr(0, value.find_first_of("\r\n"));
    EXPECT_EQ(request.fields(), "POST /v1/chat/completions HTTP/1.1\r\nHost: host\r\n"
                                "Authorization: Bearer " + cut + "\r\n")
        << value;
  }
  Request host_with_break(endpoint("evil\r\nX-Injected: 1", 80), "/v1/messages");
  EXPECT_EQ(host_with_break.fields(), "POST /v1/messages HTTP/1.1\r\nHost: evil\r\n");
}

TEST(UpstreamRequestTest, ValuesWithoutLineBreaksAreKeptWhole) {
  // Every length around the eight-byte words, with bytes next to CR and LF in value.
  std::string value;
  for (int length = 0; length < 40; ++length) {
    Request request(endpoint("h", 80), "/p");
    request.add_field("x-value", value);
    EXPECT_EQ(request.fields(), "POST /p HTTP/1.1\r\nHost: h\r\nx-value: " + value + "\r\n");
    value.push_back(static_cast<char>(length % 2 == 0 ? 0x0c : 0x0b + 0x80 * (length % 3 == 0)));
  }
}

TEST(UpstreamRequestTest, HostCarriesThePortUnlessItIsTheSchemesDefault) {
  // RFC 9110 7.2: a relay on its own port, behind a virtual host, needs to see it.
  const auto host_line = [](const config::Endpoint& address) {
    const auto fields = Request(address, "/v1/chat/completions").fields();
    const auto start = fields.find("\r\n") + 2;
    return fields.substr(start, fields.find("\r\n", start) - start);
  };
  EXPECT_EQ(host_line(endpoint("api.openai.com", 443, true)), "Host: api.openai.com");
  EXPECT_EQ(host_line(endpoint("relay.example.com", 80)), "Host: relay.example.com");
  EXPECT_EQ(host_line(endpoint("relay.example.com", 8443, true)), "Host: relay.example.com:8443");
  EXPECT_EQ(host_line(endpoint("relay.example.com", 443)), "Host: relay.example.com:443");
  EXPECT_EQ(host_line(endpoint("127.0.0.1", 65535)), "Host: 127.0.0.1:65535");
  EXPECT_EQ(host_line(endpoint("::1", 8080)), "Host: [::1]:8080");
  EXPECT_EQ(host_line(endpoint("2001:db8::7", 443, true)), "Host: [2001:db8::7]");
}

}  // namespace
}  // namespace cutover::upstream
