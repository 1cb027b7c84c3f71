/* The hand-over: what the backend's SYN-ACK makes of a proxied handshake, specified once on plain
 * values for every data path that may take it (the NFQUEUE engine, core/engine.cpp, today; a tc
 * program next). Plain C with no library calls, like flow_spec.h: C++20, C and BPF C compile it.
 *
 * When the client's ACK proves its cookie, syngate sends the backend a SYN with the client's own
 * ISN and options (struct sg_handshake keeps what that step knew). The backend's SYN-ACK then
 * fixes the flow's translation for its whole life (flow_spec.h: delta, tsoff, the window shifts)
 * and two segments answer it:
 *   - to the backend, the ACK that completes its handshake, sent as the client would have: the
 *     client's next sequence number, its newest TSval, its window in the backend's scale;
 *   - to the client, a window update: its handshake with the cookie left it with our SYN-ACK's
 *     window (room for early data only), and now the backend's real one is known. It carries the
 *     TSval the client last saw from us (the backend's translated), so it is never older.
 * A client promised timestamps whose backend sends none gets them supplied by the data path
 * (sg_handover.supply_timestamps): every segment to it grows, which only the engine does. */
#ifndef SYNGATE_SPEC_HANDOVER_SPEC_H
#define SYNGATE_SPEC_HANDOVER_SPEC_H

#include "syngate/spec/flow_spec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sg_handshake.asked: what the SYN to the backend asked for, as the client's cookie promised it. */
#define SG_HS_TIMESTAMPS 0x01u /* the client sends timestamps (the SYN carried its TSval) */
#define SG_HS_SACK 0x02u       /* the client was promised SACK */
#define SG_HS_ECN 0x04u        /* the client asked for ECN (the SYN carried ECE and CWR) */

/* What syngate knew when its SYN left for the backend. */
struct sg_handshake {
  sg_u32 client_isn;
  sg_u32 cookie_isn;    /* the ISN of our cookie SYN-ACK: the server's side as the client knows it */
  sg_u32 our_tsval;     /* our cookie SYN-ACK's TSval (the TSecr of the client's cookie ACK) */
  sg_u32 client_tsval;  /* the client's newest TSval */
  sg_u16 client_window; /* the window field of the client's cookie ACK, in the client's scale */
  sg_u8 client_ws;      /* the client's window shift; SG_FLOW_NO_WSCALE when it does not scale */
  sg_u8 announced_ws;   /* the shift our cookie SYN-ACK announced */
  sg_u8 asked;          /* SG_HS_* */
  sg_u8 pad[3];
};

/* The backend's SYN-ACK, host order. */
struct sg_synack {
  sg_u32 seq;
  sg_u32 ack;
  sg_u32 tsval;      /* when has_ts */
  sg_u16 window;     /* a SYN-ACK's window field is never scaled */
  sg_u16 mss;        /* when has_mss: what segments of early data to the backend may carry */
  sg_u8 has_ts;
  sg_u8 has_wscale;
  sg_u8 wscale;      /* when has_wscale, as sent */
  sg_u8 sack_permitted;
  sg_u8 has_mss;
  sg_u8 pad[3];
};

/* A bare ACK one side of the hand-over is sent. */
struct sg_handover_ack {
  sg_u32 seq;
  sg_u32 ack;
  sg_u32 tsval; /* when has_ts */
  sg_u32 tsecr;
  sg_u16 window;
  sg_u8 has_ts;
  sg_u8 pad;
};

struct sg_handover {
  sg_u32 delta;              /* backend ISN - cookie ISN */
  sg_u32 tsoff;              /* backend TSval - our TSval when timestamps are translated, else 0 */
  struct sg_flow_shifts shifts;
  sg_u8 timestamps;          /* both ends send timestamps: they are translated */
  sg_u8 supply_timestamps;   /* the client was promised timestamps and the backend sends none */
  sg_u8 backend_scales;      /* window scaling is on with the backend (both SYNs carried it) */
  sg_u8 backend_ws;          /* the backend's shift, as it sent it, when backend_scales */
  sg_u8 sack_refused;        /* the client was promised SACK and the backend does not permit it */
  sg_u8 pad[3];
  struct sg_handover_ack to_backend; /* completes the backend's handshake */
  struct sg_handover_ack to_client;  /* the window update; with supply_timestamps its TSval is
                                        the data path's supplied clock, not this one */
};

/* The SYN-ACK answers our SYN (RFC 9293 3.10.7.3, SYN-SENT): it acknowledges exactly its ISN. */
SG_INLINE int sg_synack_answers(const struct sg_handshake* h, const struct sg_synack* s) {
  return s->ack == h->client_isn + 1u;
}

/* The flow's translation and the two answers (sg_synack_answers must hold). */
SG_INLINE void sg_hand_over(const struct sg_handshake* h, const struct sg_synack* s, struct sg_handover* o) {
  const int client_ts = (h->asked & SG_HS_TIMESTAMPS) != 0;
  const int client_scales = h->client_ws != SG_FLOW_NO_WSCALE;
  o->delta = s->seq - h->cookie_isn;
  o->timestamps = (sg_u8)(client_ts && s->has_ts);
  o->supply_timestamps = (sg_u8)(client_ts && !s->has_ts);
  o->tsoff = o->timestamps ? s->tsval - h->our_tsval : 0u;
  /* The backend was asked to scale only when the client does (the SYN carried the client's). */
  o->backend_scales = (sg_u8)(client_scales && s->has_wscale);
  o->backend_ws = o->backend_scales ? s->wscale : 0u;
  o->sack_refused = (sg_u8)((h->asked & SG_HS_SACK) && !s->sack_permitted);
  o->shifts = sg_flow_window_shifts(h->client_ws, o->backend_scales, o->backend_ws, h->announced_ws);
  o->pad[0] = o->pad[1] = o->pad[2] = 0;

  o->to_backend.seq = h->client_isn + 1u;
  o->to_backend.ack = s->seq + 1u;
  o->to_backend.window = sg_window_rescale(h->client_window, o->shifts.client_sends, o->shifts.server_reads);
  o->to_backend.has_ts = o->timestamps;
  o->to_backend.tsval = o->timestamps ? h->client_tsval : 0u;
  o->to_backend.tsecr = o->timestamps ? s->tsval : 0u;
  o->to_backend.pad = 0;

  o->to_client.seq = h->cookie_isn + 1u;
  o->to_client.ack = h->client_isn + 1u;
  o->to_client.window = sg_window_rescale(s->window, 0, o->shifts.client_reads);
  o->to_client.has_ts = (sg_u8)client_ts;
  /* The backend's TSval translated (sg_tsval_to_client with this tsoff) is our SYN-ACK's. */
  o->to_client.tsval = client_ts ? h->our_tsval : 0u;
  o->to_client.tsecr = client_ts ? h->client_tsval : 0u;
  o->to_client.pad = 0;
}

#ifdef __cplusplus
}
#endif

#endif /* SYNGATE_SPEC_HANDOVER_SPEC_H */
