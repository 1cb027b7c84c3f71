/* Compiles the flow translation specification as plain C (the BPF programs' language), so a
 * C++-only construct in the header breaks the build here and not only in a BPF object. */
#include "syngate/spec/flow_spec.h"

sg_u16 flow_spec_rescale_from_c(sg_u16 field, sg_u8 from, sg_u8 to);
int flow_spec_rst_check_from_c(sg_u32 seq, sg_u32 sender_next, sg_u32 receiver_acked, sg_u32 window, int known);

sg_u16 flow_spec_rescale_from_c(sg_u16 field, sg_u8 from, sg_u8 to) { return sg_window_rescale(field, from, to); }
int flow_spec_rst_check_from_c(sg_u32 seq, sg_u32 sender_next, sg_u32 receiver_acked, sg_u32 window, int known) {
  return (int)sg_rst_check(seq, sender_next, receiver_acked, window, known);
}
