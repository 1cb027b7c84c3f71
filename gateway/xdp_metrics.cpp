// The fast path's metrics in the Prometheus text format (syngate_xdp_*).
#include <sstream>

#include "fast_path.hpp"
#include "metrics.hpp"

namespace syngate::xdp {

// No fast path, no syngate_xdp_* series: their absence is what `syngate status` and dashboards
// read as "not in use".
std::string FastPath::render_disabled() { return ""; }

std::string FastPath::render_metrics() const {
  std::ostringstream out;
  const std::vector<Attachment> attached = program_->attachments();
  out << "# HELP syngate_xdp_enabled Whether the XDP fast path is attached anywhere.\n"
         "# TYPE syngate_xdp_enabled gauge\nsyngate_xdp_enabled "
      << (attached.empty() ? 0 : 1) << "\n";
  out << "# HELP syngate_xdp_attached XDP attachments of syngate's program, by interface, mode and driver.\n"
         "# TYPE syngate_xdp_attached gauge\n";
  for (const auto& a : attached) {
    out << "syngate_xdp_attached{interface=\"" << gw::prometheus_label_value(a.interface) << "\",mode=\""
        << to_string(a.mode) << "\",driver=\"" << gw::prometheus_label_value(a.driver) << "\"} 1\n";
  }
  out << "# HELP syngate_xdp_packets_total Packets the XDP fast path decided, by outcome (summed over CPUs).\n"
         "# TYPE syngate_xdp_packets_total counter\n";
  const Counters c = program_->counters();
  for (size_t i = 0; i < c.size(); ++i) {
    out << "syngate_xdp_packets_total{outcome=\"" << kCounterNames[i] << "\"} " << c[i] << "\n";
  }
  out << "# HELP syngate_xdp_drops_total Packets the XDP fast path dropped by the SYN decision, by reason.\n"
         "# TYPE syngate_xdp_drops_total counter\n";
  const ReasonCounters r = program_->reasons();
  for (size_t i = 1; i < kSynDropReasonEnd; ++i) {  // the reasons the program can drop for
    out << "syngate_xdp_drops_total{reason=\"" << kDropReasonLabels[i] << "\"} " << r[i] << "\n";
  }
  out << "# HELP syngate_xdp_flow_insert_failures_total Flows the XDP flow map could not take.\n"
         "# TYPE syngate_xdp_flow_insert_failures_total counter\n"
      << "syngate_xdp_flow_insert_failures_total " << flow_insert_failures_.load() << "\n";
  // A walk of the map: a scrape's cost, not the packets'.
  out << "# HELP syngate_xdp_flow_keys Keys in the XDP flow map (one per flow the engines hold).\n"
         "# TYPE syngate_xdp_flow_keys gauge\nsyngate_xdp_flow_keys "
      << program_->flow_keys_count() << "\n";
  return out.str();
}

}  // namespace syngate::xdp
