// The SYN decision in the core: one function every worker kind calls on every packet it gets,
// following the specification in syngate/spec/syn_rules.h (which the in-kernel fast path
// compiles too). Plus what the decision needs: the source policy (a longest-prefix set of allow
// and deny entries) and fixed-memory per-prefix / per-source budgets.
//
// Pure code: no syscalls, no clocks. Random hash keys come from the caller.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "syngate/drop_reason.hpp"
#include "syngate/icmp.hpp"
#include "syngate/packet.hpp"

namespace syngate {

// A protected service: the SYN decision's first question is whether a packet is for one.
struct Service {
  Address address;
  uint16_t port = 0;
  friend bool operator==(const Service&, const Service&) = default;
};

// ---- Prefix sets ----------------------------------------------------------------------------

// An IPv4 or IPv6 prefix. IPv4 is stored v4-mapped, so a /24 is length 96 + 24 inside; a prefix
// covers addresses of its own family only (an IPv6 ::/0 is all of IPv6, not IPv4 as well).
struct Prefix {
  Address address;  // host bits cleared
  uint8_t length = 0;  // in the 128-bit space
  bool v4 = false;

  // "10.1.0.0/16", "2001:db8::/32", or a bare address (a host prefix). Host bits set in the
  // text are an error ("10.1.2.3/16" is a typo more often than not). nullopt with *error set.
  static std::optional<Prefix> parse(std::string_view text, std::string* error = nullptr);
  // The length as written (0..32 for IPv4).
  uint8_t family_length() const noexcept { return v4 ? static_cast<uint8_t>(length - 96) : length; }
  std::string to_string() const;
  bool contains(const Address& a) const noexcept;
  friend bool operator==(const Prefix&, const Prefix&) = default;
};

// The address with all but its first `length` bits (of 128) cleared.
Address mask_address(const Address& a, uint8_t length) noexcept;

// Longest-prefix match from prefixes to small values, within the address's family (see
// SG_POLICY_FAMILY_V4 in the specification). Lookup allocates nothing and costs one hash probe per
// distinct prefix length present in that family (longest first).
class PrefixSet {
 public:
  // Adds or replaces the value of a prefix.
  void insert(const Prefix& p, uint8_t value);
  // The value of the longest prefix containing `a`.
  std::optional<uint8_t> longest_match(const Address& a) const noexcept;
  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  struct Entry {
    Prefix prefix;
    uint8_t value;
  };
  // In insertion order (for exporting to another data path, e.g. a BPF LPM map).
  const std::vector<Entry>& entries() const noexcept { return entries_; }

 private:
  struct KeyHash {
    size_t operator()(const Address& a) const noexcept;
  };
  std::vector<Entry> entries_;
  struct Level {
    bool v4;
    uint8_t length;
    std::unordered_map<Address, uint8_t, KeyHash> map;
  };
  // One map per family and prefix length present, longest first.
  std::vector<Level> by_length_;
};

// ---- Source policy ---------------------------------------------------------------------------

inline constexpr uint8_t kPolicyAllow = 1;  // sg_policy_match values
inline constexpr uint8_t kPolicyDeny = 2;

// The [policy] table. Shared read-only between workers (a reload publishes a new one).
struct SourcePolicy {
  PrefixSet prefixes;     // allow and deny entries; the longest match decides
  bool allow_list = false;  // some allow entry exists: sources matching none are refused

  // Backscatter budgets (syn_rules.h has the rule). SYN-ACKs per second to one /24 (IPv4) or
  // /48 (IPv6) of sources that have not proved themselves, over the whole gateway: a SYN proxy
  // answers every spoofed SYN, so an attacker who spoofs a victim network aims our SYN-ACKs at
  // it. 0 = unlimited.
  uint32_t synack_per_prefix_per_s = kDefaultSynackPerPrefixPerS;
  // SYN-ACKs per second that one address which proved itself (a valid cookie ACK) leaves
  // unanswered. Those it answers are given back, so a real client is not throttled at any rate;
  // whoever spoofs its address aims at most this many a second at it. 0 = unlimited.
  uint32_t synack_per_address_per_s = kDefaultSynackPerAddressPerS;
  // New proxied flows per second from one client address (real hosts completing handshakes,
  // e.g. a botnet). 0 = unlimited.
  uint32_t new_flows_per_source_per_s = 0;

  // 1000/s to one /24 is more than the new connections a /24 of real clients opens to one
  // service (a large carrier NAT excepted: raise it there), and caps what a spoofer can reflect
  // at one victim network at ~0.6 Mbit/s of SYN-ACKs.
  static constexpr uint32_t kDefaultSynackPerPrefixPerS = 1000;
  // A real client leaves few SYN-ACKs unanswered (a lost ACK, a connect() given up). The same
  // ~0.6 Mbit/s as a /24 gets: a spoofer of a whole /24 at 50k SYN/s lands ~200/s on each of its
  // addresses, so a proven client in it keeps its budget; one who spoofs the client's own
  // address aims no more at it than at a network that never answers.
  static constexpr uint32_t kDefaultSynackPerAddressPerS = 1000;

  // Adds an entry; a prefix listed twice (even in both lists) is an error for the caller.
  void add(const Prefix& p, bool deny);
};

// The unit per-source limits count in (max_flows_per_source, new_flows_per_source_per_s): an
// IPv4 address, or the IPv6 prefix of `v6_prefix` bits holding the address. One IPv6 host
// commonly holds a whole /64, so counting per /128 would let it take the limit many times over.
Address source_group(const Address& a, uint8_t v6_prefix) noexcept;
inline constexpr uint8_t kDefaultSourcePrefixV6 = 64;

// ---- Budgets ---------------------------------------------------------------------------------

using HashKey = std::array<uint8_t, 16>;

// A fixed table of one-second budget cells indexed by a keyed SipHash of the key bytes: memory
// is fixed however many sources there are, and without the random key nobody can choose
// sources that land on a victim's cell.
class BudgetTable {
 public:
  BudgetTable(size_t cells, const HashKey& key);
  // Takes one unit for `key_bytes` in second `now_s`; false when the cell is spent.
  bool take(std::span<const uint8_t> key_bytes, uint32_t now_s, uint32_t limit) noexcept;
  size_t memory_bytes() const noexcept;
  // Back to what BudgetTable(cells, key) builds, keeping the memory when the size is the same.
  void reset(size_t cells, const HashKey& key);

 private:
  std::vector<uint64_t> cells_;  // sg_budget_cell, packed
  HashKey key_;
  size_t mask_;
};

// Sources that proved they receive at their address (syn_rules.h: a valid cookie ACK), each with
// its budget of unanswered SYN-ACKs. One table serves a whole gateway: flow workers prove
// sources, SYN workers take from their budgets, on other threads, so every field is an atomic
// word (lock-free, no allocation after construction). Fixed memory: slots indexed by a keyed
// hash; a source proving itself takes over its slot from whichever source held it, which then
// falls back to its prefix's budget (never to more SYN-ACKs).
class ProvenSources {
 public:
  ProvenSources(size_t slots, const HashKey& key);
  enum class Take : uint8_t { NotProven, Taken, Spent };
  // Step 4 for a proven source: one SYN-ACK from its own budget (limit 0 = no limit). NotProven
  // when the table vouches for no current proof of `a`: the prefix budget decides.
  Take take(const Address& a, uint32_t now_s, uint32_t limit) noexcept;
  // A valid cookie ACK from `a`.
  void prove(const Address& a, uint32_t now_s) noexcept;
  bool proven(const Address& a, uint32_t now_s) const noexcept;
  size_t memory_bytes() const noexcept { return slots_.size() * sizeof(Slot); }
  static constexpr size_t kDefaultSlots = 65536;
  // Forgets every source and takes a new key, as a new table of the same size. Not while other
  // threads use the table (Engine::reset, on an engine that owns it).
  void clear(const HashKey& key) noexcept;

 private:
  struct Slot {
    std::atomic<uint64_t> owner{0};   // tag << 32 | proven_s; 0 = empty
    std::atomic<uint64_t> budget{0};  // sg_budget_cell, packed: second low, used high
  };
  uint64_t hash(const Address& a) const noexcept;
  std::vector<Slot> slots_;
  HashKey key_;
  size_t mask_;
};

// ---- The decision ----------------------------------------------------------------------------

// What to do with one queued packet.
enum class SynAction : uint8_t {
  Pass,          // not for a protected service: accept untouched
  Answer,        // a client SYN that passed every rule: answer with a cookie, drop the SYN
  ClientFlow,    // client -> service, not a SYN: the flow path (cookie ACK or an existing flow)
  ServerFlow,    // service -> client: the flow path
  Icmp,          // ICMP or ICMPv6: an error about a flow's segment is the flow path's to translate,
                 // anything else passes untouched (see `icmp`)
  Drop,          // dropped; `reason` says why
};


struct SynVerdict {
  SynAction action = SynAction::Drop;
  DropReason reason = DropReason::None;  // one of the SYN decision's reasons (is_syn_decision_reason)
  ParseResult parsed;  // valid when the packet parsed (every action but a malformed Drop and Icmp)
  IcmpError icmp;      // what an Icmp packet is
};

// Cells of each budget table (per prefix, per address): 128 KiB each. Sources share a cell when
// their hashes collide, which only makes their budgets stricter.
inline constexpr size_t kDefaultBudgetCells = 16384;

struct SynGuardConfig {
  std::shared_ptr<const SourcePolicy> policy;  // null = no policy, default budgets
  HashKey hash_key{};     // random per process; keys the budget tables
  uint32_t budget_share = 1;  // how many workers split the per-prefix budget (SYN workers)
  size_t budget_cells = kDefaultBudgetCells;  // per table, fixed
  // Shared by every worker of a gateway (flow workers prove, SYN workers take); null = a table
  // of this guard's own (a single engine that answers its SYNs and validates its ACKs).
  std::shared_ptr<ProvenSources> proven{};
  uint8_t source_prefix_v6 = kDefaultSourcePrefixV6;  // take_new_flow counts per source_group
};

// Per-worker state of the decision: the policy in force and the budget tables. Not thread-safe;
// one per worker, like the flow table.
class SynGuard {
 public:
  explicit SynGuard(SynGuardConfig config);

  // THE decision: every worker kind calls this on every packet it gets from its queue.
  SynVerdict decide(std::span<uint8_t> packet, std::span<const Service> services,
                    uint64_t now_ns) noexcept;

  // For the flow path: may `source` open one more flow this second? (policy's
  // new_flows_per_source_per_s per source_group; true when unlimited)
  bool take_new_flow(const Address& source, uint64_t now_ns) noexcept;
  // For the flow path: a valid cookie ACK from `source` (syn_rules.h: sg_source_proved).
  void source_proved(const Address& source, uint64_t now_ns) noexcept;

  // A reload: the new policy applies to the next packet; budgets carry on.
  void set_policy(std::shared_ptr<const SourcePolicy> policy);
  const SourcePolicy& policy() const noexcept { return *policy_; }
  size_t memory_bytes() const noexcept;
  // Back to what SynGuard(config) builds (budgets empty), reusing the tables' memory where the
  // sizes allow. A proven-sources table of its own is emptied; one from config.proven is the
  // caller's and left as it is.
  void reset(SynGuardConfig config);

 private:
  std::shared_ptr<const SourcePolicy> policy_;
  uint32_t share_;
  uint32_t synack_limit_ = 0;  // per worker, from the policy and share
  BudgetTable prefix_budget_;
  BudgetTable source_budget_;
  bool own_proven_;  // proven_ was made here (config.proven was null), not shared by the caller
  std::shared_ptr<ProvenSources> proven_;
  uint8_t source_prefix_v6_;
};

// Whether (address, port) is one of the services.
bool is_protected(std::span<const Service> services, const Address& a, uint16_t port) noexcept;

}  // namespace syngate
