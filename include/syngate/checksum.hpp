// Internet checksums (RFC 1071) and their incremental update (RFC 1624).
// Pure functions over bytes: no syscalls, usable from the core and the tools alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace syngate {

// One's-complement sum of `data` (big-endian 16-bit words, odd tail padded with zero),
// added to `initial`. The result is not folded; feed it to csum_fold().
uint32_t csum_partial(std::span<const uint8_t> data, uint32_t initial = 0) noexcept;

// Folds a 32-bit partial sum to 16 bits and complements it: the value to store in a header.
uint16_t csum_fold(uint32_t sum) noexcept;

// TCP checksum over a whole segment (header + payload) with the IPv4 / IPv6 pseudo-header.
// `segment` must have its checksum field zeroed or the result will not verify.
uint16_t tcp_checksum_v4(std::span<const uint8_t, 4> src, std::span<const uint8_t, 4> dst,
                         std::span<const uint8_t> segment) noexcept;
uint16_t tcp_checksum_v6(std::span<const uint8_t, 16> src, std::span<const uint8_t, 16> dst,
                         std::span<const uint8_t> segment) noexcept;

// IPv4 header checksum (header with its checksum field zeroed).
uint16_t ipv4_header_checksum(std::span<const uint8_t> header) noexcept;

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Values are host order, as stored big-endian in the packet.
uint16_t csum_replace16(uint16_t check, uint16_t old_value, uint16_t new_value) noexcept;
uint16_t csum_replace32(uint16_t check, uint32_t old_value, uint32_t new_value) noexcept;

}  // namespace syngate
