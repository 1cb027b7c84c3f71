/* Internet checksum helpers for the BPF programs (RFC 1071 sums, RFC 1624 updates). */
#ifndef SYNGATE_BPF_LIB_CSUM_H
#define SYNGATE_BPF_LIB_CSUM_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "syngate/spec/xlate_spec.h"

/* One's-complement sum of `len` bytes (a multiple of 4, at most 40) on top of `seed`, unfolded:
 * bpf_csum_diff does the adding, so the bytes may sit on the stack. */
static __always_inline __u32 sum_words(__u8* p, __u32 len, __u32 seed) {
  return (__u32)bpf_csum_diff(0, 0, (__be32*)p, len & 0x3c, seed);
}

/* A 32-bit sum folded to 16 bits and complemented: the value a checksum field holds. */
static __always_inline __u16 fold(__u32 sum) { return (__u16)~sg_csum_fold(sum); }

/* A checksum field updated for one 16-bit (or 32-bit) word of the covered data changing from
 * `from` to `to` (RFC 1624): the arithmetic is the translation spec's (xlate_spec.h), which the
 * engine and the tc program apply too. Field and words in the same byte order. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 from, __u16 to) {
  return sg_csum_apply(check, sg_csum_fold(sg_csum_diff16(from, to)));
}
static __always_inline __u16 csum_replace32(__u16 check, __u32 from, __u32 to) {
  return sg_csum_apply(check, sg_csum_fold(sg_csum_diff32(from, to)));
}

#endif /* SYNGATE_BPF_LIB_CSUM_H */
