/* The backend's SYN: what a client's proven cookie ACK makes syngate send the backend on the
 * client's behalf, specified once on plain values for every data path that may send it (the
 * NFQUEUE engine, core/engine.cpp, today; the tc program that will take the cookie ACK next).
 * Plain C with no library calls, like handover_spec.h: C++20, C and BPF C compile it.
 *
 * The cookie ACK carries all that is left of the client's SYN: its ISN (the ACK's sequence number
 * less one), our cookie's ISN (its ack less one), the MSS (the cookie, cookie_spec.h) and, when
 * the client sends timestamps, the options our SYN-ACK promised in the low bits of the TSval it
 * echoes (sg_decode_ts_options): window scale, SACK, ECN. A client without timestamps was
 * promised none of them. The backend's SYN asks for exactly what the client was promised, from
 * the client's own ISN, with its own window and TSval, so that the backend's SYN-ACK fixes a
 * translation (handover_spec.h) the client's segments need no more than an offset of. */
#ifndef SYNGATE_SPEC_BACKEND_SYN_SPEC_H
#define SYNGATE_SPEC_BACKEND_SYN_SPEC_H

#include "syngate/spec/cookie_spec.h"
#include "syngate/spec/handover_spec.h"
#include "syngate/spec/syn_rules.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The client's cookie ACK (its cookie checked), host order. */
struct sg_cookie_ack {
  sg_u32 seq;
  sg_u32 ack;
  sg_u32 tsval;  /* when has_ts */
  sg_u32 tsecr;  /* when has_ts: our cookie SYN-ACK's TSval, the promised options in its low bits */
  sg_u16 window; /* in the client's scale */
  sg_u8 has_ts;
  sg_u8 pad;
};

/* The TCP options a backend's SYN carries at most: MSS (4), SACK-permitted or two NOPs with the
 * timestamps (12), NOP and window scale (4). */
#define SG_BACKEND_SYN_MAX_OPTIONS 20u
/* What the timestamps syngate supplies a client take of every segment to it (NOP NOP TS): the MSS
 * the backend is asked to send less, when its segments are to grow by them on their way. */
#define SG_SUPPLIED_TIMESTAMPS_ROOM 12u
#define SG_MIN_BACKEND_SYN_MSS 64u

/* The backend's SYN, host order. */
struct sg_backend_syn {
  sg_u32 seq;   /* the client's ISN */
  sg_u32 tsval; /* when has_ts: the client's newest TSval; the TSecr is 0 */
  sg_u16 window; /* the client's window unscaled (a SYN's never is), as far as 16 bits hold it */
  sg_u16 mss;
  sg_u8 flags;   /* SYN, with ECE and CWR when the client asked for ECN */
  sg_u8 has_ts;
  sg_u8 sack_permitted;
  sg_u8 has_wscale;
  sg_u8 wscale;  /* when has_wscale: the client's shift */
  sg_u8 pad[3];
};

/* The handshake record (handover_spec.h) a proven cookie ACK starts, `announced_ws` being the
 * shift our cookie SYN-ACK announced. */
SG_INLINE void sg_handshake_of_cookie_ack(const struct sg_cookie_ack* a, sg_u8 announced_ws, struct sg_handshake* h) {
  h->client_isn = a->seq - 1u;
  h->cookie_isn = a->ack - 1u;
  h->client_window = a->window;
  h->announced_ws = announced_ws;
  h->client_ws = (sg_u8)SG_FLOW_NO_WSCALE;
  h->asked = 0;
  h->our_tsval = 0;
  h->client_tsval = 0;
  h->pad[0] = h->pad[1] = h->pad[2] = 0;
  if (!a->has_ts) return;
  const struct sg_syn_option_bits b = sg_decode_ts_options(a->tsecr);
  h->our_tsval = a->tsecr;
  h->client_tsval = a->tsval;
  h->asked = (sg_u8)(SG_HS_TIMESTAMPS | (b.sack_permitted ? SG_HS_SACK : 0u) | (b.ecn ? SG_HS_ECN : 0u));
  if (b.has_wscale) h->client_ws = b.wscale;
}

/* The SYN for handshake `h` with the cookie's MSS. `room_for_timestamps`: the client was promised
 * timestamps the backend does not send, so the backend is asked for segments that much smaller. */
SG_INLINE void sg_backend_syn_of(const struct sg_handshake* h, sg_u16 cookie_mss, int room_for_timestamps,
                                 struct sg_backend_syn* s) {
  const int scales = h->client_ws != SG_FLOW_NO_WSCALE;
  const sg_u64 window = (sg_u64)h->client_window << (scales ? h->client_ws : 0u);
  s->seq = h->client_isn;
  s->window = (sg_u16)(window < 0xffffu ? window : 0xffffu);
  s->mss = cookie_mss;
  if (room_for_timestamps) {
    s->mss = (sg_u16)(cookie_mss > SG_MIN_BACKEND_SYN_MSS + SG_SUPPLIED_TIMESTAMPS_ROOM
                          ? cookie_mss - SG_SUPPLIED_TIMESTAMPS_ROOM
                          : SG_MIN_BACKEND_SYN_MSS);
  }
  s->flags = (sg_u8)(SG_TCP_SYN | ((h->asked & SG_HS_ECN) ? (SG_TCP_ECE | SG_TCP_CWR) : 0u));
  s->has_ts = (sg_u8)((h->asked & SG_HS_TIMESTAMPS) != 0);
  s->tsval = s->has_ts ? h->client_tsval : 0u;
  s->sack_permitted = (sg_u8)(s->has_ts && (h->asked & SG_HS_SACK) != 0);
  s->has_wscale = (sg_u8)scales;
  s->wscale = scales ? (h->client_ws < SG_MAX_WSCALE ? h->client_ws : (sg_u8)SG_MAX_WSCALE) : 0u;
  s->pad[0] = s->pad[1] = s->pad[2] = 0;
}

/* The SYN's options into out[SG_BACKEND_SYN_MAX_OPTIONS], laid out as Linux lays out its own SYN's
 * (MSS; SACK-permitted or two NOPs, then the timestamps; NOP and window scale); returns their
 * length, a multiple of 4. A client without timestamps was promised no SACK (the cookie had
 * nowhere to keep it), so SACK-permitted never goes without them. */
SG_INLINE sg_u32 sg_backend_syn_write_options(const struct sg_backend_syn* s, sg_u8* out) {
  sg_u32 n = 0;
  out[0] = SG_OPT_MSS;
  out[1] = 4;
  out[2] = (sg_u8)(s->mss >> 8);
  out[3] = (sg_u8)s->mss;
  n = 4;
  if (s->has_ts) {
    out[4] = s->sack_permitted ? SG_OPT_SACK_PERM : SG_OPT_NOP;
    out[5] = s->sack_permitted ? 2 : SG_OPT_NOP;
    out[6] = SG_OPT_TIMESTAMP;
    out[7] = 10;
    out[8] = (sg_u8)(s->tsval >> 24);
    out[9] = (sg_u8)(s->tsval >> 16);
    out[10] = (sg_u8)(s->tsval >> 8);
    out[11] = (sg_u8)s->tsval;
    out[12] = out[13] = out[14] = out[15] = 0; /* TSecr */
    n = 16;
  }
  if (s->has_wscale) {
    out[n] = SG_OPT_NOP;
    out[n + 1] = SG_OPT_WSCALE;
    out[n + 2] = 3;
    out[n + 3] = s->wscale;
    n += 4;
  }
  return n;
}

#ifdef __cplusplus
}
#endif

#endif /* SYNGATE_SPEC_BACKEND_SYN_SPEC_H */
