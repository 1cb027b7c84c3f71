#include "syngate/packet.hpp"

#include <algorithm>
#include <cstring>

#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/spec/syn_rules.h"

namespace syngate {
namespace {

constexpr uint8_t kProtoTcp = 6;
constexpr size_t kIpv4MinHeader = 20;
constexpr size_t kIpv6Header = 40;
constexpr size_t kTcpMinHeader = 20;

// TCP header field offsets.
constexpr size_t kSeqOff = 4;
constexpr size_t kAckOff = 8;
constexpr size_t kDataOffOff = 12;
constexpr size_t kFlagsOff = 13;
constexpr size_t kWindowOff = 14;
constexpr size_t kChecksumOff = 16;

// The parser reports the specification's own parse errors, value for value.
static_assert(static_cast<int>(ParseError::Truncated) == SG_PE_TRUNCATED);
static_assert(static_cast<int>(ParseError::BadIpVersion) == SG_PE_BAD_IP_VERSION);
static_assert(static_cast<int>(ParseError::BadIpHeaderLength) == SG_PE_BAD_IP_HEADER_LENGTH);
static_assert(static_cast<int>(ParseError::BadTotalLength) == SG_PE_BAD_TOTAL_LENGTH);
static_assert(static_cast<int>(ParseError::Fragment) == SG_PE_FRAGMENT);
static_assert(static_cast<int>(ParseError::NotTcp) == SG_PE_NOT_TCP);
static_assert(static_cast<int>(ParseError::BadIpv6ExtHeader) == SG_PE_BAD_IPV6_EXT);
static_assert(static_cast<int>(ParseError::TruncatedTcpHeader) == SG_PE_TRUNCATED_TCP);
static_assert(static_cast<int>(ParseError::BadTcpDataOffset) == SG_PE_BAD_DATA_OFFSET);
static_assert(static_cast<int>(ParseError::BadTcpOption) == SG_PE_BAD_OPTION);
static_assert(static_cast<int>(ParseError::MappedAddress) == SG_PE_MAPPED_ADDRESS);

}  // namespace

std::string_view to_string(ParseError e) noexcept {
  switch (e) {
    case ParseError::None: return "none";
    case ParseError::Truncated: return "truncated";
    case ParseError::BadIpVersion: return "bad_ip_version";
    case ParseError::BadIpHeaderLength: return "bad_ip_header_length";
    case ParseError::BadTotalLength: return "bad_total_length";
    case ParseError::Fragment: return "fragment";
    case ParseError::NotTcp: return "not_tcp";
    case ParseError::BadIpv6ExtHeader: return "bad_ipv6_ext_header";
    case ParseError::TruncatedTcpHeader: return "truncated_tcp_header";
    case ParseError::BadTcpDataOffset: return "bad_tcp_data_offset";
    case ParseError::BadTcpOption: return "bad_tcp_option";
    case ParseError::MappedAddress: return "mapped_address";
  }
  return "unknown";
}

ParseError parse_tcp_options(std::span<const uint8_t> o, TcpOptions& out, uint16_t base_offset) noexcept {
  if (o.size() > kMaxTcpOptionsLen) return ParseError::BadTcpOption;
  const uint32_t n = static_cast<uint32_t>(o.size());
  sg_tcp_opts found{};
  uint32_t off = 0;
  for (;;) {
    off = sg_tcp_option_step(o.data(), n, off, &found);
    if (off == SG_OPT_STEP_DONE) break;
    if (off == SG_OPT_STEP_BAD) return ParseError::BadTcpOption;
  }
  out.has_mss = found.has_mss;
  out.mss = found.mss;
  out.has_wscale = found.has_wscale;
  out.wscale = found.wscale;
  out.sack_permitted = found.sack_permitted;
  out.has_timestamps = found.has_timestamps;
  out.tsval = found.tsval;
  out.tsecr = found.tsecr;
  if (found.ts_offset) out.ts_offset = static_cast<uint16_t>(base_offset + found.ts_offset);
  if (found.sack_offset) {
    const uint8_t* body = o.data() + found.sack_offset;
    out.sack_count = static_cast<uint8_t>(std::min<size_t>(found.sack_count, kMaxSackBlocks));
    for (size_t b = 0; b < out.sack_count; ++b) out.sack[b] = {load_be32(body + 8 * b), load_be32(body + 8 * b + 4)};
    out.sack_offset = static_cast<uint16_t>(base_offset + found.sack_offset);
  }
  return ParseError::None;
}

// Friend of TcpPacket: the only place that may fill in a view.
struct PacketParser {
  // One named result, returned once: built in the caller's storage, never copied (a copy of a
  // ParseResult on each failure path was a tenth of the fuzzer's ASan range checks).
  static ParseResult parse(std::span<uint8_t> buf) noexcept {
    ParseResult r;
    r.error = fill(buf, r);
    return r;
  }

 private:
  // Fills r.packet and says what went wrong. Until it returns None, nothing but the options may
  // have been written into r, and a failure of theirs clears them again.
  static ParseError fill(std::span<uint8_t> buf, ParseResult& r) noexcept {
    const size_t size = buf.size();
    uint8_t* d = buf.data();
    if (size < 1) return ParseError::Truncated;
    const uint8_t version = d[0] >> 4;
    size_t total = 0;
    size_t l4 = 0;
    if (version == 4) {
      uint32_t ihl = 0, total32 = 0;
      const auto e = sg_ipv4_header(d, static_cast<uint32_t>(std::min<size_t>(size, 0xffffffffu)), &ihl, &total32);
      if (e != SG_PE_NONE) return static_cast<ParseError>(e);
      total = total32;
      l4 = ihl;
      r.has_ip_options = ihl > kIpv4MinHeader;
    } else if (version == 6) {
      if (size < kIpv6Header) return ParseError::Truncated;
      total = kIpv6Header + load_be16(d + 4);
      if (total > size) return ParseError::BadTotalLength;
      uint8_t next = d[6];
      size_t off = kIpv6Header;
      int hops = 0;
      while (next != kProtoTcp) {
        if (++hops > SG_IPV6_MAX_EXT_HEADERS) return ParseError::BadIpv6ExtHeader;
        if (off + 2 > total) {
          // Not even the two bytes that say how long the header is: truncated, unless the chain
          // was already known to end in something that is not TCP.
          uint32_t ignored = 0;
          const auto e = sg_ipv6_ext_header(next, 0, &ignored);
          return e == SG_PE_NONE ? ParseError::BadIpv6ExtHeader : static_cast<ParseError>(e);
        }
        uint32_t hlen = 0;
        const auto e = sg_ipv6_ext_header(next, d[off + 1], &hlen);
        if (e != SG_PE_NONE) return static_cast<ParseError>(e);
        if (off + hlen > total) return ParseError::BadIpv6ExtHeader;
        next = d[off];
        off += hlen;
      }
      l4 = off;
      r.has_ip_options = l4 > kIpv6Header;
      if (sg_is_v4_mapped(d + 8) || sg_is_v4_mapped(d + 24)) {
        return ParseError::MappedAddress;
      }
    } else {
      return ParseError::BadIpVersion;
    }

    uint32_t doff = 0;
    // The data offset byte is read only when the segment holds it; sg_tcp_header rejects a
    // segment shorter than 20 bytes before it looks at the byte.
    const uint8_t doff_byte = total - l4 > kDataOffOff ? d[l4 + kDataOffOff] : 0;
    const auto te = sg_tcp_header(static_cast<uint32_t>(total - l4), doff_byte, &doff);
    if (te != SG_PE_NONE) return static_cast<ParseError>(te);
    TcpPacket& p = r.packet;
    const ParseError oe = parse_tcp_options(
        std::span<const uint8_t>(d + l4 + kTcpMinHeader, doff - kTcpMinHeader), p.options_);
    if (oe != ParseError::None) {
      p.options_ = TcpOptions{};
      return oe;
    }
    p.data_ = d;
    p.length_ = static_cast<uint32_t>(total);
    p.tcp_offset_ = static_cast<uint16_t>(l4);
    p.tcp_header_len_ = static_cast<uint16_t>(doff);
    p.version_ = version;
    return ParseError::None;
  }
};

ParseResult parse_tcp_packet(std::span<uint8_t> buffer) noexcept { return PacketParser::parse(buffer); }

// ---- TcpPacket accessors ----------------------------------------------------------------------

Address TcpPacket::src() const noexcept {
  return is_v4() ? Address::from_v4(std::span<const uint8_t, 4>(data_ + 12, 4))
                 : Address::from_v6(std::span<const uint8_t, 16>(data_ + 8, 16));
}
Address TcpPacket::dst() const noexcept {
  return is_v4() ? Address::from_v4(std::span<const uint8_t, 4>(data_ + 16, 4))
                 : Address::from_v6(std::span<const uint8_t, 16>(data_ + 24, 16));
}
uint8_t TcpPacket::ttl() const noexcept { return is_v4() ? data_[8] : data_[7]; }
uint16_t TcpPacket::sport() const noexcept { return load_be16(data_ + tcp_offset_); }
uint16_t TcpPacket::dport() const noexcept { return load_be16(data_ + tcp_offset_ + 2); }
uint32_t TcpPacket::seq() const noexcept { return load_be32(data_ + tcp_offset_ + kSeqOff); }
uint32_t TcpPacket::ack() const noexcept { return load_be32(data_ + tcp_offset_ + kAckOff); }
uint8_t TcpPacket::flags() const noexcept { return data_[tcp_offset_ + kFlagsOff]; }
uint16_t TcpPacket::window() const noexcept { return load_be16(data_ + tcp_offset_ + kWindowOff); }
uint16_t TcpPacket::checksum() const noexcept { return load_be16(data_ + tcp_offset_ + kChecksumOff); }

// ---- TcpPacket mutators: RFC 1624 incremental checksum ---------------------------------------

void TcpPacket::set_seq(uint32_t value) noexcept {
  uint8_t* t = data_ + tcp_offset_;
  const uint32_t old = load_be32(t + kSeqOff);
  store_be32(t + kSeqOff, value);
  store_be16(t + kChecksumOff, csum_replace32(load_be16(t + kChecksumOff), old, value));
}

void TcpPacket::set_ack(uint32_t value) noexcept {
  uint8_t* t = data_ + tcp_offset_;
  const uint32_t old = load_be32(t + kAckOff);
  store_be32(t + kAckOff, value);
  store_be16(t + kChecksumOff, csum_replace32(load_be16(t + kChecksumOff), old, value));
}

void TcpPacket::set_window(uint16_t value) noexcept {
  uint8_t* t = data_ + tcp_offset_;
  const uint16_t old = load_be16(t + kWindowOff);
  store_be16(t + kWindowOff, value);
  store_be16(t + kChecksumOff, csum_replace16(load_be16(t + kChecksumOff), old, value));
}

// Rewrites a 32-bit option field at `off` (from the TCP header start) and patches the checksum.
// The incremental rule holds only for fields at an even offset; an odd one (possible with exotic
// option padding) falls back to a full recompute.
static void rewrite_option32(uint8_t* tcp, size_t off, uint32_t value, TcpPacket& p) noexcept {
  const uint32_t old = load_be32(tcp + off);
  store_be32(tcp + off, value);
  if (off % 2 == 0) {
    store_be16(tcp + kChecksumOff, csum_replace32(load_be16(tcp + kChecksumOff), old, value));
  } else {
    p.recompute_checksum();
  }
}

void TcpPacket::set_tsval(uint32_t value) noexcept {
  if (!options_.has_timestamps) return;
  options_.tsval = value;
  rewrite_option32(data_ + tcp_offset_, options_.ts_offset, value, *this);
}

void TcpPacket::set_tsecr(uint32_t value) noexcept {
  if (!options_.has_timestamps) return;
  options_.tsecr = value;
  rewrite_option32(data_ + tcp_offset_, options_.ts_offset + 4u, value, *this);
}

void TcpPacket::set_sack_block(size_t index, SackBlock block) noexcept {
  if (index >= options_.sack_count) return;
  options_.sack[index] = block;
  const size_t off = options_.sack_offset + 8 * index;
  rewrite_option32(data_ + tcp_offset_, off, block.left, *this);
  rewrite_option32(data_ + tcp_offset_, off + 4, block.right, *this);
}

sg_xlate_segment TcpPacket::xlate_fields() const noexcept {
  const uint8_t* t = data_ + tcp_offset_;
  sg_xlate_segment s{};
  s.seq = load_be32(t + kSeqOff);
  s.ack = load_be32(t + kAckOff);
  s.window = load_be16(t + kWindowOff);
  s.has_ack = (t[kFlagsOff] & tcp_flag::ACK) != 0;
  s.has_ts = options_.has_timestamps;
  s.tsval = options_.tsval;
  s.tsecr = options_.tsecr;
  s.ts_odd = options_.ts_offset & 1u;
  s.sack_count = options_.sack_count;
  s.sack_odd = options_.sack_offset & 1u;
  for (size_t b = 0; b < options_.sack_count; ++b) {
    s.sack[2 * b] = options_.sack[b].left;
    s.sack[2 * b + 1] = options_.sack[b].right;
  }
  return s;
}

void TcpPacket::store_xlate(const sg_xlate_segment& s, uint16_t csum_diff) noexcept {
  uint8_t* t = data_ + tcp_offset_;
  store_be32(t + kSeqOff, s.seq);
  store_be32(t + kAckOff, s.ack);
  store_be16(t + kWindowOff, s.window);
  if (options_.has_timestamps) {
    options_.tsval = s.tsval;
    options_.tsecr = s.tsecr;
    store_be32(t + options_.ts_offset, s.tsval);
    store_be32(t + options_.ts_offset + 4, s.tsecr);
  }
  for (size_t b = 0; b < options_.sack_count; ++b) {
    options_.sack[b] = {s.sack[2 * b], s.sack[2 * b + 1]};
    store_be32(t + options_.sack_offset + 8 * b, s.sack[2 * b]);
    store_be32(t + options_.sack_offset + 8 * b + 4, s.sack[2 * b + 1]);
  }
  store_be16(t + kChecksumOff, sg_csum_apply(load_be16(t + kChecksumOff), csum_diff));
}

namespace {
uint16_t segment_checksum(const uint8_t* data, bool v4, std::span<const uint8_t> segment) noexcept {
  if (v4) {
    return tcp_checksum_v4(std::span<const uint8_t, 4>(data + 12, 4),
                           std::span<const uint8_t, 4>(data + 16, 4), segment);
  }
  return tcp_checksum_v6(std::span<const uint8_t, 16>(data + 8, 16),
                         std::span<const uint8_t, 16>(data + 24, 16), segment);
}
}  // namespace

void TcpPacket::recompute_checksum() noexcept {
  uint8_t* t = data_ + tcp_offset_;
  store_be16(t + kChecksumOff, 0);
  store_be16(t + kChecksumOff, segment_checksum(data_, is_v4(), tcp_segment()));
}

bool TcpPacket::checksum_valid() const noexcept {
  // Summing a segment together with its own checksum gives 0 after complement when it is right.
  return segment_checksum(data_, is_v4(), tcp_segment()) == 0;
}

// ---- Builders ---------------------------------------------------------------------------------

namespace {

// Writes the options of `o` into buf in the layout Linux uses, and returns their padded length.
// SACK blocks that do not fit in the 40 option bytes are left out.
size_t write_options(uint8_t (&buf)[kMaxTcpOptionsLen], const TcpOptions& o) noexcept {
  size_t n = 0;
  if (o.has_mss) {
    buf[n++] = tcp_option::MSS;
    buf[n++] = 4;
    store_be16(buf + n, o.mss);
    n += 2;
  }
  if (o.has_timestamps) {
    if (o.sack_permitted) {
      buf[n++] = tcp_option::SACK_PERMITTED;
      buf[n++] = 2;
    } else {
      buf[n++] = tcp_option::NOP;
      buf[n++] = tcp_option::NOP;
    }
    buf[n++] = tcp_option::TIMESTAMP;
    buf[n++] = 10;
    store_be32(buf + n, o.tsval);
    store_be32(buf + n + 4, o.tsecr);
    n += 8;
  } else if (o.sack_permitted) {
    buf[n++] = tcp_option::NOP;
    buf[n++] = tcp_option::NOP;
    buf[n++] = tcp_option::SACK_PERMITTED;
    buf[n++] = 2;
  }
  if (o.has_wscale) {
    buf[n++] = tcp_option::NOP;
    buf[n++] = tcp_option::WSCALE;
    buf[n++] = 3;
    buf[n++] = std::min(o.wscale, kMaxWindowScale);
  }
  const size_t room = kMaxTcpOptionsLen - n;
  size_t blocks = std::min<size_t>(o.sack_count, kMaxSackBlocks);
  while (blocks > 0 && 4 + 8 * blocks > room) --blocks;
  if (blocks > 0) {
    buf[n++] = tcp_option::NOP;
    buf[n++] = tcp_option::NOP;
    buf[n++] = tcp_option::SACK;
    buf[n++] = static_cast<uint8_t>(2 + 8 * blocks);
    for (size_t b = 0; b < blocks; ++b) {
      store_be32(buf + n, o.sack[b].left);
      store_be32(buf + n + 4, o.sack[b].right);
      n += 8;
    }
  }
  while (n % 4 != 0) buf[n++] = tcp_option::END;
  return n;
}

}  // namespace

size_t tcp_options_wire_length(const TcpOptions& o) noexcept {
  uint8_t unused[kMaxTcpOptionsLen];
  return write_options(unused, o);
}

size_t build_tcp_packet(std::span<uint8_t> out, const SegmentSpec& s) noexcept {
  const bool v4 = s.tuple.src.is_v4();
  const size_t ip_len = v4 ? kIpv4MinHeader : kIpv6Header;
  // Written once, here, and copied below: the length decides the headers before any of them is written.
  uint8_t opts[kMaxTcpOptionsLen];
  const size_t opt_len = write_options(opts, s.options);
  const size_t tcp_len = kTcpMinHeader + opt_len + s.payload.size();
  const size_t total = ip_len + tcp_len;
  if (total > out.size() || tcp_len > 0xffff || (v4 && total > 0xffff)) return 0;

  uint8_t* d = out.data();
  if (v4) {
    d[0] = 0x45;
    d[1] = 0;
    store_be16(d + 2, static_cast<uint16_t>(total));
    store_be16(d + 4, 0);       // ID: zero is fine with DF set (RFC 6864)
    store_be16(d + 6, 0x4000);  // DF
    d[8] = s.ttl;
    d[9] = kProtoTcp;
    store_be16(d + 10, 0);
    std::memcpy(d + 12, s.tuple.src.bytes.data() + 12, 4);
    std::memcpy(d + 16, s.tuple.dst.bytes.data() + 12, 4);
    store_be16(d + 10, ipv4_header_checksum(std::span<const uint8_t>(d, kIpv4MinHeader)));
  } else {
    store_be32(d, 0x60000000u);
    store_be16(d + 4, static_cast<uint16_t>(tcp_len));
    d[6] = kProtoTcp;
    d[7] = s.ttl;
    std::memcpy(d + 8, s.tuple.src.bytes.data(), 16);
    std::memcpy(d + 24, s.tuple.dst.bytes.data(), 16);
  }
  uint8_t* t = d + ip_len;
  store_be16(t, s.tuple.sport);
  store_be16(t + 2, s.tuple.dport);
  store_be32(t + kSeqOff, s.seq);
  store_be32(t + kAckOff, s.ack);
  t[kDataOffOff] = static_cast<uint8_t>(((kTcpMinHeader + opt_len) / 4) << 4);
  t[kFlagsOff] = s.flags;
  store_be16(t + kWindowOff, s.window);
  store_be16(t + kChecksumOff, 0);
  store_be16(t + 18, 0);  // urgent pointer
  std::memcpy(t + kTcpMinHeader, opts, opt_len);
  if (!s.payload.empty()) std::memcpy(t + kTcpMinHeader + opt_len, s.payload.data(), s.payload.size());
  store_be16(t + kChecksumOff, segment_checksum(d, v4, std::span<const uint8_t>(t, tcp_len)));
  return total;
}

size_t build_syn(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint16_t window,
                 const TcpOptions& options, uint8_t extra_flags) noexcept {
  SegmentSpec s{.tuple = t, .seq = seq, .ack = 0, .flags = static_cast<uint8_t>(tcp_flag::SYN | extra_flags),
                .window = window, .options = options};
  return build_tcp_packet(out, s);
}

size_t build_backend_syn(std::span<uint8_t> out, const FlowTuple& t, const sg_backend_syn& syn) noexcept {
  TcpOptions o;
  o.has_mss = true;
  o.mss = syn.mss;
  o.has_wscale = syn.has_wscale;
  o.wscale = syn.wscale;
  o.sack_permitted = syn.sack_permitted;
  o.has_timestamps = syn.has_ts;
  o.tsval = syn.tsval;
  o.tsecr = 0;
  return build_syn(out, t, syn.seq, syn.window, o, static_cast<uint8_t>(syn.flags & ~tcp_flag::SYN));
}

size_t build_syn_ack(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                     uint16_t window, const TcpOptions& options, uint8_t extra_flags) noexcept {
  SegmentSpec s{.tuple = t, .seq = seq, .ack = ack,
                .flags = static_cast<uint8_t>(tcp_flag::SYN | tcp_flag::ACK | extra_flags),
                .window = window, .options = options};
  return build_tcp_packet(out, s);
}

size_t build_ack(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                 uint16_t window, const TcpOptions& options, std::span<const uint8_t> payload) noexcept {
  const uint8_t flags = payload.empty() ? tcp_flag::ACK : (tcp_flag::ACK | tcp_flag::PSH);
  SegmentSpec s{.tuple = t, .seq = seq, .ack = ack, .flags = flags, .window = window,
                .options = options, .payload = payload};
  return build_tcp_packet(out, s);
}

size_t build_window_update(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                           uint16_t window, const TcpOptions& options) noexcept {
  return build_ack(out, t, seq, ack, window, options);
}

size_t build_rst(std::span<uint8_t> out, const FlowTuple& t, uint32_t seq, uint32_t ack,
                 bool with_ack) noexcept {
  SegmentSpec s{.tuple = t, .seq = seq, .ack = with_ack ? ack : 0,
                .flags = static_cast<uint8_t>(with_ack ? (tcp_flag::RST | tcp_flag::ACK) : tcp_flag::RST),
                .window = 0};
  return build_tcp_packet(out, s);
}

// ---- Adding a Timestamps option ----------------------------------------------------------------

size_t insert_timestamps(std::span<uint8_t> buffer, size_t length, uint32_t tsval, uint32_t tsecr) noexcept {
  if (length > buffer.size()) return 0;
  ParseResult r = parse_tcp_packet(buffer.first(length));
  if (!r) return 0;
  const TcpPacket& p = r.packet;
  const TcpOptions& in = p.options();
  if (in.has_timestamps || in.has_mss || in.has_wscale || in.sack_permitted) return 0;
  // Only options this function can write back (SACK blocks, padding): any other would be lost.
  const uint8_t* t = p.bytes().data() + p.tcp_offset();
  for (size_t off = kTcpMinHeader; off < p.tcp_header_len();) {
    const uint8_t kind = t[off];
    if (kind == tcp_option::END) break;
    if (kind == tcp_option::NOP) {
      ++off;
      continue;
    }
    if (kind != tcp_option::SACK) return 0;
    off += t[off + 1];  // lengths were validated by the parser
  }
  TcpOptions out;
  out.has_timestamps = true;
  out.tsval = tsval;
  out.tsecr = tsecr;
  out.sack_count = in.sack_count;  // write_options keeps the ones that fit (three, with timestamps)
  out.sack = in.sack;
  uint8_t opts[kMaxTcpOptionsLen];
  const size_t opt_len = write_options(opts, out);
  const size_t tcp_off = p.tcp_offset(), old_header = p.tcp_header_len(), new_header = kTcpMinHeader + opt_len;
  const size_t payload = p.payload_len();
  const size_t new_length = tcp_off + new_header + payload;
  if (new_length > buffer.size() || (p.is_v4() && new_length > 0xffff) || (!p.is_v4() && new_length - kIpv6Header > 0xffff)) {
    return 0;
  }
  uint8_t* d = buffer.data();
  std::memmove(d + tcp_off + new_header, d + tcp_off + old_header, payload);
  std::memcpy(d + tcp_off + kTcpMinHeader, opts, opt_len);
  d[tcp_off + kDataOffOff] = static_cast<uint8_t>(((new_header / 4) << 4) | (d[tcp_off + kDataOffOff] & 0x0f));
  if (p.is_v4()) {
    const size_t ihl = static_cast<size_t>(d[0] & 0x0f) * 4;
    store_be16(d + 2, static_cast<uint16_t>(new_length));
    store_be16(d + 10, 0);
    store_be16(d + 10, ipv4_header_checksum(std::span<const uint8_t>(d, ihl)));
  } else {
    store_be16(d + 4, static_cast<uint16_t>(new_length - kIpv6Header));
  }
  ParseResult grown = parse_tcp_packet(buffer.first(new_length));
  if (!grown) return 0;  // cannot happen: the header was written from a parsed one
  grown.packet.recompute_checksum();
  return new_length;
}

}  // namespace syngate
