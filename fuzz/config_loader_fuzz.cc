// Fuzz target: any YAML either loads into a configuration or yields at least one message; the
// loader never crashes or throws.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  auto environment = [](const std::string&) -> std::optional<std::string> { return "value"; };
  try {
    auto result = cutover::config::load_from_string(yaml, environment, "fuzz", "/nonexistent");
    if (!result.config && result.errors.empty()) std::abort();
  } catch (...) {
    std::abort();
  }
  return 0;
}
