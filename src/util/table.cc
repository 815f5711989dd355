#include "util/table.h"

#include <algorithm>
#include <ostream>

namespace cutover::util {

namespace {

// UTF-8 continuation bytes (10xxxxxx) do not start a character.
std::size_t display_width(const std::string& text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

}  // namespace

void print_table(std::ostream& out, const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) widths[i] = display_width(headers[i]);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], display_width(row[i]));
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out << cells[i];
      if (i + 1 < cells.size() && i < widths.size()) {
        out << std::string(widths[i] - std::min(widths[i], display_width(cells[i])) + 2, ' ');
      }
    }
    out << "\n";
  };
  line(headers);
  for (const auto& row : rows) line(row);
}

}  // namespace cutover::util
