#include "syngate/backend_facts.hpp"

#include "syngate/spec/cookie_spec.h"

namespace syngate {

// Slots are appended under the mutex and published by `used_`: a reader sees only slots whose
// service was written before it. Services never leave (a removed service's fact is harmless and
// a reload may bring it back).
const BackendFacts::Slot* BackendFacts::find(const Service& service) const noexcept {
  const size_t n = used_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    if (slots_[i].service == service) return &slots_[i];
  }
  return nullptr;
}

void BackendFacts::backend_answered(const Service& service, bool sack_permitted, uint32_t now_ms) noexcept {
  const uint32_t value = sack_permitted ? 0 : (now_ms | 1u);
  if (const Slot* found = find(service)) {
    found->lacks_sack_since.store(value, std::memory_order_relaxed);
    return;
  }
  if (sack_permitted) return;  // nothing to remember: promising SACK is what happens anyway
  std::lock_guard lock(insert_mutex_);
  if (const Slot* added = find(service)) {  // another worker added it meanwhile
    added->lacks_sack_since.store(value, std::memory_order_relaxed);
  } else {
    const size_t n = used_.load(std::memory_order_relaxed);
    if (n == slots_.size()) return;
    slots_[n].service = service;
    slots_[n].lacks_sack_since.store(value, std::memory_order_relaxed);
    used_.store(n + 1, std::memory_order_release);
  }
}

void BackendFacts::clear() noexcept {
  const size_t n = used_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {  // the rest were never written
    slots_[i].service = Service{};
    slots_[i].lacks_sack_since.store(0, std::memory_order_relaxed);
  }
  used_.store(0, std::memory_order_release);
}

uint32_t BackendFacts::service_flags(const Service& service, uint32_t now_ms) const noexcept {
  const Slot* slot = find(service);
  if (!slot) return 0;
  const uint32_t since = slot->lacks_sack_since.load(std::memory_order_relaxed);
  // Signed age: `since` may be 1 ms ahead of now (its low bit is set). A cookie clock stepped
  // back further expires the fact, to be learned again on the next connection.
  const int64_t age = static_cast<int32_t>(now_ms - since);
  if (since == 0 || age >= kLacksSackMemoryMs || age < -1000) return 0;
  return SG_SERVICE_BACKEND_LACKS_SACK;
}

}  // namespace syngate
