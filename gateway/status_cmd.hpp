#pragma once

#include <string>

namespace CLI {
class App;
}

namespace syngate::gw {

struct StatusOptions {
  std::string config;  // empty: 127.0.0.1:9470 and no flow-table size
  bool json = false;
  double watch_s = 0;  // 0: one report (two scrapes one second apart) and exit
  bool check = false;  // --check: the health answer over the instance's socket, nothing else
  std::string daemon_user = "syngate";
};

// Registers `status` with its options and help; main runs cmd_status(o) when it was given.
CLI::App* add_status_subcommand(CLI::App& app, StatusOptions& o);

// Exit codes: 0 up, 1 not running (nothing answers), 2 bad configuration or metrics disabled,
// 3 the endpoint answers but not with syngate's metrics.
int cmd_status(const StatusOptions& o);

// `status --check`: 0 healthy; 1 not healthy (the daemon says why) or not running; 2 bad
// configuration; 3 the socket answered but is not believed (its owner, or not a health answer).
int cmd_status_check(const StatusOptions& o);

}  // namespace syngate::gw
