#include "live.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace syngate::flood {

std::optional<std::string> LiveTicker::poll(uint64_t now_ns, uint64_t sent, uint64_t errors) {
  if (now_ns < next_) return std::nullopt;
  const double window = static_cast<double>(now_ns - last_ns_) / 1e9;
  const double pps = window > 0 ? static_cast<double>(sent - last_sent_) / window : 0;
  last_ns_ = now_ns;
  last_sent_ = sent;
  next_ += ((now_ns - next_) / interval_ + 1) * interval_;
  return format_live_line(static_cast<double>(now_ns - start_) / 1e9, sent, pps, errors);
}

std::string format_live_line(double elapsed_s, uint64_t sent, double pps, uint64_t errors) {
  char line[160];
  std::snprintf(line, sizeof line, "%7.1f s  sent %llu  %.0f pps  %llu errors", elapsed_s,
                static_cast<unsigned long long>(sent), pps, static_cast<unsigned long long>(errors));
  return line;
}

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
  const std::string copy(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace syngate::flood
