#include "accounting/cost.h"

#include <algorithm>

namespace cutover::accounting {

Cost cost_of(const config::Provider& provider, std::string_view provider_model,
             const providers::Usage& usage) {
  const auto* price = provider.price_for(provider_model);
  if (price == nullptr || !usage.present) return {};
  const auto cached = std::clamp<std::int64_t>(usage.cached_prompt_tokens, 0, usage.prompt_tokens);
  const auto written = std::clamp<std::int64_t>(usage.cache_creation_prompt_tokens, 0,
                                                usage.prompt_tokens - cached);
  const auto uncached = std::max<std::int64_t>(usage.prompt_tokens - cached - written, 0);
  const double amount = (static_cast<double>(uncached) * price->input_per_million +
                         static_cast<double>(cached) * price->cached_input_per_million +
                         static_cast<double>(written) * price->cache_write_per_million +
                         static_cast<double>(std::max<std::int64_t>(usage.completion_tokens, 0)) *
                             price->output_per_million) /
                        1e6;
  return {amount, true, price->currency};
}

}  // namespace cutover::accounting
