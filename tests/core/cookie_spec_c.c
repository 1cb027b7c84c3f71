/* Compiles the shared cookie specification as plain C (the BPF program's language), so a C++-only
 * construct in the header breaks the build here and not only in the BPF object. */
#include "syngate/spec/cookie_spec.h"

sg_u32 cookie_spec_from_c(const sg_u8 key[16], const sg_u8* src, const sg_u8* dst, int v6, sg_u16 sport,
                          sg_u16 dport, sg_u32 isn, sg_u32 counter, sg_u8 mss_index);

sg_u32 cookie_spec_from_c(const sg_u8 key[16], const sg_u8* src, const sg_u8* dst, int v6, sg_u16 sport,
                          sg_u16 dport, sg_u32 isn, sg_u32 counter, sg_u8 mss_index) {
  struct sg_cookie_flow f = {src, dst, sport, dport, v6};
  return sg_cookie_hash(key, &f, isn, counter, mss_index);
}
