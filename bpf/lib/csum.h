/* Internet checksum helpers for the BPF programs (RFC 1071 sums, RFC 1624 updates). */
#ifndef SYNGATE_BPF_LIB_CSUM_H
#define SYNGATE_BPF_LIB_CSUM_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* One's-complement sum of `len` bytes (a multiple of 4, at most 40) on top of `seed`, unfolded:
 * bpf_csum_diff does the adding, so the bytes may sit on the stack. */
static __always_inline __u32 sum_words(__u8* p, __u32 len, __u32 seed) {
  return (__u32)bpf_csum_diff(0, 0, (__be32*)p, len & 0x3c, seed);
}

/* A 32-bit sum folded to 16 bits and complemented: the value a checksum field holds. */
static __always_inline __u16 fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

/* A checksum field updated for one 16-bit word of the covered data changing from `from` to `to`
 * (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). Field and words in the same byte order, as read
 * from the packet. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 from, __u16 to) {
  __u32 sum = (__u16)~check;
  sum += (__u16)~from;
  sum += to;
  return fold(sum);
}

/* The same for a 32-bit word (two 16-bit halves), e.g. a sequence number or a timestamp. */
static __always_inline __u16 csum_replace32(__u16 check, __u32 from, __u32 to) {
  __u32 sum = (__u16)~check;
  sum += (__u16)~(from >> 16);
  sum += (__u16)~from;
  sum += to >> 16;
  sum += (__u16)to;
  return fold(sum);
}

#endif /* SYNGATE_BPF_LIB_CSUM_H */
