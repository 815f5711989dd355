// SHA-256 digests as text, for whatever must be compared or keyed without keeping the original:
// client and admin tokens, cache keys, shadow-pair prompts and answers, migration fingerprints.
#pragma once

#include <string>
#include <string_view>

namespace cutover::util {

// The SHA-256 digest of `data` as 64 lowercase hexadecimal digits. Thread-safe.
std::string sha256_hex(std::string_view data);

}  // namespace cutover::util
