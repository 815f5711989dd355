#include "util/sha256.h"

#include <openssl/evp.h>

namespace cutover::util {

std::string sha256_hex(std::string_view data) {
  // Fetched once: with EVP_sha256() OpenSSL 3 looks the implementation up on every digest, under
  // a lock, and every shadow pair takes three digests.
  static EVP_MD* const fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, fetched != nullptr ? fetched : EVP_sha256(),
             nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace cutover::util
