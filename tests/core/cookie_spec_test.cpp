// The shared cookie specification (include/syngate/spec/cookie_spec.h) against independent
// references: libsodium's SipHash-2-4 over the documented input layout, and the MSS table by
// binary search. The same header is compiled as plain C (cookie_spec_c.c) and as BPF C.
#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <array>
#include <random>
#include <vector>

#include "syngate/cookie.hpp"
#include "syngate/spec/cookie_spec.h"

extern "C" uint32_t cookie_spec_from_c(const uint8_t key[16], const uint8_t* src, const uint8_t* dst,
                                       int v6, uint16_t sport, uint16_t dport, uint32_t isn,
                                       uint32_t counter, uint8_t mss_index);

namespace syngate {
namespace {

// The layout as the header's comment states it, built byte by byte and hashed by libsodium.
uint32_t reference_hash(const std::array<uint8_t, 16>& key, const uint8_t* src, const uint8_t* dst,
                        size_t addr_len, uint16_t sport, uint16_t dport, uint32_t isn, uint32_t counter,
                        uint8_t mss_index) {
  std::vector<uint8_t> in(src, src + addr_len);
  in.insert(in.end(), dst, dst + addr_len);
  auto le = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) in.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  le(sport, 2);
  le(dport, 2);
  le(isn, 4);
  le(counter, 4);
  in.push_back(mss_index);
  EXPECT_EQ(in.size(), addr_len == 4 ? 21u : 45u);
  uint8_t out[crypto_shorthash_siphash24_BYTES];
  crypto_shorthash_siphash24(out, in.data(), in.size(), key.data());
  uint32_t high = 0;
  for (int i = 0; i < 4; ++i) high |= uint32_t{out[4 + i]} << (8 * i);
  return high >> (32 - SG_COOKIE_HASH_BITS);
}

struct Random {
  std::mt19937_64 rng{0xC00C1E5};
  template <size_t N>
  std::array<uint8_t, N> bytes() {
    std::array<uint8_t, N> a;
    for (auto& b : a) b = static_cast<uint8_t>(rng());
    return a;
  }
  uint32_t u32() { return static_cast<uint32_t>(rng()); }
  uint16_t u16() { return static_cast<uint16_t>(rng()); }
};

TEST(CookieSpec, SipHashMatchesLibsodiumOnTheIpv4Layout) {
  ASSERT_GE(sodium_init(), 0);
  Random r;
  for (int i = 0; i < 20000; ++i) {
    const auto key = r.bytes<16>();
    const auto src = r.bytes<4>();
    const auto dst = r.bytes<4>();
    const uint16_t sport = r.u16(), dport = r.u16();
    const uint32_t isn = r.u32(), counter = r.u32();
    const uint8_t idx = static_cast<uint8_t>(r.u32() & 0xF);
    ASSERT_EQ(sg_cookie_hash_v4(key.data(), src.data(), dst.data(), sport, dport, isn, counter, idx),
              reference_hash(key, src.data(), dst.data(), 4, sport, dport, isn, counter, idx))
        << "iteration " << i;
  }
}

TEST(CookieSpec, SipHashMatchesLibsodiumOnTheIpv6Layout) {
  ASSERT_GE(sodium_init(), 0);
  Random r;
  for (int i = 0; i < 20000; ++i) {
    const auto key = r.bytes<16>();
    const auto src = r.bytes<16>();
    const auto dst = r.bytes<16>();
    const uint16_t sport = r.u16(), dport = r.u16();
    const uint32_t isn = r.u32(), counter = r.u32();
    const uint8_t idx = static_cast<uint8_t>(r.u32() & 0xF);
    ASSERT_EQ(sg_cookie_hash_v6(key.data(), src.data(), dst.data(), sport, dport, isn, counter, idx),
              reference_hash(key, src.data(), dst.data(), 16, sport, dport, isn, counter, idx))
        << "iteration " << i;
  }
}

TEST(CookieSpec, SixteenByteSipHashMatchesLibsodium) {
  ASSERT_GE(sodium_init(), 0);
  Random r;
  for (int i = 0; i < 20000; ++i) {
    const auto key = r.bytes<16>();
    const auto in = r.bytes<16>();
    uint64_t expected = 0;
    crypto_shorthash_siphash24(reinterpret_cast<unsigned char*>(&expected), in.data(), in.size(), key.data());
    uint8_t le[8];
    const uint64_t got = sg_siphash24_16(key.data(), in.data());
    for (int b = 0; b < 8; ++b) le[b] = static_cast<uint8_t>(got >> (8 * b));
    uint64_t got_as_bytes = 0;
    std::memcpy(&got_as_bytes, le, 8);  // libsodium writes the hash little-endian
    ASSERT_EQ(got_as_bytes, expected) << "iteration " << i;
  }
}

TEST(CookieSpec, CompiledAsCTheHeaderGivesTheSameHashes) {
  Random r;
  for (int i = 0; i < 2000; ++i) {
    const auto key = r.bytes<16>();
    const auto src = r.bytes<16>();
    const auto dst = r.bytes<16>();
    const int v6 = i & 1;
    const uint16_t sport = r.u16(), dport = r.u16();
    const uint32_t isn = r.u32(), counter = r.u32();
    const uint8_t idx = static_cast<uint8_t>(r.u32() & 0xF);
    const uint32_t cpp = v6 ? sg_cookie_hash_v6(key.data(), src.data(), dst.data(), sport, dport, isn, counter, idx)
                            : sg_cookie_hash_v4(key.data(), src.data(), dst.data(), sport, dport, isn, counter, idx);
    ASSERT_EQ(cookie_spec_from_c(key.data(), src.data(), dst.data(), v6, sport, dport, isn, counter, idx), cpp);
  }
}

TEST(CookieSpec, MssIndexIsTheLargestTableEntryNotAboveForEveryValue) {
  for (uint32_t mss = 0; mss <= 0xffff; ++mss) {
    auto it = std::upper_bound(kCookieMssTable.begin(), kCookieMssTable.end(), mss);
    const uint8_t expected = it == kCookieMssTable.begin() ? 0 : static_cast<uint8_t>(it - kCookieMssTable.begin() - 1);
    ASSERT_EQ(sg_cookie_mss_index(static_cast<uint16_t>(mss)), expected) << mss;
  }
  for (uint32_t i = 0; i < kCookieMssTable.size(); ++i) EXPECT_EQ(sg_cookie_mss_value(i), kCookieMssTable[i]);
}

TEST(CookieSpec, CookieJarCookiesAreTheSpecLayoutOverTheReferenceHash) {
  ASSERT_GE(sodium_init(), 0);
  Random r;
  for (int i = 0; i < 5000; ++i) {
    const bool v6 = i & 1;
    CookieSecrets secrets{r.bytes<16>(), r.bytes<16>(), r.u32()};
    FlowTuple t;
    if (v6) {
      t.src.bytes = r.bytes<16>();
      t.dst.bytes = r.bytes<16>();
      t.src.bytes[0] = t.dst.bytes[0] = 0x20;
    } else {
      const auto s4 = r.bytes<4>(), d4 = r.bytes<4>();
      t.src = Address::from_v4(std::span<const uint8_t, 4>(s4));
      t.dst = Address::from_v4(std::span<const uint8_t, 4>(d4));
    }
    t.sport = r.u16();
    t.dport = r.u16();
    const uint32_t isn = r.u32(), counter = r.u32();
    const uint16_t mss = r.u16();
    const uint8_t idx = static_cast<uint8_t>(std::upper_bound(kCookieMssTable.begin(), kCookieMssTable.end(), mss) -
                                             kCookieMssTable.begin() - (mss >= kCookieMssTable[0] ? 1 : 0));
    const bool current = static_cast<int32_t>(counter - secrets.current_since) >= 0;
    const size_t skip = v6 ? 0 : 12;
    const uint32_t h = reference_hash(current ? secrets.current : secrets.previous, t.src.bytes.data() + skip,
                                      t.dst.bytes.data() + skip, v6 ? 16 : 4, t.sport, t.dport, isn, counter, idx);
    const uint32_t expected = h << 6 | (counter & 3) << 4 | idx;
    CookieJar jar(secrets, 1);
    ASSERT_EQ(jar.make(t, isn, mss, counter), expected) << "iteration " << i;
    ASSERT_EQ(jar.check(t, isn, expected, counter + 1).value_or(0), kCookieMssTable[idx]);
  }
}

}  // namespace
}  // namespace syngate
