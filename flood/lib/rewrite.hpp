// Replay of captured traffic: find the IP packet inside a captured frame, rewrite its
// destination (and optionally its source) and fix the checksums; schedule sends from capture
// timestamps. Pure: libpcap and the sockets stay in the program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "addr.hpp"

namespace syngate::flood {

// The link types we unwrap (values are pcap's DLT_* / LINKTYPE_* numbers).
enum class LinkType : uint8_t { Ethernet, Raw, LinuxSll, LinuxSll2, Null };
std::optional<LinkType> link_type_from_dlt(int dlt) noexcept;

enum class SkipReason : uint8_t {
  None = 0,
  NotIp,       // ARP, LLDP, unknown ethertype
  OtherFamily,  // an IPv6 packet for an IPv4 target, or the other way round
  NotTcp,      // UDP, ICMP, ...
  Fragment,    // a fragment has no whole TCP header to rewrite
  Truncated,   // snaplen cut the packet: we cannot fix a checksum over bytes we do not have
  Malformed,   // headers that do not add up
  RealSource,  // captured source outside the allowed range, kept as is: it would be spoofed
  Ipv6ExtensionHeaders,  // IPv6 with extension headers before TCP: not rewritten
};
inline constexpr size_t kSkipReasonCount = 9;
std::string_view to_string(SkipReason r) noexcept;

// Locates the IP packet in a captured frame: offset and length (length from the link layer's
// view; the IP header's own length is checked later).
struct L3Location {
  SkipReason skip = SkipReason::None;
  size_t offset = 0;
  size_t length = 0;
  uint8_t version = 4;  // 4 or 6
};
L3Location locate_ip(std::span<const uint8_t> frame, LinkType link) noexcept;

struct RewriteConfig {
  uint32_t dst_ip = 0;  // host order
  uint16_t dst_port = 0;
  std::optional<Cidr> spoof;  // when set, sources are mapped into this range
  // Without a spoof range the captured sources are kept; when this is set, packets whose source
  // lies outside it are skipped (RealSource) instead of sent from someone else's address.
  std::optional<Cidr> allowed_sources;
};

// Rewrites one IPv4 TCP packet in place (the bytes of the IP packet, possibly followed by link
// padding): destination address and port become the target; with a spoof range, the source
// address is mapped deterministically into the range (the same original source always maps to
// the same spoofed one, so a captured flow stays one flow). Both checksums are recomputed from
// scratch because captures often hold packets whose checksum the NIC was to fill in.
// Returns the IP packet's length in `ip_len` on success.
SkipReason rewrite_ipv4_tcp(std::span<uint8_t> ip, const RewriteConfig& config, size_t& ip_len) noexcept;

struct RewriteConfig6 {
  Ip6 dst_ip{};
  uint16_t dst_port = 0;
  std::optional<Cidr6> spoof;            // when set, sources are mapped into this range
  std::optional<Cidr6> allowed_sources;  // as for IPv4: kept sources outside it are skipped
};

// The IPv6 counterpart of rewrite_ipv4_tcp: TCP directly after the fixed header (packets with
// extension headers are skipped), TCP checksum recomputed over the IPv6 pseudo-header.
SkipReason rewrite_ipv6_tcp(std::span<uint8_t> ip, const RewriteConfig6& config, size_t& ip_len) noexcept;

// Where an IPv6 source lands in the range: a hash of the whole address in the range's low
// min(128 - prefix, 64) bits, never the all-zero host part.
Ip6 map_into_range6(const Ip6& original, const Cidr6& range) noexcept;

// Where a source address lands in the spoof range (skipping network/broadcast like
// AddressIterator does for ranges of four or more).
uint32_t map_into_range(uint32_t original, const Cidr& range) noexcept;

// When to send a captured packet, relative to the start of the replay: (ts - first_ts) / speed.
// Timestamps going backwards in the capture are held at the previous send time (`floor_ns`), so
// the schedule never runs backwards.
uint64_t replay_offset_ns(uint64_t first_ts_ns, uint64_t ts_ns, double speed, uint64_t floor_ns) noexcept;

}  // namespace syngate::flood
