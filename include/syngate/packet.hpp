// Zero-copy views over IPv4/IPv6 TCP packets, TCP option parsing, and packet builders.
// Pure code: no syscalls, no allocation. Every malformed input yields a ParseError; nothing reads
// outside the buffer it was given.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "syngate/spec/backend_syn_spec.h"
#include "syngate/spec/xlate_spec.h"

namespace syngate {

// ---------------------------------------------------------------------------------------------
// Addresses and tuples

// An IPv4 or IPv6 address in 16 bytes; IPv4 is stored v4-mapped (::ffff:a.b.c.d) so that both
// families hash and compare the same way.
struct Address {
  std::array<uint8_t, 16> bytes{};

  // Inline, and written as the two words the flow table's hash and the comparison below read:
  // every packet's tuple is built with it (twice in a batch: Engine::prefetch, then the lookup),
  // and a word read back from byte-wide stores waits for them to reach the cache (the store
  // buffer forwards only a load that one store covers).
  static Address from_v4(std::span<const uint8_t, 4> v4) noexcept {
    static constexpr uint8_t mapped[4] = {0, 0, 0xff, 0xff};  // ::ffff:a.b.c.d, bytes 8-11
    uint8_t high[8];
    std::memcpy(high, mapped, 4);
    std::memcpy(high + 4, v4.data(), 4);
    uint64_t words[2] = {0, 0};
    std::memcpy(&words[1], high, 8);
    Address a;
    std::memcpy(a.bytes.data(), words, 16);
    return a;
  }
  static Address from_v4(uint32_t host_order) noexcept;
  static Address from_v6(std::span<const uint8_t, 16> v6) noexcept;
  // Accepts dotted quad or RFC 4291 text; nullopt on anything else.
  static std::optional<Address> parse(std::string_view text) noexcept;

  // The ::ffff:0:0/96 prefix, as two word compares, inlined: a memcmp call here ran on every
  // address the engine and the builders touch.
  bool is_v4() const noexcept {
    static constexpr uint8_t kMappedMid[4] = {0, 0, 0xff, 0xff};
    uint64_t head = 0;
    uint32_t mid = 0, want = 0;
    std::memcpy(&head, bytes.data(), 8);
    std::memcpy(&mid, bytes.data() + 8, 4);
    std::memcpy(&want, kMappedMid, 4);
    return head == 0 && mid == want;
  }
  std::span<const uint8_t, 4> v4_bytes() const noexcept {
    return std::span<const uint8_t, 4>(bytes.data() + 12, 4);
  }
  std::span<const uint8_t, 16> v6_bytes() const noexcept { return std::span<const uint8_t, 16>(bytes); }
  uint32_t v4_host_order() const noexcept;
  std::string to_string() const;

  // Two 64-bit compares, inlined: the defaulted comparison became a memcmp call, about a tenth of
  // an established segment's time in the engine (service and flow-table lookups).
  friend bool operator==(const Address& a, const Address& b) noexcept {
    uint64_t x[2], y[2];
    std::memcpy(x, a.bytes.data(), 16);
    std::memcpy(y, b.bytes.data(), 16);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
  }
};

// A TCP 4-tuple as seen in one packet (src -> dst).
struct FlowTuple {
  Address src;
  Address dst;
  uint16_t sport = 0;
  uint16_t dport = 0;

  FlowTuple reversed() const noexcept { return {dst, src, dport, sport}; }
  friend bool operator==(const FlowTuple&, const FlowTuple&) = default;
};

// ---------------------------------------------------------------------------------------------
// TCP

namespace tcp_flag {
inline constexpr uint8_t FIN = 0x01;
inline constexpr uint8_t SYN = 0x02;
inline constexpr uint8_t RST = 0x04;
inline constexpr uint8_t PSH = 0x08;
inline constexpr uint8_t ACK = 0x10;
inline constexpr uint8_t URG = 0x20;
inline constexpr uint8_t ECE = 0x40;
inline constexpr uint8_t CWR = 0x80;
}  // namespace tcp_flag

namespace tcp_option {
inline constexpr uint8_t END = 0;
inline constexpr uint8_t NOP = 1;
inline constexpr uint8_t MSS = 2;
inline constexpr uint8_t WSCALE = 3;
inline constexpr uint8_t SACK_PERMITTED = 4;
inline constexpr uint8_t SACK = 5;
inline constexpr uint8_t TIMESTAMP = 8;
}  // namespace tcp_option

inline constexpr uint8_t kMaxWindowScale = 14;  // RFC 7323 2.3: larger values are treated as 14
inline constexpr size_t kMaxSackBlocks = 4;

struct SackBlock {
  uint32_t left = 0;
  uint32_t right = 0;
  friend bool operator==(const SackBlock&, const SackBlock&) = default;
};

// The options we understand. Parsing fills the has_* flags; building emits exactly the options
// whose flags are set (SACK blocks: the first sack_count entries).
struct TcpOptions {
  bool has_mss = false;
  bool has_wscale = false;
  bool sack_permitted = false;
  bool has_timestamps = false;
  uint16_t mss = 0;
  uint8_t wscale = 0;  // clamped to kMaxWindowScale when parsed
  uint8_t sack_count = 0;
  uint32_t tsval = 0;
  uint32_t tsecr = 0;
  std::array<SackBlock, kMaxSackBlocks> sack{};
  // Where the option bodies sit, as byte offsets from the start of the TCP header, so that the
  // proxy can rewrite them in place. 0 means absent (no option can start at offset 0).
  uint16_t ts_offset = 0;    // offset of TSval; TSecr follows at +4
  uint16_t sack_offset = 0;  // offset of the first SACK block's left edge
};

enum class ParseError : uint8_t {
  None = 0,
  Truncated,            // buffer shorter than the fixed IP header
  BadIpVersion,         // version nibble is neither 4 nor 6
  BadIpHeaderLength,    // IPv4 IHL < 5 or past the buffer
  BadTotalLength,       // IP total/payload length smaller than the headers or larger than the buffer
  Fragment,             // a fragment: the TCP header cannot be trusted to be whole
  NotTcp,               // IP payload is not TCP
  BadIpv6ExtHeader,     // an IPv6 extension header that is truncated or unsupported
  TruncatedTcpHeader,   // fewer than 20 bytes of TCP header
  BadTcpDataOffset,     // data offset < 5 words or past the segment
  BadTcpOption,         // an option runs past the header or has an impossible length
  MappedAddress,        // IPv6 packet with a v4-mapped address (RFC 4291 2.5.5.2: never on a
                        // wire; it would alias an IPv4 flow)
};
std::string_view to_string(ParseError e) noexcept;

// A view over one TCP packet in a caller-owned, mutable buffer. Cheap to copy; never owns memory.
// The setters keep the TCP checksum valid by RFC 1624 incremental update.
class TcpPacket {
 public:
  TcpPacket() = default;

  uint8_t ip_version() const noexcept { return version_; }
  bool is_v4() const noexcept { return version_ == 4; }
  // The whole IP packet (up to the IP total length; trailing link padding excluded).
  std::span<uint8_t> bytes() const noexcept { return {data_, length_}; }
  std::span<uint8_t> tcp_segment() const noexcept { return {data_ + tcp_offset_, length_ - tcp_offset_}; }
  std::span<uint8_t> payload() const noexcept {
    return {data_ + tcp_offset_ + tcp_header_len_, length_ - tcp_offset_ - tcp_header_len_};
  }
  size_t tcp_offset() const noexcept { return tcp_offset_; }
  size_t tcp_header_len() const noexcept { return tcp_header_len_; }
  size_t payload_len() const noexcept { return length_ - tcp_offset_ - tcp_header_len_; }

  Address src() const noexcept;
  Address dst() const noexcept;
  FlowTuple tuple() const noexcept { return {src(), dst(), sport(), dport()}; }
  uint8_t ttl() const noexcept;  // hop limit for IPv6

  uint16_t sport() const noexcept;
  uint16_t dport() const noexcept;
  uint32_t seq() const noexcept;
  uint32_t ack() const noexcept;
  uint8_t flags() const noexcept;
  bool has(uint8_t flag_bits) const noexcept { return (flags() & flag_bits) == flag_bits; }
  uint16_t window() const noexcept;
  uint16_t checksum() const noexcept;
  const TcpOptions& options() const noexcept { return options_; }

  void set_seq(uint32_t value) noexcept;
  void set_ack(uint32_t value) noexcept;
  void set_window(uint16_t value) noexcept;
  // Require options().has_timestamps / sack_count > index; otherwise they do nothing.
  void set_tsval(uint32_t value) noexcept;
  void set_tsecr(uint32_t value) noexcept;
  void set_sack_block(size_t index, SackBlock block) noexcept;

  // The fields the translation of an established flow reads and writes (xlate_spec.h), and
  // their write-back with the checksum difference sg_xlate() returned: one checksum update for
  // the whole segment, as the tc programs make.
  sg_xlate_segment xlate_fields() const noexcept;
  void store_xlate(const sg_xlate_segment& s, uint16_t csum_diff) noexcept;

  // Recomputes the TCP checksum from scratch (needed when the kernel handed us a packet whose
  // checksum was not filled in yet, e.g. NFQA_SKB_CSUMNOTREADY).
  void recompute_checksum() noexcept;
  bool checksum_valid() const noexcept;

 private:
  friend struct PacketParser;
  uint8_t* data_ = nullptr;
  uint32_t length_ = 0;
  uint16_t tcp_offset_ = 0;
  uint16_t tcp_header_len_ = 0;
  uint8_t version_ = 0;
  TcpOptions options_{};
};

struct ParseResult {
  ParseError error = ParseError::Truncated;
  TcpPacket packet;
  // IPv4 options or IPv6 extension headers before TCP: legal on a flow, refused on a SYN.
  bool has_ip_options = false;
  explicit operator bool() const noexcept { return error == ParseError::None; }
};

// The addresses and ports of a TCP segment in IPv4, or IPv6 without extension headers, read
// without validating the rest: a hint (the flow table's prefetch), harmless when wrong, since
// parse_tcp_packet validates everything before anything acts on the packet.
// Inline, and into the caller's tuple rather than an optional: Engine::prefetch runs it on every
// packet of a batch, where a call and a copy through memory cost as much as the rest of its work.
// False (`t` partly written) when the packet is neither.
inline bool peek_tcp_tuple(std::span<const uint8_t> b, FlowTuple& t) noexcept {
  if (b.size() < 40) return false;
  size_t tcp = 0;
  if ((b[0] >> 4) == 4 && b[9] == 6) {
    tcp = size_t{b[0] & 0x0fu} * 4;
    t.src = Address::from_v4(std::span<const uint8_t, 4>(b.data() + 12, 4));
    t.dst = Address::from_v4(std::span<const uint8_t, 4>(b.data() + 16, 4));
  } else if ((b[0] >> 4) == 6 && b[6] == 6) {
    tcp = 40;
    t.src = Address::from_v6(std::span<const uint8_t, 16>(b.data() + 8, 16));
    t.dst = Address::from_v6(std::span<const uint8_t, 16>(b.data() + 24, 16));
  } else {
    return false;
  }
  if (tcp < 20 || b.size() < tcp + 4) return false;
  t.sport = static_cast<uint16_t>(b[tcp] << 8 | b[tcp + 1]);
  t.dport = static_cast<uint16_t>(b[tcp + 2] << 8 | b[tcp + 3]);
  return true;
}
inline std::optional<FlowTuple> peek_tcp_tuple(std::span<const uint8_t> packet) noexcept {
  FlowTuple t;
  if (!peek_tcp_tuple(packet, t)) return std::nullopt;
  return t;
}

// Validates and parses one IP packet holding TCP. The buffer must outlive the returned view.
ParseResult parse_tcp_packet(std::span<uint8_t> buffer) noexcept;

// Parses the option bytes of a TCP header (everything after the 20 fixed bytes).
// `base_offset` is added to the recorded ts/sack offsets (20 for a real header).
ParseError parse_tcp_options(std::span<const uint8_t> options, TcpOptions& out,
                             uint16_t base_offset = 20) noexcept;

// ---------------------------------------------------------------------------------------------
// Builders. Each writes one whole IP packet (IPv4 or IPv6 by the tuple's family) with valid IP
// and TCP checksums, and returns its length, or 0 when `out` is too small.

inline constexpr size_t kMaxTcpOptionsLen = 40;
inline constexpr size_t kMaxHeadersLen = 40 + 20 + kMaxTcpOptionsLen;  // IPv6 + TCP + options

struct SegmentSpec {
  FlowTuple tuple;  // src -> dst of the packet being built; family taken from tuple.src
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint8_t ttl = 64;
  TcpOptions options{};  // emitted as set; ts/sack offsets are ignored
  std::span<const uint8_t> payload{};
};

// Bytes the options of `o` take on the wire (padded to a multiple of 4, at most 40).
size_t tcp_options_wire_length(const TcpOptions& o) noexcept;
size_t build_tcp_packet(std::span<uint8_t> out, const SegmentSpec& spec) noexcept;

size_t build_syn(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint16_t window,
                 const TcpOptions& options, uint8_t extra_flags = 0) noexcept;
// The backend's SYN on tuple t, as backend_syn_spec.h specifies it.
size_t build_backend_syn(std::span<uint8_t> out, const FlowTuple& t, const sg_backend_syn& syn) noexcept;
size_t build_syn_ack(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                     uint16_t window, const TcpOptions& options, uint8_t extra_flags = 0) noexcept;
size_t build_ack(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                 uint16_t window, const TcpOptions& options,
                 std::span<const uint8_t> payload = {}) noexcept;
// A window update is a pure ACK whose only news is the window; kept separate for readability.
size_t build_window_update(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                           uint16_t window, const TcpOptions& options) noexcept;
// RST: with_ack=false gives a bare RST (seq only), as an answer to a segment that carried an ACK.
size_t build_rst(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                 bool with_ack) noexcept;

// Adds a Timestamps option to the TCP segment in buffer[0, length) (a data segment or pure ACK
// whose only options are SACK blocks; SACK blocks beyond the three that then fit are left out),
// moving its payload, fixing the IP length and the IPv4 header checksum and recomputing the TCP
// checksum in full. Returns the new length, or 0 (nothing changed) when the buffer lacks the room,
// the segment already has timestamps, or carries an option that could not be written back.
size_t insert_timestamps(std::span<uint8_t> buffer, size_t length, uint32_t tsval, uint32_t tsecr) noexcept;

// Sequence-space comparisons that hold across 32-bit wraparound (RFC 1982 style).
constexpr bool seq_before(uint32_t a, uint32_t b) noexcept { return static_cast<int32_t>(a - b) < 0; }
constexpr bool seq_after(uint32_t a, uint32_t b) noexcept { return static_cast<int32_t>(a - b) > 0; }
constexpr bool seq_before_eq(uint32_t a, uint32_t b) noexcept { return !seq_after(a, b); }
constexpr bool seq_after_eq(uint32_t a, uint32_t b) noexcept { return !seq_before(a, b); }

}  // namespace syngate
