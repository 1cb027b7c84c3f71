// IPv4 ranges for spoofed sources: CIDR parsing, the benchmarking-range safety check, and a
// full-period iterator that visits every usable address of a range before repeating.
// Pure code, no syscalls.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace syngate::flood {

struct Cidr {
  uint32_t base = 0;  // host order, host bits cleared
  uint8_t prefix = 32;

  uint64_t size() const noexcept { return uint64_t{1} << (32 - prefix); }
  uint32_t mask() const noexcept { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  bool contains(uint32_t addr) const noexcept { return (addr & mask()) == base; }
  // True when every address of this range lies inside `outer`.
  bool within(const Cidr& outer) const noexcept { return prefix >= outer.prefix && outer.contains(base); }
  std::string to_string() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// "a.b.c.d/n" or a bare "a.b.c.d" (a /32). Host bits set below the prefix are an error, since
// "10.0.0.1/8" usually means the user mistyped something. On failure `error` says why.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* error = nullptr);

// Strict dotted quad to host order.
std::optional<uint32_t> parse_ipv4(std::string_view text) noexcept;
std::string format_ipv4(uint32_t host_order);

// "IP:PORT" (IPv4). Port 1-65535.
struct Endpoint {
  uint32_t ip = 0;
  uint16_t port = 0;
};
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error = nullptr);

// RFC 2544 benchmarking range, the only one floods may spoof by default.
inline constexpr Cidr kBenchmarkRange{0xC6120000u, 15};  // 198.18.0.0/15

// Visits the addresses of a range in a scrambled order with full period (an LCG modulo the
// range size, a power of two: c odd and a = 1 mod 4 give period 2^k, Hull-Dobell). Ranges of
// four addresses or more skip their first and last address (network and broadcast), which the
// receiving stack may treat as martians.
class AddressIterator {
 public:
  AddressIterator(const Cidr& range, uint64_t seed) noexcept;
  uint32_t next() noexcept;
  uint64_t usable() const noexcept;

 private:
  Cidr range_;
  uint64_t mask_;
  uint64_t state_;
  bool skip_edges_;
};

// Source ports 1024-65535 in a scrambled full-period order (stride coprime with the span).
class PortIterator {
 public:
  explicit PortIterator(uint64_t seed) noexcept;
  uint16_t next() noexcept;

 private:
  uint32_t index_;
};

// xorshift64*: fast, good enough for sequence numbers; not for anything secret.
class FastRandom {
 public:
  explicit FastRandom(uint64_t seed) noexcept : state_(seed ? seed : 0x9E3779B97F4A7C15ULL) {}
  uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }

 private:
  uint64_t state_;
};

// ---- IPv6 ---------------------------------------------------------------------------------

using Ip6 = std::array<uint8_t, 16>;

struct Cidr6 {
  Ip6 base{};  // host bits cleared
  uint8_t prefix = 128;

  bool contains(const Ip6& addr) const noexcept;
  bool within(const Cidr6& outer) const noexcept { return prefix >= outer.prefix && outer.contains(base); }
  std::string to_string() const;
  friend bool operator==(const Cidr6&, const Cidr6&) = default;
};

// RFC 4291 text (what inet_pton accepts, no zone index) with an optional "/n"; host bits set
// below the prefix are an error, as for IPv4.
std::optional<Cidr6> parse_cidr6(std::string_view text, std::string* error = nullptr);
std::optional<Ip6> parse_ipv6(std::string_view text) noexcept;
std::string format_ipv6(const Ip6& addr);

// RFC 5180 benchmarking prefix, the only one IPv6 floods may spoof by default.
inline constexpr Cidr6 kBenchmarkRange6{{0x20, 0x01, 0x00, 0x02}, 48};  // 2001:2::/48

// "[addr]:port".
struct Endpoint6 {
  Ip6 ip{};
  uint16_t port = 0;
};
std::optional<Endpoint6> parse_endpoint6(std::string_view text, std::string* error = nullptr);

// Visits the addresses of an IPv6 range in a scrambled order with full period over its low
// min(128 - prefix, 64) bits (the same LCG as AddressIterator); bits above stay the base's. The
// all-zero host part (the subnet-router anycast address) is skipped.
class AddressIterator6 {
 public:
  AddressIterator6(const Cidr6& range, uint64_t seed) noexcept;
  Ip6 next() noexcept;

 private:
  Ip6 base_;
  uint64_t mask_;
  uint64_t state_;
};

}  // namespace syngate::flood
