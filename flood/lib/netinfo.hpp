// Parsers for the kernel's text tables the generator needs to address frames: /proc/net/route
// (which interface and next hop reach the target) and /proc/net/arp (the next hop's MAC).
// Pure: the program reads the files and hands the text over.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "frame.hpp"

namespace syngate::flood {

struct RouteChoice {
  std::string iface;
  uint32_t next_hop = 0;  // host order: the gateway, or the target itself on a connected route
};

// The most specific route (longest mask, then lowest metric) to `target` (host order).
std::optional<RouteChoice> pick_route(std::string_view proc_net_route, uint32_t target);

// The MAC of a complete neighbour entry for `ip` on `iface` (an incomplete entry, flags 0x0,
// does not count).
std::optional<Mac> find_neighbour(std::string_view proc_net_arp, uint32_t ip, std::string_view iface);

struct RouteChoice6 {
  std::string iface;
  Ip6 next_hop{};  // the gateway, or the target itself on a connected route
};

// The most specific usable route (longest prefix, then lowest metric; reject routes skipped) to
// `target` in /proc/net/ipv6_route.
std::optional<RouteChoice6> pick_route6(std::string_view proc_net_ipv6_route, const Ip6& target);

}  // namespace syngate::flood
