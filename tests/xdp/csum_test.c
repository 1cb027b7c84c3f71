/* bpf/lib/csum.h's incremental updates (RFC 1624) against a checksum computed afresh over the
 * changed data, on the host (the helpers are plain arithmetic; only sum_words needs the kernel).
 * A checksum of 0x0000 and one of 0xffff are the same one's-complement zero: a receiver's sum
 * over the segment verifies either, so either is accepted. */
#include <stdio.h>

#include "lib/csum.h"

static __u32 state = 0x2545f491u;
static __u32 next_random(void) { /* xorshift32: the same cases on every run */
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return state;
}

static __u16 checksum(const __u16* words, int n) {
  __u32 sum = 0;
  for (int i = 0; i < n; i++) sum += words[i];
  return fold(sum);
}

static int same(__u16 a, __u16 b) { return a == b || ((a == 0 || a == 0xffff) && (b == 0 || b == 0xffff)); }

int main(void) {
  enum { WORDS = 10, CASES = 200000 };
  for (int t = 0; t < CASES; t++) {
    __u16 w[WORDS];
    for (int i = 0; i < WORDS; i++) w[i] = (__u16)next_random();
    /* Zero and all-ones words and checksums, where one's-complement arithmetic has its edges. */
    if (t % 5 == 0) w[2] = w[3] = 0;
    if (t % 7 == 0) w[4] = 0xffff;
    const __u16 before = checksum(w, WORDS);

    const __u32 from32 = (__u32)w[2] << 16 | w[3];
    const __u32 to32 = t % 3 == 0 ? 0xffffffffu : next_random();
    w[2] = (__u16)(to32 >> 16);
    w[3] = (__u16)to32;
    const __u16 after32 = csum_replace32(before, from32, to32);
    if (!same(after32, checksum(w, WORDS))) {
      printf("csum_replace32: case %d: %04x, afresh %04x\n", t, after32, checksum(w, WORDS));
      return 1;
    }

    const __u16 from16 = w[4];
    const __u16 to16 = t % 11 == 0 ? 0 : (__u16)next_random();
    w[4] = to16;
    const __u16 after16 = csum_replace16(after32, from16, to16);
    if (!same(after16, checksum(w, WORDS))) {
      printf("csum_replace16: case %d: %04x, afresh %04x\n", t, after16, checksum(w, WORDS));
      return 1;
    }
  }
  printf("%d cases: incremental updates match checksums computed afresh\n", CASES);
  return 0;
}
