// What the main thread hands every worker while they run: the cookie secrets and the source
// policy in force. Workers poll a generation number (one relaxed load per batch) and copy the
// value when it moves: the hot path takes no lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "syngate/cookie.hpp"
#include "syngate/syn_decision.hpp"

namespace syngate::gw {

struct SharedSecrets {
  std::mutex mutex;
  CookieSecrets secrets;
  std::atomic<uint64_t> generation{1};

  void publish(const CookieSecrets& s) {
    std::lock_guard lock(mutex);
    secrets = s;
    generation.fetch_add(1, std::memory_order_release);
  }
  CookieSecrets get() {
    std::lock_guard lock(mutex);
    return secrets;
  }
};

// A reload publishes a new policy and service list; workers pick them up at their next batch,
// budgets and flows carry on.
struct SharedPolicy {
  std::mutex mutex;
  std::shared_ptr<const SourcePolicy> policy;
  std::vector<Service> services;
  std::atomic<uint64_t> generation{1};

  void publish(std::shared_ptr<const SourcePolicy> p, std::vector<Service> s) {
    std::lock_guard lock(mutex);
    policy = std::move(p);
    services = std::move(s);
    generation.fetch_add(1, std::memory_order_release);
  }
  std::pair<std::shared_ptr<const SourcePolicy>, std::vector<Service>> get() {
    std::lock_guard lock(mutex);
    return {policy, services};
  }
};

}  // namespace syngate::gw
