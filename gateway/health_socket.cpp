#include "health_socket.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <thread>

namespace syngate::gw {

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    throw std::runtime_error(path + ": longer than a unix socket path may be (" +
                             std::to_string(sizeof a.sun_path - 1) + " bytes); shorten gateway.state_dir");
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

bool peer_uid(int fd, uid_t& uid) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  uid = cred.uid;
  return true;
}

int ms_left(Clock::time_point end) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

struct HealthSocket::Impl {
  std::string path;
  std::function<void()> sample;
  std::function<std::string()> answer;
  std::vector<uid_t> allowed;
  int listen_fd = -1;
  int stop_fd = -1;
  std::thread thread;
  uid_t last_refused = static_cast<uid_t>(-1);

  void serve_one(int fd) {
    uid_t uid = 0;
    if (!peer_uid(fd, uid) || std::find(allowed.begin(), allowed.end(), uid) == allowed.end()) {
      if (uid != last_refused) spdlog::warn("health socket: refused a client with uid {}", uid);
      last_refused = uid;
      return;
    }
    // The one request; a client that does not send it within 500 ms gets nothing.
    const auto end = Clock::now() + std::chrono::milliseconds(500);
    std::string request;
    while (request.find('\n') == std::string::npos && request.size() < 64) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, ms_left(end)) <= 0) return;
      char buf[64];
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    if (request.rfind("health\n", 0) != 0) return;
    sample();
    const std::string line = answer();
    // One short line: it fits the socket buffer, MSG_DONTWAIT never leaves the thread waiting.
    (void)send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  void loop() {
    for (;;) {
      pollfd fds[2] = {{stop_fd, POLLIN, 0}, {listen_fd, POLLIN, 0}};
      const int n = poll(fds, 2, 200);
      if (n < 0 && errno != EINTR) {
        spdlog::error("health socket: poll: {}", std::strerror(errno));
        return;
      }
      if (fds[0].revents) return;
      sample();
      if (n > 0 && (fds[1].revents & POLLIN)) {
        const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
          serve_one(fd);
          close(fd);
        }
      }
    }
  }
};

HealthSocket::HealthSocket(std::string path, std::function<void()> sample, std::function<std::string()> answer,
                           std::vector<uid_t> allowed)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = std::move(path);
  m.sample = std::move(sample);
  m.answer = std::move(answer);
  m.allowed = std::move(allowed);
  const sockaddr_un a = unix_address(m.path);
  m.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (m.listen_fd < 0) throw std::runtime_error(std::string("health socket: socket: ") + std::strerror(errno));
  // A socket left by a process that died (kill -9) is ours to replace: the directory is this
  // instance's, locked by this process.
  struct stat st;
  if (lstat(m.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(m.path.c_str());
  // 0600 from the start: fchmod on an unbound socket does not reach the file bind makes.
  const mode_t old = umask(0177);
  const int rc = bind(m.listen_fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  const int bind_errno = errno;
  umask(old);
  if (rc != 0 || listen(m.listen_fd, 16) != 0) {
    const std::string why = std::strerror(rc != 0 ? bind_errno : errno);
    close(m.listen_fd);
    throw std::runtime_error("health socket " + m.path + ": " + why);
  }
  m.stop_fd = eventfd(0, EFD_CLOEXEC);
  if (m.stop_fd < 0) {
    close(m.listen_fd);
    unlink(m.path.c_str());
    throw std::runtime_error(std::string("health socket: eventfd: ") + std::strerror(errno));
  }
  m.thread = std::thread([&m] { m.loop(); });
}

HealthSocket::~HealthSocket() {
  // Gone first, so that a check during the rest of the shutdown already fails.
  unlink(impl_->path.c_str());
  const uint64_t one = 1;
  (void)!write(impl_->stop_fd, &one, sizeof one);
  impl_->thread.join();
  close(impl_->listen_fd);
  close(impl_->stop_fd);
}

HealthQuery query_health(const std::string& path, const std::vector<uid_t>& trusted,
                         std::chrono::milliseconds deadline) {
  HealthQuery q;
  const auto end = Clock::now() + deadline;
  sockaddr_un a;
  try {
    a = unix_address(path);
  } catch (const std::exception& e) {
    q.error = e.what();
    return q;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    q.error = std::string("socket: ") + std::strerror(errno);
    return q;
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  // A unix connect to a listening socket does not wait for the server (the backlog takes it, or
  // it fails at once with EAGAIN when the backlog is full).
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    q.error = path + ": " + std::strerror(errno);
    return q;
  }
  uid_t uid = 0;
  if (!peer_uid(fd, uid)) {
    q.error = std::string("SO_PEERCRED: ") + std::strerror(errno);
    return q;
  }
  if (std::find(trusted.begin(), trusted.end(), uid) == trusted.end()) {
    q.result = HealthQuery::Result::Untrusted;
    q.error = path + " is held by uid " + std::to_string(uid) + ", neither root nor the daemon's user: not believed";
    return q;
  }
  const char request[] = "health\n";
  const char* const closed = "closed without an answer (refused, or shutting down)";
  if (send(fd, request, sizeof request - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof request - 1)) {
    // A daemon that refuses a client may close before the request is sent.
    q.error = errno == EPIPE || errno == ECONNRESET ? closed : std::string("send: ") + std::strerror(errno);
    return q;
  }
  std::string line;
  while (line.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    const int n = poll(&p, 1, ms_left(end));
    if (n == 0) {
      q.error = "no answer within " + std::to_string(deadline.count()) + " ms";
      return q;
    }
    if (n < 0 && errno == EINTR) continue;
    char buf[1024];
    const ssize_t r = n < 0 ? -1 : recv(fd, buf, sizeof buf, 0);
    if (r < 0 && errno != ECONNRESET) {
      q.error = std::string("recv: ") + std::strerror(errno);
      return q;
    }
    // A refused client's request is left unread, so the close may arrive as a reset.
    if (r == 0 || (r < 0 && errno == ECONNRESET)) {
      q.error = closed;
      return q;
    }
    line.append(buf, static_cast<size_t>(r));
    if (line.size() > 65536) {
      q.result = HealthQuery::Result::Untrusted;
      q.error = "answer longer than any health line";
      return q;
    }
  }
  q.result = HealthQuery::Result::Answered;
  q.line = line.substr(0, line.find('\n'));
  return q;
}

}  // namespace syngate::gw
