#include "flow_state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <stdexcept>

namespace syngate::gw {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
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

std::string table_path(const std::string& dir, uint16_t queue) {
  return dir + "/flows-q" + std::to_string(queue) + ".bin";
}

void prepare_state_dir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) fail("cannot create", dir);
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) fail("cannot stat", dir);
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    fail("gateway.state_dir is not a directory:", dir);
  }
}

MappedTable::MappedTable(std::string path, size_t bytes) : path_(std::move(path)), size_(bytes) {
  const int fd = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) fail("cannot open", path_);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    errno = EINVAL;
    fail("not a regular file:", path_);
  }
  // Two live processes on one table would corrupt each other's flows: the lock is held for the
  // life of this process (the kernel drops it when the process dies, however it dies).
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    close(fd);
    errno = e;
    fail(e == EWOULDBLOCK ? "another syngate is running on" : "cannot lock", path_);
  }
  if (static_cast<size_t>(st.st_size) != bytes && ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    close(fd);
    fail("cannot size", path_);
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    fail("cannot map", path_);
  }
  data_ = static_cast<uint8_t*>(p);
  fd_ = fd;
}

MappedTable::~MappedTable() {
  if (data_) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

std::vector<uint8_t> read_table_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_draining_services(const std::string& dir, const std::vector<ServiceEntry>& services) {
  const std::string path = dir + "/draining-services";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const ServiceEntry& s : services) out << s.address << " " << s.port << "\n";
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) fail("cannot replace", path);
}

std::vector<ServiceEntry> read_draining_services(const std::string& dir) {
  std::vector<ServiceEntry> out;
  std::ifstream in(dir + "/draining-services");
  std::string address;
  unsigned port = 0;
  while (in >> address >> port) {
    if (port == 0 || port > 65535) continue;
    ServiceEntry e{address, address.find(':') != std::string::npos, static_cast<uint16_t>(port)};
    out.push_back(e);
  }
  return out;
}

FlowStatePlan plan_flow_state(const std::string& dir, uint16_t first, uint16_t count,
                              const EngineConfig& config, uint64_t boot_id) {
  FlowStatePlan plan;
  std::set<uint16_t> saved;
  static const std::regex kName(R"(flows-q(\d{1,5})\.bin)");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, kName) && entry.is_regular_file()) {
      const unsigned long q = std::stoul(m[1].str());
      if (q <= 0xffff) saved.insert(static_cast<uint16_t>(q));
    }
  }
  std::set<uint16_t> wanted;
  for (uint16_t i = 0; i < count; ++i) wanted.insert(static_cast<uint16_t>(first + i));
  const bool same_shards = saved == wanted;
  if (!saved.empty() && !same_shards) {
    plan.notes.push_back("saved tables are for flow queues other than " + std::to_string(first) + ".." +
                         std::to_string(first + count - 1) + ": every worker imports every saved flow");
  }
  for (uint16_t q : wanted) {
    FlowStatePlan::Queue entry{q, table_path(dir, q), false, {}};
    if (same_shards) {
      const std::vector<uint8_t> bytes = read_table_file(entry.path);
      const std::string why = Engine::state_incompatibility(bytes, config, boot_id);
      if (why.empty()) {
        entry.in_place = true;
      } else {
        plan.notes.push_back(entry.path + ": " + why);
        if (why != "no saved table" && why != "saved before the machine rebooted") entry.imports.push_back(entry.path);
      }
    } else {
      for (uint16_t s : saved) entry.imports.push_back(table_path(dir, s));
    }
    plan.queues.push_back(entry);
  }
  for (uint16_t s : saved) {
    if (!wanted.count(s)) plan.obsolete.push_back(table_path(dir, s));
  }
  return plan;
}

}  // namespace syngate::gw
