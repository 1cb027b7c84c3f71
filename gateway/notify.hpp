// systemd's side of a Type=notify service: READY once the gateway can do its job, a one-line
// STATUS, and WATCHDOG pings only while every worker makes progress. Without NOTIFY_SOCKET (not
// started by systemd) everything here does nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace syngate::gw {

class SystemdNotifier {
 public:
  SystemdNotifier();
  bool enabled() const noexcept { return enabled_; }
  // The watchdog period systemd asked for (WatchdogSec=), or zero.
  std::chrono::microseconds watchdog_interval() const noexcept { return watchdog_; }
  void ready(const std::string& status);
  void status(const std::string& status);
  void stopping(const std::string& status);
  // Before a restart in place (exec): the new process sends READY=1 when it is ready again.
  void reloading(const std::string& status);
  void watchdog();

 private:
  bool enabled_ = false;
  std::chrono::microseconds watchdog_{0};
};

// Decides whether the watchdog may be pinged: every worker's heartbeat must have moved since the
// last check. Pure, so it is tested without threads or systemd.
class ProgressCheck {
 public:
  // Returns the indexes of workers whose heartbeat did not move since the previous call (all
  // move on the first call).
  std::vector<size_t> stuck(const std::vector<uint64_t>& heartbeats);

 private:
  std::vector<uint64_t> last_;
};

}  // namespace syngate::gw
