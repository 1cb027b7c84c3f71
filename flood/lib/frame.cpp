#include "frame.hpp"

#include <cstdio>
#include <cstring>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

namespace syngate::flood {

namespace {

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<Mac> parse_mac(std::string_view text) noexcept {
  if (text.size() != 17) return std::nullopt;
  Mac mac{};
  for (size_t i = 0; i < 6; ++i) {
    const int hi = hex_digit(text[i * 3]);
    const int lo = hex_digit(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != ':' && text[i * 3 + 2] != '-') return std::nullopt;
    mac[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return mac;
}

std::string format_mac(const Mac& m) {
  char out[18];
  std::snprintf(out, sizeof out, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return out;
}

std::optional<FloodKind> parse_flood_kind(std::string_view name) noexcept {
  if (name == "syn") return FloodKind::Syn;
  if (name == "ack") return FloodKind::Ack;
  if (name == "rst") return FloodKind::Rst;
  if (name == "fin") return FloodKind::Fin;
  if (name == "mixed") return FloodKind::Mixed;
  return std::nullopt;
}

std::string_view to_string(FloodKind k) noexcept {
  switch (k) {
    case FloodKind::Syn: return "syn";
    case FloodKind::Ack: return "ack";
    case FloodKind::Rst: return "rst";
    case FloodKind::Fin: return "fin";
    case FloodKind::Mixed: return "mixed";
  }
  return "?";
}

uint8_t flood_flags(FloodKind kind, uint64_t n) noexcept {
  using namespace tcp_flag;
  switch (kind) {
    case FloodKind::Syn: return SYN;
    case FloodKind::Ack: return ACK;
    case FloodKind::Rst: return RST;
    case FloodKind::Fin: return FIN | ACK;
    case FloodKind::Mixed: {
      static constexpr uint8_t pattern[8] = {SYN, SYN, SYN, SYN, ACK, ACK, RST, FIN | ACK};
      return pattern[n % 8];
    }
  }
  return SYN;
}

std::optional<FrameTemplate> FrameTemplate::make(const FrameSpec& spec) {
  FrameTemplate t;
  // Placeholder source; render() replaces it. Any address works since checksums are updated.
  t.v6_ = spec.dst_ip6.has_value();
  Ip6 src6 = kBenchmarkRange6.base;
  src6[15] = 1;
  const FlowTuple tuple = t.v6_ ? FlowTuple{Address::from_v6(src6), Address::from_v6(*spec.dst_ip6), 1024, spec.dst_port}
                                : FlowTuple{Address::from_v4(kBenchmarkRange.base + 1), Address::from_v4(spec.dst_ip),
                                            1024, spec.dst_port};
  const std::span<uint8_t> ip_out(t.buf_.data() + kEthHeaderLen, kMaxFrameLen - kEthHeaderLen);
  size_t ip_len = 0;
  if (spec.malform == Malform::None) {
    TcpOptions opts{};
    opts.has_mss = true;
    opts.mss = spec.mss;
    ip_len = build_syn(ip_out, tuple, 0, 64240, opts);
    if (ip_len < (t.v6_ ? 60u : 40u)) return std::nullopt;
  } else {
    SynFields f;
    f.src_ip = kBenchmarkRange.base + 1;
    f.dst_ip = spec.dst_ip;
    f.sport = 1024;
    f.dport = spec.dst_port;
    f.mss = spec.mss;
    f.tsval = 1;
    ip_len = t.v6_ ? build_malformed_syn6(ip_out, spec.malform, f, src6, *spec.dst_ip6)
                   : build_malformed_syn(ip_out, spec.malform, f);
    if (ip_len == 0) return std::nullopt;
    t.forced_flags_ = malform_flags(spec.malform);
    t.has_tcp_header_ = malform_has_tcp_header(spec.malform);
  }
  std::memcpy(t.buf_.data(), spec.dst_mac.data(), 6);
  std::memcpy(t.buf_.data() + 6, spec.src_mac.data(), 6);
  t.buf_[12] = t.v6_ ? 0x86 : 0x08;  // ETH_P_IPV6 : ETH_P_IP
  t.buf_[13] = t.v6_ ? 0xDD : 0x00;
  t.len_ = kEthHeaderLen + ip_len;
  const uint8_t* ip = t.buf_.data() + kEthHeaderLen;
  if (t.v6_) {
    // Extension headers: only the fragment header of the fragment kinds.
    t.tcp_ = kEthHeaderLen + kIpv6HeaderLen + (ip[6] == 44 ? kIpv6FragmentHeaderLen : 0);
    std::memcpy(t.src_ip6_.data(), ip + 8, 16);
  } else {
    t.tcp_ = kEthHeaderLen + static_cast<size_t>(ip[0] & 0x0f) * 4;
    t.ip_check_ = load_be16(ip + 10);
    t.src_ip_ = load_be32(ip + 12);
  }
  const uint8_t* tcp = t.buf_.data() + t.tcp_;
  t.sport_ = load_be16(tcp);
  t.seq_ = load_be32(tcp + 4);
  t.ack_ = load_be32(tcp + 8);
  t.off_flags_ = load_be16(tcp + 12);
  t.tcp_check_ = load_be16(tcp + 16);
  return t;
}

void FrameTemplate::render(uint8_t* out, uint32_t src_ip, uint16_t sport, uint32_t seq, uint32_t ack,
                           uint8_t flags) const noexcept {
  std::memcpy(out, buf_.data(), len_);
  uint8_t* ip = out + kEthHeaderLen;
  store_be32(ip + 12, src_ip);
  store_be16(ip + 10, csum_replace32(ip_check_, src_ip_, src_ip));
  if (!has_tcp_header_) return;
  // The pseudo-header carries the source address.
  render_tcp(out, csum_replace32(tcp_check_, src_ip_, src_ip), sport, seq, ack, flags);
}

void FrameTemplate::render6(uint8_t* out, const Ip6& src_ip, uint16_t sport, uint32_t seq, uint32_t ack,
                            uint8_t flags) const noexcept {
  std::memcpy(out, buf_.data(), len_);
  std::memcpy(out + kEthHeaderLen + 8, src_ip.data(), 16);
  if (!has_tcp_header_) return;
  uint16_t check = tcp_check_;
  for (size_t i = 0; i < 16; i += 4)
    check = csum_replace32(check, load_be32(src_ip6_.data() + i), load_be32(src_ip.data() + i));
  render_tcp(out, check, sport, seq, ack, flags);
}

void FrameTemplate::render_tcp(uint8_t* out, uint16_t check, uint16_t sport, uint32_t seq, uint32_t ack,
                               uint8_t flags) const noexcept {
  uint8_t* tcp = out + tcp_;
  if (forced_flags_) flags = forced_flags_;
  const uint16_t off_flags = static_cast<uint16_t>((off_flags_ & 0xff00) | flags);
  check = csum_replace16(check, sport_, sport);
  check = csum_replace32(check, seq_, seq);
  check = csum_replace32(check, ack_, ack);
  check = csum_replace16(check, off_flags_, off_flags);
  store_be16(tcp, sport);
  store_be32(tcp + 4, seq);
  store_be32(tcp + 8, ack);
  store_be16(tcp + 12, off_flags);
  store_be16(tcp + 16, check);
}

}  // namespace syngate::flood
