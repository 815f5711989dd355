#include "providers/chunk_forwarding.h"

#include <algorithm>
#include <cstdint>

namespace cutover::providers {

namespace {
constexpr std::string_view kDataField = "data: ";
constexpr std::string_view kEndMarker = "[DONE]";
// The end marker as the DOM path writes it, whatever its event's name or spacing.
constexpr std::string_view kEndMarkerEvent = "data: [DONE]\n\n";

// What becomes of a chunk that was read: sent with only its model renamed, dropped (a usage
// chunk the client did not ask for), or left to the DOM path.
enum class ChunkFate : std::uint8_t { forward, drop, read_tree };

// The fate of `chunk`, its usage (into `usage`) and finish (into `reader`) noted unless it is
// left to the DOM path. `strip_usage`: the client did not ask for the usage chunk.
ChunkFate chunk_fate(const PlainAnswer& chunk, CanonicalStream& reader, bool strip_usage,
                     Usage& usage) {
  if (!chunk.needs_only_model()) return ChunkFate::read_tree;
  const bool reports_usage = chunk.usage().present;
  // A usage chunk the client did not ask for is dropped whole; usage riding on a chunk with
  // choices must be cut out of it, which the DOM path does.
  if (reports_usage && strip_usage && chunk.choice_count() > 0) return ChunkFate::read_tree;
  if (reports_usage) usage = chunk.usage();
  const auto reasons = chunk.finish_reasons();
  if (std::any_of(reasons.begin(), reasons.end(),
                  [](const auto& reason) { return reason.has_value(); })) {
    reader.note_finish();
  }
  return reports_usage && strip_usage ? ChunkFate::drop : ChunkFate::forward;
}

}  // namespace

bool forward_event_in_place(SseEvent& event, CanonicalStream& reader, ShapeMemo& memo,
                            bool strip_usage, std::string_view model_json, Usage& usage,
                            std::string& out) {
  if (event.data == kEndMarker) {
    reader.note_end_marker();
    out.append(kEndMarkerEvent);
    return true;
  }
  if (!event.event.empty()) return false;
  const PlainAnswer chunk(event.data, memo);
  const auto fate = chunk_fate(chunk, reader, strip_usage, usage);
  if (fate == ChunkFate::forward) {
    // Sized appends: a C string's append measures it first (about 70 instructions an event).
    out.append(kDataField);
    chunk.append_spliced(out, model_json);
    out.append("\n\n", 2);
  }
  return fate != ChunkFate::read_tree;
}

std::size_t forward_kept_chunks(std::string_view bytes, const SseParser& parser,
                                CanonicalStream& reader, ShapeMemo& memo, bool strip_usage,
                                std::string_view model_json, Usage& usage, std::string& out) {
  std::size_t taken = 0;    // the events' bytes so far
  std::size_t written = 0;  // of those, the ones in `out` or dropped: up to a model or an event
  std::size_t event_size = 0;
  while (const auto data = parser.whole_data_event(bytes.substr(taken), event_size)) {
    if (*data == kEndMarker) {
      reader.note_end_marker();
      out.append(bytes.data() + written, taken - written);
      out.append(kEndMarkerEvent);
      taken += event_size;
      written = taken;
      continue;
    }
    // Matched, the data holds no CR (whole_data_event() leaves that to its caller).
    const PlainAnswer chunk(*data, memo, PlainAnswer::KeptShapesOnly{});
    const auto fate = chunk_fate(chunk, reader, strip_usage, usage);
    if (fate == ChunkFate::read_tree) break;
    if (fate == ChunkFate::drop) {
      out.append(bytes.data() + written, taken - written);
      written = taken + event_size;
    } else {
      // The event's bytes are the client's but for the model: what lies between two model values
      // goes out in one piece. An event written "data:" without the space gets it, as the
      // parser's path writes it.
      const auto data_begin = static_cast<std::size_t>(data->data() - bytes.data());
      if (data_begin != taken + kDataField.size()) {
        out.append(bytes.data() + written, taken - written);
        out.append(kDataField);
        written = data_begin;
      }
      const auto model = static_cast<std::size_t>(chunk.model_bytes().data() - bytes.data());
      out.append(bytes.data() + written, model - written);
      out.append(model_json);
      written = model + chunk.model_bytes().size();
    }
    taken += event_size;
  }
  out.append(bytes.data() + written, taken - written);
  return taken;
}

}  // namespace cutover::providers
