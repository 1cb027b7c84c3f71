#include "malform.hpp"

#include <array>
#include <cstring>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

namespace syngate::flood {

namespace {

constexpr std::array<MalformInfo, 11> kKinds{{
    {Malform::OptZeroLength, "opt-zero-len", "timestamp option (kind 8) with length 0 among normal SYN options"},
    {Malform::OptPastHeader, "opt-past-header", "MSS option of length 12 starting 4 bytes before the data offset"},
    {Malform::OptLengthOne, "opt-len-one", "SACK-permitted option with length 1"},
    {Malform::IpOptions, "ip-options", "IPv4 options NOP + record route (IHL 8)"},
    {Malform::DataOffsetShort, "doff-short", "TCP data offset 4 words (minimum is 5)"},
    {Malform::DataOffsetLong, "doff-long", "TCP data offset 15 words (60 bytes) in a 40-byte segment"},
    {Malform::TruncatedHeader, "tcp-truncated", "IP total length leaves 18 bytes of TCP header (of 20)"},
    {Malform::FirstFragment, "frag-first", "first fragment (MF, offset 0) with 24 of the SYN's 40 TCP bytes"},
    {Malform::LaterFragment, "frag-later", "non-first fragment (offset 24, no MF) with the SYN's last 16 TCP bytes"},
    {Malform::SynFin, "syn-fin", "flags SYN+FIN"},
    {Malform::SynRst, "syn-rst", "flags SYN+RST"},
}};

constexpr size_t kIpHeader = 20;
constexpr size_t kIpOptionsLen = 12;  // NOP + record route with two empty slots
constexpr uint16_t kWindow = 64240;
constexpr uint16_t kDontFragment = 0x4000;
constexpr uint16_t kMoreFragments = 0x2000;

// The normal SYN's options (20 bytes), Linux's order: MSS, SACK-permitted, timestamps, NOP,
// window scale. Offsets below are from the start of the options.
constexpr size_t kOptSackPermLen = 4 + 1;  // SACK-permitted's length byte
constexpr size_t kOptTsLen = 6 + 1;        // timestamp's length byte
void write_normal_options(uint8_t* o, const SynFields& f) noexcept {
  o[0] = tcp_option::MSS;
  o[1] = 4;
  store_be16(o + 2, f.mss);
  o[4] = tcp_option::SACK_PERMITTED;
  o[5] = 2;
  o[6] = tcp_option::TIMESTAMP;
  o[7] = 10;
  store_be32(o + 8, f.tsval);
  store_be32(o + 12, 0);
  o[16] = tcp_option::NOP;
  o[17] = tcp_option::WSCALE;
  o[18] = 3;
  o[19] = 7;
}

// The same options reordered so that MSS comes last and claims 12 bytes where 4 remain.
void write_options_mss_past_header(uint8_t* o, const SynFields& f) noexcept {
  o[0] = tcp_option::NOP;
  o[1] = tcp_option::WSCALE;
  o[2] = 3;
  o[3] = 7;
  o[4] = tcp_option::SACK_PERMITTED;
  o[5] = 2;
  o[6] = tcp_option::TIMESTAMP;
  o[7] = 10;
  store_be32(o + 8, f.tsval);
  store_be32(o + 12, 0);
  o[16] = tcp_option::MSS;
  o[17] = 12;
  store_be16(o + 18, f.mss);
}

}  // namespace

std::span<const MalformInfo> malform_kinds() noexcept { return kKinds; }

std::optional<Malform> parse_malform(std::string_view name) noexcept {
  if (name == "none") return Malform::None;
  for (const auto& k : kKinds)
    if (k.name == name) return k.kind;
  return std::nullopt;
}

std::string_view to_string(Malform kind) noexcept {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "none";
}

uint8_t malform_flags(Malform kind) noexcept {
  switch (kind) {
    case Malform::SynFin: return tcp_flag::SYN | tcp_flag::FIN;
    case Malform::SynRst: return tcp_flag::SYN | tcp_flag::RST;
    default: return 0;
  }
}

bool malform_has_tcp_header(Malform kind) noexcept { return kind != Malform::LaterFragment; }

namespace {

// The TCP segment of a kind, its checksum field zero, and which part of it the frame carries.
struct Segment {
  std::array<uint8_t, kFullSynTcpLen> bytes{};
  size_t len = kFullSynTcpLen;
  size_t from = 0, to = kFullSynTcpLen;
};

Segment build_segment(Malform kind, const SynFields& f) noexcept {
  Segment s;
  uint8_t* seg = s.bytes.data();
  uint8_t doff_words = kFullSynTcpLen / 4;
  store_be16(seg, f.sport);
  store_be16(seg + 2, f.dport);
  store_be32(seg + 4, f.seq);
  store_be16(seg + 14, kWindow);
  uint8_t* opts = seg + 20;
  if (kind == Malform::OptPastHeader)
    write_options_mss_past_header(opts, f);
  else
    write_normal_options(opts, f);
  switch (kind) {
    case Malform::OptZeroLength: opts[kOptTsLen] = 0; break;
    case Malform::OptLengthOne: opts[kOptSackPermLen] = 1; break;
    case Malform::DataOffsetShort: doff_words = 4; break;
    case Malform::DataOffsetLong: doff_words = 15; break;
    case Malform::TruncatedHeader:
      doff_words = 5;  // an option-less header, cut before its urgent pointer
      s.len = s.to = 18;
      break;
    case Malform::FirstFragment: s.to = kFragmentSplit; break;
    case Malform::LaterFragment: s.from = kFragmentSplit; break;
    default: break;
  }
  seg[12] = static_cast<uint8_t>(doff_words << 4);
  const uint8_t forced = malform_flags(kind);
  seg[13] = forced ? forced : tcp_flag::SYN;
  return s;
}

}  // namespace

size_t build_malformed_syn(std::span<uint8_t> out, Malform kind, const SynFields& f) noexcept {
  Segment s = build_segment(kind, f);
  uint8_t src[4], dst[4];
  store_be32(src, f.src_ip);
  store_be32(dst, f.dst_ip);
  store_be16(s.bytes.data() + 16,
             tcp_checksum_v4(std::span<const uint8_t, 4>(src, 4), std::span<const uint8_t, 4>(dst, 4),
                             std::span<const uint8_t>(s.bytes.data(), s.len)));
  uint16_t frag = kDontFragment;
  if (kind == Malform::FirstFragment) frag = kMoreFragments;
  if (kind == Malform::LaterFragment) frag = static_cast<uint16_t>(kFragmentSplit / 8);
  const size_t ihl = kIpHeader + (kind == Malform::IpOptions ? kIpOptionsLen : 0);
  const size_t total = ihl + (s.to - s.from);
  if (out.size() < total) return 0;
  uint8_t* ip = out.data();
  std::memset(ip, 0, ihl);
  ip[0] = static_cast<uint8_t>(0x40 | ihl / 4);
  store_be16(ip + 2, static_cast<uint16_t>(total));
  store_be16(ip + 4, f.ip_id);
  store_be16(ip + 6, frag);
  ip[8] = 64;
  ip[9] = 6;  // TCP
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  if (kind == Malform::IpOptions) {
    uint8_t* o = ip + kIpHeader;
    o[0] = 1;   // NOP
    o[1] = 7;   // record route
    o[2] = 11;  // its length: type, length, pointer, two 4-byte slots
    o[3] = 4;   // pointer to the first free slot
  }
  store_be16(ip + 10, ipv4_header_checksum(std::span<const uint8_t>(ip, ihl)));
  std::memcpy(ip + ihl, s.bytes.data() + s.from, s.to - s.from);
  return total;
}

bool malform_has_ipv6_form(Malform kind) noexcept { return kind != Malform::IpOptions; }

size_t build_malformed_syn6(std::span<uint8_t> out, Malform kind, const SynFields& f, const Ip6& src,
                            const Ip6& dst) noexcept {
  if (!malform_has_ipv6_form(kind)) return 0;
  Segment s = build_segment(kind, f);
  store_be16(s.bytes.data() + 16,
             tcp_checksum_v6(std::span<const uint8_t, 16>(src), std::span<const uint8_t, 16>(dst),
                             std::span<const uint8_t>(s.bytes.data(), s.len)));
  const bool fragment = kind == Malform::FirstFragment || kind == Malform::LaterFragment;
  const size_t ext = fragment ? kIpv6FragmentHeaderLen : 0;
  const size_t total = kIpv6HeaderLen + ext + (s.to - s.from);
  if (out.size() < total) return 0;
  uint8_t* ip = out.data();
  std::memset(ip, 0, kIpv6HeaderLen + ext);
  ip[0] = 0x60;
  store_be16(ip + 4, static_cast<uint16_t>(total - kIpv6HeaderLen));
  ip[6] = fragment ? 44 : 6;
  ip[7] = 64;
  std::memcpy(ip + 8, src.data(), 16);
  std::memcpy(ip + 24, dst.data(), 16);
  if (fragment) {
    uint8_t* fh = ip + kIpv6HeaderLen;
    fh[0] = 6;  // next header: TCP
    const uint16_t offset_words = static_cast<uint16_t>(s.from / 8);
    store_be16(fh + 2, static_cast<uint16_t>(offset_words << 3 | (kind == Malform::FirstFragment ? 1 : 0)));
    store_be32(fh + 4, f.ip_id);
  }
  std::memcpy(ip + kIpv6HeaderLen + ext, s.bytes.data() + s.from, s.to - s.from);
  return total;
}

}  // namespace syngate::flood
