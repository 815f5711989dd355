#include "proxy/access_log.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

#include "util/json_string.h"

namespace cutover::proxy {

namespace {
constexpr std::size_t kFlushBytes = 32 * 1024;

// The longest figure append_fixed writes: to_chars's fixed form of the largest double (309
// digits before the point, the point and eight places), or an integer's 20 digits and sign.
constexpr std::size_t kFigureBytes = 320;

// A line being written into room the caller made for it (AccessLog::room_for): a cursor, where
// a string's append checked its capacity at every piece.
class LineWriter {
 public:
  explicit LineWriter(char* at) : at_(at) {}
  char* end() const { return at_; }
  void append(const char* bytes, std::size_t size) {
    if (size > 0) std::memcpy(at_, bytes, size);
    at_ += size;
  }
  void append(std::string_view bytes) { append(bytes.data(), bytes.size()); }
  void push_back(char byte) { *at_++ = byte; }
  // `text` as a JSON string: as it is when it needs no escaping, else escaped by
  // util::append_json_string into `scratch` first (at most six bytes for one).
  void json_string(std::string_view text, std::string& scratch) {
    if (!util::needs_json_escaping(text)) {
      push_back('"');
      append(text);
      push_back('"');
      return;
    }
    scratch.clear();
    util::append_json_string(scratch, text);
    append(scratch);
  }

 private:
  char* at_;
};

template <typename Out, typename Number>
void append_number(Out& out, Number value) {
  char digits[32];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, static_cast<std::size_t>(end - digits));
}

// A figure with `Decimals` places (at most 8), as printf's %.*f writes it: scaled to a whole
// number and written as digits, where std::to_chars's fixed precision took about 1,000
// instructions a figure. The places are a constant, so the scale's divisions are
// multiplications. Negative or huge figures, which no latency or cost is, take to_chars;
// not-a-number is written as null.
template <int Decimals, typename Out>
void append_fixed(Out& out, double value) {
  static_assert(Decimals >= 0 && Decimals <= 8);
  constexpr std::uint64_t kScale = [] {
    std::uint64_t scale = 1;
    for (int i = 0; i < Decimals; ++i) scale *= 10;
    return scale;
  }();
  const double scaled = value * static_cast<double>(kScale);
  if (!(scaled >= 0 && scaled < 1e15)) {
    char digits[352];  // the largest double has 309 digits before the point
    const auto [end, ec] =
        std::to_chars(digits, digits + sizeof digits, value, std::chars_format::fixed, Decimals);
    const std::string_view text = ec == std::errc() ? std::string_view(digits, end - digits) : "null";
    out.append(text.data(), text.size());
    return;
  }
  const auto units = static_cast<std::uint64_t>(std::llround(scaled));
  append_number(out, units / kScale);
  if constexpr (Decimals > 0) {
    char fraction[Decimals + 1];
    auto rest = units % kScale;
    for (int i = Decimals; i > 0; --i) {
      fraction[i] = static_cast<char>('0' + rest % 10);
      rest /= 10;
    }
    fraction[0] = '.';
    out.append(fraction, sizeof fraction);
  }
}
}  // namespace

void append_attempt(std::string& attempts, std::string_view provider, long endpoint,
                    std::string_view result, double ms) {
  // Room for an attempt or two at once: appended piece by piece, the string grew three times.
  if (attempts.empty()) attempts.reserve(160);
  attempts.append(attempts.empty() ? R"([{"provider":)" : R"(,{"provider":)");
  util::append_json_string(attempts, provider);
  attempts.append(R"(,"endpoint":)");
  append_number(attempts, endpoint);
  attempts.append(R"(,"result":)");
  util::append_json_string(attempts, result);
  attempts.append(R"(,"ms":)");
  append_fixed<3>(attempts, ms);
  attempts.push_back('}');
}

AccessLog::AccessLog(const std::string& destination, WriteCall write_call)
    : write_call_(write_call) {
  if (destination == "off") return;
  if (destination == "-") {
    fd_ = STDOUT_FILENO;
  } else {
    fd_ = ::open(destination.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    owns_fd_ = fd_ >= 0;
  }
  struct stat status {};
  whole_writes_ = fd_ >= 0 && ::fstat(fd_, &status) == 0 && S_ISREG(status.st_mode) &&
                  (::fcntl(fd_, F_GETFL) & O_APPEND) != 0;
}

AccessLog::~AccessLog() {
  flush();
  if (owns_fd_) ::close(fd_);
}

std::string_view AccessLog::time_of_day(std::chrono::sys_seconds second) {
  // The date and time of day change once a second; a busy worker formats them that often.
  if (second != formatted_second_) {
    formatted_second_ = second;
    formatted_time_ = fmt::format("{:%Y-%m-%dT%H:%M:%S}", second);
  }
  return formatted_time_;
}

char* AccessLog::room_for(std::size_t most) {
  if (pending_size_ + most > pending_capacity_) flush();
  if (most > pending_capacity_) {
    // Empty after the flush: a larger buffer needs nothing copied.
    pending_capacity_ = std::max(most, kFlushBytes + kFlushBytes / 2);
    pending_ = std::make_unique_for_overwrite<char[]>(pending_capacity_);
  }
  return pending_.get() + pending_size_;
}

void AccessLog::record(const AccessRecord& r) {
  if (fd_ < 0) return;
  const std::string_view texts[] = {r.request_id,     r.method,     r.route,
                                    r.client_model,   r.provider,   r.provider_model,
                                    r.client_key,     r.error,      r.migration_arm};
  // The names, punctuation and time take under 400 bytes; five figures; a text escapes to at
  // most six bytes a byte, plus its quotes.
  std::size_t most = 512 + 5 * kFigureBytes + r.attempts_json.size();
  for (const auto text : texts) most += 6 * text.size() + 2;
  LineWriter line(room_for(most));

  const auto now = std::chrono::system_clock::now();
  const auto second = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now - second).count();
  line.append(R"({"time":")");
  line.append(time_of_day(second));
  const char fraction[] = {'.', static_cast<char>('0' + millis / 100),
                           static_cast<char>('0' + millis / 10 % 10),
                           static_cast<char>('0' + millis % 10), 'Z'};
  line.append(fraction, sizeof fraction);
  line.append(R"(","request_id":)");
  line.json_string(r.request_id, escaped_);
  line.append(R"(,"method":)");
  line.json_string(r.method, escaped_);
  line.append(R"(,"route":)");
  line.json_string(r.route, escaped_);
  line.append(R"(,"status":)");
  append_number(line, r.status);
  auto text_field = [&](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    line.append(",\"");
    line.append(name);
    line.append("\":");
    line.json_string(value, escaped_);
  };
  text_field("model", r.client_model);
  text_field("provider", r.provider);
  text_field("provider_model", r.provider_model);
  text_field("client", r.client_key);
  line.append(r.stream ? R"(,"stream":true,"latency_ms":)" : R"(,"stream":false,"latency_ms":)");
  append_fixed<3>(line, r.latency_ms);
  if (r.time_to_first_token_ms >= 0) {
    line.append(R"(,"ttft_ms":)");
    append_fixed<3>(line, r.time_to_first_token_ms);
  }
  if (r.prompt_tokens >= 0) {
    line.append(R"(,"prompt_tokens":)");
    append_number(line, r.prompt_tokens);
  }
  if (r.completion_tokens >= 0) {
    line.append(R"(,"completion_tokens":)");
    append_number(line, r.completion_tokens);
  }
  text_field("error", r.error);
  if (r.cost >= 0) {
    line.append(R"(,"cost":)");
    append_fixed<8>(line, r.cost);
  }
  text_field("migration_arm", r.migration_arm);
  if (r.shadowed) line.append(R"(,"shadowed":true)");
  if (!r.attempts_json.empty()) {
    line.append(R"(,"attempts":)");
    line.append(r.attempts_json);
  }
  line.append("}\n");
  pending_size_ = static_cast<std::size_t>(line.end() - pending_.get());
  if (pending_size_ >= kFlushBytes) flush();
}

void AccessLog::flush() {
  // Workers write to one file or pipe: to a pipe, writes of at most PIPE_BUF bytes that end on a
  // line boundary keep lines whole.
  std::string_view pending(pending_.get(), pending_size_);
  while (fd_ >= 0 && !pending.empty()) {
    std::size_t piece = pending.size();
    if (piece > PIPE_BUF && !whole_writes_) {
      const auto newline = pending.rfind('\n', PIPE_BUF - 1);
      piece = newline == std::string_view::npos ? pending.size() : newline + 1;
    }
    const auto n = write_call_(fd_, pending.data(), piece);
    if (n <= 0) break;
    pending.remove_prefix(static_cast<std::size_t>(n));
  }
  pending_size_ = 0;
}

}  // namespace cutover::proxy
