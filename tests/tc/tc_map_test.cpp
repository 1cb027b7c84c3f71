// The flow map's housekeeping through the daemon's own tc::Program (needs root for the map).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <bpf/bpf.h>

#include "bpf_util.hpp"
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

// stop()'s deletes go many a system call; a key deleted meanwhile (a worker's release racing the
// walk) must not stop the rest, wherever it falls in a batch.
TEST(TcMap, DeleteKeysSkipsKeysAlreadyGone) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  const uint32_t n = 10000;
  const int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "sg_test_del", sizeof(sg_tc_flow_key), sizeof(uint32_t), n, nullptr);
  ASSERT_GE(fd, 0);
  std::vector<sg_tc_flow_key> keys;
  for (uint32_t i = 0; i < n; ++i) {
    keys.push_back(key_of(i));
    ASSERT_EQ(bpf_map_update_elem(fd, &keys.back(), &i, BPF_ANY), 0) << i;
  }
  // Gone already: the first key, the last, one at a batch's edge, and a run in the middle.
  std::set<uint32_t> gone = {0, n - 1, 4095, 4096};
  for (uint32_t i = 5000; i < 5100; ++i) gone.insert(i);
  for (uint32_t i : gone) ASSERT_EQ(bpf_map_delete_elem(fd, &keys[i]), 0) << i;
  EXPECT_EQ(bpf::delete_keys(fd, keys), n - gone.size());
  sg_tc_flow_key first{};
  EXPECT_NE(bpf_map_get_next_key(fd, nullptr, &first), 0) << "an entry is left";
  EXPECT_EQ(bpf::delete_keys(fd, keys), 0u) << "nothing left to delete";
  close(fd);
}

// Every connection's end releases its two entries: whichever of them is there goes, and a flow
// never handed over, or half written, costs nothing else.
TEST(TcMap, ReleaseTakesWhicheverEntriesAreThere) {
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
  EXPECT_EQ(program.release(both, 0, SG_TC_RELEASE_FREE), int(SG_TC_RELEASED_TO_SERVER | SG_TC_RELEASED_TO_CLIENT));
  EXPECT_EQ(program.release(server_only, 0, SG_TC_RELEASE_FREE), int(SG_TC_RELEASED_TO_SERVER));
  EXPECT_EQ(program.release(client_only, 0, SG_TC_RELEASE_FREE), int(SG_TC_RELEASED_TO_CLIENT));
  EXPECT_EQ(program.release(none, 0, SG_TC_RELEASE_FREE), 0);
  for (const FlowTuple& t : {both, server_only, client_only, none}) {
    EXPECT_EQ(present(t), 0u) << "port " << t.sport << " keeps an entry";
  }
  EXPECT_EQ(present(bystander), 2u) << "another flow's entries are left alone";
  EXPECT_EQ(program.flow_entries_count(), 2u);
  EXPECT_TRUE(program.handshake_keys().empty()) << "the release's hold outlived it";
}

// A client that reuses its port can have a new connection opened on the pair in tc (its record
// written, then its entries at its hand-over) before the engine frees the old flow: what is newer
// than the flow released stays, whether the release comes before the new flow's hand-over (its
// record there) or after it (its entries there), and what is the flow's own or older goes.
TEST(TcMap, ReleaseLeavesWhatANewerConnectionWrote) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(1024, "");
  const FlowTuple t{*Address::parse("198.18.0.7"), *Address::parse("10.10.3.2"), 2001, 80};
  const sg_tc_flow_key up_key = tc::flow_key(t), down_key = tc::flow_key(t.reversed());
  const auto write_entries = [&](uint32_t generation, uint8_t closing) {
    sg_tc_flow v{};
    v.generation = generation;
    v.closing = closing;
    v.direction = SG_TC_TO_SERVER;
    ASSERT_TRUE(program.write_key(up_key, v));
    v.direction = SG_TC_TO_CLIENT;
    ASSERT_TRUE(program.write_key(down_key, v));
  };
  const auto entry = [&](const sg_tc_flow_key& k) -> std::optional<sg_tc_flow> {
    for (const auto& [key, v] : program.entries()) {
      if (std::memcmp(&key, &k, sizeof k) == 0) return v;
    }
    return std::nullopt;
  };
  const auto record_there = [&] {
    const std::vector<sg_tc_flow_key> keys = program.handshake_keys();
    return std::any_of(keys.begin(), keys.end(), [&](const sg_tc_flow_key& k) { return std::memcmp(&k, &down_key, sizeof k) == 0; });
  };
  const auto write_record = [&](uint32_t generation) {
    sg_tc_handshake r{};
    r.generation = generation;
    ASSERT_TRUE(program.write_handshake(down_key, r));
  };
  const int both = SG_TC_RELEASED_TO_SERVER | SG_TC_RELEASED_TO_CLIENT;

  // The old flow (7) freed after the new one's hand-over (9): its entries stay.
  write_entries(9, 0);
  EXPECT_EQ(program.release(t, 7, SG_TC_RELEASE_FREE), int(SG_TC_RELEASE_LEFT_NEWER));
  EXPECT_EQ(program.flow_entries_count(), 2u);
  EXPECT_FALSE(record_there()) << "the hold outlived the release";
  // ... before it: the new flow's record (9) stands over the old flow's closed entries (7), which
  // that hand-over will overwrite. Nothing is touched.
  write_entries(7, SG_TC_SEEN_FIN);
  write_record(9);
  EXPECT_EQ(program.release(t, 7, SG_TC_RELEASE_FREE), int(SG_TC_RELEASE_LEFT_NEWER));
  EXPECT_EQ(program.flow_entries_count(), 2u);
  EXPECT_TRUE(record_there()) << "the new flow's record was taken";
  // ... and when the new flow (9) ends before its backend answered, it takes the older entries.
  EXPECT_EQ(program.release(t, 9, SG_TC_RELEASE_FREE), int(both | SG_TC_RELEASED_RECORD));
  EXPECT_EQ(program.flow_entries_count(), 0u);
  EXPECT_FALSE(record_there());
  // Its own entries and record, or an older record (a flow that ended before its SYN-ACK), go.
  write_entries(7, 0);
  write_record(3);
  EXPECT_EQ(program.release(t, 7, SG_TC_RELEASE_FREE), int(both | SG_TC_RELEASED_RECORD));
  EXPECT_EQ(program.flow_entries_count(), 0u);
  EXPECT_FALSE(record_there());
  // Numbers wrap: 0xfffffff0 came before 5.
  write_entries(0xfffffff0u, 0);
  EXPECT_EQ(program.release(t, 5, SG_TC_RELEASE_FREE), both);
  write_entries(5, 0);
  EXPECT_EQ(program.release(t, 0xfffffff0u, SG_TC_RELEASE_FREE), int(SG_TC_RELEASE_LEFT_NEWER));
  EXPECT_EQ(program.release(t, 5, SG_TC_RELEASE_FREE), both);

  // A refused flow (9) takes only its own: the older flow it found on the pair keeps its entries.
  write_entries(7, 0);
  EXPECT_EQ(program.release(t, 9, SG_TC_RELEASE_REFUSED), 0);
  EXPECT_EQ(program.flow_entries_count(), 2u);
  write_entries(9, 0);
  EXPECT_EQ(program.release(t, 9, SG_TC_RELEASE_REFUSED), both);
  EXPECT_EQ(program.flow_entries_count(), 0u);

  // A punt marks the flow's own entries in place, and leaves a newer flow's translating.
  write_entries(7, 0);
  EXPECT_EQ(program.release(t, 7, SG_TC_RELEASE_PUNT), both);
  EXPECT_EQ(entry(up_key)->closing, SG_TC_CLOSED_BY_ENGINE);
  EXPECT_EQ(entry(down_key)->closing, SG_TC_CLOSED_BY_ENGINE);
  write_entries(9, SG_TC_SEEN_FIN);
  sg_tc_flow open_down{};
  open_down.generation = 9;
  ASSERT_TRUE(program.write_key(down_key, open_down));
  EXPECT_EQ(program.release(t, 7, SG_TC_RELEASE_PUNT), int(SG_TC_RELEASE_LEFT_NEWER));
  EXPECT_EQ(entry(up_key)->closing, SG_TC_SEEN_FIN) << "a newer flow's record changed";
  EXPECT_EQ(entry(down_key)->closing, 0) << "a newer flow punted";
  EXPECT_EQ(program.release(t, 9, SG_TC_RELEASE_PUNT), both);
  EXPECT_EQ(entry(up_key)->closing, SG_TC_SEEN_FIN) << "a closing entry keeps what it recorded";
  EXPECT_EQ(entry(down_key)->closing, SG_TC_CLOSED_BY_ENGINE);
  EXPECT_FALSE(record_there());
}

// A flow released before its SYN-ACK came (refused, or timed out waiting for its backend) takes
// the early segments its record had kept (no SYN-ACK will send them), not a newer connection's.
TEST(TcMap, ReleaseTakesTheSegmentsARecordKept) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(1024, "");
  const FlowTuple t{*Address::parse("198.18.0.9"), *Address::parse("10.10.3.2"), 2002, 80};
  const sg_tc_flow_key up_key = tc::flow_key(t), down_key = tc::flow_key(t.reversed());
  const int early = program.early_map_fd();
  ASSERT_GE(early, 0);
  std::vector<uint8_t> value(sizeof(sg_tc_early_segment));
  const auto keep = [&](uint32_t slot, uint32_t generation) {
    sg_tc_early_segment* seg = reinterpret_cast<sg_tc_early_segment*>(value.data());
    seg->generation = generation;
    seg->len = 80;
    const sg_tc_early_key k{up_key, slot};
    ASSERT_EQ(bpf_map_update_elem(early, &k, value.data(), BPF_ANY), 0);
  };
  const auto slots = [&] {
    int n = 0;
    for (uint32_t slot = 0; slot < SG_TC_EARLY_SLOTS; ++slot) {
      const sg_tc_early_key k{up_key, slot};
      if (bpf_map_lookup_elem(early, &k, value.data()) == 0) ++n;
    }
    return n;
  };
  const auto write_record = [&](uint32_t generation, uint32_t kept) {
    sg_tc_handshake r{};
    r.generation = generation;
    r.client_data = kept * SG_TC_CLIENT_DATA_KEPT;
    ASSERT_TRUE(program.write_handshake(down_key, r));
  };
  // The record counted two kept segments: both go with it, and one a newer connection kept stays.
  keep(0, 7);
  keep(2, 7);
  keep(5, 9);
  write_record(7, 2);
  EXPECT_EQ(program.release(t, 7, SG_TC_RELEASE_FREE), int(SG_TC_RELEASED_RECORD));
  EXPECT_EQ(slots(), 1) << "the released record's slots stayed, or a newer one's went";
  // A record that kept nothing: no slot is looked for (the newer one stays all the same).
  write_record(11, 0);
  EXPECT_EQ(program.release(t, 11, SG_TC_RELEASE_FREE), int(SG_TC_RELEASED_RECORD));
  EXPECT_EQ(slots(), 1);
}

// A turn's frees go together (sg_tc_release_many): each release as sg_tc_release makes it, in
// order, across batches. Two maps set up alike, every mix of entries and records a pair can hold
// and several releases on one pair in a row: the results and what is left are the same.
TEST(TcMap, ReleasesInABatchAreEachAsOnItsOwn) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program one_by_one(1024, ""), batched(1024, "");
  const uint32_t entry_generations[] = {0, 5, 7, 9};  // 0: no entries
  const uint32_t record_generations[] = {0, 3, 7, 9};  // 0: no record
  std::vector<sg_tc_release> releases;
  std::vector<FlowTuple> released;  // each release's flow, for release()
  uint16_t port = 3000;
  for (uint32_t entries : entry_generations) {
    for (uint32_t record : record_generations) {
      for (uint32_t op = SG_TC_RELEASE_FREE; op <= SG_TC_RELEASE_REFUSED; ++op) {
        const FlowTuple t{*Address::parse("198.18.0.9"), *Address::parse("10.10.3.2"), port++, 80};
        for (tc::Program* p : {&one_by_one, &batched}) {
          if (entries != 0) {
            sg_tc_flow v{};
            v.generation = entries;
            ASSERT_TRUE(p->write_key(tc::flow_key(t), v));
            ASSERT_TRUE(p->write_key(tc::flow_key(t.reversed()), v));
          }
          if (record != 0) {
            sg_tc_handshake r{};
            r.generation = record;
            ASSERT_TRUE(p->write_handshake(tc::flow_key(t.reversed()), r));
          }
        }
        // The flow of generation 7 released, then (every third pair) the next connection's too.
        sg_tc_release r{};
        r.key = tc::flow_key(t);
        r.generation = 7;
        r.op = op;
        releases.push_back(r);
        released.push_back(t);
        if (port % 3 == 0) {
          r.generation = 9;
          r.op = SG_TC_RELEASE_FREE;
          releases.push_back(r);
          released.push_back(t);
        }
      }
    }
  }
  ASSERT_GT(releases.size(), size_t{2 * SG_TC_RELEASES_MAX}) << "more than one batch";
  std::vector<int> expected;
  for (size_t i = 0; i < releases.size(); ++i) {
    const sg_tc_release& r = releases[i];
    expected.push_back(one_by_one.release(released[i], r.generation, static_cast<sg_tc_release_op>(r.op)));
  }
  std::vector<int> results(releases.size(), -2);
  EXPECT_EQ(batched.release_many(releases, results), 0u);
  EXPECT_EQ(results, expected);
  const auto bytes = [](const auto& x) { return std::string(reinterpret_cast<const char*>(&x), sizeof x); };
  std::set<std::string> left_one, left_batched;
  for (const auto& [k, v] : one_by_one.entries()) left_one.insert(bytes(k) + bytes(v));
  for (const auto& [k, v] : batched.entries()) left_batched.insert(bytes(k) + bytes(v));
  EXPECT_EQ(left_one, left_batched);
  EXPECT_FALSE(left_one.empty()) << "no release left anything: the mix tests too little";
  std::set<std::string> records_one, records_batched;
  for (const sg_tc_flow_key& k : one_by_one.handshake_keys()) records_one.insert(bytes(k));
  for (const sg_tc_flow_key& k : batched.handshake_keys()) records_batched.insert(bytes(k));
  EXPECT_EQ(records_one, records_batched);
}

// The engine reads a flow's two entries in one system call (sg_tc_read): byte for byte as a
// lookup gives them, and which of them are there; read_flow says true only with both.
TEST(TcMap, ReadFlowGivesBothEntriesInOneCall) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(1024, "");
  // Every byte of each entry its own, so a field copied from the wrong place or left out shows.
  const auto pattern = [](uint16_t flow, uint8_t direction) {
    sg_tc_flow v{};
    auto* b = reinterpret_cast<uint8_t*>(&v);
    for (size_t k = 0; k < sizeof v; ++k) b[k] = static_cast<uint8_t>(flow * 31 + direction * 17 + k);
    return v;
  };
  for (uint16_t i = 0; i < 8; ++i) {
    const char* client = i % 2 ? "fd00:10:1::9" : "198.18.0.7";
    const char* server = i % 2 ? "fd00:10:3::2" : "10.10.3.2";
    const FlowTuple flow{*Address::parse(client), *Address::parse(server), static_cast<uint16_t>(2000 + i), 80};
    const bool up = i % 4 != 2, down = i % 4 != 3;  // flows 2 and 6 lack the client's entry, 3 and 7 the server's
    if (up) {
      ASSERT_TRUE(program.write_key(tc::flow_key(flow), pattern(i, 0)));
    }
    if (down) {
      ASSERT_TRUE(program.write_key(tc::flow_key(flow.reversed()), pattern(i, 1)));
    }
    sg_tc_flow to_server{}, to_client{};
    uint32_t found = 0xdead;
    ASSERT_TRUE(program.read_flow_in_one_call(flow, to_server, to_client, found)) << "the program did not run";
    EXPECT_EQ(found, (up ? SG_TC_READ_TO_SERVER : 0u) | (down ? SG_TC_READ_TO_CLIENT : 0u)) << "flow " << i;
    const sg_tc_flow want_up = pattern(i, 0), want_down = pattern(i, 1);
    if (up) {
      EXPECT_EQ(std::memcmp(&to_server, &want_up, sizeof want_up), 0) << "flow " << i << ", the client's entry";
    }
    if (down) {
      EXPECT_EQ(std::memcmp(&to_client, &want_down, sizeof want_down), 0) << "flow " << i << ", the server's entry";
    }
    EXPECT_EQ(program.read_flow(flow, to_server, to_client), up && down) << "flow " << i;
  }
}

// A flow the engine establishes with the client's FIN already sent on (held behind its early data):
// its entries start as the program leaves them after translating that FIN, so the client's later
// segments go to the engine (tc_rewritable.h) and the server's ack of the FIN is told.
TEST(TcMap, AFlowHandedOverAfterTheClientsFinStartsClosedForTheClient) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(1024, "");
  for (const bool fin : {false, true}) {
    const FlowTuple flow{*Address::parse("198.18.0.7"), *Address::parse("10.10.3.2"), fin ? uint16_t{2001} : uint16_t{2000}, 80};
    FlowTranslation x;
    x.delta = 0x12345678;
    x.client_fin = fin;
    x.client_fin_seq = 0xfffffff0;
    ASSERT_TRUE(program.write_flow(flow, x, 7));
    sg_tc_flow to_server{}, to_client{};
    ASSERT_TRUE(program.read_flow(flow, to_server, to_client));
    EXPECT_EQ(to_server.closing, fin ? SG_TC_SEEN_FIN : 0u);
    EXPECT_EQ(to_server.fin_seq, fin ? 0xfffffff0u : 0u);
    EXPECT_EQ(to_client.closing, 0u) << "the server's segments stay in the kernel";
    EXPECT_EQ(to_server.delta, x.delta);
  }
}

// The daemon's numbers and the programs' come from one counter, and none is 0 ("unknown").
TEST(TcMap, GenerationsSkipZero) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for the BPF map";
  tc::Program program(1024, "");
  program.set_generation(0xfffffffeu);
  EXPECT_EQ(program.next_generation(), 0xffffffffu);
  EXPECT_EQ(program.next_generation(), 1u);
  EXPECT_EQ(program.next_generation(), 2u);
  sg_tc_handshake r{};
  r.generation = 40;
  ASSERT_TRUE(program.write_handshake(tc::flow_key(FlowTuple{}), r));
  sg_tc_flow v{};
  v.generation = 30;
  ASSERT_TRUE(program.write_key(tc::flow_key(FlowTuple{}), v));
  EXPECT_EQ(program.top_generation(), 40u) << "a restart counts from records too";
}

}  // namespace
}  // namespace syngate
