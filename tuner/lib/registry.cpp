#include "registry.hpp"

#include <charconv>
#include <climits>

#include "value.hpp"

namespace tcptune {

namespace {

constexpr std::int64_t kIntMax = INT_MAX;
constexpr std::int64_t kUintMax = 4294967295LL;

KeyDef integer(std::string name, std::int64_t lo, std::int64_t hi, Scope scope, std::string doc) {
  KeyDef d;
  d.name = std::move(name);
  d.kind = Kind::Integer;
  d.fields = {{lo, hi}};
  d.scope = scope;
  d.doc = std::move(doc);
  return d;
}
KeyDef boolean(std::string name, Scope scope, std::string doc) { return integer(std::move(name), 0, 1, scope, std::move(doc)); }
KeyDef vec(std::string name, std::vector<Field> fields, Check check, Scope scope, std::string doc) {
  KeyDef d;
  d.name = std::move(name);
  d.kind = Kind::Vector;
  d.fields = std::move(fields);
  d.check = check;
  d.scope = scope;
  d.doc = std::move(doc);
  return d;
}
KeyDef with_floor(KeyDef d, std::string why) {
  d.floor_reason = std::move(why);
  return d;
}
KeyDef text(std::string name, Scope scope, std::string doc) {
  KeyDef d;
  d.name = std::move(name);
  d.kind = Kind::Text;
  d.scope = scope;
  d.doc = std::move(doc);
  return d;
}
KeyDef gone(std::string name, Status status, std::string reason) {
  KeyDef d;
  d.name = std::move(name);
  d.status = status;
  d.reason = std::move(reason);
  d.doc = d.reason;
  return d;
}

constexpr auto N = Scope::PerNetns;
constexpr auto G = Scope::Global;
constexpr auto H = Scope::HostOnly;

std::vector<KeyDef> build() {
  std::vector<KeyDef> r;
  // --- accept queue / SYN queue (the SYN-flood keys) ---
  r.push_back(integer("net.core.somaxconn", 16, kIntMax, N, "cap on every listen() backlog: the accept queue length of each listener"));
  r.push_back(integer("net.ipv4.tcp_syncookies", 0, 2, N,
                      "SYN cookies: 0 off, 1 when a SYN queue overflows, 2 always (kernel accepts 3+, which means nothing)"));
  r.push_back(integer("net.ipv4.tcp_max_syn_backlog", 128, 1 << 24, N,
                      "SYN queue (half-open connections) per listener before drops or cookies (kernel accepts negatives)"));
  r.push_back(with_floor(integer("net.ipv4.tcp_synack_retries", 1, 20, N, "SYN-ACK retransmissions for a half-open connection (each doubles the wait)"),
                         "0 sends a single SYN-ACK: one lost packet fails the handshake until the client resends its SYN, 1 s or more later"));
  r.push_back(integer("net.ipv4.tcp_syn_retries", 1, 127, N, "SYN retransmissions of an outgoing connect() before it fails"));
  r.push_back(boolean("net.ipv4.tcp_abort_on_overflow", N, "reset (1) instead of dropping (0) the final ACK when the accept queue is full"));
  r.push_back(boolean("net.ipv4.tcp_migrate_req", N, "move queued requests of a closed SO_REUSEPORT listener to a sibling listener"));
  r.push_back(integer("net.ipv4.tcp_invalid_ratelimit", 0, kIntMax, N, "ms between duplicate ACKs sent in reply to invalid segments"));
  r.push_back(integer("net.ipv4.tcp_challenge_ack_limit", 1, kIntMax, N, "challenge ACKs per second (RFC 5961) for out-of-window RST/SYN"));
  r.push_back(boolean("net.ipv4.tcp_rfc1337", N, "drop RSTs for sockets in TIME_WAIT (TIME_WAIT assassination, RFC 1337)"));
  // --- connection teardown, TIME_WAIT, ports ---
  r.push_back(integer("net.ipv4.tcp_fin_timeout", 1, 600, N, "seconds an orphaned connection stays in FIN_WAIT_2"));
  r.push_back(integer("net.ipv4.tcp_tw_reuse", 0, 2, N, "reuse TIME_WAIT ports for outgoing connects: 0 off, 1 on, 2 loopback only"));
  r.push_back(integer("net.ipv4.tcp_max_tw_buckets", 256, kIntMax, N, "TIME_WAIT sockets kept before new ones are destroyed early"));
  r.push_back(with_floor(vec("net.ipv4.ip_local_port_range", {{1024, 65535, "low port"}, {1024, 65535, "high port"}}, Check::PortRange, N,
                             "ephemeral ports for outgoing connections: low high (low below 1024 would steal service ports)"),
                         "ports below 1024 belong to services; handing them out to outgoing connections steals them"));
  r.push_back(integer("net.ipv4.tcp_orphan_retries", 0, 15, N, "retries before an orphaned (closed by us) connection is killed; 0 means 8"));
  r.push_back(integer("net.ipv4.tcp_max_orphans", 0, kIntMax, G, "orphaned sockets host-wide before they are reset"));
  // --- keepalive and retransmission ---
  r.push_back(integer("net.ipv4.tcp_keepalive_time", 1, 32767, N, "seconds of idleness before the first keepalive probe (SO_KEEPALIVE sockets)"));
  r.push_back(integer("net.ipv4.tcp_keepalive_intvl", 1, 32767, N, "seconds between keepalive probes"));
  r.push_back(integer("net.ipv4.tcp_keepalive_probes", 1, 127, N, "unanswered keepalive probes before the connection is dropped"));
  r.push_back(integer("net.ipv4.tcp_retries1", 1, 255, N, "retransmissions before the route is re-checked (RFC 1122 minimum 3)"));
  r.push_back(integer("net.ipv4.tcp_retries2", 3, 255, N, "retransmissions before an established connection is killed (15 ~ 15 min)"));
  // --- buffers and memory ---
  const std::string one_page =
      "below one page (4096 bytes) a socket cannot hold one full-size segment (about 2.3 KB of memory with its overhead) and stalls";
  r.push_back(with_floor(vec("net.ipv4.tcp_rmem", {{4096, kIntMax, "min"}, {4096, kIntMax, "default"}, {4096, kIntMax, "max"}},
                             Check::Ascending, N, "receive buffer per socket, bytes: min default max (autotuning range)"),
                         one_page));
  r.push_back(with_floor(vec("net.ipv4.tcp_wmem", {{4096, kIntMax, "min"}, {4096, kIntMax, "default"}, {4096, kIntMax, "max"}},
                             Check::Ascending, N, "send buffer per socket, bytes: min default max"),
                         one_page));
  r.push_back(with_floor(vec("net.ipv4.tcp_mem", {{4096, LLONG_MAX, "low"}, {4096, LLONG_MAX, "pressure"}, {4096, LLONG_MAX, "high"}},
                             Check::Ascending, G, "TCP memory host-wide, pages: low pressure high"),
                         "below 4096 pages (16 MiB) all of TCP is under memory pressure after a few dozen busy connections, "
                         "and sockets get their buffers cut or are aborted"));
  r.push_back(integer("net.core.rmem_max", 4096, kIntMax, H, "largest SO_RCVBUF an application may set, bytes"));
  r.push_back(integer("net.core.wmem_max", 4096, kIntMax, H, "largest SO_SNDBUF an application may set, bytes"));
  r.push_back(integer("net.core.rmem_default", 4096, kIntMax, H, "default receive buffer of non-TCP sockets, bytes"));
  r.push_back(integer("net.core.wmem_default", 4096, kIntMax, H, "default send buffer of non-TCP sockets, bytes"));
  r.push_back(integer("net.core.optmem_max", 1024, kIntMax, N, "ancillary buffer per socket, bytes"));
  r.push_back(integer("net.ipv4.tcp_notsent_lowat", 1, kUintMax, N, "unsent bytes queued before poll() stops reporting writable"));
  r.push_back(boolean("net.ipv4.tcp_moderate_rcvbuf", N, "receive buffer autotuning"));
  r.push_back(integer("net.ipv4.tcp_limit_output_bytes", 1, kIntMax, N, "bytes per socket in qdisc/device queues (TSQ)"));
  // --- options and behaviour ---
  r.push_back(integer("net.ipv4.tcp_timestamps", 0, 2, N, "TCP timestamps: 0 off, 1 on with random offsets, 2 on without offsets"));
  r.push_back(boolean("net.ipv4.tcp_sack", N, "selective acknowledgements"));
  r.push_back(boolean("net.ipv4.tcp_dsack", N, "duplicate SACKs"));
  r.push_back(boolean("net.ipv4.tcp_window_scaling", N, "window scaling (RFC 7323); off caps windows at 64 KiB"));
  r.push_back(integer("net.ipv4.tcp_ecn", 0, 2, N, "ECN: 0 off, 1 request and accept, 2 accept only"));
  r.push_back(boolean("net.ipv4.tcp_ecn_fallback", N, "fall back to non-ECN when ECN looks broken on the path"));
  r.push_back(integer("net.ipv4.tcp_fastopen", 0, 0x7ff, N, "TCP Fast Open bitmask: 1 client, 2 server, 0x400 server without cookie"));
  r.push_back(text("net.ipv4.tcp_congestion_control", N, "default congestion control algorithm (module loaded on demand)"));
  r.push_back(boolean("net.ipv4.tcp_slow_start_after_idle", N, "restart from the initial window after an idle period"));
  r.push_back(integer("net.ipv4.tcp_mtu_probing", 0, 2, N, "packetization-layer MTU probing: 0 off, 1 after a black hole, 2 always"));
  r.push_back(integer("net.ipv4.tcp_base_mss", 48, 65535, N, "starting MSS for MTU probing"));
  r.push_back(integer("net.ipv4.tcp_min_snd_mss", 48, 65535, N, "smallest MSS a peer may force on us"));
  r.push_back(boolean("net.ipv4.tcp_no_metrics_save", N, "do not cache per-destination metrics (ssthresh, RTT) in tcp_metrics"));
  r.push_back(boolean("net.ipv4.tcp_autocorking", N, "coalesce small writes while the device queue is busy"));
  r.push_back(integer("net.ipv4.tcp_early_retrans", 0, 4, N, "tail loss probe (3 default)"));
  r.push_back(integer("net.ipv4.tcp_frto", 0, 2, N, "F-RTO spurious RTO detection"));
  r.push_back(integer("net.ipv4.tcp_reordering", 1, 300, N, "initial reordering tolerance in packets"));
  r.push_back(boolean("net.ipv4.tcp_fwmark_accept", N, "accepted sockets inherit the fwmark of the SYN"));
  r.push_back(integer("net.ipv4.tcp_child_ehash_entries", 0, 1 << 24, N, "established hash size of netns created after this (0: share the host's)"));
  // --- forwarding and addresses (gateway boxes) ---
  r.push_back(boolean("net.ipv4.ip_forward", N, "route IPv4 packets between interfaces"));
  r.push_back(boolean("net.ipv6.conf.*.forwarding", N, "route IPv6 packets (all/default/per interface)"));
  r.push_back(integer("net.ipv4.conf.*.rp_filter", 0, 2, N, "reverse path filter: 0 off, 1 strict, 2 loose"));
  r.push_back(boolean("net.ipv4.conf.*.accept_redirects", N, "accept ICMP redirects"));
  r.push_back(boolean("net.ipv4.conf.*.send_redirects", N, "send ICMP redirects"));
  r.push_back(boolean("net.ipv4.conf.*.accept_source_route", N, "accept source-routed packets"));
  r.push_back(boolean("net.ipv4.conf.*.log_martians", N, "log packets with impossible source addresses"));
  r.push_back(boolean("net.ipv4.icmp_echo_ignore_broadcasts", N, "ignore broadcast pings (smurf amplification)"));
  r.push_back(integer("net.ipv4.icmp_ratelimit", 0, kIntMax, N, "ms between rate-limited ICMP messages (0 no limit)"));
  r.push_back(integer("net.core.netdev_max_backlog", 100, 1 << 24, G, "packets queued per CPU when the interface receives faster than the kernel processes"));
  r.push_back(text("net.core.default_qdisc", G, "queueing discipline for new interfaces (fq for pacing, fq_codel)"));
  // --- conntrack (loaded only with nf_conntrack) ---
  r.push_back(integer("net.netfilter.nf_conntrack_max", 1024, kIntMax, H, "conntrack entries host-wide"));
  r.push_back(boolean("net.netfilter.nf_conntrack_tcp_loose", N, "pick up established flows mid-stream (must be 0 for SYNPROXY)"));
  r.push_back(integer("net.netfilter.nf_conntrack_tcp_timeout_syn_recv", 1, 600, N, "seconds a conntrack entry stays in SYN_RECV"));
  r.push_back(integer("net.netfilter.nf_conntrack_tcp_timeout_established", 60, kIntMax, N, "seconds an idle established conntrack entry lives"));
  r.push_back(integer("net.netfilter.nf_conntrack_tcp_timeout_time_wait", 1, 600, N, "seconds a conntrack entry stays in TIME_WAIT"));
  r.push_back(integer("net.netfilter.nf_conntrack_tcp_timeout_close_wait", 1, 3600, N, "seconds a conntrack entry stays in CLOSE_WAIT"));
  // --- removed or dead keys: refused with the reason ---
  r.push_back(gone("net.ipv4.tcp_tw_recycle", Status::Removed,
                   "removed in Linux 4.12: it broke clients behind NAT (per-host timestamps); use tcp_tw_reuse"));
  r.push_back(gone("net.ipv4.tcp_abc", Status::Removed, "removed in Linux 3.9 (Appropriate Byte Counting)"));
  r.push_back(gone("net.ipv4.tcp_cookie_size", Status::Removed, "removed in Linux 3.10 with TCP Cookie Transactions"));
  r.push_back(gone("net.ipv4.tcp_bic", Status::Removed, "removed in Linux 2.6.13: use tcp_congestion_control = bic"));
  r.push_back(gone("net.ipv4.tcp_westwood", Status::Removed, "removed in Linux 2.6.13: use tcp_congestion_control = westwood"));
  r.push_back(gone("net.ipv4.tcp_vegas_cong_avoid", Status::Removed, "removed in Linux 2.6.13: use tcp_congestion_control = vegas"));
  r.push_back(gone("net.ipv4.tcp_low_latency", Status::Obsolete, "no effect since Linux 4.14 (the prequeue it tuned was removed)"));
  r.push_back(gone("net.ipv4.tcp_fack", Status::Obsolete, "no effect since Linux 4.15 (FACK was replaced by RACK loss detection)"));
  return r;
}

bool pattern_match(std::string_view pattern, std::string_view key) {
  // '*' matches exactly one dotted component: the interface name, "all" or "default".
  size_t p = 0, k = 0;
  while (p < pattern.size() && k < key.size()) {
    if (pattern[p] == '*') {
      size_t end = key.find('.', k);
      if (end == k) return false;
      k = end == std::string_view::npos ? key.size() : end;
      ++p;
      continue;
    }
    if (pattern[p] != key[k]) return false;
    ++p;
    ++k;
  }
  return p == pattern.size() && k == key.size();
}

}  // namespace

const std::vector<KeyDef>& registry() {
  static const std::vector<KeyDef> r = build();
  return r;
}

const KeyDef* find_key(std::string_view key) {
  for (const auto& d : registry())
    if (d.name == key) return &d;
  for (const auto& d : registry())
    if (d.name.find('*') != std::string::npos && pattern_match(d.name, key)) return &d;
  return nullptr;
}

std::string_view scope_name(Scope s) {
  switch (s) {
    case Scope::PerNetns: return "per-netns";
    case Scope::Global: return "global";
    case Scope::HostOnly: return "host-only";
  }
  return "?";
}

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::Integer: return "integer";
    case Kind::Vector: return "vector";
    case Kind::Text: return "text";
  }
  return "?";
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::int64_t v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (*b == '+') ++b;
  auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr != e || b == e) return std::nullopt;
  return v;
}

Checked check_value(const KeyDef& def, std::string_view text) {
  Checked out;
  if (def.status != Status::Active) {
    out.error = def.name + (def.status == Status::Removed ? " was removed: " : " is obsolete: ") + def.reason;
    return out;
  }
  auto toks = split_ws(text);
  if (def.kind == Kind::Text) {
    if (toks.size() != 1) {
      out.error = "expects one word, got '" + std::string(text) + "'";
      return out;
    }
    for (char c : toks[0]) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      if (!ok) {
        out.error = "'" + toks[0] + "' is not a name (letters, digits, _ and - only)";
        return out;
      }
    }
    out.ok = true;
    out.value = toks[0];
    return out;
  }
  if (toks.size() != def.fields.size()) {
    out.error = "expects " + std::to_string(def.fields.size()) + (def.fields.size() == 1 ? " integer" : " integers") +
                ", got '" + canonical(text) + "'";
    return out;
  }
  std::vector<std::int64_t> nums;
  for (size_t i = 0; i < toks.size(); ++i) {
    auto v = parse_int(toks[i]);
    if (!v) {
      out.error = "'" + toks[i] + "' is not an integer";
      return out;
    }
    const auto& f = def.fields[i];
    if (*v < f.min || *v > f.max) {
      std::string field = f.name ? std::string(f.name) + " " : toks.size() > 1 ? "value " + std::to_string(i + 1) + ": " : "";
      out.error = field + std::to_string(*v) + " is outside the meaningful range " + std::to_string(f.min) + ".." + std::to_string(f.max);
      if (*v < f.min && !def.floor_reason.empty()) out.error += " (" + def.floor_reason + ")";
      return out;
    }
    nums.push_back(*v);
  }
  if (def.check == Check::Ascending) {
    for (size_t i = 1; i < nums.size(); ++i)
      if (nums[i] < nums[i - 1]) {
        out.error = "values must not decrease (min <= default <= max), got '" + canonical(text) + "'";
        return out;
      }
  }
  if (def.check == Check::PortRange && nums.size() == 2 && nums[0] >= nums[1]) {
    out.error = "low port must be below high port, got '" + canonical(text) + "'";
    return out;
  }
  out.ok = true;
  for (auto n : nums) {
    if (!out.value.empty()) out.value += ' ';
    out.value += std::to_string(n);
  }
  return out;
}

}  // namespace tcptune
