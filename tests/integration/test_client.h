// Blocking HTTP/1.1 client and fixture helpers for the integration tests: real sockets on
// loopback, one connection per TestClient so keep-alive behaviour is observable.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace cutover::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Reply {
  unsigned status = 0;
  http::fields headers;
  std::string body;
  std::string header(std::string_view name) const { return std::string(headers[name]); }
};

class TestClient {
 public:
  explicit TestClient(std::uint16_t port) : socket_(context_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }

  Reply request(http::verb method, std::string target, std::string body = {},
                std::vector<std::pair<std::string, std::string>> headers = {}) {
    send(method, std::move(target), std::move(body), std::move(headers));
    http::response<http::string_body> response;
    http::read(socket_, buffer_, response);
    return Reply{response.result_int(), response.base(), response.body()};
  }

  Reply read() {
    http::response<http::string_body> response;
    http::read(socket_, buffer_, response);
    return Reply{response.result_int(), response.base(), response.body()};
  }

  Reply post(std::string target, std::string body, std::string key = "client-secret") {
    return request(http::verb::post, std::move(target), std::move(body),
                   {{"authorization", "Bearer " + key}});
  }

  void send(http::verb method, std::string target, std::string body,
            std::vector<std::pair<std::string, std::string>> headers) {
    http::request<http::string_body> request{method, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.set(http::field::content_type, "application/json");
    for (auto& [name, value] : headers) request.set(name, value);
    request.body() = std::move(body);
    request.prepare_payload();
    http::write(socket_, request);
  }

  // Reads a chunked streaming response, calling `on_piece` with each piece of body as it arrives.
  Reply read_stream(const std::function<void(std::string_view)>& on_piece = {}) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    http::read_header(socket_, buffer_, parser);
    std::size_t seen = 0;
    while (!parser.is_done()) {
      boost::system::error_code ec;
      http::read_some(socket_, buffer_, parser, ec);
      if (ec) break;
      const auto& body = parser.get().body();
      if (on_piece && body.size() > seen) on_piece(std::string_view(body).substr(seen));
      seen = body.size();
    }
    auto& response = parser.get();
    return Reply{response.result_int(), response.base(), response.body()};
  }

  void write_raw(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }
  std::string read_until_close() {
    std::string out;
    boost::system::error_code ec;
    asio::read(socket_, asio::dynamic_buffer(out), ec);
    return std::string(static_cast<const char*>(buffer_.data().data()), buffer_.size()) + out;
  }
  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  asio::io_context context_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// Polls `condition` until it holds or `limit` passes; returns whether it held.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

inline std::string chat_body(bool stream = false, std::string model = "gpt-4") {
  return std::string(R"({"model":")") + model + R"(","messages":[{"role":"user","content":"hello there"}])" +
         (stream ? R"(,"stream":true)" : "") + "}";
}

}  // namespace cutover::testing
