#include "system.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "../lib/value.hpp"

namespace tcptune::sys {

namespace {

std::string errstr(int e) { return std::strerror(e); }

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool read_all(int fd, std::string& out) {
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
  }
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool valid_key(const std::string& key) {
  // No path tricks: the key becomes a path under /proc/sys.
  if (key.empty() || key.find("..") != std::string::npos || key.front() == '.' || key.back() == '.') return false;
  return key.find('/') == std::string::npos;
}

}  // namespace

LiveValue read_sysctl(const std::string& key) {
  LiveValue v;
  if (!valid_key(key)) {
    v.error = "invalid key";
    return v;
  }
  std::string path = "/proc/sys/" + key_to_path(key);
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) {
    v.error = errno == ENOENT ? "absent in this kernel (or this netns)" : errstr(errno);
    return v;
  }
  std::string text;
  if (!read_all(fd.fd, text)) {
    v.error = "read: " + errstr(errno);
    return v;
  }
  v.present = true;
  v.value = canonical(text);
  return v;
}

std::string write_sysctl(const std::string& key, const std::string& value) {
  if (!valid_key(key)) return "invalid key";
  std::string path = "/proc/sys/" + key_to_path(key);
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.fd < 0) {
    if (errno == ENOENT) return "absent in this kernel (or this netns)";
    if (errno == EACCES || errno == EPERM) return "not writable here (" + errstr(errno) + "; host-wide keys are read-only inside a netns)";
    return "open: " + errstr(errno);
  }
  // One write at offset 0: proc handlers parse the whole value from a single write.
  std::string line = value + "\n";
  ssize_t n = ::write(fd.fd, line.data(), line.size());
  if (n < 0) return errno == EINVAL ? "the kernel refused the value (EINVAL)" : "write: " + errstr(errno);
  if (static_cast<size_t>(n) != line.size()) return "short write";
  return "";
}

std::vector<std::string> list_sysctl_dir(const std::string& dotted_prefix) {
  std::vector<std::string> out;
  for (const auto& name : list_dir("/proc/sys/" + key_to_path(dotted_prefix))) out.push_back(dotted_prefix + "." + name);
  return out;
}

std::string enter_netns(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") return "invalid netns name '" + name + "'";
  std::string path = "/var/run/netns/" + name;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) return "cannot open " + path + ": " + errstr(errno) + " (create it with `ip netns add " + name + "`)";
  if (::setns(fd.fd, CLONE_NEWNET) != 0) return "setns " + path + ": " + errstr(errno);
  return "";
}

namespace {
const char* file_kind(mode_t m) {
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a fifo";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISDIR(m)) return "a directory";
  return "not a regular file";
}
}  // namespace

std::string regular_file_error(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      // A dangling symlink would make apply create its target somewhere unexpected.
      struct stat lst {};
      if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) return path + " is a symlink to nothing: not a regular file";
      return "";
    }
    return path + ": " + errstr(errno);
  }
  if (S_ISREG(st.st_mode)) return "";
  return path + " is " + file_kind(st.st_mode) + ", not a regular file: tcptune neither reads nor replaces it";
}

FileData read_file(const std::string& path) {
  FileData d;
  if (auto e = regular_file_error(path); !e.empty()) {
    d.exists = true;
    d.error = e;
    return d;
  }
  // O_NONBLOCK: should the path become a fifo after the check, open must not hang on it.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.fd < 0) {
    if (errno != ENOENT) d.error = path + ": " + errstr(errno);
    return d;
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) == 0) d.mode = st.st_mode & 07777;
  if (!S_ISREG(st.st_mode)) {
    d.exists = true;
    d.error = path + " is " + file_kind(st.st_mode) + ", not a regular file: tcptune neither reads nor replaces it";
    return d;
  }
  d.exists = true;
  if (!read_all(fd.fd, d.text)) d.error = path + ": read: " + errstr(errno);
  return d;
}

std::string atomic_write(const std::string& given, const std::string& text, unsigned mode) {
  // Replace the file a symlink points to, not the link (e.g. a sysctl.conf managed elsewhere).
  std::string path = given;
  struct stat lst {};
  if (::lstat(given.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    path = real_path(given);
    if (path.empty()) return "cannot resolve symlink " + given + ": " + errstr(errno);
  }
  if (auto e = regular_file_error(path); !e.empty()) return e;
  std::string tmpl = path + ".tcptune-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) return "create temporary file next to " + path + ": " + errstr(errno);
  std::string tmp(buf.data());
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return what + ": " + errstr(e);
  };
  struct stat st {};
  bool had = ::stat(path.c_str(), &st) == 0;
  if (::fchmod(fd, mode) != 0) return fail("chmod " + tmp);
  if (had && ::fchown(fd, st.st_uid, st.st_gid) != 0) return fail("chown " + tmp);
  if (!write_all(fd, text)) return fail("write " + tmp);
  if (::fsync(fd) != 0) return fail("fsync " + tmp);
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return "close " + tmp + ": " + errstr(e);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return "rename " + tmp + " -> " + path + ": " + errstr(e);
  }
  // The rename is durable only once the directory entry is.
  Fd dfd(::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.fd >= 0) ::fsync(dfd.fd);
  return "";
}

std::string remove_file(const std::string& path) {
  if (auto e = regular_file_error(path); !e.empty()) return e;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return "unlink " + path + ": " + errstr(errno);
  Fd dfd(::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.fd >= 0) ::fsync(dfd.fd);
  return "";
}

std::string make_dirs(const std::string& path, unsigned mode) {
  if (path.empty()) return "empty path";
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return "mkdir " + cur + ": " + errstr(errno);
    i = j + 1;
  }
  return "";
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) return "";
  return buf;
}

std::string lock_state_dir(const std::string& dir) {
  std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return "open " + path + ": " + errstr(errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    ::close(fd);
    return e == EWOULDBLOCK ? "another tcptune holds " + path : "lock " + path + ": " + errstr(e);
  }
  return "";  // fd stays open (and locked) until exit
}

namespace {

struct DumpCtx {
  SockScan* scan;
  bool details;
  bool v6;
};

int on_diag(const struct nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<DumpCtx*>(data);
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return MNL_CB_OK;
  const auto* m = static_cast<const struct inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));
  ctx->scan->counts.add(ctx->v6, m->idiag_state);
  if (!ctx->details) return MNL_CB_OK;
  if (m->idiag_state == 10 /* LISTEN */) {
    char addr[INET6_ADDRSTRLEN] = "?";
    ::inet_ntop(m->idiag_family, m->id.idiag_src, addr, sizeof addr);
    ListenerInfo l;
    l.local = (m->idiag_family == AF_INET6 ? "[" + std::string(addr) + "]" : std::string(addr)) + ":" +
              std::to_string(ntohs(m->id.idiag_sport));
    l.accept_queue = m->idiag_rqueue;
    l.backlog = m->idiag_wqueue;
    ctx->scan->listeners.push_back(std::move(l));
  } else if (m->idiag_state == 8 /* CLOSE_WAIT */ && m->idiag_inode != 0) {
    ctx->scan->close_wait_inodes.push_back(m->idiag_inode);
  }
  return MNL_CB_OK;
}

std::string dump_family(struct mnl_socket* nl, int family, SockScan& scan, bool details) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  unsigned seq = static_cast<unsigned>(family);
  nlh->nlmsg_seq = seq;
  auto* req = static_cast<struct inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(struct inet_diag_req_v2)));
  req->sdiag_family = static_cast<__u8>(family);
  req->sdiag_protocol = IPPROTO_TCP;
  req->idiag_states = ~0U;  // every state, TIME_WAIT and request sockets (NEW_SYN_RECV) included
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return std::string("sock_diag send: ") + errstr(errno);
  // Big reads: the kernel sizes each dump skb after the largest buffer we have asked with.
  static thread_local std::vector<char> rbuf(1 << 20);
  DumpCtx ctx{&scan, details, family == AF_INET6};
  unsigned portid = mnl_socket_get_portid(nl);
  while (true) {
    ssize_t n = mnl_socket_recvfrom(nl, rbuf.data(), rbuf.size());
    if (n < 0) return std::string("sock_diag recv: ") + errstr(errno);
    int r = mnl_cb_run(rbuf.data(), static_cast<size_t>(n), seq, portid, on_diag, &ctx);
    if (r == MNL_CB_STOP) return "";
    if (r == MNL_CB_ERROR) {
      // No IPv6 in this kernel/netns is not an error for counting.
      if (family == AF_INET6 && errno == ENOENT) return "";
      return std::string("sock_diag: ") + errstr(errno);
    }
  }
}

}  // namespace

SockScan scan_tcp(bool want_details) {
  SockScan scan;
  struct mnl_socket* nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
  if (!nl) {
    scan.error = "open NETLINK_SOCK_DIAG: " + errstr(errno);
    return scan;
  }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    scan.error = "bind NETLINK_SOCK_DIAG: " + errstr(errno);
    mnl_socket_close(nl);
    return scan;
  }
  int rcv = 4 << 20;
  ::setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  for (int fam : {AF_INET, AF_INET6}) {
    auto e = dump_family(nl, fam, scan, want_details);
    if (!e.empty()) {
      scan.error = e;
      break;
    }
  }
  mnl_socket_close(nl);
  return scan;
}

std::vector<OwnerCount> socket_owners(const std::vector<unsigned>& inodes) {
  std::unordered_set<unsigned> want(inodes.begin(), inodes.end());
  std::map<int, OwnerCount> by_pid;
  if (want.empty()) return {};
  for (const auto& p : list_dir("/proc")) {
    if (p.find_first_not_of("0123456789") != std::string::npos) continue;
    int pid = std::stoi(p);
    std::string fddir = "/proc/" + p + "/fd";
    for (const auto& f : list_dir(fddir)) {
      char link[64];
      ssize_t n = ::readlink((fddir + "/" + f).c_str(), link, sizeof link - 1);
      if (n <= 0) continue;
      link[n] = '\0';
      unsigned ino = 0;
      if (std::sscanf(link, "socket:[%u]", &ino) != 1 || !want.count(ino)) continue;
      auto& o = by_pid[pid];
      if (o.pid == 0) {
        o.pid = pid;
        auto comm = read_file("/proc/" + p + "/comm");
        o.comm = trim(comm.text);
      }
      o.count++;
    }
  }
  std::vector<OwnerCount> out;
  for (auto& [pid, o] : by_pid) out.push_back(o);
  std::sort(out.begin(), out.end(), [](const OwnerCount& a, const OwnerCount& b) { return a.count > b.count; });
  return out;
}

Counters read_counters() {
  Counters c;
  for (const char* f : {"/proc/self/net/netstat", "/proc/self/net/snmp"}) {
    auto d = read_file(f);
    for (auto& [k, v] : parse_proc_counters(d.text)) c[k] = v;
  }
  return c;
}

namespace {
sigset_t held_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}
int take_pending(const sigset_t& set) {
  struct timespec zero {};
  int sig = ::sigtimedwait(&set, nullptr, &zero);
  return sig > 0 ? sig : 0;
}
}  // namespace

HeldSignals::HeldSignals() {
  sigset_t set = held_set();
  ::sigprocmask(SIG_BLOCK, &set, &old_mask_);
}

int HeldSignals::finish() {
  if (!active_) return 0;
  active_ = false;
  int sig = take_pending(held_set());
  ::sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
  return sig;
}

HeldSignals::~HeldSignals() { finish(); }

int sleep_unless_signalled(double seconds) {
  sigset_t set = held_set(), old;
  ::sigprocmask(SIG_BLOCK, &set, &old);
  auto ns = static_cast<long long>(seconds * 1e9);
  struct timespec left {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  int sig = 0;
  while (true) {
    auto start = std::chrono::steady_clock::now();
    int r = ::sigtimedwait(&set, nullptr, &left);
    if (r > 0) {
      sig = r;
      break;
    }
    if (errno != EINTR) break;  // EAGAIN: the time is up
    auto spent = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
    long long rest = static_cast<long long>(left.tv_sec) * 1000000000 + left.tv_nsec - spent;
    if (rest <= 0) break;
    left = {static_cast<time_t>(rest / 1000000000), static_cast<long>(rest % 1000000000)};
  }
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  return sig;
}

}  // namespace tcptune::sys
