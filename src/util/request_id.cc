#include "util/request_id.h"

#include <random>

namespace cutover::util {

std::string new_request_id() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  // Written into a local array and copied once: a push_back per digit cost a capacity check
  // each, about 400 instructions an id in the profiles.
  char id[28] = {'r', 'e', 'q', '_'};
  char* digit = id + 4;
  for (int part = 0; part < 2; ++part) {
    auto bits = generator();
    for (int i = 0; i < 12; ++i, bits >>= 4) *digit++ = kHex[bits & 0xf];
  }
  return std::string(id, sizeof id);
}

std::string accept_or_new_request_id(std::string_view client_supplied) {
  if (client_supplied.empty() || client_supplied.size() > 128) return new_request_id();
  for (char c : client_supplied) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return new_request_id();
  }
  return std::string(client_supplied);
}

}  // namespace cutover::util
