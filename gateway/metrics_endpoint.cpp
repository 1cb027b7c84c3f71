#include "metrics_endpoint.hpp"
#include "socket_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <spdlog/spdlog.h>
#include <string_view>
#include <thread>
#include <vector>

namespace syngate::gw {

namespace {

using Clock = std::chrono::steady_clock;

struct Connection {
  int fd = -1;
  Clock::time_point deadline;
  std::string request;
  std::string response;  // non-empty once the request is answered
  size_t sent = 0;
};

std::string http_response(int status, std::string_view reason, std::string_view content_type,
                          std::string_view body, bool head) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                  "\r\nContent-Type: " + std::string(content_type) +
                  "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (!head) r += body;
  return r;
}

}  // namespace

struct MetricsEndpoint::Impl {
  std::string host;
  uint16_t port = 0;
  Render render;
  MetricsEndpointLimits limits;
  int stop_fd = -1;
  int listen_fd = -1;
  std::atomic<uint16_t> bound_port{0};
  std::string last_bind_error;
  std::deque<Connection> connections;  // oldest first
  std::thread thread;

  std::string address() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }

  // One attempt to listen; on failure, says why (once per distinct reason).
  void try_listen() {
    sockaddr_storage ss;
    const socklen_t len = socket_address(host, port, ss);
    std::string why;
    int fd = -1;
    if (len == 0) {
      why = "not a literal IPv4 or IPv6 address";
    } else if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
      why = std::string("socket: ") + std::strerror(errno);
    } else {
      // SO_REUSEADDR only lets a restart bind over its predecessor's TIME_WAIT connections; it
      // never shares a port another socket listens on (SO_REUSEPORT would).
      const int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        why = std::string("bind: ") + std::strerror(errno);
      } else if (listen(fd, 128) != 0) {
        why = std::string("listen: ") + std::strerror(errno);
      }
    }
    if (why.empty()) {
      sockaddr_storage got{};
      socklen_t got_len = sizeof got;
      getsockname(fd, reinterpret_cast<sockaddr*>(&got), &got_len);
      const uint16_t p = ntohs(got.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&got)->sin6_port
                                                         : reinterpret_cast<sockaddr_in*>(&got)->sin_port);
      listen_fd = fd;
      bound_port.store(p);
      if (!last_bind_error.empty()) spdlog::info("metrics endpoint: listening on {} now", address());
      last_bind_error.clear();
      return;
    }
    if (fd >= 0) close(fd);
    if (why != last_bind_error) {
      spdlog::error("metrics endpoint {}: cannot listen ({}); retrying every {} ms, the gateway runs on "
                    "without metrics. Another process holding the port: ss -ltnp 'sport = :{}'",
                    address(), why, limits.bind_retry.count(), port);
    }
    last_bind_error = why;
  }

  void answer(Connection& c) {
    const size_t line_end = c.request.find("\r\n");
    const std::string_view line = std::string_view(c.request).substr(0, line_end);
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) {
      c.response = http_response(400, "Bad Request", "text/plain", "bad request line\n", false);
      return;
    }
    const std::string_view method = line.substr(0, sp1);
    std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    path = path.substr(0, path.find('?'));
    const bool head = method == "HEAD";
    if (method != "GET" && !head) {
      c.response = http_response(405, "Method Not Allowed", "text/plain", "GET /metrics or /healthz\n", false);
    } else if (path == "/metrics") {
      std::string body;
      try {
        body = render();
      } catch (const std::exception& e) {
        c.response = http_response(500, "Internal Server Error", "text/plain", std::string(e.what()) + "\n", head);
        return;
      }
      c.response = http_response(200, "OK", "text/plain; version=0.0.4", body, head);
    } else if (path == "/healthz") {
      c.response = http_response(200, "OK", "text/plain", "ok\n", head);
    } else {
      c.response = http_response(404, "Not Found", "text/plain", "GET /metrics or /healthz\n", head);
    }
  }

  // Reads what is there; answers once the headers are complete. False: close the connection.
  bool on_readable(Connection& c) {
    char buf[4096];
    for (;;) {
      const ssize_t n = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        return false;
      }
      c.request.append(buf, static_cast<size_t>(n));
      if (c.request.find("\r\n\r\n") != std::string::npos) {
        answer(c);
        return true;
      }
      if (c.request.size() > limits.max_request_bytes) {
        c.response = http_response(431, "Request Header Fields Too Large", "text/plain", "request too large\n", false);
        return true;
      }
    }
    return true;
  }

  // Sends what the socket takes. False: done or failed, close the connection.
  static bool on_writable(Connection& c) {
    while (c.sent < c.response.size()) {
      const ssize_t n = send(c.fd, c.response.data() + c.sent, c.response.size() - c.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        return false;
      }
      c.sent += static_cast<size_t>(n);
    }
    return false;
  }

  void accept_all() {
    for (;;) {
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
          spdlog::warn("metrics endpoint: cannot accept: {}", std::strerror(errno));
        }
        return;  // EAGAIN, or a transient error; poll tells again
      }
      if (connections.size() >= limits.max_connections) {
        // One that is being answered is about to be done; one still sending its request may
        // never be.
        auto victim = std::find_if(connections.begin(), connections.end(),
                                   [](const Connection& c) { return c.response.empty(); });
        if (victim == connections.end()) victim = connections.begin();
        close(victim->fd);
        connections.erase(victim);
      }
      Connection c;
      c.fd = fd;
      c.deadline = Clock::now() + limits.deadline;
      connections.push_back(std::move(c));
    }
  }

  void run() {
    auto next_bind = Clock::now();
    std::vector<pollfd> fds;
    for (;;) {
      auto now = Clock::now();
      if (listen_fd < 0 && now >= next_bind) {
        try_listen();
        if (listen_fd < 0) next_bind = now + limits.bind_retry;
      }
      for (auto it = connections.begin(); it != connections.end();) {
        if (it->deadline <= now) {
          close(it->fd);
          it = connections.erase(it);
        } else {
          ++it;
        }
      }
      Clock::time_point wake = listen_fd < 0 ? next_bind : now + std::chrono::seconds(60);
      fds.clear();
      fds.push_back({stop_fd, POLLIN, 0});
      fds.push_back({listen_fd, POLLIN, 0});  // ignored by poll while -1
      for (const Connection& c : connections) {
        fds.push_back({c.fd, static_cast<short>(c.response.empty() ? POLLIN : POLLOUT), 0});
        wake = std::min(wake, c.deadline);
      }
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();
      const int n = poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, wait)));
      if (n < 0 && errno != EINTR) {
        spdlog::error("metrics endpoint: poll: {}", std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (n <= 0) continue;
      if (fds[0].revents) return;
      // Connections first (they were polled), then new ones, which may close the oldest.
      size_t i = 2;
      for (auto it = connections.begin(); it != connections.end(); ++i) {
        const short ev = fds[i].revents;
        bool keep = true;
        if (ev & (POLLERR | POLLNVAL)) {
          keep = false;
        } else if (ev & (POLLIN | POLLHUP)) {
          keep = on_readable(*it);
          if (keep && !it->response.empty()) keep = on_writable(*it);
        } else if (ev & POLLOUT) {
          keep = on_writable(*it);
        }
        if (keep) {
          ++it;
        } else {
          close(it->fd);
          it = connections.erase(it);
        }
      }
      if (fds[1].revents & POLLIN) accept_all();
    }
  }
};

MetricsEndpoint::MetricsEndpoint(std::string host, uint16_t port, Render render, MetricsEndpointLimits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->render = std::move(render);
  impl_->limits = limits;
  impl_->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->stop_fd < 0) throw std::runtime_error(std::string("metrics endpoint: eventfd: ") + std::strerror(errno));
  Impl* p = impl_.get();
  // Whatever goes wrong here (memory, a bug) costs the metrics, never the process.
  impl_->thread = std::thread([p] {
    for (;;) {
      try {
        p->run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("metrics endpoint: {}; closing its connections and going on", e.what());
        for (const Connection& c : p->connections) close(c.fd);
        p->connections.clear();
        pollfd stop{p->stop_fd, POLLIN, 0};
        if (poll(&stop, 1, 1000) > 0) return;
      }
    }
  });
}

MetricsEndpoint::~MetricsEndpoint() {
  const uint64_t one = 1;
  if (write(impl_->stop_fd, &one, sizeof one) < 0) {
    // An eventfd write fails only on overflow, which one write cannot cause.
  }
  impl_->thread.join();
  for (const Connection& c : impl_->connections) close(c.fd);
  if (impl_->listen_fd >= 0) close(impl_->listen_fd);
  close(impl_->stop_fd);
}

uint16_t MetricsEndpoint::listening_port() const noexcept { return impl_->bound_port.load(); }

}  // namespace syngate::gw
