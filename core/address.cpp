#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "syngate/packet.hpp"

namespace syngate {

Address Address::from_v4(uint32_t host_order) noexcept {
  const uint8_t b[4] = {static_cast<uint8_t>(host_order >> 24), static_cast<uint8_t>(host_order >> 16),
                        static_cast<uint8_t>(host_order >> 8), static_cast<uint8_t>(host_order)};
  return from_v4(std::span<const uint8_t, 4>(b, 4));
}

Address Address::from_v6(std::span<const uint8_t, 16> v6) noexcept {
  Address a;
  std::memcpy(a.bytes.data(), v6.data(), 16);
  return a;
}

uint32_t Address::v4_host_order() const noexcept {
  return (uint32_t{bytes[12]} << 24) | (uint32_t{bytes[13]} << 16) | (uint32_t{bytes[14]} << 8) |
         bytes[15];
}

std::optional<Address> Address::parse(std::string_view text) noexcept {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  uint8_t raw[16];
  if (inet_pton(AF_INET, buf, raw) == 1) return from_v4(std::span<const uint8_t, 4>(raw, 4));
  // A v4-mapped IPv6 text would silently become an IPv4 address; refuse the ambiguity.
  if (inet_pton(AF_INET6, buf, raw) == 1) {
    Address a = from_v6(std::span<const uint8_t, 16>(raw, 16));
    if (a.is_v4()) return std::nullopt;
    return a;
  }
  return std::nullopt;
}

std::string Address::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  const char* r = is_v4() ? inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf)
                          : inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  return r ? std::string(r) : std::string("?");
}

}  // namespace syngate
