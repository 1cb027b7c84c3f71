#include "tx.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
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
    sleep_until_ns(now_ns() + 10'000'000);
  }
  throw std::runtime_error("cannot resolve the MAC of next hop " + format_ipv4(e.next_hop) + " on " + e.iface +
                           " (is it up? give --dst-mac to skip the lookup)");
}

namespace {
constexpr unsigned kRingFrameSize = 256;   // TPACKET_ALIGNMENT multiple; holds header + a flood frame
constexpr unsigned kRingBlockSize = 1 << 16;
constexpr unsigned kRingBlocks = 16;       // 4096 frames
constexpr size_t kRingDataOffset = TPACKET2_HDRLEN - sizeof(sockaddr_ll);
}  // namespace

PacketSocket::PacketSocket(int ifindex, int sndbuf, Method method) {
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
  if (method != Method::Ring) return;
  // The ring must be set up before the socket is used; if any step fails, sendmmsg still works.
  const int version = TPACKET_V2;
  tpacket_req req{};
  req.tp_block_size = kRingBlockSize;
  req.tp_block_nr = kRingBlocks;
  req.tp_frame_size = kRingFrameSize;
  req.tp_frame_nr = kRingBlockSize / kRingFrameSize * kRingBlocks;
  if (::setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0 ||
      ::setsockopt(fd_, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0)
    return;
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

size_t PacketSocket::send_batch(uint8_t* const* frames, const size_t* lens, size_t n) {
  if (!ring_) return send_mmsg(frames, lens, n);
  size_t accepted = 0, done = 0;
  while (done < n) {
    // Runs of frames that fit a ring slot go through the ring, the rest through sendmmsg.
    size_t run = 0;
    const bool fits = lens[done] <= kRingFrameSize - kRingDataOffset;
    while (done + run < n && (lens[done + run] <= kRingFrameSize - kRingDataOffset) == fits) ++run;
    accepted += fits ? send_ring(frames + done, lens + done, run) : send_mmsg(frames + done, lens + done, run);
    done += run;
  }
  return accepted;
}

size_t PacketSocket::send_ring(uint8_t* const* frames, const size_t* lens, size_t n) {
  size_t accepted = 0, done = 0;
  while (done < n) {
    size_t queued = 0;
    const size_t first = ring_next_;
    while (done + queued < n && queued < ring_frames_) {
      auto* hdr = reinterpret_cast<tpacket2_hdr*>(ring_ + ring_next_ * kRingFrameSize);
      // A blocking send() waits for its frames to complete, so a slot is normally free again;
      // a slot still owned by the kernel ends this round.
      if (__atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) break;
      std::memcpy(reinterpret_cast<uint8_t*>(hdr) + kRingDataOffset, frames[done + queued], lens[done + queued]);
      hdr->tp_len = static_cast<uint32_t>(lens[done + queued]);
      __atomic_store_n(&hdr->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
      ring_next_ = (ring_next_ + 1) % ring_frames_;
      ++queued;
    }
    if (::send(fd_, nullptr, 0, 0) < 0 && errno != EINTR) last_errno_ = errno;
    // Count what the kernel took; frames it refused come back as WRONG_FORMAT or stay queued.
    for (size_t i = 0; i < queued; ++i) {
      auto* hdr = reinterpret_cast<tpacket2_hdr*>(ring_ + ((first + i) % ring_frames_) * kRingFrameSize);
      const uint32_t st = __atomic_load_n(&hdr->tp_status, __ATOMIC_ACQUIRE);
      if (st == TP_STATUS_AVAILABLE || st == TP_STATUS_SENDING) {
        ++accepted;
      } else if (st == TP_STATUS_WRONG_FORMAT) {
        ++errors_;
        __atomic_store_n(&hdr->tp_status, TP_STATUS_AVAILABLE, __ATOMIC_RELEASE);
      } else {
        ++accepted;  // still SEND_REQUEST: it goes out with the next send()
      }
    }
    if (queued == 0) {  // every slot busy: give the kernel a moment
      sleep_until_ns(now_ns() + 50'000);
      continue;
    }
    done += queued;
  }
  return accepted;
}

size_t PacketSocket::send_mmsg(uint8_t* const* frames, const size_t* lens, size_t n) {
  constexpr size_t kMax = 256;
  iovec iov[kMax];
  mmsghdr msgs[kMax];
  size_t done = 0;
  size_t accepted = 0;
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
      // The first frame was refused (ENOBUFS from a full device queue, EMSGSIZE, ...):
      // count it and move on rather than spin on it.
      last_errno_ = errno;
      ++errors_;
      ++done;
      continue;
    }
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
