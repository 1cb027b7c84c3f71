#include "tx.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <endian.h>
#include <linux/if_packet.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "netinfo.hpp"

namespace syngate::flood {

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Makes the kernel resolve the next hop: any datagram routed that way does it.
void poke_neighbour(uint32_t target) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(9);  // discard
  sa.sin_addr.s_addr = htonl(target);
  const char byte = 0;
  (void)::sendto(fd, &byte, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::close(fd);
}

void poke_neighbour6(const Ip6& target) {
  const int fd = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(9);  // discard
  std::memcpy(&sa.sin6_addr, target.data(), 16);
  const char byte = 0;
  (void)::sendto(fd, &byte, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::close(fd);
}

// The link-layer address of a usable IPv6 neighbour entry for `ip` on `ifindex`, from an
// RTM_GETNEIGH dump (IPv6 has no /proc table like /proc/net/arp).
std::optional<Mac> find_neighbour6(const Ip6& ip, int ifindex) {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr nh;
    ndmsg nd;
  } req{};
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_GETNEIGH;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.nd.ndm_family = AF_INET6;
  std::optional<Mac> found;
  if (::send(fd, &req, sizeof req, 0) < 0) {
    ::close(fd);
    return std::nullopt;
  }
  constexpr uint16_t kUsable = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
  std::vector<char> buf(1 << 16);
  for (bool done = false; !done;) {
    const ssize_t got = ::recv(fd, buf.data(), buf.size(), 0);
    if (got <= 0) break;
    // NLMSG_OK compares the header's unsigned length with a signed remainder (-Wsign-compare
    // under clang): the walk is spelled out instead.
    const auto message_at = [&](size_t off) -> const nlmsghdr* {
      if (off + sizeof(nlmsghdr) > static_cast<size_t>(got)) return nullptr;
      const auto* nh = reinterpret_cast<const nlmsghdr*>(buf.data() + off);
      return nh->nlmsg_len >= sizeof(nlmsghdr) && nh->nlmsg_len <= static_cast<size_t>(got) - off ? nh : nullptr;
    };
    for (size_t off = 0; const nlmsghdr* nh = message_at(off); off += NLMSG_ALIGN(nh->nlmsg_len)) {
      if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) {
        done = true;
        break;
      }
      if (nh->nlmsg_type != RTM_NEWNEIGH) continue;
      const auto* nd = static_cast<const ndmsg*>(NLMSG_DATA(nh));
      if (nd->ndm_ifindex != ifindex || !(nd->ndm_state & kUsable)) continue;
      const uint8_t* dst = nullptr;
      const uint8_t* lladdr = nullptr;
      int len = static_cast<int>(RTM_PAYLOAD(nh));
      for (auto* a = reinterpret_cast<rtattr*>(RTM_RTA(nd)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == NDA_DST && RTA_PAYLOAD(a) == 16) dst = static_cast<const uint8_t*>(RTA_DATA(a));
        if (a->rta_type == NDA_LLADDR && RTA_PAYLOAD(a) == 6) lladdr = static_cast<const uint8_t*>(RTA_DATA(a));
      }
      if (dst && lladdr && std::memcmp(dst, ip.data(), 16) == 0) {
        Mac m{};
        std::memcpy(m.data(), lladdr, 6);
        found = m;
      }
    }
  }
  ::close(fd);
  return found;
}

// Interface index, MAC and MTU of `e.iface`.
void read_interface(Egress& e) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  ifreq ifr{};
  if (e.iface.size() >= IFNAMSIZ) {
    ::close(fd);
    throw std::runtime_error("interface name too long: " + e.iface);
  }
  std::memcpy(ifr.ifr_name, e.iface.c_str(), e.iface.size() + 1);
  if (::ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
    ::close(fd);
    throw std::runtime_error(errno_text("no interface '" + e.iface + "'"));
  }
  e.ifindex = ifr.ifr_ifindex;
  if (::ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
    ::close(fd);
    throw std::runtime_error(errno_text("cannot read the MAC of " + e.iface));
  }
  std::memcpy(e.src_mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  if (::ioctl(fd, SIOCGIFMTU, &ifr) == 0) e.mtu = ifr.ifr_mtu;
  ::close(fd);
}

}  // namespace

uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_until_ns(uint64_t deadline) noexcept {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(deadline / 1'000'000'000ULL);
  ts.tv_nsec = static_cast<long>(deadline % 1'000'000'000ULL);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

std::atomic<bool> g_stop{false};

bool stop_requested() noexcept { return g_stop.load(std::memory_order_relaxed); }

namespace {
void on_stop_signal(int) { g_stop.store(true); }
}  // namespace

void install_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: clock_nanosleep and epoll_wait return EINTR
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool sleep_until_unless_stopped(uint64_t target) noexcept {
  // A signal landing between the check and the sleep is noticed at the end of the slice.
  constexpr uint64_t kSlice = 50'000'000;
  for (;;) {
    if (stop_requested()) return false;
    const uint64_t now = now_ns();
    if (now >= target) return true;
    const uint64_t until = std::min(target, now + kSlice);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(until / 1'000'000'000ULL);
    ts.tv_nsec = static_cast<long>(until % 1'000'000'000ULL);
    (void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
  }
}

Egress resolve_egress(uint32_t target, const std::string& iface, const std::string& dst_mac) {
  Egress e;
  const auto route = pick_route(read_file("/proc/net/route"), target);
  if (iface.empty()) {
    if (!route)
      throw std::runtime_error("no route to " + format_ipv4(target) +
                               " in this network namespace (give --iface and --dst-mac)");
    e.iface = route->iface;
  } else {
    e.iface = iface;
  }
  e.next_hop = (route && route->iface == e.iface) ? route->next_hop : target;

  read_interface(e);

  if (!dst_mac.empty()) {
    const auto mac = parse_mac(dst_mac);
    if (!mac) throw std::runtime_error("bad --dst-mac '" + dst_mac + "' (expected aa:bb:cc:dd:ee:ff)");
    e.dst_mac = *mac;
    return e;
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (const auto mac = find_neighbour(read_file("/proc/net/arp"), e.next_hop, e.iface)) {
      e.dst_mac = *mac;
      return e;
    }
    if (attempt % 20 == 0) poke_neighbour(target);
    if (!sleep_until_unless_stopped(now_ns() + 10'000'000)) throw std::runtime_error("interrupted while resolving the next hop");
  }
  throw std::runtime_error("cannot resolve the MAC of next hop " + format_ipv4(e.next_hop) + " on " + e.iface +
                           " (is it up? give --dst-mac to skip the lookup)");
}

Egress resolve_egress6(const Ip6& target, const std::string& iface, const std::string& dst_mac) {
  Egress e;
  const auto route = pick_route6(read_file("/proc/net/ipv6_route"), target);
  if (iface.empty()) {
    if (!route)
      throw std::runtime_error("no route to " + format_ipv6(target) +
                               " in this network namespace (give --iface and --dst-mac)");
    e.iface = route->iface;
  } else {
    e.iface = iface;
  }
  const Ip6 next_hop = (route && route->iface == e.iface) ? route->next_hop : target;
  read_interface(e);
  if (!dst_mac.empty()) {
    const auto mac = parse_mac(dst_mac);
    if (!mac) throw std::runtime_error("bad --dst-mac '" + dst_mac + "' (expected aa:bb:cc:dd:ee:ff)");
    e.dst_mac = *mac;
    return e;
  }
  for (int attempt = 0; attempt < 300; ++attempt) {  // up to 3 s: DAD and NDP take longer than ARP
    if (const auto mac = find_neighbour6(next_hop, e.ifindex)) {
      e.dst_mac = *mac;
      return e;
    }
    if (attempt % 20 == 0) poke_neighbour6(target);
    if (!sleep_until_unless_stopped(now_ns() + 10'000'000))
      throw std::runtime_error("interrupted while resolving the next hop");
  }
  throw std::runtime_error("cannot resolve the MAC of next hop " + format_ipv6(next_hop) + " on " + e.iface +
                           " (is it up? give --dst-mac to skip the lookup)");
}

namespace {
constexpr unsigned kRingFrameSize = 256;   // TPACKET_ALIGNMENT multiple; holds header + a flood frame
constexpr unsigned kRingBlockSize = 1 << 16;
constexpr unsigned kRingBlocks = 16;       // 4096 frames
constexpr size_t kRingDataOffset = TPACKET2_HDRLEN - sizeof(sockaddr_ll);
constexpr unsigned kSpinKicks = 64;
// How long the sender sleeps when the device's queue is full, before it tries again.
constexpr uint64_t kFullQueueWaitNs = 20'000;

// struct virtio_net_hdr (linux/virtio_net.h, which C++ cannot include: it has a member named
// `class`). Fields are little-endian on a little-endian host; all zero means "no offload".
struct VirtioNetHeader {
  uint8_t flags = 0;
  uint8_t gso_type = 0;  // VIRTIO_NET_HDR_GSO_NONE
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
static_assert(sizeof(VirtioNetHeader) == 10);
}  // namespace

PacketSocket::PacketSocket(int ifindex, int sndbuf, size_t max_frame, Method method) : max_frame_(max_frame) {
  // Protocol 0: we only transmit, so the socket never receives a copy of the traffic.
  fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(errno_text("AF_PACKET socket (needs CAP_NET_RAW)"));
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex;
  sll.sll_protocol = 0;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    const std::string msg = errno_text("bind AF_PACKET");
    ::close(fd_);
    throw std::runtime_error(msg);
  }
  const int one = 1;
  (void)::setsockopt(fd_, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  if (::setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
    (void)::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  socklen_t len = sizeof sndbuf_;
  (void)::getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf_, &len);
  if (method == Method::Ring) setup_ring();
}

void PacketSocket::setup_ring() {
  // Every option must be set before the ring exists; if any step fails, sendmmsg still works.
  const int one = 1;
  const int version = TPACKET_V2;
  if (::setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) return;
  // With a virtio-net header whose hdr_len covers the whole frame, tpacket_snd copies the
  // frame into the skb's linear area instead of attaching the ring page as a fragment. On veth
  // such a fragment is copied out again (skb_copy_ubufs, a page allocation per frame), and a
  // receiver must pull the headers into the linear area: measured, that made the ring half as
  // fast as sendmmsg; with the header it is twice as fast.
  ring_vnet_ = ::setsockopt(fd_, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) == 0;
  // A frame the kernel refuses would otherwise stay WRONG_FORMAT at the ring's head and wedge
  // every frame behind it; frames are checked against the slot size and the MTU before they
  // are queued, so this only guards against the unexpected.
  (void)::setsockopt(fd_, SOL_PACKET, PACKET_LOSS, &one, sizeof one);
  tpacket_req req{};
  req.tp_block_size = kRingBlockSize;
  req.tp_block_nr = kRingBlocks;
  req.tp_frame_size = kRingFrameSize;
  req.tp_frame_nr = kRingBlockSize / kRingFrameSize * kRingBlocks;
  if (::setsockopt(fd_, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) return;
  const size_t bytes = size_t{req.tp_block_size} * req.tp_block_nr;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mem == MAP_FAILED) return;
  ring_ = static_cast<uint8_t*>(mem);
  ring_bytes_ = bytes;
  ring_frames_ = req.tp_frame_nr;
}

PacketSocket::~PacketSocket() {
  if (ring_) ::munmap(ring_, ring_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

size_t PacketSocket::ring_capacity() const noexcept {
  return kRingFrameSize - kRingDataOffset - (ring_vnet_ ? sizeof(VirtioNetHeader) : 0);
}

size_t PacketSocket::send_batch(uint8_t* const* frames, const size_t* lens, size_t n) {
  size_t accepted = 0, done = 0;
  while (done < n) {
    // Consecutive frames of one kind go out together: too short or too long for the device
    // (refused here, so the kernel never sees them), ring-sized, or for sendmmsg.
    enum class Route { Refuse, Ring, Mmsg };
    auto route = [&](size_t len) {
      if (len < kEthHeaderLen || len > max_frame_) return Route::Refuse;
      return ring_ && len <= ring_capacity() ? Route::Ring : Route::Mmsg;
    };
    const Route r = route(lens[done]);
    size_t run = 1;
    while (done + run < n && route(lens[done + run]) == r) ++run;
    switch (r) {
      case Route::Refuse: errors_ += run; last_errno_ = EMSGSIZE; break;
      case Route::Ring: accepted += send_ring(frames + done, lens + done, run); break;
      case Route::Mmsg: accepted += send_mmsg(frames + done, lens + done, run); break;
    }
    done += run;
  }
  return accepted;
}

tpacket2_hdr* PacketSocket::ring_slot(size_t index) const noexcept {
  return reinterpret_cast<tpacket2_hdr*>(ring_ + index * kRingFrameSize);
}

void PacketSocket::ring_kick() noexcept {
  // MSG_DONTWAIT: a blocking send sleeps until the last frame's skb is freed, which on veth
  // happens on the receiving side. Frames the device refused while its queue was full
  // (ENOBUFS) stay SEND_REQUEST at the ring's head and go out with the next send().
  if (::send(fd_, nullptr, 0, MSG_DONTWAIT) < 0 && errno != EINTR && errno != EAGAIN && errno != ENOBUFS)
    last_errno_ = errno;
}

size_t PacketSocket::ring_reap() noexcept {
  // The kernel takes frames strictly in ring order, so the pending ones form one run that
  // starts at ring_reap_; a frame it has taken is SENDING (skb in flight) or AVAILABLE.
  size_t taken = 0;
  while (ring_pending_ > 0) {
    tpacket2_hdr* hdr = ring_slot(ring_reap_);
    const uint32_t st = __atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE);
    if (st == TP_STATUS_SEND_REQUEST) break;
    if (st == TP_STATUS_WRONG_FORMAT) {
      ++errors_;
      __atomic_store_n(&hdr->tp_status, TP_STATUS_AVAILABLE, __ATOMIC_RELEASE);
    } else {
      ++taken;
    }
    ring_reap_ = (ring_reap_ + 1) % ring_frames_;
    --ring_pending_;
  }
  return taken;
}

size_t PacketSocket::send_ring(uint8_t* const* frames, const size_t* lens, size_t n) {
  size_t taken = 0, done = 0;
  while (done < n) {
    size_t queued = 0;
    // A slot is reused only once the kernel has released it (AVAILABLE) and it has been
    // counted, i.e. it is outside the pending run.
    while (done + queued < n && ring_pending_ < ring_frames_) {
      tpacket2_hdr* hdr = ring_slot(ring_next_);
      if (__atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) break;
      uint8_t* slot = reinterpret_cast<uint8_t*>(hdr) + kRingDataOffset;
      const size_t len = lens[done + queued];
      if (ring_vnet_) {
        VirtioNetHeader vnet;
        vnet.hdr_len = htole16(static_cast<uint16_t>(len));
        std::memcpy(slot, &vnet, sizeof vnet);
        slot += sizeof vnet;
      }
      std::memcpy(slot, frames[done + queued], len);
      hdr->tp_len = static_cast<uint32_t>(len + (ring_vnet_ ? sizeof(VirtioNetHeader) : 0));
      __atomic_store_n(&hdr->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
      ring_next_ = (ring_next_ + 1) % ring_frames_;
      ++ring_pending_;
      ++queued;
    }
    ring_kick();
    const size_t reaped = ring_reap();
    taken += reaped;
    // Nothing queued and nothing taken: the device's queue is full (or skbs of earlier frames
    // are still in flight); let it drain instead of spinning on send().
    if (queued == 0 && reaped == 0) {
      if (should_give_up()) break;
      ++full_waits_;
      if (++idle_kicks_ > kSpinKicks) sleep_until_ns(now_ns() + kFullQueueWaitNs);
    } else {
      idle_kicks_ = 0;
    }
    done += queued;
  }
  return taken;
}

bool PacketSocket::should_give_up() const noexcept { return stop_requested() || now_ns() >= deadline_; }

size_t PacketSocket::abandon() noexcept {
  if (!ring_) return 0;
  const size_t taken = ring_reap();
  discarded_ += ring_pending_;
  ring_pending_ = 0;
  return taken;
}

size_t PacketSocket::finish(uint64_t timeout_ns) {
  if (!ring_) return 0;
  size_t taken = 0;
  const uint64_t deadline = now_ns() + timeout_ns;
  while (ring_pending_ > 0) {
    ring_kick();
    taken += ring_reap();
    if (ring_pending_ == 0 || now_ns() >= deadline || stop_requested()) break;
    sleep_until_ns(now_ns() + kFullQueueWaitNs);
  }
  // Whatever is still queued never left, and closing the socket discards it.
  errors_ += ring_pending_;
  return taken;
}

size_t PacketSocket::send_mmsg(uint8_t* const* frames, const size_t* lens, size_t n) {
  constexpr size_t kMax = 256;
  // How long a frame may wait for a device whose queue is full (ENOBUFS) before it is counted
  // as an error. A NIC's transmit completions or veth's consumer normally free the queue within
  // microseconds, but the consumer is a thread that can be kept off its CPU: 10 ms lost 3 of
  // 300 000 frames once, with a second test flooding beside it on a 2-vCPU machine (CI).
  constexpr uint64_t kFullQueuePatienceNs = 250'000'000;
  iovec iov[kMax];
  mmsghdr msgs[kMax];
  size_t done = 0;
  size_t accepted = 0;
  uint64_t full_since = 0;
  while (done < n) {
    const size_t chunk = std::min(kMax, n - done);
    for (size_t i = 0; i < chunk; ++i) {
      iov[i].iov_base = frames[done + i];
      iov[i].iov_len = lens[done + i];
      std::memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int r = ::sendmmsg(fd_, msgs, static_cast<unsigned>(chunk), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS || errno == EAGAIN) {
        // The device's queue is full: the same frame is tried again once it drains.
        const uint64_t now = now_ns();
        if (full_since == 0) full_since = now;
        if (should_give_up()) break;
        if (now - full_since < kFullQueuePatienceNs) {
          ++full_waits_;
          sleep_until_ns(now + kFullQueueWaitNs);
          continue;
        }
      }
      // Refused for good (EMSGSIZE, a device gone, a queue stuck full): count it and move on
      // rather than spin on it.
      last_errno_ = errno;
      ++errors_;
      ++done;
      full_since = 0;
      continue;
    }
    full_since = 0;
    done += static_cast<size_t>(r);
    accepted += static_cast<size_t>(r);
    if (r == 0) {
      ++errors_;
      ++done;
    }
  }
  return accepted;
}

}  // namespace syngate::flood
