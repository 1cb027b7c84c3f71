#include "syngate/flow_table.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <optional>

namespace syngate::flows {

// The persisted table's header. Layout changes bump kStateVersion.
constexpr char kStateMagic[8] = {'s', 'y', 'n', 'g', 'a', 't', 'e', 'F'};
// 2: timestamps from the daemon's CLOCK_TAI (1 counted from the boot).
// 3: 128-byte entries (sequence tracking for the RST check, the announced window scale), stamps
//    on the timer clock (CLOCK_MONOTONIC: a wall-clock step must not expire flows).
constexpr uint32_t kStateVersion = 3;
constexpr uint32_t kOldestImportedVersion = 2;
static_assert(kOldestImportedVersion == 2, "import_from converts version 2 entries (FlowV2) only");
constexpr size_t kStateHeaderBytes = 128;
static_assert(sizeof(StateHeader) <= kStateHeaderBytes);

namespace {

// An entry as version 2 (releases up to 901d793) saved it: 96 bytes, stamps on CLOCK_TAI.
struct FlowV2 {
  FlowTuple key;
  uint32_t hash_next, list_prev, list_next;
  uint32_t client_isn, cookie_isn, delta, tsoff, client_tsval, stamp_ms, client_fin_seq, server_fin_seq;
  uint32_t early_slot_or_queued_ms;
  uint16_t mss, client_window, early_len;
  State state;
  uint8_t list, retries, client_ws, backend_ws, bits;
};
static_assert(sizeof(FlowV2) == 96);

Flow from_v2(const FlowV2& o, const FlowTable::OlderLayout& older) {
  Flow f{};
  f.key = o.key;
  f.client_isn = o.client_isn;
  f.cookie_isn = o.cookie_isn;
  f.delta = o.delta;
  f.tsoff = o.tsoff;
  f.client_tsval = o.client_tsval;
  f.client_fin_seq = o.client_fin_seq;
  f.server_fin_seq = o.server_fin_seq;
  f.early_slot = o.early_slot_or_queued_ms;
  if (o.state != State::SynSent) f.queued_ms = older.now_ms;
  // The old stamps were on another clock: the flow counts as active now, so it expires late,
  // never early. A SYN due for retry is sent again at most one interval late.
  f.stamp_ms = older.now_ms;
  f.mss = o.mss;
  f.client_window = o.client_window;
  f.early_len = o.early_len;
  f.state = o.state;
  f.list = o.list;
  f.retries = o.retries;
  f.client_ws = o.client_ws;
  f.backend_ws = o.backend_ws;
  f.bits = o.bits;
  f.seen = 0;  // tracking starts with the next packet of each end
  f.announced_ws = older.announced_wscale;
  return f;
}

// What any saved entry must hold, taken over in place or imported. The window scales are shift
// counts: past RFC 7323's 14 they come from damage, and a shift that large is undefined. The
// tuple has one family, as a parsed packet has (an IPv6 header with a v4-mapped address is
// refused): what the engine builds from a mixed one (its RST to the client) would not parse.
bool fields_plausible(const Flow& f) {
  return (f.client_ws == kNoWscale || f.client_ws <= kMaxWindowScale) && f.backend_ws <= kMaxWindowScale &&
         f.announced_ws <= kMaxWindowScale && f.key.src.is_v4() == f.key.dst.is_v4();
}

struct StateLayout {
  size_t flows_offset, early_offset, total;
};
StateLayout layout_of(const FlowTableConfig& c, size_t flow_bytes = sizeof(Flow)) {
  StateLayout l;
  l.flows_offset = kStateHeaderBytes;
  l.early_offset = l.flows_offset + size_t{c.max_flows} * flow_bytes;
  l.total = l.early_offset + size_t{c.early_data_slots} * c.early_data_bytes;
  return l;
}

// `region`'s header, when it starts like a table file (of any layout version).
std::optional<StateHeader> header_of(std::span<const uint8_t> region) {
  if (region.size() < kStateHeaderBytes) return std::nullopt;
  StateHeader h;
  std::memcpy(&h, region.data(), sizeof h);
  if (std::memcmp(h.magic, kStateMagic, sizeof h.magic) != 0) return std::nullopt;
  return h;
}

// Empty when `region` holds a table this configuration can use in place; otherwise why not.
std::string incompatibility(std::span<const uint8_t> region, const FlowTableConfig& c, uint64_t boot_id) {
  const std::optional<StateHeader> header = header_of(region);
  if (!header) return "no saved table";
  const StateHeader& h = *header;
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

// The 128-bit product of two words folded to 64 bits: each output bit depends on every input bit.
inline uint64_t fold(uint64_t a, uint64_t b) noexcept {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
}

// Per-source hash buckets: the largest power of two not above the flow count, so chains average
// one to two entries and the buckets cost at most 4 bytes per flow.
uint32_t bucket_count_for(uint32_t flows) noexcept {
  uint32_t p = 1;
  while (p <= flows / 2) p <<= 1;
  return p;
}

// Flow index slots: 5/4 of the flows, plus one so that a slot stays empty.
uint32_t slot_count_for(uint32_t flows) noexcept { return flows + flows / 4 + 1; }
}  // namespace

FlowTable::FlowTable(const FlowTableConfig& c, EngineState state) : cfg(c) {
  const StateLayout lay = layout_of(cfg);
  std::span<uint8_t> region = state.region;
  if (region.empty()) {
    own.reset(new (std::align_val_t{kOwnAlign}) uint8_t[lay.total]());
    own_bytes = lay.total;
    region = {own.get(), own_bytes};
  }
  header = reinterpret_cast<StateHeader*>(region.data());
  flows = reinterpret_cast<Flow*>(region.data() + lay.flows_offset);
  early_pool = region.data() + lay.early_offset;
  clear_indexes();

  restored.reason = state.region.empty() ? std::string() : incompatibility(region, cfg, state.boot_id);
  if (!state.region.empty() && restored.reason.empty()) {
    restored.attached = true;
    rebuild();
  } else {
    format(state.boot_id);
    rebuild();
  }
}

// The derived structures of an empty table (rebuild() then files the entries).
void FlowTable::clear_indexes() {
  syn_levels = cfg.backend_syn_retries + 1;
  slot_count = slot_count_for(cfg.max_flows);
  slots.assign(slot_count, 0);
  // Odd, so never 0: a key of 0 would leave an all-zero word (the high half of every IPv4
  // address) multiplying the other to nothing.
  for (uint64_t k = 0; k < std::size(hash_keys); ++k) {
    hash_keys[k] = mix64(cfg.hash_seed + 0x9e3779b97f4a7c15ull * (k + 1)) | 1;
  }
  index_bits = static_cast<uint32_t>(std::bit_width(cfg.max_flows));  // index + 1 <= max_flows fits
  const uint32_t nb = bucket_count_for(cfg.max_flows);
  free_head = kNone;
  sources.clear();
  source_buckets.clear();
  source_free = kNone;
  source_mask = 0;
  if (cfg.max_flows_per_source > 0) {
    sources.resize(cfg.max_flows);
    for (uint32_t i = 0; i < cfg.max_flows; ++i) sources[i].next = i + 1 < cfg.max_flows ? i + 1 : kNone;
    source_free = 0;
    source_buckets.assign(nb, kNone);
    source_mask = nb - 1;
  }
  early_free.clear();
  early_free.reserve(cfg.early_data_slots);
  for (List& l : lists) l = List{};
  count_ = FlowTableCounters{};
  restored = RestoreReport{};
  observer = nullptr;
}

bool FlowTable::reset(const FlowTableConfig& c) {
  if (!own || c.max_flows != cfg.max_flows || c.early_data_bytes != cfg.early_data_bytes ||
      c.early_data_slots != cfg.early_data_slots) {
    return false;
  }
  cfg = c;
  // Every byte as the constructor leaves it: entries are reused without being cleared field by
  // field, so a reset table must not differ from a new one in what a freed entry held.
  std::memset(own.get(), 0, own_bytes);  // one call: a byte loop costs more under sanitizers
  clear_indexes();
  format(0);
  rebuild();
  return true;
}

size_t FlowTable::state_bytes(const FlowTableConfig& config) { return layout_of(config).total; }

std::string FlowTable::incompatibility(std::span<const uint8_t> region, const FlowTableConfig& config,
                                       uint64_t boot_id) {
  return ::syngate::flows::incompatibility(region, config, boot_id);
}

// A fresh, empty table.
void FlowTable::format(uint64_t boot_id) {
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

// Rebuilds every derived structure from the entries, dropping (and counting) torn and
// impossible ones. Runs at start only.
void FlowTable::rebuild() {
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
  count_.active = 0;
  for (uint32_t i = cfg.max_flows; i-- > 0;) {
    Flow& f = flows[i];
    f.free_next = f.list_prev = f.list_next = kNone;
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
      f.free_next = free_head;
      free_head = i;
      continue;
    }
    index_insert(i);
    if (f.state != State::Linger) source_acquire_unchecked(f.key.src);
    const uint32_t stamp = f.state == State::SynSent ? f.stamp_ms : f.queued_ms;
    by_list[f.list].push_back({i, stamp});
    newest = stamp;
    ++count_.active;
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
  count_.restored = restored.restored;
  count_.restore_dropped_torn = restored.dropped_torn;
  count_.restore_dropped_invalid = restored.dropped_invalid;
}

// An entry whose fields contradict each other came from a bug or damage, not from us: drop it.
bool FlowTable::plausible(const Flow& f, std::vector<uint8_t>& slot_used) const {
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
  return fields_plausible(f);
}

// ---- flow index -------------------------------------------------------------------------
// The home slot from the hash's low half (scaled to the slot count), the tag from its high half.
// Four multiplications of words xored with secret keys (the first two independent), where the
// six murmur finalizers it replaced took twelve, eight in a chain: the lookup hashes every packet's tuple, and
// the batch path (prefetch) hashes it twice. The keys come from the seed (the index is rebuilt
// at every start, so the hash is not part of the saved layout).
inline FlowTable::Hashed FlowTable::hashed(const FlowTuple& k) const noexcept {
  const uint64_t* key = hash_keys;
  const uint64_t src = fold(load64(k.src.bytes.data()) ^ key[0], load64(k.src.bytes.data() + 8) ^ key[1]);
  const uint64_t dst = fold(load64(k.dst.bytes.data()) ^ key[2], load64(k.dst.bytes.data() + 8) ^ key[3]);
  const uint64_t h = fold(fold(src ^ (uint64_t{k.sport} << 16 | k.dport) ^ key[4], dst ^ key[5]), key[6]);
  return {static_cast<uint32_t>((h & 0xffffffffu) * slot_count >> 32), static_cast<uint32_t>(h >> 32) >> index_bits};
}

uint32_t FlowTable::find(const FlowTuple& k) const {
  const Hashed h = hashed(k);
  const uint32_t low = (1u << index_bits) - 1;
  for (uint32_t pos = h.home;; pos = next_slot(pos)) {
    const uint32_t s = slots[pos];
    if (s == 0) return kNone;
    if ((s >> index_bits) == h.tag && flows[(s & low) - 1].key == k) return (s & low) - 1;
  }
}

void FlowTable::prefetch(std::span<const FlowTuple> keys) const noexcept {
  constexpr size_t kChunk = 64;
  constexpr uintptr_t kLine = 64;
  const uint32_t low = (1u << index_bits) - 1;
  Hashed hs[kChunk];
  for (size_t base = 0; base < keys.size(); base += kChunk) {
    const size_t n = std::min(kChunk, keys.size() - base);
    for (size_t k = 0; k < n; ++k) {
      hs[k] = hashed(keys[base + k]);
      __builtin_prefetch(&slots[hs[k].home]);
    }
    // By now the first lines have arrived: the entry each one names, within the home slot's line
    // (a flow further on is rare, and find() reaches it anyway).
    for (size_t k = 0; k < n; ++k) {
      for (uint32_t pos = hs[k].home;; pos = next_slot(pos)) {
        const uint32_t s = slots[pos];
        if (s == 0) break;
        if ((s >> index_bits) == hs[k].tag) {
          const auto* entry = reinterpret_cast<const uint8_t*>(&flows[(s & low) - 1]);
          __builtin_prefetch(entry);
          __builtin_prefetch(entry + 64);
          break;
        }
        if (reinterpret_cast<uintptr_t>(&slots[pos] + 1) % kLine == 0) break;
      }
    }
  }
}

FlowTable::ProbeStats FlowTable::probe_stats() const {
  const uint32_t low = (1u << index_bits) - 1;
  ProbeStats st;
  uint64_t total = 0, live = 0;
  for (uint32_t pos = 0; pos < slot_count; ++pos) {
    if (slots[pos] == 0) continue;
    const uint32_t home = hashed(flows[(slots[pos] & low) - 1].key).home;
    const uint32_t d = pos >= home ? pos - home : pos + slot_count - home;
    total += d;
    ++live;
    st.longest = std::max(st.longest, d);
  }
  st.mean = live ? static_cast<double>(total) / static_cast<double>(live) : 0.0;
  return st;
}

void FlowTable::index_insert(uint32_t i) {
  const Hashed h = hashed(flows[i].key);
  uint32_t pos = h.home;
  while (slots[pos] != 0) pos = next_slot(pos);
  slots[pos] = h.tag << index_bits | (i + 1);
}

// Backward-shift deletion: each later slot of the run that may move into the hole does, so no
// tombstones are left for later probes to walk over. A slot's home comes from its entry's key
// (the slot holds too few bits of the hash): a deletion touches the entries of the run after it.
void FlowTable::index_erase(uint32_t i) {
  const uint32_t low = (1u << index_bits) - 1;
  uint32_t hole = hashed(flows[i].key).home;
  while ((slots[hole] & low) != i + 1) hole = next_slot(hole);
  for (uint32_t next = next_slot(hole); slots[next] != 0; next = next_slot(next)) {
    // It may fill the hole when it is at least as far from its home as from the hole (cyclically:
    // its home is not after the hole).
    const uint32_t home = hashed(flows[(slots[next] & low) - 1].key).home;
    const auto distance = [this](uint32_t from, uint32_t to) { return to >= from ? to - from : to + slot_count - from; };
    if (distance(home, next) >= distance(hole, next)) {
      slots[hole] = slots[next];
      hole = next;
    }
  }
  slots[hole] = 0;
}

// ---- timer lists ------------------------------------------------------------------------
void FlowTable::list_remove(uint32_t i) {
  Flow& f = flows[i];
  if (f.list == kListNone) return;
  List& l = lists[f.list];
  if (f.list_prev != kNone) flows[f.list_prev].list_next = f.list_next; else l.head = f.list_next;
  if (f.list_next != kNone) flows[f.list_next].list_prev = f.list_prev; else l.tail = f.list_prev;
  f.list = kListNone;
}

void FlowTable::list_append(uint32_t i, uint8_t id) {
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
// A source is a source_group: an IPv4 address, an IPv6 prefix (a /64 by default).
uint32_t FlowTable::source_bucket(const Address& a) const { return static_cast<uint32_t>(hash_address(a, ~cfg.hash_seed)) & source_mask; }

bool FlowTable::source_acquire(const Address& source) {
  if (cfg.max_flows_per_source == 0) return true;
  const Address a = source_group(source, cfg.source_prefix_v6);
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
void FlowTable::source_acquire_unchecked(const Address& source) {
  if (cfg.max_flows_per_source == 0) return;
  const Address a = source_group(source, cfg.source_prefix_v6);
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

void FlowTable::source_release(const Address& source) {
  if (cfg.max_flows_per_source == 0) return;
  const Address a = source_group(source, cfg.source_prefix_v6);
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
void FlowTable::release_early(Flow& f) {
  if (f.state == State::SynSent && f.early_slot != kNone) {
    early_free.push_back(f.early_slot);
    f.early_slot = kNone;
  }
  f.early_len = 0;
}

void FlowTable::free_flow(uint32_t i) {
  Flow& f = edit(i);
  list_remove(i);
  index_erase(i);
  release_early(f);
  if (f.state != State::Linger) source_release(f.key.src);  // a lingering flow gave it back already
  if (observer) observer->flow_freed(f.key, f.kernel_generation);
  f.state = State::Free;
  f.free_next = free_head;
  free_head = i;
  --count_.active;
  ++count_.closed;
}

// Returns the new flow's index, or kNone with the refusal counted.
uint32_t FlowTable::allocate_flow(const FlowTuple& key, uint32_t now, bool retry_follows) {
  // The source is checked first, so that a refused source never costs another client its
  // lingering flow.
  if (!source_acquire(key.src)) {
    // With no room either, the table is what refused: a source at its limit in a full table
    // would be refused all the same below its limit.
    const bool table_full = free_head == kNone && lists[kListLinger].head == kNone;
    if (!retry_follows) ++(table_full ? count_.refused_table_full : count_.refused_source_limit);
    return kNone;
  }
  if (free_head == kNone) {
    const uint32_t victim = lists[kListLinger].head;
    if (victim == kNone) {
      source_release(key.src);
      if (!retry_follows) ++count_.refused_table_full;
      return kNone;
    }
    free_flow(victim);
  }
  const uint32_t i = free_head;
  Flow& f = edit(i);
  free_head = f.free_next;
  f = Flow{};
  f.key = key;
  f.early_slot = kNone;
  f.list = kListNone;
  f.list_prev = f.list_next = kNone;
  f.client_ws = kNoWscale;
  f.backend_ws = 0;
  f.stamp_ms = now;
  f.free_next = kNone;
  index_insert(i);
  ++count_.active;
  ++count_.created;
  if (observer) observer->flow_created(key);
  return i;
}

void FlowTable::enter(uint32_t i, State s, uint32_t now) {
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

FlowTable::Snapshot FlowTable::snapshot(std::span<const uint8_t> region) {
  Snapshot out;
  const std::optional<StateHeader> header = header_of(region);
  if (!header) {
    out.refused = "no saved table";
    return out;
  }
  const StateHeader& h = *header;
  if (h.version != kStateVersion || h.flow_bytes != sizeof(Flow)) {
    out.refused = "another table layout (version " + std::to_string(h.version) + ")";
    return out;
  }
  FlowTableConfig theirs;
  theirs.max_flows = h.max_flows;
  theirs.early_data_bytes = h.early_data_bytes;
  theirs.early_data_slots = h.early_data_slots;
  if (region.size() != layout_of(theirs).total) {
    out.refused = "the file has the wrong size";
    return out;
  }
  out.max_flows = h.max_flows;
  out.boot_id = h.boot_id;
  for (uint32_t i = 0; i < h.max_flows; ++i) {
    Flow f;
    std::memcpy(&f, region.data() + kStateHeaderBytes + size_t{i} * sizeof(Flow), sizeof f);
    if (f.state == State::Free) continue;
    if (f.state > State::Linger || !fields_plausible(f)) {
      ++out.unreadable;
      continue;
    }
    out.flows.push_back(f);
  }
  return out;
}

// Copies the live flows of another table (another layout, or another worker's shard) into this
// one, as far as they fit; see Engine::import_state.
RestoreReport FlowTable::import_from(std::span<const uint8_t> region, uint64_t boot_id, const OlderLayout& older) {
  RestoreReport r;
  const std::optional<StateHeader> header = header_of(region);
  if (!header) return r.refuse("no saved table");
  const StateHeader& h = *header;
  const bool current = h.version == kStateVersion && h.flow_bytes == sizeof(Flow);
  const bool v2 = h.version == kOldestImportedVersion && h.flow_bytes == sizeof(FlowV2);
  if (!current && !v2) return r.refuse("another table layout (version " + std::to_string(h.version) + ")");
  if (h.boot_id != boot_id) return r.refuse("saved before the machine rebooted");
  if (h.dirty_count == kJournalOverflow) return r.refuse("damaged (journal overflow)");
  FlowTableConfig theirs = cfg;
  theirs.max_flows = h.max_flows;
  theirs.early_data_bytes = h.early_data_bytes;
  theirs.early_data_slots = h.early_data_slots;
  const StateLayout lay = layout_of(theirs, h.flow_bytes);
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
    const uint8_t* entry = region.data() + lay.flows_offset + size_t{i} * h.flow_bytes;
    if (current) {
      std::memcpy(&src, entry, sizeof src);
    } else {
      FlowV2 old;
      std::memcpy(&old, entry, sizeof old);
      src = from_v2(old, older);
    }
    if (src.state == State::Free) continue;
    if (torn(i)) {
      ++r.dropped_torn;
      continue;
    }
    if (src.state < State::SynSent || src.state > State::Linger || find(src.key) != kNone || !fields_plausible(src)) {
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
    free_head = flows[j].free_next;
    Flow& f = edit(j);
    f = src;
    f.free_next = f.list_prev = f.list_next = kNone;
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
        // A FIN held behind the data would go to the backend past a gap: the client sends both again.
        if (f.early_len) f.bits &= static_cast<uint8_t>(~flow_bit::kClientFin);
        f.early_len = 0;
      }
    }
    index_insert(j);
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
    ++count_.active;
    ++r.restored;
  }
  count_.restored += r.restored;
  count_.restore_dropped_torn += r.dropped_torn;
  count_.restore_dropped_invalid += r.dropped_invalid;
  count_.restore_dropped_no_room += r.dropped_no_room;
  return r;
}

uint32_t FlowTable::take_early_slot() {
  if (early_free.empty()) return kNone;
  const uint32_t slot = early_free.back();
  early_free.pop_back();
  return slot;
}

size_t FlowTable::memory_bytes() const noexcept {
  return size_t{cfg.max_flows} * sizeof(Flow) + slots.size() * sizeof(uint32_t) +
         sources.size() * sizeof(SourceEntry) + source_buckets.size() * sizeof(uint32_t) +
         size_t{cfg.early_data_slots} * cfg.early_data_bytes + early_free.capacity() * sizeof(uint32_t);
}

}  // namespace syngate::flows
