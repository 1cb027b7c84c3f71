#include "status.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <set>
#include <sstream>

#include "syngate/drop_reason.hpp"

namespace syngate::gw {

namespace {

[[noreturn]] void parse_fail(size_t line_no, const std::string& why, std::string_view line) {
  std::string shown(line.substr(0, 120));
  throw MetricsParseError("metrics line " + std::to_string(line_no) + ": " + why + ": \"" + shown + "\"");
}

bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool name_char(char c) { return name_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

double parse_value(std::string_view text, size_t line_no, std::string_view line) {
  if (text == "+Inf" || text == "Inf") return HUGE_VAL;
  if (text == "-Inf") return -HUGE_VAL;
  if (text == "NaN") return NAN;
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) parse_fail(line_no, "bad value \"" + s + "\"", line);
  return v;
}

MetricSample parse_line(std::string_view line, size_t line_no) {
  MetricSample m;
  size_t i = 0;
  if (i >= line.size() || !name_start(line[i])) parse_fail(line_no, "expected a metric name", line);
  while (i < line.size() && name_char(line[i])) ++i;
  m.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
      if (i >= line.size()) parse_fail(line_no, "unterminated label set", line);
      if (line[i] == '}') {
        ++i;
        break;
      }
      size_t k0 = i;
      if (!name_start(line[i])) parse_fail(line_no, "expected a label name", line);
      while (i < line.size() && name_char(line[i])) ++i;
      std::string key(line.substr(k0, i - k0));
      if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') parse_fail(line_no, "expected =\" after label " + key, line);
      i += 2;
      std::string value;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= line.size()) break;
          char e = line[i++];
          value += e == 'n' ? '\n' : e;
        } else {
          value += c;
        }
      }
      if (!closed) parse_fail(line_no, "unterminated value of label " + key, line);
      m.labels[key] = value;
    }
  }
  if (i >= line.size() || (line[i] != ' ' && line[i] != '\t')) parse_fail(line_no, "expected a value after the series", line);
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  size_t v0 = i;
  while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
  m.value = parse_value(line.substr(v0, i - v0), line_no, line);
  // An optional timestamp may follow; status uses its own scrape times.
  return m;
}

// A gauge that counts (flows, packets waiting) as an integer. The value is whatever the endpoint
// sent: negative or NaN is 0, and past the integer's range it saturates (a cast would be
// undefined behaviour there).
uint64_t count_of(double v) {
  if (!(v > 0)) return 0;
  if (v >= 18446744073709551616.0) return UINT64_MAX;  // 2^64
  return static_cast<uint64_t>(v);
}

std::string label(const MetricSample& m, const char* key) {
  auto it = m.labels.find(key);
  return it == m.labels.end() ? std::string() : it->second;
}

std::string series_key(const MetricSample& m) {
  std::string out = m.name;
  if (m.labels.empty()) return out;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : m.labels) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + v + '"';
  }
  return out + '}';
}

// Index of one scrape: series key -> value.
struct Index {
  std::map<std::string, double> by_series;
  explicit Index(const Scrape& s) {
    for (const auto& m : s.samples) by_series[series_key(m)] = m.value;
  }
  std::optional<double> get(const MetricSample& m) const {
    auto it = by_series.find(series_key(m));
    if (it == by_series.end()) return std::nullopt;
    return it->second;
  }
};

double counter_rate(double now, std::optional<double> before, double dt) {
  if (dt <= 0) return 0;
  double base = before.value_or(0);
  double delta = now >= base ? now - base : now;  // reset: the counter restarted from zero
  return delta / dt;
}

bool less_numeric(const std::string& a, const std::string& b) {
  char* ea = nullptr;
  char* eb = nullptr;
  long x = std::strtol(a.c_str(), &ea, 10), y = std::strtol(b.c_str(), &eb, 10);
  bool na = !a.empty() && *ea == '\0', nb = !b.empty() && *eb == '\0';
  if (na && nb) return x < y;
  if (na != nb) return na;
  return a < b;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string rate_text(double v) {
  if (v >= 100) return fmt("%.0f", v);
  if (v >= 10) return fmt("%.1f", v);
  return fmt("%.2f", v);
}

std::string count_text(double v) { return fmt("%.0f", v); }

std::string bytes_text(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt("%.2f GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt("%.1f MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt("%.1f KiB", b / 1024.0);
  return fmt("%.0f B", b);
}

std::string pad(const std::string& s, size_t w, bool right) {
  if (s.size() >= w) return s;
  return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

// The reasons that count normal work, not trouble (drop_reasons.h: WORK).
bool normal_work(const std::string& reason) {
  const std::optional<DropReason> r = drop_reason_labelled(reason);
  return r && is_normal_work(*r);
}

}  // namespace

std::vector<MetricSample> parse_prometheus_text(std::string_view text) {
  std::vector<MetricSample> out;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    out.push_back(parse_line(line.substr(first), line_no));
  }
  return out;
}

std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string format_duration(double seconds) {
  const uint64_t s = count_of(seconds);
  uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  char buf[64];
  if (d > 0) {
    std::snprintf(buf, sizeof buf, "%llud %02lluh %02llum", static_cast<unsigned long long>(d),
                  static_cast<unsigned long long>(h), static_cast<unsigned long long>(m));
  } else if (h > 0) {
    std::snprintf(buf, sizeof buf, "%lluh %02llum %02llus", static_cast<unsigned long long>(h),
                  static_cast<unsigned long long>(m), static_cast<unsigned long long>(sec));
  } else if (m > 0) {
    std::snprintf(buf, sizeof buf, "%llum %02llus", static_cast<unsigned long long>(m),
                  static_cast<unsigned long long>(sec));
  } else {
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(sec));
  }
  return buf;
}

StatusReport build_status(const Scrape& prev, const Scrape& now, uint32_t max_flows, double now_unix_s,
                          std::string endpoint) {
  StatusReport r;
  r.endpoint = std::move(endpoint);
  r.interval_s = now.time_s - prev.time_s;
  const double dt = r.interval_s;
  const Index before(prev);

  bool any_syngate = false;
  double prev_start = 0;
  for (const auto& m : prev.samples) {
    if (m.name == "syngate_start_time_seconds") prev_start = m.value;
  }

  std::map<std::string, WorkerStatus> workers;  // by worker label
  std::map<std::string, QueueStatus> queues;    // by queue label
  std::map<std::string, double> worker_packets_delta;
  std::map<std::string, double> capacity;  // flows each flow worker's table holds, as the daemon says
  for (const auto& m : now.samples) {
    if (m.name.rfind("syngate_", 0) != 0) continue;
    any_syngate = true;
    const double rate = counter_rate(m.value, before.get(m), dt);
    const std::string worker = label(m, "worker");
    WorkerStatus* w = nullptr;
    if (!worker.empty()) {
      w = &workers[worker];
      w->worker = worker;
      w->kind = label(m, "kind");
      w->queue = label(m, "queue");
    }
    if (w && m.name == "syngate_packets_total") {
      w->packets_rate = rate;
      worker_packets_delta[worker] = rate * dt;
    } else if (w && m.name == "syngate_syn_received_total") {
      w->syn_rate = rate;
    } else if (w && m.name == "syngate_cookies_sent_total") {
      w->cookies_sent_rate = rate;
    } else if (w && m.name == "syngate_cookies_valid_total") {
      w->cookies_valid_rate = rate;
    } else if (w && m.name == "syngate_cookies_invalid_total") {
      w->cookies_invalid_rate = rate;
    } else if (w && m.name == "syngate_flows_created_total") {
      w->flows_created_rate = rate;
    } else if (w && m.name == "syngate_flows_active") {
      w->flows_active = count_of(m.value);
    } else if (w && m.name == "syngate_flow_table_capacity") {
      capacity[worker] = m.value;
    } else if (w && m.name == "syngate_drops_total") {
      CounterStatus& d = r.drops[label(m, "reason")];
      d.total += m.value;
      d.rate += rate;
    } else if (m.name == "syngate_queue_waiting") {
      QueueStatus& q = queues[label(m, "queue")];
      q.waiting = count_of(m.value);
    } else if (m.name == "syngate_queue_dropped_total") {
      QueueStatus& q = queues[label(m, "queue")];
      q.dropped = {m.value, rate};
    } else if (m.name == "syngate_queue_user_dropped_total") {
      QueueStatus& q = queues[label(m, "queue")];
      q.user_dropped = {m.value, rate};
    } else if (m.name == "syngate_reloads_total") {
      (label(m, "result") == "failed" ? r.reloads_failed : r.reloads_ok) = {m.value, rate};
    } else if (m.name == "syngate_rules_in_place") {
      r.rules_in_place = m.value;
    } else if (m.name == "syngate_cookie_secrets_generation") {
      r.secrets_generation = m.value;
    } else if (m.name == "syngate_resident_memory_bytes") {
      r.rss_bytes = m.value;
    } else if (m.name == "syngate_start_time_seconds") {
      r.start_time_s = m.value;
    } else if (m.name == "syngate_engine_exceptions_total" && rate > 0) {
      r.warnings.push_back("worker " + worker + ": " + count_text(rate * dt) +
                           " packets threw in the engine during the interval (they got the fail-mode verdict)");
    } else if (m.name == "syngate_translated_total") {
      r.translated_engine.total += m.value;
      r.translated_engine.rate += rate;
    } else if (m.name == "syngate_tc_packets_total" && label(m, "outcome") == "translated") {
      r.translated_kernel = CounterStatus{m.value, rate};
    } else if (m.name.rfind("syngate_xdp_", 0) == 0) {
      XdpSeries x{series_key(m), m.value, std::nullopt};
      if (m.name.size() > 6 && m.name.compare(m.name.size() - 6, 6, "_total") == 0) x.rate = rate;
      r.xdp.push_back(std::move(x));
    }
  }
  if (!any_syngate) throw std::runtime_error("no syngate_* metrics in the answer: is this syngate's metrics endpoint?");
  for (auto& [name, q] : queues) q.queue = name;

  r.uptime_s = r.start_time_s > 0 ? now_unix_s - r.start_time_s : 0;
  r.restarted = prev_start > 0 && r.start_time_s > 0 && prev_start != r.start_time_s;
  if (r.restarted) r.warnings.push_back("the daemon restarted between the two scrapes: rates count from its start");

  std::vector<std::string> worker_ids;
  for (const auto& [id, w] : workers) worker_ids.push_back(id);
  std::sort(worker_ids.begin(), worker_ids.end(), less_numeric);
  double total_capacity = 0;
  for (const auto& id : worker_ids) {
    WorkerStatus w = workers[id];
    auto q = queues.find(w.queue);
    if (q != queues.end()) {
      q->second.kind = w.kind;
      w.queue_waiting = q->second.waiting;
    }
    // The running daemon's own table size first: the configuration may have changed since it
    // started, and without --config status knows no other.
    double table_size = 0;
    if (w.kind == "flow") {
      const auto c = capacity.find(id);
      table_size = c != capacity.end() && c->second > 0 ? c->second : max_flows;
      if (table_size > 0) w.table_use = static_cast<double>(w.flows_active) / table_size;
      total_capacity += table_size;
    }
    w.stalled = w.queue_waiting > 0 && dt > 0 && worker_packets_delta[id] == 0;
    if (w.stalled) {
      r.warnings.push_back("worker " + id + " (" + w.kind + ", queue " + w.queue + ") took no packet in " +
                           fmt("%.1f", dt) + " s while " + std::to_string(w.queue_waiting) +
                           " wait in its queue: stuck?");
    }
    if (w.table_use && *w.table_use >= 0.9) {
      r.warnings.push_back("worker " + id + ": flow table " + fmt("%.0f", *w.table_use * 100) +
                           "% full (engine.max_flows = " + fmt("%.0f", table_size) + ")");
    }
    r.total.packets_rate += w.packets_rate;
    r.total.syn_rate += w.syn_rate;
    r.total.cookies_sent_rate += w.cookies_sent_rate;
    r.total.cookies_valid_rate += w.cookies_valid_rate;
    r.total.cookies_invalid_rate += w.cookies_invalid_rate;
    r.total.flows_created_rate += w.flows_created_rate;
    r.total.flows_active += w.flows_active;
    r.workers.push_back(std::move(w));
  }
  r.total.worker = "total";
  if (total_capacity > 0) r.total.table_use = static_cast<double>(r.total.flows_active) / total_capacity;

  std::vector<std::string> queue_ids;
  for (const auto& [id, q] : queues) queue_ids.push_back(id);
  std::sort(queue_ids.begin(), queue_ids.end(), less_numeric);
  for (const auto& id : queue_ids) {
    const QueueStatus& q = queues[id];
    const double dropped_now = q.dropped.rate * dt, user_now = q.user_dropped.rate * dt;
    if (q.kind == "flow" && dropped_now > 0) {
      r.warnings.push_back("flow queue " + id + ": the kernel dropped " + count_text(dropped_now) + " packets in " +
                           fmt("%.1f", dt) + " s (queue full: raise flow_queue_maxlen or add flow_queues)");
    } else if (q.kind == "syn" && dropped_now > 0) {
      r.warnings.push_back("SYN queue " + id + ": shedding " + rate_text(q.dropped.rate) +
                           " SYN/s (SYN path saturated; clients recover by retransmitting their SYN)");
    }
    if (user_now > 0) {
      r.warnings.push_back("queue " + id + ": " + count_text(user_now) +
                           " packets lost to a full netlink socket buffer (raise rcvbuf_bytes)");
    }
    r.queues.push_back(q);
  }
  for (const DropReason refused : {DropReason::TableFull, DropReason::SourceLimit}) {
    const std::string reason(to_string(refused));
    auto it = r.drops.find(reason);
    if (it != r.drops.end() && it->second.rate > 0) {
      r.warnings.push_back("valid cookies refused a flow (" + reason + "): " +
                           rate_text(it->second.rate) + "/s");
    }
  }
  if (r.rules_in_place == 0) {
    r.warnings.push_back("the iptables rules are missing: the services' traffic bypasses syngate (see the log; "
                         "run syngate rules up)");
  }
  if (r.reloads_failed.rate > 0) {
    r.warnings.push_back("a SIGHUP reload failed during the interval: the old configuration runs (see the log)");
  } else if (r.reloads_failed.total > 0) {
    r.warnings.push_back(count_text(r.reloads_failed.total) + " SIGHUP reload(s) failed since start (see the log)");
  }
  return r;
}

std::string render_status_text(const StatusReport& r) {
  std::ostringstream o;
  o << "syngate at " << r.endpoint << ": UP";
  // A start time past any calendar (a scrape is input too) is not shown rather than cast.
  if (r.start_time_s > 0 && r.start_time_s < 1e11) {
    std::time_t t = static_cast<std::time_t>(r.start_time_s);
    char when[64];
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    o << ", uptime " << format_duration(r.uptime_s) << " (since " << when << ")";
  }
  o << "\nrates per second over the last " << fmt("%.1f", r.interval_s) << " s\n\n";

  const size_t wcols[] = {7, 5, 6, 10, 10, 10, 10, 10, 9, 10};
  const char* wheads[] = {"worker", "kind", "queue", "SYN/s", "cookies/s", "valid/s", "invalid/s", "flows/s", "active", "table use"};
  for (size_t i = 0; i < 10; ++i) o << pad(wheads[i], wcols[i], i >= 3) << (i + 1 < 10 ? " " : "\n");
  auto row = [&](const WorkerStatus& w) {
    std::string use = w.table_use ? fmt("%.2f%%", *w.table_use * 100) : (w.kind == "syn" ? "-" : "?");
    const std::string cells[] = {w.worker,
                                 w.kind,
                                 w.queue,
                                 rate_text(w.syn_rate),
                                 rate_text(w.cookies_sent_rate),
                                 rate_text(w.cookies_valid_rate),
                                 rate_text(w.cookies_invalid_rate),
                                 rate_text(w.flows_created_rate),
                                 w.kind == "syn" ? "-" : std::to_string(w.flows_active),
                                 use};
    for (size_t i = 0; i < 10; ++i) o << pad(cells[i], wcols[i], i >= 3) << (i + 1 < 10 ? " " : "\n");
  };
  for (const auto& w : r.workers) row(w);
  WorkerStatus total = r.total;
  total.kind = "";
  total.queue = "";
  if (!total.table_use) total.kind = "all";
  row(total);

  o << "\n" << pad("drops by reason", 36, false) << pad("total", 12, true) << pad("/s", 12, true) << "\n";
  bool any_drop = false;
  for (const auto& [reason, c] : r.drops) {
    if (c.total == 0) continue;
    any_drop = true;
    std::string name = reason + (normal_work(reason) ? " (normal)" : "");
    o << "  " << pad(name, 34, false) << pad(count_text(c.total), 12, true) << pad(rate_text(c.rate), 12, true) << "\n";
  }
  if (!any_drop) o << "  none\n";

  o << "\nkernel queues  kind  waiting   dropped  dropped/s  sock drops  sock drops/s\n";
  for (const auto& q : r.queues) {
    o << "  " << pad(q.queue, 12, false) << " " << pad(q.kind.empty() ? "?" : q.kind, 4, false)
      << pad(std::to_string(q.waiting), 9, true) << pad(count_text(q.dropped.total), 10, true)
      << pad(rate_text(q.dropped.rate), 11, true) << pad(count_text(q.user_dropped.total), 12, true)
      << pad(rate_text(q.user_dropped.rate), 14, true) << "\n";
  }
  if (r.queues.empty()) o << "  none reported\n";

  o << "\nsegments translated: engine " << count_text(r.translated_engine.total) << " ("
    << rate_text(r.translated_engine.rate) << "/s), kernel ";
  if (r.translated_kernel) {
    o << count_text(r.translated_kernel->total) << " (" << rate_text(r.translated_kernel->rate) << "/s)\n";
  } else {
    o << "off (no syngate_tc_* metrics)\n";
  }

  o << "\nXDP fast path: ";
  if (r.xdp.empty()) {
    o << "not in use (no syngate_xdp_* metrics)\n";
  } else {
    o << "\n";
    for (const auto& x : r.xdp) {
      o << "  " << pad(x.series, 60, false) << pad(count_text(x.value), 14, true);
      if (x.rate) o << pad(rate_text(*x.rate) + "/s", 12, true);
      o << "\n";
    }
  }

  o << "\nprocess: RSS " << bytes_text(r.rss_bytes) << ", reloads " << count_text(r.reloads_ok.total) << " ok / "
    << count_text(r.reloads_failed.total) << " failed, cookie secrets generation " << count_text(r.secrets_generation)
    << "\n";
  if (!r.warnings.empty()) {
    o << "\nattention:\n";
    for (const auto& w : r.warnings) o << "  ! " << w << "\n";
  }
  return o.str();
}

nlohmann::json status_to_json(const StatusReport& r) {
  using nlohmann::json;
  auto counter = [](const CounterStatus& c) { return json{{"total", c.total}, {"rate", c.rate}}; };
  auto worker = [](const WorkerStatus& w) {
    json j{{"worker", w.worker},
           {"kind", w.kind},
           {"queue", w.queue},
           {"packets_rate", w.packets_rate},
           {"syn_rate", w.syn_rate},
           {"cookies_sent_rate", w.cookies_sent_rate},
           {"cookies_valid_rate", w.cookies_valid_rate},
           {"cookies_invalid_rate", w.cookies_invalid_rate},
           {"flows_created_rate", w.flows_created_rate},
           {"flows_active", w.flows_active},
           {"queue_waiting", w.queue_waiting},
           {"stalled", w.stalled}};
    j["table_use"] = w.table_use ? json(*w.table_use) : json(nullptr);
    return j;
  };
  json j{{"up", true},
         {"endpoint", r.endpoint},
         {"interval_s", r.interval_s},
         {"uptime_s", r.uptime_s},
         {"start_time_s", r.start_time_s},
         {"restarted", r.restarted},
         {"rss_bytes", r.rss_bytes},
         {"secrets_generation", r.secrets_generation},
         {"reloads", {{"ok", counter(r.reloads_ok)}, {"failed", counter(r.reloads_failed)}}},
         {"warnings", r.warnings}};
  j["workers"] = json::array();
  for (const auto& w : r.workers) j["workers"].push_back(worker(w));
  json total = worker(r.total);
  total.erase("worker");
  total.erase("kind");
  total.erase("queue");
  total.erase("stalled");
  total.erase("queue_waiting");
  j["total"] = total;
  j["drops"] = json::object();
  for (const auto& [reason, c] : r.drops) j["drops"][reason] = counter(c);
  j["queues"] = json::array();
  for (const auto& q : r.queues) {
    j["queues"].push_back({{"queue", q.queue},
                           {"kind", q.kind},
                           {"waiting", q.waiting},
                           {"dropped", counter(q.dropped)},
                           {"user_dropped", counter(q.user_dropped)}});
  }
  j["translated"] = {{"engine", counter(r.translated_engine)},
                     {"kernel", r.translated_kernel ? counter(*r.translated_kernel) : json(nullptr)}};
  if (r.xdp.empty()) {
    j["xdp"] = nullptr;
  } else {
    j["xdp"] = json::array();
    for (const auto& x : r.xdp) {
      json e{{"series", x.series}, {"value", x.value}};
      if (x.rate) e["rate"] = *x.rate;
      j["xdp"].push_back(e);
    }
  }
  return j;
}

std::string render_down_text(const std::string& endpoint, const std::string& reason) {
  return "syngate at " + endpoint + ": DOWN (" + reason +
         ")\n  is the daemon running? systemctl status syngate; journalctl -u syngate\n";
}

nlohmann::json down_to_json(const std::string& endpoint, const std::string& reason) {
  return {{"up", false}, {"endpoint", endpoint}, {"error", reason}};
}

}  // namespace syngate::gw
