// Plain-text tables for the terminal (`cutover ctl`, `cutover report`): columns padded to the
// widest cell, measured in characters rather than bytes so arrows and ticks line up.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace cutover::util {

void print_table(std::ostream& out, const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows);

}  // namespace cutover::util
