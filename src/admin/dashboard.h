#pragma once

#include <string_view>

namespace cutover::admin {

// The operator dashboard: one self-contained HTML page (inline CSS and script, no data) that the
// admin listener serves at GET /dashboard. The page reads the admin API from the browser with the
// token the operator gives it. Built into the binary from src/admin/dashboard.html; the view is
// valid for the whole program and may be read from any thread.
std::string_view dashboard_html();

}  // namespace cutover::admin
