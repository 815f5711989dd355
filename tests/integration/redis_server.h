// A throwaway redis-server for tests: on a free loopback port, in a temporary directory, with no
// persistence, stopped (and its directory removed) when the object goes. stop() and start() again
// keep the port, so a test can take Redis away and bring it back (empty: nothing was saved).
#pragma once

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace cutover::testing {

class RedisServer {
 public:
  // `durable`: an append-only file synced on every write, as production runs it (appendonly yes),
  // so that a SIGKILLed server restarted by start() comes back with everything it acknowledged.
  explicit RedisServer(bool durable = false) : durable_(durable) {
    directory_ = std::filesystem::temp_directory_path() /
                 ("cutover-redis-" + std::to_string(getpid()) + "-" + std::to_string(++counter()));
    std::filesystem::create_directories(directory_);
    port_ = free_port();
    start();
  }
  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(directory_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts it and waits (up to 10 s) until it answers PING.
  void start() {
    if (pid_ > 0) return;
    const std::string port = std::to_string(port_);
    const std::string dir = directory_.string();
    pid_ = fork();
    if (pid_ == 0) {
      execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", durable_ ? "yes" : "no", "--appendfsync", "always",
             "--dir", dir.c_str(), "--loglevel", "warning", static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_GT(pid_, 0) << "cannot fork redis-server";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (ping()) return;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "redis-server exited at start (is the redis-server package installed? "
                  "scripts/install-deps.sh installs it)";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "redis-server did not answer on port " << port_;
  }

  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Freezes it (SIGSTOP): connections stay open and commands time out, and its data is kept for
  // thaw(), unlike stop().
  void freeze() {
    if (pid_ > 0) kill(pid_, SIGSTOP);
  }
  void thaw() {
    if (pid_ > 0) kill(pid_, SIGCONT);
  }

  std::uint16_t port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

  // Runs one command on a fresh connection; the reply as text ("" for nil, the number for an
  // integer), or "ERR:<message>".
  std::string command(std::initializer_list<std::string> argv) const {
    timeval timeout{2, 0};
    redisContext* context = redisConnectWithTimeout("127.0.0.1", port_, timeout);
    if (!context || context->err) {
      if (context) redisFree(context);
      return "ERR:unreachable";
    }
    std::vector<const char*> args;
    std::vector<std::size_t> lengths;
    for (const auto& arg : argv) {
      args.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(context, static_cast<int>(args.size()), args.data(), lengths.data()));
    std::string out = "ERR:no reply";
    if (reply) {
      if (reply->type == REDIS_REPLY_INTEGER)
        out = std::to_string(reply->integer);
      else if (reply->type == REDIS_REPLY_NIL)
        out = "";
      else if (reply->type == REDIS_REPLY_ERROR)
        out = "ERR:" + std::string(reply->str, reply->len);
      else if (reply->str)
        out = std::string(reply->str, reply->len);
      else if (reply->type == REDIS_REPLY_ARRAY)
        out = std::to_string(reply->elements);
      freeReplyObject(reply);
    }
    redisFree(context);
    return out;
  }

 private:
  bool ping() const { return command({"PING"}) == "PONG"; }

  static std::uint16_t free_port() {
    boost::asio::io_context context;
    boost::asio::ip::tcp::acceptor acceptor(
        context, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    return acceptor.local_endpoint().port();
  }
  static int& counter() {
    static int value = 0;
    return value;
  }

  bool durable_ = false;
  std::filesystem::path directory_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// Polls `condition` every 10 ms until it holds or `limit` passes; returns whether it held.
template <typename Condition>
bool wait_until(Condition condition, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

}  // namespace cutover::testing
