/* The translation of an established proxied connection, and which of its RSTs are believed,
 * specified once for every data path that carries established flows (the NFQUEUE engine,
 * core/engine.cpp, today; an in-kernel program later). Plain C with no library calls, like
 * cookie_spec.h and syn_rules.h: C++20, C and BPF C compile the same functions.
 *
 * Sequence spaces. The backend SYN carries the client's own ISN, so client sequence numbers are
 * the same on both sides and only the server's side moves:
 *   delta = backend ISN - cookie ISN       server seq (backend space) - delta = what the client sees
 *   tsoff = backend TSval - our TSval      server TSval - tsoff = what the client sees
 * Client -> server: ack, SACK edges + delta; TSecr + tsoff. Server -> client: seq - delta,
 * TSval - tsoff. The server's SACK blocks name client sequence numbers: they need no change.
 * Everything wraps modulo 2^32.
 *
 * Windows. Each end scales the windows it receives by the shift the other end announced. The
 * client was told our announced shift (cookie SYN-ACK), the backend the client's own. When the
 * two differ (or one end does not scale), a window is rescaled on the way: in bytes, shifted
 * into the receiver's units, clamped to 16 bits, and a non-zero window never becomes zero (that
 * would stall the sender until its persist timer).
 *
 * RSTs (RFC 5961 section 3.2, as a box in the middle can judge it). A blind attacker who knows
 * the 4-tuple but not the sequence numbers must not be able to end a connection. The gateway
 * sees both ends' packets, so it knows, per direction, the highest sequence number the sender
 * has sent (what a real stack puts in its RST) and the highest ack the receiver has sent (its
 * RCV.NXT as last seen). An RST whose sequence number is one of those two is an exact match:
 * the flow ends. One elsewhere in the receiver's window is passed on untouched for the endpoint
 * to judge (it answers with a challenge ACK); the flow carries on. Anything else is dropped.
 */
#ifndef SYNGATE_SPEC_FLOW_SPEC_H
#define SYNGATE_SPEC_FLOW_SPEC_H

#include "syngate/spec/sg_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Shared constants of the handshake: one place for every path. */
#define SG_FLOW_NO_WSCALE 0xffu   /* the client did not (or could not) scale its windows */
#define SG_FLOW_MAX_WINDOW 0xffffu
/* How far below what a receiver acknowledged a segment may start and still move the record:
 * retransmissions of data the sender has not yet seen acknowledged (its window's worth). */
#define SG_FLOW_MIN_REACH 0xffffu

/* ---- sequence arithmetic ------------------------------------------------------------------ */

SG_INLINE int sg_seq_after(sg_u32 a, sg_u32 b) { return (sg_s32)(a - b) > 0; }
SG_INLINE int sg_seq_before(sg_u32 a, sg_u32 b) { return (sg_s32)(a - b) < 0; }
/* a in [lo, hi], both ends included, across the wrap (assumes hi - lo < 2^31). */
SG_INLINE int sg_seq_within(sg_u32 a, sg_u32 lo, sg_u32 hi) { return (sg_u32)(a - lo) <= (sg_u32)(hi - lo); }
/* The later of two sequence numbers (a "highest seen" that survives the wrap). */
SG_INLINE sg_u32 sg_seq_max(sg_u32 a, sg_u32 b) { return sg_seq_after(b, a) ? b : a; }

/* ---- translation ---------------------------------------------------------------------------- */

/* Client -> server. */
SG_INLINE sg_u32 sg_ack_to_backend(sg_u32 ack, sg_u32 delta) { return ack + delta; }
SG_INLINE sg_u32 sg_sack_edge_to_backend(sg_u32 edge, sg_u32 delta) { return edge + delta; }
SG_INLINE sg_u32 sg_tsecr_to_backend(sg_u32 tsecr, sg_u32 tsoff) { return tsecr + tsoff; }
/* Server -> client. */
SG_INLINE sg_u32 sg_seq_to_client(sg_u32 seq, sg_u32 delta) { return seq - delta; }
SG_INLINE sg_u32 sg_tsval_to_client(sg_u32 tsval, sg_u32 tsoff) { return tsval - tsoff; }
/* And back (ICMP quotes, RST checks in the other space). */
SG_INLINE sg_u32 sg_seq_to_backend(sg_u32 seq, sg_u32 delta) { return seq + delta; }
SG_INLINE sg_u32 sg_ack_to_client(sg_u32 ack, sg_u32 delta) { return ack - delta; }

/* A window field the sender scaled by `from` (0: unscaled), as the receiver, who scales it by
 * `to`, must read it. */
SG_INLINE sg_u16 sg_window_rescale(sg_u16 field, sg_u8 from, sg_u8 to) {
  sg_u64 bytes, scaled;
  if (from == to) return field;
  bytes = (sg_u64)field << (from & 31u);
  scaled = bytes >> (to & 31u);
  if (scaled == 0 && bytes > 0) scaled = 1;
  return (sg_u16)(scaled > SG_FLOW_MAX_WINDOW ? SG_FLOW_MAX_WINDOW : scaled);
}
/* A window field in bytes, for the record of what a receiver offers (at most 2^30). */
SG_INLINE sg_u32 sg_window_bytes(sg_u16 field, sg_u8 shift) { return (sg_u32)field << (shift & 31u); }

/* The shifts of one flow, from what each end negotiated:
 *   client_ws        the client's own shift, SG_FLOW_NO_WSCALE when it does not scale
 *   backend_agreed   the backend's SYN-ACK carried a window scale option
 *   backend_ws       the backend's own shift (when it agreed)
 *   announced_ws     the shift our cookie SYN-ACK announced to the client (when it scales) */
struct sg_flow_shifts {
  sg_u8 client_sends;   /* the client's window fields are scaled by this */
  sg_u8 server_reads;   /* the backend scales the window fields it receives by this */
  sg_u8 server_sends;   /* the backend's window fields are scaled by this */
  sg_u8 client_reads;   /* the client scales the window fields it receives by this */
};
SG_INLINE struct sg_flow_shifts sg_flow_window_shifts(sg_u8 client_ws, int backend_agreed, sg_u8 backend_ws,
                                                      sg_u8 announced_ws) {
  struct sg_flow_shifts s;
  const int client_scales = client_ws != SG_FLOW_NO_WSCALE;
  /* RFC 7323: scaling is on only when both SYNs carried the option. */
  s.client_sends = client_scales ? client_ws : 0;
  s.server_reads = client_scales && backend_agreed ? client_ws : 0;
  s.server_sends = client_scales && backend_agreed ? backend_ws : 0;
  s.client_reads = client_scales ? announced_ws : 0;
  return s;
}

/* ---- what each end has sent ------------------------------------------------------------------
 * Only a segment whose numbers fit the connection may move the record the RST check relies on,
 * so that a blind forgery (the 4-tuple right, the numbers guessed) cannot aim it:
 *   seq             the segment's sequence number, in the receiver's space
 *   ack             its ack, in the space of what the other end sends
 *   receiver_acked, receiver_window   what the other end last acknowledged and offered
 *   own_acked       the highest ack this end has sent before
 *   peer_next       the highest sequence number the other end has sent
 * The sequence number must lie within a window below (retransmissions) or above (+1 for a
 * zero-window probe) what the receiver acknowledged; the ack must not go back, nor acknowledge
 * what the other end never sent. A real segment always fits; a forgery must guess both. */
SG_INLINE int sg_segment_plausible(sg_u32 seq, sg_u32 ack, sg_u32 receiver_acked, sg_u32 receiver_window,
                                   sg_u32 own_acked, sg_u32 peer_next) {
  const sg_u32 reach = receiver_window > SG_FLOW_MIN_REACH ? receiver_window : SG_FLOW_MIN_REACH;
  if (!sg_seq_within(seq, receiver_acked - reach, receiver_acked + receiver_window + 1u)) return 0;
  return sg_seq_within(ack, own_acked, peer_next);
}

/* ---- RSTs ------------------------------------------------------------------------------------ */

enum sg_rst_verdict {
  SG_RST_RESET = 0,        /* exact: the receiver will reset; the flow ends (linger) */
  SG_RST_CHALLENGE = 1,    /* in the receiver's window: passed on for it to judge; no state change */
  SG_RST_OUT_OF_WINDOW = 2 /* a blind guess: dropped and counted */
};

/* One direction of a flow as the gateway has seen it, in the receiver's sequence space:
 *   sender_next     highest sequence number the sender has sent (seq + length, SYN and FIN count)
 *   receiver_acked  highest ack the receiver has sent (its RCV.NXT as last seen)
 *   receiver_window the receiver's last window, in bytes
 *   known           0 while the gateway has not seen both ends since it took the flow over
 *                   (a flow imported from an older table): the RST goes to the endpoint. */
SG_INLINE enum sg_rst_verdict sg_rst_check(sg_u32 seq, sg_u32 sender_next, sg_u32 receiver_acked,
                                           sg_u32 receiver_window, int known) {
  sg_u32 hi;
  if (!known) return SG_RST_CHALLENGE;
  if (seq == sender_next || seq == receiver_acked) return SG_RST_RESET;
  hi = receiver_acked + receiver_window;
  if (sg_seq_after(sender_next, hi)) hi = sender_next;
  /* A sender can be ahead of what the receiver acked by at most the window it was offered; a
   * window larger than 2^30 does not exist (RFC 7323), so the range never wraps onto itself. */
  return sg_seq_within(seq, receiver_acked, hi) ? SG_RST_CHALLENGE : SG_RST_OUT_OF_WINDOW;
}

#ifdef __cplusplus
}
#endif

#endif /* SYNGATE_SPEC_FLOW_SPEC_H */
