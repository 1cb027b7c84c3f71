/* Integer types, inlining and the TCP constants every plain-C specification header shares. Those
 * headers compile as C++20 (the core), as C (tests) and as BPF C (clang -target bpf). */
#ifndef SYNGATE_SPEC_SG_TYPES_H
#define SYNGATE_SPEC_SG_TYPES_H

#if defined(__bpf__)
#include <linux/types.h>
typedef __u8 sg_u8;
typedef __u16 sg_u16;
typedef __u32 sg_u32;
typedef __s32 sg_s32;
typedef __u64 sg_u64;
#define SG_INLINE static inline __attribute__((always_inline))
#else
#include <stdint.h>
typedef uint8_t sg_u8;
typedef uint16_t sg_u16;
typedef uint32_t sg_u32;
typedef int32_t sg_s32;
typedef uint64_t sg_u64;
#define SG_INLINE static inline
#endif

/* RFC 7323 2.3: a window scale above 14 is treated as 14. */
#define SG_MAX_WSCALE 14u
/* The MSS assumed for a SYN without the option: RFC 9293 3.7.1 for IPv4; for IPv6 the minimum
 * MTU (RFC 8200) less the headers. */
#define SG_DEFAULT_MSS_V4 536u
#define SG_DEFAULT_MSS_V6 1220u

#endif /* SYNGATE_SPEC_SG_TYPES_H */
