#include "providers/answer_scan.h"

#include <simdjson.h>

#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "providers/simdjson_parser.h"
#include "util/byte_words.h"

namespace cutover::providers {

namespace json = boost::json;
namespace ondemand = simdjson::ondemand;

namespace {

// Boost.JSON's default parse_options::max_depth, which the gateway's json::parse uses: a body
// nested deeper is refused there (502), so it must not pass here.
constexpr int kMaxDepth = 32;

// Boost.JSON refuses an exponent past INT_MAX (exponent_overflow) where simdjson reads
// 0e99999999999 as 0 and 1e-99999999999 as 0. Refusing exponents of nine digits and more is
// stricter by a margin that keeps Boost.JSON's own sum of exponent and digit count far from
// INT_MAX.
bool exponent_in_range(std::string_view number) {
  const auto e = number.find_first_of("eE");
  if (e == std::string_view::npos) return true;
  auto digits = number.substr(e + 1);
  if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) digits.remove_prefix(1);
  const auto first = digits.find_first_not_of('0');
  return first == std::string_view::npos || digits.size() - first < 9;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of the \u escape at `at` (its backslash), or -1 when it is none.
int escaped_unit(std::string_view text, std::size_t at) {
  if (text.size() - at < 6 || text[at] != '\\' || text[at + 1] != 'u') return -1;
  int unit = 0;
  for (std::size_t i = at + 2; i < at + 6; ++i) {
    const int digit = hex_digit(text[i]);
    if (digit < 0) return -1;
    unit = unit * 16 + digit;
  }
  return unit;
}

// Bytes a JSON string holds as they are, in ASCII: no control character, quote or backslash.
constexpr std::array<bool, 256> kPlainAscii = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// Past the plain ASCII bytes from `at` on, eight at a time while eight remain (long content is
// mostly such bytes): a word has none of the others when no byte is below 0x20, none is a quote
// or a backslash, and none has its high bit set. In a word that has one, the lowest flagged byte
// is one (a borrow only disturbs bytes above a true match), so the run ends there: a short
// string's closing quote is found in one step rather than a byte and a word test at a time.
std::size_t plain_ascii_run_end(std::string_view text, std::size_t at) {
  static_assert(std::endian::native == std::endian::little, "the first byte is the lowest");
  while (text.size() - at >= 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + at, 8);
    const std::uint64_t special = (word & util::kByteHighs) |
                                  util::word_has_byte_below(word, 0x20) |
                                  util::word_has_byte(word, '"') | util::word_has_byte(word, '\\');
    if (special != 0) return at + static_cast<std::size_t>(std::countr_zero(special)) / 8;
    at += 8;
  }
  return at;
}

// Where the JSON string token whose opening quote is at `begin` ends (just past its closing
// quote), when it is one that Boost.JSON and simdjson both take: valid UTF-8, no control
// character, known escapes, a surrogate escape only in a well-formed pair. npos otherwise; a
// string this refuses is left to the full scan, which decides. UTF-8 is validated only for a
// string with bytes past ASCII (most content is ASCII, and the check costs ~80 instructions).
std::size_t string_token_end(std::string_view text, std::size_t begin) {
  if (begin >= text.size() || text[begin] != '"') return std::string_view::npos;
  std::size_t at = begin + 1;
  bool ascii = true;
  while (at < text.size()) {
    at = plain_ascii_run_end(text, at);
    if (at == text.size()) break;
    const auto c = static_cast<unsigned char>(text[at]);
    if (kPlainAscii[c]) {
      ++at;
      continue;
    }
    if (c >= 0x80) {
      ascii = false;
      ++at;
      continue;
    }
    if (c == '"') {
      const auto inside = text.substr(begin + 1, at - begin - 1);
      if (!ascii && !simdjson::validate_utf8(inside.data(), inside.size())) {
        return std::string_view::npos;
      }
      return at + 1;
    }
    if (c < 0x20 || at + 1 == text.size()) return std::string_view::npos;
    switch (text[at + 1]) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        at += 2;
        continue;
      case 'u':
        break;
      default:
        return std::string_view::npos;
    }
    const int unit = escaped_unit(text, at);
    if (unit < 0 || (unit >= 0xDC00 && unit <= 0xDFFF)) return std::string_view::npos;
    at += 6;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      const int low = escaped_unit(text, at);
      if (low < 0xDC00 || low > 0xDFFF) return std::string_view::npos;
      at += 6;
    }
  }
  return std::string_view::npos;
}

// Where the JSON integer token at `begin` ends, when it is one that fits int64 (a sign, then a
// lone 0 or at most 18 digits: fewer than int64's 19, which spares a range check); npos
// otherwise. What follows the digits is the template's to match: a fraction or an exponent there
// does not.
std::size_t integer_token_end(std::string_view text, std::size_t begin) {
  std::size_t at = begin;
  if (at < text.size() && text[at] == '-') ++at;
  const std::size_t digits_begin = at;
  while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;
  const std::size_t digits = at - digits_begin;
  if (digits == 0 || digits > 18 || (digits > 1 && text[digits_begin] == '0')) {
    return std::string_view::npos;
  }
  return at;
}

// Where the scan notes the values a ShapeMemo may let vary (a ShapeMemo's slots), while a
// chunk's scan may be kept: valid() notes every string it reads, scan() the `id` and `created`.
// A pointer on the thread, like the parser the scan uses, rather than a parameter of every
// reading function; null when nothing is noted.
struct SlotNotes {
  const char* text = nullptr;
  boost::container::small_vector<std::pair<ShapeMemo::SlotKind, std::size_t>, ShapeMemo::kMaxSlots>
      slots;
  bool too_many = false;

  void note(ShapeMemo::SlotKind kind, const char* value) {
    if (slots.size() == ShapeMemo::kMaxSlots) {
      too_many = true;
    } else {
      slots.emplace_back(kind, static_cast<std::size_t>(value - text));
    }
  }
};
thread_local SlotNotes* slot_notes = nullptr;

void note_slot(ShapeMemo::SlotKind kind, ondemand::value& value) {
  if (slot_notes != nullptr) slot_notes->note(kind, value.raw_json_token().data());
}

// Sets slot_notes for one scan, and clears it however the scan ends.
class NotingSlots {
 public:
  explicit NotingSlots(SlotNotes* notes) { slot_notes = notes; }
  ~NotingSlots() { slot_notes = nullptr; }
  NotingSlots(const NotingSlots&) = delete;
  NotingSlots& operator=(const NotingSlots&) = delete;
};

// Reads a value the scan does not look into as Boost.JSON's parser would, so that what it
// refuses is refused here too: every key and string unescaped (bad escapes, lone surrogates),
// every number and literal parsed, nesting no deeper than kMaxDepth. On-demand iteration alone
// skips over unread values without checking them. `depth` is the value's own depth if it is a
// container (the top-level object is 1).
bool valid(ondemand::value& value, int depth) {
  ondemand::json_type type;
  if (value.type().get(type)) return false;
  switch (type) {
    case ondemand::json_type::object: {
      if (depth > kMaxDepth) return false;
      ondemand::object object;
      if (value.get_object().get(object)) return false;
      for (auto result : object) {
        ondemand::field field;
        std::string_view key;
        if (std::move(result).get(field) || field.unescaped_key().get(key)) return false;
        if (!valid(field.value(), depth + 1)) return false;
      }
      return true;
    }
    case ondemand::json_type::array: {
      if (depth > kMaxDepth) return false;
      ondemand::array array;
      if (value.get_array().get(array)) return false;
      for (auto result : array) {
        ondemand::value element;
        if (std::move(result).get(element) || !valid(element, depth + 1)) return false;
      }
      return true;
    }
    case ondemand::json_type::string: {
      note_slot(ShapeMemo::SlotKind::any_string, value);
      std::string_view text;
      return !value.get_string().get(text);
    }
    case ondemand::json_type::number: {
      // simdjson refuses numbers Boost.JSON takes (1e400, integers past 2^64): those answers
      // take the DOM path, which is safe. The other way round, only exponents differ.
      const auto token = trim_right(value.raw_json_token());
      ondemand::number number;
      const bool ok = !value.get_number().get(number) && exponent_in_range(token);
      if (ok && slot_notes != nullptr && integer_token_end(token, 0) == token.size()) {
        slot_notes->note(ShapeMemo::SlotKind::integer, token.data());
      }
      return ok;
    }
    case ondemand::json_type::boolean: {
      bool flag = false;
      return !value.get_bool().get(flag);
    }
    case ondemand::json_type::null: {
      bool is_null = false;
      return !value.is_null().get(is_null) && is_null;
    }
  }
  return false;
}

// A key the scan reads: how often it appeared, and whether its last value passes unchanged.
struct Seen {
  int count = 0;
  bool unchanged = false;
  bool once_unchanged() const { return count == 1 && unchanged; }
};

// A parsed number or string as extract_usage counts it (as_count in openai_dialect.cc).
struct Count {
  std::optional<std::int64_t> value;
  bool is_int64 = false;  // an integer Boost.JSON holds as int64: the DOM keeps it as it is
};

std::optional<std::int64_t> count_of_text(std::string_view text) {
  // std::stoll is strtoll with its failures thrown: no digits, or out of range. It reads up to
  // the first NUL, as strtoll does on this copy.
  const std::string copy(text);
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(copy.c_str(), &end, 10);
  if (end == copy.c_str() || errno == ERANGE) return std::nullopt;
  return static_cast<std::int64_t>(parsed);
}

// A number that is not a signed 64-bit integer, read by Boost.JSON as the DOM path reads it:
// simdjson 3.0.1 misreads some decimals with more than 19 digits (0.99999999999999999999999
// gives 2e-06), and Boost.JSON 1.81 does not always round the last bit as simdjson does.
std::optional<std::int64_t> count_of_number(std::string_view token) {
  unsigned char buffer[256];
  json::monotonic_resource memory(buffer, sizeof buffer);
  boost::system::error_code ec;
  const auto number = json::parse(token, ec, &memory);
  if (ec) return std::nullopt;
  if (number.is_int64()) return number.get_int64();
  if (number.is_uint64()) return static_cast<std::int64_t>(number.get_uint64());
  // Token counts beyond 2^53 are nonsense; refusing them also keeps the cast defined.
  if (number.is_double() && std::isfinite(number.get_double()) &&
      std::fabs(number.get_double()) < 9.0e15) {
    return static_cast<std::int64_t>(number.get_double());
  }
  return std::nullopt;
}

// Reads a count and validates the value; false on invalid JSON.
bool read_count(ondemand::value& value, int depth, Count& count) {
  count = Count{};
  ondemand::json_type type;
  if (value.type().get(type)) return false;
  if (type == ondemand::json_type::number) {
    ondemand::number_type number_type;
    if (value.get_number_type().get(number_type)) return false;
    if (number_type == ondemand::number_type::signed_integer) {
      std::int64_t integer = 0;
      if (value.get_int64().get(integer)) return false;
      count.value = integer;
      count.is_int64 = true;
      return true;
    }
    const auto token = trim_right(value.raw_json_token());
    if (!valid(value, depth)) return false;
    count.value = count_of_number(token);
    return true;
  }
  if (type == ondemand::json_type::string) {
    std::string_view text;
    if (value.get_string().get(text)) return false;
    count.value = count_of_text(text);
    return true;
  }
  return valid(value, depth);
}

// read_count(), the value noted as a slot of `kind` when it is an integer that fits int64 (the
// only form a slot holds).
bool read_count_noted(ondemand::value& value, int depth, Count& count, ShapeMemo::SlotKind kind) {
  const char* token = value.raw_json_token().data();
  if (!read_count(value, depth, count)) return false;
  if (count.is_int64 && slot_notes != nullptr) slot_notes->note(kind, token);
  return true;
}

// normalize_finish_reason()'s answer in static storage (it returns its argument for OpenAI's own
// reasons, and the argument lives in the parser's buffer).
std::string_view static_finish_reason(std::string_view reason) {
  static constexpr std::array<std::string_view, 5> kReasons = {"stop", "length", "tool_calls",
                                                               "content_filter", "function_call"};
  const auto normalized = normalize_finish_reason(reason);
  for (auto known : kReasons) {
    if (normalized == known) return known;
  }
  return kReasons[0];
}

bool is_openai_reason(std::string_view reason) { return normalize_finish_reason(reason) == reason; }

// extract_usage's reading of a usage object, key by key; a repeated key counts with its last
// value, as in the DOM.
struct UsageFields {
  enum Name {
    prompt_tokens,
    input_tokens,
    prompt_token_count,
    completion_tokens,
    generated_tokens,
    output_tokens,
    candidates_token_count,
    total_tokens,
    total_token_count,
    cache_read_input_tokens,
    cached_tokens,
    kCount
  };
  static constexpr std::array<std::string_view, kCount> kNames = {
      "prompt_tokens",           "input_tokens",     "prompt_token_count",
      "completion_tokens",       "generated_tokens", "output_tokens",
      "candidates_token_count",  "total_tokens",     "total_token_count",
      "cache_read_input_tokens", "cached_tokens"};

  std::array<Count, kCount> counts{};
  std::array<int, kCount> seen{};
  bool details_object = false;  // the last prompt_tokens_details was an object
  Count details_cached;
  Count details_cache_creation;
  Seen prompt_details;
  Seen completion_details;
  bool other_key = false;  // a key normalize_usage drops
  bool repeated = false;

  std::optional<std::int64_t> first(std::initializer_list<Name> names) const {
    for (auto name : names) {
      if (counts[name].value) return counts[name].value;
    }
    return std::nullopt;
  }

  Usage usage() const {
    Usage usage;
    auto prompt = first({prompt_tokens, input_tokens, prompt_token_count});
    auto completion =
        first({completion_tokens, generated_tokens, output_tokens, candidates_token_count});
    auto total = first({total_tokens, total_token_count});
    if (!prompt && !completion && !total) return usage;
    usage.present = true;
    usage.prompt_tokens = prompt.value_or(0);
    usage.completion_tokens = completion.value_or(0);
    usage.total_tokens = total.value_or(usage.prompt_tokens + usage.completion_tokens);
    if (details_object) {
      usage.cached_prompt_tokens = details_cached.value.value_or(0);
      usage.cache_creation_prompt_tokens = details_cache_creation.value.value_or(0);
    } else if (auto cached = first({cache_read_input_tokens, cached_tokens})) {
      usage.cached_prompt_tokens = *cached;
    }
    return usage;
  }

  // normalize_usage() would rebuild the object into exactly what it is.
  bool unchanged() const {
    if (other_key || repeated) return false;
    for (auto name : {prompt_tokens, completion_tokens, total_tokens}) {
      if (seen[name] != 1 || !counts[name].is_int64) return false;
    }
    return (prompt_details.count == 0 || prompt_details.once_unchanged()) &&
           (completion_details.count == 0 || completion_details.once_unchanged());
  }
};

bool read_details(ondemand::value& value, int depth, UsageFields& fields) {
  fields.details_object = false;
  fields.details_cached = Count{};
  fields.details_cache_creation = Count{};
  ondemand::json_type type;
  if (value.type().get(type)) return false;
  if (type != ondemand::json_type::object) return valid(value, depth);
  if (depth > kMaxDepth) return false;
  fields.details_object = true;
  ondemand::object object;
  if (value.get_object().get(object)) return false;
  int cached_seen = 0;
  int cache_creation_seen = 0;
  for (auto result : object) {
    ondemand::field field;
    std::string_view key;
    if (std::move(result).get(field) || field.unescaped_key().get(key)) return false;
    bool ok = true;
    if (key == "cached_tokens") {
      ok = read_count_noted(field.value(), depth + 1, fields.details_cached,
                            ShapeMemo::SlotKind::cached_tokens);
      // A repeated count leaves the answer to the DOM path, as a repeated usage key does: a
      // memo's slot could not tell which of the two counts.
      fields.repeated = fields.repeated || ++cached_seen > 1;
    } else if (key == "cache_creation_tokens") {
      ok = read_count_noted(field.value(), depth + 1, fields.details_cache_creation,
                            ShapeMemo::SlotKind::cache_creation_tokens);
      fields.repeated = fields.repeated || ++cache_creation_seen > 1;
    } else {
      ok = valid(field.value(), depth + 1);
    }
    if (!ok) return false;
  }
  return true;
}

// `usage`: fills `fields` when it is an object; `unchanged` when normalize_response() leaves it
// as it is. False on invalid JSON.
bool read_usage(ondemand::value& value, UsageFields& fields, bool& unchanged) {
  constexpr int depth = 2;
  fields = UsageFields{};
  unchanged = false;
  ondemand::json_type type;
  if (value.type().get(type)) return false;
  if (type == ondemand::json_type::null) {
    unchanged = true;
    return valid(value, depth);
  }
  // Anything else that is not an object reports no usage, and the DOM path erases it.
  if (type != ondemand::json_type::object) return valid(value, depth);
  ondemand::object object;
  if (value.get_object().get(object)) return false;
  for (auto result : object) {
    ondemand::field field;
    std::string_view key;
    if (std::move(result).get(field) || field.unescaped_key().get(key)) return false;
    bool ok = true;
    if (key == "prompt_tokens_details") {
      ++fields.prompt_details.count;
      ok = read_details(field.value(), depth + 1, fields);
      fields.prompt_details.unchanged = fields.details_object;
    } else if (key == "completion_tokens_details") {
      ++fields.completion_details.count;
      ondemand::json_type detail_type;
      if (field.value().type().get(detail_type)) return false;
      fields.completion_details.unchanged = detail_type == ondemand::json_type::object;
      ok = valid(field.value(), depth + 1);
    } else {
      std::size_t i = 0;
      while (i < UsageFields::kCount && UsageFields::kNames[i] != key) ++i;
      if (i == UsageFields::kCount) {
        fields.other_key = true;
        ok = valid(field.value(), depth + 1);
      } else {
        fields.repeated = fields.repeated || fields.seen[i] > 0;
        ++fields.seen[i];
        // OpenAI's own three counts are a memo's count slots; any other name is rewritten.
        using Kind = ShapeMemo::SlotKind;
        const std::optional<Kind> slot =
            i == UsageFields::prompt_tokens       ? Kind::prompt_tokens
            : i == UsageFields::completion_tokens ? Kind::completion_tokens
            : i == UsageFields::total_tokens      ? std::optional<Kind>(Kind::total_tokens)
                                                  : std::nullopt;
        if (slot) {
          ok = read_count_noted(field.value(), depth + 1, fields.counts[i], *slot);
        } else {
          fields.other_key = true;
          ok = read_count(field.value(), depth + 1, fields.counts[i]);
        }
      }
    }
    if (!ok) return false;
  }
  unchanged = fields.unchanged() && fields.usage().present;
  return true;
}

// A choice's `message`: unchanged when it has `role` a string and `content` a string or null.
// A chunk's `delta`: unchanged when its `content`, if there, is a string or null.
bool read_message(ondemand::value& value, int depth, AnswerShape shape, bool& unchanged) {
  unchanged = false;
  ondemand::json_type type;
  if (value.type().get(type)) return false;
  if (type != ondemand::json_type::object) return valid(value, depth);
  if (depth > kMaxDepth) return false;
  ondemand::object object;
  if (value.get_object().get(object)) return false;
  Seen role;
  Seen content;
  for (auto result : object) {
    ondemand::field field;
    std::string_view key;
    if (std::move(result).get(field) || field.unescaped_key().get(key)) return false;
    Seen* read = key == "role" ? &role : key == "content" ? &content : nullptr;
    ondemand::json_type field_type;
    if (read == nullptr) {
      if (!valid(field.value(), depth + 1)) return false;
      continue;
    }
    if (field.value().type().get(field_type)) return false;
    ++read->count;
    read->unchanged = field_type == ondemand::json_type::string ||
                      (read == &content && field_type == ondemand::json_type::null);
    if (!valid(field.value(), depth + 1)) return false;
  }
  unchanged = shape == AnswerShape::chunk
                  ? (role.count <= 1 && (content.count == 0 || content.once_unchanged()))
                  : (role.once_unchanged() && content.once_unchanged());
  return true;
}

// One element of `choices`: records its finish reason; `unchanged` when normalize_choices()
// leaves it as it is. False on invalid JSON.
bool read_choice(ondemand::value& value, AnswerShape shape,
                 std::optional<std::string_view>& finish_reason, bool& unchanged) {
  constexpr int depth = 3;
  finish_reason.reset();
  unchanged = false;
  ondemand::json_type type;
  if (value.type().get(type)) return false;
  if (type != ondemand::json_type::object) return valid(value, depth);
  ondemand::object object;
  if (value.get_object().get(object)) return false;
  Seen index;
  Seen reason;
  Seen message;
  for (auto result : object) {
    ondemand::field field;
    std::string_view key;
    if (std::move(result).get(field) || field.unescaped_key().get(key)) return false;
    auto& element = field.value();
    if (key == "index") {
      Count count;
      if (!read_count(element, depth + 1, count)) return false;
      ++index.count;
      index.unchanged = count.is_int64;
    } else if (key == "finish_reason") {
      ++reason.count;
      finish_reason.reset();
      ondemand::json_type reason_type;
      if (element.type().get(reason_type)) return false;
      if (reason_type == ondemand::json_type::string) {
        std::string_view text;
        if (element.get_string().get(text)) return false;
        finish_reason = static_finish_reason(text);
        reason.unchanged = is_openai_reason(text);
      } else {
        reason.unchanged = reason_type == ondemand::json_type::null;
        if (!valid(element, depth + 1)) return false;
      }
    } else if (key == (shape == AnswerShape::chunk ? "delta" : "message")) {
      ++message.count;
      if (!read_message(element, depth + 1, shape, message.unchanged)) return false;
    } else if (!valid(element, depth + 1)) {
      return false;
    }
  }
  unchanged = index.once_unchanged() && reason.once_unchanged() && message.once_unchanged();
  return true;
}

// Where a slot's value beginning at `begin` ends, when it is of the slot's kind; npos otherwise.
std::size_t slot_end(ShapeMemo::SlotKind kind, std::string_view text, std::size_t begin) {
  switch (kind) {
    case ShapeMemo::SlotKind::any_string:
      return string_token_end(text, begin);
    case ShapeMemo::SlotKind::non_empty_string: {
      const std::size_t end = string_token_end(text, begin);
      return end != std::string_view::npos && end - begin > 2 ? end : std::string_view::npos;
    }
    case ShapeMemo::SlotKind::integer:
    case ShapeMemo::SlotKind::prompt_tokens:
    case ShapeMemo::SlotKind::completion_tokens:
    case ShapeMemo::SlotKind::total_tokens:
    case ShapeMemo::SlotKind::cached_tokens:
    case ShapeMemo::SlotKind::cache_creation_tokens:
      return integer_token_end(text, begin);
  }
  return std::string_view::npos;
}

// Sets the usage's count that a slot of `kind` holds from its value, an integer token of at most
// 18 digits (slot_end() has checked it).
void set_count(Usage& usage, ShapeMemo::SlotKind kind, std::string_view token) {
  std::int64_t value = 0;
  std::from_chars(token.data(), token.data() + token.size(), value);
  // In SlotKind's order, from prompt_tokens on.
  static constexpr std::array<std::int64_t Usage::*, 5> kCounts = {
      &Usage::prompt_tokens, &Usage::completion_tokens, &Usage::total_tokens,
      &Usage::cached_prompt_tokens, &Usage::cache_creation_prompt_tokens};
  const auto index =
      static_cast<std::size_t>(kind) - static_cast<std::size_t>(ShapeMemo::SlotKind::prompt_tokens);
  if (index < kCounts.size()) usage.*kCounts[index] = value;
}

}  // namespace

static_assert(PlainAnswer::kPadding == simdjson::SIMDJSON_PADDING);

PlainAnswer::PlainAnswer(std::string& text, AnswerShape shape) : shape_(shape) {
  text.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  text_ = text;
  if (!scan()) verdict_.finish_reasons.clear();
  // Nothing reported refers to the parser's buffers, so they may be released now.
  release_large_parser_buffers();
}

PlainAnswer::PlainAnswer(std::string& text, ShapeMemo& memo) : shape_(memo.shape()) {
  text.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  text_ = text;
  if (memo.reuse(text_, *this)) return;
  SlotNotes notes;
  notes.text = text_.data();
  const bool may_keep = text_.size() <= ShapeMemo::kMaxBytes;
  {
    const NotingSlots noting(may_keep ? &notes : nullptr);
    if (!scan()) verdict_.finish_reasons.clear();
  }
  release_large_parser_buffers();
  if (may_keep && !notes.too_many && verdict_.needs_only_model) {
    memo.keep(text_, *this, notes.slots);
  }
}

PlainAnswer::PlainAnswer(std::string_view text, ShapeMemo& memo, KeptShapesOnly)
    : text_(text), shape_(memo.shape()) {
  memo.reuse(text_, *this);
}

bool PlainAnswer::scan() {
  auto& parser = thread_parser();
  const std::size_t capacity = text_.size() + simdjson::SIMDJSON_PADDING;
  ondemand::document document;
  if (parser.iterate(simdjson::padded_string_view(text_.data(), text_.size(), capacity))
          .get(document)) {
    return false;
  }
  ondemand::object object;
  if (document.get_object().get(object)) return false;
  constexpr int depth = 2;
  Seen id, type, created, model, fingerprint, choices, usage, error;
  const bool chunk = shape_ == AnswerShape::chunk;
  // Made only for a usage that is not null: a stream's chunks have none or a null one but the
  // last, and the fields and their figures cost about 150 instructions a chunk to make and read.
  std::optional<UsageFields> usage_fields;
  bool choices_array = false;
  std::string_view model_bytes;
  for (auto result : object) {
    ondemand::field field;
    std::string_view key;
    if (std::move(result).get(field) || field.unescaped_key().get(key)) return false;
    auto& value = field.value();
    ondemand::json_type value_type;
    if (value.type().get(value_type)) return false;
    const bool is_string = value_type == ondemand::json_type::string;
    bool ok = true;
    if (key == "choices") {
      ++choices.count;
      choices_array = value_type == ondemand::json_type::array;
      verdict_.finish_reasons.clear();
      choices.unchanged = choices_array;
      if (!choices_array) {
        ok = valid(value, depth);
      } else {
        ondemand::array array;
        if (value.get_array().get(array)) return false;
        for (auto element_result : array) {
          ondemand::value element;
          bool choice_unchanged = false;
          if (std::move(element_result).get(element)) return false;
          if (!read_choice(element, shape_, verdict_.finish_reasons.emplace_back(),
                           choice_unchanged)) {
            return false;
          }
          choices.unchanged = choices.unchanged && choice_unchanged;
        }
      }
    } else if (key == "usage") {
      ++usage.count;
      if (value_type == ondemand::json_type::null) {
        // What read_usage makes of a null, without its fields: a stream that asked for usage
        // has `"usage":null` on every chunk but the last.
        usage_fields.reset();
        usage.unchanged = true;
        ok = valid(value, depth);
      } else {
        ok = read_usage(value, usage_fields.emplace(), usage.unchanged);
      }
    } else if (key == "model") {
      ++model.count;
      model.unchanged = is_string;
      // The raw token runs to the next structural character: trailing whitespace is not its.
      // Read here, not by valid(): the model's bytes are no slot of a ShapeMemo.
      if (is_string) {
        model_bytes = trim_right(value.raw_json_token());
        std::string_view text;
        ok = !value.get_string().get(text);
      } else {
        ok = valid(value, depth);
      }
    } else if (key == "id" || key == "object") {
      Seen& seen = key == "id" ? id : type;
      ++seen.count;
      seen.unchanged = false;
      std::string_view text;
      if (is_string) {
        if (&seen == &id) note_slot(ShapeMemo::SlotKind::non_empty_string, value);
        if (value.get_string().get(text)) return false;
        seen.unchanged = &seen == &id ? !text.empty()
                                      : text == (chunk ? "chat.completion.chunk" : "chat.completion");
      } else {
        ok = valid(value, depth);
      }
    } else if (key == "created") {
      ++created.count;
      Count count;
      ok = read_count_noted(value, depth, count, ShapeMemo::SlotKind::integer);
      created.unchanged = count.is_int64;
    } else if (key == "system_fingerprint") {
      ++fingerprint.count;
      fingerprint.unchanged = true;
      ok = valid(value, depth);
    } else if (chunk && key == "error") {
      ++error.count;
      ok = valid(value, depth);
    } else {
      ok = valid(value, depth);
    }
    if (!ok) return false;
  }
  // Boost.JSON refuses anything after the top-level value; at the end there is no location.
  if (document.current_location().error() != simdjson::OUT_OF_BOUNDS) return false;
  if (!choices_array) return false;
  verdict_.is_completion = true;
  verdict_.usage = usage_fields ? usage_fields->usage() : Usage{};
  if (model.once_unchanged()) model_ = model_bytes;
  const bool identity_unchanged = id.once_unchanged() && type.once_unchanged() &&
                                  created.once_unchanged() && model.once_unchanged() &&
                                  choices.once_unchanged();
  if (chunk) {
    // A chunk's usage is rewritten only when it reports tokens (one that reports none stays as
    // it is); no system_fingerprint is added to a chunk.
    const bool usage_unchanged =
        usage.count == 0 || (usage.count == 1 && (usage.unchanged || !verdict_.usage.present));
    verdict_.needs_only_model =
        identity_unchanged && fingerprint.count <= 1 && error.count == 0 && usage_unchanged;
  } else {
    verdict_.needs_only_model = identity_unchanged && fingerprint.once_unchanged() &&
                                (usage.count == 0 || usage.once_unchanged());
  }
  return true;
}

std::optional<std::string> PlainAnswer::spliced(std::string_view client_model) const {
  if (!verdict_.needs_only_model) return std::nullopt;
  const auto model = json::serialize(json::string_view(client_model));
  std::string out;
  out.reserve(text_.size() - model_.size() + model.size());
  append_spliced(out, model);
  return out;
}

void PlainAnswer::append_spliced(std::string& out, std::string_view model_json) const {
  const auto offset = static_cast<std::size_t>(model_.data() - text_.data());
  out.append(text_.substr(0, offset));
  out.append(model_json);
  out.append(text_.substr(offset + model_.size()));
}

bool ShapeMemo::reuse(std::string_view text, PlainAnswer& answer) {
  // The template that followed the last match the last time first, else the last match again.
  const std::size_t guess = templates_[last_match_].successor;
  const std::size_t first = guess < kept_ ? guess : last_match_;
  for (std::size_t tried = 0; tried < kept_; ++tried) {
    const std::size_t index = tried == 0 ? first : (tried <= first ? tried - 1 : tried);
    Template& kept = templates_[index];
    Usage usage;
    const std::size_t model = match(kept, text, usage);
    if (model == std::string_view::npos) continue;
    answer.verdict_ = kept.verdict;
    answer.verdict_.usage = usage;
    answer.model_ = text.substr(model, kept.model_size);
    kept.last_used = ++uses_;
    templates_[last_match_].successor = index;
    last_match_ = index;
    ++reuses_;
    return true;
  }
  return false;
}

std::size_t ShapeMemo::match(Template& kept, std::string_view text, Usage& usage) {
  // The bytes after the last slot first: they tell most other shapes apart (the finish chunk's
  // reason, the role chunk's refusal) before any slot is read.
  const std::size_t tail_begin = kept.slots.empty() ? 0 : kept.slots.back().end;
  const std::size_t tail_size = kept.text.size() - tail_begin;
  if (text.size() < tail_size || std::memcmp(text.data() + text.size() - tail_size,
                                             kept.text.data() + tail_begin, tail_size) != 0) {
    return std::string_view::npos;
  }
  bool mispredicted = false;
  const std::size_t model = match_as_predicted(kept, text, usage, mispredicted);
  return mispredicted ? match_slot_by_slot(kept, text, usage) : model;
}

std::size_t ShapeMemo::match_as_predicted(const Template& kept, std::string_view text, Usage& usage,
                                          bool& mispredicted) {
  constexpr auto npos = std::string_view::npos;
  usage = kept.verdict.usage;
  const std::size_t tail_begin = kept.slots.empty() ? 0 : kept.slots.back().end;
  std::size_t at = 0;       // in `text`
  std::size_t kept_at = 0;  // in kept.text
  std::size_t model = npos;
  bool run_holds_slots = false;  // whether the bytes from kept_at on take in a slot held
  // The kept bytes [kept_at, kept_end) follow in `text`: fixed bytes, and the values of slots
  // that held. A string slot's value compared with its closing quote is that value; after an
  // integer comes a kept byte that is no digit (a value is followed by `,`, `]` or `}`), and a
  // count equal to the kept one is the kept count.
  const auto run_follows = [&](std::size_t kept_end) {
    const std::size_t size = kept_end - kept_at;
    if (text.size() - at < size ||
        std::memcmp(text.data() + at, kept.text.data() + kept_at, size) != 0) {
      mispredicted = run_holds_slots;
      return false;
    }
    if (kept.model_begin >= kept_at && kept.model_begin < kept_end) {
      model = at + (kept.model_begin - kept_at);
    }
    at += size;
    kept_at = kept_end;
    return true;
  };
  // The varying slots in order, by their bits; the slots passed between two of them held.
  std::size_t next = 0;  // the first slot after the last one read
  for (std::uint32_t bits = kept.varying; bits != 0; bits &= bits - 1) {
    const auto index = static_cast<std::size_t>(std::countr_zero(bits));
    const Slot& slot = kept.slots[index];
    run_holds_slots = index > next;
    if (!run_follows(slot.begin)) return npos;
    const std::size_t begin = at;
    at = slot_end(slot.kind, text, at);
    if (at == npos) return npos;
    if (slot.kind > SlotKind::integer) set_count(usage, slot.kind, text.substr(begin, at - begin));
    kept_at = slot.end;
    next = index + 1;
  }
  run_holds_slots = kept.slots.size() > next;
  // Up to the tail, which match() found at the text's end: it must begin right here.
  if (!run_follows(tail_begin)) return npos;
  if (text.size() - at != kept.text.size() - tail_begin) {
    mispredicted = run_holds_slots;
    return npos;
  }
  if (kept.model_begin >= tail_begin) model = at + (kept.model_begin - tail_begin);
  return model;
}

std::size_t ShapeMemo::match_slot_by_slot(Template& kept, std::string_view text, Usage& usage) {
  constexpr auto npos = std::string_view::npos;
  usage = kept.verdict.usage;
  std::size_t at = 0;       // in `text`
  std::size_t kept_at = 0;  // in kept.text
  std::size_t model = npos;
  std::uint32_t varying = 0;
  // The kept bytes [kept_at, kept_end) follow in `text`, the last `value_size` of them a slot's
  // kept value.
  const auto follow = [&](std::size_t kept_end, std::size_t value_size) {
    const std::size_t size = kept_end - kept_at;
    if (text.size() - at < size ||
        std::memcmp(text.data() + at, kept.text.data() + kept_at, size) != 0) {
      return false;
    }
    if (kept.model_begin >= kept_at && kept.model_begin < kept_end - value_size) {
      model = at + (kept.model_begin - kept_at);
    }
    at += size;
    kept_at = kept_end;
    return true;
  };
  const auto digit_at = [&](std::size_t index) {
    return index < text.size() && text[index] >= '0' && text[index] <= '9';
  };
  for (std::size_t index = 0; index < kept.slots.size(); ++index) {
    const Slot& slot = kept.slots[index];
    // The fixed bytes and the kept value at once first: a string that begins with the kept
    // value's bytes, closing quote included, is that value (a string ends at its first
    // unescaped quote); an integer is when no digit follows; a count equal to the kept one is
    // the kept count.
    const std::size_t value_size = slot.end - slot.begin;
    const std::size_t at_before = at;
    const std::size_t kept_before = kept_at;
    if (follow(slot.end, value_size) && (slot.kind < SlotKind::integer || !digit_at(at))) continue;
    at = at_before;
    kept_at = kept_before;
    if (!follow(slot.begin, 0)) return npos;
    const std::size_t begin = at;
    at = slot_end(slot.kind, text, at);
    if (at == npos) return npos;
    if (slot.kind > SlotKind::integer) set_count(usage, slot.kind, text.substr(begin, at - begin));
    kept_at = slot.end;
    varying |= 1u << index;
  }
  if (!follow(kept.text.size(), 0) || at != text.size()) return npos;
  kept.varying |= varying;
  return model;
}

void ShapeMemo::keep(std::string_view text, const PlainAnswer& answer,
                     std::span<const std::pair<SlotKind, std::size_t>> slots) {
  const auto model_begin = static_cast<std::size_t>(answer.model_.data() - text.data());
  const auto model_end = model_begin + answer.model_.size();
  if (answer.model_.empty()) return;
  if (shape_ == AnswerShape::chunk && text.find_first_of("\r\n") != std::string_view::npos) return;
  boost::container::small_vector<Slot, kMaxSlots> found;
  std::size_t at = 0;
  unsigned counts_seen = 0;  // a bit per usage count kind
  for (const auto& [kind, begin] : slots) {
    if (begin < at) return;
    if (kind > SlotKind::integer) {
      const unsigned bit = 1u << static_cast<unsigned>(kind);
      if ((counts_seen & bit) != 0) return;
      counts_seen |= bit;
    }
    const std::size_t end = slot_end(kind, text, begin);
    if (end == std::string_view::npos) return;
    // The model's bytes must lie outside every slot, between two of them.
    if (model_begin < end && begin < model_end) return;
    found.push_back(Slot{kind, static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(end)});
    at = end;
  }
  std::size_t index = kept_;
  if (kept_ < kTemplates) {
    ++kept_;
  } else {
    index = 0;
    for (std::size_t i = 1; i < kTemplates; ++i) {
      if (templates_[i].last_used < templates_[index].last_used) index = i;
    }
  }
  Template& kept = templates_[index];
  kept.text.assign(text);
  kept.slots = found;
  kept.model_begin = model_begin;
  kept.model_size = answer.model_.size();
  kept.varying = 0;
  kept.successor = kTemplates;
  kept.verdict = answer.verdict_;
  kept.last_used = ++uses_;
  templates_[last_match_].successor = index;
  last_match_ = index;
}

}  // namespace cutover::providers
