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

// The key written from the tree, after checking that the body's text gives the same one.
std::string key_of(std::string_view body, bool stream = false, std::string_view tenant = "app") {
  auto from_tree = request_key(json::parse(body).as_object(), "/chat/completions", stream, tenant);
  const auto from_text = request_key(body, "/chat/completions", stream, tenant);
  EXPECT_TRUE(from_text) << body;
  if (from_text) {
    EXPECT_EQ(from_text->text, from_tree.text) << body;
    EXPECT_EQ(from_text->deterministic, from_tree.deterministic) << body;
  }
  return from_tree.text;
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
  const auto expected =
      "/chat/completions\nplain\napp\n" + json::serialize(sorted(json::parse(body), true));
  EXPECT_EQ(key_of(body), expected);
  // The shared store names an entry by the digest it had before keys were whole texts.
  EXPECT_EQ(shared_key(key_of(body)), util::sha256_hex(expected));
}

// The text's key is the tree's, wherever the parser's events differ from a plain walk: keys
// that come twice (the last one counts, as in a json::object, the left-out fields and the
// determinism declaration included), nesting, escapes, strings and keys long enough to reach the
// handler in parts, numbers of every kind.
// Bodies whose keys the text's writer must get right: duplicates, escapes, numbers, nesting.
std::vector<std::string> tricky_bodies() {
  const std::string long_escaped =
      "\"" + std::string(3000, 'a') + std::string(6000, '\\') + "n\u00e9\"";
  return {
      R"({"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]})",
      R"({"model":"m","model":"n","temperature":0,"messages":[]})",
      R"({"temperature":0,"temperature":1,"model":"m"})",
      R"({"temperature":1,"temperature":0.0,"model":"m"})",
      R"({"seed":null,"seed":3})",
      R"({"seed":3,"seed":null})",
      R"({"temperature":-0.0,"seed":null})",
      R"({"temperature":"0","seed":null})",
      R"({"temperature":[0],"stream":true,"stream":false,"user":1,"user":2})",
      R"({"a":{"z":1,"y":{"x":[{"c":3,"b":2,"a":1},[],{}],"w":null},"y":2},"b":[[[{"k":1,"k":2}]]]})",
      R"({"stream":{"model":"x"},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"stream":{"type":"string"}}}}}]})",
      R"({"n":18446744073709551615,"m":-9223372036854775808,"d":1e-7,"e":1.5e300,"z":0e5,"f":2.50})",
      R"({"\u00e9t\u00e9":"\ud83d\ude00","tab\tkey":"a\u0000b","\"":"\\"})",
      R"({"b\u0000":1,"b":2,"a\u007f":3,"\u00ff":4,"~":5})",
      "{\"k" + std::string(5000, 'x') + "\":" + long_escaped + ",\"" + std::string(9000, '\\') +
          "\":1,\"model\":" + long_escaped + "}",
      " { \"model\" : \"m\" ,\n\t\"seed\" : 1 } ",
      // Already in order (written as they came), or nearly: a left-out field, a duplicate.
      R"({"a":1,"b":{"c":[{"d":2,"e":null}],"f":{}},"seed":0,"temperature":0})",
      R"({"a":1,"b":2,"stream":true})",
      R"({"a":1,"b":{"c":2,"c":3}})",
      R"({"model":"m","model":"m"})",
      // Keys and strings copied as they stand in the body beside escaped ones: the same key
      // both ways, escapes first, last, alone.
      R"({"\u0061":1,"a":2,"b":"\nab","c":"ab\n","d":"\"","e":"","":""})",
      R"({"a":1,"\u0061":2,"\u0062":"x","b":"y"})",
      R"({"mo\u0064el":"caf\u00e9 \ud83d\ude00","str\u0065am":false,"messages":[{"r\u006fle":"user","content":"\"x\""}]})",
  };
}

TEST(CacheKeyTest, TheTextsKeyIsTheTreesKey) {
  const auto bodies = tricky_bodies();
  std::string many_members = "{";
  for (int i = 40; i > 0; --i)
    many_members += "\"k" + std::to_string(i % 37) + "\":" + std::to_string(i) + ",";
  many_members.back() = '}';
  key_of(many_members);
  for (const auto& body : bodies) {
    key_of(body);
    key_of(body, true, "");
  }
  EXPECT_TRUE(request_key(bodies[1], "/k", false, "t")->deterministic);
  EXPECT_FALSE(request_key(bodies[2], "/k", false, "t")->deterministic)
      << "the last temperature counts";
  EXPECT_TRUE(request_key(bodies[3], "/k", false, "t")->deterministic);
  EXPECT_TRUE(request_key(bodies[4], "/k", false, "t")->deterministic);
  EXPECT_FALSE(request_key(bodies[5], "/k", false, "t")->deterministic) << "the last seed counts";
  EXPECT_TRUE(request_key(bodies[6], "/k", false, "t")->deterministic);
  EXPECT_FALSE(request_key(bodies[7], "/k", false, "t")->deterministic);
  EXPECT_EQ(key_of(R"({"a":1,"a":2})"), key_of(R"({"a":2})"));
}

// summarize_with_key reads, in one parse, what summarize_request and request_key read in two.
TEST(CacheKeyTest, OneParseGivesTheSummaryAndTheKeyOfTwo) {
  auto bodies = tricky_bodies();
  for (
      const char* more :
      {R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"seed":1,"messages":[{"role":"user","content":"hi"}]})",
       R"({"messages":[{"role":"user","content":"hi"}],"model":"m","stream":false,"temperature":0})",
       R"({"model":"m","messages":[]})", R"({"model":"m","messages":[{"content":"no role"}]})",
       R"({"model":"","messages":[{"role":"user"}]})",
       R"({"model":"m","stream":"yes","messages":[{"role":"user"}]})",
       R"({"model":"m","prompt":"p","input":"i","messages":[{"role":"user"}]})", "[]", "1", "", "{",
       "{} {}", "{\"a\":\"\xff\"}", " {} "}) {
    bodies.emplace_back(more);
  }
  // Each tricky body again as a chat request that passes the summary's checks, so that its key
  // is compared too: the fields the checks need are added last, where they count.
  const auto tricky = tricky_bodies();
  for (auto body : tricky) {
    const auto close = body.find_last_of('}');
    if (close == std::string::npos) continue;
    const bool empty = body.find_first_not_of(" \t\n", body.find('{') + 1) == close;
    body.insert(
        close,
        std::string(empty ? "" : ",") +
            R"("model":"m","stream":false,"messages":[{"role":"user"}],"prompt":"p","input":"i")");
    bodies.push_back(std::move(body));
  }
  std::size_t keys_compared = 0;
  using providers::ApiKind;
  for (const auto& body : bodies) {
    for (auto api : {ApiKind::chat_completions, ApiKind::completions, ApiKind::embeddings}) {
      SCOPED_TRACE(body.substr(0, 120) + " / kind " + std::to_string(static_cast<int>(api)));
      providers::RequestShape alone_shape, both_shape;
      const auto alone = providers::summarize_request(body, api, alone_shape);
      const auto both = summarize_with_key(body, api, both_shape, "/k", "tenant");
      EXPECT_EQ(both.summary.parse_error, alone.parse_error);
      EXPECT_EQ(both.summary.not_object, alone.not_object);
      EXPECT_EQ(both.summary.problem, alone.problem);
      EXPECT_EQ(both.summary.has_stream_options, alone.has_stream_options);
      EXPECT_EQ(both_shape.model, alone_shape.model);
      EXPECT_EQ(both_shape.stream, alone_shape.stream);
      EXPECT_EQ(both_shape.client_requested_usage, alone_shape.client_requested_usage);
      if (alone.parse_error || alone.not_object || alone.problem) {
        EXPECT_FALSE(both.key) << "a request refused before routing needs no key";
        continue;
      }
      const auto key = request_key(body, "/k", alone_shape.stream, "tenant");
      ASSERT_TRUE(key);
      ASSERT_TRUE(both.key);
      EXPECT_EQ(both.key->text, key->text);
      EXPECT_EQ(both.key->deterministic, key->deterministic);
      ++keys_compared;
    }
  }
  EXPECT_GE(keys_compared, 3 * tricky.size()) << "every tricky body's key, for every kind";
}

TEST(CacheKeyTest, OnlyAJsonObjectHasAKeyFromItsText) {
  for (const std::string_view body :
       {"", "[]", "1", "\"m\"", "null", "{", "{} {}", "{\"a\":}", "{\"a\":\"\xff\"}"}) {
    EXPECT_FALSE(request_key(body, "/k", false, "t")) << body;
  }
  EXPECT_TRUE(request_key("{}", "/k", false, "t"));
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

// A request's text in pieces: its body, the chat endpoint, plain, tenant "app".
RequestText text_of(std::string_view body, std::string_view tenant = "app") {
  return {body, "/chat/completions", tenant};
}

TEST(ResponseCacheTest, RemembersTextsWithTheirKeysWithinItsBounds) {
  CacheSettings settings;
  settings.max_entries = 2;
  settings.max_bytes = 8 * 1024;
  ResponseCache cache(settings);
  std::string key;
  EXPECT_FALSE(cache.known_text(text_of("text-a"), key).found);
  cache.remember_text(text_of("text-a"), "key-a", {true});
  cache.remember_text(text_of("text-b"), "key-b", {false, {"model-b", true, true}, true});
  auto known = cache.known_text(text_of("text-a"), key);
  ASSERT_TRUE(known.found);
  EXPECT_TRUE(known.reading.deterministic);
  EXPECT_EQ(key, "key-a");
  EXPECT_EQ(known.reading.shape.model, "");
  EXPECT_FALSE(known.reading.has_stream_options);
  known = cache.known_text(text_of("text-b"), key);
  ASSERT_TRUE(known.found);
  EXPECT_FALSE(known.reading.deterministic);
  EXPECT_EQ(key, "key-b");
  // With the summary it was remembered with, which the gateway uses instead of a parse.
  EXPECT_EQ(known.reading.shape.model, "model-b");
  EXPECT_TRUE(known.reading.shape.stream);
  EXPECT_TRUE(known.reading.shape.client_requested_usage);
  EXPECT_TRUE(known.reading.has_stream_options);
  // Full (two texts for two entries): the next one starts afresh.
  cache.remember_text(text_of("text-c"), "key-c", {true});
  EXPECT_FALSE(cache.known_text(text_of("text-a"), key).found);
  EXPECT_TRUE(cache.known_text(text_of("text-c"), key).found);
  // An eighth of the bytes at most: a larger text is not remembered.
  const std::string large(1024, 't');
  cache.remember_text(text_of(large), "key-d", {true});
  EXPECT_FALSE(cache.known_text(text_of(large), key).found);
  EXPECT_TRUE(cache.known_text(text_of("text-c"), key).found)
      << "refused without forgetting the others";
  cache.remember_text(text_of("text-e"), "key-e", {true});
  ASSERT_TRUE(cache.known_text(text_of("text-e"), key).found);
  cache.purge();
  EXPECT_FALSE(cache.known_text(text_of("text-e"), key).found);
}

// A text is every one of its pieces: the same body under another endpoint, stream mode or tenant
// is another text, and so are pieces that would join into the same bytes.
TEST(ResponseCacheTest, ATextIsKnownByAllOfItsPieces) {
  ResponseCache cache(CacheSettings{});
  std::string key;
  cache.remember_text(text_of("{}"), "key", {true});
  ASSERT_TRUE(cache.known_text(text_of("{}"), key).found);
  EXPECT_FALSE(cache.known_text(text_of("{}", "other"), key).found);
  EXPECT_FALSE(cache.known_text(text_of("{} "), key).found);
  EXPECT_FALSE(cache.known_text({"{}", "/completions", "app"}, key).found);
  // "a\nb" as the tenant and "c" as the body, or "a" and "b\nc": the same joined bytes.
  cache.remember_text({"c", "/k", "a\nb"}, "key-1", {true});
  EXPECT_TRUE(cache.known_text({"c", "/k", "a\nb"}, key).found);
  EXPECT_FALSE(cache.known_text({"b\nc", "/k", "a"}, key).found);
}

TEST(CacheKeyTest, ARequestsTextIsItsEndpointItsTenantAndItsBytes) {
  EXPECT_EQ(request_text(R"({"b":1, "a":2})", "/chat/completions", "app"),
            "/chat/completions\napp\n{\"b\":1, \"a\":2}");
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
