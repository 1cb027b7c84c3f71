/* syngate's in-kernel fast path: the stateless part of the defence, run in XDP before a packet
 * costs an skb, a netfilter traversal and an NFQUEUE round trip. The same decisions have a second
 * entry for the tc ingress hook (syngate_tc_fast, at the end), for interfaces where XDP could only
 * run in generic mode; both build the same SYN-ACK and differ only in how they write and send it.
 *
 * For TCP to a protected service:
 *   - a client SYN is answered in place (XDP_TX) with the SYN-ACK the NFQUEUE engine would send:
 *     same cookie (include/syngate/spec/cookie_spec.h), MSS table, TSval option bits, options,
 *     window, TTL and header fields;
 *   - a SYN with impossible flags, unparsable options, IPv4 options or IPv6 extension headers is
 *     dropped, as the engine drops it;
 *   - any other packet of a flow the engine holds (the flow map, kept by the engine's workers)
 *     passes; one with no flow passes only as an ACK whose cookie validates (the engine then
 *     creates the flow); forged ACKs, RSTs and flagless segments are dropped, also behind IPv4
 *     options or IPv6 extension headers;
 *   - an IPv4 TCP fragment is dropped, as the engine drops every one.
 * Everything the program does not handle itself passes unchanged to the NFQUEUE path, which
 * decides: IPv6 fragments, long extension-header chains, bad lengths, v4-mapped IPv6 addresses,
 * anything before the daemon has loaded keys and services.
 *
 * Lengths come from the IP header, never from data_end (Ethernet pads short frames). */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "syngate/spec/cookie_spec.h"
#include "lib/bytes.h"
#include "lib/csum.h"
#include "lib/parse.h"
#include "lib/xdp_maps.h"

// The project's licence (GPL-2.0-or-later, LICENSE) as the kernel spells it; "GPL" also admits
// the GPL-only helpers.
char LICENSE[] SEC("license") = "GPL";

#define REPLY_TTL 64

_Static_assert(sizeof(struct pkt_tuple) == sizeof(struct sg_xdp_flow_key), "the parsed tuple is the flow key");

/* The packet as parsed, and its Ethernet header as received (the reply swaps its addresses). */
struct parsed {
  struct pkt h;
  __u8 eth[14];
};

/* A drop by the SYN decision: counted by its outcome and by its specification reason. */
static __always_inline int drop_for(__u32 outcome, enum sg_reason why) {
  count_reason(why);
  count(outcome);
  return XDP_DROP;
}

static __always_inline int pass_as(__u32 which) {
  count(which);
  return XDP_PASS;
}

static __always_inline int drop_as(__u32 which) {
  count(which);
  return XDP_DROP;
}

static __always_inline struct sg_cookie_flow cookie_flow(const struct pkt* p) {
  struct sg_cookie_flow f;
  const int skip = p->v6 ? 0 : 12;
  f.src = p->key.src + skip;
  f.dst = p->key.dst + skip;
  f.sport = bpf_ntohs(p->key.sport_be);
  f.dport = bpf_ntohs(p->key.dport_be);
  f.v6 = p->v6;
  return f;
}

/* Steps 3 and 4 of the SYN decision (syn_rules.h): the source policy, then the backscatter
 * budget sg_budget_of names (the source's own when it proved itself, else its /24's or /48's),
 * taken only by a SYN that got this far. */
static __always_inline int refuse_source(const struct pkt* p, const struct sg_xdp_config* cfg) {
  if (cfg->has_prefixes || cfg->allow_list) {
    struct sg_xdp_prefix_key k = {};
    k.prefixlen = sg_policy_key_length(128);
    k.family = p->v6 ? SG_POLICY_FAMILY_V6 : SG_POLICY_FAMILY_V4;
    __builtin_memcpy(k.addr, p->key.src, 16);
    const __u8* m = bpf_map_lookup_elem(&sg_prefixes, &k);
    const enum sg_reason why = sg_policy_verdict(m ? (enum sg_policy_match)*m : SG_POLICY_NO_MATCH, cfg->allow_list);
    if (why != SG_OK) return why;
  }
  if (cfg->synack_limit == 0 && cfg->synack_address_limit == 0) return SG_OK;
  const __u32 now_s = (__u32)(now_ns(cfg) / 1000000000ull);
  struct sg_proven* proven = bpf_map_lookup_elem(&sg_proven, p->key.src);
  if (proven && sg_budget_of(proven, now_s) == SG_BUDGET_ADDRESS) {
    return sg_budget_take(&proven->unanswered, now_s, cfg->synack_address_limit) ? SG_OK : SG_R_BACKSCATTER_BUDGET;
  }
  __u8 group[16];
  __builtin_memcpy(group, p->key.src, 16);
  /* Keep 96 + 24 bits of an IPv4 address, 48 of an IPv6 one. */
  if (p->v6) {
    __builtin_memset(group + SG_BUDGET_PREFIX_V6 / 8, 0, 16 - SG_BUDGET_PREFIX_V6 / 8);
  } else {
    group[15] = 0;
  }
  __u32 cell = (__u32)sg_siphash24_16(cfg->budget_key, group) & (SG_XDP_BUDGET_CELLS - 1);
  __u64* packed = bpf_map_lookup_elem(&sg_budget, &cell);
  if (!packed) return SG_OK;
  struct sg_budget_cell c = {(__u32)*packed, (__u32)(*packed >> 32)};
  const int ok = sg_budget_take(&c, now_s, cfg->synack_limit);
  *packed = (__u64)c.second | (__u64)c.used << 32;
  return ok ? SG_OK : SG_R_BACKSCATTER_BUDGET;
}

/* A SYN-ACK as both hooks write it: Ethernet, IP and TCP headers, the TCP checksum complete. */
struct synack {
  __u8 eth[14];
  __u8 ih[IPV6_HLEN];
  __u8 th[TCP_HLEN + 20]; /* MSS, SACK-permitted or NOPs, timestamps, NOP and window scale */
  __u32 tcp_len;
  __u32 pseudo; /* the pseudo-header's sum, unfolded: what a checksum left to the NIC starts from */
};

/* The SYN-ACK for the SYN in `x`, whose options `w` holds (loaded, not yet walked):
 * XDP_TX with the reply in `out`, or XDP_DROP / XDP_PASS as the SYN decision says (counted). */
static __noinline int build_synack(const struct parsed* x, struct option_walk* w, const struct sg_xdp_config* cfg,
                                   __u32 service_flags, struct synack* out) {
  const struct pkt* p = &x->h;
  const __u32 client_seq = p->seq;
  if (w->len > 0) {
    option_walk_run(w);
    if (w->bad) return drop_for(SG_XDP_MALFORMED, SG_R_BAD_OPTION);
  }
  const int refused = refuse_source(p, cfg);
  if (refused != SG_OK) return drop_for(SG_XDP_SYN_REFUSED, (enum sg_reason)refused);

  const struct sg_cookie_secrets* secrets = current_secrets();
  if (!secrets) return pass_as(SG_XDP_PASSED_UNHANDLED);
  const __u64 now = now_ns(cfg);
  const __u16 client_mss = w->o.has_mss ? w->o.mss : (p->v6 ? SG_DEFAULT_MSS_V6 : SG_DEFAULT_MSS_V4);
  const struct sg_cookie_flow cf = cookie_flow(p);
  const __u32 cookie = sg_cookie_make(secrets, &cf, client_seq, client_mss, sg_cookie_counter(now));

  /* The TCP header, laid out as the engine's option writer does: MSS; with timestamps,
   * SACK-permitted (or two NOPs) and the timestamps, then NOP + window scale if asked for.
   * Without timestamps the cookie cannot carry window scale or SACK, so neither is offered. */
  __u8* th = out->th;
  __u32 tcp_len = TCP_HLEN + 4;
  __u8 extra_flags = 0;
  th[20] = 2;
  th[21] = 4;
  store_be16(th + 22, p->v6 ? cfg->mss_v6 : cfg->mss_v4);
  if (w->o.has_timestamps) {
    struct sg_syn_option_bits bits;
    bits.has_wscale = w->o.has_wscale;
    bits.wscale = w->o.wscale;
    bits.sack_permitted = sg_promise_sack(w->o.sack_permitted, service_flags);
    bits.ecn = cfg->announce_ecn && (p->flags & (SG_TCP_ECE | SG_TCP_CWR)) == (SG_TCP_ECE | SG_TCP_CWR);
    th[24] = bits.sack_permitted ? 4 : 1;
    th[25] = bits.sack_permitted ? 2 : 1;
    th[26] = 8;
    th[27] = 10;
    store_be32(th + 28, sg_encode_ts_options(sg_now_ms(now), &bits));
    store_be32(th + 32, w->o.tsval);
    tcp_len = TCP_HLEN + 16;
    if (w->o.has_wscale) {
      th[36] = 1;
      th[37] = 3;
      th[38] = 3;
      th[39] = cfg->wscale < SG_MAX_WSCALE ? cfg->wscale : SG_MAX_WSCALE;
      tcp_len = TCP_HLEN + 20;
    }
    if (bits.ecn) extra_flags = SG_TCP_ECE;
  }
  __builtin_memcpy(th, &p->key.dport_be, 2);
  __builtin_memcpy(th + 2, &p->key.sport_be, 2);
  store_be32(th + 4, cookie);
  store_be32(th + 8, client_seq + 1);
  th[12] = (__u8)((tcp_len / 4) << 4);
  th[13] = SG_TCP_SYN | SG_TCP_ACK | extra_flags;
  store_be16(th + 14, cfg->synack_window);

  /* IP header and the pseudo-header sum, from server to client. */
  __u8* ih = out->ih;
  __u32 pseudo;
  if (p->v6) {
    ih[0] = 0x60;
    store_be16(ih + 4, (__u16)tcp_len);
    ih[6] = IPPROTO_TCP;
    ih[7] = REPLY_TTL;
    __builtin_memcpy(ih + 8, p->key.dst, 16);
    __builtin_memcpy(ih + 24, p->key.src, 16);
    /* Pseudo-header: both addresses (already in ih), the length and the next header. */
    __u8 tail[8] = {0, 0, (__u8)(tcp_len >> 8), (__u8)tcp_len, 0, 0, 0, IPPROTO_TCP};
    pseudo = sum_words(ih + 8, 32, 0);
    pseudo = sum_words(tail, 8, pseudo);
  } else {
    ih[0] = 0x45;
    store_be16(ih + 2, (__u16)(IPV4_HLEN + tcp_len));
    ih[6] = 0x40; /* DF; ID 0 is fine with DF (RFC 6864) */
    ih[8] = REPLY_TTL;
    ih[9] = IPPROTO_TCP;
    __builtin_memcpy(ih + 12, p->key.dst + 12, 4);
    __builtin_memcpy(ih + 16, p->key.src + 12, 4);
    const __u16 csum = fold(sum_words(ih, IPV4_HLEN, 0));
    __builtin_memcpy(ih + 10, &csum, 2);
    __u8 tail[4] = {0, IPPROTO_TCP, (__u8)(tcp_len >> 8), (__u8)tcp_len};
    pseudo = sum_words(ih + 12, 8, 0);
    pseudo = sum_words(tail, 4, pseudo);
  }
  const __u16 tcp_csum = fold(sum_words(th, tcp_len, pseudo));
  __builtin_memcpy(th + 16, &tcp_csum, 2);
  out->tcp_len = tcp_len;
  out->pseudo = pseudo;

  __builtin_memcpy(out->eth, x->eth + 6, 6);
  __builtin_memcpy(out->eth + 6, x->eth, 6);
  __builtin_memcpy(out->eth + 12, x->eth + 12, 2);
  return XDP_TX;
}

/* The reply's header lengths as the verifier can bound them (read back from the stack, they are
 * any 32-bit value to it): 0 if out of range, which build_synack never returns. */
static __always_inline int synack_lengths(const struct parsed* x, const struct synack* r, __u32* ip_len, __u32* tcp_len) {
  *ip_len = x->h.v6 ? IPV6_HLEN : IPV4_HLEN;
  __u64 len = r->tcp_len; /* 64 bits: no zero-extending copy between the tests */
  /* Two tests on one register (the compiler would merge them into one on a copy, which bounds
   * nothing for the verifier). */
  if (len > sizeof(r->th)) return 0;
  asm volatile("" : "+r"(len));
  if (len < TCP_HLEN + 4) return 0;
  *tcp_len = (__u32)len;
  return 1;
}

/* What both hooks do before writing the reply: the SYN's options loaded (each hook's own helper:
 * `tc` is a constant in each entry, so each keeps only its own call), the SYN-ACK built and its
 * lengths bounded. XDP_TX with *r, *ip_len and *tcp_len set, or the verdict to return (counted). */
static __always_inline int prepare_synack(void* ctx, const int tc, const struct parsed* x,
                                          const struct sg_xdp_config* cfg, __u32 service_flags, struct synack* r,
                                          __u32* ip_len, __u32* tcp_len) {
  struct option_walk w = {};
  w.len = (x->h.tcp_hlen - TCP_HLEN) & 63;
  if (w.len > TCP_MAX_OPTIONS) return pass_as(SG_XDP_PASSED_UNHANDLED);
  if (w.len > 0) {
    const __u32 off = x->h.l4_off + TCP_HLEN;
    const long err = tc ? bpf_skb_load_bytes(ctx, off, w.buf, w.len) : bpf_xdp_load_bytes(ctx, off, w.buf, w.len);
    if (err) return pass_as(SG_XDP_PASSED_UNHANDLED);
  }
  const int verdict = build_synack(x, &w, cfg, service_flags, r);
  if (verdict != XDP_TX) return verdict;
  if (!synack_lengths(x, r, ip_len, tcp_len)) return pass_as(SG_XDP_TX_ERROR);
  return XDP_TX;
}

/* XDP: the frame becomes the SYN-ACK and goes back out where it came in. */
static __noinline int answer_syn_xdp(struct xdp_md* ctx, const struct parsed* x, const struct sg_xdp_config* cfg,
                                     __u32 service_flags) {
  struct synack r = {};
  __u32 ip_len = 0, tcp_len = 0;
  const int verdict = prepare_synack(ctx, 0, x, cfg, service_flags, &r, &ip_len, &tcp_len);
  if (verdict != XDP_TX) return verdict;
  /* The reply's length from its own headers; the frame's (padding included) from data_end. */
  const int frame_len = (int)((long)ctx->data_end - (long)ctx->data);
  const int delta = (int)(ETH_HLEN_ + ip_len + tcp_len) - frame_len;
  if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta)) return pass_as(SG_XDP_TX_ERROR);
  /* From here the frame is ours: a failure leaves it half-written, so it must not pass. */
  if (bpf_xdp_store_bytes(ctx, 0, r.eth, ETH_HLEN_) || bpf_xdp_store_bytes(ctx, ETH_HLEN_, r.ih, ip_len) ||
      bpf_xdp_store_bytes(ctx, ETH_HLEN_ + ip_len, r.th, tcp_len)) {
    return drop_as(SG_XDP_TX_ERROR);
  }
  count(SG_XDP_SYN_ANSWERED);
  return XDP_TX;
}

/* tc: the skb becomes the SYN-ACK and is redirected out of the interface it came in on. An skb,
 * unlike an XDP frame, may leave its TCP checksum to the NIC (CHECKSUM_PARTIAL, as every segment
 * a local stack sends through a veth does): then the field must hold the pseudo-header's sum,
 * not the complete checksum, and a program cannot read which it is. bpf_l4_csum_replace without
 * the pseudo-header flag changes the field of every skb but a CHECKSUM_PARTIAL one: that tells. */
static __noinline int answer_syn_tc(struct __sk_buff* skb, const struct parsed* x, const struct sg_xdp_config* cfg,
                                    __u32 service_flags) {
  struct synack r = {};
  __u32 ip_len = 0, tcp_len = 0;
  const int verdict = prepare_synack(skb, 1, x, cfg, service_flags, &r, &ip_len, &tcp_len);
  if (verdict != XDP_TX) return verdict;
  const __u32 reply_len = ETH_HLEN_ + ip_len + tcp_len;
  if (skb->len != reply_len && bpf_skb_change_tail(skb, reply_len, 0)) return pass_as(SG_XDP_TX_ERROR);
  /* From here the skb is ours: a failure leaves it half-written, so it must not pass. */
  const __u32 check_off = ETH_HLEN_ + ip_len + 16;
  __u16 before = 0, after = 0;
  if (bpf_skb_store_bytes(skb, 0, r.eth, ETH_HLEN_, 0) || bpf_skb_store_bytes(skb, ETH_HLEN_, r.ih, ip_len, 0) ||
      bpf_skb_store_bytes(skb, ETH_HLEN_ + ip_len, r.th, tcp_len, 0) ||
      bpf_l4_csum_replace(skb, check_off, 0, 1, 0) || bpf_skb_load_bytes(skb, check_off, &after, 2)) {
    return drop_as(SG_XDP_TX_ERROR);
  }
  __builtin_memcpy(&before, r.th + 16, 2);
  if (after == before) {
    /* Left to the NIC: the pseudo-header's sum, as the kernel's own TCP writes it. */
    const __u16 partial = sg_csum_fold(r.pseudo);
    if (bpf_skb_store_bytes(skb, check_off, &partial, 2, 0)) return drop_as(SG_XDP_TX_ERROR);
  } else if (bpf_skb_store_bytes(skb, check_off, &before, 2, 0)) {
    return drop_as(SG_XDP_TX_ERROR);
  }
  count(SG_XDP_SYN_ANSWERED);
  return bpf_redirect(skb->ifindex, 0);
}

/* A valid cookie ACK: its source receives at its address (syn_rules.h: sg_source_proved). */
static __always_inline void source_proved(const __u8* src, __u32 now_s) {
  struct sg_proven* entry = bpf_map_lookup_elem(&sg_proven, src);
  if (entry) {
    sg_source_proved(entry, 1, now_s);
    return;
  }
  struct sg_proven fresh = {};
  sg_source_proved(&fresh, 0, now_s);
  bpf_map_update_elem(&sg_proven, src, &fresh, BPF_ANY);
}

/* An ACK on a tuple the engine holds a flow for may still answer a SYN-ACK sent here: a client
 * that reuses its port while its closed flow lingers starts a new handshake on that tuple, and
 * the engine takes its cookie ACK over the old flow. Unless it is given back here, every such
 * SYN-ACK would count as unanswered, and a busy client that cycles through its ports would spend
 * its budget on connections it completed. Checked only for a bare ACK (a cookie ACK is one; data
 * and FINs cost no look at the source) while the source has SYN-ACKs outstanding this second, so
 * the traffic of established flows costs no cookie check. */
static __always_inline void answered_over_flow(const struct pkt* p, const struct sg_xdp_config* cfg) {
  if (!pkt_bare_ack(p->flags, pkt_payload_len(p))) return;
  struct sg_proven* entry = bpf_map_lookup_elem(&sg_proven, p->key.src);
  if (!entry) return;
  const __u64 now = now_ns(cfg);
  const __u32 now_s = (__u32)(now / 1000000000ull);
  if (entry->unanswered.second != now_s || entry->unanswered.used == 0) return;
  const struct sg_cookie_secrets* secrets = current_secrets();
  if (!secrets) return;
  const struct sg_cookie_flow cf = cookie_flow(p);
  if (sg_cookie_check(secrets, &cf, p->seq - 1, p->ack - 1, sg_cookie_counter(now))) sg_source_proved(entry, 1, now_s);
}

static __noinline int check_no_flow(const struct pkt* p, const struct sg_xdp_config* cfg) {
  /* The tc programs' entry first: the translation behind this program looks the same key up next
   * and then finds it in cache, and a flow carried in tc costs no look in a second table. */
  if (kernel_flow(&p->key) || bpf_map_lookup_elem(&sg_flows, &p->key)) {
    answered_over_flow(p, cfg);
    return pass_as(SG_XDP_FLOW_PASSED);
  }
  /* Only data or a FIN looks for a handshake record: the bare ACKs of a forged-ACK flood cost no look. */
  if (pkt_sends_data(p->flags, pkt_payload_len(p)) && kernel_handshake(&p->key)) return pass_as(SG_XDP_FLOW_PASSED);
  if (p->flags & SG_TCP_RST) return drop_as(SG_XDP_NO_FLOW);
  const struct sg_cookie_secrets* secrets = current_secrets();
  if (!secrets) return pass_as(SG_XDP_PASSED_UNHANDLED);
  const struct sg_cookie_flow cf = cookie_flow(p);
  const __u64 now = now_ns(cfg);
  if (sg_cookie_check(secrets, &cf, p->seq - 1, p->ack - 1, sg_cookie_counter(now))) {
    source_proved(p->key.src, (__u32)(now / 1000000000ull));
    return pass_as(SG_XDP_COOKIE_VALID);
  }
  return drop_as(SG_XDP_COOKIE_INVALID);
}

/* A TCP fragment (lengths checked) for a protected service: the engine drops every one, so it
 * dies here, before it costs a queue. The first fragment carries the ports and is the service's
 * when its port is; a later one carries none and is the service's when its address is (the
 * rules queue those by address alone). */
static __noinline int ipv4_fragment(const __u8* ip, const void* end) {
  if ((const void*)(ip + IPV4_HLEN) > end) return pass_as(SG_XDP_PASSED_OTHER);
  const __u32 offset = ((__u32)ip[6] << 8 | ip[7]) & 0x1fff;
  if (offset != 0) {
    struct sg_xdp_service_addr a = {};
    v4_mapped_from(a.addr, ip + 16);
    if (!bpf_map_lookup_elem(&sg_service_addrs, &a)) return pass_as(SG_XDP_PASSED_OTHER);
    return drop_for(SG_XDP_MALFORMED, SG_R_FRAGMENT);
  }
  const __u32 ihl = (__u32)(ip[0] & 0x0f) * 4;
  if (ihl < IPV4_HLEN) return pass_as(SG_XDP_PASSED_UNHANDLED);
  const __u8* tcp = ip + ihl;
  if ((const void*)(tcp + 4) > end) return pass_as(SG_XDP_PASSED_UNHANDLED);
  struct sg_xdp_service_key service = {};
  v4_mapped_from(service.addr, ip + 16);
  __builtin_memcpy(&service.port_be, tcp + 2, 2);
  if (!bpf_map_lookup_elem(&sg_services, &service)) return pass_as(SG_XDP_PASSED_OTHER);
  return drop_for(SG_XDP_MALFORMED, SG_R_FRAGMENT);
}

/* The decision both hooks share, for the frame at [data, end) of `frame_len` bytes, parsed as
 * `parsed_as` (XDP frames are linear; the tc entry pulls the headers when it must): XDP_PASS or XDP_DROP
 * (counted), or XDP_TX for a SYN to answer, with what answering it needs in *x, *cfg_out and
 * *service_flags_out. */
static __always_inline int decide(enum pkt_parse parsed_as, const void* data, const void* end, __u32 frame_len,
                                  struct parsed* x, const struct sg_xdp_config** cfg_out, __u32* service_flags_out) {
  struct pkt* p = &x->h;
  switch (parsed_as) {
    case PKT_TCP:
      break;
    case PKT_NOT_TCP:
      return pass_as(SG_XDP_PASSED_OTHER);
    case PKT_IPV4_FRAGMENT:
      return ipv4_fragment((const __u8*)data + ETH_HLEN_, end);
    default:
      return pass_as(SG_XDP_PASSED_UNHANDLED);
  }
  /* IP options and IPv6 extension headers were parsed past: a SYN carrying them is refused below
   * (sg_syn_precheck), and any other segment meets the flow and cookie checks as one without
   * would, so that forged ACKs behind them cost the flow workers nothing either. */
  __builtin_memcpy(x->eth, data, ETH_HLEN_); /* the parse checked ETH_HLEN_ bytes */

  struct sg_xdp_service_key service = {};
  __builtin_memcpy(service.addr, p->key.dst, 16);
  service.port_be = p->key.dport_be;
  const __u8* service_flags = bpf_map_lookup_elem(&sg_services, &service);
  if (!service_flags) return pass_as(SG_XDP_PASSED_OTHER);
  *service_flags_out = *service_flags;

  __u32 zero = 0;
  const struct sg_xdp_config* cfg = bpf_map_lookup_elem(&sg_config, &zero);
  if (!cfg || !cfg->ready) return pass_as(SG_XDP_PASSED_UNHANDLED);
  *cfg_out = cfg;
  if (!pkt_lengths_ok(p, frame_len)) return pass_as(SG_XDP_PASSED_UNHANDLED);

  enum sg_reason why = SG_OK;
  switch (sg_syn_precheck(p->flags, p->ip_options, &why)) {
    case SG_ACTION_DROP:
      return drop_for(why == SG_R_IP_OPTIONS ? SG_XDP_MALFORMED : SG_XDP_INVALID_FLAGS, why);
    case SG_ACTION_ANSWER:
      return XDP_TX;
    default:
      break;
  }
  if (!cfg->drop_no_flow) return pass_as(SG_XDP_PASSED_UNHANDLED);
  return check_no_flow(p, cfg);
}

SEC("xdp")
int syngate_xdp(struct xdp_md* ctx) {
  const void* data = (void*)(long)ctx->data;
  const void* end = (void*)(long)ctx->data_end;
  struct parsed x = {};
  const struct sg_xdp_config* cfg = 0;
  __u32 service_flags = 0;
  const __u32 len = (__u32)((long)end - (long)data);
  const int verdict = decide(pkt_parse_headers(data, end, len, &x.h), data, end, len, &x, &cfg, &service_flags);
  if (verdict != XDP_TX || !cfg) return verdict;
  return answer_syn_xdp(ctx, &x, cfg, service_flags);
}

/* The same fast path in the tc ingress hook (a tcx link), for interfaces where XDP would run in
 * generic mode (veth; drivers without native XDP). Generic XDP needs a linear frame, so the kernel
 * copies every GRO super-packet before the program runs, the established flows' bulk data
 * included; tc sees the skb as it is and reads only its headers. A packet this program passes
 * goes on to the next tc program (the kernel path's translation) and the stack, as from XDP. */
SEC("tc")
int syngate_tc_fast(struct __sk_buff* skb) {
  struct parsed x = {};
  const struct sg_xdp_config* cfg = 0;
  __u32 service_flags = 0;
  const void* data;
  const void* end;
  const enum pkt_parse parsed_as = pkt_parse_skb(skb, PKT_MAX_L4_OFF + TCP_HLEN, &data, &end, &x.h);
  int verdict = decide(parsed_as, data, end, skb->len, &x, &cfg, &service_flags);
  if (verdict == XDP_TX && cfg) verdict = answer_syn_tc(skb, &x, cfg, service_flags);
  switch (verdict) {
    case XDP_DROP:
      return TC_ACT_SHOT;
    case XDP_PASS:
      return TC_ACT_UNSPEC; /* tcx: the next program, then the stack */
    default:
      return verdict; /* bpf_redirect's TC_ACT_REDIRECT */
  }
}

/* ---- the daemon's flow-map writes (xdp_abi.h, sg_xdp_write_flows) ----------------------------- */
/* One change of the batch; inlined at a constant index each time, so that every access into the
 * context has a constant offset (the verifier allows no other). */
static __always_inline void write_flow(struct sg_xdp_flow_write* w) {
  struct sg_xdp_flow_key key;
  __builtin_memcpy(&key, &w->key, sizeof(key));
  const __u32 present = 1; /* the flow check only asks whether the key is there */
  if (w->op == SG_XDP_FLOW_ADD) w->result = (sg_s32)bpf_map_update_elem(&sg_flows, &key, &present, BPF_NOEXIST);
  else w->result = (sg_s32)bpf_map_delete_elem(&sg_flows, &key);
}

SEC("syscall")
int sg_xdp_write_flows(struct sg_xdp_flow_writes* ctx) {
  const __u32 count = ctx->count;
#define WRITE_AT(i) \
  if (count <= (i)) return 0; \
  write_flow(&ctx->writes[i]);
  WRITE_AT(0) WRITE_AT(1) WRITE_AT(2) WRITE_AT(3) WRITE_AT(4) WRITE_AT(5) WRITE_AT(6) WRITE_AT(7)
  WRITE_AT(8) WRITE_AT(9) WRITE_AT(10) WRITE_AT(11) WRITE_AT(12) WRITE_AT(13) WRITE_AT(14) WRITE_AT(15)
  WRITE_AT(16) WRITE_AT(17) WRITE_AT(18) WRITE_AT(19) WRITE_AT(20) WRITE_AT(21) WRITE_AT(22) WRITE_AT(23)
  WRITE_AT(24) WRITE_AT(25) WRITE_AT(26) WRITE_AT(27) WRITE_AT(28) WRITE_AT(29) WRITE_AT(30) WRITE_AT(31)
#undef WRITE_AT
  _Static_assert(SG_XDP_FLOW_WRITES_MAX == 32, "one WRITE_AT per change of the batch");
  return 0;
}
