// The SYN decision: syngate/spec/syn_rules.h says what is decided and in which order; this file
// does the lookups the specification leaves to each path (services, the policy's prefix set, the
// budget tables). See include/syngate/syn_decision.hpp.
#include "syngate/syn_decision.hpp"

#include <sodium.h>

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <cstring>

#include "syngate/spec/syn_rules.h"

namespace syngate {

static_assert(kPolicyAllow == SG_POLICY_MATCH_ALLOW && kPolicyDeny == SG_POLICY_MATCH_DENY);

// ---- Prefixes --------------------------------------------------------------------------------

Address mask_address(const Address& a, uint8_t length) noexcept {
  Address m = a;
  for (size_t i = 0; i < 16; ++i) {
    const int bits = static_cast<int>(length) - static_cast<int>(i * 8);
    if (bits >= 8) continue;
    m.bytes[i] = bits <= 0 ? 0 : static_cast<uint8_t>(m.bytes[i] & (0xff << (8 - bits)));
  }
  return m;
}

std::optional<Prefix> Prefix::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Prefix> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  const size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  const std::optional<Address> addr = Address::parse(addr_text);
  if (!addr) return fail("'" + std::string(addr_text) + "' is not an IPv4 or IPv6 address");
  const bool v4 = addr->is_v4();
  const unsigned max_len = v4 ? 32 : 128;
  unsigned len = max_len;
  if (slash != std::string_view::npos) {
    const std::string_view len_text = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (len_text.empty() || ec != std::errc() || end != len_text.data() + len_text.size() || len > max_len) {
      return fail("prefix length '" + std::string(len_text) + "' must be 0.." + std::to_string(max_len));
    }
  }
  Prefix p;
  p.v4 = v4;
  p.length = static_cast<uint8_t>(v4 ? 96 + len : len);
  p.address = mask_address(*addr, p.length);
  if (!(p.address == *addr)) {
    return fail("'" + std::string(text) + "' has host bits set (did you mean " + p.to_string() + "?)");
  }
  return p;
}

std::string Prefix::to_string() const { return address.to_string() + "/" + std::to_string(family_length()); }

bool Prefix::contains(const Address& a) const noexcept {
  return a.is_v4() == v4 && mask_address(a, length) == address;
}

Address source_group(const Address& a, uint8_t v6_prefix) noexcept {
  return a.is_v4() ? a : mask_address(a, v6_prefix);
}

size_t PrefixSet::KeyHash::operator()(const Address& a) const noexcept {
  // Operator-written keys only (the policy file), so an unkeyed hash cannot be attacked here.
  uint64_t x, y;
  std::memcpy(&x, a.bytes.data(), 8);
  std::memcpy(&y, a.bytes.data() + 8, 8);
  return static_cast<size_t>((x * 0x9e3779b97f4a7c15ull) ^ (y + 0x7f4a7c159e3779b9ull + (x >> 29)));
}

void PrefixSet::insert(const Prefix& p, uint8_t value) {
  auto level = [&](const Level& l) { return l.v4 == p.v4 && l.length == p.length; };
  auto it = std::find_if(by_length_.begin(), by_length_.end(), level);
  if (it == by_length_.end()) {
    by_length_.push_back({p.v4, p.length, {}});
    std::sort(by_length_.begin(), by_length_.end(), [](const Level& a, const Level& b) { return a.length > b.length; });
    it = std::find_if(by_length_.begin(), by_length_.end(), level);
  }
  auto [slot, fresh] = it->map.insert_or_assign(p.address, value);
  (void)slot;
  if (fresh) {
    entries_.push_back({p, value});
  } else {
    for (Entry& e : entries_) {
      if (e.prefix == p) e.value = value;
    }
  }
}

std::optional<uint8_t> PrefixSet::longest_match(const Address& a) const noexcept {
  const bool v4 = a.is_v4();
  for (const Level& l : by_length_) {
    if (l.v4 != v4) continue;
    auto it = l.map.find(mask_address(a, l.length));
    if (it != l.map.end()) return it->second;
  }
  return std::nullopt;
}

void SourcePolicy::add(const Prefix& p, bool deny) {
  prefixes.insert(p, deny ? kPolicyDeny : kPolicyAllow);
  if (!deny) allow_list = true;
}

// ---- Budgets ---------------------------------------------------------------------------------

namespace {
size_t round_up_pow2(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}
}  // namespace

BudgetTable::BudgetTable(size_t cells, const HashKey& key)
    : cells_(round_up_pow2(std::max<size_t>(cells, 1)), 0), key_(key), mask_(cells_.size() - 1) {}

void BudgetTable::reset(size_t cells, const HashKey& key) {
  const size_t n = round_up_pow2(std::max<size_t>(cells, 1));
  if (n == cells_.size()) {
    std::memset(cells_.data(), 0, n * sizeof(cells_[0]));  // one call, not a loop over the cells
  } else {
    cells_.assign(n, 0);
  }
  key_ = key;
  mask_ = n - 1;
}

bool BudgetTable::take(std::span<const uint8_t> key_bytes, uint32_t now_s, uint32_t limit) noexcept {
  if (limit == 0) return true;
  uint64_t h = 0;
  crypto_shorthash_siphash24(reinterpret_cast<unsigned char*>(&h), key_bytes.data(), key_bytes.size(),
                             key_.data());
  uint64_t& packed = cells_[h & mask_];
  sg_budget_cell cell{static_cast<uint32_t>(packed), static_cast<uint32_t>(packed >> 32)};
  const bool ok = sg_budget_take(&cell, now_s, limit) != 0;
  packed = uint64_t{cell.second} | uint64_t{cell.used} << 32;
  return ok;
}

size_t BudgetTable::memory_bytes() const noexcept { return cells_.size() * sizeof(uint64_t); }

// ---- Proven sources --------------------------------------------------------------------------

namespace {
uint64_t pack(const sg_budget_cell& c) { return uint64_t{c.second} | uint64_t{c.used} << 32; }
sg_budget_cell unpack(uint64_t v) { return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)}; }
}  // namespace

ProvenSources::ProvenSources(size_t slots, const HashKey& key)
    : slots_(round_up_pow2(std::max<size_t>(slots, 1))), key_(key), mask_(slots_.size() - 1) {}

void ProvenSources::clear(const HashKey& key) noexcept {
  for (Slot& s : slots_) {
    s.owner.store(0, std::memory_order_relaxed);
    s.budget.store(0, std::memory_order_relaxed);
  }
  key_ = key;
}

uint64_t ProvenSources::hash(const Address& a) const noexcept {
  uint64_t h = 0;
  crypto_shorthash_siphash24(reinterpret_cast<unsigned char*>(&h), a.bytes.data(), a.bytes.size(), key_.data());
  return h;
}

// The slot is h's low bits; the owner tag its high 32 bits (never 0, which marks an empty slot).
// Two sources with the same slot and tag would share an entry: 1 in 2^32 per slot, and with the
// random key nobody can choose such a pair.
static uint32_t tag_of(uint64_t h) { return static_cast<uint32_t>(h >> 32) | 1u; }

ProvenSources::Take ProvenSources::take(const Address& a, uint32_t now_s, uint32_t limit) noexcept {
  const uint64_t h = hash(a);
  Slot& slot = slots_[h & mask_];
  const uint64_t owner = slot.owner.load(std::memory_order_acquire);
  sg_proven entry{static_cast<uint32_t>(owner), {}};
  if (static_cast<uint32_t>(owner >> 32) != tag_of(h) || sg_budget_of(&entry, now_s) != SG_BUDGET_ADDRESS) {
    return Take::NotProven;
  }
  uint64_t seen = slot.budget.load(std::memory_order_relaxed);
  for (;;) {
    sg_budget_cell cell = unpack(seen);
    if (!sg_budget_take(&cell, now_s, limit)) return Take::Spent;
    if (slot.budget.compare_exchange_weak(seen, pack(cell), std::memory_order_relaxed)) return Take::Taken;
  }
}

void ProvenSources::prove(const Address& a, uint32_t now_s) noexcept {
  const uint64_t h = hash(a);
  Slot& slot = slots_[h & mask_];
  const uint64_t owner = slot.owner.load(std::memory_order_acquire);
  const bool known = static_cast<uint32_t>(owner >> 32) == tag_of(h);
  uint64_t seen = slot.budget.load(std::memory_order_relaxed);
  for (;;) {
    sg_proven entry{static_cast<uint32_t>(owner), unpack(seen)};
    sg_source_proved(&entry, known, now_s);
    if (slot.budget.compare_exchange_weak(seen, pack(entry.unanswered), std::memory_order_relaxed)) {
      // Published after its budget, so that a reader that sees the new owner sees that budget.
      const uint64_t next = uint64_t{tag_of(h)} << 32 | entry.proven_s;
      if (next != owner) slot.owner.store(next, std::memory_order_release);
      return;
    }
  }
}

bool ProvenSources::proven(const Address& a, uint32_t now_s) const noexcept {
  const uint64_t h = hash(a);
  const uint64_t owner = slots_[h & mask_].owner.load(std::memory_order_acquire);
  return static_cast<uint32_t>(owner >> 32) == tag_of(h) && sg_proof_current(static_cast<uint32_t>(owner), now_s);
}

// ---- The decision ----------------------------------------------------------------------------

bool is_protected(std::span<const Service> services, const Address& a, uint16_t port) noexcept {
  for (const Service& s : services) {
    if (s.port == port && s.address == a) return true;
  }
  return false;
}

namespace {
const std::shared_ptr<const SourcePolicy>& default_policy() {
  static const std::shared_ptr<const SourcePolicy> p = std::make_shared<SourcePolicy>();
  return p;
}

HashKey derived_key(HashKey k, uint8_t tweak) {
  k[0] ^= tweak;  // two tables, two keys, one random draw
  return k;
}
}  // namespace

SynGuard::SynGuard(SynGuardConfig config)
    : share_(std::max<uint32_t>(config.budget_share, 1)),
      prefix_budget_(config.budget_cells, derived_key(config.hash_key, 0x01)),
      source_budget_(config.budget_cells, derived_key(config.hash_key, 0x02)),
      own_proven_(!config.proven),
      proven_(config.proven ? std::move(config.proven)
                            : std::make_shared<ProvenSources>(ProvenSources::kDefaultSlots,
                                                              derived_key(config.hash_key, 0x03))),
      source_prefix_v6_(config.source_prefix_v6) {
  set_policy(std::move(config.policy));
}

void SynGuard::set_policy(std::shared_ptr<const SourcePolicy> policy) {
  policy_ = policy ? std::move(policy) : default_policy();
  const uint32_t total = policy_->synack_per_prefix_per_s;
  // Each worker holds its share, rounded up so that a small budget never becomes 0 (= unlimited).
  synack_limit_ = total == 0 ? 0 : (total + share_ - 1) / share_;
}

void SynGuard::reset(SynGuardConfig config) {
  share_ = std::max<uint32_t>(config.budget_share, 1);
  prefix_budget_.reset(config.budget_cells, derived_key(config.hash_key, 0x01));
  source_budget_.reset(config.budget_cells, derived_key(config.hash_key, 0x02));
  if (config.proven) {
    proven_ = std::move(config.proven);
    own_proven_ = false;
  } else if (own_proven_) {
    proven_->clear(derived_key(config.hash_key, 0x03));
  } else {
    proven_ = std::make_shared<ProvenSources>(ProvenSources::kDefaultSlots, derived_key(config.hash_key, 0x03));
    own_proven_ = true;
  }
  source_prefix_v6_ = config.source_prefix_v6;
  set_policy(std::move(config.policy));
}

size_t SynGuard::memory_bytes() const noexcept {
  return prefix_budget_.memory_bytes() + source_budget_.memory_bytes() + proven_->memory_bytes();
}

SynVerdict SynGuard::decide(std::span<uint8_t> packet, std::span<const Service> services,
                            uint64_t now_ns) noexcept {
  SynVerdict v;
  v.parsed = parse_tcp_packet(packet);
  if (!v.parsed && v.parsed.error == ParseError::NotTcp) {
    // ICMP is not TCP, but a router's error about a flow's segment must reach the flow path.
    v.icmp = parse_icmp_error(packet);
    if (v.icmp.kind != IcmpKind::NotIcmp) {
      v.action = SynAction::Icmp;
      return v;
    }
  }
  if (!v.parsed) {
    v.action = SynAction::Drop;
    v.reason = drop_reason(sg_reason_of_parse_error(static_cast<sg_parse_error>(v.parsed.error)));
    return v;
  }
  const TcpPacket& p = v.parsed.packet;
  const Address dst = p.dst();
  if (!is_protected(services, dst, p.dport())) {
    v.action = is_protected(services, p.src(), p.sport()) ? SynAction::ServerFlow : SynAction::Pass;
    return v;
  }
  sg_reason why = SG_OK;
  switch (sg_syn_precheck(p.flags(), v.parsed.has_ip_options, &why)) {
    case SG_ACTION_DROP:
      v.action = SynAction::Drop;
      v.reason = drop_reason(why);
      return v;
    case SG_ACTION_FLOW:
      v.action = SynAction::ClientFlow;
      return v;
    case SG_ACTION_ANSWER:
      break;
  }
  const Address src = p.src();
  const SourcePolicy& pol = *policy_;
  if (!pol.prefixes.empty()) {
    const std::optional<uint8_t> m = pol.prefixes.longest_match(src);
    why = sg_policy_verdict(m ? static_cast<sg_policy_match>(*m) : SG_POLICY_NO_MATCH, pol.allow_list);
    if (why != SG_OK) {
      v.action = SynAction::Drop;
      v.reason = drop_reason(why);
      return v;
    }
  }
  if (synack_limit_ != 0 || pol.synack_per_address_per_s != 0) {
    const uint32_t now_s = static_cast<uint32_t>(now_ns / 1000000000ull);
    // The address budget is the whole gateway's (one shared table), never split between workers.
    ProvenSources::Take own = proven_->take(src, now_s, pol.synack_per_address_per_s);
    bool answered = own == ProvenSources::Take::Taken;
    if (own == ProvenSources::Take::NotProven) {
      const Address group = mask_address(src, src.is_v4() ? 96 + SG_BUDGET_PREFIX_V4 : SG_BUDGET_PREFIX_V6);
      answered = prefix_budget_.take(group.bytes, now_s, synack_limit_);
    }
    if (!answered) {
      v.action = SynAction::Drop;
      v.reason = DropReason::BackscatterBudget;
      return v;
    }
  }
  v.action = SynAction::Answer;
  return v;
}

bool SynGuard::take_new_flow(const Address& source, uint64_t now_ns) noexcept {
  const uint32_t limit = policy_->new_flows_per_source_per_s;
  if (limit == 0) return true;
  const Address group = source_group(source, source_prefix_v6_);
  return source_budget_.take(group.bytes, static_cast<uint32_t>(now_ns / 1000000000ull), limit);
}

void SynGuard::source_proved(const Address& source, uint64_t now_ns) noexcept {
  proven_->prove(source, static_cast<uint32_t>(now_ns / 1000000000ull));
}

}  // namespace syngate
