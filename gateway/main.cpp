// syngate: inline SYN-flood gateway (NFQUEUE handshake proxy with SYN cookies).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <optional>
#include <spdlog/spdlog.h>

#include "config.hpp"
#include "flow_state.hpp"
#include "daemon.hpp"
#include "iptables_exec.hpp"
#include "rules.hpp"
#include "tc_match.hpp"
#include "tc_program.hpp"
#include "start_check.hpp"
#include "flows_cmd.hpp"
#include "status_cmd.hpp"
#include "syngate/cookie.hpp"

namespace gw = syngate::gw;

namespace {

// The configuration, or nullopt with the reason printed for the operator.
std::optional<gw::GatewayConfig> load_or_report(const std::string& path) {
  try {
    return gw::load_config(path);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return std::nullopt;
  }
}

// Where this config's flow tables live when syngate runs in this network namespace.
std::string state_dir_of(const gw::GatewayConfig& c) {
  try {
    return gw::instance_dir(c.state_dir, gw::this_instance(c.instance));
  } catch (const std::exception&) {
    return c.state_dir + "/" + c.instance + ".netns-INODE";
  }
}

int cmd_check(const std::string& path) {
  const auto loaded = load_or_report(path);
  if (!loaded) return 2;
  const gw::GatewayConfig& c = *loaded;
  try {
    // Reads an existing secrets file (format, 0600); never creates one.
    gw::check_secret_file(c);
    // Tables that cannot fit would stop a start (or a restart in place) after the rules are up.
    gw::check_table_room(c, gw::machine_room(c.state_dir), false);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  if (!c.state_dir.empty()) {
    try {
      gw::check_state_dir(c.state_dir);
    } catch (const std::exception& e) {
      std::cerr << "error: " << path << ": gateway.state_dir: " << e.what() << "\n";
      return 2;
    }
  }
  struct stat st;
  std::cout << "ok: " << path << "\n";
  for (const auto& s : c.services) {
    std::cout << "  service " << (s.v6 ? "[" + s.address + "]" : s.address) << ":" << s.port << "\n";
  }
  std::cout << "  SYN queues " << c.syn_queue << ".." << c.syn_queue + c.syn_queues - 1
            << ", flow queues " << c.flow_queue << ".." << c.flow_queue + c.flow_queues - 1
            << ", mode " << gw::to_string(c.mode) << ", fail-" << (c.fail_open ? "open" : "closed")
            << "\n  metrics "
            << (c.metrics_port ? c.metrics_host + ":" + std::to_string(c.metrics_port) : std::string("off"))
            << ", secrets " << c.secret_file
            << (stat(c.secret_file.c_str(), &st) == 0 ? "" : " (created on first run)") << "\n  flow tables "
            << (c.state_dir.empty() ? std::string("in memory only (lost on restart)")
                                    : state_dir_of(c) + " (instance " + c.instance + " in this network namespace)")
            << ", " << (gw::flow_tables_bytes(c) >> 20) << " MiB for " << c.flow_queues << " flow queue(s)\n";
  std::string interfaces;
  for (const auto& i : c.xdp_interfaces) interfaces += (interfaces.empty() ? "" : ",") + i;
  std::cout << "  xdp " << gw::to_string(c.xdp_mode) << " on "
            << (interfaces.empty() ? std::string("every up, non-loopback interface") : interfaces) << "\n";
  return 0;
}

// With only a chain name (no configuration), `down` and `show` act on that chain in every
// backend: what the package's prerm does when the configuration no longer loads.
int cmd_rules(const std::string& action, const std::string& path, const std::string& chain_only) {
  gw::GatewayConfig c;
  if (!chain_only.empty()) {
    if (action == "up") {
      std::cerr << "error: rules up: --chain is for down and show; up needs the services: --config FILE\n";
      return 2;
    }
    c.chain = chain_only;
  } else if (path.empty()) {
    std::cerr << "error: rules " << action << ": --config FILE is required"
              << (action == "up" ? "" : " (or --chain NAME)") << "\n";
    return 2;
  } else {
    const auto loaded = load_or_report(path);
    if (!loaded) return 2;
    c = *loaded;
  }
  try {
    if (action == "up") {
      if (!c.state_dir.empty()) {
        try {
          c.draining = gw::read_draining_services(c.state_dir, gw::this_instance(c.instance));
        } catch (const std::exception& e) {
          // The rules go up regardless: without the list, only a removed service's last flows
          // lose their queueing.
          std::cerr << "warning: draining services not read: " << e.what() << "\n";
        }
        for (const auto& s : c.draining) {
          std::cout << "service " << s.address << ":" << s.port << " is draining: its flows stay queued\n";
        }
      }
      // Host and both modes with the kernel path: the OUTPUT match on the pinned flow map. Without
      // it every server reply stays queued (safe: the engine translates it).
      std::string output_match;
      if (syngate::tc::output_match_wanted(c)) {
        const syngate::tc::MatchPin pin = syngate::tc::pin_output_match(c);
        if (pin.path.empty()) {
          std::cerr << "warning: kernel path: no OUTPUT match, the server's replies stay on the queue (the engine "
                       "translates them): "
                    << pin.why << "\n";
        } else {
          std::cout << "kernel path: OUTPUT match pinned at " << pin.path << "\n";
          output_match = pin.path;
        }
      }
      gw::Backend b = gw::choose_backend(c.iptables);
      gw::apply_plan(b, gw::plan_up(c, output_match), c.has_v6());
      std::cout << "syngate rules installed (iptables-" << b.name << ", chain " << c.chain << ")\n"
                << gw::show_rules(b, c.chain);
    } else if (action == "down") {
      for (const auto& b : gw::available_backends(c.iptables)) {
        gw::apply_plan(b, gw::plan_down(c.chain), false);
      }
      // The kernel path's tc filters (and, with a configuration, its pinned map) go too: left
      // alone they would keep translating with the offsets of flows nobody tracks.
      for (const std::string& r : syngate::tc::remove_everywhere(chain_only.empty() ? syngate::tc::pin_dir(c.instance, c.bpf_dir) : "")) {
        std::cout << "removed tc " << r << "\n";
      }
      std::cout << "syngate rules removed (chain " << c.chain << ")\n";
    } else {
      bool any = false;
      for (const auto& b : gw::available_backends(c.iptables)) {
        std::string text = gw::show_rules(b, c.chain);
        if (text.empty()) continue;
        any = true;
        std::cout << "## iptables-" << b.name << "\n" << text;
      }
      if (!any) std::cout << "no syngate rules installed (chain " << c.chain << ")\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "error: rules " << action << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "syngate: inline SYN-flood gateway. Client SYNs to the configured services are answered with\n"
      "SYN cookies from NFQUEUE; only clients that complete the handshake reach the backends,\n"
      "through a per-connection proxy that translates sequence numbers.\n\n"
      "Typical deployment:\n"
      "  syngate check --config /etc/syngate/syngate.toml   # validate\n"
      "  syngate rules up --config /etc/syngate/syngate.toml # install the iptables rules\n"
      "  syngate run --config /etc/syngate/syngate.toml     # or: systemctl start syngate\n"
      "  syngate status --watch 2                           # what the running daemon is doing\n"
      "  syngate flows --config /etc/syngate/syngate.toml   # the connections it holds\n"
      "Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads log level, stats interval and cookie\n"
      "secrets (other changes need a restart and are named in the log)."};
  app.require_subcommand(1);
  std::string config;

  auto* run = app.add_subcommand("run", "Run the gateway in the foreground (needs CAP_NET_ADMIN and CAP_NET_RAW).");
  run->add_option("-c,--config", config, "TOML configuration file")->required();

  std::string action;
  auto* rules = app.add_subcommand(
      "rules",
      "Install (up), remove (down) or list (show) the iptables rules for the configured services\n"
      "in the current network namespace. Idempotent; uses a dedicated chain in the raw and mangle\n"
      "tables; works with the nft or the legacy iptables backend (gateway.iptables).\n"
      "`down --chain NAME` removes them without a configuration (e.g. one that no longer loads).");
  rules->add_option("action", action, "up | down | show")
      ->required()
      ->check(CLI::IsMember({"up", "down", "show"}));
  std::string chain;
  auto* rules_config = rules->add_option("-c,--config", config, "TOML configuration file");
  rules->add_option("--chain", chain,
                    "down/show without a configuration: the chain name (gateway.chain, default SYNGATE)")
      ->excludes(rules_config)
      ->check([](const std::string& name) {
        return gw::valid_chain_name(name) ? std::string()
                                          : "must be " + std::string(gw::kChainNameRule) + " (got \"" + name + "\")";
      });

  auto* check = app.add_subcommand("check", "Validate a configuration; errors name the key and the reason.");
  check->add_option("-c,--config", config, "TOML configuration file")->required();

  gw::StatusOptions status_options;
  auto* status = gw::add_status_subcommand(app, status_options);
  gw::FlowsOptions flows_options;
  auto* flows = gw::add_flows_subcommand(app, flows_options);

  CLI11_PARSE(app, argc, argv);
  if (*status) return gw::cmd_status(status_options);
  if (*flows) return gw::cmd_flows(flows_options);
  if (*check) return cmd_check(config);
  if (*rules) return cmd_rules(action, config, chain);
  const int rc = gw::run_daemon(config);
  if (rc == gw::kRestartInPlace) {
    // Same PID (systemd keeps tracking it), same arguments, the binary this process runs.
    execv("/proc/self/exe", argv);
    spdlog::critical("restart in place failed: exec /proc/self/exe: {}", std::strerror(errno));
    return 1;
  }
  return rc;
}
