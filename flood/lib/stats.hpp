// Latency statistics for the prober. Pure.
#pragma once

#include <cstdint>
#include <vector>

namespace syngate::flood {

struct LatencySummary {
  uint64_t count = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

// Nearest-rank percentile (the smallest sample with at least p% of samples at or below it), so
// every figure reported is a latency that was really observed. p in (0, 100].
double percentile_sorted(const std::vector<double>& sorted, double p) noexcept;

// Summarises samples (any order; the vector is sorted in place). Empty input gives all zeros.
LatencySummary summarize(std::vector<double>& samples);

}  // namespace syngate::flood
