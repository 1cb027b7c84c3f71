// Prometheus text rendering of the daemon's counters, and parsing of the kernel's per-queue
// statistics (/proc/net/netfilter/nfnetlink_queue). Pure code: the daemon collects, this formats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "syngate/engine.hpp"

namespace syngate::gw {

// What the NFQUEUE intake of one worker counts, besides the engine's own counters.
struct IntakeCounters {
  uint64_t batches = 0;          // recvmmsg calls that returned packets
  uint64_t verdict_accept = 0;   // accepted unmodified
  uint64_t verdict_modified = 0; // accepted with rewritten bytes
  uint64_t verdict_drop = 0;
  uint64_t verdict_next_queue = 0;  // handed untouched to the next flow queue (ICMP errors)
  uint64_t netlink_enobufs = 0;  // the socket overflowed: the kernel dropped queued packets
  uint64_t netlink_errors = 0;   // other receive/send errors, and error acks from the kernel
  uint64_t exceptions = 0;       // the engine threw: the packet got the fail-mode verdict
  uint64_t truncated = 0;        // packet larger than the copy range: dropped (never mangled)
  uint64_t emitted = 0;          // packets sent through the raw sockets
  uint64_t emit_errors = 0;      // raw-socket sends that failed
  int emit_last_errno = 0;       // why the latest failed (for the log: an operator's first question)
};

struct WorkerSnapshot {
  unsigned id = 0;
  bool syn_only = false;  // a SYN worker (answer_syn, no flow table)
  uint16_t queue = 0;
  EngineCounters engine{};
  IntakeCounters intake{};
  uint64_t flow_table_bytes = 0;
  uint64_t flow_table_capacity = 0;  // engine.max_flows of a flow worker; 0 for SYN workers
};

// One line of /proc/net/netfilter/nfnetlink_queue.
struct KernelQueueStats {
  uint16_t queue = 0;
  uint32_t portid = 0;
  uint64_t waiting = 0;       // queue_total: packets waiting for a verdict now
  uint64_t queue_dropped = 0; // dropped because the queue was at its maxlen
  uint64_t user_dropped = 0;  // dropped because our netlink socket buffer was full
  uint64_t id_sequence = 0;   // packets ever queued (last packet id)
};

std::vector<KernelQueueStats> parse_nfqueue_proc(std::string_view text);

struct GatewaySnapshot {
  std::vector<WorkerSnapshot> workers;
  std::vector<KernelQueueStats> queues;  // only the queues we own
  uint64_t secrets_generation = 0;
  uint64_t reloads = 0;
  uint64_t reload_failures = 0;
  int rules_in_place = -1;  // 1 / 0 at the daemon's last check; -1 before the first
  double start_time_seconds = 0;  // unix time
  uint64_t rss_bytes = 0;
};

std::string render_prometheus(const GatewaySnapshot& s);

// A label value as the exposition format writes it: backslash, double quote and newline escaped.
// Every value that comes from outside (an interface name such as up"link, a driver) goes
// through it, or one such name breaks every scrape.
inline std::string prometheus_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

// Totals over all workers (for the periodic log line and the tests).
EngineCounters sum_engine(const std::vector<WorkerSnapshot>& workers);
IntakeCounters sum_intake(const std::vector<WorkerSnapshot>& workers);

// "syn=.. cookies=../../.. flows=.. ..." for the periodic log line; `prev` gives rates over dt.
std::string summary_line(const GatewaySnapshot& now, const GatewaySnapshot& prev, double dt_seconds);

}  // namespace syngate::gw
