#include "flow_state.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14
#endif

namespace syngate::gw {

namespace {

constexpr const char* kInstanceFile = "instance";
constexpr const char* kDraining = "draining-services";
const std::regex kTableName(R"(flows-q(\d{1,5})\.bin)");
const std::regex kLeftover(R"(flows-q\d{1,5}\.bin\.new|draining-services\.tmp)");

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int release() {
    const int f = fd;
    fd = -1;
    return f;
  }
};

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why a directory in the state path must not be used (another user could plant, replace or
// rewrite the tables there), or empty. `owner`: the user it must belong to (this process's).
std::string dir_distrust(const struct stat& st, uid_t owner) {
  if (!S_ISDIR(st.st_mode)) return "not a directory";
  if (st.st_uid != owner) {
    return "owned by uid " + std::to_string(st.st_uid) + ", not by this process (uid " + std::to_string(owner) +
           "); chown it or choose another directory";
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return "mode " + octal_mode(st.st_mode) + " lets other users write there; run chmod 700 on it";
  }
  return {};
}

// Why a file there must not be used, or empty. A table is the daemon's alone: another user who
// could write it could rewrite live flows' sequence deltas.
std::string file_distrust(const struct stat& st, uid_t owner = geteuid()) {
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_uid != owner) return "owned by uid " + std::to_string(st.st_uid) + ", not by this process";
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) return "mode " + octal_mode(st.st_mode) + " opens it to other users";
  if (st.st_nlink != 1) return "it has " + std::to_string(st.st_nlink) + " hard links";
  return {};
}

// Opens a directory without following a symlink in its last component and checks it. With
// `create`, a missing one is made (0700).
int open_trusted_dir(int at, const std::string& name, const std::string& shown, bool create,
                     uid_t owner = geteuid()) {
  int fd = openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    if (mkdirat(at, name.c_str(), 0700) != 0 && errno != EEXIST) fail("cannot create", shown);
    fd = openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR) {
      struct stat st;
      const bool link = fstatat(at, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
      throw std::runtime_error(shown + (link ? ": is a symlink; give the real directory" : ": not a directory"));
    }
    if (errno == ENOENT && !create) return -1;
    fail("cannot open", shown);
  }
  Fd guard(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) fail("cannot stat", shown);
  const std::string why = dir_distrust(st, owner);
  if (!why.empty()) throw std::runtime_error(shown + ": " + why);
  return guard.release();
}

// Opens a file of a trusted directory for reading, never through a symlink nor into a FIFO.
// -1 with errno ENOENT when missing.
int open_state_file(int dir, const std::string& name, const std::string& shown, struct stat& st) {
  const int fd = openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    if (errno == ELOOP) throw std::runtime_error(shown + ": is a symlink, not used");
    fail("cannot open", shown);
  }
  if (fstat(fd, &st) != 0) {
    close(fd);
    fail("cannot stat", shown);
  }
  return fd;
}

std::vector<std::string> list_names(int dir) {
  std::vector<std::string> out;
  const int fd = dup(dir);
  if (fd < 0) return out;
  DIR* d = fdopendir(fd);
  if (!d) {
    close(fd);
    return out;
  }
  rewinddir(d);
  while (const dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}


std::string read_small(int fd) {
  std::string text;
  char buf[512];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 65536) break;
  }
  return text;
}

std::string identity_text(const InstanceId& id) {
  char text[160];
  std::snprintf(text, sizeof text, "boot %" PRIx64 " netns-cookie %" PRIu64 " pid %d\n", id.boot_id, id.netns_cookie,
                static_cast<int>(getpid()));
  return text;
}

struct Written {
  bool any = false;
  uint64_t boot_id = 0, netns_cookie = 0;
  long pid = 0;
};
Written parse_identity(const std::string& text) {
  Written w;
  w.any = std::sscanf(text.c_str(), "boot %" SCNx64 " netns-cookie %" SCNu64 " pid %ld", &w.boot_id, &w.netns_cookie,
                      &w.pid) == 3;
  return w;
}

// Whether files written under `w` belong to `id`: same boot, same namespace. A namespace's
// inode number is reused after it is deleted; its cookie never is.
bool same_identity(const Written& w, const InstanceId& id) {
  if (w.boot_id != id.boot_id) return false;
  return w.netns_cookie == 0 || id.netns_cookie == 0 || w.netns_cookie == id.netns_cookie;
}

void write_all(int fd, const std::string& data, const std::string& shown) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", shown);
    }
    done += static_cast<size_t>(n);
  }
}

std::vector<ServiceEntry> parse_draining(const std::string& text) {
  std::vector<ServiceEntry> out;
  std::istringstream in(text);
  std::string address;
  unsigned port = 0;
  while (in >> address >> port) {
    if (port == 0 || port > 65535) continue;
    ServiceEntry e{address, address.find(':') != std::string::npos, static_cast<uint16_t>(port)};
    out.push_back(e);
  }
  return out;
}

std::string mib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1u << 20));
  return text;
}

}  // namespace

uint64_t current_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string text;
  if (!(in >> text)) return 0;
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the UUID text: stable for one boot
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : h;
}

InstanceId this_instance(const std::string& name) {
  InstanceId id;
  id.name = name;
  id.boot_id = current_boot_id();
  struct stat st;
  if (stat("/proc/thread-self/ns/net", &st) != 0 && stat("/proc/self/ns/net", &st) != 0) {
    fail("cannot identify the network namespace:", "/proc/self/ns/net");
  }
  id.netns_inode = st.st_ino;
  const int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    if (getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) == 0 && len == sizeof cookie) {
      id.netns_cookie = cookie;
    }
    close(s);
  }
  return id;
}

std::string instance_dir(const std::string& state_dir, const InstanceId& id) {
  return state_dir + "/" + id.name + ".netns-" + std::to_string(id.netns_inode);
}

void check_state_dir(const std::string& state_dir) {
  const int fd = open_trusted_dir(AT_FDCWD, state_dir, state_dir, false);
  if (fd >= 0) close(fd);
}

bool is_table_name(const std::string& name, uint16_t* queue) {
  std::smatch m;
  if (!std::regex_match(name, m, kTableName)) return false;
  const unsigned long q = std::stoul(m[1].str());
  if (q > 0xffff) return false;
  if (queue) *queue = static_cast<uint16_t>(q);
  return true;
}

std::string table_name(uint16_t queue) { return "flows-q" + std::to_string(queue) + ".bin"; }

StateDir::StateDir(const std::string& state_dir, const InstanceId& id) : path_(instance_dir(state_dir, id)) {
  Fd top(open_trusted_dir(AT_FDCWD, state_dir, state_dir, true));
  const std::string name = path_.substr(state_dir.size() + 1);
  Fd dir(open_trusted_dir(top.fd, name, path_, true));
  const std::string lock_path = path_ + "/" + kInstanceFile;
  Fd lock(openat(dir.fd, kInstanceFile, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
  if (lock.fd < 0) fail("cannot open", lock_path);
  struct stat st;
  if (fstat(lock.fd, &st) != 0) fail("cannot stat", lock_path);
  if (const std::string why = file_distrust(st); !why.empty()) throw std::runtime_error(lock_path + ": " + why);
  // One process per identity: a second syngate with this name in this namespace would share its
  // tables, or (with other queue numbers) import and delete the running one's.
  if (flock(lock.fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) fail("cannot lock", lock_path);
    const Written w = parse_identity(read_small(lock.fd));
    throw std::runtime_error("another syngate" + (w.pid > 0 ? " (pid " + std::to_string(w.pid) + ")" : std::string()) +
                             " runs as instance \"" + id.name + "\" in this network namespace (" + path_ +
                             "); give each instance its own gateway.instance (by default the config file's name)");
  }
  const Written before = parse_identity(read_small(lock.fd));
  const std::vector<std::string> names = list_names(dir.fd);
  if (before.any && !same_identity(before, id)) {
    // The namespace that wrote these is gone (its inode number now names this one), or the
    // machine rebooted: nothing here belongs to this instance.
    unsigned removed = 0;
    for (const std::string& n : names) {
      if (n == kInstanceFile) continue;
      if (is_table_name(n) || n == kDraining || std::regex_match(n, kLeftover)) {
        if (unlinkat(dir.fd, n.c_str(), 0) == 0) ++removed;
      }
    }
    notes_.push_back(path_ + " was written in " +
                     (before.boot_id != id.boot_id ? std::string("an earlier boot")
                                                   : "a network namespace that no longer exists (netns cookie " +
                                                         std::to_string(before.netns_cookie) + ", this one " +
                                                         std::to_string(id.netns_cookie) + ")") +
                     ": " + std::to_string(removed) + " file(s) of it removed, none imported");
  }
  const std::string text = identity_text(id);
  if (ftruncate(lock.fd, 0) != 0 || pwrite(lock.fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    fail("cannot write", lock_path);
  }

  // An earlier release kept one instance's files directly in state_dir; the first instance to
  // start after the upgrade takes them over (unless that release still runs on them).
  bool have_tables = false;
  for (const std::string& n : list_names(dir.fd)) have_tables = have_tables || is_table_name(n);
  std::vector<std::string> legacy;
  for (const std::string& n : list_names(top.fd)) {
    if (is_table_name(n) || n == kDraining) legacy.push_back(n);
  }
  if (!legacy.empty() && !have_tables) {
    bool busy = false;
    std::vector<std::string> movable;
    for (const std::string& n : legacy) {
      struct stat lst;
      Fd f(open_state_file(top.fd, n, state_dir + "/" + n, lst));
      if (f.fd < 0) continue;
      if (const std::string why = file_distrust(lst); !why.empty()) {
        notes_.push_back(state_dir + "/" + n + ": left by an earlier release but not trusted (" + why + "): ignored");
        continue;
      }
      if (is_table_name(n) && flock(f.fd, LOCK_EX | LOCK_NB) != 0) busy = true;
      movable.push_back(n);
    }
    if (busy) {
      notes_.push_back(state_dir + ": an earlier syngate release still runs on the tables there: left alone");
    } else {
      for (const std::string& n : movable) {
        if (renameat(top.fd, n.c_str(), dir.fd, n.c_str()) == 0) {
          notes_.push_back(state_dir + "/" + n + " (from an earlier release) moved to " + path_);
        }
      }
    }
  }
  dir_fd_ = dir.release();
  lock_fd_ = lock.release();
}

StateDir::~StateDir() {
  if (dir_fd_ >= 0) close(dir_fd_);
  if (lock_fd_ >= 0) close(lock_fd_);
}

SavedTable::SavedTable(int dir_fd, const std::string& dir_path, const std::string& name) {
  struct stat st;
  Fd f(open_state_file(dir_fd, name, dir_path + "/" + name, st));
  if (f.fd < 0) {
    distrust_ = "missing";
    return;
  }
  distrust_ = file_distrust(st);
  if (!distrust_.empty() || st.st_size <= 0) return;
  // Mapping costs nothing up front: only the pages read (the header, then the entries an
  // import copies) are ever touched.
  void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, f.fd, 0);
  if (p == MAP_FAILED) fail("cannot map", dir_path + "/" + name);
  data_ = static_cast<const uint8_t*>(p);
  size_ = static_cast<size_t>(st.st_size);
}

SavedTable::~SavedTable() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

MappedTable::MappedTable(const StateDir& dir, const std::string& name, size_t bytes, bool in_place)
    : path_(dir.path() + "/" + name), size_(bytes) {
  const std::string fresh = name + ".new";
  Fd fd;
  if (in_place) {
    fd.fd = openat(dir.fd(), name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd.fd < 0) fail("cannot open", path_);
  } else {
    // A new inode: nothing another writer might have prepared under this name is adopted, and
    // the saved file being imported stays intact (and mapped) until its flows are copied.
    if (unlinkat(dir.fd(), fresh.c_str(), 0) != 0 && errno != ENOENT) fail("cannot remove", dir.path() + "/" + fresh);
    fd.fd = openat(dir.fd(), fresh.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd.fd < 0) fail("cannot create", dir.path() + "/" + fresh);
    if (fchmod(fd.fd, 0600) != 0) fail("cannot chmod", dir.path() + "/" + fresh);
  }
  struct stat st;
  if (fstat(fd.fd, &st) != 0) fail("cannot stat", path_);
  if (const std::string why = file_distrust(st); !why.empty()) throw std::runtime_error(path_ + ": " + why);
  // Two live processes on one table would corrupt each other's flows: the lock is held for the
  // life of this process (the kernel drops it when the process dies, however it dies).
  if (flock(fd.fd, LOCK_EX | LOCK_NB) != 0) {
    fail(errno == EWOULDBLOCK ? "another syngate is running on" : "cannot lock", path_);
  }
  if (static_cast<size_t>(st.st_size) != bytes && ftruncate(fd.fd, static_cast<off_t>(bytes)) != 0) {
    fail("cannot size", path_);
  }
  // A mapped file with holes is a SIGBUS waiting for the filesystem to fill (/run is shared with
  // every daemon): reserve every block now, while failing is only a refused start.
  if (static_cast<uint64_t>(st.st_blocks) * 512 < bytes) {
    const int e = posix_fallocate(fd.fd, 0, static_cast<off_t>(bytes));
    if (e != 0) {
      if (!in_place) unlinkat(dir.fd(), fresh.c_str(), 0);
      throw std::runtime_error("cannot reserve " + mib(bytes) + " for the flow table " + path_ + ": " +
                               std::strerror(e) +
                               "; free space there (df " + dir.path() +
                               "), lower [engine] max_flows or early_data_slots, or set gateway.state_dir to a "
                               "tmpfs with room (a table that is not reserved would crash syngate with SIGBUS "
                               "when the filesystem fills)");
    }
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
  if (p == MAP_FAILED) fail("cannot map", path_);
  if (!in_place && renameat(dir.fd(), fresh.c_str(), dir.fd(), name.c_str()) != 0) {
    const int e = errno;
    munmap(p, bytes);
    errno = e;
    fail("cannot rename into place", path_);
  }
  data_ = static_cast<uint8_t*>(p);
  fd_ = fd.release();
}

MappedTable::~MappedTable() {
  if (data_) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

void write_draining_services(const StateDir& dir, const std::vector<ServiceEntry>& services) {
  const std::string tmp = std::string(kDraining) + ".tmp";
  const std::string shown = dir.path() + "/" + tmp;
  if (unlinkat(dir.fd(), tmp.c_str(), 0) != 0 && errno != ENOENT) fail("cannot remove", shown);
  Fd f(openat(dir.fd(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (f.fd < 0) fail("cannot create", shown);
  std::string text;
  for (const ServiceEntry& s : services) text += s.address + " " + std::to_string(s.port) + "\n";
  write_all(f.fd, text, shown);
  if (renameat(dir.fd(), tmp.c_str(), dir.fd(), kDraining) != 0) fail("cannot replace", dir.path() + "/" + kDraining);
}

namespace {
std::vector<ServiceEntry> read_draining_at(int dir, const std::string& dir_path, uid_t owner = geteuid()) {
  struct stat st;
  const std::string shown = dir_path + "/" + kDraining;
  Fd f(open_state_file(dir, kDraining, shown, st));
  if (f.fd < 0) return {};
  if (const std::string why = file_distrust(st, owner); !why.empty()) {
    throw std::runtime_error(shown + ": not trusted (" + why + ")");
  }
  return parse_draining(read_small(f.fd));
}
}  // namespace

std::vector<ServiceEntry> read_draining_services(const StateDir& dir) {
  return read_draining_at(dir.fd(), dir.path());
}

std::vector<ServiceEntry> read_draining_services(const std::string& state_dir, const InstanceId& id) {
  // `syngate rules up` runs as root while the daemon may run as a user of its own (the unit's
  // User=syngate): root reads what the state directory's owner wrote there, with every other
  // check kept (no symlinks, no group/other write, one owner throughout). That user already
  // decides what the data path does with the queued traffic, so the list gives it nothing more.
  uid_t owner = geteuid();
  struct stat top_st;
  if (owner == 0 && lstat(state_dir.c_str(), &top_st) == 0 && S_ISDIR(top_st.st_mode)) owner = top_st.st_uid;
  Fd top(open_trusted_dir(AT_FDCWD, state_dir, state_dir, false, owner));
  if (top.fd < 0) return {};
  const std::string path = instance_dir(state_dir, id);
  Fd dir(open_trusted_dir(top.fd, path.substr(state_dir.size() + 1), path, false, owner));
  if (dir.fd < 0) return {};
  struct stat st;
  Fd ident(open_state_file(dir.fd, kInstanceFile, path + "/" + kInstanceFile, st));
  if (ident.fd < 0 || !same_identity(parse_identity(read_small(ident.fd)), id)) return {};
  return read_draining_at(dir.fd, path, owner);
}

FlowStatePlan plan_flow_state(const StateDir& dir, uint16_t first, uint16_t count, const EngineConfig& config,
                              uint64_t boot_id) {
  FlowStatePlan plan;
  std::set<uint16_t> saved, present;
  for (const std::string& name : list_names(dir.fd())) {
    uint16_t q = 0;
    if (std::regex_match(name, kLeftover) && name != std::string(kDraining) + ".tmp") {
      plan.obsolete.push_back(name);  // a table being created when its process died
      continue;
    }
    if (!is_table_name(name, &q)) continue;
    present.insert(q);
    auto table = std::make_unique<SavedTable>(dir.fd(), dir.path(), name);
    if (!table->distrust().empty()) {
      plan.notes.push_back(dir.path() + "/" + name + ": not trusted (" + table->distrust() +
                           "): not used, replaced by a fresh table");
      continue;
    }
    saved.insert(q);
    plan.saved.emplace(name, std::move(table));
  }
  std::set<uint16_t> wanted;
  for (uint16_t i = 0; i < count; ++i) wanted.insert(static_cast<uint16_t>(first + i));
  const bool same_shards = saved == wanted;
  if (!saved.empty() && !same_shards) {
    plan.notes.push_back("saved tables are for flow queues other than " + std::to_string(first) + ".." +
                         std::to_string(first + count - 1) + ": every worker imports every saved flow");
  }
  for (uint16_t q : wanted) {
    FlowStatePlan::Queue entry{q, table_name(q), false, {}};
    if (same_shards) {
      const std::string why = Engine::state_incompatibility(plan.saved.at(entry.name)->region(), config, boot_id);
      if (why.empty()) {
        entry.in_place = true;
      } else {
        plan.notes.push_back(dir.path() + "/" + entry.name + ": " + why);
        if (why != "no saved table" && why != "saved before the machine rebooted") entry.imports.push_back(entry.name);
      }
    } else {
      for (uint16_t s : saved) entry.imports.push_back(table_name(s));
    }
    plan.queues.push_back(entry);
  }
  for (uint16_t s : present) {
    if (!wanted.count(s)) plan.obsolete.push_back(table_name(s));
  }
  return plan;
}

bool remove_state_file(const StateDir& dir, const std::string& name) {
  return unlinkat(dir.fd(), name.c_str(), 0) == 0 || errno == ENOENT;
}

}  // namespace syngate::gw
