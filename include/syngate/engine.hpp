// The handshake proxy as a pure state machine: (packet, now, flow table) -> (verdict, packets to
// emit). No syscalls, clocks or threads: the daemon's NFQUEUE workers and the unit tests drive it
// the same way. One Engine per worker; an Engine is not thread-safe and needs no locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "syngate/backend_facts.hpp"
#include "syngate/cookie.hpp"
#include "syngate/drop_reason.hpp"
#include "syngate/flow_table.hpp"
#include "syngate/packet.hpp"
#include "syngate/syn_decision.hpp"

namespace syngate {


struct EngineConfig {
  std::vector<Service> services;

  // Flow table: preallocated, never grows. Memory is max_flows * sizeof(flow) + hash buckets.
  uint32_t max_flows = 262144;
  // Open flows (handshaking, established or closing) one client address may hold; lingering
  // closed flows do not count. 0 = no per-source limit.
  uint32_t max_flows_per_source = 1024;
  // IPv6 sources count against max_flows_per_source and policy.new_flows_per_source_per_s per
  // prefix of this length (source_group), IPv4 per address.
  uint8_t source_prefix_v6 = kDefaultSourcePrefixV6;

  // What our SYN-ACK announces to clients. The window is unscaled (as in every SYN segment). By
  // default a client may send its request with the third ACK, up to what the early-data buffer
  // holds; that request usually reaches the gateway before the backend has answered, and waits
  // in the engine. 0 makes the client wait for the window update sent with the backend's answer
  // (kernel SYNPROXY's way): one client round trip more per connection, and with the kernel path
  // the request then never crosses userspace.
  uint16_t synack_window = 4096;
  uint8_t announced_wscale = 7;       // what the client will scale our windows by
  uint16_t announced_mss_v4 = 1460;   // MSS we announce (the backend's is not known yet)
  uint16_t announced_mss_v6 = 1440;
  bool announce_ecn = false;          // accept a client's ECN request in the SYN-ACK

  // When the flow table is full: evict the oldest lingering flow if there is one; otherwise
  // refuse the connection, with an RST to the client when this is set (else a silent drop).
  bool table_full_reset = true;

  // Keys for the flow table's hash and the budget tables' SipHash. The daemon draws both from the
  // system's random source for every worker at start (gw::randomize_hash_keys): a compiled-in
  // value would let anyone who reads the source aim a flood at one hash chain or budget cell.
  uint64_t hash_seed = 0;
  HashKey hash_key{};

  // Source policy ([policy]): allow/deny prefixes and budgets. Null = no prefixes, default budgets.
  std::shared_ptr<const SourcePolicy> policy;
  // How many workers split the per-prefix SYN-ACK budget between them.
  uint32_t budget_share = 1;
  // Cells of each budget table. A reset clears them all: the fuzzer, which resets the engine for
  // every input, uses a few.
  size_t budget_cells = kDefaultBudgetCells;
  // Sources that proved themselves, shared by every worker of a gateway (SYN workers read what
  // flow workers prove); null = the engine's own.
  std::shared_ptr<ProvenSources> proven_sources{};

  // What the backends' SYN-ACKs said (SACK or not), shared by every worker of a gateway (SYN
  // workers promise what flow workers learned); null = the engine's own.
  std::shared_ptr<BackendFacts> backend_facts{};

  // Data that arrives before the backend has answered is held here (bytes per flow, and how many
  // flows may hold data at once); the rest is dropped and the client retransmits it.
  uint32_t early_data_bytes = 4096;
  uint32_t early_data_slots = 4096;

  // Backend handshake: SYN retried after retry_initial_ms, doubling, syn_retries times; then RST.
  uint32_t backend_syn_retries = 3;
  uint32_t backend_retry_initial_ms = 1000;

  // An ICMP error quoting no flow of this engine goes to the next flow queue (Verdict::NextQueue)
  // instead of being dropped. The daemon sets it on every flow worker but the last: the rules
  // queue errors to the first flow queue, as the queue balancing would hash the router's address
  // rather than the flow's, so the worker that gets an error need not own its flow.
  bool icmp_next_queue = false;

  uint32_t established_idle_s = 600;  // an established flow with no packet for this long is freed
  uint32_t closing_idle_s = 60;       // a half-closed flow (FIN one way) with no packet
  uint32_t linger_s = 30;             // after both FINs or a RST: translate late retransmissions
};

// NextQueue: not this engine's packet, untouched; the caller hands it to the next flow queue
// (only with EngineConfig::icmp_next_queue).
enum class Verdict : uint8_t { Accept, Drop, NextQueue };

// The two clocks the engine reads. Cookies and the TSvals of our SYN-ACKs count on a clock that
// machines sharing a secrets file agree on (the daemon: CLOCK_TAI, as the XDP fast path); flow
// timers on one that never steps (CLOCK_MONOTONIC), so that setting the wall clock forward
// cannot expire every flow at once. Tests and tools that need only one pass a single value.
struct EngineClock {
  uint64_t cookie_ns = 0;
  uint64_t timer_ns = 0;
  constexpr EngineClock() = default;
  constexpr EngineClock(uint64_t both_ns) noexcept : cookie_ns(both_ns), timer_ns(both_ns) {}  // NOLINT: implicit
  constexpr EngineClock(uint64_t cookie, uint64_t timer) noexcept : cookie_ns(cookie), timer_ns(timer) {}
};

struct Decision {
  Verdict verdict = Verdict::Accept;
  bool modified = false;  // the packet was rewritten in place: hand the new bytes to the kernel
  // When modified and its length changed, or another packet took its place (within the capacity
  // given): the new length, the checksum then whole whatever the packet came with.
  uint32_t length = 0;
};

// Receives the packets the engine wants on the wire (full IP packets). The bytes are valid only
// during the call; a sink that batches must copy them.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual void send(std::span<const uint8_t> packet) = 0;
};


struct EngineCounters {
  uint64_t packets = 0;
  uint64_t syn_received = 0;
  uint64_t cookies_sent = 0;
  uint64_t cookies_valid = 0;
  uint64_t cookies_invalid = 0;
  uint64_t flows_created = 0;
  uint64_t flows_refused = 0;
  uint64_t flows_closed = 0;
  uint64_t flows_active = 0;
  uint64_t flows_reused = 0;  // a valid cookie ACK replaced a lingering flow on the same tuple
  uint64_t backend_syns_sent = 0;
  uint64_t backend_syn_retries = 0;
  uint64_t established = 0;
  uint64_t kernel_handshakes = 0;  // of those, the backend's SYN-ACK answered by the kernel side
  // Flows the kernel side opened from the client's cookie ACK (KernelFlowState::take_opened), and
  // of those the ones the engine could not hold (the source's limits, no room, the pair busy with
  // another connection): their backend and client were reset.
  uint64_t kernel_opened = 0;
  uint64_t kernel_opened_refused = 0;
  uint64_t translated = 0;  // packets rewritten on an established flow
  // RSTs inside the receiver's window but not exact (RFC 5961 3.2): passed on for the endpoint to
  // judge (it answers with a challenge ACK); the flow carries on.
  uint64_t rst_passed_in_window = 0;
  // Flows the engine closed (FIN, RST) while the tc programs still translated them (they had not
  // recorded it): told to send the flow's segments to NFQUEUE from now on (KernelFlowState::punt).
  uint64_t kernel_punts = 0;
  // Walks of the flow table that looked at every flow after the kernel side lost reports (its
  // ring full): a flow it answered or closed is established or closed from its entries.
  uint64_t kernel_report_sweeps = 0;
  // Segments to a client that was promised timestamps its backend lacks: given one by syngate,
  // or not (no room: the flow's backend was told the full MSS, or an option syngate cannot keep).
  uint64_t timestamps_supplied = 0;
  uint64_t timestamps_not_supplied = 0;
  uint64_t passed_through = 0;  // packets for services we do not protect, accepted untouched
  uint64_t early_data_buffered = 0;
  uint64_t early_fins_held = 0;  // a client's FIN right behind its early data, sent on with it
  // ICMP errors about TCP segments (icmp.hpp): quote translated for its endpoint; handed to the
  // next flow queue (no flow here); other ICMP accepted untouched (not an error that concerns
  // TCP, or a quote too short or malformed to translate).
  uint64_t icmp_translated = 0;
  uint64_t icmp_passed_on = 0;
  uint64_t icmp_untouched = 0;
  uint64_t flows_restored = 0;         // flows taken over from a saved table at start
  // Saved flows dropped at start: being changed when the process died, fields that contradict
  // each other (or a duplicate), no room in a smaller table.
  uint64_t restore_dropped_torn = 0;
  uint64_t restore_dropped_invalid = 0;
  uint64_t restore_dropped_no_room = 0;
  uint64_t flows_restore_dropped() const noexcept {
    return restore_dropped_torn + restore_dropped_invalid + restore_dropped_no_room;
  }
  uint64_t drops[kDropReasonCount] = {};  // by reason (drops[0], None, stays 0)
  uint64_t drop(DropReason r) const noexcept { return drops[static_cast<size_t>(r)]; }
};

class Engine {
 public:
  Engine(const EngineConfig& config, const CookieJar& cookies, EngineState state = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Back to what Engine(config, cookies) builds on heap memory: no flows, counters, timers, early
  // data, budgets or draining services, no flow observer. The table's memory is reused when its
  // sizes are unchanged (a fuzzer runs millions of inputs on one engine; the reset costs a pass
  // over the table, cheap for a small one). A proven-sources table in config is the caller's and
  // left as it is; the engine's own is emptied.
  void reset(const EngineConfig& config, const CookieJar& cookies);

  // One packet as it crossed the hook. `checksum_ready=false` when the kernel handed it over
  // with its checksum not yet computed (NFQA_SKB_CSUMNOTREADY): a rewrite then recomputes it.
  // `capacity`: bytes writable from packet.data() (at least packet.size()); a segment may grow
  // into them (Decision::length), e.g. by the timestamps a backend lacks, and the packet that
  // answers it may take its place when it goes the same way (the backend's SYN for a bare cookie
  // ACK, the client's window update for the backend's SYN-ACK); without room that one is sent.
  Decision process(std::span<uint8_t> packet, const EngineClock& now, PacketSink& sink,
                   bool checksum_ready = true, size_t capacity = 0);

  // A hint before process() is called on each packet of a batch: brings the flow-table lines
  // their lookups will read into the cache together, so that with a large table their cache
  // misses overlap. Changes nothing, and may be skipped.
  void prefetch(std::span<const std::span<uint8_t>> batch);

  // Runs timers due at now_ns: backend SYN retries, idle and linger expiry. Call it at least a
  // few times a second; cost is proportional to the timers that fire.
  void advance(const EngineClock& now, PacketSink& sink);
  // Takes what the kernel side reported since: flows it opened, hand-overs it made
  // (FlowObserver::handshake_sent), so that a batch's packets find their flows established, and
  // closes it recorded, so that ended connections give back their source's share. Call it before
  // each batch and on each idle turn. Nothing to do without a kernel side.
  void take_kernel_reports(const EngineClock& now, PacketSink& sink);

  // New cookie secrets (rotation or reload); flows in progress are not affected.
  void set_cookies(const CookieJar& cookies);
  // New list of protected services (config reload). A removed service drains: its flows are still
  // translated until they end (the rules keep queueing its traffic while it drains), and new
  // connections to it are no longer proxied. Flows of kept services are untouched.
  void set_services(std::vector<Service> services);
  // nullptr (the default) for none. The observer must outlive the Engine or be reset first. It
  // is told at once of every flow already in the table (restored or imported).
  void set_flow_observer(FlowObserver* observer) noexcept;
  // nullptr (the default) for none. Where another data path translates handed-over flows, the
  // engine merges what it recorded (activity, each end's numbers, the newest TSval, a FIN) where
  // it judges with it: an idle timer, an RST or FIN, a segment its own view cannot place, and at
  // each advance() and take_kernel_reports() the flows whose close it reported
  // (KernelFlowState::take_closing). Must outlive the Engine or be reset.
  void set_kernel_state(KernelFlowState* state) noexcept;
  // Merges that record into every handed-over flow now: at start, once the observer has taken the
  // restored flows (the kernel side kept recording while no process read it), and at a clean
  // stop, before the kernel side goes (the saved table then holds it all). A system call or two
  // per flow. Returns how many flows had a record.
  uint64_t merge_kernel_state(const EngineClock& now);
  // Removed services that still have flows. prune_draining() forgets those whose flows have all
  // ended (a walk over the table: call it every few seconds, not per packet).
  const std::vector<Service>& draining_services() const noexcept;
  void prune_draining();
  // New source policy (config reload); budgets and flows carry on.
  void set_policy(std::shared_ptr<const SourcePolicy> policy);

  static size_t state_bytes(const EngineConfig& config);
  static std::string state_incompatibility(std::span<const uint8_t> region, const EngineConfig& config,
                                           uint64_t boot_id);
  const RestoreReport& restore_report() const noexcept;
  // Copies the live flows of a saved table that cannot be used in place (other sizes, another
  // worker's shard, an older release's layout) into this engine, as far as they fit. Flows
  // already present are skipped. `now`: older layouts kept their stamps on another clock.
  RestoreReport import_state(std::span<const uint8_t> region, uint64_t boot_id, const EngineClock& now);
  // Every flow's client -> service tuple (e.g. to refill a fast path's flow map after a restart).
  void for_each_flow(const std::function<void(const FlowTuple&)>& fn) const;

  const EngineCounters& counters() const noexcept;
  const EngineConfig& config() const noexcept;
  // Bytes the flow table and early-data pool hold, fixed at construction.
  size_t memory_bytes() const noexcept;
  static size_t flow_entry_bytes() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The SYN decision's settings from an engine's.
SynGuardConfig syn_guard_config(const EngineConfig& config);

// Stateless SYN answer, shared by Engine::process and by SYN-only workers (they need no flow
// table). Returns false when `syn` is not a SYN to protect (then nothing was emitted).
bool answer_syn(const TcpPacket& syn, const CookieJar& cookies, const EngineConfig& config,
                uint64_t now_ns, PacketSink& sink);

}  // namespace syngate
