/* Established flows in the kernel: a tc (clsact) program, attached at ingress and egress, that
 * translates the segments of proxied connections the daemon handed over, so that they skip
 * NFQUEUE. What a segment becomes is include/syngate/spec/xlate_spec.h's, the engine's own
 * specification; what the program shares with the daemon (map key and value, mark, counters) is
 * include/syngate/bpf/tc_abi.h, which also explains the hand-over and who owns the entries.
 *
 * Per packet: parse (bpf/lib/parse.h); anything the program cannot rewrite (not TCP, IPv4
 * options, fragments, IPv6 extension headers, lengths the engine would judge, an option layout
 * it cannot walk) is left alone and unmarked, so the NFQUEUE rules take it as before. A flow's
 * SYN and RST segments go the same way (an RST recorded for the engine first), and so do the
 * client's segments after its FIN and every segment after a believable RST (only where the packet
 * can still reach the queue: lib/tc_rewritable.h, which host mode's OUTPUT match shares). FINs are
 * translated here, both ways; a believable one is recorded, and the engine told through
 * sg_tc_events (so are the acks of a recorded FIN), as it sees none of the close.
 * The rest is translated: the
 * header and options are copied to the stack, translated there, written back, and the checksum
 * gets one incremental update with the difference the specification returns.
 *
 * Forwarding (router and both modes, ingress). Before a segment is rewritten the program asks the
 * kernel's FIB where it goes (route_of). One the kernel would refuse to forward (TTL about to
 * expire, too big for the way out with DF or IPv6, an unreachable, prohibit or blackhole route) is
 * left untranslated: the ICMP error the kernel answers with must quote what its sender sent, or
 * the sender ignores it (a download through a small-MTU link would stall). Once translated, a
 * segment with a resolved next hop is sent on by the program itself (TTL lowered, MACs from the
 * FIB, bpf_redirect), skipping ip_forward and netfilter's FORWARD and POSTROUTING hooks, as a
 * flowtable does; anything else goes up the stack as before. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "syngate/bpf/tc_abi.h"
#include "syngate/spec/backend_syn_spec.h"
#include "syngate/spec/cookie_spec.h"
#include "syngate/spec/flow_spec.h"
#include "syngate/spec/xlate_spec.h"
#include "lib/bytes.h"
#include "lib/csum.h"
#include "lib/parse.h"
#include "lib/tc_rewritable.h"

// The project's licence (GPL-2.0-or-later, LICENSE) as the kernel spells it.
char LICENSE[] SEC("license") = "GPL";

_Static_assert(sizeof(struct pkt_tuple) == sizeof(struct sg_tc_flow_key), "the parsed tuple is the map key");
_Static_assert(SG_TC_TO_SERVER == SG_XLATE_TO_SERVER && SG_TC_TO_CLIENT == SG_XLATE_TO_CLIENT,
               "one direction vocabulary");

/* Entries are written by the daemon and by sg_tc_synack's hand-over, and deleted by the daemon only,
 * through sg_tc_release (tc_abi.h); it sizes the map at load. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct sg_tc_flow_key);
  __type(value, struct sg_tc_flow);
} sg_tc_flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SG_TC_COUNTER_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} sg_tc_counters SEC(".maps");

/* The flows whose close the engine should merge now, or whose hand-over sg_tc_synack made
 * (tc_abi.h): at most five records a connection (the hand-over, each direction's FIN and its
 * ack), read by the daemon every 100 ms. 2 MiB holds 29000 of them (72 bytes with the ring's
 * header): over half a second of connections at 10k/s, five times the reading interval. */
/* Submitted without a wakeup (BPF_RB_NO_WAKEUP): the daemon reads the ring when it looks, before
 * each batch and at each sweep, and never sleeps on it. A wakeup is an irq_work, raised by a
 * self-IPI whenever the reader had caught up, which the flow worker's drain before each batch
 * makes the rule: in a VM each one exits to the hypervisor (4% of all samples under
 * redis-benchmark -k 0 with tc_handshake on, native_write_msr under bpf_ringbuf_submit). */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 2 << 20);
} sg_tc_events SEC(".maps");

/* The backend SYNs whose SYN-ACK sg_tc_synack may answer (tc_abi.h, struct sg_tc_handshake),
 * keyed by the SYN-ACK's own tuple; sized by the daemon at load. LRU: a record whose flow ended
 * before its SYN-ACK (a timeout, the backend's RST) is not withdrawn, and goes when room is
 * needed; a stale one never matches (the SYN-ACK must acknowledge its client ISN). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct sg_tc_flow_key);
  __type(value, struct sg_tc_handshake);
} sg_tc_handshakes SEC(".maps");

/* A client's early segments, kept while its backend has not answered (tc_abi.h, struct
 * sg_tc_early_segment): written by sg_tc_early_store, sent on and deleted by sg_tc_synack. LRU: a
 * slot whose SYN-ACK never came here goes when room is needed; a stale one never matches (the
 * record's generation). 4096 slots of 2 KiB: 8 MiB, a few hundred milliseconds of early requests
 * at 10k connections a second waiting on their backends. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct sg_tc_early_key);
  __type(value, struct sg_tc_early_segment);
} sg_tc_early SEC(".maps");

/* sg_tc_early_store's scratch, per CPU: the slot as it is written, with room past the frame for
 * the checksum's last chunk (summed in fixed steps the verifier can bound) and the pseudo-header. */
struct tc_early_scratch {
  struct sg_tc_early_key key;
  struct sg_tc_early_segment seg;
  __u8 slack[1024 + 8];
  __u8 pseudo[40];
  /* Set by translate just before its tail call for a segment on a closed flow's pair, taken (and
   * cleared) first thing, as sg_tc_cookie_ack's over_closed. */
  __u32 over_closed;
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tc_early_scratch);
} sg_tc_early_scratch SEC(".maps");

/* What sg_tc_cookie_ack needs to open a flow (tc_abi.h): the cookie secrets the daemon publishes,
 * the services it may open flows for, and while the daemon is there to take them. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SG_TC_KEY_SLOTS);
  __type(key, __u32);
  __type(value, struct sg_cookie_secrets);
} sg_tc_keys SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} sg_tc_key_slot SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct sg_tc_service_key);
  __type(value, __u8);
} sg_tc_services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sg_tc_open_config);
} sg_tc_open SEC(".maps");

/* sg_tc_synack and sg_tc_cookie_ack, reached by tail calls from the ingress program: frames of
 * their own (the translation's is at the verifier's limit). */
#define TC_TAIL_SYNACK 0
#define TC_TAIL_COOKIE_ACK 1
#define TC_TAIL_EARLY 2
SEC("tc")
int sg_tc_synack(struct __sk_buff* skb);
SEC("tc")
int sg_tc_cookie_ack(struct __sk_buff* skb);
SEC("tc")
int sg_tc_early_store(struct __sk_buff* skb);
struct {
  __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
  __uint(max_entries, 3);
  __type(key, __u32);
  __array(values, int(void*));
} sg_tc_tail SEC(".maps") = {
    .values = {[TC_TAIL_SYNACK] = (void*)&sg_tc_synack, [TC_TAIL_COOKIE_ACK] = (void*)&sg_tc_cookie_ack,
               [TC_TAIL_EARLY] = (void*)&sg_tc_early_store},
};

/* Enough linear bytes for the deepest TCP header the parser accepts. */
#define TC_PULL_LEN (PKT_MAX_L4_OFF + TCP_MAX_HLEN)

/* An offset into the stack copy of the header, masked where the verifier sees it (the compiler
 * would drop a mask it can prove redundant, and the verifier may not share its proof). The copy
 * has room past 64 for the field read at the largest masked offset (TC_HDR_ROOM). */
static __always_inline __u32 hdr_off(__u32 off) {
  asm volatile("" : "+r"(off));
  return off & 63;
}

/* A frame length (1 to 2048) as a helper's size argument: bounded on the register the call reads
 * (the compiler may pass a copy that earlier checks did not bound). */
static __always_inline __u32 len_1_to_2048(__u32 n) {
  n -= 1;
  asm volatile("%0 &= 0x7ff" : "+r"(n));
  return n + 1;
}

static __always_inline void count_by(__u32 which, __u64 n) {
  __u64* c = bpf_map_lookup_elem(&sg_tc_counters, &which);
  if (c) *c += n;
}
static __always_inline void count(__u32 which) { count_by(which, 1); }

/* Set by the daemon before load: the programs sit where segments are forwarded (router and both
 * modes), and may send a translated one on themselves (gateway.tc_forward). */
const volatile __u8 sg_tc_router = 0;
const volatile __u8 sg_tc_forward = 0;
/* gateway.tc_handshake (implies sg_tc_forward): sg_tc_synack may answer backends' SYN-ACKs. Off,
 * neither the tail call nor the mark of a record (client_data_before_synack) costs a segment
 * anything. */
const volatile __u8 sg_tc_answer_synacks = 0;
/* sg_tc_cookie_ack may open flows from clients' cookie ACKs (implies sg_tc_answer_synacks: the
 * SYN-ACK of a flow opened here must find the program that answers it). Off, a bare ACK that
 * meets no entry costs nothing more. */
const volatile __u8 sg_tc_open_flows = 0;
/* gateway.tc_early_data (implies sg_tc_answer_synacks): a client's data that overtakes its
 * backend's SYN-ACK is kept here (sg_tc_early_store) for sg_tc_synack to send on, rather than
 * making the SYN-ACK the engine's. */
const volatile __u8 sg_tc_keep_early = 0;
/* How long a flow's entry keeps the FIB's answer (tc_abi.h, struct sg_tc_route_cache), in ticks of
 * 2^20 ns: the shipped SG_TC_ROUTE_CACHE_TICKS; the tests set it longer, where a stalled test run
 * must not turn a cached answer into a lookup. */
const volatile __u32 sg_tc_route_ticks = SG_TC_ROUTE_CACHE_TICKS;
/* The hand-over counter (tc_abi.h, sg_tc_flow.generation) of the records sg_tc_cookie_ack
 * writes: the daemon starts it where its own count stands. */
__u32 sg_tc_generation = 0;
/* Written by the daemon while the programs run: 0 while a policy rule selects by firewall mark
 * (gateway/interfaces.hpp, fib_use), which netfilter sets only after this hook. The FIB's answer
 * is then not the kernel's: route_of asks nothing, so no segment is judged or sent on by it. */
volatile __u8 sg_tc_fib_trusted = 1;

/* The tail calls' scratch (sg_tc_synack, sg_tc_cookie_ack), per CPU, off the stack: the handshake
 * and the answer's headers do not fit beside the parse and the option walk (which bpf_loop wants
 * on the stack). */
struct tc_synack_scratch {
  struct sg_tc_handshake hs;
  struct sg_synack synack;
  struct sg_handover ho;
  struct sg_tc_flow to_server;
  struct sg_tc_flow to_client;
  struct sg_tc_flow_key c2s;
  __u8 macs[12];                          /* the SYN-ACK's destination and source MACs */
  __u8 old_tcp[TCP_MAX_HLEN + 4];         /* the SYN-ACK's TCP header (room for the masks) */
  __u8 hdr[IPV6_HLEN + TCP_MAX_HLEN];      /* an answer's IP and TCP headers (room for the masks) */
  /* sg_tc_cookie_ack's */
  struct sg_cookie_ack cookie_ack;
  struct sg_backend_syn syn;
  __u8 syn_options[SG_BACKEND_SYN_MAX_OPTIONS];
  /* Set by translate just before its tail call for a cookie ACK on a closed flow's pair, taken
   * (and cleared) by sg_tc_cookie_ack first thing: the one fact a tail call cannot carry. */
  __u32 over_closed;
  /* sg_tc_synack with early segments to send (send_early): the SYN-ACK as it came, to be put back
   * in the skb after they went, and whether its checksum field holds a full sum. */
  __u32 synack_len;      /* 0 while not saved */
  __u32 synack_full;
  struct sg_tc_early_key early_key;
  __u8 pseudo[40];
  __u8 synack_frame[128];
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tc_synack_scratch);
} sg_tc_synack_scratch SEC(".maps");

static __always_inline struct tc_synack_scratch* synack_scratch(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&sg_tc_synack_scratch, &zero);
}

enum tc_route {
  TC_ROUTE_UP = 0,  /* the stack takes it from here (local, no neighbour yet, forwarding off...) */
  TC_ROUTE_OUT,     /* forwardable: route.fib holds the way out and the MACs */
  TC_ROUTE_REFUSED  /* the kernel will answer it with an ICMP error, or drop it: leave it as sent */
};

/* The FIB query and its answer, per CPU: on the stack it would not fit beside the translation's
 * frame (the verifier's 512 bytes are the sum of a call chain's frames). */
struct tc_route_scratch {
  struct bpf_fib_lookup fib;
  __u8 ip[IPV6_HLEN];
  __u32 verdict; /* enum tc_route: this packet's, set by route_of (no room on the caller's stack) */
  struct sg_tc_route_cache cached; /* route_of's answer as an entry keeps it (tc_abi.h) */
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tc_route_scratch);
} sg_tc_route SEC(".maps");

static __always_inline struct tc_route_scratch* route_scratch(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&sg_tc_route, &zero);
}

/* Where the kernel would send this ingress segment (its IP header has no options or extension
 * headers: tc_headers_rewritable), asked with what its own forwarding would use: the incoming
 * interface (policy rules, the forwarding sysctl), the addresses, ports and TOS/flow label, and
 * the size of the datagrams it carries for the MTU. The parse's TCP header length and ports
 * (network order, source in the low half) come from the caller, and the entry of the segment's
 * direction, if any (NULL before the flow has one), whose route cache (tc_abi.h) answers instead
 * of the FIB where it can and keeps the FIB's answer. Leaves the answer in the scratch, and in
 * r->cached as an entry would keep it. */
static __noinline int route_of(struct __sk_buff* skb, __u32 v6, __u32 tcp_hlen, __u32 ports, struct sg_tc_flow* f) {
  struct tc_route_scratch* r = route_scratch();
  if (!r) return TC_ROUTE_UP;
  r->verdict = TC_ROUTE_UP;
  /* Read once, here: forward() goes by the verdict this call leaves, never by the flag. */
  if (!sg_tc_fib_trusted) return TC_ROUTE_UP;
  /* Frames for another host's MAC (a promiscuous port) the stack would drop: not ours to send. */
  if (skb->pkt_type != 0 /* PACKET_HOST */) return TC_ROUTE_UP;
  __builtin_memset(&r->fib, 0, sizeof(r->fib));
  struct bpf_fib_lookup* fib = &r->fib;
  __u8* ip = r->ip;
  __u32 ttl;
  int dont_fragment;
  if (v6) {
    if (bpf_skb_load_bytes(skb, ETH_HLEN_, ip, IPV6_HLEN) != 0) return TC_ROUTE_UP;
    fib->family = 10; /* AF_INET6 */
    fib->flowinfo = bpf_htonl(load_be32(ip) & 0x0fffffffu);
    __builtin_memcpy(fib->ipv6_src, ip + 8, 16);
    __builtin_memcpy(fib->ipv6_dst, ip + 24, 16);
    ttl = ip[7];
    dont_fragment = 1; /* IPv6 routers never fragment */
  } else {
    if (bpf_skb_load_bytes(skb, ETH_HLEN_, ip, IPV4_HLEN) != 0) return TC_ROUTE_UP;
    fib->family = 2; /* AF_INET */
    fib->tos = ip[1];
    __builtin_memcpy(&fib->ipv4_src, ip + 12, 4);
    __builtin_memcpy(&fib->ipv4_dst, ip + 16, 4);
    ttl = ip[8];
    dont_fragment = (ip[6] & 0x40) != 0;
  }
  const __u32 ip_hlen = v6 ? IPV6_HLEN : IPV4_HLEN;
  /* The per-packet inputs just set (tos or flowinfo, one union in the zeroed query), before the
   * lookup writes its answer over them. */
  const __u32 inputs = fib->flowinfo;
  const __u32 in_ifindex = skb->ingress_ifindex;
  /* The largest datagram this skb puts on the wire, against the route's MTU (cached path MTUs
   * included): a GRO/GSO super-packet's are its segments (the kernel's own skb check with tot_len 0
   * lets every GSO skb pass, and a redirected one would leave too big for the link). */
  const __u32 ip_total = v6 ? IPV6_HLEN + load_be16(ip + 4) : load_be16(ip + 2);
  const __u32 tot_len = skb->gso_size ? ip_hlen + tcp_hlen + skb->gso_size : ip_total;
  const __u32 now = (__u32)(bpf_ktime_get_coarse_ns() >> 20);
  struct sg_tc_route_cache* c = &r->cached;
  if (f) {
    /* A copy, checked as a whole: what it holds cannot change under the checks. */
    __builtin_memcpy(c, &f->route, sizeof(*c));
    if (c->out_ifindex && c->in_ifindex == in_ifindex && c->inputs == inputs && tot_len <= c->mtu && ttl > 1 &&
        (__s32)(c->until - now) > 0 && c->check == sg_tc_route_check(c)) {
      fib->ifindex = c->out_ifindex;
      __builtin_memcpy(fib->dmac, c->macs, 6);
      __builtin_memcpy(fib->smac, c->macs + 6, 6);
      count(SG_TC_ROUTE_CACHED);
      r->verdict = TC_ROUTE_OUT;
      return TC_ROUTE_OUT;
    }
  }
  fib->l4_protocol = IPPROTO_TCP;
  fib->sport = (__be16)(ports & 0xffff);
  fib->dport = (__be16)(ports >> 16);
  fib->ifindex = in_ifindex;
  fib->tot_len = (__u16)tot_len;
  const long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
  const int forwarded = rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH ||
                        rc == BPF_FIB_LKUP_RET_FRAG_NEEDED;
  if ((forwarded && ttl <= 1) || (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && dont_fragment) ||
      rc == BPF_FIB_LKUP_RET_BLACKHOLE || rc == BPF_FIB_LKUP_RET_UNREACHABLE || rc == BPF_FIB_LKUP_RET_PROHIBIT)
    return TC_ROUTE_REFUSED;
  if (rc != BPF_FIB_LKUP_RET_SUCCESS) return r->verdict;
  r->verdict = TC_ROUTE_OUT;
  /* With tot_len given, a lookup that succeeds gives the route's MTU in its place. */
  c->out_ifindex = fib->ifindex;
  c->in_ifindex = in_ifindex;
  c->inputs = inputs;
  c->until = now + sg_tc_route_ticks;
  __builtin_memcpy(c->macs, fib->dmac, 6);
  __builtin_memcpy(c->macs + 6, fib->smac, 6);
  c->mtu = fib->mtu_result;
  c->pad = 0;
  c->pad2 = 0;
  c->check = sg_tc_route_check(c);
  if (f) __builtin_memcpy(&f->route, c, sizeof(*c));
  return TC_ROUTE_OUT;
}

/* Sends a translated segment on by the way route_of found for it, as ip_forward/ip6_forward
 * would: TTL or hop limit one lower (route_of refused the ones that would expire), MACs of the
 * next hop. TC_ACT_OK (up the stack) where route_of found no way out, or a write fails before the
 * packet is changed. */
static __noinline int forward(struct __sk_buff* skb, __u32 v6) {
  struct tc_route_scratch* r = route_scratch();
  if (!r || r->verdict != TC_ROUTE_OUT) return TC_ACT_OK;
  __u8* ip = r->ip;
  if (v6) {
    const __u8 hop_limit = ip[7] - 1;
    if (bpf_skb_store_bytes(skb, ETH_HLEN_ + 7, &hop_limit, 1, 0) != 0) return TC_ACT_OK;
  } else {
    /* TTL and checksum in one write: no moment where they disagree. */
    __u8 ttl_to_check[4];
    const __u16 check = sg_ipv4_check_after_ttl_decrement(load_be16(ip + 10));
    ttl_to_check[0] = ip[8] - 1;
    ttl_to_check[1] = ip[9];
    store_be16(ttl_to_check + 2, check);
    if (bpf_skb_store_bytes(skb, ETH_HLEN_ + 8, ttl_to_check, 4, 0) != 0) return TC_ACT_OK;
  }
  __u8 macs[12];
  __builtin_memcpy(macs, r->fib.dmac, 6);
  __builtin_memcpy(macs + 6, r->fib.smac, 6);
  if (bpf_skb_store_bytes(skb, 0, macs, 12, 0) != 0) return TC_ACT_SHOT; /* TTL already lowered */
  count(SG_TC_FORWARDED);
  return bpf_redirect(r->fib.ifindex, 0);
}

static __always_inline void reverse_key(const struct sg_tc_flow_key* k, struct sg_tc_flow_key* r) {
  __builtin_memcpy(r->src, k->dst, 16);
  __builtin_memcpy(r->dst, k->src, 16);
  r->sport_be = k->dport_be;
  r->dport_be = k->sport_be;
}

/* A flow's client segment with data (or a FIN) meets no entry, or an older flow's closed ones: if
 * the flow's SYN-ACK may still be answered here, the segment is on its way to the engine, which
 * will hold it until the backend has answered. The answer is then the engine's (sg_tc_synack leaves it): it sends the data right
 * behind the backend's ACK and only then opens the client's window. Answered here, the window
 * update would let the client's next segments through tc ahead of the held one, which then reached
 * the backend late with an older timestamp, and was refused (PAWS). */
static __always_inline void client_data_before_synack(const struct sg_tc_flow_key* key, __u8 flags, __u32 payload,
                                                      int egress) {
  if (!sg_tc_answer_synacks || egress || !pkt_sends_data(flags, payload)) return;
  struct sg_tc_flow_key synack_key;
  reverse_key(key, &synack_key);
  struct sg_tc_handshake* record = bpf_map_lookup_elem(&sg_tc_handshakes, &synack_key);
  if (record) *(volatile __u8*)&record->client_data = 1; /* the low byte alone: tc_abi.h */
}

/* The engine's sweep merges the flow now (its client -> server key). */
static __always_inline void tell_engine(const struct sg_tc_flow* f, const struct sg_tc_flow_key* key,
                                        const struct sg_tc_flow_key* rkey) {
  struct sg_tc_event* e = bpf_ringbuf_reserve(&sg_tc_events, sizeof(*e), 0);
  if (!e) {
    count(SG_TC_EVENT_LOST);
    return;
  }
  __builtin_memset(e, 0, sizeof(*e));
  __builtin_memcpy(&e->key, f->direction == SG_TC_TO_SERVER ? key : rkey, sizeof(e->key));
  e->kind = SG_TC_EVENT_CLOSE;
  e->close_generation = f->generation;
  bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* A FIN of this segment's direction is recorded (this segment's, or an earlier one it retransmits:
 * told again, which the engine's merge takes as nothing new). Read where the segment is done
 * with, so the engine, told, finds all of it in the entry (no stack slot to carry it: the program
 * is at the verifier's stack limit). */
#define FIN_TO_TELL ((p.flags & SG_TCP_FIN) && (f->closing & SG_TC_SEEN_FIN))

/* Each direction's record as the shared rules (xlate_spec.h) read it; no peer: an empty one. */
static __always_inline void tracks_of(const struct sg_tc_flow* f, const struct sg_tc_flow* peer,
                                      struct sg_flow_track* self, struct sg_flow_track* other) {
  self->next = f->sender_next;
  self->acked = f->acked;
  self->window = f->window_bytes;
  other->next = peer ? peer->sender_next : 0;
  other->acked = peer ? peer->acked : 0;
  other->window = peer ? peer->window_bytes : 0;
}

/* A segment's ack in its receiver's space, as the records keep it (the client's acks moved into
 * the backend's). */
static __always_inline __u32 ack_in_rx_space(const struct sg_tc_flow* f, __u32 ack) {
  return f->direction == SG_TC_TO_SERVER ? sg_ack_to_backend(ack, f->delta) : ack;
}

/* A client's bare ACK that the flow's closed record leaves to the queue (tc_segment_rewritable:
 * after the client's FIN, an RST or the engine's punt; never translated with the old numbers) may
 * be a new connection's cookie ACK: the client reuses its port, as a busy one does within the
 * linger. sg_tc_cookie_ack takes it as on a pair with no entries, and an ACK whose cookie fails
 * goes on to the engine as before. Returns only if the tail call could not be made. */
static __always_inline void open_over_closed(struct __sk_buff* skb) {
  struct tc_synack_scratch* x = synack_scratch();
  if (!x) return;
  x->over_closed = 1;
  bpf_tail_call(skb, &sg_tc_tail, TC_TAIL_COOKIE_ACK);
  x->over_closed = 0;
}

/* A client's data on a pair whose flow's entries are closed (tc_rewritable.h) may be a new
 * connection's early request: sg_tc_early_store takes it as on a pair with no entries, and counts
 * one it finds no record for as this flow's punted segment. Returns only if the tail call could
 * not be made. */
static __always_inline void early_over_closed(struct __sk_buff* skb) {
  __u32 zero = 0;
  struct tc_early_scratch* x = bpf_map_lookup_elem(&sg_tc_early_scratch, &zero);
  if (!x) return;
  x->over_closed = 1;
  bpf_tail_call(skb, &sg_tc_tail, TC_TAIL_EARLY);
  x->over_closed = 0;
}

static __always_inline int translate(struct __sk_buff* skb, int egress) {
  if (egress && (skb->mark & SG_TC_MARK)) {
    count(SG_TC_ALREADY_MARKED);
    return TC_ACT_OK;
  }
  const void* data;
  const void* end;
  struct pkt p = {};
  if (pkt_parse_skb(skb, TC_PULL_LEN, &data, &end, &p) != PKT_TCP) return TC_ACT_OK;
  if (!tc_headers_rewritable(&p, skb->len)) return TC_ACT_OK;
  /* From here on the packet is reached through helpers only: forgetting how IPv4 and IPv6 got
   * their offsets lets the verifier treat both families as one path. */
  __u32 hlen = p.tcp_hlen;
  __u32 l4 = p.l4_off;
  __u32 payload = pkt_payload_len(&p);
  asm volatile("" : "+r"(l4), "+r"(hlen), "+r"(payload));
  if (hlen < TCP_HLEN || hlen > TCP_MAX_HLEN || l4 > PKT_MAX_L4_OFF) return TC_ACT_OK;

  /* A SYN is never translated here (a retransmitted SYN-ACK is the engine's, and the fast path's
   * cookie SYN-ACKs leave through this hook by the thousand in a flood): no lookup, which in a
   * table of many flows costs a cache miss or two. */
  if (p.flags & SG_TCP_SYN) {
    /* A backend's SYN-ACK reaches the router's ingress: sg_tc_synack may answer it (it counts its
     * own outcome, and comes back here only if the tail call cannot be made). */
    if (sg_tc_answer_synacks && !egress && (p.flags & (SG_TCP_SYN | SG_TCP_ACK | SG_TCP_RST | SG_TCP_FIN)) ==
                                       (SG_TCP_SYN | SG_TCP_ACK))
      bpf_tail_call(skb, &sg_tc_tail, TC_TAIL_SYNACK);
    count(SG_TC_MISS);
    return TC_ACT_OK;
  }
  const struct sg_tc_flow_key* key = (const struct sg_tc_flow_key*)&p.key;
  struct sg_tc_flow* f = bpf_map_lookup_elem(&sg_tc_flows, key);
  if (!f) {
    /* A client's early data: kept for the SYN-ACK to send on (the tail call counts its own
     * outcome, and comes back here only if it cannot be made). */
    if (sg_tc_keep_early && !egress && pkt_sends_data(p.flags, payload)) bpf_tail_call(skb, &sg_tc_tail, TC_TAIL_EARLY);
    client_data_before_synack(key, p.flags, payload, egress);
    /* A bare ACK with no flow: a client's cookie ACK, maybe (it counts its own outcome). */
    if (sg_tc_open_flows && !egress && pkt_bare_ack(p.flags, payload)) bpf_tail_call(skb, &sg_tc_tail, TC_TAIL_COOKIE_ACK);
    count(SG_TC_MISS);
    return TC_ACT_OK;
  }
  struct sg_tc_flow_key rkey;
  reverse_key(key, &rkey);
  const struct sg_tc_flow* peer = bpf_map_lookup_elem(&sg_tc_flows, &rkey);

  /* The engine's segments: RST (SYN went above), and what closing sends back. */
  if (p.flags & SG_TCP_RST) {
    /* Only an RST the engine may believe (exact, or in the receiver's window) closes the flow
     * for the program: a blind one must not push the flow back to the queue. */
    const int known = f->seen && peer && peer->seen;
    const enum sg_rst_verdict v = sg_rst_check(p.seq, f->sender_next, peer ? peer->acked : 0,
                                               peer ? peer->window_bytes : 0, known);
    if (v != SG_RST_OUT_OF_WINDOW) f->closing |= SG_TC_SEEN_RST;
    count(SG_TC_PUNTED);
    return TC_ACT_OK;
  }
  /* Before anything is recorded or rewritten: a segment the kernel will refuse to forward stays
   * as its sender sent it, for the ICMP error to quote. */
  if (sg_tc_router && !egress &&
      route_of(skb, p.v6, hlen, (__u32)p.key.sport_be | (__u32)p.key.dport_be << 16, f) == TC_ROUTE_REFUSED) {
    count(SG_TC_PUNTED);
    return TC_ACT_OK;
  }
  /* Judged on the flow as it was before this segment: the client's own FIN is still translated. */
  const int rewritable = tc_segment_rewritable(p.flags, p.seq, p.ack, payload, f, peer, egress);
  /* Only a FIN the sender could have aimed (xlate_spec.h, the engine's rule) closes the flow for
   * the program; a blind one is still translated, for the endpoint to judge, and changes nothing
   * here. */
  if ((p.flags & SG_TCP_FIN) && !(f->closing & SG_TC_SEEN_FIN)) {
    struct sg_flow_track me, other;
    tracks_of(f, peer, &me, &other);
    if (sg_fin_believable(&me, &other, f->seen && peer && peer->seen, p.seq, p.seq + payload, ack_in_rx_space(f, p.ack))) {
      f->fin_seq = p.seq + payload;
      f->closing |= SG_TC_SEEN_FIN;
      /* Told once the segment is recorded below (FIN_TO_TELL): the engine may read the entry the
       * moment the event is out, and must find the whole segment in it. */
      if (!rewritable) tell_engine(f, key, &rkey);
    }
  }
  /* Egress sees unmarked only what host mode's OUTPUT match let past the queue (the same test,
   * lib/tc_rewritable.h): that decision is taken, and a flow that started closing since must not
   * make this segment leave untranslated. */
  if (!rewritable) {
    if (sg_tc_open_flows && !egress && f->direction == SG_TC_TO_SERVER && pkt_bare_ack(p.flags, payload))
      open_over_closed(skb);
    /* A new connection on the pair, opened over the old flow's closed entries (a port reused
     * within the linger), sends its request before its backend answered: kept as on a pair with
     * no entries (the tail call counts a segment it finds no record for as punted, as here), else
     * it goes to the engine, and so does the SYN-ACK. */
    if (f->direction == SG_TC_TO_SERVER) {
      if (sg_tc_keep_early && !egress && pkt_sends_data(p.flags, payload)) early_over_closed(skb);
      client_data_before_synack(key, p.flags, payload, egress);
    }
    count(SG_TC_PUNTED);
    return TC_ACT_OK;
  }

  /* The TCP header and its options, on the stack. */
  struct tc_hdr_copy h = {};
  __u8* hdr = h.b;
  h.len = hlen;
  if (bpf_skb_load_bytes(skb, l4, hdr, hlen) != 0) {
    if (FIN_TO_TELL) tell_engine(f, key, &rkey);
    return TC_ACT_OK;
  }
  struct tc_layout lay = {};
  if (!tc_options_rewritable(&h, &lay)) {
    if (FIN_TO_TELL) tell_engine(f, key, &rkey);
    count(SG_TC_PUNTED);
    return TC_ACT_OK;
  }

  struct sg_xlate_segment s = {};
  s.seq = p.seq;
  s.ack = p.ack;
  s.window = (__u16)(hdr[14] << 8 | hdr[15]);
  s.has_ack = (p.flags & SG_TCP_ACK) != 0;
  if (lay.ts_off) {
    s.has_ts = 1;
    s.tsval = load_be32(hdr + hdr_off(lay.ts_off));
    s.tsecr = load_be32(hdr + hdr_off(lay.ts_off + 4));
    s.ts_odd = lay.ts_off & 1;
  }
  s.sack_count = (__u8)lay.sack_count;
  s.sack_odd = lay.sack_off & 1;
  /* All eight edges, whatever the count: the ones past it are stored back unchanged below, before
   * the fields they may overlap are (fewer branches for the verifier to follow). */
  for (__u32 i = 0; i < 2 * SG_XLATE_MAX_SACK; i++) s.sack[i] = load_be32(hdr + hdr_off(lay.sack_off + 4 * i));
  const __u32 ack_sent = s.ack, tsval_sent = s.tsval;
  const __u16 window_sent = s.window;
  const struct sg_xlate_params xp = {
      .delta = f->delta,
      .tsoff = f->tsoff,
      .direction = f->direction,
      .window_from = f->window_from,
      .window_to = f->window_to,
      .timestamps = (f->options & SG_TC_OPT_TIMESTAMPS) != 0,
  };
  __u16 diff = sg_xlate(&s, &xp);
#ifdef SG_TC_BREAK_FIELD
  /* A test build only (tests/tc): one field translated wrong, its checksum kept right, so only
   * the differential test can notice. 1 (the default): the sequence number; 2: the last SACK
   * edge; 3: the TSecr; 4: a non-zero window. */
#if SG_TC_BREAK_FIELD == 2
  if (s.sack_count) {
    const __u32 last = 2 * (__u32)s.sack_count - 1;
    if (last < 2 * SG_XLATE_MAX_SACK) {
      diff = sg_csum_fold((__u32)diff + sg_xlate_option_diff(s.sack[last], s.sack[last] + 1, s.sack_odd));
      s.sack[last] += 1;
    }
  }
#elif SG_TC_BREAK_FIELD == 3
  if (s.has_ts) {
    diff = sg_csum_fold((__u32)diff + sg_xlate_option_diff(s.tsecr, s.tsecr + 1, s.ts_odd));
    s.tsecr += 1;
  }
#elif SG_TC_BREAK_FIELD == 4
  if (s.window > 1) {
    diff = sg_csum_fold((__u32)diff + sg_csum_diff16(s.window, s.window - 1));
    s.window -= 1;
  }
#else
  diff = sg_csum_fold((__u32)diff + sg_csum_diff32(s.seq, s.seq + 1));
  s.seq += 1;
#endif
#endif

  for (__u32 i = 0; i < 2 * SG_XLATE_MAX_SACK; i++) store_be32(hdr + hdr_off(lay.sack_off + 4 * i), s.sack[i]);
  if (lay.ts_off) {
    store_be32(hdr + hdr_off(lay.ts_off), s.tsval);
    store_be32(hdr + hdr_off(lay.ts_off + 4), s.tsecr);
  }
  store_be32(hdr + 4, s.seq);
  store_be32(hdr + 8, s.ack);
  store_be16(hdr + 14, s.window);
  if (bpf_skb_store_bytes(skb, l4, hdr, hlen, 0) != 0) {
    if (FIN_TO_TELL) tell_engine(f, key, &rkey);
    return TC_ACT_OK;
  }
  if (bpf_l4_csum_replace(skb, l4 + 16, 0, bpf_htons(diff), 0) != 0) {
    if (FIN_TO_TELL) tell_engine(f, key, &rkey);
    return TC_ACT_SHOT; /* half-written */
  }

  /* The record the engine reads (RST checks, timers, the merge of both views). Numbers as this
   * direction sent them: acks of the client moved into the backend's space. */
  const __u8 from = f->window_from;
  const __u32 ack_rx = ack_in_rx_space(f, ack_sent);
  struct sg_flow_track self, other;
  tracks_of(f, peer, &self, &other);
  /* A FIN occupies a sequence number, as in the engine's record: the last ACK acknowledges it. */
  const __u32 seq_end = p.seq + payload + ((p.flags & SG_TCP_FIN) ? 1 : 0);
  sg_flow_track_segment(&self, f->seen & SG_TC_SEEN_RECORD, &other, peer && (peer->seen & SG_TC_SEEN_RECORD), p.seq,
                        seq_end, ack_rx, sg_window_bytes(window_sent, from));
  f->sender_next = self.next;
  f->acked = self.acked;
  f->window_bytes = self.window;
  __u8 seen = f->seen | SG_TC_SEEN_RECORD;
  /* This direction acknowledged the other's FIN: the engine may move the flow on (linger once both
   * are), told once. acked and fin_seq are both in this direction's receiver's space. */
  /* The exact ack of the FIN counts even when the record did not take the segment (a FIN sent
   * before the other side's record started is not in its sender's record): a blind sender must
   * guess it exactly, as for an RST. */
  if (peer && (peer->closing & SG_TC_SEEN_FIN) && !(seen & SG_TC_SEEN_PEER_FIN_ACKED) && (p.flags & SG_TCP_ACK) &&
      (sg_seq_after(self.acked, peer->fin_seq) || ack_rx == peer->fin_seq + 1)) {
    seen |= SG_TC_SEEN_PEER_FIN_ACKED;
  }
  if (p.flags & SG_TCP_ACK) {
    f->last_ack = ack_rx;
    seen |= SG_TC_SEEN_LAST_ACK;
  }
  if (lay.ts_off && sg_tsval_newer(p.seq, f->newest_tsval_seq, f->seen & SG_TC_SEEN_TSVAL)) {
    f->newest_tsval = tsval_sent;
    f->newest_tsval_seq = p.seq;
    seen |= SG_TC_SEEN_TSVAL;
  }
  const int tell = FIN_TO_TELL || ((seen ^ f->seen) & SG_TC_SEEN_PEER_FIN_ACKED);
  f->seen = seen;
  /* The coarse clock (the last tick): the engine's idle timers count in seconds, and a precise
   * read was a TSC read a segment (a tenth of this program's own cost, perf, shared ab). */
  f->last_ns = bpf_ktime_get_coarse_ns();
  __sync_fetch_and_add(&f->packets, 1);
  if (tell) tell_engine(f, key, &rkey);

  skb->mark |= SG_TC_MARK;
  count(SG_TC_TRANSLATED);
  /* route_of ran for this packet (sg_tc_forward implies sg_tc_router) and left its answer. */
  if (sg_tc_forward && !egress) return forward(skb, p.v6);
  return TC_ACT_OK;
}

SEC("tc")
int sg_tc_ingress(struct __sk_buff* skb) { return translate(skb, 0); }

SEC("tc")
int sg_tc_egress(struct __sk_buff* skb) { return translate(skb, 1); }

/* ---- a client's early segment (tc_abi.h, struct sg_tc_early_segment) --------------------------- */

/* The unfolded sum of a TCP segment's pseudo-header (`tcp_len` bytes of TCP between the tuple's
 * addresses), laid out in `buf` (40 bytes) as the bytes lie. */
static __always_inline __u32 pseudo_sum(__u8* buf, const struct pkt_tuple* t, __u32 v6, __u32 tcp_len) {
  if (v6) {
    __builtin_memcpy(buf, t->src, 16);
    __builtin_memcpy(buf + 16, t->dst, 16);
    store_be32(buf + 32, tcp_len);
    store_be32(buf + 36, IPPROTO_TCP);
    return (__u32)bpf_csum_diff(0, 0, (__be32*)buf, 40, 0);
  }
  __builtin_memcpy(buf, t->src + 12, 4);
  __builtin_memcpy(buf + 4, t->dst + 12, 4);
  buf[8] = 0;
  buf[9] = IPPROTO_TCP;
  store_be16(buf + 10, (__u16)tcp_len);
  return (__u32)bpf_csum_diff(0, 0, (__be32*)buf, 12, 0);
}

/* A segment that cannot be kept (tc_abi.h). The first one is the engine's, and the SYN-ACK with
 * it (client_data): on it goes, unchanged, as without the map, counted `unkept`. Behind kept ones it is dropped: the
 * engine, given it, would withdraw the record, and the kept ones would wait for the client's
 * retransmission instead; this one does (counted). */
static __always_inline int early_to_engine(struct sg_tc_handshake* record, __u32 unkept) {
  if (*(volatile const __u32*)&record->client_data >= SG_TC_CLIENT_DATA_KEPT) {
    count(SG_TC_EARLY_REFUSED);
    return TC_ACT_SHOT;
  }
  *(volatile __u8*)&record->client_data = 1;
  count(unkept);
  return TC_ACT_OK;
}

/* A client's data or FIN with no flow entry (the ingress program's tail call, sg_tc_keep_early):
 * kept in sg_tc_early and dropped when its flow's SYN-ACK may still be answered here and it names
 * our cookie ISN exactly, within the first SG_TC_EARLY_WINDOW bytes; else on to the engine as
 * before. */
SEC("tc")
int sg_tc_early_store(struct __sk_buff* skb) {
  __u32 zero = 0;
  struct tc_early_scratch* x = bpf_map_lookup_elem(&sg_tc_early_scratch, &zero);
  if (!x) return TC_ACT_OK;
  const __u32 unkept = x->over_closed ? SG_TC_PUNTED : SG_TC_MISS;
  x->over_closed = 0;
  const void* data;
  const void* end;
  struct pkt p = {};
  if (pkt_parse_skb(skb, TC_PULL_LEN, &data, &end, &p) != PKT_TCP) return TC_ACT_OK;
  if (!tc_headers_rewritable(&p, skb->len)) return TC_ACT_OK;
  struct sg_tc_flow_key synack_key;
  reverse_key((const struct sg_tc_flow_key*)&p.key, &synack_key);
  struct sg_tc_handshake* record = bpf_map_lookup_elem(&sg_tc_handshakes, &synack_key);
  if (!record || (*(volatile const __u32*)&record->client_data & SG_TC_CLIENT_DATA_ENGINE)) {
    count(unkept);
    return TC_ACT_OK;
  }
  const __u32 ip_len = p.v6 ? IPV6_HLEN : IPV4_HLEN;
  const __u32 payload = pkt_payload_len(&p);
  const __u32 offset = p.seq - (record->hs.client_isn + 1u);
  __u32 len = ETH_HLEN_ + p.ip_total; /* without the link's padding */
  if (p.ack != record->hs.cookie_isn + 1u || (p.flags & (SG_TCP_RST | SG_TCP_ACK)) != SG_TCP_ACK ||
      p.l4_off != ETH_HLEN_ + ip_len || offset >= SG_TC_EARLY_WINDOW || payload > SG_TC_EARLY_WINDOW - offset ||
      len > SG_TC_EARLY_FRAME_MAX || skb->gso_segs > 1)
    return early_to_engine(record, unkept);
  /* The slot its offset names, else the next free one: two small segments may start within one
   * slot's bytes. A retransmission walks the same way to its own slot (the flow's kept slots stay
   * until the SYN-ACK), and is not kept twice. */
  __builtin_memcpy(&x->key.flow, &p.key, sizeof(x->key.flow));
  const __u32 first = offset / SG_TC_EARLY_SLOT_BYTES;
  __u32 free_slot = SG_TC_EARLY_SLOTS;
  for (__u32 k = 0; k < SG_TC_EARLY_SLOTS; k++) {
    x->key.slot = (first + k) & (SG_TC_EARLY_SLOTS - 1);
    const struct sg_tc_early_segment* held = bpf_map_lookup_elem(&sg_tc_early, &x->key);
    if (!held || held->generation != record->generation) {
      free_slot = x->key.slot;
      break;
    }
    if (held->seq == p.seq && held->len == len) {
      count(SG_TC_EARLY_STORED);
      return TC_ACT_SHOT;
    }
  }
  if (free_slot >= SG_TC_EARLY_SLOTS) return early_to_engine(record, unkept);
  x->key.slot = free_slot;

  /* The frame, then four zero bytes past it: the sum below takes whole words. */
  __u8* frame = x->seg.frame;
  len = len_1_to_2048(len);
  if (bpf_skb_load_bytes(skb, 0, frame, len) != 0) return early_to_engine(record, unkept);
  store_be32(frame + (len & (SG_TC_EARLY_FRAME_ROOM - 1)), 0);
  /* The checksum field as the SYN-ACK's state will need it (tc_abi.h): the full sum and the
   * CHECKSUM_PARTIAL seed. A field that is neither (a corrupt frame) stays the engine's: written
   * over, it would be made good. */
  const __u32 l4 = ETH_HLEN_ + ip_len;
  const __u32 tcp_len = len - l4;
  const __u32 pseudo = pseudo_sum(x->pseudo, &p.key, p.v6, tcp_len);
  __u32 sum = pseudo;
  for (__u32 at = 0; at < SG_TC_EARLY_FRAME_MAX; at += 512) {
    if (at >= tcp_len) break;
    __u32 chunk = tcp_len - at;
    if (chunk > 512) chunk = 512;
    chunk += 3;
    /* Whole words, bounded on the register the call reads (the slack past the frame covers the
     * mask's 1020). */
    asm volatile("%0 &= 0x3fc" : "+r"(chunk));
    __u32 from = (l4 + at) & (SG_TC_EARLY_FRAME_ROOM - 1);
    sum = (__u32)bpf_csum_diff(0, 0, (__be32*)(frame + from), chunk, sum);
  }
  __u16 field;
  __builtin_memcpy(&field, frame + (l4 & 63) + 16, 2);
  const __u16 seed = sg_csum_fold(pseudo);
  if (sg_csum_fold(sum) == 0xffff) {
    x->seg.full_csum = field;
    x->seg.seed_csum = seed;
  } else if (field == seed) {
    x->seg.full_csum = fold((__u32)sg_csum_fold(sum) + (__u16)~field);
    x->seg.seed_csum = seed;
  } else {
    return early_to_engine(record, unkept);
  }
  x->seg.generation = record->generation;
  x->seg.seq = p.seq;
  x->seg.len = len;
  x->seg.ifindex = skb->ingress_ifindex;
  x->seg.pad = 0;
  if (bpf_map_update_elem(&sg_tc_early, &x->key, &x->seg, BPF_ANY) != 0) return early_to_engine(record, unkept);
  /* Counted on the record after the slot is written, for sg_tc_synack to look; a locked add, so
   * that on x86 the count is visible before the record is looked up again below (sg_tc_synack
   * reads the count after its claim deletes the record: one of the two sees the other). */
  __sync_fetch_and_add(&record->client_data, SG_TC_CLIENT_DATA_KEPT);
  /* Claimed meanwhile on another CPU: whether it found this slot is unknown, so the segment goes
   * on to the engine as well (the flow's by now; a copy the backend may also get is a duplicate
   * it drops). */
  if (!bpf_map_lookup_elem(&sg_tc_handshakes, &synack_key)) {
    count(unkept);
    return TC_ACT_OK;
  }
  count(SG_TC_EARLY_STORED);
  return TC_ACT_SHOT;
}

/* ---- the backend's SYN-ACK (tc_abi.h, struct sg_tc_handshake; handover_spec.h) ------------------ */

/* The largest headers the programs turn a packet into: the backend's SYN with every option. */
#define ANSWER_MAX (IPV6_HLEN + TCP_HLEN + SG_BACKEND_SYN_MAX_OPTIONS)

/* Clears x->hdr and writes into it the IP header of a segment from `src` to `dst` carrying
 * `tcp_len` bytes of TCP, with hop limit `ttl`, as the engine builds one (core/packet.cpp: no
 * IPv4 ID, DF). Returns where its TCP header goes. */
static __always_inline __u8* build_ip(struct tc_synack_scratch* x, const __u8* src, const __u8* dst, __u32 v6,
                                      __u8 ttl, __u32 tcp_len) {
  __u8* h = x->hdr;
  __builtin_memset(h, 0, sizeof(x->hdr));
  if (v6) {
    h[0] = 0x60;
    store_be16(h + 4, (__u16)tcp_len);
    h[6] = IPPROTO_TCP;
    h[7] = ttl;
    __builtin_memcpy(h + 8, src, 16);
    __builtin_memcpy(h + 24, dst, 16);
  } else {
    h[0] = 0x45;
    store_be16(h + 2, (__u16)(IPV4_HLEN + tcp_len));
    h[6] = 0x40; /* DF */
    h[8] = ttl;
    h[9] = IPPROTO_TCP;
    __builtin_memcpy(h + 12, src + 12, 4);
    __builtin_memcpy(h + 16, dst + 12, 4);
    /* Summed as the bytes lie (bpf_csum_diff), so stored as they lie too. */
    const __u16 csum = fold(sum_words(h, IPV4_HLEN, 0));
    __builtin_memcpy(h + 10, &csum, 2);
  }
  return h + (v6 ? IPV6_HLEN : IPV4_HLEN);
}

/* Writes into x->hdr the IP and TCP headers of a bare ACK from `src` to `dst` (the SYN-ACK's
 * tuple, or its reverse) with hop limit `ttl`, as the engine builds one (options NOP NOP TS when
 * timestamps): its TCP checksum field is the SYN-ACK's (x->old_tcp), for answer_into to correct
 * by difference. Returns the headers' length. */
static __always_inline __u32 build_answer(struct tc_synack_scratch* x, const struct pkt_tuple* t, int reverse,
                                          __u32 v6, __u8 ttl, const struct sg_handover_ack* a) {
  const __u32 ip_len = v6 ? IPV6_HLEN : IPV4_HLEN;
  const __u32 tcp_len = TCP_HLEN + (a->has_ts ? 12 : 0);
  __u8* tcp = build_ip(x, reverse ? t->dst : t->src, reverse ? t->src : t->dst, v6, ttl, tcp_len);
  __builtin_memcpy(tcp, reverse ? &t->dport_be : &t->sport_be, 2);
  __builtin_memcpy(tcp + 2, reverse ? &t->sport_be : &t->dport_be, 2);
  store_be32(tcp + 4, a->seq);
  store_be32(tcp + 8, a->ack);
  tcp[12] = (__u8)((tcp_len / 4) << 4);
  tcp[13] = SG_TCP_ACK;
  store_be16(tcp + 14, a->window);
  tcp[16] = x->old_tcp[16];
  tcp[17] = x->old_tcp[17];
  if (a->has_ts) {
    tcp[20] = 1; /* NOP */
    tcp[21] = 1;
    tcp[22] = 8; /* Timestamps */
    tcp[23] = 10;
    store_be32(tcp + 24, a->tsval);
    store_be32(tcp + 28, a->tsecr);
  }
  return ip_len + tcp_len;
}

/* Makes the packet the answer in x->hdr (`len` bytes of headers, no payload): the TCP checksum
 * is corrected by the difference from the SYN-ACK's header (x->old_tcp, `old_hlen` bytes) and
 * pseudo-header length, the form bpf_l4_csum_replace applies right whether the checksum is
 * complete, partial or not yet checked. Addresses and ports only swap places, which no sum sees.
 * False when the packet could not be changed. */
static __always_inline int answer_into(struct __sk_buff* skb, struct tc_synack_scratch* x, __u32 v6, __u32 len,
                                       __u32 old_hlen) {
  const __u32 ip_len = v6 ? IPV6_HLEN : IPV4_HLEN;
  const __u32 new_hlen = len - ip_len;
  if (bpf_skb_change_tail(skb, ETH_HLEN_ + len, 0) != 0) return 0;
  if (len > ANSWER_MAX || len < ip_len + TCP_HLEN) return 0;
  if (bpf_skb_store_bytes(skb, ETH_HLEN_, x->hdr, len, BPF_F_RECOMPUTE_CSUM) != 0) return 0;
  __u32 o = old_hlen & 0x3c, n = new_hlen & 0x3c;
  if (o < TCP_HLEN || n < TCP_HLEN) return 0;
  const __s64 diff = bpf_csum_diff((__be32*)x->old_tcp, o, (__be32*)(x->hdr + (v6 ? IPV6_HLEN : IPV4_HLEN)), n, 0);
  if (diff < 0) return 0;
  const __u32 l4 = ETH_HLEN_ + ip_len;
  if (bpf_l4_csum_replace(skb, l4 + 16, 0, (__u32)diff, 0) != 0) return 0;
  return bpf_l4_csum_replace(skb, l4 + 16, bpf_htons((__u16)old_hlen), bpf_htons((__u16)new_hlen),
                             BPF_F_PSEUDO_HDR | 2) == 0;
}

/* A header length (20 to 60) as a helper's size argument: bounded to [1, 64] on the register the
 * call reads (the compiler may pass a copy that earlier checks did not bound). */
static __always_inline __u32 len_1_to_64(__u32 n) {
  n -= 1;
  asm volatile("%0 &= 0x3f" : "+r"(n));
  return n + 1;
}
static __always_inline __u32 len_1_to_128(__u32 n) {
  n -= 1;
  asm volatile("%0 &= 0x7f" : "+r"(n));
  return n + 1;
}

/* Loads the segment's TCP header (`hlen` bytes at `l4`, bounded by the caller) into x->old_tcp
 * and walks its options into *walk: false when it cannot or they are malformed (the segment is
 * then the engine's). */
static __always_inline int load_tcp_header(struct __sk_buff* skb, struct tc_synack_scratch* x, __u32 l4, __u32 hlen,
                                           struct option_walk* walk) {
  if (bpf_skb_load_bytes(skb, l4, x->old_tcp, len_1_to_64(hlen)) != 0) return 0;
  const __u32 opt_len = hlen - TCP_HLEN;
  if (opt_len == 0) return 1;
  if (opt_len > SG_TCP_MAX_OPTIONS) return 0;
  __builtin_memcpy(walk->buf, x->old_tcp + TCP_HLEN, SG_TCP_MAX_OPTIONS);
  walk->len = opt_len;
  option_walk_run(walk);
  return !walk->bad;
}

/* Left to the engine, untouched. */
static __always_inline int punt_synack(void) {
  count(SG_TC_HANDSHAKE_PUNTED);
  return TC_ACT_OK;
}

/* The segments sg_tc_early_store kept for this record (tc_abi.h, client_data). */
static __always_inline __u32 early_kept(const struct sg_tc_handshake* record) {
  return *(volatile const __u32*)&record->client_data / SG_TC_CLIENT_DATA_KEPT;
}

/* Saves the SYN-ACK (no payload: `hlen` bytes of TCP header, already in x->old_tcp) before the skb
 * carries early segments, and judges its checksum field: a full sum, or a CHECKSUM_PARTIAL seed
 * (a local sender's). False when it cannot be saved. */
static __always_inline int save_synack(struct __sk_buff* skb, struct tc_synack_scratch* x, const struct pkt* p,
                                       __u32 hlen) {
  if (x->synack_len) return 1;
  const __u32 len = skb->len;
  if (len > sizeof(x->synack_frame) || len < ETH_HLEN_ + IPV4_HLEN + TCP_HLEN) return 0;
  if (bpf_skb_load_bytes(skb, 0, x->synack_frame, len_1_to_128(len)) != 0) return 0;
  const __u32 sum = pseudo_sum(x->pseudo, &p->key, p->v6, hlen);
  x->synack_full = sg_csum_fold((__u32)bpf_csum_diff(0, 0, (__be32*)x->old_tcp, hlen & 0x7c, sum)) == 0xffff;
  x->synack_len = len;
  return 1;
}

/* Re-injects the record's kept segments (tc_abi.h, sg_tc_early) of `generation` at the ingress
 * they came in on, each written over the skb with its checksum field as the SYN-ACK's state needs,
 * then puts the SYN-ACK back. The ingress program takes each from the CPU's backlog: translated
 * when the flow's entries stand, else on to the engine (the record the engine's first). Those that
 * went are counted as `counter`. Returns -1 when the SYN-ACK could not be put back. */
static __always_inline int send_early(struct __sk_buff* skb, struct tc_synack_scratch* x, __u32 generation, __u32 v6,
                                      __u32 counter) {
  const __u32 l4 = ETH_HLEN_ + (v6 ? IPV6_HLEN : IPV4_HLEN);
  __u64 sent = 0;
  __builtin_memcpy(&x->early_key.flow, &x->c2s, sizeof(x->early_key.flow));
  for (__u32 slot = 0; slot < SG_TC_EARLY_SLOTS; slot++) {
    x->early_key.slot = slot;
    const struct sg_tc_early_segment* seg = bpf_map_lookup_elem(&sg_tc_early, &x->early_key);
    if (!seg || seg->generation != generation) continue;
    const __u32 len = seg->len;
    const __u32 ifindex = seg->ifindex;
    const __u16 field = x->synack_full ? seg->full_csum : seg->seed_csum;
    if (len <= l4 + TCP_HLEN || len > SG_TC_EARLY_FRAME_MAX) continue;
    if (bpf_skb_change_tail(skb, len, 0) != 0) break;
    if (bpf_skb_store_bytes(skb, 0, seg->frame, len_1_to_2048(len), BPF_F_RECOMPUTE_CSUM) != 0) break;
    if (bpf_skb_store_bytes(skb, l4 + 16, &field, 2, BPF_F_RECOMPUTE_CSUM) != 0) break;
    skb->mark &= ~SG_TC_MARK;
    if (bpf_clone_redirect(skb, ifindex, BPF_F_INGRESS) == 0) sent++;
    bpf_map_delete_elem(&sg_tc_early, &x->early_key);
  }
  count_by(counter, sent);
  const __u32 len = x->synack_len;
  if (bpf_skb_change_tail(skb, len, 0) != 0) return -1;
  if (bpf_skb_store_bytes(skb, 0, x->synack_frame, len_1_to_128(len), BPF_F_RECOMPUTE_CSUM) != 0) return -1;
  return 0;
}

/* Left to the engine, with the segments kept for it: they follow the SYN-ACK to the engine. */
static __always_inline int punt_synack_with_early(struct __sk_buff* skb, struct tc_synack_scratch* x,
                                                  struct sg_tc_handshake* record, const struct pkt* p, __u32 hlen) {
  if (early_kept(record) && save_synack(skb, x, p, hlen)) {
    *(volatile __u8*)&record->client_data = 1; /* so that the store lets them by */
    if (send_early(skb, x, x->hs.generation, p->v6, SG_TC_EARLY_TO_ENGINE) < 0)
      return TC_ACT_SHOT; /* the backend sends its SYN-ACK again */
  }
  return punt_synack();
}

SEC("tc")
int sg_tc_synack(struct __sk_buff* skb) {
  const void* data;
  const void* end;
  struct pkt p = {};
  if (pkt_parse_skb(skb, TC_PULL_LEN, &data, &end, &p) != PKT_TCP) return TC_ACT_OK;
  if (!tc_headers_rewritable(&p, skb->len)) return TC_ACT_OK;
  struct tc_synack_scratch* x = synack_scratch();
  if (!x) return TC_ACT_OK;
  struct sg_tc_handshake* found = bpf_map_lookup_elem(&sg_tc_handshakes, &p.key);
  if (!found) {
    count(SG_TC_MISS);
    return TC_ACT_OK;
  }
  __builtin_memcpy(&x->hs, found, sizeof(x->hs));
  x->synack_len = 0;
  __u32 hlen = p.tcp_hlen;
  __u32 l4 = p.l4_off;
  const __u32 payload = pkt_payload_len(&p);
  asm volatile("" : "+r"(l4), "+r"(hlen));
  if (hlen < TCP_HLEN || hlen > TCP_MAX_HLEN || l4 > PKT_MAX_L4_OFF) return TC_ACT_OK;
  /* Data on a SYN-ACK (TCP Fast Open's answer) is the engine's (and so are early segments kept
   * for it, which then wait for the client's retransmission: the SYN-ACK cannot be saved). */
  if (payload != 0) return punt_synack();
  struct option_walk walk = {};
  if (!load_tcp_header(skb, x, l4, hlen, &walk)) return punt_synack();
  reverse_key((const struct sg_tc_flow_key*)&p.key, &x->c2s);
  x->synack.seq = p.seq;
  x->synack.ack = p.ack;
  x->synack.window = load_be16(x->old_tcp + 14);
  x->synack.has_ts = walk.o.has_timestamps;
  x->synack.tsval = walk.o.has_timestamps ? walk.o.tsval : 0;
  x->synack.has_wscale = walk.o.has_wscale;
  x->synack.wscale = walk.o.has_wscale ? walk.o.wscale : 0;
  x->synack.sack_permitted = walk.o.sack_permitted;
  x->synack.has_mss = walk.o.has_mss;
  x->synack.mss = walk.o.has_mss ? walk.o.mss : 0;
  x->synack.pad[0] = x->synack.pad[1] = x->synack.pad[2] = 0;
  if (!sg_synack_answers(&x->hs.hs, &x->synack)) return punt_synack_with_early(skb, x, found, &p, hlen);
  sg_hand_over(&x->hs.hs, &x->synack, &x->ho);
  if (x->ho.supply_timestamps) return punt_synack_with_early(skb, x, found, &p, hlen);
  /* The window update goes on from here: only with a way out, and never where the kernel would
   * answer the SYN-ACK with an ICMP error instead. */
  if (!sg_tc_forward ||
      route_of(skb, p.v6, hlen, (__u32)p.key.sport_be | (__u32)p.key.dport_be << 16, NULL) != TC_ROUTE_OUT)
    return punt_synack_with_early(skb, x, found, &p, hlen);
  struct tc_route_scratch* r = route_scratch();
  if (!r) return punt_synack_with_early(skb, x, found, &p, hlen);
  /* The client's data passed on to the engine first (client_data_before_synack): the engine's. */
  if (*(volatile const __u32*)&found->client_data & SG_TC_CLIENT_DATA_ENGINE)
    return punt_synack_with_early(skb, x, found, &p, hlen);
  /* The claim: of two copies of the SYN-ACK on two CPUs, only the one that deletes the entry goes
   * on; the other is a retransmission for the engine. */
  if (bpf_map_delete_elem(&sg_tc_handshakes, &p.key) != 0) return punt_synack();
  /* Read after the claim: a segment kept on another CPU meanwhile either counted itself before
   * this read or finds the record gone and goes on to the engine (sg_tc_early_store). Saved now,
   * while the skb is the SYN-ACK; without room they wait for the client's retransmission. */
  const __u32 kept = early_kept(found);
  if (kept) save_synack(skb, x, &p, hlen);
  sg_tc_flow_entries(&x->ho.shifts, x->ho.delta, x->ho.tsoff, x->ho.timestamps, x->hs.generation, &x->to_server,
                     &x->to_client);
  /* The SYN-ACK came the way the server's segments will, the SYN (sg_tc_cookie_ack's record) the
   * way the client's will: their entries start with those routes. */
  __builtin_memcpy(&x->to_client.route, &r->cached, sizeof(x->to_client.route));
  __builtin_memcpy(&x->to_server.route, &x->hs.to_server_route, sizeof(x->to_server.route));
  /* Both entries before any answer leaves: the backend sends nothing before its ACK, and the
   * client's next segment must find its entry. Without room the engine takes the SYN-ACK and
   * writes them itself. */
  if (bpf_map_update_elem(&sg_tc_flows, &x->c2s, &x->to_server, BPF_ANY) != 0) return punt_synack();
  if (bpf_map_update_elem(&sg_tc_flows, &p.key, &x->to_client, BPF_ANY) != 0) {
    bpf_map_delete_elem(&sg_tc_flows, &x->c2s);
    return punt_synack();
  }
  /* Reported as soon as the entries stand: client data that reached the engine meanwhile finds
   * the record claimed and goes on as the established flow's at once (the engine looks for this
   * report, then for the entries). Held until a later batch instead, it reached the backend
   * behind the client's later segments (through tc) and was refused for its older timestamp. */
  struct sg_tc_event* e = bpf_ringbuf_reserve(&sg_tc_events, sizeof(*e), 0);
  if (e) {
    __builtin_memcpy(&e->key, &x->c2s, sizeof(e->key));
    e->kind = SG_TC_EVENT_HANDED_OVER;
    __builtin_memcpy(&e->synack, &x->synack, sizeof(e->synack));
    bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
  } else {
    count(SG_TC_EVENT_LOST);
  }
  /* From here a failure leaves the entries and the report standing: the backend, unanswered,
   * sends its SYN-ACK again, and the client's next segment (translated) completes its handshake. */
  if (bpf_skb_load_bytes(skb, 0, x->macs, 12) != 0) return TC_ACT_SHOT;
  /* The client's early segments, ahead of the window update in the CPU's backlog (the client's
   * next segments answer it) and behind the ACK to the backend (which leaves now, when the
   * program returns; they come back through the ingress program first). */
  if (kept && x->synack_len) {
    if (send_early(skb, x, x->hs.generation, p.v6, SG_TC_EARLY_SENT) < 0)
      return TC_ACT_SHOT; /* the entries stand; the backend sends its SYN-ACK again */
  }

  /* The client's window update, from the service's address, one hop lower as forwarding makes
   * it: a clone, out the FIB's way. */
  __u32 len = build_answer(x, &p.key, 0, p.v6, 63, &x->ho.to_client);
  if (!answer_into(skb, x, p.v6, len, hlen)) return TC_ACT_SHOT; /* the entries stand; the client retransmits */
  __u8 macs[12];
  __builtin_memcpy(macs, r->fib.dmac, 6);
  __builtin_memcpy(macs + 6, r->fib.smac, 6);
  if (bpf_skb_store_bytes(skb, 0, macs, 12, 0) != 0) return TC_ACT_SHOT;
  skb->mark |= SG_TC_MARK;
  if (bpf_clone_redirect(skb, r->fib.ifindex, 0) != 0) count(SG_TC_HANDSHAKE_PUNTED);

  /* The backend's ACK, from the client's address, back where the SYN-ACK came from. Its TCP
   * header's previous form is now the window update's. */
  const __u32 update_hlen = len - (p.v6 ? IPV6_HLEN : IPV4_HLEN);
  if (bpf_skb_load_bytes(skb, l4, x->old_tcp, len_1_to_64(update_hlen)) != 0) return TC_ACT_SHOT;
  len = build_answer(x, &p.key, 1, p.v6, 64, &x->ho.to_backend);
  if (!answer_into(skb, x, p.v6, len, update_hlen)) return TC_ACT_SHOT;
  __builtin_memcpy(macs, x->macs + 6, 6);
  __builtin_memcpy(macs + 6, x->macs, 6);
  if (bpf_skb_store_bytes(skb, 0, macs, 12, 0) != 0) return TC_ACT_SHOT;

  count(SG_TC_HANDED_OVER);
  return bpf_redirect(skb->ingress_ifindex, 0);
}

/* ---- the client's cookie ACK (tc_abi.h, sg_tc_cookie_ack; backend_syn_spec.h) ---------------- */

/* The cookie keys in the slot the daemon last published. */
static __always_inline const struct sg_cookie_secrets* tc_secrets(void) {
  __u32 zero = 0;
  const __u32* slot = bpf_map_lookup_elem(&sg_tc_key_slot, &zero);
  if (!slot) return 0;
  __u32 index = *slot & (SG_TC_KEY_SLOTS - 1);
  return bpf_map_lookup_elem(&sg_tc_keys, &index);
}

/* Writes into x->hdr the IP and TCP headers of the backend's SYN x->syn with its options
 * (x->syn_options, `opt_len` bytes), on the cookie ACK's own tuple, as the engine builds it
 * (core/packet.cpp: build_backend_syn) and one hop later, as forwarding would leave the engine's:
 * its TCP checksum field is the ACK's (x->old_tcp), for answer_into to correct by difference.
 * Returns the headers' length. */
static __always_inline __u32 build_backend_syn(struct tc_synack_scratch* x, const struct pkt_tuple* t, __u32 v6,
                                               __u32 opt_len) {
  const __u32 ip_len = v6 ? IPV6_HLEN : IPV4_HLEN;
  opt_len &= 0x1c; /* a multiple of 4, at most SG_BACKEND_SYN_MAX_OPTIONS (checked by the caller) */
  const __u32 tcp_len = TCP_HLEN + opt_len;
  __u8* tcp = build_ip(x, t->src, t->dst, v6, 63, tcp_len);
  __builtin_memcpy(tcp, &t->sport_be, 2);
  __builtin_memcpy(tcp + 2, &t->dport_be, 2);
  store_be32(tcp + 4, x->syn.seq);
  tcp[12] = (__u8)((tcp_len / 4) << 4);
  tcp[13] = x->syn.flags;
  store_be16(tcp + 14, x->syn.window);
  tcp[16] = x->old_tcp[16];
  tcp[17] = x->old_tcp[17];
  /* All of them: the headers' length leaves out what lies past opt_len. */
  __builtin_memcpy(tcp + TCP_HLEN, x->syn_options, SG_BACKEND_SYN_MAX_OPTIONS);
  return ip_len + tcp_len;
}

/* Left to the engine, untouched. */
static __always_inline int punt_open(void) {
  count(SG_TC_OPEN_PUNTED);
  return TC_ACT_OK;
}

SEC("tc")
int sg_tc_cookie_ack(struct __sk_buff* skb) {
  struct tc_synack_scratch* x = synack_scratch();
  if (!x) return TC_ACT_OK;
  const __u8 over_closed = x->over_closed != 0;
  x->over_closed = 0;
  const void* data;
  const void* end;
  struct pkt p = {};
  if (pkt_parse_skb(skb, TC_PULL_LEN, &data, &end, &p) != PKT_TCP) return TC_ACT_OK;
  if (!tc_headers_rewritable(&p, skb->len)) return TC_ACT_OK;
  struct sg_tc_service_key service = {};
  __builtin_memcpy(service.addr, p.key.dst, 16);
  service.port_be = p.key.dport_be;
  const __u8* listed = bpf_map_lookup_elem(&sg_tc_services, &service);
  if (!listed || !(*listed & SG_TC_SERVICE_OPENS)) {
    count(SG_TC_MISS);
    return TC_ACT_OK;
  }
  const __u8 service_flags = *listed;
  __u32 zero = 0;
  const struct sg_tc_open_config* cfg = bpf_map_lookup_elem(&sg_tc_open, &zero);
  /* The lease is seconds long: the coarse clock (a tick behind at most) spares a TSC read. */
  if (!cfg || bpf_ktime_get_coarse_ns() >= cfg->open_until_ns) return punt_open();
  const struct sg_cookie_secrets* secrets = tc_secrets();
  if (!secrets) return punt_open();
  __u32 hlen = p.tcp_hlen;
  __u32 l4 = p.l4_off;
  const __u32 payload = pkt_payload_len(&p);
  asm volatile("" : "+r"(l4), "+r"(hlen));
  if (hlen < TCP_HLEN || hlen > TCP_MAX_HLEN || l4 > PKT_MAX_L4_OFF || payload != 0) return punt_open();

  /* The cookie, as the engine checks it (the same flow, numbers and clock). */
  const __u64 now = cfg->fixed_now_ns ? cfg->fixed_now_ns : bpf_ktime_get_tai_ns();
  const int skip = p.v6 ? 0 : 12;
  const struct sg_cookie_flow cf = {
      .src = p.key.src + skip,
      .dst = p.key.dst + skip,
      .sport = bpf_ntohs(p.key.sport_be),
      .dport = bpf_ntohs(p.key.dport_be),
      .v6 = p.v6,
  };
  const __u16 mss = sg_cookie_check(secrets, &cf, p.seq - 1, p.ack - 1, sg_cookie_counter(now));
  if (!mss) return punt_open();

  /* The ACK's timestamps: the options our SYN-ACK promised, echoed. */
  struct option_walk walk = {};
  if (!load_tcp_header(skb, x, l4, hlen, &walk)) return punt_open();
  x->cookie_ack.seq = p.seq;
  x->cookie_ack.ack = p.ack;
  x->cookie_ack.has_ts = walk.o.has_timestamps;
  x->cookie_ack.tsval = walk.o.has_timestamps ? walk.o.tsval : 0;
  x->cookie_ack.tsecr = walk.o.has_timestamps ? walk.o.tsecr : 0;
  x->cookie_ack.window = load_be16(x->old_tcp + 14);
  x->cookie_ack.pad = 0;
  sg_handshake_of_cookie_ack(&x->cookie_ack, cfg->announced_ws, &x->hs.hs);
  const int room = (x->hs.hs.asked & SG_HS_TIMESTAMPS) && !(service_flags & SG_SERVICE_BACKEND_HAS_TIMESTAMPS);
  sg_backend_syn_of(&x->hs.hs, mss, room, &x->syn);
  const __u32 syn_opt_len = sg_backend_syn_write_options(&x->syn, x->syn_options);
  if (syn_opt_len > SG_BACKEND_SYN_MAX_OPTIONS) return punt_open();

  /* The SYN goes on from here: only with a way out, and never where the kernel would answer the
   * ACK with an ICMP error instead. */
  if (!sg_tc_forward ||
      route_of(skb, p.v6, hlen, (__u32)p.key.sport_be | (__u32)p.key.dport_be << 16, NULL) != TC_ROUTE_OUT)
    return punt_open();
  struct tc_route_scratch* r = route_scratch();
  if (!r) return punt_open();
  /* The client's segments will go the SYN's way: their entry starts with its route. */
  __builtin_memcpy(&x->hs.to_server_route, &r->cached, sizeof(x->hs.to_server_route));

  /* The record for the backend's SYN-ACK and the report, both or neither: the engine must hold
   * every flow whose SYN-ACK may come. */
  struct sg_tc_event* e = bpf_ringbuf_reserve(&sg_tc_events, sizeof(*e), 0);
  if (!e) {
    count(SG_TC_EVENT_LOST);
    return punt_open();
  }
  /* Added, then read: this compiler's BPF target (v1) cannot return the old value of an atomic
   * add. Two CPUs (or this one and the daemon) may read the same number; only the flows of one
   * pair are compared (sg_tc_release), and a pair has one open at a time (the record, BPF_NOEXIST,
   * below) or, with the engine's, the same connection. */
  __sync_fetch_and_add(&sg_tc_generation, 1);
  x->hs.generation = *(volatile __u32*)&sg_tc_generation;
  if (!x->hs.generation) x->hs.generation = 1; /* 0 is "unknown" (sg_tc_release) */
  x->hs.client_data = 0;
  struct sg_tc_flow_key s2c;
  reverse_key((const struct sg_tc_flow_key*)&p.key, &s2c);
  /* Never over a record already there: the engine's own (a copy of this ACK reached it first) or
   * one a flow on this pair left. */
  if (bpf_map_update_elem(&sg_tc_handshakes, &s2c, &x->hs, BPF_NOEXIST) != 0) {
    bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
    return punt_open();
  }
  __builtin_memset(e, 0, sizeof(*e));
  __builtin_memcpy(&e->key, &p.key, sizeof(e->key));
  e->kind = SG_TC_EVENT_OPENED;
  __builtin_memcpy(&e->opened.hs, &x->hs.hs, sizeof(e->opened.hs));
  e->opened.generation = x->hs.generation;
  e->opened.mss = mss;
  e->opened.room_for_timestamps = (__u8)room;
  e->opened.over_closed = over_closed;
  bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);

  /* From here a failure drops the ACK: the engine holds the flow and sends the SYN again at its
   * retry. */
  const __u32 len = build_backend_syn(x, &p.key, p.v6, syn_opt_len);
  if (!answer_into(skb, x, p.v6, len, hlen)) return TC_ACT_SHOT;
  __u8 macs[12];
  __builtin_memcpy(macs, r->fib.dmac, 6);
  __builtin_memcpy(macs + 6, r->fib.smac, 6);
  if (bpf_skb_store_bytes(skb, 0, macs, 12, 0) != 0) return TC_ACT_SHOT;
  skb->mark |= SG_TC_MARK;
  count(SG_TC_OPENED);
  return bpf_redirect(r->fib.ifindex, 0);
}

/* ---- the daemon's reads (tc_abi.h, sg_tc_read) ---------------------------------------------- */
SEC("syscall")
int sg_tc_read(struct sg_tc_read* ctx) {
  struct sg_tc_flow_key c2s, s2c;
  __builtin_memcpy(&c2s, &ctx->key, sizeof(c2s));
  reverse_key(&c2s, &s2c);
  __u32 found = 0;
  const struct sg_tc_flow* up = bpf_map_lookup_elem(&sg_tc_flows, &c2s);
  if (up) {
    __builtin_memcpy(&ctx->to_server, up, sizeof(*up));
    found |= SG_TC_READ_TO_SERVER;
  }
  const struct sg_tc_flow* down = bpf_map_lookup_elem(&sg_tc_flows, &s2c);
  if (down) {
    __builtin_memcpy(&ctx->to_client, down, sizeof(*down));
    found |= SG_TC_READ_TO_CLIENT;
  }
  ctx->found = found;
  return 0;
}

/* ---- the daemon's releases (tc_abi.h, sg_tc_release) ------------------------------------------ */
#define TC_EEXIST 17

static __always_inline int release_newer(__u32 generation, const struct sg_tc_release* a) {
  return a->generation && sg_seq_after(generation, a->generation);
}
/* Whether a release takes this entry as the flow's: its own, or (FREE, PUNT) an older flow's. */
static __always_inline int release_takes(__u32 generation, const struct sg_tc_release* a) {
  if (a->op == SG_TC_RELEASE_REFUSED) return !a->generation || generation == a->generation;
  return !release_newer(generation, a);
}

static __always_inline int release_entry(const struct sg_tc_flow_key* key, const struct sg_tc_release* a,
                                         int released) {
  struct sg_tc_flow* f = bpf_map_lookup_elem(&sg_tc_flows, key);
  if (!f) return 0;
  if (!release_takes(f->generation, a)) return release_newer(f->generation, a) ? SG_TC_RELEASE_LEFT_NEWER : 0;
  if (a->op == SG_TC_RELEASE_PUNT) {
    if (!f->closing) f->closing |= SG_TC_CLOSED_BY_ENGINE;
    return released;
  }
  return bpf_map_delete_elem(&sg_tc_flows, key) == 0 ? released : 0;
}

/* One release (tc_abi.h), from a copy on the caller's stack: a frame of its own, which both
 * programs below call. */
static __noinline int release_one(const struct sg_tc_release* a) {
  struct sg_tc_flow_key s2c;
  reverse_key(&a->key, &s2c);
  if (a->op == SG_TC_RELEASE_PUNT)
    return release_entry(&a->key, a, SG_TC_RELEASED_TO_SERVER) | release_entry(&s2c, a, SG_TC_RELEASED_TO_CLIENT);
  int done = 0;
  __u32 kept = 0;
  const struct sg_tc_handshake* record = bpf_map_lookup_elem(&sg_tc_handshakes, &s2c);
  if (record) {
    if (release_newer(record->generation, a)) return SG_TC_RELEASE_LEFT_NEWER;
    kept = record->client_data / SG_TC_CLIENT_DATA_KEPT;
    if (bpf_map_delete_elem(&sg_tc_handshakes, &s2c) == 0) done |= SG_TC_RELEASED_RECORD;
  }
  struct sg_tc_handshake hold = {};
  hold.generation = a->generation;
  hold.client_data = 1;
  const long held = bpf_map_update_elem(&sg_tc_handshakes, &s2c, &hold, BPF_NOEXIST);
  if (held == -TC_EEXIST) return done | SG_TC_RELEASE_LEFT_NEWER; /* an open since the look above */
  done |= release_entry(&a->key, a, SG_TC_RELEASED_TO_SERVER);
  done |= release_entry(&s2c, a, SG_TC_RELEASED_TO_CLIENT);
  /* The segments a record released before its SYN-ACK came had kept (a flow refused, or timed out
   * waiting for its backend): no SYN-ACK will send them. Looked for only then (eight deletes a
   * release would cost every connection); while the hold stands no newer connection keeps any. */
  if (kept) {
    struct sg_tc_early_key slot_key;
    __builtin_memcpy(&slot_key.flow, &a->key, sizeof(slot_key.flow));
    for (__u32 slot = 0; slot < SG_TC_EARLY_SLOTS; slot++) {
      slot_key.slot = slot;
      const struct sg_tc_early_segment* seg = bpf_map_lookup_elem(&sg_tc_early, &slot_key);
      if (seg && !release_newer(seg->generation, a)) bpf_map_delete_elem(&sg_tc_early, &slot_key);
    }
  }
  /* No room for the hold (held < 0) leaves no room for an open's record either. */
  if (held == 0) bpf_map_delete_elem(&sg_tc_handshakes, &s2c);
  return done;
}

SEC("syscall")
int sg_tc_release(struct sg_tc_release* ctx) {
  struct sg_tc_release a;
  __builtin_memcpy(&a, ctx, sizeof(a));
  return release_one(&a);
}

SEC("syscall")
int sg_tc_release_many(struct sg_tc_releases* ctx) {
  const __u32 count = ctx->count;
  struct sg_tc_release a;
#define RELEASE_AT(i) \
  if (count <= (i)) return 0; \
  __builtin_memcpy(&a, &ctx->ops[i], sizeof(a)); \
  ctx->results[i] = release_one(&a);
  RELEASE_AT(0) RELEASE_AT(1) RELEASE_AT(2) RELEASE_AT(3) RELEASE_AT(4) RELEASE_AT(5) RELEASE_AT(6) RELEASE_AT(7)
  RELEASE_AT(8) RELEASE_AT(9) RELEASE_AT(10) RELEASE_AT(11) RELEASE_AT(12) RELEASE_AT(13) RELEASE_AT(14) RELEASE_AT(15)
#undef RELEASE_AT
  _Static_assert(SG_TC_RELEASES_MAX == 16, "one RELEASE_AT per release of the batch");
  return 0;
}
