// The XDP fast path's control plane. Built with or without the program: without it (no clang,
// bpftool or libbpf at build time) Program's constructor refuses with the reason and the daemon
// runs as an NFQUEUE gateway only.
#include "xdp.hpp"
#include "metrics.hpp"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include <sodium.h>
#include <spdlog/spdlog.h>

#ifdef SYNGATE_HAVE_XDP
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include "syngate_xdp.skel.h"
#include "syngate/bpf/xdp_abi.h"
#endif

namespace syngate::xdp {

std::string_view to_string(AttachMode m) noexcept {
  switch (m) {
    case AttachMode::Auto: return "auto";
    case AttachMode::Native: return "native";
    case AttachMode::Generic: return "generic";
    case AttachMode::Off: return "off";
  }
  return "unknown";
}

Settings settings_from(const EngineConfig& engine, bool drop_no_flow, uint32_t cpus) {
  Settings s;
  if (engine.policy) {
    const SourcePolicy& p = *engine.policy;
    s.has_prefixes = !p.prefixes.empty();
    s.allow_list = p.allow_list;
    const uint32_t share = std::max<uint32_t>(cpus, 1);
    s.synack_limit_per_cpu = p.synack_per_prefix_per_s == 0 ? 0 : (p.synack_per_prefix_per_s + share - 1) / share;
    s.synack_limit_per_address = p.synack_per_address_per_s;
  } else {
    s.synack_limit_per_cpu = (SourcePolicy::kDefaultSynackPerPrefixPerS + std::max<uint32_t>(cpus, 1) - 1) /
                             std::max<uint32_t>(cpus, 1);
    s.synack_limit_per_address = SourcePolicy::kDefaultSynackPerAddressPerS;
  }
  s.synack_window = engine.synack_window;
  s.mss_v4 = engine.announced_mss_v4;
  s.mss_v6 = engine.announced_mss_v6;
  s.wscale = engine.announced_wscale;
  s.announce_ecn = engine.announce_ecn;
  s.drop_no_flow = drop_no_flow;
  return s;
}

// The budget is split over the CPUs that can run the program: those online now.
static uint32_t online_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<uint32_t>(n) : 1;
}

std::vector<std::string> default_interfaces() {
  std::vector<std::string> out;
  struct if_nameindex* list = if_nameindex();
  if (!list) return out;
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (struct if_nameindex* i = list; fd >= 0 && i->if_index != 0; ++i) {
    ifreq req{};
    std::strncpy(req.ifr_name, i->if_name, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &req) != 0) continue;
    if ((req.ifr_flags & IFF_UP) && !(req.ifr_flags & IFF_LOOPBACK)) out.emplace_back(i->if_name);
  }
  if (fd >= 0) close(fd);
  if_freenameindex(list);
  return out;
}

std::string interface_driver(const std::string& interface) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq req{};
  std::strncpy(req.ifr_name, interface.c_str(), IFNAMSIZ - 1);
  req.ifr_data = reinterpret_cast<char*>(&info);
  const int rc = ioctl(fd, SIOCETHTOOL, &req);
  close(fd);
  if (rc != 0) return "";
  return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

std::unique_ptr<FastPath> FastPath::start(AttachMode mode, std::vector<std::string> interfaces,
                                          gw::Mode gateway_mode, const EngineConfig& engine,
                                          const CookieSecrets& secrets, uint32_t cookie_max_age, uint32_t max_flows) {
  if (mode == AttachMode::Off) {
    spdlog::info("xdp: off by configuration; every packet takes the NFQUEUE path");
    return nullptr;
  }
  std::unique_ptr<Program> program;
  // The budget cells' hash key: random, so nobody can pick sources that share a victim's cell.
  std::array<uint8_t, 16> budget_key{};
  randombytes_buf(budget_key.data(), budget_key.size());
  Settings settings = settings_from(engine, true, online_cpus());
  settings.budget_key = budget_key;
  try {
    program = std::make_unique<Program>(max_flows);
    program->configure(settings, false);
    program->set_secrets(secrets, cookie_max_age);
    program->set_services(engine.services);
    if (engine.policy) program->set_prefixes(engine.policy->prefixes);
    program->configure(settings, true);
  } catch (const std::exception& e) {
    spdlog::warn("xdp: fast path unavailable, running on NFQUEUE only: {}", e.what());
    return nullptr;
  }
  std::unique_ptr<FastPath> fast(new FastPath(std::move(program)));
  fast->budget_key_ = budget_key;
  fast->services_ = engine.services;
  fast->mode_ = mode;
  fast->listed_ = std::move(interfaces);
  fast->gateway_mode_ = gateway_mode;
  gw::InterfacePlan plan;
  bool planned = true;
  try {
    plan = fast->plan();
  } catch (const std::exception& e) {
    planned = false;
    spdlog::warn("xdp: cannot read links and routes ({}); attaching to every up interface", e.what());
    for (const std::string& name : fast->listed_.empty() ? default_interfaces() : fast->listed_) {
      plan.interfaces.push_back({static_cast<int>(if_nametoindex(name.c_str())), name, {"up"}});
    }
  }
  if (planned) {
    spdlog::info("xdp: {} interface(s) need the fast path{}", plan.interfaces.size(),
                 fast->listed_.empty() ? " (clients by the default routes, servers by the routes to the services)"
                                       : " (listed in [xdp] interfaces)");
    for (const std::string& line : gw::describe(plan)) spdlog::info("xdp: needed on {}", line);
    for (const std::string& note : plan.notes) spdlog::info("xdp: {}", note);
  }
  fast->apply(plan);
  if (fast->program_->attachments().empty() && !plan.interfaces.empty()) {
    std::string all;
    for (const auto& c : plan.interfaces) all += (all.empty() ? "" : ",") + c.name;
    spdlog::warn("xdp: attached nowhere (interfaces: {}); running on NFQUEUE only", all);
    return nullptr;
  }
  if (planned) {
    try {
      fast->watcher_ = std::make_unique<gw::LinkWatcher>();
      spdlog::info("xdp: following link and route changes (rtnetlink): the rule is re-applied as interfaces "
                   "come and go");
    } catch (const std::exception& e) {
      spdlog::warn("xdp: interfaces stay as attached now: {}", e.what());
    }
  }
  if (plan.interfaces.empty()) {
    spdlog::warn("xdp: no interface needs the fast path yet; NFQUEUE answers until one does");
  }
  return fast;
}

gw::InterfacePlan FastPath::plan() {
  std::vector<Address> addresses;
  for (const Service& s : services_) {
    if (std::find(addresses.begin(), addresses.end(), s.address) == addresses.end()) addresses.push_back(s.address);
  }
  gw::RoutingFacts facts = gw::read_routing_facts(addresses);
  facts.had_default = had_default_;
  links_ = facts.links;
  had_default_ = had_default_ || !facts.defaults.empty();
  return listed_.empty() ? gw::plan_interfaces(facts, gateway_mode_) : gw::plan_listed(facts, listed_);
}

void FastPath::apply(const gw::InterfacePlan& plan) {
  auto reasons_of = [](const gw::InterfaceChoice& c) {
    std::string all;
    for (const auto& r : c.reasons) all += (all.empty() ? "" : "; ") + r;
    return all;
  };
  for (const Attachment& a : program_->attachments()) {
    const bool needed = std::any_of(plan.interfaces.begin(), plan.interfaces.end(),
                                    [&](const gw::InterfaceChoice& c) { return c.ifindex == a.ifindex; });
    if (needed) continue;
    program_->detach(a.ifindex);
    const auto link = std::find_if(links_.begin(), links_.end(), [&](const gw::LinkFact& l) { return l.ifindex == a.ifindex; });
    spdlog::info("xdp: detached from {} (ifindex {}): {}", a.interface, a.ifindex,
                 link == links_.end() ? "the interface is gone"
                 : !link->up          ? "the interface is down"
                                      : "no longer needed (no default route or service route uses it)");
  }
  const auto attached = program_->attachments();
  std::vector<std::pair<int, std::string>> failures;
  for (const gw::InterfaceChoice& c : plan.interfaces) {
    if (std::any_of(attached.begin(), attached.end(), [&](const Attachment& a) { return a.ifindex == c.ifindex; })) {
      continue;
    }
    std::string why;
    if (program_->attach(c.name, mode_, &why)) {
      for (const Attachment& a : program_->attachments()) {
        if (a.interface != c.name) continue;
        spdlog::info("xdp: attached to {} ({} mode, driver {}): {}", a.interface, to_string(a.mode),
                     a.driver.empty() ? "unknown" : a.driver, reasons_of(c));
      }
      continue;
    }
    failures.emplace_back(c.ifindex, why);
    if (std::find(attach_failures_.begin(), attach_failures_.end(), failures.back()) == attach_failures_.end()) {
      spdlog::warn("xdp: cannot attach to {} ({} mode): {}", c.name, to_string(mode_), why);
    }
  }
  attach_failures_ = std::move(failures);
  applied_ = plan;
}

void FastPath::follow_interfaces() noexcept {
  if (!watcher_ || !watcher_->changed() || detached_.load()) return;
  try {
    const gw::InterfacePlan next = plan();
    if (next.notes != applied_.notes) {
      for (const std::string& note : next.notes) {
        if (std::find(applied_.notes.begin(), applied_.notes.end(), note) == applied_.notes.end()) {
          spdlog::info("xdp: links or routes changed: {}", note);
        }
      }
    }
    apply(next);
  } catch (const std::exception& e) {
    spdlog::warn("xdp: links or routes changed, but cannot read them: {}; interfaces stay as they are", e.what());
  }
}

void FastPath::set_policy(const EngineConfig& engine) {
  Settings settings = settings_from(engine, true, online_cpus());
  settings.budget_key = budget_key_;
  program_->set_prefixes(engine.policy ? engine.policy->prefixes : PrefixSet{});
  // A service removed by a reload leaves the program at once (its flows drain through NFQUEUE).
  // One added is answered here only after a restart: until `syngate rules up` queues its traffic,
  // a cookie ACK would reach the backend unproxied and be reset.
  std::vector<Service> kept;
  for (const Service& s : services_) {
    if (std::find(engine.services.begin(), engine.services.end(), s) != engine.services.end()) kept.push_back(s);
  }
  for (const Service& s : engine.services) {
    if (std::find(services_.begin(), services_.end(), s) == services_.end()) {
      spdlog::info("xdp: service {}:{} added by the reload is answered by NFQUEUE until a restart",
                   s.address.to_string(), s.port);
    }
  }
  program_->set_services(kept);
  services_ = std::move(kept);
  program_->configure(settings, true);
}

void FastPath::set_secrets(const CookieSecrets& secrets, uint32_t cookie_max_age) {
  program_->set_secrets(secrets, cookie_max_age);
}

void FastPath::detach() noexcept {
  detached_.store(true);
  program_->detach_all();
}

void FastPath::flow_created(const FlowTuple& t) noexcept {
  // A flow XDP does not know has its later packets dropped there; the map is sized to the
  // engines' total, so this only fails under memory pressure. Counted, for the metrics.
  if (!program_->add_flow(t)) flow_insert_failures_.fetch_add(1, std::memory_order_relaxed);
}

void FastPath::flow_freed(const FlowTuple& t) noexcept { program_->remove_flow(t); }

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
  for (size_t i = 1; i < r.size(); ++i) {
    out << "syngate_xdp_drops_total{reason=\"" << to_string(static_cast<SynDropReason>(i)) << "\"} " << r[i] << "\n";
  }
  out << "# HELP syngate_xdp_flow_insert_failures_total Flows the XDP flow map could not take.\n"
         "# TYPE syngate_xdp_flow_insert_failures_total counter\n"
      << "syngate_xdp_flow_insert_failures_total " << flow_insert_failures_.load() << "\n";
  return out.str();
}

#ifdef SYNGATE_HAVE_XDP

namespace {

static_assert(kCounterNames.size() == SG_XDP_COUNTER_COUNT, "one name per program counter");

sg_xdp_flow_key flow_key(const FlowTuple& t) {
  sg_xdp_flow_key k{};
  std::memcpy(k.src, t.src.bytes.data(), 16);
  std::memcpy(k.dst, t.dst.bytes.data(), 16);
  k.sport_be = htons(t.sport);
  k.dport_be = htons(t.dport);
  return k;
}

sg_xdp_service_key service_key(const Service& s) {
  sg_xdp_service_key k{};
  std::memcpy(k.addr, s.address.bytes.data(), 16);
  k.port_be = htons(s.port);
  return k;
}

sg_xdp_service_addr service_addr(const Address& address) {
  sg_xdp_service_addr a{};
  std::memcpy(a.addr, address.bytes.data(), 16);
  return a;
}

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

// libbpf reports the verifier's log through its print callback; keep its tail for the error.
thread_local std::string* g_libbpf_log = nullptr;
int collect_libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG || !g_libbpf_log) return 0;
  va_list copy;
  va_copy(copy, args);
  const int n = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n > 0) {
    std::string text(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(text.data(), text.size(), format, args);
    text.resize(static_cast<size_t>(n));
    g_libbpf_log->append(text);
  }
  // The verifier's log can run to megabytes; its end says why.
  if (g_libbpf_log->size() > 8192) g_libbpf_log->erase(0, g_libbpf_log->size() - 8192);
  return 0;
}

}  // namespace

bool available() noexcept { return true; }

struct Program::Impl {
  syngate_xdp* skel = nullptr;
  uint32_t key_slot = 0;  // the slot the program reads
  bool keys_written = false;
  std::vector<Service> services;
  std::vector<sg_xdp_prefix_key> prefixes;
  mutable std::mutex attach_mutex;
  // Flow workers add and remove flows from their own threads; a reference count is a
  // read-modify-write of the map value.
  std::mutex flows_mutex;
  struct Link {
    Attachment info;
    int fd = -1;
  };
  std::vector<Link> links;
  int map_fd(const bpf_map* m) const { return bpf_map__fd(m); }
};

Program::Program(uint32_t max_flows) : impl_(std::make_unique<Impl>()) {
  std::string log;
  g_libbpf_log = &log;
  libbpf_print_fn_t old = libbpf_set_print(collect_libbpf_log);
  syngate_xdp* skel = syngate_xdp__open();
  int err = skel ? 0 : -errno;
  if (skel) {
    bpf_map__set_max_entries(skel->maps.sg_flows, std::max<uint32_t>(max_flows, 1024));
    err = syngate_xdp__load(skel);
  }
  libbpf_set_print(old);
  g_libbpf_log = nullptr;
  if (err != 0) {
    if (skel) syngate_xdp__destroy(skel);
    std::string reason = "loading the XDP program failed: " + errno_text(err);
    if (err == -EPERM || err == -EACCES) {
      reason += " (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, or root; without CAP_PERFMON the verifier refuses the program)";
    }
    if (!log.empty()) reason += "\n" + log;
    throw std::runtime_error(reason);
  }
  impl_->skel = skel;
}

Program::~Program() {
  detach_all();
  if (impl_->skel) syngate_xdp__destroy(impl_->skel);
}

int Program::program_fd() const noexcept { return bpf_program__fd(impl_->skel->progs.syngate_xdp); }

void Program::configure(const Settings& s, bool ready) {
  sg_xdp_config c{};
  c.fixed_now_ns = s.fixed_now_ns;
  c.synack_window = s.synack_window;
  c.mss_v4 = s.mss_v4;
  c.mss_v6 = s.mss_v6;
  c.wscale = s.wscale;
  c.announce_ecn = s.announce_ecn ? 1 : 0;
  c.ready = ready ? 1 : 0;
  c.drop_no_flow = s.drop_no_flow ? 1 : 0;
  c.has_prefixes = s.has_prefixes ? 1 : 0;
  c.allow_list = s.allow_list ? 1 : 0;
  c.synack_limit = s.synack_limit_per_cpu;
  c.synack_address_limit = s.synack_limit_per_address;
  std::memcpy(c.budget_key, s.budget_key.data(), sizeof c.budget_key);
  const uint32_t zero = 0;
  if (bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_config), &zero, &c, BPF_ANY) != 0) {
    throw std::runtime_error("XDP settings map update failed: " + errno_text(errno));
  }
}

void Program::set_secrets(const CookieSecrets& secrets, uint32_t max_age) {
  sg_cookie_secrets v{};
  std::memcpy(v.current, secrets.current.data(), 16);
  std::memcpy(v.previous, secrets.previous.data(), 16);
  v.current_since = secrets.current_since;
  v.max_age = std::min<uint32_t>(max_age, SG_COOKIE_MAX_AGE);
  // The first write may go to the slot in use: nothing reads keys before `ready`.
  const uint32_t slot = impl_->keys_written ? (impl_->key_slot ^ 1u) : impl_->key_slot;
  if (bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_keys), &slot, &v, BPF_ANY) != 0) {
    throw std::runtime_error("XDP key map update failed: " + errno_text(errno));
  }
  const uint32_t zero = 0;
  if (bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_key_slot), &zero, &slot, BPF_ANY) != 0) {
    throw std::runtime_error("XDP key slot update failed: " + errno_text(errno));
  }
  impl_->key_slot = slot;
  impl_->keys_written = true;
}

void Program::set_services(const std::vector<Service>& services) {
  const int fd = impl_->map_fd(impl_->skel->maps.sg_services);
  const int addr_fd = impl_->map_fd(impl_->skel->maps.sg_service_addrs);
  const uint8_t one = 1;
  auto hosts = [](const std::vector<Service>& list, const Address& a) {
    return std::any_of(list.begin(), list.end(), [&a](const Service& s) { return s.address == a; });
  };
  for (const Service& s : services) {
    const sg_xdp_service_key k = service_key(s);
    const sg_xdp_service_addr a = service_addr(s.address);
    if (bpf_map_update_elem(fd, &k, &one, BPF_ANY) != 0 || bpf_map_update_elem(addr_fd, &a, &one, BPF_ANY) != 0) {
      throw std::runtime_error("XDP service map update failed: " + errno_text(errno));
    }
  }
  for (const Service& old : impl_->services) {
    if (std::find(services.begin(), services.end(), old) != services.end()) continue;
    const sg_xdp_service_key k = service_key(old);
    bpf_map_delete_elem(fd, &k);
    if (!hosts(services, old.address)) {
      const sg_xdp_service_addr a = service_addr(old.address);
      bpf_map_delete_elem(addr_fd, &a);
    }
  }
  impl_->services = services;
}

void Program::set_prefixes(const PrefixSet& prefixes) {
  const int fd = impl_->map_fd(impl_->skel->maps.sg_prefixes);
  std::vector<sg_xdp_prefix_key> keys;
  for (const PrefixSet::Entry& e : prefixes.entries()) {
    sg_xdp_prefix_key k{};
    k.prefixlen = sg_policy_key_length(e.prefix.length);
    k.family = e.prefix.v4 ? SG_POLICY_FAMILY_V4 : SG_POLICY_FAMILY_V6;
    std::memcpy(k.addr, e.prefix.address.bytes.data(), 16);
    const uint8_t value = e.value;
    if (bpf_map_update_elem(fd, &k, &value, BPF_ANY) != 0) {
      throw std::runtime_error("XDP policy map update failed: " + errno_text(errno));
    }
    keys.push_back(k);
  }
  for (const sg_xdp_prefix_key& old : impl_->prefixes) {
    const bool kept = std::any_of(keys.begin(), keys.end(), [&](const sg_xdp_prefix_key& k) {
      return k.prefixlen == old.prefixlen && k.family == old.family && std::memcmp(k.addr, old.addr, 16) == 0;
    });
    if (!kept) bpf_map_delete_elem(fd, &old);
  }
  impl_->prefixes = std::move(keys);
}

void Program::forget_proven_sources() {
  const int fd = impl_->map_fd(impl_->skel->maps.sg_proven);
  sg_xdp_proven_key key{}, next{};
  // Deleting while iterating restarts from the first key each time: the map only shrinks.
  while (bpf_map_get_next_key(fd, nullptr, &next) == 0) {
    key = next;
    if (bpf_map_delete_elem(fd, &key) != 0) break;
  }
}

// The key's value counts the flow tables that hold the flow. A copy that one worker imported but
// never sees packets for expires as idle there; removing it must not delete the key the live
// copy in another worker needs, whether or not a worker ever sees that flow's packets.
bool Program::add_flow(const FlowTuple& t) noexcept {
  const sg_xdp_flow_key k = flow_key(t);
  const int fd = impl_->map_fd(impl_->skel->maps.sg_flows);
  std::lock_guard lock(impl_->flows_mutex);
  uint32_t holders = 0;
  if (bpf_map_lookup_elem(fd, &k, &holders) != 0) holders = 0;
  ++holders;
  return bpf_map_update_elem(fd, &k, &holders, BPF_ANY) == 0;
}

void Program::remove_flow(const FlowTuple& t) noexcept {
  const sg_xdp_flow_key k = flow_key(t);
  const int fd = impl_->map_fd(impl_->skel->maps.sg_flows);
  std::lock_guard lock(impl_->flows_mutex);
  uint32_t holders = 0;
  if (bpf_map_lookup_elem(fd, &k, &holders) != 0) return;
  if (holders > 1) {
    --holders;
    bpf_map_update_elem(fd, &k, &holders, BPF_EXIST);
  } else {
    bpf_map_delete_elem(fd, &k);
  }
}

uint32_t Program::flow_holders(const FlowTuple& t) const noexcept {
  const sg_xdp_flow_key k = flow_key(t);
  uint32_t holders = 0;
  if (bpf_map_lookup_elem(impl_->map_fd(impl_->skel->maps.sg_flows), &k, &holders) != 0) return 0;
  return holders;
}

Counters Program::counters() const {
  Counters out{};
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  const int fd = impl_->map_fd(impl_->skel->maps.sg_counters);
  for (uint32_t i = 0; i < out.size(); ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out[i] += v;
  }
  return out;
}

ReasonCounters Program::reasons() const {
  ReasonCounters out{};
  static_assert(std::tuple_size_v<ReasonCounters> == SG_R_COUNT_, "one counter per specification reason");
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  const int fd = impl_->map_fd(impl_->skel->maps.sg_reasons);
  for (uint32_t i = 0; i < out.size(); ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out[i] += v;
  }
  return out;
}

bool Program::attach(const std::string& interface, AttachMode mode, std::string* why) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex == 0) {
    if (why) *why = "no such interface";
    return false;
  }
  const std::string driver = interface_driver(interface);
  // A veth hands natively XDP_TX'd frames to its peer only when the peer runs XDP too, which
  // syngate cannot see or arrange from here: generic mode answers correctly on veth.
  AttachMode want = mode;
  if (mode == AttachMode::Auto) want = driver == "veth" ? AttachMode::Generic : AttachMode::Native;
  if (mode == AttachMode::Native && driver == "veth") {
    spdlog::warn("xdp: native mode on veth {}: its SYN-ACKs reach the peer only if the peer runs an XDP "
                 "program too; \"auto\" or \"generic\" work as is", interface);
  }
  auto try_mode = [&](AttachMode m) -> int {
    LIBBPF_OPTS(bpf_link_create_opts, opts);
    opts.flags = m == AttachMode::Generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    return bpf_link_create(program_fd(), ifindex, BPF_XDP, &opts);
  };
  int fd = try_mode(want);
  std::string failure;
  if (fd < 0) {
    failure = std::string(to_string(want)) + ": " + errno_text(errno);
    // Auto falls back to generic on a driver without native XDP.
    if (mode == AttachMode::Auto && want == AttachMode::Native) {
      want = AttachMode::Generic;
      fd = try_mode(want);
      if (fd < 0) failure += "; generic: " + errno_text(errno);
    }
  }
  if (fd < 0) {
    if (why) {
      *why = failure;
      if (failure.find("Device or resource busy") != std::string::npos) *why += " (another XDP program is attached)";
    }
    return false;
  }
  std::lock_guard lock(impl_->attach_mutex);
  impl_->links.push_back({{interface, ifindex, want, driver}, fd});
  return true;
}

void Program::detach(int ifindex) noexcept {
  std::lock_guard lock(impl_->attach_mutex);
  for (auto it = impl_->links.begin(); it != impl_->links.end();) {
    if (it->info.ifindex == ifindex) {
      close(it->fd);
      it = impl_->links.erase(it);
    } else {
      ++it;
    }
  }
}

void Program::detach_all() noexcept {
  std::lock_guard lock(impl_->attach_mutex);
  // Closing the link fd detaches: the same thing happens when the process dies.
  for (auto& l : impl_->links) close(l.fd);
  impl_->links.clear();
}

std::vector<Attachment> Program::attachments() const {
  std::lock_guard lock(impl_->attach_mutex);
  std::vector<Attachment> out;
  for (const auto& l : impl_->links) out.push_back(l.info);
  return out;
}

#else  // !SYNGATE_HAVE_XDP

bool available() noexcept { return false; }

struct Program::Impl {};

Program::Program(uint32_t) {
  throw std::runtime_error("this syngate was built without the XDP fast path (clang, bpftool or libbpf missing)");
}
Program::~Program() = default;
void Program::configure(const Settings&, bool) {}
void Program::set_secrets(const CookieSecrets&, uint32_t) {}
void Program::set_services(const std::vector<Service>&) {}
void Program::set_prefixes(const PrefixSet&) {}
void Program::forget_proven_sources() {}
ReasonCounters Program::reasons() const { return {}; }
bool Program::add_flow(const FlowTuple&) noexcept { return false; }
void Program::remove_flow(const FlowTuple&) noexcept {}
uint32_t Program::flow_holders(const FlowTuple&) const noexcept { return 0; }
Counters Program::counters() const { return {}; }
int Program::program_fd() const noexcept { return -1; }
bool Program::attach(const std::string&, AttachMode, std::string* why) {
  if (why) *why = "built without XDP";
  return false;
}
void Program::detach(int) noexcept {}
void Program::detach_all() noexcept {}
std::vector<Attachment> Program::attachments() const { return {}; }

#endif

}  // namespace syngate::xdp
