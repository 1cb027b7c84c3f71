#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "config.hpp"
#include "rules.hpp"

using namespace syngate::gw;

namespace {
GatewayConfig config(const std::string& extra_gateway = "", const std::string& services =
                         "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n") {
  return parse_config("[gateway]\nsecret_file = \"/s\"\n" + extra_gateway + "\n" + services, "t");
}
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}
}  // namespace

TEST(Rules, QueueTargets) {
  EXPECT_EQ(join(nfqueue_target(0, 1, false)), "-j NFQUEUE --queue-num 0");
  EXPECT_EQ(join(nfqueue_target(8, 4, false)), "-j NFQUEUE --queue-balance 8:11");
  EXPECT_EQ(join(nfqueue_target(8, 2, true)), "-j NFQUEUE --queue-balance 8:9 --queue-bypass");
}

TEST(Rules, MangleChainQueuesSynsApartFromFlows) {
  auto rules = chain_rules(config("flow_queues = 2\nkernel_path = \"off\""), false, "mangle");
  ASSERT_EQ(rules.size(), 7u);  // and two for ICMP errors (below)
  EXPECT_EQ(join(rules[0]), "-m mark --mark 0x5347 -j RETURN");
  EXPECT_EQ(join(rules[1]), "-d 10.10.3.2/32 -p tcp -f -j NFQUEUE --queue-num 0");
  EXPECT_EQ(join(rules[2]),
            "-d 10.10.3.2/32 -p tcp -m tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 0");
  EXPECT_EQ(join(rules[3]), "-d 10.10.3.2/32 -p tcp -m tcp --dport 80 -j NFQUEUE --queue-balance 8:9");
  EXPECT_EQ(join(rules[4]), "-s 10.10.3.2/32 -p tcp -m tcp --sport 80 -j NFQUEUE --queue-balance 8:9");
  for (const auto& r : rules) {
    EXPECT_EQ(std::find(r.begin(), r.end(), "--queue-cpu-fanout"), r.end());
  }
}

TEST(Rules, FragmentsToProtectedAddressesAreQueuedOncePerAddress) {
  auto rules = chain_rules(config("", "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n[[service]]\naddress = \"10.10.3.2\"\nport = 443\n"), false, "mangle");
  size_t fragment_rules = 0;
  for (const auto& r : rules) {
    fragment_rules += std::find(r.begin(), r.end(), "-f") != r.end() && std::find(r.begin(), r.end(), "!") == r.end();
  }
  EXPECT_EQ(fragment_rules, 1u);
}

TEST(Rules, ADrainingServiceKeepsItsFlowRulesButNotItsSynRule) {
  GatewayConfig c = config();
  c.draining = {{"10.10.3.2", false, 7000}};
  auto rules = chain_rules(c, false, "mangle");
  std::vector<std::string> for_7000;
  for (const auto& r : rules) {
    const std::string line = join(r);
    if (line.find("port 7000") != std::string::npos) for_7000.push_back(line);
  }
  ASSERT_EQ(for_7000.size(), 2u);
  EXPECT_EQ(for_7000[0], "-d 10.10.3.2/32 -p tcp -m tcp --dport 7000 -j NFQUEUE --queue-num 8");
  EXPECT_EQ(for_7000[1], "-s 10.10.3.2/32 -p tcp -m tcp --sport 7000 -j NFQUEUE --queue-num 8");
  EXPECT_EQ(chain_rules(c, false, "raw").size(), 8u);  // TCP and ICMP errors, each way, both services
  c.draining = {{"10.10.3.2", false, 80}};  // listed again: a configured service is not draining
  EXPECT_EQ(chain_rules(c, false, "mangle").size(), chain_rules(config(), false, "mangle").size());
}

TEST(Rules, FailOpenAddsBypassEverywhere) {
  auto rules = chain_rules(config("fail_open = true"), false, "mangle");
  for (size_t i = 2; i < rules.size(); ++i) EXPECT_EQ(rules[i].back(), "--queue-bypass");
  auto closed = chain_rules(config(), false, "mangle");
  for (const auto& r : closed) EXPECT_NE(r.back(), "--queue-bypass");
}

// The kernel path (tc programs) marks what it translated with one bit: the chain lets it pass
// before any queue rule, matched with a mask so an operator's own mark bits change nothing.
TEST(Rules, TranslatedBitSkipsTheQueuesWhenTheKernelPathIsOn) {
  for (bool v6 : {false, true}) {
    const std::string services = v6 ? "[[service]]\naddress = \"2001:db8::1\"\nport = 80\n"
                                    : "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n";
    auto on = chain_rules(config("kernel_path = \"auto\"", services), v6, "mangle");
    ASSERT_GE(on.size(), 3u);
    EXPECT_EQ(join(on[0]), "-m mark --mark 0x5347 -j RETURN");
    EXPECT_EQ(join(on[1]), "-m mark --mark 0x40000000/0x40000000 -j RETURN");
    auto off = chain_rules(config("kernel_path = \"off\"", services), v6, "mangle");
    EXPECT_EQ(off.size() + 1, on.size());
    for (const auto& r : off) EXPECT_EQ(std::find(r.begin(), r.end(), "0x40000000/0x40000000"), r.end());
    EXPECT_EQ(chain_rules(config("kernel_path = \"auto\"", services), v6, "raw"),
              chain_rules(config("kernel_path = \"off\"", services), v6, "raw"));
  }
}

// Host mode's OUTPUT match (tc_match.hpp): named by its pin, right after the translated bit, only
// in host and both modes with the kernel path on and a pin to name, never for what leaves by lo.
TEST(Rules, OutputMatchSkipsTheQueueForRepliesTcEgressTranslates) {
  const std::string pin = "/sys/fs/bpf/syngate/t.netns-1/sg_tc_match";
  for (bool v6 : {false, true}) {
    const std::string services = v6 ? "[[service]]\naddress = \"2001:db8::1\"\nport = 80\n"
                                    : "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n";
    for (const char* mode : {"host", "both"}) {
      const GatewayConfig c = config(std::string("mode = \"") + mode + "\"\nkernel_path = \"auto\"", services);
      auto with = chain_rules(c, v6, "mangle", pin);
      ASSERT_GE(with.size(), 4u);
      EXPECT_EQ(join(with[1]), "-m mark --mark 0x40000000/0x40000000 -j RETURN");
      EXPECT_EQ(join(with[2]), "! -o lo -p tcp -m bpf --object-pinned " + pin + " -j RETURN");
      auto without = chain_rules(c, v6, "mangle");
      EXPECT_EQ(without.size() + 1, with.size());
      EXPECT_NE(restore_script(c, v6, "mangle", pin).find("-A SYNGATE ! -o lo -p tcp -m bpf --object-pinned " + pin),
                std::string::npos);
      EXPECT_EQ(chain_rules(c, v6, "raw", pin), chain_rules(c, v6, "raw"));
    }
    // Router mode: no OUTPUT to cross; kernel path off: no tc egress to hand to.
    const GatewayConfig router = config("mode = \"router\"\nkernel_path = \"auto\"", services);
    EXPECT_EQ(chain_rules(router, v6, "mangle", pin), chain_rules(router, v6, "mangle"));
    const GatewayConfig off = config("mode = \"host\"\nkernel_path = \"off\"", services);
    EXPECT_EQ(chain_rules(off, v6, "mangle", pin), chain_rules(off, v6, "mangle"));
  }
}

TEST(Rules, RawChainUntracksBothDirections) {
  auto rules = chain_rules(config(), false, "raw");
  ASSERT_EQ(rules.size(), 4u);
  EXPECT_EQ(join(rules[0]), "-d 10.10.3.2/32 -p tcp -m tcp --dport 80 -j CT --notrack");
  EXPECT_EQ(join(rules[1]), "-s 10.10.3.2/32 -p tcp -m tcp --sport 80 -j CT --notrack");
}

// ICMP errors whose quote is a segment to or from a service (u32 on the quoted header, in the
// form iptables prints back), untracked in raw and queued to the first flow queue in mangle.
TEST(Rules, IcmpErrorsAboutAServicesSegmentsAreUntrackedAndQueued) {
  const auto c = config("flow_queues = 4", "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n"
                                           "[[service]]\naddress = \"fd00:10:3::2\"\nport = 443\n");
  const std::string v4_to =
      "-p icmp ! -f -m u32 --u32 0x0>>0x16&0x3c@0x0>>0x18=0x3,0xb,0xc&&0x0>>0x16&0x3c@0x10>>0x10&0xff=0x6&&"
      "0x0>>0x16&0x3c@0xc&0x1fff=0x0&&0x0>>0x16&0x3c@0x18=0xa0a0302&&0x0>>0x16&0x3c@0x8>>0x16&0x3c@0x8&0xffff=0x50";
  const std::string v4_from =
      "-p icmp ! -f -m u32 --u32 0x0>>0x16&0x3c@0x0>>0x18=0x3,0xb,0xc&&0x0>>0x16&0x3c@0x10>>0x10&0xff=0x6&&"
      "0x0>>0x16&0x3c@0xc&0x1fff=0x0&&0x0>>0x16&0x3c@0x14=0xa0a0302&&0x0>>0x16&0x3c@0x8>>0x16&0x3c@0x8>>0x10=0x50";
  const std::string v6_to =
      "-p ipv6-icmp -m u32 --u32 0x28>>0x18=0x1:0x4&&0x4>>0x8&0xff=0x3a&&0x34>>0x8&0xff=0x6&&"
      "0x48=0xfd000010&&0x4c=0x30000&&0x50=0x0&&0x54=0x2&&0x58&0xffff=0x1bb";
  const std::string v6_from =
      "-p ipv6-icmp -m u32 --u32 0x28>>0x18=0x1:0x4&&0x4>>0x8&0xff=0x3a&&0x34>>0x8&0xff=0x6&&"
      "0x38=0xfd000010&&0x3c=0x30000&&0x40=0x0&&0x44=0x2&&0x58>>0x10=0x1bb";
  auto mangle = chain_rules(c, false, "mangle");
  ASSERT_GE(mangle.size(), 2u);
  EXPECT_EQ(join(mangle[mangle.size() - 2]), v4_to + " -j NFQUEUE --queue-num 8");
  EXPECT_EQ(join(mangle.back()), v4_from + " -j NFQUEUE --queue-num 8");
  auto raw = chain_rules(c, false, "raw");
  EXPECT_EQ(join(raw[raw.size() - 2]), v4_to + " -j CT --notrack");
  EXPECT_EQ(join(raw.back()), v4_from + " -j CT --notrack");
  auto mangle6 = chain_rules(c, true, "mangle");
  EXPECT_EQ(join(mangle6[mangle6.size() - 2]), v6_to + " -j NFQUEUE --queue-num 8");
  EXPECT_EQ(join(mangle6.back()), v6_from + " -j NFQUEUE --queue-num 8");
  auto raw6 = chain_rules(c, true, "raw");
  EXPECT_EQ(join(raw6.back()), v6_from + " -j CT --notrack");
  // Nothing else in the chains is about ICMP.
  size_t icmp = 0;
  for (const auto& r : mangle) icmp += join(r).find("icmp") != std::string::npos;
  EXPECT_EQ(icmp, 2u);
}

TEST(Rules, IcmpJumpsSkipOutputWhereTheBoxSpeaksForItself) {
  auto jump_kind = [](const std::vector<RuleCommand>& plan, bool v6, const std::string& table, const std::string& hook,
                      const std::string& protocol) {
    for (const auto& c : plan) {
      if (c.v6 == v6 && c.args.size() >= 7 && c.args[2] == table && c.args[4] == hook &&
          std::find(c.args.begin(), c.args.end(), protocol) != c.args.end()) {
        return c.kind;
      }
    }
    return RuleCommand::Kind::Run;  // not present
  };
  auto both = plan_up(config("", "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n"
                                 "[[service]]\naddress = \"fd00:10:3::2\"\nport = 443\n"));
  for (bool v6 : {false, true}) {
    const std::string p = v6 ? "ipv6-icmp" : "icmp";
    EXPECT_EQ(jump_kind(both, v6, "mangle", "FORWARD", p), RuleCommand::Kind::Ensure);
    EXPECT_EQ(jump_kind(both, v6, "mangle", "INPUT", p), RuleCommand::Kind::Ensure);
    EXPECT_EQ(jump_kind(both, v6, "mangle", "OUTPUT", p), RuleCommand::Kind::RemoveAll);
    EXPECT_EQ(jump_kind(both, v6, "mangle", "OUTPUT", "tcp"), RuleCommand::Kind::Ensure);
    EXPECT_EQ(jump_kind(both, v6, "raw", "PREROUTING", p), RuleCommand::Kind::Ensure);
    EXPECT_EQ(jump_kind(both, v6, "raw", "OUTPUT", p), RuleCommand::Kind::Ensure);
  }
  auto down = plan_down("SYNGATE");
  size_t icmp_removals = 0;
  for (const auto& c : down) {
    const std::string line = join(c.args);
    if (c.kind == RuleCommand::Kind::RemoveAll && (line.find("-p icmp ") != std::string::npos ||
                                                   line.find("-p ipv6-icmp ") != std::string::npos)) {
      ++icmp_removals;
    }
  }
  EXPECT_EQ(icmp_removals, 2u * 5u);  // both families: three mangle hooks, two raw hooks
}

TEST(Rules, FamiliesAreSeparated) {
  auto c = config("", "[[service]]\naddress = \"10.0.0.1\"\nport = 80\n"
                      "[[service]]\naddress = \"2001:db8::1\"\nport = 443\n");
  auto v4 = chain_rules(c, false, "raw");
  auto v6 = chain_rules(c, true, "raw");
  ASSERT_EQ(v4.size(), 4u);
  ASSERT_EQ(v6.size(), 4u);
  EXPECT_EQ(v6[0][1], "2001:db8::1/128");
}

TEST(Rules, RestoreScriptDeclaresAndFillsTheChain) {
  std::string s = restore_script(config("chain = \"SGX\""), false, "mangle");
  EXPECT_EQ(s.rfind("*mangle\n:SGX - [0:0]\n-A SGX -m mark --mark 0x5347 -j RETURN\n", 0), 0u) << s;
  EXPECT_NE(s.find("-A SGX -d 10.10.3.2/32 -p tcp -m tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN -j NFQUEUE --queue-num 0\n"), std::string::npos);
  EXPECT_EQ(s.substr(s.size() - 7), "COMMIT\n");
}

TEST(Rules, UpJumpsFollowTheMode) {
  auto find = [](const std::vector<RuleCommand>& plan, const std::string& table, const std::string& hook) {
    for (const auto& c : plan) {
      if (c.v6 || c.args.size() < 5 || c.args[2] != table || c.args[4] != hook) continue;
      return c.kind;
    }
    return RuleCommand::Kind::Run;  // not present
  };
  auto router = plan_up(config("mode = \"router\""));
  EXPECT_EQ(find(router, "mangle", "FORWARD"), RuleCommand::Kind::Ensure);
  EXPECT_EQ(find(router, "mangle", "INPUT"), RuleCommand::Kind::RemoveAll);
  EXPECT_EQ(find(router, "mangle", "OUTPUT"), RuleCommand::Kind::RemoveAll);
  EXPECT_EQ(find(router, "raw", "PREROUTING"), RuleCommand::Kind::Ensure);
  EXPECT_EQ(find(router, "raw", "OUTPUT"), RuleCommand::Kind::Ensure);
  auto host = plan_up(config("mode = \"host\""));
  EXPECT_EQ(find(host, "mangle", "FORWARD"), RuleCommand::Kind::RemoveAll);
  EXPECT_EQ(find(host, "mangle", "INPUT"), RuleCommand::Kind::Ensure);
  EXPECT_EQ(find(host, "mangle", "OUTPUT"), RuleCommand::Kind::Ensure);
  // Chains are filled (Restore) before any jump points at them.
  size_t first_restore = router.size(), first_jump = router.size();
  for (size_t i = 0; i < router.size(); ++i) {
    if (router[i].v6) continue;
    if (router[i].kind == RuleCommand::Kind::Restore) first_restore = std::min(first_restore, i);
    if (router[i].kind == RuleCommand::Kind::Ensure) first_jump = std::min(first_jump, i);
  }
  EXPECT_LT(first_restore, first_jump);
  // No v6 service: the v6 side only cleans up.
  for (const auto& c : router) {
    if (c.v6) {
      EXPECT_TRUE(c.kind == RuleCommand::Kind::RemoveAll || c.kind == RuleCommand::Kind::Optional);
    }
  }
}

TEST(Rules, DownRemovesJumpsBeforeTheChain) {
  auto plan = plan_down("SYNGATE");
  size_t last_jump_removal = 0, first_delete = plan.size();
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].v6) continue;
    if (plan[i].kind == RuleCommand::Kind::RemoveAll) last_jump_removal = i;
    if (join(plan[i].args).find("-X SYNGATE") != std::string::npos) first_delete = std::min(first_delete, i);
  }
  EXPECT_LT(last_jump_removal, first_delete);
  EXPECT_EQ(join(plan[0].args), "-w -t mangle -D FORWARD -p tcp -j SYNGATE");
}

TEST(Rules, RenderQuotes) {
  EXPECT_EQ(render("iptables", {"-A", "X", "--comment", "a b"}), "iptables -A X --comment 'a b'");
}

namespace syngate::gw {
namespace {

const char* kShownV4 =
    "# iptables -t raw\n-N SYNGATE\n-A PREROUTING -p tcp -j SYNGATE\n-A OUTPUT -p tcp -j SYNGATE\n"
    "-A SYNGATE -d 10.10.3.2/32 -p tcp -m tcp --dport 80 -j CT --notrack\n"
    "# iptables -t mangle\n-N SYNGATE\n-A FORWARD -p tcp -j SYNGATE\n"
    "-A SYNGATE -m mark --mark 0x5347 -j RETURN\n";

TEST(MissingRules, NothingMissingWhenChainsRulesAndJumpsAreThere) {
  EXPECT_TRUE(missing_rules(kShownV4, "SYNGATE", "iptables", true, "ip6tables", false).empty());
}

TEST(MissingRules, ADeletedJumpAFlushedChainOrNothingAtAllIsNamed) {
  std::string no_jump = kShownV4;
  no_jump.erase(no_jump.find("-A FORWARD -p tcp -j SYNGATE\n"), std::string("-A FORWARD -p tcp -j SYNGATE\n").size());
  EXPECT_EQ(missing_rules(no_jump, "SYNGATE", "iptables", true, "ip6tables", false),
            std::vector<std::string>{"iptables -t mangle: no jump to SYNGATE"});
  std::string flushed = kShownV4;
  flushed.erase(flushed.find("-A SYNGATE -m mark"));
  EXPECT_EQ(missing_rules(flushed, "SYNGATE", "iptables", true, "ip6tables", false),
            std::vector<std::string>{"iptables -t mangle: chain SYNGATE is empty"});
  EXPECT_EQ(missing_rules("", "SYNGATE", "iptables", true, "ip6tables", false).size(), 4u);
  EXPECT_EQ(missing_rules(kShownV4, "SYNGATE", "iptables", true, "ip6tables", true),
            (std::vector<std::string>{"ip6tables -t raw: no chain SYNGATE", "ip6tables -t raw: no jump to SYNGATE",
                                      "ip6tables -t mangle: no chain SYNGATE", "ip6tables -t mangle: no jump to SYNGATE"}));
}

TEST(MissingRules, AnotherChainsJumpIsNotOurs) {
  std::string other = kShownV4;
  const std::string jump = "-A FORWARD -p tcp -j SYNGATE\n";
  other.replace(other.find(jump), jump.size(), "-A FORWARD -p tcp -j SYNGATE2\n");
  EXPECT_EQ(missing_rules(other, "SYNGATE", "iptables", true, "ip6tables", false).size(), 1u);
}

// With the kernel path on, rules made while it was off (no rule letting SG_TC_MARK past the queue)
// would queue what tc translated, for the engine to translate again: named, and only then.
TEST(MissingRules, WithTheKernelPathAChainThatWouldQueueTranslatedPacketsIsNamed) {
  const std::string old_rules = kShownV4;
  EXPECT_TRUE(missing_rules(old_rules, "SYNGATE", "iptables", true, "ip6tables", false).empty());
  const std::vector<std::string> stale{
      "iptables -t mangle: chain SYNGATE queues packets tc translated (made with kernel_path \"off\")"};
  EXPECT_EQ(missing_rules(old_rules, "SYNGATE", "iptables", true, "ip6tables", false, true), stale);
  EXPECT_EQ(rules_queue_translated(old_rules, "SYNGATE", "iptables", true, "ip6tables", false), stale);

  // What `rules up` makes with the kernel path on has it (the same text chain_rules writes).
  GatewayConfig c;
  c.kernel_path = KernelPath::Auto;
  std::string with_skip = old_rules;
  for (const auto& r : chain_rules(c, false, "mangle")) {
    if (std::find(r.begin(), r.end(), "RETURN") == r.end()) continue;
    std::string line = "-A SYNGATE";
    for (const auto& a : r) line += " " + a;
    if (line.find("0x40000000") != std::string::npos) with_skip += line + "\n";
  }
  ASSERT_NE(with_skip, old_rules);
  EXPECT_TRUE(missing_rules(with_skip, "SYNGATE", "iptables", true, "ip6tables", false, true).empty());
  EXPECT_TRUE(rules_queue_translated(with_skip, "SYNGATE", "iptables", true, "ip6tables", false).empty());
  // No rules in place yet: nothing to refuse (`rules up` with this config adds it).
  EXPECT_TRUE(rules_queue_translated("", "SYNGATE", "iptables", true, "ip6tables", false).empty());
}

}  // namespace
}  // namespace syngate::gw
