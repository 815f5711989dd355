// Fuzz target: whatever a client or a provider sends, the Anthropic codec answers with valid
// JSON and a well-formed event stream (message_start first, blocks numbered in order and one
// open at a time, ending with message_stop or error), and never crashes.
#include <boost/json.hpp>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/anthropic_messages.h"

namespace {

namespace json = boost::json;
namespace anthropic = cutover::api::anthropic;

void require(bool condition) {
  if (!condition) std::abort();
}

json::object parse_object(std::string_view text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  require(!ec && value.is_object());
  return std::move(value.get_object());
}

void check_request(const json::object& request) {
  json::object chat;
  if (auto problem = anthropic::to_chat_request(request, chat)) {
    require(!problem->empty());
    return;
  }
  auto round_trip = parse_object(json::serialize(chat));
  require(round_trip.at("model").is_string());
  require(round_trip.at("max_tokens").is_int64());
  require(!round_trip.at("messages").as_array().empty());
  for (const auto& message : round_trip.at("messages").as_array()) {
    require(message.at("role").is_string());
  }
}

void check_message(const json::object& completion) {
  auto message = parse_object(json::serialize(anthropic::to_message(completion, "msg_1", "m")));
  require(message.at("type") == "message");
  require(message.at("stop_reason").is_string());
  for (const auto& block : message.at("content").as_array()) {
    if (block.at("type") == "tool_use") {
      require(block.at("input").is_object());
      for (char c : block.at("id").as_string())
        require(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
    } else {
      require(block.at("type") == "text" && block.at("text").is_string());
    }
  }
}

// Walks the SSE text the way the SDKs' MessageStream accumulator does.
void check_events(std::string_view sse) {
  int open = -1;
  int blocks = 0;
  bool started = false;
  std::string last;
  while (!sse.empty()) {
    const auto end = sse.find("\n\n");
    require(end != std::string_view::npos);
    const auto frame = sse.substr(0, end);
    sse.remove_prefix(end + 2);
    const auto newline = frame.find('\n');
    require(frame.rfind("event: ", 0) == 0 && newline != std::string_view::npos);
    const std::string name(frame.substr(7, newline - 7));
    require(frame.substr(newline + 1).rfind("data: ", 0) == 0);
    const auto data = parse_object(frame.substr(newline + 7));
    require(data.at("type") == json::value(name));
    require(last != "message_stop" && last != "error");
    last = name;
    if (name == "error" || name == "ping") continue;
    if (name == "message_start") {
      require(!started);
      started = true;
      continue;
    }
    require(started);
    if (name == "content_block_start") {
      require(open == -1 && data.at("index") == blocks);
      open = blocks++;
    } else if (name == "content_block_delta") {
      // Late pieces of an interleaved tool call go to its own, closed, block.
      const auto index = data.at("index").as_int64();
      require(index >= 0 && index < blocks);
      if (data.at("delta").at("type") == "text_delta") require(index == open);
    } else if (name == "content_block_stop") {
      require(data.at("index") == open);
      open = -1;
    } else if (name == "message_delta") {
      require(open == -1 && data.at("delta").at("stop_reason").is_string());
      require(data.at("usage").at("input_tokens").as_int64() >= 0);
    } else {
      require(name == "message_stop");
    }
  }
  require(last == "message_stop" || last == "error");
}

void check_stream(const json::value& input) {
  anthropic::StreamEncoder encoder("msg_1", "m");
  std::string out;
  if (input.is_array()) {
    for (const auto& chunk : input.get_array()) {
      if (chunk.is_object()) encoder.on_chunk(chunk.get_object(), out);
    }
  } else if (input.is_object()) {
    encoder.on_chunk(input.get_object(), out);
  }
  encoder.finish(out);
  check_events(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (unsigned status : {400u, 429u, 503u}) {
    auto error = parse_object(anthropic::error_body_from(input, status, "req"));
    require(error.at("error").at("message").is_string());
    require(error.at("error").at("type").is_string());
  }
  for (char c : anthropic::valid_tool_id(input.substr(0, 64), "x")) {
    require(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  }
  boost::system::error_code ec;
  auto parsed = json::parse(input, ec);
  if (ec) return 0;
  if (parsed.is_object()) {
    check_request(parsed.get_object());
    check_message(parsed.get_object());
  }
  check_stream(parsed);
  return 0;
}
