// SYN cookies: the arithmetic is include/syngate/spec/cookie_spec.h, shared with the XDP
// program; this file adapts it to Address/FlowTuple. Pure code: no syscalls, no allocation, no
// clocks (the caller passes the counter).
#include "syngate/cookie.hpp"

#include <algorithm>
#include <cstring>

namespace syngate {

namespace {

static_assert(kCookieMssTable.size() == SG_COOKIE_MSS_MASK + 1, "4 bits of MSS index in the cookie");
static_assert(std::is_sorted(kCookieMssTable.begin(), kCookieMssTable.end()));
static_assert(SG_COOKIE_HASH_BITS + 2 + 4 == 32);
static_assert(kTsOptionBits == SG_TS_OPTION_BITS && kMaxWindowScale == SG_MAX_WSCALE);

// IPv4 hashes only the 4 address bytes (three SipHash blocks instead of six); a tuple with one
// mapped and one native address is hashed as IPv6, whole.
inline sg_cookie_flow spec_flow(const FlowTuple& t) noexcept {
  const bool v4 = t.src.is_v4() && t.dst.is_v4();
  const int skip = v4 ? 12 : 0;
  return {t.src.bytes.data() + skip, t.dst.bytes.data() + skip, t.sport, t.dport, v4 ? 0 : 1};
}

inline sg_cookie_secrets spec_secrets(const CookieSecrets& s, uint32_t max_age) noexcept {
  sg_cookie_secrets out;
  std::memcpy(out.current, s.current.data(), sizeof out.current);
  std::memcpy(out.previous, s.previous.data(), sizeof out.previous);
  out.current_since = s.current_since;
  out.max_age = max_age;
  return out;
}

}  // namespace

uint8_t cookie_mss_index(uint16_t mss) noexcept { return sg_cookie_mss_index(mss); }

CookieJar::CookieJar(const CookieSecrets& secrets, uint32_t max_age) noexcept
    : secrets_(secrets),
      max_age_(std::min<uint32_t>(max_age, SG_COOKIE_MAX_AGE)),
      spec_(spec_secrets(secrets_, max_age_)) {}

uint32_t CookieJar::make(const FlowTuple& t, uint32_t client_isn, uint16_t client_mss,
                         uint32_t counter) const noexcept {
  const sg_cookie_flow f = spec_flow(t);
  return sg_cookie_make(&spec_, &f, client_isn, client_mss, counter);
}

std::optional<uint16_t> CookieJar::check(const FlowTuple& t, uint32_t client_isn, uint32_t cookie,
                                         uint32_t counter) const noexcept {
  const sg_cookie_flow f = spec_flow(t);
  const uint16_t mss = sg_cookie_check(&spec_, &f, client_isn, cookie, counter);
  if (mss == 0) return std::nullopt;
  return mss;
}

uint32_t encode_ts_options(uint32_t now_ts, const SynOptionBits& bits) noexcept {
  const sg_syn_option_bits b{bits.has_wscale, bits.wscale, bits.sack_permitted, bits.ecn};
  return sg_encode_ts_options(now_ts, &b);
}

SynOptionBits decode_ts_options(uint32_t echoed_tsval) noexcept {
  const sg_syn_option_bits b = sg_decode_ts_options(echoed_tsval);
  SynOptionBits bits;
  bits.has_wscale = b.has_wscale;
  bits.wscale = b.wscale;
  bits.sack_permitted = b.sack_permitted;
  bits.ecn = b.ecn;
  return bits;
}

}  // namespace syngate
