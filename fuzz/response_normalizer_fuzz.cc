// Fuzz target: whatever a provider sends, normalization either rejects it or yields a body the
// SDKs can read (an object with choices or data), and never crashes.
#include <boost/json.hpp>
#include <cstdint>
#include <cstdlib>

#include "providers/openai_dialect.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace json = boost::json;
  using namespace cutover::providers;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  boost::system::error_code ec;
  auto parsed = json::parse(input, ec);
  if (ec) {
    normalize_error_body(input, 500, "secret", "req");
    return 0;
  }
  const ResponseIdentity identity{"id", 1, "model"};
  for (auto kind : {ApiKind::chat_completions, ApiKind::completions, ApiKind::embeddings}) {
    auto body = parsed;
    Usage usage;
    if (!normalize_response(body, kind, identity, usage)) {
      const auto& object = body.as_object();
      if (kind == ApiKind::embeddings ? !object.at("data").is_array()
                                      : !object.at("choices").is_array()) {
        std::abort();
      }
    }
    auto chunk = parsed;
    ChunkOutcome outcome;
    normalize_stream_chunk(chunk, kind, identity, true, usage, outcome);
  }
  auto error = json::parse(normalize_error_body(input, 429, "secret", "req"));
  if (!error.at("error").at("message").is_string()) std::abort();
  return 0;
}
