#include "config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "syngate/bpf/xdp_abi.h"

namespace syngate::gw {

ConfigError::ConfigError(const std::string& source, const std::string& key,
                         const std::string& reason)
    : std::runtime_error(source + ": " + (key.empty() ? std::string() : key + ": ") + reason),
      key_(key),
      reason_(reason) {}

std::string_view to_string(Mode m) noexcept {
  switch (m) {
    case Mode::Router: return "router";
    case Mode::Host: return "host";
    case Mode::Both: return "both";
  }
  return "?";
}

std::string_view to_string(IptablesBackend b) noexcept {
  switch (b) {
    case IptablesBackend::Auto: return "auto";
    case IptablesBackend::Nft: return "nft";
    case IptablesBackend::Legacy: return "legacy";
  }
  return "?";
}

std::string_view to_string(XdpMode m) noexcept {
  switch (m) {
    case XdpMode::Auto: return "auto";
    case XdpMode::Native: return "native";
    case XdpMode::Generic: return "generic";
    case XdpMode::Tc: return "tc";
    case XdpMode::Off: return "off";
  }
  return "?";
}

std::string_view to_string(KernelPath k) noexcept { return k == KernelPath::Off ? "off" : "auto"; }

bool GatewayConfig::has_v4() const noexcept {
  auto v4 = [](const auto& s) { return !s.v6; };
  return std::any_of(services.begin(), services.end(), v4) || std::any_of(draining.begin(), draining.end(), v4);
}
bool GatewayConfig::has_v6() const noexcept {
  auto v6 = [](const auto& s) { return s.v6; };
  return std::any_of(services.begin(), services.end(), v6) || std::any_of(draining.begin(), draining.end(), v6);
}

namespace {

// Reads the keys of one table, remembering which it consumed so that leftovers (typos) can be
// reported by name.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, const std::string& source)
      : table_(table), prefix_(std::move(prefix)), source_(source) {}

  std::string key(std::string_view k) const { return prefix_ + std::string(k); }
  [[noreturn]] void fail(std::string_view k, const std::string& reason) const {
    throw ConfigError(source_, key(k), reason);
  }

  const toml::node* find(std::string_view k) {
    seen_.insert(std::string(k));
    return table_.get(k);
  }

  template <typename T>
  void integer(std::string_view k, T& out, int64_t lo, int64_t hi) {
    const toml::node* n = find(k);
    if (!n) return;
    if (!n->is_integer()) fail(k, "must be an integer (got " + type_name(*n) + ")");
    int64_t v = n->as_integer()->get();
    if (v < lo || v > hi) {
      fail(k, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " (got " +
                  std::to_string(v) + ")");
    }
    out = static_cast<T>(v);
  }

  void boolean(std::string_view k, bool& out) {
    const toml::node* n = find(k);
    if (!n) return;
    if (!n->is_boolean()) fail(k, "must be true or false (got " + type_name(*n) + ")");
    out = n->as_boolean()->get();
  }

  bool string(std::string_view k, std::string& out) {
    const toml::node* n = find(k);
    if (!n) return false;
    if (!n->is_string()) fail(k, "must be a string (got " + type_name(*n) + ")");
    out = n->as_string()->get();
    return true;
  }

  void int_list(std::string_view k, std::vector<int>& out, int lo, int hi) {
    const toml::node* n = find(k);
    if (!n) return;
    const toml::array* a = n->as_array();
    if (!a) fail(k, "must be an array of integers (got " + type_name(*n) + ")");
    out.clear();
    for (const toml::node& e : *a) {
      if (!e.is_integer()) fail(k, "must be an array of integers (found " + type_name(e) + ")");
      int64_t v = e.as_integer()->get();
      if (v < lo || v > hi) {
        fail(k, "entries must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                    " (got " + std::to_string(v) + ")");
      }
      out.push_back(static_cast<int>(v));
    }
  }

  void reject_unknown() const {
    for (const auto& [k, v] : table_) {
      if (!seen_.count(std::string(k.str()))) {
        fail(k.str(), "unknown key (check the spelling; see deploy/syngate.toml for every key)");
      }
    }
  }

  static std::string type_name(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date/time";
    }
  }

 private:
  const toml::table& table_;
  std::string prefix_;
  const std::string& source_;
  std::set<std::string> seen_;
};

constexpr int64_t kU32Max = std::numeric_limits<uint32_t>::max();

// Canonical text of an address, and its family; nullopt-like false when it is not an address.
bool canonical_address(const std::string& text, std::string& out, bool& v6) {
  unsigned char buf[16];
  char str[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    v6 = false;
    out = inet_ntop(AF_INET, buf, str, sizeof str);
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    v6 = true;
    out = inet_ntop(AF_INET6, buf, str, sizeof str);
    return true;
  }
  return false;
}

bool is_loopback(const std::string& host) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) return buf[0] == 127;
  if (inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    static const unsigned char lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(buf, buf + 16, lo);
  }
  return host == "localhost";
}

void parse_metrics_address(TableReader& r, GatewayConfig& c) {
  std::string text;
  if (!r.string("metrics_address", text)) return;
  if (text.empty() || text == "off") {
    c.metrics_port = 0;
    return;
  }
  // "host:port", "[v6]:port"
  std::string host, port;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      r.fail("metrics_address", "expected \"[v6-address]:port\" (got \"" + text + "\")");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      r.fail("metrics_address", "expected \"host:port\", e.g. \"127.0.0.1:9470\" (got \"" + text +
                                    "\")");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  std::string canon;
  bool v6 = false;
  if (host != "localhost" && !canonical_address(host, canon, v6)) {
    r.fail("metrics_address", "\"" + host + "\" is not an IP address");
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
    r.fail("metrics_address", "port must be 1..65535 (got \"" + port + "\")");
  }
  c.metrics_host = host == "localhost" ? "127.0.0.1" : canon;
  c.metrics_port = static_cast<uint16_t>(p);
}

bool instance_char(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
         ch == '.' || ch == '@';
}

bool valid_instance_name(const std::string& name) {
  return !name.empty() && name.size() <= 64 && name.front() != '.' &&
         std::all_of(name.begin(), name.end(), instance_char);
}

}  // namespace

std::string default_instance_name(std::string_view config_path) {
  std::string name(config_path.substr(config_path.find_last_of('/') == std::string_view::npos
                                          ? 0
                                          : config_path.find_last_of('/') + 1));
  if (name.size() > 5 && name.ends_with(".toml")) name.resize(name.size() - 5);
  for (char& ch : name) {
    if (!instance_char(ch)) ch = '_';
  }
  if (name.size() > 64) name.resize(64);
  if (!name.empty() && name.front() == '.') name.front() = '_';
  return name.empty() ? "syngate" : name;
}

namespace {

void parse_gateway(const toml::table& t, GatewayConfig& c) {
  TableReader r(t, "gateway.", c.source);
  if (!r.string("secret_file", c.secret_file) || c.secret_file.empty()) {
    r.fail("secret_file", "is required: the file holding the SYN-cookie secrets (created 0600 if "
                          "missing), e.g. \"/var/lib/syngate/secrets\"");
  }
  if (r.string("log_level", c.log_level)) {
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (!levels.count(c.log_level)) {
      r.fail("log_level", "must be one of trace, debug, info, warn, error, critical, off (got \"" +
                              c.log_level + "\")");
    }
  }
  if (r.string("log_format", c.log_format) && c.log_format != "text" && c.log_format != "json") {
    r.fail("log_format", "must be \"text\" or \"json\" (got \"" + c.log_format + "\")");
  }
  parse_metrics_address(r, c);
  r.boolean("metrics_allow_remote", c.metrics_allow_remote);
  if (c.metrics_port != 0 && !c.metrics_allow_remote && !is_loopback(c.metrics_host)) {
    r.fail("metrics_address", "\"" + c.metrics_host + "\" is not a loopback address; the metrics "
                              "endpoint has no authentication, set metrics_allow_remote = true to "
                              "expose it anyway");
  }
  r.integer("stats_interval_s", c.stats_interval_s, 0, 86400);
  r.integer("syn_queue", c.syn_queue, 0, 65535);
  r.integer("syn_queues", c.syn_queues, 1, 64);
  r.integer("flow_queue", c.flow_queue, 0, 65535);
  r.integer("flow_queues", c.flow_queues, 1, 64);
  if (c.syn_queue + c.syn_queues - 1 > 65535) r.fail("syn_queues", "queue numbers past 65535");
  if (c.flow_queue + c.flow_queues - 1 > 65535) r.fail("flow_queues", "queue numbers past 65535");
  bool overlap = c.syn_queue < c.flow_queue + c.flow_queues && c.flow_queue < c.syn_queue + c.syn_queues;
  if (overlap) {
    r.fail("flow_queue", "flow queues " + std::to_string(c.flow_queue) + ".." +
                             std::to_string(c.flow_queue + c.flow_queues - 1) +
                             " overlap the SYN queues " + std::to_string(c.syn_queue) + ".." +
                             std::to_string(c.syn_queue + c.syn_queues - 1) +
                             "; SYNs must be queued apart from established traffic");
  }
  r.integer("syn_queue_maxlen", c.syn_queue_maxlen, 16, 1 << 20);
  r.integer("flow_queue_maxlen", c.flow_queue_maxlen, 16, 1 << 20);
  r.boolean("fail_open", c.fail_open);
  r.integer("rcvbuf_bytes", c.rcvbuf_bytes, 1 << 16, 1 << 30);
  r.integer("sndbuf_bytes", c.sndbuf_bytes, 1 << 16, 1 << 30);
  r.integer("batch_size", c.batch_size, 1, 1024);
  r.integer("syn_worker_nice", c.syn_worker_nice, -20, 19);
  r.integer("flow_worker_nice", c.flow_worker_nice, -20, 19);
  r.integer("flow_worker_rt_priority", c.flow_worker_rt_priority, 0, 99);
  r.int_list("syn_cpus", c.syn_cpus, 0, 4095);
  r.int_list("flow_cpus", c.flow_cpus, 0, 4095);
  r.integer("advance_interval_ms", c.advance_interval_ms, 10, 1000);
  std::string text;
  if (r.string("mode", text)) {
    if (text == "router") c.mode = Mode::Router;
    else if (text == "host") c.mode = Mode::Host;
    else if (text == "both") c.mode = Mode::Both;
    else r.fail("mode", "must be \"router\" (FORWARD), \"host\" (INPUT/OUTPUT) or \"both\" (got \"" + text + "\")");
  }
  r.integer("mark", c.mark, 1, kU32Max);
  if (r.string("kernel_path", text)) {
    if (text == "auto") c.kernel_path = KernelPath::Auto;
    else if (text == "off") c.kernel_path = KernelPath::Off;
    else r.fail("kernel_path", "must be \"auto\" (established flows translated by tc programs where they load) or "
                               "\"off\" (every segment through NFQUEUE) (got \"" + text + "\")");
  }
  r.boolean("tc_forward", c.tc_forward);
  r.boolean("tc_handshake", c.tc_handshake);
  r.boolean("tc_open_flows", c.tc_open_flows);
  r.boolean("tc_early_data", c.tc_early_data);
  if (r.string("bpf_dir", c.bpf_dir) && (c.bpf_dir.empty() || c.bpf_dir.front() != '/')) {
    r.fail("bpf_dir", "must be an absolute path to a bpffs mount (got \"" + c.bpf_dir + "\")");
  }
  if (r.string("iptables", text)) {
    if (text == "auto") c.iptables = IptablesBackend::Auto;
    else if (text == "nft") c.iptables = IptablesBackend::Nft;
    else if (text == "legacy") c.iptables = IptablesBackend::Legacy;
    else r.fail("iptables", "must be \"auto\", \"nft\" or \"legacy\" (got \"" + text + "\")");
  }
  if (r.string("chain", c.chain) && !valid_chain_name(c.chain)) {
    r.fail("chain", "must be " + std::string(kChainNameRule) + " (got \"" + c.chain + "\")");
  }
  if (r.string("state_dir", c.state_dir) && !c.state_dir.empty() && c.state_dir.front() != '/') {
    r.fail("state_dir", "must be an absolute directory path, or \"\" to keep flows in memory only (got \"" +
                            c.state_dir + "\")");
  }
  if (r.string("instance", c.instance) && !valid_instance_name(c.instance)) {
    r.fail("instance", "must be 1..64 characters of A-Z a-z 0-9 _ - . @, not starting with '.' (got \"" +
                           c.instance + "\")");
  }
  if (c.instance.empty()) c.instance = default_instance_name(c.source);
  r.integer("secret_rotation_s", c.secret_rotation_s, 0, 86400 * 365);
  if (c.secret_rotation_s != 0 && c.secret_rotation_s < 128) {
    r.fail("secret_rotation_s", "must be 0 (never) or at least 128: a cookie is checked with the "
                                "current and the previous key only, so rotating faster than two "
                                "64-second cookie ticks invalidates handshakes in flight");
  }
  r.reject_unknown();
}

void parse_engine(const toml::table& t, GatewayConfig& c) {
  TableReader r(t, "engine.", c.source);
  EngineConfig& e = c.engine;
  r.integer("max_flows", e.max_flows, 1, 1 << 26);
  r.integer("max_flows_per_source", e.max_flows_per_source, 0, kU32Max);
  r.integer("source_prefix_v6", e.source_prefix_v6, 16, 128);
  r.integer("synack_window", e.synack_window, 0, 65535);
  r.integer("announced_wscale", e.announced_wscale, 0, kMaxWindowScale);
  r.boolean("announce_ecn", e.announce_ecn);
  r.integer("early_data_bytes", e.early_data_bytes, 0, 1 << 20);
  r.integer("early_data_slots", e.early_data_slots, 0, 1 << 24);
  r.integer("backend_syn_retries", e.backend_syn_retries, 0, 16);
  r.integer("backend_retry_initial_ms", e.backend_retry_initial_ms, 10, 60000);
  r.integer("established_idle_s", e.established_idle_s, 1, 86400 * 7);
  r.integer("closing_idle_s", e.closing_idle_s, 1, 86400);
  r.integer("linger_s", e.linger_s, 0, 3600);
  r.integer("cookie_max_age", c.cookie_max_age, 0, 3);
  r.reject_unknown();
}

void parse_xdp(const toml::table& t, GatewayConfig& c) {
  TableReader r(t, "xdp.", c.source);
  std::string text;
  if (r.string("mode", text)) {
    if (text == "auto") c.xdp_mode = XdpMode::Auto;
    else if (text == "native") c.xdp_mode = XdpMode::Native;
    else if (text == "generic") c.xdp_mode = XdpMode::Generic;
    else if (text == "tc") c.xdp_mode = XdpMode::Tc;
    else if (text == "off") c.xdp_mode = XdpMode::Off;
    else r.fail("mode", "must be \"auto\", \"native\", \"generic\", \"tc\" or \"off\" (got \"" + text + "\")");
  }
  if (const toml::node* n = r.find("interfaces")) {
    const toml::array* a = n->as_array();
    if (!a) r.fail("interfaces", "must be an array of interface names, e.g. [\"eth0\"]");
    std::set<std::string> seen;
    for (const toml::node& e : *a) {
      if (!e.is_string()) r.fail("interfaces", "must be an array of interface names (strings)");
      const std::string name = e.as_string()->get();
      // The kernel's rules for a name: 1..15 bytes, no '/', no whitespace, not "." or "..".
      const bool bad_char = std::any_of(name.begin(), name.end(), [](char ch) {
        return ch == '/' || ch == ':' || ch == ' ' || ch == '\t' || ch == '\n';
      });
      if (name.empty() || name.size() > 15 || bad_char || name == "." || name == "..") {
        r.fail("interfaces", "\"" + name + "\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
      }
      if (!seen.insert(name).second) r.fail("interfaces", "\"" + name + "\" is listed twice");
      c.xdp_interfaces.push_back(name);
    }
  }
  r.reject_unknown();
}

// [policy]: one prefix set for allow and deny (the longest match decides), and the budgets. A
// prefix listed twice, even once in each list, is an error: which one should win is not clear.
void parse_policy(const toml::table& t, GatewayConfig& c) {
  TableReader r(t, "policy.", c.source);
  auto policy = std::make_shared<SourcePolicy>();
  std::map<std::string, std::string> where;  // canonical prefix -> "policy.deny[3]"
  for (const char* list : {"deny", "allow"}) {
    const toml::node* n = r.find(list);
    if (!n) continue;
    const toml::array* a = n->as_array();
    if (!a) r.fail(list, "must be an array of CIDR strings such as [\"192.0.2.0/24\", \"2001:db8::/32\"]");
    size_t i = 0;
    for (const toml::node& e : *a) {
      const std::string key = std::string(list) + "[" + std::to_string(i++) + "]";
      if (!e.is_string()) r.fail(key, "must be a CIDR string (got " + TableReader::type_name(e) + ")");
      std::string why;
      const std::optional<Prefix> p = Prefix::parse(e.as_string()->get(), &why);
      if (!p) r.fail(key, why);
      const auto [it, fresh] = where.emplace(p->to_string(), "policy." + key);
      if (!fresh) r.fail(key, p->to_string() + " is already listed as " + it->second);
      policy->add(*p, std::string_view(list) == "deny");
    }
  }
  r.integer("synack_per_prefix_per_s", policy->synack_per_prefix_per_s, 0, kU32Max);
  r.integer("synack_per_address_per_s", policy->synack_per_address_per_s, 0, kU32Max);
  r.integer("new_flows_per_source_per_s", policy->new_flows_per_source_per_s, 0, kU32Max);
  r.reject_unknown();
  c.engine.policy = std::move(policy);
}

void parse_services(const toml::node* node, GatewayConfig& c) {
  if (!node) {
    throw ConfigError(c.source, "service",
                      "at least one [[service]] table is required, e.g. [[service]] address = "
                      "\"10.10.3.2\" port = 80");
  }
  const toml::array* arr = node->as_array();
  if (!arr || !arr->is_array_of_tables()) {
    throw ConfigError(c.source, "service", "must be an array of tables: write [[service]]");
  }
  if (arr->empty()) throw ConfigError(c.source, "service", "at least one [[service]] is required");
  size_t i = 0;
  for (const toml::node& n : *arr) {
    TableReader r(*n.as_table(), "service[" + std::to_string(i) + "].", c.source);
    ServiceEntry s;
    std::string text;
    if (!r.string("address", text)) r.fail("address", "is required (an IPv4 or IPv6 address)");
    if (!canonical_address(text, s.address, s.v6)) {
      r.fail("address", "\"" + text + "\" is not an IPv4 or IPv6 address (names are not resolved)");
    }
    // ::ffff:a.b.c.d never appears on a wire: the rules would match nothing, and the IPv4
    // service it names would be installed under the wrong family.
    if (s.v6 && !Address::parse(s.address)) {
      r.fail("address", "\"" + text + "\" is an IPv4-mapped IPv6 address, which no packet carries; write the "
                        "IPv4 address itself (\"" + s.address.substr(s.address.rfind(':') + 1) + "\")");
    }
    const toml::node* p = r.find("port");
    if (!p) r.fail("port", "is required (1..65535)");
    r.integer("port", s.port, 1, 65535);
    r.reject_unknown();
    // As addresses, not as text: 2001:db8::1 and 2001:DB8:0::1 are one service.
    const Address address = *Address::parse(s.address);
    for (const ServiceEntry& other : c.services) {
      if (other.port == s.port && Address::parse(other.address) == address) {
        r.fail("address", "duplicate service " + s.address + " port " + std::to_string(s.port) +
                              " (\"" + text + "\" is the same address as an earlier entry)");
      }
    }
    c.services.push_back(s);
    ++i;
  }
}

}  // namespace

GatewayConfig parse_config(std::string_view toml_text, std::string_view source) {
  GatewayConfig c;
  c.source = std::string(source);
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << "line " << e.source().begin.line << ", column " << e.source().begin.column;
    throw ConfigError(c.source, "", "TOML syntax error at " + where.str() + ": " +
                                        std::string(e.description()));
  }
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    if (key != "gateway" && key != "engine" && key != "policy" && key != "service" && key != "xdp") {
      throw ConfigError(c.source, key, "unknown section (expected [gateway], [engine], [policy], [[service]], [xdp])");
    }
    if ((key == "gateway" || key == "engine" || key == "policy" || key == "xdp") && !v.is_table()) {
      throw ConfigError(c.source, key, "must be a table: write [" + key + "]");
    }
  }
  const toml::table* gw = root["gateway"].as_table();
  if (!gw) {
    throw ConfigError(c.source, "gateway", "section [gateway] is required (it holds secret_file)");
  }
  parse_gateway(*gw, c);
  if (const toml::table* e = root["engine"].as_table()) parse_engine(*e, c);
  if (const toml::table* p = root["policy"].as_table()) parse_policy(*p, c);
  if (!c.engine.policy) c.engine.policy = std::make_shared<SourcePolicy>();
  parse_services(root.get("service"), c);
  if (const toml::table* x = root["xdp"].as_table()) parse_xdp(*x, c);
  // A list the fast path's map cannot hold would leave the whole fast path off at start; say so
  // here, where `syngate check` and a reload see it, rather than in a warning at run time.
  if (c.xdp_mode != XdpMode::Off && c.engine.policy->prefixes.size() > SG_XDP_MAX_PREFIXES) {
    throw ConfigError(c.source, "policy",
                      "deny and allow list " + std::to_string(c.engine.policy->prefixes.size()) +
                          " prefixes together; the XDP fast path holds at most " +
                          std::to_string(SG_XDP_MAX_PREFIXES) +
                          ": merge them into shorter prefixes, or set [xdp] mode = \"off\"");
  }
  c.engine.services = to_engine_services(c.services);
  return c;
}

GatewayConfig load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "", "cannot open the file for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConfigError(path, "", "read error");
  return parse_config(ss.str(), path);
}

bool valid_chain_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= 28 && std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '-';
  });
}

std::vector<Service> to_engine_services(const std::vector<ServiceEntry>& services) {
  std::vector<Service> out;
  for (const ServiceEntry& s : services) {
    Service svc;
    unsigned char buf[16] = {};
    if (s.v6) {
      inet_pton(AF_INET6, s.address.c_str(), buf);
      std::copy(buf, buf + 16, svc.address.bytes.begin());
    } else {
      inet_pton(AF_INET, s.address.c_str(), buf);
      svc.address.bytes = {};
      svc.address.bytes[10] = 0xff;
      svc.address.bytes[11] = 0xff;
      std::copy(buf, buf + 4, svc.address.bytes.begin() + 12);
    }
    svc.port = s.port;
    out.push_back(svc);
  }
  return out;
}

std::vector<std::string> non_reloadable_changes(const GatewayConfig& a, const GatewayConfig& b) {
  std::vector<std::string> out;
  auto check = [&](bool differ, const char* key) {
    if (differ) out.push_back(key);
  };
  check(a.secret_file != b.secret_file, "gateway.secret_file");
  check(a.state_dir != b.state_dir, "gateway.state_dir");
  check(a.instance != b.instance, "gateway.instance");
  check(a.metrics_host != b.metrics_host || a.metrics_port != b.metrics_port, "gateway.metrics_address");
  check(a.syn_queue != b.syn_queue || a.syn_queues != b.syn_queues, "gateway.syn_queue(s)");
  check(a.flow_queue != b.flow_queue || a.flow_queues != b.flow_queues, "gateway.flow_queue(s)");
  check(a.syn_queue_maxlen != b.syn_queue_maxlen || a.flow_queue_maxlen != b.flow_queue_maxlen,
        "gateway.*_queue_maxlen");
  check(a.fail_open != b.fail_open, "gateway.fail_open");
  check(a.rcvbuf_bytes != b.rcvbuf_bytes || a.sndbuf_bytes != b.sndbuf_bytes, "gateway.*buf_bytes");
  check(a.batch_size != b.batch_size, "gateway.batch_size");
  check(a.syn_worker_nice != b.syn_worker_nice || a.flow_worker_nice != b.flow_worker_nice ||
            a.flow_worker_rt_priority != b.flow_worker_rt_priority || a.syn_cpus != b.syn_cpus ||
            a.flow_cpus != b.flow_cpus,
        "gateway worker placement (nice/rt priority/cpus)");
  check(a.mark != b.mark, "gateway.mark");
  // Where the rules send traffic and how often the engine's timers run are set when the workers
  // and the data paths start: a reload that took them would leave the process half on each.
  check(a.mode != b.mode, "gateway.mode");
  check(a.advance_interval_ms != b.advance_interval_ms, "gateway.advance_interval_ms");
  check(a.iptables != b.iptables || a.chain != b.chain, "gateway.iptables/chain");
  check(a.kernel_path != b.kernel_path || a.tc_forward != b.tc_forward || a.tc_handshake != b.tc_handshake ||
            a.tc_open_flows != b.tc_open_flows,
        "gateway.kernel_path/tc_forward/tc_handshake/tc_open_flows");
  check(a.tc_early_data != b.tc_early_data, "gateway.tc_early_data");
  check(a.bpf_dir != b.bpf_dir, "gateway.bpf_dir");
  check(a.cookie_max_age != b.cookie_max_age, "engine.cookie_max_age");
  const EngineConfig& x = a.engine;
  const EngineConfig& y = b.engine;
  bool engine_differs = x.max_flows != y.max_flows || x.max_flows_per_source != y.max_flows_per_source ||
                        x.source_prefix_v6 != y.source_prefix_v6 ||
                        x.synack_window != y.synack_window || x.announced_wscale != y.announced_wscale ||
                        x.announce_ecn != y.announce_ecn || x.early_data_bytes != y.early_data_bytes ||
                        x.early_data_slots != y.early_data_slots ||
                        x.backend_syn_retries != y.backend_syn_retries ||
                        x.backend_retry_initial_ms != y.backend_retry_initial_ms ||
                        x.established_idle_s != y.established_idle_s ||
                        x.closing_idle_s != y.closing_idle_s || x.linger_s != y.linger_s;
  check(engine_differs, "[engine] settings");
  check(a.xdp_mode != b.xdp_mode || a.xdp_interfaces != b.xdp_interfaces, "[xdp] mode/interfaces");
  return out;
}

}  // namespace syngate::gw
