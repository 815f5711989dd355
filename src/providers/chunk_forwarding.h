// An OpenAI provider's stream chunks on their way to an OpenAI client, without a DOM.
//
// Most chunks of a stream need only their `model` renamed to the client's (PlainAnswer tells
// which, from a ShapeMemo's kept shapes or a scan); their usage and finish reasons are noted as
// the DOM path notes them. These functions decide each chunk's fate (sent with only its model
// renamed, dropped when it is a usage chunk the client did not ask for, or left to the DOM path)
// and write the client's bytes; a chunk they leave (an error, usage riding on choices the client
// did not ask for, anything PlainAnswer cannot vouch for) is the DOM path's,
// CanonicalStream::read().
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "providers/answer_scan.h"
#include "providers/dialect.h"
#include "providers/sse.h"

namespace cutover::providers {

// One event the parser made, appended to `out` as it came but for its model (`model_json`: the
// client's, serialized as JSON), or dropped, or the stream's end marker noted and written as the
// DOM path writes it; false, with nothing done, for an event the DOM path must read. The event's
// data gets room for the scan's padding (its bytes stay as they are). `memo` holds the provider's
// chunk shapes on this worker; a chunk that needs only its model renamed may be kept in it.
bool forward_event_in_place(SseEvent& event, CanonicalStream& reader, ShapeMemo& memo,
                            bool strip_usage, std::string_view model_json, Usage& usage,
                            std::string& out);

// The same for the one-line events at the front of a read's `bytes` whose data matches one of
// `memo`'s kept chunk shapes, taken from the bytes themselves before `parser` is fed them (see
// SseParser::whole_data_event()) and appended to `out` in as few pieces as their model values
// leave. Returns how many of the bytes they took: `parser` is to be fed the bytes from there.
std::size_t forward_kept_chunks(std::string_view bytes, const SseParser& parser,
                                CanonicalStream& reader, ShapeMemo& memo, bool strip_usage,
                                std::string_view model_json, Usage& usage, std::string& out);

}  // namespace cutover::providers
