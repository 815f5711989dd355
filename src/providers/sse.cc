#include "providers/sse.h"

#include <cstring>

#include "providers/answer_scan.h"

namespace cutover::providers {

namespace {

// The first CR or LF in [begin, end), or end: memchr for each, as a provider's lines are
// hundreds of bytes long.
const char* line_end(const char* begin, const char* end) {
  const auto size = static_cast<std::size_t>(end - begin);
  const auto* newline = static_cast<const char*>(std::memchr(begin, '\n', size));
  const auto before = newline ? static_cast<std::size_t>(newline - begin) : size;
  const auto* carriage_return = static_cast<const char*>(std::memchr(begin, '\r', before));
  if (carriage_return) return carriage_return;
  return newline ? newline : end;
}

}  // namespace

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (malformed_) return false;
  const char* at = bytes.data();
  const char* const end = at + bytes.size();
  while (at != end) {
    // A line ends at CRLF, LF or a lone CR; the LF of a CRLF split across reads is skipped here.
    if (previous_was_cr_) {
      previous_was_cr_ = false;
      if (*at == '\n') {
        ++at;
        continue;
      }
    }
    const char* const stop = line_end(at, end);
    const std::string_view piece(at, static_cast<std::size_t>(stop - at));
    if (line_.size() + piece.size() > max_line_bytes_) {
      malformed_ = true;
      return false;
    }
    if (stop == end) {
      line_.append(piece);
      break;
    }
    if (line_.empty()) {
      process_line(piece, out);
    } else {
      line_.append(piece);
      process_line(line_, out);
      line_.clear();
    }
    previous_was_cr_ = *stop == '\r';
    at = stop + 1;
  }
  return true;
}

std::optional<std::string_view> SseParser::whole_data_event(std::string_view bytes,
                                                            std::size_t& size) const {
  constexpr std::string_view kField = "data:";
  if (malformed_ || previous_was_cr_ || has_partial_event() || !bytes.starts_with(kField)) {
    return std::nullopt;
  }
  const auto* newline = static_cast<const char*>(std::memchr(bytes.data(), '\n', bytes.size()));
  if (newline == nullptr) return std::nullopt;
  const auto line_size = static_cast<std::size_t>(newline - bytes.data());
  // The blank line that ends the event must be here too; a line past the limit is feed()'s to
  // refuse.
  if (line_size + 1 == bytes.size() || newline[1] != '\n' || line_size > max_line_bytes_) {
    return std::nullopt;
  }
  auto data = bytes.substr(kField.size(), line_size - kField.size());
  if (!data.empty() && data.front() == ' ') data.remove_prefix(1);
  size = line_size + 2;
  return data;
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
    if (has_data_) {
      current_.data.push_back('\n');
    } else {
      if (spare_ != nullptr && !spare_->empty()) {
        current_.data = std::move(spare_->back());
        spare_->pop_back();
        current_.data.clear();
      }
      // Room for the in-place scan's padding too (PlainAnswer), which would otherwise copy the
      // event's data to grow it: most events are one line.
      current_.data.reserve(value.size() + PlainAnswer::kPadding);
    }
    current_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    current_.event.assign(value);
  }
}

}  // namespace cutover::providers
