#include "util/request_id.h"

#include <random>

namespace cutover::util {

std::string new_request_id() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "req_";
  id.reserve(28);
  for (int part = 0; part < 2; ++part) {
    auto bits = generator();
    for (int i = 0; i < 12; ++i, bits >>= 4) id.push_back(kHex[bits & 0xf]);
  }
  return id;
}

std::string accept_or_new_request_id(std::string_view client_supplied) {
  if (client_supplied.empty() || client_supplied.size() > 128) return new_request_id();
  for (char c : client_supplied) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return new_request_id();
  }
  return std::string(client_supplied);
}

}  // namespace cutover::util
