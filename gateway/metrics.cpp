#include "metrics.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace syngate::gw {

std::vector<KernelQueueStats> parse_nfqueue_proc(std::string_view text) {
  // Columns: queue_number peer_portid queue_total copy_mode copy_range queue_dropped
  //          user_dropped id_sequence 1
  std::vector<KernelQueueStats> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string line(text.substr(pos, nl - pos));
    pos = nl + 1;
    unsigned q = 0, portid = 0, mode = 0, range = 0;
    unsigned long long total = 0, qd = 0, ud = 0, seq = 0;
    if (std::sscanf(line.c_str(), "%u %u %llu %u %u %llu %llu %llu", &q, &portid, &total, &mode,
                    &range, &qd, &ud, &seq) == 8 &&
        q <= 65535) {
      out.push_back({static_cast<uint16_t>(q), portid, total, qd, ud, seq});
    }
  }
  return out;
}

EngineCounters sum_engine(const std::vector<WorkerSnapshot>& workers) {
  EngineCounters t{};
  for (const auto& w : workers) {
    const EngineCounters& c = w.engine;
    t.packets += c.packets;
    t.syn_received += c.syn_received;
    t.cookies_sent += c.cookies_sent;
    t.cookies_valid += c.cookies_valid;
    t.cookies_invalid += c.cookies_invalid;
    t.flows_created += c.flows_created;
    t.flows_refused += c.flows_refused;
    t.flows_closed += c.flows_closed;
    t.flows_active += c.flows_active;
    t.flows_reused += c.flows_reused;
    t.backend_syns_sent += c.backend_syns_sent;
    t.backend_syn_retries += c.backend_syn_retries;
    t.established += c.established;
    t.kernel_handshakes += c.kernel_handshakes;
    t.kernel_opened += c.kernel_opened;
    t.kernel_opened_refused += c.kernel_opened_refused;
    t.translated += c.translated;
    t.kernel_punts += c.kernel_punts;
    t.kernel_report_sweeps += c.kernel_report_sweeps;
    t.passed_through += c.passed_through;
    t.early_data_buffered += c.early_data_buffered;
    t.early_fins_held += c.early_fins_held;
    t.icmp_translated += c.icmp_translated;
    t.icmp_passed_on += c.icmp_passed_on;
    t.icmp_untouched += c.icmp_untouched;
    t.flows_restored += c.flows_restored;
    t.restore_dropped_torn += c.restore_dropped_torn;
    t.restore_dropped_invalid += c.restore_dropped_invalid;
    t.restore_dropped_no_room += c.restore_dropped_no_room;
    for (size_t i = 0; i < kDropReasonCount; ++i) t.drops[i] += c.drops[i];
  }
  return t;
}

IntakeCounters sum_intake(const std::vector<WorkerSnapshot>& workers) {
  IntakeCounters t{};
  for (const auto& w : workers) {
    const IntakeCounters& c = w.intake;
    t.batches += c.batches;
    t.verdict_accept += c.verdict_accept;
    t.verdict_modified += c.verdict_modified;
    t.verdict_drop += c.verdict_drop;
    t.verdict_next_queue += c.verdict_next_queue;
    t.netlink_enobufs += c.netlink_enobufs;
    t.netlink_errors += c.netlink_errors;
    t.exceptions += c.exceptions;
    t.truncated += c.truncated;
    t.emitted += c.emitted;
    t.emit_errors += c.emit_errors;
    if (c.emit_last_errno != 0) t.emit_last_errno = c.emit_last_errno;
  }
  return t;
}

namespace {

class Writer {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  void worker(const char* name, const WorkerSnapshot& w, uint64_t v, const char* extra = nullptr) {
    out_ << name << "{worker=\"" << w.id << "\",kind=\"" << (w.syn_only ? "syn" : "flow")
         << "\",queue=\"" << w.queue << '"';
    if (extra) out_ << ',' << extra;
    out_ << "} " << v << '\n';
  }
  void plain(const char* name, const std::string& labels, double v) {
    out_ << name;
    if (!labels.empty()) out_ << '{' << labels << '}';
    char buf[64];
    if (v == static_cast<double>(static_cast<uint64_t>(v)) && v >= 0) {
      std::snprintf(buf, sizeof buf, "%" PRIu64, static_cast<uint64_t>(v));
    } else {
      std::snprintf(buf, sizeof buf, "%.3f", v);
    }
    out_ << ' ' << buf << '\n';
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace

std::string render_prometheus(const GatewaySnapshot& s) {
  Writer w;
  struct EngineMetric {
    const char* name;
    const char* type;
    const char* help;
    uint64_t EngineCounters::*field;
  };
  static const EngineMetric engine_metrics[] = {
      {"syngate_packets_total", "counter", "Packets the worker received from its NFQUEUE.", &EngineCounters::packets},
      {"syngate_syn_received_total", "counter", "Client SYNs to a protected service.", &EngineCounters::syn_received},
      {"syngate_cookies_sent_total", "counter", "SYN-ACKs sent with a SYN cookie.", &EngineCounters::cookies_sent},
      {"syngate_cookies_valid_total", "counter", "Client ACKs whose cookie validated.", &EngineCounters::cookies_valid},
      {"syngate_cookies_invalid_total", "counter", "Client ACKs with no flow and a cookie that failed (forged, expired or spoofed).", &EngineCounters::cookies_invalid},
      {"syngate_flows_created_total", "counter", "Flows created after a valid cookie.", &EngineCounters::flows_created},
      {"syngate_flows_refused_total", "counter", "Valid cookies refused a flow (table full or per-source limit).", &EngineCounters::flows_refused},
      {"syngate_flows_closed_total", "counter", "Flows freed (closed, reset or idle).", &EngineCounters::flows_closed},
      {"syngate_flows_reused_total", "counter", "Lingering flows replaced by a new valid cookie on the same tuple.", &EngineCounters::flows_reused},
      {"syngate_backend_syns_sent_total", "counter", "SYNs sent to backends (first attempts).", &EngineCounters::backend_syns_sent},
      {"syngate_backend_syn_retries_total", "counter", "SYN retransmissions to backends that did not answer.", &EngineCounters::backend_syn_retries},
      {"syngate_established_total", "counter", "Flows whose backend handshake completed.", &EngineCounters::established},
      {"syngate_kernel_handshakes_total", "counter", "Of those, the ones whose backend SYN-ACK the tc program answered (gateway.tc_handshake).", &EngineCounters::kernel_handshakes},
      {"syngate_kernel_opened_total", "counter", "Flows the tc program opened from the client's cookie ACK (gateway.tc_open_flows).", &EngineCounters::kernel_opened},
      {"syngate_kernel_opened_refused_total", "counter", "Of those, the ones the engine refused (the source's limits, no room, the pair in use): backend and client reset.", &EngineCounters::kernel_opened_refused},
      {"syngate_translated_total", "counter", "Packets of established flows rewritten (seq/ack/timestamps/window).", &EngineCounters::translated},
      {"syngate_timestamps_supplied_total", "counter", "Segments to clients given the Timestamps option their backend does not send (the client was promised timestamps).", &EngineCounters::timestamps_supplied},
      {"syngate_timestamps_not_supplied_total", "counter", "Segments to such clients left without one (no room, or an option syngate cannot keep).", &EngineCounters::timestamps_not_supplied},
      {"syngate_rst_passed_in_window_total", "counter", "RSTs inside the receiver's window but not exact: passed on for the endpoint to judge, which answers with a challenge ACK (RFC 5961); the flow carries on.", &EngineCounters::rst_passed_in_window},
      {"syngate_kernel_punts_total", "counter", "Flows the engine saw close (FIN, RST) that the tc programs still translated: told to send their segments to NFQUEUE from then on.", &EngineCounters::kernel_punts},
      {"syngate_kernel_report_sweeps_total", "counter", "Walks of the flow table after the tc programs' report ring overflowed (events_lost): each flow is established or closed from its entries.", &EngineCounters::kernel_report_sweeps},
      {"syngate_passed_through_total", "counter", "Packets accepted untouched (not for a protected service).", &EngineCounters::passed_through},
      {"syngate_early_data_buffered_total", "counter", "Client data segments held until the backend answered.", &EngineCounters::early_data_buffered},
      {"syngate_early_fins_held_total", "counter", "Client FINs right behind their early data, held with it and sent on when the backend answered.", &EngineCounters::early_fins_held},
      {"syngate_flows_restored_total", "counter", "Flows taken over at start from the table the previous process left (restart, upgrade, crash).", &EngineCounters::flows_restored},
  };
  for (const auto& m : engine_metrics) {
    w.family(m.name, m.type, m.help);
    for (const auto& wk : s.workers) w.worker(m.name, wk, wk.engine.*(m.field));
  }
  w.family("syngate_flows_active", "gauge", "Flows in the worker's flow table now.");
  for (const auto& wk : s.workers) w.worker("syngate_flows_active", wk, wk.engine.flows_active);
  w.family("syngate_flow_table_bytes", "gauge", "Memory preallocated for the flow table and early-data pool.");
  for (const auto& wk : s.workers) w.worker("syngate_flow_table_bytes", wk, wk.flow_table_bytes);
  w.family("syngate_flow_table_capacity", "gauge", "Flows the worker's table holds at most (engine.max_flows).");
  for (const auto& wk : s.workers) {
    if (!wk.syn_only) w.worker("syngate_flow_table_capacity", wk, wk.flow_table_capacity);
  }

  w.family("syngate_icmp_errors_total", "counter",
           "ICMP errors about a protected service's TCP segments, by outcome: translated (the quote "
           "moved into the sequence space of the endpoint it is addressed to), passed_on (no flow on "
           "this worker: handed to the next flow queue), untouched (not an error that concerns TCP, or a "
           "quote too short or malformed to translate: accepted as it is). Errors no worker has a flow "
           "for are dropped as syngate_drops_total{reason=\"icmp_no_flow\"}.");
  for (const auto& wk : s.workers) {
    w.worker("syngate_icmp_errors_total", wk, wk.engine.icmp_translated, "outcome=\"translated\"");
    w.worker("syngate_icmp_errors_total", wk, wk.engine.icmp_passed_on, "outcome=\"passed_on\"");
    w.worker("syngate_icmp_errors_total", wk, wk.engine.icmp_untouched, "outcome=\"untouched\"");
  }

  w.family("syngate_flows_restore_dropped_total", "counter",
           "Saved flows dropped at start, by reason: torn (being changed when the process died), "
           "invalid (contradictory fields or a duplicate), no_room (the new table is smaller).");
  for (const auto& wk : s.workers) {
    w.worker("syngate_flows_restore_dropped_total", wk, wk.engine.restore_dropped_torn, "reason=\"torn\"");
    w.worker("syngate_flows_restore_dropped_total", wk, wk.engine.restore_dropped_invalid, "reason=\"invalid\"");
    w.worker("syngate_flows_restore_dropped_total", wk, wk.engine.restore_dropped_no_room, "reason=\"no_room\"");
  }

  std::string work;  // the reasons that count normal work: "a and b"
  for (size_t i = 1; i < kDropReasonCount; ++i) {
    if (kDropReasonIsWork[i]) work += (work.empty() ? "" : " and ") + std::string(kDropReasonLabels[i]);
  }
  const std::string drops_help =
      "Packets consumed or dropped, and flows refused, by reason (" + work + " are normal work, not errors).";
  w.family("syngate_drops_total", "counter", drops_help.c_str());
  for (const auto& wk : s.workers) {
    for (size_t i = 1; i < kDropReasonCount; ++i) {  // every reason but None
      std::string extra = "reason=\"" + prometheus_label_value(kDropReasonLabels[i]) + "\"";
      w.worker("syngate_drops_total", wk, wk.engine.drops[i], extra.c_str());
    }
  }

  w.family("syngate_verdicts_total", "counter", "Verdicts given to the kernel, by verdict.");
  for (const auto& wk : s.workers) {
    w.worker("syngate_verdicts_total", wk, wk.intake.verdict_accept, "verdict=\"accept\"");
    w.worker("syngate_verdicts_total", wk, wk.intake.verdict_modified, "verdict=\"accept_modified\"");
    w.worker("syngate_verdicts_total", wk, wk.intake.verdict_drop, "verdict=\"drop\"");
    w.worker("syngate_verdicts_total", wk, wk.intake.verdict_next_queue, "verdict=\"next_queue\"");
  }
  struct IntakeMetric {
    const char* name;
    const char* help;
    uint64_t IntakeCounters::*field;
  };
  static const IntakeMetric intake_metrics[] = {
      {"syngate_receive_batches_total", "recvmmsg calls that returned packets (packets/batches = mean batch).", &IntakeCounters::batches},
      {"syngate_netlink_drops_total", "ENOBUFS on the queue socket: the kernel dropped packets it could not deliver (see syngate_queue_user_dropped_total for the count).", &IntakeCounters::netlink_enobufs},
      {"syngate_netlink_errors_total", "Other netlink receive/send errors and kernel error replies.", &IntakeCounters::netlink_errors},
      {"syngate_engine_exceptions_total", "Packets whose processing threw; they got the fail-mode verdict.", &IntakeCounters::exceptions},
      {"syngate_truncated_total", "Packets longer than the copy range; dropped so that a partial copy is never re-injected.", &IntakeCounters::truncated},
      {"syngate_emitted_total", "Packets the engine sent through the raw sockets.", &IntakeCounters::emitted},
      {"syngate_emit_errors_total", "Raw-socket sends that failed.", &IntakeCounters::emit_errors},
  };
  for (const auto& m : intake_metrics) {
    w.family(m.name, "counter", m.help);
    for (const auto& wk : s.workers) w.worker(m.name, wk, wk.intake.*(m.field));
  }

  w.family("syngate_queue_waiting", "gauge", "Packets waiting in the kernel queue for a verdict.");
  for (const auto& q : s.queues) w.plain("syngate_queue_waiting", "queue=\"" + std::to_string(q.queue) + "\"", static_cast<double>(q.waiting));
  w.family("syngate_queue_dropped_total", "counter", "Packets the kernel dropped because the queue was full (queue_maxlen), or let through if fail_open.");
  for (const auto& q : s.queues) w.plain("syngate_queue_dropped_total", "queue=\"" + std::to_string(q.queue) + "\"", static_cast<double>(q.queue_dropped));
  w.family("syngate_queue_user_dropped_total", "counter", "Packets the kernel dropped because syngate's netlink socket buffer was full.");
  for (const auto& q : s.queues) w.plain("syngate_queue_user_dropped_total", "queue=\"" + std::to_string(q.queue) + "\"", static_cast<double>(q.user_dropped));
  w.family("syngate_queue_packets_total", "counter", "Packets ever queued on the queue (kernel id sequence).");
  for (const auto& q : s.queues) w.plain("syngate_queue_packets_total", "queue=\"" + std::to_string(q.queue) + "\"", static_cast<double>(q.id_sequence));

  w.family("syngate_cookie_secrets_generation", "gauge", "Increments each time new cookie secrets are loaded or rotated.");
  w.plain("syngate_cookie_secrets_generation", "", static_cast<double>(s.secrets_generation));
  w.family("syngate_reloads_total", "counter", "SIGHUP reloads, by result.");
  w.plain("syngate_reloads_total", "result=\"ok\"", static_cast<double>(s.reloads));
  w.plain("syngate_reloads_total", "result=\"failed\"", static_cast<double>(s.reload_failures));
  w.family("syngate_rules_in_place", "gauge",
           "1 when syngate's iptables chains and the jumps into them were all there at the last check (every 2 s), "
           "0 when some were missing: the services' traffic then bypasses syngate. -1 before the first check.");
  w.plain("syngate_rules_in_place", "", static_cast<double>(s.rules_in_place));
  w.family("syngate_resident_memory_bytes", "gauge", "Resident set size of the daemon.");
  w.plain("syngate_resident_memory_bytes", "", static_cast<double>(s.rss_bytes));
  w.family("syngate_start_time_seconds", "gauge", "Unix time the daemon started.");
  w.plain("syngate_start_time_seconds", "", s.start_time_seconds);
  return w.str();
}

namespace {
// Why valid cookies were refused, for a person reading a stop line after a client saw a reset.
std::string refused_breakdown(const EngineCounters& c) {
  std::string out;
  for (const DropReason r : {DropReason::TableFull, DropReason::SourceLimit, DropReason::NewFlowRate, DropReason::PairInUse}) {
    if (c.drop(r) == 0) continue;
    out += out.empty() ? " (" : ", ";
    out += std::string(to_string(r)) + " " + std::to_string(c.drop(r));
  }
  return out.empty() ? out : out + ")";
}
}  // namespace

std::string summary_line(const GatewaySnapshot& now, const GatewaySnapshot& prev, double dt) {
  EngineCounters a = sum_engine(now.workers), b = sum_engine(prev.workers);
  IntakeCounters ia = sum_intake(now.workers);
  uint64_t qd = 0, ud = 0;
  for (const auto& q : now.queues) {
    qd += q.queue_dropped;
    ud += q.user_dropped;
  }
  auto rate = [&](uint64_t x, uint64_t y) { return dt > 0 ? static_cast<double>(x - y) / dt : 0.0; };
  char head[256], tail[256];
  std::snprintf(head, sizeof head,
                "pkts %.0f/s syn %.0f/s cookies sent %.0f/s valid %.0f/s invalid %.0f/s | flows active %" PRIu64
                " created %.0f/s refused %" PRIu64,
                rate(a.packets, b.packets), rate(a.syn_received, b.syn_received),
                rate(a.cookies_sent, b.cookies_sent), rate(a.cookies_valid, b.cookies_valid),
                rate(a.cookies_invalid, b.cookies_invalid), a.flows_active,
                rate(a.flows_created, b.flows_created), a.flows_refused);
  std::snprintf(tail, sizeof tail,
                " | queue drops %" PRIu64 " user drops %" PRIu64 " enobufs %" PRIu64 " exceptions %" PRIu64
                " emit errors %" PRIu64,
                qd, ud, ia.netlink_enobufs, ia.exceptions, ia.emit_errors);
  std::string line = std::string(head) + refused_breakdown(a) + tail;
  if (ia.emit_errors > 0 && ia.emit_last_errno != 0) line += std::string(" (last: ") + std::strerror(ia.emit_last_errno) + ")";
  return line;
}

}  // namespace syngate::gw
