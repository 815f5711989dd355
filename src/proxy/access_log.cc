#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <iterator>
#include <climits>

namespace cutover::proxy {

namespace {
constexpr std::size_t kFlushBytes = 32 * 1024;

// Appends `text` as a JSON string literal, escaped by Boost.JSON's serializer, to `out`: through a
// stack buffer, without the two allocations a json::string and its serialized copy cost per
// field (a dozen a request).
void append_quoted(std::string& out, std::string_view text) {
  thread_local boost::json::serializer serializer;
  serializer.reset(boost::json::string_view(text.data(), text.size()));
  char piece[512];
  while (!serializer.done()) {
    const auto written = serializer.read(piece, sizeof piece);
    out.append(written.data(), written.size());
  }
}
}  // namespace

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

void AccessLog::record(const AccessRecord& r) {
  if (fd_ < 0) return;
  auto out = std::back_inserter(buffer_);
  const auto now = std::chrono::system_clock::now();
  const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now - seconds).count();
  fmt::format_to(out, R"({{"time":"{:%Y-%m-%dT%H:%M:%S}.{:03}Z","request_id":)", seconds, millis);
  append_quoted(buffer_, r.request_id);
  buffer_.append(R"(,"method":)");
  append_quoted(buffer_, r.method);
  buffer_.append(R"(,"route":)");
  append_quoted(buffer_, r.route);
  fmt::format_to(out, R"(,"status":{})", r.status);
  auto text_field = [&](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    buffer_.append(",\"").append(name).append("\":");
    append_quoted(buffer_, value);
  };
  text_field("model", r.client_model);
  text_field("provider", r.provider);
  text_field("provider_model", r.provider_model);
  text_field("client", r.client_key);
  fmt::format_to(out, R"(,"stream":{},"latency_ms":{:.3f})", r.stream, r.latency_ms);
  if (r.time_to_first_token_ms >= 0) {
    fmt::format_to(out, R"(,"ttft_ms":{:.3f})", r.time_to_first_token_ms);
  }
  if (r.prompt_tokens >= 0) fmt::format_to(out, R"(,"prompt_tokens":{})", r.prompt_tokens);
  if (r.completion_tokens >= 0) {
    fmt::format_to(out, R"(,"completion_tokens":{})", r.completion_tokens);
  }
  text_field("error", r.error);
  if (r.cost >= 0) fmt::format_to(out, R"(,"cost":{:.8f})", r.cost);
  if (!r.migration_arm.empty()) fmt::format_to(out, R"(,"migration_arm":"{}")", r.migration_arm);
  if (r.shadowed) fmt::format_to(out, R"(,"shadowed":true)");
  if (!r.attempts_json.empty()) fmt::format_to(out, R"(,"attempts":{})", r.attempts_json);
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
