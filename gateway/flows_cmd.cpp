// `syngate flows`: the connections a syngate holds, read from its flow-table files.
#include "flows_cmd.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "config.hpp"
#include "flow_state.hpp"
#include "syngate/flow_table.hpp"
#include "tc_program.hpp"
#include "timer_clock.hpp"

namespace syngate::gw {
namespace {

using flows::Flow;
using flows::FlowTable;
namespace flow_bit = flows::flow_bit;

constexpr const char* kStateNames[] = {"free", "syn-sent", "established", "closing", "linger"};

// The flow worker's stamps: the timer clock in ms, as 32 bits (their age reads right across a wrap).
uint32_t timer_clock_ms() { return static_cast<uint32_t>(timer_clock_ns() / 1000000ull); }

std::string endpoint(const Address& a, uint16_t port) {
  return a.is_v4() ? a.to_string() + ":" + std::to_string(port) : "[" + a.to_string() + "]:" + std::to_string(port);
}

// How far the close went, from Flow::bits.
std::string closing_of(uint8_t bits) {
  std::string out;
  auto add = [&](const char* what) { out += out.empty() ? what : std::string(",") + what; };
  if (bits & flow_bit::kClientFin) add("client-fin");
  if (bits & flow_bit::kServerFin) add("server-fin");
  if (bits & flow_bit::kClientFinAcked) add("client-fin-acked");
  if (bits & flow_bit::kServerFinAcked) add("server-fin-acked");
  return out;
}

// What the tc programs keep of a flow: its entries of the flow's own generation (a newer
// connection on the pair may have written others).
struct KernelView {
  int entries = 0;
  uint64_t segments = 0;
  uint64_t last_ns = 0;
  std::string closing;
};
KernelView kernel_view(const tc::PinnedFlows& map, const Flow& f) {
  KernelView v;
  auto add = [&](const std::optional<sg_tc_flow>& e, const char* end) {
    if (!e || e->generation != f.kernel_generation) return;
    ++v.entries;
    v.segments += e->packets;
    v.last_ns = std::max(v.last_ns, e->last_ns);
    auto note = [&](const std::string& what) { v.closing += (v.closing.empty() ? "" : ",") + what; };
    if (e->closing & SG_TC_SEEN_FIN) note(std::string(end) + "-fin");
    if (e->closing & SG_TC_SEEN_RST) note(std::string(end) + "-rst");
    if (e->closing & SG_TC_CLOSED_BY_ENGINE) note(std::string(end) + "-punted");
  };
  add(map.entry(f.key), "client");
  add(map.entry(f.key.reversed()), "server");
  return v;
}

struct Table {
  uint16_t queue = 0;
  std::string path;
  FlowTable::Snapshot snapshot;
};

// The table file at `path`, mapped read-only for as long as the copy takes.
FlowTable::Snapshot read_table(const std::string& path) {
  FlowTable::Snapshot s;
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    s.refused = std::string("cannot open: ") + std::strerror(errno);
    return s;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
    close(fd);
    s.refused = "not a table file";
    return s;
  }
  void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    s.refused = std::string("cannot map: ") + std::strerror(errno);
    return s;
  }
  s = FlowTable::snapshot({static_cast<const uint8_t*>(p), static_cast<size_t>(st.st_size)});
  munmap(p, static_cast<size_t>(st.st_size));
  return s;
}

}  // namespace

CLI::App* add_flows_subcommand(CLI::App& app, FlowsOptions& o) {
  auto* cmd = app.add_subcommand(
      "flows",
      "List the connections a syngate holds, read from its flow tables in gateway.state_dir (the\n"
      "instance of this configuration in this network namespace; run it where syngate runs, as\n"
      "root or the daemon's user). Nothing is asked of the daemon: the files are read as they\n"
      "stand, whether syngate runs or has stopped (its saved tables, taken over at its next start).\n"
      "One line a flow: queue, client, backend, state, idle (since its last segment; in syn-sent,\n"
      "since the SYN to the backend was sent), what of the close was seen, the SYN retries, the\n"
      "kernel path's generation and its tc entries. With the kernel path on, the tc programs carry\n"
      "established flows and the engine takes their activity and closes at its sweeps: the command\n"
      "reads their entries from the pinned map (gateway.bpf_dir) read-only, and the idle time is\n"
      "the newer of the two views; \"tc:\" marks a close only the programs have seen so far, and\n"
      "the state is the engine's until it takes it. Where the map cannot be read, it says why.\n"
      "Exit codes: 0 listed (an empty list too), 1 no table to read (syngate has not run here with\n"
      "this configuration), 2 bad configuration or gateway.state_dir empty.");
  cmd->add_option("-c,--config", o.config, "TOML configuration (default /etc/syngate/syngate.toml)");
  cmd->add_flag("--json", o.json, "One JSON object: the tables read and every flow");
  cmd->add_option("--state", o.state, "Only flows in this state")
      ->check(CLI::IsMember({"syn-sent", "established", "closing", "linger"}));
  return cmd;
}

int cmd_flows(const FlowsOptions& o) {
  GatewayConfig c;
  std::string dir;
  try {
    c = load_config(o.config);
    if (c.state_dir.empty()) {
      std::cerr << "error: " << o.config << ": gateway.state_dir is empty: syngate keeps no table files\n";
      return 2;
    }
    dir = instance_dir(c.state_dir, this_instance(c.instance));
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  // The tc programs' entries, where the kernel path may run: established flows' activity and
  // closes live there until the engine's next sweep.
  std::optional<tc::PinnedFlows> pinned;
  std::string kernel_unread;
  if (c.kernel_path_on()) {
    try {
      pinned.emplace(tc::pin_dir(c.instance, c.bpf_dir));
    } catch (const std::exception& e) {
      kernel_unread = e.what();
    }
  }
  std::vector<Table> tables;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    Table t;
    if (!is_table_name(e.path().filename().string(), &t.queue)) continue;
    t.path = e.path().string();
    t.snapshot = read_table(t.path);
    tables.push_back(std::move(t));
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    std::cerr << "error: " << dir << ": " << ec.message() << "\n";
    return 2;
  }
  if (tables.empty()) {
    std::cerr << "no flow table in " << dir << ": syngate has not run with this configuration in this network namespace\n";
    return 1;
  }
  std::sort(tables.begin(), tables.end(), [](const Table& a, const Table& b) { return a.queue < b.queue; });

  const uint32_t now = timer_clock_ms();
  auto wanted = [&](const Flow& f) { return o.state.empty() || o.state == kStateNames[static_cast<int>(f.state)]; };
  const uint64_t now_ns = timer_clock_ns();
  auto kernel_of = [&](const Flow& f) { return pinned ? kernel_view(*pinned, f) : KernelView{}; };
  // The newer of the engine's stamp and the programs' last segment, as the engine merges them.
  auto idle_s = [&](const Flow& f, const KernelView& k) {
    const double engine = static_cast<int32_t>(now - f.stamp_ms) / 1000.0;
    if (!k.entries || f.state == flows::State::SynSent) return engine;
    return std::min(engine, static_cast<double>(static_cast<int64_t>(now_ns - k.last_ns)) / 1e9);
  };
  auto closing_text = [&](const Flow& f, const KernelView& k) {
    std::string out = closing_of(f.bits);
    if (!k.closing.empty()) out += (out.empty() ? "tc:" : " tc:") + k.closing;
    return out;
  };
  size_t listed = 0;
  if (o.json) {
    nlohmann::json j;
    j["state_dir"] = dir;
    if (!kernel_unread.empty()) j["kernel_unread"] = kernel_unread;
    j["tables"] = nlohmann::json::array();
    j["flows"] = nlohmann::json::array();
    for (const Table& t : tables) {
      nlohmann::json tj{{"queue", t.queue}, {"file", t.path}, {"capacity", t.snapshot.max_flows},
                        {"live", t.snapshot.flows.size()}, {"unreadable", t.snapshot.unreadable}};
      if (!t.snapshot.refused.empty()) tj["refused"] = t.snapshot.refused;
      j["tables"].push_back(tj);
      for (const Flow& f : t.snapshot.flows) {
        if (!wanted(f)) continue;
        ++listed;
        const KernelView k = kernel_of(f);
        nlohmann::json fj{{"queue", t.queue},
                          {"client", endpoint(f.key.src, f.key.sport)},
                          {"backend", endpoint(f.key.dst, f.key.dport)},
                          {"state", kStateNames[static_cast<int>(f.state)]},
                          {"idle_s", idle_s(f, k)},
                          {"closing", closing_of(f.bits)},
                          {"syn_retries", f.retries},
                          {"kernel_generation", f.kernel_generation},
                          {"kernel_entries", k.entries}};
        if (k.entries) {
          fj["kernel_segments"] = k.segments;
          fj["kernel_closing"] = k.closing;
        }
        j["flows"].push_back(fj);
      }
    }
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::ostringstream rows;
  for (const Table& t : tables) {
    for (const Flow& f : t.snapshot.flows) {
      if (!wanted(f)) continue;
      ++listed;
      const KernelView k = kernel_of(f);
      char idle[32];
      std::snprintf(idle, sizeof idle, "%.1fs", idle_s(f, k));
      const std::string closing = closing_text(f, k);
      rows << std::left << std::setw(6) << t.queue << std::setw(48) << endpoint(f.key.src, f.key.sport) << std::setw(48)
           << endpoint(f.key.dst, f.key.dport) << std::setw(12) << kStateNames[static_cast<int>(f.state)]
           << std::setw(10) << idle << std::setw(48) << (closing.empty() ? "-" : closing) << std::setw(8)
           << static_cast<unsigned>(f.retries) << std::setw(12) << f.kernel_generation
           << (k.entries ? std::to_string(k.entries) + " entries, " + std::to_string(k.segments) + " segments" : "-")
           << "\n";
    }
  }
  std::cout << std::left << std::setw(6) << "queue" << std::setw(48) << "client" << std::setw(48) << "backend"
            << std::setw(12) << "state" << std::setw(10) << "idle" << std::setw(48) << "closing" << std::setw(8)
            << "retries" << std::setw(12) << "generation" << "tc\n"
            << rows.str();
  for (const Table& t : tables) {
    std::cout << "queue " << t.queue << ": " << t.path << ": ";
    if (!t.snapshot.refused.empty()) {
      std::cout << "not read (" << t.snapshot.refused << ")\n";
      continue;
    }
    std::cout << t.snapshot.flows.size() << " of " << t.snapshot.max_flows << " entries live";
    if (t.snapshot.unreadable) std::cout << ", " << t.snapshot.unreadable << " unreadable (damaged, or caught mid-write)";
    std::cout << "\n";
  }
  if (!kernel_unread.empty()) std::cout << "tc entries not read: " << kernel_unread << "\n";
  if (!o.state.empty()) std::cout << listed << " in state " << o.state << "\n";
  return 0;
}

}  // namespace syngate::gw
