#include "rate.hpp"

#include <gtest/gtest.h>

#include <cmath>

using namespace syngate::flood;

namespace {
constexpr uint64_t kSec = 1'000'000'000ULL;

// Drives a bucket the way the flood loop does, on a fake clock that advances by the wait the
// bucket asks for plus a fixed oversleep, and returns the packets sent in `seconds`.
uint64_t simulate(uint64_t rate, double seconds, uint64_t oversleep_ns, uint64_t batch = 64) {
  const uint64_t start = 1'000 * kSec;
  const uint64_t end = start + static_cast<uint64_t>(seconds * 1e9);
  TokenBucket b(rate, pacing_burst(rate, batch), start);
  const uint64_t chunk = pacing_chunk(rate, batch);
  uint64_t now = start, sent = 0;
  while (now < end) {
    const uint64_t n = b.take(now, chunk);
    if (n == 0) {
      now += b.wait_ns(now, chunk) + oversleep_ns;
      continue;
    }
    sent += n;
    now += 200 * n;  // 200 ns per packet of send cost
  }
  return sent;
}
}  // namespace

TEST(TokenBucket, StartsEmptyAndCreditsExactly) {
  TokenBucket b(1000, 100, 0);
  EXPECT_EQ(b.take(0, 10), 0u);
  EXPECT_EQ(b.take(1'000'000, 10), 1u);  // 1 ms at 1000 pps = 1 packet
  EXPECT_EQ(b.take(1'000'000, 10), 0u);
  EXPECT_EQ(b.take(10'000'000, 100), 9u);
}

TEST(TokenBucket, BurstCapsAccumulation) {
  TokenBucket b(1000, 5, 0);
  EXPECT_EQ(b.take(60 * kSec, 1000), 5u);  // a minute idle still allows only the burst
}

// A sender away longer than its burst loses the rest of that time's packets; behind() counts
// them, so that sent + behind is what the rate asked for.
TEST(TokenBucket, CountsWhatTheCapDiscarded) {
  TokenBucket b(1000, 5, 0);
  EXPECT_EQ(b.take(3'000'000, 10), 3u);  // within the burst: nothing lost
  EXPECT_EQ(b.behind(), 0u);
  EXPECT_EQ(b.take(103'000'000, 1000), 5u);  // 100 ms away: 100 called for, 5 kept
  EXPECT_EQ(b.behind(), 95u);
  EXPECT_EQ(b.take(105'000'000, 10), 2u);
  EXPECT_EQ(b.behind(), 95u);
  EXPECT_EQ(3u + 5u + 2u + b.behind(), 105u) << "sent + behind = rate x time";
}

TEST(TokenBucket, BehindSaturatesAfterHugePause) {
  TokenBucket b(50'000'000, 1'000'000, 0);
  (void)b.take(UINT64_MAX / 2, 1);
  EXPECT_GT(b.behind(), 1'000'000'000u);
}

TEST(TokenBucket, NoOverflowAfterHugePause) {
  TokenBucket b(50'000'000, 1'000'000, 0);
  EXPECT_EQ(b.take(UINT64_MAX / 2, UINT64_MAX), 1'000'000u);
}

TEST(TokenBucket, WaitIsExactAndRoundsUp) {
  TokenBucket b(3, 10, 0);
  EXPECT_EQ(b.wait_ns(0, 1), 333'333'334u);  // never wake early: 333333333 ns gives 0.999999999
  EXPECT_EQ(b.take(333'333'333, 1), 0u);
  EXPECT_EQ(b.take(333'333'334, 1), 1u);
  EXPECT_EQ(b.wait_ns(333'333'334, 50), b.wait_ns(333'333'334, 10));  // clamped to the burst
}

TEST(TokenBucket, UnlimitedGrantsEverything) {
  TokenBucket b(0, 1, 0);
  EXPECT_EQ(b.take(0, 12345), 12345u);
  EXPECT_EQ(b.wait_ns(0, 1'000'000), 0u);
}

TEST(TokenBucket, NoDriftOverALongRun) {
  // 7 pps for 1000 s in 1 ms steps: every token must arrive, no rounding loss.
  TokenBucket b(7, 100, 0);
  uint64_t got = 0;
  for (uint64_t t = 1; t <= 1'000'000; ++t) got += b.take(t * 1'000'000, 100);
  EXPECT_EQ(got, 7000u);
}

class RateAccuracy : public ::testing::TestWithParam<uint64_t> {};

TEST_P(RateAccuracy, WithinTwoPercentDespiteOversleep) {
  const uint64_t rate = GetParam();
  for (uint64_t oversleep : {0ULL, 60'000ULL, 2'000'000ULL}) {
    const uint64_t sent = simulate(rate, 5.0, oversleep);
    const double expected = static_cast<double>(rate) * 5.0;
    EXPECT_NEAR(static_cast<double>(sent), expected, expected * 0.02) << "oversleep " << oversleep;
  }
}

INSTANTIATE_TEST_SUITE_P(Rates, RateAccuracy, ::testing::Values(10, 1000, 20'000, 150'000, 1'000'000));

TEST(Pacing, ChunkAndBurstScaleWithRate) {
  EXPECT_EQ(pacing_chunk(10, 64), 1u);      // low rates: one packet per wake-up
  EXPECT_EQ(pacing_chunk(100'000, 64), 50u);
  EXPECT_EQ(pacing_chunk(10'000'000, 64), 64u);
  EXPECT_EQ(pacing_chunk(0, 64), 64u);
  EXPECT_GE(pacing_burst(10, 64), 2u);
  EXPECT_EQ(pacing_burst(1'000'000, 64), 20'000u);  // 20 ms of traffic
}
