#pragma once

#include <time.h>

#include <cstdint>

namespace syngate::gw {

// The engine's timer clock (EngineClock::timer_ns): CLOCK_MONOTONIC, the clock the tc programs
// stamp their flow entries with (bpf_ktime_get_coarse_ns: the same clock at its last tick), so
// the two views of a flow's activity compare.
// Not TAI: a wall-clock step (`date -s`, `chronyc makestep`) longer than the idle timeout would
// free every flow. Saved tables are tied to the boot, so monotonic stamps hold across restarts.
inline uint64_t timer_clock_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace syngate::gw
