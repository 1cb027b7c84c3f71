// The flow workers' tables as files: one per flow queue, mapped shared, so that the next syngate
// process (restart, upgrade, crash recovery) takes over every proxied connection. The engine
// knows nothing of files; this shell maps them and hands it the memory.
//
// State belongs to the instance that wrote it: each instance (its name, gateway.instance, in its
// network namespace) keeps its files in a directory of its own under gateway.state_dir, locked
// while it runs, so that instances in other namespaces or with other names never see, import or
// delete each other's tables. Nothing in state_dir is trusted blindly: the directories must be
// the daemon's own and closed to other users, files are opened without following symlinks, and
// a table another user could have written is never used.
#pragma once

#include <cstdint>
#include <map>
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

// Who writes a state directory: an instance name in a network namespace.
struct InstanceId {
  std::string name;
  uint64_t netns_inode = 0;   // names the directory; the kernel reuses it once a namespace is gone
  uint64_t netns_cookie = 0;  // never reused while the machine runs; 0 when the kernel cannot say
  uint64_t boot_id = 0;
};
// `name` in the calling thread's network namespace. Throws when the namespace cannot be read.
InstanceId this_instance(const std::string& name);
// state_dir/NAME.netns-INODE
std::string instance_dir(const std::string& state_dir, const InstanceId& id);

// For `syngate check`: throws when state_dir exists but syngate would refuse it (a symlink, not
// a directory, another user's, writable by group or others). Creates nothing.
void check_state_dir(const std::string& state_dir);

// This instance's directory, checked, created when missing, and locked for the life of the
// process (a second syngate with the same identity refuses to start). Files another identity
// left behind (a namespace that has since been deleted and whose inode number this one reuses,
// or an earlier boot) are removed. Tables of a release that kept them directly in state_dir
// are moved in, once, by the first instance that starts after the upgrade.
class StateDir {
 public:
  StateDir(const std::string& state_dir, const InstanceId& id);
  ~StateDir();
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;
  int fd() const noexcept { return dir_fd_; }
  const std::string& path() const noexcept { return path_; }
  // What the log should say about what was found.
  const std::vector<std::string>& notes() const noexcept { return notes_; }

 private:
  std::string path_;
  int dir_fd_ = -1;
  int lock_fd_ = -1;
  std::vector<std::string> notes_;
};

// A saved table, mapped read-only: its header is all the in-place check reads, and an import
// reads only the entries it copies (no whole-file read, whatever the file's size).
class SavedTable {
 public:
  SavedTable(int dir_fd, const std::string& dir_path, const std::string& name);
  ~SavedTable();
  SavedTable(const SavedTable&) = delete;
  SavedTable& operator=(const SavedTable&) = delete;
  std::span<const uint8_t> region() const noexcept { return {data_, size_}; }
  // Empty when the daemon may use the file; otherwise why not (another owner, open modes...).
  const std::string& distrust() const noexcept { return distrust_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string distrust_;
};

// One mapped table file. Unmapped on destruction; the file stays for the next process.
class MappedTable {
 public:
  // in_place: takes over the existing file (the plan found it compatible and trusted); otherwise
  // a fresh 0600 file replaces whatever was there (the old one stays readable by its mapping
  // until the import is done). Either way the file's whole size is reserved on the filesystem
  // first, so that a full /run refuses the start with a message instead of killing the running
  // daemon with SIGBUS at the first write to a page never allocated. Locked exclusively (one
  // process per table); throws with a clear message on any failure.
  MappedTable(const StateDir& dir, const std::string& name, size_t bytes, bool in_place);
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
    std::string name;  // file name in the instance directory
    bool in_place = false;  // the file holds a table this worker can take over as it is
    // Saved tables whose flows this worker imports into a fresh table: its own file when that
    // has another layout; every saved file when the set of flow queues changed (the kernel's
    // --queue-balance hash is seeded at random, so which queue a connection lands on then is
    // unknowable: each worker gets them all, finds the ones the kernel sends it, and the copies
    // it never sees expire as idle).
    std::vector<std::string> imports;
  };
  std::vector<Queue> queues;
  std::map<std::string, std::unique_ptr<SavedTable>> saved;  // by file name, mapped read-only
  std::vector<std::string> obsolete;  // saved files of queues no longer used: removed after import
  std::vector<std::string> notes;  // for the log
};

// Decides, from the files in the instance directory, which tables are taken over in place and
// which imported.
FlowStatePlan plan_flow_state(const StateDir& dir, uint16_t first, uint16_t count, const EngineConfig& config,
                              uint64_t boot_id);
// Removes a file of the instance directory (obsolete tables); false with errno set on failure
// (a file already gone is not one).
bool remove_state_file(const StateDir& dir, const std::string& name);

std::string table_name(uint16_t queue);
// Whether `name` is a queue's table file (flows-qN.bin), and N.
bool is_table_name(const std::string& name, uint16_t* queue = nullptr);

// Services removed by a reload whose flows have not all ended yet ("ADDRESS PORT" lines in the
// instance directory's draining-services). `syngate rules up` keeps queueing their flow traffic
// (not their SYNs) while they are listed, so a removed service's connections finish through the
// proxy.
void write_draining_services(const StateDir& dir, const std::vector<ServiceEntry>& services);
std::vector<ServiceEntry> read_draining_services(const StateDir& dir);
// For `syngate rules up`, which runs before the daemon: reads the list the instance left, without
// creating or locking anything; nothing when the directory is missing or of another identity.
std::vector<ServiceEntry> read_draining_services(const std::string& state_dir, const InstanceId& id);

}  // namespace syngate::gw
