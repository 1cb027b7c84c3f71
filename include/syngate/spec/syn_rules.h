/* The SYN decision: which packets arriving for a protected service are answered with a cookie,
 * which are dropped (and why), and which go on to the stateful flow path.
 *
 * One specification for every data path. This header is plain C with no library calls: the C++
 * core (core/syn_decision.cpp, core/packet.cpp) and the in-kernel fast path (BPF C, clang
 * -target bpf) compile the same functions, so the two paths cannot drift apart. Everything is
 * `static inline`, takes plain values, and reads only the buffers it is given, with every index
 * checked against both the caller's length and a compile-time bound (the BPF verifier needs the
 * latter).
 *
 * Why so strict: Linux's TCP stack is lenient. It stops parsing options at a malformed one and
 * still accepts the SYN, ignores IP options it does not understand, and reassembles fragments.
 * Whatever a gateway lets through untouched, the backend treats as a real SYN, so a SYN that one
 * path cannot fully vouch for is dropped, never passed.
 */
#ifndef SYNGATE_SPEC_SYN_RULES_H
#define SYNGATE_SPEC_SYN_RULES_H

#include "syngate/spec/drop_reasons.h"
#include "syngate/spec/sg_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TCP flags and option kinds ---------------------------------------------------------- */
#define SG_TCP_FIN 0x01
#define SG_TCP_SYN 0x02
#define SG_TCP_RST 0x04
#define SG_TCP_PSH 0x08
#define SG_TCP_ACK 0x10
#define SG_TCP_URG 0x20
#define SG_TCP_ECE 0x40
#define SG_TCP_CWR 0x80

#define SG_OPT_END 0
#define SG_OPT_NOP 1
#define SG_OPT_MSS 2
#define SG_OPT_WSCALE 3
#define SG_OPT_SACK_PERM 4
#define SG_OPT_SACK 5
#define SG_OPT_TIMESTAMP 8

#define SG_TCP_MIN_HEADER 20
#define SG_TCP_MAX_OPTIONS 40 /* data offset 15 words minus the fixed 20 bytes */
#define SG_IPV4_MIN_HEADER 20
#define SG_IPV6_HEADER 40

/* ---- Parse errors ----------------------------------------------------------------------------
 * Why a packet's headers cannot be trusted. The C++ parser (ParseError) uses these very values. */
enum sg_parse_error {
  SG_PE_NONE = 0,
  SG_PE_TRUNCATED = 1,           /* shorter than the fixed IP header */
  SG_PE_BAD_IP_VERSION = 2,      /* neither 4 nor 6 */
  SG_PE_BAD_IP_HEADER_LENGTH = 3,/* IPv4 IHL < 5 or past the buffer */
  SG_PE_BAD_TOTAL_LENGTH = 4,    /* IP length smaller than the headers or larger than the buffer */
  SG_PE_FRAGMENT = 5,            /* IPv4 MF or offset, IPv6 fragment header */
  SG_PE_NOT_TCP = 6,             /* the IP payload is not TCP (or hides behind an unknown header) */
  SG_PE_BAD_IPV6_EXT = 7,        /* an IPv6 extension header that is truncated or too deep */
  SG_PE_TRUNCATED_TCP = 8,       /* fewer than 20 bytes of TCP header */
  SG_PE_BAD_DATA_OFFSET = 9,     /* data offset < 5 words or past the segment */
  SG_PE_BAD_OPTION = 10,         /* an option with an impossible length or running past the header */
  SG_PE_MAPPED_ADDRESS = 11      /* IPv6 with a v4-mapped address: never on a wire, aliases IPv4 */
};

/* ---- Reasons -------------------------------------------------------------------------------
 * Every way the SYN decision drops a packet: SG_SYN_DROP_REASONS in drop_reasons.h, the one list
 * of reasons the engine, the metrics and the fast path's per-reason counters share. */

/* ::ffff:0:0/96 never appears on a wire (RFC 4291 2.5.5.2): an IPv6 packet that carries such an
 * address would alias an IPv4 flow, so every path refuses it. `a` holds 16 address bytes. */
static inline int sg_is_v4_mapped(const sg_u8 *a) {
  int i;
  for (i = 0; i < 10; i++) {
    if (a[i] != 0) return 0;
  }
  return a[10] == 0xff && a[11] == 0xff;
}

/* A packet queued for a protected service whose headers do not parse is dropped, whatever it
 * is: the rules queued it as TCP to a protected service, and what we cannot read we cannot vouch
 * for. This is the reason it is counted under. */
static inline enum sg_reason sg_reason_of_parse_error(enum sg_parse_error e) {
  switch (e) {
    case SG_PE_NONE: return SG_OK;
    case SG_PE_TRUNCATED:
    case SG_PE_TRUNCATED_TCP: return SG_R_TRUNCATED;
    case SG_PE_FRAGMENT: return SG_R_FRAGMENT;
    case SG_PE_BAD_DATA_OFFSET: return SG_R_BAD_DATA_OFFSET;
    case SG_PE_BAD_OPTION: return SG_R_BAD_OPTION;
    default: return SG_R_BAD_IP_HEADER;
  }
}

/* What happens to a packet for a protected service, as seen from the client's side. */
enum sg_action {
  SG_ACTION_ANSWER = 0, /* a client SYN that passed every rule: answer with a cookie SYN-ACK */
  SG_ACTION_FLOW = 1,   /* not a SYN: the stateful flow path decides (cookie ACK or a flow) */
  SG_ACTION_DROP = 2    /* dropped, with a reason */
};

/* ---- IP headers ----------------------------------------------------------------------------- */

/* IPv4: `avail` bytes of the packet are readable from the IP header on (at least the first one).
 * On success *ihl_out and *total_out are set. IP options are not a failure here (an established
 * flow may carry them); the SYN rules reject them. */
static inline enum sg_parse_error sg_ipv4_header(const sg_u8 *ip, sg_u32 avail, sg_u32 *ihl_out,
                                                  sg_u32 *total_out) {
  if (avail < SG_IPV4_MIN_HEADER) return SG_PE_TRUNCATED;
  sg_u32 ihl = (sg_u32)(ip[0] & 0x0f) * 4;
  if (ihl < SG_IPV4_MIN_HEADER || ihl > avail) return SG_PE_BAD_IP_HEADER_LENGTH;
  sg_u32 total = ((sg_u32)ip[2] << 8) | ip[3];
  if (total < ihl || total > avail) return SG_PE_BAD_TOTAL_LENGTH;
  /* MF set or a non-zero offset: the TCP header of a fragment cannot be trusted to be whole,
   * and the backend would reassemble what we never saw. */
  if ((((sg_u32)ip[6] << 8 | ip[7]) & 0x3fff) != 0) return SG_PE_FRAGMENT;
  if (ip[9] != 6) return SG_PE_NOT_TCP;
  *ihl_out = ihl;
  *total_out = total;
  return SG_PE_NONE;
}

/* IPv6 extension headers the parser walks past (hop-by-hop, routing, destination options,
 * authentication); 44 (fragment) is a fragment; anything else ends the walk as not TCP. */
#define SG_IPV6_MAX_EXT_HEADERS 8

/* One step of the IPv6 header chain: `next` is the Next Header value in hand, `len_byte` the
 * second byte of that extension header. Sets *hlen to the header's length. */
static inline enum sg_parse_error sg_ipv6_ext_header(sg_u8 next, sg_u8 len_byte, sg_u32 *hlen) {
  switch (next) {
    case 0:  /* hop-by-hop options */
    case 43: /* routing */
    case 60: /* destination options */
      *hlen = ((sg_u32)len_byte + 1) * 8;
      return SG_PE_NONE;
    case 51: /* authentication header: length in 4-octet units, minus 2 */
      *hlen = ((sg_u32)len_byte + 2) * 4;
      return SG_PE_NONE;
    case 44:
      return SG_PE_FRAGMENT;
    default:
      return SG_PE_NOT_TCP; /* ESP, no-next-header, UDP, ICMPv6, unknown */
  }
}

/* ---- TCP header and options ----------------------------------------------------------------- */

/* The TCP header's own consistency: `seg_len` bytes of TCP segment (header + payload) as the IP
 * length says, `doff_byte` the byte holding the data offset. *hdr_len_out is the header length. */
static inline enum sg_parse_error sg_tcp_header(sg_u32 seg_len, sg_u8 doff_byte, sg_u32 *hdr_len_out) {
  if (seg_len < SG_TCP_MIN_HEADER) return SG_PE_TRUNCATED_TCP;
  sg_u32 hdr = (sg_u32)(doff_byte >> 4) * 4;
  if (hdr < SG_TCP_MIN_HEADER || hdr > seg_len) return SG_PE_BAD_DATA_OFFSET;
  *hdr_len_out = hdr;
  return SG_PE_NONE;
}

/* What a SYN's options ask for; also what the flow path reads from later segments. */
struct sg_tcp_opts {
  sg_u8 has_mss;
  sg_u8 has_wscale;
  sg_u8 sack_permitted;
  sg_u8 has_timestamps;
  sg_u16 mss;
  sg_u8 wscale;      /* clamped to SG_MAX_WSCALE */
  sg_u8 sack_count;  /* SACK blocks present (at most 4 recorded by the C++ parser) */
  sg_u32 tsval;
  sg_u32 tsecr;
  sg_u16 ts_offset;   /* offset of TSval within the option bytes, plus 2; 0 = absent */
  sg_u16 sack_offset; /* offset of the first SACK block within the option bytes, plus 2 */
};

/* Returned by sg_tcp_option_step besides a next offset. */
#define SG_OPT_STEP_DONE 0xffffu  /* END seen, or nothing left */
#define SG_OPT_STEP_BAD 0xfffeu   /* malformed: the whole packet is SG_PE_BAD_OPTION */

static inline sg_u32 sg_load_be16(const sg_u8 *p) { return ((sg_u32)p[0] << 8) | p[1]; }
static inline sg_u32 sg_load_be32(const sg_u8 *p) {
  return ((sg_u32)p[0] << 24) | ((sg_u32)p[1] << 16) | ((sg_u32)p[2] << 8) | p[3];
}

/* One step of the option walk over `opts` (the bytes after the fixed TCP header, `len` of them,
 * len <= 40). Reads the option at `off`, records it in *o, and returns the next offset, or
 * SG_OPT_STEP_DONE / SG_OPT_STEP_BAD. One step per call so that the fast path can drive it from
 * a bounded loop callback (a plain loop over 40 bytes exceeds the verifier's budget); the C++
 * parser calls it in a loop. The rules, and why:
 *  - END stops the walk; what follows is padding.
 *  - Every other option but NOP needs a length byte inside the header, and 2 <= length, and
 *    must end inside the header. Linux stops parsing at a violation and keeps the segment; we
 *    drop it, since we cannot know what the backend would make of the rest.
 *  - Known options must have their exact length (SACK: 2 + 8n with 1 <= n); others (TFO 34,
 *    MPTCP 30, experimental 253/254, ...) are skipped by their length and do not matter. */
static inline sg_u32 sg_tcp_option_step(const sg_u8 *opts, sg_u32 len, sg_u32 off,
                                        struct sg_tcp_opts *o) {
  if (len > SG_TCP_MAX_OPTIONS) return SG_OPT_STEP_BAD;
  if (off >= len || off >= SG_TCP_MAX_OPTIONS) return SG_OPT_STEP_DONE;
  sg_u8 kind = opts[off];
  if (kind == SG_OPT_END) return SG_OPT_STEP_DONE;
  if (kind == SG_OPT_NOP) return off + 1;
  if (off + 1 >= len || off + 1 >= SG_TCP_MAX_OPTIONS) return SG_OPT_STEP_BAD;
  sg_u32 olen = opts[off + 1];
  if (olen < 2 || off + olen > len) return SG_OPT_STEP_BAD;
  const sg_u8 *body = opts + off + 2;
  switch (kind) {
    case SG_OPT_MSS:
      if (olen != 4 || off + 4 > SG_TCP_MAX_OPTIONS) return SG_OPT_STEP_BAD;
      o->has_mss = 1;
      o->mss = (sg_u16)sg_load_be16(body);
      break;
    case SG_OPT_WSCALE:
      if (olen != 3 || off + 3 > SG_TCP_MAX_OPTIONS) return SG_OPT_STEP_BAD;
      o->has_wscale = 1;
      o->wscale = body[0] > SG_MAX_WSCALE ? SG_MAX_WSCALE : body[0];
      break;
    case SG_OPT_SACK_PERM:
      if (olen != 2) return SG_OPT_STEP_BAD;
      o->sack_permitted = 1;
      break;
    case SG_OPT_TIMESTAMP:
      if (olen != 10 || off + 10 > SG_TCP_MAX_OPTIONS) return SG_OPT_STEP_BAD;
      o->has_timestamps = 1;
      o->tsval = sg_load_be32(body);
      o->tsecr = sg_load_be32(body + 4);
      o->ts_offset = (sg_u16)(off + 2);
      break;
    case SG_OPT_SACK:
      if (olen < 10 || (olen - 2) % 8 != 0) return SG_OPT_STEP_BAD;
      o->sack_count = (sg_u8)((olen - 2) / 8);
      o->sack_offset = (sg_u16)(off + 2);
      break;
    default:
      break;
  }
  return off + olen;
}

/* ---- Flags ---------------------------------------------------------------------------------- */

/* Client -> protected service. A SYN with ACK, RST or FIN is no handshake any client starts
 * (Linux ignores such SYNs inconsistently across versions; we never pass them). A segment with
 * neither SYN, ACK nor RST (a bare FIN, a NULL or PSH/URG-only probe) is no segment of any
 * connection state a client can be in. ECE/CWR (ECN setup) and PSH/URG ride along freely. */
static inline int sg_client_flags_valid(sg_u8 flags) {
  if (flags & SG_TCP_SYN) return (flags & (SG_TCP_ACK | SG_TCP_RST | SG_TCP_FIN)) == 0;
  return (flags & (SG_TCP_ACK | SG_TCP_RST)) != 0;
}
static inline int sg_is_client_syn(sg_u8 flags) {
  return (flags & (SG_TCP_SYN | SG_TCP_ACK | SG_TCP_RST | SG_TCP_FIN)) == SG_TCP_SYN;
}

/* ---- Source policy -------------------------------------------------------------------------- */

/* A policy prefix matches sources of its own family only. Both families share the 128-bit
 * address form (IPv4 v4-mapped, ::ffff:a.b.c.d), in which any IPv6 prefix of /80 or shorter
 * would also cover every IPv4 source: `deny = ["::/0"]`, meant as "all IPv6", would deny all of
 * IPv4. So a lookup key is a family tag followed by the address, and a prefix's length counts
 * the tag's bits too: an LPM trie (or any longest-prefix match) over such keys never crosses
 * families. */
#define SG_POLICY_FAMILY_V4 4
#define SG_POLICY_FAMILY_V6 6
#define SG_POLICY_TAG_BITS 8
/* The key length of a prefix of `length` bits in the 128-bit form (an IPv4 /24 is 96 + 24). */
static inline sg_u32 sg_policy_key_length(sg_u32 length) { return SG_POLICY_TAG_BITS + length; }

/* The outcome of the longest-prefix lookup of a SYN's source in the policy's prefix set. */
enum sg_policy_match {
  SG_POLICY_NO_MATCH = 0,
  SG_POLICY_MATCH_ALLOW = 1,
  SG_POLICY_MATCH_DENY = 2
};

/* deny wins when it is the longest match; with a non-empty allow list a source matching no
 * allow entry (longest) is refused. */
static inline enum sg_reason sg_policy_verdict(enum sg_policy_match m, int allow_list_set) {
  if (m == SG_POLICY_MATCH_DENY) return SG_R_DENIED;
  if (m == SG_POLICY_NO_MATCH && allow_list_set) return SG_R_NOT_ALLOWED;
  return SG_OK;
}

/* ---- Backscatter budget ---------------------------------------------------------------------
 * A SYN proxy answers every SYN, so whoever spoofs an address aims our SYN-ACKs at it. Two
 * budgets bound that, and neither stands in a real client's way:
 *  - A source that proved it receives at its address (a valid cookie ACK from it within the
 *    last SG_PROVEN_TTL_S seconds) has a budget of its own: the SYN-ACKs sent to it that it has
 *    not answered, per second (sg_budget_take for each SYN-ACK, sg_budget_give for each valid
 *    cookie ACK). A client answers the SYN-ACKs it asked for, so it is not throttled at any
 *    connection rate; whoever spoofs its address draws at most the address limit of unanswered
 *    SYN-ACKs a second at it; whoever spoofs its /24 does not touch its budget at all.
 *  - Every other source shares its /24 (IPv4) or /48 (IPv6) budget of SYN-ACKs per second, so a
 *    prefix that never answers gets at most the prefix limit.
 * Proving takes a SYN-ACK received at the address: a spoofer cannot prove an address it cannot
 * receive at, and a SYN never creates a proven entry (an unvalidated SYN costs no state), so a
 * flood cannot push proven sources out of a path's table either.
 * Each path keeps proven sources its own way (the engine: a table its flow workers write and its
 * SYN workers read; XDP: an LRU hash it writes when it validates a cookie ACK) and calls the
 * functions below on them. */

/* Prefix lengths the budget of unproven sources groups them by: the units networks are routed
 * and announced in, so one victim network is one budget. */
#define SG_BUDGET_PREFIX_V4 24
#define SG_BUDGET_PREFIX_V6 48

/* How long a valid cookie ACK vouches for its source: long enough for a client that comes back
 * now and then, short enough that an address that changed hands soon falls back to its prefix's
 * budget. Every valid cookie ACK renews it. */
#define SG_PROVEN_TTL_S 900

/* A budget cell: how many units were taken in which one-second window. Fixed-size cells in a
 * fixed table, indexed by a keyed hash of the prefix or address, so memory never depends on how
 * many sources there are (a spoofed SYN still costs no state). Two prefixes sharing a cell
 * share a budget: that errs towards fewer SYN-ACKs, never more. */
struct sg_budget_cell {
  sg_u32 second;
  sg_u32 used;
};

/* Takes one unit from `cell` for the second `now_s`; 1 if it was available. limit 0 = no limit. */
static inline int sg_budget_take(struct sg_budget_cell *cell, sg_u32 now_s, sg_u32 limit) {
  if (limit == 0) return 1;
  if (cell->second != now_s) {
    cell->second = now_s;
    cell->used = 0;
  }
  if (cell->used >= limit) return 0;
  cell->used += 1;
  return 1;
}

/* Gives one unit back (a SYN-ACK that was answered). One taken in an earlier second is not given
 * back: that window is gone, and the new one owes it nothing. */
static inline void sg_budget_give(struct sg_budget_cell *cell, sg_u32 now_s) {
  if (cell->second == now_s && cell->used > 0) cell->used -= 1;
}

/* A source that proved itself: when last, and its budget of unanswered SYN-ACKs. */
struct sg_proven {
  sg_u32 proven_s;
  struct sg_budget_cell unanswered;
};

/* Whether a proof at `proven_s` still vouches at `now_s` (a stamp ahead of the clock does not). */
static inline int sg_proof_current(sg_u32 proven_s, sg_u32 now_s) {
  return (sg_u32)(now_s - proven_s) <= SG_PROVEN_TTL_S;
}

/* Which budget a SYN that passed the policy takes from (step 4 below). */
enum sg_budget_kind {
  SG_BUDGET_PREFIX = 0,  /* the /24 (/48) cell, with the prefix limit */
  SG_BUDGET_ADDRESS = 1  /* the source's own unanswered cell, with the address limit */
};

/* `entry` is the source's proven entry when the path holds one for it, else NULL. */
static inline enum sg_budget_kind sg_budget_of(const struct sg_proven *entry, sg_u32 now_s) {
  return entry && sg_proof_current(entry->proven_s, now_s) ? SG_BUDGET_ADDRESS : SG_BUDGET_PREFIX;
}

/* A valid cookie ACK from the source at `now_s`. `entry` is its proven entry, `known` whether it
 * held this source before (else it is a fresh one to fill in). The SYN-ACK it answered is given
 * back; a new or lapsed proof starts with a full budget. */
static inline void sg_source_proved(struct sg_proven *entry, int known, sg_u32 now_s) {
  if (known && sg_proof_current(entry->proven_s, now_s)) {
    sg_budget_give(&entry->unanswered, now_s);
  } else {
    entry->unanswered.second = now_s;
    entry->unanswered.used = 0;
  }
  entry->proven_s = now_s;
}

/* ---- The decision ---------------------------------------------------------------------------
 * The order every path follows for a packet queued for a protected service:
 *   0. headers (sg_ipv4_header or the sg_ipv6_ext_header walk, sg_tcp_header, the
 *      sg_tcp_option_step walk): any parse error -> DROP(sg_reason_of_parse_error). IPv6
 *      packets with a v4-mapped address are refused too.
 * Then, when the destination is a protected service (the client's side):
 *   1. flags: invalid -> DROP(INVALID_FLAGS); not a SYN -> FLOW.
 *   2. a SYN with IP options or IPv6 extension headers -> DROP(IP_OPTIONS).
 *   3. policy (sg_policy_verdict) -> DROP(DENIED | NOT_ALLOWED).
 *   4. backscatter budget: sg_budget_take on the budget sg_budget_of names (the source's own
 *      when it proved itself, else its /24's or /48's) -> DROP(BACKSCATTER_BUDGET).
 *   5. ANSWER.
 * And on the flow side: a valid cookie ACK proves its source (sg_source_proved).
 * Steps 3 and 4 need lookups each path does its own way (a prefix set / an LPM map; a budget
 * table / a per-CPU map; proven sources: a shared table / an LRU hash), so the decision is
 * split where they happen: sg_syn_precheck gives steps 1-2, the caller looks the source up,
 * sg_policy_verdict gives step 3, and the caller takes from the budget only for a SYN that got
 * this far (so refused SYNs use up no budget). */
static inline enum sg_action sg_syn_precheck(sg_u8 flags, int has_ip_options, enum sg_reason *why) {
  if (!sg_client_flags_valid(flags)) {
    *why = SG_R_INVALID_FLAGS;
    return SG_ACTION_DROP;
  }
  if (!sg_is_client_syn(flags)) {
    *why = SG_OK;
    return SG_ACTION_FLOW;
  }
  if (has_ip_options) {
    *why = SG_R_IP_OPTIONS;
    return SG_ACTION_DROP;
  }
  *why = SG_OK;
  return SG_ACTION_ANSWER;
}

#ifdef __cplusplus
}
#endif

#endif /* SYNGATE_SPEC_SYN_RULES_H */
