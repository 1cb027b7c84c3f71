#pragma once

#include <string>

namespace syngate::gw {

// `syngate run`: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit
// code (0 after a clean stop).
int run_daemon(const std::string& config_path);

}  // namespace syngate::gw
