#include "args.hpp"

#include <charconv>
#include <cmath>

namespace tcptune {

std::optional<std::uint64_t> parse_count(std::string_view s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_seconds(std::string_view s) {
  // Plain decimal notation only: from_chars would also take "nan", "inf" and "1e400".
  if (s.empty() || s.find_first_not_of("0123456789.") != std::string_view::npos) return std::nullopt;
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  if (v <= 0 || v > kMaxIntervalSeconds) return std::nullopt;
  return v;
}

std::string netns_name_error(std::string_view name) {
  if (name.empty()) return "an empty name (an unset variable?) would mean the host's own namespace";
  if (name == "." || name == "..") return "'" + std::string(name) + "' is not a namespace name";
  if (name.size() > 255) return "longer than 255 characters";
  for (char c : name) {
    if (c == '/') return "'" + std::string(name) + "' contains '/': give the name used with `ip netns add`, not a path";
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "contains a control character";
  }
  if (name.front() == '-') return "'" + std::string(name) + "' starts with '-' (a misplaced option?)";
  return "";
}

}  // namespace tcptune
