// The per-segment translation specification (include/syngate/spec/xlate_spec.h): the numbers it
// produces, the checksum difference it returns (applied once, it must equal a full recompute,
// whatever the option layout), the record it keeps, and the same answers from its C compilation.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "syngate/packet.hpp"
#include "syngate/spec/xlate_spec.h"

extern "C" sg_u16 xlate_spec_from_c(sg_xlate_segment* s, const sg_xlate_params* p);
extern "C" void xlate_track_from_c(sg_flow_track* self, int self_seen, const sg_flow_track* peer, int peer_seen,
                                   sg_u32 seq, sg_u32 seq_end, sg_u32 ack, sg_u32 window_bytes);

namespace syngate {
namespace {

FlowTuple tuple(bool v6) {
  FlowTuple t;
  t.src = *Address::parse(v6 ? "fd00::2" : "10.0.0.2");
  t.dst = *Address::parse(v6 ? "fd00::3" : "10.0.0.3");
  t.sport = 40000;
  t.dport = 80;
  return t;
}

TEST(XlateSpec, ToServerMovesAckSackAndTsecrAcrossTheWrap) {
  sg_xlate_segment s{};
  s.seq = 7;
  s.ack = 0xfffffff0u;
  s.has_ack = 1;
  s.has_ts = 1;
  s.tsval = 5;
  s.tsecr = 0xffffff00u;
  s.sack_count = 2;
  const uint32_t edges[4] = {0xfffffff8u, 0x10u, 0x20u, 0x30u};
  std::memcpy(s.sack, edges, sizeof edges);
  s.window = 100;
  const sg_xlate_params p{0x20u, 0x200u, SG_XLATE_TO_SERVER, 7, 9, 1};
  sg_xlate(&s, &p);
  EXPECT_EQ(s.seq, 7u) << "the client's own numbers are the same on both sides";
  EXPECT_EQ(s.ack, 0x10u);
  EXPECT_EQ(s.sack[0], 0x18u);
  EXPECT_EQ(s.sack[1], 0x30u);
  EXPECT_EQ(s.sack[3], 0x50u);
  EXPECT_EQ(s.tsval, 5u);
  EXPECT_EQ(s.tsecr, 0x100u);
  EXPECT_EQ(s.window, 25);
  EXPECT_EQ(s.sack[4], 0u) << "edges past sack_count are not touched";
}

TEST(XlateSpec, ToClientMovesSeqAndTsvalOnly) {
  sg_xlate_segment s{};
  s.seq = 0x10u;
  s.ack = 1234;
  s.has_ack = 1;
  s.has_ts = 1;
  s.tsval = 0x100u;
  s.tsecr = 99;
  s.sack_count = 1;
  s.sack[0] = 1;
  s.sack[1] = 2;
  s.window = 0;
  const sg_xlate_params p{0x20u, 0x200u, SG_XLATE_TO_CLIENT, 0, 14, 1};
  sg_xlate(&s, &p);
  EXPECT_EQ(s.seq, 0xfffffff0u);
  EXPECT_EQ(s.tsval, 0xffffff00u);
  EXPECT_EQ(s.ack, 1234u);
  EXPECT_EQ(s.tsecr, 99u);
  EXPECT_EQ(s.sack[0], 1u) << "the server's SACK blocks already name the client's numbers";
  EXPECT_EQ(s.window, 0) << "a zero window stays zero";
}

TEST(XlateSpec, WithoutTimestampsOrAckTheFieldsStay) {
  sg_xlate_segment s{};
  s.ack = 5;
  s.tsecr = 6;
  s.has_ts = 1;  // present, but the backend does not send timestamps: it ignores TSecr
  const sg_xlate_params p{1, 1, SG_XLATE_TO_SERVER, 0, 0, 0};
  EXPECT_EQ(sg_csum_fold(sg_xlate(&s, &p)) % 0xffffu, 0u) << "nothing changed: no difference";
  EXPECT_EQ(s.ack, 5u);
  EXPECT_EQ(s.tsecr, 6u);
}

TEST(XlateSpec, ChecksumArithmeticMatchesRfc1624) {
  EXPECT_EQ(sg_csum_fold(0x1fffeu), 0xffffu);
  EXPECT_EQ(sg_csum_swap(0x1234), 0x3412);
  EXPECT_EQ(sg_csum_apply(0x1234, 0), 0x1234);
  // Odd-offset rule: 256 * x == swap16(x) modulo 0xffff.
  for (uint32_t x : {1u, 0x1234u, 0xfffeu, 0x8001u}) EXPECT_EQ((x * 256u) % 0xffffu, sg_csum_swap(x) % 0xffffu);
}

// Rewrites the options of a segment built in Linux's layout (NOP NOP TS [NOP NOP SACK]) so that
// every option field sits at an odd offset: NOP TS NOP [NOP SACK NOP].
void shift_options_odd(std::vector<uint8_t>& b, size_t tcp_off, bool sack) {
  uint8_t* o = b.data() + tcp_off + 20;
  uint8_t ts[10];
  std::memcpy(ts, o + 2, 10);
  o[0] = tcp_option::NOP;
  std::memcpy(o + 1, ts, 10);
  o[11] = tcp_option::NOP;
  if (sack) {
    const size_t len = o[12 + 3];
    std::vector<uint8_t> s(o + 12 + 2, o + 12 + 2 + len);
    o[12] = tcp_option::NOP;
    std::memcpy(o + 13, s.data(), len);
    o[13 + len] = tcp_option::NOP;
  }
}

// Applying the returned difference once gives the checksum a full recompute gives, for random
// segments: both directions, 0-4 SACK blocks, with and without timestamps, even and odd option
// offsets, IPv4 and IPv6. The C compilation returns the same bytes.
TEST(XlateSpec, OneIncrementalUpdateEqualsAFullRecompute) {
  std::mt19937 rng(23);
  std::vector<uint8_t> payload(37, 'p');
  for (int n = 0; n < 4000; ++n) {
    const bool v6 = n & 1, odd = (n >> 1) & 1, ts = ((n >> 2) & 3) != 0;
    const size_t sacks = ts ? rng() % 4 : rng() % 5;  // with TS at most 3 blocks fit
    TcpOptions o;
    o.has_timestamps = ts;
    o.tsval = rng();
    o.tsecr = rng();
    o.sack_count = static_cast<uint8_t>(sacks);
    for (size_t i = 0; i < sacks; ++i) o.sack[i] = {static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
    SegmentSpec spec{.tuple = tuple(v6), .seq = static_cast<uint32_t>(rng()), .ack = static_cast<uint32_t>(rng()),
                     .flags = tcp_flag::ACK, .window = static_cast<uint16_t>(rng() % 3 == 0 ? 0 : rng()),
                     .options = o, .payload = payload};
    std::vector<uint8_t> b(200);
    b.resize(build_tcp_packet(b, spec));
    ASSERT_FALSE(b.empty());
    ParseResult r = parse_tcp_packet(b);
    ASSERT_TRUE(r);
    if (odd && ts && sacks < 3) {
      shift_options_odd(b, r.packet.tcp_offset(), sacks > 0);
      r.packet.recompute_checksum();
      r = parse_tcp_packet(b);
      ASSERT_TRUE(r);
      ASSERT_EQ(r.packet.options().ts_offset % 2, 1);
    }
    ASSERT_TRUE(r.packet.checksum_valid());
    const sg_xlate_params p{static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                            static_cast<uint8_t>(rng() % 2), static_cast<uint8_t>(rng() % 15),
                            static_cast<uint8_t>(rng() % 15), static_cast<uint8_t>(rng() % 2)};
    sg_xlate_segment s = r.packet.xlate_fields();
    sg_xlate_segment c = s;
    const uint16_t diff = sg_xlate(&s, &p);
    EXPECT_EQ(xlate_spec_from_c(&c, &p), diff);
    EXPECT_EQ(std::memcmp(&c, &s, sizeof s), 0);
    r.packet.store_xlate(s, diff);
    const uint16_t incremental = r.packet.checksum();
    EXPECT_TRUE(r.packet.checksum_valid()) << "case " << n;
    r.packet.recompute_checksum();
    EXPECT_EQ(incremental, r.packet.checksum()) << "case " << n << ": byte-identical to a full recompute";
  }
}

TEST(XlateSpec, TrackingStartsOnceAndThenMovesOnlyOnPlausibleSegments) {
  sg_flow_track self{}, peer{1000, 5000, 65535};
  sg_flow_track_segment(&self, 0, &peer, 0, 5000, 5100, 1000, 2000);
  EXPECT_EQ(self.next, 5100u);
  EXPECT_EQ(self.acked, 1000u);
  EXPECT_EQ(self.window, 2000u);
  // Peer not seen yet: the record stays.
  sg_flow_track_segment(&self, 1, &peer, 0, 5100, 5200, 1000, 3000);
  EXPECT_EQ(self.next, 5100u);
  // In the peer's window, acking what the peer sent: moves (never backwards for next).
  sg_flow_track_segment(&self, 1, &peer, 1, 5100, 5300, 1000, 4000);
  EXPECT_EQ(self.next, 5300u);
  EXPECT_EQ(self.window, 4000u);
  sg_flow_track_segment(&self, 1, &peer, 1, 5000, 5050, 1000, 4000);
  EXPECT_EQ(self.next, 5300u) << "a retransmission does not take the record back";
  // A blind guess: far outside the window, or acking what the peer never sent.
  sg_flow_track_segment(&self, 1, &peer, 1, 0x80000000u, 0x80000010u, 1000, 1);
  EXPECT_EQ(self.next, 5300u);
  sg_flow_track_segment(&self, 1, &peer, 1, 5300, 5300, 1001, 1);
  EXPECT_EQ(self.acked, 1000u);
  sg_flow_track c = self;
  xlate_track_from_c(&c, 1, &peer, 1, 5300, 5400, 1000, 7);
  sg_flow_track_segment(&self, 1, &peer, 1, 5300, 5400, 1000, 7);
  EXPECT_EQ(std::memcmp(&c, &self, sizeof c), 0);
}

TEST(XlateSpec, NewestTsvalFollowsSequenceOrder) {
  EXPECT_TRUE(sg_tsval_newer(5, 0, 0)) << "the first one is the newest";
  EXPECT_TRUE(sg_tsval_newer(100, 100, 1)) << "a pure ACK at the same sequence number";
  EXPECT_TRUE(sg_tsval_newer(5, 0xfffffff0u, 1)) << "across the wrap";
  EXPECT_FALSE(sg_tsval_newer(99, 100, 1)) << "a retransmission of older data";
}


// A forwarded IPv4 header must still verify after the TTL goes down by one: over every TTL a
// forward can lower (2..255) and random headers, the ones' complement sum of the header with its
// updated checksum is 0xffff, as a full recompute's is.
TEST(XlateSpec, Ipv4ChecksumStaysValidWhenTheTtlGoesDown) {
  std::mt19937 rng(7);
  auto sum_of = [](const uint8_t* h) {
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += static_cast<uint32_t>(h[i] << 8 | h[i + 1]);
    return sg_csum_fold(sum);
  };
  for (int n = 0; n < 100000; ++n) {
    uint8_t h[20];
    for (uint8_t& b : h) b = static_cast<uint8_t>(rng());
    h[0] = 0x45;
    h[8] = static_cast<uint8_t>(2 + n % 254);
    h[10] = h[11] = 0;
    const uint16_t check = static_cast<uint16_t>(~sum_of(h));
    h[10] = static_cast<uint8_t>(check >> 8);
    h[11] = static_cast<uint8_t>(check);
    ASSERT_EQ(sum_of(h), 0xffff);
    h[8] -= 1;
    const uint16_t updated = sg_ipv4_check_after_ttl_decrement(check);
    h[10] = static_cast<uint8_t>(updated >> 8);
    h[11] = static_cast<uint8_t>(updated);
    ASSERT_EQ(sum_of(h), 0xffff) << "ttl " << int(h[8]) << " check " << std::hex << check;
  }
}

}  // namespace
}  // namespace syngate
