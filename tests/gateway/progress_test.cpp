#include <gtest/gtest.h>

#include "notify.hpp"

using syngate::gw::ProgressCheck;

TEST(ProgressCheck, AWorkerWhoseHeartbeatStandsStillIsStuck) {
  ProgressCheck p;
  EXPECT_TRUE(p.stuck({5, 9, 1}).empty()) << "the first look has nothing to compare with";
  EXPECT_TRUE(p.stuck({6, 10, 2}).empty());
  EXPECT_EQ(p.stuck({7, 10, 3}), std::vector<size_t>{1});
  EXPECT_EQ(p.stuck({7, 10, 3}), (std::vector<size_t>{0, 1, 2}));
  EXPECT_TRUE(p.stuck({8, 11, 4}).empty()) << "progress again: the watchdog may be fed";
  EXPECT_TRUE(p.stuck({8, 11}).empty()) << "another worker count starts over";
}
