#include "routing/sticky_assignment.h"

#include <cstdint>

namespace cutover::routing {

namespace {
constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr std::uint64_t kFnvPrime = 0x100000001b3ull;

std::uint64_t fnv1a(std::uint64_t hash, std::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= kFnvPrime;
  }
  return hash;
}

// SplitMix64's finalizer: FNV alone leaves the high bits poorly mixed for short keys.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}
}  // namespace

double sticky_position(std::string_view salt, std::string_view key) {
  // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
  const std::uint64_t salt_length = salt.size();
  std::uint64_t hash = fnv1a(kFnvOffset, std::string_view(reinterpret_cast<const char*>(&salt_length),
                                                          sizeof salt_length));
  hash = fnv1a(hash, salt);
  hash = fnv1a(hash, key);
  // The top 53 bits fill a double's mantissa exactly: uniform in [0, 1), never 1.
  return static_cast<double>(mix(hash) >> 11) * 0x1.0p-53;
}

}  // namespace cutover::routing
