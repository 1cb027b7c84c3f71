// The malformed-SYN builder: each kind carries its one defect at the expected bytes, and
// everything else stays valid (IP checksum, TCP checksum where the frame holds the segment).
#include "frame.hpp"
#include "malform.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

using namespace syngate;
using namespace syngate::flood;

namespace {

SynFields fields() {
  SynFields f;
  f.src_ip = *parse_ipv4("198.18.0.7");
  f.dst_ip = *parse_ipv4("10.99.0.2");
  f.sport = 40000;
  f.dport = 80;
  f.seq = 0x11223344;
  f.mss = 1460;
  f.tsval = 0xaabbccdd;
  f.ip_id = 0x1234;
  return f;
}

std::vector<uint8_t> build(Malform kind, const SynFields& f = fields()) {
  std::vector<uint8_t> out(128);
  const size_t n = build_malformed_syn(out, kind, f);
  out.resize(n);
  return out;
}

size_t ihl(const std::vector<uint8_t>& ip) { return size_t{ip[0] & 0x0fu} * 4; }

bool ip_checksum_ok(std::span<const uint8_t> ip) {
  return csum_fold(csum_partial(ip.subspan(0, size_t{ip[0] & 0x0fu} * 4))) == 0;
}

// TCP checksum over `segment` (checksum field included) with the pseudo-header of `ip`.
bool tcp_checksum_ok(std::span<const uint8_t> ip, std::span<const uint8_t> segment) {
  std::vector<uint8_t> s(segment.begin(), segment.end());
  const uint16_t stored = load_be16(s.data() + 16);
  s[16] = s[17] = 0;
  return tcp_checksum_v4(std::span<const uint8_t, 4>(ip.data() + 12, 4), std::span<const uint8_t, 4>(ip.data() + 16, 4),
                         s) == stored;
}

std::span<const uint8_t> tcp_of(const std::vector<uint8_t>& ip) {
  return std::span<const uint8_t>(ip).subspan(ihl(ip), load_be16(ip.data() + 2) - ihl(ip));
}

ParseError parse_error(std::vector<uint8_t> ip) { return parse_tcp_packet(ip).error; }

const uint8_t kNormalOptions[20] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 0, 1, 3, 3, 7};

}  // namespace

TEST(Malform, NamesRoundTrip) {
  EXPECT_EQ(malform_kinds().size(), 11u);
  for (const auto& k : malform_kinds()) {
    EXPECT_EQ(parse_malform(k.name), k.kind);
    EXPECT_EQ(to_string(k.kind), k.name);
    EXPECT_FALSE(k.description.empty());
  }
  EXPECT_EQ(parse_malform("none"), Malform::None);
  EXPECT_FALSE(parse_malform("xmas"));
}

TEST(Malform, NormalSynIsValidAndParses) {
  const auto ip = build(Malform::None);
  ASSERT_EQ(ip.size(), 60u);
  EXPECT_EQ(ip[0], 0x45);
  EXPECT_EQ(load_be16(ip.data() + 6), 0x4000);  // DF, no fragment
  EXPECT_EQ(load_be16(ip.data() + 4), 0x1234);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(std::memcmp(ip.data() + 40, kNormalOptions, 20), 0);
  auto copy = ip;
  const auto parsed = parse_tcp_packet(copy);
  ASSERT_TRUE(parsed) << to_string(parsed.error);
  EXPECT_EQ(parsed.packet.flags(), tcp_flag::SYN);
  EXPECT_EQ(parsed.packet.sport(), 40000);
  EXPECT_EQ(parsed.packet.seq(), 0x11223344u);
  EXPECT_TRUE(parsed.packet.options().has_mss && parsed.packet.options().sack_permitted &&
              parsed.packet.options().has_timestamps && parsed.packet.options().has_wscale);
}

TEST(Malform, ZeroLengthOption) {
  const auto ip = build(Malform::OptZeroLength);
  ASSERT_EQ(ip.size(), 60u);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(ip[20 + 12], 0xa0);  // data offset 10 words: the header is whole
  EXPECT_EQ(ip[40 + 6], 8);      // timestamp kind ...
  EXPECT_EQ(ip[40 + 7], 0);      // ... with length 0
  std::vector<uint8_t> expect(kNormalOptions, kNormalOptions + 20);
  expect[7] = 0;
  EXPECT_EQ(std::memcmp(ip.data() + 40, expect.data(), 20), 0);  // every other option byte normal
  EXPECT_EQ(parse_error(ip), ParseError::BadTcpOption);
}

TEST(Malform, OptionPastHeader) {
  const auto ip = build(Malform::OptPastHeader);
  ASSERT_EQ(ip.size(), 60u);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(ip[20 + 12] >> 4, 10);
  EXPECT_EQ(ip[40 + 16], 2);                     // MSS, 4 bytes before the end of the options ...
  EXPECT_EQ(ip[40 + 17], 12);                    // ... claiming 12
  EXPECT_GT(16u + ip[40 + 17], 20u);             // which runs past the data offset
  EXPECT_EQ(load_be16(ip.data() + 40 + 18), 1460);
  EXPECT_EQ(parse_error(ip), ParseError::BadTcpOption);
}

TEST(Malform, OptionLengthOne) {
  const auto ip = build(Malform::OptLengthOne);
  ASSERT_EQ(ip.size(), 60u);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(ip[40 + 4], 4);  // SACK-permitted ...
  EXPECT_EQ(ip[40 + 5], 1);  // ... of length 1
  EXPECT_EQ(parse_error(ip), ParseError::BadTcpOption);
}

TEST(Malform, IpOptions) {
  const auto ip = build(Malform::IpOptions);
  ASSERT_EQ(ip.size(), 72u);
  EXPECT_EQ(ip[0], 0x48);  // IHL 8
  EXPECT_EQ(load_be16(ip.data() + 2), 72);
  const uint8_t opts[12] = {1, 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::memcmp(ip.data() + 20, opts, 12), 0);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(std::memcmp(ip.data() + 32 + 20, kNormalOptions, 20), 0);  // the TCP part is the normal SYN
  auto copy = ip;
  const auto parsed = parse_tcp_packet(copy);  // well-formed, just unusual
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed.packet.tcp_offset(), 32u);
}

TEST(Malform, DataOffsets) {
  auto ip = build(Malform::DataOffsetShort);
  ASSERT_EQ(ip.size(), 60u);
  EXPECT_EQ(ip[20 + 12], 0x40);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(parse_error(ip), ParseError::BadTcpDataOffset);

  ip = build(Malform::DataOffsetLong);
  ASSERT_EQ(ip.size(), 60u);
  EXPECT_EQ(ip[20 + 12], 0xf0);  // 60 bytes claimed ...
  EXPECT_EQ(tcp_of(ip).size(), 40u);  // ... of a 40-byte segment
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
  EXPECT_EQ(parse_error(ip), ParseError::BadTcpDataOffset);
}

TEST(Malform, TruncatedHeader) {
  const auto ip = build(Malform::TruncatedHeader);
  ASSERT_EQ(ip.size(), 38u);
  EXPECT_EQ(load_be16(ip.data() + 2), 38);  // 18 bytes of TCP
  EXPECT_EQ(ip[20 + 12], 0x50);
  EXPECT_EQ(ip[20 + 13], tcp_flag::SYN);
  EXPECT_TRUE(ip_checksum_ok(ip));
  EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));  // the checksum field is among the 18 bytes
  EXPECT_EQ(parse_error(ip), ParseError::TruncatedTcpHeader);
}

TEST(Malform, FragmentsSplitTheNormalSyn) {
  const auto first = build(Malform::FirstFragment);
  const auto later = build(Malform::LaterFragment);
  const auto whole = build(Malform::None);
  ASSERT_EQ(first.size(), 20 + kFragmentSplit);
  ASSERT_EQ(later.size(), 20 + kFullSynTcpLen - kFragmentSplit);
  EXPECT_EQ(load_be16(first.data() + 6), 0x2000);  // MF, offset 0
  EXPECT_EQ(load_be16(later.data() + 6), 3);       // offset 3 * 8 = 24, no MF
  EXPECT_EQ(load_be16(first.data() + 4), load_be16(later.data() + 4));  // one datagram
  EXPECT_TRUE(ip_checksum_ok(first));
  EXPECT_TRUE(ip_checksum_ok(later));
  // Reassembled, they are the normal SYN, checksum included.
  std::vector<uint8_t> seg(first.begin() + 20, first.end());
  seg.insert(seg.end(), later.begin() + 20, later.end());
  EXPECT_TRUE(std::equal(seg.begin(), seg.end(), whole.begin() + 20));
  EXPECT_TRUE(tcp_checksum_ok(whole, seg));
  EXPECT_EQ(parse_error(first), ParseError::Fragment);
  EXPECT_EQ(parse_error(later), ParseError::Fragment);
}

TEST(Malform, ImpossibleFlags) {
  for (const auto& [kind, flags] : {std::pair{Malform::SynFin, tcp_flag::SYN | tcp_flag::FIN},
                                   std::pair{Malform::SynRst, tcp_flag::SYN | tcp_flag::RST}}) {
    auto ip = build(kind);
    ASSERT_EQ(ip.size(), 60u);
    EXPECT_EQ(ip[20 + 13], flags);
    EXPECT_TRUE(ip_checksum_ok(ip));
    EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip)));
    EXPECT_EQ(std::memcmp(ip.data() + 40, kNormalOptions, 20), 0);
    const auto parsed = parse_tcp_packet(ip);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed.packet.flags(), flags);
  }
}

TEST(Malform, TooSmallBufferBuildsNothing) {
  std::vector<uint8_t> out(30);
  EXPECT_EQ(build_malformed_syn(out, Malform::None, fields()), 0u);
  EXPECT_EQ(build_malformed_syn(out, Malform::TruncatedHeader, fields()), 0u);
}

// The flood's template keeps each defect, and valid checksums, through render().
TEST(Malform, RenderedFramesKeepTheDefect) {
  FrameSpec spec;
  spec.src_mac = *parse_mac("02:00:00:00:00:01");
  spec.dst_mac = *parse_mac("02:00:00:00:00:02");
  spec.dst_ip = *parse_ipv4("10.99.0.2");
  spec.dst_port = 80;
  FrameSpec later_spec = spec;
  later_spec.malform = Malform::LaterFragment;
  const auto later_tmpl = FrameTemplate::make(later_spec);
  ASSERT_TRUE(later_tmpl);
  for (const auto& k : malform_kinds()) {
    spec.malform = k.kind;
    const auto t = FrameTemplate::make(spec);
    ASSERT_TRUE(t) << k.name;
    SynFields tf;  // what the template starts from; render() varies only the fields skipped below
    tf.src_ip = kBenchmarkRange.base + 1;
    tf.dst_ip = spec.dst_ip;
    tf.sport = 1024;
    tf.dport = 80;
    tf.tsval = 1;
    const auto reference = build(k.kind, tf);
    ASSERT_EQ(t->length(), kEthHeaderLen + reference.size()) << k.name;
    FastRandom rng(3);
    AddressIterator addrs(kBenchmarkRange, 5);
    std::vector<uint8_t> frame(kMaxFrameLen);
    for (int i = 0; i < 200; ++i) {
      const uint32_t src = addrs.next();
      const uint64_t r = rng.next();
      const uint16_t sport = static_cast<uint16_t>(1024 + i);
      t->render(frame.data(), src, sport, static_cast<uint32_t>(r), 0, tcp_flag::SYN);
      const std::vector<uint8_t> ip(frame.begin() + kEthHeaderLen, frame.begin() + static_cast<long>(t->length()));
      ASSERT_TRUE(ip_checksum_ok(ip)) << k.name;
      EXPECT_EQ(load_be32(ip.data() + 12), src);
      // Outside the fields render() varies, the frame is the builder's.
      const size_t h = ihl(ip);
      for (size_t b = 0; b < ip.size(); ++b) {
        const bool varied = b == 10 || b == 11 || (b >= 12 && b < 16) ||
                            (k.kind != Malform::LaterFragment && b >= h && (b < h + 12 || b == h + 16 || b == h + 17));
        if (!varied) {
          EXPECT_EQ(ip[b], reference[b]) << k.name << " byte " << b;
        }
      }
      if (k.kind == Malform::LaterFragment) continue;
      EXPECT_EQ(load_be16(ip.data() + h), sport);
      EXPECT_EQ(load_be32(ip.data() + h + 4), static_cast<uint32_t>(r));
      if (k.kind == Malform::FirstFragment) {
        std::vector<uint8_t> seg(ip.begin() + static_cast<long>(h), ip.end());
        const auto tail = later_tmpl->bytes().subspan(kEthHeaderLen + 20);
        seg.insert(seg.end(), tail.begin(), tail.end());
        EXPECT_TRUE(tcp_checksum_ok(ip, seg)) << k.name;
      } else {
        EXPECT_TRUE(tcp_checksum_ok(ip, tcp_of(ip))) << k.name;
      }
    }
  }
}

// ---- IPv6 ----------------------------------------------------------------------------------

namespace {
const Ip6 kSrc6 = *parse_ipv6("2001:2::7");
const Ip6 kDst6 = *parse_ipv6("fd00:77::2");

std::vector<uint8_t> build6(Malform kind, const SynFields& f = fields()) {
  std::vector<uint8_t> out(128);
  out.resize(build_malformed_syn6(out, kind, f, kSrc6, kDst6));
  return out;
}

bool tcp_checksum6_ok(std::span<const uint8_t> segment) {
  std::vector<uint8_t> s(segment.begin(), segment.end());
  const uint16_t stored = load_be16(s.data() + 16);
  s[16] = s[17] = 0;
  return tcp_checksum_v6(std::span<const uint8_t, 16>(kSrc6), std::span<const uint8_t, 16>(kDst6), s) == stored;
}
}  // namespace

// Every kind with an IPv6 form carries the same TCP bytes as its IPv4 form (checked byte by
// byte above), behind a valid IPv6 header, with the IPv6 checksum.
TEST(Malform6, SameTcpDefectBehindAnIpv6Header) {
  EXPECT_FALSE(malform_has_ipv6_form(Malform::IpOptions));
  EXPECT_TRUE(build6(Malform::IpOptions).empty());
  for (const auto& k : malform_kinds()) {
    if (!malform_has_ipv6_form(k.kind)) continue;
    const auto ip = build6(k.kind);
    ASSERT_FALSE(ip.empty()) << k.name;
    EXPECT_EQ(ip[0], 0x60);
    EXPECT_EQ(ip[7], 64);
    EXPECT_EQ(load_be16(ip.data() + 4), ip.size() - 40) << k.name;
    EXPECT_TRUE(std::equal(kSrc6.begin(), kSrc6.end(), ip.begin() + 8));
    EXPECT_TRUE(std::equal(kDst6.begin(), kDst6.end(), ip.begin() + 24));
    const bool fragment = k.kind == Malform::FirstFragment || k.kind == Malform::LaterFragment;
    const size_t tcp = fragment ? 48 : 40;
    EXPECT_EQ(ip[6], fragment ? 44 : 6) << k.name;
    const auto v4 = build(k.kind);
    const std::vector<uint8_t> tcp4(v4.begin() + static_cast<long>(ihl(v4)), v4.end());
    const std::vector<uint8_t> tcp6(ip.begin() + static_cast<long>(tcp), ip.end());
    ASSERT_EQ(tcp4.size(), tcp6.size()) << k.name;
    for (size_t b = 0; b < tcp4.size(); ++b) {
      const bool checksum_byte = k.kind != Malform::LaterFragment && (b == 16 || b == 17);
      if (!checksum_byte) {
        EXPECT_EQ(tcp6[b], tcp4[b]) << k.name << " TCP byte " << b;
      }
    }
    if (!fragment) {
      EXPECT_TRUE(tcp_checksum6_ok(tcp6)) << k.name;
    }
  }
}

TEST(Malform6, ParserVerdicts) {
  const std::pair<Malform, ParseError> cases[] = {
      {Malform::OptZeroLength, ParseError::BadTcpOption},     {Malform::OptPastHeader, ParseError::BadTcpOption},
      {Malform::OptLengthOne, ParseError::BadTcpOption},      {Malform::DataOffsetShort, ParseError::BadTcpDataOffset},
      {Malform::DataOffsetLong, ParseError::BadTcpDataOffset}, {Malform::TruncatedHeader, ParseError::TruncatedTcpHeader},
      {Malform::FirstFragment, ParseError::Fragment},         {Malform::LaterFragment, ParseError::Fragment},
      {Malform::SynFin, ParseError::None},                    {Malform::SynRst, ParseError::None},
  };
  for (const auto& [kind, expected] : cases) EXPECT_EQ(parse_error(build6(kind)), expected) << to_string(kind);
}

TEST(Malform6, FragmentHeadersSplitTheNormalSyn) {
  const auto first = build6(Malform::FirstFragment);
  const auto later = build6(Malform::LaterFragment);
  const auto whole = build6(Malform::None);
  EXPECT_EQ(first[40], 6);                            // next header after the fragment header
  EXPECT_EQ(load_be16(first.data() + 42), 0x0001);    // offset 0, M set
  EXPECT_EQ(load_be16(later.data() + 42), 3u << 3);   // offset 3 * 8 = 24, M clear
  EXPECT_EQ(load_be32(first.data() + 44), 0x1234u);   // one identification for both
  EXPECT_EQ(load_be32(later.data() + 44), 0x1234u);
  std::vector<uint8_t> seg(first.begin() + 48, first.end());
  seg.insert(seg.end(), later.begin() + 48, later.end());
  EXPECT_TRUE(std::equal(seg.begin(), seg.end(), whole.begin() + 40));
  EXPECT_TRUE(tcp_checksum6_ok(seg));
}

TEST(Malform6, RenderedFramesKeepTheDefect) {
  FrameSpec spec;
  spec.src_mac = *parse_mac("02:00:00:00:00:01");
  spec.dst_mac = *parse_mac("02:00:00:00:00:02");
  spec.dst_ip6 = kDst6;
  spec.dst_port = 80;
  for (const auto& k : malform_kinds()) {
    if (!malform_has_ipv6_form(k.kind)) continue;
    spec.malform = k.kind;
    const auto t = FrameTemplate::make(spec);
    ASSERT_TRUE(t) << k.name;
    AddressIterator6 addrs(kBenchmarkRange6, 5);
    std::vector<uint8_t> frame(kMaxFrameLen);
    for (int i = 0; i < 100; ++i) {
      const Ip6 src = addrs.next();
      t->render6(frame.data(), src, static_cast<uint16_t>(3000 + i), 77u + static_cast<uint32_t>(i), 0, tcp_flag::SYN);
      EXPECT_EQ(frame[12], 0x86);
      const std::vector<uint8_t> ip(frame.begin() + kEthHeaderLen, frame.begin() + static_cast<long>(t->length()));
      EXPECT_TRUE(std::equal(src.begin(), src.end(), ip.begin() + 8));
      const bool fragment = k.kind == Malform::FirstFragment || k.kind == Malform::LaterFragment;
      if (fragment) continue;
      std::vector<uint8_t> seg(ip.begin() + 40, ip.end());
      std::vector<uint8_t> s(seg);
      const uint16_t stored = load_be16(s.data() + 16);
      s[16] = s[17] = 0;
      EXPECT_EQ(tcp_checksum_v6(std::span<const uint8_t, 16>(src), std::span<const uint8_t, 16>(kDst6), s), stored)
          << k.name;
      EXPECT_EQ(load_be16(seg.data()), 3000 + i);
      EXPECT_EQ(parse_error(ip), parse_error(build6(k.kind))) << k.name;  // the defect survives
    }
  }
}
