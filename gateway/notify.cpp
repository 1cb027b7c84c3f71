#include "notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace syngate::gw {

SystemdNotifier::SystemdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  // 0: keep WATCHDOG_USEC/WATCHDOG_PID in the environment (nothing else reads them here).
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
}

void SystemdNotifier::ready(const std::string& status) {
  if (enabled_) sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
}
void SystemdNotifier::status(const std::string& status) {
  if (enabled_) sd_notifyf(0, "STATUS=%s", status.c_str());
}
void SystemdNotifier::stopping(const std::string& status) {
  if (enabled_) sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status.c_str());
}
void SystemdNotifier::reloading(const std::string& status) {
  if (enabled_) sd_notifyf(0, "RELOADING=1\nSTATUS=%s", status.c_str());
}
void SystemdNotifier::watchdog() {
  if (enabled_) sd_notify(0, "WATCHDOG=1");
}

std::vector<size_t> ProgressCheck::stuck(const std::vector<uint64_t>& heartbeats) {
  std::vector<size_t> out;
  if (last_.size() == heartbeats.size()) {
    for (size_t i = 0; i < heartbeats.size(); ++i) {
      if (heartbeats[i] == last_[i]) out.push_back(i);
    }
  }
  last_ = heartbeats;
  return out;
}

}  // namespace syngate::gw
