#include "sender.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace syngate::gw {

namespace {
constexpr size_t kArenaBytes = 256 * 1024;
constexpr size_t kMaxBatch = 256;

int open_raw(int family, uint32_t mark, uint32_t sndbuf) {
  int fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) {
    int e = errno;
    throw std::runtime_error(std::string("raw socket (") + (family == AF_INET ? "IPv4" : "IPv6") +
                             "): " + std::strerror(e) +
                             (e == EPERM ? " (syngate needs CAP_NET_RAW)" : ""));
  }
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    int e = errno;
    close(fd);
    throw std::runtime_error(std::string("SO_MARK on the raw socket: ") + std::strerror(e) +
                             " (syngate needs CAP_NET_ADMIN)");
  }
  int snd = static_cast<int>(sndbuf);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  }
  return fd;
}
}  // namespace

RawSender::RawSender(uint32_t mark, uint32_t sndbuf, bool need_v4, bool need_v6)
    : arena_(kArenaBytes) {
  if (need_v4) fd4_ = open_raw(AF_INET, mark, sndbuf);
  if (need_v6) {
    try {
      fd6_ = open_raw(AF_INET6, mark, sndbuf);
    } catch (...) {
      if (fd4_ >= 0) close(fd4_);
      throw;
    }
  }
  entries_.reserve(kMaxBatch);
  msgs_.resize(kMaxBatch);
  iov_.resize(kMaxBatch);
  names_.resize(kMaxBatch);
}

RawSender::~RawSender() {
  if (fd4_ >= 0) close(fd4_);
  if (fd6_ >= 0) close(fd6_);
}

void RawSender::send(std::span<const uint8_t> packet) {
  if (packet.empty()) return;
  bool v6 = (packet[0] >> 4) == 6;
  if ((v6 && packet.size() < 40) || (!v6 && packet.size() < 20) || (v6 ? fd6_ : fd4_) < 0) {
    ++errors;
    return;
  }
  if (used_ + packet.size() > arena_.size() || entries_.size() == kMaxBatch) flush();
  if (packet.size() > arena_.size()) {
    ++errors;
    return;
  }
  std::memcpy(arena_.data() + used_, packet.data(), packet.size());
  entries_.push_back({used_, packet.size(), v6});
  used_ += packet.size();
}

void RawSender::flush_family(bool v6) {
  size_t n = 0;
  for (const Entry& e : entries_) {
    if (e.v6 != v6) continue;
    const uint8_t* p = arena_.data() + e.offset;
    std::memset(&names_[n], 0, sizeof(sockaddr_storage));
    socklen_t namelen;
    if (v6) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&names_[n]);
      sa->sin6_family = AF_INET6;
      std::memcpy(&sa->sin6_addr, p + 24, 16);  // the route is chosen by the destination
      namelen = sizeof(sockaddr_in6);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&names_[n]);
      sa->sin_family = AF_INET;
      std::memcpy(&sa->sin_addr, p + 16, 4);
      namelen = sizeof(sockaddr_in);
    }
    iov_[n] = {const_cast<uint8_t*>(p), e.length};
    std::memset(&msgs_[n], 0, sizeof(mmsghdr));
    msgs_[n].msg_hdr.msg_name = &names_[n];
    msgs_[n].msg_hdr.msg_namelen = namelen;
    msgs_[n].msg_hdr.msg_iov = &iov_[n];
    msgs_[n].msg_hdr.msg_iovlen = 1;
    ++n;
  }
  int fd = v6 ? fd6_ : fd4_;
  size_t i = 0;
  while (i < n) {
    int r = sendmmsg(fd, msgs_.data() + i, static_cast<unsigned>(n - i), 0);
    if (r > 0) {
      i += static_cast<size_t>(r);
      sent += static_cast<uint64_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      // The message at i failed (unreachable, filtered by an OUTPUT rule, too big): skip it.
      ++errors;
      last_errno = errno;
      ++i;
    }
  }
}

void RawSender::flush() {
  if (entries_.empty()) return;
  bool any4 = false, any6 = false;
  for (const Entry& e : entries_) (e.v6 ? any6 : any4) = true;
  if (any4) flush_family(false);
  if (any6) flush_family(true);
  entries_.clear();
  used_ = 0;
}

}  // namespace syngate::gw
