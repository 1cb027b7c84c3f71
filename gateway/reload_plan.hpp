// What a reload does, decided without touching anything (pure: unit-tested without root), and what
// a configuration asks of the machine before a process is started on it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"

namespace syngate::gw {

// Bytes of one flow queue's flow table (flows and early-data pool; the same size in state_dir or
// in process memory), and of all flow queues together.
uint64_t flow_table_bytes(const GatewayConfig& c);
uint64_t flow_tables_bytes(const GatewayConfig& c);

// What the machine offers a configuration's tables: its RAM and, for a state_dir, the size of the
// filesystem and what is still free on it.
struct MachineRoom {
  uint64_t ram_bytes = 0;
  std::optional<uint64_t> state_dir_fs_bytes;
  std::optional<uint64_t> state_dir_free_bytes;
};

// Throws ConfigError naming the key to lower when the tables cannot fit: more than the machine's
// RAM, more than the state_dir filesystem holds, or (new_files: the tables are created anew
// beside the running ones, as on a resize) more than is free there now.
void check_table_room(const GatewayConfig& c, const MachineRoom& room, bool new_files);

// The decision a SIGHUP makes, from the running and the new configuration alone.
struct ReloadPlan {
  // Settings only a new process applies (queues, buffers, table sizes, secret_file...).
  std::vector<std::string> restart_keys;
  // Apply them by restarting in place (exec, flows carried over in state_dir); false with
  // restart_keys non-empty: they wait for the next restart (no state_dir to carry the flows, or
  // state_dir/instance itself changed) and the rest is applied now.
  bool restart_in_place = false;
  // The restarted process writes its tables anew (other sizes or queues) beside the old ones.
  bool tables_rebuilt = false;
  // The [[service]] list changes and can be applied now.
  bool apply_services = false;
  // It changes but adds an address family this process has no raw socket for: it waits.
  bool services_wait_for_restart = false;
  // With apply_services: the services the new list adds (queued once `syngate rules up` runs) and
  // those it removes (their flows drain: kept through the proxy until they end, while new
  // connections to them are no longer proxied).
  std::vector<ServiceEntry> added_services;
  std::vector<ServiceEntry> removed_services;
};
ReloadPlan plan_reload(const GatewayConfig& running, const GatewayConfig& next);

// The configuration this process runs on after a reload it applies itself (the plan does not
// restart in place): `running`, with from `next` what a reload changes (log level and format,
// stats and secret rotation intervals, the source policy, and the [[service]] list when
// apply_services). What restart_keys names stays as it runs until the next restart.
GatewayConfig reloaded_config(const GatewayConfig& running, const GatewayConfig& next, const ReloadPlan& plan);

}  // namespace syngate::gw
