// The once-a-second progress line of a flood or replay on a terminal, and the strict number
// parsing of the command line. Pure: the caller passes the clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace syngate::flood {

// Decides when a progress line is due and what it says: elapsed time, packets sent, the rate
// over the last interval (not the average, so a stall shows at once) and send errors.
class LiveTicker {
 public:
  explicit LiveTicker(uint64_t start_ns, uint64_t interval_ns = 1'000'000'000) noexcept
      : start_(start_ns), interval_(interval_ns), next_(start_ns + interval_ns), last_ns_(start_ns) {}

  uint64_t next_due() const noexcept { return next_; }
  // The line when one is due at `now_ns`, else nothing. Intervals missed while the caller slept
  // are skipped, not printed in a burst.
  std::optional<std::string> poll(uint64_t now_ns, uint64_t sent, uint64_t errors);

 private:
  uint64_t start_, interval_, next_;
  uint64_t last_ns_;
  uint64_t last_sent_ = 0;
};

std::string format_live_line(double elapsed_s, uint64_t sent, double pps, uint64_t errors);

// A non-negative decimal integer that fits in 64 bits: digits only, so "-5", "+5", "1e3",
// " 5" and "5x" are refused (strtoull would wrap "-5" to 2^64 - 5).
std::optional<uint64_t> parse_count(std::string_view text) noexcept;
// A finite decimal number (no NaN, no infinity, no hex floats).
std::optional<double> parse_finite(std::string_view text) noexcept;

}  // namespace syngate::flood
