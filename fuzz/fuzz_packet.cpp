// libFuzzer target for the packet layer: parse_tcp_packet and parse_tcp_options over arbitrary
// bytes, then on every packet that parses: every setter, checksum recompute/verify, and a rebuild
// from the parsed fields via build_tcp_packet that must parse back to the same fields.
// Invariants abort (ASan/UBSan catch the memory errors); the input is copied into an exactly-sized
// heap buffer so that a read one byte past the end is reported.
// ICMP errors (parse_icmp_error, shift_quote) over the same bytes: offsets inside the buffer, a
// shift changes only the quoted TCP header and the ICMP checksum, keeps a valid checksum valid,
// and the opposite shift restores every byte.
// Seeds: tests/fuzz/corpus/packet (kernel_*: real kernel packets from tests/core/capture_fixtures.sh;
// crafted_*: hand-made edge cases written by the same script).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "syngate/checksum.hpp"
#include "syngate/icmp.hpp"
#include "syngate/packet.hpp"

namespace {

using namespace syngate;

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "fuzz_packet: invariant failed at line %d: %s\n", __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

uint32_t be32(const uint8_t* p) { return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]; }

// Values for the setters come from the input itself, so the fuzzer steers them too.
struct ValueStream {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
  uint32_t next() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | (size ? data[(pos++) % size] : 0);
    return v;
  }
};

// 0x0000 and 0xFFFF are the same one's-complement zero; an incremental update may keep either.
bool same_checksum(uint16_t a, uint16_t b) {
  return a == b || ((a == 0 || a == 0xffff) && (b == 0 || b == 0xffff));
}

void check_options(const TcpOptions& o, size_t options_len, uint16_t base) {
  FUZZ_CHECK(o.wscale <= kMaxWindowScale);
  FUZZ_CHECK(o.sack_count <= kMaxSackBlocks);
  if (o.has_timestamps) {
    FUZZ_CHECK(o.ts_offset >= base + 2);
    FUZZ_CHECK(o.ts_offset + 8u <= base + options_len);
  } else {
    FUZZ_CHECK(o.ts_offset == 0);
  }
  if (o.sack_count > 0) {
    FUZZ_CHECK(o.sack_offset >= base + 2);
    FUZZ_CHECK(o.sack_offset + 8u * o.sack_count <= base + options_len);
  }
}

// The view lies within the buffer and agrees with the bytes under it.
void check_view(const TcpPacket& p, const uint8_t* buf, size_t size) {
  FUZZ_CHECK(p.ip_version() == 4 || p.ip_version() == 6);
  const auto all = p.bytes();
  FUZZ_CHECK(all.data() == buf);
  FUZZ_CHECK(all.size() <= size);
  FUZZ_CHECK(p.tcp_offset() >= (p.is_v4() ? 20u : 40u));
  if (p.is_v4()) {
    FUZZ_CHECK(p.tcp_offset() <= 60 && p.tcp_offset() % 4 == 0);
  }
  FUZZ_CHECK(p.tcp_header_len() >= 20 && p.tcp_header_len() <= 60 && p.tcp_header_len() % 4 == 0);
  FUZZ_CHECK(p.tcp_offset() + p.tcp_header_len() <= all.size());
  FUZZ_CHECK(p.tcp_segment().data() == buf + p.tcp_offset());
  FUZZ_CHECK(p.tcp_segment().size() == all.size() - p.tcp_offset());
  FUZZ_CHECK(p.payload().data() == buf + p.tcp_offset() + p.tcp_header_len());
  FUZZ_CHECK(p.payload().data() + p.payload().size() == buf + all.size());
  FUZZ_CHECK(p.payload_len() == p.payload().size());
  FUZZ_CHECK((buf[0] >> 4) == p.ip_version());

  const uint8_t* tcp = buf + p.tcp_offset();
  FUZZ_CHECK(p.sport() == ((tcp[0] << 8) | tcp[1]));
  FUZZ_CHECK(p.seq() == be32(tcp + 4));
  FUZZ_CHECK(p.ack() == be32(tcp + 8));
  FUZZ_CHECK(p.flags() == tcp[13]);
  const TcpOptions& o = p.options();
  check_options(o, p.tcp_header_len() - 20, 20);
  if (o.has_timestamps) {
    FUZZ_CHECK(be32(tcp + o.ts_offset) == o.tsval);
    FUZZ_CHECK(be32(tcp + o.ts_offset + 4) == o.tsecr);
  }
  for (size_t i = 0; i < o.sack_count; ++i) {
    FUZZ_CHECK(be32(tcp + o.sack_offset + 8 * i) == o.sack[i].left);
    FUZZ_CHECK(be32(tcp + o.sack_offset + 8 * i + 4) == o.sack[i].right);
  }
}

// After a setter on a packet whose checksum was valid: still valid, and equal (up to the two
// zeros) to what a from-scratch recompute of the same bytes gives.
void check_checksum_after_setter(const TcpPacket& p, bool was_valid) {
  if (!was_valid) return;
  FUZZ_CHECK(p.checksum_valid());
  std::vector<uint8_t> copy(p.bytes().begin(), p.bytes().end());
  ParseResult again = parse_tcp_packet(copy);
  FUZZ_CHECK(again);
  again.packet.recompute_checksum();
  FUZZ_CHECK(same_checksum(again.packet.checksum(), p.checksum()));
}

void check_rebuild(const TcpPacket& p) {
  // The builder takes the family from the address, so an IPv6 packet with a v4-mapped address
  // would rebuild as IPv4; the parser must have refused it (ParseError::MappedAddress).
  FUZZ_CHECK(p.is_v4() || (!p.src().is_v4() && !p.dst().is_v4()));
  const auto payload = p.payload();
  const SegmentSpec spec{.tuple = p.tuple(), .seq = p.seq(), .ack = p.ack(), .flags = p.flags(),
                         .window = p.window(), .ttl = p.ttl(), .options = p.options(),
                         .payload = std::span<const uint8_t>(payload.data(), payload.size())};
  const size_t opt_len = tcp_options_wire_length(spec.options);
  FUZZ_CHECK(opt_len <= kMaxTcpOptionsLen && opt_len % 4 == 0);
  const size_t expect_len = (p.is_v4() ? 20 : 40) + 20 + opt_len + payload.size();
  std::unique_ptr<uint8_t[]> out(new uint8_t[expect_len]);
  const size_t n = build_tcp_packet(std::span<uint8_t>(out.get(), expect_len), spec);
  if (p.is_v4() && expect_len > 0xffff) {
    FUZZ_CHECK(n == 0);
    return;
  }
  FUZZ_CHECK(n == expect_len);
  FUZZ_CHECK(build_tcp_packet(std::span<uint8_t>(out.get(), expect_len - 1), spec) == 0);

  ParseResult r = parse_tcp_packet(std::span<uint8_t>(out.get(), n));
  FUZZ_CHECK(r);
  const TcpPacket& b = r.packet;
  check_view(b, out.get(), n);
  FUZZ_CHECK(b.bytes().size() == n);
  FUZZ_CHECK(b.is_v4() == p.is_v4());
  FUZZ_CHECK(b.tuple() == p.tuple());
  FUZZ_CHECK(b.seq() == p.seq() && b.ack() == p.ack());
  FUZZ_CHECK(b.flags() == p.flags() && b.window() == p.window() && b.ttl() == p.ttl());
  FUZZ_CHECK(b.payload_len() == p.payload_len());
  FUZZ_CHECK(std::equal(payload.begin(), payload.end(), b.payload().begin()));
  FUZZ_CHECK(b.tcp_header_len() == 20 + opt_len);
  FUZZ_CHECK(b.checksum_valid());
  const TcpOptions& x = p.options();
  const TcpOptions& y = b.options();
  FUZZ_CHECK(x.has_mss == y.has_mss && (!x.has_mss || x.mss == y.mss));
  FUZZ_CHECK(x.has_wscale == y.has_wscale && (!x.has_wscale || x.wscale == y.wscale));
  FUZZ_CHECK(x.sack_permitted == y.sack_permitted);
  FUZZ_CHECK(x.has_timestamps == y.has_timestamps);
  FUZZ_CHECK(!x.has_timestamps || (x.tsval == y.tsval && x.tsecr == y.tsecr));
  // Parsed options always fit in 40 bytes, but the builder's padding may leave less room for
  // SACK blocks; the ones it keeps must be the leading ones.
  FUZZ_CHECK(y.sack_count <= x.sack_count);
  for (size_t i = 0; i < y.sack_count; ++i) FUZZ_CHECK(x.sack[i] == y.sack[i]);
  if (p.is_v4()) {
    FUZZ_CHECK(ipv4_header_checksum(std::span<const uint8_t>(out.get(), 20)) == 0);
  }
}

// The ICMP checksum over the message as the outer header bounds it (pseudo-header from the outer
// addresses for IPv6): 0 when intact.
uint16_t icmp_residue(const uint8_t* buf, const IcmpError& e) {
  size_t end;
  uint32_t sum = 0;
  if (e.v4) {
    end = (size_t{buf[2]} << 8) | buf[3];
  } else {
    end = 40 + ((size_t{buf[4]} << 8) | buf[5]);
    sum = csum_partial(std::span<const uint8_t>(buf + 8, 32));
    sum += static_cast<uint32_t>(end - e.icmp_offset) + 58u;
  }
  return csum_fold(csum_partial(std::span<const uint8_t>(buf + e.icmp_offset, end - e.icmp_offset), sum));
}

void check_icmp(uint8_t* buf, size_t size, ValueStream& values) {
  const std::span<uint8_t> packet(buf, size);
  const IcmpError e = parse_icmp_error(packet);
  const std::vector<uint8_t> before(buf, buf + size);
  QuoteShift s{values.next(), values.next(), values.next(), values.next(), values.next()};
  if (e.kind != IcmpKind::TcpError) {
    FUZZ_CHECK(shift_quote(packet, e, s) == 0);
    FUZZ_CHECK(std::equal(before.begin(), before.end(), buf));
    return;
  }
  FUZZ_CHECK(e.tcp_length >= 8);
  FUZZ_CHECK(size_t{e.tcp_offset} + e.tcp_length <= size);
  FUZZ_CHECK(size_t{e.icmp_offset} + 8 <= e.tcp_offset);
  FUZZ_CHECK(e.quoted.sport == ((buf[e.tcp_offset] << 8) | buf[e.tcp_offset + 1]));
  const bool valid = icmp_residue(buf, e) == 0;
  const int changed = shift_quote(packet, e, s);
  FUZZ_CHECK(changed >= 0 && changed <= 2 + 8);  // seq, ack, and 40 option bytes of 10-byte options
  for (size_t i = 0; i < size; ++i) {
    const bool quote = i >= e.tcp_offset && i < size_t{e.tcp_offset} + e.tcp_length;
    const bool check = i == e.icmp_offset + 2u || i == e.icmp_offset + 3u;
    if (!quote && !check) FUZZ_CHECK(buf[i] == before[i]);
  }
  if (valid) FUZZ_CHECK(icmp_residue(buf, e) == 0);
  const IcmpError again = parse_icmp_error(packet);
  FUZZ_CHECK(again.kind == e.kind && again.tcp_offset == e.tcp_offset && again.tcp_length == e.tcp_length &&
             again.icmp_offset == e.icmp_offset);
  const QuoteShift back{0u - s.seq, 0u - s.ack, 0u - s.tsval, 0u - s.tsecr, 0u - s.sack};
  FUZZ_CHECK(shift_quote(packet, e, back) == changed);
  for (size_t i = 0; i < size; ++i) {
    if (i == e.icmp_offset + 2u) {
      const uint16_t was = static_cast<uint16_t>(before[i] << 8 | before[i + 1]);
      FUZZ_CHECK(same_checksum(static_cast<uint16_t>(buf[i] << 8 | buf[i + 1]), was));
      ++i;
      continue;
    }
    FUZZ_CHECK(buf[i] == before[i]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<uint8_t[]> buf(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(buf.get(), data, size);

  // The option parser alone, over the first (up to) 40 bytes.
  {
    TcpOptions o;
    const size_t n = size < kMaxTcpOptionsLen ? size : kMaxTcpOptionsLen;
    std::unique_ptr<uint8_t[]> opts(new uint8_t[n ? n : 1]);
    if (n) std::memcpy(opts.get(), data, n);
    if (parse_tcp_options(std::span<const uint8_t>(opts.get(), n), o, 20) == ParseError::None) check_options(o, n, 20);
  }

  ParseResult r = parse_tcp_packet(std::span<uint8_t>(buf.get(), size));
  if (!r) {
    FUZZ_CHECK(r.error != ParseError::None);
    FUZZ_CHECK(!to_string(r.error).empty());
    ValueStream icmp_values{data, size};
    check_icmp(buf.get(), size, icmp_values);
    return 0;
  }
  FUZZ_CHECK(parse_icmp_error(std::span<const uint8_t>(buf.get(), size)).kind == IcmpKind::NotIcmp);
  TcpPacket& p = r.packet;
  check_view(p, buf.get(), size);
  // Parsing is a pure function of the bytes.
  ParseResult again = parse_tcp_packet(std::span<uint8_t>(buf.get(), size));
  FUZZ_CHECK(again && again.packet.bytes().size() == p.bytes().size() &&
             again.packet.tcp_header_len() == p.tcp_header_len() && again.packet.tcp_offset() == p.tcp_offset());

  check_rebuild(p);

  const size_t len = p.bytes().size();
  ValueStream values{data, size};
  const bool valid = p.checksum_valid();
  const auto before = std::vector<uint8_t>(buf.get() + len, buf.get() + size);  // bytes past the IP length

  const uint32_t seq = values.next();
  p.set_seq(seq);
  FUZZ_CHECK(p.seq() == seq);
  check_checksum_after_setter(p, valid);
  const uint32_t ack = values.next();
  p.set_ack(ack);
  FUZZ_CHECK(p.ack() == ack);
  check_checksum_after_setter(p, valid);
  const uint16_t win = static_cast<uint16_t>(values.next());
  p.set_window(win);
  FUZZ_CHECK(p.window() == win);
  check_checksum_after_setter(p, valid);

  const std::vector<uint8_t> before_ts(buf.get(), buf.get() + size);
  const uint32_t tsval = values.next(), tsecr = values.next();
  p.set_tsval(tsval);
  p.set_tsecr(tsecr);
  if (p.options().has_timestamps) {
    FUZZ_CHECK(p.options().tsval == tsval && p.options().tsecr == tsecr);
    check_checksum_after_setter(p, valid);
  } else {
    FUZZ_CHECK(std::equal(before_ts.begin(), before_ts.end(), buf.get()));
  }
  for (size_t i = 0; i <= kMaxSackBlocks; ++i) {
    const std::vector<uint8_t> snapshot(buf.get(), buf.get() + size);
    const SackBlock blk{values.next(), values.next()};
    p.set_sack_block(i, blk);
    if (i < p.options().sack_count) {
      FUZZ_CHECK(p.options().sack[i] == blk);
      check_checksum_after_setter(p, valid);
    } else {
      FUZZ_CHECK(std::equal(snapshot.begin(), snapshot.end(), buf.get()));
    }
  }
  // The rewritten packet still parses to the same shape, with the new values in it.
  ParseResult reread = parse_tcp_packet(std::span<uint8_t>(buf.get(), size));
  FUZZ_CHECK(reread);
  check_view(reread.packet, buf.get(), size);
  FUZZ_CHECK(reread.packet.seq() == seq && reread.packet.ack() == ack && reread.packet.window() == win);
  for (size_t i = 0; i < p.options().sack_count; ++i) FUZZ_CHECK(reread.packet.options().sack[i] == p.options().sack[i]);
  if (p.options().has_timestamps) {
    FUZZ_CHECK(reread.packet.options().tsval == tsval && reread.packet.options().tsecr == tsecr);
  }
  // Setters never touch bytes past the IP length (link padding).
  FUZZ_CHECK(std::equal(before.begin(), before.end(), buf.get() + len));

  p.recompute_checksum();
  FUZZ_CHECK(p.checksum_valid());
  return 0;
}
