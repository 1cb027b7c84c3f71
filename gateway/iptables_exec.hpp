// Runs the iptables binaries for `syngate rules`: backend detection and plan execution. This is
// the only part of the rules code with side effects; the rules themselves come from rules.hpp.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "rules.hpp"

namespace syngate::gw {

struct ProcessResult {
  int status = -1;  // exit code; -1 when it could not run (e.g. binary missing)
  std::string output;  // stdout and stderr together
};

// Runs `binary args...` without a shell, with optional stdin text.
ProcessResult run_process(const std::string& binary, const std::vector<std::string>& args,
                          const std::string* stdin_text = nullptr);

struct Backend {
  std::string name;  // "nft" or "legacy"
  std::string v4;    // iptables binary
  std::string v6;    // ip6tables binary
};

// The backend `rules up` uses: the configured one, or with "auto" the one the system's
// `iptables` command runs (falling back to whichever of iptables-nft / iptables-legacy works).
// Throws std::runtime_error when none works, saying what was tried.
Backend choose_backend(IptablesBackend preference);
// Every backend whose binaries run here (for `rules down` and `show`, which must find our chain
// wherever an earlier `up` put it).
std::vector<Backend> available_backends(IptablesBackend preference);

// Executes a plan. Throws std::runtime_error naming the failed command and its output.
void apply_plan(const Backend& backend, const std::vector<RuleCommand>& plan, bool need_v6);

// iptables -S output of our chains and of the jumps into them, for one backend.
std::string show_rules(const Backend& backend, const std::string& chain);

}  // namespace syngate::gw
