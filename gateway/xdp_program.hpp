// The XDP program's loader: loads bpf/syngate_xdp.bpf.c (libbpf skeleton), fills its maps (keys,
// services, settings, prefixes, flows), attaches it to interfaces through BPF links (so it goes
// away with the process) and reads its per-CPU counters. The maps' layout is
// include/syngate/bpf/xdp_abi.h; what the daemon does with the program is fast_path.hpp.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "syngate/bpf/xdp_abi.h"
#include "syngate/cookie.hpp"
#include "syngate/engine.hpp"
#include "syngate/syn_decision.hpp"

namespace syngate::xdp {

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

// Outcome labels, indexed by the program's counters (xdp_abi.h: SG_XDP_OUTCOMES), for metrics.
inline constexpr std::array<std::string_view, SG_XDP_COUNTER_COUNT> kCounterNames = {
#define SG_XDP_OUTCOME_LABEL_(e, label, reason) label,
    SG_XDP_OUTCOMES(SG_XDP_OUTCOME_LABEL_)
#undef SG_XDP_OUTCOME_LABEL_
};
using Counters = std::array<uint64_t, SG_XDP_COUNTER_COUNT>;
// Drops by reason (drop_reasons.h: the program counts the SYN decision's reasons).
using ReasonCounters = std::array<uint64_t, kDropReasonCount>;

// Which hook an interface gets: the configuration's [xdp] mode (gw::XdpMode). Auto: native XDP
// where the driver has it (not veth: a veth delivers natively XDP_TX'd frames only when its peer
// runs an XDP program too), else the tc ingress hook, generic XDP last.
using AttachMode = gw::XdpMode;

struct Attachment {
  std::string interface;
  int ifindex = 0;
  AttachMode mode = AttachMode::Off;  // Native, Generic or Tc once attached
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
  // A protected service's SG_SERVICE_* flags (cookie_spec.h). False when it is not protected
  // here or the map refused the write.
  bool set_service_flags(const Service& service, uint8_t flags) noexcept;
  // The tc programs' flow map and handshake records (tc_abi.h), whose flows pass as the engine's
  // do; -1 takes each away.
  bool set_kernel_flows(int flows_map_fd, int handshakes_map_fd) noexcept;
  // Replaces the policy's allow/deny prefixes (new ones in first, then stale ones out).
  void set_prefixes(const PrefixSet& prefixes);
  // Forgets every source that proved itself (each then proves itself again with its next cookie
  // ACK; until then its prefix's budget applies).
  void forget_proven_sources();
  // The engine's flows (client -> server). Thread-safe.
  // Every flow table that holds the flow adds it once and removes it once: the key stays while
  // any table holds the flow (see xdp_program.cpp). Both only note the change: write_flows puts
  // what changed since its last call into the map, a few system calls for any number of flows
  // (the flow workers call it before their turn's packets leave: Worker::TurnHooks).
  void add_flow(const FlowTuple& t) noexcept;
  void remove_flow(const FlowTuple& t) noexcept;
  // Returns how many flows the map could not take (full, or out of memory): their packets miss
  // XDP's flow check and go the cookie way, and are dropped there but for the first.
  uint64_t write_flows() noexcept;
  // How many flow tables hold the flow, as written (write_flows; 0: not in the map).
  uint32_t flow_holders(const FlowTuple& t) const noexcept;
  // The keys in the flow map: a walk of it (a system call per batch), a scrape's cost.
  uint64_t flow_keys_count() const noexcept;

  Counters counters() const;
  ReasonCounters reasons() const;
  int program_fd() const noexcept;     // the XDP entry
  int tc_program_fd() const noexcept;  // the same decisions at tc ingress (mode tc)

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

}  // namespace syngate::xdp
