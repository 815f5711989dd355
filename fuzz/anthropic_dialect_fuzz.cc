// Fuzz target: whatever a client asks or an Anthropic provider answers, the dialect either
// refuses it with a message or yields what the other side can read (a Messages body with a
// model, turns and a positive max_tokens; chat completions and chunks with choices and
// consistent usage), and never crashes.
//
// An input that is a JSON object is tried as a chat request, as a message and as one stream
// event; a JSON array is replayed as a stream of events.
#include <boost/json.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "providers/anthropic_dialect.h"

namespace {

namespace json = boost::json;
using namespace cutover::providers;

void require(bool condition) {
  if (!condition) std::abort();
}

bool valid_tool_use_id(std::string_view id) {
  if (id.empty()) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void check_usage(const Usage& usage) {
  if (!usage.present) return;
  require(usage.prompt_tokens >= 0 && usage.completion_tokens >= 0);
  require(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens);
  require(usage.cached_prompt_tokens + usage.cache_creation_prompt_tokens <= usage.prompt_tokens);
}

void check_request(const json::object& chat) {
  std::string body;
  if (anthropic::to_messages_request(chat, "claude", 1024, body)) return;
  boost::system::error_code ec;
  auto parsed = json::parse(body, ec);
  require(!ec && parsed.is_object());
  const auto& request = parsed.get_object();
  require(request.at("model") == "claude");
  const auto& max_tokens = request.at("max_tokens");
  require(max_tokens.is_int64() && max_tokens.get_int64() > 0);
  if (const auto* thinking = request.if_contains("thinking")) {
    const auto budget = thinking->at("budget_tokens").as_int64();
    require(budget >= 1024 && budget < max_tokens.get_int64());
  }
  const auto& turns = request.at("messages").as_array();
  require(!turns.empty());
  for (std::size_t i = 0; i < turns.size(); ++i) {
    const auto& role = turns[i].at("role");
    require(role == "user" || role == "assistant");
    // Turns alternate, and none is empty.
    if (i > 0) require(turns[i - 1].at("role") != role);
    const auto& blocks = turns[i].at("content").as_array();
    require(!blocks.empty());
    for (const auto& block : blocks) {
      const auto& type = block.at("type");
      if (type == "tool_use") require(valid_tool_use_id(block.at("id").as_string()));
      if (type == "tool_use") require(block.at("input").is_object());
      if (type == "tool_result") require(valid_tool_use_id(block.at("tool_use_id").as_string()));
      if (type == "text") require(!block.at("text").as_string().empty());
    }
  }
}

void check_completion(const json::value& message, const ResponseIdentity& identity) {
  Usage usage;
  json::object completion;
  if (anthropic::to_chat_completion(message, identity, usage, completion)) return;
  require(completion.at("object") == "chat.completion");
  const auto& choice = completion.at("choices").at(0);
  const auto& reply = choice.at("message");
  require(reply.at("content").is_string() || reply.at("content").is_null());
  const auto& reason = choice.at("finish_reason");
  require(reason == "stop" || reason == "length" || reason == "tool_calls" ||
          reason == "content_filter");
  if (const auto* calls = reply.as_object().if_contains("tool_calls")) {
    for (const auto& call : calls->as_array()) {
      boost::system::error_code ec;
      json::parse(call.at("function").at("arguments").as_string(), ec);
      require(!ec);  // serialized input is JSON the client can parse
    }
  }
  check_usage(usage);
  require(json::parse(json::serialize(completion)).is_object());
}

void check_stream(const json::array& events, const ResponseIdentity& identity) {
  anthropic::StreamDecoder decoder(identity);
  std::vector<json::object> chunks;
  Usage usage;
  std::int64_t tool_calls = 0;
  for (const auto& event : events) {
    if (!event.is_object()) continue;
    const bool was_over = decoder.finished() || decoder.provider_error().has_value();
    const auto before = chunks.size();
    const auto problem = decoder.on_event(event.get_object(), chunks, usage);
    // Once the stream is over, nothing more becomes a chunk.
    if (was_over) require(chunks.size() == before);
    if (problem) require(!problem->empty());
    check_usage(usage);
    for (auto i = before; i < chunks.size(); ++i) {
      const auto& chunk = chunks[i];
      require(chunk.at("object") == "chat.completion.chunk");
      require(chunk.at("id").as_string() == identity.id() &&
              chunk.at("model").as_string() == identity.client_model);
      const auto& choices = chunk.at("choices").as_array();
      if (choices.empty()) {
        require(chunk.contains("usage"));
        continue;
      }
      const auto& delta = choices.at(0).at("delta").as_object();
      if (const auto* calls = delta.if_contains("tool_calls")) {
        for (const auto& call : calls->as_array()) {
          const auto index = call.at("index").as_int64();
          // A new call takes the next index; pieces go to a call already announced.
          if (call.as_object().contains("id")) {
            require(index == tool_calls++);
          } else {
            require(index < tool_calls);
          }
        }
      }
      require(json::parse(json::serialize(chunk)).is_object());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  boost::system::error_code ec;
  auto parsed = json::parse(input, ec);
  if (ec) return 0;
  const ResponseIdentity identity{"chatcmpl-fuzz", 1, "client-model"};
  if (parsed.is_object()) {
    check_request(parsed.get_object());
    check_stream(json::array{parsed}, identity);
  } else if (parsed.is_array()) {
    check_stream(parsed.get_array(), identity);
  }
  check_completion(parsed, identity);
  return 0;
}
