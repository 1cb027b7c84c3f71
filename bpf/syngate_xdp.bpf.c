/* syngate's in-kernel fast path: the stateless part of the defence, run in XDP before a packet
 * costs an skb, a netfilter traversal and an NFQUEUE round trip.
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
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "syngate/spec/cookie_spec.h"
#include "syngate_xdp_maps.h"

// The project's licence (GPL-2.0-or-later, LICENSE) as the kernel spells it; "GPL" also admits
// the GPL-only helpers.
char LICENSE[] SEC("license") = "GPL";

#define ETH_HLEN_ 14
#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define TCP_HLEN 20
#define TCP_MAX_OPTIONS 40
#define REPLY_TTL 64

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sg_xdp_config);
} sg_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SG_XDP_KEY_SLOTS);
  __type(key, __u32);
  __type(value, struct sg_cookie_secrets);
} sg_keys SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} sg_key_slot SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct sg_xdp_service_key);
  __type(value, __u8);
} sg_services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct sg_xdp_service_addr);
  __type(value, __u8);
} sg_service_addrs SEC(".maps");

/* Sized by the loader to the engine's total flow budget, so an insert for a live flow never
 * fails for room; allocated as used. The value counts the flow tables holding the flow (after a
 * change in the number of flow queues every worker imports every saved flow): the program only
 * asks whether the key is present; the control plane deletes it when the last copy goes. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 262144);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sg_xdp_flow_key);
  __type(value, __u32);
} sg_flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SG_XDP_COUNTER_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} sg_counters SEC(".maps");

/* Drops by the SYN decision's reason (syn_rules.h: sg_reason values index it). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SG_R_COUNT_);
  __type(key, __u32);
  __type(value, __u64);
} sg_reasons SEC(".maps");

/* The source policy's allow (1) and deny (2) prefixes: the longest match decides. */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, SG_XDP_MAX_PREFIXES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sg_xdp_prefix_key);
  __type(value, __u8);
} sg_prefixes SEC(".maps");

/* Sources that proved themselves (syn_rules.h), written here when a cookie ACK validates, read
 * when their SYNs come: shared by all CPUs, so a proven source's budget is the address limit
 * whichever CPU its packets land on. Only a valid cookie ACK inserts: a SYN never does, so a
 * flood cannot push proven sources out. Updates race between CPUs without atomics: a lost update
 * miscounts one SYN-ACK, never lets a source through that is not proven. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, SG_XDP_PROVEN_ENTRIES);
  __type(key, struct sg_xdp_proven_key);
  __type(value, struct sg_proven);
} sg_proven SEC(".maps");

/* Backscatter budget cells (sg_budget_cell packed: second low, used high), per CPU: each CPU holds
 * its share of the budget, as each NFQUEUE worker does in the engine. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SG_XDP_BUDGET_CELLS);
  __type(key, __u32);
  __type(value, __u64);
} sg_budget SEC(".maps");

static __always_inline void count(__u32 which) {
  __u64* v = bpf_map_lookup_elem(&sg_counters, &which);
  if (v) *v += 1;
}

/* A drop by the SYN decision: counted by its outcome and by its specification reason. */
static __always_inline int drop_for(__u32 outcome, enum sg_reason why) {
  __u32 r = (__u32)why;
  __u64* v = bpf_map_lookup_elem(&sg_reasons, &r);
  if (v) *v += 1;
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

static __always_inline __u32 load_be32(const __u8* p) {
  return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __always_inline void store_be16(__u8* p, __u16 v) {
  p[0] = v >> 8;
  p[1] = v;
}

static __always_inline void store_be32(__u8* p, __u32 v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

/* The SYN's options, walked by the specification's sg_tcp_option_step, one option per bpf_loop
 * step over a stack copy: a plain loop over 40 option bytes costs the verifier more than its
 * instruction budget. */
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

/* One's-complement sum of `len` bytes (a multiple of 4, at most 40) on top of `seed`. */
static __always_inline __u32 sum_words(__u8* p, __u32 len, __u32 seed) {
  return (__u32)bpf_csum_diff(0, 0, (__be32*)p, len & 0x3c, seed);
}

static __always_inline __u16 fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

/* The packet as parsed: addresses in Address form (IPv4 v4-mapped), ports in network order. */
struct parsed {
  struct sg_xdp_flow_key key; /* client -> server */
  __u32 l4_off;               /* from the start of the frame */
  __u32 tcp_hlen;
  __u8 flags;
  __u8 v6;
  __u8 ip_options;            /* an IPv4 header longer than 20 bytes */
  __u8 eth[14];
};

/* An IPv4 address as the engine's Address holds it: v4-mapped, ::ffff:a.b.c.d. */
static __always_inline void v4_mapped_from(__u8* out, const __u8* ip4) {
  out[10] = out[11] = 0xff;
  __builtin_memcpy(out + 12, ip4, 4);
}

/* CLOCK_TAI, as the daemon's clock: the cookie counter and the TSvals must agree with the
 * engine's, and with other gateways sharing the secrets file (monotonic time counts from boot). */
static __always_inline __u64 now_ns(const struct sg_xdp_config* cfg) {
  return cfg->fixed_now_ns ? cfg->fixed_now_ns : bpf_ktime_get_tai_ns();
}

static __always_inline const struct sg_cookie_secrets* current_secrets(void) {
  __u32 zero = 0;
  const __u32* slot = bpf_map_lookup_elem(&sg_key_slot, &zero);
  if (!slot) return 0;
  __u32 index = *slot & (SG_XDP_KEY_SLOTS - 1);
  return bpf_map_lookup_elem(&sg_keys, &index);
}

static __always_inline struct sg_cookie_flow cookie_flow(const struct parsed* p) {
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
static __always_inline int refuse_source(const struct parsed* p, const struct sg_xdp_config* cfg) {
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

static __noinline int answer_syn(struct xdp_md* ctx, struct parsed* p, const struct sg_xdp_config* cfg,
                                 __u32 client_seq) {
  struct option_walk w = {};
  w.len = (p->tcp_hlen - TCP_HLEN) & 63;
  if (w.len > TCP_MAX_OPTIONS) return pass_as(SG_XDP_PASSED_UNHANDLED);
  if (w.len > 0) {
    if (bpf_xdp_load_bytes(ctx, p->l4_off + TCP_HLEN, w.buf, w.len)) return pass_as(SG_XDP_PASSED_UNHANDLED);
    bpf_loop(TCP_MAX_OPTIONS, option_step, &w, 0);
    if (w.bad) return drop_for(SG_XDP_MALFORMED, SG_R_BAD_OPTION);
  }
  const int refused = refuse_source(p, cfg);
  if (refused != SG_OK) return drop_for(SG_XDP_SYN_REFUSED, (enum sg_reason)refused);

  const struct sg_cookie_secrets* secrets = current_secrets();
  if (!secrets) return pass_as(SG_XDP_PASSED_UNHANDLED);
  const __u64 now = now_ns(cfg);
  const __u16 client_mss = w.o.has_mss ? w.o.mss : (p->v6 ? SG_DEFAULT_MSS_V6 : SG_DEFAULT_MSS_V4);
  const struct sg_cookie_flow cf = cookie_flow(p);
  const __u32 cookie = sg_cookie_make(secrets, &cf, client_seq, client_mss, sg_cookie_counter(now));

  /* The TCP header, laid out as the engine's option writer does: MSS; with timestamps,
   * SACK-permitted (or two NOPs) and the timestamps, then NOP + window scale if asked for.
   * Without timestamps the cookie cannot carry window scale or SACK, so neither is offered. */
  __u8 th[TCP_HLEN + TCP_MAX_OPTIONS] = {};
  __u32 tcp_len = TCP_HLEN + 4;
  __u8 extra_flags = 0;
  th[20] = 2;
  th[21] = 4;
  store_be16(th + 22, p->v6 ? cfg->mss_v6 : cfg->mss_v4);
  if (w.o.has_timestamps) {
    struct sg_syn_option_bits bits;
    bits.has_wscale = w.o.has_wscale;
    bits.wscale = w.o.wscale;
    bits.sack_permitted = w.o.sack_permitted;
    bits.ecn = cfg->announce_ecn && (p->flags & (SG_TCP_ECE | SG_TCP_CWR)) == (SG_TCP_ECE | SG_TCP_CWR);
    th[24] = w.o.sack_permitted ? 4 : 1;
    th[25] = w.o.sack_permitted ? 2 : 1;
    th[26] = 8;
    th[27] = 10;
    store_be32(th + 28, sg_encode_ts_options(sg_now_ms(now), &bits));
    store_be32(th + 32, w.o.tsval);
    tcp_len = TCP_HLEN + 16;
    if (w.o.has_wscale) {
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
  store_be16(th + 14, cfg->synack_window ? cfg->synack_window : 1);

  /* IP header and the pseudo-header sum, from server to client. */
  __u8 ih[IPV6_HLEN] = {};
  __u32 ip_len, pseudo;
  if (p->v6) {
    ip_len = IPV6_HLEN;
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
    ip_len = IPV4_HLEN;
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

  __u8 eth[14];
  __builtin_memcpy(eth, p->eth + 6, 6);
  __builtin_memcpy(eth + 6, p->eth, 6);
  __builtin_memcpy(eth + 12, p->eth + 12, 2);

  /* The reply's length from its own headers; the frame's (padding included) from data_end. */
  const int frame_len = (int)((long)ctx->data_end - (long)ctx->data);
  const int delta = (int)(ETH_HLEN_ + ip_len + tcp_len) - frame_len;
  if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta)) return pass_as(SG_XDP_TX_ERROR);
  /* From here the frame is ours: a failure leaves it half-written, so it must not pass. */
  if (bpf_xdp_store_bytes(ctx, 0, eth, ETH_HLEN_) || bpf_xdp_store_bytes(ctx, ETH_HLEN_, ih, ip_len & 0x3c) ||
      bpf_xdp_store_bytes(ctx, ETH_HLEN_ + ip_len, th, tcp_len & 0x3c)) {
    return drop_as(SG_XDP_TX_ERROR);
  }
  count(SG_XDP_SYN_ANSWERED);
  return XDP_TX;
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
 * its budget on connections it completed. Checked only while the source has SYN-ACKs outstanding
 * this second, so the traffic of established flows costs no cookie check. */
static __always_inline void answered_over_flow(const struct parsed* p, const struct sg_xdp_config* cfg, __u32 seq,
                                               __u32 ack) {
  if (p->flags & SG_TCP_RST) return;
  struct sg_proven* entry = bpf_map_lookup_elem(&sg_proven, p->key.src);
  if (!entry) return;
  const __u64 now = now_ns(cfg);
  const __u32 now_s = (__u32)(now / 1000000000ull);
  if (entry->unanswered.second != now_s || entry->unanswered.used == 0) return;
  const struct sg_cookie_secrets* secrets = current_secrets();
  if (!secrets) return;
  const struct sg_cookie_flow cf = cookie_flow(p);
  if (sg_cookie_check(secrets, &cf, seq - 1, ack - 1, sg_cookie_counter(now))) sg_source_proved(entry, 1, now_s);
}

static __noinline int check_no_flow(struct parsed* p, const struct sg_xdp_config* cfg, __u32 seq, __u32 ack) {
  if (bpf_map_lookup_elem(&sg_flows, &p->key)) {
    answered_over_flow(p, cfg, seq, ack);
    return pass_as(SG_XDP_FLOW_PASSED);
  }
  if (p->flags & SG_TCP_RST) return drop_as(SG_XDP_NO_FLOW);
  const struct sg_cookie_secrets* secrets = current_secrets();
  if (!secrets) return pass_as(SG_XDP_PASSED_UNHANDLED);
  const struct sg_cookie_flow cf = cookie_flow(p);
  const __u64 now = now_ns(cfg);
  if (sg_cookie_check(secrets, &cf, seq - 1, ack - 1, sg_cookie_counter(now))) {
    source_proved(p->key.src, (__u32)(now / 1000000000ull));
    return pass_as(SG_XDP_COOKIE_VALID);
  }
  return drop_as(SG_XDP_COOKIE_INVALID);
}

/* How far into the frame a TCP header may start: Ethernet, IPv6 and up to 256 bytes of extension
 * headers (more is the engine's to walk). */
#define SG_XDP_MAX_L4_OFF (ETH_HLEN_ + IPV6_HLEN + 256)

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

SEC("xdp")
int syngate_xdp(struct xdp_md* ctx) {
  const void* data = (void*)(long)ctx->data;
  const void* end = (void*)(long)ctx->data_end;
  const __u8* eth = data;
  if ((const void*)(eth + ETH_HLEN_) > end) return pass_as(SG_XDP_PASSED_OTHER);
  const __u32 frame_len = (__u32)((long)end - (long)data);

  struct parsed p = {};
  __builtin_memcpy(p.eth, eth, ETH_HLEN_);
  const __u16 proto = *(const __u16*)(eth + 12);
  const __u8* tcp;
  __u32 ip_total;
  if (proto == bpf_htons(ETH_P_IP)) {
    const __u8* ip = eth + ETH_HLEN_;
    if ((const void*)(ip + IPV4_HLEN) > end) return pass_as(SG_XDP_PASSED_OTHER);
    if (ip[9] != IPPROTO_TCP) return pass_as(SG_XDP_PASSED_OTHER);
    /* The core's IPv4 rules. Lengths that do not add up and fragments are the engine's to drop.
     * Options are not: a SYN carrying them is refused below (sg_syn_precheck), and any other
     * segment meets the flow and cookie checks as one without would, so that forged ACKs with
     * options cost the flow workers nothing either. */
    __u32 ihl = 0;
    if ((ip[0] >> 4) != 4) return pass_as(SG_XDP_PASSED_UNHANDLED);
    const enum sg_parse_error pe = sg_ipv4_header(ip, (__u32)((long)end - (long)ip), &ihl, &ip_total);
    if (pe == SG_PE_FRAGMENT) return ipv4_fragment(ip, end);
    if (pe != SG_PE_NONE) return pass_as(SG_XDP_PASSED_UNHANDLED);
    if (ihl > 60) return pass_as(SG_XDP_PASSED_UNHANDLED); /* never: ihl is 4 bits; tells the verifier */
    v4_mapped_from(p.key.src, ip + 12);
    v4_mapped_from(p.key.dst, ip + 16);
    p.l4_off = ETH_HLEN_ + ihl;
    p.ip_options = ihl > IPV4_HLEN;
    tcp = ip + ihl;
  } else if (proto == bpf_htons(ETH_P_IPV6)) {
    const __u8* ip = eth + ETH_HLEN_;
    if ((const void*)(ip + IPV6_HLEN) > end) return pass_as(SG_XDP_PASSED_OTHER);
    if ((ip[0] >> 4) != 6) return pass_as(SG_XDP_PASSED_UNHANDLED);
    /* The core's extension-header walk: a SYN behind extension headers is refused below, any
     * other segment meets the flow and cookie checks, so that forged ACKs behind a hop-by-hop
     * header cost the flow workers nothing either. Fragments stay the engine's (the rules queue
     * every IPv6 fragment to the SYN workers, away from the flows). */
    __u8 next = ip[6];
    __u32 off = ETH_HLEN_ + IPV6_HLEN;
    for (int i = 0; i < SG_IPV6_MAX_EXT_HEADERS && next != IPPROTO_TCP; i++) {
      /* The header's next-header and length bytes; unreadable ones matter only if `next` names
       * an extension header (for anything else the walk ends as not TCP). */
      __u8 h[2] = {0, 0};
      const int unreadable = bpf_xdp_load_bytes(ctx, off, h, 2) != 0;
      __u32 hlen = 0;
      const enum sg_parse_error e = sg_ipv6_ext_header(next, h[1], &hlen);
      if (e == SG_PE_NOT_TCP) return pass_as(SG_XDP_PASSED_OTHER);
      if (e != SG_PE_NONE || unreadable) return pass_as(SG_XDP_PASSED_UNHANDLED);
      next = h[0];
      off += hlen;
      if (off > SG_XDP_MAX_L4_OFF) return pass_as(SG_XDP_PASSED_UNHANDLED);
    }
    if (next != IPPROTO_TCP) return pass_as(SG_XDP_PASSED_UNHANDLED);
    ip_total = IPV6_HLEN + ((__u32)ip[4] << 8 | ip[5]);
    __builtin_memcpy(p.key.src, ip + 8, 16);
    __builtin_memcpy(p.key.dst, ip + 24, 16);
    p.l4_off = off;
    p.ip_options = off > ETH_HLEN_ + IPV6_HLEN;
    p.v6 = 1;
    if (off > SG_XDP_MAX_L4_OFF) return pass_as(SG_XDP_PASSED_UNHANDLED); /* tells the verifier */
    tcp = (const __u8*)data + off;
  } else {
    return pass_as(SG_XDP_PASSED_OTHER);
  }
  if ((const void*)(tcp + TCP_HLEN) > end) return pass_as(SG_XDP_PASSED_UNHANDLED);
  __builtin_memcpy(&p.key.sport_be, tcp, 2);
  __builtin_memcpy(&p.key.dport_be, tcp + 2, 2);

  struct sg_xdp_service_key service = {};
  __builtin_memcpy(service.addr, p.key.dst, 16);
  service.port_be = p.key.dport_be;
  if (!bpf_map_lookup_elem(&sg_services, &service)) return pass_as(SG_XDP_PASSED_OTHER);

  __u32 zero = 0;
  const struct sg_xdp_config* cfg = bpf_map_lookup_elem(&sg_config, &zero);
  if (!cfg || !cfg->ready) return pass_as(SG_XDP_PASSED_UNHANDLED);

  /* What the engine would call malformed or cannot be sure of is its call, not ours. */
  const __u32 ip_hlen = p.l4_off - ETH_HLEN_;
  if (ip_total > frame_len - ETH_HLEN_ || ip_total < ip_hlen + TCP_HLEN) return pass_as(SG_XDP_PASSED_UNHANDLED);
  if (p.v6 && (sg_is_v4_mapped(p.key.src) || sg_is_v4_mapped(p.key.dst))) return pass_as(SG_XDP_PASSED_UNHANDLED);
  p.tcp_hlen = (__u32)(tcp[12] >> 4) * 4;
  if (p.tcp_hlen < TCP_HLEN || ip_hlen + p.tcp_hlen > ip_total) return pass_as(SG_XDP_PASSED_UNHANDLED);
  p.flags = tcp[13];
  const __u32 seq = load_be32(tcp + 4);
  const __u32 ack = load_be32(tcp + 8);

  enum sg_reason why = SG_OK;
  switch (sg_syn_precheck(p.flags, p.ip_options, &why)) {
    case SG_ACTION_DROP:
      return drop_for(why == SG_R_IP_OPTIONS ? SG_XDP_MALFORMED : SG_XDP_INVALID_FLAGS, why);
    case SG_ACTION_ANSWER:
      return answer_syn(ctx, &p, cfg, seq);
    default:
      break;
  }
  if (!cfg->drop_no_flow) return pass_as(SG_XDP_PASSED_UNHANDLED);
  return check_no_flow(&p, cfg, seq, ack);
}
