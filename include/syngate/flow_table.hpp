// The flow table: where proxied connections live, apart from what the proxy does with them.
// Storage (a fixed pool of entries and an early-data pool, in heap memory or in a region the
// caller maps so that it outlives the process), lookup (a seeded hash), the timer lists, per-source
// accounting, iteration and export (import of another table). Persistence is a property of the
// table: the handshake and translation logic (engine.cpp) only finds, allocates, edits and frees
// entries, and never knows whether they live in a file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "syngate/packet.hpp"
#include "syngate/spec/flow_spec.h"
#include "syngate/spec/handover_spec.h"
#include "syngate/syn_decision.hpp"

namespace syngate {

// Where a table keeps its entries. By default its own heap memory. A caller that wants flows to
// outlive the process (the daemon maps a file on tmpfs, shared) hands a region of
// FlowTable::state_bytes() bytes: the table takes over what the region holds when it was
// written by a compatible table under the same boot, and formats it otherwise. Only the entries
// and early data live there; every index is rebuilt at start, and an entry that was being
// changed when its process died is dropped, never used.
struct EngineState {
  std::span<uint8_t> region;  // empty: heap memory
  uint64_t boot_id = 0;       // identifies this boot: a table from another boot is never used
};

// What a start found in the saved table.
struct RestoreReport {
  bool attached = false;  // a saved table was used (in place, or imported)
  std::string reason;     // why not, when it was not
  uint64_t restored = 0;
  uint64_t dropped_torn = 0;     // being changed when the process died
  uint64_t dropped_invalid = 0;  // fields that contradict each other, duplicates
  uint64_t dropped_no_room = 0;  // import: the new table is full
  RestoreReport& refuse(std::string why) {
    reason = std::move(why);
    return *this;
  }
};

// An established flow's translation (flow_spec.h), as another data path (the tc programs) needs
// it to carry the flow on with exactly the engine's numbers.
struct FlowTranslation {
  uint32_t delta = 0;  // backend ISN - cookie ISN
  uint32_t tsoff = 0;  // backend TSval - our SYN-ACK TSval (0 without timestamps)
  sg_flow_shifts shifts{};
  bool timestamps = false;  // both ends send timestamps: TSval/TSecr are translated
  // The client's FIN already went to the backend, sent on by the engine behind the early data it
  // held (client_fin_seq: its sequence number). The other path takes it as a FIN it saw: the
  // client's later segments are the engine's, as after any client FIN.
  bool client_fin = false;
  uint32_t client_fin_seq = 0;
  friend bool operator==(const FlowTranslation& a, const FlowTranslation& b) noexcept {
    return a.delta == b.delta && a.tsoff == b.tsoff && a.timestamps == b.timestamps &&
           a.client_fin == b.client_fin && (!a.client_fin || a.client_fin_seq == b.client_fin_seq) &&
           a.shifts.client_sends == b.shifts.client_sends && a.shifts.server_reads == b.shifts.server_reads &&
           a.shifts.server_sends == b.shifts.server_sends && a.shifts.client_reads == b.shifts.client_reads;
  }
};

// Told when a flow enters and leaves the table: e.g. the XDP fast path keeps its flow map in
// step this way. Must not call back into the table or its engine.
class FlowObserver {
 public:
  virtual ~FlowObserver() = default;
  virtual void flow_created(const FlowTuple& client_to_server) noexcept = 0;
  // `generation`: the flow's kernel_generation (KernelFlowState::new_generation; 0 without one).
  virtual void flow_freed(const FlowTuple& client_to_server, uint32_t generation) noexcept = 0;
  // The backend's SYN-ACK completed the flow's handshake and its translation needs nothing only
  // the engine can do: another data path may translate it from now on. Called synchronously
  // before the engine emits the ACK that completes the backend's handshake, so the backend cannot
  // send a segment the other path has not heard of. Not called for a flow whose client was
  // promised timestamps its backend lacks (the engine adds them to every segment). Also called
  // by set_flow_observer for established flows already in the table. flow_freed ends it.
  virtual void flow_established(const FlowTuple& /*client_to_server*/, const FlowTranslation& /*t*/,
                                uint32_t /*generation*/) noexcept {}
  // The engine sent the backend its SYN for a client that sent no data with its cookie ACK (not
  // called for retries): what another data path needs to take the backend's SYN-ACK itself
  // (handover_spec.h). True when it may (KernelFlowState: withdraw_handshake, take_handed_over);
  // the engine still takes a SYN-ACK that reaches it.
  virtual bool handshake_sent(const FlowTuple& /*client_to_server*/, const sg_handshake& /*h*/,
                              uint32_t /*generation*/) noexcept {
    return false;
  }
};

// What another data path (the tc programs) recorded of a handed-over flow since the hand-over, one
// direction: the engine merges it in before it judges an RST, tracks a segment or expires an idle
// flow, as it no longer sees every segment.
struct KernelRecord {
  bool has_record = false;  // sender_next, acked, window_bytes hold something
  bool has_tsval = false;   // newest_tsval holds something
  uint64_t last_ns = 0;     // timer clock (CLOCK_MONOTONIC) of the latest segment translated; 0: none
  uint32_t sender_next = 0;  // highest seq + length sent (client space / backend space, as sent)
  uint32_t acked = 0;        // highest ack sent, in the space of the receiver it goes to
  uint32_t window_bytes = 0;
  uint32_t newest_tsval = 0;  // as the sender sent it
  // The program translated this direction's FIN, a believable one (the RST window): its sequence
  // number (seq + payload length) in the sender's space. The engine, which does not see it, folds
  // it in as if the FIN had reached it (take_closing says when).
  bool fin = false;
  uint32_t fin_seq = 0;
  // This direction acknowledged the other's FIN the program recorded (SG_TC_SEEN_PEER_FIN_ACKED).
  bool acked_peer_fin = false;
  // The ack of this direction's latest segment the program translated, whether its record took
  // the segment or not (its view of the other direction may lack what the engine saw: the
  // server's first replies, with their FIN, cross the engine until the hand-over is published).
  bool has_last_ack = false;
  uint32_t last_ack = 0;
  // The programs send this direction's segments to NFQUEUE: the client's after its FIN, both after
  // a believable RST or the engine's punt(). An RST the program saw is not folded in: it reached
  // the engine, which judged it with the whole record; the program's own judgement starts from an
  // empty one.
  bool punting = false;
};
struct KernelFlowView {
  KernelRecord to_server;  // the client's segments
  KernelRecord to_client;  // the server's
};
// Reads that record; implemented by the daemon over the tc flow map (a system call each, so the
// engine asks only when it needs it: expiry, RST, a segment that reached it anyway).
// A backend's SYN-ACK the kernel side answered itself (FlowObserver::handshake_sent).
// A close the kernel side recorded: the flow, and the generation of its entries (0: unknown).
struct KernelClose {
  FlowTuple flow;  // client to server
  uint32_t generation;
};

struct KernelHandOver {
  FlowTuple flow;  // client to server
  sg_synack synack;
};

// A flow the kernel side opened itself from the client's cookie ACK (its cookie checked, the
// backend's SYN sent, the handshake record for its SYN-ACK written): the engine holds it from
// then on as if it had sent that SYN.
struct KernelOpened {
  FlowTuple flow;  // client to server
  sg_handshake handshake;
  uint16_t mss = 0;                  // the cookie's
  bool room_for_timestamps = false;  // the SYN asked for less, for timestamps syngate may supply
  uint32_t generation = 0;           // of the record, and so of the flow entries the programs write
  // Opened over the entries of the pair's previous flow, closed by the programs' record
  // (sg_tc_opened.over_closed): client port reuse, whatever the engine's view of that flow.
  bool over_closed = false;
};

class KernelFlowState {
 public:
  virtual ~KernelFlowState() = default;
  // A number for a new flow's record and entries, after every one the kernel side holds (one
  // counter with the programs' own opens): what it releases for that flow (flow_freed, punt,
  // discard) leaves alone what a newer connection on the pair wrote. Never 0.
  virtual uint32_t new_generation() noexcept { return 0; }
  // Numbers given from now on come after `generation` (a restored flow's).
  virtual void generation_at_least(uint32_t /*generation*/) noexcept {}
  // False when it holds nothing for the flow (never handed over, or the entry is gone).
  virtual bool read(const FlowTuple& client_to_server, KernelFlowView& out) noexcept = 0;
  // From now on every segment of the flow goes to the engine: it saw a FIN or ended the flow on an
  // RST that the kernel side did not record (a FIN in a packet the program cannot parse, an RST
  // only the engine's whole record believes). Without it a new connection on the lingering
  // address/port pair would be translated with the old flow's numbers.
  virtual void punt(const FlowTuple& /*client_to_server*/, uint32_t /*generation*/) noexcept {}
  // Whether segments of the flow that waited in the queue while its hand-over went live may still
  // reach the engine: the programs translate the newer ones at once, so such a segment arrives
  // after them. Answered without a system call (the engine asks it before reading the record).
  virtual bool may_be_overtaken(const FlowTuple& client_to_server) noexcept = 0;
  // The engine's sweep: the flows of this engine (`mine`: not a report of a newer connection on
  // the pair, which waits, its flow's open perhaps not taken yet) whose FIN, or the ack of one, the kernel
  // side recorded since it last asked, appended to `out` (client -> server, each once). The close
  // of a handed-over flow may cross the kernel side whole: these are merged at once, not at the
  // idle timer. Several engines may share one kernel side, each with its own flows.
  virtual void take_closing(std::vector<FlowTuple>& /*out*/,
                            const std::function<bool(const KernelClose&)>& /*mine*/) noexcept {}
  // The hand-overs the kernel side made since it was last asked, of this engine's flows (`mine`:
  // one that answers a flow the engine holds; another waits, its flow's open perhaps not taken
  // yet), appended to `out`, each once.
  virtual void take_handed_over(std::vector<KernelHandOver>& /*out*/,
                                const std::function<bool(const KernelHandOver&)>& /*mine*/) noexcept {}
  // How many reports (hand-overs, closes) the kernel side could not make since it started: its
  // ring was full. The engine then looks at every flow (sweep_lost_reports in engine.cpp). Asked
  // each turn: an answer without a system call most of the time.
  virtual uint64_t reports_lost() noexcept { return 0; }
  // The flows the kernel side opened since it was last asked (each once, in the order it opened
  // them): before take_handed_over, whose reports may be of these flows.
  virtual void take_opened(std::vector<KernelOpened>& /*out*/) noexcept {}
  // Deletes what the kernel side holds for a flow it opened that the engine refused (entries
  // written since, a hand-over on its way).
  virtual void discard(const FlowTuple& /*client_to_server*/, uint32_t /*generation*/) noexcept {}
  // Takes back what handshake_sent offered: true when the flow's SYN-ACK is the engine's from now
  // on, false when the kernel side took it already (its report follows: take_handed_over).
  virtual bool withdraw_handshake(const FlowTuple& /*client_to_server*/) noexcept { return true; }
  // The translation the flow's entries hold, when the kernel side handed it over: asked (a system
  // call) only before a SYN retry of a flow offered to it, whose report may have been lost. Not
  // closed entries older than `generation` (the flow's kernel_generation; 0: unknown): the pair may
  // still hold those of the client's previous connection on it, which the flow was opened over and
  // its SYN-ACK has not yet replaced.
  virtual std::optional<FlowTranslation> handed_over_translation(const FlowTuple& /*client_to_server*/,
                                                                 uint32_t /*generation*/) noexcept {
    return std::nullopt;
  }
};

namespace flows {

inline constexpr uint32_t kNone = 0xffffffffu;
inline constexpr uint8_t kNoWscale = 0xff;
inline constexpr size_t kMaxSynRetryLevels = 16;

enum class State : uint8_t { Free, SynSent, Established, Closing, Linger };

// Timer lists. A flow sits on exactly one; each list has one timeout, so appending keeps it in
// deadline order (SYN retries use one list per backoff level for the same reason).
enum ListId : uint8_t {
  kListNone = 0,
  kListEstablished,
  kListClosing,
  kListLinger,
  kListSynSent0,  // + retry level
  kListCount = kListSynSent0 + kMaxSynRetryLevels
};


// One proxied connection: 128 bytes (two cache lines: a lookup that finds it reads both, and
// nothing else of the table but one line of the index), so that with its index slot and
// per-source accounting a flow costs at most 160 bytes of the fixed budget. The layout is saved in the table files
// (kStateVersion in flow_table.cpp): a change needs a new version and an import of the old one.
struct Flow {
  FlowTuple key;            // client -> backend, 36 bytes
  uint32_t free_next;       // free-list link (was the hash chain: the saved value is never read)
  uint32_t list_prev;       // timer list links
  uint32_t list_next;
  uint32_t client_isn;
  uint32_t cookie_isn;
  uint32_t delta;           // backend ISN - cookie ISN
  uint32_t tsoff;           // backend TSval - our TSval; before the backend answers: our SYN-ACK TSval
  uint32_t client_tsval;    // newest TSval seen from the client
  uint32_t stamp_ms;        // last activity (timer clock); in SynSent, when the current SYN was sent
  uint32_t client_fin_seq;  // sequence number of the client's FIN
  uint32_t server_fin_seq;  // sequence number of the server's FIN, in the backend's space
  // In SynSent the early-data slot (or kNone); afterwards, when the flow joined its timer list.
  union {
    uint32_t early_slot;
    uint32_t queued_ms;
  };
  // What each end has sent and acknowledged, for the RST check (flow_spec.h, sg_rst_check):
  // client space for the client's sequence numbers, backend space for the server's.
  uint32_t client_next;     // highest client seq + length
  uint32_t server_next;     // highest server seq + length (backend space)
  uint32_t client_acked;    // highest ack from the client, in backend space
  uint32_t server_acked;    // highest ack from the server
  uint32_t client_wnd;      // the client's last window, bytes
  uint32_t server_wnd;      // the server's last window, bytes
  uint16_t mss;             // decoded from the cookie
  uint16_t client_window;   // window field of the client's cookie ACK (client-scaled)
  uint16_t early_len;
  State state;
  uint8_t list;
  uint8_t retries;
  uint8_t client_ws;        // kNoWscale when the client did not scale
  uint8_t backend_ws;
  uint8_t bits;
  uint8_t seen;             // which ends the tracking fields above hold (kSeenClient, kSeenServer)
  uint8_t announced_ws;     // the shift our SYN-ACK announced to this client: a reload never changes it
  uint8_t supply;           // what syngate supplies that the backend lacks (kSupply* bits)
  uint8_t kernel_handshake;  // in SynSent: the kernel side may answer the SYN-ACK (handshake_sent)
  // The number the kernel side writes this flow's record and entries with, and releases them by
  // (KernelFlowState::new_generation): what a newer connection on the pair wrote stays. 0: none.
  uint32_t kernel_generation;
};
static_assert(sizeof(Flow) == 128, "flow entry size is part of the saved table layout");
inline constexpr uint8_t kSeenClient = 1 << 0;
inline constexpr uint8_t kSeenServer = 1 << 1;
// The backend was told an MSS 12 bytes short of the client's, leaving room for a Timestamps
// option in every segment it sends.
inline constexpr uint8_t kSupplyRoomForTimestamps = 1 << 0;
// The client was promised timestamps and the backend answered without: syngate adds them to
// every segment to the client (flow.tsoff then holds the last TSval it sent).
inline constexpr uint8_t kSupplyTimestamps = 1 << 1;

// Flow::bits: what the handshake agreed and how far the close went.
namespace flow_bit {
inline constexpr uint8_t kSack = 1 << 0;
inline constexpr uint8_t kTimestamps = 1 << 1;
inline constexpr uint8_t kEcn = 1 << 2;
inline constexpr uint8_t kBackendWscale = 1 << 3;  // backend agreed to window scaling
inline constexpr uint8_t kClientFin = 1 << 4;
inline constexpr uint8_t kServerFin = 1 << 5;
inline constexpr uint8_t kClientFinAcked = 1 << 6;
inline constexpr uint8_t kServerFinAcked = 1 << 7;
}  // namespace flow_bit

struct SourceEntry {
  Address address;
  uint32_t count;
  uint32_t next;
};

// The persisted table's header (the rest of its checks live in flow_table.cpp). Its journal is
// here so that edit() and settle(), on every packet, inline.
inline constexpr uint32_t kJournalSlots = 8;
inline constexpr uint32_t kJournalOverflow = 0xffffffffu;
struct StateHeader {
  char magic[8];
  uint32_t version;
  uint32_t flow_bytes;
  uint32_t max_flows;
  uint32_t early_data_bytes;
  uint32_t early_data_slots;
  uint32_t reserved;
  uint64_t boot_id;
  uint32_t dirty_count;
  uint32_t dirty[kJournalSlots];
};

struct FlowTableConfig {
  uint32_t max_flows = 1;
  uint32_t max_flows_per_source = 0;  // 0: no per-source accounting
  uint8_t source_prefix_v6 = kDefaultSourcePrefixV6;  // per-source means per source_group
  uint32_t early_data_bytes = 0;
  uint32_t early_data_slots = 0;
  uint32_t backend_syn_retries = 0;   // SYN retry lists in use: retries + 1
  uint64_t hash_seed = 0;
};

// What the table counts on its own: live flows, and what it refuses or drops at start.
struct FlowTableCounters {
  uint64_t active = 0;
  uint64_t created = 0;
  uint64_t closed = 0;
  uint64_t refused_source_limit = 0;
  uint64_t refused_table_full = 0;
  uint64_t restored = 0;
  uint64_t restore_dropped_torn = 0;
  uint64_t restore_dropped_invalid = 0;
  uint64_t restore_dropped_no_room = 0;
};

class FlowTable {
 public:
  FlowTable(const FlowTableConfig& config, EngineState state);
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  static size_t state_bytes(const FlowTableConfig& config);
  // Back to what FlowTable(config, {}) builds, in the same memory: false (nothing changed) when
  // the table lives in a caller's region or `config` has other sizes. Costs a pass over the
  // table's memory, so it suits small tables (a fuzzer reusing one engine).
  bool reset(const FlowTableConfig& config);
  // Empty when `region` holds a table this configuration can use in place; otherwise why not.
  static std::string incompatibility(std::span<const uint8_t> region, const FlowTableConfig& config,
                                     uint64_t boot_id);
  const RestoreReport& restore_report() const noexcept { return restored; }
  // Copies the live entries of another table (another layout, or another shard) into this one,
  // as far as they fit. Entries already present are skipped. A table of an older release is
  // converted: what its entries lack comes from `older`.
  struct OlderLayout {
    uint32_t now_ms = 0;         // timer clock now: older tables' stamps were on another clock
    uint8_t announced_wscale = 7;  // older entries did not record the shift their client was told
  };
  RestoreReport import_from(std::span<const uint8_t> region, uint64_t boot_id, const OlderLayout& older);

  // The live entries of a table file as they stand (`syngate flows`): a copy of each, read from a
  // region the daemon may be writing, so an entry being edited may read half old, half new. Only
  // the current layout is read; `refused` says why nothing was.
  struct Snapshot {
    std::vector<Flow> flows;
    uint32_t max_flows = 0;
    uint64_t boot_id = 0;
    uint32_t unreadable = 0;  // entries whose state or fields no table could hold (damage, a torn read)
    std::string refused;
  };
  static Snapshot snapshot(std::span<const uint8_t> region);

  // ---- for the proxy: lookup, lifetime, edits ----------------------------------------------
  uint32_t find(const FlowTuple& key) const;
  // A hint before a batch of lookups: brings the index lines, then the entries, of these keys
  // into the cache, all of them at once so that their misses overlap instead of queueing one
  // behind the other as lookups one at a time would. Changes nothing; costs a hash per key.
  void prefetch(std::span<const FlowTuple> keys) const noexcept;
  const Flow& get(uint32_t i) const { return flows[i]; }
  // Crash safety. Before an entry changes, its index goes into the header's journal; when the
  // packet (or timer) that changed it is done, the journal is emptied. A process killed in
  // between leaves the index behind, and the next start discards exactly those entries: no torn
  // entry is used. The signal fences keep the compiler from moving entry stores across the
  // journal stores (a SIGKILL stops this thread between two of its own instructions, so program
  // order is enough).
  Flow& edit(uint32_t i) {
    StateHeader& h = *header;
    const uint32_t n = h.dirty_count;
    for (uint32_t k = 0; k < n && k < kJournalSlots; ++k) {
      if (h.dirty[k] == i) return flows[i];
    }
    if (n < kJournalSlots) {
      h.dirty[n] = i;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      h.dirty_count = n + 1;
    } else {
      h.dirty_count = kJournalOverflow;  // cannot happen: a packet touches at most 3 entries
    }
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return flows[i];
  }
  void settle() {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header->dirty_count = 0;
  }
  // A new entry for `key`, or kNone: the source's limit, or a full table with no lingering flow
  // to evict. The refusal is counted unless the caller will try again (`retry_follows`).
  uint32_t allocate_flow(const FlowTuple& key, uint32_t now, bool retry_follows = false);
  void free_flow(uint32_t i);
  // Moves the entry to state `s` and files it on that state's timer list.
  void enter(uint32_t i, State s, uint32_t now);
  void list_append(uint32_t i, uint8_t id);
  void release_early(Flow& f);
  uint8_t* early_data(uint32_t slot) noexcept { return early_pool + size_t{slot} * cfg.early_data_bytes; }
  // A slot from the early-data pool, or kNone when none is free.
  uint32_t take_early_slot();

  struct List {
    uint32_t head = kNone;
    uint32_t tail = kNone;
  };
  const List& list(uint8_t id) const noexcept { return lists[id]; }

  void set_observer(FlowObserver* o) noexcept { observer = o; }
  FlowObserver* flow_observer() const noexcept { return observer; }
  const FlowTableCounters& counters() const noexcept { return count_; }
  const FlowTableConfig& config() const noexcept { return cfg; }
  size_t memory_bytes() const noexcept;
  // How far the index keeps live flows from their home slots (a lookup reads that many slots
  // past the home one): short when the hash spreads the keys it is given. A walk over the index.
  struct ProbeStats {
    double mean = 0;
    uint32_t longest = 0;
  };
  ProbeStats probe_stats() const;
  // Every live entry, in table order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (uint32_t i = 0; i < cfg.max_flows; ++i) {
      if (flows[i].state != State::Free) fn(i, flows[i]);
    }
  }

 private:
  void clear_indexes();
  void format(uint64_t boot_id);
  void rebuild();
  bool plausible(const Flow& f, std::vector<uint8_t>& slot_used) const;
  void index_insert(uint32_t i);
  void index_erase(uint32_t i);
  void list_remove(uint32_t i);
  uint32_t source_bucket(const Address& a) const;
  bool source_acquire(const Address& a);
  void source_acquire_unchecked(const Address& a);
  void source_release(const Address& a);

  FlowTableConfig cfg;
  uint32_t syn_levels = 1;
  FlowTableCounters count_;
  FlowObserver* observer = nullptr;
  // The persistent part: header, flow entries, early-data pool. Either `own` (heap) or a region
  // the caller maps (a file on tmpfs) so that flows outlive the process. Everything else here
  // (hash chains, free lists, timer lists, per-source counts) is rebuilt from the entries.
  // Page-aligned like a mapped region, so that each 128-byte entry spans two cache lines, not three.
  struct PageFree {
    void operator()(uint8_t* p) const noexcept { ::operator delete[](p, std::align_val_t{kOwnAlign}); }
  };
  static constexpr size_t kOwnAlign = 4096;
  std::unique_ptr<uint8_t[], PageFree> own;
  size_t own_bytes = 0;
  StateHeader* header = nullptr;
  Flow* flows = nullptr;
  uint8_t* early_pool = nullptr;
  RestoreReport restored;

  // The flow index: open addressing with linear probing. A slot holds an entry's index + 1 in
  // its low index_bits bits (0: empty) and the rest of the slot is a tag, more bits of the key's
  // hash: a lookup reads slots from the home one on, usually within one cache line, and touches
  // only entries whose tag matches. One entry per found flow, where hash chains through the
  // entries cost a miss per link. Four bytes a slot and at most four fifths full (probes stay
  // short, and a probe always ends at an empty slot): 5 bytes per flow.
  struct Hashed {
    uint32_t home;
    uint32_t tag;
  };
  Hashed hashed(const FlowTuple& k) const noexcept;
  uint32_t next_slot(uint32_t pos) const noexcept { return pos + 1 == slot_count ? 0 : pos + 1; }
  std::vector<uint32_t> slots;
  uint64_t hash_keys[7] = {};  // from cfg.hash_seed
  uint32_t slot_count = 0;
  uint32_t index_bits = 0;
  uint32_t free_head = kNone;

  std::vector<SourceEntry> sources;
  std::vector<uint32_t> source_buckets;
  uint32_t source_mask = 0;
  uint32_t source_free = kNone;

  std::vector<uint32_t> early_free;  // stack of free slot indices

  List lists[kListCount];
};

}  // namespace flows
}  // namespace syngate
