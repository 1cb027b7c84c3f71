// Rate control for the flood and replay loops. Pure: the caller passes the monotonic time in
// nanoseconds, so tests drive it with a fake clock.
#pragma once

#include <cstdint>

namespace syngate::flood {

// A token bucket with integer arithmetic in nano-tokens (1 packet = 1e9), so that no rounding
// error accumulates over long runs: after T seconds exactly floor(rate * T) tokens have been
// credited, minus whatever the burst cap discarded. The bucket starts empty so that a run of
// T seconds sends rate * T packets, not rate * T + burst.
class TokenBucket {
 public:
  // rate_pps == 0 means unlimited: take() grants everything asked for.
  TokenBucket(uint64_t rate_pps, uint64_t burst, uint64_t start_ns) noexcept;

  // Grants up to `want` packets at time `now_ns` and consumes their tokens.
  uint64_t take(uint64_t now_ns, uint64_t want) noexcept;

  // Nanoseconds after `now_ns` until `n` packets are available (0 when they already are).
  // `n` larger than the burst is clamped to the burst, otherwise the wait would never end.
  uint64_t wait_ns(uint64_t now_ns, uint64_t n) const noexcept;

  uint64_t rate() const noexcept { return rate_; }
  uint64_t burst() const noexcept { return burst_; }
  // Packets the rate called for that the burst cap discarded: the sender was away (descheduled,
  // stalled in a system call) longer than its burst covers. A run's sent + behind is what the
  // rate asked for, so a short count says whether the generator or the path fell short.
  uint64_t behind() const noexcept { return discarded_nanotokens_ / 1'000'000'000ULL; }

 private:
  void refill(uint64_t now_ns) noexcept;
  uint64_t rate_;
  uint64_t burst_;
  uint64_t last_ns_;
  uint64_t nanotokens_ = 0;
  uint64_t discarded_nanotokens_ = 0;
};

// How many packets to send per wake-up at a given rate: about half a millisecond of traffic, so
// that bursts stay short at low rates while high rates amortise the syscall over a full batch.
uint64_t pacing_chunk(uint64_t rate_pps, uint64_t max_batch) noexcept;

// Bucket depth for a rate: enough to absorb a sleep overshoot of ~20 ms without losing tokens,
// never less than two chunks.
uint64_t pacing_burst(uint64_t rate_pps, uint64_t max_batch) noexcept;

}  // namespace syngate::flood
