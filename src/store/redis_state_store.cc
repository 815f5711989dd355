#include "store/redis_state_store.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <algorithm>
#include <map>
#include <cstdlib>

namespace cutover::store {

namespace json = boost::json;

namespace {

// KEYS: record, journal, leader. ARGV: expected generation, fence ("replica|term" or ""), the
// transition as a JSON object without at_unix_ms, then the record's field/value pairs. The stage
// clock becomes Redis's time, unless state, stage and weight stay as they were (a journaled
// capacity hold): then the stage keeps its clock.
// Returns {1, now_ms} committed, {0, generation} stale, {-1, generation} not the leader.
constexpr char kCommitScript[] = R"lua(
local stored = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if stored ~= tonumber(ARGV[1]) then return {0, stored} end
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return {-1, stored} end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local given = {}
for i = 4, #ARGV, 2 do given[ARGV[i]] = ARGV[i + 1] end
local stage_clock = string.format('%d', now)
local old = redis.call('HMGET', KEYS[1], 'state', 'stage', 'weight', 'stage_started_unix_ms')
if old[1] == given['state'] and old[2] == given['stage'] and old[3] == given['weight'] and old[4] then
  stage_clock = old[4]
end
local fields = {'stage_started_unix_ms', stage_clock}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], '{"at_unix_ms":' .. string.format('%d', now) .. ',' .. string.sub(ARGV[3], 2))
return {1, now}
)lua";

// KEYS: leader, term. ARGV: replica, lease ms, the term this replica holds ("0" for none).
// Returns the term held now, or 0 when another replica holds the lease.
constexpr char kLeaseScript[] = R"lua(
local holder = redis.call('GET', KEYS[1])
if not holder then
  local term = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. term, 'PX', ARGV[2])
  return term
end
if holder == ARGV[1] .. '|' .. ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[3])
end
return 0
)lua";

// KEYS: leader. ARGV: "replica|term".
constexpr char kReleaseScript[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

// KEYS: window, replicas. ARGV: replica, contribution, window expiry ms.
constexpr char kWindowScript[] = R"lua(
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', now))
return now
)lua";

constexpr auto kWindowExpiry = std::chrono::minutes(10);

// KEYS: the migration's pair list. ARGV: how many to keep, then the pairs, oldest first.
constexpr char kPairsScript[] = R"lua(
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return 1
)lua";

// A shadow pair's figures and hashes as the fleet shares them; the prompt and outputs stay in
// the replica's local file.
json::object pair_json(const ShadowPair& p) {
  return json::object{
      {"migration", p.migration}, {"at", p.at_unix_ms}, {"request_id", p.request_id},
      {"model", p.model}, {"streamed", p.streamed}, {"primary_status", p.primary_status},
      {"candidate_status", p.candidate_status}, {"candidate_error", p.candidate_error},
      {"primary_latency_ms", p.primary_latency_ms}, {"candidate_latency_ms", p.candidate_latency_ms},
      {"primary_ttft_ms", p.primary_ttft_ms}, {"candidate_ttft_ms", p.candidate_ttft_ms},
      {"primary_prompt_tokens", p.primary_prompt_tokens},
      {"primary_completion_tokens", p.primary_completion_tokens},
      {"candidate_prompt_tokens", p.candidate_prompt_tokens},
      {"candidate_completion_tokens", p.candidate_completion_tokens},
      {"primary_cost", p.primary_cost}, {"candidate_cost", p.candidate_cost},
      {"primary_finish_reason", p.primary_finish_reason},
      {"candidate_finish_reason", p.candidate_finish_reason}, {"exact_match", p.exact_match},
      {"similarity", p.similarity}, {"rouge_l", p.rouge_l}, {"length_ratio", p.length_ratio},
      {"candidate_json_valid", p.candidate_json_valid}, {"json_equal", p.json_equal},
      {"tool_calls_equal", p.tool_calls_equal}, {"score", p.score}, {"prompt_hash", p.prompt_hash},
      {"primary_output_hash", p.primary_output_hash},
      {"candidate_output_hash", p.candidate_output_hash}};
}

std::optional<ShadowPair> pair_from_json(const std::string& text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec || !value.is_object()) return std::nullopt;
  const auto& o = value.get_object();
  auto string = [&](const char* name) {
    const auto* v = o.if_contains(name);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  auto number = [&](const char* name) {
    const auto* v = o.if_contains(name);
    return v && v->is_number() ? v->to_number<double>() : 0.0;
  };
  auto integer = [&](const char* name) { return static_cast<std::int64_t>(number(name)); };
  auto flag = [&](const char* name) {
    const auto* v = o.if_contains(name);
    return v && v->is_bool() && v->get_bool();
  };
  ShadowPair p;
  p.migration = string("migration");
  p.at_unix_ms = integer("at");
  p.request_id = string("request_id");
  p.model = string("model");
  p.streamed = flag("streamed");
  p.primary_status = static_cast<int>(integer("primary_status"));
  p.candidate_status = static_cast<int>(integer("candidate_status"));
  p.candidate_error = string("candidate_error");
  p.primary_latency_ms = number("primary_latency_ms");
  p.candidate_latency_ms = number("candidate_latency_ms");
  p.primary_ttft_ms = number("primary_ttft_ms");
  p.candidate_ttft_ms = number("candidate_ttft_ms");
  p.primary_prompt_tokens = integer("primary_prompt_tokens");
  p.primary_completion_tokens = integer("primary_completion_tokens");
  p.candidate_prompt_tokens = integer("candidate_prompt_tokens");
  p.candidate_completion_tokens = integer("candidate_completion_tokens");
  p.primary_cost = number("primary_cost");
  p.candidate_cost = number("candidate_cost");
  p.primary_finish_reason = string("primary_finish_reason");
  p.candidate_finish_reason = string("candidate_finish_reason");
  p.exact_match = flag("exact_match");
  p.similarity = number("similarity");
  p.rouge_l = number("rouge_l");
  p.length_ratio = number("length_ratio");
  p.candidate_json_valid = static_cast<int>(integer("candidate_json_valid"));
  p.json_equal = static_cast<int>(integer("json_equal"));
  p.tool_calls_equal = static_cast<int>(integer("tool_calls_equal"));
  p.score = number("score");
  p.prompt_hash = string("prompt_hash");
  p.primary_output_hash = string("primary_output_hash");
  p.candidate_output_hash = string("candidate_output_hash");
  return p;
}

std::string sha1_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr);
  std::string out;
  for (unsigned i = 0; i < length; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

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

std::string transition_json(const Transition& t) {
  // at_unix_ms is prepended by the script, from Redis's clock.
  return json::serialize(json::object{{"migration", t.migration},
                                      {"generation", t.generation},
                                      {"from", t.from_state},
                                      {"to", t.to_state},
                                      {"weight_before", t.weight_before},
                                      {"weight_after", t.weight_after},
                                      {"trigger", t.trigger},
                                      {"detail", t.detail}});
}

std::optional<Transition> parse_transition(std::string_view text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec || !value.is_object()) return std::nullopt;
  const auto& o = value.get_object();
  auto string = [&](const char* key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  auto number = [&](const char* key) {
    const auto* v = o.if_contains(key);
    return v && v->is_number() ? v->to_number<double>() : 0.0;
  };
  auto integer = [&](const char* key) -> std::int64_t {
    const auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
    if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
    return 0;
  };
  Transition t;
  t.migration = string("migration");
  t.generation = integer("generation");
  t.at_unix_ms = integer("at_unix_ms");
  t.from_state = string("from");
  t.to_state = string("to");
  t.weight_before = number("weight_before");
  t.weight_after = number("weight_after");
  t.trigger = string("trigger");
  t.detail = string("detail");
  return t;
}

}  // namespace

void RedisStateStore::ReplyDeleter::operator()(redisReply* reply) const { freeReplyObject(reply); }

RedisStateStore::RedisStateStore(config::RedisStore settings, std::unique_ptr<StateStore> local)
    : settings_(std::move(settings)), local_(std::move(local)) {
  for (auto [script, body] :
       {std::pair{&commit_script_, kCommitScript}, std::pair{&lease_script_, kLeaseScript},
        std::pair{&release_script_, kReleaseScript}, std::pair{&window_script_, kWindowScript},
        std::pair{&pairs_script_, kPairsScript}}) {
    script->body = body;
    script->sha1 = sha1_hex(script->body);
  }
}

RedisStateStore::~RedisStateStore() {
  if (context_) redisFree(context_);
}

std::string RedisStateStore::key(std::string_view suffix) const {
  return "{" + settings_.key_prefix + "}:" + std::string(suffix);
}

bool RedisStateStore::up() const {
  std::lock_guard lock(mutex_);
  return up_;
}

void RedisStateStore::mark_up_locked() {
  if (!up_ && (reported_down_ || !ever_connected_)) {
    spdlog::info("state store: Redis at {} is reachable{}", settings_.display_url,
                 reported_down_ ? " again; following the shared record" : "");
  }
  up_ = true;
  ever_connected_ = true;
  reported_down_ = false;
}

void RedisStateStore::disconnect_locked(const std::string& why) {
  if (context_) {
    redisFree(context_);
    context_ = nullptr;
  }
  if (up_ || !reported_down_) {
    spdlog::warn(
        "state store: Redis at {} is unreachable ({}); failing static on the last known "
        "weights, nothing advances until it answers",
        settings_.display_url, why);
    reported_down_ = true;
  }
  up_ = false;
  next_attempt_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
}

bool RedisStateStore::connect_locked() {
  if (context_) return true;
  if (std::chrono::steady_clock::now() < next_attempt_) return false;
  // The timeout of redisConnectWithTimeout covers the connect only; commands get their own.
  redisContext* context = redisConnectWithTimeout(settings_.host.c_str(), settings_.port,
                                                  to_timeval(settings_.connect_timeout));
  if (!context || context->err) {
    const std::string why = context ? context->errstr : "cannot allocate a connection";
    if (context) redisFree(context);
    disconnect_locked(why);
    return false;
  }
  const auto timeout = to_timeval(settings_.command_timeout);
  redisSetTimeout(context, timeout);
  context_ = context;
  auto check = [&](std::vector<std::string> argv, const char* what) {
    auto reply = command_locked(argv);
    if (!reply) return false;
    if (reply->type == REDIS_REPLY_ERROR) {
      disconnect_locked(std::string(what) + ": " + reply_text(reply.get()));
      return false;
    }
    return true;
  };
  if (!settings_.password.empty()) {
    std::vector<std::string> argv{"AUTH"};
    if (!settings_.user.empty()) argv.push_back(settings_.user);
    argv.push_back(settings_.password);
    if (!check(argv, "AUTH")) return false;
  }
  if (settings_.database != 0 && !check({"SELECT", std::to_string(settings_.database)}, "SELECT")) {
    return false;
  }
  return true;
}

RedisStateStore::Reply RedisStateStore::command_locked(const std::vector<std::string>& argv) {
  if (!connect_locked()) return nullptr;
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
    disconnect_locked(context_->errstr[0] ? context_->errstr : "no reply");
    return nullptr;
  }
  mark_up_locked();
  return Reply(static_cast<redisReply*>(raw));
}

RedisStateStore::Reply RedisStateStore::eval_locked(const Script& script,
                                                    const std::vector<std::string>& keys,
                                                    const std::vector<std::string>& args) {
  std::vector<std::string> argv{"EVALSHA", script.sha1, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  auto reply = command_locked(argv);
  if (reply && reply->type == REDIS_REPLY_ERROR &&
      reply_text(reply.get()).starts_with("NOSCRIPT")) {
    argv[0] = "EVAL";
    argv[1] = script.body;
    reply = command_locked(argv);
  }
  return reply;
}

CommitResult RedisStateStore::commit(const MigrationRecord& next, const Transition& transition,
                                     std::int64_t expected_generation) {
  return commit_as(next, transition, expected_generation, std::nullopt).result;
}

Committed RedisStateStore::commit_as(const MigrationRecord& next, const Transition& transition,
                                     std::int64_t expected_generation,
                                     const std::optional<Fence>& fence) {
  const std::string record_key = key("migration:" + next.migration);
  std::vector<std::string> args{
      std::to_string(expected_generation),
      fence ? fence->replica + "|" + std::to_string(fence->term) : std::string(),
      transition_json(transition),
      "migration",
      next.migration,
      "state",
      next.state,
      "weight",
      fmt::format("{}", next.weight),
      "stage",
      std::to_string(next.stage),
      "generation",
      std::to_string(next.generation),
      "config_fingerprint",
      next.config_fingerprint,
      "annotations",
      next.annotations};
  std::lock_guard lock(mutex_);
  auto reply =
      eval_locked(commit_script_, {record_key, record_key + ":journal", key("leader")}, args);
  if (!reply) return {CommitResult::failed, 0};
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_INTEGER) {
    spdlog::error("state store: the commit script answered unexpectedly: {}",
                  reply_text(reply.get()));
    return {CommitResult::failed, 0};
  }
  const auto status = reply->element[0]->integer;
  const auto value = reply->element[1]->integer;
  if (status == 1) return {CommitResult::committed, value};
  return {status == 0 ? CommitResult::stale_generation : CommitResult::not_leader, 0};
}

std::optional<MigrationRecord> RedisStateStore::load(std::string_view migration) {
  std::lock_guard lock(mutex_);
  auto reply = command_locked({"HGETALL", key("migration:" + std::string(migration))});
  if (!reply) throw StoreUnavailable("Redis at " + settings_.display_url + " is unreachable");
  if (reply->type != REDIS_REPLY_ARRAY) {
    throw StoreUnavailable("Redis answered HGETALL with an error: " + reply_text(reply.get()));
  }
  if (reply->elements == 0) return std::nullopt;
  MigrationRecord record;
  for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
    const auto field = reply_text(reply->element[i]);
    const auto value = reply_text(reply->element[i + 1]);
    if (field == "migration")
      record.migration = value;
    else if (field == "state")
      record.state = value;
    else if (field == "weight")
      record.weight = std::strtod(value.c_str(), nullptr);
    else if (field == "stage")
      record.stage = static_cast<int>(to_int64(value));
    else if (field == "stage_started_unix_ms")
      record.stage_started_unix_ms = to_int64(value);
    else if (field == "generation")
      record.generation = to_int64(value);
    else if (field == "config_fingerprint")
      record.config_fingerprint = value;
    else if (field == "annotations")
      record.annotations = value;
  }
  if (record.migration.empty()) record.migration = std::string(migration);
  return record;
}

std::vector<Transition> RedisStateStore::history(std::string_view migration, std::size_t limit) {
  std::vector<Transition> out;
  if (limit == 0) return out;
  std::lock_guard lock(mutex_);
  auto reply = command_locked({"LRANGE", key("migration:" + std::string(migration) + ":journal"),
                               "-" + std::to_string(limit), "-1"});
  if (!reply || reply->type != REDIS_REPLY_ARRAY) return out;
  for (std::size_t i = 0; i < reply->elements; ++i) {
    if (auto t = parse_transition(reply_text(reply->element[i]))) out.push_back(std::move(*t));
  }
  return out;
}

std::optional<std::int64_t> RedisStateStore::hold_lease(std::optional<std::int64_t> term) {
  std::lock_guard lock(mutex_);
  auto reply = eval_locked(lease_script_, {key("leader"), key("term")},
                           {settings_.replica, std::to_string(settings_.lease.count()),
                            std::to_string(term.value_or(0))});
  if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0) return std::nullopt;
  return reply->integer;
}

void RedisStateStore::release_lease(std::int64_t term) {
  std::lock_guard lock(mutex_);
  eval_locked(release_script_, {key("leader")}, {settings_.replica + "|" + std::to_string(term)});
}

std::optional<std::string> RedisStateStore::leader() {
  std::lock_guard lock(mutex_);
  auto reply = command_locked({"GET", key("leader")});
  if (!reply || reply->type == REDIS_REPLY_ERROR) return std::nullopt;
  return reply_text(reply.get());
}

std::string RedisStateStore::window_key(std::string_view migration, std::int64_t generation) const {
  return key(fmt::format("migration:{}:window:{}", migration, generation));
}

bool RedisStateStore::publish_window(std::string_view migration, std::int64_t generation,
                                     const std::string& contribution) {
  std::lock_guard lock(mutex_);
  auto reply = eval_locked(
      window_script_, {window_key(migration, generation), key("replicas")},
      {settings_.replica, contribution,
       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(kWindowExpiry).count())});
  return reply && reply->type == REDIS_REPLY_INTEGER;
}

std::optional<std::vector<std::pair<std::string, std::string>>> RedisStateStore::window(
    std::string_view migration, std::int64_t generation) {
  std::lock_guard lock(mutex_);
  auto reply = command_locked({"HGETALL", window_key(migration, generation)});
  if (!reply || reply->type != REDIS_REPLY_ARRAY) return std::nullopt;
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
    out.emplace_back(reply_text(reply->element[i]), reply_text(reply->element[i + 1]));
  }
  return out;
}

std::optional<std::vector<RedisStateStore::Heartbeat>> RedisStateStore::heartbeats(
    std::chrono::milliseconds within) {
  std::lock_guard lock(mutex_);
  auto time = command_locked({"TIME"});
  if (!time || time->type != REDIS_REPLY_ARRAY || time->elements != 2) return std::nullopt;
  const auto now = to_int64(reply_text(time->element[0])) * 1000 +
                   to_int64(reply_text(time->element[1])) / 1000;
  auto reply = command_locked({"HGETALL", key("replicas")});
  if (!reply || reply->type != REDIS_REPLY_ARRAY) return std::nullopt;
  std::vector<Heartbeat> out;
  for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
    const auto age = now - to_int64(reply_text(reply->element[i + 1]));
    if (age <= within.count()) out.push_back({reply_text(reply->element[i]), std::max<std::int64_t>(age, 0)});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.age_ms < b.age_ms; });
  return out;
}

void RedisStateStore::record_shadow_pairs(const std::vector<ShadowPair>& pairs,
                                          std::size_t retention) {
  local_->record_shadow_pairs(pairs, retention);
  std::map<std::string, std::vector<std::string>> by_migration;
  for (const auto& pair : pairs) by_migration[pair.migration].push_back(json::serialize(pair_json(pair)));
  std::lock_guard lock(mutex_);
  for (auto& [migration, encoded] : by_migration) {
    // Lost to the fleet's view (kept in the local file) when Redis cannot be reached.
    encoded.insert(encoded.begin(), std::to_string(retention));
    eval_locked(pairs_script_, {pairs_key(migration)}, encoded);
  }
}

std::vector<ShadowPair> RedisStateStore::shadow_pairs(std::string_view migration,
                                                      std::size_t limit) {
  if (limit == 0) return {};
  {
    std::lock_guard lock(mutex_);
    auto reply = command_locked({"LRANGE", pairs_key(migration), "-" + std::to_string(limit), "-1"});
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
      std::vector<ShadowPair> out;
      out.reserve(reply->elements);
      for (std::size_t i = 0; i < reply->elements; ++i) {
        if (auto pair = pair_from_json(reply_text(reply->element[i]))) out.push_back(std::move(*pair));
      }
      return out;
    }
  }
  // Redis cannot be reached: this replica's own pairs are better than none.
  return local_->shadow_pairs(migration, limit);
}

std::string RedisStateStore::pairs_key(std::string_view migration) const {
  return key(fmt::format("migration:{}:pairs", migration));
}

void RedisStateStore::record_usage(const std::vector<UsageRow>& rows) {
  local_->record_usage(rows);
}

std::vector<UsageRow> RedisStateStore::usage(std::int64_t from_unix_ms, std::int64_t to_unix_ms) {
  return local_->usage(from_unix_ms, to_unix_ms);
}

std::unique_ptr<RedisStateStore> open_redis_store(const config::RedisStore& settings,
                                                  const std::string& local_file) {
  return std::make_unique<RedisStateStore>(
      settings, open_sqlite_store(local_file.empty() ? ":memory:" : local_file));
}

}  // namespace cutover::store
