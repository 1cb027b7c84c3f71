// ICMP and ICMPv6 errors quoting a packet, built as a router builds them, and their checksum
// check: for the tests of the quote translation (core, engine, workers).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

namespace syngate::test {

// The ICMP checksum as a receiver computes it over `packet` (IPv4 or IPv6, no extension headers):
// 0 when the message is intact.
inline uint16_t icmp_checksum_residue(std::span<const uint8_t> packet) {
  if ((packet[0] >> 4) == 4) {
    const size_t ihl = (packet[0] & 0x0f) * 4u;
    const size_t total = static_cast<size_t>(packet[2] << 8 | packet[3]);
    return csum_fold(csum_partial(packet.subspan(ihl, total - ihl)));
  }
  const size_t len = static_cast<size_t>(packet[4] << 8 | packet[5]);
  uint32_t sum = csum_partial(packet.subspan(8, 32));
  sum = csum_partial(packet.subspan(40, len), sum + static_cast<uint32_t>(len) + 58u);
  return csum_fold(sum);
}

// An error from `router` to `to` quoting the first `quote_len` bytes of `quoted` (the whole of it
// when shorter). `rest` fills bytes 4-7 of the ICMP header (the MTU of "fragmentation needed" /
// "packet too big", a pointer, or zero).
inline std::vector<uint8_t> icmp_error(std::span<const uint8_t> quoted, const Address& router, const Address& to,
                                       uint8_t type, uint8_t code, uint32_t rest = 0, size_t quote_len = 1u << 16) {
  const bool v4 = router.is_v4();
  const size_t ip = v4 ? 20 : 40;
  const size_t q = std::min(quote_len, quoted.size());
  std::vector<uint8_t> b(ip + 8 + q, 0);
  if (v4) {
    const size_t total = b.size();
    b[0] = 0x45;
    b[1] = 0xc0;
    b[2] = static_cast<uint8_t>(total >> 8);
    b[3] = static_cast<uint8_t>(total);
    b[8] = 64;
    b[9] = 1;
    std::copy_n(router.v4_bytes().begin(), 4, b.begin() + 12);
    std::copy_n(to.v4_bytes().begin(), 4, b.begin() + 16);
    const uint16_t hc = ipv4_header_checksum(std::span<const uint8_t>(b.data(), 20));
    b[10] = static_cast<uint8_t>(hc >> 8);
    b[11] = static_cast<uint8_t>(hc);
  } else {
    const size_t len = b.size() - 40;
    b[0] = 0x60;
    b[4] = static_cast<uint8_t>(len >> 8);
    b[5] = static_cast<uint8_t>(len);
    b[6] = 58;
    b[7] = 64;
    std::copy_n(router.v6_bytes().begin(), 16, b.begin() + 8);
    std::copy_n(to.v6_bytes().begin(), 16, b.begin() + 24);
  }
  uint8_t* h = b.data() + ip;
  h[0] = type;
  h[1] = code;
  h[4] = static_cast<uint8_t>(rest >> 24);
  h[5] = static_cast<uint8_t>(rest >> 16);
  h[6] = static_cast<uint8_t>(rest >> 8);
  h[7] = static_cast<uint8_t>(rest);
  std::copy_n(quoted.begin(), q, h + 8);
  const uint16_t c = icmp_checksum_residue(b);
  h[2] = static_cast<uint8_t>(c >> 8);
  h[3] = static_cast<uint8_t>(c);
  return b;
}

}  // namespace syngate::test
