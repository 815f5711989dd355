// A request to a provider, held as the bytes it leaves as. Beast's fields allocate each field,
// keep it in a tree for lookups, and are walked again to be written: about 4,000 instructions a
// request in the profiles (bench/RESULTS.md) for a header that the gateway writes once and
// never reads back. Here each field is appended to one string, in the order given; the header is
// what Beast writes for the same POST with the same fields, which a unit test checks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "config/config.h"

namespace cutover::upstream {

class Request {
 public:
  // "POST <address's base path><path> HTTP/1.1" with the Host field for `address`: its host
  // (an IPv6 address in brackets), with the port unless it is the scheme's default.
  Request(const config::Endpoint& address, std::string_view path);

  // Appends a field. A value is cut at its first CR or LF: the rest would be a field (or a
  // request) of its own, and a value can come from configuration or from a client's header.
  void add_field(std::string_view name, std::string_view value);
  // The same with the value written as `prefix` then `value` ("Bearer " and a key).
  void add_field(std::string_view name, std::string_view prefix, std::string_view value);

  std::string& body() { return body_; }
  const std::string& body() const { return body_; }

  // The start line and the fields, without the Content-Length and the blank line
  // (http::HeaderEnd).
  const std::string& fields() const { return fields_; }

 private:
  std::string fields_;
  std::string body_;
};

}  // namespace cutover::upstream
