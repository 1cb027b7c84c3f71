// Where syngate's in-kernel programs (the XDP fast path now, tc programs later) belong: every
// interface a client or a flood can arrive on and every interface toward the servers, nothing
// else. One rule, a pure function of the facts the kernel reports (links, routes), so it is
// unit-tested without root; interfaces_netlink.cpp reads those facts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "syngate/packet.hpp"

namespace syngate::gw {

struct LinkFact {
  int ifindex = 0;
  std::string name;
  bool up = false;  // IFF_UP
  bool loopback = false;
  // ARPHRD_ETHER. The programs read Ethernet frames; on an L3 device (tun, WireGuard, ipip) a
  // frame starts at its IP header and would be misread.
  bool ethernet = true;
};

// One nexthop of a default route (any table but `local`, any metric: a backup uplink carries
// clients the moment the primary fails).
struct DefaultRouteFact {
  bool v6 = false;
  int ifindex = 0;
  std::string via;  // the gateway's address, "" for a device route
};

// The kernel's route to one service address (`ip route get fibmatch ADDR`): local when the
// address is this host's own, else the interfaces of every nexthop; neither: no route.
struct ServiceRouteFact {
  Address address;
  bool local = false;
  std::vector<int> ifindexes;
};

// A unicast route through an interface (link-local and the `local` table left out): the first
// such prefix seen per interface, for the rule's fallback when there is no default route.
struct RoutedFact {
  int ifindex = 0;
  std::string prefix;
};

struct RoutingFacts {
  std::vector<LinkFact> links;
  std::vector<DefaultRouteFact> defaults;
  std::vector<ServiceRouteFact> services;
  std::vector<RoutedFact> routed;
  // Not from the kernel: a default route was seen earlier (by this process). Its absence now is an
  // uplink that went down (its routes go with it), not a namespace without one: no fallback.
  bool had_default = false;
};

struct InterfaceChoice {
  int ifindex = 0;
  std::string name;
  std::vector<std::string> reasons;  // why, one line per fact that makes it needed
  // Clients (and floods) arrive here: the XDP fast path's side. False: it leads only toward the
  // servers, where the tc programs translate the replies and XDP would have nothing to answer.
  bool clients = false;
  friend bool operator==(const InterfaceChoice&, const InterfaceChoice&) = default;
};

struct InterfacePlan {
  std::vector<InterfaceChoice> interfaces;  // in ifindex order
  std::vector<std::string> notes;           // what the rule saw but could not use, for the log
  friend bool operator==(const InterfacePlan&, const InterfacePlan&) = default;
};

// The rule. Clients and floods arrive by the default routes (IPv4 and IPv6, every nexthop);
// servers are reached by the route to each service address (a local one, as in host mode, is
// this host: nothing to attach toward it). Loopback and down interfaces are never chosen.
// Without any default route, ever, the client side cannot be told apart: every up interface that
// carries a route is taken, and a note says so. `mode` only checks that the routes agree with
// gateway.mode (notes).
InterfacePlan plan_interfaces(const RoutingFacts& facts, Mode mode);

// `[xdp] interfaces` given: exactly those that exist (up or not), in the order listed, each taken
// as a client side.
InterfacePlan plan_listed(const RoutingFacts& facts, const std::vector<std::string>& listed);

// The XDP fast path's part of a plan: the interfaces clients arrive on. Every packet it sees on an
// interface toward the servers is a reply it passes, and in generic mode (veth, drivers without
// XDP) each costs a copy of the whole GRO super-packet first; a note names each one left out.
InterfacePlan client_side(const InterfacePlan& plan);

// The plan as log lines: "g1: default route (IPv4 via 10.10.1.2)".
std::vector<std::string> describe(const InterfacePlan& plan);

// The facts of the calling thread's network namespace, from rtnetlink (links, routes, and a
// route lookup per service address). Throws std::runtime_error when netlink fails.
RoutingFacts read_routing_facts(const std::vector<Address>& services);

// The policy routing rules (`ip rule`) that select by firewall mark, both families, as
// "ipv4 priority 100: fwmark 0x1/0xffffffff" ("not fwmark" for an inverted one). Throws
// std::runtime_error when netlink fails.
std::vector<std::string> read_fwmark_rules();

// What the tc ingress programs take from their FIB lookup, where segments are forwarded (router
// and both modes): `judge` leaves a segment the kernel will refuse (TTL about to expire, too big
// with DF, unreachable) as its sender sent it; `forward` also sends the translated ones on
// (gateway.tc_forward). Both only while the FIB answer the program gets cannot differ from the
// kernel's: tc ingress runs before netfilter's PREROUTING, so a mark an iptables or nft rule sets
// there is not on the packet yet, and with a policy rule that selects by fwmark the program could
// judge or send a segment where the kernel would not. *why says so, for such rules. The daemon
// asks again whenever the rules change (a VPN that adds its rules after syngate started).
struct FibUse {
  bool judge = false;
  bool forward = false;
  friend bool operator==(const FibUse&, const FibUse&) = default;
};
FibUse fib_use(Mode mode, bool tc_forward, const std::vector<std::string>& fwmark_rules, std::string* why);

// Every interface of the namespace that is up and not loopback, by ioctl (for when rtnetlink
// cannot be read).
std::vector<std::string> default_interfaces();
// The kernel driver of an interface (ethtool), "" when unknown.
std::string interface_driver(const std::string& interface);

// Tells when links, routes or policy rules change (RTNLGRP_LINK, _IPV4_ROUTE, _IPV6_ROUTE, _IPV4_RULE,
// _IPV6_RULE):
// a non-blocking netlink socket drained by changed().
class LinkWatcher {
 public:
  LinkWatcher();  // throws std::runtime_error when the socket cannot be opened
  ~LinkWatcher();
  LinkWatcher(const LinkWatcher&) = delete;
  LinkWatcher& operator=(const LinkWatcher&) = delete;
  // True when anything was announced since the last call (or messages were lost).
  bool changed();

 private:
  int fd_ = -1;
};

}  // namespace syngate::gw
