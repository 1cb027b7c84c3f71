#pragma once

#include <string>

namespace CLI {
class App;
}

namespace syngate::gw {

struct FlowsOptions {
  std::string config = "/etc/syngate/syngate.toml";
  bool json = false;
  std::string state;  // empty: every state; else syn-sent, established, closing or linger
};

// Registers `flows` with its options and help; main runs cmd_flows(o) when it was given.
CLI::App* add_flows_subcommand(CLI::App& app, FlowsOptions& o);

// Exit codes: 0 listed (none is a list too), 1 no table to read (syngate has not run in this
// network namespace with this configuration), 2 bad configuration or gateway.state_dir empty.
int cmd_flows(const FlowsOptions& o);

}  // namespace syngate::gw
