// A provider's plain (non-streamed) chat completion, read in place.
//
// normalize_response() parses an answer into a DOM, repairs it and serializes it again; for an
// answer that is already in OpenAI's schema the only change is `model`, set to the name the
// client used. PlainAnswer reads such an answer with simdjson's on-demand parser instead, without
// building a tree: the `model` value's byte span, the usage and each choice's finish reason, and
// whether normalize_response() would change anything else. When it would not, spliced() is the
// client's answer: the provider's bytes with only `model` replaced.
#pragma once

#include <array>
#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "providers/openai_dialect.h"

namespace cutover::providers {

// What the scanned text is: a plain answer (`chat.completion`) or one event of a stream
// (`chat.completion.chunk`).
enum class AnswerShape { completion, chunk };

class ShapeMemo;

class PlainAnswer {
 public:
  // The bytes past the end that the scan reads (simdjson's SIMDJSON_PADDING): a caller that
  // reserves them beforehand spares the constructor a reallocation.
  static constexpr std::size_t kPadding = 64;

  // Scans `text` once; never throws. Capacity for simdjson's padding is reserved in place (which
  // may move the bytes: take views of `text` afterwards); `text` must outlive this object and stay
  // unchanged. The scan uses this thread's parser, whose buffers are given back after a body past
  // 64 KiB; what the object reports refers only to `text` and static storage.
  explicit PlainAnswer(std::string& text, AnswerShape shape = AnswerShape::completion);
  // An answer of `memo`'s shape, scanned as above unless `memo` holds a template it matches
  // (see ShapeMemo); `memo` keeps this answer's when it needs only its model changed.
  PlainAnswer(std::string& text, ShapeMemo& memo);
  // An answer of `memo`'s shape read from its templates alone: when `text` matches none, nothing
  // is scanned and is_completion() is false (the caller reads it with the constructor above).
  // `text` needs no padding, is never changed, and must outlive this object.
  struct KeptShapesOnly {};
  PlainAnswer(std::string_view text, ShapeMemo& memo, KeptShapesOnly);

  // JSON that Boost.JSON's parser (default options, as the gateway parses answers) accepts, whose
  // top level is an object with a `choices` array. A few bodies Boost.JSON takes are refused too:
  // numbers simdjson cannot read (1e400, integers past 2^64) and exponents of nine digits or
  // more. When false nothing else is reported: the caller takes the DOM path, which answers 502
  // for what it cannot repair.
  bool is_completion() const { return verdict_.is_completion; }

  // True when normalize_response(body, ApiKind::chat_completions, ...) would change nothing but
  // `model`, so spliced() equals its result once parsed. Conservative: anything unusual is false.
  // It holds when the body is a completion with, at its top level, each of these keys once:
  //   `id` a non-empty string, `object` the string "chat.completion", `created` an integer
  //   that fits int64, `model` a string, `system_fingerprint` (any value), `choices` an array;
  // every choice an object with `index` an integer (int64), `finish_reason` null or one of stop,
  // length, tool_calls, content_filter, function_call, and `message` an object with `role` a
  // string and `content` a string or null (each of these keys once in its object); and `usage`
  // absent, null, or an object with exactly `prompt_tokens`, `completion_tokens` and
  // `total_tokens` as integers (int64), optionally `prompt_tokens_details` and
  // `completion_tokens_details` as objects, and no other key, each once.
  // Other keys anywhere are passed as they are (a repeated one too: Boost.JSON, like the SDKs'
  // JSON parsers, keeps the last value of a repeated key).
  // For a chunk (AnswerShape::chunk): true when normalize_stream_chunk() would change nothing
  // but `model`, so that it need not parse the event. The same rules with these differences:
  // `object` is "chat.completion.chunk"; `system_fingerprint` may be absent; a choice has
  // `delta` (an object whose `content`, if there, is a string or null; `role` at most once)
  // instead of `message`; `usage` at most once, and when it reports tokens, in the form above
  // (one that reports none is left as it is; the caller decides what to do with a usage chunk
  // the client did not ask for); and there is no top-level `error` (an error event takes the
  // DOM path).
  bool needs_only_model() const { return verdict_.needs_only_model; }

  // How many choices the body has (a usage chunk has none).
  std::size_t choice_count() const { return verdict_.finish_reasons.size(); }

  // The usage normalize_response() reports for this body (extract_usage's names and rules:
  // integers, unsigned ones cast, finite doubles below 9e15 truncated, strings read as by
  // std::stoll; decimals are read by Boost.JSON, as the DOM path reads them; a repeated key
  // counts with its last value). Not present when there is none.
  const Usage& usage() const { return verdict_.usage; }

  // Each choice's finish reason as normalize_response() leaves it: normalize_finish_reason()'s
  // answer, or nullopt where it is null, absent or not a string. The views point to static
  // storage.
  std::span<const std::optional<std::string_view>> finish_reasons() const {
    return {verdict_.finish_reasons.data(), verdict_.finish_reasons.size()};
  }

  // The top-level `model` value as it is in the body, quotes included; empty unless it is a
  // string that appears once.
  std::string_view model_bytes() const { return model_; }

  // The client's answer: the body with `model` set to `client_model` (escaped by Boost.JSON's
  // serializer, as the DOM path writes it) and every other byte as the provider sent it.
  // nullopt unless needs_only_model().
  std::optional<std::string> spliced(std::string_view client_model) const;
  // The same, appended to `out`, with the model already serialized as JSON (quotes included);
  // only when needs_only_model().
  void append_spliced(std::string& out, std::string_view model_json) const;

 private:
  friend class ShapeMemo;

  // What the scan found, but for where the model's bytes are.
  struct Verdict {
    Usage usage;
    boost::container::small_vector<std::optional<std::string_view>, 2> finish_reasons;
    bool is_completion = false;
    bool needs_only_model = false;
  };

  // Reads the body; false (and nothing reported) when it is not a completion.
  bool scan();

  std::string_view text_;
  std::string_view model_;
  Verdict verdict_;
  AnswerShape shape_;
};

// A provider's answers of one shape differ from one another mostly inside values no verdict
// depends on: each message's or delta's `content`, a tool call's arguments, a relay's padding,
// the `id` (any non-empty string passes), `created` and other integers (any that fits int64),
// and the usage's token counts (read, but where they stand is all that matters). The memo keeps
// a few answers of the provider's that needed only their model changed, each as a template: its
// bytes outside those values ("slots") and its verdict. An answer with exactly a template's
// bytes around slot values of the slots' kinds (a valid JSON string, a non-empty one, an
// integer) parses to the same structure with the same values everywhere a verdict looks, but
// for the usage's counts, which are read from their slots: it takes the template's verdict
// without being parsed again. A stream's role, content and finish chunks, and most plain
// answers, repeat their provider's templates.
//
// A stream's chunk shapes are kept only from events whose data holds no line break (CR or LF):
// data that matches one holds none either, which SseParser::whole_data_event() relies on.
//
// One memo serves one shape of one provider on one worker (not thread-safe). What it keeps
// decides only which answers skip the scan: no byte of a kept answer reaches another client.
class ShapeMemo {
 public:
  // Only answers this long or shorter, with this many slots or fewer, are kept.
  static constexpr std::size_t kMaxBytes = 16 * 1024;
  static constexpr std::size_t kMaxSlots = 24;
  // Templates kept; the least recently matched one makes room for a new one.
  static constexpr std::size_t kTemplates = 4;

  // What a slot may hold. The last five are integers whose value is the usage's count of that
  // name (prompt_tokens_details' cached_tokens and cache_creation_tokens for the last two).
  enum class SlotKind : std::uint8_t {
    any_string,
    non_empty_string,
    integer,
    prompt_tokens,
    completion_tokens,
    total_tokens,
    cached_tokens,
    cache_creation_tokens,
  };
  struct Slot {
    SlotKind kind;
    std::uint32_t begin;  // the value's first byte in the kept text
    std::uint32_t end;    // past its last
  };

  explicit ShapeMemo(AnswerShape shape) : shape_(shape) {}
  AnswerShape shape() const { return shape_; }

  // How many answers took a kept verdict.
  std::size_t reuses() const { return reuses_; }

 private:
  friend class PlainAnswer;

  struct Template {
    std::string text;  // the answer as it was kept
    boost::container::small_vector<Slot, kMaxSlots> slots;
    std::size_t model_begin = 0;  // the model's value in `text`: in the bytes outside the slots
    std::size_t model_size = 0;
    PlainAnswer::Verdict verdict;
    std::size_t last_used = 0;
    // A bit per slot whose value differed from the kept one in a match: such a slot is read
    // where it stands, the others are compared with the fixed bytes around them at once. A
    // stream's content varies from chunk to chunk, its id and created from stream to stream.
    std::uint32_t varying = 0;
    // The template matched right after this one last time, tried first after it: a stream's
    // role chunk is followed by content chunks, those by more, the last by the finish chunk.
    std::size_t successor = kTemplates;
  };
  static_assert(kMaxSlots <= 32, "a bit per slot in Template::varying");

  // Gives `answer` a kept verdict when `text` matches a template; false otherwise.
  bool reuse(std::string_view text, PlainAnswer& answer);
  // Where the model's value begins in `text` when `text` matches `kept`, with `usage` set from
  // the template's verdict and the slots that hold its counts; npos otherwise.
  static std::size_t match(Template& kept, std::string_view text, Usage& usage);
  // match() after the tail was found, with only the varying slots read and the bytes between
  // them compared at once; `mispredicted` (and npos) when bytes that held a slot differ, as
  // they do when a slot varies for the first time.
  static std::size_t match_as_predicted(const Template& kept, std::string_view text, Usage& usage,
                                        bool& mispredicted);
  // match() after the tail was found, slot by slot, noting the slots that vary in `kept`.
  static std::size_t match_slot_by_slot(Template& kept, std::string_view text, Usage& usage);
  // Keeps `answer`, whose values at `slots` (value starts, ascending, with their kinds; ends are
  // found here) may vary, in place of the least recently matched template; keeps nothing if a
  // slot's value is not of its kind or two slots hold the same count.
  void keep(std::string_view text, const PlainAnswer& answer,
            std::span<const std::pair<SlotKind, std::size_t>> slots);

  AnswerShape shape_;
  std::array<Template, kTemplates> templates_;
  std::size_t kept_ = 0;        // templates in use, from the front
  std::size_t last_match_ = 0;  // the template tried first
  std::size_t uses_ = 0;        // matches and keeps so far: the recency clock
  std::size_t reuses_ = 0;
};

}  // namespace cutover::providers
