// The simdjson on-demand parser that the in-place scans of providers/ share (RequestBody's and
// PlainAnswer's): one per thread, its buffers kept small between bodies. Internal to providers/.
#pragma once

#include <simdjson.h>

#include <string_view>

namespace cutover::providers {

// This thread's parser. Nothing read through it may be kept past the scan that read it: the next
// scan on this thread reuses its buffers.
simdjson::ondemand::parser& thread_parser();

// After a scan: a parser keeps the capacity of the largest body it has read, about six bytes per
// byte (its structural index and string buffer), so one 9 MiB body would hold 50 MiB per thread
// outside the gateway's memory accounting. Past 64 KiB the capacity is given back.
void release_large_parser_buffers();

// `text` without trailing JSON whitespace: simdjson's raw tokens run to the next structural
// character.
std::string_view trim_right(std::string_view text);

}  // namespace cutover::providers
