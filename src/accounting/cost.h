// What a request cost, from its usage and the provider's price table.
//
// Cached prompt tokens are billed at the cached price and the rest of the prompt at the input
// price. A request without usage, or a model without a price, costs nothing known: callers tell
// the two apart with `priced`.
#pragma once

#include <string_view>

#include "config/config.h"
#include "providers/openai_dialect.h"

namespace cutover::accounting {

struct Cost {
  double amount = 0;
  bool priced = false;  // a price existed and usage was reported
  std::string_view currency;  // the price's, when priced
};

Cost cost_of(const config::Provider& provider, std::string_view provider_model,
             const providers::Usage& usage);

}  // namespace cutover::accounting
