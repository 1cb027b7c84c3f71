#include "rate.hpp"

#include <algorithm>

namespace syngate::flood {

namespace {
constexpr uint64_t kNano = 1'000'000'000ULL;
}

TokenBucket::TokenBucket(uint64_t rate_pps, uint64_t burst, uint64_t start_ns) noexcept
    : rate_(rate_pps), burst_(std::max<uint64_t>(burst, 1)), last_ns_(start_ns) {}

void TokenBucket::refill(uint64_t now_ns) noexcept {
  if (now_ns <= last_ns_) return;  // a clock that did not move (or a caller's stale sample)
  const uint64_t cap = burst_ * kNano;
  const uint64_t dt = now_ns - last_ns_;
  last_ns_ = now_ns;
  // Compare before multiplying: dt * rate can overflow 64 bits after a long pause.
  const uint64_t room = cap - std::min(cap, nanotokens_);
  uint64_t credit = 0;
  if (__builtin_mul_overflow(dt, rate_, &credit)) credit = UINT64_MAX;
  if (credit > room) {
    nanotokens_ = cap;
    const uint64_t lost = credit - room;
    discarded_nanotokens_ = lost > UINT64_MAX - discarded_nanotokens_ ? UINT64_MAX : discarded_nanotokens_ + lost;
  } else {
    nanotokens_ += credit;
  }
}

uint64_t TokenBucket::take(uint64_t now_ns, uint64_t want) noexcept {
  if (rate_ == 0) return want;
  refill(now_ns);
  const uint64_t granted = std::min(want, nanotokens_ / kNano);
  nanotokens_ -= granted * kNano;
  return granted;
}

uint64_t TokenBucket::wait_ns(uint64_t now_ns, uint64_t n) const noexcept {
  if (rate_ == 0) return 0;
  n = std::min(n, burst_);
  TokenBucket copy = *this;
  copy.refill(now_ns);
  const uint64_t need = n * kNano;
  if (copy.nanotokens_ >= need) return 0;
  const uint64_t missing = need - copy.nanotokens_;
  return (missing + rate_ - 1) / rate_;  // round up: waking early would grant nothing
}

uint64_t pacing_chunk(uint64_t rate_pps, uint64_t max_batch) noexcept {
  max_batch = std::max<uint64_t>(max_batch, 1);
  if (rate_pps == 0) return max_batch;
  return std::clamp<uint64_t>(rate_pps / 2000, 1, max_batch);
}

uint64_t pacing_burst(uint64_t rate_pps, uint64_t max_batch) noexcept {
  const uint64_t chunk = pacing_chunk(rate_pps, max_batch);
  return std::max<uint64_t>(2 * chunk, rate_pps / 50);
}

}  // namespace syngate::flood
