// What the backends' SYN-ACKs taught syngate about each service, shared by every worker of a
// gateway: the flow workers learn it (they see the backend's answer), the SYN workers read it
// when they answer a client's SYN, and the daemon copies it into the XDP program's service map.
// The rule it feeds is sg_promise_sack (syngate/spec/cookie_spec.h).
//
// Pure code: no syscalls, no clocks (the caller passes the cookie clock in ms). Lock-free reads:
// a SYN flood through a SYN worker costs one atomic load per SYN while nothing is known.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "syngate/syn_decision.hpp"

namespace syngate {

class BackendFacts {
 public:
  // How long a backend that answered without SACK-permitted keeps its clients from being
  // promised SACK. Then one client is promised it again, and its connection's SYN-ACK tells
  // whether the backend still lacks it: a backend whose operator turns SACK back on gets it used
  // within this time; one that still lacks it costs one connection per period.
  static constexpr uint32_t kLacksSackMemoryMs = 10 * 60 * 1000;
  // Services remembered; a gateway protecting more than this many backends that lack SACK
  // promises SACK to the clients of the rest (what it did before it learned anything).
  static constexpr size_t kMaxServices = 256;

  // A backend answered the SYN syngate sent for a client promised SACK: with SACK-permitted or
  // without.
  void backend_answered(const Service& service, bool sack_permitted, uint32_t now_ms) noexcept;
  // SG_SERVICE_* flags (cookie_spec.h) for the service at now_ms, without SG_SERVICE_PROTECTED.
  uint32_t service_flags(const Service& service, uint32_t now_ms) const noexcept;
  // Forgets everything. Not while other threads use it (Engine::reset, on an engine that owns it).
  void clear() noexcept;

 private:
  struct Slot {
    Service service;
    // When the backend last answered without SACK-permitted (ms | 1, so 0 means "has SACK").
    // Mutable: the one field that changes after the slot is published.
    mutable std::atomic<uint32_t> lacks_sack_since{0};
  };
  const Slot* find(const Service& service) const noexcept;
  std::mutex insert_mutex_;
  std::array<Slot, kMaxServices> slots_{};
  std::atomic<size_t> used_{0};
};

}  // namespace syngate
