// The bodies the simulated provider answers with, in OpenAI's and Anthropic's formats, built
// from the request and the scripted reply. The server (fake_provider.cc) frames them; tests may
// call them directly.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "simulate/fake_provider.h"

namespace cutover::simulate {

// The API a request target belongs to: Anthropic's for .../messages and
// .../messages/count_tokens (a query string aside), OpenAI's for anything else.
Dialect dialect_of_target(std::string_view target);
bool is_count_tokens_target(std::string_view target);

// Words in the request's prompt: Anthropic's `system` and message text blocks, or OpenAI's
// message contents, `prompt` and `input`.
std::int64_t prompt_words(const FakeRequest& request);

// The text answer generated from the prompt ("This is a simulated answer to: ...").
std::string default_text(const FakeRequest& request);

// Error bodies in each API's schema.
std::string openai_error_body(std::string_view message, std::string_view type,
                              const boost::json::value& code);
std::string anthropic_error_body(std::string_view type, std::string_view message);
// The error `status` means in `dialect`'s schema (see default_reply's `[simulate:STATUS]`),
// with Retry-After on 429.
FakeReply error_reply(Dialect dialect, unsigned status);

// The whole body of a non-streamed 200 answer: a chat completion, completion, embedding list,
// Anthropic message or count_tokens answer, chosen by the target.
std::string plain_body(const FakeRequest& request, const FakeReply& reply);

// The events of a streamed answer: the reply's own when scripted, else chat or completion
// chunks ending in [DONE], or Anthropic's named events from message_start to message_stop.
std::vector<SseEvent> stream_events(const FakeRequest& request, const FakeReply& reply);

// The event after which a stream is complete: OpenAI's [DONE] or Anthropic's message_stop.
bool ends_stream(const SseEvent& event);

// An event as written on the wire: `event: NAME` when named, the data line, the blank line.
std::string sse_text(const SseEvent& event, std::string_view line_end, bool blank_line = true);

}  // namespace cutover::simulate
