// Whether a process could start on a configuration, asked of the machine without starting one:
// `syngate check` asks it, and a reload that must restart in place asks it before stopping, so that
// a configuration that cannot start never replaces one that runs (fail-closed rules would drop
// every protected service while nothing answers).
#pragma once

#include <string>

#include "config.hpp"
#include "reload_plan.hpp"

namespace syngate::gw {

// This machine's RAM, and the size of state_dir's filesystem and what is free there (unset when
// state_dir is "" or cannot be examined).
MachineRoom machine_room(const std::string& state_dir);

// Throws ConfigError (key gateway.secret_file) unless the secrets file can be read and is valid,
// or, when it does not exist, its directory exists and is writable. Creates nothing.
void check_secret_file(const GatewayConfig& c);

// Everything a restart in place on `next` needs from the machine: the secrets file, state_dir,
// room for the tables. Throws ConfigError naming the key.
void check_restart(const GatewayConfig& next, const ReloadPlan& plan);

}  // namespace syngate::gw
