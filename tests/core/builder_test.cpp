// Packet builders: every builder, v4 and v6, parses back to exactly what was asked for, with valid
// checksums (checked by the library and by a reference sum written here); exact-size and
// one-byte-short output buffers; and the kernel fixtures rebuilt from their parsed fields give the
// kernel's own bytes wherever the option layout is the same.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "syngate_test/packet_fixtures.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"
#include "syngate_test/segments.hpp"

namespace syngate {
namespace {

using Bytes = std::vector<uint8_t>;

uint16_t ref_checksum(const Bytes& b) {
  uint64_t s = 0;
  for (size_t i = 0; i < b.size(); i += 2) s += (uint32_t{b[i]} << 8) | (i + 1 < b.size() ? b[i + 1] : 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s & 0xffff);
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

// Verifies the TCP checksum with a pseudo-header assembled here, independent of the library.
bool ref_tcp_checksum_ok(const Bytes& pkt) {
  const bool v4 = (pkt[0] >> 4) == 4;
  const size_t l4 = v4 ? (pkt[0] & 0x0f) * 4u : 40u;
  const size_t len = pkt.size() - l4;
  Bytes pseudo;
  if (v4) {
    pseudo.assign(pkt.begin() + 12, pkt.begin() + 20);
    pseudo.insert(pseudo.end(), {0, 6, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
  } else {
    pseudo.assign(pkt.begin() + 8, pkt.begin() + 40);
    pseudo.insert(pseudo.end(), {0, 0, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, 6});
  }
  pseudo.insert(pseudo.end(), pkt.begin() + static_cast<long>(l4), pkt.end());
  return ref_checksum(pseudo) == 0;
}

const FlowTuple kTuple4{*Address::parse("192.0.2.1"), *Address::parse("198.51.100.7"), 40000, 443};
const FlowTuple kTuple6{*Address::parse("2001:db8::1"), *Address::parse("2001:db8:ffff::abcd"), 65535, 1};

TcpOptions syn_options() { return test::linux_syn_options(0x11223344); }

// The packet parses, and every field equals the spec; IP header and TCP checksum verify.
void expect_matches_spec(const Bytes& out, size_t n, const SegmentSpec& spec) {
  ASSERT_GT(n, 0u);
  ASSERT_LE(n, out.size());
  Bytes pkt(out.begin(), out.begin() + static_cast<long>(n));
  ParseResult r = parse_tcp_packet(pkt);
  ASSERT_EQ(r.error, ParseError::None) << to_string(r.error);
  const TcpPacket& p = r.packet;
  EXPECT_EQ(p.bytes().size(), n);
  EXPECT_EQ(p.is_v4(), spec.tuple.src.is_v4());
  EXPECT_EQ(p.tuple(), spec.tuple);
  EXPECT_EQ(p.seq(), spec.seq);
  EXPECT_EQ(p.ack(), spec.ack);
  EXPECT_EQ(p.flags(), spec.flags);
  EXPECT_EQ(p.window(), spec.window);
  EXPECT_EQ(p.ttl(), spec.ttl);
  ASSERT_EQ(p.payload_len(), spec.payload.size());
  EXPECT_TRUE(std::equal(spec.payload.begin(), spec.payload.end(), p.payload().begin()));
  EXPECT_EQ(p.tcp_header_len(), 20 + tcp_options_wire_length(spec.options));
  EXPECT_EQ(p.tcp_header_len() % 4, 0u);
  EXPECT_LE(p.tcp_header_len(), 60u);

  const TcpOptions& o = p.options();
  const TcpOptions& w = spec.options;
  EXPECT_EQ(o.has_mss, w.has_mss);
  if (w.has_mss) {
    EXPECT_EQ(o.mss, w.mss);
  }
  EXPECT_EQ(o.has_wscale, w.has_wscale);
  if (w.has_wscale) {
    EXPECT_EQ(o.wscale, std::min(w.wscale, kMaxWindowScale));
  }
  EXPECT_EQ(o.sack_permitted, w.sack_permitted);
  EXPECT_EQ(o.has_timestamps, w.has_timestamps);
  if (w.has_timestamps) {
    EXPECT_EQ(o.tsval, w.tsval);
    EXPECT_EQ(o.tsecr, w.tsecr);
  }
  EXPECT_EQ(o.sack_count, w.sack_count);
  for (size_t i = 0; i < w.sack_count && i < kMaxSackBlocks; ++i) EXPECT_EQ(o.sack[i], w.sack[i]) << i;

  EXPECT_TRUE(p.checksum_valid());
  EXPECT_TRUE(ref_tcp_checksum_ok(pkt));
  if (p.is_v4()) {
    EXPECT_EQ(pkt[0], 0x45);
    EXPECT_EQ(get16(&pkt[2]), n);
    EXPECT_EQ(get16(&pkt[6]) & 0x3fff, 0) << "built packet marked as a fragment";
    EXPECT_EQ(pkt[9], 6);
    EXPECT_EQ(ref_checksum(Bytes(pkt.begin(), pkt.begin() + 20)), 0) << "IPv4 header checksum";
  } else {
    EXPECT_EQ(pkt[0] >> 4, 6);
    EXPECT_EQ(get16(&pkt[4]), n - 40);
    EXPECT_EQ(pkt[6], 6);
  }
}

// Calls `build` into: a big buffer; an exactly-sized heap buffer (ASan sees any overrun); a
// buffer one byte short (must return 0); and a big buffer with a canary after the span.
template <typename Build>
size_t check_sizes(Build build, Bytes& out) {
  out.assign(2048, 0);
  const size_t n = build(std::span<uint8_t>(out));
  EXPECT_GT(n, 0u);
  if (n == 0) return 0;
  out.resize(n);

  std::unique_ptr<uint8_t[]> exact(new uint8_t[n]);
  EXPECT_EQ(build(std::span<uint8_t>(exact.get(), n)), n);
  EXPECT_EQ(std::memcmp(exact.get(), out.data(), n), 0);

  std::unique_ptr<uint8_t[]> short_by_one(new uint8_t[n - 1]);
  EXPECT_EQ(build(std::span<uint8_t>(short_by_one.get(), n - 1)), 0u) << "built into a buffer one byte too small";

  Bytes canary(n + 64, 0xcc);
  EXPECT_EQ(build(std::span<uint8_t>(canary.data(), n)), n);
  for (size_t i = n; i < canary.size(); ++i) EXPECT_EQ(canary[i], 0xcc) << "wrote past the span at " << i;

  EXPECT_EQ(build(std::span<uint8_t>()), 0u);
  return n;
}

class Builders : public ::testing::TestWithParam<bool> {
 protected:
  const FlowTuple& tuple() const { return GetParam() ? kTuple4 : kTuple6; }
};

TEST_P(Builders, Syn) {
  for (uint8_t extra : {uint8_t{0}, uint8_t(tcp_flag::ECE | tcp_flag::CWR)}) {
    Bytes out;
    const TcpOptions o = syn_options();
    const size_t n = check_sizes(
        [&](std::span<uint8_t> buf) { return build_syn(buf, tuple(), 0xfedcba98, 64240, o, extra); }, out);
    SegmentSpec spec{.tuple = tuple(), .seq = 0xfedcba98, .ack = 0,
                     .flags = static_cast<uint8_t>(tcp_flag::SYN | extra), .window = 64240, .options = o};
    expect_matches_spec(out, n, spec);
  }
}

TEST_P(Builders, SynAck) {
  for (uint8_t extra : {uint8_t{0}, uint8_t{tcp_flag::ECE}}) {
    Bytes out;
    TcpOptions o = syn_options();
    o.tsecr = 0x99887766;
    const size_t n = check_sizes(
        [&](std::span<uint8_t> buf) { return build_syn_ack(buf, tuple(), 0x80000000, 0xffffffff, 65535, o, extra); },
        out);
    SegmentSpec spec{.tuple = tuple(), .seq = 0x80000000, .ack = 0xffffffff,
                     .flags = static_cast<uint8_t>(tcp_flag::SYN | tcp_flag::ACK | extra), .window = 65535,
                     .options = o};
    expect_matches_spec(out, n, spec);
  }
}

TEST_P(Builders, SynAckEveryOptionCombination) {
  for (int mask = 0; mask < 16; ++mask) {
    SCOPED_TRACE(mask);
    TcpOptions o;
    o.has_mss = mask & 1;
    o.mss = 536;
    o.has_wscale = mask & 2;
    o.wscale = 14;
    o.sack_permitted = mask & 4;
    o.has_timestamps = mask & 8;
    o.tsval = 1;
    o.tsecr = 0xffffffff;
    EXPECT_LE(tcp_options_wire_length(o), kMaxTcpOptionsLen);
    EXPECT_EQ(tcp_options_wire_length(o) % 4, 0u);
    Bytes out;
    const size_t n = check_sizes(
        [&](std::span<uint8_t> buf) { return build_syn_ack(buf, tuple(), 7, 8, 1024, o); }, out);
    expect_matches_spec(out, n, SegmentSpec{.tuple = tuple(), .seq = 7, .ack = 8,
                                            .flags = tcp_flag::SYN | tcp_flag::ACK, .window = 1024, .options = o});
  }
  TcpOptions none;
  EXPECT_EQ(tcp_options_wire_length(none), 0u);
}

TEST_P(Builders, AckWithPayload) {
  for (size_t len : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{1000}, size_t{1447}}) {
    SCOPED_TRACE(len);
    Bytes payload(len);
    for (size_t i = 0; i < len; ++i) payload[i] = static_cast<uint8_t>(i * 7 + 3);
    TcpOptions o;
    o.has_timestamps = true;
    o.tsval = 5;
    o.tsecr = 6;
    Bytes out;
    const size_t n = check_sizes(
        [&](std::span<uint8_t> buf) { return build_ack(buf, tuple(), 100, 200, 501, o, payload); }, out);
    ASSERT_GT(n, 0u);
    Bytes pkt(out.begin(), out.begin() + static_cast<long>(n));
    ParseResult r = parse_tcp_packet(pkt);
    ASSERT_TRUE(r);
    // ACK must be set; PSH is the builder's choice with data; nothing else may be.
    EXPECT_TRUE(r.packet.has(tcp_flag::ACK));
    EXPECT_EQ(r.packet.flags() & ~(tcp_flag::ACK | tcp_flag::PSH), 0);
    SegmentSpec spec{.tuple = tuple(), .seq = 100, .ack = 200, .flags = r.packet.flags(), .window = 501,
                     .options = o, .payload = payload};
    expect_matches_spec(out, n, spec);
  }
}

TEST_P(Builders, AckWithSackBlocks) {
  for (bool ts : {false, true}) {
    for (uint8_t count = 1; count <= (ts ? 3 : 4); ++count) {
      SCOPED_TRACE(::testing::Message() << "ts=" << ts << " blocks=" << int{count});
      TcpOptions o;
      o.has_timestamps = ts;
      o.tsval = 0xabcdef01;
      o.tsecr = 0x10fedcba;
      o.sack_count = count;
      for (uint8_t i = 0; i < count; ++i) o.sack[i] = {0xfffff000u + i * 0x1000u, 0xfffff800u + i * 0x1000u};
      Bytes out;
      const size_t n = check_sizes(
          [&](std::span<uint8_t> buf) { return build_ack(buf, tuple(), 1, 0xfffff000u, 300, o); }, out);
      expect_matches_spec(out, n, SegmentSpec{.tuple = tuple(), .seq = 1, .ack = 0xfffff000u,
                                              .flags = tcp_flag::ACK, .window = 300, .options = o});
    }
  }
}

TEST_P(Builders, WindowUpdate) {
  TcpOptions o;
  o.has_timestamps = true;
  o.tsval = 77;
  o.tsecr = 88;
  Bytes out;
  const size_t n = check_sizes(
      [&](std::span<uint8_t> buf) { return build_window_update(buf, tuple(), 1000, 2000, 0xffff, o); }, out);
  expect_matches_spec(out, n, SegmentSpec{.tuple = tuple(), .seq = 1000, .ack = 2000, .flags = tcp_flag::ACK,
                                          .window = 0xffff, .options = o});
}

TEST_P(Builders, RstBareAndWithAck) {
  Bytes out;
  size_t n = check_sizes([&](std::span<uint8_t> buf) { return build_rst(buf, tuple(), 0x12345678, 0x9abcdef0, false); },
                         out);
  ASSERT_GT(n, 0u);
  {
    Bytes pkt(out.begin(), out.begin() + static_cast<long>(n));
    ParseResult r = parse_tcp_packet(pkt);
    ASSERT_TRUE(r);
    EXPECT_EQ(r.packet.flags(), tcp_flag::RST);
    EXPECT_EQ(r.packet.seq(), 0x12345678u);
    EXPECT_EQ(r.packet.tcp_header_len(), 20u);
    EXPECT_EQ(r.packet.payload_len(), 0u);
    EXPECT_TRUE(r.packet.checksum_valid());
    EXPECT_TRUE(ref_tcp_checksum_ok(pkt));
    EXPECT_EQ(r.packet.tuple(), tuple());
  }
  n = check_sizes([&](std::span<uint8_t> buf) { return build_rst(buf, tuple(), 0, 0x9abcdef0, true); }, out);
  ASSERT_GT(n, 0u);
  Bytes pkt(out.begin(), out.begin() + static_cast<long>(n));
  ParseResult r = parse_tcp_packet(pkt);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.packet.flags(), tcp_flag::RST | tcp_flag::ACK);
  EXPECT_EQ(r.packet.seq(), 0u);
  EXPECT_EQ(r.packet.ack(), 0x9abcdef0u);
  EXPECT_EQ(r.packet.tcp_header_len(), 20u);
  EXPECT_TRUE(r.packet.checksum_valid());
  EXPECT_TRUE(ref_tcp_checksum_ok(pkt));
}

TEST_P(Builders, RandomSpecsParseBackExactly) {
  std::mt19937 rng(GetParam() ? 4 : 6);
  for (int iter = 0; iter < 3000; ++iter) {
    SCOPED_TRACE(iter);
    TcpOptions o;
    o.has_mss = rng() & 1;
    o.mss = static_cast<uint16_t>(rng());
    o.has_wscale = rng() & 1;
    o.wscale = static_cast<uint8_t>(rng() % 15);
    o.sack_permitted = rng() & 1;
    o.has_timestamps = rng() & 1;
    o.tsval = static_cast<uint32_t>(rng());
    o.tsecr = static_cast<uint32_t>(rng());
    // Only as many SACK blocks as fit beside the other options (each costs 8, the header 4).
    const size_t other = tcp_options_wire_length(o);
    const size_t room = other + 12 <= kMaxTcpOptionsLen ? (kMaxTcpOptionsLen - other - 4) / 8 : 0;
    o.sack_count = static_cast<uint8_t>(room ? rng() % (std::min(room, kMaxSackBlocks) + 1) : 0);
    for (auto& b : o.sack) b = {static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
    Bytes payload(rng() % 64 == 0 ? 1460 : rng() % 40);
    for (auto& b : payload) b = static_cast<uint8_t>(rng());
    const SegmentSpec spec{.tuple = FlowTuple{GetParam() ? Address::from_v4(static_cast<uint32_t>(rng())) : kTuple6.src,
                                              GetParam() ? Address::from_v4(static_cast<uint32_t>(rng())) : kTuple6.dst,
                                              static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng())},
                           .seq = static_cast<uint32_t>(rng()),
                           .ack = static_cast<uint32_t>(rng()),
                           .flags = static_cast<uint8_t>(rng()),
                           .window = static_cast<uint16_t>(rng()),
                           .ttl = static_cast<uint8_t>(rng()),
                           .options = o,
                           .payload = payload};
    Bytes out(kMaxHeadersLen + payload.size());
    const size_t n = build_tcp_packet(out, spec);
    ASSERT_GT(n, 0u);
    EXPECT_LE(tcp_options_wire_length(o), kMaxTcpOptionsLen);
    expect_matches_spec(out, n, spec);
    Bytes small(n - 1);
    EXPECT_EQ(build_tcp_packet(small, spec), 0u);
  }
}

TEST_P(Builders, OverfullOptionsStayWithin40Bytes) {
  TcpOptions o = syn_options();
  o.sack_count = 4;
  for (size_t i = 0; i < 4; ++i) o.sack[i] = {static_cast<uint32_t>(10 * i), static_cast<uint32_t>(10 * i + 5)};
  const size_t len = tcp_options_wire_length(o);
  EXPECT_LE(len, kMaxTcpOptionsLen);
  EXPECT_EQ(len % 4, 0u);
  Bytes out(kMaxHeadersLen);
  const size_t n = build_ack(out, tuple(), 1, 2, 3, o);
  ASSERT_GT(n, 0u);
  ASSERT_LE(n, kMaxHeadersLen);
  out.resize(n);
  ParseResult r = parse_tcp_packet(out);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r.packet.checksum_valid());
  // Whatever had to give, the blocks that were emitted are the first ones, in order.
  for (size_t i = 0; i < r.packet.options().sack_count; ++i) EXPECT_EQ(r.packet.options().sack[i], o.sack[i]);
}

TEST_P(Builders, WindowScaleAbove14ParsesBackAs14) {
  TcpOptions o;
  o.has_wscale = true;
  o.wscale = 200;
  Bytes out(kMaxHeadersLen);
  const size_t n = build_syn(out, tuple(), 1, 2, o);
  ASSERT_GT(n, 0u);
  out.resize(n);
  ParseResult r = parse_tcp_packet(out);
  ASSERT_TRUE(r);
  EXPECT_EQ(r.packet.options().wscale, kMaxWindowScale);
}

INSTANTIATE_TEST_SUITE_P(V4AndV6, Builders, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "v4" : "v6"; });

// ---- kernel fixtures rebuilt ----------------------------------------------------------------

TEST(KernelRebuild, ParsedFieldsRebuildToKernelBytes) {
  size_t same_layout = 0, total = 0;
  for (const auto& f : testing::fixtures()) {
    SCOPED_TRACE(f.name);
    Bytes kernel = f.bytes;
    ParseResult kr = parse_tcp_packet(kernel);
    ASSERT_TRUE(kr);
    const TcpPacket& k = kr.packet;
    const auto payload = k.payload();
    const SegmentSpec spec{.tuple = k.tuple(), .seq = k.seq(), .ack = k.ack(), .flags = k.flags(),
                           .window = k.window(), .ttl = k.ttl(), .options = k.options(),
                           .payload = std::span<const uint8_t>(payload.data(), payload.size())};
    Bytes out(kMaxHeadersLen + payload.size());
    const size_t n = build_tcp_packet(out, spec);
    ASSERT_EQ(n, kernel.size()) << "rebuilt length differs (option layout?)";
    out.resize(n);
    ParseResult rr = parse_tcp_packet(out);
    ASSERT_TRUE(rr);
    const TcpPacket& b = rr.packet;
    EXPECT_TRUE(b.checksum_valid());
    EXPECT_TRUE(ref_tcp_checksum_ok(out));
    EXPECT_EQ(b.tuple(), k.tuple());
    EXPECT_EQ(b.ttl(), k.ttl());
    EXPECT_EQ(b.flags(), k.flags());
    EXPECT_EQ(b.payload_len(), k.payload_len());

    // IP: everything but identification, TOS/traffic class, flow label and the header checksum.
    if (k.is_v4()) {
      EXPECT_EQ(out[0], kernel[0]);
      EXPECT_EQ(get16(&out[2]), get16(&kernel[2]));
      EXPECT_EQ(out[8], kernel[8]);
      EXPECT_EQ(out[9], kernel[9]);
      EXPECT_TRUE(std::equal(out.begin() + 12, out.begin() + 20, kernel.begin() + 12));
    } else {
      EXPECT_EQ(out[0] >> 4, 6);
      EXPECT_TRUE(std::equal(out.begin() + 4, out.begin() + 40, kernel.begin() + 4));
    }

    const auto kopt = k.tcp_segment().subspan(20, k.tcp_header_len() - 20);
    const auto bopt = b.tcp_segment().subspan(20, b.tcp_header_len() - 20);
    const bool layout_same = std::equal(kopt.begin(), kopt.end(), bopt.begin(), bopt.end());
    if (kopt.empty()) {
      EXPECT_TRUE(bopt.empty()) << "options invented for an option-less segment";
    }
    ++total;
    if (layout_same) {
      ++same_layout;
      EXPECT_TRUE(std::equal(k.tcp_segment().begin(), k.tcp_segment().end(), b.tcp_segment().begin(),
                             b.tcp_segment().end()))
          << "same option layout but different TCP bytes";
      EXPECT_EQ(b.checksum(), f.num("cksum"));
    }
  }
  std::printf("kernel fixtures rebuilt byte-identical: %zu of %zu\n", same_layout, total);
  ::testing::Test::RecordProperty("same_layout", static_cast<int>(same_layout));
  EXPECT_GT(same_layout, 0u);
}

}  // namespace
}  // namespace syngate
