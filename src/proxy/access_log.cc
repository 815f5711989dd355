#include "proxy/access_log.h"

#include "util/json_string.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdint>

namespace cutover::proxy {

namespace {
constexpr std::size_t kFlushBytes = 32 * 1024;

template <typename Number>
void append_number(std::string& out, Number value) {
  char digits[32];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

// A figure with `Decimals` places (at most 8), as printf's %.*f writes it: scaled to a whole
// number and written as digits, where std::to_chars's fixed precision took about 1,000
// instructions a figure. The places are a constant, so the scale's divisions are
// multiplications. Negative or huge figures, which no latency or cost is, take to_chars;
// not-a-number is written as null.
template <int Decimals>
void append_fixed(std::string& out, double value) {
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
    out.append(ec == std::errc() ? std::string_view(digits, end - digits) : "null");
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

AccessLog::AccessLog(const std::string& destination) {
  if (destination == "off") return;
  if (destination == "-") {
    fd_ = STDOUT_FILENO;
    return;
  }
  fd_ = ::open(destination.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  owns_fd_ = fd_ >= 0;
}

AccessLog::~AccessLog() {
  flush();
  if (owns_fd_) ::close(fd_);
}

void AccessLog::append_time(std::chrono::system_clock::time_point now) {
  const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(now);
  // The date and time of day change once a second; a busy worker formats them that often.
  if (seconds != formatted_second_) {
    formatted_second_ = seconds;
    formatted_time_ = fmt::format("{:%Y-%m-%dT%H:%M:%S}", seconds);
  }
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - seconds).count();
  buffer_.append(formatted_time_);
  const char fraction[] = {'.', static_cast<char>('0' + millis / 100),
                           static_cast<char>('0' + millis / 10 % 10),
                           static_cast<char>('0' + millis % 10), 'Z'};
  buffer_.append(fraction, sizeof fraction);
}

void AccessLog::record(const AccessRecord& r) {
  if (fd_ < 0) return;
  buffer_.append(R"({"time":")");
  append_time(std::chrono::system_clock::now());
  buffer_.append(R"(","request_id":)");
  util::append_json_string(buffer_, r.request_id);
  buffer_.append(R"(,"method":)");
  util::append_json_string(buffer_, r.method);
  buffer_.append(R"(,"route":)");
  util::append_json_string(buffer_, r.route);
  buffer_.append(R"(,"status":)");
  append_number(buffer_, r.status);
  auto text_field = [&](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    buffer_.append(",\"").append(name).append("\":");
    util::append_json_string(buffer_, value);
  };
  text_field("model", r.client_model);
  text_field("provider", r.provider);
  text_field("provider_model", r.provider_model);
  text_field("client", r.client_key);
  buffer_.append(r.stream ? R"(,"stream":true,"latency_ms":)" : R"(,"stream":false,"latency_ms":)");
  append_fixed<3>(buffer_, r.latency_ms);
  if (r.time_to_first_token_ms >= 0) {
    buffer_.append(R"(,"ttft_ms":)");
    append_fixed<3>(buffer_, r.time_to_first_token_ms);
  }
  if (r.prompt_tokens >= 0) {
    buffer_.append(R"(,"prompt_tokens":)");
    append_number(buffer_, r.prompt_tokens);
  }
  if (r.completion_tokens >= 0) {
    buffer_.append(R"(,"completion_tokens":)");
    append_number(buffer_, r.completion_tokens);
  }
  text_field("error", r.error);
  if (r.cost >= 0) {
    buffer_.append(R"(,"cost":)");
    append_fixed<8>(buffer_, r.cost);
  }
  text_field("migration_arm", r.migration_arm);
  if (r.shadowed) buffer_.append(R"(,"shadowed":true)");
  if (!r.attempts_json.empty()) buffer_.append(R"(,"attempts":)").append(r.attempts_json);
  buffer_.append("}\n");
  if (buffer_.size() >= kFlushBytes) flush();
}

void AccessLog::flush() {
  // Workers share the descriptor: writes of at most PIPE_BUF bytes that end on a line boundary
  // keep lines whole even when the log is a pipe.
  std::string_view pending(buffer_);
  while (fd_ >= 0 && !pending.empty()) {
    std::size_t piece = pending.size();
    if (piece > PIPE_BUF) {
      const auto newline = pending.rfind('\n', PIPE_BUF - 1);
      piece = newline == std::string_view::npos ? pending.size() : newline + 1;
    }
    const auto n = ::write(fd_, pending.data(), piece);
    if (n <= 0) break;
    pending.remove_prefix(static_cast<std::size_t>(n));
  }
  buffer_.clear();
}

}  // namespace cutover::proxy
