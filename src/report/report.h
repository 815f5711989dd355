// `cutover report`: offline figures from the state store, no running gateway needed.
//
// `usage` exports the usage ledger grouped as asked, as CSV or JSON, for reconciliation with
// provider invoices; `migration` prints a migration's state, history, shadow comparison and
// cost projection as tables, the same figures the admin API and dashboard show.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace cutover::report {

struct UsageOptions {
  // One file, or each replica's `local_file` of a fleet: their rows add up.
  std::vector<std::string> store_paths;
  std::optional<std::int64_t> from_unix_ms;
  std::optional<std::int64_t> to_unix_ms;
  // Any of provider, model, provider_model, key, traffic, minute, hour, day.
  std::vector<std::string> by = {"provider", "model"};
  std::string format = "csv";  // or json
};

// Parses "2026-11-24", "2026-11-24T10:00:00Z" or seconds since the epoch.
std::optional<std::int64_t> parse_time(const std::string& text);

int report_usage(const UsageOptions& options, std::ostream& out, std::ostream& error);

struct MigrationReportOptions {
  std::string store_path;  // SQLite; in a fleet, this replica's local file (shadow pairs, usage)
  // A fleet's Redis: the record and journal are read there.
  std::optional<config::RedisStore> redis;
  std::string migration;
  std::vector<std::string> models;  // the migration's client models, for its live volume
  std::string currency = "USD";
  std::string format = "table";  // or json
};

int report_migration(const MigrationReportOptions& options, std::ostream& out, std::ostream& error);

}  // namespace cutover::report
