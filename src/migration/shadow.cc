#include "migration/shadow.h"

#include "util/clock.h"
#include "util/sha256.h"

namespace cutover::migration {

namespace json = boost::json;

namespace {

const json::object* first_choice(const json::value& body) {
  const auto* object = body.if_object();
  if (object == nullptr) return nullptr;
  const auto* choices = object->if_contains("choices");
  if (choices == nullptr || !choices->is_array() || choices->get_array().empty()) return nullptr;
  return choices->get_array().front().if_object();
}

std::string string_of(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  return value && value->is_string() ? std::string(value->get_string()) : std::string();
}

}  // namespace

void AnswerBuilder::add_response(const json::value& body) {
  const auto* choice = first_choice(body);
  if (choice == nullptr) return;
  finish_reason_ = string_of(*choice, "finish_reason");
  if (const auto* message = choice->if_contains("message"); message && message->is_object()) {
    text_ += string_of(message->get_object(), "content");
    if (const auto* calls = message->get_object().if_contains("tool_calls");
        calls && calls->is_array() && !calls->get_array().empty()) {
      complete_tool_calls_json_ = json::serialize(*calls);
    }
  } else {
    text_ += string_of(*choice, "text");
  }
}

void AnswerBuilder::add_chunk(const json::value& chunk) {
  const auto* choice = first_choice(chunk);
  if (choice == nullptr) return;
  if (auto reason = string_of(*choice, "finish_reason"); !reason.empty()) finish_reason_ = reason;
  const auto* delta = choice->if_contains("delta");
  if (delta == nullptr || !delta->is_object()) {
    text_ += string_of(*choice, "text");
    return;
  }
  text_ += string_of(delta->get_object(), "content");
  const auto* calls = delta->get_object().if_contains("tool_calls");
  if (calls == nullptr || !calls->is_array()) return;
  for (const auto& call : calls->get_array()) {
    if (!call.is_object()) continue;
    const auto* index = call.get_object().if_contains("index");
    std::size_t at = index && index->is_int64() ? static_cast<std::size_t>(index->get_int64())
                                                : tool_calls_.size();
    if (at > 128) continue;
    if (tool_calls_.size() <= at) tool_calls_.resize(at + 1);
    if (const auto* function = call.get_object().if_contains("function");
        function && function->is_object()) {
      tool_calls_[at].name += string_of(function->get_object(), "name");
      tool_calls_[at].arguments += string_of(function->get_object(), "arguments");
    }
  }
}

Answer AnswerBuilder::take(bool json_mode) {
  Answer answer;
  answer.text = std::move(text_);
  answer.finish_reason = std::move(finish_reason_);
  answer.json_mode = json_mode;
  if (!complete_tool_calls_json_.empty()) {
    answer.tool_calls_json = std::move(complete_tool_calls_json_);
  } else if (!tool_calls_.empty()) {
    json::array calls;
    for (auto& call : tool_calls_) {
      calls.push_back(json::object{
          {"type", "function"},
          {"function", json::object{{"name", call.name}, {"arguments", call.arguments}}}});
    }
    answer.tool_calls_json = json::serialize(calls);
  }
  return answer;
}

ShadowPairState::ShadowPairState(std::shared_ptr<MigrationRuntime> runtime, unsigned worker,
                                 std::string request_id, std::string model, bool streamed,
                                 bool json_mode, std::string prompt_json)
    : runtime_(std::move(runtime)),
      worker_(worker),
      request_id_(std::move(request_id)),
      model_(std::move(model)),
      streamed_(streamed),
      json_mode_(json_mode),
      prompt_json_(std::move(prompt_json)) {}

ShadowPairState::~ShadowPairState() = default;

void ShadowPairState::primary_done(SideResult result, bool client_left) {
  {
    std::lock_guard lock(mutex_);
    if (primary_reported_) return;
    primary_reported_ = true;
    client_left_ = client_left;
    primary_ = std::move(result);
    if (!candidate_reported_) return;
  }
  finish();
}

void ShadowPairState::candidate_done(SideResult result) {
  const auto tokens = static_cast<std::uint64_t>(std::max<std::int64_t>(result.usage.total_tokens, 0));
  const auto cost = result.cost;
  bool both_done = false;
  {
    std::lock_guard lock(mutex_);
    if (candidate_reported_) return;
    candidate_reported_ = true;
    candidate_ = std::move(result);
    both_done = primary_reported_;
  }
  runtime_->shadow_limiter.add_spend(tokens, cost, std::chrono::steady_clock::now());
  runtime_->shadow_limiter.release();
  if (both_done) finish();
}

void ShadowPairState::finish() {
  if (client_left_) return;
  const auto& settings = runtime_->settings();
  auto& primary = *primary_;
  auto& candidate = *candidate_;
  store::ShadowPair pair;
  pair.migration = settings.name;
  pair.at_unix_ms = util::unix_ms_now();
  pair.request_id = request_id_;
  pair.model = model_;
  pair.streamed = streamed_;
  pair.primary_status = primary.status;
  pair.candidate_status = candidate.status;
  pair.candidate_error = candidate.error;
  pair.primary_latency_ms = primary.latency_ms;
  pair.candidate_latency_ms = candidate.latency_ms;
  pair.primary_ttft_ms = primary.ttft_ms;
  pair.candidate_ttft_ms = candidate.ttft_ms;
  pair.primary_prompt_tokens = primary.usage.prompt_tokens;
  pair.primary_completion_tokens = primary.usage.completion_tokens;
  pair.candidate_prompt_tokens = candidate.usage.prompt_tokens;
  pair.candidate_completion_tokens = candidate.usage.completion_tokens;
  pair.primary_cost = primary.cost;
  pair.candidate_cost = candidate.cost;
  pair.primary_finish_reason = primary.answer.finish_reason;
  pair.candidate_finish_reason = candidate.answer.finish_reason;
  pair.prompt_hash = util::sha256_hex(prompt_json_);
  pair.primary_output_hash = util::sha256_hex(primary.answer.text + primary.answer.tool_calls_json);
  pair.candidate_output_hash =
      util::sha256_hex(candidate.answer.text + candidate.answer.tool_calls_json);

  PairSample sample;
  sample.candidate_failed = candidate.status < 200 || candidate.status >= 300;
  sample.compared = !sample.candidate_failed && primary.status >= 200 && primary.status < 300;
  sample.primary_latency_ms = primary.latency_ms;
  sample.candidate_latency_ms = candidate.latency_ms;
  sample.primary_ttft_ms = primary.ttft_ms;
  sample.candidate_ttft_ms = candidate.ttft_ms;
  if (sample.compared) {
    const auto agreement = compare_answers(primary.answer, candidate.answer);
    pair.exact_match = agreement.exact_match;
    pair.similarity = agreement.similarity;
    pair.rouge_l = agreement.rouge_l;
    pair.length_ratio = agreement.length_ratio;
    pair.candidate_json_valid =
        agreement.candidate_json_valid ? static_cast<int>(*agreement.candidate_json_valid) : -1;
    pair.json_equal = agreement.json_equal ? static_cast<int>(*agreement.json_equal) : -1;
    pair.tool_calls_equal =
        agreement.tool_calls_equal ? static_cast<int>(*agreement.tool_calls_equal) : -1;
    pair.score = agreement.score;
    sample.score = agreement.score;
  }
  if (settings.shadow.store_text) {
    pair.prompt_text = prompt_json_;
    pair.primary_text = primary.answer.text + primary.answer.tool_calls_json;
    pair.candidate_text = candidate.answer.text + candidate.answer.tool_calls_json;
  }
  runtime_->record_pair(worker_, std::move(pair), sample);
}

}  // namespace cutover::migration
