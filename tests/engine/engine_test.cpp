#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include <random>

#include "syngate_test/engine_harness.hpp"
#include "syngate/checksum.hpp"

namespace syngate::test {
namespace {

// Views only: pass string literals or strings that outlive the packet being built.
std::span<const uint8_t> text(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// ---- SYN -----------------------------------------------------------------------------------

TEST_F(EngineTest, SynIsAnsweredWithCookieAndKeepsNoState) {
  Conn c = Conn::v4();
  Decision d = feed(c.syn());
  EXPECT_EQ(d.verdict, Verdict::Drop);
  ASSERT_EQ(sink.size(), 1u);
  Seen sa(sink.packets[0]);
  EXPECT_TRUE(sa.pkt.has(tcp_flag::SYN | tcp_flag::ACK));
  EXPECT_EQ(sa.pkt.tuple(), c.c2s.reversed());
  EXPECT_EQ(sa.pkt.ack(), c.client_isn + 1);
  EXPECT_GT(sa.pkt.window(), 0) << "a zero window would make the client wait";
  EXPECT_EQ(sa.pkt.window(), cfg.synack_window);
  const TcpOptions& o = sa.pkt.options();
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, cfg.announced_mss_v4);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_TRUE(o.has_wscale);
  EXPECT_EQ(o.wscale, cfg.announced_wscale);
  ASSERT_TRUE(o.has_timestamps);
  EXPECT_EQ(o.tsecr, c.client_ts);
  EXPECT_EQ(counters().flows_active, 0u);
  EXPECT_EQ(counters().cookies_sent, 1u);
  EXPECT_EQ(counters().drop(DropReason::SynAnswered), 1u);
}

// synack_window = 0 (kernel SYNPROXY's way): the client may send nothing before the backend has
// answered, and the window update sent with the backend's answer opens its window.
TEST_F(EngineTest, AZeroSynAckWindowIsOpenedByTheBackendsAnswer) {
  cfg.synack_window = 0;
  Conn c = Conn::v4();
  EXPECT_EQ(learn_cookie(c).pkt.window(), 0);
  int updates = 0;
  for (const Seen& s : establish(c)) {
    if (s.pkt.tuple() != c.c2s.reversed()) continue;
    ++updates;
    EXPECT_GT(s.pkt.window(), 0) << "the client's window stays shut";
  }
  EXPECT_EQ(updates, 1) << "no window update to the client";
}

TEST_F(EngineTest, RetransmittedSynGetsTheSameAnswer) {
  Conn c = Conn::v4();
  feed(c.syn());
  now += 3 * kSecond;  // a typical SYN retransmission interval
  feed(c.syn());
  ASSERT_EQ(sink.size(), 2u);
  Seen a(sink.packets[0]), b(sink.packets[1]);
  EXPECT_EQ(a.pkt.seq(), b.pkt.seq());
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(EngineTest, SynWithoutTimestampsOffersOnlyMss) {
  Conn c = Conn::v4();
  c.client_syn_opts.has_timestamps = false;
  feed(c.syn());
  ASSERT_EQ(sink.size(), 1u);
  Seen sa(sink.packets[0]);
  EXPECT_TRUE(sa.pkt.options().has_mss);
  EXPECT_FALSE(sa.pkt.options().has_wscale);
  EXPECT_FALSE(sa.pkt.options().sack_permitted);
  EXPECT_FALSE(sa.pkt.options().has_timestamps);
}

TEST_F(EngineTest, ImpossibleSynFlagsAreDropped) {
  Conn c = Conn::v4();
  Bytes b = c.syn();
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  const size_t flags_at = r.packet.tcp_offset() + 13;
  b[flags_at] = tcp_flag::SYN | tcp_flag::RST;
  r.packet.recompute_checksum();
  EXPECT_EQ(feed(b).verdict, Verdict::Drop);
  EXPECT_EQ(sink.size(), 0u);
  EXPECT_EQ(counters().drop(DropReason::InvalidFlags), 1u);
}

// ---- cookie ACK ------------------------------------------------------------------------------

TEST_F(EngineTest, ValidCookieAckOpensBackendConnection) {
  Conn c = Conn::v4();
  Seen syn = open_to_backend_syn(c);
  EXPECT_TRUE(syn.pkt.has(tcp_flag::SYN));
  EXPECT_FALSE(syn.pkt.has(tcp_flag::ACK));
  EXPECT_EQ(syn.pkt.tuple(), c.c2s) << "the backend must see the client's own address";
  EXPECT_EQ(syn.pkt.seq(), c.client_isn);
  const TcpOptions& o = syn.pkt.options();
  // The client's 1460 less the room for the timestamps syngate adds if this backend, not heard
  // from yet, turns out not to send them (BackendWithoutTimestamps below).
  EXPECT_EQ(o.mss, 1460 - 12);
  EXPECT_TRUE(o.has_wscale);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_TRUE(o.sack_permitted);
  ASSERT_TRUE(o.has_timestamps);
  EXPECT_EQ(o.tsval, 1001u) << "the backend SYN carries the client's current TSval";
  EXPECT_EQ(syn.pkt.window(), std::min(0xffff, c.client_window << 7));
  EXPECT_EQ(counters().flows_active, 1u);
  EXPECT_EQ(counters().cookies_valid, 1u);
  EXPECT_EQ(counters().backend_syns_sent, 1u);
}

// The two answers that go the way their packet went take its place in the verdict: a send fewer
// on each of a new connection's two wake-ups of the daemon.
TEST_F(EngineTest, BareCookieAckBecomesTheBackendSynInItsVerdict) {
  for (Conn c : {Conn::v4(), Conn::v6()}) {
    learn_cookie(c);
    const Bytes ack = c.third_ack();
    const Delivered d = feed_in_slot(ack);
    EXPECT_EQ(d.decision.verdict, Verdict::Accept);
    EXPECT_TRUE(d.decision.modified);
    ASSERT_EQ(d.wire.size(), 1u) << "nothing sent: the SYN is the verdict's packet";
    const Seen syn(d.wire[0]);
    EXPECT_EQ(d.decision.length, d.wire[0].size());
    EXPECT_NE(d.decision.length, ack.size()) << "a SYN's options are longer than the ACK's";
    EXPECT_TRUE(syn.pkt.has(tcp_flag::SYN));
    EXPECT_FALSE(syn.pkt.has(tcp_flag::ACK));
    EXPECT_EQ(syn.pkt.tuple(), c.c2s);
    EXPECT_EQ(syn.pkt.seq(), c.client_isn);
    EXPECT_TRUE(syn.pkt.options().has_mss);
  }
  EXPECT_EQ(counters().backend_syns_sent, 2u);
}

TEST_F(EngineTest, CookieAckCarryingDataStaysDroppedAndTheSynIsSent) {
  Conn c = Conn::v4();
  learn_cookie(c);
  const std::vector<uint8_t> request(100, 'g');
  const Delivered d = feed_in_slot(c.third_ack(request));
  EXPECT_EQ(d.decision.verdict, Verdict::Drop) << "its payload is the engine's to hand on";
  ASSERT_EQ(d.wire.size(), 1u);
  const Seen syn(d.wire[0]);
  EXPECT_TRUE(syn.pkt.has(tcp_flag::SYN));
  EXPECT_EQ(syn.pkt.payload_len(), 0u);
  EXPECT_EQ(counters().early_data_buffered, 1u);
}

TEST_F(EngineTest, BackendSynAckBecomesTheClientWindowUpdateInItsVerdict) {
  Conn c = Conn::v4();
  const Seen syn = open_to_backend_syn(c);
  const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
  EXPECT_EQ(d.decision.verdict, Verdict::Accept);
  EXPECT_TRUE(d.decision.modified);
  ASSERT_EQ(d.wire.size(), 2u);
  const Seen to_backend(d.wire[0]);  // sent: it goes against the SYN-ACK's way
  EXPECT_EQ(to_backend.pkt.tuple(), c.c2s);
  EXPECT_EQ(to_backend.pkt.flags(), tcp_flag::ACK);
  EXPECT_EQ(to_backend.pkt.ack(), c.backend_isn + 1);
  const Seen update(d.wire[1]);  // the verdict's packet
  EXPECT_EQ(update.pkt.tuple(), c.c2s.reversed());
  EXPECT_EQ(update.pkt.flags(), tcp_flag::ACK);
  EXPECT_EQ(update.pkt.seq(), c.cookie_isn + 1) << "in the client's space";
  EXPECT_EQ(update.pkt.ack(), c.client_isn + 1);
  EXPECT_EQ(counters().drop(DropReason::BackendSynAckConsumed), 1u) << "consumed: it is not passed on";
  EXPECT_EQ(counters().established, 1u);
}

// A packet without room behind it (a caller that gives none) cannot become a longer one: what the
// engine builds is sent instead. The SYN-ACK's own bytes always hold the shorter window update.
TEST_F(EngineTest, WithoutRoomInTheSlotTheBackendSynIsSent) {
  for (Conn c : {Conn::v4(), Conn::v6()}) {
    learn_cookie(c);
    Bytes ack = c.third_ack();
    const Decision d = engine->process(ack, now, sink, true, ack.size());
    EXPECT_EQ(d.verdict, Verdict::Drop);
    ASSERT_EQ(sink.size(), 1u);
    const Seen syn(sink.packets[0]);
    EXPECT_TRUE(syn.pkt.has(tcp_flag::SYN));
    EXPECT_EQ(syn.pkt.tuple(), c.c2s);
    sink.clear();
  }
}

TEST_F(EngineTest, ForgedCookieAckIsDroppedAndCounted) {
  Conn c = Conn::v4();
  learn_cookie(c);
  c.cookie_isn ^= 0x00010000;  // one hash bit off
  EXPECT_EQ(feed(c.third_ack()).verdict, Verdict::Drop);
  EXPECT_EQ(sink.size(), 0u);
  EXPECT_EQ(counters().cookies_invalid, 1u);
  EXPECT_EQ(counters().drop(DropReason::CookieInvalid), 1u);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(EngineTest, ExpiredCookieIsRejected) {
  Conn c = Conn::v4();
  learn_cookie(c);
  now += 5 * kCookieTickNs;
  feed(c.third_ack());
  EXPECT_EQ(sink.size(), 0u);
  EXPECT_EQ(counters().cookies_invalid, 1u);
}

TEST_F(EngineTest, AckFromAnotherTupleDoesNotValidate) {
  Conn c = Conn::v4();
  learn_cookie(c);
  Conn other = Conn::v4(40001);
  other.cookie_isn = c.cookie_isn;
  other.synack_tsval = c.synack_tsval;
  feed(other.third_ack());
  EXPECT_EQ(sink.size(), 0u);
  EXPECT_EQ(counters().cookies_invalid, 1u);
}

// ---- backend SYN-ACK ---------------------------------------------------------------------------

TEST_F(EngineTest, BackendSynAckIsAckedWithTheBackendsOwnTimestamp) {
  Conn c = Conn::v4();
  std::vector<Seen> out = establish(c);
  ASSERT_EQ(out.size(), 2u);
  const Seen& ack = out[0];
  EXPECT_EQ(ack.pkt.tuple(), c.c2s);
  EXPECT_EQ(ack.pkt.flags(), tcp_flag::ACK);
  EXPECT_EQ(ack.pkt.seq(), c.client_isn + 1);
  EXPECT_EQ(ack.pkt.ack(), c.backend_isn + 1);
  ASSERT_TRUE(ack.pkt.options().has_timestamps);
  // Kernel SYNPROXY gets this wrong and the backend then ignores the ACK (TSEcrRejected).
  EXPECT_EQ(ack.pkt.options().tsecr, c.backend_ts);
  EXPECT_EQ(ack.pkt.options().tsval, 1001u);

  const Seen& upd = out[1];
  EXPECT_EQ(upd.pkt.tuple(), c.c2s.reversed());
  EXPECT_EQ(upd.pkt.seq(), c.cookie_isn + 1);
  EXPECT_EQ(upd.pkt.ack(), c.client_isn + 1);
  EXPECT_EQ(upd.pkt.window(), 65160 >> cfg.announced_wscale);
  ASSERT_TRUE(upd.pkt.options().has_timestamps);
  EXPECT_EQ(upd.pkt.options().tsval, c.synack_tsval) << "the client's view of our clock must not jump";
  EXPECT_EQ(upd.pkt.options().tsecr, 1001u);
  EXPECT_EQ(counters().established, 1u);
}

TEST_F(EngineTest, EarlyDataIsBufferedAndDeliveredWithTheAck) {
  Conn c = Conn::v4();
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<Seen> out = establish(c, text(req));
  ASSERT_EQ(out.size(), 2u);
  const Seen& data = out[0];
  EXPECT_EQ(data.pkt.seq(), c.client_isn + 1);
  EXPECT_EQ(data.pkt.ack(), c.backend_isn + 1);
  ASSERT_EQ(data.pkt.payload_len(), req.size());
  EXPECT_EQ(std::memcmp(data.pkt.payload().data(), req.data(), req.size()), 0);
  // We never acknowledge early data ourselves: the backend's ACK will.
  EXPECT_EQ(out[1].pkt.ack(), c.client_isn + 1);
  EXPECT_EQ(counters().early_data_buffered, 1u);
}

TEST_F(EngineTest, DataSentWhileBackendIsSilentIsBufferedInOrder) {
  Conn c = Conn::v4();
  Seen syn = open_to_backend_syn(c);
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.client_window,
                .options = c.client_ts_opts(1002), .payload = text("hello ")};
  EXPECT_EQ(feed(make(s)).verdict, Verdict::Drop);
  s.seq += 6;
  s.payload = text("world");
  EXPECT_EQ(feed(make(s)).verdict, Verdict::Drop);
  // A retransmission of the first part changes nothing.
  s.seq -= 6;
  s.payload = text("hello ");
  feed(make(s));
  EXPECT_EQ(sink.size(), 0u);
  feed(c.backend_synack(syn.pkt.options().tsval));
  ASSERT_GE(sink.size(), 1u);
  Seen data(sink.packets[0]);
  ASSERT_EQ(data.pkt.payload_len(), 11u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(data.pkt.payload().data()), 11), "hello world");
  EXPECT_EQ(data.pkt.options().tsval, 1002u) << "newest client TSval";
}

// NFQUEUE hands over what GRO merged: a client with a full MSS sends its first request in two
// segments that reach the engine as one packet. Sent on as one, it exceeded the MTU (the raw
// send failed with EMSGSIZE, the backend never got it, the client waited out an RTO).
TEST_F(EngineTest, EarlyDataOfASuperPacketGoesToTheBackendInSegmentsItsMssAllows) {
  for (int v6 = 0; v6 < 2; ++v6) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    sink.clear();
    Conn c = v6 ? Conn::v6() : Conn::v4();
    Seen syn = open_to_backend_syn(c);
    std::vector<uint8_t> request(2 * (c.backend_synack_opts.mss - 12));
    for (size_t k = 0; k < request.size(); ++k) request[k] = static_cast<uint8_t>(k * 7);
    SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.client_window,
                  .options = c.client_ts_opts(1002), .payload = request};
    EXPECT_EQ(feed(make(s)).verdict, Verdict::Drop);
    feed(c.backend_synack(syn.pkt.options().tsval));
    std::vector<uint8_t> delivered;
    uint32_t next = c.client_isn + 1;
    size_t segments = 0;
    for (const Bytes& b : sink.packets) {
      Seen p(b);
      if (p.pkt.tuple() != c.c2s || p.pkt.payload_len() == 0) continue;
      ++segments;
      EXPECT_EQ(p.pkt.seq(), next) << "contiguous";
      EXPECT_LE(p.pkt.payload_len() + p.pkt.tcp_header_len() - 20, c.backend_synack_opts.mss) << "within the backend's MSS";
      EXPECT_EQ(p.pkt.ack(), c.backend_isn + 1);
      next += static_cast<uint32_t>(p.pkt.payload_len());
      delivered.insert(delivered.end(), p.pkt.payload().begin(), p.pkt.payload().end());
    }
    EXPECT_EQ(segments, 2u);
    EXPECT_EQ(delivered, request);
  }
}

// A client that sends its request and then shuts its side (HTTP/1.0 clients, `nc -N`, RPC over a
// half-closed stream) sends the FIN before the backend has answered. Left to the client's
// retransmission, a server that answers at EOF would wait out the client's RTO.
TEST_F(EngineTest, AFinRightBehindEarlyDataGoesToTheBackendWithIt) {
  for (int v6 = 0; v6 < 2; ++v6) {
    for (const bool apart : {true, false}) {
      SCOPED_TRACE(std::string(v6 ? "IPv6" : "IPv4") + (apart ? ", a bare FIN" : ", the FIN on the data"));
      sink.clear();
      Conn c = v6 ? Conn::v6() : Conn::v4();
      const Seen syn = open_to_backend_syn(c);
      const std::string req = "GET / HTTP/1.0\r\n\r\n";
      SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                    .flags = static_cast<uint8_t>(tcp_flag::ACK | tcp_flag::PSH | (apart ? 0 : tcp_flag::FIN)),
                    .window = c.client_window, .options = c.client_ts_opts(1002), .payload = text(req)};
      EXPECT_EQ(feed(make(s)).verdict, Verdict::Drop);
      if (apart) {
        SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1 + static_cast<uint32_t>(req.size()),
                        .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window,
                        .options = c.client_ts_opts(1003)};
        EXPECT_EQ(feed(make(fin)).verdict, Verdict::Drop);
      }
      const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
      std::vector<Seen> to_backend;
      for (const Bytes& b : d.wire) {
        if (Seen(b).pkt.tuple() == c.c2s) to_backend.emplace_back(b);
      }
      ASSERT_EQ(to_backend.size(), 2u) << "the request, then the FIN";
      EXPECT_EQ(to_backend[0].pkt.payload_len(), req.size());
      EXPECT_FALSE(to_backend[0].pkt.has(tcp_flag::FIN));
      const TcpPacket& f = to_backend[1].pkt;
      EXPECT_TRUE(f.has(tcp_flag::FIN | tcp_flag::ACK));
      EXPECT_EQ(f.payload_len(), 0u);
      EXPECT_EQ(f.seq(), c.client_isn + 1 + req.size()) << "right behind the request";
      EXPECT_EQ(f.ack(), c.backend_isn + 1) << "in the backend's space";
      EXPECT_EQ(f.options().has_timestamps, c.client_has_ts());
      // The server answers and closes; the client's retransmitted FIN and its last ACK close the flow.
      c.client_next = c.client_isn + 1 + static_cast<uint32_t>(req.size());
      c.backend_next = c.backend_isn + 1;
      SegmentSpec answer{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_next + 1,
                         .flags = tcp_flag::ACK | tcp_flag::FIN, .window = 500, .options = c.backend_synack_opts};
      answer.options.has_mss = answer.options.has_wscale = answer.options.sack_permitted = false;
      EXPECT_EQ(feed(make(answer)).verdict, Verdict::Accept);
      SegmentSpec last{.tuple = c.c2s, .seq = c.client_next + 1, .ack = c.cookie_isn + 2, .flags = tcp_flag::ACK,
                       .window = c.client_window, .options = c.client_ts_opts(1004)};
      EXPECT_EQ(feed(make(last)).verdict, Verdict::Accept);
      now += 2 * cfg.linger_s * kSecond;
      engine->advance(now, sink);
      EXPECT_EQ(counters().flows_active, 0u) << "both FINs acknowledged: lingered and freed";
    }
  }
  EXPECT_EQ(counters().early_fins_held, 4u);
}

TEST_F(EngineTest, ABareFinBeforeTheBackendAnsweredFollowsItsAck) {
  Conn c = Conn::v4();
  const Seen syn = open_to_backend_syn(c);
  SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                  .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window, .options = c.client_ts_opts(1002)};
  feed(make(fin));
  const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
  ASSERT_EQ(d.wire.size(), 3u) << "the backend's ACK, the FIN, the client's window update";
  EXPECT_FALSE(Seen(d.wire[0]).pkt.has(tcp_flag::FIN));
  EXPECT_EQ(Seen(d.wire[0]).pkt.seq(), c.client_isn + 1);
  EXPECT_TRUE(Seen(d.wire[1]).pkt.has(tcp_flag::FIN));
  EXPECT_EQ(Seen(d.wire[1]).pkt.seq(), c.client_isn + 1);
  EXPECT_EQ(Seen(d.wire[2]).pkt.tuple(), c.c2s.reversed());
  EXPECT_EQ(counters().early_fins_held, 1u);
}

// Only a FIN that names the cookie SYN-ACK and the end of what is held: a blind one, or one past
// a gap, waits for the client's retransmission, and the backend gets only the ACK and the data.
TEST_F(EngineTest, AnEarlyFinThatIsNotExactlyBehindTheDataIsNotHeld) {
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE(k == 0 ? "another ack" : k == 1 ? "past a gap" : "after a FIN, more data");
    sink.clear();
    Conn c = Conn::v4(static_cast<uint16_t>(40000 + k));
    const Seen syn = open_to_backend_syn(c);
    SegmentSpec data{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                     .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.client_window,
                     .options = c.client_ts_opts(1002), .payload = text("abcd")};
    feed(make(data));
    SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 5, .ack = c.cookie_isn + 1,
                    .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window,
                    .options = c.client_ts_opts(1003)};
    if (k == 0) fin.ack += 1000;
    if (k == 1) fin.seq += 2;
    feed(make(fin));
    if (k == 2) {
      // The FIN was held: data after it (the same sequence number) is not taken behind it.
      data.seq = c.client_isn + 5;
      feed(make(data));
    }
    const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
    size_t fins = 0, bytes = 0;
    for (const Bytes& b : d.wire) {
      const Seen p(b);
      if (p.pkt.tuple() != c.c2s) continue;
      fins += p.pkt.has(tcp_flag::FIN);
      bytes += p.pkt.payload_len();
    }
    EXPECT_EQ(fins, k == 2 ? 1u : 0u);
    EXPECT_EQ(bytes, 4u);
  }
  EXPECT_EQ(counters().early_fins_held, 1u);
}

TEST_F(EngineTest, EarlyDataBeyondTheBufferIsDroppedNotAcked) {
  cfg.early_data_bytes = 8;
  Conn c = Conn::v4();
  Seen syn = open_to_backend_syn(c);
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                .flags = tcp_flag::ACK, .window = c.client_window, .options = c.client_ts_opts(1002),
                .payload = text("0123456789")};
  feed(make(s));
  EXPECT_EQ(counters().drop(DropReason::EarlyDataOverflow), 1u);
  const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
  ASSERT_EQ(d.wire.size(), 2u);
  EXPECT_EQ(Seen(d.wire[0]).pkt.payload_len(), 0u);
}

TEST_F(EngineTest, BackendResetDuringHandshakeResetsTheClientAtOnce) {
  Conn c = Conn::v4();
  open_to_backend_syn(c);
  SegmentSpec rst{.tuple = c.c2s.reversed(), .seq = 0, .ack = c.client_isn + 1,
                  .flags = tcp_flag::RST | tcp_flag::ACK};
  EXPECT_EQ(feed(make(rst)).verdict, Verdict::Drop);
  ASSERT_EQ(sink.size(), 1u);
  Seen r(sink.packets[0]);
  EXPECT_TRUE(r.pkt.has(tcp_flag::RST));
  EXPECT_EQ(r.pkt.tuple(), c.c2s.reversed());
  EXPECT_EQ(r.pkt.seq(), c.cookie_isn + 1) << "RST must be exactly in the client's window";
  EXPECT_EQ(counters().flows_active, 0u);
  EXPECT_EQ(counters().drop(DropReason::BackendReset), 1u);
}

// The backend answers our SYN with an ACK of an older connection it still holds on the pair (a
// LAST-ACK whose last ACK it never got): reset, as a client in SYN-SENT does, and the SYN sent
// again at once, so the connection opens instead of meeting the same ACK at every retry.
TEST_F(EngineTest, AnOlderConnectionsAckToOurSynIsResetAndTheSynSentAgain) {
  cfg.backend_syn_retries = 3;
  cfg.backend_retry_initial_ms = 1000;
  start();
  Conn c = Conn::v4();
  const Seen syn = open_to_backend_syn(c);
  const uint32_t old_ack = c.client_isn - 70000;
  SegmentSpec stale{.tuple = c.c2s.reversed(), .seq = 4242, .ack = old_ack, .flags = tcp_flag::ACK, .window = 500};
  sink.clear();
  EXPECT_EQ(feed(make(stale)).verdict, Verdict::Drop);
  ASSERT_EQ(sink.size(), 2u) << "a reset, then the SYN";
  const Seen r(sink.packets[0]);
  EXPECT_EQ(r.pkt.tuple(), c.c2s) << "the reset goes to the backend, as from the client";
  EXPECT_EQ(r.pkt.flags(), tcp_flag::RST) << "no ACK bit";
  EXPECT_EQ(r.pkt.seq(), old_ack) << "its sequence number is the ACK it answers";
  const Seen again(sink.packets[1]);
  EXPECT_EQ(again.pkt.flags(), tcp_flag::SYN);
  EXPECT_EQ(again.pkt.seq(), syn.pkt.seq()) << "the same SYN again";
  EXPECT_EQ(again.pkt.tuple(), c.c2s);
  EXPECT_EQ(counters().backend_syn_retries, 1u);
  EXPECT_EQ(counters().drop(DropReason::BackendSynAckUnexpected), 1u);
  // The SYN-ACK to it completes the handshake: no reset, no timeout.
  sink.clear();
  const Delivered d = feed_in_slot(c.backend_synack(syn.pkt.options().tsval));
  EXPECT_FALSE(d.wire.empty());
  for (const Bytes& b : d.wire) EXPECT_FALSE(Seen(b).pkt.has(tcp_flag::RST));
  EXPECT_EQ(counters().established, 1u);
  now += 10 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().drop(DropReason::BackendTimeout), 0u);
}

// An ACK of what the client sent is not an older connection's: nothing is reset.
TEST_F(EngineTest, AnAckOfOurOwnSynIsNotReset) {
  Conn c = Conn::v4();
  (void)open_to_backend_syn(c);
  SegmentSpec bare{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                   .flags = tcp_flag::ACK, .window = 500};
  sink.clear();
  EXPECT_EQ(feed(make(bare)).verdict, Verdict::Drop);
  EXPECT_EQ(sink.size(), 0u);
  EXPECT_EQ(counters().backend_syn_retries, 0u);
}

TEST_F(EngineTest, SilentBackendGetsRetriesWithBackoffThenClientIsReset) {
  cfg.backend_syn_retries = 3;
  cfg.backend_retry_initial_ms = 1000;
  Conn c = Conn::v4();
  open_to_backend_syn(c);
  const uint64_t t0 = now;
  auto advance_to = [&](uint64_t t) {
    now = t;
    engine->advance(now, sink);
  };
  advance_to(t0 + 999 * kMs);
  EXPECT_EQ(sink.size(), 0u);
  advance_to(t0 + 1000 * kMs);
  ASSERT_EQ(sink.size(), 1u);
  EXPECT_TRUE(Seen(sink.packets[0]).pkt.has(tcp_flag::SYN));
  advance_to(t0 + 2999 * kMs);
  EXPECT_EQ(sink.size(), 1u) << "second retry waits 2 s";
  advance_to(t0 + 3000 * kMs);
  EXPECT_EQ(sink.size(), 2u);
  advance_to(t0 + 7000 * kMs);
  EXPECT_EQ(sink.size(), 3u);
  EXPECT_EQ(counters().backend_syn_retries, 3u);
  advance_to(t0 + 14999 * kMs);
  EXPECT_EQ(sink.size(), 3u);
  advance_to(t0 + 15000 * kMs);
  ASSERT_EQ(sink.size(), 4u);
  Seen r(sink.packets[3]);
  EXPECT_TRUE(r.pkt.has(tcp_flag::RST));
  EXPECT_EQ(r.pkt.tuple(), c.c2s.reversed());
  EXPECT_EQ(r.pkt.seq(), c.cookie_isn + 1);
  EXPECT_EQ(counters().flows_active, 0u);
  EXPECT_EQ(counters().drop(DropReason::BackendTimeout), 1u);
}

TEST_F(EngineTest, ClientResetBeforeBackendAnswersWithdrawsTheSyn) {
  Conn c = Conn::v4();
  open_to_backend_syn(c);
  SegmentSpec rst{.tuple = c.c2s, .seq = c.client_isn + 1, .flags = tcp_flag::RST};
  feed(make(rst));
  ASSERT_EQ(sink.size(), 1u);
  Seen r(sink.packets[0]);
  EXPECT_TRUE(r.pkt.has(tcp_flag::RST));
  EXPECT_EQ(r.pkt.tuple(), c.c2s);
  EXPECT_EQ(r.pkt.seq(), c.client_isn + 1);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(EngineTest, LostAckToBackendIsResentOnSynAckRetransmission) {
  Conn c = Conn::v4();
  Seen syn = open_to_backend_syn(c);
  feed(c.backend_synack(syn.pkt.options().tsval));
  sink.clear();
  EXPECT_EQ(feed(c.backend_synack(syn.pkt.options().tsval)).verdict, Verdict::Drop);
  ASSERT_EQ(sink.size(), 1u);
  Seen ack(sink.packets[0]);
  EXPECT_EQ(ack.pkt.flags(), tcp_flag::ACK);
  EXPECT_EQ(ack.pkt.ack(), c.backend_isn + 1);
}

// ---- established translation -------------------------------------------------------------------

struct Established : EngineTest {
  Conn c = Conn::v4();
  void open() { establish(c); }
  Bytes from_backend(std::span<const uint8_t> data, uint8_t flags = tcp_flag::ACK | tcp_flag::PSH,
                     uint32_t ts = 50000100) {
    TcpOptions o;
    if (c.backend_synack_opts.has_timestamps) {
      o.has_timestamps = true;
      o.tsval = ts;
      o.tsecr = 1001;
    }
    SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_next, .ack = c.client_next, .flags = flags,
                  .window = c.backend_window, .options = o, .payload = data};
    c.backend_next += static_cast<uint32_t>(data.size()) + ((flags & tcp_flag::FIN) ? 1 : 0);
    return make(s);
  }
  Bytes from_client(std::span<const uint8_t> data, uint8_t flags = tcp_flag::ACK, uint32_t ack_client_space = 0,
                    uint32_t tsecr = 0) {
    TcpOptions o = c.client_ts_opts(1005);
    if (tsecr) o.tsecr = tsecr;
    SegmentSpec s{.tuple = c.c2s, .seq = c.client_next,
                  .ack = ack_client_space ? ack_client_space : c.cookie_isn + 1, .flags = flags,
                  .window = c.client_window, .options = o, .payload = data};
    c.client_next += static_cast<uint32_t>(data.size()) + ((flags & tcp_flag::FIN) ? 1 : 0);
    return make(s);
  }
};

TEST_F(Established, ServerDataIsTranslatedIntoTheClientsSpace) {
  open();
  Bytes b = from_backend(text("220 hello\r\n"));  // a server that speaks first
  Decision d = feed(b);
  EXPECT_EQ(d.verdict, Verdict::Accept);
  EXPECT_TRUE(d.modified);
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.packet.seq(), c.cookie_isn + 1);
  EXPECT_EQ(r.packet.ack(), c.client_isn + 1);
  EXPECT_EQ(r.packet.options().tsval, c.synack_tsval + 100);
  EXPECT_TRUE(r.packet.checksum_valid());
  EXPECT_EQ(counters().translated, 1u);
}

TEST_F(Established, ClientAcksAndEchoesAreTranslatedIntoTheBackendsSpace) {
  open();
  feed(from_backend(text("0123456789")));
  const uint32_t client_view_ack = c.cookie_isn + 1 + 10;
  const uint32_t echoed = c.synack_tsval + 100;
  Bytes b = from_client(text("x"), tcp_flag::ACK | tcp_flag::PSH, client_view_ack, echoed);
  EXPECT_EQ(feed(b).verdict, Verdict::Accept);
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.packet.ack(), c.backend_isn + 1 + 10);
  EXPECT_EQ(r.packet.seq(), c.client_isn + 1) << "client sequence space is never translated";
  EXPECT_EQ(r.packet.options().tsecr, 50000100u);
  EXPECT_EQ(r.packet.window(), c.client_window) << "same scale on both sides: untouched";
  EXPECT_TRUE(r.packet.checksum_valid());
}

TEST_F(Established, SackBlocksFromTheClientAreTranslated) {
  open();
  TcpOptions o = c.client_ts_opts(1005);
  o.sack_count = 2;
  o.sack[0] = {c.cookie_isn + 1 + 1000, c.cookie_isn + 1 + 2000};
  o.sack[1] = {c.cookie_isn + 1 + 3000, c.cookie_isn + 1 + 4000};
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_next, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK,
                .window = c.client_window, .options = o};
  Bytes b = make(s);
  feed(b);
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  ASSERT_EQ(r.packet.options().sack_count, 2);
  EXPECT_EQ(r.packet.options().sack[0], (SackBlock{c.backend_isn + 1 + 1000, c.backend_isn + 1 + 2000}));
  EXPECT_EQ(r.packet.options().sack[1], (SackBlock{c.backend_isn + 1 + 3000, c.backend_isn + 1 + 4000}));
  EXPECT_TRUE(r.packet.checksum_valid());
}

TEST_F(Established, TranslationHoldsAcrossSequenceWraparound) {
  c.client_isn = 0xfffffff0u;
  c.backend_isn = 0xffffff00u;
  open();
  std::string big(300, 'z');
  for (int i = 0; i < 3; ++i) {  // backend seq crosses 2^32 during these
    Bytes b = from_backend(text(big));
    feed(b);
    ParseResult r = parse_tcp_packet(b);
    ASSERT_TRUE(r);
    EXPECT_EQ(r.packet.seq(), c.cookie_isn + 1 + 300u * i);
    EXPECT_TRUE(r.packet.checksum_valid());
  }
  for (int i = 0; i < 3; ++i) {  // and the client's
    Bytes b = from_client(text(big), tcp_flag::ACK, c.cookie_isn + 1 + 900);
    feed(b);
    ParseResult r = parse_tcp_packet(b);
    ASSERT_TRUE(r);
    EXPECT_EQ(r.packet.seq(), 0xfffffff1u + 300u * i);
    EXPECT_EQ(r.packet.ack(), c.backend_isn + 1 + 900);
  }
}

TEST_F(Established, WindowsAreRescaledWhenTheBackendScalesDifferently) {
  c.backend_synack_opts.wscale = 2;  // we announced 7
  open();
  c.backend_window = 30000;  // 120000 bytes
  Bytes b = from_backend(text("x"));
  feed(b);
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.packet.window(), (30000u << 2) >> 7);
  EXPECT_TRUE(r.packet.checksum_valid());
  // The client's windows need no change: the backend applies the client's own scale.
  Bytes cb = from_client(text("y"));
  feed(cb);
  EXPECT_EQ(parse_tcp_packet(cb).packet.window(), c.client_window);
}

TEST_F(Established, LargerBackendScaleIsClampedNotWrapped) {
  c.backend_synack_opts.wscale = 12;
  open();
  c.backend_window = 4000;  // 16 MB: more than 65535 << 7
  Bytes b = from_backend(text("x"));
  feed(b);
  EXPECT_EQ(parse_tcp_packet(b).packet.window(), 0xffff);
}

TEST_F(Established, BackendWithoutScalingSeesTheClientsRealWindow) {
  c.backend_synack_opts.has_wscale = false;
  open();
  Bytes cb = from_client(text("y"));
  feed(cb);
  EXPECT_EQ(parse_tcp_packet(cb).packet.window(), std::min(0xffff, c.client_window << 7));
  c.backend_window = 29200;
  Bytes b = from_backend(text("x"));
  feed(b);
  EXPECT_EQ(parse_tcp_packet(b).packet.window(), 29200 >> 7);
}

TEST_F(Established, ChecksumNotReadyIsRecomputedInFull) {
  open();
  Bytes b = from_backend(text("abc"));
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  b[r.packet.tcp_offset() + 16] = 0x12;  // a partial checksum, as the kernel hands it over
  b[r.packet.tcp_offset() + 17] = 0x34;
  Decision d = feed(b, false);
  EXPECT_TRUE(d.modified);
  EXPECT_TRUE(parse_tcp_packet(b).packet.checksum_valid());
}

// ---- teardown ------------------------------------------------------------------------------------

TEST_F(Established, FinBothWaysLingersThenFrees) {
  cfg.linger_s = 30;
  open();
  feed(from_client({}, tcp_flag::FIN | tcp_flag::ACK));
  feed(from_backend({}, tcp_flag::ACK, 50000101));  // acks the client's FIN
  EXPECT_EQ(counters().flows_active, 1u);
  feed(from_backend({}, tcp_flag::FIN | tcp_flag::ACK, 50000102));
  feed(from_client({}, tcp_flag::ACK, c.cookie_isn + 2));  // acks the server's FIN
  EXPECT_EQ(counters().flows_active, 1u);
  // A late retransmission during linger is still translated.
  c.backend_next -= 1;
  Bytes late = from_backend({}, tcp_flag::FIN | tcp_flag::ACK, 50000102);
  EXPECT_EQ(feed(late).verdict, Verdict::Accept);
  EXPECT_EQ(parse_tcp_packet(late).packet.seq(), c.cookie_isn + 1);
  now += 29 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 1u);
  now += 2 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
  EXPECT_EQ(counters().flows_closed, 1u);
}

TEST_F(Established, HalfCloseKeepsDataFlowingTheOtherWay) {
  open();
  feed(from_client({}, tcp_flag::FIN | tcp_flag::ACK));
  for (int i = 0; i < 3; ++i) {
    Bytes b = from_backend(text("more data"));
    EXPECT_EQ(feed(b).verdict, Verdict::Accept);
    EXPECT_EQ(parse_tcp_packet(b).packet.seq(), c.cookie_isn + 1 + 9u * i);
  }
  EXPECT_EQ(counters().flows_active, 1u);
}

TEST_F(Established, SimultaneousCloseLingers) {
  cfg.linger_s = 5;
  open();
  feed(from_client({}, tcp_flag::FIN | tcp_flag::ACK));
  feed(from_backend({}, tcp_flag::FIN | tcp_flag::ACK));  // crossing FINs, neither acks the other yet
  feed(from_client({}, tcp_flag::ACK, c.cookie_isn + 2));
  feed(from_backend({}, tcp_flag::ACK));
  now += 6 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(Established, ResetFromEitherSideIsForwardedAndLingers) {
  cfg.linger_s = 5;
  open();
  Bytes r = from_backend({}, tcp_flag::RST | tcp_flag::ACK);
  EXPECT_EQ(feed(r).verdict, Verdict::Accept);
  EXPECT_EQ(parse_tcp_packet(r).packet.seq(), c.cookie_isn + 1);
  now += 6 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

// ---- RSTs: RFC 5961 as a box in the middle can judge them -------------------------------------

struct BlindReset : Established {
  void SetUp() override {
    Established::SetUp();
    cfg.linger_s = 30;
    cfg.established_idle_s = 600;
  }
  // An RST on the flow's tuple from one side, with the given sequence number.
  Bytes rst_from_client(uint32_t seq, uint8_t extra = 0) {
    return make(SegmentSpec{.tuple = c.c2s, .seq = seq, .ack = extra ? c.cookie_isn + 1 : 0,
                            .flags = static_cast<uint8_t>(tcp_flag::RST | extra)});
  }
  Bytes rst_from_server(uint32_t seq) {
    return make(SegmentSpec{.tuple = c.c2s.reversed(), .seq = seq, .flags = tcp_flag::RST});
  }
  // The flow still carries data both ways after the linger time has passed.
  void expect_alive() {
    now += 2 * kSecond * cfg.linger_s;
    engine->advance(now, sink);
    EXPECT_EQ(counters().flows_active, 1u);
    Bytes up = from_client(text("still here"));
    EXPECT_TRUE(feed(up).modified) << "the connection must survive";
    Bytes down = from_backend(text("me too"));
    EXPECT_TRUE(feed(down).modified);
  }
};

TEST_F(BlindReset, SixtyFourThousandGuessesFromTheClientSideChangeNothing) {
  open();
  feed(from_backend(text("hello")));
  std::mt19937 rng(5961);
  uint32_t dropped_before = 0;
  for (int k = 0; k < 65536; ++k) {
    uint32_t seq = static_cast<uint32_t>(rng());
    // The one RST a blind guess must not hit is the exact one (1 in 2^32); skip it explicitly.
    if (seq == c.client_next) ++seq;
    Bytes r = rst_from_client(seq, k % 2 ? tcp_flag::ACK : 0);
    const Decision d = feed(r);
    if (d.verdict == Verdict::Drop) ++dropped_before;
  }
  EXPECT_GE(dropped_before, 65530u) << "out-of-window RSTs are dropped, not forwarded";
  EXPECT_GE(counters().drop(DropReason::RstOutOfWindow), 65530u);
  expect_alive();
}

TEST_F(BlindReset, GuessesSpoofedAsTheServiceChangeNothing) {
  open();
  feed(from_client(text("GET / HTTP/1.1\r\n\r\n")));
  std::mt19937 rng(793);
  for (int k = 0; k < 65536; ++k) {
    uint32_t seq = static_cast<uint32_t>(rng());
    if (seq == c.backend_next) ++seq;
    feed(rst_from_server(seq));
  }
  EXPECT_GE(counters().drop(DropReason::RstOutOfWindow), 65530u);
  expect_alive();
}

TEST_F(BlindReset, AForgedSegmentCannotAimTheExactValue) {
  // The attacker sends a segment of its own first, then an RST at that segment's end: the record
  // the RST check uses moves only for segments that fit the connection.
  open();
  const uint32_t forged_seq = c.client_next + 0x40000000u;
  const Bytes data(1000, 'x');
  Bytes forged = make(SegmentSpec{.tuple = c.c2s, .seq = forged_seq, .ack = c.cookie_isn + 1,
                                  .flags = tcp_flag::ACK, .window = 500, .payload = data});
  feed(forged);
  EXPECT_EQ(feed(rst_from_client(forged_seq + 1000)).verdict, Verdict::Drop);
  expect_alive();
}

TEST_F(BlindReset, AnRstInTheWindowGoesToTheEndpointAndChangesNothingHere) {
  open();
  Bytes r = rst_from_client(c.client_next + 100);  // inside the server's window, not exact
  const Decision d = feed(r);
  EXPECT_EQ(d.verdict, Verdict::Accept) << "the endpoint judges it (RFC 5961: a challenge ACK)";
  EXPECT_EQ(counters().rst_passed_in_window, 1u);
  expect_alive();
}

// A blind FIN: the same guess as a blind RST, with a quieter effect. Taken at face value it put the
// flow on the short closing timer, so an idle connection (a shell, a pooled database link) was
// freed under both ends after closing_idle_s. Only a FIN the sender could have aimed counts.
struct BlindFin : BlindReset {
  void SetUp() override {
    BlindReset::SetUp();
    cfg.closing_idle_s = 5;
    cfg.linger_s = 8;  // expect_alive() waits twice this: past the closing timer (freed after T to 2T)
  }
  Bytes fin_from(const FlowTuple& tuple, uint32_t seq, uint32_t ack) {
    return make(SegmentSpec{.tuple = tuple, .seq = seq, .ack = ack, .flags = tcp_flag::FIN | tcp_flag::ACK,
                            .window = 1000});
  }
};

TEST_F(BlindFin, GuessesFromEitherSideLeaveAnIdleFlowOnItsEstablishedTimer) {
  open();
  feed(from_client(text("GET / HTTP/1.1\r\n\r\n")));
  feed(from_backend(text("hello")));
  std::mt19937 rng(793);
  for (int k = 0; k < 4096; ++k) {
    const uint32_t cs = static_cast<uint32_t>(rng()), ss = static_cast<uint32_t>(rng());
    // Far outside either window (a guess lands inside with probability window / 2^32).
    if (cs - c.client_next < (1u << 20) || c.client_next - cs < (1u << 20)) continue;
    if (ss - c.backend_next < (1u << 20) || c.backend_next - ss < (1u << 20)) continue;
    feed(fin_from(c.c2s, cs, static_cast<uint32_t>(rng())));
    feed(fin_from(c.c2s.reversed(), ss, static_cast<uint32_t>(rng())));
  }
  expect_alive();
}

// A spray lands inside a window of megabytes dozens of times in 65536 tries (the endpoint, which
// queues an out-of-order FIN and waits, would not tell): the ack must be right as well.
TEST_F(BlindFin, GuessesInsideTheWindowWithoutTheRightAckChangeNothing) {
  open();
  feed(from_client(text("GET / HTTP/1.1\r\n\r\n")));
  feed(from_backend(text("hello")));
  std::mt19937 rng(5961);
  for (int k = 0; k < 4096; ++k) {
    const uint32_t in_window = 1 + static_cast<uint32_t>(rng() % 1000);
    uint32_t ack = static_cast<uint32_t>(rng());
    if (ack - c.cookie_isn < (1u << 20)) ack += 1u << 21;  // never the right one by chance
    feed(fin_from(c.c2s, c.client_next + in_window, ack));
    feed(fin_from(c.c2s.reversed(), c.backend_next + in_window, ack));
  }
  expect_alive();
}

TEST_F(BlindFin, TheRealFinsStillCloseTheFlow) {
  open();
  feed(from_client(text("GET / HTTP/1.1\r\n\r\n")));
  feed(from_backend(text("bye"), tcp_flag::ACK | tcp_flag::FIN | tcp_flag::PSH));  // data and FIN at once
  now += 3 * cfg.closing_idle_s * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u) << "the server's FIN put the idle flow on the closing timer";
}

TEST_F(BlindFin, AClientFinInTheWindowCounts) {
  open();
  const Bytes data(100, 'x');
  // The client's data and FIN whose first bytes the server already acknowledged (a retransmission
  // after a lost ACK): judged by where the FIN lies.
  feed(from_client(data));
  feed(from_backend(text("ok")));  // acknowledges all of it
  const Decision d = feed(make(SegmentSpec{.tuple = c.c2s, .seq = c.client_next - 100, .ack = c.cookie_isn + 1,
                                           .flags = tcp_flag::FIN | tcp_flag::ACK, .window = c.client_window,
                                           .options = c.client_ts_opts(1006), .payload = data}));
  EXPECT_EQ(d.verdict, Verdict::Accept);
  now += 3 * cfg.closing_idle_s * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(BlindReset, TheRealClientsResetStillEndsTheFlowWithinLinger) {
  open();
  feed(from_backend(text("data")));
  feed(from_client({}, tcp_flag::ACK, c.cookie_isn + 1 + 4));
  Bytes r = rst_from_client(c.client_next, tcp_flag::ACK);
  EXPECT_EQ(feed(r).verdict, Verdict::Accept);
  now += (cfg.linger_s + 1) * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u) << "freed within linger_s";
}

TEST_F(BlindReset, TheServersResetToDataForAClosedSocketEndsTheFlow) {
  // A socket that is gone answers data with an RST whose sequence number is the data's ack.
  open();
  feed(from_backend(text("0123456789")));
  Bytes data = from_client(text("late"), tcp_flag::ACK | tcp_flag::PSH, c.cookie_isn + 1 + 10);
  feed(data);
  EXPECT_EQ(feed(rst_from_server(c.backend_isn + 1 + 10)).verdict, Verdict::Accept);
  now += (cfg.linger_s + 1) * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(BlindReset, TheServersAbortMidTransferEndsTheFlow) {
  // The server's own abort names its SND.NXT, past what the client has acknowledged: data still
  // in flight reaches the client before the RST, which the client then takes as exact.
  open();
  feed(from_backend(text("0123456789")));
  EXPECT_EQ(feed(rst_from_server(c.backend_next)).verdict, Verdict::Accept);
  now += (cfg.linger_s + 1) * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(BlindReset, AnRstFromTheServerSideInTheClientsWindowGoesToTheClientToJudge) {
  open();
  feed(from_backend(text("0123456789")));
  EXPECT_EQ(feed(rst_from_server(c.backend_isn + 1 + 5)).verdict, Verdict::Accept);
  EXPECT_EQ(counters().rst_passed_in_window, 1u);
  expect_alive();
}

TEST_F(BlindReset, ABlindResetDuringTheHandshakeChangesNothing) {
  Seen syn = open_to_backend_syn(c);
  Bytes guess = rst_from_client(c.client_isn + 1000);
  EXPECT_EQ(feed(guess).verdict, Verdict::Drop);
  Bytes no_ack = make(SegmentSpec{.tuple = c.c2s.reversed(), .seq = 0, .flags = tcp_flag::RST});
  EXPECT_EQ(feed(no_ack).verdict, Verdict::Drop) << "an RST that acknowledges nothing is not the backend's";
  Bytes wrong_ack = make(SegmentSpec{.tuple = c.c2s.reversed(), .seq = 0, .ack = c.client_isn + 7,
                                     .flags = tcp_flag::RST | tcp_flag::ACK});
  EXPECT_EQ(feed(wrong_ack).verdict, Verdict::Drop);
  sink.clear();
  EXPECT_EQ(counters().flows_active, 1u);
  feed(c.backend_synack(syn.pkt.options().tsval));
  EXPECT_EQ(counters().established, 1u);
}

// ---- backends that lack what the cookie SYN-ACK promised ----------------------------------------

struct BackendWithoutTimestamps : Established {
  void SetUp() override {
    Established::SetUp();
    c.backend_synack_opts.has_timestamps = false;  // e.g. net.ipv4.tcp_timestamps = 0 behind us
  }
  // Feeds a server segment with room to grow, as the daemon does; returns it as the client gets it.
  Bytes server_segment(std::span<const uint8_t> data, Decision& d) {
    Bytes b = from_backend(data);
    const size_t length = b.size();
    b.resize(length + 64);
    d = engine->process(std::span<uint8_t>(b.data(), length), now, sink, true, b.size());
    b.resize(d.length ? d.length : length);
    return b;
  }
};

TEST_F(BackendWithoutTimestamps, TheBackendIsToldAnMssWithRoomForThem) {
  Seen syn = open_to_backend_syn(c);
  EXPECT_EQ(syn.pkt.options().mss, 1460 - 12) << "room for the option syngate may have to add";
}

TEST_F(BackendWithoutTimestamps, EverySegmentToTheClientCarriesTimestampsThatNeverGoBack) {
  open();  // the window update on the backend's SYN-ACK is checked below
  Decision d;
  uint32_t last = c.synack_tsval;
  const std::string body(1448, 'z');
  for (int k = 0; k < 3; ++k) {
    now += 10 * kMs;
    Bytes out = server_segment(text(body), d);
    ASSERT_TRUE(d.modified);
    ASSERT_EQ(d.length, out.size());
    ParseResult r = parse_tcp_packet(out);
    ASSERT_TRUE(r) << to_string(r.error);
    ASSERT_TRUE(r.packet.options().has_timestamps);
    EXPECT_TRUE(r.packet.checksum_valid());
    EXPECT_FALSE(seq_before(r.packet.options().tsval, last)) << "a TSval going back is a PAWS rejection";
    last = r.packet.options().tsval;
    EXPECT_EQ(r.packet.options().tsecr, 1001u) << "the client's newest TSval";
    EXPECT_EQ(r.packet.payload_len(), body.size());
    EXPECT_EQ(std::string(r.packet.payload().begin(), r.packet.payload().end()), body);
    EXPECT_EQ(r.packet.seq(), c.cookie_isn + 1 + static_cast<uint32_t>(k * body.size()));
    EXPECT_LE(r.packet.bytes().size(), 20u + 20u + 1460u) << "within the client's MSS";
  }
  EXPECT_EQ(counters().timestamps_supplied, 3u);
}

TEST_F(BackendWithoutTimestamps, ASuperPacketGetsThemOnce) {
  // NFQUEUE hands over GSO/GRO super-packets whole: the option goes into the one header, which
  // the kernel copies into every segment when it splits the packet.
  open();
  Decision d;
  const std::string body(65160, 'g');  // 45 segments of 1448, as a sender with MSS 1448 builds it
  Bytes out = server_segment(text(body), d);
  ASSERT_EQ(d.length, out.size()) << "grown";
  ParseResult r = parse_tcp_packet(out);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r.packet.options().has_timestamps);
  EXPECT_EQ(r.packet.payload_len(), body.size());
  EXPECT_TRUE(r.packet.checksum_valid());
}

TEST_F(BackendWithoutTimestamps, TheWindowUpdateCarriesATimestampToo) {
  Seen syn = open_to_backend_syn(c);
  const Delivered d = feed_in_slot(c.backend_synack(0));
  ASSERT_EQ(d.wire.size(), 2u);
  Seen update(d.wire[1]);
  ASSERT_TRUE(update.pkt.options().has_timestamps);
  EXPECT_FALSE(seq_before(update.pkt.options().tsval, c.synack_tsval)) << "not 0, not back";
  Seen ack(d.wire[0]);
  EXPECT_FALSE(ack.pkt.options().has_timestamps) << "the backend agreed to none";
}

TEST_F(BackendWithoutTimestamps, ABackendHeardWithTimestampsGetsTheFullMssNextTime) {
  Conn other = Conn::v4(41000);  // same service, a backend with timestamps
  establish(other);
  Seen syn = open_to_backend_syn(c);
  EXPECT_EQ(syn.pkt.options().mss, 1460) << "learned: no room needed";
}

// A backend without SACK behind a client that was promised it: the client's SACK stack counts
// no duplicate ACK without SACK blocks, so each loss on the way to the backend waits for a
// retransmission timeout. Once a backend has answered without SACK-permitted, its next clients
// are not promised it (sg_promise_sack), and are again once it answers with it.
struct BackendWithoutSack : EngineTest {
  Conn c = Conn::v4();
  void SetUp() override {
    EngineTest::SetUp();
    c.backend_synack_opts.sack_permitted = false;  // e.g. net.ipv4.tcp_sack = 0 behind us
  }
  bool promised_sack(Conn& client) { return learn_cookie(client).pkt.options().sack_permitted; }
};

TEST_F(BackendWithoutSack, TheFirstClientIsPromisedSackTheNextOnesAreNot) {
  EXPECT_TRUE(promised_sack(c)) << "nothing is known of the backend yet";
  establish(c);
  Conn next = Conn::v4(41000);
  Seen synack = learn_cookie(next);
  EXPECT_FALSE(synack.pkt.options().sack_permitted);
  EXPECT_FALSE(decode_ts_options(synack.pkt.options().tsval).sack_permitted)
      << "the cookie records what was promised";
  EXPECT_TRUE(synack.pkt.options().has_timestamps);
  EXPECT_TRUE(synack.pkt.options().has_wscale) << "only SACK is withheld";
  Seen syn = open_to_backend_syn(next);
  EXPECT_FALSE(syn.pkt.options().sack_permitted) << "the backend is not asked for what the client was not promised";
}

TEST_F(BackendWithoutSack, OtherServicesAreStillPromisedSack) {
  cfg.services.push_back(Service{c.c2s.dst, 8080});
  establish(c);
  Conn other = Conn::v4(41000);
  other.c2s.dport = 8080;
  EXPECT_TRUE(promised_sack(other));
}

TEST_F(BackendWithoutSack, TheFactExpiresAndABackendWithSackAgainIsBelieved) {
  establish(c);
  Conn later = Conn::v4(41000);
  now += (BackendFacts::kLacksSackMemoryMs - 1000) * kMs;
  EXPECT_FALSE(promised_sack(later));
  now += 2000 * kMs;
  later = Conn::v4(41001);
  later.backend_synack_opts.sack_permitted = true;  // the operator turned SACK back on
  EXPECT_TRUE(promised_sack(later)) << "after the memory lapses one client is promised it again";
  establish(later);
  now += 1000 * kMs;
  Conn next = Conn::v4(41002);
  EXPECT_TRUE(promised_sack(next));
}

TEST_F(BackendWithoutSack, WorkersSharingFactsPromiseWhatTheFlowWorkerLearned) {
  // The daemon's SYN workers answer with answer_syn() on the facts the flow workers write.
  cfg.backend_facts = std::make_shared<BackendFacts>();
  establish(c);
  Conn next = Conn::v4(41000);
  RecordingSink syn_sink;
  Bytes syn = next.syn();
  ParseResult r = parse_tcp_packet(syn);
  ASSERT_TRUE(r);
  ASSERT_TRUE(answer_syn(r.packet, *jar, cfg, now, syn_sink));
  ASSERT_EQ(syn_sink.size(), 1u);
  EXPECT_FALSE(Seen(syn_sink.packets[0]).pkt.options().sack_permitted);
  EngineConfig unshared = cfg;
  unshared.backend_facts = nullptr;
  syn_sink.clear();
  ASSERT_TRUE(answer_syn(r.packet, *jar, unshared, now, syn_sink));
  EXPECT_TRUE(Seen(syn_sink.packets[0]).pkt.options().sack_permitted);
}

TEST_F(BackendWithoutSack, AResetEngineForgetsWhatItLearned) {
  establish(c);
  engine->reset(cfg, *jar);
  Conn next = Conn::v4(41000);
  EXPECT_TRUE(promised_sack(next));
}

TEST_F(Established, AReloadedAnnouncedScaleDoesNotChangeARunningFlow) {
  // The client was told shift 7 in the cookie SYN-ACK; a restart in place under a config that
  // announces 9 must keep translating this flow with 7.
  std::vector<uint8_t> region(Engine::state_bytes(cfg));
  jar.emplace(fixed_secrets());
  engine.emplace(cfg, *jar, EngineState{region, 77});
  open();
  engine.reset();
  cfg.announced_wscale = 9;
  engine.emplace(cfg, *jar, EngineState{region, 77});
  ASSERT_EQ(engine->restore_report().restored, 1u);
  Bytes b = from_backend(text("x"));
  feed(b);
  // The backend scales by 7 (the harness's wscale), the client reads with the 7 it was told.
  EXPECT_EQ(parse_tcp_packet(b).packet.window(), c.backend_window);
}

// ---- clocks ---------------------------------------------------------------------------------------

TEST_F(Established, AWallClockStepDoesNotExpireFlows) {
  // Cookies count on the cookie clock (TAI in the daemon), timers on the timer clock (monotonic):
  // setting the wall clock a day ahead must not free the flows.
  cfg.established_idle_s = 60;
  const uint64_t mono = 5000 * kSecond;
  jar.emplace(fixed_secrets());
  engine.emplace(cfg, *jar);
  learn_cookie(c);
  Bytes third = c.third_ack();
  engine->process(third, EngineClock{now, mono}, sink);
  ASSERT_EQ(sink.size(), 1u);
  Seen syn(sink.packets[0]);
  sink.clear();
  Bytes synack = c.backend_synack(syn.pkt.options().tsval);
  engine->process(synack, EngineClock{now, mono}, sink);
  EXPECT_EQ(counters().established, 1u);
  const uint64_t day = 86400 * kSecond;
  engine->advance(EngineClock{now + day, mono + kSecond}, sink);
  EXPECT_EQ(counters().flows_active, 1u) << "a wall-clock step is not idle time";
  engine->advance(EngineClock{now + day, mono + 3 * 60 * kSecond}, sink);
  EXPECT_EQ(counters().flows_active, 0u) << "idle time on the timer clock still expires it";
}

TEST_F(Established, IdleFlowExpires) {
  cfg.established_idle_s = 10;
  open();
  now += 5 * kSecond;
  feed(from_client(text("ping")));
  now += 9 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 1u) << "activity 9 s ago: still alive";
  now += 25 * kSecond;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(Established, NewCookieAckOnLingeringTupleStartsANewConnection) {
  open();
  feed(from_client({}, tcp_flag::FIN | tcp_flag::ACK));
  feed(from_backend({}, tcp_flag::FIN | tcp_flag::ACK));
  feed(from_client({}, tcp_flag::ACK, c.cookie_isn + 2));
  // The client reuses its port at once, as a busy client with few ports does.
  Conn again = Conn::v4(c.c2s.sport);
  again.client_isn = c.client_isn + 100000;
  again.backend_isn = 0x12345678;
  std::vector<Seen> out = establish(again);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].pkt.ack(), again.backend_isn + 1);
  EXPECT_EQ(counters().flows_reused, 1u);
  EXPECT_EQ(counters().flows_active, 1u);
}

// ---- bounded memory and refusals -------------------------------------------------------------------

TEST_F(EngineTest, FlowEntryFitsTheBudget) {
  cfg.max_flows = 100000;
  cfg.max_flows_per_source = 16;
  cfg.early_data_slots = 0;
  start();
  EXPECT_LE(Engine::flow_entry_bytes(), 128u);
  const double per_flow = static_cast<double>(engine->memory_bytes()) / cfg.max_flows;
  EXPECT_LE(per_flow, 160.0);
  RecordProperty("flow_entry_bytes", static_cast<int>(Engine::flow_entry_bytes()));
}

TEST_F(EngineTest, FullTableRefusesNewFlowsWithReset) {
  cfg.max_flows = 2;
  for (uint16_t port = 1000; port < 1002; ++port) {
    Conn c = Conn::v4(port);
    open_to_backend_syn(c);
  }
  Conn c = Conn::v4(2000);
  learn_cookie(c);
  feed(c.third_ack());
  ASSERT_EQ(sink.size(), 1u);
  EXPECT_TRUE(Seen(sink.packets[0]).pkt.has(tcp_flag::RST));
  EXPECT_EQ(counters().drop(DropReason::TableFull), 1u);
  EXPECT_EQ(counters().flows_refused, 1u);
  EXPECT_EQ(counters().flows_active, 2u);
}

TEST_F(EngineTest, FullTableEvictsALingeringFlowFirst) {
  cfg.max_flows = 1;
  start();
  Conn a = Conn::v4(1000);
  establish(a);
  SegmentSpec rst{.tuple = a.c2s, .seq = a.client_isn + 1, .flags = tcp_flag::RST};
  feed(make(rst));  // -> linger
  Conn b = Conn::v4(1001);
  open_to_backend_syn(b);
  EXPECT_EQ(counters().flows_active, 1u);
  EXPECT_EQ(counters().flows_refused, 0u);
}

TEST_F(EngineTest, PerSourceLimitIsEnforced) {
  cfg.max_flows_per_source = 2;
  for (uint16_t port = 1000; port < 1002; ++port) {
    Conn c = Conn::v4(port);
    open_to_backend_syn(c);
  }
  Conn c = Conn::v4(1002);
  learn_cookie(c);
  feed(c.third_ack());
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 1u);
  // Another source is not affected.
  Conn other = Conn::v4(1002);
  other.c2s.src = *Address::parse("10.10.1.3");
  open_to_backend_syn(other);
  EXPECT_EQ(counters().flows_active, 3u);
}

TEST_F(EngineTest, PerSourceLimitCountsAnIpv6Slash64AsOneSource) {
  // One host holding a /64 must not take the whole table: with 2 flows per source, the third
  // flow from another address of the same /64 is refused, while another /64 is served.
  cfg.max_flows_per_source = 2;
  for (uint16_t i = 0; i < 2; ++i) {
    Conn c = Conn::v6(static_cast<uint16_t>(1000 + i));
    c.c2s.src.bytes[15] = static_cast<uint8_t>(0x10 + i);
    c.c2s.src.bytes[8] = static_cast<uint8_t>(i);  // the interface-identifier half differs
    open_to_backend_syn(c);
  }
  Conn third = Conn::v6(1002);
  third.c2s.src.bytes[15] = 0x99;
  third.c2s.src.bytes[12] = 0x42;
  learn_cookie(third);
  feed(third.third_ack());
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 1u) << "a /64 held more flows than one source may";
  Conn other = Conn::v6(1003);
  other.c2s.src.bytes[7] ^= 1;  // the next /64
  open_to_backend_syn(other);
  EXPECT_EQ(counters().flows_active, 3u);
}

TEST_F(EngineTest, PerSourcePrefixV6IsConfigurable) {
  cfg.max_flows_per_source = 1;
  cfg.source_prefix_v6 = 128;
  for (uint16_t i = 0; i < 4; ++i) {
    Conn c = Conn::v6(static_cast<uint16_t>(1000 + i));
    c.c2s.src.bytes[15] = static_cast<uint8_t>(0x10 + i);
    open_to_backend_syn(c);
  }
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 0u);
  EXPECT_EQ(counters().flows_active, 4u);
}

TEST_F(EngineTest, AFullTableIsCountedAsTableFullEvenForASourceAtItsLimit) {
  cfg.max_flows = 2;
  cfg.max_flows_per_source = 2;
  for (uint16_t port = 1000; port < 1002; ++port) {
    Conn c = Conn::v4(port);
    open_to_backend_syn(c);
  }
  Conn c = Conn::v4(2000);  // the same source, at its limit, and no room left
  learn_cookie(c);
  feed(c.third_ack());
  EXPECT_EQ(counters().drop(DropReason::TableFull), 1u);
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 0u);
}

TEST_F(EngineTest, BackscatterBudgetAClientThatProvedItselfIsNotLockedOutByASpooferOfItsPrefix) {
  auto p = std::make_shared<SourcePolicy>();
  p->synack_per_prefix_per_s = 10;
  p->synack_per_address_per_s = 5;
  cfg.policy = p;
  Conn first = Conn::v4(1000);
  open_to_backend_syn(first);  // a cookie ACK: 10.10.1.2 proved it receives at its address
  int spoofed_answered = 0, client_refused = 0;
  for (int i = 0; i < 2000; ++i) {
    Conn spoof = Conn::v4(static_cast<uint16_t>(3000 + i));
    spoof.c2s.src.bytes[15] = static_cast<uint8_t>(3 + i % 200);  // elsewhere in 10.10.1.0/24
    sink.clear();
    feed(spoof.syn());
    spoofed_answered += static_cast<int>(sink.size());
    if (i % 20 == 0) {
      Conn c = Conn::v4(static_cast<uint16_t>(10000 + i));
      sink.clear();
      feed(c.syn());
      if (sink.size() != 1) {
        ++client_refused;
        continue;
      }
      c.cookie_isn = Seen(sink.packets.at(0)).pkt.seq();
      c.synack_tsval = Seen(sink.packets.at(0)).pkt.options().tsval;
      sink.clear();
      feed(c.third_ack());  // answered: the SYN-ACK is given back
    }
  }
  EXPECT_EQ(client_refused, 0);
  // The /24's 10 a second, less the one the client's first SYN took before it had proved itself.
  EXPECT_EQ(spoofed_answered, 9) << "SYN-ACKs to a /24 that never answers: its budget, no more";
  // Spoofing the proven address itself draws at most its unanswered budget.
  int at_client = 0;
  for (int i = 0; i < 500; ++i) {
    Conn spoof = Conn::v4(static_cast<uint16_t>(20000 + i));
    sink.clear();
    feed(spoof.syn());
    at_client += static_cast<int>(sink.size());
  }
  EXPECT_EQ(at_client, 5);
}

TEST_F(EngineTest, ClosedFlowsGiveTheirSourceQuotaBack) {
  cfg.max_flows_per_source = 1;
  cfg.linger_s = 1;
  Conn a = Conn::v4(1000);
  open_to_backend_syn(a);
  SegmentSpec rst{.tuple = a.c2s.reversed(), .ack = a.client_isn + 1, .flags = tcp_flag::RST | tcp_flag::ACK};
  feed(make(rst));
  EXPECT_EQ(counters().flows_active, 0u);
  Conn b = Conn::v4(1001);
  open_to_backend_syn(b);
  EXPECT_EQ(counters().flows_active, 1u);
}

TEST_F(EngineTest, LingeringFlowsDoNotCountAgainstTheirSource) {
  // One client that opens and closes connections faster than they linger (a NAT, a load
  // tester) must not be refused for its closed ones.
  cfg.max_flows_per_source = 2;
  cfg.linger_s = 30;
  for (uint16_t port = 1000; port < 1010; ++port) {
    Conn c = Conn::v4(port);
    establish(c);
    SegmentSpec rst{.tuple = c.c2s, .seq = c.client_isn + 1, .flags = tcp_flag::RST};
    feed(make(rst));  // -> linger
  }
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 0u);
  EXPECT_EQ(counters().flows_active, 10u);  // all ten still linger
  // Open ones still count: two open, the third is refused.
  Conn a = Conn::v4(2000), b = Conn::v4(2001), c = Conn::v4(2002);
  establish(a);
  establish(b);
  learn_cookie(c);
  feed(c.third_ack());
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 1u);
  // Expiring the lingering flows later must not give back quota the open flows hold.
  now += 31 * kMs * 1000;
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 2u);
  learn_cookie(c);
  feed(c.third_ack());
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 2u);
}

TEST_F(EngineTest, RefusedSourceDoesNotEvictAnotherClientsLingeringFlow) {
  cfg.max_flows = 2;
  cfg.max_flows_per_source = 1;
  Conn lingering = Conn::v4(1000);
  lingering.c2s.src = *Address::parse("10.10.1.7");
  establish(lingering);
  SegmentSpec rst{.tuple = lingering.c2s, .seq = lingering.client_isn + 1, .flags = tcp_flag::RST};
  feed(make(rst));
  Conn open = Conn::v4(1001);
  open_to_backend_syn(open);
  Conn refused = Conn::v4(1002);  // same source as `open`, over its limit
  learn_cookie(refused);
  feed(refused.third_ack());
  EXPECT_EQ(counters().drop(DropReason::SourceLimit), 1u);
  EXPECT_EQ(counters().flows_active, 2u);  // the lingering flow is still there
}

// ---- what is not ours ------------------------------------------------------------------------------

TEST_F(EngineTest, UnprotectedTrafficPassesUntouched) {
  Conn c = Conn::v4();
  c.c2s.dport = 22;
  Bytes b = c.syn();
  const Bytes before = b;
  Decision d = feed(b);
  EXPECT_EQ(d.verdict, Verdict::Accept);
  EXPECT_FALSE(d.modified);
  EXPECT_EQ(b, before);
  EXPECT_EQ(counters().passed_through, 1u);
}

TEST_F(EngineTest, ServicesCanBeReplacedWithoutLosingFlows) {
  Conn c = Conn::v4();
  std::vector<Seen> out = establish(c);
  Service extra{*Address::parse("10.10.3.3"), 25};
  engine->set_services({cfg.services[0], extra});
  Bytes b;
  {
    SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                  .flags = tcp_flag::ACK, .window = 100};
    b = make(s);
  }
  EXPECT_TRUE(feed(b).modified) << "the live flow is still translated";
  Conn smtp = Conn::v4();
  smtp.c2s.dst = extra.address;
  smtp.c2s.dport = extra.port;
  sink.clear();
  feed(smtp.syn());
  EXPECT_EQ(sink.size(), 1u) << "the new service is protected";
}

TEST_F(EngineTest, MalformedPacketsAreDroppedAndCounted) {
  Bytes junk = {0x45, 0x00, 0x00};
  EXPECT_EQ(feed(junk).verdict, Verdict::Drop);
  Conn c = Conn::v4();
  Bytes frag = c.syn();
  frag[6] = 0x20;  // MF: a fragmented SYN must not slip past the cookie check
  EXPECT_EQ(feed(frag).verdict, Verdict::Drop);
  EXPECT_EQ(counters().drop(DropReason::Truncated), 1u);
  EXPECT_EQ(counters().drop(DropReason::Fragment), 1u);
  EXPECT_EQ(sink.size(), 0u);
}

TEST_F(EngineTest, AckForUnknownFlowWithoutCookieIsDropped) {
  Conn c = Conn::v4();
  c.cookie_isn = 0xdeadbeef;
  feed(c.third_ack());
  EXPECT_EQ(counters().drop(DropReason::CookieInvalid), 1u);
  SegmentSpec s{.tuple = c.c2s.reversed(), .seq = 5, .ack = 6, .flags = tcp_flag::ACK};
  feed(make(s));
  EXPECT_EQ(counters().drop(DropReason::NoFlow), 1u);
}

// ---- client variants -------------------------------------------------------------------------------

struct Variant {
  std::string name;
  bool v6;
  bool timestamps;
  bool wscale;
  bool sack;
  uint16_t mss;
};

class ClientVariants : public EngineTest, public ::testing::WithParamInterface<Variant> {};

TEST_P(ClientVariants, HandshakeAndDataBothWays) {
  const Variant& v = GetParam();
  Conn c = v.v6 ? Conn::v6() : Conn::v4();
  c.client_syn_opts.mss = v.mss;
  c.client_syn_opts.has_timestamps = v.timestamps;
  c.client_syn_opts.has_wscale = v.wscale;
  c.client_syn_opts.sack_permitted = v.sack;
  c.backend_synack_opts = c.client_syn_opts;
  c.backend_synack_opts.tsval = c.backend_ts;
  c.backend_synack_opts.mss = 1460;

  Seen syn = open_to_backend_syn(c, text("hi"));
  const TcpOptions& o = syn.pkt.options();
  // Less the room for timestamps syngate may have to add (a backend not heard from yet).
  EXPECT_EQ(o.mss, v.mss - (v.timestamps ? 12 : 0)) << "the backend must get the client's MSS, not a coarse step";
  EXPECT_EQ(o.has_timestamps, v.timestamps);
  EXPECT_EQ(o.has_wscale, v.timestamps && v.wscale) << "scaling needs timestamps to cross the cookie";
  EXPECT_EQ(o.sack_permitted, v.timestamps && v.sack);
  if (o.has_wscale) {
    EXPECT_EQ(o.wscale, 7);
  }
  const Delivered d = feed_in_slot(c.backend_synack(o.has_timestamps ? o.tsval : 0));
  ASSERT_EQ(d.wire.size(), 2u);
  Seen data(d.wire[0]);
  EXPECT_EQ(data.pkt.payload_len(), 2u);
  EXPECT_EQ(data.pkt.options().has_timestamps, v.timestamps);

  TcpOptions bo;
  if (v.timestamps) {
    bo.has_timestamps = true;
    bo.tsval = c.backend_ts + 7;
    bo.tsecr = 1001;
  }
  SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 3,
                .flags = tcp_flag::ACK | tcp_flag::PSH, .window = 1000, .options = bo,
                .payload = text("response")};
  Bytes b = make(s);
  EXPECT_EQ(feed(b).verdict, Verdict::Accept);
  ParseResult r = parse_tcp_packet(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.packet.seq(), c.cookie_isn + 1);
  EXPECT_TRUE(r.packet.checksum_valid());
  if (v.timestamps) {
    EXPECT_EQ(r.packet.options().tsval, c.synack_tsval + 7);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Engine, ClientVariants,
    ::testing::Values(Variant{"v4_full_1460", false, true, true, true, 1460},
                      Variant{"v4_mss536", false, true, true, true, 536},
                      Variant{"v4_mss1220", false, true, true, true, 1220},
                      Variant{"v4_mss1260", false, true, true, true, 1260},
                      Variant{"v4_jumbo8960", false, true, true, true, 8960},
                      Variant{"v4_no_timestamps", false, false, true, true, 1460},
                      Variant{"v4_no_wscale", false, true, false, true, 1460},
                      Variant{"v4_no_sack", false, true, true, false, 1460},
                      Variant{"v4_bare", false, false, false, false, 1260},
                      Variant{"v6_full", true, true, true, true, 1440},
                      Variant{"v6_mss1220_no_ts", true, false, true, true, 1220}),
    [](const ::testing::TestParamInfo<Variant>& i) { return i.param.name; });

}  // namespace
}  // namespace syngate::test

namespace syngate::test {
namespace {

TEST_F(EngineTest, ARemovedServiceDrainsItsFlows) {
  Conn c = Conn::v4();
  establish(c);
  engine->set_services({cfg.services[1]});  // 10.10.3.2:80 removed
  ASSERT_EQ(engine->draining_services().size(), 1u);
  SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                .flags = tcp_flag::ACK, .window = 100};
  Bytes from_server = make(s);
  EXPECT_TRUE(feed(from_server).modified) << "the live flow of a removed service is still translated";
  SegmentSpec cs{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK, .window = 100};
  Bytes from_client = make(cs);
  EXPECT_TRUE(feed(from_client).modified);
  // A new connection to the removed service is no longer proxied: its SYN passes untouched.
  Conn fresh = Conn::v4(41000);
  sink.clear();
  Bytes syn = fresh.syn();
  const Bytes before = syn;
  Decision d = feed(syn);
  EXPECT_EQ(d.verdict, Verdict::Accept);
  EXPECT_EQ(syn, before);
  EXPECT_EQ(sink.size(), 0u);
  engine->prune_draining();
  EXPECT_EQ(engine->draining_services().size(), 1u) << "a flow is still open";
  now += 2 * kSecond * cfg.established_idle_s + kSecond;
  engine->advance(now, sink);
  engine->prune_draining();
  EXPECT_TRUE(engine->draining_services().empty()) << "its last flow ended";
  // Adding it back protects it again.
  engine->set_services({cfg.services[0], cfg.services[1]});
  sink.clear();
  Bytes again = Conn::v4(42000).syn();
  feed(again);
  EXPECT_EQ(sink.size(), 1u);
}

}  // namespace
}  // namespace syngate::test
