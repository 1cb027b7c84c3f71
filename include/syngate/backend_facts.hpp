// What the backends' SYN-ACKs taught syngate about each service, shared by every worker of a
// gateway: the flow workers learn it (they see the backend's answer), the SYN workers read it
// when they answer a client's SYN, the flow workers when they send a backend's SYN, and the
// daemon copies it into the XDP program's and the tc programs' service maps. The rules it feeds
// are sg_promise_sack (syngate/spec/cookie_spec.h) and the room the backend's SYN leaves for
// supplied timestamps (backend_syn_spec.h).
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
  // Services remembered; a gateway protecting more than this many backends that lack SACK or send
  // timestamps promises SACK to the clients of the rest and asks their backends for room for
  // timestamps (what it did before it learned anything).
  static constexpr size_t kMaxServices = 256;

  // A backend answered the SYN syngate sent for a client promised SACK: with SACK-permitted or
  // without.
  void backend_answered(const Service& service, bool sack_permitted, uint32_t now_ms) noexcept;
  // A backend answered the SYN syngate sent for a client that sends timestamps: with them or
  // without (the latest answer holds).
  void backend_timestamps(const Service& service, bool has_timestamps) noexcept;
  // SG_SERVICE_* flags (cookie_spec.h) for the service at now_ms, without SG_SERVICE_PROTECTED.
  uint32_t service_flags(const Service& service, uint32_t now_ms) const noexcept;
  bool has_timestamps(const Service& service) const noexcept;
  // Forgets everything. Not while other threads use it (Engine::reset, on an engine that owns it).
  void clear() noexcept;

 private:
  struct Slot {
    Service service;
    // When the backend last answered without SACK-permitted (ms | 1, so 0 means "has SACK").
    // Mutable: the one field that changes after the slot is published.
    mutable std::atomic<uint32_t> lacks_sack_since{0};
    mutable std::atomic<bool> has_timestamps{false};
  };
  const Slot* find(const Service& service) const noexcept;
  // The service's slot, added when there is none and room is left (nullptr then).
  const Slot* find_or_add(const Service& service) noexcept;
  std::mutex insert_mutex_;
  std::array<Slot, kMaxServices> slots_{};
  std::atomic<size_t> used_{0};
};

}  // namespace syngate
