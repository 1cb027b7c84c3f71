#include "reload_plan.hpp"

#include <algorithm>
#include <cstdio>

#include "syngate/engine.hpp"

namespace syngate::gw {

namespace {
std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / double(1ull << 30));
  return buf;
}
}  // namespace

uint64_t flow_table_bytes(const GatewayConfig& c) { return Engine::state_bytes(c.engine); }
uint64_t flow_tables_bytes(const GatewayConfig& c) { return flow_table_bytes(c) * c.flow_queues; }

void check_table_room(const GatewayConfig& c, const MachineRoom& room, bool new_files) {
  const uint64_t per_queue = flow_table_bytes(c);
  const uint64_t total = per_queue * c.flow_queues;
  const uint64_t pool = uint64_t{c.engine.early_data_slots} * c.engine.early_data_bytes;
  const uint64_t flows = per_queue - pool;
  // Name the key that asks for most of it: the early-data pool or the flows.
  const std::string key = pool >= flows ? "engine.early_data_slots" : "engine.max_flows";
  const std::string asked = "the flow tables need " + gib(total) + " (" + std::to_string(c.flow_queues) +
                            " flow queue(s) x (" + std::to_string(c.engine.max_flows) + " flows + early data " +
                            std::to_string(c.engine.early_data_slots) + " x " +
                            std::to_string(c.engine.early_data_bytes) + " bytes))";
  const std::string fix = "; lower engine.max_flows, engine.early_data_slots or engine.early_data_bytes, or "
                          "gateway.flow_queues";
  if (room.ram_bytes != 0 && total > room.ram_bytes) {
    throw ConfigError(c.source, key, asked + ", more than this machine's " + gib(room.ram_bytes) + " of RAM" + fix);
  }
  if (room.state_dir_fs_bytes && total > *room.state_dir_fs_bytes) {
    throw ConfigError(c.source, key,
                      asked + ", more than gateway.state_dir " + c.state_dir + " holds (a filesystem of " +
                          gib(*room.state_dir_fs_bytes) + ")" + fix);
  }
  if (new_files && room.state_dir_free_bytes && total > *room.state_dir_free_bytes) {
    throw ConfigError(c.source, key,
                      asked + ", more than is free in gateway.state_dir " + c.state_dir + " (" +
                          gib(*room.state_dir_free_bytes) + ")" + fix);
  }
}

ReloadPlan plan_reload(const GatewayConfig& running, const GatewayConfig& next) {
  ReloadPlan p;
  p.restart_keys = non_reloadable_changes(running, next);
  // Only the same state_dir and instance carry the flows across the exec.
  p.restart_in_place = !p.restart_keys.empty() && !running.state_dir.empty() &&
                       next.state_dir == running.state_dir && next.instance == running.instance;
  if (p.restart_in_place) {
    p.tables_rebuilt = running.engine.max_flows != next.engine.max_flows ||
                       running.engine.early_data_slots != next.engine.early_data_slots ||
                       running.engine.early_data_bytes != next.engine.early_data_bytes ||
                       running.flow_queue != next.flow_queue || running.flow_queues != next.flow_queues;
    return p;  // the new process applies everything else
  }
  if (next.services != running.services) {
    if ((next.has_v6() && !running.has_v6()) || (next.has_v4() && !running.has_v4())) {
      p.services_wait_for_restart = true;
    } else {
      p.apply_services = true;
      auto missing = [](const std::vector<ServiceEntry>& from, const std::vector<ServiceEntry>& in) {
        std::vector<ServiceEntry> out;
        for (const auto& sv : from) {
          if (std::find(in.begin(), in.end(), sv) == in.end()) out.push_back(sv);
        }
        return out;
      };
      p.added_services = missing(next.services, running.services);
      p.removed_services = missing(running.services, next.services);
    }
  }
  return p;
}

GatewayConfig reloaded_config(const GatewayConfig& running, const GatewayConfig& next, const ReloadPlan& plan) {
  GatewayConfig c = running;
  c.log_level = next.log_level;
  c.log_format = next.log_format;
  c.stats_interval_s = next.stats_interval_s;
  c.secret_rotation_s = next.secret_rotation_s;
  c.engine.policy = next.engine.policy;
  if (plan.apply_services) {
    c.services = next.services;
    c.engine.services = next.engine.services;
  }
  return c;
}

}  // namespace syngate::gw
