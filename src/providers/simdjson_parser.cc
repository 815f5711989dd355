#include "providers/simdjson_parser.h"

namespace cutover::providers {

namespace {
constexpr std::size_t kKeptCapacity = 64 * 1024;
}  // namespace

simdjson::ondemand::parser& thread_parser() {
  thread_local simdjson::ondemand::parser parser;
  return parser;
}

void release_large_parser_buffers() {
  if (auto& parser = thread_parser(); parser.capacity() > kKeptCapacity) {
    // A failed allocation leaves the parser empty: the next iterate() allocates again.
    [[maybe_unused]] const auto error = parser.allocate(kKeptCapacity);
  }
}

std::string_view trim_right(std::string_view text) {
  const auto end = text.find_last_not_of(" \t\r\n");
  return end == std::string_view::npos ? std::string_view() : text.substr(0, end + 1);
}

}  // namespace cutover::providers
