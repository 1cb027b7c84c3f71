#include "live.hpp"
#include "numbers.hpp"

#include <gtest/gtest.h>

using namespace syngate::flood;

TEST(LiveTicker, OneLinePerIntervalWithTheIntervalsRate) {
  const uint64_t s = 1'000'000'000;
  LiveTicker t(5 * s);
  EXPECT_FALSE(t.poll(5 * s + s / 2, 100, 0));
  const auto first = t.poll(6 * s, 20000, 0);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, "    1.0 s  sent 20000  20000 pps  0 errors");
  EXPECT_FALSE(t.poll(6 * s + 1, 20001, 0));  // not due again until 7 s
  const auto second = t.poll(7 * s, 30000, 3);
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, "    2.0 s  sent 30000  10000 pps  3 errors");
  // A caller that slept through several intervals gets one line, then the next is a full
  // interval later.
  const auto late = t.poll(10 * s + s / 2, 30000, 3);
  ASSERT_TRUE(late);
  EXPECT_EQ(*late, "    5.5 s  sent 30000  0 pps  3 errors");
  EXPECT_EQ(t.next_due(), 11 * s);
}

TEST(Numbers, CountsAreDigitsOnly) {
  EXPECT_EQ(parse_count("0"), 0u);
  EXPECT_EQ(parse_count("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(parse_count("18446744073709551616"));
  for (const char* bad : {"", "-5", "+5", "1e3", " 5", "5x", "0x10", "nan", "inf", "1.5"})
    EXPECT_FALSE(parse_count(bad)) << bad;
}

TEST(Numbers, FiniteOnly) {
  EXPECT_EQ(parse_finite("2.5"), 2.5);
  EXPECT_EQ(parse_finite("-1"), -1.0);
  EXPECT_EQ(parse_finite("1e3"), 1000.0);
  for (const char* bad : {"", "nan", "NaN", "inf", "-inf", "infinity", "1e999", "0x1p3", "2s", " 1"})
    EXPECT_FALSE(parse_finite(bad)) << bad;
}
