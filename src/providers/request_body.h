// The client's request body as it was sent, rewritten for a provider by splicing.
//
// The gateway owns two top-level fields of a request, `model` and `stream_options`. Everything
// else must reach the provider byte for byte: a DOM round trip turns `1e400` into `Infinity`
// (invalid JSON) and a 23-digit `seed` into a double. So the body is located once with
// simdjson's on-demand parser (which reads the owned fields' raw spans without building a tree)
// and every rewrite copies the original bytes around new values for those spans.
#pragma once

#include <boost/container/small_vector.hpp>
#include <boost/json.hpp>
#include <cstddef>
#include <string>
#include <string_view>

#include "providers/request_summary.h"

namespace cutover::providers {

class RequestBody {
 public:
  // `text` is a body Boost.JSON has already accepted as an object, `summary` (when there is
  // one) what summarize_request() said of it. Where the summary found every `model` value in
  // place and the body has no `stream_options`, those values are all the owned fields and the
  // body is not walked again; otherwise capacity for simdjson's padding is reserved in place.
  // `text` must outlive this object and stay unchanged.
  explicit RequestBody(std::string& text, const RequestSummary* summary = nullptr);

  // The body for a provider: its model name, and `stream_options.include_usage` set when
  // `ask_stream_usage`, or removed when neither the gateway nor the client asked for it.
  // `parsed` is the same body as a DOM (read only, for the current `stream_options`).
  std::string rewrite(const boost::json::object& parsed, std::string_view provider_model,
                      bool ask_stream_usage, bool client_requested_usage) const;
  // The same with only the body's `stream_options` value (nullptr when it has none): a caller
  // that read the body without a DOM needs one only when the client sent stream_options.
  std::string rewrite(const boost::json::value* stream_options, std::string_view provider_model,
                      bool ask_stream_usage, bool client_requested_usage) const;

  // False when the owned fields could not be located (then rewrite() serializes the DOM): only
  // for a body simdjson cannot walk although Boost.JSON accepted it.
  bool located() const {
    locate_once();
    return located_;
  }

 private:
  struct Span {
    std::size_t offset = 0;
    std::size_t size = 0;
    bool is_model = false;
  };

  // The body is located on its first rewrite, not when it is made: a request answered from
  // the cache, or refused before routing, is never rewritten (about 1,500 instructions a cache
  // hit in the profiles). Hence the mutable members: locating does not change what the body is.
  void locate_once() const;
  void locate() const;

  std::string_view text_;
  // Every occurrence of an owned key, however often a client repeats one (a tree serialized
  // instead would turn the body's other numbers into doubles: see above). At most one span per
  // ten bytes of body; room for the usual few inline.
  mutable boost::container::small_vector<Span, 4> spans_;
  mutable std::size_t closing_brace_ = 0;
  mutable bool located_ = false;
  mutable bool location_tried_ = false;
};

}  // namespace cutover::providers
