// The handshake proxy. See include/syngate/engine.hpp for the contract and DESIGN.md for the
// protocol. Sequence spaces: the client's ISN is passed to the backend unchanged, so only the
// server's side needs translating: delta = backend ISN - cookie ISN, tsoff = backend TSval - our
// SYN-ACK TSval.
#include "syngate/engine.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>
#include <atomic>
#include <functional>
#include <string>

#include "syngate/checksum.hpp"

namespace syngate {

static_assert(drop_reason(SynDropReason::Truncated) == DropReason::Truncated);
static_assert(drop_reason(SynDropReason::BackscatterBudget) == DropReason::BackscatterBudget);
static_assert(static_cast<int>(SynDropReason::Count_) - 1 == static_cast<int>(DropReason::SynAnswered));

std::string_view to_string(DropReason r) noexcept {
  if (static_cast<uint8_t>(r) < static_cast<uint8_t>(DropReason::SynAnswered)) {
    return to_string(static_cast<SynDropReason>(static_cast<uint8_t>(r) + 1));
  }
  switch (r) {
    case DropReason::SynAnswered: return "syn_answered";
    case DropReason::CookieInvalid: return "cookie_invalid";
    case DropReason::NoFlow: return "no_flow";
    case DropReason::TableFull: return "table_full";
    case DropReason::SourceLimit: return "source_limit";
    case DropReason::NewFlowRate: return "new_flow_rate";
    case DropReason::EarlyDataOverflow: return "early_data_overflow";
    case DropReason::BackendSynAckConsumed: return "backend_synack_consumed";
    case DropReason::BackendSynAckUnexpected: return "backend_synack_unexpected";
    case DropReason::BackendTimeout: return "backend_timeout";
    case DropReason::BackendReset: return "backend_reset";
    case DropReason::StaleSegment: return "stale_segment";
    default: break;
  }
  return "unknown";
}

namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr uint8_t kNoWscale = 0xff;
constexpr uint16_t kDefaultMssV4 = 536;   // RFC 9293 3.7.1: assumed when a SYN carries no MSS
constexpr uint16_t kDefaultMssV6 = 1220;  // RFC 8200 minimum MTU minus headers
constexpr size_t kMaxSynRetryLevels = 16;

inline uint32_t now_ms(uint64_t now_ns) noexcept { return static_cast<uint32_t>(now_ns / 1000000); }
// Wrap-safe "a is at or after b" for millisecond stamps.
inline bool time_reached(uint32_t now, uint32_t deadline) noexcept {
  return static_cast<int32_t>(now - deadline) >= 0;
}

bool is_ecn_setup_syn(uint8_t flags) noexcept {
  return (flags & (tcp_flag::ECE | tcp_flag::CWR)) == (tcp_flag::ECE | tcp_flag::CWR);
}

uint16_t announced_mss(const EngineConfig& c, bool v4) noexcept {
  return v4 ? c.announced_mss_v4 : c.announced_mss_v6;
}

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

namespace bit {
constexpr uint8_t kSack = 1 << 0;
constexpr uint8_t kTimestamps = 1 << 1;
constexpr uint8_t kEcn = 1 << 2;
constexpr uint8_t kBackendWscale = 1 << 3;  // backend agreed to window scaling
constexpr uint8_t kClientFin = 1 << 4;
constexpr uint8_t kServerFin = 1 << 5;
constexpr uint8_t kClientFinAcked = 1 << 6;
constexpr uint8_t kServerFinAcked = 1 << 7;
}  // namespace bit

// One proxied connection. Kept to 96 bytes: with its hash bucket and per-source accounting a
// flow costs at most 128 bytes of the fixed budget.
struct Flow {
  FlowTuple key;            // client -> backend, 36 bytes
  uint32_t hash_next;       // chain in the flow hash
  uint32_t list_prev;       // timer list links
  uint32_t list_next;
  uint32_t client_isn;
  uint32_t cookie_isn;
  uint32_t delta;           // backend ISN - cookie ISN
  uint32_t tsoff;           // backend TSval - our TSval; before the backend answers: our SYN-ACK TSval
  uint32_t client_tsval;    // newest TSval seen from the client
  uint32_t stamp_ms;        // last activity; in SynSent, when the current SYN was sent
  uint32_t client_fin_seq;  // sequence number of the client's FIN
  uint32_t server_fin_seq;  // sequence number of the server's FIN, in the backend's space
  // In SynSent the early-data slot (or kNone); afterwards, when the flow joined its timer list.
  union {
    uint32_t early_slot;
    uint32_t queued_ms;
  };
  uint16_t mss;             // decoded from the cookie
  uint16_t client_window;   // window field of the client's cookie ACK (client-scaled)
  uint16_t early_len;
  State state;
  uint8_t list;
  uint8_t retries;
  uint8_t client_ws;        // kNoWscale when the client did not scale
  uint8_t backend_ws;
  uint8_t bits;
};
static_assert(sizeof(Flow) <= 96, "flow entry grew past its memory budget");

// The persisted table's header. Layout changes bump kStateVersion.
constexpr char kStateMagic[8] = {'s', 'y', 'n', 'g', 'a', 't', 'e', 'F'};
// 2: timestamps from the daemon's CLOCK_TAI (1 counted from the boot).
constexpr uint32_t kStateVersion = 2;
constexpr uint32_t kJournalSlots = 8;
constexpr uint32_t kJournalOverflow = 0xffffffffu;
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
constexpr size_t kStateHeaderBytes = 128;
static_assert(sizeof(StateHeader) <= kStateHeaderBytes);

struct StateLayout {
  size_t flows_offset, early_offset, total;
};
StateLayout layout_of(const EngineConfig& c) {
  StateLayout l;
  l.flows_offset = kStateHeaderBytes;
  l.early_offset = l.flows_offset + size_t{c.max_flows} * sizeof(Flow);
  l.total = l.early_offset + size_t{c.early_data_slots} * c.early_data_bytes;
  return l;
}

// Empty when `region` holds a table this configuration can use in place; otherwise why not.
std::string incompatibility(std::span<const uint8_t> region, const EngineConfig& c, uint64_t boot_id) {
  if (region.size() < kStateHeaderBytes) return "no saved table";
  StateHeader h;
  std::memcpy(&h, region.data(), sizeof h);
  if (std::memcmp(h.magic, kStateMagic, sizeof h.magic) != 0) return "no saved table";
  if (h.version != kStateVersion || h.flow_bytes != sizeof(Flow)) {
    return "saved by a syngate with another table layout (version " + std::to_string(h.version) + ")";
  }
  if (h.boot_id != boot_id) return "saved before the machine rebooted";
  if (h.max_flows != c.max_flows || h.early_data_bytes != c.early_data_bytes ||
      h.early_data_slots != c.early_data_slots) {
    return "saved with other table sizes (max_flows " + std::to_string(h.max_flows) + ", early data " +
           std::to_string(h.early_data_slots) + " x " + std::to_string(h.early_data_bytes) + ")";
  }
  if (region.size() != layout_of(c).total) return "the file has the wrong size";
  return {};
}

struct SourceEntry {
  Address address;
  uint32_t count;
  uint32_t next;
};

uint64_t mix64(uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

uint64_t load64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint64_t hash_address(const Address& a, uint64_t seed) noexcept {
  return mix64(seed ^ load64(a.bytes.data()) ^ mix64(load64(a.bytes.data() + 8) + seed));
}

uint64_t hash_tuple(const FlowTuple& t, uint64_t seed) noexcept {
  uint64_t h = hash_address(t.src, seed);
  h = mix64(h ^ hash_address(t.dst, seed + 1));
  return mix64(h ^ (uint64_t{t.sport} << 16 | t.dport));
}

// Hash buckets: the largest power of two not above the flow count, so chains average one to
// two entries and the buckets cost at most 4 bytes per flow.
uint32_t bucket_count_for(uint32_t flows) noexcept {
  uint32_t p = 1;
  while (p <= flows / 2) p <<= 1;
  return p;
}

}  // namespace

bool answer_syn(const TcpPacket& syn, const CookieJar& cookies, const EngineConfig& config,
                uint64_t now_ns, PacketSink& sink) {
  if ((syn.flags() & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST | tcp_flag::FIN)) != tcp_flag::SYN) {
    return false;
  }
  const FlowTuple t = syn.tuple();
  const TcpOptions& in = syn.options();
  const bool v4 = t.src.is_v4();
  const uint16_t client_mss = in.has_mss ? in.mss : (v4 ? kDefaultMssV4 : kDefaultMssV6);
  const uint32_t cookie = cookies.make(t, syn.seq(), client_mss, cookie_counter(now_ns));

  TcpOptions out;
  out.has_mss = true;
  out.mss = announced_mss(config, v4);
  uint8_t extra = 0;
  // Without timestamps the cookie cannot carry window scale or SACK, so (as Linux does) we offer
  // neither: both ends then agree on unscaled windows.
  if (in.has_timestamps) {
    SynOptionBits b;
    b.has_wscale = in.has_wscale;
    b.wscale = in.wscale;
    b.sack_permitted = in.sack_permitted;
    b.ecn = config.announce_ecn && is_ecn_setup_syn(syn.flags());
    out.has_timestamps = true;
    out.tsval = encode_ts_options(now_ms(now_ns), b);
    out.tsecr = in.tsval;
    out.sack_permitted = in.sack_permitted;
    if (in.has_wscale) {
      out.has_wscale = true;
      out.wscale = config.announced_wscale;
    }
    if (b.ecn) extra = tcp_flag::ECE;
  }
  uint8_t buf[kMaxHeadersLen];
  const size_t n = build_syn_ack(buf, t.reversed(), cookie, syn.seq() + 1,
                                 std::max<uint16_t>(config.synack_window, 1), out, extra);
  if (n == 0) return false;
  sink.send(std::span<const uint8_t>(buf, n));
  return true;
}

struct Engine::Impl {
  EngineConfig cfg;
  CookieJar cookies;
  EngineCounters counters;
  FlowObserver* observer = nullptr;

  // The persistent part: header, flow entries, early-data pool. Either `own` (heap) or a region
  // the caller maps (a file on tmpfs) so that flows outlive the process. Everything else here
  // (hash chains, free lists, timer lists, per-source counts) is rebuilt from the entries.
  std::vector<uint8_t> own;
  StateHeader* header = nullptr;
  Flow* flows = nullptr;
  uint8_t* early_pool = nullptr;
  RestoreReport restored;

  std::vector<uint32_t> buckets;
  uint32_t bucket_mask = 0;
  uint32_t free_head = kNone;

  std::vector<SourceEntry> sources;
  std::vector<uint32_t> source_buckets;
  uint32_t source_mask = 0;
  uint32_t source_free = kNone;

  std::vector<uint32_t> early_free;  // stack of free slot indices

  struct List {
    uint32_t head = kNone;
    uint32_t tail = kNone;
  };
  List lists[kListCount];

  std::vector<uint8_t> scratch;  // one packet being built
  uint32_t syn_levels = 1;
  SynGuard guard;
  // Services removed by a reload: their flows are still translated until they end; new
  // connections to them are no longer proxied (their SYNs pass untouched).
  std::vector<Service> draining;

  Impl(const EngineConfig& c, const CookieJar& j, EngineState state)
      : cfg(normalized(c)), cookies(j), guard(SynGuardConfig{c.policy, c.hash_key, c.budget_share}) {
    syn_levels = cfg.backend_syn_retries + 1;
    const StateLayout lay = layout_of(cfg);
    std::span<uint8_t> region = state.region;
    if (region.empty()) {
      own.assign(lay.total, 0);
      region = own;
    }
    header = reinterpret_cast<StateHeader*>(region.data());
    flows = reinterpret_cast<Flow*>(region.data() + lay.flows_offset);
    early_pool = region.data() + lay.early_offset;
    const uint32_t nb = bucket_count_for(cfg.max_flows);
    buckets.assign(nb, kNone);
    bucket_mask = nb - 1;
    if (cfg.max_flows_per_source > 0) {
      sources.resize(cfg.max_flows);
      for (uint32_t i = 0; i < cfg.max_flows; ++i) sources[i].next = i + 1 < cfg.max_flows ? i + 1 : kNone;
      source_free = 0;
      source_buckets.assign(nb, kNone);
      source_mask = nb - 1;
    }
    early_free.reserve(cfg.early_data_slots);
    scratch.resize(kMaxHeadersLen + std::max<size_t>(cfg.early_data_bytes, 64));

    restored.reason = state.region.empty() ? std::string() : incompatibility(region, cfg, state.boot_id);
    if (!state.region.empty() && restored.reason.empty()) {
      restored.attached = true;
      rebuild();
    } else {
      format(state.boot_id);
      rebuild();
    }
  }

  static EngineConfig normalized(EngineConfig c) {
    c.max_flows = std::max<uint32_t>(c.max_flows, 1);
    c.backend_syn_retries = std::min<uint32_t>(c.backend_syn_retries, kMaxSynRetryLevels - 1);
    return c;
  }

  // A fresh, empty table.
  void format(uint64_t boot_id) {
    StateHeader h{};
    std::memcpy(h.magic, kStateMagic, sizeof h.magic);
    h.version = kStateVersion;
    h.flow_bytes = sizeof(Flow);
    h.max_flows = cfg.max_flows;
    h.early_data_bytes = cfg.early_data_bytes;
    h.early_data_slots = cfg.early_data_slots;
    h.boot_id = boot_id;
    for (uint32_t i = 0; i < cfg.max_flows; ++i) flows[i].state = State::Free;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    *header = h;  // the magic last in effect: a half-formatted table fails validation
  }

  // ---- crash safety -------------------------------------------------------------------------
  // Before an entry changes, its index goes into the header's journal; when the packet (or
  // timer) that changed it is done, the journal is emptied. A process killed in between leaves
  // the index behind, and the next start discards exactly those entries: no torn entry is used.
  // The signal fences keep the compiler from moving entry stores across the journal stores (a
  // SIGKILL stops this thread between two of its own instructions, so program order is enough).
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

  // Rebuilds every derived structure from the entries, dropping (and counting) torn and
  // impossible ones. Runs at start only.
  void rebuild() {
    StateHeader& h = *header;
    if (h.dirty_count == kJournalOverflow) {
      for (uint32_t i = 0; i < cfg.max_flows; ++i) {
        if (flows[i].state != State::Free) ++restored.dropped_torn;
        flows[i].state = State::Free;
      }
    } else {
      for (uint32_t k = 0; k < h.dirty_count && k < kJournalSlots; ++k) {
        const uint32_t i = h.dirty[k];
        if (i < cfg.max_flows && flows[i].state != State::Free) {
          flows[i].state = State::Free;
          ++restored.dropped_torn;
        }
      }
    }
    h.dirty_count = 0;
    std::vector<uint8_t> slot_used(cfg.early_data_slots, 0);
    struct Queued {
      uint32_t index;
      uint32_t stamp;
    };
    std::vector<Queued> by_list[kListCount];
    uint32_t newest = 0;
    free_head = kNone;
    counters.flows_active = 0;
    for (uint32_t i = cfg.max_flows; i-- > 0;) {
      Flow& f = flows[i];
      f.hash_next = f.list_prev = f.list_next = kNone;
      if (f.state != State::Free && !plausible(f, slot_used)) {
        f.state = State::Free;
        ++restored.dropped_invalid;
      }
      if (f.state != State::Free && find(f.key) != kNone) {
        f.state = State::Free;  // the same connection twice: keep one
        ++restored.dropped_invalid;
      }
      if (f.state == State::Free) {
        f.list = kListNone;
        f.hash_next = free_head;
        free_head = i;
        continue;
      }
      uint32_t& head = buckets[bucket_of(f.key)];
      f.hash_next = head;
      head = i;
      if (f.state != State::Linger) source_acquire_unchecked(f.key.src);
      const uint32_t stamp = f.state == State::SynSent ? f.stamp_ms : f.queued_ms;
      by_list[f.list].push_back({i, stamp});
      newest = stamp;
      ++counters.flows_active;
      ++restored.restored;
    }
    for (uint32_t slot = cfg.early_data_slots; slot-- > 0;) {
      if (!slot_used[slot]) early_free.push_back(slot);
    }
    // Timer lists in deadline order, wrap-safe around the newest stamp.
    for (uint8_t id = 1; id < kListCount; ++id) {
      auto& v = by_list[id];
      std::sort(v.begin(), v.end(), [newest](const Queued& a, const Queued& b) {
        return static_cast<int32_t>(a.stamp - newest) < static_cast<int32_t>(b.stamp - newest);
      });
      for (const Queued& q : v) {
        flows[q.index].list = kListNone;
        list_append(q.index, id);
      }
    }
    counters.flows_restored = restored.restored;
    counters.restore_dropped_torn = restored.dropped_torn;
    counters.restore_dropped_invalid = restored.dropped_invalid;
  }

  // An entry whose fields contradict each other came from a bug or damage, not from us: drop it.
  bool plausible(const Flow& f, std::vector<uint8_t>& slot_used) const {
    switch (f.state) {
      case State::SynSent:
        if (f.list < kListSynSent0 || f.list >= kListSynSent0 + syn_levels) return false;
        if (f.retries > cfg.backend_syn_retries) return false;
        if (f.early_slot != kNone) {
          if (f.early_slot >= cfg.early_data_slots || slot_used[f.early_slot]) return false;
          if (f.early_len > cfg.early_data_bytes) return false;
          slot_used[f.early_slot] = 1;
        } else if (f.early_len != 0) {
          return false;
        }
        break;
      case State::Established: if (f.list != kListEstablished) return false; break;
      case State::Closing: if (f.list != kListClosing) return false; break;
      case State::Linger: if (f.list != kListLinger) return false; break;
      default: return false;
    }
    if (f.client_ws != kNoWscale && f.client_ws > kMaxWindowScale) return false;
    if (f.backend_ws > kMaxWindowScale) return false;
    return true;
  }

  void count(DropReason r) { ++counters.drops[static_cast<size_t>(r)]; }

  // ---- flow hash --------------------------------------------------------------------------
  uint32_t bucket_of(const FlowTuple& k) const { return static_cast<uint32_t>(hash_tuple(k, cfg.hash_seed)) & bucket_mask; }

  uint32_t find(const FlowTuple& k) const {
    for (uint32_t i = buckets[bucket_of(k)]; i != kNone; i = flows[i].hash_next) {
      if (flows[i].key == k) return i;
    }
    return kNone;
  }

  // ---- timer lists ------------------------------------------------------------------------
  void list_remove(uint32_t i) {
    Flow& f = flows[i];
    if (f.list == kListNone) return;
    List& l = lists[f.list];
    if (f.list_prev != kNone) flows[f.list_prev].list_next = f.list_next; else l.head = f.list_next;
    if (f.list_next != kNone) flows[f.list_next].list_prev = f.list_prev; else l.tail = f.list_prev;
    f.list = kListNone;
  }

  void list_append(uint32_t i, uint8_t id) {
    list_remove(i);
    Flow& f = flows[i];
    List& l = lists[id];
    f.list = id;
    f.list_next = kNone;
    f.list_prev = l.tail;
    if (l.tail != kNone) flows[l.tail].list_next = i; else l.head = i;
    l.tail = i;
  }

  // ---- per-source accounting ----------------------------------------------------------------
  uint32_t source_bucket(const Address& a) const { return static_cast<uint32_t>(hash_address(a, ~cfg.hash_seed)) & source_mask; }

  bool source_acquire(const Address& a) {
    if (cfg.max_flows_per_source == 0) return true;
    uint32_t& head = source_buckets[source_bucket(a)];
    for (uint32_t i = head; i != kNone; i = sources[i].next) {
      if (sources[i].address == a) {
        if (sources[i].count >= cfg.max_flows_per_source) return false;
        ++sources[i].count;
        return true;
      }
    }
    if (source_free == kNone) return false;  // cannot happen: one entry per flow at most
    const uint32_t i = source_free;
    source_free = sources[i].next;
    sources[i] = {a, 1, head};
    head = i;
    return true;
  }

  // At start: a restored flow counts against its source whatever the limit is now.
  void source_acquire_unchecked(const Address& a) {
    if (cfg.max_flows_per_source == 0) return;
    uint32_t& head = source_buckets[source_bucket(a)];
    for (uint32_t i = head; i != kNone; i = sources[i].next) {
      if (sources[i].address == a) {
        ++sources[i].count;
        return;
      }
    }
    const uint32_t i = source_free;
    source_free = sources[i].next;
    sources[i] = {a, 1, head};
    head = i;
  }

  void source_release(const Address& a) {
    if (cfg.max_flows_per_source == 0) return;
    uint32_t* link = &source_buckets[source_bucket(a)];
    while (*link != kNone) {
      SourceEntry& e = sources[*link];
      if (e.address == a) {
        if (--e.count == 0) {
          const uint32_t i = *link;
          *link = e.next;
          e.next = source_free;
          source_free = i;
        }
        return;
      }
      link = &e.next;
    }
  }

  // ---- flow lifetime ----------------------------------------------------------------------
  void release_early(Flow& f) {
    if (f.state == State::SynSent && f.early_slot != kNone) {
      early_free.push_back(f.early_slot);
      f.early_slot = kNone;
    }
    f.early_len = 0;
  }

  void free_flow(uint32_t i) {
    Flow& f = edit(i);
    list_remove(i);
    uint32_t* link = &buckets[bucket_of(f.key)];
    while (*link != i) link = &flows[*link].hash_next;
    *link = f.hash_next;
    release_early(f);
    if (f.state != State::Linger) source_release(f.key.src);  // a lingering flow gave it back already
    if (observer) observer->flow_freed(f.key);
    f.state = State::Free;
    f.hash_next = free_head;
    free_head = i;
    --counters.flows_active;
    ++counters.flows_closed;
  }

  // Returns the new flow's index, or kNone with the refusal counted.
  uint32_t allocate_flow(const FlowTuple& key, uint32_t now) {
    // The source is checked first, so that a refused source never costs another client its
    // lingering flow.
    if (!source_acquire(key.src)) {
      count(DropReason::SourceLimit);
      return kNone;
    }
    if (free_head == kNone) {
      const uint32_t victim = lists[kListLinger].head;
      if (victim == kNone) {
        source_release(key.src);
        count(DropReason::TableFull);
        return kNone;
      }
      free_flow(victim);
    }
    const uint32_t i = free_head;
    Flow& f = edit(i);
    free_head = f.hash_next;
    f = Flow{};
    f.key = key;
    f.early_slot = kNone;
    f.list = kListNone;
    f.list_prev = f.list_next = kNone;
    f.client_ws = kNoWscale;
    f.backend_ws = 0;
    f.stamp_ms = now;
    uint32_t& head = buckets[bucket_of(key)];
    f.hash_next = head;
    head = i;
    ++counters.flows_active;
    ++counters.flows_created;
    if (observer) observer->flow_created(key);
    return i;
  }

  void enter(uint32_t i, State s, uint32_t now) {
    Flow& f = edit(i);
    if (f.state == State::SynSent && s != State::SynSent) release_early(f);
    // A closed flow lingers only to translate late retransmissions and is the first to go when
    // the table is full, so it stops counting against its source: a busy client (or a NAT in
    // front of many) that opens and closes connections quickly is limited by what it holds
    // open, not by the last linger_s seconds of its history.
    if (s == State::Linger && f.state != State::Linger) source_release(f.key.src);
    f.state = s;
    if (s != State::SynSent) f.queued_ms = now;
    switch (s) {
      case State::Established: list_append(i, kListEstablished); break;
      case State::Closing: list_append(i, kListClosing); break;
      case State::Linger: list_append(i, kListLinger); break;
      case State::SynSent: list_append(i, static_cast<uint8_t>(kListSynSent0 + f.retries)); break;
      case State::Free: break;
    }
  }

  // ---- emission ---------------------------------------------------------------------------
  void emit(PacketSink& sink, size_t n) {
    if (n) sink.send(std::span<const uint8_t>(scratch.data(), n));
  }

  TcpOptions backend_syn_options(const Flow& f) const {
    TcpOptions o;
    o.has_mss = true;
    o.mss = f.mss;
    if (f.client_ws != kNoWscale) {
      o.has_wscale = true;
      o.wscale = f.client_ws;
    }
    o.sack_permitted = (f.bits & bit::kSack) != 0;
    if (f.bits & bit::kTimestamps) {
      o.has_timestamps = true;
      o.tsval = f.client_tsval;
      o.tsecr = 0;
    }
    return o;
  }

  void send_backend_syn(uint32_t i, PacketSink& sink) {
    const Flow& f = flows[i];
    const uint8_t extra = (f.bits & bit::kEcn) ? (tcp_flag::ECE | tcp_flag::CWR) : 0;
    // A SYN's window is never scaled: send the client's real window, as far as 16 bits hold it.
    const uint8_t shift = f.client_ws == kNoWscale ? 0 : f.client_ws;
    const uint16_t window = static_cast<uint16_t>(std::min<uint64_t>(uint64_t{f.client_window} << shift, 0xffff));
    emit(sink, build_syn(scratch, f.key, f.client_isn, window, backend_syn_options(f), extra));
    ++counters.backend_syns_sent;
  }

  // RST to the client from the backend's address, acceptable in the client's ESTABLISHED state
  // because its sequence number is exactly what the client expects next.
  void reset_client(const Flow& f, PacketSink& sink) {
    emit(sink, build_rst(scratch, f.key.reversed(), f.cookie_isn + 1, f.client_isn + 1 + f.early_len, true));
  }

  // Timestamp option for packets we send on the client's behalf to the backend.
  TcpOptions ts_to_backend(const Flow& f, uint32_t backend_tsval) const {
    TcpOptions o;
    if (f.bits & bit::kTimestamps) {
      o.has_timestamps = true;
      o.tsval = f.client_tsval;
      o.tsecr = backend_tsval;
    }
    return o;
  }

  // ---- window translation -------------------------------------------------------------------
  // Shift the client applies to the windows we (the backend, translated) announce.
  uint8_t client_view_shift(const Flow& f) const {
    return f.client_ws != kNoWscale ? cfg.announced_wscale : 0;
  }
  uint8_t backend_shift(const Flow& f) const {
    return (f.bits & bit::kBackendWscale) ? f.backend_ws : 0;
  }
  uint16_t server_window_for_client(const Flow& f, uint16_t field) const {
    const uint8_t from = backend_shift(f);
    const uint8_t to = client_view_shift(f);
    if (from == to) return field;
    const uint64_t bytes = uint64_t{field} << from;
    uint64_t scaled = bytes >> to;
    if (scaled == 0 && bytes > 0) scaled = 1;  // never turn an open window into a zero window
    return static_cast<uint16_t>(std::min<uint64_t>(scaled, 0xffff));
  }
  uint16_t client_window_for_server(const Flow& f, uint16_t field) const {
    // The backend applies the client's scale only if it agreed to scaling.
    if (f.client_ws == kNoWscale || (f.bits & bit::kBackendWscale)) return field;
    return static_cast<uint16_t>(std::min<uint64_t>(uint64_t{field} << f.client_ws, 0xffff));
  }

  // ---- the client's side --------------------------------------------------------------------
  Decision client_packet(TcpPacket& p, const FlowTuple& key, uint64_t now_ns, PacketSink& sink) {
    const uint8_t fl = p.flags();
    const bool syn = fl & tcp_flag::SYN;
    const bool rst = fl & tcp_flag::RST;
    const bool ack = fl & tcp_flag::ACK;
    if (syn) return drop(DropReason::InvalidFlags);  // client SYNs were decided by the SynGuard
    uint32_t i = find(key);
    if (i != kNone && (flows[i].state == State::Linger || flows[i].state == State::Closing) && ack && !rst &&
        p.seq() - 1 != flows[i].client_isn) {
      // Client port reuse: a fresh cookie ACK on a tuple whose old connection is winding down.
      if (cookies.check(key, p.seq() - 1, p.ack() - 1, cookie_counter(now_ns))) {
        free_flow(i);
        ++counters.flows_reused;
        return new_flow(p, key, now_ns, sink);
      }
    }
    if (i == kNone) {
      if (!ack || rst) return drop(rst ? DropReason::NoFlow : DropReason::InvalidFlags);
      return new_flow(p, key, now_ns, sink);
    }
    Flow& f = edit(i);
    if (!ack && !rst) return drop(DropReason::InvalidFlags);
    if (f.bits & bit::kTimestamps && p.options().has_timestamps) f.client_tsval = p.options().tsval;

    if (f.state == State::SynSent) {
      if (rst) {
        // The client gave up before the backend answered: withdraw our SYN from the backend.
        emit(sink, build_rst(scratch, f.key, f.client_isn + 1, 0, false));
        free_flow(i);
        return {Verdict::Drop, false};
      }
      buffer_early_data(f, p);
      return {Verdict::Drop, false};
    }

    // Established, closing or lingering: translate into the backend's sequence space.
    if (ack) {
      const uint32_t backend_ack = p.ack() + f.delta;
      p.set_ack(backend_ack);
      if ((f.bits & bit::kServerFin) && seq_after(backend_ack, f.server_fin_seq)) f.bits |= bit::kServerFinAcked;
    }
    const TcpOptions& o = p.options();
    for (size_t b = 0; b < o.sack_count; ++b) {
      p.set_sack_block(b, {o.sack[b].left + f.delta, o.sack[b].right + f.delta});
    }
    if (o.has_timestamps) p.set_tsecr(o.tsecr + f.tsoff);
    const uint16_t w = client_window_for_server(f, p.window());
    if (w != p.window()) p.set_window(w);
    if (fl & tcp_flag::FIN) {
      f.bits |= bit::kClientFin;
      f.client_fin_seq = p.seq() + static_cast<uint32_t>(p.payload_len());
    }
    after_translation(i, rst, now_ms(now_ns));
    ++counters.translated;
    return {Verdict::Accept, true};
  }

  void after_translation(uint32_t i, bool rst, uint32_t now) {
    Flow& f = edit(i);
    f.stamp_ms = now;
    const uint8_t both_acked = bit::kClientFinAcked | bit::kServerFinAcked;
    if (rst || (f.bits & both_acked) == both_acked) {
      if (f.state != State::Linger) enter(i, State::Linger, now);
    } else if ((f.bits & (bit::kClientFin | bit::kServerFin)) && f.state == State::Established) {
      enter(i, State::Closing, now);
    }
  }

  Decision new_flow(TcpPacket& p, const FlowTuple& key, uint64_t now_ns, PacketSink& sink) {
    const uint32_t client_isn = p.seq() - 1;
    const uint32_t cookie_isn = p.ack() - 1;
    const std::optional<uint16_t> mss = cookies.check(key, client_isn, cookie_isn, cookie_counter(now_ns));
    if (!mss) {
      ++counters.cookies_invalid;
      return drop(DropReason::CookieInvalid);
    }
    ++counters.cookies_valid;
    if (!guard.take_new_flow(key.src, now_ns)) {
      ++counters.flows_refused;
      return drop(DropReason::NewFlowRate);
    }
    const uint32_t i = allocate_flow(key, now_ms(now_ns));
    if (i == kNone) {
      ++counters.flows_refused;
      if (cfg.table_full_reset) {
        emit(sink, build_rst(scratch, key.reversed(), cookie_isn + 1, 0, false));
      }
      return {Verdict::Drop, false};
    }
    Flow& f = edit(i);
    f.client_isn = client_isn;
    f.cookie_isn = cookie_isn;
    f.mss = *mss;
    const TcpOptions& o = p.options();
    if (o.has_timestamps) {
      // Only a client that sent timestamps got window scale and SACK offered (answer_syn).
      const SynOptionBits b = decode_ts_options(o.tsecr);
      f.bits |= bit::kTimestamps;
      f.client_tsval = o.tsval;
      f.tsoff = o.tsecr;  // our SYN-ACK TSval, until the backend's is known
      if (b.sack_permitted) f.bits |= bit::kSack;
      if (b.ecn) f.bits |= bit::kEcn;
      if (b.has_wscale) f.client_ws = b.wscale;
    }
    f.client_window = p.window();
    f.retries = 0;
    enter(i, State::SynSent, now_ms(now_ns));
    buffer_early_data(f, p);
    send_backend_syn(i, sink);
    return {Verdict::Drop, false};
  }

  // Holds in-order data the client sends before the backend has answered; the rest is dropped
  // (never acknowledged to the client, so it will retransmit it).
  void buffer_early_data(Flow& f, const TcpPacket& p) {
    const size_t len = p.payload_len();
    const bool fin = p.flags() & tcp_flag::FIN;
    if (len == 0 && !fin) return;
    const uint32_t expected = f.client_isn + 1 + f.early_len;
    if (p.seq() != expected) {
      if (seq_after(p.seq(), expected)) count(DropReason::EarlyDataOverflow);
      return;  // a retransmission of what we hold, or a gap
    }
    if (len == 0) return;  // a bare FIN waits for its retransmission after the handshake
    if (f.early_slot == kNone) {
      if (early_free.empty()) {
        count(DropReason::EarlyDataOverflow);
        return;
      }
      f.early_slot = early_free.back();
      early_free.pop_back();
    }
    if (f.early_len + len > cfg.early_data_bytes) {
      count(DropReason::EarlyDataOverflow);
      return;
    }
    std::memcpy(early_pool + size_t{f.early_slot} * cfg.early_data_bytes + f.early_len,
                p.payload().data(), len);
    f.early_len = static_cast<uint16_t>(f.early_len + len);
    ++counters.early_data_buffered;
  }

  // ---- the backend's side -------------------------------------------------------------------
  Decision server_packet(TcpPacket& p, const FlowTuple& key, uint64_t now_ns, PacketSink& sink) {
    const uint8_t fl = p.flags();
    const uint32_t i = find(key);
    if (i == kNone) {
      if (fl & tcp_flag::SYN) return drop(DropReason::BackendSynAckUnexpected);
      return drop(DropReason::NoFlow);
    }
    Flow& f = edit(i);
    const bool rst = fl & tcp_flag::RST;
    if (f.state == State::SynSent) {
      if (rst) {
        // Port closed or the backend refused: tell the client now rather than after retries.
        if (!(fl & tcp_flag::ACK) || p.ack() == f.client_isn + 1) {
          reset_client(f, sink);
          free_flow(i);
          return drop(DropReason::BackendReset);
        }
        return drop(DropReason::StaleSegment);
      }
      if ((fl & (tcp_flag::SYN | tcp_flag::ACK)) == (tcp_flag::SYN | tcp_flag::ACK) && p.ack() == f.client_isn + 1) {
        backend_answered(i, p, now_ns, sink);
        return drop(DropReason::BackendSynAckConsumed);
      }
      return drop(DropReason::BackendSynAckUnexpected);
    }
    if (fl & tcp_flag::SYN) {
      // A retransmitted SYN-ACK: our ACK was lost. Answer it again rather than let it through.
      if ((fl & tcp_flag::ACK) && p.seq() - f.cookie_isn == f.delta) {
        const uint32_t backend_ts = p.options().has_timestamps ? p.options().tsval : 0;
        emit(sink, build_ack(scratch, f.key, f.client_isn + 1, p.seq() + 1,
                             client_window_for_server(f, f.client_window), ts_to_backend(f, backend_ts)));
        return drop(DropReason::BackendSynAckConsumed);
      }
      return drop(DropReason::BackendSynAckUnexpected);
    }
    if (fl & tcp_flag::FIN) {
      f.bits |= bit::kServerFin;
      f.server_fin_seq = p.seq() + static_cast<uint32_t>(p.payload_len());
    }
    if ((fl & tcp_flag::ACK) && (f.bits & bit::kClientFin) && seq_after(p.ack(), f.client_fin_seq)) {
      f.bits |= bit::kClientFinAcked;
    }
    p.set_seq(p.seq() - f.delta);
    const TcpOptions& o = p.options();
    if (o.has_timestamps) p.set_tsval(o.tsval - f.tsoff);
    const uint16_t w = server_window_for_client(f, p.window());
    if (w != p.window()) p.set_window(w);
    after_translation(i, rst, now_ms(now_ns));
    ++counters.translated;
    return {Verdict::Accept, true};
  }

  void backend_answered(uint32_t i, const TcpPacket& synack, uint64_t now_ns, PacketSink& sink) {
    Flow& f = edit(i);
    const TcpOptions& o = synack.options();
    const uint32_t backend_isn = synack.seq();
    f.delta = backend_isn - f.cookie_isn;
    uint32_t backend_ts = 0;
    if ((f.bits & bit::kTimestamps) && o.has_timestamps) {
      backend_ts = o.tsval;
      f.tsoff = o.tsval - f.tsoff;  // f.tsoff held our SYN-ACK TSval until now
    } else {
      f.tsoff = 0;
    }
    if (f.client_ws != kNoWscale && o.has_wscale) {
      f.bits |= bit::kBackendWscale;
      f.backend_ws = o.wscale;
    }
    const uint16_t client_window = client_window_for_server(f, f.client_window);
    const TcpOptions ts = ts_to_backend(f, backend_ts);
    if (f.early_len > 0) {
      const uint8_t* data = early_pool + size_t{f.early_slot} * cfg.early_data_bytes;
      emit(sink, build_ack(scratch, f.key, f.client_isn + 1, backend_isn + 1, client_window, ts,
                           std::span<const uint8_t>(data, f.early_len)));
    } else {
      emit(sink, build_ack(scratch, f.key, f.client_isn + 1, backend_isn + 1, client_window, ts));
    }
    // The early-data slot goes back to the pool when the flow enters Established below.

    // Tell the client the real window now that it is known (ours was only the early-data room).
    uint64_t backend_bytes = synack.window();  // a SYN-ACK's own window is unscaled
    uint16_t update = static_cast<uint16_t>(std::min<uint64_t>(backend_bytes >> client_view_shift(f), 0xffff));
    if (update == 0 && backend_bytes > 0) update = 1;
    TcpOptions to_client;
    if (f.bits & bit::kTimestamps) {
      to_client.has_timestamps = true;
      to_client.tsval = backend_ts - f.tsoff;
      to_client.tsecr = f.client_tsval;
    }
    emit(sink, build_window_update(scratch, f.key.reversed(), f.cookie_isn + 1, f.client_isn + 1, update, to_client));
    f.stamp_ms = now_ms(now_ns);
    ++counters.established;
    enter(i, State::Established, f.stamp_ms);
  }

  // ---- timers -------------------------------------------------------------------------------
  void advance(uint64_t now_ns, PacketSink& sink) {
    const uint32_t now = now_ms(now_ns);
    for (uint32_t level = 0; level < syn_levels; ++level) {
      const uint32_t timeout = cfg.backend_retry_initial_ms << level;
      List& l = lists[kListSynSent0 + level];
      while (l.head != kNone && time_reached(now, flows[l.head].stamp_ms + timeout)) {
        settle();
        const uint32_t i = l.head;
        Flow& f = edit(i);
        if (f.retries >= cfg.backend_syn_retries) {
          reset_client(f, sink);
          count(DropReason::BackendTimeout);
          free_flow(i);
          continue;
        }
        ++f.retries;
        ++counters.backend_syn_retries;
        f.stamp_ms = now;
        enter(i, State::SynSent, now);
        send_backend_syn(i, sink);
      }
    }
    expire(kListEstablished, cfg.established_idle_s * 1000u, now, true);
    expire(kListClosing, cfg.closing_idle_s * 1000u, now, true);
    expire(kListLinger, cfg.linger_s * 1000u, now, false);
    settle();
  }

  // Lists are in queued_ms order, so the walk stops at the first flow not yet due. Packets only
  // refresh stamp_ms (one store on the hot path); a due flow that saw traffic since it was
  // queued is queued again instead of freed. An idle flow thus goes after T to 2T of silence,
  // and each flow is requeued at most once per T, so the walk is amortised O(1) per flow.
  void expire(uint8_t id, uint32_t timeout, uint32_t now, bool refresh) {
    List& l = lists[id];
    while (l.head != kNone) {
      settle();
      const uint32_t i = l.head;
      Flow& f = edit(i);
      if (!time_reached(now, f.queued_ms + timeout)) break;
      if (refresh && !time_reached(now, f.stamp_ms + timeout)) {
        list_append(i, id);
        f.queued_ms = now;
        continue;
      }
      free_flow(i);
    }
  }

  // Copies the live flows of another table (another layout, or another worker's shard) into this
  // one, as far as they fit; see Engine::import_state.
  RestoreReport import_from(std::span<const uint8_t> region, uint64_t boot_id) {
    RestoreReport r;
    if (region.size() < kStateHeaderBytes) return r.refuse("no saved table");
    StateHeader h;
    std::memcpy(&h, region.data(), sizeof h);
    if (std::memcmp(h.magic, kStateMagic, sizeof h.magic) != 0) return r.refuse("no saved table");
    if (h.version != kStateVersion || h.flow_bytes != sizeof(Flow)) return r.refuse("another table layout");
    if (h.boot_id != boot_id) return r.refuse("saved before the machine rebooted");
    if (h.dirty_count == kJournalOverflow) return r.refuse("damaged (journal overflow)");
    EngineConfig theirs = cfg;
    theirs.max_flows = h.max_flows;
    theirs.early_data_bytes = h.early_data_bytes;
    theirs.early_data_slots = h.early_data_slots;
    const StateLayout lay = layout_of(theirs);
    if (h.max_flows == 0 || region.size() != lay.total) return r.refuse("the file has the wrong size");
    r.attached = true;
    auto torn = [&](uint32_t i) {
      for (uint32_t k = 0; k < h.dirty_count && k < kJournalSlots; ++k) {
        if (h.dirty[k] == i) return true;
      }
      return false;
    };
    for (uint32_t i = 0; i < h.max_flows; ++i) {
      Flow src;
      std::memcpy(&src, region.data() + lay.flows_offset + size_t{i} * sizeof(Flow), sizeof src);
      if (src.state == State::Free) continue;
      if (torn(i)) {
        ++r.dropped_torn;
        continue;
      }
      if (src.state < State::SynSent || src.state > State::Linger || find(src.key) != kNone) {
        ++r.dropped_invalid;
        continue;
      }
      const bool has_early = src.state == State::SynSent && src.early_slot != kNone && src.early_len > 0;
      if (has_early && (src.early_slot >= h.early_data_slots || src.early_len > h.early_data_bytes ||
                        src.early_len > cfg.early_data_bytes)) {
        ++r.dropped_invalid;
        continue;
      }
      if (free_head == kNone || (has_early && early_free.empty())) {
        ++r.dropped_no_room;
        continue;
      }
      const uint32_t j = free_head;
      free_head = flows[j].hash_next;
      Flow& f = edit(j);
      f = src;
      f.hash_next = f.list_prev = f.list_next = kNone;
      f.list = kListNone;
      if (f.state == State::SynSent) {
        f.retries = static_cast<uint8_t>(std::min<uint32_t>(f.retries, cfg.backend_syn_retries));
        f.early_slot = kNone;
        if (has_early) {
          f.early_slot = early_free.back();
          early_free.pop_back();
          std::memcpy(early_pool + size_t{f.early_slot} * cfg.early_data_bytes,
                      region.data() + lay.early_offset + size_t{src.early_slot} * h.early_data_bytes, f.early_len);
        } else {
          f.early_len = 0;
        }
      }
      uint32_t& head = buckets[bucket_of(f.key)];
      f.hash_next = head;
      head = j;
      if (f.state != State::Linger) source_acquire_unchecked(f.key.src);
      // Filed at the tail of its timer list with its own stamps: an imported flow that is older
      // than the ones already queued expires late, never early.
      switch (f.state) {
        case State::SynSent: list_append(j, static_cast<uint8_t>(kListSynSent0 + f.retries)); break;
        case State::Established: list_append(j, kListEstablished); break;
        case State::Closing: list_append(j, kListClosing); break;
        default: list_append(j, kListLinger); break;
      }
      settle();
      ++counters.flows_active;
      ++r.restored;
    }
    counters.flows_restored += r.restored;
    counters.restore_dropped_torn += r.dropped_torn;
    counters.restore_dropped_invalid += r.dropped_invalid;
    counters.restore_dropped_no_room += r.dropped_no_room;
    return r;
  }

  Decision drop(DropReason r) {
    count(r);
    return {Verdict::Drop, false};
  }

  Decision process(std::span<uint8_t> bytes, uint64_t now_ns, PacketSink& sink, bool checksum_ready) {
    const Decision d = process_packet(bytes, now_ns, sink, checksum_ready);
    settle();
    return d;
  }

  Decision process_packet(std::span<uint8_t> bytes, uint64_t now_ns, PacketSink& sink, bool checksum_ready) {
    ++counters.packets;
    SynVerdict v = guard.decide(bytes, cfg.services, now_ns);
    TcpPacket& p = v.parsed.packet;
    Decision d;
    switch (v.action) {
      case SynAction::Drop:
        return drop(drop_reason(v.reason));
      case SynAction::Pass:
        if (!draining.empty()) {
          if (is_protected(draining, p.dst(), p.dport()) && !(p.flags() & tcp_flag::SYN) && find(p.tuple()) != kNone) {
            d = client_packet(p, p.tuple(), now_ns, sink);
            break;
          }
          if (is_protected(draining, p.src(), p.sport()) && find(p.tuple().reversed()) != kNone) {
            d = server_packet(p, p.tuple().reversed(), now_ns, sink);
            break;
          }
        }
        ++counters.passed_through;
        return {Verdict::Accept, false};
      case SynAction::Answer:
        ++counters.syn_received;
        if (answer_syn(p, cookies, cfg, now_ns, sink)) ++counters.cookies_sent;
        return drop(DropReason::SynAnswered);
      case SynAction::ClientFlow:
        d = client_packet(p, p.tuple(), now_ns, sink);
        break;
      case SynAction::ServerFlow:
        d = server_packet(p, p.tuple().reversed(), now_ns, sink);
        break;
    }
    if (d.modified && !checksum_ready) p.recompute_checksum();
    return d;
  }
};

Engine::Engine(const EngineConfig& config, const CookieJar& cookies, EngineState state)
    : impl_(std::make_unique<Impl>(config, cookies, state)) {}
Engine::~Engine() = default;

size_t Engine::state_bytes(const EngineConfig& config) { return layout_of(Impl::normalized(config)).total; }
std::string Engine::state_incompatibility(std::span<const uint8_t> region, const EngineConfig& config,
                                          uint64_t boot_id) {
  return incompatibility(region, Impl::normalized(config), boot_id);
}
const RestoreReport& Engine::restore_report() const noexcept { return impl_->restored; }
RestoreReport Engine::import_state(std::span<const uint8_t> region, uint64_t boot_id) {
  return impl_->import_from(region, boot_id);
}
void Engine::for_each_flow(const std::function<void(const FlowTuple&)>& fn) const {
  const Impl& m = *impl_;
  for (uint32_t i = 0; i < m.cfg.max_flows; ++i) {
    if (m.flows[i].state != State::Free) fn(m.flows[i].key);
  }
}

Decision Engine::process(std::span<uint8_t> packet, uint64_t now_ns, PacketSink& sink, bool checksum_ready) {
  return impl_->process(packet, now_ns, sink, checksum_ready);
}
void Engine::advance(uint64_t now_ns, PacketSink& sink) { impl_->advance(now_ns, sink); }
void Engine::set_cookies(const CookieJar& cookies) { impl_->cookies = cookies; }
void Engine::set_services(std::vector<Service> services) {
  Impl& m = *impl_;
  for (const Service& old : m.cfg.services) {
    const bool kept = std::find(services.begin(), services.end(), old) != services.end();
    if (!kept && std::find(m.draining.begin(), m.draining.end(), old) == m.draining.end()) m.draining.push_back(old);
  }
  // A service added back is protected again, not draining.
  std::erase_if(m.draining, [&](const Service& s) { return std::find(services.begin(), services.end(), s) != services.end(); });
  m.cfg.services = std::move(services);
  prune_draining();
}

const std::vector<Service>& Engine::draining_services() const noexcept { return impl_->draining; }

void Engine::prune_draining() {
  Impl& m = *impl_;
  if (m.draining.empty()) return;
  std::vector<bool> live(m.draining.size(), false);
  for (uint32_t i = 0; i < m.cfg.max_flows; ++i) {
    const Flow& f = m.flows[i];
    if (f.state == State::Free) continue;
    for (size_t k = 0; k < m.draining.size(); ++k) {
      if (f.key.dst == m.draining[k].address && f.key.dport == m.draining[k].port) live[k] = true;
    }
  }
  size_t k = 0;
  std::erase_if(m.draining, [&](const Service&) { return !live[k++]; });
}
void Engine::set_flow_observer(FlowObserver* observer) noexcept {
  Impl& m = *impl_;
  m.observer = observer;
  if (!observer) return;
  // Flows restored from a saved table or imported before there was an observer: it hears of
  // them now, or it would take their packets for forgeries.
  for (uint32_t i = 0; i < m.cfg.max_flows; ++i) {
    if (m.flows[i].state != State::Free) observer->flow_created(m.flows[i].key);
  }
}
void Engine::set_policy(std::shared_ptr<const SourcePolicy> policy) {
  impl_->cfg.policy = policy;
  impl_->guard.set_policy(std::move(policy));
}
const EngineCounters& Engine::counters() const noexcept { return impl_->counters; }
const EngineConfig& Engine::config() const noexcept { return impl_->cfg; }

size_t Engine::flow_entry_bytes() noexcept { return sizeof(Flow); }

size_t Engine::memory_bytes() const noexcept {
  const Impl& m = *impl_;
  return size_t{m.cfg.max_flows} * sizeof(Flow) + m.buckets.size() * sizeof(uint32_t) +
         m.sources.size() * sizeof(SourceEntry) + m.source_buckets.size() * sizeof(uint32_t) +
         size_t{m.cfg.early_data_slots} * m.cfg.early_data_bytes + m.early_free.capacity() * sizeof(uint32_t) +
         m.scratch.size();
}

}  // namespace syngate
