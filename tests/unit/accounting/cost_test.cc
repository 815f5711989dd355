#include "accounting/cost.h"

#include <gtest/gtest.h>

namespace cutover::accounting {
namespace {

TEST(CostTest, CacheReadsAndWritesArePricedApart) {
  config::Provider provider;
  config::Price price;
  price.input_per_million = 3;
  price.cached_input_per_million = 0.3;
  price.cache_write_per_million = 3.75;
  price.output_per_million = 15;
  provider.prices["claude"] = price;
  providers::Usage usage;
  usage.present = true;
  // OpenAI's rule: prompt tokens include those read from and written to the cache.
  usage.prompt_tokens = 1'000'000 + 2'000'000 + 4'000'000;
  usage.cached_prompt_tokens = 2'000'000;
  usage.cache_creation_prompt_tokens = 4'000'000;
  usage.completion_tokens = 1'000'000;
  const auto cost = cost_of(provider, "claude", usage);
  ASSERT_TRUE(cost.priced);
  EXPECT_DOUBLE_EQ(cost.amount, 3 + 2 * 0.3 + 4 * 3.75 + 15);
}

TEST(CostTest, WritesNeverCountBeyondThePrompt) {
  config::Provider provider;
  config::Price price;
  price.input_per_million = 1;
  price.cache_write_per_million = 2;
  provider.prices["m"] = price;
  providers::Usage usage;
  usage.present = true;
  usage.prompt_tokens = 1'000'000;
  usage.cache_creation_prompt_tokens = 5'000'000;  // a provider's nonsense
  EXPECT_DOUBLE_EQ(cost_of(provider, "m", usage).amount, 2);
}

}  // namespace
}  // namespace cutover::accounting
