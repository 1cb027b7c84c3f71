/* Header parsing for the BPF programs: Ethernet, then IPv4 or IPv6 (the specification's
 * extension-header walk), then the fixed TCP header, into a struct pkt. Every read is
 * bounds-checked against data_end: the helpers take the packet's data and data_end pointers, not
 * a program context, so an XDP program (xdp_md->data) and a tc program (__sk_buff->data, after
 * bpf_skb_pull_data where the headers may not be linear) parse alike.
 *
 * What the parse answers follows the engine's rules (include/syngate/spec/syn_rules.h): what is
 * not TCP is not ours; what is TCP but laid out so that the engine must judge it (bad lengths,
 * deep or unknown extension headers, v4-mapped IPv6) is left unhandled; IP options and IPv6
 * extension headers are parsed past and flagged, since only a SYN is refused for them.
 * Lengths come from the IP header, never from data_end (Ethernet pads short frames). */
#ifndef SYNGATE_BPF_LIB_PARSE_H
#define SYNGATE_BPF_LIB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "syngate/spec/syn_rules.h"
#include "bytes.h"

#define ETH_HLEN_ 14
#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define TCP_HLEN 20
#define TCP_MAX_OPTIONS 40

/* How far into the frame a TCP header may start: Ethernet, IPv6 and up to 256 bytes of extension
 * headers (more is the engine's to walk). */
#define PKT_MAX_L4_OFF (ETH_HLEN_ + IPV6_HLEN + 256)

/* A TCP packet's addresses in the engine's Address form (IPv4 v4-mapped) and its ports in
 * network order, in the packet's own direction. The same layout as the XDP flow key and the tc
 * flow key (include/syngate/bpf/), so it can be handed to their maps as is. */
struct pkt_tuple {
  __u8 src[16];
  __u8 dst[16];
  __u16 sport_be;
  __u16 dport_be;
};

/* The packet as parsed. */
struct pkt {
  struct pkt_tuple key;
  __u32 l4_off;     /* the TCP header, from the start of the frame */
  __u32 ip_total;   /* the IP datagram's length by its header (IPv6: 40 + payload length) */
  __u32 tcp_hlen;   /* by the data offset; checked by pkt_lengths_ok */
  __u32 seq;        /* host order */
  __u32 ack;        /* host order */
  __u8 flags;
  __u8 v6;
  __u8 ip_options;  /* an IPv4 header longer than 20 bytes, or IPv6 extension headers */
};

/* The TCP payload's length by the IP header's (pkt_lengths_ok checks the lengths agree). */
static __always_inline __u32 pkt_payload_len(const struct pkt* p) {
  return p->ip_total - (p->l4_off - ETH_HLEN_) - p->tcp_hlen;
}

/* Data or a FIN: what a client may send behind its cookie ACK before its backend has answered (a
 * bare ACK has nothing to acknowledge then). */
static __always_inline int pkt_sends_data(__u8 flags, __u32 payload) {
  return (flags & SG_TCP_FIN) || payload != 0;
}

/* A pure ACK: no payload, no SYN, RST or FIN. A client's cookie ACK is one, and so is its last ACK. */
static __always_inline int pkt_bare_ack(__u8 flags, __u32 payload) {
  return (flags & (SG_TCP_SYN | SG_TCP_RST | SG_TCP_FIN | SG_TCP_ACK)) == SG_TCP_ACK && payload == 0;
}

enum pkt_parse {
  PKT_TCP = 0,         /* IPv4 or IPv6 TCP with a whole fixed TCP header: every field is set */
  PKT_NOT_TCP,         /* not IP, not TCP, or too short to say: not the programs' business */
  PKT_UNHANDLED,       /* TCP, or may be, in a layout the engine judges (see above) */
  PKT_IPV4_FRAGMENT    /* an IPv4 fragment (IP lengths checked): no TCP fields are set */
};

/* Ethernet, IP and the fixed TCP header of the frame at [data, end), the linear part of a frame
 * of `frame_len` bytes in all. The IP lengths are judged against the whole frame: a tc program
 * sees GSO/GRO super-packets whose payload sits in pages past `end` (XDP frames are linear). */
static __always_inline enum pkt_parse pkt_parse_headers(const void* data, const void* end, __u32 frame_len,
                                                        struct pkt* p) {
  const __u8* eth = data;
  if ((const void*)(eth + ETH_HLEN_) > end) return PKT_NOT_TCP;
  const __u16 proto = *(const __u16*)(eth + 12);
  const __u8* tcp;
  if (proto == bpf_htons(ETH_P_IP)) {
    const __u8* ip = eth + ETH_HLEN_;
    if ((const void*)(ip + IPV4_HLEN) > end) return PKT_NOT_TCP;
    if (ip[9] != IPPROTO_TCP) return PKT_NOT_TCP;
    /* The core's IPv4 rules. Lengths that do not add up and fragments are the engine's to drop. */
    __u32 ihl = 0;
    if ((ip[0] >> 4) != 4) return PKT_UNHANDLED;
    const enum sg_parse_error pe = sg_ipv4_header(ip, frame_len - ETH_HLEN_, &ihl, &p->ip_total);
    if (pe == SG_PE_FRAGMENT) return PKT_IPV4_FRAGMENT;
    if (pe != SG_PE_NONE) return PKT_UNHANDLED;
    if (ihl > 60) return PKT_UNHANDLED; /* never: ihl is 4 bits; tells the verifier */
    v4_mapped_from(p->key.src, ip + 12);
    v4_mapped_from(p->key.dst, ip + 16);
    p->l4_off = ETH_HLEN_ + ihl;
    p->ip_options = ihl > IPV4_HLEN;
    tcp = ip + ihl;
  } else if (proto == bpf_htons(ETH_P_IPV6)) {
    const __u8* ip = eth + ETH_HLEN_;
    if ((const void*)(ip + IPV6_HLEN) > end) return PKT_NOT_TCP;
    if ((ip[0] >> 4) != 6) return PKT_UNHANDLED;
    /* The core's extension-header walk. Fragments stay the engine's (the rules queue every IPv6
     * fragment to the SYN workers, away from the flows). */
    __u8 next = ip[6];
    __u32 off = ETH_HLEN_ + IPV6_HLEN;
#ifdef PKT_PARSE_NO_IPV6_EXT
    /* For a caller that refuses extension headers whatever they hold (tc_rewritable.h) and reads
     * a copy outside packet memory, where the verifier cannot bound the walk by data_end. */
    if (next != IPPROTO_TCP) return PKT_UNHANDLED;
#endif
    for (int i = 0; i < SG_IPV6_MAX_EXT_HEADERS && next != IPPROTO_TCP; i++) {
      /* The header's next-header and length bytes; unreadable ones matter only if `next` names
       * an extension header (for anything else the walk ends as not TCP). */
      __u8 h[2] = {0, 0};
      const __u8* at = (const __u8*)data + off;
      const int unreadable = (const void*)(at + 2) > end;
      if (!unreadable) {
        h[0] = at[0];
        h[1] = at[1];
      }
      __u32 hlen = 0;
      const enum sg_parse_error e = sg_ipv6_ext_header(next, h[1], &hlen);
      if (e == SG_PE_NOT_TCP) return PKT_NOT_TCP;
      if (e != SG_PE_NONE || unreadable) return PKT_UNHANDLED;
      next = h[0];
      off += hlen;
      if (off > PKT_MAX_L4_OFF) return PKT_UNHANDLED;
    }
    if (next != IPPROTO_TCP) return PKT_UNHANDLED;
    p->ip_total = IPV6_HLEN + ((__u32)ip[4] << 8 | ip[5]);
    __builtin_memcpy(p->key.src, ip + 8, 16);
    __builtin_memcpy(p->key.dst, ip + 24, 16);
    p->l4_off = off;
    p->ip_options = off > ETH_HLEN_ + IPV6_HLEN;
    p->v6 = 1;
    if (off > PKT_MAX_L4_OFF) return PKT_UNHANDLED; /* tells the verifier */
    tcp = (const __u8*)data + off;
  } else {
    return PKT_NOT_TCP;
  }
  if ((const void*)(tcp + TCP_HLEN) > end) return PKT_UNHANDLED;
  __builtin_memcpy(&p->key.sport_be, tcp, 2);
  __builtin_memcpy(&p->key.dport_be, tcp + 2, 2);
  p->seq = load_be32(tcp + 4);
  p->ack = load_be32(tcp + 8);
  p->tcp_hlen = (__u32)(tcp[12] >> 4) * 4;
  p->flags = tcp[13];
  return PKT_TCP;
}

/* A tc program's parse: on the linear part as it is, and only when that was too short to say
 * (a GRO super-packet's or a frag list's headers may not all be linear) once more after
 * bpf_skb_pull_data of up to `full` bytes. Pulling first, always, copied payload into the head
 * (and often reallocated it) for every packet whose headers alone were linear, the usual case: in
 * a profile of wrk's 50 keep-alive connections through the lab that was 2.4% of all CPU.
 * *data and *end are the packet's pointers afterwards. */
static __always_inline enum pkt_parse pkt_parse_skb(struct __sk_buff* skb, __u32 full, const void** data,
                                                    const void** end, struct pkt* p) {
  *data = (const void*)(long)skb->data;
  *end = (const void*)(long)skb->data_end;
  const enum pkt_parse first = pkt_parse_headers(*data, *end, skb->len, p);
  if (first != PKT_NOT_TCP && first != PKT_UNHANDLED) return first;
  const __u32 want = skb->len < full ? skb->len : full;
  if ((long)*end - (long)*data >= (long)want || bpf_skb_pull_data(skb, want) != 0) return first;
  *data = (const void*)(long)skb->data;
  *end = (const void*)(long)skb->data_end;
  __builtin_memset(p, 0, sizeof(*p));
  return pkt_parse_headers(*data, *end, skb->len, p);
}

/* What the engine would call malformed or cannot be sure of (lengths that do not add up, an IPv6
 * packet with a v4-mapped address) is its call: false. `frame_len` counts from the Ethernet
 * header. */
static __always_inline int pkt_lengths_ok(const struct pkt* p, __u32 frame_len) {
  const __u32 ip_hlen = p->l4_off - ETH_HLEN_;
  if (p->ip_total > frame_len - ETH_HLEN_ || p->ip_total < ip_hlen + TCP_HLEN) return 0;
  if (p->v6 && (sg_is_v4_mapped(p->key.src) || sg_is_v4_mapped(p->key.dst))) return 0;
  if (p->tcp_hlen < TCP_HLEN || ip_hlen + p->tcp_hlen > p->ip_total) return 0;
  return 1;
}

/* A TCP header's options, walked by the specification's sg_tcp_option_step, one option per
 * bpf_loop step over a stack copy (the caller loads buf and len): a plain loop over 40 option
 * bytes costs the verifier more than its instruction budget. */
struct option_walk {
  __u8 buf[SG_TCP_MAX_OPTIONS];
  __u32 len;
  __u32 off;
  struct sg_tcp_opts o;
  __u32 bad;
};

static long option_step(__u32 step, void* ctx) {
  struct option_walk* w = ctx;
  (void)step;
  const __u32 next = sg_tcp_option_step(w->buf, w->len, w->off, &w->o);
  if (next == SG_OPT_STEP_DONE) return 1;
  if (next == SG_OPT_STEP_BAD) {
    w->bad = 1;
    return 1;
  }
  w->off = next;
  return 0;
}

/* Walks w->buf[0, w->len): w->o holds what the options ask for, w->bad whether one is malformed. */
static __always_inline void option_walk_run(struct option_walk* w) {
  bpf_loop(TCP_MAX_OPTIONS, option_step, w, 0);
}

#endif /* SYNGATE_BPF_LIB_PARSE_H */
