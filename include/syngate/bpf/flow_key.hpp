// A flow's tuple in the form the BPF maps key it by (xdp_abi.h's sg_xdp_flow_key and tc_abi.h's
// sg_tc_flow_key share it): addresses as Address stores them (IPv4 v4-mapped), ports in network
// order. One conversion for every loader and test.
#pragma once

#include <arpa/inet.h>

#include <cstring>

#include "syngate/packet.hpp"

namespace syngate::bpf {

template <typename Key>
Key map_flow_key(const FlowTuple& t) {
  static_assert(sizeof(Key::src) == 16 && sizeof(Key::dst) == 16, "the maps' address form");
  Key k{};
  std::memcpy(k.src, t.src.bytes.data(), 16);
  std::memcpy(k.dst, t.dst.bytes.data(), 16);
  k.sport_be = htons(t.sport);
  k.dport_be = htons(t.dport);
  return k;
}

// The other way: the tuple a map key names.
template <typename Key>
FlowTuple map_flow_tuple(const Key& k) {
  FlowTuple t;
  std::memcpy(t.src.bytes.data(), k.src, 16);
  std::memcpy(t.dst.bytes.data(), k.dst, 16);
  t.sport = ntohs(k.sport_be);
  t.dport = ntohs(k.dport_be);
  return t;
}

}  // namespace syngate::bpf
