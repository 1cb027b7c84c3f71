#include "rewrite.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

namespace syngate::flood {

namespace {

constexpr uint16_t kEthIp = 0x0800;
constexpr uint16_t kEthIp6 = 0x86DD;
constexpr uint16_t kEthVlan = 0x8100;
constexpr uint16_t kEthQinQ = 0x88A8;

L3Location by_ethertype(uint16_t type, size_t offset, size_t total) noexcept {
  if (offset > total) return {SkipReason::Truncated, 0, 0};
  if (type == kEthIp) return {SkipReason::None, offset, total - offset};
  if (type == kEthIp6) return {SkipReason::None, offset, total - offset, 6};
  return {SkipReason::NotIp, 0, 0};
}
}  // namespace

std::optional<LinkType> link_type_from_dlt(int dlt) noexcept {
  switch (dlt) {
    case 0: return LinkType::Null;        // DLT_NULL (BSD loopback)
    case 1: return LinkType::Ethernet;    // DLT_EN10MB
    case 12:                              // DLT_RAW on most platforms
    case 14:                              // DLT_RAW on OpenBSD
    case 101: return LinkType::Raw;       // LINKTYPE_RAW
    case 113: return LinkType::LinuxSll;  // DLT_LINUX_SLL ("any" device)
    case 276: return LinkType::LinuxSll2;
    default: return std::nullopt;
  }
}

std::string_view to_string(SkipReason r) noexcept {
  switch (r) {
    case SkipReason::None: return "none";
    case SkipReason::NotIp: return "not_ip";
    case SkipReason::OtherFamily: return "other_family";
    case SkipReason::NotTcp: return "not_tcp";
    case SkipReason::Fragment: return "fragment";
    case SkipReason::Truncated: return "truncated";
    case SkipReason::Malformed: return "malformed";
    case SkipReason::RealSource: return "source_outside_range";
    case SkipReason::Ipv6ExtensionHeaders: return "ipv6_extension_headers";
  }
  return "?";
}

L3Location locate_ip(std::span<const uint8_t> f, LinkType link) noexcept {
  const size_t n = f.size();
  switch (link) {
    case LinkType::Raw: {
      if (n < 1) return {SkipReason::Truncated, 0, 0};
      const uint8_t v = f[0] >> 4;
      if (v == 4) return {SkipReason::None, 0, n};
      if (v == 6) return {SkipReason::None, 0, n, 6};
      return {SkipReason::NotIp, 0, 0};
    }
    case LinkType::Null: {
      if (n < 4) return {SkipReason::Truncated, 0, 0};
      // Address family in the capturing host's byte order: AF_INET is 2 either way round.
      const uint32_t le = uint32_t{f[0]} | uint32_t{f[1]} << 8 | uint32_t{f[2]} << 16 | uint32_t{f[3]} << 24;
      const uint32_t be = load_be32(f.data());
      if (le == 2 || be == 2) return {SkipReason::None, 4, n - 4};
      // AF_INET6 differs between the systems that write DLT_NULL captures.
      if (le == 10 || le == 24 || le == 28 || le == 30 || be == 24 || be == 28 || be == 30)
        return {SkipReason::None, 4, n - 4, 6};
      return {SkipReason::NotIp, 0, 0};
    }
    case LinkType::Ethernet: {
      if (n < 14) return {SkipReason::Truncated, 0, 0};
      size_t off = 12;
      uint16_t type = load_be16(f.data() + off);
      // Up to two VLAN tags (802.1Q, QinQ).
      for (int tags = 0; tags < 2 && (type == kEthVlan || type == kEthQinQ); ++tags) {
        off += 4;
        if (off + 2 > n) return {SkipReason::Truncated, 0, 0};
        type = load_be16(f.data() + off);
      }
      return by_ethertype(type, off + 2, n);
    }
    case LinkType::LinuxSll: {
      if (n < 16) return {SkipReason::Truncated, 0, 0};
      return by_ethertype(load_be16(f.data() + 14), 16, n);
    }
    case LinkType::LinuxSll2: {
      if (n < 20) return {SkipReason::Truncated, 0, 0};
      return by_ethertype(load_be16(f.data()), 20, n);
    }
  }
  return {SkipReason::NotIp, 0, 0};
}

uint32_t map_into_range(uint32_t original, const Cidr& range) noexcept {
  // A 32-bit mix (the murmur3 finaliser) so that neighbouring originals spread over the range.
  uint32_t h = original;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  const uint64_t size = range.size();
  if (size >= 4) return range.base + 1 + static_cast<uint32_t>(h % (size - 2));
  return range.base + static_cast<uint32_t>(h % size);
}

SkipReason rewrite_ipv4_tcp(std::span<uint8_t> buf, const RewriteConfig& cfg, size_t& ip_len) noexcept {
  if (buf.size() < 20) return SkipReason::Truncated;
  uint8_t* ip = buf.data();
  if ((ip[0] >> 4) == 6) return SkipReason::OtherFamily;
  if ((ip[0] >> 4) != 4) return SkipReason::NotIp;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  const size_t total = load_be16(ip + 2);
  if (ihl < 20 || total < ihl) return SkipReason::Malformed;
  if (ihl > buf.size() || total > buf.size()) return SkipReason::Truncated;
  if (ip[9] != 6) return SkipReason::NotTcp;
  const uint16_t frag = load_be16(ip + 6);
  if ((frag & 0x3fff) != 0) return SkipReason::Fragment;  // MF set or a non-zero offset
  if (total < ihl + 20) return SkipReason::Malformed;
  uint8_t* tcp = ip + ihl;
  const size_t doff = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (doff < 20 || ihl + doff > total) return SkipReason::Malformed;

  if (!cfg.spoof && cfg.allowed_sources && !cfg.allowed_sources->contains(load_be32(ip + 12)))
    return SkipReason::RealSource;
  store_be32(ip + 16, cfg.dst_ip);
  if (cfg.spoof) store_be32(ip + 12, map_into_range(load_be32(ip + 12), *cfg.spoof));
  store_be16(tcp + 2, cfg.dst_port);

  store_be16(ip + 10, 0);
  store_be16(ip + 10, ipv4_header_checksum(std::span<const uint8_t>(ip, ihl)));
  store_be16(tcp + 16, 0);
  const std::span<const uint8_t, 4> src(ip + 12, 4);
  const std::span<const uint8_t, 4> dst(ip + 16, 4);
  store_be16(tcp + 16, tcp_checksum_v4(src, dst, std::span<const uint8_t>(tcp, total - ihl)));
  ip_len = total;
  return SkipReason::None;
}

uint64_t replay_offset_ns(uint64_t first_ts_ns, uint64_t ts_ns, double speed, uint64_t floor_ns) noexcept {
  if (ts_ns <= first_ts_ns || !(speed > 0)) return floor_ns;
  const double scaled = static_cast<double>(ts_ns - first_ts_ns) / speed;
  // Past ~584 years the double no longer fits; clamp rather than overflow.
  const uint64_t offset = scaled >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(scaled + 0.5);
  return offset < floor_ns ? floor_ns : offset;
}

Ip6 map_into_range6(const Ip6& original, const Cidr6& range) noexcept {
  // FNV-1a over the address, then a 64-bit mix (splitmix64's finaliser).
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const uint8_t b : original) h = (h ^ b) * 0x100000001b3ULL;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  const int bits = std::min(128 - static_cast<int>(range.prefix), 64);
  Ip6 out = range.base;
  if (bits == 0) return out;
  const uint64_t mask = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
  uint64_t host = h & mask;
  if (host == 0) host = 1;
  for (int i = 0; i < 8; ++i) out[15 - i] = static_cast<uint8_t>(out[15 - i] | ((host >> (8 * i)) & 0xff));
  return out;
}

SkipReason rewrite_ipv6_tcp(std::span<uint8_t> buf, const RewriteConfig6& cfg, size_t& ip_len) noexcept {
  constexpr size_t kFixed = 40;
  if (buf.size() < kFixed) return SkipReason::Truncated;
  uint8_t* ip = buf.data();
  if ((ip[0] >> 4) == 4) return SkipReason::OtherFamily;
  if ((ip[0] >> 4) != 6) return SkipReason::NotIp;
  const size_t total = kFixed + load_be16(ip + 4);
  if (total > buf.size()) return SkipReason::Truncated;
  const uint8_t next = ip[6];
  if (next == 44) return SkipReason::Fragment;
  if (next == 0 || next == 43 || next == 60 || next == 51) return SkipReason::Ipv6ExtensionHeaders;
  if (next != 6) return SkipReason::NotTcp;
  if (total < kFixed + 20) return SkipReason::Malformed;
  uint8_t* tcp = ip + kFixed;
  const size_t doff = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (doff < 20 || kFixed + doff > total) return SkipReason::Malformed;
  Ip6 src{};
  std::memcpy(src.data(), ip + 8, 16);
  if (!cfg.spoof && cfg.allowed_sources && !cfg.allowed_sources->contains(src)) return SkipReason::RealSource;
  std::memcpy(ip + 24, cfg.dst_ip.data(), 16);
  if (cfg.spoof) {
    const Ip6 mapped = map_into_range6(src, *cfg.spoof);
    std::memcpy(ip + 8, mapped.data(), 16);
  }
  store_be16(tcp + 2, cfg.dst_port);
  store_be16(tcp + 16, 0);
  store_be16(tcp + 16, tcp_checksum_v6(std::span<const uint8_t, 16>(ip + 8, 16), std::span<const uint8_t, 16>(ip + 24, 16),
                                       std::span<const uint8_t>(tcp, total - kFixed)));
  ip_len = total;
  return SkipReason::None;
}

}  // namespace syngate::flood
