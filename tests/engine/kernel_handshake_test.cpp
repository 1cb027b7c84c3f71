// The backend's SYN-ACK answered by the kernel side (gateway.tc_handshake; the tc program's part
// is tests/tc/tc_synack_test.cpp): the engine offers the record for a bare cookie ACK, takes the
// program's report, withdraws the record when the client's data must wait for the backend, and
// never answers a SYN-ACK twice or sends a SYN the backend already answered.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "syngate_test/engine_harness.hpp"
#include "syngate_test/fake_kernel_side.hpp"

namespace syngate {
namespace {

using test::Bytes;
using test::Conn;
using test::EngineTest;
using test::kMs;
using test::kSecond;
using test::make;

using test::FakeKernelSide;

// What the programs record of c's connection run whole in tc after the hand-over: request,
// reply, both FINs and their acks.
static KernelFlowView closed_in_tc(const Conn& c, uint32_t request_bytes) {
  KernelFlowView v;
  v.to_server.has_record = true;
  v.to_server.sender_next = c.client_isn + 1 + request_bytes + 1;
  v.to_server.acked = c.backend_isn + 1 + 100 + 1;
  v.to_server.fin = true;
  v.to_server.fin_seq = c.client_isn + 1 + request_bytes;
  v.to_server.acked_peer_fin = true;
  v.to_client.has_record = true;
  v.to_client.sender_next = c.backend_isn + 1 + 100 + 1;
  v.to_client.acked = c.client_isn + 1 + request_bytes + 1;
  v.to_client.fin = true;
  v.to_client.fin_seq = c.backend_isn + 1 + 100;
  v.to_client.acked_peer_fin = true;
  return v;
}

class KernelHandshakeTest : public EngineTest {
 protected:
  FakeKernelSide side;
  void SetUp() override {
    EngineTest::SetUp();
    start();
    engine->set_flow_observer(&side);
    engine->set_kernel_state(&side);
  }
  void TearDown() override {
    engine->set_flow_observer(nullptr);
    engine->set_kernel_state(nullptr);
  }
  // Time enough for a flow that lingers to be freed.
  void past_the_linger() {
    for (int k = 0; k < 2; ++k) {
      now += static_cast<uint64_t>(cfg.linger_s + 1) * kSecond;
      engine->advance(now, sink);
    }
  }
  Bytes synack_for(Conn& c) {
    const test::Seen syn = open_to_backend_syn(c);
    return c.backend_synack(syn.pkt.options().has_timestamps ? syn.pkt.options().tsval : 0);
  }
  // The program answered c's SYN-ACK (the record taken, the entries written) and its report is not
  // in the ring: still being written on another CPU, or lost. Returns the SYN-ACK.
  Bytes answered_without_report(Conn& c) {
    const Bytes synack = synack_for(c);
    EXPECT_TRUE(side.take(c.c2s, synack));
    side.reports.clear();
    return synack;
  }
  // The client's first request, right behind its handshake.
  static constexpr size_t kRequestBytes = 20;
  static Bytes request(const Conn& c) {
    static const uint8_t data[kRequestBytes] = {'G', 'E', 'T'};
    SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.client_window, .options = c.client_ts_opts(1002),
                  .payload = data};
    return make(s);
  }
  // A server segment after the hand-over, as the engine translates it.
  test::Seen server_segment(const Conn& c, uint32_t tsval) {
    static const uint8_t data[100] = {};
    TcpOptions o;
    o.has_timestamps = c.client_has_ts();
    o.tsval = tsval;
    o.tsecr = 1001;
    SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::PSH, .window = 500, .options = o, .payload = data};
    Bytes b = make(s);
    sink.clear();
    const Decision d = feed(b);
    EXPECT_EQ(d.verdict, Verdict::Accept);
    return test::Seen(b);
  }
};

TEST_F(KernelHandshakeTest, AReportedHandOverEstablishesTheFlowAsTheEnginesOwnWould) {
  Conn mine = Conn::v4(41000), kernels = Conn::v4(41001);
  // The engine's own hand-over, for comparison (not offered).
  side.offer = false;
  const Bytes a = synack_for(mine);
  feed_in_slot(a);
  side.offer = true;
  const Bytes b = synack_for(kernels);
  ASSERT_EQ(side.count(kernels.c2s), 1u) << "a bare cookie ACK offers the record";
  ASSERT_TRUE(side.take(kernels.c2s, b));
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(sink.size(), 0u) << "the program sent the answers; the engine sends nothing";
  EXPECT_EQ(counters().established, 2u);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  // Both flows translate the server's segments alike (each relative to its own cookie).
  const test::Seen x = server_segment(mine, mine.backend_ts + 7);
  const test::Seen y = server_segment(kernels, kernels.backend_ts + 7);
  EXPECT_EQ(x.pkt.seq() - mine.cookie_isn, y.pkt.seq() - kernels.cookie_isn);
  EXPECT_EQ(x.pkt.options().tsval - mine.synack_tsval, y.pkt.options().tsval - kernels.synack_tsval);
  EXPECT_EQ(y.pkt.seq(), kernels.cookie_isn + 1);
  EXPECT_EQ(x.pkt.window(), y.pkt.window());
}

TEST_F(KernelHandshakeTest, ClientDataBeforeTheSynAckWithdrawsTheRecord) {
  Conn c = Conn::v4();
  const Bytes synack = synack_for(c);
  const Delivered d = feed_in_slot(request(c));
  EXPECT_EQ(d.decision.verdict, Verdict::Drop) << "held for the backend";
  EXPECT_EQ(side.withdrawals, 1);
  EXPECT_TRUE(side.records.empty()) << "withdrawn: the SYN-ACK is the engine's";
  EXPECT_FALSE(side.take(c.c2s, synack));
  const Delivered answered = feed_in_slot(synack);
  ASSERT_EQ(answered.wire.size(), 2u) << "the request to the backend and the client's window update";
  const test::Seen out(answered.wire[0]);
  EXPECT_EQ(out.pkt.payload_len(), kRequestBytes);
  EXPECT_EQ(counters().kernel_handshakes, 0u);
}

TEST_F(KernelHandshakeTest, ClientDataAfterTheKernelTookTheSynAckIsTheEstablishedFlows) {
  Conn c = Conn::v4();
  const Bytes synack = synack_for(c);
  ASSERT_TRUE(side.take(c.c2s, synack));  // the report waits in the ring: no sweep yet
  const Delivered d = feed_in_slot(request(c));
  EXPECT_EQ(d.decision.verdict, Verdict::Accept) << "translated on, not held: the backend is established";
  ASSERT_EQ(d.wire.size(), 1u);
  const test::Seen out(d.wire[0]);
  EXPECT_EQ(out.pkt.ack(), c.backend_isn + 1) << "in the backend's space";
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_EQ(counters().early_data_buffered, 0u);
}

TEST_F(KernelHandshakeTest, AnswersNoSynAckTwiceAndSendsNoSynTheBackendAnswered) {
  Conn c = Conn::v4();
  cfg.backend_retry_initial_ms = 1000;
  const Bytes synack = synack_for(c);
  ASSERT_TRUE(side.take(c.c2s, synack));
  // A copy of the SYN-ACK the program took reaches the engine before the sweep: the program
  // answered it, but the copy may be the backend's retransmission after that ACK was lost. It gets
  // the backend's ACK again and nothing else: no second window update to the client.
  const Delivered d = feed_in_slot(synack);
  EXPECT_EQ(d.decision.verdict, Verdict::Drop);
  ASSERT_EQ(d.wire.size(), 1u);
  const test::Seen again(d.wire[0]);
  EXPECT_EQ(again.pkt.tuple(), c.c2s);
  EXPECT_EQ(again.pkt.flags(), tcp_flag::ACK);
  EXPECT_EQ(again.pkt.seq(), c.client_isn + 1);
  EXPECT_EQ(again.pkt.ack(), c.backend_isn + 1);
  EXPECT_EQ(again.pkt.payload_len(), 0u);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  // Long past the SYN retry: nothing sent.
  for (int n = 0; n < 10; ++n) {
    now += kSecond;
    sink.clear();
    engine->advance(now, sink);
    EXPECT_EQ(sink.size(), 0u);
  }
  EXPECT_EQ(counters().backend_syn_retries, 0u);
  EXPECT_EQ(counters().flows_active, 1u);
}

// A SYN-ACK that reaches the engine while the program's report is on its way, but is not the one
// the program took (another ISN: forged, the client's ISN guessed), establishes the flow from the
// report and gets no ACK of its own.
TEST_F(KernelHandshakeTest, ASynAckThatIsNotTheTakenOnesCopyGetsNoAck) {
  Conn c = Conn::v4();
  ASSERT_TRUE(side.take(c.c2s, synack_for(c)));
  Conn forged = c;
  forged.backend_isn += 1000;
  const Delivered d = feed_in_slot(forged.backend_synack(0));
  EXPECT_EQ(d.decision.verdict, Verdict::Drop);
  EXPECT_TRUE(d.wire.empty());
  EXPECT_EQ(counters().kernel_handshakes, 1u) << "established by the report";
}

TEST_F(KernelHandshakeTest, TheReportComesBeforeTheSynRetry) {
  Conn c = Conn::v4();
  const Bytes synack = synack_for(c);
  ASSERT_TRUE(side.take(c.c2s, synack));
  now += 30 * kSecond;  // every retry due at once
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(sink.size(), 0u) << "no SYN for a flow the kernel side handed over";
  EXPECT_EQ(counters().backend_syn_retries, 0u);
  EXPECT_EQ(counters().established, 1u);
}

TEST_F(KernelHandshakeTest, ALostReportIsMadeUpFromTheEntriesBeforeTheSynRetry) {
  Conn c = Conn::v4();
  (void)answered_without_report(c);  // the ring was full, or a restart came between
  now += 30 * kSecond;
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(sink.size(), 0u) << "no SYN to a backend the kernel side handed over";
  EXPECT_EQ(counters().backend_syn_retries, 0u);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  const test::Seen y = server_segment(c, c.backend_ts + 7);
  EXPECT_EQ(y.pkt.seq(), c.cookie_isn + 1);
  EXPECT_EQ(y.pkt.options().tsval, c.synack_tsval + 7) << "the same offsets as the report would have given";
}

// The same, and the connection then ran whole in tc (request, reply, both FINs and their acks)
// while the engine held the flow in SynSent, with nobody to take the reports of its close. Made
// up from the entries at the retry, the flow must take those FINs too, or it is held as
// established until its idle timer, ten minutes on (a lab_soak failure showed 26 flows held so).
TEST_F(KernelHandshakeTest, ALostReportsConnectionThatClosedInTcLingersFromItsEntries) {
  Conn c = Conn::v4();
  (void)answered_without_report(c);
  side.views.emplace_back(c.c2s, closed_in_tc(c, kRequestBytes));
  now += 2 * kSecond;  // the first retry's time
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(sink.size(), 0u) << "no SYN to a backend the kernel side handed over";
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_EQ(counters().flows_active, 1u) << "lingering";
  past_the_linger();
  EXPECT_EQ(counters().flows_active, 0u) << "freed after its linger, not at the idle timer";
}

// A full ring (a flow worker that did not run for a while, a burst of closes) loses the reports
// of a connection that closed in tc: once the kernel side counts reports lost, the engine looks at
// its flows and closes that one from its entries, at the next turn. Before, it stayed established
// until its idle timer (ten minutes by default), holding its source's share.
TEST_F(KernelHandshakeTest, AFlowWhoseCloseReportsWereLostClosesOnceTheLossIsCounted) {
  Conn c = Conn::v4();
  ASSERT_TRUE(side.take(c.c2s, synack_for(c)));
  engine->take_kernel_reports(now, sink);
  ASSERT_EQ(counters().kernel_handshakes, 1u);
  side.views.emplace_back(c.c2s, closed_in_tc(c, kRequestBytes));  // no close report in the ring
  past_the_linger();
  EXPECT_EQ(counters().flows_active, 1u) << "no report, no loss counted: held as established";
  EXPECT_EQ(counters().kernel_report_sweeps, 0u);
  side.lost = 1;
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_report_sweeps, 1u);
  past_the_linger();
  EXPECT_EQ(counters().flows_active, 0u) << "closed from its entries, freed after its linger";
}

// The same for a hand-over whose report was lost: the flow is established from its entries at the
// next turn, not a second later at its SYN retry (its client's data waited for that).
TEST_F(KernelHandshakeTest, AHandOverWhoseReportWasLostIsTakenAtTheNextTurnOnceTheLossIsCounted) {
  Conn c = Conn::v4();
  (void)answered_without_report(c);
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 0u) << "nothing lost counted: the report may still come";
  side.lost = 3;
  sink.clear();
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_EQ(sink.size(), 0u) << "the program answered the SYN-ACK; the engine sends nothing";
  const test::Seen y = server_segment(c, c.backend_ts + 7);
  EXPECT_EQ(y.pkt.seq(), c.cookie_isn + 1);
  EXPECT_EQ(y.pkt.options().tsval, c.synack_tsval + 7) << "the offsets the report would have given";
  now += 30 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
}

// A sweep reads at most a slice of flows a turn (a read is a system call), sees every flow through
// however many turns that takes, and losses counted meanwhile start another sweep after it rather
// than starting this one again (a ring that keeps overflowing would otherwise never see one end).
TEST_F(KernelHandshakeTest, ASweepReadsItsFlowsInSlicesAndLossesDuringItStartAnother) {
  constexpr int kFlows = 700;  // more than a turn's reads
  cfg.max_flows = 1024;
  start();
  engine->set_flow_observer(&side);
  engine->set_kernel_state(&side);
  std::vector<Conn> conns;
  for (int k = 0; k < kFlows; ++k) {
    conns.push_back(Conn::v4(static_cast<uint16_t>(20000 + k)));
    Conn& c = conns.back();
    ASSERT_TRUE(side.take(c.c2s, synack_for(c)));
    side.views.emplace_back(c.c2s, closed_in_tc(c, kRequestBytes));
  }
  engine->take_kernel_reports(now, sink);
  ASSERT_EQ(counters().kernel_handshakes, static_cast<uint64_t>(kFlows));
  side.lost = 1;
  side.reads = 0;
  engine->take_kernel_reports(now, sink);
  EXPECT_GT(side.reads, 0);
  EXPECT_LT(side.reads, kFlows) << "one turn reads a slice, not the whole table";
  side.lost = 2;  // more lost while the sweep is under way
  for (int turn = 0; turn < 10; ++turn) engine->take_kernel_reports(now, sink);
  past_the_linger();
  EXPECT_EQ(counters().flows_active, 0u) << "the sweep saw every flow through";
  EXPECT_EQ(counters().kernel_report_sweeps, 2u) << "the loss during it started one more after it";
}

// The program claimed the record and wrote the entries; its report is not in the ring yet (it is
// being written on another CPU, or was lost). The client's data must not wait for a later batch:
// the client's next segments cross tc at once, and data held meanwhile reached the backend behind
// them with an older timestamp, which the backend refused (PAWS).
TEST_F(KernelHandshakeTest, DataForAClaimedRecordWhoseReportIsLateGoesOnByTheEntries) {
  Conn c = Conn::v4();
  (void)answered_without_report(c);
  const Delivered d = feed_in_slot(request(c));
  EXPECT_EQ(d.decision.verdict, Verdict::Accept) << "translated on at once, not held";
  ASSERT_EQ(d.wire.size(), 1u);
  const test::Seen out(d.wire[0]);
  EXPECT_EQ(out.pkt.payload_len(), kRequestBytes);
  EXPECT_EQ(out.pkt.ack(), c.backend_isn + 1) << "in the backend's space";
  EXPECT_EQ(out.pkt.seq(), c.client_isn + 1);
  EXPECT_EQ(counters().early_data_buffered, 0u);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_EQ(side.withdrawals, 1);
  now += 30 * kSecond;
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(sink.size(), 0u) << "no SYN, nothing held";
  EXPECT_EQ(counters().backend_syn_retries, 0u);
}

// The same with a backend that lacks SACK: established from the entries, the flow learnt nothing
// of the backend; the report that comes after must still teach it, or the next clients are
// promised SACK their backend refuses (uploads at 1% loss then wait for timeouts).
TEST_F(KernelHandshakeTest, AReportAfterTheEntriesStillTeachesWhatTheBackendLacks) {
  cfg.backend_facts = std::make_shared<BackendFacts>();
  start();
  engine->set_flow_observer(&side);
  engine->set_kernel_state(&side);
  Conn c = Conn::v4();
  c.backend_synack_opts.sack_permitted = false;
  const Bytes synack = synack_for(c);
  ASSERT_TRUE(side.take(c.c2s, synack));
  const KernelHandOver late = side.reports.back();
  side.reports.clear();
  EXPECT_EQ(feed_in_slot(request(c)).decision.verdict, Verdict::Accept) << "on by the entries";
  const Service service{c.c2s.dst, c.c2s.dport};
  const auto lacks_sack = [&] {
    return (cfg.backend_facts->service_flags(service, static_cast<uint32_t>(now / kMs)) & SG_SERVICE_BACKEND_LACKS_SACK) != 0;
  };
  EXPECT_FALSE(lacks_sack()) << "nothing learnt from the entries";
  side.reports.push_back(late);
  now += kMs;
  sink.clear();
  engine->advance(now, sink);
  EXPECT_TRUE(lacks_sack()) << "the late report teaches it";
  EXPECT_EQ(counters().kernel_handshakes, 1u) << "and counts no second hand-over";
  // A copy of the report (a restart's replay) changes nothing more.
  side.reports.push_back(late);
  engine->advance(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
}

// The backend's segment of the connection the program completed reaches the engine before the
// report (a segment tc punts: an option layout it cannot rewrite, say): the hand-over is taken from
// the entries and the segment translated as the established flow's. Judged in SynSent, it acks
// nothing the engine knows the client sent, and would have been reset as an older connection's.
TEST_F(KernelHandshakeTest, ABackendSegmentForAClaimedRecordWhoseReportIsLateIsTheEstablishedFlows) {
  Conn c = Conn::v4();
  (void)answered_without_report(c);
  static const uint8_t reply[5] = {'+', 'O', 'K', '\r', '\n'};
  SegmentSpec data{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1 + 100,
                   .flags = tcp_flag::ACK, .window = 500, .payload = reply};
  data.options.has_timestamps = c.client_has_ts();
  data.options.tsval = c.backend_ts + 3;
  data.options.tsecr = 1002;
  const Delivered d = feed_in_slot(make(data));
  EXPECT_EQ(d.decision.verdict, Verdict::Accept);
  for (const Bytes& b : d.wire) EXPECT_FALSE(test::Seen(b).pkt.has(tcp_flag::RST)) << "a live connection reset";
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
}

// The program claimed the record and then left the SYN-ACK to the engine (no room for the
// entries): neither report nor entries. The data is held, and the engine answers the SYN-ACK with
// it.
TEST_F(KernelHandshakeTest, DataForAClaimedRecordWithoutEntriesWaitsForTheEnginesAnswer) {
  Conn c = Conn::v4();
  const Bytes synack = answered_without_report(c);
  side.entries.clear();
  const Delivered held = feed_in_slot(request(c));
  EXPECT_EQ(held.decision.verdict, Verdict::Drop) << "held";
  EXPECT_TRUE(held.wire.empty());
  EXPECT_EQ(side.withdrawals, 1);
  const Delivered answer = feed_in_slot(synack);
  ASSERT_FALSE(answer.wire.empty()) << "the engine answers the SYN-ACK the program left";
  const auto carries_request = [&](const Bytes& b) {
    const test::Seen s(b);
    return s.pkt.tuple() == c.c2s && s.pkt.payload_len() == kRequestBytes && s.pkt.ack() == c.backend_isn + 1;
  };
  EXPECT_TRUE(std::any_of(answer.wire.begin(), answer.wire.end(), carries_request)) << "with the held request";
  EXPECT_EQ(counters().kernel_handshakes, 0u);
  EXPECT_EQ(counters().established, 1u);
}

// The client's request and its FIN, both before the backend answered (a request, then shutdown):
// the engine sends the FIN on behind the request, and the other path learns of it as of a FIN it
// saw itself, so that the client's later segments (a new connection's cookie ACK on the pair
// among them) reach the engine.
TEST_F(KernelHandshakeTest, AFinHeldBehindTheRequestIsTheOtherPathsToo) {
  for (const bool program_answers : {false, true}) {
    SCOPED_TRACE(program_answers ? "the program took the SYN-ACK, its report late" : "the engine answers");
    sink.clear();
    Conn c = Conn::v4(program_answers ? 40001 : 40000);
    const Bytes synack = synack_for(c);
    std::optional<KernelHandOver> late;
    if (program_answers) {
      ASSERT_TRUE(side.take(c.c2s, synack));
      late = side.reports.back();
      side.reports.clear();
      side.entries.clear();
    }
    feed(request(c));
    SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1 + static_cast<uint32_t>(kRequestBytes),
                    .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window,
                    .options = c.client_ts_opts(1003)};
    EXPECT_EQ(feed(make(fin)).verdict, Verdict::Drop) << "held";
    side.kept.clear();
    side.punts.clear();
    sink.clear();
    std::vector<Bytes> wire;
    if (program_answers) {
      side.reports.push_back(*late);
      engine->take_kernel_reports(now, sink);
      wire = sink.packets;
    } else {
      wire = feed_in_slot(synack).wire;
    }
    const auto fins = std::count_if(wire.begin(), wire.end(), [&](const Bytes& b) {
      const test::Seen s(b);
      return s.pkt.tuple() == c.c2s && s.pkt.has(tcp_flag::FIN) && s.pkt.seq() == fin.seq &&
             s.pkt.ack() == c.backend_isn + 1;
    });
    EXPECT_EQ(fins, 1) << "the FIN behind the request, in the backend's space";
    if (program_answers) {
      // Its entries were written without the FIN: the engine takes the flow's segments back.
      EXPECT_EQ(side.punts, std::vector<FlowTuple>{c.c2s});
    } else {
      ASSERT_EQ(side.kept.size(), 1u);
      EXPECT_TRUE(side.kept[0].second.client_fin) << "the entries carry the FIN";
      EXPECT_EQ(side.kept[0].second.client_fin_seq, fin.seq);
      EXPECT_TRUE(side.punts.empty()) << "nothing to take back: the entries were written closed";
    }
  }
  EXPECT_EQ(counters().early_fins_held, 2u);
}

// A restart between the program's answer and its report: at start the flow is established from
// its entries and the observer claims them (start reconciliation keeps claimed entries only).
TEST_F(KernelHandshakeTest, AtStartAnAnswerWhoseReportWasLostIsEstablishedAndItsEntriesKept) {
  Conn c = Conn::v4();
  (void)answered_without_report(c);
  side.kept.clear();
  engine->merge_kernel_state(now);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  ASSERT_EQ(side.kept.size(), 1u) << "the observer claims the entries";
  EXPECT_EQ(side.kept[0].first, c.c2s);
  EXPECT_TRUE(side.kept[0].second == side.entries[0].x) << "with the translation they hold";
  now += 30 * kSecond;
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
  const test::Seen y = server_segment(c, c.backend_ts + 7);
  EXPECT_EQ(y.pkt.seq(), c.cookie_isn + 1);
}

// A flow restored or imported with the mark into an engine without a kernel side (the fuzz
// harness found the crash): its segments are the engine's as before.
TEST_F(KernelHandshakeTest, AMarkedFlowWithoutAKernelSideIsTheEnginesOwn) {
  Conn c = Conn::v4();
  const Bytes synack = synack_for(c);
  engine->set_kernel_state(nullptr);
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK,
                .window = c.client_window, .options = c.client_ts_opts(1002)};
  EXPECT_EQ(feed_in_slot(make(s)).decision.verdict, Verdict::Drop);
  EXPECT_EQ(feed_in_slot(request(c)).decision.verdict, Verdict::Drop) << "held for the backend";
  const Delivered answered = feed_in_slot(synack);
  EXPECT_EQ(answered.wire.size(), 2u) << "the request to the backend and the client's window update";
  now += 30 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 0u);
}

TEST_F(KernelHandshakeTest, OnlyABareCookieAckIsOffered) {
  Conn c = Conn::v4();
  static const uint8_t request[8] = {'G', 'E', 'T'};
  (void)open_to_backend_syn(c, request);
  EXPECT_TRUE(side.records.empty()) << "the SYN-ACK of a flow with early data is the engine's";
}


// ---- flows the kernel side opened from the client's cookie ACK (sg_tc_cookie_ack; the program's
// part is tests/tc/tc_cookie_ack_test.cpp) ---------------------------------------------------------

class KernelOpenedTest : public KernelHandshakeTest {
 protected:
  // The program opened c's flow from its cookie ACK (the engine never saw the ACK); its report
  // waits for the engine's next turn. Returns the ACK.
  // A connection the engine carried whole (no record offered) and closed both ways: it lingers.
  Conn lingering_connection(uint16_t port) {
    Conn c = Conn::v4(port);
    side.offer = false;
    establish(c);
    close_both_ways(c);
    side.offer = true;
    return c;
  }
  // The client's next connection on `previous`'s pair (its port reused), opened by the program
  // over the previous flow's closed entries.
  Conn opened_over_closed(const Conn& previous) {
    Conn next = previous;
    next.client_isn = previous.client_isn + 100000;
    learn_cookie(next);
    side.open(next.third_ack(), 1460, false, cfg.announced_wscale, /*over_closed=*/true);
    return next;
  }
  Bytes opened_by_kernel(Conn& c, uint16_t mss = 1460, bool room = false) {
    learn_cookie(c);
    const Bytes ack = c.third_ack();
    side.open(ack, mss, room, cfg.announced_wscale);
    return ack;
  }
  // The backend's SYN as the engine sends it for c's handshake (backend_syn_spec.h).
  Bytes backend_syn(const Conn& c, uint16_t mss, bool room) {
    Bytes ack = c.third_ack();
    ParseResult r = parse_tcp_packet(ack);
    const TcpOptions& o = r.packet.options();
    const sg_cookie_ack a{r.packet.seq(), r.packet.ack(), o.has_timestamps ? o.tsval : 0u,
                          o.has_timestamps ? o.tsecr : 0u, r.packet.window(), o.has_timestamps, 0};
    sg_handshake h;
    sg_handshake_of_cookie_ack(&a, cfg.announced_wscale, &h);
    sg_backend_syn s;
    sg_backend_syn_of(&h, mss, room, &s);
    Bytes out(128);
    out.resize(build_backend_syn(out, c.c2s, s));
    return out;
  }
  // The client's FIN, the server's, their acks, through the engine: the flow lingers.
  void close_both_ways(const Conn& c) {
    SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                    .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window,
                    .options = c.client_ts_opts(1003)};
    feed(make(fin));
    SegmentSpec sfin{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 2,
                     .flags = tcp_flag::ACK | tcp_flag::FIN, .window = 500};
    sfin.options.has_timestamps = true;
    sfin.options.tsval = c.backend_ts + 10;
    sfin.options.tsecr = 1003;
    feed(make(sfin));
    SegmentSpec last{.tuple = c.c2s, .seq = c.client_isn + 2, .ack = c.cookie_isn + 2,
                     .flags = tcp_flag::ACK, .window = c.client_window, .options = c.client_ts_opts(1004)};
    feed(make(last));
  }
  void restart_engine() {
    engine->set_flow_observer(nullptr);
    engine->set_kernel_state(nullptr);
    engine.reset();
    start();
    engine->set_flow_observer(&side);
    engine->set_kernel_state(&side);
  }
};

TEST_F(KernelOpenedTest, TheEngineHoldsTheFlowAsIfItHadSentTheSyn) {
  Conn c = Conn::v4(42000);
  opened_by_kernel(c);
  sink.clear();
  engine->take_kernel_reports(now, sink);  // the flow worker's turn
  EXPECT_EQ(counters().kernel_opened, 1u);
  EXPECT_EQ(counters().flows_created, 1u);
  EXPECT_EQ(counters().backend_syns_sent, 0u);
  EXPECT_TRUE(sink.packets.empty()) << "the program sent the SYN";
  // The program answers the backend's SYN-ACK from its record: the flow is established by the
  // report, and no SYN is sent again.
  ASSERT_TRUE(side.take(c.c2s, c.backend_synack(1001)));
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_EQ(counters().established, 1u);
  now += 10 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
  EXPECT_TRUE(sink.packets.empty());
}

TEST_F(KernelOpenedTest, TheSynItSentIsRetriedAsTheEngineSendsIt) {
  for (const bool room : {false, true}) {
    SCOPED_TRACE(room ? "room for supplied timestamps" : "no room");
    Conn c = Conn::v4(room ? 42011 : 42010);
    opened_by_kernel(c, 1260, room);
    engine->take_kernel_reports(now, sink);
    sink.clear();
    now += cfg.backend_retry_initial_ms * kMs + kMs;
    engine->advance(now, sink);
    ASSERT_EQ(sink.size(), 1u) << "no SYN retry";
    EXPECT_EQ(sink.packets[0], backend_syn(c, 1260, room));
    sink.clear();
  }
}

// The client's request reaches the engine before the program's report: the report is taken
// first, the request is the opened flow's (held, the record withdrawn), and its cookie opens no
// second flow.
TEST_F(KernelOpenedTest, ClientDataBeforeTheReportIsTheOpenedFlows) {
  Conn c = Conn::v4(42020);
  opened_by_kernel(c);
  const Delivered d = feed_in_slot(request(c));
  EXPECT_EQ(d.decision.verdict, Verdict::Drop) << "held for the backend";
  EXPECT_TRUE(d.wire.empty()) << "a second SYN left";
  EXPECT_EQ(counters().flows_created, 1u);
  EXPECT_EQ(counters().backend_syns_sent, 0u);
  EXPECT_EQ(counters().early_data_buffered, 1u);
  EXPECT_EQ(side.count(c.c2s), 0u) << "the record was not withdrawn";
  // The SYN-ACK is then the engine's: its ACK carries the request, then the client's window.
  const Delivered a = feed_in_slot(c.backend_synack(1001));
  ASSERT_EQ(a.wire.size(), 2u);
  const test::Seen ack(a.wire[0]);
  EXPECT_EQ(ack.pkt.payload_len(), kRequestBytes);
  EXPECT_EQ(ack.pkt.seq(), c.client_isn + 1);
}

// The engine judges the source's limits and the table's room late, and undoes what it refuses:
// the record withdrawn, entries discarded, the backend's half-open connection and the client reset.
TEST_F(KernelOpenedTest, AFlowTheSourceMayNotOpenIsUndone) {
  cfg.max_flows_per_source = 1;
  restart_engine();
  Conn first = Conn::v4(42030), second = Conn::v4(42031);
  side.offer = false;
  establish(first);
  side.offer = true;
  opened_by_kernel(second);
  sink.clear();
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_opened_refused, 1u);
  EXPECT_EQ(counters().flows_refused, 1u);
  EXPECT_EQ(side.count(second.c2s), 0u) << "the record stands";
  ASSERT_EQ(side.discarded.size(), 1u);
  EXPECT_EQ(side.discarded[0], second.c2s);
  ASSERT_EQ(sink.size(), 2u);
  const test::Seen to_backend(sink.packets[0]), to_client(sink.packets[1]);
  EXPECT_EQ(to_backend.pkt.tuple(), second.c2s);
  EXPECT_EQ(to_backend.pkt.flags(), tcp_flag::RST);
  EXPECT_EQ(to_backend.pkt.seq(), second.client_isn + 1);
  EXPECT_EQ(to_client.pkt.tuple(), second.c2s.reversed());
  EXPECT_TRUE(to_client.pkt.flags() & tcp_flag::RST);
  EXPECT_EQ(to_client.pkt.seq(), second.cookie_isn + 1);
  EXPECT_EQ(to_client.pkt.ack(), second.client_isn + 1);
}

// The engine opened the flow too (a copy of the ACK reached it first, offered nothing): the
// program's record stands and its answer establishes the flow, which sends no SYN again.
TEST_F(KernelOpenedTest, AFlowBothOpenedIsOne) {
  Conn c = Conn::v4(42040);
  side.offer = false;
  const test::Seen syn = open_to_backend_syn(c);
  side.offer = true;
  side.open(c.third_ack(), 1460, false, cfg.announced_wscale);
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().flows_created, 1u);
  EXPECT_EQ(counters().kernel_opened_refused, 0u);
  ASSERT_TRUE(side.take(c.c2s, c.backend_synack(syn.pkt.options().tsval)));
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  sink.clear();
  now += 10 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
}

// The programs may carry a whole connection before the engine looks: its close, reported while
// the flow waits for its hand-over report, is merged once that report has established it, never
// dropped (the flow would hold its source's share until its idle timeout).
TEST_F(KernelOpenedTest, AClosedWhileSynSentIsMergedAfterTheHandOver) {
  Conn c = Conn::v4(42060);
  opened_by_kernel(c);
  engine->take_kernel_reports(now, sink);
  side.closing.push_back(KernelClose{c.c2s, side.generation});
  now += 200 * kMs;
  engine->advance(now, sink);
  ASSERT_EQ(side.closing.size(), 1u) << "the close of a flow in SynSent was taken (and lost)";
  ASSERT_TRUE(side.take(c.c2s, c.backend_synack(1001)));
  now += 200 * kMs;
  engine->advance(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_TRUE(side.closing.empty()) << "the close was not taken once the flow was established";
}

// A new connection on a pair whose old one lingers: the old flow goes, as for a cookie ACK the
// engine takes; on a pair whose connection is established, the program's SYN met the backend's
// connection and the flow is refused.
TEST_F(KernelOpenedTest, APairInUse) {
  Conn old = lingering_connection(42050);
  Conn reuse = old;
  reuse.client_isn = old.client_isn + 100000;
  opened_by_kernel(reuse);
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().flows_reused, 1u);
  EXPECT_EQ(counters().kernel_opened_refused, 0u);
  ASSERT_TRUE(side.take(reuse.c2s, reuse.backend_synack(1001)));
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);

  // Established: another cookie ACK opened on the pair is refused.
  Conn again = reuse;
  again.client_isn += 100000;
  opened_by_kernel(again);
  sink.clear();
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_opened_refused, 1u);
  EXPECT_EQ(counters().drop(DropReason::PairInUse), 1u);
  EXPECT_EQ(sink.size(), 2u);
}

// The programs carried a connection whole (open, hand-over, close) and then opened the client's
// next one on the same pair, all since the engine's last turn: the turn takes the opens first, and
// the earlier flow must not still count as a handshake in progress then (the pair in use: both
// ends of the new connection reset; seen with ab at ~10k connections/s and the shipped linger).
TEST_F(KernelOpenedTest, AConnectionCarriedWholeWithinOneTurnLeavesItsPairToTheNext) {
  for (const bool lost : {false, true}) {
    // Lost: the first connection's report never comes (the ring full while the flow worker waited
    // for a CPU, EVENT_LOST), and its flow is still SynSent when the next connection on the pair
    // is opened over its closed entries. Refused, both ends of the new connection were reset, and
    // with it every later reuse of the port.
    SCOPED_TRACE(lost ? "its report lost" : "its report behind the next open");
    const EngineCounters before = counters();
    Conn first = Conn::v4(lost ? 42120 : 42110);
    opened_by_kernel(first);
    ASSERT_TRUE(side.take(first.c2s, first.backend_synack(1001)));
    if (lost) side.reports.clear();
    Conn next = opened_over_closed(first);
    sink.clear();
    engine->take_kernel_reports(now, sink);
    EXPECT_EQ(counters().kernel_opened - before.kernel_opened, 2u);
    EXPECT_EQ(counters().kernel_opened_refused, 0u);
    EXPECT_EQ(counters().drop(DropReason::PairInUse), 0u);
    EXPECT_EQ(counters().flows_reused - before.flows_reused, 1u);
    EXPECT_TRUE(sink.packets.empty()) << "nothing reset";
    EXPECT_EQ(counters().kernel_handshakes - before.kernel_handshakes, lost ? 0u : 1u)
        << "the first connection's hand-over, taken before the open";
    ASSERT_TRUE(side.take(next.c2s, next.backend_synack(1001)));
    engine->take_kernel_reports(now, sink);
    EXPECT_EQ(counters().kernel_handshakes - before.kernel_handshakes, lost ? 1u : 2u);
    EXPECT_EQ(counters().established - before.established, lost ? 1u : 2u);
    EXPECT_EQ(counters().flows_active - before.flows_active, 1u);
  }
}


// A turn takes its opens, and the first of them may look for hand-over reports (an open over a
// pair whose flow is still SynSent) before a later one of the same turn is in the table: the
// later flow's report, drained meanwhile, belongs to no flow yet. Its pair still held the
// previous connection (lingering), and the report was taken for that one, found not to answer
// it, and dropped: the flow stayed SynSent, and the next connection on its port was refused
// (pair_in_use, both ends reset; the churn test beside a flood, 87 refusals).
TEST_F(KernelOpenedTest, AHandOverReportWaitsForItsFlowsOpen) {
  Conn lingering = lingering_connection(42140);
  Conn other_old = Conn::v4(42141);
  opened_by_kernel(other_old);
  engine->take_kernel_reports(now, sink);  // SynSent, its SYN-ACK the program's to answer
  // In one turn: an open over other_old's pair (which looks for hand-over reports first), then
  // the lingering flow's next connection, opened and answered in tc.
  opened_over_closed(other_old);
  Conn next = opened_over_closed(lingering);
  ASSERT_TRUE(side.take(next.c2s, next.backend_synack(1001)));
  sink.clear();
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u) << "next's report was not taken";
  EXPECT_EQ(counters().drop(DropReason::PairInUse), 0u);
  // The connection after it on the same port opens over its closed entries.
  opened_over_closed(next);
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().drop(DropReason::PairInUse), 0u);
  EXPECT_EQ(counters().flows_reused, 3u) << "lingering by next, other_old by other, next by after";
}

// The same for a close report: it carries its entries' generation, and one drained while the table
// still holds the pair's previous connection (the new one's open taken from the kernel side but
// not yet in the table: a turn's opens that make room in a full table merge closes meanwhile)
// waits for its own flow. Taken by the previous connection, it was lost, and the new flow held as
// established until its idle timer.
TEST_F(KernelOpenedTest, ACloseReportWaitsForItsFlowsOpen) {
  Conn previous = lingering_connection(42150);
  const uint32_t next_generation = side.generation + 1;  // the number the program gives the next open
  side.closing.push_back(KernelClose{previous.c2s, next_generation});
  engine->take_kernel_reports(now, sink);
  ASSERT_EQ(side.closing.size(), 1u) << "taken by the previous connection on the pair";
  Conn next = opened_over_closed(previous);
  ASSERT_TRUE(side.take(next.c2s, next.backend_synack(1001)));
  side.views.emplace_back(next.c2s, closed_in_tc(next, 0));
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_TRUE(side.closing.empty()) << "taken by its own flow";
  past_the_linger();
  EXPECT_EQ(counters().flows_active, 0u) << "closed from the report, freed after its linger";
}

// A flow both paths opened carries the later of their two numbers, and its entries may carry the
// earlier one (the engine's record, written over the program's): a close report with a number
// older than the flow's is still the flow's own.
TEST_F(KernelOpenedTest, ACloseReportWithTheOlderOfAFlowsTwoNumbersIsItsOwn) {
  Conn c = Conn::v4(42160);
  opened_by_kernel(c);
  engine->take_kernel_reports(now, sink);
  ASSERT_TRUE(side.take(c.c2s, c.backend_synack(1001)));
  side.views.emplace_back(c.c2s, closed_in_tc(c, 0));
  side.closing.push_back(KernelClose{c.c2s, side.generation - 1});
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
  EXPECT_TRUE(side.closing.empty()) << "left to expire, the flow held until its idle timer";
  past_the_linger();
  EXPECT_EQ(counters().flows_active, 0u);
}

// A connection opened over its port's previous connection's closed entries, whose backend has not
// answered by the SYN retry (a backend dropping SYNs from a full backlog): the entries on the pair
// are still the previous connection's, and made up into this flow's hand-over they left it
// established with another connection's offsets, its backend never sent the SYN again.
TEST_F(KernelOpenedTest, ASynRetryIsNotMadeUpFromThePreviousConnectionsEntries) {
  Conn previous = lingering_connection(42150);
  FlowTranslation theirs;
  theirs.delta = 0x5000;
  side.entries.push_back({previous.c2s, theirs, /*generation=*/1, /*closed=*/true});
  opened_over_closed(previous);
  engine->take_kernel_reports(now, sink);
  ASSERT_EQ(counters().flows_reused, 1u);
  const uint64_t established = counters().established;
  now += 2 * static_cast<uint64_t>(cfg.backend_retry_initial_ms) * kMs;
  sink.clear();
  engine->advance(now, sink);
  EXPECT_EQ(counters().backend_syn_retries, 1u) << "the backend never got the SYN again";
  EXPECT_EQ(counters().established, established) << "established from another connection's entries";
  EXPECT_EQ(counters().kernel_handshakes, 0u);
}

// A SynSent flow whose SYN-ACK the engine answers itself (its record withdrawn: the client's data
// went to the engine) is the client's until its RST says otherwise: an open over closed entries
// (an older flow's) is still refused there.
TEST_F(KernelOpenedTest, AnOpenBesideAHandshakeTheEngineHoldsIsRefused) {
  Conn first = Conn::v4(42130);
  opened_by_kernel(first);
  feed(request(first));  // withdraws the record: the SYN-ACK is the engine's
  ASSERT_EQ(side.withdrawals, 1);
  opened_over_closed(first);
  sink.clear();
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().drop(DropReason::PairInUse), 1u);
  EXPECT_EQ(counters().flows_reused, 0u);
}

// The programs open over a pair's entries once they recorded its close, and the close may still
// be on its way to the engine (opens are taken before closes): a flow established in the
// engine's view, opened over as closed, is client port reuse, not a pair in use. Nothing is reset.
TEST_F(KernelOpenedTest, AnOpenOverEntriesTheProgramsSawCloseIsPortReuse) {
  Conn old = Conn::v4(42080);
  side.offer = false;
  establish(old);
  side.offer = true;
  Conn reuse = opened_over_closed(old);
  sink.clear();
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().flows_reused, 1u);
  EXPECT_EQ(counters().kernel_opened_refused, 0u);
  EXPECT_EQ(counters().drop(DropReason::PairInUse), 0u);
  EXPECT_TRUE(sink.packets.empty()) << "a reset or a SYN left";
  EXPECT_EQ(side.count(reuse.c2s), 1u) << "the program's record was withdrawn";
  ASSERT_TRUE(side.take(reuse.c2s, reuse.backend_synack(1001)));
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_handshakes, 1u);
}

// The report of a flow the engine opened too and then took further alone: the client's request,
// sent by its process on another CPU, overtook the program's report (the program's vCPU paused
// between its record and its report) and the engine opened the connection from it, answered the
// SYN-ACK, maybe carried it to its end. The report is the same connection, late: nothing is
// refused or reset, the program's record goes.
TEST_F(KernelOpenedTest, ALateReportOfAConnectionTheEngineTookFurtherResetsNothing) {
  for (const bool ended : {false, true}) {
    SCOPED_TRACE(ended ? "the connection ended (linger)" : "established");
    Conn c = Conn::v4(ended ? 42071 : 42070);
    side.offer = false;
    establish(c);
    if (ended) close_both_ways(c);
    side.offer = true;
    const uint64_t refused = counters().kernel_opened_refused;
    const uint64_t active = counters().flows_active;
    side.open(c.third_ack(), 1460, false, cfg.announced_wscale);  // the report, late
    sink.clear();
    engine->take_kernel_reports(now, sink);
    EXPECT_EQ(counters().kernel_opened_refused, refused);
    EXPECT_TRUE(sink.packets.empty()) << "a reset or a SYN left";
    EXPECT_EQ(side.count(c.c2s), 0u) << "the program's record stands";
    EXPECT_TRUE(side.discarded.empty()) << "the flow's entries were discarded";
    EXPECT_EQ(counters().flows_active, active);
  }
}

// Each flow releases what it was numbered: the program's number for a flow it opened, one of the
// engine's own for a flow the engine opened (the number its record went out with), so that freeing
// an old flow on a reused pair leaves what the newer connection wrote (tc_abi.h, sg_tc_release).
TEST_F(KernelOpenedTest, EachFlowReleasesByItsOwnNumber) {
  Conn old = Conn::v4(42090);
  const test::Seen syn = open_to_backend_syn(old);
  ASSERT_EQ(side.offered.size(), 1u);
  const uint32_t engines = side.offered[0].second;
  EXPECT_NE(engines, 0u);
  ASSERT_TRUE(side.take(old.c2s, old.backend_synack(syn.pkt.options().tsval)));
  engine->take_kernel_reports(now, sink);
  close_both_ways(old);

  Conn reuse = opened_over_closed(old);
  const uint32_t programs = side.generation;
  EXPECT_TRUE(sg_seq_after(programs, engines));
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().flows_reused, 1u);
  ASSERT_EQ(side.freed.size(), 1u);
  EXPECT_EQ(side.freed[0], std::make_pair(old.c2s, engines)) << "the old flow released by another number";

  // Refused (the pair in use): the program's flow is undone by its own number.
  ASSERT_TRUE(side.take(reuse.c2s, reuse.backend_synack(1001)));
  engine->take_kernel_reports(now, sink);
  Conn again = reuse;
  again.client_isn += 100000;
  opened_by_kernel(again);
  engine->take_kernel_reports(now, sink);
  EXPECT_EQ(counters().kernel_opened_refused, 1u);
  ASSERT_EQ(side.discards.size(), 1u);
  EXPECT_EQ(side.discards[0], std::make_pair(again.c2s, side.generation));

  // The established reuse ends at its idle timer: released by the program's number.
  now += 3600 * kSecond;
  engine->advance(now, sink);
  ASSERT_EQ(side.freed.size(), 2u);
  EXPECT_EQ(side.freed[1], std::make_pair(reuse.c2s, programs));
}

// A restored table's flows keep the numbers their entries carry (a flow the programs opened after
// the save has a later one, and a restored flow freed as port reuse must leave it), and every
// number given from then on comes after theirs, whatever the maps held.
// The backend still holds an older connection on the pair and answers the program's SYN with an
// ACK of it, before the engine has taken the open: the open is taken, the record withdrawn (the
// backend gave no SYN-ACK), the older connection reset and the SYN sent again; the SYN-ACK to it is
// then the engine's.
TEST_F(KernelOpenedTest, AnOlderConnectionsAckToTheProgramsSynIsResetAndTheSynSentAgain) {
  Conn c = Conn::v4(42100);
  opened_by_kernel(c);
  const uint32_t old_ack = c.client_isn + 0x40000000u;
  SegmentSpec stale{.tuple = c.c2s.reversed(), .seq = 777, .ack = old_ack, .flags = tcp_flag::ACK, .window = 500};
  sink.clear();
  EXPECT_EQ(feed(make(stale)).verdict, Verdict::Drop);
  EXPECT_EQ(counters().kernel_opened, 1u) << "the open taken first";
  EXPECT_EQ(side.count(c.c2s), 0u) << "the record withdrawn";
  ASSERT_EQ(sink.size(), 2u);
  const test::Seen r(sink.packets[0]);
  EXPECT_EQ(r.pkt.tuple(), c.c2s);
  EXPECT_EQ(r.pkt.flags(), tcp_flag::RST);
  EXPECT_EQ(r.pkt.seq(), old_ack);
  EXPECT_EQ(sink.packets[1], backend_syn(c, 1460, false)) << "the program's SYN again";
  sink.clear();
  const Delivered a = feed_in_slot(c.backend_synack(1001));
  EXPECT_EQ(counters().established, 1u);
  for (const Bytes& b : a.wire) EXPECT_FALSE(test::Seen(b).pkt.has(tcp_flag::RST));
}

TEST_F(KernelOpenedTest, ARestoredFlowKeepsItsNumberAndLaterOnesComeAfter) {
  Conn c = Conn::v4(42091);
  side.offer = false;
  establish(c);
  const uint32_t restored = side.generation;
  engine->set_kernel_state(nullptr);
  side.generation = 7;  // the maps held less than the restored flow's number
  engine->set_kernel_state(&side);
  EXPECT_EQ(side.generation, restored) << "the counter did not move past the restored flow's number";
  Conn later = Conn::v4(42093);
  opened_by_kernel(later);
  EXPECT_TRUE(sg_seq_after(side.generation, restored));
  now += 3600 * kSecond;
  engine->advance(now, sink);
  ASSERT_FALSE(side.freed.empty());
  EXPECT_EQ(side.freed[0], std::make_pair(c.c2s, restored)) << "the restored flow was renumbered";
}

}  // namespace
}  // namespace syngate
