/* Every reason syngate drops a packet or refuses a flow: one list, for every data path.
 *
 * The list below is the only place a reason is named. From it come the specification's
 * enum sg_reason (the SYN decision in syn_rules.h, the XDP program's per-reason counters), the
 * engine's DropReason (syngate/drop_reason.hpp), the label values of syngate_drops_total and
 * syngate_xdp_drops_total, and what `syngate status` counts as normal work. Adding a reason is one
 * line here (and a row in README's reason table). Plain C, like the rest of the specification:
 * the BPF program compiles it too.
 *
 * X(ENUM, CxxName, "label", KIND):
 *   ENUM    the C name: SG_R_<ENUM> in enum sg_reason
 *   CxxName the C++ name: DropReason::<CxxName>
 *   "label" the metrics label value (reason="..."). Operators' dashboards and alert rules
 *           (deploy/) match on these: never rename one.
 *   KIND    DROP (a packet dropped or a flow refused) or WORK (a packet consumed as normal work,
 *           counted with the drops; `syngate status` marks it "(normal)")
 *
 * The values are part of the specification: 0 is SG_OK (no drop), then the list in order. The
 * SYN decision's reasons come first, so that the SYN decision's verdicts are 1 .. SG_R_SYN_COUNT_
 * - 1. Append only (to the list a reason belongs to); never reorder or renumber.
 */
#ifndef SYNGATE_SPEC_DROP_REASONS_H
#define SYNGATE_SPEC_DROP_REASONS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The SYN decision's reasons (syn_rules.h): every data path drops by these, the XDP program too. */
#define SG_SYN_DROP_REASONS(X)                                                                    \
  /* headers cut short: IP or TCP */                                                              \
  X(TRUNCATED, Truncated, "truncated", DROP)                                                      \
  /* IP version, header or total length, IPv6 extension chain, mapped address */                  \
  X(BAD_IP_HEADER, BadIpHeader, "bad_ip_header", DROP)                                            \
  /* IPv4 MF or offset, IPv6 fragment header: its TCP header cannot be trusted to be whole */      \
  X(FRAGMENT, Fragment, "fragment", DROP)                                                         \
  /* a SYN with IPv4 options or IPv6 extension headers */                                         \
  X(IP_OPTIONS, IpOptions, "ip_options", DROP)                                                    \
  /* TCP data offset < 5 words or past the segment */                                             \
  X(BAD_DATA_OFFSET, BadDataOffset, "bad_data_offset", DROP)                                      \
  /* a TCP option with an impossible length or running past the header */                         \
  X(BAD_OPTION, BadTcpOption, "bad_tcp_option", DROP)                                             \
  /* a flag set no real client sends (SYN+RST, SYN+FIN, client SYN+ACK, no ACK) */                \
  X(INVALID_FLAGS, InvalidFlags, "invalid_flags", DROP)                                           \
  /* source in policy.deny (longest prefix) */                                                    \
  X(DENIED, Denied, "denied", DROP)                                                               \
  /* policy.allow is set and the source is not in it */                                           \
  X(NOT_ALLOWED, NotAllowed, "not_allowed", DROP)                                                 \
  /* the source's budget of SYN-ACKs is spent for this second: its own (a proven source) or its  \
   * /24's (/48's) (sg_budget_of) */                                                              \
  X(BACKSCATTER_BUDGET, BackscatterBudget, "backscatter_budget", DROP)

/* The flow path's reasons (the NFQUEUE engine). */
#define SG_FLOW_DROP_REASONS(X)                                                                   \
  /* client SYN consumed, cookie SYN-ACK sent */                                                  \
  X(SYN_ANSWERED, SynAnswered, "syn_answered", WORK)                                              \
  /* ACK with no flow and a cookie that does not validate */                                      \
  X(COOKIE_INVALID, CookieInvalid, "cookie_invalid", DROP)                                        \
  /* packet for a protected service that no flow or cookie explains */                            \
  X(NO_FLOW, NoFlow, "no_flow", DROP)                                                             \
  /* valid cookie, but the flow table is full */                                                  \
  X(TABLE_FULL, TableFull, "table_full", DROP)                                                    \
  /* valid cookie, but the source has max_flows_per_source flows */                               \
  X(SOURCE_LIMIT, SourceLimit, "source_limit", DROP)                                              \
  /* valid cookie, but the source opened policy.new_flows_per_source_per_s this second */        \
  X(NEW_FLOW_RATE, NewFlowRate, "new_flow_rate", DROP)                                            \
  /* data before the backend answered, past the buffer */                                         \
  X(EARLY_DATA_OVERFLOW, EarlyDataOverflow, "early_data_overflow", DROP)                          \
  /* the backend's SYN-ACK, consumed by syngate */                                                \
  X(BACKEND_SYNACK_CONSUMED, BackendSynAckConsumed, "backend_synack_consumed", WORK)              \
  /* SYN-ACK for no flow or not matching our SYN */                                               \
  X(BACKEND_SYNACK_UNEXPECTED, BackendSynAckUnexpected, "backend_synack_unexpected", DROP)        \
  /* backend never answered: RST sent to the client */                                            \
  X(BACKEND_TIMEOUT, BackendTimeout, "backend_timeout", DROP)                                     \
  /* backend RST during the handshake: RST sent to the client */                                  \
  X(BACKEND_RESET, BackendReset, "backend_reset", DROP)                                           \
  /* segment for a flow that cannot take it (e.g. client data before the backend's ack) */        \
  X(STALE_SEGMENT, StaleSegment, "stale_segment", DROP)                                           \
  /* RST whose sequence number is outside the receiver's window: a blind guess (RFC 5961) */      \
  X(RST_OUT_OF_WINDOW, RstOutOfWindow, "rst_out_of_window", DROP)                                 \
  /* ICMP error quoting a service's segment that no established flow explains (in SynSent only    \
   * our own SYN has crossed) */                                                                  \
  X(ICMP_NO_FLOW, IcmpNoFlow, "icmp_no_flow", DROP)                                               \
  /* ICMP unreachable or time exceeded for our backend SYN: RST sent to the client */              \
  X(BACKEND_UNREACHABLE, BackendUnreachable, "backend_unreachable", DROP)                          \
  /* a pure ACK that waited in the queue while its flow's hand-over went live, acknowledging less  \
   * than newer ones of its direction the tc programs already delivered (normal work) */          \
  X(ACK_SUPERSEDED, AckSuperseded, "ack_superseded", WORK)                                        \
  /* a flow the tc ingress opened from a cookie ACK on an address/port pair whose connection the \
   * engine still holds established: backend and client reset */                                 \
  X(PAIR_IN_USE, PairInUse, "pair_in_use", DROP)

#define SG_DROP_REASONS(X) SG_SYN_DROP_REASONS(X) SG_FLOW_DROP_REASONS(X)

#define SG_REASON_ENUM_(e, cxx, label, kind) SG_R_##e,
enum sg_reason {
  SG_OK = 0,
  SG_DROP_REASONS(SG_REASON_ENUM_)
  SG_R_COUNT_ /* the whole vocabulary, SG_OK included: the size of an array indexed by reason */
};
#undef SG_REASON_ENUM_

/* 1 + the number of the SYN decision's reasons: they are 1 .. SG_R_SYN_COUNT_ - 1. */
#define SG_REASON_ONE_(e, cxx, label, kind) 1 +
enum { SG_R_SYN_COUNT_ = 1 + SG_SYN_DROP_REASONS(SG_REASON_ONE_) 0 };
#undef SG_REASON_ONE_

enum sg_reason_kind {
  SG_REASON_KIND_DROP = 0, /* dropped or refused */
  SG_REASON_KIND_WORK = 1  /* consumed as normal work */
};

/* The label of a reason; "none" for SG_OK and for what is no reason. */
static inline const char *sg_reason_label(enum sg_reason r) {
  switch (r) {
#define SG_REASON_LABEL_(e, cxx, label, kind) \
    case SG_R_##e: return label;
    SG_DROP_REASONS(SG_REASON_LABEL_)
#undef SG_REASON_LABEL_
    default: return "none";
  }
}

static inline enum sg_reason_kind sg_reason_kind_of(enum sg_reason r) {
  switch (r) {
#define SG_REASON_KIND_(e, cxx, label, kind) \
    case SG_R_##e: return SG_REASON_KIND_##kind;
    SG_DROP_REASONS(SG_REASON_KIND_)
#undef SG_REASON_KIND_
    default: return SG_REASON_KIND_DROP;
  }
}

#ifdef __cplusplus
}
#endif

#endif /* SYNGATE_SPEC_DROP_REASONS_H */
