// Internet checksum (RFC 1071) and incremental update (RFC 1624), checked against the RFCs' own
// worked examples and against a deliberately naive reference written here (16-bit words, 64-bit
// accumulator, fold at the end) that shares no code with core/checksum.cpp.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "syngate/checksum.hpp"

namespace syngate {
namespace {

uint32_t ref_sum(const std::vector<uint8_t>& b) {
  uint64_t s = 0;
  for (size_t i = 0; i < b.size(); i += 2) {
    const uint32_t hi = b[i];
    const uint32_t lo = i + 1 < b.size() ? b[i + 1] : 0;
    s += (hi << 8) | lo;
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

uint16_t ref_checksum(const std::vector<uint8_t>& b) { return static_cast<uint16_t>(~ref_sum(b) & 0xffff); }

uint16_t get16(const std::vector<uint8_t>& b, size_t i) { return static_cast<uint16_t>((b[i] << 8) | b[i + 1]); }
void put16(std::vector<uint8_t>& b, size_t i, uint16_t v) {
  b[i] = static_cast<uint8_t>(v >> 8);
  b[i + 1] = static_cast<uint8_t>(v);
}

// Two representations of zero exist in one's complement; a stored 0x0000 and 0xFFFF verify alike.
bool csum_equivalent(uint16_t a, uint16_t b) { return a == b || ((a == 0 || a == 0xffff) && (b == 0 || b == 0xffff)); }

TEST(Checksum, Rfc1071WorkedExample) {
  // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2 (after the end-around carry).
  const std::vector<uint8_t> data = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(csum_fold(csum_partial(data)), static_cast<uint16_t>(~0xddf2));
  EXPECT_EQ(csum_fold(csum_partial(data)), 0x220d);
}

TEST(Checksum, Ipv4HeaderKnownValue) {
  // A textbook IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) whose checksum is 0xb861.
  std::vector<uint8_t> h = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                            0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(ipv4_header_checksum(h), 0xb861);
  put16(h, 10, 0xb861);
  // A header including its right checksum sums to all ones: folding it gives 0.
  EXPECT_EQ(csum_fold(csum_partial(h)), 0);
}

TEST(Checksum, FoldCorners) {
  EXPECT_EQ(csum_fold(0), 0xffff);
  EXPECT_EQ(csum_fold(0xffff), 0x0000);
  EXPECT_EQ(csum_fold(0x1fffe), 0x0000);      // 0xfffe + 1 -> 0xffff -> ~ = 0
  EXPECT_EQ(csum_fold(0xffffffff), 0x0000);   // two folds needed
  EXPECT_EQ(csum_fold(0x0001fffd), static_cast<uint16_t>(~0xfffe));
  EXPECT_EQ(csum_fold(0x12345678), static_cast<uint16_t>(~((0x1234 + 0x5678) & 0xffff)));
}

TEST(Checksum, OddLengthTailIsPaddedWithZero) {
  const std::vector<uint8_t> odd = {0x12, 0x34, 0xab};
  const std::vector<uint8_t> padded = {0x12, 0x34, 0xab, 0x00};
  EXPECT_EQ(csum_fold(csum_partial(odd)), csum_fold(csum_partial(padded)));
  EXPECT_EQ(csum_fold(csum_partial(odd)), ref_checksum(odd));
  const std::vector<uint8_t> one = {0xff};
  EXPECT_EQ(csum_fold(csum_partial(one)), static_cast<uint16_t>(~0xff00));
  EXPECT_EQ(csum_fold(csum_partial(std::span<const uint8_t>())), 0xffff);
}

TEST(Checksum, PartialMatchesReferenceOnRandomData) {
  std::mt19937 rng(1071);
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> data(rng() % 300);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    // Long runs of 0xff exercise every carry path.
    if (iter % 7 == 0) std::fill(data.begin(), data.end(), 0xff);
    SCOPED_TRACE(data.size());
    ASSERT_EQ(csum_fold(csum_partial(data)), ref_checksum(data));
    // A large initial value must not lose carries.
    const uint32_t initial = rng();
    std::vector<uint8_t> with_initial = {static_cast<uint8_t>(initial >> 24), static_cast<uint8_t>(initial >> 16),
                                         static_cast<uint8_t>(initial >> 8), static_cast<uint8_t>(initial)};
    with_initial.insert(with_initial.end(), data.begin(), data.end());
    ASSERT_TRUE(csum_equivalent(csum_fold(csum_partial(data, initial)), ref_checksum(with_initial)));
  }
}

TEST(Checksum, PartialChainsOverEvenSplits) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 1000; ++iter) {
    std::vector<uint8_t> data(2 + rng() % 200);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    const size_t split = (rng() % (data.size() / 2 + 1)) * 2;
    const std::span<const uint8_t> all(data);
    const uint32_t chained = csum_partial(all.subspan(split), csum_partial(all.first(split)));
    ASSERT_TRUE(csum_equivalent(csum_fold(chained), csum_fold(csum_partial(all))));
  }
}

// Pseudo-header built byte by byte as RFC 793 / RFC 8200 8.1 lay it out.
std::vector<uint8_t> pseudo_v4(const std::array<uint8_t, 4>& s, const std::array<uint8_t, 4>& d, size_t len) {
  std::vector<uint8_t> p(s.begin(), s.end());
  p.insert(p.end(), d.begin(), d.end());
  p.insert(p.end(), {0, 6, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
  return p;
}
std::vector<uint8_t> pseudo_v6(const std::array<uint8_t, 16>& s, const std::array<uint8_t, 16>& d, size_t len) {
  std::vector<uint8_t> p(s.begin(), s.end());
  p.insert(p.end(), d.begin(), d.end());
  p.insert(p.end(), {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16), static_cast<uint8_t>(len >> 8),
                     static_cast<uint8_t>(len), 0, 0, 0, 6});
  return p;
}

TEST(Checksum, TcpV4AndV6MatchReferencePseudoHeader) {
  std::mt19937 rng(793);
  for (int iter = 0; iter < 3000; ++iter) {
    std::array<uint8_t, 4> s4, d4;
    std::array<uint8_t, 16> s6, d6;
    for (auto& b : s4) b = static_cast<uint8_t>(rng());
    for (auto& b : d4) b = static_cast<uint8_t>(rng());
    for (auto& b : s6) b = static_cast<uint8_t>(rng());
    for (auto& b : d6) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> seg(20 + rng() % 1500);  // odd lengths included
    for (auto& b : seg) b = static_cast<uint8_t>(rng());
    put16(seg, 16, 0);
    SCOPED_TRACE(seg.size());

    auto ref4 = pseudo_v4(s4, d4, seg.size());
    ref4.insert(ref4.end(), seg.begin(), seg.end());
    const uint16_t c4 = tcp_checksum_v4(s4, d4, seg);
    ASSERT_EQ(c4, ref_checksum(ref4));

    auto ref6 = pseudo_v6(s6, d6, seg.size());
    ref6.insert(ref6.end(), seg.begin(), seg.end());
    const uint16_t c6 = tcp_checksum_v6(s6, d6, seg);
    ASSERT_EQ(c6, ref_checksum(ref6));

    // Storing the result makes the whole thing verify (sum to all ones).
    put16(seg, 16, c4);
    ASSERT_EQ(tcp_checksum_v4(s4, d4, seg), 0);
    put16(seg, 16, c6);
    ASSERT_EQ(tcp_checksum_v6(s6, d6, seg), 0);
  }
}

TEST(Checksum, Rfc1624WorkedExample) {
  // RFC 1624 section 4: the sum of the other header words is 0xCD7A, a field changes from 0x5555
  // to 0x3285. HC = 0xDD2F; recomputing from scratch gives 0x0000 and eqn. 3 must agree (the
  // RFC 1141 formula gives 0xFFFF here, the bug RFC 1624 fixed).
  EXPECT_EQ(csum_fold(0xcd7a + 0x5555), 0xdd2f);
  EXPECT_EQ(csum_fold(0xcd7a + 0x3285), 0x0000);
  EXPECT_EQ(csum_replace16(0xdd2f, 0x5555, 0x3285), 0x0000);
  // And back again.
  EXPECT_EQ(csum_replace16(0x0000, 0x3285, 0x5555), 0xdd2f);
}

// The full-recompute / incremental equivalence over many random buffers and fields, including
// fields whose old or new value is 0x0000 or 0xFFFF and changes that drive the sum to 0xFFFF
// (checksum 0x0000), the case RFC 1624 is about.
TEST(Checksum, Replace16MatchesFullRecompute) {
  std::mt19937 rng(1624);
  int zero_results = 0;
  for (int iter = 0; iter < 200000; ++iter) {
    std::vector<uint8_t> buf(2 * (2 + rng() % 30));
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    const size_t idx = 2 * (rng() % (buf.size() / 2));
    switch (iter % 8) {
      case 0: put16(buf, idx, 0x0000); break;
      case 1: put16(buf, idx, 0xffff); break;
      default: break;
    }
    const uint16_t old_check = ref_checksum(buf);
    const uint16_t m = get16(buf, idx);
    uint16_t m2 = static_cast<uint16_t>(rng());
    switch (iter % 8) {
      case 2: m2 = 0x0000; break;
      case 3: m2 = 0xffff; break;
      case 4: {  // choose m' so that the new sum is exactly 0xFFFF: new checksum 0x0000
        put16(buf, idx, 0);
        m2 = static_cast<uint16_t>(~ref_sum(buf) & 0xffff);
        break;
      }
      case 5: m2 = m; break;
      default: break;
    }
    put16(buf, idx, m2);
    const uint16_t full = ref_checksum(buf);
    const uint16_t inc = csum_replace16(old_check, m, m2);
    if (full == 0) ++zero_results;
    ASSERT_EQ(inc, full) << "iter " << iter << " HC=" << old_check << " m=" << m << " m'=" << m2;
  }
  EXPECT_GT(zero_results, 1000);  // the corner really was exercised
}

TEST(Checksum, Replace32MatchesFullRecompute) {
  std::mt19937 rng(32);
  for (int iter = 0; iter < 200000; ++iter) {
    std::vector<uint8_t> buf(4 * (2 + rng() % 15));
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    const size_t idx = 2 * (rng() % (buf.size() / 2 - 1));  // any even offset: TS/SACK fields need not be 4-aligned
    const uint16_t old_check = ref_checksum(buf);
    const uint32_t m = (uint32_t{get16(buf, idx)} << 16) | get16(buf, idx + 2);
    uint32_t m2 = rng();
    switch (iter % 6) {
      case 0: m2 = 0; break;
      case 1: m2 = 0xffffffff; break;
      case 2: m2 = m; break;
      case 3: {  // drive the new sum to 0xFFFF
        put16(buf, idx, 0);
        put16(buf, idx + 2, 0);
        m2 = static_cast<uint32_t>(~ref_sum(buf) & 0xffff);
        break;
      }
      default: break;
    }
    put16(buf, idx, static_cast<uint16_t>(m2 >> 16));
    put16(buf, idx + 2, static_cast<uint16_t>(m2));
    const uint16_t full = ref_checksum(buf);
    ASSERT_EQ(csum_replace32(old_check, m, m2), full) << "iter " << iter;
  }
}

}  // namespace
}  // namespace syngate
