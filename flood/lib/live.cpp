#include "live.hpp"

#include <cstdio>

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

}  // namespace syngate::flood
