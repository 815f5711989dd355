// The configuration loader's validator, shared by the files that parse parts of the YAML.
// Internal to config/.
#pragma once

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"

namespace cutover::config::detail {

// Collects every mistake instead of stopping at the first, so one run shows them all.
class Validator {
 public:
  Validator(std::string source, EnvironmentLookup environment, std::string base_directory,
            Secrets secrets = Secrets::required)
      : source_(std::move(source)),
        environment_(std::move(environment)),
        base_directory_(std::move(base_directory)),
        secrets_(secrets) {}

  // False when the caller asked for the secrets to stay unread (Secrets::unresolved).
  bool resolves_secrets() const { return secrets_ == Secrets::required; }

  void error(const YAML::Node& node, const std::string& path, const std::string& message) {
    std::ostringstream out;
    out << source_;
    if (node.IsDefined() && node.Mark().line >= 0) out << ":" << node.Mark().line + 1;
    out << ": " << path << ": " << message;
    errors_.push_back(out.str());
  }

  void warning(const YAML::Node& node, const std::string& path, const std::string& message) {
    std::ostringstream out;
    out << source_;
    if (node.IsDefined() && node.Mark().line >= 0) out << ":" << node.Mark().line + 1;
    out << ": " << path << ": " << message;
    warnings_.push_back(out.str());
  }

  bool expect_map(const YAML::Node& node, const std::string& path) {
    if (node.IsMap()) return true;
    error(node, path, "must be a mapping");
    return false;
  }

  void reject_unknown_keys(const YAML::Node& node, const std::string& path,
                           std::initializer_list<std::string_view> allowed) {
    for (const auto& entry : node) {
      const auto key = entry.first.as<std::string>("");
      bool known = false;
      for (auto candidate : allowed) known = known || key == candidate;
      if (!known) {
        std::string list;
        for (auto candidate : allowed) {
          if (!list.empty()) list += ", ";
          list += candidate;
        }
        error(entry.first, join(path, key), "unknown key (expected one of: " + list + ")");
      }
    }
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  std::optional<std::string> string_at(const YAML::Node& node, const std::string& path) {
    if (!node.IsScalar()) {
      error(node, path, "must be a string");
      return std::nullopt;
    }
    return node.Scalar();
  }

  template <typename Integer>
  std::optional<Integer> integer_at(const YAML::Node& node, const std::string& path,
                                    Integer minimum, Integer maximum) {
    Integer value{};
    const auto& text = node.IsScalar() ? node.Scalar() : std::string();
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (!node.IsScalar() || ec != std::errc() || end != text.data() + text.size()) {
      error(node, path, "must be a whole number");
      return std::nullopt;
    }
    if (value < minimum || value > maximum) {
      error(node, path,
            "must be between " + std::to_string(minimum) + " and " + std::to_string(maximum));
      return std::nullopt;
    }
    return value;
  }

  // Sizes in bytes: a whole number, or one with a unit, binary ("64Ki", "64KiB", "256Mi",
  // "256MiB", "1Gi", "1GiB") or decimal ("64k", "64kB", "256M", "256MB", "1G", "1GB"), as
  // Kubernetes and SI write them. "K" and "KB", which tools read as either, are refused.
  std::optional<std::size_t> byte_size_at(const YAML::Node& node, const std::string& path,
                                          std::size_t minimum, std::size_t maximum) {
    const auto& text = node.IsScalar() ? node.Scalar() : std::string();
    std::uint64_t amount = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), amount);
    const auto factor = byte_unit(std::string_view(end, text.data() + text.size() - end));
    if (!node.IsScalar() || ec != std::errc() || end == text.data() || !factor) {
      error(node, path, "'" + text + "' is not a size such as 67108864, 64MiB or 64MB");
      return std::nullopt;
    }
    if (amount > maximum / *factor || amount * *factor < minimum) {
      error(node, path,
            "must be between " + std::to_string(minimum) + " and " + std::to_string(maximum) +
                " bytes");
      return std::nullopt;
    }
    return static_cast<std::size_t>(amount * *factor);
  }

  static std::optional<std::uint64_t> byte_unit(std::string_view unit) {
    if (unit.empty() || unit == "B") return 1;
    constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
        {"Ki", 1ull << 10}, {"KiB", 1ull << 10}, {"Mi", 1ull << 20}, {"MiB", 1ull << 20},
        {"Gi", 1ull << 30}, {"GiB", 1ull << 30}, {"k", 1000},        {"kB", 1000},
        {"M", 1'000'000},   {"MB", 1'000'000},   {"G", 1'000'000'000}, {"GB", 1'000'000'000}};
    for (const auto& [name, factor] : kUnits) {
      if (unit == name) return factor;
    }
    return std::nullopt;
  }

  std::optional<bool> bool_at(const YAML::Node& node, const std::string& path) {
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
      error(node, path, "must be true or false");
      return std::nullopt;
    }
    return value;
  }

  // Durations are written with a unit ("250ms", "5s", "2m", "1h"); a bare number is milliseconds.
  std::optional<Milliseconds> duration_at(const YAML::Node& node, const std::string& path) {
    if (!node.IsScalar()) {
      error(node, path, "must be a duration such as 250ms, 5s or 2m");
      return std::nullopt;
    }
    const std::string& text = node.Scalar();
    std::int64_t amount = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), amount);
    const std::string_view unit(end, text.data() + text.size() - end);
    std::int64_t factor = 0;
    if (unit.empty() || unit == "ms") factor = 1;
    if (unit == "s") factor = 1000;
    if (unit == "m") factor = 60'000;
    if (unit == "h") factor = 3'600'000;
    if (ec != std::errc() || factor == 0 || amount <= 0) {
      error(node, path, "'" + text + "' is not a positive duration such as 250ms, 5s or 2m");
      return std::nullopt;
    }
    return Milliseconds(amount * factor);
  }

  std::optional<std::string> read_secret_file(const YAML::Node& node, const std::string& path,
                                              const std::string& file) {
    std::filesystem::path full(file);
    if (full.is_relative()) full = std::filesystem::path(base_directory_) / full;
    std::ifstream in(full);
    if (!in) {
      error(node, path, "cannot read key file '" + full.string() + "'");
      return std::nullopt;
    }
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r' ||
                                content.back() == ' ')) {
      content.pop_back();
    }
    if (content.empty()) {
      error(node, path, "key file '" + full.string() + "' is empty");
      return std::nullopt;
    }
    if (!fits_a_header(content)) {
      error(node, path, "key file '" + full.string() + "' " + kNotAHeaderValue);
      return std::nullopt;
    }
    return content;
  }

  // A key or version goes out as a header field's value: a control character (a line break
  // above all) would end the field early or start another, so it is refused here rather than
  // sent. The message never quotes the value, which may be a key.
  static bool fits_a_header(std::string_view value) {
    for (const char c : value) {
      const auto byte = static_cast<unsigned char>(c);
      if ((byte < 0x20 && c != '\t') || byte == 0x7f) return false;
    }
    return true;
  }
  static constexpr const char* kNotAHeaderValue =
      "holds a control character (a line break?), which cannot be sent in an HTTP header";

  std::optional<std::string> read_environment(const YAML::Node& node, const std::string& path,
                                              const std::string& variable) {
    auto value = environment_(variable);
    if (!value || value->empty()) {
      error(node, path, "environment variable " + variable + " is not set");
      return std::nullopt;
    }
    if (!fits_a_header(*value)) {
      error(node, path, "environment variable " + variable + " " + kNotAHeaderValue);
      return std::nullopt;
    }
    return value;
  }

  std::string resolve_path(const std::string& file) const {
    std::filesystem::path full(file);
    if (full.is_relative()) full = std::filesystem::path(base_directory_) / full;
    return full.string();
  }

  std::vector<std::string> take_errors() { return std::move(errors_); }
  std::vector<std::string> take_warnings() { return std::move(warnings_); }

 private:
  std::string source_;
  EnvironmentLookup environment_;
  std::string base_directory_;
  Secrets secrets_;
  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
};

inline std::optional<double> ratio_at(Validator& v, const YAML::Node& node, const std::string& path,
                               double minimum, double maximum) {
  double value = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, value) || value < minimum ||
      value > maximum) {
    std::ostringstream range;
    range << "must be a number from " << minimum << " to " << maximum;
    v.error(node, path, range.str());
    return std::nullopt;
  }
  return value;
}

// Parses the `migrations` list; needs providers and routes already parsed.
void parse_migrations(Validator& v, const YAML::Node& node, Config& config);

}  // namespace cutover::config::detail
