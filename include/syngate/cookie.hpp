// SYN cookies: the ISN of our SYN-ACK proves, when the client's ACK echoes it, that the client saw
// our answer, so the gateway keeps no state for a SYN.
//
// Layout of the 32-bit cookie (our ISN), most significant bit first:
//   bits 31..6  26 bits of SipHash-2-4(key, src, dst, sport, dport, client ISN, counter,
//               MSS index): the MSS index is hashed too, so no bit of the cookie can be changed
//               without detection (a client cannot pick another table entry by editing its ACK)
//   bits  5..4  counter & 3: the validator rebuilds the full counter from `now`, so only ages
//               0 .. max_age (< 4) can be expressed and anything older fails
//   bits  3..0  index into kCookieMssTable (16 steps instead of Linux's 4: 1260 stays 1260)
// A random ACK forges a cookie with probability (accepted ages / 4) * 2^-26 <= 2^-26.
//
// Keys rotate: a CookieSecrets holds the current key, the previous one and the counter at which
// the current one took over; a cookie made at counter c was made with current iff c >= since.
//
// Timestamp option bits (Linux layout): when the client sent timestamps, the low 6 bits of our
// TSval carry what the SYN asked for: bits 0-3 window scale (0xF = none), bit 4 SACK-permitted,
// bit 5 ECN. The ACK echoes them in TSecr.
//
// Pure code except the SecretStore functions at the end, which read and write the secrets file.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "syngate/packet.hpp"
#include "syngate/spec/cookie_spec.h"

namespace syngate {

// Ascending. A client's MSS is rounded down to the nearest entry (never up: we must not promise
// the backend a larger MSS than the client can take). Values below the first entry use it.
// The values live in spec/cookie_spec.h, which the XDP program compiles too.
inline constexpr std::array<uint16_t, 16> kCookieMssTable = SG_COOKIE_MSS_TABLE;

// Cookie time counter period: one tick per 64 seconds (Linux uses 60 s ticks).
inline constexpr uint64_t kCookieTickNs = SG_COOKIE_TICK_NS;
inline constexpr uint32_t cookie_counter(uint64_t now_ns) noexcept {
  return static_cast<uint32_t>(now_ns / kCookieTickNs);
}

using CookieKey = std::array<uint8_t, 16>;

struct CookieSecrets {
  CookieKey current{};
  CookieKey previous{};
  uint32_t current_since = 0;  // cookie counter at which `current` took over
  friend bool operator==(const CookieSecrets&, const CookieSecrets&) = default;
};

// Index of the largest table entry <= mss (0 when mss is below the first entry).
uint8_t cookie_mss_index(uint16_t mss) noexcept;

class CookieJar {
 public:
  // max_age: how many ticks old a cookie may be and still validate (0..3). Default 1: a cookie
  // stays valid for 64..128 s, longer than any SYN-ACK retransmission schedule needs.
  explicit CookieJar(const CookieSecrets& secrets, uint32_t max_age = 1) noexcept;

  // ISN for the SYN-ACK answering a SYN with `client_isn` over tuple t (client -> server).
  uint32_t make(const FlowTuple& t, uint32_t client_isn, uint16_t client_mss,
                uint32_t counter) const noexcept;

  // For the client's ACK over t (client -> server): client_isn = seq - 1, cookie = ack - 1.
  // Returns the MSS the cookie carries (a table entry), or nullopt when it is forged, expired,
  // or for another tuple.
  std::optional<uint16_t> check(const FlowTuple& t, uint32_t client_isn, uint32_t cookie,
                                uint32_t counter) const noexcept;

  const CookieSecrets& secrets() const noexcept { return secrets_; }
  uint32_t max_age() const noexcept { return max_age_; }

 private:
  CookieSecrets secrets_;
  uint32_t max_age_;
  sg_cookie_secrets spec_;  // the same keys in the shared specification's form
};

// What the client's SYN asked for, carried through the timestamp.
struct SynOptionBits {
  bool has_wscale = false;
  uint8_t wscale = 0;
  bool sack_permitted = false;
  bool ecn = false;
};
inline constexpr uint32_t kTsOptionBits = 6;
inline constexpr uint32_t kTsOptionMask = (1u << kTsOptionBits) - 1;

// Our SYN-ACK TSval: `now_ts` with its low 6 bits replaced by the option bits, never ahead of
// now_ts (so the clock the client sees never runs backwards later).
uint32_t encode_ts_options(uint32_t now_ts, const SynOptionBits& bits) noexcept;
SynOptionBits decode_ts_options(uint32_t echoed_tsval) noexcept;

// ---- Secrets file (the only I/O here) ---------------------------------------------------------
// Fresh random secrets from libsodium.
CookieSecrets generate_secrets(uint32_t counter_now);
// Returns a new current key, the old current becomes previous, since = counter_now.
CookieSecrets rotate_secrets(const CookieSecrets& old, uint32_t counter_now);
// Reads secrets from `path`; if the file does not exist, creates it (mode 0600, atomically) with
// generate_secrets(counter_now). Refuses (throws std::runtime_error naming the reason) a file that
// is malformed or readable by group/other.
CookieSecrets load_or_create_secrets(const std::string& path, uint32_t counter_now);
// Writes atomically: temp file in the same directory, mode 0600, fsync, rename.
void save_secrets(const std::string& path, const CookieSecrets& secrets);

}  // namespace syngate
