/* Integer types and inlining for the plain-C specification headers, which compile as C++20 (the
 * core), as C (a test) and as BPF C (clang -target bpf). Identical typedefs may repeat in C11 and
 * C++, so headers that still carry their own copy of these lines stay compatible. */
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

#endif /* SYNGATE_SPEC_SG_TYPES_H */
