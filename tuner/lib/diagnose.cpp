#include "diagnose.hpp"

#include <algorithm>

#include "registry.hpp"
#include "value.hpp"

namespace tcptune {

namespace {
constexpr int kSynRecv = 3, kTimeWait = 6, kCloseWait = 8, kNewSynRecv = 12;

std::int64_t counter(const Counters& c, const std::string& name) {
  auto it = c.find(name);
  return it == c.end() ? 0 : it->second;
}

std::optional<std::int64_t> sysctl_int(const DiagInput& in, const std::string& key, size_t field = 0) {
  auto it = in.sysctl.find(key);
  if (it == in.sysctl.end()) return std::nullopt;
  auto toks = split_ws(it->second);
  if (field >= toks.size()) return std::nullopt;
  return parse_int(toks[field]);
}
}  // namespace

std::string_view state_name(int s) {
  static constexpr std::string_view names[kTcpStates] = {"UNKNOWN",   "ESTABLISHED", "SYN_SENT",  "SYN_RECV", "FIN_WAIT1",
                                                         "FIN_WAIT2", "TIME_WAIT",   "CLOSE",     "CLOSE_WAIT", "LAST_ACK",
                                                         "LISTEN",    "CLOSING",     "NEW_SYN_RECV"};
  return s >= 0 && s < kTcpStates ? names[s] : "UNKNOWN";
}

std::uint64_t StateCounts::get(int s) const {
  if (s < 0 || s >= kTcpStates) return 0;
  std::uint64_t n = v4[s] + v6[s];
  if (s == kSynRecv) n += v4[kNewSynRecv] + v6[kNewSynRecv];
  return n;
}

std::uint64_t StateCounts::total() const {
  std::uint64_t n = 0;
  for (int s = 0; s < kTcpStates; ++s) n += v4[s] + v6[s];
  return n;
}

void StateCounts::add(int v6fam, int s) {
  if (s < 0 || s >= kTcpStates) s = 0;
  (v6fam ? v6 : v4)[s]++;
}

Counters parse_proc_counters(std::string_view text) {
  Counters out;
  std::vector<std::string> lines;
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string_view::npos) nl = text.size();
    lines.emplace_back(text.substr(i, nl - i));
    i = nl + 1;
  }
  for (size_t l = 0; l + 1 < lines.size(); ++l) {
    auto names = split_ws(lines[l]);
    auto values = split_ws(lines[l + 1]);
    if (names.empty() || values.empty() || names[0] != values[0] || !names[0].ends_with(":")) continue;
    // A header line's second token is a name, a value line's is a number.
    if (parse_int(names.size() > 1 ? names[1] : "") || !parse_int(values.size() > 1 ? values[1] : "x")) continue;
    std::string prefix = names[0].substr(0, names[0].size() - 1);
    for (size_t k = 1; k < names.size() && k < values.size(); ++k)
      if (auto v = parse_int(values[k])) out[prefix + "." + names[k]] = *v;
    ++l;
  }
  return out;
}

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::Info: return "info";
    case Severity::Warning: return "warning";
    case Severity::Critical: return "critical";
  }
  return "?";
}

std::vector<Finding> diagnose(const DiagInput& in) {
  std::vector<Finding> out;
  // Rate evidence beats cumulative counters: with --interval, "recent" means during the sample.
  const Counters& recent = in.delta ? *in.delta : in.counters;
  std::string since = in.delta ? "in the last " + std::to_string(static_cast<int>(in.interval_s)) + " s" : "since boot";
  auto cookies = sysctl_int(in, "net.ipv4.tcp_syncookies");
  auto syn_backlog = sysctl_int(in, "net.ipv4.tcp_max_syn_backlog");
  std::uint64_t syn_recv = in.counts.get(kSynRecv);
  std::int64_t qfull_drop = counter(recent, "TcpExt.TCPReqQFullDrop");
  std::int64_t cookies_sent = counter(recent, "TcpExt.SyncookiesSent");
  std::int64_t cookies_failed = counter(recent, "TcpExt.SyncookiesFailed");
  std::int64_t listen_overflows = counter(recent, "TcpExt.ListenOverflows");
  std::int64_t listen_drops = counter(recent, "TcpExt.ListenDrops");

  // --- SYN flood ---
  bool many_half_open = syn_recv >= in.thresholds.syn_recv;
  bool queue_dropping = qfull_drop > 0 && (in.delta || many_half_open);
  if (many_half_open || (in.delta && (qfull_drop > 0 || cookies_sent > 0))) {
    Finding f;
    f.id = "syn-flood";
    f.severity = (cookies && *cookies == 0) || queue_dropping ? Severity::Critical : Severity::Warning;
    f.title = "SYN flood suspected";
    f.detail = std::to_string(syn_recv) + " half-open connections (SYN_RECV, threshold " + std::to_string(in.thresholds.syn_recv) +
               ")";
    if (syn_backlog) f.detail += ", tcp_max_syn_backlog " + std::to_string(*syn_backlog);
    f.detail += "; SYN queue full drops " + std::to_string(qfull_drop) + ", SYN cookies sent " + std::to_string(cookies_sent) +
                " " + since + "; tcp_syncookies=" + (cookies ? std::to_string(*cookies) : std::string("?"));
    f.advice = cookies && *cookies == 0
                   ? "SYN cookies are off, so a full SYN queue drops legitimate clients: set tcp_syncookies=1, raise "
                     "tcp_max_syn_backlog, lower tcp_synack_retries; consider a syngate gateway in front"
                   : "keep tcp_syncookies=1, raise tcp_max_syn_backlog, lower tcp_synack_retries so half-open entries "
                     "expire sooner; find the sources (ss -tn state syn-recv) and consider a syngate gateway in front";
    f.profile = "syn-flood-defense";
    out.push_back(std::move(f));
  }
  if (cookies && *cookies == 0) {
    Finding f;
    f.id = "syncookies-off";
    f.severity = Severity::Warning;
    f.title = "SYN cookies disabled";
    f.detail = "net.ipv4.tcp_syncookies=0: once a listener's SYN queue is full, new SYNs are dropped";
    f.advice = "set net.ipv4.tcp_syncookies=1 (cookies are only used when the queue overflows)";
    f.profile = "syn-flood-defense";
    out.push_back(std::move(f));
  }
  if (!many_half_open && qfull_drop > 0) {
    Finding f;
    f.id = "syn-queue-drops";
    f.severity = in.delta ? Severity::Warning : Severity::Info;
    f.title = "SYN queue overflowed";
    f.detail = std::to_string(qfull_drop) + " SYNs dropped because a SYN queue was full (TCPReqQFullDrop) " + since;
    f.advice = "a past flood or a too small tcp_max_syn_backlog; keep SYN cookies on";
    f.profile = "syn-flood-defense";
    out.push_back(std::move(f));
  }
  if (cookies_sent > 0 && !(in.delta && !out.empty() && out.front().id == "syn-flood")) {
    Finding f;
    f.id = "syncookies-sent";
    f.severity = Severity::Info;
    f.title = "SYN cookies were used";
    f.detail = std::to_string(cookies_sent) + " cookies sent, " + std::to_string(counter(recent, "TcpExt.SyncookiesRecv")) +
               " valid and " + std::to_string(cookies_failed) + " invalid cookie ACKs received " + since;
    f.advice = "a SYN queue overflowed (a flood or a backlog too small for the connection rate); cookies lose TCP "
               "options such as large windows when timestamps are off";
    f.profile = "syn-flood-defense";
    out.push_back(std::move(f));
  }
  // --- accept queue ---
  std::vector<const ListenerInfo*> full;
  for (const auto& l : in.listeners)
    if (l.backlog > 0 && l.accept_queue >= l.backlog) full.push_back(&l);
  if (!full.empty() || listen_overflows > 0) {
    Finding f;
    f.id = "accept-queue-overflow";
    f.severity = !full.empty() ? Severity::Warning : (in.delta ? Severity::Warning : Severity::Info);
    f.title = "accept queue overflow";
    f.detail = std::to_string(listen_overflows) + " accept queue overflows, " + std::to_string(listen_drops) + " listen drops " + since;
    if (!full.empty()) {
      f.detail += "; full now:";
      for (size_t i = 0; i < full.size() && i < 8; ++i)
        f.detail += " " + full[i]->local + " (" + std::to_string(full[i]->accept_queue) + "/" + std::to_string(full[i]->backlog) + ")";
    }
    f.advice = "the application does not accept() fast enough or its listen() backlog is too small: raise the "
               "backlog and net.core.somaxconn, add accept threads";
    f.profile = "high-concurrency";
    out.push_back(std::move(f));
  }
  // --- CLOSE_WAIT: the peer closed, the local application never did ---
  std::uint64_t close_wait = in.counts.get(kCloseWait);
  if (close_wait >= in.thresholds.close_wait) {
    Finding f;
    f.id = "close-wait-leak";
    f.severity = Severity::Warning;
    f.title = "CLOSE_WAIT leak";
    f.detail = std::to_string(close_wait) + " sockets in CLOSE_WAIT (threshold " + std::to_string(in.thresholds.close_wait) + ")";
    if (!in.close_wait_owners.empty()) {
      f.detail += "; held by:";
      for (size_t i = 0; i < in.close_wait_owners.size() && i < 5; ++i) {
        const auto& o = in.close_wait_owners[i];
        f.detail += " pid " + std::to_string(o.pid) + " (" + o.comm + ") " + std::to_string(o.count);
      }
    } else {
      f.detail += "; owning processes not visible (run as root in the same pid namespace)";
    }
    f.advice = "the peers closed and the application never called close(): a file descriptor leak in the "
               "application; no sysctl fixes it (restarting the process frees them)";
    out.push_back(std::move(f));
  }
  // --- TIME_WAIT ---
  std::uint64_t time_wait = in.counts.get(kTimeWait);
  std::uint64_t tw_threshold = 0;
  if (in.thresholds.time_wait) {
    tw_threshold = *in.thresholds.time_wait;
  } else {
    auto lo = sysctl_int(in, "net.ipv4.ip_local_port_range", 0), hi = sysctl_int(in, "net.ipv4.ip_local_port_range", 1);
    tw_threshold = lo && hi && *hi > *lo ? static_cast<std::uint64_t>(*hi - *lo + 1) / 2 : 14000;
  }
  auto tw_buckets = sysctl_int(in, "net.ipv4.tcp_max_tw_buckets");
  std::int64_t tw_overflow = counter(recent, "TcpExt.TCPTimeWaitOverflow");
  if (time_wait >= tw_threshold || tw_overflow > 0) {
    Finding f;
    f.id = "time-wait-pile";
    f.severity = tw_overflow > 0 || (tw_buckets && time_wait * 10 >= static_cast<std::uint64_t>(*tw_buckets) * 9)
                     ? Severity::Warning
                     : Severity::Info;
    f.title = "TIME_WAIT pile-up";
    f.detail = std::to_string(time_wait) + " sockets in TIME_WAIT (threshold " + std::to_string(tw_threshold) + ")";
    if (tw_buckets) f.detail += ", tcp_max_tw_buckets " + std::to_string(*tw_buckets);
    f.detail += ", " + std::to_string(tw_overflow) + " TIME_WAIT bucket overflows " + since;
    f.advice = "many short outgoing connections: reuse connections (keep-alive, pools), enable tcp_tw_reuse, widen "
               "ip_local_port_range; never shorten TIME_WAIT by other means";
    f.profile = "high-concurrency";
    out.push_back(std::move(f));
  }
  // --- memory pressure ---
  std::int64_t pressures = counter(recent, "TcpExt.TCPMemoryPressures");
  std::int64_t abort_mem = counter(recent, "TcpExt.TCPAbortOnMemory");
  if (pressures > 0 || abort_mem > 0) {
    Finding f;
    f.id = "tcp-memory-pressure";
    f.severity = abort_mem > 0 ? Severity::Warning : Severity::Info;
    f.title = "TCP memory pressure";
    f.detail = std::to_string(pressures) + " entries into memory pressure, " + std::to_string(abort_mem) +
               " connections aborted for lack of memory " + since;
    f.advice = "net.ipv4.tcp_mem (host-wide, in pages) is too low for the number of connections and their buffers";
    f.profile = "high-concurrency";
    out.push_back(std::move(f));
  }
  std::stable_sort(out.begin(), out.end(), [](const Finding& a, const Finding& b) { return a.severity > b.severity; });
  return out;
}

}  // namespace tcptune
