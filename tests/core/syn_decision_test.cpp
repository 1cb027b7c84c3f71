// The SYN decision over every class of packet a queue can hand a worker, the prefix set and the
// budgets. The same SynGuard::decide runs in every worker kind, so these cover them all.
#include <gtest/gtest.h>

#include <vector>

#include "syngate_test/icmp_builder.hpp"
#include "syngate/engine.hpp"
#include "syngate/packet.hpp"
#include "syngate/spec/syn_rules.h"
#include "syngate/syn_decision.hpp"
#include "syngate_test/segments.hpp"

namespace syngate {
namespace {

using test::Bytes;
constexpr uint64_t kSecond = 1000000000ull;

const Address kClient = *Address::parse("10.10.1.2");
const Address kServer = *Address::parse("10.10.3.2");
const Address kClient6 = *Address::parse("2001:db8:1::2");
const Address kServer6 = *Address::parse("2001:db8:3::2");

std::vector<Service> services() { return {{kServer, 80}, {kServer6, 80}}; }

HashKey key_of(uint8_t b) {
  HashKey k{};
  k.fill(b);
  return k;
}

// A SYN as Linux sends it: MSS, SACK-permitted, timestamps, NOP, window scale (20 option bytes).
Bytes syn(const Address& src = kClient, const Address& dst = kServer, uint16_t dport = 80,
          uint8_t flags = tcp_flag::SYN) {
  return test::segment({.tuple = {src, dst, 40000, dport}, .seq = 1000, .flags = flags, .window = 64240,
                        .options = test::linux_syn_options(12345)});
}

using test::tcp_offset;

// Inserts IPv4 options (a 4-byte NOP NOP NOP END block) into an IPv4 packet.
Bytes with_ip_options(Bytes b) {
  b.insert(b.begin() + 20, {1, 1, 1, 0});
  b[0] = 0x46;
  const uint16_t total = static_cast<uint16_t>(b.size());
  b[2] = static_cast<uint8_t>(total >> 8);
  b[3] = static_cast<uint8_t>(total);
  return b;
}

struct DecisionTest : ::testing::Test {
  SynGuard guard{SynGuardConfig{nullptr, key_of(7), 1}};
  SynVerdict decide(Bytes& b, uint64_t now = 100 * kSecond) { return guard.decide(b, services(), now); }
  DropReason dropped(Bytes b) {
    SynVerdict v = decide(b);
    EXPECT_EQ(v.action, SynAction::Drop);
    return v.reason;
  }
};

TEST_F(DecisionTest, AWellFormedSynIsAnswered) {
  Bytes b = syn();
  EXPECT_EQ(decide(b).action, SynAction::Answer);
  Bytes b6 = syn(kClient6, kServer6);
  EXPECT_EQ(decide(b6).action, SynAction::Answer);
}

TEST_F(DecisionTest, EcnSetupAndPushUrgentStillAnswered) {
  Bytes b = syn(kClient, kServer, 80, tcp_flag::SYN | tcp_flag::ECE | tcp_flag::CWR);
  EXPECT_EQ(decide(b).action, SynAction::Answer);
}

TEST_F(DecisionTest, MalformedOptionsAreDroppedNotPassed) {
  // The attack: one zero-length option among normal ones. Linux's stack stops parsing
  // there and accepts the SYN; every path here must drop it.
  Bytes zero_len = syn();
  ASSERT_TRUE(test::set_tcp_options(zero_len, {2, 4, 0x05, 0xb4, 8, 0}));
  EXPECT_EQ(dropped(zero_len), DropReason::BadTcpOption);
  Bytes len_one = syn();
  ASSERT_TRUE(test::set_tcp_options(len_one, {2, 4, 0x05, 0xb4, 30, 1}));
  EXPECT_EQ(dropped(len_one), DropReason::BadTcpOption);
  Bytes past_header = syn();
  // MSS runs out
  ASSERT_TRUE(test::set_tcp_options(past_header, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4}));
  EXPECT_EQ(dropped(past_header), DropReason::BadTcpOption);
  Bytes no_length_byte = syn();
  ASSERT_TRUE(
      test::set_tcp_options(no_length_byte, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3}));
  EXPECT_EQ(dropped(no_length_byte), DropReason::BadTcpOption);
  Bytes wrong_mss_len = syn();
  ASSERT_TRUE(test::set_tcp_options(wrong_mss_len, {2, 5, 0x05, 0xb4, 0}));
  EXPECT_EQ(dropped(wrong_mss_len), DropReason::BadTcpOption);
  Bytes bad_sack = syn();
  ASSERT_TRUE(test::set_tcp_options(bad_sack, {5, 9, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(dropped(bad_sack), DropReason::BadTcpOption);
}

TEST_F(DecisionTest, UnknownWellFormedOptionsAreAnswered) {
  // TFO cookie request (34, len 2), MPTCP (30), experimental (253/254 with an ExID).
  for (const std::vector<uint8_t>& opts : std::vector<std::vector<uint8_t>>{
           {2, 4, 0x05, 0xb4, 34, 2},
           {2, 4, 0x05, 0xb4, 30, 12, 0x00, 0x81, 1, 2, 3, 4, 5, 6, 7, 8},
           {2, 4, 0x05, 0xb4, 253, 4, 0xf9, 0x89},
           {254, 6, 0xab, 0xcd, 1, 2, 2, 4, 0x05, 0xb4},
           {2, 4, 0x05, 0xb4, 0, 0x99, 0x99}}) {  // END: what follows is padding
    Bytes b = syn();
    ASSERT_TRUE(test::set_tcp_options(b, opts));
    SynVerdict v = decide(b);
    EXPECT_EQ(v.action, SynAction::Answer) << int(opts[4]);
    EXPECT_TRUE(v.parsed.packet.options().has_mss);
  }
}

TEST_F(DecisionTest, BadDataOffsetAndTruncatedHeadersAreDropped) {
  Bytes small = syn();
  small[tcp_offset(small) + 12] = 0x40;  // 4 words
  EXPECT_EQ(dropped(small), DropReason::BadDataOffset);
  Bytes past = syn();
  past[tcp_offset(past) + 12] = 0xf0;  // 60 bytes, the segment has 40
  EXPECT_EQ(dropped(past), DropReason::BadDataOffset);
  Bytes cut = syn();
  cut.resize(20 + 12);
  cut[2] = 0;
  cut[3] = 32;  // IP length says 12 bytes of TCP
  EXPECT_EQ(dropped(cut), DropReason::Truncated);
  Bytes shorter_than_ip_length = syn();
  shorter_than_ip_length.resize(shorter_than_ip_length.size() - 4);
  EXPECT_EQ(dropped(shorter_than_ip_length), DropReason::BadIpHeader);
  EXPECT_EQ(dropped(Bytes{0x45, 0}), DropReason::Truncated);
}

TEST_F(DecisionTest, FragmentsAreDropped) {
  Bytes first = syn();
  first[6] = 0x20;  // MF
  EXPECT_EQ(dropped(first), DropReason::Fragment);
  Bytes later = syn();
  later[7] = 0x10;  // offset 128
  EXPECT_EQ(dropped(later), DropReason::Fragment);
  Bytes v6 = syn(kClient6, kServer6);
  v6[6] = 44;  // fragment header instead of TCP
  EXPECT_EQ(dropped(v6), DropReason::Fragment);
}

TEST_F(DecisionTest, SynsWithIpOptionsAreDroppedButFlowsMayCarryThem) {
  EXPECT_EQ(dropped(with_ip_options(syn())), DropReason::IpOptions);
  Bytes ack = with_ip_options(syn(kClient, kServer, 80, tcp_flag::ACK));
  EXPECT_EQ(decide(ack).action, SynAction::ClientFlow);
}

TEST_F(DecisionTest, ImpossibleFlagSetsAreDropped) {
  for (uint8_t f : {uint8_t(tcp_flag::SYN | tcp_flag::FIN), uint8_t(tcp_flag::SYN | tcp_flag::RST),
                    uint8_t(tcp_flag::SYN | tcp_flag::ACK), uint8_t(tcp_flag::FIN), uint8_t(0),
                    uint8_t(tcp_flag::PSH | tcp_flag::URG), uint8_t(tcp_flag::FIN | tcp_flag::PSH | tcp_flag::URG)}) {
    EXPECT_EQ(dropped(syn(kClient, kServer, 80, f)), DropReason::InvalidFlags) << int(f);
  }
}

TEST_F(DecisionTest, NonSynsGoToTheFlowPath) {
  for (uint8_t f : {uint8_t(tcp_flag::ACK), uint8_t(tcp_flag::RST), uint8_t(tcp_flag::ACK | tcp_flag::FIN),
                    uint8_t(tcp_flag::ACK | tcp_flag::PSH), uint8_t(tcp_flag::RST | tcp_flag::ACK)}) {
    Bytes b = syn(kClient, kServer, 80, f);
    EXPECT_EQ(decide(b).action, SynAction::ClientFlow) << int(f);
  }
  // From the service's address and port: the server's side.
  Bytes from_server = syn(kServer, kClient, 80, tcp_flag::SYN | tcp_flag::ACK);
  std::swap(from_server[20], from_server[22]);
  std::swap(from_server[21], from_server[23]);
  EXPECT_EQ(decide(from_server).action, SynAction::ServerFlow);
}

TEST_F(DecisionTest, OtherServicesPassUntouched) {
  Bytes b = syn(kClient, kServer, 22);
  const Bytes before = b;
  EXPECT_EQ(decide(b).action, SynAction::Pass);
  EXPECT_EQ(b, before);
}

TEST_F(DecisionTest, MalformedPacketsDropEvenForOtherServices) {
  // What the rules queued and we cannot read, we cannot vouch for.
  Bytes b = syn(kClient, kServer, 22);
  ASSERT_TRUE(test::set_tcp_options(b, {8, 0}));
  EXPECT_EQ(dropped(b), DropReason::BadTcpOption);
}

// ICMP is not TCP, yet an error about a flow's segment is the flow path's, and other ICMP passes
// untouched; other protocols stay dropped as before.
TEST_F(DecisionTest, IcmpGoesToTheFlowPathOtherProtocolsDrop) {
  const Address router = *Address::parse("10.10.4.2");
  Bytes err = test::icmp_error(syn(), router, kClient, 3, 4, 1280);
  const Bytes before = err;
  SynVerdict v = decide(err);
  EXPECT_EQ(v.action, SynAction::Icmp);
  EXPECT_EQ(v.icmp.kind, IcmpKind::TcpError);
  EXPECT_EQ(v.icmp.quoted, (FlowTuple{kClient, kServer, 40000, 80}));
  EXPECT_EQ(err, before) << "the decision never writes";
  Bytes err6 = test::icmp_error(syn(kClient6, kServer6), *Address::parse("2001:db8:4::2"), kClient6, 2, 0, 1280);
  EXPECT_EQ(decide(err6).action, SynAction::Icmp);
  Bytes echo = test::icmp_error(syn(), router, kClient, 8, 0);
  v = decide(echo);
  EXPECT_EQ(v.action, SynAction::Icmp);
  EXPECT_EQ(v.icmp.kind, IcmpKind::Untouched);
  Bytes udp = syn();
  udp[9] = 17;
  EXPECT_EQ(dropped(udp), DropReason::BadIpHeader);
}

// ---- policy ----------------------------------------------------------------------------------

std::shared_ptr<SourcePolicy> policy_of(std::vector<std::pair<std::string, bool>> entries) {
  auto p = std::make_shared<SourcePolicy>();
  for (const auto& [text, deny] : entries) p->add(*Prefix::parse(text), deny);
  return p;
}

TEST_F(DecisionTest, DenyAllowLongestPrefix) {
  guard.set_policy(policy_of({{"10.10.0.0/16", false}, {"10.10.1.0/24", true}, {"10.10.1.2/32", false},
                              {"2001:db8::/32", true}}));
  Bytes ok = syn(*Address::parse("10.10.1.2"));
  EXPECT_EQ(decide(ok).action, SynAction::Answer) << "the /32 allow is longer than the /24 deny";
  EXPECT_EQ(dropped(syn(*Address::parse("10.10.1.3"))), DropReason::Denied);
  Bytes in16 = syn(*Address::parse("10.10.7.1"));
  EXPECT_EQ(decide(in16).action, SynAction::Answer);
  EXPECT_EQ(dropped(syn(*Address::parse("192.0.2.1"))), DropReason::NotAllowed);
  EXPECT_EQ(dropped(syn(kClient6, kServer6)), DropReason::Denied);
  // Policy is about SYNs: an ACK from a denied source still reaches the flow path, which only
  // creates a flow for a valid cookie (that a denied source never got).
  Bytes ack = syn(*Address::parse("10.10.1.3"), kServer, 80, tcp_flag::ACK);
  EXPECT_EQ(decide(ack).action, SynAction::ClientFlow);
}

TEST_F(DecisionTest, DenyOnlyPolicyAnswersEveryoneElse) {
  guard.set_policy(policy_of({{"198.18.0.0/15", true}}));
  EXPECT_EQ(dropped(syn(*Address::parse("198.19.255.255"))), DropReason::Denied);
  Bytes other = syn(*Address::parse("198.20.0.1"));
  EXPECT_EQ(decide(other).action, SynAction::Answer);
}

TEST_F(DecisionTest, BackscatterBudgetPerSlash24PerSecond) {
  auto p = std::make_shared<SourcePolicy>();
  p->synack_per_prefix_per_s = 5;
  guard.set_policy(p);
  int answered = 0;
  for (int i = 0; i < 50; ++i) {
    Bytes b = syn(Address::from_v4(0xC6120000u + static_cast<uint32_t>(i)));  // 198.18.0.i: one /24
    if (decide(b, 10 * kSecond).action == SynAction::Answer) ++answered;
  }
  EXPECT_EQ(answered, 5);
  Bytes other = syn(*Address::parse("10.10.1.2"));
  EXPECT_EQ(decide(other, 10 * kSecond).action, SynAction::Answer) << "another /24 has its own budget";
  Bytes next_second = syn(Address::from_v4(0xC6120001u));
  EXPECT_EQ(decide(next_second, 11 * kSecond).action, SynAction::Answer) << "the budget refills each second";
  // IPv6: one /48.
  int answered6 = 0;
  for (int i = 0; i < 20; ++i) {
    Address a = *Address::parse("2001:2:0:1::1");
    a.bytes[15] = static_cast<uint8_t>(i);
    a.bytes[7] = static_cast<uint8_t>(i);  // different /64s inside one /48
    Bytes b = syn(a, kServer6);
    if (decide(b, 10 * kSecond).action == SynAction::Answer) ++answered6;
  }
  EXPECT_EQ(answered6, 5);
}

TEST_F(DecisionTest, BudgetIsSplitBetweenWorkersRoundingUp) {
  auto p = std::make_shared<SourcePolicy>();
  p->synack_per_prefix_per_s = 5;
  SynGuard shared(SynGuardConfig{p, key_of(1), 2});
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    Bytes b = syn(Address::from_v4(0xC6120000u + static_cast<uint32_t>(i)));
    if (shared.decide(b, services(), 3 * kSecond).action == SynAction::Answer) ++answered;
  }
  EXPECT_EQ(answered, 3);
}

TEST_F(DecisionTest, RefusedSynsSpendNoBudget) {
  auto p = policy_of({{"198.18.0.0/24", true}});
  p->synack_per_prefix_per_s = 1;
  guard.set_policy(p);
  for (int i = 0; i < 10; ++i) dropped(syn(Address::from_v4(0xC6120000u + 5)));
  Bytes bad = syn(*Address::parse("10.10.1.2"));
  ASSERT_TRUE(test::set_tcp_options(bad, {8, 0}));
  dropped(bad);
  Bytes good = syn(*Address::parse("10.10.1.2"));
  EXPECT_EQ(decide(good).action, SynAction::Answer);
}

TEST_F(DecisionTest, NewFlowsPerSource) {
  auto p = std::make_shared<SourcePolicy>();
  p->new_flows_per_source_per_s = 3;
  guard.set_policy(p);
  int ok = 0;
  for (int i = 0; i < 10; ++i) ok += guard.take_new_flow(kClient, 5 * kSecond);
  EXPECT_EQ(ok, 3);
  EXPECT_TRUE(guard.take_new_flow(*Address::parse("10.10.1.3"), 5 * kSecond));
  EXPECT_TRUE(guard.take_new_flow(kClient, 6 * kSecond));
  guard.set_policy(std::make_shared<SourcePolicy>());
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(guard.take_new_flow(kClient, 6 * kSecond)) << "0 = unlimited";
}

TEST(BudgetTable, MemoryIsFixedWhateverTheSources) {
  BudgetTable t(1024, key_of(3));
  const size_t before = t.memory_bytes();
  for (uint32_t i = 0; i < 200000; ++i) {
    Address a = Address::from_v4(i * 2654435761u);
    t.take(a.bytes, 1, 10);
  }
  EXPECT_EQ(t.memory_bytes(), before);
  EXPECT_EQ(before, 1024 * 8u);
}

TEST(BudgetTable, TheKeyDecidesWhichSourcesShareACell) {
  // With a different key, a different set of sources collides with a given one: whoever does
  // not know the key cannot pick sources that starve a victim's cell.
  auto collides = [](const HashKey& k) {
    std::vector<int> out;
    for (int i = 1; i < 400; ++i) {
      BudgetTable t(64, k);
      Address victim = *Address::parse("10.10.1.0");
      t.take(victim.bytes, 1, 1);
      Address other = Address::from_v4(0x0a000000u + (static_cast<uint32_t>(i) << 8));
      if (!t.take(other.bytes, 1, 1)) out.push_back(i);
    }
    return out;
  };
  const auto a = collides(key_of(1));
  const auto b = collides(key_of(2));
  EXPECT_FALSE(a.empty());
  EXPECT_NE(a, b);
}

// ---- prefixes --------------------------------------------------------------------------------

TEST(Prefix, ParsesBothFamiliesAndRefusesHostBits) {
  auto p = Prefix::parse("10.1.0.0/16");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->v4);
  EXPECT_EQ(p->family_length(), 16);
  EXPECT_EQ(p->to_string(), "10.1.0.0/16");
  EXPECT_TRUE(p->contains(*Address::parse("10.1.255.3")));
  EXPECT_FALSE(p->contains(*Address::parse("10.2.0.1")));
  auto h = Prefix::parse("192.0.2.7");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->family_length(), 32);
  auto v6 = Prefix::parse("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_FALSE(v6->v4);
  EXPECT_TRUE(v6->contains(*Address::parse("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->contains(*Address::parse("10.1.0.1")));
  std::string why;
  EXPECT_FALSE(Prefix::parse("10.1.2.3/16", &why));
  EXPECT_NE(why.find("host bits"), std::string::npos) << why;
  EXPECT_NE(why.find("10.1.0.0/16"), std::string::npos) << why;
  EXPECT_FALSE(Prefix::parse("10.1.0.0/33", &why));
  EXPECT_FALSE(Prefix::parse("10.1.0.0/", &why));
  EXPECT_FALSE(Prefix::parse("10.1.0.0/x", &why));
  EXPECT_FALSE(Prefix::parse("2001:db8::/129", &why));
  EXPECT_FALSE(Prefix::parse("example.com/8", &why));
  auto all = Prefix::parse("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(*Address::parse("203.0.113.9")));
  EXPECT_FALSE(all->contains(*Address::parse("2001:db8::1"))) << "0.0.0.0/0 is IPv4 only";
}

TEST(PrefixSet, LongestMatchWins) {
  PrefixSet s;
  s.insert(*Prefix::parse("10.0.0.0/8"), 1);
  s.insert(*Prefix::parse("10.1.0.0/16"), 2);
  s.insert(*Prefix::parse("10.1.2.0/24"), 3);
  s.insert(*Prefix::parse("::/0"), 9);
  EXPECT_EQ(s.longest_match(*Address::parse("10.1.2.3")), 3);
  EXPECT_EQ(s.longest_match(*Address::parse("10.1.3.3")), 2);
  EXPECT_EQ(s.longest_match(*Address::parse("10.2.3.3")), 1);
  EXPECT_EQ(s.longest_match(*Address::parse("2001:db8::1")), 9);
  // IPv4 is held v4-mapped inside the 128-bit space, but ::/0 is all of IPv6 and nothing else.
  EXPECT_FALSE(s.longest_match(*Address::parse("11.0.0.1")));
  s.insert(*Prefix::parse("10.1.0.0/16"), 4);
  EXPECT_EQ(s.longest_match(*Address::parse("10.1.3.3")), 4);
  EXPECT_EQ(s.size(), 4u);
  PrefixSet empty;
  EXPECT_FALSE(empty.longest_match(*Address::parse("10.1.2.3")));
}

TEST(PrefixSet, Ipv6PrefixesCoveringTheMappedSpaceMatchIpv6Only) {
  // Every IPv6 prefix of /80 or shorter that starts with zeros contains ::ffff:0:0/96, where
  // IPv4 addresses live in the 128-bit form; none of them may match an IPv4 source.
  for (const char* text : {"::/0", "::/1", "::/64", "::/80", "::/95"}) {
    PrefixSet s;
    s.insert(*Prefix::parse(text), 2);
    EXPECT_FALSE(s.longest_match(*Address::parse("10.10.1.2"))) << text;
    EXPECT_FALSE(Prefix::parse(text)->contains(*Address::parse("10.10.1.2"))) << text;
    EXPECT_EQ(s.longest_match(*Address::parse("::1")), 2) << text;
  }
  // Mixed families of the same 128-bit length class stay apart.
  PrefixSet s;
  s.insert(*Prefix::parse("0.0.0.0/0"), 1);
  s.insert(*Prefix::parse("::/0"), 2);
  EXPECT_EQ(s.longest_match(*Address::parse("10.10.1.2")), 1);
  EXPECT_EQ(s.longest_match(*Address::parse("2001:db8::1")), 2);
}

TEST_F(DecisionTest, AnIpv6PolicyPrefixDecidesNothingForIpv4) {
  // deny ::/0, meant as "all IPv6": IPv4 clients are still answered.
  guard.set_policy(policy_of({{"::/0", true}}));
  Bytes v4 = syn(kClient);
  EXPECT_EQ(decide(v4).action, SynAction::Answer) << "deny ::/0 denied an IPv4 client";
  EXPECT_EQ(dropped(syn(kClient6, kServer6)), DropReason::Denied);
  // allow one IPv4 /24 and all of IPv6: other IPv4 clients are not let in by ::/0.
  guard.set_policy(policy_of({{"10.10.9.0/24", false}, {"::/0", false}}));
  EXPECT_EQ(dropped(syn(kClient)), DropReason::NotAllowed) << "allow ::/0 let an IPv4 client in";
  Bytes listed = syn(*Address::parse("10.10.9.7"));
  EXPECT_EQ(decide(listed).action, SynAction::Answer);
  Bytes v6 = syn(kClient6, kServer6);
  EXPECT_EQ(decide(v6).action, SynAction::Answer);
}

// ---- per-source limits count an IPv6 /64 as one source ------------------------------------------

TEST(SourceGroup, Ipv6SourcesGroupByTheirPrefixIpv4ByAddress) {
  const Address a = *Address::parse("2001:db8:1:2:aaaa::1");
  const Address b = *Address::parse("2001:db8:1:2:bbbb::7");
  EXPECT_EQ(source_group(a, 64), source_group(b, 64));
  EXPECT_NE(source_group(a, 64), source_group(*Address::parse("2001:db8:1:3::1"), 64));
  EXPECT_NE(source_group(a, 128), source_group(b, 128));
  EXPECT_EQ(source_group(kClient, 64), kClient) << "IPv4 counts per address";
  EXPECT_NE(source_group(kClient, 64), source_group(*Address::parse("10.10.1.3"), 64));
}

TEST_F(DecisionTest, NewFlowsPerSourceCountsAnIpv6Slash64AsOneSource) {
  auto p = std::make_shared<SourcePolicy>();
  p->new_flows_per_source_per_s = 3;
  guard.set_policy(p);
  int ok = 0;
  for (int i = 0; i < 10; ++i) {
    Address a = *Address::parse("2001:db8:1:2::1");
    a.bytes[15] = static_cast<uint8_t>(i);
    a.bytes[9] = static_cast<uint8_t>(i * 7);  // anywhere in the /64
    ok += guard.take_new_flow(a, 5 * kSecond);
  }
  EXPECT_EQ(ok, 3) << "one /64 opened more new flows a second than one source may";
  EXPECT_TRUE(guard.take_new_flow(*Address::parse("2001:db8:1:3::1"), 5 * kSecond)) << "another /64";
  // Configurable: per /128, each address is its own source.
  SynGuardConfig per_address{p, key_of(7), 1};
  per_address.source_prefix_v6 = 128;
  SynGuard g128(per_address);
  for (int i = 0; i < 10; ++i) {
    Address a = *Address::parse("2001:db8:1:2::1");
    a.bytes[15] = static_cast<uint8_t>(i);
    EXPECT_TRUE(g128.take_new_flow(a, 5 * kSecond));
  }
}

// ---- backscatter budget: proven sources ---------------------------------------------------------

TEST(SynRulesSpec, BudgetOfProvenSourcesAndTheirUnansweredSynAcks) {
  sg_proven e{};
  EXPECT_EQ(sg_budget_of(nullptr, 100), SG_BUDGET_PREFIX) << "no entry: the prefix decides";
  sg_source_proved(&e, 0, 100);
  EXPECT_EQ(e.proven_s, 100u);
  EXPECT_EQ(sg_budget_of(&e, 100), SG_BUDGET_ADDRESS);
  EXPECT_EQ(sg_budget_of(&e, 100 + SG_PROVEN_TTL_S), SG_BUDGET_ADDRESS);
  EXPECT_EQ(sg_budget_of(&e, 101 + SG_PROVEN_TTL_S), SG_BUDGET_PREFIX) << "a proof lapses";
  EXPECT_EQ(sg_budget_of(&e, 99), SG_BUDGET_PREFIX) << "a proof stamped ahead of the clock vouches for nothing";
  // Unanswered SYN-ACKs: taken per SYN-ACK, given back per answer, within the second.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(sg_budget_take(&e.unanswered, 100, 3));
  EXPECT_FALSE(sg_budget_take(&e.unanswered, 100, 3));
  sg_source_proved(&e, 1, 100);  // one answered
  EXPECT_TRUE(sg_budget_take(&e.unanswered, 100, 3));
  EXPECT_FALSE(sg_budget_take(&e.unanswered, 100, 3));
  // A give-back never goes below zero or into another second's window.
  sg_budget_cell c{7, 0};
  sg_budget_give(&c, 7);
  EXPECT_EQ(c.used, 0u);
  c = {7, 2};
  sg_budget_give(&c, 8);
  EXPECT_EQ(c.used, 2u);
  // A lapsed proof renewed starts with a full budget.
  sg_source_proved(&e, 1, 5000);
  EXPECT_EQ(e.unanswered.used, 0u);
  EXPECT_EQ(e.unanswered.second, 5000u);
}

// A client at 10.10.1.2 that answers every SYN-ACK, and a spoofer who floods its /24.
struct ProvenBudgetTest : DecisionTest {
  void SetUp() override {
    auto p = std::make_shared<SourcePolicy>();
    p->synack_per_prefix_per_s = 5;
    p->synack_per_address_per_s = 3;
    guard.set_policy(p);
  }
  bool answered(const Address& src, uint64_t now) {
    Bytes b = syn(src);
    return decide(b, now).action == SynAction::Answer;
  }
};

TEST_F(ProvenBudgetTest, AProvenClientIsNotThrottledByItsPrefixBudget) {
  const uint64_t t = 50 * kSecond;
  EXPECT_TRUE(answered(kClient, t));
  guard.source_proved(kClient, t);  // its cookie ACK
  // 1000 connections in one second, each SYN-ACK answered: the prefix allows 5, the address 3
  // unanswered, and none of these is refused.
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(answered(kClient, t)) << "connection " << i;
    guard.source_proved(kClient, t);
  }
}

TEST_F(ProvenBudgetTest, ASpooferOfItsPrefixDoesNotLockItOut) {
  const uint64_t t = 60 * kSecond;
  guard.source_proved(kClient, t - kSecond);
  int spoofed = 0;
  for (int i = 0; i < 500; ++i) {
    spoofed += answered(Address::from_v4(0x0a0a0100u + static_cast<uint32_t>(i % 250) + 3), t);  // 10.10.1.3..
    if (i % 10 == 0) {
      ASSERT_TRUE(answered(kClient, t)) << "the proven client was refused while its /24 is spoofed";
      guard.source_proved(kClient, t);
    }
  }
  EXPECT_EQ(spoofed, 5) << "a /24 that never answers gets its prefix budget, no more";
}

TEST_F(ProvenBudgetTest, ASpooferOfAProvenAddressDrawsOnlyItsUnansweredBudget) {
  const uint64_t t = 70 * kSecond;
  guard.source_proved(kClient, t - kSecond);
  int got = 0;
  for (int i = 0; i < 1000; ++i) got += answered(kClient, t);  // nobody answers these
  EXPECT_EQ(got, 3);
  int next = 0;
  for (int i = 0; i < 1000; ++i) next += answered(kClient, t + kSecond);
  EXPECT_EQ(next, 3) << "the same bound every second";
}

TEST_F(ProvenBudgetTest, ALapsedProofFallsBackToThePrefixBudget) {
  guard.source_proved(kClient, 10 * kSecond);
  const uint64_t later = (11 + SG_PROVEN_TTL_S) * kSecond;
  int got = 0;
  for (int i = 0; i < 20; ++i) got += answered(kClient, later);
  EXPECT_EQ(got, 5);
}

TEST_F(ProvenBudgetTest, ZeroMeansUnlimitedForEachBudget) {
  auto p = std::make_shared<SourcePolicy>();
  p->synack_per_prefix_per_s = 0;
  p->synack_per_address_per_s = 0;
  guard.set_policy(p);
  guard.source_proved(kClient, 80 * kSecond);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(answered(kClient, 80 * kSecond));
    ASSERT_TRUE(answered(*Address::parse("10.10.1.9"), 80 * kSecond));
  }
}

TEST(ProvenSources, SharedBetweenTheWorkerThatProvesAndTheOneThatAnswers) {
  auto table = std::make_shared<ProvenSources>(1024, key_of(5));
  auto p = std::make_shared<SourcePolicy>();
  p->synack_per_prefix_per_s = 1;
  SynGuardConfig c{p, key_of(6), 1};
  c.proven = table;
  SynGuard syn_worker(c);
  SynGuard flow_worker(c);
  const uint64_t t = 90 * kSecond;
  flow_worker.source_proved(kClient, t);
  EXPECT_TRUE(table->proven(kClient, 90));
  for (int i = 0; i < 50; ++i) {
    Bytes b = syn(kClient);
    ASSERT_EQ(syn_worker.decide(b, services(), t).action, SynAction::Answer);
    flow_worker.source_proved(kClient, t);
  }
  EXPECT_FALSE(table->proven(*Address::parse("10.10.1.3"), 90));
}

TEST(ProvenSources, FixedMemoryAndASynNeverCreatesAnEntry) {
  ProvenSources t(4096, key_of(8));
  const size_t before = t.memory_bytes();
  for (uint32_t i = 0; i < 100000; ++i) {
    EXPECT_EQ(t.take(Address::from_v4(0xC6120000u + i), 5, 10), ProvenSources::Take::NotProven);
  }
  for (uint32_t i = 0; i < 100000; ++i) t.prove(Address::from_v4(0x0a000000u + i), 5);
  EXPECT_EQ(t.memory_bytes(), before);
  EXPECT_LE(before, 4096u * 16);
}

// ---- the engine uses the same decision ----------------------------------------------------------

struct NullSink : PacketSink {
  size_t sent = 0;
  void send(std::span<const uint8_t>) override { ++sent; }
};

TEST(EngineDecision, EngineDropsWhatTheGuardDrops) {
  EngineConfig cfg;
  cfg.services = services();
  cfg.max_flows = 16;
  cfg.early_data_slots = 4;
  cfg.policy = policy_of({{"198.18.0.0/15", true}});
  CookieSecrets secrets;
  secrets.current.fill(1);
  CookieJar jar(secrets);
  Engine e(cfg, jar);
  NullSink sink;
  Bytes zero_len = syn();
  ASSERT_TRUE(test::set_tcp_options(zero_len, {2, 4, 0x05, 0xb4, 8, 0}));
  EXPECT_EQ(e.process(zero_len, kSecond, sink).verdict, Verdict::Drop);
  EXPECT_EQ(e.counters().drop(DropReason::BadTcpOption), 1u);
  Bytes denied = syn(*Address::parse("198.18.3.4"));
  EXPECT_EQ(e.process(denied, kSecond, sink).verdict, Verdict::Drop);
  EXPECT_EQ(e.counters().drop(DropReason::Denied), 1u);
  EXPECT_EQ(sink.sent, 0u);
  Bytes good = syn();
  e.process(good, kSecond, sink);
  EXPECT_EQ(sink.sent, 1u);
  EXPECT_EQ(e.counters().cookies_sent, 1u);
  // A reload that lifts the deny.
  e.set_policy(std::make_shared<SourcePolicy>());
  Bytes again = syn(*Address::parse("198.18.3.4"));
  e.process(again, kSecond, sink);
  EXPECT_EQ(sink.sent, 2u);
}

// The spec's option step, driven directly (as the fast path does): never reads past `len`.
TEST(SynRulesSpec, OptionStepStaysInsideItsBuffer) {
  uint8_t buf[40];
  for (uint32_t len = 0; len <= 40; ++len) {
    for (int fill : {0, 1, 2, 8, 0xff}) {
      for (uint8_t& c : buf) c = static_cast<uint8_t>(fill);
      sg_tcp_opts o{};
      uint32_t off = 0;
      int steps = 0;
      for (;;) {
        off = sg_tcp_option_step(buf, len, off, &o);
        if (off == SG_OPT_STEP_DONE || off == SG_OPT_STEP_BAD) break;
        ASSERT_LE(off, len);
        ASSERT_LT(++steps, 41);
      }
    }
  }
  sg_tcp_opts o{};
  EXPECT_EQ(sg_tcp_option_step(buf, 41, 0, &o), SG_OPT_STEP_BAD) << "more than 40 option bytes";
}

}  // namespace
}  // namespace syngate
