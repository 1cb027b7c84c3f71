// The flow workers' tables as files: one per flow queue in gateway.state_dir, mapped shared, so
// that the next syngate process (restart, upgrade, crash recovery) takes over every proxied
// connection. The engine knows nothing of files; this shell maps them and hands it the memory.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "syngate/engine.hpp"

namespace syngate::gw {

// This boot's identity (the kernel's random boot_id), so that a table saved before a reboot,
// whose monotonic timestamps mean nothing now, is never used. 0 when it cannot be read.
uint64_t current_boot_id();

// One mapped table file. Unmapped on destruction; the file stays for the next process.
class MappedTable {
 public:
  // Creates or opens, locks (exclusively: one process per table), sizes and maps; throws with a
  // clear message on any failure, e.g. when another syngate holds the table.
  MappedTable(std::string path, size_t bytes);
  ~MappedTable();
  MappedTable(const MappedTable&) = delete;
  MappedTable& operator=(const MappedTable&) = delete;
  std::span<uint8_t> region() const noexcept { return {data_, size_}; }
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;  // holds the exclusive lock
};

// What the daemon does at start for its flow queues [first, first + count).
struct FlowStatePlan {
  struct Queue {
    uint16_t queue;
    std::string path;
    bool in_place = false;  // the file holds a table this worker can take over as it is
    // Saved tables whose flows this worker imports into a fresh table: its own file when that
    // has another layout; every saved file when the set of flow queues changed (the kernel's
    // --queue-balance hash is seeded at random, so which queue a connection lands on then is
    // unknowable: each worker gets them all, finds the ones the kernel sends it, and the copies
    // it never sees expire as idle).
    std::vector<std::string> imports;
  };
  std::vector<Queue> queues;
  std::vector<std::string> obsolete;  // saved files of queues no longer used: removed after import
  std::vector<std::string> notes;  // for the log
};

// Decides, from the files in `dir`, which tables are taken over in place and which imported.
FlowStatePlan plan_flow_state(const std::string& dir, uint16_t first, uint16_t count,
                              const EngineConfig& config, uint64_t boot_id);

// Reads a whole saved table (to import it before its file is replaced).
std::vector<uint8_t> read_table_file(const std::string& path);

// Creates `dir` (mode 0700) if missing; refuses one that is not a directory.
void prepare_state_dir(const std::string& dir);

std::string table_path(const std::string& dir, uint16_t queue);

// Services removed by a reload whose flows have not all ended yet ("ADDRESS PORT" lines in
// state_dir/draining-services). `syngate rules up` keeps queueing their flow traffic (not their
// SYNs) while they are listed, so a removed service's connections finish through the proxy.
void write_draining_services(const std::string& dir, const std::vector<ServiceEntry>& services);
std::vector<ServiceEntry> read_draining_services(const std::string& dir);

}  // namespace syngate::gw
