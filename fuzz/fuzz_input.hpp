// What the fuzz targets share: reading typed values off the fuzzer's bytes (zeros once they run
// out, so every input is a complete program), and an invariant check that the fuzzer reports.
#pragma once

#include <cstddef>
#include <cstdint>

namespace syngate::fuzz {

struct Input {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t u8() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  uint32_t u32() { return uint32_t{u16()} << 16 | u16(); }
};

inline void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace syngate::fuzz
