// ICMP errors about TCP segments. See include/syngate/icmp.hpp.
#include "syngate/icmp.hpp"

#include <algorithm>
#include <cstring>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/spec/syn_rules.h"

namespace syngate {
namespace {

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoIcmpv6 = 58;
constexpr uint32_t kIpv4MinHeader = 20;
constexpr uint32_t kIpv6Header = 40;
constexpr uint32_t kIcmpHeader = 8;
constexpr uint32_t kQuotedTcpMin = 8;  // ports and sequence number: all RFC 792 promises

// Walks an IPv6 extension-header chain from `next` at `off`, within `end`. Returns the header
// that ends it (its value in *next, its offset in *off), or false when the chain is cut short,
// too long, or reaches a fragment header.
bool walk_ipv6_chain(const uint8_t* d, uint32_t end, uint8_t* next, uint32_t* off) noexcept {
  for (int hops = 0;; ++hops) {
    uint32_t hlen = 0;
    if (sg_ipv6_ext_header(*next, 0, &hlen) == SG_PE_NOT_TCP) return true;  // not an extension header
    if (hops == SG_IPV6_MAX_EXT_HEADERS || *off + 2 > end) return false;
    if (sg_ipv6_ext_header(*next, d[*off + 1], &hlen) != SG_PE_NONE) return false;  // a fragment
    if (*off + hlen > end) return false;
    *next = d[*off];
    *off += hlen;
  }
}

// RFC 4884: an error with extensions says how long its quote is; the quote is then at most that
// (in 32-bit words for ICMP, 64-bit for ICMPv6, in the byte below), the rest being extensions.
uint32_t quote_length(const uint8_t* icmp, uint32_t available, bool v4) noexcept {
  uint32_t words = 0;
  if (v4 && (icmp[0] == 3 || icmp[0] == 11 || icmp[0] == 12)) words = uint32_t{icmp[5]} * 4;
  if (!v4 && (icmp[0] == 1 || icmp[0] == 3)) words = uint32_t{icmp[4]} * 8;
  return words != 0 ? std::min(available, words) : available;
}

// The one's-complement sum of a 32-bit value's two halves.
uint16_t fold32(uint32_t v) noexcept {
  uint32_t s = (v >> 16) + (v & 0xffffu);
  s = (s & 0xffffu) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// Rewrites the 32-bit field at `field` and patches the checksum at `check`, which covers the
// field starting from `base`. A field at an odd distance from `base` adds its bytes to the sum
// swapped (RFC 1071 2(B): swapping commutes with the one's-complement sum).
void patch32(uint8_t* field, uint32_t value, const uint8_t* base, uint8_t* check) noexcept {
  const uint32_t old = load_be32(field);
  if (old == value) return;
  store_be32(field, value);
  uint16_t from = fold32(old), to = fold32(value);
  if ((field - base) % 2 != 0) {
    from = static_cast<uint16_t>(from << 8 | from >> 8);
    to = static_cast<uint16_t>(to << 8 | to >> 8);
  }
  store_be16(check, csum_replace16(load_be16(check), from, to));
}

}  // namespace

IcmpError parse_icmp_error(std::span<const uint8_t> packet) noexcept {
  IcmpError e;
  const uint8_t* d = packet.data();
  const uint32_t size = static_cast<uint32_t>(std::min<size_t>(packet.size(), 0xffffffffu));
  if (size < 1) return e;
  const uint8_t version = d[0] >> 4;
  uint32_t icmp = 0, end = 0;
  if (version == 4) {
    if (size < kIpv4MinHeader) return e;
    const uint32_t ihl = uint32_t{d[0] & 0x0fu} * 4;
    end = load_be16(d + 2);
    if (ihl < kIpv4MinHeader || end < ihl || end > size || d[9] != kProtoIcmp) return e;
    e.v4 = true;
    e.kind = IcmpKind::Untouched;
    // A fragment holds part of the message; its checksum covers what we cannot see.
    if ((load_be16(d + 6) & 0x3fff) != 0) return e;
    icmp = ihl;
  } else if (version == 6) {
    if (size < kIpv6Header) return e;
    end = kIpv6Header + load_be16(d + 4);
    if (end > size) return e;
    uint8_t next = d[6];
    icmp = kIpv6Header;
    if (!walk_ipv6_chain(d, end, &next, &icmp) || next != kProtoIcmpv6) return e;
    e.kind = IcmpKind::Untouched;
  } else {
    return e;
  }
  if (end - icmp < kIcmpHeader) return e;
  const uint8_t* h = d + icmp;
  e.type = h[0];
  e.code = h[1];
  e.icmp_offset = icmp;
  const bool error = e.v4 ? (e.type == 3 || e.type == 11 || e.type == 12) : (e.type >= 1 && e.type <= 4);
  if (!error) return e;

  // The quoted packet: the same family as the message, unfragmented up to its TCP header.
  const uint32_t inner = icmp + kIcmpHeader;
  const uint32_t inner_end = inner + quote_length(h, end - inner, e.v4);
  const uint8_t* q = d + inner;
  const uint32_t avail = inner_end - inner;
  uint32_t tcp = 0;
  if (e.v4) {
    if (avail < kIpv4MinHeader || (q[0] >> 4) != 4) return e;
    const uint32_t ihl = uint32_t{q[0] & 0x0fu} * 4;
    if (ihl < kIpv4MinHeader || ihl > avail || q[9] != kProtoTcp) return e;
    if ((load_be16(q + 6) & 0x1fff) != 0) return e;  // a later fragment: no TCP header
    tcp = inner + ihl;
    e.quoted.src = Address::from_v4(std::span<const uint8_t, 4>(q + 12, 4));
    e.quoted.dst = Address::from_v4(std::span<const uint8_t, 4>(q + 16, 4));
  } else {
    if (avail < kIpv6Header || (q[0] >> 4) != 6) return e;
    if (sg_is_v4_mapped(q + 8) || sg_is_v4_mapped(q + 24)) return e;  // never on a wire; would alias IPv4
    uint8_t next = q[6];
    tcp = inner + kIpv6Header;
    if (!walk_ipv6_chain(d, inner_end, &next, &tcp) || next != kProtoTcp) return e;
    e.quoted.src = Address::from_v6(std::span<const uint8_t, 16>(q + 8, 16));
    e.quoted.dst = Address::from_v6(std::span<const uint8_t, 16>(q + 24, 16));
  }
  if (tcp > inner_end || inner_end - tcp < kQuotedTcpMin) return e;
  e.quoted.sport = load_be16(d + tcp);
  e.quoted.dport = load_be16(d + tcp + 2);
  e.tcp_offset = tcp;
  e.tcp_length = inner_end - tcp;
  e.kind = IcmpKind::TcpError;
  return e;
}

int shift_quote(std::span<uint8_t> packet, const IcmpError& e, const QuoteShift& s) noexcept {
  if (e.kind != IcmpKind::TcpError || e.tcp_length < kQuotedTcpMin ||
      size_t{e.tcp_offset} + e.tcp_length > packet.size() || e.icmp_offset + size_t{kIcmpHeader} > e.tcp_offset) {
    return 0;
  }
  uint8_t* base = packet.data() + e.icmp_offset;
  uint8_t* check = base + 2;
  uint8_t* t = packet.data() + e.tcp_offset;
  const uint32_t len = e.tcp_length;
  int changed = 0;
  auto shift = [&](uint8_t* field, uint32_t by) {
    if (by == 0) return;
    patch32(field, load_be32(field) + by, base, check);
    ++changed;
  };
  shift(t + 4, s.seq);
  // The gateway moved the acknowledgment only of segments that carry one.
  if (len >= 12 && (len < 14 || (t[13] & tcp_flag::ACK))) shift(t + 8, s.ack);
  if (len < 13) return changed;
  // Options, as far as both the data offset and the quote reach. An option cut short or
  // malformed ends the walk: what follows cannot be trusted to be an option.
  const uint32_t end = std::min(static_cast<uint32_t>(t[12] >> 4) * 4, len);
  uint32_t off = 20;
  while (off < end) {
    const uint8_t kind = t[off];
    if (kind == tcp_option::END) break;
    if (kind == tcp_option::NOP) {
      ++off;
      continue;
    }
    if (off + 2 > end) break;
    const uint32_t olen = t[off + 1];
    if (olen < 2 || off + olen > end) break;
    if (kind == tcp_option::TIMESTAMP && olen == 10) {
      shift(t + off + 2, s.tsval);
      shift(t + off + 6, s.tsecr);
    } else if (kind == tcp_option::SACK && olen >= 10 && (olen - 2) % 8 == 0) {
      for (uint32_t edge = off + 2; edge < off + olen; edge += 4) shift(t + edge, s.sack);
    }
    off += olen;
  }
  return changed;
}

}  // namespace syngate
