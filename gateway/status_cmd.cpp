// `syngate status`: fetches the daemon's metrics twice and prints the report (status.hpp).
#include "status_cmd.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <iostream>
#include <thread>

#include "config.hpp"
#include "flow_state.hpp"
#include "health.hpp"
#include "health_socket.hpp"
#include "http_get.hpp"
#include "status.hpp"

namespace syngate::gw {

namespace {

std::atomic<bool> g_stop{false};
constexpr const char* kDefaultConfig = "/etc/syngate/syngate.toml";

double monotonic_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double unix_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

enum class FetchResult { Ok, Down, NotSyngate };

struct Fetched {
  FetchResult result = FetchResult::Down;
  std::string reason;
  Scrape scrape;
};

// Whatever answers at the address, a scrape ends within this and holds at most this much: a
// daemon's metrics are tens of kilobytes, even with many workers.
constexpr std::chrono::milliseconds kScrapeDeadline{5000};
constexpr size_t kMaxMetricsBytes = 16 * 1024 * 1024;

Fetched fetch(const std::string& host, uint16_t port) {
  Fetched f;
  f.scrape.time_s = monotonic_s();
  const HttpGetResult res = http_get(host, port, "/metrics", kScrapeDeadline, kMaxMetricsBytes);
  if (!res.ok) {
    // No answer in time counts as down; an answer that is not HTTP, or too large, is not syngate.
    const bool answered = res.connected && !res.timed_out;
    f.result = answered ? FetchResult::NotSyngate : FetchResult::Down;
    f.reason = (answered ? "" : "no answer at the metrics address: ") + res.error;
    return f;
  }
  if (res.status != 200) {
    f.result = FetchResult::NotSyngate;
    f.reason = "GET /metrics answered HTTP " + std::to_string(res.status);
    return f;
  }
  try {
    f.scrape.samples = parse_prometheus_text(res.body);
  } catch (const MetricsParseError& e) {
    f.result = FetchResult::NotSyngate;
    f.reason = e.what();
    return f;
  }
  f.result = FetchResult::Ok;
  return f;
}

bool sleep_interruptible(double seconds) {
  const double end = monotonic_s() + seconds;
  while (!g_stop.load()) {
    double left = end - monotonic_s();
    if (left <= 0) return true;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(left, 0.1)));
  }
  return false;
}

}  // namespace

CLI::App* add_status_subcommand(CLI::App& app, StatusOptions& o) {
  auto* cmd = app.add_subcommand(
      "status",
      "Show what a running syngate is doing, read from its metrics endpoint: up or not, uptime,\n"
      "per-worker rates (SYNs, cookies sent/valid/invalid, flows created), active flows and table\n"
      "use, drops by reason, kernel queue drops, the XDP fast path when present.\n"
      "Rates need two scrapes: a single run takes two one second apart; --watch S redraws every S s.\n"
      "Each scrape gets 5 s and 16 MiB in all, whatever answers at the address.\n"
      "Exit codes: 0 up, 1 not running (nothing answers, or not within 5 s), 2 bad configuration\n"
      "or metrics off, 3 the address answers but not with syngate's metrics.\n\n"
      "--check: is this gateway fit to receive traffic? For a routing daemon that announces the\n"
      "service only while it is (deploy/bird/, docs/scale-out.md). Asks the daemon over the unix\n"
      "socket health.sock in its instance directory (gateway.state_dir, 0700), not over the\n"
      "metrics port; believes only a socket held by root or --daemon-user. Healthy: every worker\n"
      "made progress within 2 s, the main thread within 5 s, the iptables rules are in place and,\n"
      "with [xdp] mode native, generic or tc, the fast path is attached. Prints one line; answers\n"
      "within 2 s. Exit codes with --check: 0 healthy; 1 not healthy (the line says why) or not\n"
      "running (no socket, no answer); 2 bad configuration or gateway.state_dir empty; 3 the socket\n"
      "is held by another user or answered something else (not believed). Non-zero: withdraw.");
  cmd->add_option("-c,--config", o.config,
                  "TOML configuration: gateway.metrics_address comes from it (default\n"
                  "/etc/syngate/syngate.toml when it exists, else 127.0.0.1:9470); table use comes\n"
                  "from the daemon's syngate_flow_table_capacity (engine.max_flows for an older daemon)");
  cmd->add_flag("--json", o.json, "One JSON object per screen (with --watch, one per line)");
  cmd->add_option("--watch", o.watch_s, "Redraw every S seconds (0.2 to 86400) until interrupted")
      ->type_name("S")
      // CLI::Range lets NaN through (no comparison with it is true), and NaN never ends a sleep.
      ->check(CLI::Validator(
                  [](std::string& text) {
                    const double v = std::strtod(text.c_str(), nullptr);
                    return std::isfinite(v) ? std::string() : "needs a finite number of seconds, got " + text;
                  },
                  "", "finite"))
      ->check(CLI::Range(0.2, 86400.0));
  auto* check = cmd->add_flag("--check", o.check,
                              "Exit 0 only when the daemon is healthy (see above); for routing daemons");
  cmd->add_option("--daemon-user", o.daemon_user,
                  "--check: the user the daemon runs as, whose socket is believed besides root's\n"
                  "(default syngate, the package's user)")
      ->needs(check);
  check->excludes("--watch")->excludes("--json");
  cmd->callback([&o]() {
    struct stat st;
    if (o.config.empty() && stat(kDefaultConfig, &st) == 0) o.config = kDefaultConfig;
  });
  return cmd;
}

int cmd_status_check(const StatusOptions& o) {
  if (o.config.empty()) {
    std::cerr << "error: status --check needs the daemon's configuration (--config FILE; "
              << kDefaultConfig << " does not exist): the socket lives in its gateway.state_dir\n";
    return 2;
  }
  GatewayConfig c;
  std::string path;
  try {
    c = load_config(o.config);
    if (c.state_dir.empty()) {
      std::cerr << "error: " << o.config << ": gateway.state_dir is empty: the daemon has no health socket\n";
      return 2;
    }
    path = instance_dir(c.state_dir, this_instance(c.instance)) + "/" + kHealthSocketName;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  std::vector<uid_t> trusted{0};
  if (const passwd* pw = getpwnam(o.daemon_user.c_str())) trusted.push_back(pw->pw_uid);
  const HealthQuery q = query_health(path, trusted, std::chrono::milliseconds(2000));
  if (q.result == HealthQuery::Result::NoAnswer) {
    std::cout << "not running: " << q.error << "\n";
    return 1;
  }
  if (q.result == HealthQuery::Result::Untrusted) {
    std::cout << "not believed: " << q.error << "\n";
    return 3;
  }
  HealthVerdict v;
  try {
    v = parse_health_answer(q.line);
  } catch (const std::exception& e) {
    std::cout << "not believed: " << path << ": " << e.what() << "\n";
    return 3;
  }
  if (v.healthy) {
    std::cout << "healthy: " << v.summary << "\n";
    return 0;
  }
  std::string problems;
  for (const auto& p : v.problems) problems += (problems.empty() ? "" : "; ") + p;
  std::cout << "unhealthy: " << problems << "\n";
  return 1;
}

int cmd_status(const StatusOptions& o) {
  if (o.check) return cmd_status_check(o);
  std::string host = "127.0.0.1";
  uint16_t port = 9470;
  uint32_t max_flows = 0;
  if (!o.config.empty()) {
    GatewayConfig c;
    try {
      c = load_config(o.config);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 2;
    }
    if (c.metrics_port == 0) {
      std::cerr << "error: " << o.config
                << ": gateway.metrics_address is \"off\": status reads the metrics endpoint, enable it\n";
      return 2;
    }
    host = c.metrics_host;
    port = c.metrics_port;
    max_flows = c.engine.max_flows;
  }
  const std::string endpoint = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                               std::to_string(port);

  const bool watching = o.watch_s > 0;
  const bool clear = watching && !o.json && isatty(STDOUT_FILENO);
  if (watching) {
    std::signal(SIGINT, [](int) { g_stop.store(true); });
    std::signal(SIGTERM, [](int) { g_stop.store(true); });
  }

  int rc = 0;
  Fetched prev = fetch(host, port);
  // The first screen comes after one second even with a longer --watch interval.
  double wait = 1.0;
  while (true) {
    if (prev.result == FetchResult::Ok && !sleep_interruptible(wait)) break;
    Fetched now = prev.result == FetchResult::Ok ? fetch(host, port) : prev;
    std::string text;
    nlohmann::json json;
    if (now.result == FetchResult::Ok) {
      try {
        StatusReport r = build_status(prev.scrape, now.scrape, max_flows, unix_s(), endpoint);
        text = render_status_text(r);
        json = status_to_json(r);
        rc = 0;
      } catch (const std::exception& e) {
        now.result = FetchResult::NotSyngate;
        now.reason = e.what();
      }
    }
    if (now.result == FetchResult::Down) {
      text = render_down_text(endpoint, now.reason);
      json = down_to_json(endpoint, now.reason);
      rc = 1;
    } else if (now.result == FetchResult::NotSyngate) {
      text = "syngate at " + endpoint + ": NOT SYNGATE (" + now.reason + ")\n";
      json = down_to_json(endpoint, now.reason);
      rc = 3;
    }
    if (clear) std::cout << "\033[H\033[2J";
    if (o.json) {
      std::cout << json_text(json) << "\n";
    } else {
      std::cout << text;
      if (watching) std::cout << "\n(every " << o.watch_s << " s; Ctrl-C to stop)\n";
    }
    std::cout.flush();
    if (!watching) break;
    if (now.result != FetchResult::Ok) {
      // Keep watching: the screen comes back when the daemon does.
      if (!sleep_interruptible(o.watch_s)) break;
      prev = fetch(host, port);
      wait = 1.0;
      continue;
    }
    prev = std::move(now);
    wait = o.watch_s;
  }
  return watching && g_stop.load() ? 0 : rc;
}

}  // namespace syngate::gw
