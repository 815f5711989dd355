// Incremental parser for Server-Sent Events (text/event-stream), as providers stream them.
//
// Bytes arrive in arbitrary pieces; each complete event is handed out as soon as its blank line
// is seen, so the gateway forwards event by event and never buffers a whole stream.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cutover::providers {

struct SseEvent {
  std::string event;  // the "event:" field, empty when absent
  std::string data;   // the "data:" lines joined by '\n'
};

class SseParser {
 public:
  // Longest line accepted; a longer one marks the stream as malformed instead of growing memory.
  explicit SseParser(std::size_t max_line_bytes = 8 * 1024 * 1024)
      : max_line_bytes_(max_line_bytes) {}

  // Consumes `bytes` and appends every event completed by them to `out`.
  // Returns false once the stream is malformed (a line over the limit); later calls do nothing.
  bool feed(std::string_view bytes, std::vector<SseEvent>& out);

  // At the end of the stream: hands out the last event when the provider ended it without the
  // blank line (or even without the final line break), which some relays do.
  void finish(std::vector<SseEvent>& out);

  // True when bytes of an unfinished event are pending (a stream cut mid-event).
  bool has_partial_event() const { return !line_.empty() || has_fields_; }

  // The data of the event at the front of `bytes` when it is a whole event of one data line and
  // nothing else ("data: <text>\n\n", LF line ends) and the parser is between events, so that
  // feed() would make of those bytes exactly that event, provided the data holds no CR (which
  // would end the line early): the caller's to check. A kept chunk shape's match does (see
  // ShapeMemo), so the gateway does not scan the line for one twice. Its bytes' count in
  // `size`; nullopt otherwise (nothing is consumed either way). A caller that handles the event
  // itself feeds the bytes after it: the view spares the event's copy into a string of its own.
  std::optional<std::string_view> whole_data_event(std::string_view bytes, std::size_t& size) const;

  // Where an event's data string comes from when `spare` has one: a consumer that gives the
  // strings of the events it has read back to `spare` spares an allocation an event (the room
  // stays). `spare` must outlive the parser's use of it.
  void take_data_strings_from(std::vector<std::string>& spare) { spare_ = &spare; }

 private:
  void process_line(std::string_view line, std::vector<SseEvent>& out);

  std::size_t max_line_bytes_;
  std::string line_;
  bool previous_was_cr_ = false;
  bool malformed_ = false;
  bool has_fields_ = false;
  bool has_data_ = false;
  SseEvent current_;
  std::vector<std::string>* spare_ = nullptr;
};

}  // namespace cutover::providers
