// Malformed SYNs for checking that a defence does not pass broken segments to the server: each
// kind carries exactly one named defect, and everything else about the frame is valid (IP
// header checksum right, TCP checksum right over whatever TCP bytes the frame holds). Pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "addr.hpp"

namespace syngate::flood {

enum class Malform : uint8_t {
  None,
  OptZeroLength,    // a timestamp option (kind 8) with length 0 among normal SYN options
  OptPastHeader,    // an MSS option whose length runs past the data offset
  OptLengthOne,     // a SACK-permitted option with length 1 (an option is at least 2 bytes)
  IpOptions,        // IPv4 options (NOP, record route): IHL 8 instead of 5
  DataOffsetShort,  // TCP data offset 4 words (< the 5-word minimum)
  DataOffsetLong,   // TCP data offset 15 words (60 bytes) in a 40-byte segment
  TruncatedHeader,  // IP total length leaves 18 bytes of TCP (the fixed header is 20)
  FirstFragment,    // first fragment (MF set, offset 0) carrying 24 of the SYN's 40 TCP bytes
  LaterFragment,    // non-first fragment (offset 24 bytes, MF clear): the SYN's last 16 TCP bytes
  SynFin,           // flags SYN+FIN
  SynRst,           // flags SYN+RST
};

struct MalformInfo {
  Malform kind;
  std::string_view name;
  std::string_view description;
};
// Every kind but None, in the order --help lists them.
std::span<const MalformInfo> malform_kinds() noexcept;
std::optional<Malform> parse_malform(std::string_view name) noexcept;
std::string_view to_string(Malform kind) noexcept;

// The per-packet fields a SYN carries (host order).
struct SynFields {
  uint32_t src_ip = 0;
  uint32_t dst_ip = 0;
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint16_t mss = 1460;
  uint32_t tsval = 0;
  uint16_t ip_id = 0;
};

// The TCP header length of the normal SYN every kind starts from: MSS, SACK-permitted,
// timestamps, NOP, window scale 7, the layout Linux sends (20 option bytes).
inline constexpr size_t kFullSynTcpLen = 40;
// Where a fragment splits the normal SYN (a multiple of 8, as fragment offsets need).
inline constexpr size_t kFragmentSplit = 24;

// Writes one IPv4 packet with `kind`'s defect (None: the normal SYN) into `out` and returns its
// length, or 0 when `out` is too small. For the fragments, the TCP checksum is that of the whole
// normal SYN, whose bytes the two fragment kinds split between them.
size_t build_malformed_syn(std::span<uint8_t> out, Malform kind, const SynFields& f) noexcept;

// The IPv6 form of a kind: the same TCP segment behind an IPv6 header (hop limit 64, no flow
// label); the fragment kinds put a fragment header (identification = ip_id) in front of the
// same split. Returns 0 for ip-options, which has no IPv6 form, and when `out` is too small.
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kIpv6FragmentHeaderLen = 8;
bool malform_has_ipv6_form(Malform kind) noexcept;
size_t build_malformed_syn6(std::span<uint8_t> out, Malform kind, const SynFields& f, const Ip6& src,
                            const Ip6& dst) noexcept;

// The TCP flags a kind forces (0: the flood's own flags apply).
uint8_t malform_flags(Malform kind) noexcept;

// False for the non-first fragment, which holds no TCP header whose fields could be set.
bool malform_has_tcp_header(Malform kind) noexcept;

}  // namespace syngate::flood
