#include "probe.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "tx.hpp"

namespace syngate::flood {

namespace {

struct Conn {
  int fd = -1;
  size_t index = 0;  // which attempt
  uint64_t start = 0;
  bool connected = false;
  size_t sent = 0;
  std::string head;
};

double ms_between(uint64_t a, uint64_t b) { return static_cast<double>(b - a) / 1e6; }

}  // namespace

// One implementation for both families: the address to connect to and the Host header's text.
static std::vector<Attempt> run_probe_to(const ProbeConfig& cfg, const sockaddr* sa, socklen_t sa_len, const std::string& host) {
  std::vector<Attempt> attempts(cfg.count);
  std::vector<bool> done(cfg.count, false);
  const std::string request = cfg.http_path.empty()
                                  ? std::string()
                                  : "GET " + cfg.http_path + " HTTP/1.1\r\nHost: " + host +
                                        "\r\nUser-Agent: synflood-probe\r\nConnection: close\r\n\r\n";
  const bool wants_response = !request.empty() || cfg.expect_banner;
  const uint64_t timeout_ns = cfg.timeout_ms * 1'000'000ULL;

  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  std::vector<Conn> slots(cfg.concurrency);
  std::vector<size_t> free_slots;
  for (size_t i = slots.size(); i-- > 0;) free_slots.push_back(i);
  size_t launched = 0, finished = 0;


  auto finish = [&](size_t slot, Failure f) {
    Conn& c = slots[slot];
    attempts[c.index].failure = f;
    done[c.index] = true;
    ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c = Conn{};
    free_slots.push_back(slot);
    ++finished;
  };

  auto launch = [&]() {
    const size_t slot = free_slots.back();
    free_slots.pop_back();
    Conn& c = slots[slot];
    c.index = launched++;
    c.start = now_ns();
    c.fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      attempts[c.index].failure = Failure::Other;
      done[c.index] = true;
      c = Conn{};
      free_slots.push_back(slot);
      ++finished;
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = slot;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    if (::connect(c.fd, sa, sa_len) < 0 && errno != EINPROGRESS)
      finish(slot, classify_errno(errno, false));
    // A connect that completed at once still reports EPOLLOUT, handled in the loop.
  };

  auto on_connected = [&](size_t slot) {
    Conn& c = slots[slot];
    c.connected = true;
    attempts[c.index].connect_ms = ms_between(c.start, now_ns());
    if (!wants_response) {
      finish(slot, Failure::None);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | (request.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
    ev.data.u64 = slot;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  };

  auto on_writable = [&](size_t slot) {
    Conn& c = slots[slot];
    while (c.sent < request.size()) {
      const ssize_t n = ::send(c.fd, request.data() + c.sent, request.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) return;
        finish(slot, classify_errno(errno, true));
        return;
      }
      c.sent += static_cast<size_t>(n);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = slot;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  };

  auto on_readable = [&](size_t slot) {
    Conn& c = slots[slot];
    char buf[2048];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno != EAGAIN) finish(slot, classify_errno(errno, true));
      return;
    }
    if (n == 0) {
      finish(slot, Failure::Closed);
      return;
    }
    Attempt& a = attempts[c.index];
    if (a.first_byte_ms < 0) a.first_byte_ms = ms_between(c.start, now_ns());
    if (request.empty()) {  // a banner: any byte is the server speaking
      finish(slot, Failure::None);
      return;
    }
    c.head.append(buf, static_cast<size_t>(std::min<ssize_t>(n, 64)));
    const int status = http_status(c.head);
    if (status == 0) return;
    finish(slot, status >= 200 && status < 400 ? Failure::None : Failure::BadResponse);
  };

  epoll_event events[256];
  while (finished < cfg.count && !stop_requested()) {
    while (launched < cfg.count && !free_slots.empty()) launch();
    const int n = ::epoll_wait(ep, events, 256, 5);
    if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      const size_t slot = events[i].data.u64;
      if (slots[slot].fd < 0) continue;  // finished earlier in this batch
      Conn& c = slots[slot];
      if (!c.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          finish(slot, classify_errno(err, false));
          continue;
        }
        if (events[i].events & (EPOLLOUT | EPOLLIN)) on_connected(slot);
        if (slots[slot].fd < 0 || request.empty()) continue;
      }
      if (events[i].events & EPOLLOUT) on_writable(slot);
      if (slots[slot].fd >= 0 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(slot);
    }
    const uint64_t now = now_ns();
    for (size_t s = 0; s < slots.size(); ++s) {
      if (slots[s].fd >= 0 && now - slots[s].start >= timeout_ns)
        finish(s, slots[s].connected ? Failure::ResponseTimeout : Failure::ConnectTimeout);
    }
  }
  // After a stop, connections still in flight are closed and left out: they have no outcome.
  for (Conn& c : slots)
    if (c.fd >= 0) ::close(c.fd);
  ::close(ep);
  std::vector<Attempt> finished_attempts;
  finished_attempts.reserve(finished);
  for (size_t i = 0; i < attempts.size(); ++i)
    if (done[i]) finished_attempts.push_back(attempts[i]);
  return finished_attempts;
}

std::vector<Attempt> run_probe(const ProbeConfig& cfg, const Endpoint& target) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(target.port);
  sa.sin_addr.s_addr = htonl(target.ip);
  return run_probe_to(cfg, reinterpret_cast<const sockaddr*>(&sa), sizeof sa, format_ipv4(target.ip));
}

std::vector<Attempt> run_probe(const ProbeConfig& cfg, const Endpoint6& target) {
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(target.port);
  std::memcpy(&sa.sin6_addr, target.ip.data(), 16);
  return run_probe_to(cfg, reinterpret_cast<const sockaddr*>(&sa), sizeof sa, "[" + format_ipv6(target.ip) + "]");
}

}  // namespace syngate::flood
