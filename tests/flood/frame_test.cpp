#include "frame.hpp"
#include "netinfo.hpp"
#include "rewrite.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <vector>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

using namespace syngate;
using namespace syngate::flood;

namespace {

FrameSpec spec() {
  FrameSpec s;
  s.src_mac = *parse_mac("02:00:00:00:00:01");
  s.dst_mac = *parse_mac("02:00:00:00:00:02");
  s.dst_ip = *parse_ipv4("10.10.3.2");
  s.dst_port = 80;
  return s;
}

bool ip_checksum_ok(std::span<const uint8_t> ip) {
  std::vector<uint8_t> h(ip.begin(), ip.begin() + (ip[0] & 0x0f) * 4);
  const uint16_t stored = static_cast<uint16_t>(h[10] << 8 | h[11]);
  h[10] = h[11] = 0;
  return ipv4_header_checksum(h) == stored;
}

}  // namespace

TEST(Mac, ParseAndFormat) {
  EXPECT_EQ(format_mac(*parse_mac("AA:bb:0c:DD:ee:0F")), "aa:bb:0c:dd:ee:0f");
  EXPECT_FALSE(parse_mac("aa:bb:cc:dd:ee"));
  EXPECT_FALSE(parse_mac("aa:bb:cc:dd:ee:gg"));
}

TEST(FloodKind, FlagsPerMode) {
  EXPECT_EQ(flood_flags(FloodKind::Syn, 5), tcp_flag::SYN);
  EXPECT_EQ(flood_flags(FloodKind::Fin, 0), tcp_flag::FIN | tcp_flag::ACK);
  int syn = 0, ack = 0, rst = 0, fin = 0;
  for (uint64_t i = 0; i < 800; ++i) {
    const uint8_t f = flood_flags(FloodKind::Mixed, i);
    syn += f == tcp_flag::SYN;
    ack += f == tcp_flag::ACK;
    rst += f == tcp_flag::RST;
    fin += f == (tcp_flag::FIN | tcp_flag::ACK);
  }
  EXPECT_EQ(syn, 400);
  EXPECT_EQ(ack, 200);
  EXPECT_EQ(rst, 100);
  EXPECT_EQ(fin, 100);
  EXPECT_FALSE(parse_flood_kind("xmas"));
}

TEST(FrameTemplate, RenderedFramesAreValidAndCarryTheFields) {
  const auto t = FrameTemplate::make(spec());
  ASSERT_TRUE(t);
  ASSERT_EQ(t->length(), kEthHeaderLen + 20 + 24u);  // SYN with an MSS option only
  FastRandom rng(1);
  AddressIterator addrs(kBenchmarkRange, 7);
  std::vector<uint8_t> frame(kMaxFrameLen);
  for (int i = 0; i < 2000; ++i) {
    const uint32_t src = addrs.next();
    const uint16_t sport = static_cast<uint16_t>(1024 + i);
    const uint64_t r = rng.next();
    const uint8_t flags = flood_flags(FloodKind::Mixed, static_cast<uint64_t>(i));
    t->render(frame.data(), src, sport, static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32), flags);
    EXPECT_EQ(std::memcmp(frame.data(), spec().dst_mac.data(), 6), 0);
    EXPECT_EQ(frame[12], 0x08);
    std::span<uint8_t> ip(frame.data() + kEthHeaderLen, t->length() - kEthHeaderLen);
    ASSERT_TRUE(ip_checksum_ok(ip)) << i;
    auto parsed = parse_tcp_packet(ip);
    ASSERT_TRUE(parsed) << to_string(parsed.error);
    const TcpPacket& p = parsed.packet;
    EXPECT_TRUE(p.checksum_valid()) << i;
    EXPECT_EQ(p.src().v4_host_order(), src);
    EXPECT_EQ(p.dst().v4_host_order(), spec().dst_ip);
    EXPECT_EQ(p.sport(), sport);
    EXPECT_EQ(p.dport(), 80);
    EXPECT_EQ(p.seq(), static_cast<uint32_t>(r));
    EXPECT_EQ(p.ack(), static_cast<uint32_t>(r >> 32));
    EXPECT_EQ(p.flags(), flags);
    EXPECT_TRUE(p.options().has_mss);
    EXPECT_EQ(p.options().mss, 1460);
  }
}

TEST(Rewrite, LocatesIpBehindEveryLinkType) {
  std::vector<uint8_t> eth(14 + 40, 0);
  eth[12] = 0x08;
  eth[14] = 0x45;
  auto loc = locate_ip(eth, LinkType::Ethernet);
  EXPECT_EQ(loc.skip, SkipReason::None);
  EXPECT_EQ(loc.offset, 14u);
  std::vector<uint8_t> vlan(18 + 40, 0);
  vlan[12] = 0x81;
  vlan[16] = 0x08;
  loc = locate_ip(vlan, LinkType::Ethernet);
  EXPECT_EQ(loc.offset, 18u);
  std::vector<uint8_t> arp(60, 0);
  arp[12] = 0x08;
  arp[13] = 0x06;
  EXPECT_EQ(locate_ip(arp, LinkType::Ethernet).skip, SkipReason::NotIp);
  std::vector<uint8_t> v6(60, 0);
  v6[12] = 0x86;
  v6[13] = 0xDD;
  EXPECT_EQ(locate_ip(v6, LinkType::Ethernet).skip, SkipReason::None);
  EXPECT_EQ(locate_ip(v6, LinkType::Ethernet).version, 6);
  EXPECT_EQ(locate_ip(eth, LinkType::Ethernet).version, 4);
  std::vector<uint8_t> sll(16 + 40, 0);
  sll[14] = 0x08;
  EXPECT_EQ(locate_ip(sll, LinkType::LinuxSll).offset, 16u);
  std::vector<uint8_t> sll2(20 + 40, 0);
  sll2[0] = 0x08;
  EXPECT_EQ(locate_ip(sll2, LinkType::LinuxSll2).offset, 20u);
  std::vector<uint8_t> null_lo{2, 0, 0, 0, 0x45};
  EXPECT_EQ(locate_ip(null_lo, LinkType::Null).offset, 4u);
  EXPECT_EQ(locate_ip(std::vector<uint8_t>(5, 0), LinkType::Ethernet).skip, SkipReason::Truncated);
  EXPECT_EQ(link_type_from_dlt(1), LinkType::Ethernet);
  EXPECT_FALSE(link_type_from_dlt(105));  // 802.11: not unwrapped
}

TEST(Rewrite, RetargetsAndFixesChecksums) {
  std::vector<uint8_t> buf(kMaxHeadersLen + 5);
  const FlowTuple t{Address::from_v4(*parse_ipv4("192.0.2.10")), Address::from_v4(*parse_ipv4("192.0.2.20")), 40000,
                    443};
  const uint8_t payload[5] = {'h', 'e', 'l', 'l', 'o'};
  SegmentSpec s;
  s.tuple = t;
  s.seq = 1;
  s.ack = 2;
  s.flags = tcp_flag::ACK | tcp_flag::PSH;
  s.window = 100;
  s.payload = payload;
  const size_t len = build_tcp_packet(buf, s);
  ASSERT_GT(len, 0u);
  buf.resize(len + 6);  // Ethernet minimum-frame padding after the IP packet
  buf[22] ^= 0xff;     // a checksum the capturing NIC never filled in: rewrite must not care
  const Cidr spoof = *parse_cidr("198.18.0.0/15");
  RewriteConfig cfg{*parse_ipv4("10.10.3.2"), 80, spoof, std::nullopt};
  size_t ip_len = 0;
  ASSERT_EQ(rewrite_ipv4_tcp(buf, cfg, ip_len), SkipReason::None);
  EXPECT_EQ(ip_len, len);
  auto parsed = parse_tcp_packet(std::span<uint8_t>(buf.data(), ip_len));
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed.packet.checksum_valid());
  EXPECT_TRUE(ip_checksum_ok(parsed.packet.bytes()));
  EXPECT_EQ(parsed.packet.dst().v4_host_order(), cfg.dst_ip);
  EXPECT_EQ(parsed.packet.dport(), 80);
  EXPECT_EQ(parsed.packet.sport(), 40000);
  EXPECT_TRUE(spoof.contains(parsed.packet.src().v4_host_order()));
  EXPECT_EQ(parsed.packet.src().v4_host_order(), map_into_range(*parse_ipv4("192.0.2.10"), spoof));
  EXPECT_EQ(parsed.packet.payload_len(), 5u);
}

TEST(Rewrite, SkipsWhatItCannotReplay) {
  std::vector<uint8_t> ip(40, 0);
  ip[0] = 0x45;
  ip[3] = 40;
  ip[9] = 17;  // UDP
  size_t len = 0;
  const RewriteConfig cfg{1, 80, std::nullopt, std::nullopt};
  EXPECT_EQ(rewrite_ipv4_tcp(ip, cfg, len), SkipReason::NotTcp);
  ip[9] = 6;
  ip[6] = 0x20;  // more fragments
  EXPECT_EQ(rewrite_ipv4_tcp(ip, cfg, len), SkipReason::Fragment);
  ip[6] = 0;
  ip[3] = 80;  // claims more bytes than captured (snaplen)
  EXPECT_EQ(rewrite_ipv4_tcp(ip, cfg, len), SkipReason::Truncated);
  ip[3] = 40;
  ip[32] = 0x40;  // TCP data offset 4 words: impossible
  EXPECT_EQ(rewrite_ipv4_tcp(ip, cfg, len), SkipReason::Malformed);
}

TEST(Rewrite, KeptSourcesMustBeInTheAllowedRange) {
  std::vector<uint8_t> buf(kMaxHeadersLen);
  const auto build_from = [&](const char* src) {
    SegmentSpec s;
    s.tuple = {Address::from_v4(*parse_ipv4(src)), Address::from_v4(*parse_ipv4("192.0.2.20")), 40000, 443};
    s.flags = tcp_flag::SYN;
    buf.assign(kMaxHeadersLen, 0);
    buf.resize(build_tcp_packet(buf, s));
  };
  RewriteConfig cfg{*parse_ipv4("10.10.3.2"), 80, std::nullopt, kBenchmarkRange};
  size_t len = 0;
  build_from("8.8.8.8");
  const auto before = buf;
  EXPECT_EQ(rewrite_ipv4_tcp(buf, cfg, len), SkipReason::RealSource);
  EXPECT_EQ(buf, before);  // untouched
  build_from("198.19.1.2");
  ASSERT_EQ(rewrite_ipv4_tcp(buf, cfg, len), SkipReason::None);
  EXPECT_EQ(load_be32(buf.data() + 12), *parse_ipv4("198.19.1.2"));  // kept
  cfg.spoof = *parse_cidr("198.18.0.0/24");  // a mapping makes every source allowed
  build_from("8.8.8.8");
  ASSERT_EQ(rewrite_ipv4_tcp(buf, cfg, len), SkipReason::None);
  EXPECT_TRUE(cfg.spoof->contains(load_be32(buf.data() + 12)));
}

TEST(Rewrite, SpoofMappingIsStableAndAvoidsEdges) {
  const Cidr c = *parse_cidr("198.18.0.0/30");
  for (uint32_t a = 0; a < 1000; ++a) {
    const uint32_t m = map_into_range(a, c);
    EXPECT_TRUE(m == c.base + 1 || m == c.base + 2);
    EXPECT_EQ(m, map_into_range(a, c));
  }
}

TEST(Rewrite, ReplaySchedule) {
  EXPECT_EQ(replay_offset_ns(1000, 1000, 1.0, 0), 0u);
  EXPECT_EQ(replay_offset_ns(0, 2'000'000'000, 2.0, 0), 1'000'000'000u);
  EXPECT_EQ(replay_offset_ns(0, 1'000'000, 0.5, 0), 2'000'000u);
  EXPECT_EQ(replay_offset_ns(0, 100, 1.0, 500), 500u);  // timestamps going backwards hold still
  EXPECT_EQ(replay_offset_ns(500, 100, 1.0, 700), 700u);
}

TEST(NetInfo, PicksLongestRouteAndReadsNeighbours) {
  // As printed on a little-endian machine (the test only runs there in practice, but the parser
  // handles both via std::endian).
  const char* route =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "eth0\t00000000\t01020A0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
      "eth0\t00020A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
      "eth1\t00030A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
  if constexpr (std::endian::native == std::endian::little) {
    auto r = pick_route(route, *parse_ipv4("10.10.3.2"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->iface, "eth1");
    EXPECT_EQ(r->next_hop, *parse_ipv4("10.10.3.2"));
    r = pick_route(route, *parse_ipv4("10.10.9.9"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->iface, "eth0");
    EXPECT_EQ(r->next_hop, *parse_ipv4("10.10.2.1"));
  }
  const char* arp =
      "IP address       HW type     Flags       HW address            Mask     Device\n"
      "10.10.2.1        0x1         0x2         aa:bb:cc:dd:ee:01     *        eth0\n"
      "10.10.2.9        0x1         0x0         00:00:00:00:00:00     *        eth0\n";
  EXPECT_EQ(format_mac(*find_neighbour(arp, *parse_ipv4("10.10.2.1"), "eth0")), "aa:bb:cc:dd:ee:01");
  EXPECT_FALSE(find_neighbour(arp, *parse_ipv4("10.10.2.1"), "eth1"));
  EXPECT_FALSE(find_neighbour(arp, *parse_ipv4("10.10.2.9"), "eth0"));  // incomplete entry
}
