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

const BackendFacts::Slot* BackendFacts::find_or_add(const Service& service) noexcept {
  if (const Slot* found = find(service)) return found;
  std::lock_guard lock(insert_mutex_);
  if (const Slot* added = find(service)) return added;  // another worker added it meanwhile
  const size_t n = used_.load(std::memory_order_relaxed);
  if (n == slots_.size()) return nullptr;
  slots_[n].service = service;
  used_.store(n + 1, std::memory_order_release);
  return &slots_[n];
}

void BackendFacts::backend_answered(const Service& service, bool sack_permitted, uint32_t now_ms) noexcept {
  const uint32_t value = sack_permitted ? 0 : (now_ms | 1u);
  // Nothing to remember of a backend with SACK: promising it is what happens anyway.
  const Slot* slot = sack_permitted ? find(service) : find_or_add(service);
  if (slot) slot->lacks_sack_since.store(value, std::memory_order_relaxed);
}

void BackendFacts::backend_timestamps(const Service& service, bool has_timestamps) noexcept {
  // Nothing to remember of a backend without: leaving room is what happens anyway.
  const Slot* slot = has_timestamps ? find_or_add(service) : find(service);
  if (slot) slot->has_timestamps.store(has_timestamps, std::memory_order_relaxed);
}

bool BackendFacts::has_timestamps(const Service& service) const noexcept {
  const Slot* slot = find(service);
  return slot && slot->has_timestamps.load(std::memory_order_relaxed);
}

void BackendFacts::clear() noexcept {
  const size_t n = used_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {  // the rest were never written
    slots_[i].service = Service{};
    slots_[i].lacks_sack_since.store(0, std::memory_order_relaxed);
    slots_[i].has_timestamps.store(false, std::memory_order_relaxed);
  }
  used_.store(0, std::memory_order_release);
}

uint32_t BackendFacts::service_flags(const Service& service, uint32_t now_ms) const noexcept {
  const Slot* slot = find(service);
  if (!slot) return 0;
  const uint32_t timestamps = slot->has_timestamps.load(std::memory_order_relaxed) ? SG_SERVICE_BACKEND_HAS_TIMESTAMPS : 0;
  const uint32_t since = slot->lacks_sack_since.load(std::memory_order_relaxed);
  // Signed age: `since` may be 1 ms ahead of now (its low bit is set). A cookie clock stepped
  // back further expires the fact, to be learned again on the next connection.
  const int64_t age = static_cast<int32_t>(now_ms - since);
  if (since == 0 || age >= kLacksSackMemoryMs || age < -1000) return timestamps;
  return timestamps | SG_SERVICE_BACKEND_LACKS_SACK;
}

}  // namespace syngate
