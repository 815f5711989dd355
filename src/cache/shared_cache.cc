#include "cache/shared_cache.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "util/log_throttle.h"
#include "util/thread_name.h"

namespace cutover::cache {

namespace {

// What every script starts with. KEYS: recency, expiry, sizes, bytes (then the entry, for find
// and store). ARGV[1]: the prefix of the scope's entry keys.
constexpr char kPrelude[] = R"lua(
local recency, expiry, sizes, total, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- Drops an entry with its bookkeeping; 1 when the entry itself was still there.
local function forget(member)
  local bytes = redis.call('HGET', sizes, member)
  if bytes then
    redis.call('HDEL', sizes, member)
    redis.call('DECRBY', total, bytes)
  end
  redis.call('ZREM', recency, member)
  redis.call('ZREM', expiry, member)
  return redis.call('DEL', prefix .. member)
end
-- Forgets up to 256 entries whose time passed (Redis already deleted most of their hashes);
-- returns how many it looked at, so a caller can tell whether more are left.
local function sweep(now)
  local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 256)
  for _, member in ipairs(expired) do forget(member) end
  return #expired
end
)lua";

// ARGV: prefix, key. Returns the entry's field/value pairs, empty on a miss.
constexpr char kFindBody[] = R"lua(
local fields = redis.call('HGETALL', KEYS[5])
if #fields == 0 then
  forget(ARGV[2])
else
  redis.call('ZADD', recency, now_ms(), ARGV[2])
end
return fields
)lua";

// ARGV: prefix, key, ttl ms, max_entries, max_bytes, the entry's bytes, then its field/value
// pairs. Returns how many entries were evicted, or -1 when the entry can never fit.
constexpr char kStoreBody[] = R"lua(
local key, ttl = ARGV[2], tonumber(ARGV[3])
local max_entries, max_bytes, bytes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if bytes > max_bytes then return -1 end
local now = now_ms()
sweep(now)
forget(key)
local evicted = 0
while redis.call('HLEN', sizes) >= max_entries or
      tonumber(redis.call('GET', total) or '0') + bytes > max_bytes do
  local oldest = redis.call('ZRANGE', recency, 0, 0)
  if #oldest == 0 then break end
  forget(oldest[1])
  evicted = evicted + 1
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[5], unpack(fields))
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('HSET', sizes, key, bytes)
redis.call('INCRBY', total, bytes)
redis.call('ZADD', recency, now, key)
redis.call('ZADD', expiry, now + ttl, key)
for _, bookkeeping in ipairs({recency, expiry, sizes, total}) do
  if redis.call('PTTL', bookkeeping) < ttl then redis.call('PEXPIRE', bookkeeping, ttl) end
end
return evicted
)lua";

// ARGV: prefix. Returns how many live entries were dropped.
constexpr char kPurgeBody[] = R"lua(
local dropped = 0
for _, member in ipairs(redis.call('HKEYS', sizes)) do
  dropped = dropped + redis.call('DEL', prefix .. member)
end
redis.call('DEL', recency, expiry, sizes, total)
return dropped
)lua";

// ARGV: prefix. Returns {entries, bytes} of the live entries.
constexpr char kUsageBody[] = R"lua(
local now = now_ms()
while sweep(now) == 256 do end
return {redis.call('HLEN', sizes), tonumber(redis.call('GET', total) or '0')}
)lua";

// Field names, bookkeeping and the hash's own overhead in Redis, counted once per entry.
constexpr std::size_t kEntryOverhead = 128;

struct Script {
  std::string body;
  std::string sha1;
};

std::string sha1_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr);
  std::string out;
  for (unsigned i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

Script script_of(std::string_view body) {
  Script script{std::string(kPrelude).append(body), {}};
  script.sha1 = sha1_hex(script.body);
  return script;
}

const Script& find_script() {
  static const Script script = script_of(kFindBody);
  return script;
}
const Script& store_script() {
  static const Script script = script_of(kStoreBody);
  return script;
}
const Script& purge_script() {
  static const Script script = script_of(kPurgeBody);
  return script;
}
const Script& usage_script() {
  static const Script script = script_of(kUsageBody);
  return script;
}

// The keys of one scope, in the order the scripts take them.
struct ScopeKeys {
  explicit ScopeKeys(const std::string& base)
      : recency(base + "recency"),
        expiry(base + "expiry"),
        sizes(base + "sizes"),
        bytes(base + "bytes"),
        entry_prefix(base + "entry:") {}
  std::string recency, expiry, sizes, bytes, entry_prefix;
};

std::string reply_text(const redisReply* reply) {
  return reply && reply->str ? std::string(reply->str, reply->len) : std::string();
}

std::int64_t to_int64(const std::string& text) { return std::strtoll(text.c_str(), nullptr, 10); }

timeval to_timeval(std::chrono::milliseconds duration) {
  timeval out{};
  out.tv_sec = static_cast<time_t>(duration.count() / 1000);
  out.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
  return out;
}

// The answer in an HGETALL reply; null when the reply holds none.
std::shared_ptr<const CachedAnswer> answer_from(const redisReply* reply) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) return nullptr;
  auto answer = std::make_shared<CachedAnswer>();
  bool has_body = false;
  for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
    const auto field = reply_text(reply->element[i]);
    auto value = reply_text(reply->element[i + 1]);
    if (field == "body") {
      answer->body = std::move(value);
      has_body = true;
    } else if (field == "stream") {
      answer->stream = value == "1";
    } else if (field == "provider") {
      answer->provider = std::move(value);
    } else if (field == "provider_model") {
      answer->provider_model = std::move(value);
    } else if (field == "currency") {
      answer->currency = std::move(value);
    } else if (field == "prompt_tokens") {
      answer->prompt_tokens = to_int64(value);
    } else if (field == "completion_tokens") {
      answer->completion_tokens = to_int64(value);
    } else if (field == "cost") {
      answer->cost = std::strtod(value.c_str(), nullptr);
    }
  }
  return has_body ? answer : nullptr;
}

}  // namespace

// The store thread's connection: connects, authenticates and selects the database on first use,
// drops itself after any failure and reopens at most once a second after one.
class SharedCacheStore::Connection {
 public:
  struct ReplyDeleter {
    void operator()(redisReply* reply) const { freeReplyObject(reply); }
  };
  using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

  Connection(const config::RedisStore& settings, std::atomic<bool>& up)
      : settings_(settings), up_(up) {}
  ~Connection() {
    if (context_) redisFree(context_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Null when the script did not reach Redis or answered an error (logged).
  Reply eval(const Script& script, std::initializer_list<std::string_view> keys,
             std::initializer_list<std::string_view> args) {
    const std::string key_count = std::to_string(keys.size());
    std::vector<std::string_view> argv{"EVALSHA", script.sha1, key_count};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto reply = command(argv);
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        reply_text(reply.get()).starts_with("NOSCRIPT")) {
      argv[0] = "EVAL";
      argv[1] = script.body;
      reply = command(argv);
    }
    if (reply && reply->type == REDIS_REPLY_ERROR) {
      // A persistent one (Redis out of memory) would otherwise be logged on every request.
      script_errors_.error("response cache: a Redis script answered an error: " +
                           reply_text(reply.get()));
      return nullptr;
    }
    return reply;
  }

 private:
  bool connect();
  void disconnect(const std::string& why);
  void mark_up();
  // Null when the command did not reach Redis (the connection is then dropped); an error reply
  // is returned as is.
  Reply command(const std::vector<std::string_view>& argv);

  const config::RedisStore& settings_;
  std::atomic<bool>& up_;
  redisContext* context_ = nullptr;
  bool ever_connected_ = false;
  bool reported_down_ = false;
  std::chrono::steady_clock::time_point next_attempt_{};
  util::LogThrottle script_errors_;
};

void SharedCacheStore::Connection::mark_up() {
  if (!up_ && (reported_down_ || !ever_connected_)) {
    spdlog::info("response cache: Redis at {} is reachable{}", settings_.display_url,
                 reported_down_ ? " again; answers are shared again" : "");
  }
  up_ = true;
  ever_connected_ = true;
  reported_down_ = false;
}

void SharedCacheStore::Connection::disconnect(const std::string& why) {
  if (context_) {
    redisFree(context_);
    context_ = nullptr;
  }
  if (up_ || !reported_down_) {
    spdlog::warn(
        "response cache: Redis at {} is unreachable ({}); lookups miss and answers are not "
        "kept until it answers",
        settings_.display_url, why);
    reported_down_ = true;
  }
  up_ = false;
  next_attempt_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
}

bool SharedCacheStore::Connection::connect() {
  if (context_) return true;
  if (std::chrono::steady_clock::now() < next_attempt_) return false;
  // The timeout of redisConnectWithTimeout covers the connect only; commands get their own.
  redisContext* context = redisConnectWithTimeout(settings_.host.c_str(), settings_.port,
                                                  to_timeval(settings_.connect_timeout));
  if (!context || context->err) {
    const std::string why = context ? context->errstr : "cannot allocate a connection";
    if (context) redisFree(context);
    disconnect(why);
    return false;
  }
  redisSetTimeout(context, to_timeval(settings_.command_timeout));
  context_ = context;
  auto check = [&](const std::vector<std::string_view>& argv, const char* what) {
    auto reply = command(argv);
    if (!reply) return false;
    if (reply->type == REDIS_REPLY_ERROR) {
      disconnect(std::string(what) + ": " + reply_text(reply.get()));
      return false;
    }
    return true;
  };
  if (!settings_.password.empty()) {
    std::vector<std::string_view> argv{"AUTH"};
    if (!settings_.user.empty()) argv.push_back(settings_.user);
    argv.push_back(settings_.password);
    if (!check(argv, "AUTH")) return false;
  }
  const std::string database = std::to_string(settings_.database);
  return settings_.database == 0 || check({"SELECT", database}, "SELECT");
}

SharedCacheStore::Connection::Reply SharedCacheStore::Connection::command(
    const std::vector<std::string_view>& argv) {
  if (!connect()) return nullptr;
  std::vector<const char*> args;
  std::vector<std::size_t> lengths;
  for (const auto& arg : argv) {
    args.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto* raw =
      redisCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data());
  if (!raw) {
    // hiredis: once a command failed the context cannot be reused, timeouts included.
    disconnect(context_->errstr[0] ? context_->errstr : "no reply");
    return nullptr;
  }
  mark_up();
  return Reply(static_cast<redisReply*>(raw));
}

struct SharedCacheStore::Job {
  virtual ~Job() = default;
  // On the store's thread.
  virtual void run(Connection& connection) = 0;
  // Instead of run, when the job cannot run: the queue is full or the store is going.
  virtual void abandon() = 0;
};

// A job a coroutine awaits: its result, or `unreachable` when it cannot run, is posted to the
// awaiting coroutine's executor, which is kept from running out of work until then.
template <typename Result, typename Work, typename Handler>
class SharedCacheStore::Awaited final : public Job {
 public:
  Awaited(Work work, Result unreachable, Handler handler)
      : work_(std::move(work)),
        unreachable_(std::move(unreachable)),
        handler_(std::move(handler)),
        keep_running_(
            boost::asio::make_work_guard(boost::asio::get_associated_executor(handler_))) {}

  void run(Connection& connection) override {
    Result result = unreachable_;
    try {
      result = work_(connection);
    } catch (const std::exception& error) {
      spdlog::error("response cache: a Redis operation failed: {}", error.what());
    }
    complete(std::move(result));
  }
  void abandon() override { complete(std::move(unreachable_)); }

 private:
  void complete(Result result) {
    auto executor = keep_running_.get_executor();
    boost::asio::post(executor, boost::asio::append(std::move(handler_), std::move(result)));
    keep_running_.reset();
  }

  Work work_;
  Result unreachable_;
  Handler handler_;
  boost::asio::executor_work_guard<boost::asio::associated_executor_t<Handler>> keep_running_;
};

// A job nobody waits for: a store.
class SharedCacheStore::Detached final : public Job {
 public:
  explicit Detached(std::function<void(Connection&)> work) : work_(std::move(work)) {}
  void run(Connection& connection) override { work_(connection); }
  void abandon() override {}

 private:
  std::function<void(Connection&)> work_;
};

SharedCacheStore::SharedCacheStore(config::RedisStore settings, std::size_t queue_limit)
    : settings_(std::move(settings)), queue_limit_(std::max<std::size_t>(1, queue_limit)) {
  thread_ = std::thread([this] {
    util::name_this_thread("cutover-cache");
    serve();
  });
}

SharedCacheStore::~SharedCacheStore() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The thread is gone and enqueue refuses now: nobody else touches the queue.
  for (auto& job : jobs_) job->abandon();
  jobs_.clear();
}

std::size_t SharedCacheStore::bytes_of(const std::string& key, const CachedAnswer& answer) {
  return answer.body.size() + answer.provider.size() + key.size() + kEntryOverhead;
}

std::string SharedCacheStore::scope_key(const std::string& scope) const {
  return "{" + settings_.key_prefix + "}:cache:" + scope + ":";
}

void SharedCacheStore::enqueue(std::unique_ptr<Job> job) {
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && jobs_.size() < queue_limit_) {
      jobs_.push_back(std::move(job));
      queued = true;
    }
  }
  if (queued) {
    wake_.notify_one();
  } else {
    job->abandon();
  }
}

void SharedCacheStore::serve() {
  Connection connection(settings_, up_);
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    try {
      job->run(connection);
    } catch (const std::exception& error) {
      spdlog::error("response cache: a Redis job failed: {}", error.what());
    }
  }
}

template <typename Result, typename Work>
Awaitable<Result> SharedCacheStore::submit(Work work, Result unreachable) {
  auto initiate = [this](auto handler, Work work, Result unreachable) {
    using Pending = Awaited<Result, Work, decltype(handler)>;
    enqueue(std::make_unique<Pending>(std::move(work), std::move(unreachable), std::move(handler)));
  };
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<Executor>&, void(Result)>(
      std::move(initiate), use_awaitable, std::move(work), std::move(unreachable));
}

Awaitable<std::shared_ptr<const CachedAnswer>> SharedCacheStore::find(std::string scope,
                                                                      std::string key) {
  auto work = [keys = ScopeKeys(scope_key(scope)), key = std::move(key)](Connection& connection) {
    const std::string entry = keys.entry_prefix + key;
    auto reply =
        connection.eval(find_script(), {keys.recency, keys.expiry, keys.sizes, keys.bytes, entry},
                        {keys.entry_prefix, key});
    return answer_from(reply.get());
  };
  return submit<std::shared_ptr<const CachedAnswer>>(std::move(work), nullptr);
}

void SharedCacheStore::store(std::string scope, std::string key, CachedAnswer answer,
                             const CacheSettings& bounds,
                             std::shared_ptr<std::atomic<std::uint64_t>> evictions) {
  const std::size_t bytes = bytes_of(key, answer);
  if (bytes > bounds.max_bytes) return;
  // A zero PEXPIRE would delete the entry as it is written.
  const auto ttl_ms = std::max<std::int64_t>(1, bounds.ttl.count());
  const auto max_entries = std::max<std::size_t>(1, bounds.max_entries);
  auto work = [keys = ScopeKeys(scope_key(scope)), key = std::move(key), answer = std::move(answer),
               ttl = std::to_string(ttl_ms), max_entries = std::to_string(max_entries),
               max_bytes = std::to_string(bounds.max_bytes), bytes = std::to_string(bytes),
               evictions = std::move(evictions)](Connection& connection) {
    const std::string entry = keys.entry_prefix + key;
    const std::string prompt_tokens = std::to_string(answer.prompt_tokens);
    const std::string completion_tokens = std::to_string(answer.completion_tokens);
    const std::string cost = fmt::format("{}", answer.cost);
    auto reply = connection.eval(
        store_script(), {keys.recency, keys.expiry, keys.sizes, keys.bytes, entry},
        {keys.entry_prefix, key, ttl, max_entries, max_bytes, bytes, "body", answer.body, "stream",
         answer.stream ? "1" : "0", "provider", answer.provider, "provider_model",
         answer.provider_model, "prompt_tokens", prompt_tokens, "completion_tokens",
         completion_tokens, "cost", cost, "currency", answer.currency});
    // The script answers how many entries it evicted (-1: the answer can never fit).
    if (evictions && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
      evictions->fetch_add(static_cast<std::uint64_t>(reply->integer), std::memory_order_relaxed);
    }
  };
  enqueue(std::make_unique<Detached>(std::move(work)));
}

Awaitable<std::optional<std::size_t>> SharedCacheStore::purge(std::string scope) {
  auto work = [keys = ScopeKeys(scope_key(scope))](Connection& connection) {
    auto reply = connection.eval(
        purge_script(), {keys.recency, keys.expiry, keys.sizes, keys.bytes}, {keys.entry_prefix});
    std::optional<std::size_t> dropped;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
      dropped = static_cast<std::size_t>(std::max<long long>(0, reply->integer));
    }
    return dropped;
  };
  return submit<std::optional<std::size_t>>(std::move(work), std::nullopt);
}

Awaitable<std::optional<SharedCacheStore::Usage>> SharedCacheStore::usage(std::string scope) {
  auto work = [keys = ScopeKeys(scope_key(scope))](Connection& connection) {
    auto reply = connection.eval(
        usage_script(), {keys.recency, keys.expiry, keys.sizes, keys.bytes}, {keys.entry_prefix});
    std::optional<Usage> usage;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
      usage = Usage{static_cast<std::uint64_t>(std::max<long long>(0, reply->element[0]->integer)),
                    static_cast<std::uint64_t>(std::max<long long>(0, reply->element[1]->integer))};
    }
    return usage;
  };
  return submit<std::optional<Usage>>(std::move(work), std::nullopt);
}

}  // namespace cutover::cache
