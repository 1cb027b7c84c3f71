// A numeric IPv4 or IPv6 address and a port as a socket address (no name lookup).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace syngate::gw {

// Fills `ss` and returns its length, or 0 when `host` is not a numeric IPv4 or IPv6 address.
inline socklen_t socket_address(const std::string& host, uint16_t port, sockaddr_storage& ss) noexcept {
  ss = {};
  if (auto* a4 = reinterpret_cast<sockaddr_in*>(&ss); inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    return sizeof *a4;
  }
  if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss); inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    return sizeof *a6;
  }
  return 0;
}

}  // namespace syngate::gw
