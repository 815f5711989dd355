// Fuzz target: whatever a client or a provider sends, the Responses codec either refuses the
// request with a message or yields a chat request, always yields a Response object, and its
// event stream stays one the SDKs accept (events in order, numbered 0,1,2..., items added at
// the end of the output before anything addresses them, one final event), and never crashes.
#include <boost/json.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/responses.h"

namespace {

namespace json = boost::json;
using namespace cutover::api::responses;

void require(bool condition) {
  if (!condition) std::abort();
}

bool is_final(std::string_view type) {
  return type == "response.completed" || type == "response.incomplete" ||
         type == "response.failed";
}

// Checks a whole event stream: every event parses, is named after its type, carries the next
// sequence number, and addresses only output items announced before it.
void check_stream(std::string_view sse) {
  std::int64_t expected_sequence = 0;
  std::int64_t items = 0;
  bool ended = false;
  while (!sse.empty()) {
    const auto end = sse.find("\n\n");
    require(end != std::string_view::npos);
    const auto block = sse.substr(0, end);
    sse.remove_prefix(end + 2);
    require(block.substr(0, 7) == "event: ");
    const auto newline = block.find('\n');
    require(newline != std::string_view::npos && block.substr(newline + 1, 6) == "data: ");
    const auto name = block.substr(7, newline - 7);
    boost::system::error_code ec;
    auto data = json::parse(block.substr(newline + 7), ec);
    require(!ec && data.is_object());
    const auto& event = data.get_object();
    require(event.at("type").as_string() == name);
    require(event.at("sequence_number").as_int64() == expected_sequence);
    require(expected_sequence != 0 || name == "response.created");
    require(!ended);
    ++expected_sequence;
    if (name == "response.output_item.added") {
      require(event.at("output_index").as_int64() == items++);
    } else if (const auto* index = event.if_contains("output_index")) {
      require(index->as_int64() >= 0 && index->as_int64() < items);
    }
    if (is_final(name)) {
      ended = true;
      const auto& response = event.at("response").as_object();
      require(static_cast<std::int64_t>(response.at("output").as_array().size()) == items);
    }
  }
  require(ended);
}

void check_request(const json::object& request) {
  json::object chat;
  if (auto problem = to_chat_request(request, chat)) {
    require(!problem->empty());
    return;
  }
  require(chat.at("model").is_string());
  require(!chat.at("messages").as_array().empty());
  require(json::parse(json::serialize(chat)) == chat);
}

void check_stream_of(const json::value& chunks, const json::object& request, bool fail_midway) {
  StreamEncoder encoder("resp_fuzz", request, "model", 1);
  std::string out;
  const json::array single{chunks};
  const auto& list = chunks.is_array() ? chunks.get_array() : single;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (fail_midway && i == list.size() / 2) encoder.fail("server_error", "broken", out);
    if (list[i].is_object()) encoder.on_chunk(list[i].get_object(), out);
  }
  encoder.finish(out);
  check_stream(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  boost::system::error_code ec;
  auto parsed = json::parse(input, ec);
  if (ec) return 0;
  const json::object empty;
  const auto& object = parsed.is_object() ? parsed.get_object() : empty;
  check_request(object);
  auto response = to_response(object, object, "resp_fuzz", "model", 1);
  require(response.at("object") == "response" && response.at("output").is_array());
  require(json::parse(json::serialize(response)) == response);
  check_stream_of(parsed, object, false);
  check_stream_of(parsed, object, true);
  return 0;
}
