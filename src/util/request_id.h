// Request ids: accepted from the client's X-Request-Id when sane, generated otherwise.
#pragma once

#include <string>
#include <string_view>

namespace cutover::util {

// A new random id ("req_" and 24 hex digits). Thread-safe, lock-free (thread-local generator).
std::string new_request_id();

// The client's id when it is 1 to 128 printable ASCII characters without spaces, else a new one.
std::string accept_or_new_request_id(std::string_view client_supplied);

}  // namespace cutover::util
