// The generator's transmit path: an AF_PACKET socket on one interface, frames handed to the
// driver in batches with sendmmsg, bypassing the qdisc. Also finds the interface and the next
// hop's MAC for a target from the current network namespace's tables.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "frame.hpp"

namespace syngate::flood {

struct Egress {
  std::string iface;
  int ifindex = 0;
  int mtu = 1500;
  Mac src_mac{};
  Mac dst_mac{};
  uint32_t next_hop = 0;
};

// Resolves interface, source MAC and next-hop MAC for `target` (host order). `iface` and
// `dst_mac` override the lookups when non-empty. May send one UDP datagram to the target's
// discard port to make the kernel resolve the neighbour. Throws std::runtime_error with a
// message an operator can act on.
Egress resolve_egress(uint32_t target, const std::string& iface, const std::string& dst_mac);

class PacketSocket {
 public:
  enum class Method { Ring, Mmsg };
  // Opens the socket bound to `ifindex`, with PACKET_QDISC_BYPASS and a send buffer of
  // `sndbuf` bytes (SO_SNDBUFFORCE, falling back to SO_SNDBUF without CAP_NET_ADMIN). On veth
  // the transmit work runs on the sender's CPU, so a small buffer throttles the flood itself.
  // Ring: a TPACKET_V2 transmit ring (frames written to shared memory, one send() per batch,
  // no per-frame msghdr copies); frames larger than the ring slot fall back to sendmmsg.
  PacketSocket(int ifindex, int sndbuf, Method method = Method::Mmsg);
  ~PacketSocket();
  PacketSocket(const PacketSocket&) = delete;
  PacketSocket& operator=(const PacketSocket&) = delete;

  // Sends frames[0..n) (each `lens[i]` bytes) with as few syscalls as possible. Returns the
  // number the kernel accepted; frames it refused are counted in errors() and not retried, so
  // the caller's rate accounting stays simple and honest.
  size_t send_batch(uint8_t* const* frames, const size_t* lens, size_t n);
  uint64_t errors() const noexcept { return errors_; }
  int sndbuf() const noexcept { return sndbuf_; }
  int last_errno() const noexcept { return last_errno_; }
  const char* method() const noexcept { return ring_ ? "tpacket_v2_ring" : "sendmmsg"; }

 private:
  size_t send_mmsg(uint8_t* const* frames, const size_t* lens, size_t n);
  size_t send_ring(uint8_t* const* frames, const size_t* lens, size_t n);
  int fd_ = -1;
  uint8_t* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  size_t ring_frames_ = 0;
  size_t ring_next_ = 0;
  int sndbuf_ = 0;
  uint64_t errors_ = 0;
  int last_errno_ = 0;
};

// Monotonic clock in nanoseconds, and an absolute sleep on it.
uint64_t now_ns() noexcept;
void sleep_until_ns(uint64_t deadline) noexcept;

}  // namespace syngate::flood
