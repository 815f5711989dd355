// Shadow traffic's bookkeeping: what each side answered, assembled from a response or from
// stream chunks, and the pair both sides make once they are done.
//
// A shadow pair is shared by the client's request (the primary side, on a worker) and the
// detached shadow exchange (the candidate side, on the shadow thread or the same worker);
// whichever finishes last compares the answers and hands the pair to the engine.
#pragma once

#include <boost/json.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "migration/agreement.h"
#include "migration/runtime.h"
#include "providers/openai_dialect.h"

namespace cutover::migration {

// Collects the assistant's text, tool calls and finish reason of the first choice.
class AnswerBuilder {
 public:
  void add_response(const boost::json::value& body);  // a complete chat or text completion
  void add_chunk(const boost::json::value& chunk);    // one streamed chunk
  bool has_output() const { return !text_.empty() || !tool_calls_.empty(); }
  Answer take(bool json_mode);

 private:
  std::string text_;
  std::string finish_reason_;
  // Streamed tool calls arrive as fragments per index: name once, arguments piece by piece.
  struct ToolCall {
    std::string name;
    std::string arguments;
  };
  std::vector<ToolCall> tool_calls_;
  std::string complete_tool_calls_json_;
};

struct SideResult {
  int status = 0;  // HTTP status; 0 when there was no answer
  std::string error;
  double latency_ms = 0;
  double ttft_ms = 0;
  providers::Usage usage;
  double cost = 0;
  Answer answer;
};

class ShadowPairState {
 public:
  // `worker`: the worker both sides run on, whose shard receives the finished pair.
  ShadowPairState(std::shared_ptr<MigrationRuntime> runtime, unsigned worker, std::string request_id,
                  std::string model, bool streamed, bool json_mode, std::string prompt_json);
  ~ShadowPairState();

  AnswerBuilder primary_builder;
  bool json_mode() const { return json_mode_; }
  const std::string& request_id() const { return request_id_; }
  MigrationRuntime& runtime() { return *runtime_; }

  // Each side reports once, from any thread. A primary side whose client left is not compared
  // (the pair would compare a cut answer), but the candidate's spend is still counted.
  void primary_done(SideResult result, bool client_left);
  void candidate_done(SideResult result);

 private:
  void finish();

  std::shared_ptr<MigrationRuntime> runtime_;
  unsigned worker_;
  std::string request_id_;
  std::string model_;
  bool streamed_;
  bool json_mode_;
  std::string prompt_json_;
  std::mutex mutex_;  // guards the results and flags below; finish() runs outside it
  std::optional<SideResult> primary_;
  std::optional<SideResult> candidate_;
  bool primary_reported_ = false;
  bool candidate_reported_ = false;
  bool client_left_ = false;
};

}  // namespace cutover::migration
