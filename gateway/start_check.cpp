#include "start_check.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "flow_state.hpp"
#include "syngate/cookie.hpp"

namespace syngate::gw {

MachineRoom machine_room(const std::string& state_dir) {
  MachineRoom room;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) room.ram_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  struct statvfs fs;
  if (!state_dir.empty() && statvfs(state_dir.c_str(), &fs) == 0) {
    room.state_dir_fs_bytes = uint64_t{fs.f_blocks} * fs.f_frsize;
    room.state_dir_free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
  }
  return room;
}

void check_secret_file(const GatewayConfig& c) {
  const std::string& path = c.secret_file;
  struct stat st;
  try {
    // Reads and validates (format, 0600) an existing file; a missing one is only looked at below.
    if (stat(path.c_str(), &st) == 0) {
      (void)load_or_create_secrets(path, 0);
      return;
    }
  } catch (const std::exception& e) {
    throw ConfigError(c.source, "gateway.secret_file", e.what());
  }
  if (errno != ENOENT) {
    throw ConfigError(c.source, "gateway.secret_file", path + ": " + std::strerror(errno));
  }
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (stat(dir.c_str(), &st) != 0) {
    throw ConfigError(c.source, "gateway.secret_file",
                      path + " does not exist and cannot be created: its directory " + dir + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    throw ConfigError(c.source, "gateway.secret_file",
                      path + " does not exist and cannot be created: " + dir + " is not a directory");
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    throw ConfigError(c.source, "gateway.secret_file",
                      path + " does not exist and cannot be created in " + dir + ": " + std::strerror(errno));
  }
}

void check_restart(const GatewayConfig& next, const ReloadPlan& plan) {
  check_secret_file(next);
  if (!next.state_dir.empty()) {
    try {
      check_state_dir(next.state_dir);
    } catch (const std::exception& e) {
      throw ConfigError(next.source, "gateway.state_dir", e.what());
    }
  }
  check_table_room(next, machine_room(next.state_dir), plan.tables_rebuilt);
}

}  // namespace syngate::gw
