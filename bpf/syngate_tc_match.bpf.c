/* Host mode's OUTPUT match (issue 23): a socket-filter program for iptables' xt_bpf
 * (`-m bpf --object-pinned PIN -j RETURN` in syngate's mangle chain, before the queue rules) that
 * answers 1 for exactly the server segments tc egress (bpf/syngate_tc.bpf.c) will translate, so
 * that they skip NFQUEUE: tc egress runs after OUTPUT and cannot hand a packet back to the queue.
 * The test is lib/tc_rewritable.h's, the one sg_tc_egress applies, on the same flow map (this
 * object's sg_tc_flows is the pinned map of the tc programs, reused at load).
 *
 * One restriction of its own: only entries of the server's direction (SG_TC_TO_CLIENT) match.
 * Those segments cannot precede their entry (the hand-over writes it before the server can send),
 * while a client segment that crossed tc ingress just before its hand-over and meets this rule in
 * INPUT (the chain serves INPUT and FORWARD too) must still reach the engine, untranslated as it is.
 *
 * xt_bpf hands the program the packet from its network header on, without a link-layer header
 * and without direct packet access: the headers are copied into a per-CPU scratch buffer behind
 * a made-up Ethernet header, so that lib/parse.h reads them as the tc programs do. Read-only: it
 * records nothing in the map. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "syngate/bpf/tc_abi.h"
/* IPv6 extension headers make a segment not rewritable (tc_headers_rewritable) wherever they
 * stand: the parser need not walk them here. */
#define PKT_PARSE_NO_IPV6_EXT 1
#include "lib/parse.h"
#include "lib/tc_rewritable.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct pkt_tuple) == sizeof(struct sg_tc_flow_key), "the parsed tuple is the map key");

/* The tc programs' map: the loader sets its pin path, so libbpf reuses the pinned one. Sized as
 * the tc programs' (the loader sets max_entries; the default only fills the definition). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct sg_tc_flow_key);
  __type(value, struct sg_tc_flow);
} sg_tc_flows SEC(".maps");

/* The headers as the parser wants them: Ethernet (made up), the IP header with its options (IPv4:
 * up to 60 bytes; IPv6: no extension headers) and the fixed TCP header. The parser's bounds
 * checks compare with `end` (right at run time), but the verifier tracks no such comparison
 * outside packet memory: the buffer is as large as the farthest read it can prove. */
#define SCRATCH_LEN (ETH_HLEN_ + 60 + TCP_HLEN)
struct scratch {
  __u8 b[PKT_MAX_L4_OFF + TCP_HLEN + 8];
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct scratch);
} sg_tc_match_scratch SEC(".maps");

static __always_inline void reverse_key(const struct sg_tc_flow_key* k, struct sg_tc_flow_key* r) {
  __builtin_memcpy(r->src, k->dst, 16);
  __builtin_memcpy(r->dst, k->src, 16);
  r->sport_be = k->dport_be;
  r->dport_be = k->sport_be;
}

SEC("socket")
int sg_tc_match(struct __sk_buff* skb) {
  const __u32 zero = 0;
  struct scratch* s = bpf_map_lookup_elem(&sg_tc_match_scratch, &zero);
  if (!s) return 0;
  const __u16 proto = (__u16)skb->protocol; /* network order */
  if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6)) return 0;
  __builtin_memcpy(s->b + 12, &proto, 2);
  __u32 n = skb->len;
  if (n > SCRATCH_LEN - ETH_HLEN_) n = SCRATCH_LEN - ETH_HLEN_;
  if (n < IPV4_HLEN) return 0;
  if (bpf_skb_load_bytes(skb, 0, s->b + ETH_HLEN_, n) != 0) return 0;

  struct pkt p = {};
  const __u32 frame_len = skb->len + ETH_HLEN_;
  if (pkt_parse_headers(s->b, s->b + ETH_HLEN_ + n, frame_len, &p) != PKT_TCP) return 0;
  if (!tc_headers_rewritable(&p, frame_len)) return 0;

  const struct sg_tc_flow_key* key = (const struct sg_tc_flow_key*)&p.key;
  const struct sg_tc_flow* f = bpf_map_lookup_elem(&sg_tc_flows, key);
  /* Only where this run's tc egress translates what the match lets by (tc_abi.h). */
  if (!f || f->direction != SG_TC_TO_CLIENT || !(f->options & SG_TC_OPT_EGRESS)) return 0;
  struct sg_tc_flow_key rkey;
  reverse_key(key, &rkey);
  const struct sg_tc_flow* peer = bpf_map_lookup_elem(&sg_tc_flows, &rkey);
  /* The decision tc egress will not take again (decided = 0 here, 1 there). */
  /* The server's direction: seq, ack and payload (the client's last ACK) do not matter. */
  if (!tc_segment_rewritable(p.flags, p.seq, p.ack, 0, f, peer, 0)) return 0;

  /* Masked, not only compared: the verifier must see the load's length bounded and non-zero. */
  const __u32 hlen = p.tcp_hlen & 0x3f;
  const __u32 l4 = (p.l4_off - ETH_HLEN_) & 0x1ff;
  if (hlen < TCP_HLEN) return 0;
  struct tc_hdr_copy h = {};
  h.len = hlen;
  if (bpf_skb_load_bytes(skb, l4, h.b, hlen) != 0) return 0;
  struct tc_layout lay = {};
  return tc_options_rewritable(&h, &lay) ? 1 : 0;
}
