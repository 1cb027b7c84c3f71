// The XDP fast path's control plane: loads the program (libbpf skeleton), fills its maps (keys,
// services, settings, flows), attaches it to interfaces through BPF links (so it goes away with
// the process) and reads its per-CPU counters. See bpf/syngate_xdp.bpf.c for what it does.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "interfaces.hpp"
#include "syngate/cookie.hpp"
#include "syngate/engine.hpp"
#include "syngate/syn_decision.hpp"

namespace syngate::xdp {

// Which XDP hook an interface gets. Auto: native on real NICs, generic (skb) on veth, since a
// veth delivers natively XDP_TX'd frames only when its peer runs an XDP program too.
enum class AttachMode : uint8_t { Auto, Native, Generic, Off };
std::string_view to_string(AttachMode m) noexcept;

// The SYN-ACK's announced values (as the engine's) and the program's behaviour switches.
struct Settings {
  uint16_t synack_window = 4096;
  uint16_t mss_v4 = 1460;
  uint16_t mss_v6 = 1440;
  uint8_t wscale = 7;
  bool announce_ecn = false;
  // Drop non-SYN packets with no flow and no valid cookie: only when the flow map is kept in step
  // with the engine's flow tables (every worker reports its flows).
  bool drop_no_flow = false;
  // 0: the program reads the monotonic clock; else it acts as if now were this (tests).
  uint64_t fixed_now_ns = 0;
  // The source policy (set_prefixes holds the prefixes): whether any prefix is loaded, whether
  // some is an allow entry, and the backscatter budget each CPU enforces (0 = none).
  bool has_prefixes = false;
  bool allow_list = false;
  uint32_t synack_limit_per_cpu = 0;
  uint32_t synack_limit_per_address = 0;  // unanswered, per proven source: shared by all CPUs
  std::array<uint8_t, 16> budget_key{};
};
// The engine's announced values and policy; the per-prefix budget split over `cpus` CPUs (each
// holds its share, rounded up, as each NFQUEUE worker does).
Settings settings_from(const EngineConfig& engine, bool drop_no_flow, uint32_t cpus);

// Counter names, in the program's counter order (include/syngate/bpf/xdp_abi.h), for metrics.
inline constexpr std::array<std::string_view, 11> kCounterNames = {
    "syn_answered",  "cookie_valid", "cookie_invalid",   "flow_passed",  "no_flow",   "invalid_flags",
    "malformed",     "passed_unhandled", "passed_other", "tx_error",     "syn_refused"};
using Counters = std::array<uint64_t, kCounterNames.size()>;
// Drops by the SYN decision's reason (SynDropReason order).
using ReasonCounters = std::array<uint64_t, static_cast<size_t>(SynDropReason::Count_)>;

struct Attachment {
  std::string interface;
  int ifindex = 0;
  AttachMode mode = AttachMode::Off;  // Native or Generic once attached
  std::string driver;
};

// True when this build carries the XDP program.
bool available() noexcept;

class Program {
 public:
  // Loads the program with room for `max_flows` flows in its flow map. Throws std::runtime_error
  // with the reason (no BPF support, not permitted, verifier refusal with its log tail).
  explicit Program(uint32_t max_flows);
  ~Program();  // detaches everywhere, unloads
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  // Settings, then keys and services, then `ready`: before it the program passes everything.
  void configure(const Settings& s, bool ready);
  // New keys: written into the slot not in use, then the slot index flips, so the program never
  // reads a half-written key.
  void set_secrets(const CookieSecrets& secrets, uint32_t max_age);
  // Replaces the protected services.
  void set_services(const std::vector<Service>& services);
  // Replaces the policy's allow/deny prefixes (new ones in first, then stale ones out).
  void set_prefixes(const PrefixSet& prefixes);
  // Forgets every source that proved itself (each then proves itself again with its next cookie
  // ACK; until then its prefix's budget applies).
  void forget_proven_sources();
  // The engine's flows (client -> server). Thread-safe.
  // Every flow table that holds the flow adds it once and removes it once: the key stays while
  // any table holds the flow (see xdp.cpp).
  bool add_flow(const FlowTuple& t) noexcept;
  void remove_flow(const FlowTuple& t) noexcept;
  // How many flow tables hold the flow (0: not in the map).
  uint32_t flow_holders(const FlowTuple& t) const noexcept;

  Counters counters() const;
  ReasonCounters reasons() const;
  int program_fd() const noexcept;

  // Attaches to one interface. Returns false and sets *why when it cannot (then nothing changed).
  bool attach(const std::string& interface, AttachMode mode, std::string* why);
  // Detaches from the interface of that index (also when the interface is gone).
  void detach(int ifindex) noexcept;
  void detach_all() noexcept;
  std::vector<Attachment> attachments() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The daemon's use of the program: loads it, fills its maps from the configuration, attaches it
// where the mode says, keeps its keys current and its flow map in step with the flow workers
// (as their engines' FlowObserver), and renders its metrics.
class FastPath : public FlowObserver {
 public:
  // Returns nullptr, having logged why, when mode is Off or the program could not be attached
  // anywhere it is needed; the daemon then runs as an NFQUEUE gateway only. `interfaces` empty:
  // where gw::plan_interfaces() says (logged with its reasons), else exactly those listed.
  static std::unique_ptr<FastPath> start(AttachMode mode, std::vector<std::string> interfaces,
                                         gw::Mode gateway_mode, const EngineConfig& engine,
                                         const CookieSecrets& secrets, uint32_t cookie_max_age,
                                         uint32_t max_flows);
  // Re-applies the interface rule when rtnetlink announced a link or route change since the last
  // call: attaches where it is now needed, detaches where it no longer is (logged). From the
  // daemon's tick.
  void follow_interfaces() noexcept;
  // Keys changed (rotation, reload): published through the program's second key slot.
  void set_secrets(const CookieSecrets& secrets, uint32_t cookie_max_age);
  // The policy or the services changed (reload): prefixes, allow list, budget; services removed
  // leave the program (added ones join at the next start).
  void set_policy(const EngineConfig& engine);
  // Detaches from every interface (the program stays loaded for the flow workers' last calls).
  void detach() noexcept;
  void flow_created(const FlowTuple& t) noexcept override;
  void flow_freed(const FlowTuple& t) noexcept override;
  // syngate_xdp_* metrics in the Prometheus text format.
  std::string render_metrics() const;
  // The metrics when there is no fast path: none.
  static std::string render_disabled();
  const Program& program() const noexcept { return *program_; }

 private:
  explicit FastPath(std::unique_ptr<Program> p) : program_(std::move(p)) {}
  gw::InterfacePlan plan();
  // Attaches and detaches until the program is where `plan` says; logs what it changed.
  void apply(const gw::InterfacePlan& plan);
  std::unique_ptr<Program> program_;
  AttachMode mode_ = AttachMode::Auto;
  std::vector<std::string> listed_;  // [xdp] interfaces: wins over the rule
  gw::Mode gateway_mode_ = gw::Mode::Both;
  std::unique_ptr<gw::LinkWatcher> watcher_;
  std::atomic<bool> detached_{false};  // detach() was called: the rule no longer re-attaches
  gw::InterfacePlan applied_;
  bool had_default_ = false;
  std::vector<gw::LinkFact> links_;  // as last read, to say why an interface was left  // a default route was seen: its absence is an uplink down
  std::vector<std::pair<int, std::string>> attach_failures_;  // logged once per interface and reason
  std::array<uint8_t, 16> budget_key_{};
  std::vector<Service> services_;  // what the program protects
  std::atomic<uint64_t> flow_insert_failures_{0};
};

// Every interface of the namespace that is up and not loopback (when rtnetlink cannot be read).
std::vector<std::string> default_interfaces();
// The kernel driver of an interface (ethtool), "" when unknown.
std::string interface_driver(const std::string& interface);

}  // namespace syngate::xdp
