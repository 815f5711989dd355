#include "admin/dashboard.h"

namespace cutover::admin {

namespace {

// Written by CMake from src/admin/dashboard.html: `constexpr std::string_view kDashboardHtml`.
#include "admin/dashboard_html.inc"

}  // namespace

std::string_view dashboard_html() { return kDashboardHtml; }

}  // namespace cutover::admin
