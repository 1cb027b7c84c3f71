/* "tc can rewrite this segment": the one test that the tc translation programs
 * (bpf/syngate_tc.bpf.c) and host mode's OUTPUT match (bpf/syngate_tc_match.bpf.c) share.
 *
 * Why one test. In host mode the server's replies cross iptables OUTPUT, where syngate's NFQUEUE
 * rule would queue them, before tc egress, and tc egress cannot hand a packet back to the queue:
 * OUTPUT must skip the queue for exactly the packets tc egress will translate. A segment the match
 * lets through and egress then refuses leaves untranslated; one the match queues that egress could
 * have taken costs only speed (the engine translates it and marks it, and egress leaves it alone).
 *
 * Three parts, in the order the programs meet them:
 *   tc_headers_rewritable: IP and TCP laid out as the program can rewrite (no IPv4 options, no
 *     IPv6 extension headers, lengths as the engine reads them). A property of the packet alone.
 *   tc_segment_rewritable: the flags and the flow's state (entries from the map), as it was
 *     before this segment. SYN (a retransmitted SYN-ACK) and RST are the engine's. FIN segments
 *     are not: the program translates them and records them for the engine. After a FIN the
 *     server's segments stay here; the client's go back to the engine once the client has sent its
 *     FIN (its own FIN included in what is translated here, what follows it not, but for its exact
 *     last ACK: tc_client_last_ack): a client reuses its port only after its FIN or an RST, so a
 *     new cookie ACK on the lingering pair is never translated with the old numbers (the ingress
 *     hands a bare one to sg_tc_cookie_ack, which opens the new flow if its cookie holds, and
 *     leaves it to the engine otherwise). A believable RST, or the engine's
 *     punt (SG_TC_CLOSED_BY_ENGINE), sends both directions back. Those clauses are a decision,
 *     and a decision taken at a hook where the packet can still go to the queue: `decided` = 1
 *     says it was taken upstream (host mode's tc egress: OUTPUT's match took it, and the flow may
 *     have started closing since, on another CPU; refusing then would send the segment out
 *     untranslated), so only the clauses that cannot change between the two hooks apply.
 *   tc_options_rewritable: the option layout (tc_find_options below).
 * Each part holds or fails for the same packet at OUTPUT and at egress, except the closing clause
 * (why `decided`) and a flow entry deleted in between (the flow was freed: its linger is over). */
#ifndef SYNGATE_BPF_LIB_TC_REWRITABLE_H
#define SYNGATE_BPF_LIB_TC_REWRITABLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "syngate/bpf/tc_abi.h"
#include "syngate/spec/xlate_spec.h"
#include "parse.h"

#define TCP_MAX_HLEN 60

/* Where the translated option fields sit, from the start of the TCP header. */
struct tc_layout {
  __u32 ts_off;   /* TSval; TSecr at +4; 0: no timestamps */
  __u32 sack_off; /* first SACK edge; 0: no SACK blocks */
  __u32 sack_count;
};

/* The TCP header and options copied to the stack, with room past them for the masked offsets
 * the translation reads at (syngate_tc.bpf.c, hdr_off). */
#define TC_HDR_ROOM (64 + 8)
struct tc_hdr_copy {
  __u8 b[TC_HDR_ROOM];
  __u32 len;
};

static __always_inline int tc_headers_rewritable(const struct pkt* p, __u32 frame_len) {
  if (p->ip_options || !pkt_lengths_ok(p, frame_len)) return 0;
  return p->tcp_hlen >= TCP_HLEN && p->tcp_hlen <= TCP_MAX_HLEN && p->l4_off <= PKT_MAX_L4_OFF;
}

/* The one client segment still translated after its FIN: its last ACK, the exact acknowledgement
 * of the server's recorded FIN, sent from just past its own (a pure ACK, no payload). A client that
 * closes first sends it on every connection, and it reaching the queue cost one NFQUEUE crossing
 * per connection (redis-benchmark -k 0: a third of the queue's packets). A new cookie ACK on the
 * lingering pair carries the new connection's numbers and matches both only by chance (2^-64);
 * `ack_rx` is the segment's ack in the server's space (the entries record the server's FIN there). */
static __always_inline int tc_client_last_ack(__u8 flags, __u32 seq, __u32 ack_rx, __u32 payload,
                                              const struct sg_tc_flow* f, const struct sg_tc_flow* peer) {
  return pkt_bare_ack(flags, payload) && peer && (peer->closing & SG_TC_SEEN_FIN) && seq == f->fin_seq + 1 &&
         ack_rx == peer->fin_seq + 1;
}

/* `f`: the entry of the segment's own direction (found); `peer`: the reverse one, or NULL. `seq`,
 * `ack` (as sent) and `payload` matter only for the client's last ACK. */
static __always_inline int tc_segment_rewritable(__u8 flags, __u32 seq, __u32 ack, __u32 payload,
                                                 const struct sg_tc_flow* f, const struct sg_tc_flow* peer,
                                                 int decided) {
  if (flags & (SG_TCP_SYN | SG_TCP_RST)) return 0;
  if (decided) return 1;
  const __u8 either = f->closing | (peer ? peer->closing : 0);
  if (either & (SG_TC_SEEN_RST | SG_TC_CLOSED_BY_ENGINE)) return 0;
  /* The client's FIN (recorded in the client's own entry) ends its segments' time here, its last
   * ACK excepted. */
  if (f->direction != SG_TC_TO_SERVER || !(f->closing & SG_TC_SEEN_FIN)) return 1;
  return tc_client_last_ack(flags, seq, sg_ack_to_backend(ack, f->delta), payload, f, peer);
}

/* Linux's layouts (NOP NOP TS, NOP NOP SACK, both) are recognised directly; anything else is
 * walked option by option with the specification's step (bpf_loop). Returns 0 when the options
 * cannot be walked (malformed: the engine judges them). A global (not inlined) function: the
 * verifier checks it once, on its own, and its caller sees its results as unknown numbers; one
 * path after it instead of one per layout. Every program that includes this header carries its
 * own copy. */
__attribute__((noinline)) int tc_find_options(struct tc_hdr_copy* h, struct tc_layout* l) {
  if (!h || !l) return 0;
  const __u8* hdr = h->b;
  const __u32 hlen = h->len;
  if (hlen < TCP_HLEN || hlen > TCP_MAX_HLEN) return 0;
  const __u32 optlen = hlen - TCP_HLEN;
  l->ts_off = l->sack_off = l->sack_count = 0;
  if (optlen == 0) return 1;
  if (hdr[20] == SG_OPT_NOP && hdr[21] == SG_OPT_NOP && hdr[22] == SG_OPT_TIMESTAMP && hdr[23] == 10) {
    l->ts_off = 24;
    if (optlen == 12) return 1;
    if (hdr[32] == SG_OPT_NOP && hdr[33] == SG_OPT_NOP && hdr[34] == SG_OPT_SACK && hdr[35] == optlen - 14 &&
        (hdr[35] == 10 || hdr[35] == 18 || hdr[35] == 26)) {
      l->sack_off = 36;
      l->sack_count = ((__u32)hdr[35] - 2) / 8;
      return 1;
    }
  } else if (hdr[20] == SG_OPT_NOP && hdr[21] == SG_OPT_NOP && hdr[22] == SG_OPT_SACK && hdr[23] == optlen - 2 &&
             (hdr[23] == 10 || hdr[23] == 18 || hdr[23] == 26 || hdr[23] == 34)) {
    l->sack_off = 24;
    l->sack_count = ((__u32)hdr[23] - 2) / 8;
    return 1;
  }
  struct option_walk w = {};
  __builtin_memcpy(w.buf, hdr + TCP_HLEN, SG_TCP_MAX_OPTIONS);
  w.len = optlen;
  option_walk_run(&w);
  if (w.bad) return 0;
  l->ts_off = w.o.has_timestamps ? TCP_HLEN + w.o.ts_offset : 0;
  l->sack_count = w.o.sack_count > SG_XLATE_MAX_SACK ? SG_XLATE_MAX_SACK : w.o.sack_count;
  l->sack_off = l->sack_count ? TCP_HLEN + w.o.sack_offset : 0;
  return 1;
}

/* The layout check on the header copy, and the bounds the translation's stores rely on (never
 * failing for a layout tc_find_options accepted: it tells the verifier). */
static __always_inline int tc_options_rewritable(struct tc_hdr_copy* h, struct tc_layout* l) {
  if (!tc_find_options(h, l)) return 0;
  return l->ts_off <= TCP_MAX_HLEN - 8 && l->sack_off <= TCP_MAX_HLEN - 8 * l->sack_count &&
         l->sack_count <= SG_XLATE_MAX_SACK;
}

#endif /* SYNGATE_BPF_LIB_TC_REWRITABLE_H */
