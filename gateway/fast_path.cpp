// The daemon's fast path (see fast_path.hpp): the program's settings from the engine's
// configuration, where it attaches (the interface rule, followed as links and routes change),
// and its flow map kept in step with the flow workers.
#include "fast_path.hpp"

#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include <sodium.h>
#include <spdlog/spdlog.h>

namespace syngate::xdp {

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

std::unique_ptr<FastPath> FastPath::start(gw::XdpMode mode, std::vector<std::string> interfaces,
                                          gw::Mode gateway_mode, const EngineConfig& engine,
                                          const CookieSecrets& secrets, uint32_t cookie_max_age, uint32_t max_flows) {
  if (mode == gw::XdpMode::Off) {
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
  fast->service_flags_.assign(engine.services.size(), SG_SERVICE_PROTECTED);
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
    for (const std::string& name : fast->listed_.empty() ? gw::default_interfaces() : fast->listed_) {
      plan.interfaces.push_back({static_cast<int>(if_nametoindex(name.c_str())), name, {"up"}, true});
    }
  }
  if (planned) {
    spdlog::info("xdp: {} interface(s) need the fast path{}", plan.interfaces.size(),
                 fast->listed_.empty() ? " (where clients arrive: by the default routes)"
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
  return listed_.empty() ? gw::client_side(gw::plan_interfaces(facts, gateway_mode_)) : gw::plan_listed(facts, listed_);
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
  service_flags_.assign(services_.size(), SG_SERVICE_PROTECTED);
  program_->configure(settings, true);
}

bool FastPath::share_kernel_flows(int tc_flow_map_fd, int tc_handshakes_map_fd) noexcept {
  return program_->set_kernel_flows(tc_flow_map_fd, tc_handshakes_map_fd);
}

void FastPath::sync_backend_facts(const BackendFacts& facts, uint32_t now_ms) noexcept {
  for (size_t i = 0; i < services_.size(); ++i) {
    const uint8_t flags = static_cast<uint8_t>(SG_SERVICE_PROTECTED | facts.service_flags(services_[i], now_ms));
    if (flags == service_flags_[i]) continue;
    if (!program_->set_service_flags(services_[i], flags)) continue;
    service_flags_[i] = flags;
  }
}

void FastPath::set_secrets(const CookieSecrets& secrets, uint32_t cookie_max_age) {
  program_->set_secrets(secrets, cookie_max_age);
}

void FastPath::detach() noexcept {
  detached_.store(true);
  program_->detach_all();
}

void FastPath::flow_created(const FlowTuple& t) noexcept { program_->add_flow(t); }

void FastPath::write_flows() noexcept {
  // A flow XDP does not know has its later packets dropped there; the map is sized to the
  // engines' total, so this only fails under memory pressure. Counted, for the metrics.
  if (const uint64_t failed = program_->write_flows()) flow_insert_failures_.fetch_add(failed, std::memory_order_relaxed);
}

void FastPath::flow_freed(const FlowTuple& t, uint32_t) noexcept { program_->remove_flow(t); }

}  // namespace syngate::xdp
