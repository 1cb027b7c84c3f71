#include "stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace syngate::flood {

double percentile_sorted(const std::vector<double>& sorted, double p) noexcept {
  if (sorted.empty()) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // ceil(p/100 * n) computed on integers where possible: 99% of 100 must be rank 99, not 100
  // because of a floating-point crumb.
  const double exact = p / 100.0 * static_cast<double>(sorted.size());
  size_t rank = static_cast<size_t>(std::ceil(exact - 1e-9));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

LatencySummary summarize(std::vector<double>& samples) {
  LatencySummary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  s.p50 = percentile_sorted(samples, 50);
  s.p90 = percentile_sorted(samples, 90);
  s.p99 = percentile_sorted(samples, 99);
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
  return s;
}

}  // namespace syngate::flood
