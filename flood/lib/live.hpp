// The once-a-second progress line of a flood or replay on a terminal. Pure: the caller passes
// the clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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

}  // namespace syngate::flood
