// Segments built from a SegmentSpec, the options a Linux SYN carries, and raw option bytes written
// over a built packet: the one copy the tests, benchmarks and fuzz targets share. No gtest here
// (benchmarks and fuzz targets include it); engine_harness.hpp adds the checked variant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "syngate/packet.hpp"

namespace syngate::test {

using Bytes = std::vector<uint8_t>;

// The packet `spec` describes; empty when build_tcp_packet refuses it.
inline Bytes segment(const SegmentSpec& spec) {
  Bytes b(kMaxHeadersLen + spec.payload.size() + 16);
  b.resize(build_tcp_packet(b, spec));
  return b;
}

// The options of a SYN as Linux sends it: MSS 1460, SACK-permitted, timestamps, NOP, window
// scale 7 (20 option bytes).
inline TcpOptions linux_syn_options(uint32_t tsval) {
  TcpOptions o;
  o.has_mss = true;
  o.mss = 1460;
  o.sack_permitted = true;
  o.has_timestamps = true;
  o.tsval = tsval;
  o.has_wscale = true;
  o.wscale = 7;
  return o;
}

// Offset of the TCP header in a packet without IPv6 extension headers.
inline size_t tcp_offset(const Bytes& b) { return (b[0] >> 4) == 4 ? size_t(b[0] & 0xf) * 4 : 40; }

// Overwrites the TCP option bytes (after the fixed 20) with `opts`, padded with END to the
// current header length. False (packet unchanged) when `opts` does not fit.
[[nodiscard]] inline bool set_tcp_options(Bytes& b, const std::vector<uint8_t>& opts) {
  const size_t t = tcp_offset(b);
  const size_t hdr = size_t(b[t + 12] >> 4) * 4;
  if (opts.size() > hdr - 20) return false;
  for (size_t i = 0; i < hdr - 20; ++i) b[t + 20 + i] = i < opts.size() ? opts[i] : 0;
  return true;
}

}  // namespace syngate::test
