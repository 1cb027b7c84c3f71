// The flow map's housekeeping through the daemon's own tc::Program (needs root for the map).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <set>

#include "syngate/packet.hpp"
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

// Every connection's end deletes its two entries (one batch): whichever of them is there goes,
// and a flow never handed over, or half written, costs nothing else.
TEST(TcMap, DeleteFlowTakesWhicheverEntriesAreThere) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(1024, "");
  const sg_tc_flow value{};
  const auto flow = [](uint16_t port) {
    return FlowTuple{*Address::parse("198.18.0.7"), *Address::parse("10.10.3.2"), port, 80};
  };
  const auto present = [&](const FlowTuple& t) {
    const sg_tc_flow_key to_server = tc::flow_key(t), to_client = tc::flow_key(t.reversed());
    size_t n = 0;
    for (const auto& [k, v] : program.entries()) {
      n += std::memcmp(&k, &to_server, sizeof k) == 0 || std::memcmp(&k, &to_client, sizeof k) == 0;
    }
    return n;
  };
  const FlowTuple both = flow(1001), server_only = flow(1002), client_only = flow(1003), none = flow(1004),
                  bystander = flow(1005);
  for (const FlowTuple& t : {both, server_only, bystander}) ASSERT_TRUE(program.write_key(tc::flow_key(t), value));
  for (const FlowTuple& t : {both, client_only, bystander}) {
    ASSERT_TRUE(program.write_key(tc::flow_key(t.reversed()), value));
  }
  for (const FlowTuple& t : {both, server_only, client_only, none}) program.delete_flow(t);
  for (const FlowTuple& t : {both, server_only, client_only, none}) {
    EXPECT_EQ(present(t), 0u) << "port " << t.sport << " keeps an entry";
  }
  EXPECT_EQ(present(bystander), 2u) << "another flow's entries are left alone";
  EXPECT_EQ(program.flow_entries_count(), 2u);
}

}  // namespace
}  // namespace syngate
