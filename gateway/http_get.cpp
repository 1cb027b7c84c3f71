#include "http_get.hpp"
#include "socket_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

namespace syngate::gw {

namespace {

using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

// Decodes the complete chunks of a chunked body from `pos` on, appending them to `body` and
// moving `pos` past them. Returns true when the last chunk was seen; false when more bytes are
// needed; sets `error` when the coding is broken or the body too large.
bool decode_chunked(std::string_view in, size_t& pos, std::string& body, size_t max_body, std::string& error) {
  for (;;) {
    const size_t eol = in.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      if (in.size() - pos > 64) error = "bad chunked body: chunk size line too long";
      return false;
    }
    const std::string_view size_text = in.substr(pos, std::min(in.find(';', pos), eol) - pos);
    size_t size = 0;
    if (size_text.empty() || size_text.size() > 15) {
      error = "bad chunked body: chunk size \"" + std::string(size_text.substr(0, 20)) + "\"";
      return false;
    }
    for (char c : size_text) {
      const int v = std::isxdigit(static_cast<unsigned char>(c))
                        ? (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10)
                        : -1;
      if (v < 0) {
        error = "bad chunked body: chunk size \"" + std::string(size_text) + "\"";
        return false;
      }
      size = size * 16 + static_cast<size_t>(v);
    }
    if (size == 0) return true;  // trailers, if any, are not needed
    if (body.size() + size > max_body) {
      error = "body larger than " + std::to_string(max_body) + " bytes";
      return false;
    }
    const size_t data = eol + 2;
    if (in.size() < data + size + 2) return false;
    body.append(in.substr(data, size));
    pos = data + size + 2;
  }
}

}  // namespace

HttpGetResult http_get(const std::string& host, uint16_t port, const std::string& path,
                       std::chrono::milliseconds deadline, size_t max_body) {
  HttpGetResult r;
  const auto end = Clock::now() + deadline;
  sockaddr_storage ss;
  const socklen_t len = socket_address(host, port, ss);
  if (len == 0) {
    r.error = "\"" + host + "\" is not an IPv4 or IPv6 address";
    return r;
  }
  Fd s;
  s.fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) {
    r.error = std::string("socket: ") + std::strerror(errno);
    return r;
  }
  // Waits for `events` until the deadline; false (with r.error set) when it passed.
  auto wait_for = [&](short events) {
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now()).count();
      if (left <= 0) {
        r.timed_out = true;
        r.error = std::string(r.connected ? "no complete answer" : "no connection") + " within " + seconds_text(deadline);
        return false;
      }
      pollfd p{s.fd, events, 0};
      const int n = poll(&p, 1, static_cast<int>(left));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) {
        r.error = std::string("poll: ") + std::strerror(errno);
        return false;
      }
    }
  };

  if (connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) {
      r.error = std::strerror(errno);
      return r;
    }
    if (!wait_for(POLLOUT)) return r;
    int err = 0;
    socklen_t err_len = sizeof err;
    getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) {
      r.error = std::strerror(err);
      return r;
    }
  }
  r.connected = true;

  const std::string host_header = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host_header + ":" + std::to_string(port) +
                              "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(s.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(POLLOUT)) return r;
    } else if (errno != EINTR) {
      r.error = std::string("send: ") + std::strerror(errno);
      return r;
    }
  }

  constexpr size_t kMaxHead = 16 * 1024;
  std::string in;
  size_t head_end = std::string::npos;
  std::optional<size_t> content_length;
  bool chunked = false;
  size_t chunked_pos = 0;  // in the body: where the next chunk starts
  bool closed = false;
  for (;;) {
    if (head_end == std::string::npos) {
      const size_t e = in.find("\r\n\r\n");
      if (e != std::string::npos) {
        head_end = e + 4;
        const std::string_view head(in.data(), e);
        const size_t line_end = std::min(head.find("\r\n"), head.size());
        const std::string_view status_line = head.substr(0, line_end);
        if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line[8] != ' ' ||
            !std::isdigit(static_cast<unsigned char>(status_line[9]))) {
          r.error = "not an HTTP answer";
          return r;
        }
        r.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
        for (size_t pos = line_end + 2; pos < head.size();) {
          const size_t eol = std::min(head.find("\r\n", pos), head.size());
          const std::string_view line = head.substr(pos, eol - pos);
          pos = eol + 2;
          const size_t colon = line.find(':');
          if (colon == std::string_view::npos) continue;
          const std::string name = lower(line.substr(0, colon));
          std::string_view value = line.substr(colon + 1);
          while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
          if (name == "content-length") {
            content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
            if (*content_length > max_body) {
              r.error = "body of " + std::to_string(*content_length) + " bytes, more than the " +
                        std::to_string(max_body) + " accepted";
              return r;
            }
          } else if (name == "transfer-encoding") {
            chunked = lower(value).find("chunked") != std::string::npos;
          }
        }
      } else if (in.size() > kMaxHead) {
        r.error = "response headers larger than " + std::to_string(kMaxHead) + " bytes";
        return r;
      }
    }
    if (head_end != std::string::npos) {
      const std::string_view rest = std::string_view(in).substr(head_end);
      if (chunked) {
        std::string error;
        if (decode_chunked(rest, chunked_pos, r.body, max_body, error)) break;
        if (!error.empty()) {
          r.error = error;
          r.body.clear();
          return r;
        }
      } else if (content_length) {
        if (rest.size() >= *content_length) {
          r.body.assign(rest.substr(0, *content_length));
          break;
        }
      } else {
        if (rest.size() > max_body) {
          r.error = "body larger than " + std::to_string(max_body) + " bytes";
          return r;
        }
        if (closed) {
          r.body.assign(rest);
          break;
        }
      }
      // Decoded chunks are kept once: drop their encoded bytes.
      if (chunked && chunked_pos > 0) {
        in.erase(head_end, chunked_pos);
        chunked_pos = 0;
      }
    }
    if (closed) {
      r.error = "connection closed before the answer was complete";
      return r;
    }
    char buf[16384];
    const ssize_t n = recv(s.fd, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      closed = true;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(POLLIN)) return r;
    } else if (errno != EINTR) {
      r.error = std::string("recv: ") + std::strerror(errno);
      return r;
    }
  }
  r.ok = true;
  return r;
}

}  // namespace syngate::gw
