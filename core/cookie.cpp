// SYN cookies: SipHash-2-4 (libsodium) over the flow, the client ISN, the time counter and the
// MSS index. Pure code: no syscalls, no allocation, no clocks (the caller passes the counter).
#include "syngate/cookie.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace syngate {

namespace {

constexpr uint32_t kHashBits = 26;
constexpr uint32_t kCounterShift = 4;
constexpr uint32_t kCounterMask = 3;  // two bits of counter travel in the cookie
constexpr uint32_t kMssMask = 0xF;
constexpr uint32_t kMaxAge = kCounterMask;  // ages beyond 3 cannot be told apart from young ones

static_assert(kCookieMssTable.size() == kMssMask + 1, "4 bits of MSS index in the cookie");
static_assert(std::is_sorted(kCookieMssTable.begin(), kCookieMssTable.end()));
static_assert(kHashBits + 2 + 4 == 32);

// The IPv4-mapped prefix ::ffff:0:0/96, as Address stores IPv4. Checked here rather than through
// Address::is_v4() so the hot path inlines it.
inline bool mapped_v4(const Address& a) noexcept {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.bytes.data(), kPrefix, sizeof kPrefix) == 0;
}

// Integers enter the hash little-endian whatever the host, so a cookie made on one machine
// validates on another that shares the secrets file.
inline uint8_t* put16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  return p + 2;
}
inline uint8_t* put32(uint8_t* p, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
  return p + 4;
}

// Whether a cookie made at `counter` was made with the current key. Only two keys are kept, so
// rotations must be more than max_age ticks apart or cookies of the key before `previous` fail.
// Serial comparison so that the answer stays right across the (theoretical, 8700-year) wrap of
// the 32-bit counter.
inline bool made_with_current(uint32_t counter, uint32_t since) noexcept {
  return static_cast<int32_t>(counter - since) >= 0;
}

}  // namespace

uint8_t cookie_mss_index(uint16_t mss) noexcept {
  // Largest entry <= mss; upper_bound finds the first entry > mss.
  auto it = std::upper_bound(kCookieMssTable.begin(), kCookieMssTable.end(), mss);
  if (it == kCookieMssTable.begin()) return 0;
  return static_cast<uint8_t>(it - kCookieMssTable.begin() - 1);
}

CookieJar::CookieJar(const CookieSecrets& secrets, uint32_t max_age) noexcept
    : secrets_(secrets), max_age_(std::min(max_age, kMaxAge)) {}

uint32_t CookieJar::hash(const CookieKey& key, const FlowTuple& t, uint32_t client_isn,
                         uint32_t counter, uint8_t mss_index) const noexcept {
  // Both families hash the same fields; IPv4 hashes only the 4 address bytes (21 bytes of input,
  // three SipHash blocks instead of six). The lengths differ, and SipHash mixes the length into
  // its last block, so an IPv4 flow and an IPv6 one never share an input.
  uint8_t in[45];
  uint8_t* p = in;
  if (mapped_v4(t.src) && mapped_v4(t.dst)) {
    p = std::copy_n(t.src.bytes.data() + 12, 4, p);
    p = std::copy_n(t.dst.bytes.data() + 12, 4, p);
  } else {
    p = std::copy_n(t.src.bytes.data(), 16, p);
    p = std::copy_n(t.dst.bytes.data(), 16, p);
  }
  p = put16(p, t.sport);
  p = put16(p, t.dport);
  p = put32(p, client_isn);
  p = put32(p, counter);
  *p++ = mss_index;
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, in, static_cast<unsigned long long>(p - in), key.data());
  uint32_t top = 0;
  for (int i = 0; i < 4; ++i) top |= static_cast<uint32_t>(out[4 + i]) << (8 * i);
  return top >> (32 - kHashBits);
}

uint32_t CookieJar::make(const FlowTuple& t, uint32_t client_isn, uint16_t client_mss,
                         uint32_t counter) const noexcept {
  const uint8_t mss_index = cookie_mss_index(client_mss);
  const CookieKey& key =
      made_with_current(counter, secrets_.current_since) ? secrets_.current : secrets_.previous;
  return (hash(key, t, client_isn, counter, mss_index) << (32 - kHashBits)) |
         ((counter & kCounterMask) << kCounterShift) | mss_index;
}

std::optional<uint16_t> CookieJar::check(const FlowTuple& t, uint32_t client_isn, uint32_t cookie,
                                         uint32_t counter) const noexcept {
  // The cookie carries counter mod 4; its age is the distance back from now in that ring, so a
  // cookie from the future looks 1..3 ticks old and then fails the hash, which covers the full
  // counter.
  const uint32_t age = (counter - (cookie >> kCounterShift)) & kCounterMask;
  if (age > max_age_) return std::nullopt;
  const uint32_t made_at = counter - age;
  const uint8_t mss_index = static_cast<uint8_t>(cookie & kMssMask);
  const CookieKey& key =
      made_with_current(made_at, secrets_.current_since) ? secrets_.current : secrets_.previous;
  if (hash(key, t, client_isn, made_at, mss_index) != cookie >> (32 - kHashBits)) return std::nullopt;
  return kCookieMssTable[mss_index];
}

uint32_t encode_ts_options(uint32_t now_ts, const SynOptionBits& bits) noexcept {
  uint32_t options = bits.has_wscale ? std::min<uint32_t>(bits.wscale, kMaxWindowScale) : 0xFu;
  if (bits.sack_permitted) options |= 1u << 4;
  if (bits.ecn) options |= 1u << 5;
  uint32_t ts = (now_ts & ~kTsOptionMask) | options;
  // Step back one period rather than run ahead of the clock: the backend's later timestamps
  // (offset to ours) must never look older than the SYN-ACK's to the client (PAWS). Unsigned
  // wrap is intended when now_ts < 64: serially that value still lies just before now_ts.
  if (ts > now_ts) ts -= kTsOptionMask + 1;
  return ts;
}

SynOptionBits decode_ts_options(uint32_t echoed_tsval) noexcept {
  SynOptionBits bits;
  const uint32_t wscale = echoed_tsval & 0xFu;
  // 15 means "no window scale"; nothing in between 14 and 15 exists.
  bits.has_wscale = wscale != 0xFu;
  bits.wscale = bits.has_wscale ? static_cast<uint8_t>(wscale) : 0;
  bits.sack_permitted = (echoed_tsval >> 4) & 1u;
  bits.ecn = (echoed_tsval >> 5) & 1u;
  return bits;
}

}  // namespace syngate
