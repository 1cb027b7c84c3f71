// The thin shell: everything tcptune does to the running system. Kept small; the decisions are made
// by the pure code in tuner/lib.
#pragma once
#include <signal.h>

#include <optional>
#include <string>
#include <vector>

#include "../lib/diagnose.hpp"
#include "../lib/plan.hpp"

namespace tcptune::sys {

// /proc/sys. Files are opened per call, after any setns(), because a /proc/sys/net file shows the
// netns of the task that opened it.
LiveValue read_sysctl(const std::string& key);
// Returns "" on success, else the reason (errno text; EINVAL means the kernel refused the value).
std::string write_sysctl(const std::string& key, const std::string& value);
// Keys under /proc/sys/<prefix> that exist here (for `show` of pattern keys like conf.*.rp_filter).
std::vector<std::string> list_sysctl_dir(const std::string& dotted_prefix);

// Enter /var/run/netns/NAME (as `ip netns add` creates it). "" on success.
std::string enter_netns(const std::string& name);

// "" when PATH is absent, a regular file or a symlink to one; else why tcptune must not read or
// replace it (a device node, a fifo, a directory...). Checked before anything is written.
std::string regular_file_error(const std::string& path);

struct FileData {
  bool exists = false;
  std::string text;
  unsigned mode = 0644;
  std::string error;  // set when the file exists but cannot be read
};
FileData read_file(const std::string& path);
// Atomic replace: temp file in the same directory, same mode and owner, fsync, rename, fsync dir.
std::string atomic_write(const std::string& path, const std::string& text, unsigned mode);
std::string remove_file(const std::string& path);
std::string make_dirs(const std::string& path, unsigned mode);
std::vector<std::string> list_dir(const std::string& dir);  // names, sorted; empty if missing
std::string real_path(const std::string& path);               // "" if it does not resolve

// Exclusive lock on DIR/lock for the process lifetime; "" on success.
std::string lock_state_dir(const std::string& dir);

// sock_diag (NETLINK_SOCK_DIAG, inet_diag_req_v2) dumps of TCP over IPv4 and IPv6, all states.
struct SockScan {
  StateCounts counts;
  std::vector<ListenerInfo> listeners;
  std::vector<unsigned> close_wait_inodes;
  std::string error;
};
SockScan scan_tcp(bool want_details);
// Map socket inodes to owning processes by walking /proc/PID/fd (root sees all in its pid namespace).
std::vector<OwnerCount> socket_owners(const std::vector<unsigned>& inodes);

Counters read_counters();  // /proc/net/netstat + /proc/net/snmp of the current netns

// SIGINT, SIGTERM and SIGHUP held back while a transaction runs, so it is never left half done;
// finish() takes a signal that arrived meanwhile (its number, or 0) and restores the signal mask.
class HeldSignals {
 public:
  HeldSignals();
  ~HeldSignals();
  int finish();
  HeldSignals(const HeldSignals&) = delete;
  HeldSignals& operator=(const HeldSignals&) = delete;

 private:
  bool active_ = true;
  sigset_t old_mask_{};
};
// Sleeps SECONDS unless SIGINT, SIGTERM or SIGHUP arrives first: returns that signal, or 0.
int sleep_unless_signalled(double seconds);

}  // namespace tcptune::sys
