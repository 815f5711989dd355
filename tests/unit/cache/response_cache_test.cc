#include "cache/response_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "util/sha256.h"

namespace cutover::cache {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string key_of(std::string_view body, bool stream = false, std::string_view tenant = "app") {
  return cache_key(json::parse(body).as_object(), "/chat/completions", stream, tenant);
}

TEST(CacheKeyTest, WhatChangesTheAnswerChangesTheKey) {
  const auto base = key_of(R"({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_NE(base, key_of(R"({"model":"m","temperature":0,"messages":[{"role":"user","content":"ho"}]})"));
  EXPECT_NE(base, key_of(R"({"model":"n","temperature":0,"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_NE(base, key_of(R"({"model":"m","temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_NE(base, key_of(R"({"model":"m","temperature":0,"tools":[],"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_NE(base, key_of(R"({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]})", true))
      << "a stream is stored as its events";
  EXPECT_NE(base, key_of(R"({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]})", false, "other"))
      << "another tenant";
}

TEST(CacheKeyTest, WhatDoesNotChangeTheAnswerDoesNotChangeTheKey) {
  const auto base = key_of(R"({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(base, key_of(R"({"messages":[{"content":"hi","role":"user"}],"temperature":0,"model":"m"})"))
      << "key order";
  EXPECT_EQ(base, key_of(R"({"model":"m","temperature":0,"user":"u-1","metadata":{"a":"b"},"store":false,)"
                         R"("stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_EQ(base, key_of(R"({ "model" : "m", "temperature" : 0, "messages" : [ {"role":"user","content":"hi"} ] })"))
      << "white space";
}

// The body as Boost.JSON serializes it with every object's keys sorted and the top level's
// left-out fields dropped: what the key's digest was taken of before its writer learnt to write
// plain strings and integers itself. Keys of entries already in a fleet's Redis stay valid only
// while the bytes stay the same.
json::value sorted(const json::value& value, bool top) {
  if (value.is_array()) {
    json::array out;
    for (const auto& item : value.get_array()) out.push_back(sorted(item, false));
    return out;
  }
  if (!value.is_object()) return value;
  std::vector<std::string> keys;
  for (const auto& member : value.get_object()) {
    const std::string_view key = member.key();
    if (top && (key == "stream" || key == "stream_options" || key == "user" || key == "metadata" ||
                key == "store")) {
      continue;
    }
    keys.emplace_back(key);
  }
  std::sort(keys.begin(), keys.end());
  json::object out;
  for (const auto& key : keys) out[key] = sorted(value.get_object().at(key), false);
  return out;
}

TEST(CacheKeyTest, TheDigestIsOfBoostJsonsOwnBytesWithSortedKeys) {
  const std::string body =
      R"({"model":"m","temperature":0.0,"seed":-42,"top_p":0.25,"n":18446744073709551615,)"
      R"("logit_bias":{"50256":-100,"17":1e-7},"stop":["\n","\"end\"","tab\tbed","\u0001"],)"
      R"("messages":[{"role":"user","content":"h\u00e9llo \u2603 \\ back/slash","name":null},)"
      R"({"role":"assistant","content":"","tool_calls":[{"id":"c1","function":)"
      R"({"arguments":"{\"a\":1}","name":"f"}}]}],"parallel_tool_calls":false,"logprobs":true,)"
      R"("stream":true,"user":"u","metadata":{"x":"y"},"store":false,"big":1.5e300,"neg":-0.0})";
  const auto expected = util::sha256_hex("/chat/completions\nplain\napp\n" +
                                         json::serialize(sorted(json::parse(body), true)));
  EXPECT_EQ(key_of(body), expected);
}

TEST(CacheKeyTest, DeterministicByDeclaration) {
  EXPECT_TRUE(declares_deterministic(json::parse(R"({"temperature":0})").as_object()));
  EXPECT_TRUE(declares_deterministic(json::parse(R"({"temperature":0.0})").as_object()));
  EXPECT_TRUE(declares_deterministic(json::parse(R"({"seed":7,"temperature":1})").as_object()));
  EXPECT_FALSE(declares_deterministic(json::parse(R"({"temperature":0.2})").as_object()));
  EXPECT_FALSE(declares_deterministic(json::parse(R"({})").as_object()));
  EXPECT_FALSE(declares_deterministic(json::parse(R"({"seed":null})").as_object()));
}

struct FakeClock {
  ResponseCache::Clock::time_point now = ResponseCache::Clock::time_point{} + 1h;
  std::function<ResponseCache::Clock::time_point()> function() {
    return [this] { return now; };
  }
};

CachedAnswer answer(std::string body, std::int64_t tokens = 10, double cost = 0.5) {
  CachedAnswer result;
  result.body = std::move(body);
  result.provider = "p";
  result.prompt_tokens = tokens;
  result.cost = cost;
  return result;
}

TEST(ResponseCacheTest, HitsUntilTheTtlThenMisses) {
  FakeClock clock;
  CacheSettings settings;
  settings.ttl = 10s;
  ResponseCache cache(settings, clock.function());
  EXPECT_FALSE(cache.find("a"));
  cache.store("a", answer("A"));
  clock.now += 9s;
  auto hit = cache.find("a");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->body, "A");
  clock.now += 1s;
  EXPECT_FALSE(cache.find("a"));
  const auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.entries, 0u) << "an expired entry goes when it is found stale";
  EXPECT_EQ(stats.tokens_saved, 10u);
  EXPECT_DOUBLE_EQ(stats.cost_saved, 0.5);
}

TEST(ResponseCacheTest, EntriesBoundEvictsTheLeastRecentlyUsed) {
  CacheSettings settings;
  settings.max_entries = 2;
  ResponseCache cache(settings);
  cache.store("a", answer("A"));
  cache.store("b", answer("B"));
  ASSERT_TRUE(cache.find("a"));  // b is now the least recently used
  cache.store("c", answer("C"));
  EXPECT_TRUE(cache.find("a"));
  EXPECT_FALSE(cache.find("b"));
  EXPECT_TRUE(cache.find("c"));
  EXPECT_EQ(cache.stats().evictions, 1u);
}

TEST(ResponseCacheTest, BytesBoundEvictsAndRefusesWhatCanNeverFit) {
  CacheSettings settings;
  settings.max_bytes = 4096;
  ResponseCache cache(settings);
  cache.store("a", answer(std::string(1500, 'a')));
  cache.store("b", answer(std::string(1500, 'b')));
  cache.store("c", answer(std::string(1500, 'c')));
  EXPECT_LE(cache.stats().bytes, 4096u);
  EXPECT_FALSE(cache.find("a"));
  EXPECT_TRUE(cache.find("c"));
  cache.store("huge", answer(std::string(8192, 'h')));
  EXPECT_FALSE(cache.find("huge"));
  EXPECT_TRUE(cache.find("c")) << "a too large answer evicts nothing";
}

TEST(ResponseCacheTest, PurgeDropsEverything) {
  ResponseCache cache(CacheSettings{});
  cache.store("a", answer("A"));
  cache.store("b", answer("B"));
  EXPECT_EQ(cache.purge(), 2u);
  EXPECT_FALSE(cache.find("a"));
  EXPECT_EQ(cache.stats().bytes, 0u);
}

TEST(ResponseCacheTest, ReplacingAnEntryKeepsTheAccountsRight) {
  ResponseCache cache(CacheSettings{});
  cache.store("a", answer("first"));
  cache.store("a", answer("second answer"));
  EXPECT_EQ(cache.find("a")->body, "second answer");
  EXPECT_EQ(cache.stats().entries, 1u);
}

}  // namespace
}  // namespace cutover::cache
