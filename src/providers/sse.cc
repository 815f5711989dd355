#include "providers/sse.h"

namespace cutover::providers {

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (malformed_) return false;
  for (char c : bytes) {
    // A line ends at CRLF, LF or a lone CR; the LF of a CRLF split across reads is skipped here.
    if (previous_was_cr_) {
      previous_was_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      previous_was_cr_ = c == '\r';
      process_line(line_, out);
      line_.clear();
      continue;
    }
    if (line_.size() >= max_line_bytes_) {
      malformed_ = true;
      return false;
    }
    line_.push_back(c);
  }
  return true;
}

void SseParser::finish(std::vector<SseEvent>& out) {
  if (malformed_) return;
  if (!line_.empty()) {
    process_line(line_, out);
    line_.clear();
  }
  process_line({}, out);
}

void SseParser::process_line(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    if (has_data_) out.push_back(std::move(current_));
    current_ = SseEvent{};
    has_fields_ = false;
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment, used by some providers as keep-alive
  has_fields_ = true;
  const auto colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    current_.event.assign(value);
  }
}

}  // namespace cutover::providers
