/* The per-segment translation of an established proxied connection, specified once on plain
 * values for every data path that rewrites such segments: the NFQUEUE engine (core/engine.cpp)
 * and the tc programs (bpf/syngate_tc.bpf.c). Each path only moves bytes between its packet and
 * struct sg_xlate_segment; what changes, and the checksum difference it makes, is decided here.
 * The arithmetic of each field is flow_spec.h's (the spaces, the window shifts, the RST rules).
 *
 * Checksum. sg_xlate() returns the one's-complement difference (RFC 1624) of every field it
 * changed, folded to 16 bits, in the byte order of the packet's words read as big-endian numbers.
 * A data path applies it once: the engine with sg_csum_apply() on the checksum field; a BPF
 * program with bpf_l4_csum_replace(skb, off, 0, bpf_htons(diff), 0), the "diff" form of the
 * helper, which suits CHECKSUM_NONE, COMPLETE and PARTIAL alike. An option field at an odd offset
 * from the TCP header (possible with unusual padding) straddles the checksum's 16-bit words; its
 * difference is the byte-swapped one (256 * x = swap16(x) modulo 0xffff), so it needs no full
 * recompute either. */
#ifndef SYNGATE_SPEC_XLATE_SPEC_H
#define SYNGATE_SPEC_XLATE_SPEC_H

#include "syngate/spec/flow_spec.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SG_XLATE_MAX_SACK 4u

/* ---- one's-complement arithmetic (RFC 1071, RFC 1624) -------------------------------------- */

/* An unfolded 32-bit sum of 16-bit words: a few dozen additions cannot overflow it. */
SG_INLINE sg_u16 sg_csum_fold(sg_u32 sum) {
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return (sg_u16)sum;
}
SG_INLINE sg_u16 sg_csum_swap(sg_u16 x) { return (sg_u16)((x << 8) | (x >> 8)); }
/* What replacing `from` by `to` adds to a sum: ~from + to, per 16-bit word. */
SG_INLINE sg_u32 sg_csum_diff16(sg_u16 from, sg_u16 to) { return (sg_u32)(sg_u16)~from + to; }
SG_INLINE sg_u32 sg_csum_diff32(sg_u32 from, sg_u32 to) {
  return sg_csum_diff16((sg_u16)(from >> 16), (sg_u16)(to >> 16)) + sg_csum_diff16((sg_u16)from, (sg_u16)to);
}
/* A checksum field after the words it covers changed by `diff` (a folded difference):
 * HC' = ~(~HC + diff) (RFC 1624 eqn. 3). */
SG_INLINE sg_u16 sg_csum_apply(sg_u16 check, sg_u16 diff) {
  return (sg_u16)~sg_csum_fold((sg_u32)(sg_u16)~check + diff);
}

/* ---- the segment --------------------------------------------------------------------------- */

enum sg_xlate_direction {
  SG_XLATE_TO_SERVER = 0, /* the client's segments: ack, SACK edges + delta; TSecr + tsoff */
  SG_XLATE_TO_CLIENT = 1  /* the server's segments: seq - delta; TSval - tsoff */
};

/* One direction of one flow, as the translation needs it (the tc map value holds the same). */
struct sg_xlate_params {
  sg_u32 delta;       /* backend ISN - cookie ISN */
  sg_u32 tsoff;       /* backend TSval - our SYN-ACK TSval */
  sg_u8 direction;    /* enum sg_xlate_direction */
  sg_u8 window_from;  /* the shift the sender's window field is in (sg_flow_shifts) */
  sg_u8 window_to;    /* the shift the receiver reads it with */
  sg_u8 timestamps;   /* non-zero: the timestamp the receiver's end echoes is translated
                         (to the client: TSval always; to the server: TSecr only when the backend
                         sends timestamps itself, else it ignores the option, RFC 7323 3.2) */
};

/* The translatable fields of one TCP segment, host order. `*_odd`: the option field's offset
 * from the start of the TCP header is odd (only the checksum difference cares). */
struct sg_xlate_segment {
  sg_u32 seq;
  sg_u32 ack;
  sg_u32 tsval;
  sg_u32 tsecr;
  sg_u32 sack[2 * SG_XLATE_MAX_SACK]; /* left, right edge of each block */
  sg_u16 window;
  sg_u8 has_ack;    /* the ACK flag: the ack field means something */
  sg_u8 has_ts;
  sg_u8 sack_count; /* 0..SG_XLATE_MAX_SACK */
  sg_u8 ts_odd;
  sg_u8 sack_odd;
  sg_u8 pad;
};

/* A 32-bit option field's contribution to the difference, by the parity of its offset. */
SG_INLINE sg_u32 sg_xlate_option_diff(sg_u32 from, sg_u32 to, int odd) {
  const sg_u16 d = sg_csum_fold(sg_csum_diff32(from, to));
  return odd ? sg_csum_swap(d) : d;
}

/* Translates `s` in place for the receiver of `p->direction` and returns the folded checksum
 * difference of what changed (0 or 0xffff: nothing to do). */
SG_INLINE sg_u16 sg_xlate(struct sg_xlate_segment* s, const struct sg_xlate_params* p) {
  sg_u32 sum = 0;
  sg_u32 v;
  sg_u16 w;
  sg_u32 b;
  if (p->direction == SG_XLATE_TO_SERVER) {
    if (s->has_ack) {
      v = sg_ack_to_backend(s->ack, p->delta);
      sum += sg_csum_diff32(s->ack, v);
      s->ack = v;
    }
    /* The client's SACK blocks name the server's sequence numbers as the client sees them. */
    for (b = 0; b < 2 * SG_XLATE_MAX_SACK; ++b) {
      if (b >= 2u * s->sack_count) break;
      v = sg_sack_edge_to_backend(s->sack[b], p->delta);
      sum += sg_xlate_option_diff(s->sack[b], v, s->sack_odd);
      s->sack[b] = v;
    }
    if (s->has_ts && p->timestamps) {
      v = sg_tsecr_to_backend(s->tsecr, p->tsoff);
      sum += sg_xlate_option_diff(s->tsecr, v, s->ts_odd);
      s->tsecr = v;
    }
  } else {
    /* The server's SACK blocks already name the client's own numbers. */
    v = sg_seq_to_client(s->seq, p->delta);
    sum += sg_csum_diff32(s->seq, v);
    s->seq = v;
    if (s->has_ts && p->timestamps) {
      v = sg_tsval_to_client(s->tsval, p->tsoff);
      sum += sg_xlate_option_diff(s->tsval, v, s->ts_odd);
      s->tsval = v;
    }
  }
  w = sg_window_rescale(s->window, p->window_from, p->window_to);
  sum += sg_csum_diff16(s->window, w);
  s->window = w;
  return sg_csum_fold(sum);
}

/* ---- what each end has sent (the record the RST check relies on) --------------------------- */

/* One direction's record, in the receiver's sequence space (flow_spec.h, sg_rst_check). */
struct sg_flow_track {
  sg_u32 next;   /* highest seq + length this direction sent (SYN and FIN count) */
  sg_u32 acked;  /* highest ack this direction sent */
  sg_u32 window; /* this direction's latest window, in bytes */
};

/* One segment of `self`'s direction, numbers in the receiver's space (a client's ack already
 * moved into the backend's). The record starts from the first segment seen (a flow taken over
 * from an older table, a tc entry just written); after that only a segment that fits what the
 * peer offered and acknowledges only what the peer sent moves it (sg_segment_plausible), so a
 * blind forgery cannot aim the RST check. `self_seen`, `peer_seen`: the records hold something;
 * afterwards `self` always does (the caller sets its seen bit). Returns non-zero when the segment
 * was taken: a caller whose view of the peer may be behind (the engine, while the tc programs
 * carry the flow) refreshes it and asks again only when it was not. */
SG_INLINE int sg_flow_track_segment(struct sg_flow_track* self, int self_seen, const struct sg_flow_track* peer,
                                    int peer_seen, sg_u32 seq, sg_u32 seq_end, sg_u32 ack, sg_u32 window_bytes) {
  if (!self_seen) {
    self->next = seq_end;
    self->acked = ack;
    self->window = window_bytes;
    return 1;
  }
  if (!peer_seen) return 0;
  if (!sg_segment_plausible(seq, ack, peer->acked, peer->window, self->acked, peer->next)) return 0;
  self->next = sg_seq_max(self->next, seq_end);
  self->acked = ack;
  self->window = window_bytes;
  return 1;
}

/* Whether a FIN segment of `self`'s direction may start the flow's close (closing, then linger),
 * judged before the segment is tracked; numbers as for sg_flow_track_segment, `fin_seq` the FIN's
 * own sequence number (seq + payload length). A FIN is a quieter kill than an RST: taken at face
 * value it puts a live, idle flow on the short closing timer, freed under both ends. The RST
 * check's window is not enough here (a spray of 65536 guesses lands in a few megabytes of window
 * dozens of times, and the endpoint, unlike for an RST, will not challenge an out-of-order FIN:
 * it queues it and waits). So: the FIN lands exactly where this direction ends or where the
 * receiver acknowledged up to, or the segment is one the record would take (its sequence number
 * in the receiver's window and its ack within what the peer sent: two guesses at once). While
 * either record is empty (known 0) the FIN is believed, as an RST is. A FIN not believed is
 * passed on for the endpoint to judge. */
SG_INLINE int sg_fin_believable(const struct sg_flow_track* self, const struct sg_flow_track* peer, int known,
                                sg_u32 seq, sg_u32 fin_seq, sg_u32 ack) {
  if (!known) return 1;
  if (fin_seq == self->next || fin_seq == peer->acked) return 1;
  return sg_segment_plausible(seq, ack, peer->acked, peer->window, self->acked, peer->next);
}

/* The newest TSval a direction sent, in sequence order: a retransmission or a reordered older
 * segment does not take it back (the rule both data paths merge their views by). `have`: a
 * TSval is recorded. Returns non-zero when (tsval, seq) becomes the newest. */
SG_INLINE int sg_tsval_newer(sg_u32 seq, sg_u32 newest_seq, int have) {
  return !have || !sg_seq_before(seq, newest_seq);
}

/* ---- forwarding ---------------------------------------------------------------------------- */

/* An IPv4 header's checksum (as read, host order) once its TTL is one lower: the TTL is the high
 * byte of its 16-bit word, so the sum loses 0x0100 and the checksum gains it, with the end-around
 * carry (RFC 1624); a result of 0xffff is stored as 0 (the kernel's ip_decrease_ttl does the same,
 * and both verify). The tc program forwards a translated segment itself (no ip_forward to do it). */
SG_INLINE sg_u16 sg_ipv4_check_after_ttl_decrement(sg_u16 check) {
  const sg_u32 sum = (sg_u32)check + 0x0100u;
  return (sg_u16)(sum + (sum >= 0xffffu));
}

#ifdef __cplusplus
}
#endif

#endif /* SYNGATE_SPEC_XLATE_SPEC_H */
