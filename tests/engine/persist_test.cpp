// Flow state that outlives the engine: a table in a caller's region is taken over by the next
// engine on the same region (a restarted process), refused across a reboot, imported across a
// layout or shard change, and an entry that was being changed when its process was killed is
// dropped, never used. The crash test forks a child that churns flows in shared memory and
// SIGKILLs it at random instants.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <cstddef>
#include <random>

#include "syngate_test/engine_harness.hpp"

namespace syngate::test {
namespace {

constexpr uint64_t kBoot = 0xb007b007u;

class PersistTest : public EngineTest {
 protected:
  std::vector<uint8_t> region;
  void start_on(std::vector<uint8_t>& r, uint64_t boot = kBoot) {
    r.resize(Engine::state_bytes(cfg));
    jar.emplace(fixed_secrets());
    engine.emplace(cfg, *jar, EngineState{r, boot});
  }
  // A server->client data segment; returns it as translated for the client.
  Bytes server_data(const Conn& c, uint32_t seq_offset) {
    SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1 + seq_offset, .ack = c.client_isn + 1,
                  .flags = tcp_flag::ACK, .window = 500};
    s.options.has_timestamps = true;
    s.options.tsval = c.backend_ts + 10;
    s.options.tsecr = 1001;
    Bytes b = make(s);
    EXPECT_TRUE(feed(b).modified);
    return b;
  }
};

TEST_F(PersistTest, ARestartedEngineKeepsTranslatingEveryFlow) {
  start_on(region);
  EXPECT_FALSE(engine->restore_report().attached) << "a zeroed region holds no table";
  std::vector<Conn> conns;
  std::vector<Bytes> before;
  for (uint16_t port = 1000; port < 1010; ++port) {
    Conn c = Conn::v4(port);
    establish(c);
    conns.push_back(c);
    before.push_back(server_data(c, 100));
  }
  engine.reset();  // the process dies; the region (a mapped file) stays
  start_on(region);
  const RestoreReport& r = engine->restore_report();
  EXPECT_TRUE(r.attached) << r.reason;
  EXPECT_EQ(r.restored, 10u);
  EXPECT_EQ(counters().flows_active, 10u);
  EXPECT_EQ(counters().flows_restored, 10u);
  for (size_t i = 0; i < conns.size(); ++i) {
    EXPECT_EQ(server_data(conns[i], 100), before[i]) << "same translation after the restart";
  }
  size_t listed = 0;
  engine->for_each_flow([&](const FlowTuple&) { ++listed; });
  EXPECT_EQ(listed, 10u);
  // Timers were rebuilt: idle flows still expire.
  now += 2 * kSecond * cfg.established_idle_s + kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

// What `syngate flows` reads: the live entries of a table file as they stand, with the engine
// still running on it, each in its state; damaged entries are counted, not listed; a region that
// holds no table of this layout is refused with the reason.
TEST_F(PersistTest, ASnapshotListsTheLiveEntriesInTheirStates) {
  start_on(region);
  Conn a = Conn::v4(1000), b = Conn::v4(1001), c = Conn::v6(1002);
  establish(a);
  establish(c);
  (void)open_to_backend_syn(b);
  SegmentSpec fin{.tuple = a.c2s, .seq = a.client_isn + 1, .ack = a.cookie_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::FIN, .window = a.client_window, .options = a.client_ts_opts(1003)};
  feed(make(fin));
  using flows::FlowTable;
  using flows::State;
  const FlowTable::Snapshot snap = FlowTable::snapshot(region);
  EXPECT_EQ(snap.refused, "");
  EXPECT_EQ(snap.max_flows, cfg.max_flows);
  EXPECT_EQ(snap.boot_id, kBoot);
  EXPECT_EQ(snap.unreadable, 0u);
  ASSERT_EQ(snap.flows.size(), 3u);
  auto find = [&](const Conn& x) -> const flows::Flow* {
    for (const flows::Flow& f : snap.flows) {
      if (f.key == x.c2s) return &f;
    }
    return nullptr;
  };
  ASSERT_TRUE(find(a) && find(b) && find(c));
  EXPECT_EQ(find(a)->state, State::Closing);
  EXPECT_TRUE(find(a)->bits & flows::flow_bit::kClientFin);
  EXPECT_EQ(find(b)->state, State::SynSent);
  EXPECT_EQ(find(c)->state, State::Established);

  // One entry damaged (a state no table holds): counted, the others listed.
  std::vector<uint8_t> damaged = region;
  const size_t state_at = offsetof(flows::Flow, state);
  size_t entry = 0;
  while (damaged[128 + entry * sizeof(flows::Flow) + state_at] == 0) ++entry;
  damaged[128 + entry * sizeof(flows::Flow) + state_at] = 9;
  const FlowTable::Snapshot hurt = FlowTable::snapshot(damaged);
  EXPECT_EQ(hurt.flows.size(), 2u);
  EXPECT_EQ(hurt.unreadable, 1u);

  std::vector<uint8_t> other = region;
  other[8] = 99;  // the header's layout version
  EXPECT_EQ(FlowTable::snapshot(other).refused, "another table layout (version 99)");
  EXPECT_TRUE(FlowTable::snapshot(other).flows.empty());
  other.assign(region.size(), 0);
  EXPECT_EQ(FlowTable::snapshot(other).refused, "no saved table");
  other = region;
  other.resize(region.size() - 1);
  EXPECT_EQ(FlowTable::snapshot(other).refused, "the file has the wrong size");
}

TEST_F(PersistTest, AHandshakeSplitAcrossTheRestartCompletes) {
  start_on(region);
  Conn c = Conn::v4();
  const Bytes early = {'G', 'E', 'T', ' ', '/'};
  Seen syn = open_to_backend_syn(c, early);
  engine.reset();
  start_on(region);
  ASSERT_EQ(engine->restore_report().restored, 1u);
  const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
  ASSERT_GE(d.wire.size(), 1u);
  Seen ack(d.wire.at(0));
  EXPECT_EQ(std::vector<uint8_t>(ack.pkt.payload().begin(), ack.pkt.payload().end()), early)
      << "the early data buffered before the restart reaches the backend";
}

TEST_F(PersistTest, ATableFromAnotherBootIsNeverUsed) {
  start_on(region);
  Conn c = Conn::v4();
  establish(c);
  engine.reset();
  start_on(region, kBoot + 1);
  EXPECT_FALSE(engine->restore_report().attached);
  EXPECT_NE(engine->restore_report().reason.find("reboot"), std::string::npos) << engine->restore_report().reason;
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(PersistTest, AnEntryBeingChangedWhenTheProcessDiedIsDropped) {
  start_on(region);
  Conn a = Conn::v4(1000), b = Conn::v4(1001);
  establish(a);
  establish(b);
  // The header's journal (engine.cpp, StateHeader): dirty_count at byte 40, dirty[] from 44.
  // A kill between edit() and settle() leaves exactly this: flow 0 listed as being changed.
  const uint32_t one = 1, index0 = 0;
  std::memcpy(region.data() + 40, &one, 4);
  std::memcpy(region.data() + 44, &index0, 4);
  engine.reset();
  start_on(region);
  EXPECT_EQ(engine->restore_report().restored, 1u);
  EXPECT_EQ(engine->restore_report().dropped_torn, 1u);
  EXPECT_EQ(counters().flows_restore_dropped(), 1u);
  EXPECT_EQ(counters().restore_dropped_torn, 1u);
}

// The tc flow map is written inside the hand-over step (flow_established, before the backend's
// ACK), outside the table file: a kill -9 can fall between that write and the end of the step
// (FlowTable::settle, which empties the table's journal). The kernel path's start reconciliation (tc_program.cpp, finish_start)
// keeps an entry only when a restored flow hands over the same translation again, rewrites it when
// the translation differs or the entry is missing, and deletes every entry nothing claimed. That is
// safe exactly when, at every instant of the step, the restored table either has no flow for the
// tuple (entry unclaimed: deleted) or hands over the very translation the map holds. This test
// kills (snapshots the region) inside flow_established, i.e. just after the map write, and after
// the step, and checks both halves.
struct SnapshotAtHandOver : FlowObserver {
  const std::vector<uint8_t>* region = nullptr;
  std::vector<uint8_t> at_write;  // the region when the map entry has just been written
  std::vector<std::pair<FlowTuple, FlowTranslation>> handed;
  void flow_created(const FlowTuple&) noexcept override {}
  void flow_freed(const FlowTuple&, uint32_t) noexcept override {}
  void flow_established(const FlowTuple& k, const FlowTranslation& t, uint32_t) noexcept override {
    if (region && at_write.empty()) at_write = *region;
    handed.emplace_back(k, t);
  }
};

TEST_F(PersistTest, AKillRightAfterTheTcMapWriteLeavesNoFlowToClaimTheEntry) {
  start_on(region);
  Conn a = Conn::v4(1000);
  establish(a);  // an earlier flow, settled: it must survive either way
  SnapshotAtHandOver first;
  engine->set_flow_observer(&first);
  first.handed.clear();  // set_flow_observer re-announced `a`
  first.region = &region;
  Conn b = Conn::v4(1001);
  establish(b);
  ASSERT_EQ(first.handed.size(), 1u);
  ASSERT_FALSE(first.at_write.empty());
  const FlowTranslation written = first.handed[0].second;
  std::vector<uint8_t> after_step = region;
  engine->set_flow_observer(nullptr);
  engine.reset();

  // Killed just after the map write: b's entry is journalled, so it is dropped as torn and the
  // restart hands over a alone. b's map entry is claimed by nobody and finish_start deletes it.
  start_on(first.at_write);
  SnapshotAtHandOver crashed;
  engine->set_flow_observer(&crashed);
  // What safety needs: b is not handed over, or handed over with the numbers the map holds.
  for (const auto& [k, t] : crashed.handed) {
    if (k == b.c2s) {
      EXPECT_EQ(t, written) << "a restored flow would claim an entry with other numbers";
    }
  }
  // How it holds today: the journal drops b, so its entry goes and `a` is the only hand-over.
  EXPECT_EQ(engine->restore_report().dropped_torn, 1u);
  EXPECT_EQ(engine->restore_report().restored, 1u);
  ASSERT_EQ(crashed.handed.size(), 1u);
  EXPECT_EQ(crashed.handed[0].first, a.c2s);
  engine->set_flow_observer(nullptr);
  engine.reset();

  // Killed after the step: b is restored and handed over with the translation the map holds, so
  // finish_start keeps its entry (same_translation) and the kernel goes on with the same numbers.
  start_on(after_step);
  EXPECT_EQ(engine->restore_report().dropped_torn, 0u);
  SnapshotAtHandOver settled;
  engine->set_flow_observer(&settled);
  ASSERT_EQ(settled.handed.size(), 2u);
  const auto it = std::find_if(settled.handed.begin(), settled.handed.end(),
                               [&](const auto& h) { return h.first == b.c2s; });
  ASSERT_NE(it, settled.handed.end());
  EXPECT_EQ(it->second, written);
  engine->set_flow_observer(nullptr);
}

TEST_F(PersistTest, ImplausibleEntriesAreDropped) {
  start_on(region);
  Conn a = Conn::v4(1000);
  establish(a);
  engine.reset();
  // Scribble over the whole flow entry area: nothing it holds may be used blindly.
  const size_t header = 128;
  for (size_t i = header; i < header + Engine::flow_entry_bytes(); ++i) region[i] = 0x5a;
  start_on(region);
  EXPECT_EQ(engine->restore_report().restored, 0u);
  EXPECT_EQ(engine->restore_report().dropped_invalid, 1u);
}

// Found by fuzz_flow_import: an entry whose tuple mixes an IPv6 address with a v4-mapped one
// passed the checks, and the RST the engine sent the client on its timer did not parse. Both
// halves of the mix, and the entry as saved restores.
TEST_F(PersistTest, AnEntryWhoseTupleMixesFamiliesIsDropped) {
  const size_t key = 128;  // the first entry's key: src, then dst (Flow starts with its tuple)
  const Address v6 = *Address::parse("fd00::9");
  for (const bool mixed_src : {false, true}) {
    region.clear();
    start_on(region);
    Conn a = Conn::v4(1000);
    establish(a);
    engine.reset();
    std::memcpy(region.data() + key + (mixed_src ? 0 : 16), v6.bytes.data(), 16);
    start_on(region);
    EXPECT_EQ(engine->restore_report().restored, 0u) << (mixed_src ? "src" : "dst") << " IPv6, the other v4-mapped";
    EXPECT_EQ(engine->restore_report().dropped_invalid, 1u);
  }
  region.clear();
  start_on(region);
  Conn kept = Conn::v4(1000);
  establish(kept);
  engine.reset();
  start_on(region);
  EXPECT_EQ(engine->restore_report().restored, 1u);
  // Imported into a table of another size: the same rule.
  engine.reset();
  std::memcpy(region.data() + key, v6.bytes.data(), 16);
  cfg.max_flows = 4;
  std::vector<uint8_t> fresh;
  start_on(fresh);
  const RestoreReport r = engine->import_state(region, kBoot, now);
  EXPECT_TRUE(r.attached) << r.reason;
  EXPECT_EQ(r.restored, 0u);
}

TEST_F(PersistTest, OtherSizesImportWhatFits) {
  start_on(region);
  std::vector<Conn> conns;
  std::vector<Bytes> before;
  for (uint16_t port = 1000; port < 1006; ++port) {
    Conn c = Conn::v4(port);
    establish(c);
    conns.push_back(c);
    before.push_back(server_data(c, 7));
  }
  engine.reset();
  cfg.max_flows = 4;  // smaller table: 4 of 6 fit
  EXPECT_FALSE(Engine::state_incompatibility(region, cfg, kBoot).empty());
  std::vector<uint8_t> fresh;
  start_on(fresh);
  RestoreReport r = engine->import_state(region, kBoot, now);
  EXPECT_TRUE(r.attached) << r.reason;
  EXPECT_EQ(r.restored, 4u);
  EXPECT_EQ(r.dropped_no_room, 2u);
  size_t same = 0;
  for (size_t i = 0; i < conns.size(); ++i) {
    SegmentSpec s{.tuple = conns[i].c2s.reversed(), .seq = conns[i].backend_isn + 1 + 7,
                  .ack = conns[i].client_isn + 1, .flags = tcp_flag::ACK, .window = 500};
    s.options.has_timestamps = true;
    s.options.tsval = conns[i].backend_ts + 10;
    s.options.tsecr = 1001;
    Bytes b = make(s);
    if (feed(b).modified && b == before[i]) ++same;
  }
  EXPECT_EQ(same, 4u);
  // Importing the same table again adds nothing: flows already present are skipped.
  EXPECT_EQ(engine->import_state(region, kBoot, now).restored, 0u);
}

// Found by fuzz_flow_import (UBSan): import took an entry's window scales as they were, and a
// damaged client_ws of 200 became a shift by 200 when the backend SYN was retried (undefined).
// An imported entry is held to the window-scale checks an entry taken over in place is.
TEST_F(PersistTest, ImportedWindowScalesOutOfRangeAreDropped) {
  start_on(region);
  Conn a = Conn::v4(1000), b = Conn::v4(1001), c = Conn::v4(1002);
  open_to_backend_syn(a);
  establish(b);
  establish(c);
  engine.reset();
  auto scribble = [&](const Conn& k, auto&& change) {
    for (size_t off = 128; off + sizeof(flows::Flow) <= region.size() && off < 128 + cfg.max_flows * sizeof(flows::Flow);
         off += sizeof(flows::Flow)) {
      flows::Flow f;
      std::memcpy(&f, region.data() + off, sizeof f);
      if (f.state == flows::State::Free || !(f.key == k.c2s)) continue;
      change(f);
      std::memcpy(region.data() + off, &f, sizeof f);
      return;
    }
    ADD_FAILURE() << "no entry for the connection";
  };
  scribble(a, [](flows::Flow& f) { f.client_ws = 200; });
  scribble(b, [](flows::Flow& f) { f.backend_ws = 15; });
  cfg.max_flows = 8;  // other sizes: imported, not taken over in place
  std::vector<uint8_t> fresh;
  start_on(fresh);
  const RestoreReport r = engine->import_state(region, kBoot, now);
  ASSERT_TRUE(r.attached) << r.reason;
  EXPECT_EQ(r.restored, 1u) << "c is intact";
  EXPECT_EQ(r.dropped_invalid, 2u);
  // The retry that shifted by 200 has nothing to retry.
  now += 60 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
}

// An upgrade keeps every connection: a table saved by the release before the layout changed
// (version 2, written by 901d793's engine: tests/engine/fixtures, made with the harness of this
// file) is imported, and its flows translate exactly as that engine translated them.
TEST_F(PersistTest, ATableOfTheReleaseBeforeIsImported) {
  auto slurp = [](const char* name) {
    std::ifstream in(std::string(SYNGATE_ENGINE_FIXTURE_DIR) + "/" + name, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const Bytes old_table = slurp("flows-v2-901d793.bin");
  const Bytes expected = slurp("flows-v2-901d793.expect");
  ASSERT_FALSE(old_table.empty());
  ASSERT_FALSE(expected.empty());
  cfg.max_flows = 16;
  cfg.early_data_slots = 4;
  cfg.early_data_bytes = 256;
  EXPECT_NE(Engine::state_incompatibility(old_table, cfg, kBoot), "") << "not usable in place: another layout";
  std::vector<uint8_t> fresh;
  start_on(fresh);
  RestoreReport r = engine->import_state(old_table, kBoot, now);
  ASSERT_TRUE(r.attached) << r.reason;
  EXPECT_EQ(r.restored, 4u) << "three established or closing flows and one handshake";
  EXPECT_EQ(r.dropped_invalid + r.dropped_torn, 0u);
  // The same segments the old engine translated (see the fixture's writer), in the same order.
  Conn a = Conn::v4(1000);
  Conn b = Conn::v6(1001);
  b.client_syn_opts = TcpOptions{};
  b.client_syn_opts.has_mss = true;
  b.client_syn_opts.mss = 1440;
  b.backend_synack_opts = b.client_syn_opts;
  Conn c = Conn::v4(1002);
  Conn d = Conn::v4(1003);
  // The cookies were made under the fixture's fixed secrets and clock: learn them again.
  for (Conn* k : {&a, &b, &c, &d}) {
    sink.clear();
    feed(k->syn());
    Seen synack(sink.packets.at(0));
    k->cookie_isn = synack.pkt.seq();
    k->synack_tsval = synack.pkt.options().tsval;
  }
  sink.clear();
  std::vector<Bytes> got;
  for (Conn* k : {&a, &b, &d}) {
    SegmentSpec s{.tuple = k->c2s.reversed(), .seq = k->backend_isn + 1, .ack = k->client_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::PSH, .window = 500};
    if (k->client_has_ts()) {
      s.options.has_timestamps = true;
      s.options.tsval = k->backend_ts + 10;
      s.options.tsecr = 1001;
    }
    const Bytes data = {'h', 'i'};
    s.payload = data;
    Bytes p = make(s);
    EXPECT_TRUE(feed(p).modified);
    got.push_back(p);
    SegmentSpec t{.tuple = k->c2s, .seq = k->client_isn + 1, .ack = k->cookie_isn + 3, .flags = tcp_flag::ACK,
                  .window = 400, .options = k->client_ts_opts(1600)};
    if (k->client_has_ts()) {
      t.options.sack_count = 1;
      t.options.sack[0] = {k->cookie_isn + 10, k->cookie_isn + 20};
    }
    Bytes q = make(t);
    EXPECT_TRUE(feed(q).modified);
    got.push_back(q);
  }
  for (Bytes& p : feed_in_slot(c.backend_synack(c.synack_tsval)).wire) got.push_back(std::move(p));
  std::vector<Bytes> want;
  for (size_t off = 0; off + 4 <= expected.size();) {
    uint32_t n;
    std::memcpy(&n, expected.data() + off, 4);
    want.emplace_back(expected.begin() + off + 4, expected.begin() + off + 4 + n);
    off += 4 + n;
  }
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "packet " << i;
  // Imported flows got fresh timer stamps (the old ones were on another clock): they expire
  // after a full idle period from now, not at once.
  engine->advance(now + kSecond, sink);
  EXPECT_EQ(counters().flows_active, 4u);
}

TEST_F(PersistTest, AKilledProcessLeavesATableTheNextStartCanUse) {
  // The child churns flows (handshakes, data, closes, timer runs) in shared memory until it is
  // SIGKILLed at a random instant; the parent then starts on the same memory and checks that the
  // table is consistent: every restored flow can be found and driven, and expiring everything
  // brings the table back to empty.
  std::mt19937 rng(12345);
  const size_t bytes = Engine::state_bytes(cfg);
  for (int round = 0; round < 12; ++round) {
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    std::span<uint8_t> shared(static_cast<uint8_t*>(mem), bytes);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      CookieJar j(fixed_secrets());
      Engine e(cfg, j, EngineState{shared, kBoot});
      RecordingSink out;
      uint64_t t = 1000 * kSecond;
      for (uint32_t n = 0;; ++n) {
        Conn c = Conn::v4(static_cast<uint16_t>(1000 + n % 200));
        c.client_isn = n * 7919;
        Bytes s = c.syn();
        out.clear();
        e.process(s, t, out);
        if (out.packets.empty()) continue;
        ParseResult sa = parse_tcp_packet(out.packets[0]);
        c.cookie_isn = sa.packet.seq();
        c.synack_tsval = sa.packet.options().tsval;
        Bytes ack = c.third_ack();
        out.clear();
        e.process(ack, t, out);
        Bytes synack = c.backend_synack(c.client_ts);
        e.process(synack, t, out);
        if (n % 3 == 0) {
          SegmentSpec f{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                        .flags = tcp_flag::ACK | tcp_flag::RST};
          Bytes rst = make(f);
          e.process(rst, t, out);
        }
        t += 3 * kMs;
        if (n % 50 == 0) e.advance(t, out);
      }
    }
    usleep(2000 + rng() % 30000);
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    std::vector<uint8_t> copy(shared.begin(), shared.end());
    munmap(mem, bytes);
    start_on(copy);
    const RestoreReport& r = engine->restore_report();
    if (!r.attached) {
      // Killed before its engine formatted the memory: nothing was saved, and nothing is used.
      EXPECT_EQ(r.reason, "no saved table");
      engine.reset();
      continue;
    }
    EXPECT_EQ(r.dropped_invalid, 0u) << "round " << round;
    EXPECT_LE(r.dropped_torn, 3u);
    EXPECT_EQ(counters().flows_active, r.restored);
    size_t found = 0;
    engine->for_each_flow([&](const FlowTuple& t) {
      // Every restored flow is reachable by its tuple: a client ACK for it is translated or
      // consumed, never treated as an unknown flow's cookie ACK.
      SegmentSpec s{.tuple = t, .seq = 1, .ack = 1, .flags = tcp_flag::ACK};
      Bytes b = make(s);
      feed(b);
      ++found;
    });
    EXPECT_EQ(found, r.restored);
    EXPECT_EQ(counters().drop(DropReason::CookieInvalid), 0u) << "a restored flow was not found by its tuple";
    // Backend SYN retries step one backoff level per timer run; then everything expires.
    for (int k = 0; k < 20; ++k) {
      now += 4000 * kSecond;
      engine->advance(now, sink);
    }
    EXPECT_EQ(counters().flows_active, 0u) << "timer lists hold every restored flow";
    engine.reset();
  }
}

}  // namespace
}  // namespace syngate::test
