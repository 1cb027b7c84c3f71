// ICMP errors about TCP segments (core/icmp.cpp): what the parser recognises, and the quote's
// translation between a proxied flow's two sequence spaces, on quotes of every length.
#include <gtest/gtest.h>

#include <vector>

#include "syngate_test/icmp_builder.hpp"
#include "syngate_test/segments.hpp"
#include "syngate/bytes.hpp"
#include "syngate/icmp.hpp"
#include "syngate/packet.hpp"

namespace syngate::test {
namespace {

constexpr uint32_t kDelta = 0x6f3c1a27;  // backend ISN - cookie ISN
constexpr uint32_t kTsoff = 0x01020304;  // backend TSval - our TSval

const Address kClient = *Address::parse("10.10.1.2");
const Address kServer = *Address::parse("10.10.3.2");
const Address kRouter = *Address::parse("10.10.4.2");
const Address kClient6 = *Address::parse("fd00:10:1::2");
const Address kServer6 = *Address::parse("fd00:10:3::2");
const Address kRouter6 = *Address::parse("fd00:10:4::2");

// `s` carrying `payload` bytes of data.
Bytes data_segment(const SegmentSpec& s, size_t payload = 1400) {
  Bytes data(payload, 0x5a);
  SegmentSpec spec = s;
  spec.payload = data;
  Bytes b = segment(spec);
  EXPECT_FALSE(b.empty());
  return b;
}

TcpOptions timestamps(uint32_t tsval, uint32_t tsecr) {
  TcpOptions o;
  o.has_timestamps = true;
  o.tsval = tsval;
  o.tsecr = tsecr;
  return o;
}

// A server -> client segment as the backend sent it, and as it left the gateway.
SegmentSpec server_segment(bool v6, uint32_t backend_seq = 0x80000001, uint32_t backend_ts = 7000000) {
  return {.tuple = {v6 ? kServer6 : kServer, v6 ? kClient6 : kClient, 80, 40000},
          .seq = backend_seq, .ack = 0x1001, .flags = tcp_flag::ACK | tcp_flag::PSH, .window = 500,
          .options = timestamps(backend_ts, 1005)};
}
SegmentSpec as_client_sees(SegmentSpec s) {
  s.seq -= kDelta;
  s.options.tsval -= kTsoff;
  return s;
}
// A client -> server segment as the client sent it, and as the gateway forwarded it.
SegmentSpec client_segment(bool v6, uint32_t cookie_ack = 0x20000001) {
  TcpOptions o = timestamps(1005, 12345);
  o.sack_count = 2;
  o.sack[0] = {cookie_ack + 1000, cookie_ack + 2000};
  o.sack[1] = {cookie_ack + 3000, cookie_ack + 4000};
  return {.tuple = {v6 ? kClient6 : kClient, v6 ? kServer6 : kServer, 40000, 80},
          .seq = 0x1001, .ack = cookie_ack, .flags = tcp_flag::ACK, .window = 502, .options = o};
}
SegmentSpec as_backend_sees(SegmentSpec s) {
  s.ack += kDelta;
  s.options.tsecr += kTsoff;
  for (size_t i = 0; i < s.options.sack_count; ++i) {
    s.options.sack[i].left += kDelta;
    s.options.sack[i].right += kDelta;
  }
  return s;
}

Bytes frag_needed(const Bytes& quoted, const Address& to, size_t quote_len = 1u << 16) {
  return to.is_v4() ? icmp_error(quoted, kRouter, to, 3, 4, 1280, quote_len)
                    : icmp_error(quoted, kRouter6, to, 2, 0, 1280, quote_len);
}

size_t tcp_header_len(Bytes b) {
  const ParseResult r = parse_tcp_packet(b);
  EXPECT_TRUE(r);
  return r.packet.tcp_header_len();
}

size_t ip_header(const Bytes& b) { return (b[0] >> 4) == 4 ? 20 : 40; }
// The quote inside an error built by icmp_error (outer IP header + 8 bytes of ICMP header).
std::span<const uint8_t> quote_of(const Bytes& err) { return std::span<const uint8_t>(err).subspan(ip_header(err) + 8); }

// ---- parsing --------------------------------------------------------------------------------

TEST(IcmpParse, FragmentationNeededQuotingTcpIsAnError) {
  const Bytes seg = data_segment(as_client_sees(server_segment(false)));
  const Bytes err = frag_needed(seg, kServer, 576 - 28);
  const IcmpError e = parse_icmp_error(err);
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_TRUE(e.v4);
  EXPECT_EQ(e.type, 3);
  EXPECT_EQ(e.code, 4);
  EXPECT_EQ(e.quoted, (FlowTuple{kServer, kClient, 80, 40000}));
  EXPECT_EQ(e.icmp_offset, 20u);
  EXPECT_EQ(e.tcp_offset, 48u);
  EXPECT_EQ(e.tcp_length, 576u - 48);
}

TEST(IcmpParse, PacketTooBigQuotingTcpIsAnError) {
  const Bytes seg = data_segment(as_client_sees(server_segment(true)));
  const Bytes err = frag_needed(seg, kServer6, 1280 - 48);
  const IcmpError e = parse_icmp_error(err);
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_FALSE(e.v4);
  EXPECT_EQ(e.type, 2);
  EXPECT_EQ(e.quoted, (FlowTuple{kServer6, kClient6, 80, 40000}));
  EXPECT_EQ(e.tcp_offset, 40u + 8 + 40);
}

TEST(IcmpParse, EveryErrorThatConcernsTcpCounts) {
  const Bytes seg = data_segment(client_segment(false));
  for (uint8_t type : {3, 11, 12}) {
    EXPECT_EQ(parse_icmp_error(icmp_error(seg, kRouter, kClient, type, 1)).kind, IcmpKind::TcpError) << int{type};
  }
  const Bytes seg6 = data_segment(client_segment(true));
  for (uint8_t type : {1, 2, 3, 4}) {
    EXPECT_EQ(parse_icmp_error(icmp_error(seg6, kRouter6, kClient6, type, 0)).kind, IcmpKind::TcpError) << int{type};
  }
}

TEST(IcmpParse, OtherIcmpIsLeftUntouched) {
  const Bytes seg = data_segment(client_segment(false));
  for (uint8_t type : {0, 4, 5, 8, 13}) {  // echo reply, source quench, redirect, echo, timestamp
    EXPECT_EQ(parse_icmp_error(icmp_error(seg, kRouter, kClient, type, 0)).kind, IcmpKind::Untouched) << int{type};
  }
  const Bytes seg6 = data_segment(client_segment(true));
  for (uint8_t type : {128, 129, 135, 137}) {  // echo, neighbour solicitation, redirect
    EXPECT_EQ(parse_icmp_error(icmp_error(seg6, kRouter6, kClient6, type, 0)).kind, IcmpKind::Untouched) << int{type};
  }
}

TEST(IcmpParse, QuotesThatAreNotWholeTcpHeadersAreLeftUntouched) {
  const Bytes seg = data_segment(client_segment(false));
  // Less than ports and sequence number.
  EXPECT_EQ(parse_icmp_error(frag_needed(seg, kClient, 20 + 7)).kind, IcmpKind::Untouched);
  EXPECT_EQ(parse_icmp_error(frag_needed(seg, kClient, 19)).kind, IcmpKind::Untouched);
  EXPECT_EQ(parse_icmp_error(frag_needed(seg, kClient, 20 + 8)).kind, IcmpKind::TcpError);
  // A UDP quote.
  Bytes udp = seg;
  udp[9] = 17;
  EXPECT_EQ(parse_icmp_error(frag_needed(udp, kClient)).kind, IcmpKind::Untouched);
  // A later fragment carries no TCP header.
  Bytes later = seg;
  later[7] = 0x10;
  EXPECT_EQ(parse_icmp_error(frag_needed(later, kClient)).kind, IcmpKind::Untouched);
  // An IPv6 quote in an IPv4 error.
  EXPECT_EQ(parse_icmp_error(icmp_error(data_segment(client_segment(true)), kRouter, kClient, 3, 4)).kind,
            IcmpKind::Untouched);
  // An IPv6 quote with a v4-mapped address: never a flow.
  Bytes mapped = data_segment(client_segment(true));
  for (int i = 0; i < 10; ++i) mapped[8 + i] = 0;
  mapped[18] = mapped[19] = 0xff;
  EXPECT_EQ(parse_icmp_error(frag_needed(mapped, kClient6)).kind, IcmpKind::Untouched);
}

TEST(IcmpParse, AnIpv6QuoteBehindExtensionHeadersIsFound) {
  Bytes seg = data_segment(client_segment(true));
  // A hop-by-hop header (8 bytes: next header, length 0, PadN) in front of TCP.
  const uint8_t hbh[8] = {6, 0, 1, 4, 0, 0, 0, 0};
  seg.insert(seg.begin() + 40, hbh, hbh + 8);
  seg[6] = 0;
  const uint16_t len = static_cast<uint16_t>(seg.size() - 40);
  seg[4] = static_cast<uint8_t>(len >> 8);
  seg[5] = static_cast<uint8_t>(len);
  const IcmpError e = parse_icmp_error(frag_needed(seg, kClient6));
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_EQ(e.tcp_offset, 40u + 8 + 48);
  EXPECT_EQ(e.quoted.dport, 80);
}

TEST(IcmpParse, Rfc4884LengthBoundsTheQuote) {
  const Bytes seg = data_segment(client_segment(false));
  Bytes err = icmp_error(seg, kRouter, kClient, 11, 0, 0, 128);
  err.resize(err.size() + 8, 0xee);  // an extension structure after the 128-byte quote
  err[2] = static_cast<uint8_t>(err.size() >> 8);
  err[3] = static_cast<uint8_t>(err.size());
  err[20 + 5] = 128 / 4;
  const IcmpError e = parse_icmp_error(err);
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_EQ(e.tcp_length, 128u - 20);
}

TEST(IcmpParse, NotIcmpAtAll) {
  Bytes seg = data_segment(client_segment(false));
  EXPECT_EQ(parse_icmp_error(seg).kind, IcmpKind::NotIcmp);
  Bytes err = frag_needed(seg, kClient);
  EXPECT_EQ(parse_icmp_error(std::span<const uint8_t>(err.data(), 19)).kind, IcmpKind::NotIcmp);
  err[2] = 0xff;  // total length past the buffer
  EXPECT_EQ(parse_icmp_error(err).kind, IcmpKind::NotIcmp);
  EXPECT_EQ(parse_icmp_error({}).kind, IcmpKind::NotIcmp);
}

// ---- translation ----------------------------------------------------------------------------

// The TCP header bytes of a quote, checksum field excluded (the gateway's incremental updates
// of the segment's own checksum are not undone).
Bytes header_without_checksum(std::span<const uint8_t> ip_packet, size_t n) {
  const size_t off = (ip_packet[0] >> 4) == 4 ? (ip_packet[0] & 0x0f) * 4u : 40;
  Bytes h(ip_packet.begin() + off, ip_packet.begin() + off + n);
  h[16] = h[17] = 0;
  return h;
}

struct Translate : ::testing::TestWithParam<bool> {};  // IPv6?

TEST_P(Translate, AnErrorToTheServerQuotesTheBackendsSegmentAgain) {
  const bool v6 = GetParam();
  const Bytes sent = data_segment(server_segment(v6));
  const Bytes forwarded = data_segment(as_client_sees(server_segment(v6)));
  Bytes err = frag_needed(forwarded, v6 ? kServer6 : kServer);
  const IcmpError e = parse_icmp_error(err);
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_EQ(shift_quote(err, e, quote_shift_to_server(kDelta, kTsoff)), 2);
  const size_t hdr = tcp_header_len(sent);
  EXPECT_EQ(header_without_checksum(quote_of(err), hdr), header_without_checksum(sent, hdr));
  EXPECT_EQ(icmp_checksum_residue(err), 0) << "the ICMP checksum must follow the quote";
}

TEST_P(Translate, AnErrorToTheClientQuotesTheClientsSegmentAgain) {
  const bool v6 = GetParam();
  const Bytes sent = data_segment(client_segment(v6));
  const Bytes forwarded = data_segment(as_backend_sees(client_segment(v6)));
  Bytes err = frag_needed(forwarded, v6 ? kClient6 : kClient);
  const IcmpError e = parse_icmp_error(err);
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_EQ(shift_quote(err, e, quote_shift_to_client(kDelta, kTsoff)), 1 + 1 + 4);  // ack, TSecr, 2 SACK blocks
  const size_t hdr = tcp_header_len(sent);
  EXPECT_EQ(header_without_checksum(quote_of(err), hdr), header_without_checksum(sent, hdr));
  EXPECT_EQ(icmp_checksum_residue(err), 0);
}

INSTANTIATE_TEST_SUITE_P(Families, Translate, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "IPv6" : "IPv4"; });

// Every cut of the quote, from 8 bytes of TCP header to all of it: the fields wholly present are
// translated, nothing past the quote is read or written, and the checksum stays right.
TEST(IcmpTranslate, QuotesCutAnywhereTranslateWhatTheyHold) {
  for (bool v6 : {false, true}) {
    const Bytes sent = data_segment(client_segment(v6), 0);
    const Bytes forwarded = data_segment(as_backend_sees(client_segment(v6)), 0);
    const size_t ip = v6 ? 40 : 20;
    const size_t hdr = forwarded.size() - ip;  // 20 + 32 bytes of options: NOP NOP TS, NOP NOP SACK(2)
    for (size_t cut = 8; cut <= hdr; ++cut) {
      Bytes err = frag_needed(forwarded, v6 ? kClient6 : kClient, ip + cut);
      const Bytes before = err;
      const IcmpError e = parse_icmp_error(err);
      ASSERT_EQ(e.kind, IcmpKind::TcpError) << cut;
      ASSERT_EQ(e.tcp_length, cut);
      shift_quote(err, e, quote_shift_to_client(kDelta, kTsoff));
      EXPECT_EQ(icmp_checksum_residue(err), 0) << "cut " << cut;
      ASSERT_EQ(err.size(), before.size());
      const auto q = quote_of(err).subspan(ip);
      const auto want = std::span<const uint8_t>(sent).subspan(ip);
      const auto was = std::span<const uint8_t>(forwarded).subspan(ip);
      // A field is back in the client's space when the quote holds it whole (and, for options, the
      // whole option); otherwise untouched.
      auto field_ok = [&](size_t at, size_t len, size_t whole_until) {
        const auto& ref = cut >= whole_until ? want : was;
        for (size_t i = at; i < at + len && i < cut; ++i) {
          if (q[i] != ref[i]) return false;
        }
        return true;
      };
      EXPECT_TRUE(field_ok(0, 8, 8)) << "ports and seq, cut " << cut;
      EXPECT_TRUE(field_ok(8, 4, 12)) << "ack, cut " << cut;
      EXPECT_TRUE(field_ok(22, 10, 32)) << "timestamps, cut " << cut;
      EXPECT_TRUE(field_ok(34, 18, 52)) << "SACK, cut " << cut;
    }
  }
}

TEST(IcmpTranslate, AnAckLessSegmentKeepsItsAcknowledgmentField) {
  SegmentSpec s = client_segment(false);
  s.flags = tcp_flag::RST;
  s.ack = 0x12345678;
  const Bytes forwarded = data_segment(s, 0);
  Bytes err = frag_needed(forwarded, kClient);
  shift_quote(err, parse_icmp_error(err), quote_shift_to_client(kDelta, kTsoff));
  const auto q = quote_of(err).subspan(20);
  EXPECT_EQ(load_be32(q.data() + 8), 0x12345678u);
}

// Options need not be aligned: a timestamp behind a single NOP sits at odd offsets, where an
// incremental checksum update must add the bytes swapped.
TEST(IcmpTranslate, FieldsAtOddOffsetsKeepTheChecksumRight) {
  SegmentSpec s = client_segment(false);
  s.options = {};
  Bytes seg = data_segment(s, 0);
  const uint8_t opts[16] = {tcp_option::NOP, tcp_option::TIMESTAMP, 10, 0, 0, 0x03, 0xed, 0x11, 0x22, 0x33, 0x44,
                            tcp_option::NOP, tcp_option::NOP, tcp_option::NOP, tcp_option::NOP, tcp_option::END};
  seg.insert(seg.end(), opts, opts + 16);
  seg[20 + 12] = (20 + 16) / 4 << 4;
  seg[2] = 0;
  seg[3] = static_cast<uint8_t>(seg.size());
  Bytes err = frag_needed(seg, kClient);
  const IcmpError e = parse_icmp_error(err);
  ASSERT_EQ(e.kind, IcmpKind::TcpError);
  EXPECT_EQ(shift_quote(err, e, quote_shift_to_client(kDelta, kTsoff)), 2);
  EXPECT_EQ(load_be32(quote_of(err).data() + 20 + 20 + 7), 0x11223344u - kTsoff);
  EXPECT_EQ(icmp_checksum_residue(err), 0);
}

TEST(IcmpTranslate, MalformedOptionsEndTheWalk) {
  SegmentSpec s = client_segment(false);
  s.options = {};
  Bytes seg = data_segment(s, 0);
  // A zero-length option, then what would be a timestamp: not an option any more.
  const uint8_t opts[12] = {0x1e, 0, tcp_option::TIMESTAMP, 10, 0, 0, 0, 1, 0, 0, 0, 2};
  seg.insert(seg.end(), opts, opts + 12);
  seg[20 + 12] = (20 + 12) / 4 << 4;
  seg[3] = static_cast<uint8_t>(seg.size());
  Bytes err = frag_needed(seg, kClient);
  const Bytes before = err;
  EXPECT_EQ(shift_quote(err, parse_icmp_error(err), quote_shift_to_client(kDelta, kTsoff)), 1);  // the ack only
  EXPECT_TRUE(std::equal(err.begin() + 48 + 20, err.end(), before.begin() + 48 + 20));
  EXPECT_EQ(icmp_checksum_residue(err), 0);
}

TEST(IcmpTranslate, NothingHappensToWhatIsNotATcpError) {
  Bytes echo = icmp_error(data_segment(client_segment(false)), kRouter, kClient, 8, 0);
  const Bytes before = echo;
  EXPECT_EQ(shift_quote(echo, parse_icmp_error(echo), quote_shift_to_client(kDelta, kTsoff)), 0);
  EXPECT_EQ(echo, before);
}

}  // namespace
}  // namespace syngate::test
