// Fuzz target: http::RequestParser must accept and refuse exactly what Beast's own
// request_parser<string_body> does on arbitrary bytes, fed whole or in two pieces, and keep the
// same start line, fields (order, spelling, codes) and body.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/request_message.h"

namespace {

namespace bhttp = boost::beast::http;

// Feeds `input` in up to two pieces (split at `middle`), as a session would, with the server's
// limits scaled down; returns the final error (need_more when the request is incomplete).
template <class Parser>
boost::beast::error_code feed(Parser& parser, std::string_view input, std::size_t middle) {
  parser.body_limit(4096);
  parser.header_limit(2048);
  parser.eager(true);
  std::string pending;
  boost::beast::error_code ec;
  for (const auto piece : {input.substr(0, middle), input.substr(middle)}) {
    pending.append(piece);
    for (;;) {
      ec = {};
      const auto used = parser.put(boost::asio::buffer(pending.data(), pending.size()), ec);
      pending.erase(0, used);
      if (ec || parser.is_done() || used == 0) break;
    }
    if (ec && ec != bhttp::error::need_more) return ec;
    if (parser.is_done()) return {};
  }
  return ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t middle = size == 0 ? 0 : data[0] % (size + 1);

  cutover::http::RequestMessage message;
  cutover::http::RequestParser ours(message);
  const auto our_error = feed(ours, input, middle);

  bhttp::request_parser<bhttp::string_body> beasts;
  const auto beasts_error = feed(beasts, input, middle);

  if (our_error != beasts_error || ours.is_done() != beasts.is_done()) std::abort();
  if (!ours.is_header_done() || !beasts.is_header_done()) return 0;
  const auto& reference = beasts.get();
  if (message.method() != reference.method() ||
      message.method_string() != std::string_view(reference.method_string()) ||
      message.target() != std::string_view(reference.target()) ||
      message.version() != reference.version() || ours.keep_alive() != beasts.keep_alive()) {
    std::abort();
  }
  auto field = reference.begin();
  for (const auto& kept : message) {
    if (field == reference.end() || kept.name() != field->name() ||
        kept.name_string() != std::string_view(field->name_string()) ||
        kept.value() != std::string_view(field->value())) {
      std::abort();
    }
    ++field;
  }
  if (field != reference.end()) std::abort();
  if (ours.is_done() && message.body() != reference.body()) std::abort();
  return 0;
}
