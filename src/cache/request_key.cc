// The response cache's keys: a request's fields that can change the answer, with every object's
// keys sorted, written either from a tree or, for an OpenAI client's body, from Boost.JSON's
// parser events without one. Both write the same bytes (tests/unit/cache compares them).
#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <memory>
// basic_parser with a handler of our own needs its member definitions.
#include <boost/json/basic_parser_impl.hpp>

#include "cache/response_cache.h"
#include "providers/request_summary_handler.h"
#include "util/json_string.h"
#include "util/sha256.h"

namespace cutover::cache {

namespace json = boost::json;

namespace {

constexpr std::string_view kLeftOut[] = {"stream", "stream_options", "user", "metadata", "store"};

bool left_out(std::string_view key) {
  return std::find(std::begin(kLeftOut), std::end(kLeftOut), key) != std::end(kLeftOut);
}

std::string_view stream_line(bool stream) { return stream ? "stream" : "plain"; }

void write_prefix(std::string& out, std::string_view kind, bool stream, std::string_view tenant) {
  out.append(kind).push_back('\n');
  out.append(stream_line(stream)).push_back('\n');
  out.append(tenant).push_back('\n');
}

// `Out` is std::string or KeyText: anything with append(const char*, std::size_t).
template <typename Out, typename Integer>
void write_integer(Out& out, Integer number) {
  char digits[24];
  const char* end = std::to_chars(digits, digits + sizeof digits, number).ptr;
  out.append(digits, static_cast<std::size_t>(end - digits));
}

// Doubles are written by Boost.JSON's serializer, as json::serialize writes them; made on the
// first one (most requests have none).
class DoubleWriter {
 public:
  template <typename Out>
  void write(Out& out, const json::value& value) {
    if (!serializer_) serializer_.emplace();
    serializer_->reset(&value);
    while (!serializer_->done()) {
      const auto piece = serializer_->read(buffer_, sizeof buffer_);
      out.append(piece.data(), piece.size());
    }
  }

 private:
  std::optional<json::serializer> serializer_;
  char buffer_[64];
};

// Writes a tree with every object's keys sorted (Boost.JSON keeps them in the order they came,
// and a key must not depend on it). Strings (util/json_string), integers, booleans and null are
// written directly, doubles through one serializer: the bytes are Boost.JSON's in every case.
// Each object's members go through an inline vector: nothing here allocates but the output.
class TreeWriter {
 public:
  explicit TreeWriter(std::string& out) : out_(out) {}

  // The request body, less the top-level fields that do not change the answer.
  void write_body(const json::object& body) { write_object(body, true); }

 private:
  void write(const json::value& value) {
    if (value.is_object()) {
      write_object(value.get_object(), false);
    } else if (value.is_array()) {
      out_.push_back('[');
      bool first = true;
      for (const auto& item : value.get_array()) {
        if (!first) out_.push_back(',');
        first = false;
        write(item);
      }
      out_.push_back(']');
    } else if (value.is_string()) {
      write_string(value.get_string());
    } else if (value.is_int64()) {
      write_integer(out_, value.get_int64());
    } else if (value.is_uint64()) {
      write_integer(out_, value.get_uint64());
    } else if (value.is_bool()) {
      out_.append(value.get_bool() ? "true" : "false");
    } else if (value.is_null()) {
      out_.append("null");
    } else {
      doubles_.write(out_, value);
    }
  }

  void write_string(json::string_view text) {
    util::append_json_string(out_, std::string_view(text.data(), text.size()));
  }

  void write_object(const json::object& object, bool top) {
    boost::container::small_vector<const json::key_value_pair*, 16> members;
    for (const auto& member : object) {
      if (top && left_out(member.key())) continue;
      members.push_back(&member);
    }
    std::sort(members.begin(), members.end(),
              [](const auto* a, const auto* b) { return a->key() < b->key(); });
    out_.push_back('{');
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (i > 0) out_.push_back(',');
      write_string(members[i]->key());
      out_.push_back(':');
      write(members[i]->value());
    }
    out_.push_back('}');
  }

  std::string& out_;
  DoubleWriter doubles_;
};

bool is_zero(const json::value& value) {
  return (value.is_int64() && value.get_int64() == 0) ||
         (value.is_uint64() && value.get_uint64() == 0) ||
         (value.is_double() && value.get_double() == 0.0);
}

// The event writer's text: appends that check their room once and are inlined (std::string's
// push_back and append are calls, about a fifth of the writer's instructions).
class KeyText {
 public:
  std::size_t size() const { return size_; }
  const char* data() const { return data_.get(); }
  std::size_t capacity() const { return capacity_; }
  void clear() { size_ = 0; }
  // Drops what was written after the first `size` bytes.
  void truncate(std::size_t size) { size_ = size; }
  void reserve(std::size_t size) {
    if (size > capacity_) grow(size - size_);
  }
  void push_back(char c) {
    if (size_ == capacity_) grow(1);
    data_[size_++] = c;
  }
  void append(const char* text, std::size_t size) {
    if (size > capacity_ - size_) grow(size);
    std::memcpy(data_.get() + size_, text, size);
    size_ += size;
  }
  void append(std::string_view text) { append(text.data(), text.size()); }
  void append(const KeyText& other, std::size_t begin, std::size_t size) {
    append(other.data() + begin, size);
  }
  void release() {
    data_.reset();
    size_ = capacity_ = 0;
  }

 private:
  void grow(std::size_t more) {
    const std::size_t capacity = std::max({capacity_ * 2, size_ + more, std::size_t(256)});
    auto data = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ > 0) std::memcpy(data.get(), data_.get(), size_);
    data_ = std::move(data);
    capacity_ = capacity;
  }

  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// Room the event writer keeps between requests on its thread: a key costs no allocation but its
// text. A body far larger than usual does not leave its room behind.
struct EventScratch {
  // An object's members, written in the order they came, "key":value each.
  struct Member {
    // The unescaped key: in the body when it stood there as it is (body_key), else in `keys`.
    const char* body_key = nullptr;
    std::size_t key_begin = 0, key_size = 0;
    std::size_t text_begin = 0, text_end = 0;  // the member's text in the output
    bool left_out = false;                     // a top-level field the key leaves out
    bool zero = false;                         // the value is a number equal to zero
    bool null = false;
  };
  // An open object or array.
  struct Container {
    bool object = false;
    bool first = true;           // an array: no element written yet
    std::size_t text_begin = 0;  // where its text begins in the output
    std::size_t members_begin = 0;
  };
  KeyText text;  // the body's part of the key
  std::vector<Member> members;
  std::vector<Container> containers;
  std::vector<std::uint32_t> order;
  std::string keys;
  std::string pieces;   // a key or string that came in parts
  std::string escaped;  // one that needs escaping, escaped
  KeyText sorted;

  void clear() {
    constexpr std::size_t kKeptRoom = 1 << 20;
    members.clear();
    containers.clear();
    order.clear();
    keys.clear();
    pieces.clear();
    escaped.clear();
    text.clear();
    sorted.clear();
    if (text.capacity() > kKeptRoom) text.release();
    if (sorted.capacity() > kKeptRoom) sorted.release();
    if (keys.capacity() > kKeptRoom) std::string().swap(keys);
    if (pieces.capacity() > kKeptRoom) std::string().swap(pieces);
    if (escaped.capacity() > kKeptRoom) std::string().swap(escaped);
    if (members.capacity() > kKeptRoom / sizeof(Member)) std::vector<Member>().swap(members);
  }
};

// Boost.JSON's parser events written as TreeWriter writes the tree json::parse makes of the same
// text. An object's members are written as they come and sorted when it closes; of duplicate
// keys the last one stays, as a json::object keeps it.
class EventWriter {
 public:
  // The same bounds as the parser json::parse runs.
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  // `body` is the text the parser reads, in one piece.
  EventWriter(std::string_view body, EventScratch& scratch)
      : body_(body), out_(scratch.text), s_(scratch) {}

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
  bool on_number_part(json::string_view, json::error_code&) { return true; }

  bool on_object_begin(json::error_code&) {
    if (s_.containers.empty()) root_is_object_ = true;
    begin_value();
    s_.containers.push_back({true, true, out_.size(), s_.members.size()});
    out_.push_back('{');
    return true;
  }

  bool on_object_end(std::size_t, json::error_code&) {
    const auto container = s_.containers.back();
    close_object(container);
    s_.containers.pop_back();
    end_value();
    return true;
  }

  bool on_array_begin(json::error_code&) {
    begin_value();
    s_.containers.push_back({false, true, out_.size(), s_.members.size()});
    out_.push_back('[');
    return true;
  }

  bool on_array_end(std::size_t, json::error_code&) {
    out_.push_back(']');
    s_.containers.pop_back();
    end_value();
    return true;
  }

  bool on_key_part(json::string_view part, std::size_t, json::error_code&) {
    s_.pieces.append(part.data(), part.size());
    return true;
  }

  bool on_key(json::string_view last, std::size_t total, json::error_code&) {
    auto& object = s_.containers.back();
    if (!object.first) out_.push_back(',');
    object.first = false;
    EventScratch::Member member;
    member.key_begin = s_.keys.size();
    member.text_begin = out_.size();
    std::string_view key;
    if (stands_in_body(last, total)) {
      key = std::string_view(last.data(), last.size());
      member.body_key = key.data();
      write_as_it_stands(key);
    } else {
      key = whole(last);
      s_.keys.append(key);
      write_escaped(key);
    }
    member.key_size = key.size();
    member.left_out = s_.containers.size() == 1 && left_out(key);
    out_.push_back(':');
    s_.members.push_back(member);
    s_.pieces.clear();  // last: `key` may be a view of it
    return true;
  }

  bool on_string_part(json::string_view part, std::size_t, json::error_code&) {
    s_.pieces.append(part.data(), part.size());
    return true;
  }

  bool on_string(json::string_view last, std::size_t total, json::error_code&) {
    begin_value();
    if (stands_in_body(last, total)) {
      write_as_it_stands(std::string_view(last.data(), last.size()));
    } else {
      write_escaped(whole(last));
      s_.pieces.clear();
    }
    end_value();
    return true;
  }

  bool on_int64(std::int64_t value, json::string_view, json::error_code&) {
    begin_value();
    write_integer(out_, value);
    end_value(value == 0);
    return true;
  }

  bool on_uint64(std::uint64_t value, json::string_view, json::error_code&) {
    begin_value();
    write_integer(out_, value);
    end_value(value == 0);
    return true;
  }

  bool on_double(double value, json::string_view, json::error_code&) {
    begin_value();
    const json::value number(value);
    doubles_.write(out_, number);
    end_value(value == 0.0);
    return true;
  }

  bool on_bool(bool value, json::error_code&) {
    begin_value();
    out_.append(value ? std::string_view("true") : std::string_view("false"));
    end_value();
    return true;
  }

  bool on_null(json::error_code&) {
    begin_value();
    out_.append(std::string_view("null"));
    end_value(false, true);
    return true;
  }

  bool root_is_object() const { return root_is_object_; }
  bool deterministic() const { return deterministic_; }

 private:
  // Whether the parser handed a key or string over in one piece as it stands in the body,
  // between its quotes: it had no escapes then (the parser copies any string with one), so it
  // holds nothing JSON escapes (a raw quote, backslash or control character is no JSON), and its
  // literal, quotes included, is the body's bytes.
  bool stands_in_body(json::string_view text, std::size_t total) const {
    if (total != text.size()) return false;
    const auto at = reinterpret_cast<std::uintptr_t>(text.data());
    const auto begin = reinterpret_cast<std::uintptr_t>(body_.data());
    if (at <= begin || at - begin + text.size() >= body_.size()) return false;
    return text.data()[-1] == '"' && text.data()[text.size()] == '"';
  }

  void write_as_it_stands(std::string_view text) { out_.append(text.data() - 1, text.size() + 2); }

  void write_escaped(std::string_view text) {
    s_.escaped.clear();
    util::append_json_string(s_.escaped, text);
    out_.append(s_.escaped);
  }

  // A key or string: its last part, after the parts that came before it (if any).
  std::string_view whole(json::string_view last) {
    const std::string_view text(last.data(), last.size());
    return s_.pieces.empty() ? text : std::string_view(s_.pieces.append(text));
  }

  // An array's elements are separated as they come; an object's members when it closes.
  void begin_value() {
    if (s_.containers.empty() || s_.containers.back().object) return;
    auto& array = s_.containers.back();
    if (!array.first) out_.push_back(',');
    array.first = false;
  }

  void end_value(bool zero = false, bool null = false) {
    if (s_.containers.empty() || !s_.containers.back().object) return;
    auto& member = s_.members.back();
    member.text_end = out_.size();
    member.zero = zero;
    member.null = null;
  }

  std::string_view key_of(const EventScratch::Member& member) const {
    return std::string_view(member.body_key ? member.body_key : s_.keys.data() + member.key_begin,
                            member.key_size);
  }

  // Ends an object's text, rewritten with its members sorted and the last of each duplicate key
  // only where they did not come that way.
  void close_object(const EventScratch::Container& object) {
    const std::size_t begin = object.members_begin;
    const std::size_t end = s_.members.size();
    const bool top = s_.containers.size() == 1;
    if (in_canonical_order(begin, end)) {
      out_.push_back('}');
      if (top) {
        for (std::size_t i = begin; i < end; ++i) note_determinism(s_.members[i]);
      }
      drop_members(begin, end);
      return;
    }
    sort_members(begin, end);
    const auto& order = s_.order;
    auto& sorted = s_.sorted;
    sorted.clear();
    sorted.push_back('{');
    bool first = true;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const auto& member = s_.members[order[i]];
      // Of equal keys, the last one that came is the value.
      if (i + 1 < order.size() && key_of(s_.members[order[i + 1]]) == key_of(member)) continue;
      if (top) note_determinism(member);
      if (member.left_out) continue;
      if (!first) sorted.push_back(',');
      first = false;
      sorted.append(out_, member.text_begin, member.text_end - member.text_begin);
    }
    sorted.push_back('}');
    out_.truncate(object.text_begin);
    out_.append(sorted, 0, sorted.size());
    drop_members(begin, end);
  }

  // s_.order: the members' indices by key, and of equal keys in the order they came (a stable
  // order). Objects are small: an insertion sort up to a few dozen members.
  void sort_members(std::size_t begin, std::size_t end) {
    auto& order = s_.order;
    order.clear();
    for (std::size_t i = begin; i < end; ++i) order.push_back(static_cast<std::uint32_t>(i));
    const auto before = [this](std::uint32_t a, std::uint32_t b) {
      const int compared = key_of(s_.members[a]).compare(key_of(s_.members[b]));
      return compared < 0 || (compared == 0 && a < b);
    };
    if (order.size() > 32) {
      std::sort(order.begin(), order.end(), before);
      return;
    }
    for (std::size_t i = 1; i < order.size(); ++i) {
      const auto moving = order[i];
      std::size_t at = i;
      for (; at > 0 && before(moving, order[at - 1]); --at) order[at] = order[at - 1];
      order[at] = moving;
    }
  }

  // Keys strictly increasing (so none twice) and none left out: the text is written already.
  bool in_canonical_order(std::size_t begin, std::size_t end) const {
    for (std::size_t i = begin; i < end; ++i) {
      if (s_.members[i].left_out) return false;
      if (i > begin && !(key_of(s_.members[i - 1]) < key_of(s_.members[i]))) return false;
    }
    return true;
  }

  void drop_members(std::size_t begin, std::size_t end) {
    if (begin < end) s_.keys.resize(s_.members[begin].key_begin);
    s_.members.resize(begin);
  }

  // declares_deterministic, on the value a json::object would keep.
  void note_determinism(const EventScratch::Member& member) {
    const auto key = key_of(member);
    if ((key == "temperature" && member.zero) || (key == "seed" && !member.null)) {
      deterministic_ = true;
    }
  }

  std::string_view body_;
  KeyText& out_;
  EventScratch& s_;
  DoubleWriter doubles_;
  bool root_is_object_ = false;
  bool deterministic_ = false;
};

// One parse read by both: the request's summary (what summarize_request reads) and its key.
class SummaryAndKeyHandler {
 public:
  static constexpr std::size_t max_object_size = EventWriter::max_object_size;
  static constexpr std::size_t max_array_size = EventWriter::max_array_size;
  static constexpr std::size_t max_key_size = EventWriter::max_key_size;
  static constexpr std::size_t max_string_size = EventWriter::max_string_size;

  SummaryAndKeyHandler(std::string_view body, EventScratch& scratch, providers::RequestShape& shape)
      : key_(body, scratch), summary_(shape, body) {}

  EventWriter& key() { return key_; }
  providers::summary_detail::SummaryHandler& summary() { return summary_; }

  bool on_document_begin(json::error_code& ec) {
    return key_.on_document_begin(ec) && summary_.on_document_begin(ec);
  }
  bool on_document_end(json::error_code& ec) {
    return key_.on_document_end(ec) && summary_.on_document_end(ec);
  }
  bool on_object_begin(json::error_code& ec) {
    return key_.on_object_begin(ec) && summary_.on_object_begin(ec);
  }
  bool on_object_end(std::size_t n, json::error_code& ec) {
    return key_.on_object_end(n, ec) && summary_.on_object_end(n, ec);
  }
  bool on_array_begin(json::error_code& ec) {
    return key_.on_array_begin(ec) && summary_.on_array_begin(ec);
  }
  bool on_array_end(std::size_t n, json::error_code& ec) {
    return key_.on_array_end(n, ec) && summary_.on_array_end(n, ec);
  }
  bool on_key_part(json::string_view part, std::size_t n, json::error_code& ec) {
    return key_.on_key_part(part, n, ec) && summary_.on_key_part(part, n, ec);
  }
  bool on_key(json::string_view last, std::size_t n, json::error_code& ec) {
    return key_.on_key(last, n, ec) && summary_.on_key(last, n, ec);
  }
  bool on_string_part(json::string_view part, std::size_t n, json::error_code& ec) {
    return key_.on_string_part(part, n, ec) && summary_.on_string_part(part, n, ec);
  }
  bool on_string(json::string_view last, std::size_t n, json::error_code& ec) {
    return key_.on_string(last, n, ec) && summary_.on_string(last, n, ec);
  }
  bool on_number_part(json::string_view part, json::error_code& ec) {
    return key_.on_number_part(part, ec) && summary_.on_number_part(part, ec);
  }
  bool on_int64(std::int64_t value, json::string_view text, json::error_code& ec) {
    return key_.on_int64(value, text, ec) && summary_.on_int64(value, text, ec);
  }
  bool on_uint64(std::uint64_t value, json::string_view text, json::error_code& ec) {
    return key_.on_uint64(value, text, ec) && summary_.on_uint64(value, text, ec);
  }
  bool on_double(double value, json::string_view text, json::error_code& ec) {
    return key_.on_double(value, text, ec) && summary_.on_double(value, text, ec);
  }
  bool on_bool(bool value, json::error_code& ec) {
    return key_.on_bool(value, ec) && summary_.on_bool(value, ec);
  }
  bool on_null(json::error_code& ec) { return key_.on_null(ec) && summary_.on_null(ec); }
  bool on_comment_part(json::string_view part, json::error_code& ec) {
    return key_.on_comment_part(part, ec) && summary_.on_comment_part(part, ec);
  }
  bool on_comment(json::string_view text, json::error_code& ec) {
    return key_.on_comment(text, ec) && summary_.on_comment(text, ec);
  }

 private:
  EventWriter key_;
  providers::summary_detail::SummaryHandler summary_;
};

// The writer's room on this thread, cleared for a body of `size` bytes.
EventScratch& event_scratch(std::size_t size) {
  thread_local EventScratch scratch;
  scratch.clear();
  scratch.text.reserve(size + 16);
  return scratch;
}

RequestKey key_of_scratch(const EventScratch& scratch, std::string_view kind, bool stream,
                          std::string_view tenant, bool deterministic) {
  RequestKey key;
  key.text.reserve(kind.size() + tenant.size() + scratch.text.size() + 16);
  write_prefix(key.text, kind, stream, tenant);
  key.text.append(scratch.text.data(), scratch.text.size());
  key.deterministic = deterministic;
  return key;
}

}  // namespace

bool declares_deterministic(const json::object& body) {
  if (const auto* temperature = body.if_contains("temperature");
      temperature && is_zero(*temperature)) {
    return true;
  }
  const auto* seed = body.if_contains("seed");
  return seed != nullptr && !seed->is_null();
}

RequestKey request_key(const json::object& body, std::string_view kind, bool stream,
                       std::string_view tenant) {
  RequestKey key;
  key.text.reserve(256);
  write_prefix(key.text, kind, stream, tenant);
  TreeWriter(key.text).write_body(body);
  key.deterministic = declares_deterministic(body);
  return key;
}

std::optional<RequestKey> request_key(std::string_view body, std::string_view kind, bool stream,
                                      std::string_view tenant) {
  auto& scratch = event_scratch(body.size());
  json::basic_parser<EventWriter> parser(json::parse_options(), body, scratch);
  json::error_code error;
  const auto used = parser.write_some(false, body.data(), body.size(), error);
  if (error || used < body.size() || !parser.handler().root_is_object()) return std::nullopt;
  return key_of_scratch(scratch, kind, stream, tenant, parser.handler().deterministic());
}

SummaryAndKey summarize_with_key(std::string_view body, providers::ApiKind api,
                                 providers::RequestShape& shape, std::string_view kind,
                                 std::string_view tenant) {
  auto& scratch = event_scratch(body.size());
  json::basic_parser<SummaryAndKeyHandler> parser(json::parse_options(), body, scratch, shape);
  json::error_code error;
  const auto used = parser.write_some(false, body.data(), body.size(), error);
  auto& handler = parser.handler();
  SummaryAndKey both{handler.summary().result(error, used, body.size(), api), std::nullopt};
  if (both.summary.parse_error || both.summary.not_object || both.summary.problem) return both;
  both.key = key_of_scratch(scratch, kind, shape.stream, tenant, handler.key().deterministic());
  return both;
}

std::string shared_key(std::string_view key) { return util::sha256_hex(key); }

std::string request_text(std::string_view body, std::string_view kind, std::string_view tenant) {
  std::string text;
  text.reserve(request_text_size({body, kind, tenant}));
  text.append(kind).push_back('\n');
  text.append(tenant).push_back('\n');
  text.append(body);
  return text;
}

std::size_t request_text_size(const RequestText& pieces) {
  return pieces.kind.size() + pieces.tenant.size() + 2 + pieces.body.size();
}

bool is_request_text(std::string_view text, const RequestText& pieces) {
  if (text.size() != request_text_size(pieces)) return false;
  // The sizes agree, so each piece is compared where request_text put it.
  auto next = [&text](std::string_view piece, bool line) {
    const bool same =
        text.substr(0, piece.size()) == piece && (!line || text[piece.size()] == '\n');
    text.remove_prefix(piece.size() + (line ? 1 : 0));
    return same;
  };
  return next(pieces.kind, true) && next(pieces.tenant, true) && next(pieces.body, false);
}

}  // namespace cutover::cache
