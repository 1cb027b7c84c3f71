/* The XDP program's maps (keys, values and limits from include/syngate/bpf/xdp_abi.h, which the
 * daemon shares) and the small accessors the decisions read them through. Included by the one
 * program that owns these maps: a second program declares its own. */
#ifndef SYNGATE_BPF_LIB_XDP_MAPS_H
#define SYNGATE_BPF_LIB_XDP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/parse.h"
#include "syngate/bpf/tc_abi.h"
#include "syngate/bpf/xdp_abi.h"

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

/* The tc programs' flow map (include/syngate/bpf/tc_abi.h), put here by the daemon when the tc
 * ingress opens flows from cookie ACKs itself (gateway.tc_open_flows): such a flow's packets
 * come before the engine has heard of it and told sg_flows, and pass by the tc entries. Empty
 * otherwise. An inner map need not match the template's size, only its kind, key, value and flags. */
struct sg_kernel_flows_inner {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  /* By size: this libbpf cannot size an inner map's BTF key type. */
  __uint(key_size, sizeof(struct sg_tc_flow_key));
  __uint(value_size, sizeof(struct sg_tc_flow));
};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, 1);
  __type(key, __u32);
  __array(values, struct sg_kernel_flows_inner);
} sg_kernel_flows SEC(".maps");

/* The tc programs' handshake records (tc_abi.h, struct sg_tc_handshake, keyed by the backend's
 * SYN-ACK's tuple), put here beside sg_kernel_flows: a flow the tc ingress opened has its record
 * from its cookie ACK on, before the engine has heard of the flow and told sg_flows (up to a
 * flow worker's turn later), and before its tc entries exist (the backend's SYN-ACK). The client's
 * further segments of that time (a request longer than one segment, within the SYN-ACK's window)
 * pass by it instead of failing the cookie check. Empty otherwise. */
struct sg_kernel_handshakes_inner {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 1);
  __uint(key_size, sizeof(struct sg_tc_flow_key));
  __uint(value_size, sizeof(struct sg_tc_handshake));
};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, 1);
  __type(key, __u32);
  __array(values, struct sg_kernel_handshakes_inner);
} sg_kernel_handshakes SEC(".maps");

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

static __always_inline void count_reason(enum sg_reason why) {
  __u32 r = (__u32)why;
  __u64* v = bpf_map_lookup_elem(&sg_reasons, &r);
  if (v) *v += 1;
}

/* A flow the tc programs hold (sg_kernel_flows). */
static __always_inline int kernel_flow(const void* key) {
  __u32 zero = 0;
  void* flows = bpf_map_lookup_elem(&sg_kernel_flows, &zero);
  return flows && bpf_map_lookup_elem(flows, key);
}

/* A handshake record for the client -> server `key`: records are keyed by the SYN-ACK's tuple. */
static __always_inline int kernel_handshake(const struct pkt_tuple* key) {
  __u32 zero = 0;
  void* records = bpf_map_lookup_elem(&sg_kernel_handshakes, &zero);
  if (!records) return 0;
  struct sg_tc_flow_key synack;
  __builtin_memcpy(synack.src, key->dst, 16);
  __builtin_memcpy(synack.dst, key->src, 16);
  synack.sport_be = key->dport_be;
  synack.dport_be = key->sport_be;
  return bpf_map_lookup_elem(records, &synack) != 0;
}

/* CLOCK_TAI, as the daemon's clock: the cookie counter and the TSvals must agree with the
 * engine's, and with other gateways sharing the secrets file (monotonic time counts from boot). */
static __always_inline __u64 now_ns(const struct sg_xdp_config* cfg) {
  return cfg->fixed_now_ns ? cfg->fixed_now_ns : bpf_ktime_get_tai_ns();
}

/* The cookie keys in the slot the daemon last published. */
static __always_inline const struct sg_cookie_secrets* current_secrets(void) {
  __u32 zero = 0;
  const __u32* slot = bpf_map_lookup_elem(&sg_key_slot, &zero);
  if (!slot) return 0;
  __u32 index = *slot & (SG_XDP_KEY_SLOTS - 1);
  return bpf_map_lookup_elem(&sg_keys, &index);
}

#endif /* SYNGATE_BPF_LIB_XDP_MAPS_H */
