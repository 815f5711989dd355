// What the attempt loop needs of a provider's dialect, whichever it is: where a request goes,
// and its answer read into the canonical form (a normalized chat completion, or chunks of one).
// The loop itself never looks at a provider's wire format.
#pragma once

#include <boost/json.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "providers/anthropic_dialect.h"
#include "providers/openai_dialect.h"
#include "providers/sse.h"

namespace cutover::providers {

// The path under the provider's base URL for a canonical request of `kind`.
std::string_view request_path(config::Dialect dialect, ApiKind kind);

// Normalizes a provider's plain answer, parsed into `value`, into a canonical completion in
// place (for Anthropic: a message becomes a chat completion). Returns what is wrong otherwise.
std::optional<std::string> canonical_completion(config::Dialect dialect, boost::json::value& value,
                                                ApiKind kind, const ResponseIdentity& identity,
                                                Usage& usage);

// Reads a provider's event stream, event by event, as canonical chunks.
class CanonicalStream {
 public:
  // `strip_usage`: the usage chunk is read for the record but not handed on (the client did
  // not ask for it).
  // `chunks_wanted` false: the events go to the client as they came and nothing compares them,
  // so an Anthropic stream is read only for its usage, finish, end marker and errors (no chunk
  // is built; on_chunk is never called).
  CanonicalStream(config::Dialect dialect, ApiKind kind, ResponseIdentity identity,
                  bool strip_usage, bool chunks_wanted = true);

  struct EventResult {
    std::optional<std::string> problem;         // the event is invalid: the stream is broken
    std::optional<std::string> provider_error;  // the provider streamed an error (its message)
    bool end_marker = false;                    // [DONE] or message_stop
  };
  // Parses `event` (into `storage` for the OpenAI dialect, whose chunks are normalized in
  // place) and calls `on_chunk` for each canonical chunk it yields. For the OpenAI dialect an
  // error object is also handed to `on_chunk` (it is the client's error event as it stands).
  // `parsed` keeps the event's JSON (a native Anthropic client is sent it as it came).
  EventResult read(const SseEvent& event, boost::json::value& parsed,
                   boost::json::storage_ptr storage, Usage& usage,
                   const std::function<void(boost::json::value&)>& on_chunk);

  // The stream ended cleanly: its end marker, or the last choice's finish reason (all the
  // SDKs need; some relays never send [DONE]).
  bool saw_end_marker() const { return saw_end_marker_; }
  bool saw_finish() const { return saw_finish_; }
  // A chunk read elsewhere (without a DOM) carried a finish reason; an OpenAI stream's end
  // marker was read elsewhere.
  void note_finish() { saw_finish_ = true; }
  void note_end_marker() { saw_end_marker_ = true; }

 private:
  EventResult read_native(const boost::json::object& data, Usage& usage);

  config::Dialect dialect_;
  ApiKind kind_;
  ResponseIdentity identity_;
  bool strip_usage_;
  bool chunks_wanted_;
  anthropic::StreamDecoder anthropic_;
  std::vector<boost::json::object> decoded_;
  bool saw_end_marker_ = false;
  bool saw_finish_ = false;
};

}  // namespace cutover::providers
