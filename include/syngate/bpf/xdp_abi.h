/* What the XDP program (bpf/syngate_xdp.bpf.c, its maps in bpf/lib/xdp_maps.h) and the daemon
 * (gateway/xdp_program.cpp) share: map keys and values, limits and counter indices. Plain C for
 * both compilers (types from the cookie specification's shim). */
#ifndef SYNGATE_BPF_XDP_ABI_H
#define SYNGATE_BPF_XDP_ABI_H

#include "syngate/spec/cookie_spec.h"
#include "syngate/spec/syn_rules.h"

/* A protected service: the address as syngate's Address stores it (IPv4 v4-mapped, ::ffff:a.b.c.d)
 * and the port in network order. */
struct sg_xdp_service_key {
  sg_u8 addr[16];
  sg_u16 port_be;
  sg_u16 pad; /* zero */
};

/* An address that hosts a protected service, for what carries no port: a TCP fragment past the
 * first, which the rules queue (and the engine drops) by address alone. Same address form. */
struct sg_xdp_service_addr {
  sg_u8 addr[16];
};

/* A flow the NFQUEUE engine holds, client -> server, same address form; ports in network order. */
struct sg_xdp_flow_key {
  sg_u8 src[16];
  sg_u8 dst[16];
  sg_u16 sport_be;
  sg_u16 dport_be;
};

/* sg_xdp_write_flows (SEC "syscall", run by BPF_PROG_TEST_RUN): up to SG_XDP_FLOW_WRITES_MAX
 * changes to the flow map in one system call, where a map call each would cost one a change: the
 * flow workers write a turn's created and freed flows together (xdp::Program::write_flows). An add
 * writes only a key not there (BPF_NOEXIST), so that the daemon learns of a key another table
 * already holds; the batch map calls cannot say that per key. The context is read and written back
 * whole: the daemon fills count, each key and op, the program each result. A loop over the
 * context needs constant offsets (the verifier allows no variable one into it): the program
 * unrolls, hence the bound. */
#define SG_XDP_FLOW_WRITES_MAX 32
#define SG_XDP_FLOW_ADD 1u    /* insert the key where absent */
#define SG_XDP_FLOW_REMOVE 2u /* delete the key */
struct sg_xdp_flow_write {
  struct sg_xdp_flow_key key;
  sg_u32 op;     /* SG_XDP_FLOW_* */
  sg_s32 result; /* the map helper's: 0, or -EEXIST (an add over a key there), -ENOENT, -E2BIG, ... */
};
struct sg_xdp_flow_writes {
  sg_u32 count; /* writes[0, count) are made, in order; at most SG_XDP_FLOW_WRITES_MAX */
  sg_u32 pad;
  struct sg_xdp_flow_write writes[SG_XDP_FLOW_WRITES_MAX];
};

/* What the SYN-ACK announces and how the program behaves; one entry, written before `ready`. */
struct sg_xdp_config {
  sg_u64 fixed_now_ns;   /* 0: CLOCK_TAI, the daemon's clock; else this instant (tests) */
  sg_u16 synack_window;  /* as sent, 0 included (the engine's engine.synack_window) */
  sg_u16 mss_v4;
  sg_u16 mss_v6;
  sg_u8 wscale;          /* announced when the client asked for window scaling (with timestamps) */
  sg_u8 announce_ecn;
  sg_u8 ready;           /* keys and services are loaded: act; before that, pass everything */
  sg_u8 drop_no_flow;    /* the flow map is kept in step by the engine: non-SYN packets with no
                            flow and no valid cookie may be dropped here */
  sg_u8 has_prefixes;    /* the policy map holds allow/deny prefixes */
  sg_u8 allow_list;      /* some prefix is an allow entry: sources matching none are refused */
  sg_u32 synack_limit;   /* backscatter budget per CPU: SYN-ACKs per second per /24 (/48) of
                            unproven sources; 0 = none */
  sg_u8 budget_key[16];  /* SipHash key of the budget cells (random per process) */
  sg_u32 synack_address_limit; /* unanswered SYN-ACKs per second to one proven source, over all
                                  CPUs (the proven map is shared); 0 = none */
};

/* The policy map holds at most this many allow and deny prefixes together: a larger list would
 * not load, and the fast path would be off. `syngate check` refuses such a list. */
#define SG_XDP_MAX_PREFIXES 65536

/* A policy prefix: LPM trie key over the family tag and the 128-bit Address form, so that a
 * prefix matches its own family only (syn_rules.h: SG_POLICY_FAMILY_V4). prefixlen is
 * sg_policy_key_length(length): an IPv4 /24 is 8 + 96 + 24, an IPv6 ::/0 is 8. */
struct sg_xdp_prefix_key {
  sg_u32 prefixlen;
  sg_u8 family;   /* SG_POLICY_FAMILY_V4 or SG_POLICY_FAMILY_V6 */
  sg_u8 addr[16];
  sg_u8 pad[3];   /* zero */
};

/* A source that proved itself (syn_rules.h: struct sg_proven), keyed by its address. */
struct sg_xdp_proven_key {
  sg_u8 addr[16];
};
#define SG_XDP_PROVEN_ENTRIES 65536

#define SG_XDP_BUDGET_CELLS 16384 /* per CPU; a power of two */

/* Cookie keys: two slots and an index. The daemon writes the slot not in use, then flips the
 * index, so a reader never sees half of a key (an array map value is not updated atomically). */
#define SG_XDP_KEY_SLOTS 2

/* What the program did with a packet: one per-CPU counter each (sg_counters), one label each for
 * syngate_xdp_packets_total{outcome}. X(ENUM, "label", REASON): REASON is the drop vocabulary's
 * reason this outcome is (drop_reasons.h), SG_OK when it drops nothing or stands for several
 * reasons (sg_reasons, the per-reason map, tells those apart). The labels are published: never
 * rename one. Append only. */
#define SG_XDP_OUTCOMES(X)                                                                        \
  /* SYN answered with a cookie SYN-ACK (XDP_TX) */                                               \
  X(SYN_ANSWERED, "syn_answered", SG_R_SYN_ANSWERED)                                              \
  /* ACK with no flow and a valid cookie: passed to the engine */                                 \
  X(COOKIE_VALID, "cookie_valid", SG_OK)                                                          \
  /* ACK with no flow and no valid cookie: dropped */                                             \
  X(COOKIE_INVALID, "cookie_invalid", SG_R_COOKIE_INVALID)                                        \
  /* packet of a flow the engine holds: passed */                                                 \
  X(FLOW_PASSED, "flow_passed", SG_OK)                                                            \
  /* RST with no flow: dropped */                                                                 \
  X(NO_FLOW, "no_flow", SG_R_NO_FLOW)                                                             \
  /* impossible flags (SYN+ACK/RST/FIN from a client, no ACK): dropped */                         \
  X(INVALID_FLAGS, "invalid_flags", SG_R_INVALID_FLAGS)                                           \
  /* a SYN whose TCP options do not parse or with IPv4 options or IPv6 extension headers, or an   \
   * IPv4 TCP fragment for a service: dropped (bad_tcp_option, ip_options, fragment) */           \
  X(MALFORMED, "malformed", SG_OK)                                                                \
  /* for a service but left to the engine: IP options, fragments, IPv6 extension headers, bad     \
   * lengths, not ready */                                                                        \
  X(PASSED_UNHANDLED, "passed_unhandled", SG_OK)                                                  \
  /* not TCP to a protected service */                                                            \
  X(PASSED_OTHER, "passed_other", SG_OK)                                                          \
  /* a SYN-ACK could not be built in place (tail adjust): passed */                               \
  X(TX_ERROR, "tx_error", SG_OK)                                                                  \
  /* SYN dropped by the source policy or the backscatter budget (denied, not_allowed,             \
   * backscatter_budget) */                                                                       \
  X(SYN_REFUSED, "syn_refused", SG_OK)

#define SG_XDP_OUTCOME_ENUM_(e, label, reason) SG_XDP_##e,
enum sg_xdp_counter {
  SG_XDP_OUTCOMES(SG_XDP_OUTCOME_ENUM_)
  SG_XDP_COUNTER_COUNT
};
#undef SG_XDP_OUTCOME_ENUM_

#endif /* SYNGATE_BPF_XDP_ABI_H */
