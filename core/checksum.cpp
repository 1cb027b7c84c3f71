#include "syngate/checksum.hpp"

#include <cstring>

#include "syngate/spec/xlate_spec.h"

namespace syngate {
namespace {

// Folds a 64-bit accumulator into 32 bits without losing carries.
uint32_t fold64(uint64_t sum) noexcept {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  return static_cast<uint32_t>(sum);
}

uint32_t load_be32(const uint8_t* p) noexcept {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

uint32_t csum_partial(std::span<const uint8_t> data, uint32_t initial) noexcept {
  // Summing big-endian 32-bit words is congruent to summing 16-bit words modulo 0xffff
  // (hi * 65536 + lo == hi + lo), so a 64-bit accumulator over 32-bit loads gives the same fold.
  uint64_t sum = initial;
  const uint8_t* p = data.data();
  size_t n = data.size();
  while (n >= 16) {
    sum += load_be32(p);
    sum += load_be32(p + 4);
    sum += load_be32(p + 8);
    sum += load_be32(p + 12);
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    sum += load_be32(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    sum += (uint32_t{p[0]} << 8) | p[1];
    p += 2;
    n -= 2;
  }
  if (n == 1) sum += uint32_t{p[0]} << 8;
  return fold64(sum);
}

uint16_t csum_fold(uint32_t sum) noexcept {
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffffu);
}

uint16_t tcp_checksum_v4(std::span<const uint8_t, 4> src, std::span<const uint8_t, 4> dst,
                         std::span<const uint8_t> segment) noexcept {
  uint64_t pseudo = uint64_t{load_be32(src.data())} + load_be32(dst.data()) + 6u + segment.size();
  return csum_fold(csum_partial(segment, fold64(pseudo)));
}

uint16_t tcp_checksum_v6(std::span<const uint8_t, 16> src, std::span<const uint8_t, 16> dst,
                         std::span<const uint8_t> segment) noexcept {
  uint32_t sum = csum_partial(src);
  sum = csum_partial(dst, sum);
  uint64_t wide = uint64_t{sum} + segment.size() + 6u;  // upper-layer length (32 bits) + next header
  return csum_fold(csum_partial(segment, fold64(wide)));
}

uint16_t ipv4_header_checksum(std::span<const uint8_t> header) noexcept {
  return csum_fold(csum_partial(header));
}

// The arithmetic is xlate_spec.h's, which the BPF programs compile too.
uint16_t csum_replace16(uint16_t check, uint16_t old_value, uint16_t new_value) noexcept {
  return sg_csum_apply(check, sg_csum_fold(sg_csum_diff16(old_value, new_value)));
}

uint16_t csum_replace32(uint16_t check, uint32_t old_value, uint32_t new_value) noexcept {
  return sg_csum_apply(check, sg_csum_fold(sg_csum_diff32(old_value, new_value)));
}

}  // namespace syngate
