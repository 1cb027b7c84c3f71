/* Compiles the flow translation specification as plain C (the BPF programs' language), so a
 * C++-only construct in the header breaks the build here and not only in a BPF object. */
#include "syngate/spec/flow_spec.h"
#include "syngate/spec/xlate_spec.h"

sg_u16 flow_spec_rescale_from_c(sg_u16 field, sg_u8 from, sg_u8 to);
int flow_spec_rst_check_from_c(sg_u32 seq, sg_u32 sender_next, sg_u32 receiver_acked, sg_u32 window, int known);
sg_u16 xlate_spec_from_c(struct sg_xlate_segment* s, const struct sg_xlate_params* p);
void xlate_track_from_c(struct sg_flow_track* self, int self_seen, const struct sg_flow_track* peer, int peer_seen,
                        sg_u32 seq, sg_u32 seq_end, sg_u32 ack, sg_u32 window_bytes);

sg_u16 flow_spec_rescale_from_c(sg_u16 field, sg_u8 from, sg_u8 to) { return sg_window_rescale(field, from, to); }
int flow_spec_rst_check_from_c(sg_u32 seq, sg_u32 sender_next, sg_u32 receiver_acked, sg_u32 window, int known) {
  return (int)sg_rst_check(seq, sender_next, receiver_acked, window, known);
}
sg_u16 xlate_spec_from_c(struct sg_xlate_segment* s, const struct sg_xlate_params* p) { return sg_xlate(s, p); }
void xlate_track_from_c(struct sg_flow_track* self, int self_seen, const struct sg_flow_track* peer, int peer_seen,
                        sg_u32 seq, sg_u32 seq_end, sg_u32 ack, sg_u32 window_bytes) {
  sg_flow_track_segment(self, self_seen, peer, peer_seen, seq, seq_end, ack, window_bytes);
}

#include "syngate/spec/handover_spec.h"
void handover_spec_from_c(const struct sg_handshake* h, const struct sg_synack* s, struct sg_handover* o);
void handover_spec_from_c(const struct sg_handshake* h, const struct sg_synack* s, struct sg_handover* o) {
  sg_hand_over(h, s, o);
}

#include "syngate/spec/backend_syn_spec.h"
sg_u32 backend_syn_spec_from_c(const struct sg_cookie_ack* a, sg_u8 announced_ws, sg_u16 cookie_mss, int room,
                               struct sg_handshake* h, struct sg_backend_syn* s, sg_u8* options);
sg_u32 backend_syn_spec_from_c(const struct sg_cookie_ack* a, sg_u8 announced_ws, sg_u16 cookie_mss, int room,
                               struct sg_handshake* h, struct sg_backend_syn* s, sg_u8* options) {
  sg_handshake_of_cookie_ack(a, announced_ws, h);
  sg_backend_syn_of(h, cookie_mss, room, s);
  return sg_backend_syn_write_options(s, options);
}
