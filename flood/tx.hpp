// The generator's transmit path: an AF_PACKET socket on one interface, frames handed to the
// driver in batches through a TPACKET_V2 ring (or sendmmsg), bypassing the qdisc. Also finds the interface and the next
// hop's MAC for a target from the current network namespace's tables.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "frame.hpp"

struct tpacket2_hdr;  // linux/if_packet.h

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
// The same for an IPv6 target: /proc/net/ipv6_route, and the neighbour table over netlink.
Egress resolve_egress6(const Ip6& target, const std::string& iface, const std::string& dst_mac);

class PacketSocket {
 public:
  enum class Method { Ring, Mmsg };
  // Opens the socket bound to `ifindex`, with PACKET_QDISC_BYPASS and a send buffer of
  // `sndbuf` bytes (SO_SNDBUFFORCE, falling back to SO_SNDBUF without CAP_NET_ADMIN). On veth
  // the transmit work runs on the sender's CPU, so a small buffer throttles the flood itself.
  // Frames outside [Ethernet header, max_frame] bytes are refused (counted in errors()).
  // Ring: a TPACKET_V2 transmit ring (frames written to shared memory, one send() per batch,
  // no per-frame msghdr copies); frames larger than a ring slot fall back to sendmmsg, and so
  // does everything when the kernel refuses the ring.
  PacketSocket(int ifindex, int sndbuf, size_t max_frame, Method method = Method::Ring);
  ~PacketSocket();
  PacketSocket(const PacketSocket&) = delete;
  PacketSocket& operator=(const PacketSocket&) = delete;

  // Sends frames[0..n) (each `lens[i]` bytes) with as few syscalls as possible. Returns how
  // many the kernel took during this call. A device whose queue is full is waited for (up to
  // 10 ms per frame), as a NIC's transmit ring pushes back; frames refused for good are
  // counted in errors() and not retried. Ring frames the kernel has not taken yet are counted
  // by a later call or by finish().
  size_t send_batch(uint8_t* const* frames, const size_t* lens, size_t n);
  // Waits up to `timeout_ns` for the ring's queued frames to be taken and returns how many
  // were; the rest count as errors. Call once, after the last send_batch.
  size_t finish(uint64_t timeout_ns = 250'000'000);
  // After a stop: counts what the kernel already took and returns it, without handing it the
  // frames still queued in the ring (closing the socket drops them; counted in discarded()).
  // Call instead of finish().
  size_t abandon() noexcept;
  // From this time on (monotonic ns), and once a stop is requested, waits for a full device
  // queue give up: the frames not sent are neither sent nor errors.
  void set_deadline(uint64_t deadline_ns) noexcept { deadline_ = deadline_ns; }
  uint64_t discarded() const noexcept { return discarded_; }
  uint64_t errors() const noexcept { return errors_; }
  // Times the sender slept because the device's queue was full: non-zero means the device or
  // the receiver behind it, not the generator, set the pace.
  uint64_t full_waits() const noexcept { return full_waits_; }
  int sndbuf() const noexcept { return sndbuf_; }
  int last_errno() const noexcept { return last_errno_; }
  const char* method() const noexcept { return ring_ ? "tpacket_v2_ring" : "sendmmsg"; }

 private:
  void setup_ring();
  size_t ring_capacity() const noexcept;
  ::tpacket2_hdr* ring_slot(size_t index) const noexcept;
  void ring_kick() noexcept;
  size_t ring_reap() noexcept;
  size_t send_mmsg(uint8_t* const* frames, const size_t* lens, size_t n);
  size_t send_ring(uint8_t* const* frames, const size_t* lens, size_t n);
  int fd_ = -1;
  size_t max_frame_ = 0;
  uint8_t* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  size_t ring_frames_ = 0;
  size_t ring_next_ = 0;     // next slot to fill
  size_t ring_reap_ = 0;     // oldest slot not yet counted
  size_t ring_pending_ = 0;  // slots filled but not yet counted
  bool ring_vnet_ = false;
  int sndbuf_ = 0;
  bool should_give_up() const noexcept;
  uint64_t errors_ = 0;
  uint64_t discarded_ = 0;
  uint64_t deadline_ = UINT64_MAX;
  uint64_t full_waits_ = 0;
  unsigned idle_kicks_ = 0;
  int last_errno_ = 0;
};

// Monotonic clock in nanoseconds, and an absolute sleep on it.
uint64_t now_ns() noexcept;
void sleep_until_ns(uint64_t deadline) noexcept;

// Set by SIGINT and SIGTERM (install_stop_signals); every wait in the program checks it.
extern std::atomic<bool> g_stop;
bool stop_requested() noexcept;
// Handlers without SA_RESTART, so that a signal also cuts a sleep short.
void install_stop_signals();
// Sleeps until `target` (monotonic ns) in slices of at most 50 ms, returning early (false) as
// soon as a stop is requested; true when `target` was reached.
bool sleep_until_unless_stopped(uint64_t target) noexcept;

}  // namespace syngate::flood
