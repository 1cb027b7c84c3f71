/* Byte helpers for the BPF programs: big-endian loads and stores on byte pointers (packet or
 * stack, so no alignment is assumed) and the engine's address form. */
#ifndef SYNGATE_BPF_LIB_BYTES_H
#define SYNGATE_BPF_LIB_BYTES_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u16 load_be16(const __u8* p) { return (__u16)(p[0] << 8 | p[1]); }

static __always_inline __u32 load_be32(const __u8* p) {
  return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __always_inline void store_be16(__u8* p, __u16 v) {
  p[0] = v >> 8;
  p[1] = v;
}

static __always_inline void store_be32(__u8* p, __u32 v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

/* An IPv4 address as the engine's Address holds it: v4-mapped, ::ffff:a.b.c.d. Bytes 0-9 of
 * `out` are left as they are (zero in a zeroed key). */
static __always_inline void v4_mapped_from(__u8* out, const __u8* ip4) {
  out[10] = out[11] = 0xff;
  __builtin_memcpy(out + 12, ip4, 4);
}

#endif /* SYNGATE_BPF_LIB_BYTES_H */
