// Ethernet frames around IP packets, for BPF_PROG_TEST_RUN of the tc programs (padded to the
// 60-byte minimum as a NIC would deliver them).
#pragma once

#include <cstdint>

#include "syngate_test/segments.hpp"

namespace syngate::test {

inline Bytes ethernet_frame(const Bytes& ip, const uint8_t (&dst)[6], const uint8_t (&src)[6]) {
  Bytes f;
  for (uint8_t b : dst) f.push_back(b);
  for (uint8_t b : src) f.push_back(b);
  const bool v6 = (ip[0] >> 4) == 6;
  f.push_back(v6 ? 0x86 : 0x08);
  f.push_back(v6 ? 0xdd : 0x00);
  f.insert(f.end(), ip.begin(), ip.end());
  while (f.size() < 60) f.push_back(0);
  return f;
}

}  // namespace syngate::test
