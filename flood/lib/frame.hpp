// Flood frames: one Ethernet + IPv4 + TCP template built once with the core builder, then
// patched per packet (source address and port, sequence, ack, flags) with RFC 1624 incremental
// checksum updates, so the hot loop never sums a whole header. Pure.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "addr.hpp"
#include "malform.hpp"

namespace syngate::flood {

using Mac = std::array<uint8_t, 6>;
std::optional<Mac> parse_mac(std::string_view text) noexcept;
std::string format_mac(const Mac& mac);

enum class FloodKind : uint8_t { Syn, Ack, Rst, Fin, Mixed };
std::optional<FloodKind> parse_flood_kind(std::string_view name) noexcept;
std::string_view to_string(FloodKind k) noexcept;

// TCP flags of the n-th packet of a flood. Mixed cycles through an 8-packet pattern: half SYN
// (the expensive case for a server), then ACK, ACK, RST, FIN+ACK: what a botnet mixes in to
// defeat a filter that only looks at SYNs.
uint8_t flood_flags(FloodKind kind, uint64_t n) noexcept;

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kMaxFrameLen = 128;

struct FrameSpec {
  Mac src_mac{};
  Mac dst_mac{};
  uint32_t dst_ip = 0;  // host order
  uint16_t dst_port = 0;
  uint16_t mss = 1460;  // the only option a flood SYN carries: small frames go faster
  // A malformed SYN instead (see malform.hpp): the defect is built into the template and
  // survives render(), which still varies source, port, sequence and ack.
  Malform malform = Malform::None;
  // An IPv6 target instead of dst_ip: the template is Ethernet + IPv6 + TCP, and frames are
  // written with render6().
  std::optional<Ip6> dst_ip6;
};

class FrameTemplate {
 public:
  // Builds the template; returns nullopt when the core builder refuses (never for sane specs).
  static std::optional<FrameTemplate> make(const FrameSpec& spec);

  size_t length() const noexcept { return len_; }
  std::span<const uint8_t> bytes() const noexcept { return {buf_.data(), len_}; }

  // Writes one frame into `out` (at least length() bytes): the template with these fields
  // replaced and both checksums updated incrementally from the template's own. A malform kind
  // that forces flags (syn-fin, syn-rst) ignores `flags`; a non-first fragment has no TCP
  // header, so only its source address changes.
  void render(uint8_t* out, uint32_t src_ip, uint16_t sport, uint32_t seq, uint32_t ack,
              uint8_t flags) const noexcept;
  // The same for an IPv6 template (no IP header checksum; the TCP pseudo-header has the source).
  void render6(uint8_t* out, const Ip6& src_ip, uint16_t sport, uint32_t seq, uint32_t ack,
               uint8_t flags) const noexcept;
  bool is_v6() const noexcept { return v6_; }

 private:
  void render_tcp(uint8_t* out, uint16_t check, uint16_t sport, uint32_t seq, uint32_t ack,
                  uint8_t flags) const noexcept;
  std::array<uint8_t, kMaxFrameLen> buf_{};
  bool v6_ = false;
  Ip6 src_ip6_{};
  size_t len_ = 0;
  size_t tcp_ = 0;  // offset of the TCP header in the frame
  uint16_t ip_check_ = 0;
  uint16_t tcp_check_ = 0;
  uint32_t src_ip_ = 0;
  uint16_t sport_ = 0;
  uint32_t seq_ = 0;
  uint32_t ack_ = 0;
  uint16_t off_flags_ = 0;  // data offset nibble + flags, the 16-bit word the checksum sees
  uint8_t forced_flags_ = 0;
  bool has_tcp_header_ = true;
};

}  // namespace syngate::flood
