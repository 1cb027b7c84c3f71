// The flow map's housekeeping through the daemon's own tc::Program (needs root for the map).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <set>

#include "syngate/bpf/tc_abi.h"
#include "tc_program.hpp"

namespace syngate {
namespace {

sg_tc_flow_key key_of(uint32_t i) {
  sg_tc_flow_key k{};
  std::memcpy(k.src, &i, sizeof i);
  k.dst[0] = 10;
  k.sport_be = static_cast<uint16_t>(i);
  k.dport_be = 80;
  return k;
}

// What stop() and `rules down` do to a map the gateway filled (lingering flows keep their entries
// until their timers run): every entry goes, whatever the map holds.
TEST(TcMap, ClearFlowsDeletesEveryEntryOfAFullMap) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(50000, "");
  const uint32_t capacity = tc::flow_map_entries(50000);
  const sg_tc_flow value{};
  for (uint32_t i = 0; i < capacity; ++i) ASSERT_TRUE(program.write_key(key_of(i), value)) << i;
  EXPECT_EQ(program.flow_entries_count(), capacity);
  std::set<uint32_t> seen;
  for (const auto& [k, v] : program.entries()) {
    uint32_t i = 0;
    std::memcpy(&i, k.src, sizeof i);
    EXPECT_TRUE(seen.insert(i).second) << "entry " << i << " walked twice";
  }
  EXPECT_EQ(seen.size(), capacity);
  EXPECT_EQ(program.clear_flows(), capacity);
  EXPECT_EQ(program.flow_entries_count(), 0u);
  EXPECT_TRUE(program.entries().empty());
  EXPECT_EQ(program.clear_flows(), 0u) << "an empty map";
}

}  // namespace
}  // namespace syngate
