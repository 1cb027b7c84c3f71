// The engine tells a FlowObserver about every flow it creates and frees (the XDP fast path keeps
// its flow map by it): a missed free would let a dead flow's forged packets through XDP, a missed
// create would make XDP drop a live flow's packets.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "syngate_test/engine_harness.hpp"

namespace syngate::test {
namespace {

struct Recorder : FlowObserver {
  std::vector<FlowTuple> live;
  int created = 0, freed = 0;
  void flow_created(const FlowTuple& t) noexcept override {
    ++created;
    live.push_back(t);
  }
  void flow_freed(const FlowTuple& t, uint32_t) noexcept override {
    ++freed;
    auto it = std::find(live.begin(), live.end(), t);
    EXPECT_NE(it, live.end()) << "freed a flow never reported created";
    if (it != live.end()) live.erase(it);
  }
};

class FlowObserverTest : public EngineTest {
 protected:
  Recorder rec;
  void SetUp() override {
    EngineTest::SetUp();
    start();
    engine->set_flow_observer(&rec);
  }
};

TEST_F(FlowObserverTest, CreatedOnTheCookieAckWithTheClientToServerTuple) {
  Conn c = Conn::v4();
  learn_cookie(c);
  EXPECT_EQ(rec.created, 0) << "a SYN creates no flow";
  feed(c.third_ack());
  ASSERT_EQ(rec.live.size(), 1u);
  EXPECT_EQ(rec.live[0], c.c2s);
}

TEST_F(FlowObserverTest, AnObserverSetLaterHearsOfTheFlowsAlreadyThere) {
  engine->set_flow_observer(nullptr);
  Conn a = Conn::v4(40011);
  establish(a);
  Conn b = Conn::v6(40012);
  open_to_backend_syn(b);
  Recorder late;
  engine->set_flow_observer(&late);
  ASSERT_EQ(late.live.size(), 2u);
  EXPECT_NE(std::find(late.live.begin(), late.live.end(), a.c2s), late.live.end());
  EXPECT_NE(std::find(late.live.begin(), late.live.end(), b.c2s), late.live.end());
  engine->set_flow_observer(&rec);  // `late` goes out of scope before the engine
}

TEST_F(FlowObserverTest, ForgedAcksCreateNothing) {
  Conn c = Conn::v4();
  learn_cookie(c);
  c.cookie_isn ^= 0x100;
  feed(c.third_ack());
  EXPECT_EQ(rec.created, 0);
}

TEST_F(FlowObserverTest, FreedWhenTheBackendNeverAnswersAndAfterLinger) {
  Conn a = Conn::v4(40001);
  open_to_backend_syn(a);
  Conn b = Conn::v6(40002);
  establish(b);
  ASSERT_EQ(rec.live.size(), 2u);
  // a: backend silent through every retry -> RST to the client, flow freed.
  // b: idle past established_idle_s -> freed.
  for (int i = 0; i < 4000; ++i) {
    now += kSecond;
    engine->advance(now, sink);
  }
  EXPECT_TRUE(rec.live.empty());
  EXPECT_EQ(rec.freed, 2);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(FlowObserverTest, EveryFlowFreedIsOneThatWasCreatedUnderTableChurn) {
  cfg.max_flows = 4;
  engine.emplace(cfg, *jar);
  engine->set_flow_observer(&rec);
  for (uint16_t port = 41000; port < 41040; ++port) {
    Conn c = Conn::v4(port);
    establish(c);
    // Reset by the client: the flow lingers and is the first evicted when the table is full.
    SegmentSpec rst{.tuple = c.c2s, .seq = c.client_next, .ack = c.cookie_isn + 1,
                    .flags = tcp_flag::RST | tcp_flag::ACK, .window = 0};
    feed(make(rst));
  }
  EXPECT_EQ(rec.created, 40);
  EXPECT_GE(rec.freed, 36) << "a table of 4 must have evicted lingering flows";
  EXPECT_EQ(static_cast<uint64_t>(rec.live.size()), counters().flows_active);
  EXPECT_EQ(rec.created - rec.freed, static_cast<int>(counters().flows_active));
}

// ---- hand-over of established flows (the tc path) -------------------------------------------

// Records each hand-over with what the sink held at that moment: the ordering the tc path relies
// on is that the entry exists before the backend can send (it needs our ACK first).
struct HandOvers : FlowObserver {
  const RecordingSink* sink = nullptr;
  struct Call {
    FlowTuple key;
    FlowTranslation t;
    size_t emitted_before;
  };
  std::vector<Call> calls;
  void flow_created(const FlowTuple&) noexcept override {}
  void flow_freed(const FlowTuple&, uint32_t) noexcept override {}
  void flow_established(const FlowTuple& key, const FlowTranslation& t, uint32_t) noexcept override {
    calls.push_back({key, t, sink ? sink->size() : 0});
  }
};

class HandOverTest : public EngineTest {
 protected:
  HandOvers rec;
  void SetUp() override {
    EngineTest::SetUp();
    start();
    rec.sink = &sink;
    engine->set_flow_observer(&rec);
  }
  // The backend's SYN-ACK, fed with the sink as it is; returns what it emitted.
  std::vector<Seen> answer(Conn& c, std::span<const uint8_t> early = {}) {
    Seen syn = open_to_backend_syn(c, early);
    EXPECT_EQ(sink.size(), 0u);
    const uint32_t tsecr = syn.pkt.options().has_timestamps ? syn.pkt.options().tsval : 0;
    feed(c.backend_synack(tsecr));
    std::vector<Seen> out;
    for (auto& p : sink.packets) out.emplace_back(p);
    sink.clear();
    c.client_next = c.client_isn + 1 + static_cast<uint32_t>(early.size());
    c.backend_next = c.backend_isn + 1;
    return out;
  }
  // A backend data segment as the engine translates it for the client.
  Seen server_segment_through_engine(Conn& c, uint32_t tsval, uint16_t window) {
    TcpOptions o;
    if (c.backend_synack_opts.has_timestamps && c.client_has_ts()) {
      o.has_timestamps = true;
      o.tsval = tsval;
      o.tsecr = 1001;
    }
    const Bytes data(100, 0x61);
    SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_next, .ack = c.client_next,
                  .flags = tcp_flag::ACK | tcp_flag::PSH, .window = window, .options = o, .payload = data};
    Bytes b = make(s);
    EXPECT_EQ(feed(b).verdict, Verdict::Accept);
    return Seen(b);
  }
};

TEST_F(HandOverTest, BeforeTheAckThatLetsTheBackendSendWithTheEnginesNumbers) {
  Conn c = Conn::v4();
  const Bytes early(30, 0x42);
  const std::vector<Seen> out = answer(c, early);
  ASSERT_EQ(rec.calls.size(), 1u);
  const HandOvers::Call& call = rec.calls[0];
  EXPECT_EQ(call.key, c.c2s);
  EXPECT_EQ(call.emitted_before, 0u) << "the hand-over must precede every packet of that step";
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(out[0].pkt.tuple(), c.c2s) << "the step's first packet is the backend's ACK";
  EXPECT_EQ(out[0].pkt.payload_len(), early.size());
  EXPECT_EQ(call.t.delta, c.backend_isn - c.cookie_isn);
  EXPECT_TRUE(call.t.timestamps);
  EXPECT_EQ(call.t.tsoff, c.backend_ts - c.synack_tsval);
  EXPECT_EQ(call.t.shifts.client_sends, 7);
  EXPECT_EQ(call.t.shifts.server_reads, 7);
  EXPECT_EQ(call.t.shifts.server_sends, 7);
  EXPECT_EQ(call.t.shifts.client_reads, cfg.announced_wscale);

  // What the other path would compute from these numbers is what the engine sends.
  const uint32_t backend_seq = c.backend_next;
  const Seen seg = server_segment_through_engine(c, 50000300, 1000);
  EXPECT_EQ(seg.pkt.seq(), sg_seq_to_client(backend_seq, call.t.delta));
  EXPECT_EQ(seg.pkt.options().tsval, sg_tsval_to_client(50000300, call.t.tsoff));
  EXPECT_EQ(seg.pkt.window(), sg_window_rescale(1000, call.t.shifts.server_sends, call.t.shifts.client_reads));
}

TEST_F(HandOverTest, ScaleMismatchAndIPv6CarryTheirOwnShifts) {
  Conn c = Conn::v6();
  c.backend_synack_opts.wscale = 14;
  answer(c);
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_EQ(rec.calls[0].key, c.c2s);
  EXPECT_EQ(rec.calls[0].t.shifts.server_sends, 14);
  EXPECT_EQ(rec.calls[0].t.shifts.client_reads, cfg.announced_wscale);
  const Seen seg = server_segment_through_engine(c, 50000400, 3);
  EXPECT_EQ(seg.pkt.window(), sg_window_rescale(3, 14, cfg.announced_wscale));
}

TEST_F(HandOverTest, ClientWithoutTimestampsIsHandedOverUnscaled) {
  Conn c = Conn::v4();
  c.client_syn_opts.has_timestamps = false;  // then no window scale or SACK either (answer_syn)
  c.backend_synack_opts.has_timestamps = false;
  c.backend_synack_opts.has_wscale = false;
  answer(c);
  ASSERT_EQ(rec.calls.size(), 1u);
  EXPECT_FALSE(rec.calls[0].t.timestamps);
  EXPECT_EQ(rec.calls[0].t.tsoff, 0u);
  EXPECT_EQ(rec.calls[0].t.shifts.client_sends, 0);
  EXPECT_EQ(rec.calls[0].t.shifts.client_reads, 0);
  EXPECT_EQ(rec.calls[0].t.delta, c.backend_isn - c.cookie_isn);
}

TEST_F(HandOverTest, NotWhenTheEngineSuppliesTimestampsTheBackendLacks) {
  Conn c = Conn::v4();
  c.backend_synack_opts.has_timestamps = false;
  const std::vector<Seen> out = answer(c);
  EXPECT_FALSE(out.empty()) << "the flow is established all the same";
  EXPECT_EQ(counters().established, 1u);
  EXPECT_TRUE(rec.calls.empty()) << "every segment to this client grows: only the engine can do that";
}

TEST_F(HandOverTest, ARetransmittedSynAckIsNoSecondHandOver) {
  Conn c = Conn::v4();
  Seen syn = open_to_backend_syn(c);
  feed(c.backend_synack(syn.pkt.options().tsval));
  feed(c.backend_synack(syn.pkt.options().tsval));
  EXPECT_EQ(rec.calls.size(), 1u);
}

TEST_F(HandOverTest, NothingBeforeTheBackendAnswersNorForForgedSynAcks) {
  Conn c = Conn::v4();
  open_to_backend_syn(c);
  EXPECT_TRUE(rec.calls.empty());
  Bytes wrong = c.backend_synack(0);
  TcpPacket p = parse_tcp_packet(wrong).packet;
  p.set_ack(p.ack() + 1);
  p.recompute_checksum();
  feed(wrong);
  EXPECT_TRUE(rec.calls.empty());
}

TEST_F(HandOverTest, AnObserverSetLaterHearsOfEstablishedFlowsOnly) {
  engine->set_flow_observer(nullptr);
  Conn a = Conn::v4(40021);
  establish(a);
  Conn b = Conn::v4(40022);
  open_to_backend_syn(b);
  Conn s = Conn::v4(40023);
  s.backend_synack_opts.has_timestamps = false;
  establish(s);
  HandOvers late;
  engine->set_flow_observer(&late);
  ASSERT_EQ(late.calls.size(), 1u);
  EXPECT_EQ(late.calls[0].key, a.c2s);
  EXPECT_EQ(late.calls[0].t.delta, a.backend_isn - a.cookie_isn);
  engine->set_flow_observer(&rec);
}

// ---- merging what the kernel path recorded -------------------------------------------------

struct FakeKernel : KernelFlowState {
  bool has = false;
  KernelFlowView view;
  int reads = 0;
  int punts = 0;
  bool read(const FlowTuple&, KernelFlowView& out) noexcept override {
    ++reads;
    if (has) out = view;
    return has;
  }
  void punt(const FlowTuple&, uint32_t) noexcept override {
    ++punts;
    view.to_server.punting = view.to_client.punting = true;  // as the daemon marks both entries
  }
  bool fresh = false;  // what may_be_overtaken answers
  bool may_be_overtaken(const FlowTuple&) noexcept override { return fresh; }
  // Closes the programs reported (sg_tc_events), for the sweep.
  std::vector<FlowTuple> closes;
  int takes = 0;
  void take_closing(std::vector<FlowTuple>& out, const std::function<bool(const KernelClose&)>& mine) noexcept override {
    ++takes;
    std::erase_if(closes, [&](const FlowTuple& t) {
      if (!mine(KernelClose{t, 0})) return false;
      out.push_back(t);
      return true;
    });
  }
};

class KernelMergeTest : public EngineTest {
 protected:
  FakeKernel kernel;
  void SetUp() override {
    EngineTest::SetUp();
    cfg.established_idle_s = 10;
    start();
    engine->set_kernel_state(&kernel);
  }
};

TEST_F(KernelMergeTest, AFlowBusyInTheKernelIsNotExpiredAsIdle) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = true;
  for (int s = 0; s < 60; ++s) {
    now += kSecond;
    kernel.view.to_client.last_ns = now;  // the kernel translated a segment this second
    engine->advance(now, sink);
  }
  EXPECT_EQ(counters().flows_active, 1u) << "60 s of kernel-only traffic, idle timeout 10 s";
  EXPECT_GT(kernel.reads, 0);
  for (int s = 0; s < 25; ++s) {
    now += kSecond;
    engine->advance(now, sink);
  }
  EXPECT_EQ(counters().flows_active, 0u) << "idle in both paths: expired";
}

TEST_F(KernelMergeTest, AnExactRstAfterKernelTrafficIsBelieved) {
  Conn c = Conn::v4();
  establish(c);
  // The server sent 10 MB through the kernel path; the client acknowledged it all.
  const uint32_t sent = 10u << 20;
  kernel.has = true;
  kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = c.backend_isn + 1 + sent,
                           .acked = c.client_isn + 1, .window_bytes = 65535u << 7};
  kernel.view.to_server = {.has_record = true, .last_ns = now, .sender_next = c.client_isn + 1,
                           .acked = c.backend_isn + 1 + sent, .window_bytes = 65535u << 7};
  SegmentSpec rst{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1 + sent, .ack = c.client_isn + 1,
                  .flags = tcp_flag::RST | tcp_flag::ACK, .window = 0};
  const Decision d = feed(make(rst));
  EXPECT_EQ(d.verdict, Verdict::Accept) << "the server's own RST, at what it sent through the kernel";
  EXPECT_EQ(counters().drop(DropReason::RstOutOfWindow), 0u);
}

TEST_F(KernelMergeTest, WithoutTheKernelsRecordThatRstWouldBeTakenForABlindGuess) {
  Conn c = Conn::v4();
  establish(c);
  const uint32_t sent = 10u << 20;
  SegmentSpec rst{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1 + sent, .ack = c.client_isn + 1,
                  .flags = tcp_flag::RST | tcp_flag::ACK, .window = 0};
  EXPECT_EQ(feed(make(rst)).verdict, Verdict::Drop);
  EXPECT_EQ(counters().drop(DropReason::RstOutOfWindow), 1u);
}


// Item 3 of issue 23, the hot path: a segment the engine handles on a handed-over flow reads the
// kernel's record only where the engine judges with it, not once per segment.
TEST_F(KernelMergeTest, SegmentsTheEngineCanPlaceReadNothingFromTheKernel) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = true;  // the map holds the flow, with nothing recorded yet
  kernel.reads = 0;
  const std::vector<uint8_t> data(100, 'x');
  uint32_t seq = c.client_isn + 1;
  for (int k = 0; k < 50; ++k) {
    SegmentSpec s{.tuple = c.c2s, .seq = seq, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK,
                  .window = c.client_window, .options = c.client_ts_opts(1002 + k), .payload = data};
    ASSERT_EQ(feed(make(s)).verdict, Verdict::Accept);
    seq += 100;
    SegmentSpec r{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = seq, .flags = tcp_flag::ACK,
                  .window = c.backend_window, .options = c.client_ts_opts(0)};
    r.options.tsval = c.backend_ts + 1;
    r.options.tsecr = 1002 + k;
    ASSERT_EQ(feed(make(r)).verdict, Verdict::Accept);
  }
  EXPECT_EQ(kernel.reads, 0) << "100 segments in order, each placed by the engine's own view";
  // A FIN is judged with the kernel's view: one read.
  SegmentSpec fin{.tuple = c.c2s, .seq = seq, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK | tcp_flag::FIN,
                  .window = c.client_window, .options = c.client_ts_opts(2000)};
  EXPECT_EQ(feed(make(fin)).verdict, Verdict::Accept);
  EXPECT_EQ(kernel.reads, 1);
}

TEST_F(KernelMergeTest, ASegmentAnsweringKernelTrafficIsPlacedAgainstTheMergedView) {
  Conn c = Conn::v4();
  establish(c);
  // The server sent 1 MB through the kernel path; the engine's own view still stops at the
  // handshake, so the client's ack of it looks like one of data the server never sent.
  const uint32_t sent = 1u << 20;
  kernel.has = true;
  kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = c.backend_isn + 1 + sent,
                           .acked = c.client_isn + 1, .window_bytes = 65535u << 7};
  kernel.view.to_server = {.has_record = true, .last_ns = now, .sender_next = c.client_isn + 1,
                           .acked = c.backend_isn + 1 + sent / 2, .window_bytes = 65535u << 7};
  kernel.reads = 0;
  // A client segment that reached the engine (an IPv4 option, say) with 100 bytes and the ack
  // of all the server sent.
  const std::vector<uint8_t> data(100, 'x');
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1 + sent, .flags = tcp_flag::ACK,
                .window = c.client_window, .options = c.client_ts_opts(1500), .payload = data};
  ASSERT_EQ(feed(make(s)).verdict, Verdict::Accept);
  EXPECT_EQ(kernel.reads, 1) << "the engine's view could not place it: read once, placed again";
  // The client's RST at exactly what it has sent (its 100 bytes included) is believed: the flow
  // ends. Had the segment not been placed, the RST would only be passed on in the window.
  SegmentSpec rst{.tuple = c.c2s, .seq = c.client_isn + 1 + 100, .ack = 0, .flags = tcp_flag::RST, .window = 0};
  ASSERT_EQ(feed(make(rst)).verdict, Verdict::Accept);
  EXPECT_EQ(counters().rst_passed_in_window, 0u);
  EXPECT_EQ(kernel.reads, 2) << "the RST is judged with the kernel's view";
  now += (cfg.linger_s + 1) * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u) << "the RST ended the flow";
}

TEST_F(KernelMergeTest, WithoutAKernelRecordTheEngineReadsOnlyWhereItJudges) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = false;  // never handed over (or the entry is gone): the engine sees everything
  kernel.reads = 0;
  const std::vector<uint8_t> data(10, 'y');
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK,
                .window = c.client_window, .options = c.client_ts_opts(1500), .payload = data};
  for (int k = 0; k < 10; ++k) ASSERT_EQ(feed(make(s)).verdict, Verdict::Accept);
  EXPECT_EQ(kernel.reads, 0) << "retransmissions of placed data";
}

// Pure ACKs queued while the hand-over went live reach the engine after newer ones crossed tc.
// One that acknowledges less than the tc programs already delivered would reach its receiver with
// an older timestamp than the last it took (PAWS rejects it): dropped, as is one with the same ack
// and a larger window than the newest (an old window update). A duplicate ACK passes, and nothing is read once the kernel path says no straggler can still come.
TEST_F(KernelMergeTest, AQueuedAckThatNewerOnesThroughTcSupersededIsDropped) {
  Conn c = Conn::v4();
  establish(c);
  const uint32_t up = 64u << 10;  // the client uploaded 64 KB, the server acked it through tc
  kernel.has = true;
  kernel.fresh = true;
  kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = c.backend_isn + 1,
                           .acked = c.client_isn + 1 + up, .window_bytes = 65535u << 7};
  kernel.view.to_server = {.has_record = true, .last_ns = now, .sender_next = c.client_isn + 1 + up,
                           .acked = c.backend_isn + 1, .window_bytes = 65535u << 7};
  auto server_ack = [&](uint32_t acked, uint32_t tsval, std::vector<uint8_t> data = {}) {
    SegmentSpec r{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1 + acked,
                  .flags = tcp_flag::ACK, .window = c.backend_window, .options = c.client_ts_opts(0), .payload = data};
    r.options.tsval = tsval;
    r.options.tsecr = 1002;
    return make(r);
  };
  kernel.reads = 0;
  EXPECT_EQ(feed(server_ack(up / 2, c.backend_ts + 1)).verdict, Verdict::Drop) << "behind what tc delivered";
  EXPECT_EQ(counters().drop(DropReason::AckSuperseded), 1u);
  EXPECT_EQ(kernel.reads, 1);
  EXPECT_EQ(feed(server_ack(up, c.backend_ts + 1)).verdict, Verdict::Accept) << "a duplicate of the newest: kept";
  kernel.view.to_client.window_bytes = 1000;  // the newest through tc narrowed the window
  EXPECT_EQ(feed(server_ack(up, c.backend_ts + 1)).verdict, Verdict::Drop)
      << "the same ack with a larger window: an old window update the receiver would reject (PAWS)";
  EXPECT_EQ(counters().drop(DropReason::AckSuperseded), 2u);
  kernel.view.to_client.window_bytes = 65535u << 7;
  EXPECT_EQ(feed(server_ack(up / 2, c.backend_ts + 1, std::vector<uint8_t>(10, 'd'))).verdict, Verdict::Accept)
      << "data is never dropped for its ack";
  // The client's side the same way: its ack in the server's numbers, behind what tc delivered.
  kernel.view.to_server.acked = c.backend_isn + 1 + 4000;
  SegmentSpec a{.tuple = c.c2s, .seq = c.client_isn + 1 + up, .ack = c.cookie_isn + 1 + 1000, .flags = tcp_flag::ACK,
                .window = c.client_window, .options = c.client_ts_opts(1500)};
  EXPECT_EQ(feed(make(a)).verdict, Verdict::Drop);
  EXPECT_EQ(counters().drop(DropReason::AckSuperseded), 3u);
  // Once its FIN crossed tc, the client's segments come to the queue: a window update sent after
  // the FIN (its seq past it, the FIN's ack, a larger window) is new, not a straggler.
  kernel.view.to_server.fin = true;
  kernel.view.to_server.fin_seq = c.client_isn + 1 + up;
  kernel.view.to_server.window_bytes = 1000;
  SegmentSpec w{.tuple = c.c2s, .seq = c.client_isn + 2 + up, .ack = c.cookie_isn + 1 + 4000, .flags = tcp_flag::ACK,
                .window = c.client_window, .options = c.client_ts_opts(1501)};
  EXPECT_EQ(feed(make(w)).verdict, Verdict::Accept) << "a window update after the client's FIN";
  w.seq = c.client_isn + 1 + up;
  EXPECT_EQ(feed(make(w)).verdict, Verdict::Drop) << "the same update from before the FIN is an old one";
  EXPECT_EQ(counters().drop(DropReason::AckSuperseded), 4u);

  // Once the kernel path says no segment queued before the hand-over can still come, the check is
  // not made (the ack passes as before it existed).
  kernel.fresh = false;
  EXPECT_EQ(feed(server_ack(up / 2, c.backend_ts + 2)).verdict, Verdict::Accept);
  EXPECT_EQ(counters().drop(DropReason::AckSuperseded), 4u);
}

// A FIN the program recorded (and translated: the engine never sees it). The engine folds it in
// with its sequence number, so the flow closes and lingers as if the FIN had crossed it.
class KernelFinTest : public KernelMergeTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    cfg.established_idle_s = 600;
    cfg.closing_idle_s = 100;
    cfg.linger_s = 2;
    start();
    engine->set_kernel_state(&kernel);
  }
  // c closed whole in the programs, with no data: both FINs, each acknowledged.
  void closed_in_kernel(const Conn& c) {
    kernel.has = true;
    kernel.view.to_server = {.has_record = true, .last_ns = now, .sender_next = c.client_isn + 2,
                             .acked = c.backend_isn + 2, .window_bytes = 65535,
                             .fin = true, .fin_seq = c.client_isn + 1, .punting = true};
    kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = c.backend_isn + 2,
                             .acked = c.client_isn + 2, .window_bytes = 65535,
                             .fin = true, .fin_seq = c.backend_isn + 1};
  }
  void step(uint32_t seconds) {
    for (uint32_t k = 0; k < seconds; ++k) {
      now += kSecond;
      engine->advance(now, sink);
    }
  }
};

TEST_F(KernelFinTest, AFinOnlyTheKernelSawClosesTheFlowLikeOneTheEngineSaw) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = true;
  kernel.view.to_server = {.last_ns = now, .fin = true, .fin_seq = c.client_isn + 1, .punting = true};
  // The server acknowledges the client's FIN and sends its own (punted: the flow is closing).
  SegmentSpec sfin{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 2,
                   .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.backend_window};
  ASSERT_EQ(feed(make(sfin)).verdict, Verdict::Accept);
  // The client's last ACK, of the server's FIN.
  SegmentSpec last{.tuple = c.c2s, .seq = c.client_isn + 2, .ack = c.cookie_isn + 2, .flags = tcp_flag::ACK,
                   .window = c.client_window};
  ASSERT_EQ(feed(make(last)).verdict, Verdict::Accept);
  step(cfg.linger_s + 1);
  EXPECT_EQ(counters().flows_active, 0u) << "both FINs acknowledged: freed after linger, not after closing_idle_s";
  EXPECT_EQ(kernel.punts, 0) << "the program punts this flow already";
}

TEST_F(KernelFinTest, AFinTheKernelRecordedMovesAnIdleFlowToClosing) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = true;
  kernel.view.to_client = {.last_ns = now, .fin = true, .fin_seq = c.backend_isn + 1, .punting = true};
  // Idle past the established timeout's first check: the merge finds the server's FIN; from
  // then on the flow is closing and goes after closing_idle_s, not established_idle_s.
  step(cfg.established_idle_s + 1);
  EXPECT_EQ(counters().flows_active, 1u);
  step(cfg.closing_idle_s * 2 + 1);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(KernelFinTest, AFinOrRstTheKernelMissedMakesItPuntTheFlow) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = true;  // translating, no FIN recorded: this FIN came in a packet tc could not parse
  SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window};
  ASSERT_EQ(feed(make(fin)).verdict, Verdict::Accept);
  EXPECT_EQ(kernel.punts, 1);
  ASSERT_EQ(feed(make(fin)).verdict, Verdict::Accept);  // its retransmission
  EXPECT_EQ(kernel.punts, 1) << "punted once";
  EXPECT_EQ(counters().kernel_punts, 1u);

  Conn d = Conn::v4(40001);
  establish(d);
  kernel.view = {};
  SegmentSpec rst{.tuple = d.c2s, .seq = d.client_isn + 1, .ack = 0, .flags = tcp_flag::RST, .window = 0};
  ASSERT_EQ(feed(make(rst)).verdict, Verdict::Accept);
  EXPECT_EQ(kernel.punts, 2) << "an exact RST the program did not record";
}

// The whole close crossed the programs (FINs are translated in tc, the server's last ACK too): the
// engine saw none of it. The program's report (take_closing) makes the next sweep merge the flow:
// both FINs acknowledged, linger, and freed after linger_s, not after established_idle_s.
TEST_F(KernelFinTest, ACloseCarriedWholeByTheKernelLingersAtTheNextSweep) {
  Conn c = Conn::v4();
  establish(c);
  const uint32_t up = 300, down = 5000;  // bytes each way through the kernel before the FINs
  kernel.has = true;
  kernel.view.to_server = {.has_record = true, .last_ns = now, .sender_next = c.client_isn + 1 + up + 1,
                           .acked = c.backend_isn + 1 + down + 1, .window_bytes = 65535,
                           .fin = true, .fin_seq = c.client_isn + 1 + up, .punting = true};
  kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = c.backend_isn + 1 + down + 1,
                           .acked = c.client_isn + 1 + up + 1, .window_bytes = 65535,
                           .fin = true, .fin_seq = c.backend_isn + 1 + down};
  kernel.closes.push_back(c.c2s);
  step(1);
  EXPECT_TRUE(kernel.closes.empty()) << "the sweep took its flow's report";
  EXPECT_EQ(counters().flows_active, 1u) << "lingering";
  step(cfg.linger_s + 1);
  EXPECT_EQ(counters().flows_active, 0u) << "freed after linger, not after established_idle_s";
  EXPECT_EQ(kernel.punts, 0) << "the programs punt the client's segments already";
}

// One FIN, reported: closing at once, so the flow goes after closing_idle_s. A report of a flow
// this engine does not hold is left for the engine that does.
TEST_F(KernelFinTest, AReportedFinMovesTheFlowToClosingAtTheNextSweep) {
  Conn c = Conn::v4();
  establish(c);
  kernel.has = true;
  kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = c.backend_isn + 1 + 1,
                           .acked = c.client_isn + 1, .window_bytes = 65535,
                           .fin = true, .fin_seq = c.backend_isn + 1};
  kernel.closes.push_back(c.c2s);
  const Conn other = Conn::v4(40999);
  kernel.closes.push_back(other.c2s);
  step(1);
  ASSERT_EQ(kernel.closes.size(), 1u);
  EXPECT_EQ(kernel.closes[0], other.c2s) << "another engine's flow";
  step(cfg.closing_idle_s * 2 + 1);
  EXPECT_EQ(counters().flows_active, 0u) << "closing: freed after closing_idle_s, well before established_idle_s";
  EXPECT_EQ(kernel.punts, 0) << "the server's FIN alone: the programs keep translating the client's segments";
}

// A client reconnects on its port at once after a close the engine never saw (the programs sent
// its new cookie ACK to NFQUEUE, as they do after the client's FIN): the engine, still holding
// the old flow as established, reads the kernel's record before the port-reuse check, so the
// cookie ACK opens the new connection instead of being translated with the old one's numbers.
TEST_F(KernelFinTest, ANewCookieAckAfterACloseInTheKernelStartsANewConnection) {
  Conn c = Conn::v4();
  establish(c);
  closed_in_kernel(c);
  Conn again = Conn::v4(c.c2s.sport);
  again.client_isn = c.client_isn + 100000;
  again.backend_isn = 0x12345678;
  std::vector<Seen> out = establish(again);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].pkt.ack(), again.backend_isn + 1);
  EXPECT_EQ(counters().flows_reused, 1u);
  EXPECT_EQ(counters().flows_active, 1u);
}

// A FIN whose sequence number is outside anything the sender could have sent (a blind forgery,
// either way) is passed on for the endpoint to judge, but must not put a live, idle flow on the
// closing timer.
TEST_F(KernelFinTest, ABlindFinDoesNotMoveTheFlowToClosing) {
  Conn c = Conn::v4();
  establish(c);
  SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1 + 0x40000000u, .ack = c.cookie_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window};
  EXPECT_EQ(feed(make(fin)).verdict, Verdict::Accept);
  SegmentSpec sfin{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1 + 0x40000000u, .ack = c.client_isn + 1,
                   .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.backend_window};
  EXPECT_EQ(feed(make(sfin)).verdict, Verdict::Accept);
  step(cfg.closing_idle_s * 2 + 1);
  EXPECT_EQ(counters().flows_active, 1u) << "still established: idle for less than established_idle_s";
  // The real FIN, at what the client sent, still closes it.
  SegmentSpec real{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                   .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window};
  EXPECT_EQ(feed(make(real)).verdict, Verdict::Accept);
  step(cfg.closing_idle_s * 2 + 1);
  EXPECT_EQ(counters().flows_active, 0u);
}

// A busy client reconnecting faster than the sweep runs: a close the kernel path carried and
// reported still holds its source's share until merged; a new flow that the share would refuse
// merges the reported closes first.
TEST_F(KernelFinTest, ASourceAtItsLimitGetsTheSharesOfReportedClosesBack) {
  engine.reset();
  cfg.max_flows_per_source = 1;
  start();
  engine->set_kernel_state(&kernel);
  Conn c = Conn::v4(41000);
  establish(c);
  closed_in_kernel(c);
  kernel.closes.push_back(c.c2s);
  Conn d = Conn::v4(41001);  // the same source, another port, before the next sweep
  establish(d);
  EXPECT_EQ(counters().flows_refused, 0u);
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 0u) << "a refusal counted for a flow that was opened";
  EXPECT_EQ(counters().flows_active, 2u) << "the first lingers, the second is open";
}

// The flow worker takes the reported closes at each turn (before each batch, on each idle turn),
// not only at the sweep: a client whose connections all cross the programs ends ~1000 of them
// per 100 ms sweep at 11k connections/s, each holding its source's share until merged.
TEST_F(KernelFinTest, ReportedClosesAreMergedAtEachTurn) {
  Conn c = Conn::v4(41010);
  establish(c);
  closed_in_kernel(c);
  kernel.closes.push_back(c.c2s);
  const int reads = kernel.reads;
  engine->take_kernel_reports(now, sink);
  EXPECT_TRUE(kernel.closes.empty()) << "the close waits for the sweep";
  EXPECT_GT(kernel.reads, reads) << "taken but not merged";
}

// The server's first reply and its FIN crossed the engine (the to-client entry is published only
// once the hand-over's packets are out); the client's answers crossed the program, whose record of
// the server had not started, so it did not take them: its record holds a stale ack. The ack of
// the client's latest segment (last_ack) is judged here, against the FIN the engine saw: the exact
// ack of it completes the close (linger), as the program counts one of a FIN it recorded; any
// other number does not (a blind sender must guess it exactly). Seen in gateway_kernel_churn:
// flows left closing held their source's share until new ones were refused.
TEST_F(KernelFinTest, TheExactAckOfAFinTheEngineSawCompletesACloseInTheKernel) {
  for (const uint32_t off : {0u, 1u, 2u}) {  // 1: the exact ack of the FIN
    SCOPED_TRACE(off);
    Conn c = Conn::v4(static_cast<uint16_t>(42000 + off));
    establish(c);
    kernel.has = false;
    const std::vector<uint8_t> reply(100, 'r');
    SegmentSpec sfin{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                     .flags = tcp_flag::ACK | tcp_flag::PSH | tcp_flag::FIN, .window = c.backend_window,
                     .payload = std::span<const uint8_t>(reply)};
    ASSERT_EQ(feed(make(sfin)).verdict, Verdict::Accept);
    const uint32_t server_fin = c.backend_isn + 1 + 100;
    kernel.has = true;
    kernel.view.to_server = {.has_record = true, .last_ns = now, .sender_next = c.client_isn + 1,
                             .acked = c.backend_isn + 1 + 50, .window_bytes = 65535,
                             .fin = true, .fin_seq = c.client_isn + 1, .has_last_ack = true,
                             .last_ack = server_fin + off, .punting = true};
    kernel.view.to_client = {.has_record = true, .last_ns = now, .sender_next = server_fin + 1,
                             .acked = c.client_isn + 2, .window_bytes = 65535, .acked_peer_fin = true};
    kernel.closes.push_back(c.c2s);
    step(1);
    step(cfg.linger_s + 1);
    EXPECT_EQ(counters().flows_active, off == 1 ? 0u : 1u)
        << (off == 1 ? "the exact ack: linger, then freed" : "not the FIN's ack: closing, at its idle timer");
    step(cfg.closing_idle_s * 2 + 1);
    ASSERT_EQ(counters().flows_active, 0u);
  }
}

}  // namespace
}  // namespace syngate::test
