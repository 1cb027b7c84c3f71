// The daemon's use of the XDP program (xdp_program.hpp): loads it, fills its maps from the
// configuration, attaches it where the interface rule (interfaces.hpp) or the mode says, keeps
// its keys current and its flow map in step with the flow workers (as their engines'
// FlowObserver), and renders its metrics (xdp_metrics.cpp). See bpf/syngate_xdp.bpf.c for what
// the program does.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config.hpp"
#include "interfaces.hpp"
#include "syngate/cookie.hpp"
#include "syngate/engine.hpp"
#include "xdp_program.hpp"

namespace syngate::xdp {

// The engine's announced values and policy; the per-prefix budget split over `cpus` CPUs (each
// holds its share, rounded up, as each NFQUEUE worker does).
Settings settings_from(const EngineConfig& engine, bool drop_no_flow, uint32_t cpus);

class FastPath : public FlowObserver {
 public:
  // Returns nullptr, having logged why, when mode is Off or the program could not be attached
  // anywhere it is needed; the daemon then runs as an NFQUEUE gateway only. `interfaces` empty:
  // where gw::plan_interfaces() says (logged with its reasons), else exactly those listed.
  static std::unique_ptr<FastPath> start(gw::XdpMode mode, std::vector<std::string> interfaces,
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
  // What the program promises each service's clients follows what the flow workers learned of
  // its backend (BackendFacts, sg_promise_sack): rewrites the service entries whose flags changed
  // or expired. Every tick; a failed write keeps the old flags and is retried next tick.
  void sync_backend_facts(const BackendFacts& facts, uint32_t now_ms) noexcept;
  // The tc programs open flows from cookie ACKs (gateway.tc_open_flows): the flows of their flow
  // map and of their handshake records pass as the engine's do, from before the engine hears of
  // them.
  bool share_kernel_flows(int tc_flow_map_fd, int tc_handshakes_map_fd) noexcept;
  // Detaches from every interface (the program stays loaded for the flow workers' last calls).
  void detach() noexcept;
  void flow_created(const FlowTuple& t) noexcept override;
  void flow_freed(const FlowTuple& t, uint32_t generation) noexcept override;
  // The flows created and freed since the last call into the program's flow map, a batch at a
  // time (Program::write_flows): each flow worker's turn, before its packets leave.
  void write_flows() noexcept;
  // syngate_xdp_* metrics in the Prometheus text format.
  std::string render_metrics() const;
  // The metrics when there is no fast path: none.
  static std::string render_disabled();
  const Program& program() const noexcept { return *program_; }
  // Interfaces the program is attached to now (the health check asks, from the main thread).
  size_t attached_interfaces() const { return program_->attachments().size(); }

 private:
  explicit FastPath(std::unique_ptr<Program> p) : program_(std::move(p)) {}
  gw::InterfacePlan plan();
  // Attaches and detaches until the program is where `plan` says; logs what it changed.
  void apply(const gw::InterfacePlan& plan);
  std::unique_ptr<Program> program_;
  gw::XdpMode mode_ = gw::XdpMode::Auto;
  std::vector<std::string> listed_;  // [xdp] interfaces: wins over the rule
  gw::Mode gateway_mode_ = gw::Mode::Both;
  std::unique_ptr<gw::LinkWatcher> watcher_;
  std::atomic<bool> detached_{false};  // detach() was called: the rule no longer re-attaches
  gw::InterfacePlan applied_;
  bool had_default_ = false;  // a default route was seen: its absence is an uplink down
  std::vector<gw::LinkFact> links_;  // as last read, to say why an interface was left
  std::vector<std::pair<int, std::string>> attach_failures_;  // logged once per interface and reason
  std::array<uint8_t, 16> budget_key_{};
  std::vector<Service> services_;  // what the program protects
  std::vector<uint8_t> service_flags_;  // as written for services_ (SG_SERVICE_*)
  std::atomic<uint64_t> flow_insert_failures_{0};
};

}  // namespace syngate::xdp
