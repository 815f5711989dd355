// What the gateway reads of an OpenAI client's request before routing it, read without a DOM.
//
// A chat request needs its `model`, `stream` and `stream_options` and a check of its `messages`
// (validate_request); building a Boost.JSON tree of the whole body for that was about a tenth
// of a plain request's instructions. summarize_request runs Boost.JSON's own parser (so it
// accepts exactly what json::parse accepts: the same grammar, depth limit and UTF-8 checks)
// with a handler that keeps only those fields, and decides exactly what validate_request
// decides of the tree, duplicate keys included (the last one wins, as in a json::object).
// The tree is built later only for what needs one (RequestDom).
#pragma once

#include <boost/container/small_vector.hpp>
#include <boost/json.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "providers/openai_dialect.h"

namespace cutover::providers {

struct RequestSummary {
  // The body is not JSON, or not one value (json::parse's error).
  boost::system::error_code parse_error;
  // It is JSON but not an object.
  bool not_object = false;
  // validate_request's verdict on it: the first problem it names, or none.
  std::optional<std::string> problem;
  // Whether the body has a top-level `stream_options` key (the rewrite needs its value then).
  bool has_stream_options = false;
  // Where each top-level `model` value stands in the body (offset and size, quotes included),
  // when every one is a string the parser read in place, without escapes: what RequestBody
  // would otherwise walk the body again for. Empty when any was not.
  boost::container::small_vector<std::pair<std::size_t, std::size_t>, 2> model_values;
};

// Reads `body` and fills `shape` as validate_request would.
RequestSummary summarize_request(std::string_view body, ApiKind kind, RequestShape& shape);

// A guess at the model a body names, from its text alone: the value of the first `"model"` key
// whose value is a string, wherever that key stands (inside another value too); none when that
// string has escapes or is longer than 256 bytes. Only for choosing how to read a body (the
// gateway reads a cached route's request for its summary and its cache key at once), never for
// routing: summarize_request says which model a request names.
std::optional<std::string_view> model_hint(std::string_view body);

// A request's tree, built on first use from the body's text, or one built already (a
// translated client's canonical request).
class RequestDom {
 public:
  // `text` must be the whole body, which summarize_request accepted as an object, and outlive
  // this object unchanged; the tree's memory comes from `storage`.
  RequestDom(std::string_view text, boost::json::storage_ptr storage)
      : text_(text), storage_(std::move(storage)), value_(storage_) {}
  explicit RequestDom(boost::json::object& built) : object_(&built) {}

  RequestDom(const RequestDom&) = delete;
  RequestDom& operator=(const RequestDom&) = delete;

  boost::json::object& get() {
    if (object_ == nullptr) build();
    return *object_;
  }
  bool built() const { return object_ != nullptr; }

 private:
  void build();

  std::string_view text_;
  boost::json::storage_ptr storage_;
  // On the tree's storage from the start: assigning it a tree of other storage would copy it.
  boost::json::value value_;
  boost::json::object* object_ = nullptr;
};

}  // namespace cutover::providers
