// The fleet-shared response cache against a real redis-server: what one replica keeps another
// serves, under the same bounds as the in-process cache (time to live, entries, bytes, least
// recently used first), per scope, and what an unreachable Redis or a store going away looks like.
#include "cache/shared_cache.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <thread>

#include "cache/response_cache.h"
#include "redis_server.h"

namespace cutover::testing {
namespace {

using cache::CachedAnswer;
using cache::CacheSettings;
using cache::SharedCacheStore;
using namespace std::chrono_literals;

// Runs one operation on a local event loop to its end; fails the test if it never completes.
template <typename T>
T await(Awaitable<T> operation) {
  boost::asio::io_context context;
  std::optional<T> result;
  boost::asio::co_spawn(context, std::move(operation), [&](std::exception_ptr error, T value) {
    if (error) std::rethrow_exception(error);
    result = std::move(value);
  });
  context.run();
  EXPECT_TRUE(result) << "the operation never completed";
  return result ? std::move(*result) : T{};
}

CachedAnswer answer(std::string body, bool stream = false) {
  CachedAnswer out;
  out.body = std::move(body);
  out.stream = stream;
  out.provider = "primary";
  out.provider_model = "gpt-4.1";
  out.prompt_tokens = 12;
  out.completion_tokens = 34;
  out.cost = 0.00125;
  out.currency = "USD";
  return out;
}

CacheSettings bounds(std::chrono::milliseconds ttl = 60s, std::size_t max_entries = 100,
                     std::size_t max_bytes = 1 << 20) {
  CacheSettings settings;
  settings.ttl = ttl;
  settings.max_entries = max_entries;
  settings.max_bytes = max_bytes;
  return settings;
}

config::RedisStore settings_for(std::uint16_t port) {
  config::RedisStore settings;
  settings.host = "127.0.0.1";
  settings.port = port;
  settings.key_prefix = "test";
  settings.command_timeout = 500ms;
  settings.display_url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
  return settings;
}

class SharedCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<SharedCacheStore> open() {
    return std::make_unique<SharedCacheStore>(settings_for(redis_.port()));
  }
  // Whether `key` is found in `scope` (which marks it used).
  static bool holds(SharedCacheStore& store, const std::string& scope, const std::string& key) {
    return await(store.find(scope, key)) != nullptr;
  }
  // The store's queue runs in order: once this answers, every earlier store has been applied.
  static SharedCacheStore::Usage settle(SharedCacheStore& store, const std::string& scope) {
    auto usage = await(store.usage(scope));
    EXPECT_TRUE(usage) << "Redis did not answer";
    return usage.value_or(SharedCacheStore::Usage{});
  }
  // Recency is Redis's clock in ms: operations a few ms apart are ordered.
  static void tick() { std::this_thread::sleep_for(5ms); }

  RedisServer redis_;
};

TEST_F(SharedCacheTest, AnAnswerOneReplicaKeptIsServedByAnother) {
  auto first = open();
  auto second = open();
  first->store("m", "k", answer(R"({"id":"x","choices":[]})"), bounds());
  settle(*first, "m");

  auto found = await(second->find("m", "k"));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->body, R"({"id":"x","choices":[]})");
  EXPECT_FALSE(found->stream);
  EXPECT_EQ(found->provider, "primary");
  EXPECT_EQ(found->prompt_tokens, 12);
  EXPECT_EQ(found->completion_tokens, 34);
  EXPECT_DOUBLE_EQ(found->cost, 0.00125);
  EXPECT_EQ(found->provider_model, "gpt-4.1");
  EXPECT_EQ(found->currency, "USD");
  EXPECT_TRUE(second->up());
  EXPECT_FALSE(await(second->find("m", "other-key")));
}

TEST_F(SharedCacheTest, AStreamedAnswerIsReplayedAsItsEvents) {
  auto store = open();
  const std::string events =
      "data: {\"choices\":[{\"delta\":{\"content\":\"h\\u00e9\"}}]}\n\n"
      "data: {\"choices\":[],\"usage\":{}}\n\n"
      "data: [DONE]\n\n" +
      std::string("\0binary\r\n", 9);
  store->store("m", "k", answer(events, true), bounds());

  auto found = await(store->find("m", "k"));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->body, events);
  EXPECT_TRUE(found->stream);
}

TEST_F(SharedCacheTest, AnEntryExpiresAfterItsTimeToLiveAndLeavesNoBookkeeping) {
  auto store = open();
  store->store("m", "k", answer("short-lived"), bounds(300ms));
  EXPECT_TRUE(holds(*store, "m", "k"));

  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(holds(*store, "m", "k"));
  const auto usage = settle(*store, "m");
  EXPECT_EQ(usage.entries, 0u);
  EXPECT_EQ(usage.bytes, 0u);
}

TEST_F(SharedCacheTest, TheEntriesBoundEvictsTheLeastRecentlyUsedAcrossReplicas) {
  auto first = open();
  auto second = open();
  for (const char* key : {"k1", "k2", "k3"}) {
    first->store("m", key, answer(key), bounds(60s, 3));
    settle(*first, "m");
    tick();
  }
  // A hit on another replica counts as a use: k2 is now the least recently used.
  ASSERT_TRUE(holds(*second, "m", "k1"));
  tick();
  first->store("m", "k4", answer("k4"), bounds(60s, 3));

  EXPECT_EQ(settle(*first, "m").entries, 3u);
  EXPECT_FALSE(holds(*first, "m", "k2"));
  EXPECT_TRUE(holds(*first, "m", "k1"));
  EXPECT_TRUE(holds(*first, "m", "k3"));
  EXPECT_TRUE(holds(*first, "m", "k4"));
}

TEST_F(SharedCacheTest, TheBytesBoundEvictsUntilTheNewAnswerFits) {
  auto store = open();
  const std::string body(1000, 'x');
  const std::size_t each = SharedCacheStore::bytes_of("k1", answer(body));
  const auto limits = bounds(60s, 100, 3 * each);
  for (const char* key : {"k1", "k2", "k3", "k4"}) {
    store->store("m", key, answer(body), limits);
    settle(*store, "m");
    tick();
  }

  const auto usage = settle(*store, "m");
  EXPECT_EQ(usage.entries, 3u);
  EXPECT_EQ(usage.bytes, 3 * each);
  EXPECT_FALSE(holds(*store, "m", "k1"));
  EXPECT_TRUE(holds(*store, "m", "k4"));
}

TEST_F(SharedCacheTest, AnAnswerLargerThanTheBytesBoundIsNotKeptAndEvictsNothing) {
  auto store = open();
  const auto limits = bounds(60s, 100, 2000);
  store->store("m", "small", answer("small"), limits);
  store->store("m", "huge", answer(std::string(4000, 'x')), limits);

  EXPECT_EQ(settle(*store, "m").entries, 1u);
  EXPECT_FALSE(holds(*store, "m", "huge"));
  EXPECT_TRUE(holds(*store, "m", "small"));
}

TEST_F(SharedCacheTest, PurgeDropsEveryEntryOfTheScopeAndItsBookkeeping) {
  auto store = open();
  for (const char* key : {"k1", "k2", "k3"}) store->store("m", key, answer(key), bounds());
  settle(*store, "m");

  EXPECT_EQ(await(store->purge("m")), std::optional<std::size_t>(3));
  EXPECT_FALSE(holds(*store, "m", "k1"));
  EXPECT_EQ(settle(*store, "m").entries, 0u);
  EXPECT_EQ(redis_.command({"DBSIZE"}), "0") << "a key of the scope was left behind";
}

TEST_F(SharedCacheTest, ScopesAreIndependent) {
  auto store = open();
  store->store("model-a", "k", answer("from a"), bounds(60s, 1));
  store->store("model-b", "k", answer("from b"), bounds(60s, 1));

  auto from_a = await(store->find("model-a", "k"));
  auto from_b = await(store->find("model-b", "k"));
  ASSERT_TRUE(from_a && from_b) << "one scope's bound evicted the other's entry";
  EXPECT_EQ(from_a->body, "from a");
  EXPECT_EQ(from_b->body, "from b");

  EXPECT_EQ(await(store->purge("model-a")), std::optional<std::size_t>(1));
  EXPECT_FALSE(holds(*store, "model-a", "k"));
  EXPECT_TRUE(holds(*store, "model-b", "k"));
}

TEST_F(SharedCacheTest, KeysCarryThePrefixAsAHashTag) {
  auto store = open();
  store->store("m", "k", answer("x"), bounds());
  settle(*store, "m");
  EXPECT_EQ(redis_.command({"HGET", "{test}:cache:m:entry:k", "body"}), "x");
  EXPECT_EQ(redis_.command({"ZCARD", "{test}:cache:m:recency"}), "1");
}

TEST_F(SharedCacheTest, UnreachableRedisMissesAndDropsThenRecoversWhenItReturns) {
  auto store = open();
  store->store("m", "k", answer("kept"), bounds());
  ASSERT_TRUE(holds(*store, "m", "k"));

  redis_.stop();
  EXPECT_FALSE(holds(*store, "m", "k"));
  EXPECT_FALSE(store->up());
  EXPECT_NO_THROW(store->store("m", "k2", answer("dropped"), bounds()));
  EXPECT_FALSE(holds(*store, "m", "k2"));
  EXPECT_FALSE(await(store->purge("m"))) << "an unreachable Redis is not an empty one";
  EXPECT_FALSE(await(store->usage("m")));

  redis_.start();
  EXPECT_TRUE(wait_until([&] {
    store->store("m", "k3", answer("kept again"), bounds());
    return holds(*store, "m", "k3");
  })) << "the store never reconnected";
  EXPECT_TRUE(store->up());
}

// A server that takes connections (the kernel's backlog does) and never answers: a command to it
// blocks for the whole command timeout.
class SilentServer {
 public:
  SilentServer() : acceptor_(context_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::io_context context_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

TEST(SharedCacheLifetimeTest, DestroyingTheStoreCompletesPendingLookupsWithAMiss) {
  SilentServer silent;
  auto store = std::make_unique<SharedCacheStore>(settings_for(silent.port()));
  boost::asio::io_context context;
  int completed = 0;
  for (int i = 0; i < 3; ++i) {
    boost::asio::co_spawn(context, store->find("m", "k" + std::to_string(i)),
                          [&](std::exception_ptr error, std::shared_ptr<const CachedAnswer> found) {
                            EXPECT_FALSE(error);
                            EXPECT_FALSE(found);
                            ++completed;
                          });
  }
  context.poll();  // every lookup is queued
  // Lets the store's thread take the first one off the queue: it blocks on the silent server
  // and completes at its command timeout; the other two are still queued when the store goes.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(completed, 0);

  store.reset();
  context.run();
  EXPECT_EQ(completed, 3);
}

TEST(SharedCacheLifetimeTest, ALookupThatFindsTheQueueFullMissesAtOnce) {
  SilentServer silent;
  auto settings = settings_for(silent.port());
  settings.command_timeout = 1s;
  auto store = std::make_unique<SharedCacheStore>(settings, 1);
  boost::asio::io_context context;
  std::vector<bool> completed(3, false);
  for (int i = 0; i < 3; ++i) {
    boost::asio::co_spawn(
        context, store->find("m", "k"),
        [&, i](std::exception_ptr, std::shared_ptr<const CachedAnswer>) { completed[i] = true; });
    context.poll();
    // Lets the store's thread take the first lookup off the queue (it then blocks).
    if (i == 0) std::this_thread::sleep_for(100ms);
  }
  context.poll();
  EXPECT_FALSE(completed[0]) << "in flight on the silent server";
  EXPECT_FALSE(completed[1]) << "queued";
  EXPECT_TRUE(completed[2]) << "the queue was full: a miss at once";

  store.reset();
  context.run();
  EXPECT_TRUE(completed[0] && completed[1]);
}

// ResponseCache with the shared store as its backend: what the gateway calls.
class SharedResponseCacheTest : public SharedCacheTest {
 protected:
  std::unique_ptr<cache::ResponseCache> replica(std::shared_ptr<SharedCacheStore> store) {
    auto out = std::make_unique<cache::ResponseCache>(bounds());
    out->use_shared(std::move(store), "model-a");
    return out;
  }
};

TEST_F(SharedResponseCacheTest, AnAnswerKeptOnOneReplicaIsAHitOnAnotherWithItsSavings) {
  std::shared_ptr<SharedCacheStore> first_store = open();
  std::shared_ptr<SharedCacheStore> second_store = open();
  auto first = replica(first_store);
  auto second = replica(second_store);

  EXPECT_FALSE(await(second->lookup("k")));
  first->keep("k", answer("shared"));
  settle(*first_store, "model-a");
  auto found = await(second->lookup("k"));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->body, "shared");

  const auto stats = second->stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.tokens_saved, 46u);
  EXPECT_DOUBLE_EQ(stats.cost_saved, 0.00125);
  EXPECT_EQ(first->stats().entries, 0u) << "nothing is kept in the process";
}

TEST_F(SharedResponseCacheTest, EvictionsInRedisAreCountedByTheReplicaWhoseAnswerCausedThem) {
  std::shared_ptr<SharedCacheStore> first_store = open();
  std::shared_ptr<SharedCacheStore> second_store = open();
  auto first = std::make_unique<cache::ResponseCache>(bounds(60s, 2));
  first->use_shared(first_store, "model-a");
  auto second = std::make_unique<cache::ResponseCache>(bounds(60s, 2));
  second->use_shared(second_store, "model-a");

  first->keep("k1", answer("a"));
  tick();
  first->keep("k2", answer("b"));
  settle(*first_store, "model-a");
  EXPECT_EQ(first->stats().evictions, 0u) << "two entries fit";
  tick();
  second->keep("k3", answer("c"));
  settle(*second_store, "model-a");
  EXPECT_EQ(second->stats().evictions, 1u);
  EXPECT_EQ(first->stats().evictions, 0u);
  tick();
  second->keep("k4", answer("d"));
  tick();
  second->keep("k5", answer("e"));
  EXPECT_EQ(settle(*second_store, "model-a").entries, 2u);
  EXPECT_EQ(second->stats().evictions, 3u);
  EXPECT_EQ(second->stats().entries, 0u) << "nothing is kept in the process";
  // Counted when Redis answers, even if the cache that stored is gone by then.
  second->keep("k6", answer("f"));
  second.reset();
  settle(*second_store, "model-a");
}

TEST_F(SharedResponseCacheTest, PurgeAllAndUsageReachTheSharedStore) {
  std::shared_ptr<SharedCacheStore> store = open();
  auto cache = replica(store);
  cache->keep("k1", answer("a"));
  cache->keep("k2", answer("b"));

  const auto usage = await(cache->shared_usage());
  ASSERT_TRUE(usage);
  EXPECT_EQ(usage->entries, 2u);
  EXPECT_EQ(await(cache->purge_all()), std::optional<std::size_t>(2));
  EXPECT_FALSE(await(cache->lookup("k1")));
}

TEST(ResponseCacheWithoutBackendTest, LookupAndKeepUseTheProcessShards) {
  cache::ResponseCache cache(bounds());
  EXPECT_FALSE(cache.is_shared());
  cache.keep("k", answer("local"));
  auto found = await(cache.lookup("k"));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->body, "local");
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_FALSE(await(cache.shared_usage()));
  EXPECT_EQ(await(cache.purge_all()), std::optional<std::size_t>(1));
}

}  // namespace
}  // namespace cutover::testing
