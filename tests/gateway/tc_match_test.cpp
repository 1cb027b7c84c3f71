// The kernel path's pins and host mode's OUTPUT match: where they go and when they are wanted.
#include <gtest/gtest.h>

#include <string>

#include "config.hpp"
#include "tc_match.hpp"
#include "tc_program.hpp"

using syngate::gw::parse_config;

namespace {
syngate::gw::GatewayConfig config(const std::string& gateway) {
  return parse_config("[gateway]\nsecret_file = \"/s\"\n" + gateway + "\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n",
                      "t");
}
}  // namespace

// bpffs refuses a name with a dot (EPERM): an instance "edge.v2" must still get a directory.
TEST(TcPins, DirectoryNamesHoldNoDot) {
  const std::string dir = syngate::tc::pin_dir("edge.v2", "/run/b");
  EXPECT_EQ(dir.rfind("/run/b/syngate/edge:v2", 0), 0u) << dir;
  EXPECT_EQ(dir.find('.'), std::string::npos) << dir;
  EXPECT_EQ(syngate::tc::pin_dir("syngate").rfind("/sys/fs/bpf/syngate/syngate", 0), 0u);
}

TEST(TcPins, OutputMatchOnlyInHostAndBothModesWithTheKernelPath) {
  EXPECT_TRUE(syngate::tc::output_match_wanted(config("mode = \"host\"\nkernel_path = \"auto\"")));
  EXPECT_TRUE(syngate::tc::output_match_wanted(config("mode = \"both\"\nkernel_path = \"auto\"")));
  EXPECT_FALSE(syngate::tc::output_match_wanted(config("mode = \"router\"\nkernel_path = \"auto\"")));
  EXPECT_FALSE(syngate::tc::output_match_wanted(config("mode = \"host\"\nkernel_path = \"off\"")));
}

// `rules up` creates the map the daemon then reuses: both size it from the same configuration.
TEST(TcPins, MapSizeFollowsTheFlowWorkers) {
  const auto c = config("flow_queues = 3\n");
  EXPECT_EQ(syngate::tc::kernel_path_max_flows(c), uint64_t{c.engine.max_flows} * 3);
  EXPECT_EQ(syngate::tc::flow_map_entries(10), 2048u);
  EXPECT_EQ(syngate::tc::flow_map_entries(5000), 10000u);
}

// The entries a flow finds on its pair before its SYN-ACK replaced them: a SYN retry must not take
// the client's previous connection's (closed, older) for this flow's hand-over.
TEST(TcEntries, ThePreviousConnectionsAreClosedAndOlder) {
  using syngate::tc::previous_connections_entries;
  sg_tc_flow up{}, down{};
  up.generation = down.generation = 40;
  EXPECT_FALSE(previous_connections_entries(up, down, 41)) << "open: the flow's own (both paths opened it)";
  for (const uint8_t closing : {SG_TC_SEEN_FIN, SG_TC_SEEN_RST, SG_TC_CLOSED_BY_ENGINE}) {
    up.closing = closing;
    EXPECT_TRUE(previous_connections_entries(up, down, 41));
    EXPECT_FALSE(previous_connections_entries(up, down, 40)) << "its own, carried whole";
    EXPECT_FALSE(previous_connections_entries(up, down, 0)) << "a flow from before generations";
    up.closing = 0;
    down.closing = closing;
    EXPECT_EQ(previous_connections_entries(up, down, 41), closing != SG_TC_SEEN_FIN)
        << "the server's side closed (its FIN alone leaves the client's segments in the kernel)";
    down.closing = 0;
  }
  up.closing = SG_TC_SEEN_FIN;
  up.generation = down.generation = 0xfffffff0u;
  EXPECT_TRUE(previous_connections_entries(up, down, 5)) << "older across the wrap";
}

// A flow the engine establishes with the client's FIN already sent on: its entries start as the
// program leaves them after translating that FIN.
TEST(TcEntries, AFinSentWithTheEarlyDataIsWrittenClosedForTheClient) {
  const syngate::FlowTuple t{*syngate::Address::parse("198.18.0.7"), *syngate::Address::parse("10.10.3.2"), 2000, 80};
  syngate::FlowTranslation x;
  x.delta = 7;
  EXPECT_EQ(syngate::tc::flow_entries(t, x, 3, false).to_server.closing, 0u);
  x.client_fin = true;
  x.client_fin_seq = 1234;
  const syngate::tc::FlowEntries e = syngate::tc::flow_entries(t, x, 3, false);
  EXPECT_EQ(e.to_server.closing, SG_TC_SEEN_FIN);
  EXPECT_EQ(e.to_server.fin_seq, 1234u);
  EXPECT_EQ(e.to_client.closing, 0u);
  EXPECT_EQ(e.to_server.generation, 3u);
}

// Entries a run with an egress filter writes carry SG_TC_OPT_EGRESS (host mode's OUTPUT match
// takes no other); a restart keeps entries whatever that bit says (their flow's replies are queued
// where it is missing, and a run that finds it attaches egress).
TEST(TcEntries, TheEgressBitIsWrittenOnlyWithEgressAndIgnoredWhenKept) {
  const syngate::FlowTuple t{*syngate::Address::parse("198.18.0.7"), *syngate::Address::parse("10.10.3.2"), 2000, 80};
  syngate::FlowTranslation x;
  x.delta = 7;
  x.timestamps = true;
  const syngate::tc::FlowEntries with = syngate::tc::flow_entries(t, x, 3, true);
  const syngate::tc::FlowEntries without = syngate::tc::flow_entries(t, x, 3, false);
  EXPECT_EQ(with.to_server.options, SG_TC_OPT_TIMESTAMPS | SG_TC_OPT_EGRESS);
  EXPECT_EQ(with.to_client.options, SG_TC_OPT_TIMESTAMPS | SG_TC_OPT_EGRESS);
  EXPECT_EQ(without.to_server.options, SG_TC_OPT_TIMESTAMPS);
  EXPECT_EQ(without.to_client.options, SG_TC_OPT_TIMESTAMPS);
  EXPECT_TRUE(syngate::tc::same_translation(with, without.to_server, without.to_client));
  EXPECT_TRUE(syngate::tc::same_translation(without, with.to_server, with.to_client));
  sg_tc_flow other = without.to_client;
  other.options = 0;
  EXPECT_FALSE(syngate::tc::same_translation(with, without.to_server, other)) << "timestamps still count";
}

// A worker's turns, as Worker::TurnHooks drives the watch: a flow is watched from its
// publication until a later receive that emptied the queue has been handled.
constexpr uint64_t kPastMin = syngate::tc::OvertakeWatch::kMinWatchNs;

TEST(OvertakeWatch, AFlowIsWatchedUntilAReceiveAfterItsPublicationEmptiedTheQueue) {
  syngate::tc::OvertakeWatch w;
  uint64_t now = 1;
  const int owner = 0;
  syngate::FlowTuple a{}, b{};
  a.sport = 1;
  b.sport = 2;
  // Turn 1: a full batch (the queue still holds more), a hand-over mid-batch.
  w.received(false);
  w.published(&owner, a, now);
  w.handled(now += kPastMin);
  EXPECT_TRUE(w.watching(&owner, a));
  // Turn 2: the receive took everything, but b is published in this very turn, after it began:
  // segments queued between that receive and b's publication are still to come.
  w.received(true);
  w.published(&owner, b, now);
  EXPECT_TRUE(w.watching(&owner, a)) << "a's stragglers are in this batch, not handled yet";
  w.handled(now += kPastMin);
  EXPECT_FALSE(w.watching(&owner, a)) << "everything queued before a went live has been handled";
  EXPECT_TRUE(w.watching(&owner, b));
  // Turn 3: a full batch again: b stays watched; turn 4 empties the queue.
  w.received(false);
  w.handled(now += kPastMin);
  EXPECT_TRUE(w.watching(&owner, b));
  w.received(true);
  w.handled(now += kPastMin);
  EXPECT_FALSE(w.watching(&owner, b));
  EXPECT_EQ(w.size(), 0u);
  // Another owner's flow with the same tuple is not this one's; a freed flow is forgotten.
  const int other = 0;
  w.published(&owner, a, now);
  EXPECT_FALSE(w.watching(&other, a));
  w.forget(&owner, a);
  EXPECT_FALSE(w.watching(&owner, a));
}

TEST(OvertakeWatch, AQueueThatNeverEmptiesKeepsAtMostTheNewestFlows) {
  syngate::tc::OvertakeWatch w;
  uint64_t now = 1;
  const int owner = 0;
  for (uint16_t i = 0; i < syngate::tc::OvertakeWatch::kMax + 10; ++i) {
    syngate::FlowTuple t{};
    t.sport = i;
    w.received(false);
    w.published(&owner, t, now);
    w.handled(now += kPastMin);
  }
  EXPECT_EQ(w.size(), syngate::tc::OvertakeWatch::kMax);
  syngate::FlowTuple oldest{}, newest{};
  newest.sport = syngate::tc::OvertakeWatch::kMax + 9;
  EXPECT_FALSE(w.watching(&owner, oldest));
  EXPECT_TRUE(w.watching(&owner, newest));
}

// A segment that crossed tc before the entry went live can still be on its way to the queue when
// a receive empties it: a flow stays watched for kMinWatchNs whatever the turns say.
TEST(OvertakeWatch, AFlowIsWatchedForAMinimumTimeEvenWhenTheQueueEmptiedAtOnce) {
  syngate::tc::OvertakeWatch w;
  const int owner = 0;
  syngate::FlowTuple a{};
  a.sport = 1;
  uint64_t now = 5'000'000'000;
  w.published(&owner, a, now);
  w.received(true);
  w.handled(now + kPastMin - 1);
  EXPECT_TRUE(w.watching(&owner, a)) << "emptied 1 ns before its minimum time";
  w.received(false);
  w.handled(now + 2 * kPastMin);
  EXPECT_TRUE(w.watching(&owner, a)) << "past its time, but no receive has emptied the queue since";
  w.received(true);
  w.handled(now + 2 * kPastMin);
  EXPECT_FALSE(w.watching(&owner, a));
  EXPECT_EQ(w.size(), 0u);
}

// Flows that differ only in a field the bucket count does not look at share a count: forgetting
// one leaves the other watched, and every count returns to zero with the flows.
TEST(OvertakeWatch, FlowsSharingACountAreToldApart) {
  syngate::tc::OvertakeWatch w;
  const int owner = 0;
  syngate::FlowTuple a{}, b{};
  a.sport = b.sport = 7;
  a.dst.bytes[15] = 1;
  b.dst.bytes[15] = 2;
  w.published(&owner, a, 1);
  w.published(&owner, b, 1);
  w.forget(&owner, a);
  EXPECT_FALSE(w.watching(&owner, a));
  EXPECT_TRUE(w.watching(&owner, b));
  w.received(true);
  w.handled(1 + kPastMin);
  EXPECT_FALSE(w.watching(&owner, b));
  w.published(&owner, a, 2);
  EXPECT_TRUE(w.watching(&owner, a)) << "counted again";
}

