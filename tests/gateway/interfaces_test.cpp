// The rule that says where the in-kernel programs attach (gateway/interfaces.hpp), on facts as
// rtnetlink reports them: the lab's gateway, a host-mode server, an ECMP route, no default route.
#include <gtest/gtest.h>

#include "interfaces.hpp"

using namespace syngate;
using namespace syngate::gw;

namespace {

Address addr(const char* text) { return *Address::parse(text); }

// lo, g1 (clients, default route via 10.10.1.2), g2 (a flood link), g3 (servers), u0 (a veth
// someone created for something else, with an address of its own).
RoutingFacts lab() {
  RoutingFacts f;
  f.links = {{1, "lo", true, true}, {2, "g1", true, false}, {3, "g2", true, false}, {4, "g3", true, false},
             {5, "u0", true, false}};
  f.defaults = {{false, 2, "10.10.1.2"}};
  f.services = {{addr("10.10.3.2"), false, {4}}};
  f.routed = {{2, "0.0.0.0/0"}, {2, "10.10.1.0/24"}, {3, "10.10.2.0/24"}, {4, "10.10.3.0/24"}, {5, "10.99.0.0/24"}};
  return f;
}

std::vector<std::string> names(const InterfacePlan& p) {
  std::vector<std::string> out;
  for (const auto& c : p.interfaces) out.push_back(c.name);
  return out;
}

bool notes_contain(const InterfacePlan& p, const std::string& part) {
  for (const auto& n : p.notes) {
    if (n.find(part) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST(InterfaceRule, ClientsByTheDefaultRouteServersByTheServiceRouteNothingElse) {
  const InterfacePlan p = plan_interfaces(lab(), Mode::Router);
  EXPECT_EQ(names(p), (std::vector<std::string>{"g1", "g3"}));  // not g2, not u0, not lo
  ASSERT_EQ(p.interfaces.size(), 2u);
  EXPECT_EQ(p.interfaces[0].ifindex, 2);
  ASSERT_EQ(p.interfaces[0].reasons.size(), 1u);
  EXPECT_NE(p.interfaces[0].reasons[0].find("default route (IPv4 via 10.10.1.2)"), std::string::npos);
  EXPECT_NE(p.interfaces[1].reasons[0].find("route to service 10.10.3.2"), std::string::npos);
  EXPECT_TRUE(p.notes.empty());
  EXPECT_EQ(describe(p)[0], "g1: default route (IPv4 via 10.10.1.2): clients arrive here");
  // The tc programs take both; the XDP fast path only the side clients arrive on.
  EXPECT_TRUE(p.interfaces[0].clients);
  EXPECT_FALSE(p.interfaces[1].clients);
  const InterfacePlan xdp = client_side(p);
  EXPECT_EQ(names(xdp), std::vector<std::string>{"g1"});
  EXPECT_TRUE(notes_contain(xdp, "g3 leads only toward the servers"));
}

TEST(InterfaceRule, EveryDefaultRouteAndEveryNexthopCounts) {
  RoutingFacts f = lab();
  f.defaults.push_back({false, 3, "10.10.2.2"});  // a backup uplink (higher metric)
  f.defaults.push_back({true, 2, "fd00:10:1::2"});
  f.services = {{addr("10.10.3.2"), false, {4, 5}}};  // ECMP toward two server links
  const InterfacePlan p = plan_interfaces(f, Mode::Both);
  EXPECT_EQ(names(p), (std::vector<std::string>{"g1", "g2", "g3", "u0"}));
  EXPECT_EQ(p.interfaces[0].reasons.size(), 2u);  // IPv4 and IPv6 default routes, one line each
}

TEST(InterfaceRule, OneInterfaceForBothSidesHasBothReasons) {
  RoutingFacts f = lab();
  f.services = {{addr("10.10.3.2"), false, {2}}};  // one-armed: servers behind the uplink too
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), std::vector<std::string>{"g1"});
  EXPECT_EQ(p.interfaces[0].reasons.size(), 2u);
  EXPECT_EQ(names(client_side(p)), std::vector<std::string>{"g1"});
}

TEST(InterfaceRule, HostModeServiceIsLocalNothingTowardIt) {
  RoutingFacts f;
  f.links = {{1, "lo", true, true}, {2, "eth0", true, false}, {3, "docker0", true, false}};
  f.defaults = {{false, 2, "10.10.5.1"}};
  f.services = {{addr("10.10.9.9"), true, {}}};
  f.routed = {{2, "10.10.5.0/24"}, {3, "172.17.0.0/16"}};
  InterfacePlan p = plan_interfaces(f, Mode::Host);
  EXPECT_EQ(names(p), std::vector<std::string>{"eth0"});
  EXPECT_TRUE(p.notes.empty());
  // The same facts with gateway.mode = "router": said, since the rules then queue none of it.
  p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), std::vector<std::string>{"eth0"});
  EXPECT_TRUE(notes_contain(p, "10.10.9.9 is an address of this host"));
}

TEST(InterfaceRule, HostModeWithAForwardedServiceIsNoted) {
  const InterfacePlan p = plan_interfaces(lab(), Mode::Host);
  EXPECT_EQ(names(p), (std::vector<std::string>{"g1", "g3"}));
  EXPECT_TRUE(notes_contain(p, "10.10.3.2 is on another host"));
}

TEST(InterfaceRule, DownLoopbackAndVanishedInterfacesAreNeverChosen) {
  RoutingFacts f = lab();
  f.links[1].up = false;                           // g1 down
  f.services = {{addr("10.10.3.2"), false, {4}}, {addr("10.10.4.2"), false, {1}}, {addr("10.10.8.2"), false, {42}}};
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), std::vector<std::string>{"g3"});
  EXPECT_TRUE(notes_contain(p, "g1 (default route"));
  EXPECT_TRUE(notes_contain(p, ": down"));
  EXPECT_TRUE(notes_contain(p, "lo (route to service 10.10.4.2"));
  EXPECT_TRUE(notes_contain(p, "ifindex 42"));
}

TEST(InterfaceRule, NoRouteToAServiceIsNoted) {
  RoutingFacts f = lab();
  f.services = {{addr("10.10.3.2"), false, {}}};
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), std::vector<std::string>{"g1"});
  EXPECT_TRUE(notes_contain(p, "no route to service 10.10.3.2"));
}

TEST(InterfaceRule, IPv6ServiceRoute) {
  RoutingFacts f = lab();
  f.services = {{addr("fd00:10:3::2"), false, {4}}};
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), (std::vector<std::string>{"g1", "g3"}));
  EXPECT_NE(p.interfaces[1].reasons[0].find("fd00:10:3::2"), std::string::npos);
}

// No uplink to tell clients by (a lab namespace): every routed, up interface, said in a note; an
// interface with no route at all (a bare veth) still gets nothing.
TEST(InterfaceRule, WithoutADefaultRouteEveryRoutedInterface) {
  RoutingFacts f = lab();
  f.defaults.clear();
  f.routed = {{2, "10.10.1.0/24"}, {3, "10.10.2.0/24"}, {3, "198.18.0.0/15"}, {4, "10.10.3.0/24"}};
  f.links.push_back({6, "bare0", true, false});
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), (std::vector<std::string>{"g1", "g2", "g3"}));
  EXPECT_TRUE(notes_contain(p, "no default route"));
  EXPECT_EQ(p.interfaces[1].reasons.size(), 2u);  // both of g2's routes
  // g3 carries the route to the service: the servers' side, not a client's.
  EXPECT_EQ(names(client_side(p)), (std::vector<std::string>{"g1", "g2"}));
}

// A default route over an L3 device (a VPN's tun or WireGuard interface): its frames start at the
// IP header, which the programs would read as Ethernet; it gets none, said in a note, listed or not.
TEST(InterfaceRule, NoProgramOnAnInterfaceWithoutEthernetFrames) {
  RoutingFacts f = lab();
  LinkFact wg{7, "wg0", true, false};
  wg.ethernet = false;
  f.links.push_back(wg);
  f.defaults.push_back({false, 7, ""});
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_TRUE(notes_contain(p, "wg0 (default route")) << "no note says why wg0 was left out";
  EXPECT_TRUE(notes_contain(p, "not an Ethernet interface"));
  EXPECT_EQ(names(p), (std::vector<std::string>{"g1", "g3"}));  // the rest as without wg0
  const InterfacePlan listed = plan_listed(f, {"g1", "wg0"});
  EXPECT_EQ(names(listed), std::vector<std::string>{"g1"});
  EXPECT_TRUE(notes_contain(listed, "wg0 (listed in [xdp] interfaces): not an Ethernet interface"));
}

// One-armed and without a default route: clients and servers share the only routed interface.
TEST(InterfaceRule, WithoutADefaultRouteTheOnlyRoutedInterfaceIsAClientSideToo) {
  RoutingFacts f;
  f.links = {{1, "lo", true, true}, {2, "eth0", true, false}};
  f.services = {{addr("10.10.3.2"), false, {2}}};
  f.routed = {{2, "10.10.0.0/16"}};
  const InterfacePlan p = plan_interfaces(f, Mode::Router);
  ASSERT_EQ(names(p), std::vector<std::string>{"eth0"});
  EXPECT_TRUE(p.interfaces[0].clients);
  EXPECT_EQ(names(client_side(p)), std::vector<std::string>{"eth0"});
}

// The uplink goes down and its default route with it: that is not a namespace without a default
// route, so the unrelated interfaces stay without the program.
TEST(InterfaceRule, AnUplinkDownIsNotANamespaceWithoutDefaultRoute) {
  RoutingFacts f = lab();
  f.links[1].up = false;  // g1
  f.defaults.clear();
  f.routed = {{3, "10.10.2.0/24"}, {4, "10.10.3.0/24"}, {5, "10.99.0.0/24"}};
  f.had_default = true;
  InterfacePlan p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), std::vector<std::string>{"g3"});
  EXPECT_TRUE(notes_contain(p, "the default route is gone"));
  f.had_default = false;  // never had one: the fallback
  p = plan_interfaces(f, Mode::Router);
  EXPECT_EQ(names(p), (std::vector<std::string>{"g2", "g3", "u0"}));
}

TEST(InterfaceRule, ListedInterfacesWinAsListedUpOrNot) {
  RoutingFacts f = lab();
  f.links[2].up = false;  // g2
  const InterfacePlan p = plan_listed(f, {"u0", "g2", "eth9"});
  EXPECT_EQ(names(p), (std::vector<std::string>{"u0", "g2"}));
  EXPECT_EQ(names(client_side(p)), (std::vector<std::string>{"u0", "g2"})) << "listed: the operator's word";
  EXPECT_TRUE(notes_contain(p, "eth9 (listed in [xdp] interfaces): no such interface"));
}

TEST(InterfaceRule, TheSameFactsGiveTheSamePlan) {
  EXPECT_EQ(plan_interfaces(lab(), Mode::Both), plan_interfaces(lab(), Mode::Both));
  RoutingFacts f = lab();
  f.links.push_back({7, "veth-new", true, false});  // a new, unrelated interface changes nothing
  EXPECT_EQ(plan_interfaces(f, Mode::Both), plan_interfaces(lab(), Mode::Both));
}

// Forwarding from tc: asked for, where segments are forwarded, and never where a policy rule
// selects by a firewall mark that netfilter would set after tc ingress (the FIB answer the program
// gets could differ from the kernel's); the log line names the rule.
TEST(TcForward, OnlyWhereTheFibAnswerIsTheKernelsOwn) {
  std::string why;
  EXPECT_EQ(fib_use(Mode::Router, true, {}, &why), (FibUse{.judge = true, .forward = true}));
  EXPECT_EQ(fib_use(Mode::Both, true, {}, &why), (FibUse{.judge = true, .forward = true}));
  EXPECT_TRUE(why.empty());
  EXPECT_EQ(fib_use(Mode::Host, true, {}, &why), FibUse{}) << "host mode forwards nothing";
  EXPECT_EQ(fib_use(Mode::Router, false, {}, &why), (FibUse{.judge = true, .forward = false}))
      << "tc_forward off still leaves what the kernel refuses as it was sent";
  EXPECT_TRUE(why.empty()) << "turned off by the operator: nothing to explain";
  const std::vector<std::string> rules = {"ipv4 priority 100: fwmark 0x1/0xffffffff",
                                          "ipv6 priority 32765: not fwmark 0xca6c/0xffffffff"};
  for (const bool tc_forward : {true, false}) {
    why.clear();
    EXPECT_EQ(fib_use(Mode::Router, tc_forward, rules, &why), FibUse{})
        << "with fwmark rules the FIB's answer is not the kernel's: neither judged nor sent";
    EXPECT_NE(why.find("ipv4 priority 100: fwmark 0x1/0xffffffff, and 1 more"), std::string::npos) << why;
    EXPECT_NE(why.find("while such a rule exists"), std::string::npos) << why;
  }
}
