#include "proxy/access_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace cutover::proxy {
namespace {

namespace json = boost::json;

std::vector<json::object> lines_of(const std::string& path) {
  std::ifstream file(path);
  std::vector<json::object> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(json::parse(line).as_object());
  return lines;
}

class AccessLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/cutover-access-log-XXXXXX";
    const int fd = ::mkstemp(name);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = name;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  std::string path_;
};

TEST_F(AccessLogTest, EveryTextFieldIsAJsonStringWhateverItHolds) {
  // Quotes, backslashes, control characters, a line break that would split the line, UTF-8, and
  // a value longer than the escaper's piece.
  const std::string awkward = "a \"quoted\" \\ value\nwith\ttabs \x01 and \xc3\xa9t\xc3\xa9";
  const std::string long_value(3000, 'x');
  {
    AccessLog log(path_);
    AccessRecord record;
    record.request_id = "req_1";
    record.method = "POST";
    record.route = "/v1/chat/completions";
    record.client_model = awkward;
    record.provider = long_value;
    record.provider_model = "gpt-4.1";
    record.client_key = "team \"blue\"";
    record.status = 200;
    record.prompt_tokens = 3;
    log.record(record);
    record.request_id = "req_2";
    record.client_model = "";
    log.record(record);
    log.flush();
  }
  const auto lines = lines_of(path_);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].at("request_id").as_string(), "req_1");
  EXPECT_EQ(lines[0].at("method").as_string(), "POST");
  EXPECT_EQ(lines[0].at("route").as_string(), "/v1/chat/completions");
  EXPECT_EQ(lines[0].at("model").as_string(), awkward);
  EXPECT_EQ(lines[0].at("provider").as_string(), long_value);
  EXPECT_EQ(lines[0].at("client").as_string(), "team \"blue\"");
  EXPECT_EQ(lines[0].at("status").as_int64(), 200);
  EXPECT_EQ(lines[0].at("prompt_tokens").as_int64(), 3);
  // An empty text field is left out.
  EXPECT_EQ(lines[1].at("request_id").as_string(), "req_2");
  EXPECT_FALSE(lines[1].contains("model"));
}

TEST_F(AccessLogTest, EveryAsciiByteAtEveryPlaceOfAWordIsEscapedWhereJsonNeedsIt) {
  // The escape check reads eight bytes at a time: each byte value goes at each of the positions
  // of the first word, of the second, and of the tail past the last whole word.
  std::vector<std::string> values;
  for (int byte = 0; byte < 0x80; ++byte) {
    for (const std::size_t at : {0, 3, 7, 8, 12, 15, 16, 18}) {
      std::string value = "abcdefghijklmnopqrs";
      value[at] = static_cast<char>(byte);
      values.push_back(value);
    }
  }
  {
    AccessLog log(path_);
    AccessRecord record;
    record.method = "POST";
    record.route = "/v1/chat/completions";
    for (const auto& value : values) {
      record.request_id = value;
      log.record(record);
    }
    log.flush();
  }
  const auto lines = lines_of(path_);
  ASSERT_EQ(lines.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(lines[i].at("request_id").as_string(), values[i]) << i;
  }
}

TEST_F(AccessLogTest, FiguresAndTheTimeAreWrittenAsBefore) {
  {
    AccessLog log(path_);
    AccessRecord record;
    record.request_id = "req_3";
    record.method = "POST";
    record.route = "/v1/chat/completions";
    record.status = 429;
    record.stream = true;
    record.latency_ms = 12.3456;
    record.time_to_first_token_ms = 0.5;
    record.prompt_tokens = 0;
    record.completion_tokens = 1234567890123;
    record.cost = 0.000123456;
    record.migration_arm = "candidate";
    record.shadowed = true;
    record.attempts_json = R"([{"provider":"a","status":429}])";
    log.record(record);
    log.flush();
  }
  std::ifstream file(path_);
  std::string line;
  ASSERT_TRUE(std::getline(file, line));
  EXPECT_NE(line.find(R"("status":429,"stream":true,"latency_ms":12.346,"ttft_ms":0.500,)"
                      R"("prompt_tokens":0,"completion_tokens":1234567890123,"cost":0.00012346,)"
                      R"("migration_arm":"candidate","shadowed":true,)"
                      R"("attempts":[{"provider":"a","status":429}]})"),
            std::string::npos)
      << line;
  const auto time = std::string(json::parse(line).at("time").as_string());
  EXPECT_TRUE(std::regex_match(time, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << time;
}

// Lines are written into a buffer of their own: one longer than the buffer makes it grow, and
// lines that fill it are flushed whole, in order.
TEST_F(AccessLogTest, LinesLongerThanTheBufferAndLinesAcrossFlushesAreWrittenWhole) {
  const std::string escaped_error(50 * 1024, '\x01');  // six bytes each once escaped
  std::string attempts = "[";
  for (int i = 0; i < 2000; ++i) attempts += std::string(i ? "," : "") + R"({"provider":"p","ms":1.000})";
  attempts += "]";
  {
    AccessLog log(path_);
    AccessRecord record;
    record.method = "POST";
    record.route = "/v1/chat/completions";
    record.status = 200;
    for (int i = 0; i < 3000; ++i) {
      const std::string id = "req_" + std::to_string(i);
      record.request_id = id;
      record.error = i == 1500 ? std::string_view(escaped_error) : std::string_view();
      record.attempts_json = i == 1501 ? std::string_view(attempts) : std::string_view();
      log.record(record);
    }
  }
  const auto lines = lines_of(path_);
  ASSERT_EQ(lines.size(), 3000u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i].at("request_id").as_string(), "req_" + std::to_string(i)) << i;
  }
  EXPECT_EQ(lines[1500].at("error").as_string(), escaped_error);
  EXPECT_EQ(lines[1501].at("attempts").as_array().size(), 2000u);
  EXPECT_FALSE(lines[1502].contains("attempts"));
}

// Records that fill `bytes` or a little more of the buffer, each line numbered.
void record_lines(AccessLog& log, std::size_t bytes) {
  const std::string model(200, 'm');
  AccessRecord record;
  record.method = "POST";
  record.route = "/v1/chat/completions";
  record.client_model = model;
  record.status = 200;
  std::size_t written = 0;
  for (int i = 0; written < bytes; ++i) {
    const std::string id = "req_" + std::to_string(i);
    record.request_id = id;
    log.record(record);
    written += 300;  // a line is longer than that
  }
}

// The log's own write calls, counted by the function it writes through, and whether each wrote
// whole lines of at most PIPE_BUF bytes.
int log_write_calls = 0;
bool every_write_whole_lines_within_pipe_buf = true;
ssize_t counted_write(int fd, const void* bytes, std::size_t size) {
  ++log_write_calls;
  every_write_whole_lines_within_pipe_buf &=
      size <= PIPE_BUF && size > 0 && static_cast<const char*>(bytes)[size - 1] == '\n';
  return ::write(fd, bytes, size);
}

void count_writes_from_now() {
  log_write_calls = 0;
  every_write_whole_lines_within_pipe_buf = true;
}

// The file holds record_lines' lines, in order, none lost.
void expect_numbered_lines(const std::string& path) {
  const auto lines = lines_of(path);
  ASSERT_GT(lines.size(), 4u * PIPE_BUF / 400);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i].at("request_id").as_string(), "req_" + std::to_string(i)) << i;
  }
}

// Records record_lines' lines in an access log on standard output, which is `fd` meanwhile, and
// flushes them, counting the flush's writes.
void flush_lines_to_standard_output(int fd) {
  std::fflush(stdout);
  const int saved_stdout = ::dup(STDOUT_FILENO);
  ASSERT_GE(saved_stdout, 0);
  ASSERT_GE(::dup2(fd, STDOUT_FILENO), 0);
  {
    AccessLog log("-", counted_write);
    record_lines(log, 4 * PIPE_BUF);
    count_writes_from_now();
    log.flush();
  }
  ::dup2(saved_stdout, STDOUT_FILENO);
  ::close(saved_stdout);
}

TEST_F(AccessLogTest, AFlushToAFileIsOneWrite) {
  AccessLog log(path_, counted_write);
  record_lines(log, 4 * PIPE_BUF);
  count_writes_from_now();
  log.flush();
  EXPECT_EQ(log_write_calls, 1);
  expect_numbered_lines(path_);
}

TEST_F(AccessLogTest, AFileNotOpenedForAppendIsWrittenInWholeLinesOfAtMostPipeBuf) {
  // Standard output redirected to a file without O_APPEND: another writer's bytes could land
  // inside a long write, as in a pipe, so the flush goes in pieces that end lines.
  const int file = ::open(path_.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(file, 0);
  flush_lines_to_standard_output(file);
  ::close(file);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_GT(log_write_calls, 4);
  EXPECT_TRUE(every_write_whole_lines_within_pipe_buf);
  expect_numbered_lines(path_);
}

TEST(AccessLogPipeTest, AFlushToAPipeIsWritesOfWholeLinesOfAtMostPipeBuf) {
  // A pipe in packet mode as standard output: each read returns what one write wrote. (Opened
  // again by a path, the pipe would lose the mode, which belongs to the open file.)
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_DIRECT | O_NONBLOCK), 0);
  flush_lines_to_standard_output(fds[1]);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  std::string all;
  int writes = 0;
  char packet[PIPE_BUF + 1];
  for (ssize_t n; (n = ::read(fds[0], packet, sizeof packet)) > 0;) {
    ++writes;
    const std::string_view piece(packet, static_cast<std::size_t>(n));
    EXPECT_LE(piece.size(), static_cast<std::size_t>(PIPE_BUF));
    EXPECT_EQ(piece.back(), '\n') << "a write ended inside a line";
    all.append(piece);
  }
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_GE(writes, 4);
  std::istringstream lines(all);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    ASSERT_EQ(json::parse(line).at("request_id").as_string(), "req_" + std::to_string(count));
  }
  EXPECT_GT(count, 4 * PIPE_BUF / 400);
}

TEST(AttemptsTest, MillisecondsAreRoundedToThreePlaces) {
  for (const auto& [ms, written] : std::vector<std::pair<double, std::string>>{
           {0, "0.000"}, {0.0004, "0.000"}, {0.0006, "0.001"}, {0.9996, "1.000"},
           {1234.5678, "1234.568"}, {86'400'000.25, "86400000.250"}, {1e300, ""}, {-2.5, "-2.500"}}) {
    std::string attempts;
    append_attempt(attempts, "p", 0, "ok", ms);
    close_attempts(attempts);
    const auto parsed = json::parse(attempts).as_array();
    EXPECT_NEAR(parsed[0].at("ms").to_number<double>(), ms, std::max(0.0005, std::abs(ms) * 1e-12));
    if (!written.empty()) {
      EXPECT_NE(attempts.find("\"ms\":" + written + "}"), std::string::npos) << attempts;
    }
  }
}

TEST(AttemptsTest, AJsonArrayOfEveryAttemptWhateverTheNamesHold) {
  std::string attempts;
  close_attempts(attempts);
  EXPECT_EQ(attempts, "") << "no attempt, no array";
  append_attempt(attempts, "relay \"b\"", 1, "upstream_5xx", 12.34567);
  append_attempt(attempts, "openai", -1, "ok", 0.0004);
  close_attempts(attempts);
  EXPECT_EQ(attempts,
            R"([{"provider":"relay \"b\"","endpoint":1,"result":"upstream_5xx","ms":12.346},)"
            R"({"provider":"openai","endpoint":-1,"result":"ok","ms":0.000}])");
  const auto parsed = json::parse(attempts).as_array();
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0].at("provider").as_string(), "relay \"b\"");
}

}  // namespace
}  // namespace cutover::proxy
