// IPv6 pieces of the generator: ranges, the source iterator, the frame template and the route
// table parser.
#include "addr.hpp"
#include "frame.hpp"
#include "netinfo.hpp"
#include "rewrite.hpp"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "syngate/packet.hpp"

using namespace syngate;
using namespace syngate::flood;

TEST(Ipv6Range, ParseAndContain) {
  std::string err;
  const auto c = parse_cidr6("2001:2::/48", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(*c, kBenchmarkRange6);
  EXPECT_EQ(c->to_string(), "2001:2::/48");
  EXPECT_TRUE(c->contains(*parse_ipv6("2001:2:0:ffff::1")));
  EXPECT_FALSE(c->contains(*parse_ipv6("2001:2:1::1")));
  EXPECT_TRUE(parse_cidr6("2001:2:0:1::/64")->within(kBenchmarkRange6));
  EXPECT_FALSE(parse_cidr6("2001:db8::/32")->within(kBenchmarkRange6));
  EXPECT_FALSE(parse_cidr6("2001::/16")->within(kBenchmarkRange6));  // wider than the range
  EXPECT_FALSE(parse_cidr6("2001:2::1/48", &err));
  EXPECT_NE(err.find("host bits"), std::string::npos);
  EXPECT_FALSE(parse_cidr6("2001:2::/129"));
  EXPECT_FALSE(parse_cidr6("198.18.0.0/15"));
  EXPECT_EQ(parse_cidr6("::1")->prefix, 128);
}

TEST(Ipv6Range, Endpoint) {
  const auto e = parse_endpoint6("[fd00:77::2]:8080");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ip, *parse_ipv6("fd00:77::2"));
  EXPECT_EQ(e->port, 8080);
  EXPECT_FALSE(parse_endpoint6("fd00:77::2:8080"));
  EXPECT_FALSE(parse_endpoint6("[fd00:77::2]:0"));
  EXPECT_FALSE(parse_endpoint6("[fd00:77::2]:65536"));
  EXPECT_FALSE(parse_endpoint6("[10.0.0.1]:80"));
}

TEST(Ipv6Range, IteratorStaysInRangeAndVaries) {
  const auto small = *parse_cidr6("2001:2::/120");
  AddressIterator6 it(small, 42);
  std::set<Ip6> seen;
  for (int i = 0; i < 255; ++i) {
    const Ip6 a = it.next();
    EXPECT_TRUE(small.contains(a));
    EXPECT_NE(a, small.base);  // the subnet-router anycast address is skipped
    seen.insert(a);
  }
  EXPECT_EQ(seen.size(), 255u);  // full period over the 8 host bits, minus the zero host
  AddressIterator6 wide(kBenchmarkRange6, 7);
  std::set<Ip6> wide_seen;
  for (int i = 0; i < 10000; ++i) {
    const Ip6 a = wide.next();
    ASSERT_TRUE(kBenchmarkRange6.contains(a));
    wide_seen.insert(a);
  }
  EXPECT_EQ(wide_seen.size(), 10000u);
}

TEST(Ipv6Frame, RenderedFramesAreValid) {
  FrameSpec spec;
  spec.src_mac = *parse_mac("02:00:00:00:00:01");
  spec.dst_mac = *parse_mac("02:00:00:00:00:02");
  spec.dst_ip6 = *parse_ipv6("fd00:77::2");
  spec.dst_port = 80;
  const auto t = FrameTemplate::make(spec);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->is_v6());
  ASSERT_EQ(t->length(), kEthHeaderLen + 40 + 24u);
  AddressIterator6 addrs(kBenchmarkRange6, 3);
  FastRandom rng(9);
  std::vector<uint8_t> frame(kMaxFrameLen);
  for (int i = 0; i < 2000; ++i) {
    const Ip6 src = addrs.next();
    const uint64_t r = rng.next();
    const uint8_t flags = flood_flags(FloodKind::Mixed, static_cast<uint64_t>(i));
    t->render6(frame.data(), src, static_cast<uint16_t>(2000 + i), static_cast<uint32_t>(r),
               static_cast<uint32_t>(r >> 32), flags);
    EXPECT_EQ(frame[12], 0x86);
    EXPECT_EQ(frame[13], 0xDD);
    auto parsed = parse_tcp_packet(std::span<uint8_t>(frame.data() + kEthHeaderLen, t->length() - kEthHeaderLen));
    ASSERT_TRUE(parsed) << to_string(parsed.error);
    const TcpPacket& p = parsed.packet;
    EXPECT_FALSE(p.is_v4());
    EXPECT_TRUE(p.checksum_valid()) << i;
    EXPECT_EQ(p.src(), Address::from_v6(src));
    EXPECT_EQ(p.dst(), Address::from_v6(*spec.dst_ip6));
    EXPECT_EQ(p.sport(), 2000 + i);
    EXPECT_EQ(p.seq(), static_cast<uint32_t>(r));
    EXPECT_EQ(p.flags(), flags);
  }
  spec.malform = Malform::IpOptions;
  EXPECT_FALSE(FrameTemplate::make(spec));  // IPv6 has no header options to put there
}

TEST(Ipv6Route, LongestPrefixThenMetric) {
  const char* table =
      "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000077000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
      "fd000077000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 veth0\n"
      "fd000077000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000200 00000001 00000000 00000001 veth9\n"
      "fd000099000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00200200 lo\n";
  auto r = pick_route6(table, *parse_ipv6("fd00:77::2"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->iface, "veth0");
  EXPECT_EQ(r->next_hop, *parse_ipv6("fd00:77::2"));  // on-link: the target itself
  r = pick_route6(table, *parse_ipv6("2001:db8::1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->iface, "eth0");
  EXPECT_EQ(r->next_hop, *parse_ipv6("fd00:77::1"));
  r = pick_route6(table, *parse_ipv6("fd00:99::1"));  // only a reject route is that specific
  ASSERT_TRUE(r);
  EXPECT_EQ(r->iface, "eth0");
}

TEST(Ipv6Replay, RetargetsMapsAndFixesTheChecksum) {
  std::vector<uint8_t> buf(kMaxHeadersLen + 3);
  SegmentSpec s;
  s.tuple = {Address::from_v6(*parse_ipv6("2001:db8::10")), Address::from_v6(*parse_ipv6("2001:db8::20")), 40000, 443};
  s.flags = tcp_flag::SYN;
  s.seq = 7;
  const uint8_t payload[3] = {1, 2, 3};
  s.payload = payload;
  buf.resize(build_tcp_packet(buf, s));
  ASSERT_GT(buf.size(), 60u);
  buf[40 + 16] ^= 0x55;  // a checksum the capturing NIC never filled in
  RewriteConfig6 cfg;
  cfg.dst_ip = *parse_ipv6("fd00:77::2");
  cfg.dst_port = 80;
  cfg.spoof = kBenchmarkRange6;
  size_t len = 0;
  auto copy = buf;
  ASSERT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::None);
  EXPECT_EQ(len, buf.size());
  auto parsed = parse_tcp_packet(copy);
  ASSERT_TRUE(parsed) << to_string(parsed.error);
  EXPECT_TRUE(parsed.packet.checksum_valid());
  EXPECT_EQ(parsed.packet.dst(), Address::from_v6(cfg.dst_ip));
  EXPECT_EQ(parsed.packet.dport(), 80);
  EXPECT_EQ(parsed.packet.sport(), 40000);
  EXPECT_EQ(parsed.packet.payload_len(), 3u);
  const Ip6 mapped = map_into_range6(*parse_ipv6("2001:db8::10"), kBenchmarkRange6);
  EXPECT_TRUE(kBenchmarkRange6.contains(mapped));
  EXPECT_NE(mapped, kBenchmarkRange6.base);
  EXPECT_EQ(parsed.packet.src(), Address::from_v6(mapped));
  EXPECT_NE(map_into_range6(*parse_ipv6("2001:db8::11"), kBenchmarkRange6), mapped);

  // Kept sources: only from the allowed range.
  cfg.spoof.reset();
  cfg.allowed_sources = kBenchmarkRange6;
  copy = buf;
  EXPECT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::RealSource);
  EXPECT_EQ(copy, buf);
  // What cannot be rewritten.
  copy = buf;
  copy[6] = 44;
  EXPECT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::Fragment);
  copy[6] = 0;
  EXPECT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::Ipv6ExtensionHeaders);
  copy[6] = 17;
  EXPECT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::NotTcp);
  copy = buf;
  copy[0] = 0x45;
  EXPECT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::OtherFamily);
  copy = buf;
  copy[5] += 10;  // payload length beyond the capture
  EXPECT_EQ(rewrite_ipv6_tcp(copy, cfg, len), SkipReason::Truncated);
}
