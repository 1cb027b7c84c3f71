#pragma once

#include <string>

namespace syngate::gw {

// `syngate run`: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit
// code (0 after a clean stop), or kRestartInPlace when a reload changed what only a new process
// can apply: the caller then executes syngate again with the same arguments.
inline constexpr int kRestartInPlace = -2;
int run_daemon(const std::string& config_path);

}  // namespace syngate::gw
