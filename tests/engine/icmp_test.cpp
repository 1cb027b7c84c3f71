// ICMP errors about proxied flows through the engine: a router's error quotes a segment as the
// engine passed it on; the endpoint it is addressed to must get the segment it sent itself.
#include <gtest/gtest.h>

#include <string_view>

#include "syngate_test/icmp_builder.hpp"
#include "syngate_test/engine_harness.hpp"
#include "syngate/icmp.hpp"

namespace syngate::test {
namespace {

std::span<const uint8_t> text(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

struct IcmpThroughEngine : EngineTest, ::testing::WithParamInterface<bool> {
  Conn c = GetParam() ? Conn::v6() : Conn::v4();
  Address router() const { return GetParam() ? *Address::parse("fd00:10:4::2") : *Address::parse("10.10.4.2"); }

  // A data segment of the backend's (backend space) and what the engine made of it.
  std::pair<Bytes, Bytes> backend_data(uint32_t ts = 50000100) {
    TcpOptions o;
    o.has_timestamps = true;
    o.tsval = ts;
    o.tsecr = 1001;
    const std::string payload(1400, 'd');
    SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_next, .ack = c.client_next,
                  .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.backend_window, .options = o,
                  .payload = text(payload)};
    c.backend_next += static_cast<uint32_t>(payload.size());
    Bytes sent = make(s);
    Bytes forwarded = sent;
    EXPECT_EQ(feed(forwarded).verdict, Verdict::Accept);
    return {sent, forwarded};
  }
  // A data segment of the client's acknowledging the backend's data so far, with a SACK block.
  std::pair<Bytes, Bytes> client_data() {
    TcpOptions o = c.client_ts_opts(1005);
    const uint32_t acked = c.cookie_isn + 1 + (c.backend_next - c.backend_isn - 1);
    o.sack_count = 1;
    o.sack[0] = {acked + 1000, acked + 2000};
    const std::string payload(1400, 'u');
    SegmentSpec s{.tuple = c.c2s, .seq = c.client_next, .ack = acked, .flags = tcp_flag::ACK,
                  .window = c.client_window, .options = o, .payload = text(payload)};
    c.client_next += static_cast<uint32_t>(payload.size());
    Bytes sent = make(s);
    Bytes forwarded = sent;
    EXPECT_EQ(feed(forwarded).verdict, Verdict::Accept);
    return {sent, forwarded};
  }
  Bytes too_big(const Bytes& quoted, const Address& to) {
    return GetParam() ? icmp_error(quoted, router(), to, 2, 0, 1280, 1280 - 48)
                      : icmp_error(quoted, router(), to, 3, 4, 1280, 576 - 28);
  }
};

// The quote's TCP header as bytes, without the segment's own checksum (which the engine's
// incremental updates changed and the translation of a quote leaves alone).
Bytes quoted_header(const Bytes& err, size_t len) {
  const size_t ip = (err[0] >> 4) == 4 ? 20 : 40;
  Bytes h(err.begin() + static_cast<long>(2 * ip + 8), err.begin() + static_cast<long>(2 * ip + 8 + len));
  h[16] = h[17] = 0;
  return h;
}
Bytes tcp_header(const Bytes& segment) {
  Bytes copy = segment;
  const ParseResult r = parse_tcp_packet(copy);
  EXPECT_TRUE(r);
  Bytes h(segment.begin() + static_cast<long>(r.packet.tcp_offset()),
          segment.begin() + static_cast<long>(r.packet.tcp_offset() + r.packet.tcp_header_len()));
  h[16] = h[17] = 0;
  return h;
}

TEST_P(IcmpThroughEngine, AnErrorToTheServerQuotesWhatTheServerSent) {
  establish(c);
  auto [sent, forwarded] = backend_data();
  ASSERT_NE(tcp_header(sent), tcp_header(forwarded)) << "the engine translated the segment";
  Bytes err = too_big(forwarded, c.c2s.dst);
  const Decision d = feed(err);
  EXPECT_EQ(d.verdict, Verdict::Accept);
  EXPECT_TRUE(d.modified);
  EXPECT_EQ(quoted_header(err, tcp_header(sent).size()), tcp_header(sent));
  EXPECT_EQ(icmp_checksum_residue(err), 0);
  EXPECT_EQ(counters().icmp_translated, 1u);
  EXPECT_EQ(sink.size(), 0u);
}

TEST_P(IcmpThroughEngine, AnErrorToTheClientQuotesWhatTheClientSent) {
  establish(c);
  backend_data();
  auto [sent, forwarded] = client_data();
  ASSERT_NE(tcp_header(sent), tcp_header(forwarded));
  Bytes err = too_big(forwarded, c.c2s.src);
  const Decision d = feed(err);
  EXPECT_EQ(d.verdict, Verdict::Accept);
  EXPECT_TRUE(d.modified);
  EXPECT_EQ(quoted_header(err, tcp_header(sent).size()), tcp_header(sent));
  EXPECT_EQ(icmp_checksum_residue(err), 0);
  EXPECT_EQ(counters().icmp_translated, 1u);
}

// A backend without timestamps: syngate supplies them to the client and passes the client's TSecr
// on untranslated, so a quote of the client's segment keeps its TSecr too.
TEST_P(IcmpThroughEngine, SuppliedTimestampsAreNotTranslatedInAQuote) {
  c.backend_synack_opts.has_timestamps = false;
  establish(c);
  auto [sent, forwarded] = client_data();
  Bytes err = too_big(forwarded, c.c2s.src);
  feed(err);
  EXPECT_EQ(quoted_header(err, tcp_header(sent).size()), tcp_header(sent));
  EXPECT_EQ(icmp_checksum_residue(err), 0);
}

TEST_P(IcmpThroughEngine, AnErrorIsNoSignOfLife) {
  establish(c);
  auto [sent, forwarded] = backend_data();
  now += (cfg.established_idle_s - 1) * kSecond;
  Bytes err = too_big(forwarded, c.c2s.dst);
  feed(err);
  now += 2 * kSecond;  // idle for the timeout since the data; 1 s after the error
  engine->advance(now, sink);
  EXPECT_EQ(counters().flows_active, 0u) << "errors must not keep an idle flow alive";
}

TEST_P(IcmpThroughEngine, AnErrorWithNoFlowHereGoesToTheNextQueueOrIsDropped) {
  cfg.icmp_next_queue = true;
  establish(c);
  auto [sent, forwarded] = backend_data();
  Conn other = GetParam() ? Conn::v6(41000) : Conn::v4(41000);  // never opened on this engine
  SegmentSpec s{.tuple = other.c2s.reversed(), .seq = 1, .ack = 1, .flags = tcp_flag::ACK, .window = 100};
  Bytes err = too_big(make(s), other.c2s.dst);
  const Bytes before = err;
  EXPECT_EQ(feed(err).verdict, Verdict::NextQueue);
  EXPECT_EQ(err, before);
  EXPECT_EQ(counters().icmp_passed_on, 1u);

  // The last flow worker drops it.
  cfg.icmp_next_queue = false;
  engine.reset();
  start();
  EXPECT_EQ(feed(err).verdict, Verdict::Drop);
  EXPECT_EQ(counters().drop(DropReason::IcmpNoFlow), 1u);
}

TEST_P(IcmpThroughEngine, AnErrorAboutOurOwnBackendSynIsDropped) {
  Seen syn = open_to_backend_syn(c);
  Bytes err = GetParam() ? icmp_error(syn.bytes, router(), c.c2s.src, 1, 3) : icmp_error(syn.bytes, router(), c.c2s.src, 3, 1);
  EXPECT_EQ(feed(err).verdict, Verdict::Drop);
  EXPECT_EQ(counters().drop(DropReason::IcmpNoFlow), 1u);
  EXPECT_EQ(counters().flows_active, 1u) << "the flow waits for the backend's own answer";
}

TEST_P(IcmpThroughEngine, OtherIcmpPassesUntouched) {
  establish(c);
  auto [sent, forwarded] = backend_data();
  Bytes echo = GetParam() ? icmp_error(forwarded, router(), c.c2s.dst, 128, 0) : icmp_error(forwarded, router(), c.c2s.dst, 8, 0);
  const Bytes before = echo;
  const Decision d = feed(echo);
  EXPECT_EQ(d.verdict, Verdict::Accept);
  EXPECT_FALSE(d.modified);
  EXPECT_EQ(echo, before);
  EXPECT_EQ(counters().icmp_untouched, 1u);
}

INSTANTIATE_TEST_SUITE_P(Families, IcmpThroughEngine, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "IPv6" : "IPv4"; });

}  // namespace
}  // namespace syngate::test
