// `syngate status`: what an operator asks first about a running gateway, read from its
// Prometheus endpoint. The parsing, the report and its rendering are pure (tested on captured
// metrics text); fetching and the watch loop live in status_cmd.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace syngate::gw {

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

class MetricsParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Prometheus text exposition format (version 0.0.4): comments and blank lines skipped, label
// values unescaped, an optional timestamp ignored. A malformed line throws with its number.
std::vector<MetricSample> parse_prometheus_text(std::string_view text);

struct Scrape {
  std::vector<MetricSample> samples;
  double time_s = 0;  // when it was taken (monotonic seconds; only differences matter)
};

// Rates are per second over the interval between two scrapes; a counter that went down (the
// daemon restarted) counts from zero, as Prometheus's rate() does.
struct WorkerStatus {
  std::string worker, kind, queue;
  double packets_rate = 0, syn_rate = 0, cookies_sent_rate = 0, cookies_valid_rate = 0,
         cookies_invalid_rate = 0, flows_created_rate = 0;
  uint64_t flows_active = 0;
  std::optional<double> table_use;  // flows_active / max_flows, for flow workers when known
  uint64_t queue_waiting = 0;
  bool stalled = false;  // packets waiting in its queue, none taken during the interval
};

struct CounterStatus {
  double total = 0;
  double rate = 0;
};

struct QueueStatus {
  std::string queue, kind;  // kind from the worker bound to it ("syn", "flow", or "" if none)
  uint64_t waiting = 0;
  CounterStatus dropped, user_dropped;
};

struct XdpSeries {
  std::string series;  // name{labels}
  double value = 0;
  std::optional<double> rate;  // for counters (*_total)
};

struct StatusReport {
  std::string endpoint;
  double interval_s = 0;
  bool restarted = false;  // start time changed between the scrapes
  double uptime_s = 0;
  double start_time_s = 0;
  std::vector<WorkerStatus> workers;
  WorkerStatus total;  // summed over workers (table use over every flow table)
  std::map<std::string, CounterStatus> drops;  // by reason, summed over workers
  std::vector<QueueStatus> queues;
  std::vector<XdpSeries> xdp;  // every syngate_xdp_* series, when the daemon exports them
  // Segments of established flows translated by the engine (NFQUEUE) and by the tc programs
  // (the kernel path; none when the daemon exports no syngate_tc_* metrics).
  CounterStatus translated_engine;
  std::optional<CounterStatus> translated_kernel;
  CounterStatus reloads_ok, reloads_failed;
  double secrets_generation = 0;
  double rules_in_place = -1;  // syngate_rules_in_place; -1 when the daemon does not export it
  double rss_bytes = 0;
  std::vector<std::string> warnings;  // what needs the operator's attention, one line each
};

// Builds the report from two scrapes of one daemon (prev earlier than now). Table use divides by
// the daemon's syngate_flow_table_capacity; max_flows, the flow-table size per flow worker from
// the configuration (0 when unknown), stands in for a daemon that does not export it. now_unix_s is the wall
// clock, for the uptime. Throws std::runtime_error if `now` holds no syngate metrics.
StatusReport build_status(const Scrape& prev, const Scrape& now, uint32_t max_flows, double now_unix_s,
                          std::string endpoint);

std::string render_status_text(const StatusReport& r);
nlohmann::json status_to_json(const StatusReport& r);

// The screen for a daemon that does not answer (exit code 1 of `syngate status`).
std::string render_down_text(const std::string& endpoint, const std::string& reason);
nlohmann::json down_to_json(const std::string& endpoint, const std::string& reason);
// The JSON text `syngate status --json` prints. Label values and parse errors quote what the
// endpoint sent, which need not be UTF-8: such bytes print as U+FFFD instead of aborting.
std::string json_text(const nlohmann::json& j);

// "2d 03h 04m", "3h 02m 01s", "42s".
std::string format_duration(double seconds);

}  // namespace syngate::gw
