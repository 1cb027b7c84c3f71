#include "addr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace syngate::flood {

namespace {

bool parse_uint(std::string_view s, uint64_t max, uint64_t& out) noexcept {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > max) return false;
  out = v;
  return true;
}

void set_error(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
}

}  // namespace

std::optional<uint32_t> parse_ipv4(std::string_view text) noexcept {
  uint32_t addr = 0;
  for (int i = 0; i < 4; ++i) {
    const size_t dot = text.find('.');
    const std::string_view part = i < 3 ? text.substr(0, dot) : text;
    if (i < 3 && dot == std::string_view::npos) return std::nullopt;
    // Leading zeros are ambiguous (some parsers read them as octal): refuse them.
    if (part.size() > 1 && part[0] == '0') return std::nullopt;
    uint64_t octet = 0;
    if (!parse_uint(part, 255, octet)) return std::nullopt;
    addr = (addr << 8) | static_cast<uint32_t>(octet);
    if (i < 3) text.remove_prefix(dot + 1);
  }
  return addr;
}

std::string format_ipv4(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

std::string Cidr::to_string() const { return format_ipv4(base) + "/" + std::to_string(prefix); }

std::optional<Cidr> parse_cidr(std::string_view text, std::string* error) {
  const size_t slash = text.find('/');
  const auto addr = parse_ipv4(text.substr(0, slash));
  if (!addr) {
    set_error(error, "not an IPv4 address: '" + std::string(text.substr(0, slash)) + "'");
    return std::nullopt;
  }
  uint64_t prefix = 32;
  if (slash != std::string_view::npos && !parse_uint(text.substr(slash + 1), 32, prefix)) {
    set_error(error, "bad prefix length in '" + std::string(text) + "' (expected 0-32)");
    return std::nullopt;
  }
  Cidr c{*addr, static_cast<uint8_t>(prefix)};
  if ((c.base & c.mask()) != c.base) {
    set_error(error, "'" + std::string(text) + "' has host bits set (did you mean " +
                         Cidr{c.base & c.mask(), c.prefix}.to_string() + "?)");
    return std::nullopt;
  }
  return c;
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    set_error(error, "expected IP:PORT, got '" + std::string(text) + "'");
    return std::nullopt;
  }
  const auto ip = parse_ipv4(text.substr(0, colon));
  uint64_t port = 0;
  if (!ip) {
    set_error(error, "not an IPv4 address: '" + std::string(text.substr(0, colon)) + "'");
    return std::nullopt;
  }
  if (!parse_uint(text.substr(colon + 1), 65535, port) || port == 0) {
    set_error(error, "bad port in '" + std::string(text) + "' (expected 1-65535)");
    return std::nullopt;
  }
  return Endpoint{*ip, static_cast<uint16_t>(port)};
}

AddressIterator::AddressIterator(const Cidr& range, uint64_t seed) noexcept
    : range_(range), mask_(range.size() - 1), state_(seed & (range.size() - 1)),
      skip_edges_(range.size() >= 4) {}

uint64_t AddressIterator::usable() const noexcept { return skip_edges_ ? range_.size() - 2 : range_.size(); }

uint32_t AddressIterator::next() noexcept {
  for (;;) {
    // a = 1 (mod 4) and c odd: full period modulo any power of two.
    state_ = (state_ * 6364136223846793005ULL + 1442695040888963407ULL) & mask_;
    if (skip_edges_ && (state_ == 0 || state_ == mask_)) continue;
    return range_.base + static_cast<uint32_t>(state_);
  }
}

namespace {
constexpr uint32_t kPortSpan = 65536 - 1024;  // 64512 = 2^10 * 63
constexpr uint32_t kPortStride = 40499;       // not a multiple of 2, 3 or 7: coprime with the span
}  // namespace

PortIterator::PortIterator(uint64_t seed) noexcept : index_(static_cast<uint32_t>(seed % kPortSpan)) {}

uint16_t PortIterator::next() noexcept {
  index_ = (index_ + kPortStride) % kPortSpan;
  return static_cast<uint16_t>(1024 + index_);
}

// ---- IPv6 ---------------------------------------------------------------------------------

namespace {
Ip6 masked(const Ip6& a, uint8_t prefix) noexcept {
  Ip6 out{};
  for (size_t i = 0; i < 16; ++i) {
    const int bits = std::clamp(static_cast<int>(prefix) - static_cast<int>(i * 8), 0, 8);
    out[i] = static_cast<uint8_t>(a[i] & static_cast<uint8_t>(0xff00u >> bits));
  }
  return out;
}
}  // namespace

bool Cidr6::contains(const Ip6& addr) const noexcept { return masked(addr, prefix) == base; }

std::string Cidr6::to_string() const { return format_ipv6(base) + "/" + std::to_string(prefix); }

std::optional<Ip6> parse_ipv6(std::string_view text) noexcept {
  // inet_pton is pure parsing (no syscall); it needs a terminated string.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  Ip6 out{};
  if (::inet_pton(AF_INET6, buf, out.data()) != 1) return std::nullopt;
  return out;
}

std::string format_ipv6(const Ip6& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
  return buf;
}

std::optional<Cidr6> parse_cidr6(std::string_view text, std::string* error) {
  const size_t slash = text.find('/');
  const auto addr = parse_ipv6(text.substr(0, slash));
  if (!addr) {
    set_error(error, "not an IPv6 address: '" + std::string(text.substr(0, slash)) + "'");
    return std::nullopt;
  }
  uint64_t prefix = 128;
  if (slash != std::string_view::npos && !parse_uint(text.substr(slash + 1), 128, prefix)) {
    set_error(error, "bad prefix length in '" + std::string(text) + "' (expected 0-128)");
    return std::nullopt;
  }
  const Cidr6 c{masked(*addr, static_cast<uint8_t>(prefix)), static_cast<uint8_t>(prefix)};
  if (c.base != *addr) {
    set_error(error, "'" + std::string(text) + "' has host bits set (did you mean " + c.to_string() + "?)");
    return std::nullopt;
  }
  return c;
}

std::optional<Endpoint6> parse_endpoint6(std::string_view text, std::string* error) {
  const size_t close = text.find("]:");
  if (text.empty() || text[0] != '[' || close == std::string_view::npos) {
    set_error(error, "expected [IPv6]:PORT, got '" + std::string(text) + "'");
    return std::nullopt;
  }
  const auto ip = parse_ipv6(text.substr(1, close - 1));
  if (!ip) {
    set_error(error, "not an IPv6 address: '" + std::string(text.substr(1, close - 1)) + "'");
    return std::nullopt;
  }
  uint64_t port = 0;
  if (!parse_uint(text.substr(close + 2), 65535, port) || port == 0) {
    set_error(error, "bad port in '" + std::string(text) + "' (expected 1-65535)");
    return std::nullopt;
  }
  return Endpoint6{*ip, static_cast<uint16_t>(port)};
}

AddressIterator6::AddressIterator6(const Cidr6& range, uint64_t seed) noexcept : base_(range.base) {
  const int bits = std::min(128 - static_cast<int>(range.prefix), 64);
  mask_ = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
  state_ = seed & mask_;
}

Ip6 AddressIterator6::next() noexcept {
  if (mask_ == 0) return base_;  // a /128 (or a /64 and longer with nothing left to vary)
  do {
    state_ = (state_ * 6364136223846793005ULL + 1442695040888963407ULL) & mask_;
  } while (state_ == 0);
  Ip6 out = base_;
  for (int i = 0; i < 8; ++i) out[15 - i] = static_cast<uint8_t>(out[15 - i] | ((state_ >> (8 * i)) & 0xff));
  return out;
}

}  // namespace syngate::flood
