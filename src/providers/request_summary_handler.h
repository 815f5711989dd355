// The handler summarize_request runs under Boost.JSON's parser, for a reader that runs it beside
// a handler of its own on one parse of the body (the cache's key writer:
// cache::summarize_with_key). Not a public interface of providers/: request_summary.h is.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "providers/request_summary.h"

namespace cutover::providers::summary_detail {

namespace json = boost::json;

// The JSON type of a value, as validate_request tells them apart.
enum class Type : std::uint8_t { absent, string, boolean, null, object, array, number };

// The top-level keys validate_request reads.
enum class Key : std::uint8_t { other, model, stream, stream_options, messages, prompt, input };

inline Key classify_top_level(std::string_view key) {
  if (key == "model") return Key::model;
  if (key == "stream") return Key::stream;
  if (key == "stream_options") return Key::stream_options;
  if (key == "messages") return Key::messages;
  if (key == "prompt") return Key::prompt;
  if (key == "input") return Key::input;
  return Key::other;
}

// Boost.JSON's parser events, kept only where validate_request looks: the top-level fields
// above, `include_usage` directly inside `stream_options`, and whether each element of
// `messages` is an object with a `role`. A later duplicate key replaces what an earlier one
// left, as json::object keeps the last of duplicates.
class SummaryHandler {
 public:
  // The same bounds as the parser json::parse runs.
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  // `body` is the text the parser reads, for where the `model` values stand in it.
  SummaryHandler(RequestShape& shape, std::string_view body) : shape_(shape), body_(body) {}

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }

  bool on_object_begin(json::error_code&) {
    if (depth_ == 0) {
      root_is_object_ = true;
    } else if (depth_ == 1) {
      top_level_value(Type::object);
      if (key_ == Key::stream_options) inside_options_ = true;
    } else if (depth_ == 2 && inside_messages_) {
      element_has_role_ = false;
      element_index_ = message_count_++;
      inside_element_ = true;
    } else {
      nested_scalar_or_array();
    }
    ++depth_;
    return true;
  }

  bool on_object_end(std::size_t, json::error_code&) {
    --depth_;
    if (depth_ == 2 && inside_element_) {
      if (!element_has_role_ && !first_bad_message_) first_bad_message_ = element_index_;
      inside_element_ = false;
    } else if (depth_ == 1) {
      inside_options_ = false;
    }
    return true;
  }

  bool on_array_begin(json::error_code&) {
    if (depth_ == 1) {
      top_level_value(Type::array);
      if (key_ == Key::messages) inside_messages_ = true;
    } else {
      nested_scalar_or_array();
    }
    ++depth_;
    return true;
  }

  bool on_array_end(std::size_t, json::error_code&) {
    --depth_;
    if (depth_ == 1) inside_messages_ = false;
    return true;
  }

  bool on_key_part(json::string_view part, std::size_t, json::error_code&) {
    append_key(part);
    return true;
  }

  bool on_key(json::string_view last, std::size_t, json::error_code&) {
    append_key(last);
    const std::string_view key =
        key_too_long_ ? std::string_view() : std::string_view(key_text_, key_size_);
    if (depth_ == 1) {
      key_ = key_too_long_ ? Key::other : classify_top_level(key);
    } else if (depth_ == 2 && inside_options_) {
      options_key_is_include_usage_ = !key_too_long_ && key == "include_usage";
    } else if (depth_ == 3 && inside_element_ && !key_too_long_ && key == "role") {
      element_has_role_ = true;
    }
    key_size_ = 0;
    key_too_long_ = false;
    return true;
  }

  bool on_string_part(json::string_view part, std::size_t, json::error_code&) {
    if (depth_ == 1 && key_ == Key::model) {
      if (!model_in_parts_) shape_.model.clear();
      model_in_parts_ = true;
      shape_.model.append(part.data(), part.size());
    }
    return true;
  }

  bool on_string(json::string_view last, std::size_t, json::error_code&) {
    if (depth_ == 1) {
      top_level_value(Type::string);
      if (key_ == Key::model) {
        note_model_value(last);
        if (!model_in_parts_) shape_.model.clear();
        model_in_parts_ = false;
        shape_.model.append(last.data(), last.size());
      }
    } else {
      nested_scalar_or_array();
    }
    return true;
  }

  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, json::error_code&) { return scalar(Type::number); }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) {
    return scalar(Type::number);
  }
  bool on_double(double, json::string_view, json::error_code&) { return scalar(Type::number); }

  bool on_bool(bool value, json::error_code&) {
    if (depth_ == 1) {
      top_level_value(Type::boolean);
      if (key_ == Key::stream) stream_value_ = value;
    } else if (depth_ == 2 && inside_options_) {
      options_value(value);
    } else {
      nested_scalar_or_array();
    }
    return true;
  }

  bool on_null(json::error_code&) { return scalar(Type::null); }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

  // validate_request's checks, in its order, on what the events left.
  std::optional<std::string> verdict(ApiKind kind, bool& has_stream_options) {
    has_stream_options = stream_options_ != Type::absent;
    if (model_ == Type::absent) return "'model' is required";
    if (model_ != Type::string || shape_.model.empty()) return "'model' must be a non-empty string";
    if (stream_ != Type::absent) {
      if (stream_ != Type::boolean && stream_ != Type::null) return "'stream' must be a boolean";
      shape_.stream = stream_ == Type::boolean && stream_value_;
    }
    if (kind == ApiKind::embeddings && shape_.stream) return "embeddings cannot be streamed";
    if (stream_options_ != Type::absent) {
      if (stream_options_ != Type::object && stream_options_ != Type::null) {
        return "'stream_options' must be an object";
      }
      if (stream_options_ == Type::object) shape_.client_requested_usage = include_usage_;
    }
    switch (kind) {
      case ApiKind::chat_completions:
        if (messages_ == Type::absent) return "'messages' is required";
        if (messages_ != Type::array) return "'messages' must be an array";
        if (message_count_ == 0) return "'messages' must not be empty";
        if (first_bad_message_) {
          return "'messages[" + std::to_string(*first_bad_message_) +
                 "]' must be an object with a 'role'";
        }
        break;
      case ApiKind::completions:
        if (prompt_ == Type::absent) return "'prompt' is required";
        break;
      case ApiKind::embeddings:
        if (input_ == Type::absent) return "'input' is required";
        break;
    }
    return std::nullopt;
  }

  bool root_is_object() const { return root_is_object_; }

  // What summarize_request says once the parser has read `used` of the body's `size` bytes and
  // stopped with `error`.
  RequestSummary result(json::error_code error, std::size_t used, std::size_t size, ApiKind kind) {
    RequestSummary summary;
    summary.parse_error = error;
    // As json::parse: one value, and nothing after it but whitespace.
    if (!summary.parse_error && used < size) summary.parse_error = json::error::extra_data;
    if (summary.parse_error) return summary;
    if (!root_is_object()) {
      summary.not_object = true;
      return summary;
    }
    summary.problem = verdict(kind, summary.has_stream_options);
    if (model_values_in_place_) summary.model_values = model_values_;
    return summary;
  }

 private:
  // A top-level `model` string ended with `last`: it stands in the body when the parser gave it
  // whole from the body's own bytes (an escaped one comes, in part at least, from its buffer).
  void note_model_value(json::string_view last) {
    const char* begin = body_.data();
    const char* end = begin + body_.size();
    const bool in_place = !model_in_parts_ && last.data() > begin &&
                          last.data() + last.size() < end && last.data()[-1] == '"' &&
                          last.data()[last.size()] == '"';
    if (!in_place) {
      model_values_in_place_ = false;
      return;
    }
    model_values_.emplace_back(static_cast<std::size_t>(last.data() - begin) - 1, last.size() + 2);
  }

  bool scalar(Type type) {
    if (depth_ == 1) {
      top_level_value(type);
    } else {
      nested_scalar_or_array();
    }
    return true;
  }

  // A top-level value begins: it replaces whatever an earlier duplicate of its key left.
  void top_level_value(Type type) {
    switch (key_) {
      case Key::model:
        model_ = type;
        if (type != Type::string) {
          shape_.model.clear();
          model_values_in_place_ = false;
        }
        break;
      case Key::stream:
        stream_ = type;
        stream_value_ = false;
        break;
      case Key::stream_options:
        stream_options_ = type;
        include_usage_ = false;
        break;
      case Key::messages:
        messages_ = type;
        message_count_ = 0;
        first_bad_message_.reset();
        break;
      case Key::prompt:
        prompt_ = type;
        break;
      case Key::input:
        input_ = type;
        break;
      case Key::other:
        break;
    }
  }

  // `include_usage` counts only as the boolean true.
  void options_value(bool value) {
    if (options_key_is_include_usage_) include_usage_ = value;
  }

  // A value below the top level that is not an element object of `messages`: there, an
  // element that is no object; in `stream_options`, an `include_usage` that is no boolean.
  void nested_scalar_or_array() {
    if (depth_ == 2 && inside_messages_) {
      const auto index = message_count_++;
      if (!first_bad_message_) first_bad_message_ = index;
    } else if (depth_ == 2 && inside_options_) {
      options_value(false);
    }
  }

  void append_key(json::string_view part) {
    if (key_too_long_) return;
    if (key_size_ + part.size() > sizeof key_text_) {
      key_too_long_ = true;
      return;
    }
    std::memcpy(key_text_ + key_size_, part.data(), part.size());
    key_size_ += part.size();
  }

  RequestShape& shape_;
  std::string_view body_;
  boost::container::small_vector<std::pair<std::size_t, std::size_t>, 2> model_values_;
  bool model_values_in_place_ = true;
  std::size_t depth_ = 0;
  bool root_is_object_ = false;
  Key key_ = Key::other;
  // The key being read: none that matters is longer than this.
  char key_text_[16];
  std::size_t key_size_ = 0;
  bool key_too_long_ = false;
  bool model_in_parts_ = false;

  Type model_ = Type::absent;
  Type stream_ = Type::absent;
  bool stream_value_ = false;
  Type stream_options_ = Type::absent;
  bool inside_options_ = false;
  bool options_key_is_include_usage_ = false;
  bool include_usage_ = false;
  Type messages_ = Type::absent;
  bool inside_messages_ = false;
  std::size_t message_count_ = 0;
  std::optional<std::size_t> first_bad_message_;
  bool inside_element_ = false;
  bool element_has_role_ = false;
  std::size_t element_index_ = 0;
  Type prompt_ = Type::absent;
  Type input_ = Type::absent;
};

}  // namespace cutover::providers::summary_detail
