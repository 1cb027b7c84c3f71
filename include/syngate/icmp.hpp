// ICMP errors about TCP segments: what they quote, and how a quote moves between the two sequence
// spaces of a proxied flow. A router on the path answers a segment it cannot forward (path MTU
// discovery's "fragmentation needed" / "packet too big", unreachables, time exceeded) by quoting
// the segment as it saw it; for a proxied flow that is the gateway's side of the translation, which
// the endpoint does not recognise (Linux counts TcpExtOutOfWindowIcmps and ignores it).
//
// Pure code over caller-owned bytes: no allocation, nothing read outside the buffer. A quote may
// stop anywhere after the first 8 bytes of the TCP header (RFC 792); a field is read or written
// only when the quote holds it whole.
#pragma once

#include <cstdint>
#include <span>

#include "syngate/packet.hpp"

namespace syngate {

enum class IcmpKind : uint8_t {
  NotIcmp,    // not an ICMP or ICMPv6 message with sound IP headers
  Untouched,  // ICMP the gateway has no business changing: informational types, errors that do
              // not concern TCP (IPv4 types other than 3, 11, 12; ICMPv6 other than 1-4), quotes
              // that are not TCP, hold less than 8 bytes of its header or a fragment's tail,
              // and ICMP that arrives fragmented itself
  TcpError,   // an error about a TCP segment, quoting at least its ports and sequence number
};

struct IcmpError {
  IcmpKind kind = IcmpKind::NotIcmp;
  bool v4 = false;
  uint8_t type = 0;
  uint8_t code = 0;
  FlowTuple quoted;         // the quoted segment's source -> destination, as it travelled
  uint32_t icmp_offset = 0;  // where the ICMP header starts in the packet
  uint32_t tcp_offset = 0;   // where the quoted TCP header starts in the packet
  uint32_t tcp_length = 0;   // bytes of the quoted TCP header (and beyond) the quote holds, >= 8
};

// Classifies one IP packet; the offsets and tuple are set for IcmpKind::TcpError only.
IcmpError parse_icmp_error(std::span<const uint8_t> packet) noexcept;

// What to add (mod 2^32) to each quoted field. Edges of SACK blocks move by `sack`.
struct QuoteShift {
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint32_t tsval = 0;
  uint32_t tsecr = 0;
  uint32_t sack = 0;
};

// A flow's translation (delta = backend ISN - cookie ISN, tsoff = backend TSval - our TSval) undone
// on a quote. An error addressed to the server quotes a server -> client segment as it left the
// gateway, in the client's view: seq and TSval go back to the backend's. An error addressed to the
// client quotes a client -> server segment as the gateway forwarded it, in the backend's view: ack,
// SACK edges and TSecr go back to the client's.
constexpr QuoteShift quote_shift_to_server(uint32_t delta, uint32_t tsoff) noexcept {
  return {.seq = delta, .tsval = tsoff};
}
constexpr QuoteShift quote_shift_to_client(uint32_t delta, uint32_t tsoff) noexcept {
  return {.ack = 0u - delta, .tsecr = 0u - tsoff, .sack = 0u - delta};
}

// Applies `shift` to the fields the quote of `e` (from parse_icmp_error on the same bytes) holds
// whole, as the gateway applied the opposite to the segment: the acknowledgment only when the
// quoted ACK flag is set (or not quoted), timestamps and SACK blocks only from well-formed options.
// The ICMP checksum follows by incremental update (RFC 1624; the ICMPv6 pseudo-header does not
// change), so a message that arrived corrupt stays corrupt. The quoted TCP checksum is left as it
// is: the quote is usually cut short, and no stack checks it. Returns how many fields changed.
int shift_quote(std::span<uint8_t> packet, const IcmpError& e, const QuoteShift& shift) noexcept;

}  // namespace syngate
