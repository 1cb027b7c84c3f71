// The flow index (open addressing, backward-shift deletion) under churn: every live flow is
// found at its index, no freed one is, whatever order flows come and go in.
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <random>
#include <vector>

#include "syngate/flow_table.hpp"

namespace {
using namespace syngate;
using namespace syngate::flows;

FlowTuple tuple_of(uint32_t n) {
  FlowTuple t;
  t.src = Address::from_v4(0xc6120000u + (n >> 8));
  t.dst = Address::from_v4(0x0a0a0302u);
  t.sport = static_cast<uint16_t>(1024 + (n & 0xff));
  t.dport = 80;
  return t;
}

void expect_consistent(const FlowTable& table, const std::map<uint32_t, uint32_t>& live, uint32_t universe) {
  for (uint32_t n = 0; n < universe; ++n) {
    const auto it = live.find(n);
    const uint32_t found = table.find(tuple_of(n));
    if (it == live.end()) {
      ASSERT_EQ(found, kNone) << "flow " << n << " was freed";
    } else {
      ASSERT_EQ(found, it->second) << "flow " << n;
    }
  }
}

// Nearly full (three quarters of the index's slots in use, long probe runs), flows freed in
// random order: a deletion that left a hole in a run would hide the flows after it.
TEST(FlowIndex, ChurnKeepsEveryLiveFlowFindable) {
  FlowTableConfig cfg;
  cfg.max_flows = 3000;
  cfg.hash_seed = 0x1234;
  FlowTable table(cfg, {});
  std::mt19937 rng(7);
  constexpr uint32_t kUniverse = 6000;
  std::map<uint32_t, uint32_t> live;  // flow number -> table index
  for (int round = 0; round < 40000; ++round) {
    const uint32_t n = rng() % kUniverse;
    const auto it = live.find(n);
    if (it != live.end()) {
      table.free_flow(it->second);
      live.erase(it);
    } else if (live.size() < cfg.max_flows) {
      const uint32_t i = table.allocate_flow(tuple_of(n), 0);
      ASSERT_NE(i, kNone);
      table.enter(i, State::Established, 0);
      live[n] = i;
    }
    table.settle();
    if (round % 4000 == 0) expect_consistent(table, live, kUniverse);
  }
  expect_consistent(table, live, kUniverse);
  EXPECT_EQ(table.counters().active, live.size());
  // The prefetch hint reads the index only: any keys, live or not.
  std::vector<FlowTuple> keys;
  for (uint32_t n = 0; n < 200; ++n) keys.push_back(tuple_of(n));
  table.prefetch(keys);
  expect_consistent(table, live, kUniverse);
}

// The tuple hash spreads the keys a gateway meets, each differing from the next in one field
// only (ports of one client, clients of one /16, IPv6 clients of one /64, backends), whatever the
// seed: filled to max_flows (the index four fifths full), a flow sits on average about two slots
// from its home and at most a few hundred, as with a uniform random hash (simulated: mean 1.95-2.01,
// longest 186-225). A hash that ignored a field, or mixed its bits poorly, piles such keys into
// a few long runs.
TEST(FlowIndex, HashSpreadsStructuredKeys) {
  constexpr uint32_t kFlows = 1 << 16;
  const Address v6 = *Address::parse("2001:db8::");
  for (uint64_t seed : {uint64_t{0}, uint64_t{0x1234}, uint64_t{0x9e3779b97f4a7c15}}) {
    for (int kind = 0; kind < 4; ++kind) {
      FlowTableConfig cfg;
      cfg.max_flows = kFlows;
      cfg.hash_seed = seed;
      FlowTable table(cfg, {});
      for (uint32_t n = 0; n < kFlows; ++n) {
        FlowTuple t;
        t.dst = Address::from_v4(0x0a0a0302u);
        t.dport = 80;
        switch (kind) {
          case 0:  // one client's ports
            t.src = Address::from_v4(0xc6120001u);
            t.sport = static_cast<uint16_t>(n);
            break;
          case 1:  // a /16 of clients, one port each
            t.src = Address::from_v4(0xc6120000u + n);
            t.sport = 40000;
            break;
          case 2: {  // IPv6 clients of one /64
            std::array<uint8_t, 16> b{};
            std::copy(v6.bytes.begin(), v6.bytes.end(), b.begin());
            b[14] = static_cast<uint8_t>(n >> 8);
            b[15] = static_cast<uint8_t>(n);
            t.src = Address::from_v6(b);
            t.dst = *Address::parse("2001:db8:1::80");
            t.sport = 40000;
            break;
          }
          default:  // one client to many backend ports
            t.src = Address::from_v4(0xc6120001u);
            t.sport = 40000;
            t.dport = static_cast<uint16_t>(n);
            break;
        }
        ASSERT_NE(table.allocate_flow(t, 0), kNone) << "kind " << kind << " flow " << n;
        table.settle();
      }
      const FlowTable::ProbeStats st = table.probe_stats();
      EXPECT_LT(st.mean, 2.5) << "kind " << kind << " seed " << seed << " longest " << st.longest;
      EXPECT_LT(st.longest, 400u) << "kind " << kind << " seed " << seed << " mean " << st.mean;
    }
  }
}

// Filled to max_flows exactly: the index never fills (a probe for a missing key must end).
TEST(FlowIndex, FullTableStillAnswersMisses) {
  for (uint32_t max : {1u, 2u, 3u, 6u, 1024u, 1536u}) {
    FlowTableConfig cfg;
    cfg.max_flows = max;
    FlowTable table(cfg, {});
    for (uint32_t n = 0; n < max; ++n) {
      ASSERT_NE(table.allocate_flow(tuple_of(n), 0), kNone);
      table.settle();
    }
    EXPECT_EQ(table.allocate_flow(tuple_of(max), 0), kNone);
    for (uint32_t n = max; n < max + 100; ++n) EXPECT_EQ(table.find(tuple_of(n)), kNone);
  }
}
}  // namespace
