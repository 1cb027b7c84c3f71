#include "numbers.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace syngate::flood {

std::optional<uint64_t> parse_count(std::string_view text) noexcept {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::optional<double> parse_finite(std::string_view text) noexcept {
  if (text.empty() || text.size() > 64) return std::nullopt;
  for (const char c : text)
    if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E')) return std::nullopt;
  char buf[65] = {};  // strtod needs a terminated string
  std::memcpy(buf, text.data(), text.size());
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(buf, &end);
  if (end != buf + text.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace syngate::flood
