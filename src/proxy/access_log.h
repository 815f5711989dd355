// One JSON line per request, buffered per worker and written with one write(2) per flush (to a
// pipe, one per PIPE_BUF bytes of whole lines) so workers never contend on a lock.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace cutover::proxy {

struct AccessRecord {
  std::string_view request_id;
  std::string_view method;
  std::string_view route;
  std::string_view client_model;
  std::string_view provider;
  std::string_view provider_model;
  std::string_view client_key;
  unsigned status = 0;
  bool stream = false;
  std::string_view error;  // empty, or the failure's name (e.g. connect_error)
  double latency_ms = 0;
  double time_to_first_token_ms = -1;  // negative when not applicable
  std::int64_t prompt_tokens = -1;     // negative when the provider reported no usage
  std::int64_t completion_tokens = -1;
  double cost = -1;  // negative when the model has no price or there was no usage
  // "candidate" or "primary" for a request on a migrated route, else empty.
  std::string_view migration_arm;
  bool shadowed = false;
  // A JSON array of every upstream attempt, already serialized (append_attempt()); empty when
  // none was made.
  std::string_view attempts_json;
};

// Adds one upstream attempt to `attempts`, a JSON array being built for AccessRecord::attempts_json:
// the first call opens it; close_attempts() ends it.
void append_attempt(std::string& attempts, std::string_view provider, long endpoint,
                    std::string_view result, double ms);
inline void close_attempts(std::string& attempts) {
  if (!attempts.empty()) attempts.push_back(']');
}

class AccessLog {
 public:
  // How a flush reaches the file: write(2), or in a test a function that counts its calls (the
  // process's own count of write calls includes whatever else the process and its runtime wrote).
  using WriteCall = ssize_t (*)(int fd, const void* bytes, std::size_t size);

  // `destination`: "-" for standard output, "off", or a file path (opened for append).
  explicit AccessLog(const std::string& destination, WriteCall write_call = ::write);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  void record(const AccessRecord& record);
  bool enabled() const { return fd_ >= 0; }
  // Writes what is buffered; called by the worker's timer and at shutdown.
  void flush();

 private:
  // The date and time of day, formatted again only when the second changes.
  std::string_view time_of_day(std::chrono::sys_seconds second);
  // Makes room for `most` more bytes of pending lines: flushes, or grows for a line longer than
  // the buffer. Returns where the next line is written.
  char* room_for(std::size_t most);

  WriteCall write_call_;
  int fd_ = -1;
  bool owns_fd_ = false;
  // A regular file opened for append takes a whole flush in one write without interleaving it
  // with another worker's; a pipe keeps lines whole only in writes of PIPE_BUF bytes or less.
  bool whole_writes_ = false;
  // Pending lines, written through a cursor rather than appended to a string: the ~35 appends
  // of a line each checked a string's capacity (about a third of the log's instructions), and a
  // string cannot grow without zero-filling what it grows by.
  std::unique_ptr<char[]> pending_;
  std::size_t pending_size_ = 0;
  std::size_t pending_capacity_ = 0;
  std::string escaped_;  // a value that needs JSON escaping, escaped
  std::chrono::sys_seconds formatted_second_{};
  std::string formatted_time_;
};

}  // namespace cutover::proxy
