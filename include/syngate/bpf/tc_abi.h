/* What the tc translation programs (established flows in the kernel) and the daemon share: the
 * flow map's key and value, the mark bit, counter indices. Plain C for both compilers.
 *
 * Hand-over. When the backend's SYN-ACK completes a proxied handshake, the worker writes two
 * entries (one per direction) synchronously, before syngate sends the backend the ACK that
 * completes its handshake: the server cannot send a byte before that ACK, so every server
 * segment finds its entry. Client segments already queued are translated by the engine with the
 * same parameters. From then on the programs translate what they can and set SG_TC_MARK on the
 * packet, which the NFQUEUE rules skip (matched with the mask SG_TC_MARK: an operator's own
 * MARK/CONNMARK bits are left alone); anything they cannot rewrite (IPv4 options, fragments,
 * IPv6 extension headers, an option layout they cannot walk, SYN, RST, a map miss) goes on
 * unmarked to NFQUEUE as before.
 *
 * The close. FIN segments are translated by the programs, both ways, and recorded (when their
 * sequence number is believable, as for an RST) for the engine, which the programs tell through
 * sg_tc_events. After a FIN the server's segments stay in the kernel; the client's go to NFQUEUE
 * once the client has sent its FIN: a client reuses its port only after that (or an RST), so a new
 * cookie ACK on the lingering pair reaches the engine. A believable RST, or the engine's punt,
 * sends every segment of both directions to NFQUEUE (lib/tc_rewritable.h says it once).
 *
 * Ownership. Only the daemon creates and deletes entries; the programs only update the
 * kernel-kept fields below, so a forged packet can never remove state.
 *
 * The object (bpf/syngate_tc.bpf.c, skeleton `syngate_tc`): programs sg_tc_ingress and
 * sg_tc_egress (SEC "tc", clsact), sg_tc_synack, sg_tc_cookie_ack and sg_tc_early_store (the
 * ingress program's tail calls through sg_tc_tail, for a backend's SYN-ACK, a client's cookie ACK
 * and a client's early segment, kept in sg_tc_early: below); the cookie ACK's maps
 * sg_tc_keys, sg_tc_key_slot, sg_tc_services and sg_tc_open are described with it below), maps sg_tc_flows (BPF_MAP_TYPE_HASH, this key and value;
 * the daemon sets max_entries before load), sg_tc_handshakes (the same key, struct
 * sg_tc_handshake), sg_tc_counters (BPF_MAP_TYPE_PERCPU_ARRAY of __u64, indexed by enum
 * sg_tc_counter) and sg_tc_events (BPF_MAP_TYPE_RINGBUF of struct sg_tc_event: a flow whose close
 * the engine should merge now, not at its idle timeout, or whose hand-over the program made).
 * Set before load (rodata): sg_tc_router (router and both modes: ingress asks the FIB where a
 * segment goes before rewriting it, and leaves untranslated one the kernel will refuse) and
 * sg_tc_forward (gateway.tc_forward: ingress then sends translated segments on itself, counted
 * SG_TC_FORWARDED); sg_tc_route is the per-CPU scratch of that lookup. */
#ifndef SYNGATE_BPF_TC_ABI_H
#define SYNGATE_BPF_TC_ABI_H

#include "syngate/spec/cookie_spec.h"
#include "syngate/spec/handover_spec.h"
#include "syngate/spec/sg_types.h"

/* The packet's own direction, as on the wire: the client's segments are keyed client -> server,
 * the server's server -> client. Addresses as syngate's Address stores them (IPv4 as
 * ::ffff:a.b.c.d), ports in network order: the same form as the XDP flow key. */
struct sg_tc_flow_key {
  sg_u8 src[16];
  sg_u8 dst[16];
  sg_u16 sport_be;
  sg_u16 dport_be;
};

enum sg_tc_direction {
  SG_TC_TO_SERVER = 0, /* the client's segments: ack, SACK edges + delta; TSecr + tsoff */
  SG_TC_TO_CLIENT = 1  /* the server's segments: seq - delta; TSval - tsoff */
};

/* value.options */
#define SG_TC_OPT_TIMESTAMPS 0x01u /* both ends send timestamps: TSval/TSecr are translated (to the
                                      server: TSecr; to the client: TSval). A flow whose timestamps
                                      the engine supplies (backend without them) is not handed over */
#define SG_TC_OPT_EGRESS 0x02u /* written by a run whose tc egress translates: host mode's OUTPUT
                                  match lets the server's replies past the queue only on such an
                                  entry (a run with no service on its own host attaches no egress) */

/* value.seen, set by the program: sender_next/acked/window_bytes hold the record of this
 * direction (xlate_spec.h, sg_flow_track_segment: started by the first segment, then moved only by
 * plausible ones against the reverse entry's record); newest_tsval/newest_tsval_seq hold one. */
#define SG_TC_SEEN_RECORD 0x01u
#define SG_TC_SEEN_TSVAL 0x02u
/* This direction acknowledged the other's recorded FIN (acked past its fin_seq): told once. */
#define SG_TC_SEEN_PEER_FIN_ACKED 0x04u
/* last_ack holds the ack of this direction's latest translated segment, taken by the record or not. */
#define SG_TC_SEEN_LAST_ACK 0x08u

/* value.closing, set by the program (never cleared by it). FIN: a FIN sg_fin_believable takes
 * (fin_seq = its seq + payload length, the first one's). RST: one sg_rst_check does not call a blind guess
 * (exact, or in the receiver's window; always while either direction's record is empty). A blind FIN
 * is still translated (the endpoint judges it) but changes nothing here. */
#define SG_TC_SEEN_FIN 0x01u
#define SG_TC_SEEN_RST 0x02u
/* Set by the daemon (the only write it makes to a live entry besides creating it): the engine saw
 * a FIN or ended the flow on an RST that the program did not record (a FIN in a packet it cannot
 * parse, an RST only the engine's whole record believes). The program punts as for the others. */
#define SG_TC_CLOSED_BY_ENGINE 0x04u

/* The way out the FIB last gave a direction's forwarded segments (router and both modes), kept in
 * its entry by the programs so that the next ones skip the lookup: a connection per request asked
 * the FIB for each of its seven forwarded segments, 3.6 us of the client's CPU a connection
 * (IPv6: 6.3) in the shared lab. A segment takes it only when asked the same way (the ingress
 * interface, the IPv4 TOS or IPv6 traffic class and flow label: the packet's inputs the FIB reads
 * besides the entry's addresses and ports), with a hop limit to spare, no larger than the route's
 * MTU, and before `until`: SG_TC_ROUTE_CACHE_TICKS of the coarse clock after the lookup, the
 * longest a route or neighbour change waits to reach a flow's segments (the kernel's own
 * forwarding sees it at the next packet; new flows ask the FIB afresh). `check` covers the rest,
 * so that a copy torn by a refresh on another CPU is never taken (no atomics on the read). */
struct sg_tc_route_cache {
  sg_u32 out_ifindex; /* the FIB's answer; 0: none */
  sg_u32 in_ifindex;  /* the ingress interface it was asked for */
  sg_u32 inputs;      /* the FIB query's tos/flowinfo as asked (IPv4 TOS; IPv6 class and label) */
  sg_u32 until;       /* bpf_ktime_get_coarse_ns() >> 20 (about ms) it may be taken before */
  sg_u8 macs[12];     /* the next hop's, then the way out's own */
  sg_u16 mtu;         /* the route's, as the FIB gave it (mtu_result) */
  sg_u16 pad;
  sg_u32 check;       /* sg_tc_route_check of the fields above */
  sg_u32 pad2;
};
#define SG_TC_ROUTE_CACHE_TICKS 10u /* of 2^20 ns: about 10 ms */

SG_INLINE sg_u32 sg_tc_route_mix(sg_u32 h, sg_u32 word) {
  h ^= word;
  h *= 0x9e3779b1u;
  return h ^ (h >> 16);
}
SG_INLINE sg_u32 sg_tc_route_check(const struct sg_tc_route_cache* c) {
  sg_u32 h = 0x5bd1e995u;
  h = sg_tc_route_mix(h, c->out_ifindex);
  h = sg_tc_route_mix(h, c->in_ifindex);
  h = sg_tc_route_mix(h, c->inputs);
  h = sg_tc_route_mix(h, c->until);
  for (int i = 0; i < 12; i += 4)
    h = sg_tc_route_mix(h, (sg_u32)c->macs[i] | (sg_u32)c->macs[i + 1] << 8 | (sg_u32)c->macs[i + 2] << 16 |
                               (sg_u32)c->macs[i + 3] << 24);
  return sg_tc_route_mix(h, c->mtu);
}

struct sg_tc_flow {
  /* Written by the daemon at hand-over; the programs only read these. */
  sg_u32 delta;          /* backend ISN - cookie ISN (flow_spec.h) */
  sg_u32 tsoff;          /* backend TSval - our TSval (flow_spec.h) */
  sg_u8 direction;       /* enum sg_tc_direction */
  sg_u8 window_from;     /* the shift the sender's window field is in (flow_spec.h shifts) */
  sg_u8 window_to;       /* the shift the receiver reads it with */
  sg_u8 options;         /* SG_TC_OPT_* */
                         /* direction/window_from/window_to/options with delta and tsoff are the
                            specification's struct sg_xlate_params (xlate_spec.h), field by field */
  sg_u32 generation;     /* the daemon's hand-over counter: tells a reused tuple's entries apart */

  /* Kept by the programs (the engine reads them when it needs them: timers, RST, FIN, restart).
   * Sequence spaces as in the engine's Flow: client numbers as sent, server numbers in the
   * backend's space, acks in the space of the receiver they go to. */
  sg_u64 last_ns;        /* bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC at the last tick: the
                            engine's timer clock, at most a tick behind) of the latest segment this
                            entry translated */
  sg_u32 sender_next;    /* highest seq + length this direction sent */
  sg_u32 acked;          /* highest ack this direction sent */
  sg_u32 window_bytes;   /* this direction's latest window, in bytes */
  sg_u32 newest_tsval;   /* this direction's newest TSval, as it sent it, in sequence order */
  sg_u32 newest_tsval_seq; /* the sequence number that carried newest_tsval */
  sg_u32 fin_seq;        /* sequence number of this direction's FIN when SG_TC_SEEN_FIN */
  sg_u8 seen;            /* SG_TC_SEEN_RECORD | SG_TC_SEEN_TSVAL: which fields above hold something */
  sg_u8 closing;         /* SG_TC_SEEN_FIN/RST, SG_TC_CLOSED_BY_ENGINE: what punts (tc_rewritable.h) */
  sg_u8 pad[2];
  sg_u32 last_ack;       /* the ack of the latest segment translated (SG_TC_SEEN_LAST_ACK), in the
                            receiver's space, whether the record took it or not: a segment answering
                            a FIN the engine saw (the other direction's record not started) is not
                            taken, and the engine judges this against its own record (an exact ack
                            of the FIN only, as for an RST) */
  sg_u64 packets;        /* segments translated by the program (atomic adds) */
  struct sg_tc_route_cache route; /* the programs' own (the daemon writes zeros): below */
};

/* sg_tc_handshakes: a SYN syngate sent a backend on a client's behalf, keyed by the tuple of the
 * backend's SYN-ACK (server -> client). With it the ingress program (router and both modes) can
 * take that SYN-ACK itself (sg_tc_synack): check it answers the SYN (handover_spec.h), claim the entry by
 * deleting it (one CPU wins a duplicate), write the flow's two entries, turn the SYN-ACK into the
 * client's window update (sent on first, a clone: its TSval must reach the client before any of
 * the backend's data) and then into the ACK that completes the backend's handshake (sent back out
 * where the SYN-ACK came from), and report SG_TC_EVENT_HANDED_OVER. It leaves to the engine a
 * SYN-ACK that does not answer the SYN, carries data, has options it cannot read, lacks the
 * timestamps the client was promised (the engine supplies them), or has no way out the FIB knows;
 * the engine then deletes the entry. The daemon writes entries and deletes those the program did
 * not take (withdrawn, or with the flow: sg_tc_release); the program deletes only the one it takes. */
struct sg_tc_handshake {
  struct sg_handshake hs;
  sg_u32 generation;  /* the flow entries' generation */
  sg_u32 client_data; /* low byte (SG_TC_CLIENT_DATA_ENGINE): set by the ingress program when the
                         client's data or FIN passed it before the SYN-ACK (on its way to the
                         engine, which holds it): the SYN-ACK is then the engine's, which answers
                         it with that data behind its ACK, and opens the client's window only
                         after. Above it (SG_TC_CLIENT_DATA_KEPT each): the segments
                         sg_tc_early_store kept in sg_tc_early, which the SYN-ACK sends on */
  struct sg_tc_route_cache to_server_route; /* sg_tc_cookie_ack's way to the backend, for the client's
                                               entry to start with (the daemon's records: none) */
};
#define SG_TC_CLIENT_DATA_ENGINE 0xffu
#define SG_TC_CLIENT_DATA_KEPT 0x100u

/* sg_tc_early (BPF_MAP_TYPE_LRU_HASH; gateway.tc_early_data): a client's early segment kept by the
 * ingress program (sg_tc_early_store, a tail call) while its backend has not answered, so that tc
 * takes the SYN-ACK even when the request overtook it (on a real network nearly every
 * client-speaks-first connection's first data does). Kept is a data or FIN segment of a flow
 * with a handshake record and no entries (or a closed flow's: a port reused within the linger,
 * whose new entries the SYN-ACK writes over them) whose ack names our cookie ISN exactly (a blind sender
 * guesses 32 bits, as for the engine's early buffer) and which lies in the first
 * SG_TC_EARLY_WINDOW bytes (the cookie SYN-ACK's window bounds what a client may send; the
 * default is that size): the frame whole, from its Ethernet header, in the slot its offset from
 * the client's ISN names (SG_TC_EARLY_SLOT_BYTES each), else the next free one; a retransmission
 * finds its own and is dropped. Each kept segment adds SG_TC_CLIENT_DATA_KEPT to the record's
 * client_data. The first segment that cannot be kept (no slot, beyond the window, a frame over
 * SG_TC_EARLY_FRAME_MAX or several segments' worth (GSO), a checksum field neither a full sum
 * nor a seed) makes the record the engine's, as without the map; one behind kept segments is
 * dropped instead, and the client sends it again once the flow stands (the engine, given it,
 * would withdraw the record, and the kept ones would be the ones to wait).
 * sg_tc_synack, once the flow's entries stand, re-injects each slot of the record's generation at
 * the ingress of the interface it came in on (bpf_clone_redirect, BPF_F_INGRESS), where the
 * ingress program translates it as any later segment of the flow. Re-injected frames wait in the
 * CPU's backlog: they reach the backend behind the ACK that completes its handshake (sent when
 * the program returns) and ahead of the client's answer to its window update (sent after them).
 * A SYN-ACK left to the engine sends them the same way after marking the record the engine's,
 * so that they follow it to the engine.
 * The checksum: a re-injected frame carries the SYN-ACK's checksum state (the skb is the SYN-ACK's,
 * overwritten, and put back after), so its TCP checksum field is written as that state needs: the
 * full sum when the SYN-ACK's field holds one, else the pseudo-header seed of CHECKSUM_PARTIAL
 * (both computed when the segment is kept). The program deletes the slots it sends; a release of
 * the flow (sg_tc_release, below) those its record counted (a flow refused, or timed out waiting
 * for its backend); the LRU takes the rest (a record the engine withdrew: the client's RST before
 * its backend answered). */
#define SG_TC_EARLY_SLOTS 8
#define SG_TC_EARLY_SLOT_BYTES 512
#define SG_TC_EARLY_WINDOW (SG_TC_EARLY_SLOTS * SG_TC_EARLY_SLOT_BYTES)
#define SG_TC_EARLY_FRAME_MAX 1600 /* a 1500-byte MTU's frame and then some */
#define SG_TC_EARLY_FRAME_ROOM 2048 /* the buffer: a power of two, for the verifier's bounds */
struct sg_tc_early_key {
  struct sg_tc_flow_key flow; /* client -> server */
  sg_u32 slot;
};
struct sg_tc_early_segment {
  sg_u32 generation; /* the handshake record's */
  sg_u32 seq;
  sg_u32 len;        /* of frame, Ethernet header included */
  sg_u32 ifindex;    /* where it came in */
  sg_u16 full_csum;  /* the TCP checksum field as a full sum, as the bytes lie */
  sg_u16 seed_csum;  /* ... as a CHECKSUM_PARTIAL pseudo-header seed */
  sg_u32 pad;
  sg_u8 frame[SG_TC_EARLY_FRAME_ROOM];
};

/* sg_tc_release: a BPF_PROG_TYPE_SYSCALL program the daemon runs (BPF_PROG_TEST_RUN, this struct
 * as the context) whenever the engine punts a flow or refuses one the programs opened; the flows
 * it frees go through sg_tc_release_many (below), which makes the same release for each.
 * From userspace a release would be a read and then a write, two system calls: a client that
 * reuses its port may meanwhile have had a new connection opened on the pair in tc, whose
 * hand-over writes its entries between the two, and the old flow's delete took them (the engine
 * then held the new flow with nothing in the kernel: its close was never merged, and every later
 * connection on the pair was refused as pair_in_use until its idle timer). Each flow carries its
 * generation (the number its record and entries are written with, from one counter,
 * sg_tc_generation, that the daemon and the programs both take from), and the program leaves
 * alone what is newer than the flow it was asked about:
 *  - a record newer than the flow is a connection the programs opened since, whose report the
 *    engine has not taken: nothing is touched (that flow's hand-over overwrites the entries; its
 *    own release takes them otherwise). The flow's own record, or an older one left by a flow that
 *    ended before its SYN-ACK, goes.
 *  - while it looks at the entries it holds a record of its own on the pair (BPF_NOEXIST, with
 *    client_data set, so that sg_tc_synack never claims it), so that no open can start and no
 *    hand-over can write: an open's record already there makes it leave everything.
 *  - FREE deletes each entry not newer than the flow; REFUSED only the flow's own (exact); PUNT
 *    marks the flow's own or older entries SG_TC_CLOSED_BY_ENGINE in place (no write-back that
 *    could land on a newer flow's entry).
 * Generation 0 is unknown (a flow from before generations): every entry and record is taken as
 * the flow's. Generations compare with wrap (sg_seq_after): a pair's flows are numbered far less
 * than 2^31 apart. */
enum sg_tc_release_op {
  SG_TC_RELEASE_FREE = 0,    /* the flow is gone from the engine */
  SG_TC_RELEASE_PUNT = 1,    /* every segment of the flow to the engine from now on */
  SG_TC_RELEASE_REFUSED = 2  /* a flow the programs opened that the engine refused */
};
struct sg_tc_release {
  struct sg_tc_flow_key key; /* client -> server */
  sg_u32 generation;         /* the flow's */
  sg_u32 op;                 /* enum sg_tc_release_op */
};
/* The program's return value: what it did. */
#define SG_TC_RELEASED_TO_SERVER 0x01u /* the client-to-server entry (deleted, or punted) */
#define SG_TC_RELEASED_TO_CLIENT 0x02u
#define SG_TC_RELEASED_RECORD 0x04u    /* the flow's (or an older) handshake record deleted */
#define SG_TC_RELEASE_LEFT_NEWER 0x08u /* a newer connection's record or entry left in place */

/* sg_tc_release_many (SEC "syscall", run by BPF_PROG_TEST_RUN): up to SG_TC_RELEASES_MAX releases
 * in one system call, each exactly as sg_tc_release makes it, in order. The flow worker frees a
 * turn's flows together (their entries go before the turn's packets leave, as the XDP flow keys
 * do): the release was the last system call every connection cost on its own. Only frees wait
 * for the batch: a punt and a refusal change what the programs do with the flow's next segment,
 * and are made at once. A generation is what makes the wait safe: a connection opened on the pair
 * meanwhile is newer, and its record and entries stay. The daemon fills count and ops, the
 * program each result (sg_tc_release's return value). The context needs constant offsets, hence
 * the bound (the program unrolls). */
#define SG_TC_RELEASES_MAX 16
struct sg_tc_releases {
  sg_u32 count; /* ops[0, count) are made, in order; at most SG_TC_RELEASES_MAX */
  sg_u32 pad;
  struct sg_tc_release ops[SG_TC_RELEASES_MAX];
  sg_s32 results[SG_TC_RELEASES_MAX];
};

/* sg_tc_read (SEC "syscall", run by BPF_PROG_TEST_RUN): both entries of a flow in one system call,
 * where a lookup each costs two. The engine reads a handed-over flow's entries wherever it judges
 * with them (each close the programs report, an RST, an idle timer): the biggest share of the
 * daemon's system calls a connection once its XDP flow keys went in batches. Read just before
 * each use, as the lookups were (reading a turn's closes together, ahead of their merges, was
 * tried and taken back: docs/lab.md, session 27). The daemon fills key; the program found and
 * the entries it found. */
#define SG_TC_READ_TO_SERVER 0x01u /* to_server holds the client -> server entry */
#define SG_TC_READ_TO_CLIENT 0x02u /* to_client holds the server -> client entry */
struct sg_tc_read {
  struct sg_tc_flow_key key; /* client -> server */
  sg_u32 found;              /* SG_TC_READ_* */
  struct sg_tc_flow to_server;
  struct sg_tc_flow to_client;
};

/* A flow the ingress program opened from the client's cookie ACK (sg_tc_cookie_ack): what the
 * engine needs to hold it as its own flow from the backend's SYN on (retries, the SYN-ACK either
 * path takes, limits, timers). */
struct sg_tc_opened {
  struct sg_handshake hs; /* the handshake record written for the backend's SYN-ACK */
  sg_u32 generation;      /* that record's, and so the flow entries' */
  sg_u16 mss;             /* the cookie's MSS (the SYN asked for less with room_for_timestamps) */
  sg_u8 room_for_timestamps; /* the SYN left room for timestamps syngate may have to supply */
  /* 1: opened over the entries of the pair's previous flow, which had closed by the program's
   * record (the client's FIN, an RST, or the engine's punt): the client reuses its port. The
   * engine, which may not have merged that close yet, frees the old flow as for any port reuse.
   * A release before this field wrote 0 here (a pad). */
  sg_u8 over_closed;
};

/* sg_tc_events records (BPF_MAP_TYPE_RINGBUF), for the engine that holds the flow. */
enum sg_tc_event_kind {
  SG_TC_EVENT_CLOSE = 0,       /* a FIN, or the ack of one, recorded: merge the flow's close now */
  SG_TC_EVENT_HANDED_OVER = 1, /* sg_tc_synack took the backend's SYN-ACK: synack holds it */
  SG_TC_EVENT_OPENED = 2       /* sg_tc_cookie_ack sent the backend's SYN: opened holds the flow */
};
struct sg_tc_event {
  struct sg_tc_flow_key key; /* client -> server */
  sg_u32 kind;               /* enum sg_tc_event_kind */
  union {
    struct sg_synack synack; /* SG_TC_EVENT_HANDED_OVER */
    struct sg_tc_opened opened; /* SG_TC_EVENT_OPENED */
    /* SG_TC_EVENT_CLOSE: the entry's generation, so that only the flow it belongs to takes the
     * report, not the pair's previous connection while the new one's open is still on its way to
     * the table. A release before this field wrote 0 here (unknown: any flow on the pair). */
    sg_u32 close_generation;
  };
};

/* The client's cookie ACK taken in the kernel (sg_tc_cookie_ack, the ingress program's tail call
 * for a bare ACK that meets no flow entry, or meets the entries of a flow whose record has closed
 * for the client's segments: port reuse, sg_tc_opened.over_closed; router and both modes, with
 * sg_tc_open_flows set before load). Only for a service the daemon listed in sg_tc_services with SG_TC_SERVICE_OPENS, while
 * sg_tc_open_config says the daemon is there to take the flow (open_until_ns, which it moves on
 * at every sweep: a dead daemon's programs stop opening flows nobody would hold), with the cookie
 * checked against the secrets it published (sg_tc_keys, sg_tc_key_slot, as the XDP program's).
 * The ACK becomes the backend's SYN (backend_syn_spec.h, byte for byte the engine's), sent on by
 * the FIB's way; the handshake record for its SYN-ACK is written first (BPF_NOEXIST: a record
 * already there, the engine's or an earlier one's, leaves the ACK to the engine) and the flow
 * reported (SG_TC_EVENT_OPENED; no room in the ring leaves the ACK to the engine, the record
 * withdrawn). Anything else, an invalid cookie included, goes on untouched: the engine judges it
 * as before. */
struct sg_tc_service_key {
  sg_u8 addr[16]; /* as sg_tc_flow_key's */
  sg_u16 port_be;
  sg_u16 pad;     /* zero */
};
/* sg_tc_services values: what the daemon knows of the service's backend (cookie_spec.h,
 * SG_SERVICE_*: SG_SERVICE_BACKEND_HAS_TIMESTAMPS leaves no room in the SYN for supplied ones, as
 * the engine's SYN), and whether the program may open its flows at all. */
#define SG_TC_SERVICE_OPENS 0x80u
/* sg_tc_keys slots: the daemon writes the one the program does not read, then points
 * sg_tc_key_slot at it (as for the XDP program's keys). */
#define SG_TC_KEY_SLOTS 2
struct sg_tc_open_config {
  sg_u64 open_until_ns; /* CLOCK_MONOTONIC (read coarse): flows are opened only before this instant */
  sg_u64 fixed_now_ns;  /* 0: CLOCK_TAI for the cookie counter, as the daemon's; else this (tests) */
  sg_u8 announced_ws;   /* the window shift the cookie SYN-ACKs announce */
  sg_u8 pad[7];
};

/* The two entries of a flow from its hand-over (handover_spec.h): the client's keyed client ->
 * server, the server's keyed server -> client. What the daemon writes, and what the ingress
 * program writes when it takes the backend's SYN-ACK itself: one definition for both. The
 * kernel-kept fields start empty. */
SG_INLINE void sg_tc_flow_entries(const struct sg_flow_shifts* shifts, sg_u32 delta, sg_u32 tsoff, int timestamps,
                                  sg_u32 generation, struct sg_tc_flow* to_server, struct sg_tc_flow* to_client) {
  __builtin_memset(to_server, 0, sizeof(*to_server));
  to_server->delta = delta;
  to_server->tsoff = timestamps ? tsoff : 0u;
  to_server->direction = SG_TC_TO_SERVER;
  to_server->window_from = shifts->client_sends;
  to_server->window_to = shifts->server_reads;
  to_server->options = timestamps ? SG_TC_OPT_TIMESTAMPS : 0u;
  to_server->generation = generation;
  *to_client = *to_server;
  to_client->direction = SG_TC_TO_CLIENT;
  to_client->window_from = shifts->server_sends;
  to_client->window_to = shifts->client_reads;
}

/* skb->mark bit of a packet already translated (by a tc program, by the engine's verdict, or
 * sent by syngate itself): the NFQUEUE rules skip it, tc egress leaves it alone. */
#define SG_TC_MARK 0x40000000u

enum sg_tc_counter {
  SG_TC_TRANSLATED = 0, /* translated and marked */
  SG_TC_PUNTED,         /* a flow's packet the program left to NFQUEUE (RST, after a FIN, layout) */
  SG_TC_ALREADY_MARKED, /* egress: translated before (ingress, engine verdict, syngate's own) */
  SG_TC_MISS,           /* TCP with no flow entry, or a SYN (never looked up): left alone */
  SG_TC_EVENT_LOST,     /* sg_tc_events full: the engines then sweep their flows (reports_lost) */
  SG_TC_FORWARDED,      /* translated at ingress and sent on by the program itself (bpf_redirect) */
  SG_TC_HANDED_OVER,    /* a backend's SYN-ACK answered by sg_tc_synack (the flow's entries written) */
  SG_TC_HANDSHAKE_PUNTED, /* one it left to the engine (with a handshake entry: see above) */
  SG_TC_OPENED,         /* a client's cookie ACK turned into the backend's SYN (sg_tc_cookie_ack) */
  SG_TC_OPEN_PUNTED,    /* a bare ACK to an open service it left to the engine (invalid cookie
                           included: the engine counts and drops it as before) */
  SG_TC_EARLY_STORED,   /* a client's early segment kept in sg_tc_early (sg_tc_early_store) */
  SG_TC_EARLY_SENT,     /* one re-injected behind the SYN-ACK sg_tc_synack answered */
  SG_TC_EARLY_TO_ENGINE, /* one re-injected for the engine (its SYN-ACK left to the engine) */
  SG_TC_EARLY_REFUSED,  /* one that could not be kept behind kept ones: dropped (tc_abi.h) */
  SG_TC_ROUTE_CACHED,   /* a forwarded segment's way out taken from its entry's route cache */
  SG_TC_COUNTER_COUNT
};

#endif /* SYNGATE_BPF_TC_ABI_H */
