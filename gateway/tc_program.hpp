// Established flows in the kernel (issue 23): the daemon's side of the tc programs
// (bpf/syngate_tc.bpf.c). Loads them (libbpf skeleton), pins their flow map under bpffs so that
// host mode's xt_bpf match and a restarted daemon find it, attaches them as clsact filters, and
// keeps the flow map in step with the flow workers (as their engines' FlowObserver: two entries
// per handed-over flow, one per direction, deleted when the flow is freed).
//
// tc filters attached through netlink outlive the process: at start the filters a dead syngate
// left (same handle and priority) are replaced, never doubled; a clean stop and
// `syngate rules down` remove them. Without the tc program in the build, start() says so and the
// daemon runs as before (every segment through NFQUEUE).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/flow_table.hpp"

namespace syngate::tc {

// The filters' identity on every interface (one syngate per network namespace owns them).
inline constexpr uint32_t kFilterHandle = 0x5347;
inline constexpr uint32_t kFilterPriority = 0x5347;

// Where an instance pins its maps: BPF_DIR/syngate/<instance>:netns-<inode of this network
// namespace> (BPF_DIR: gateway.bpf_dir; dots in the instance name become ':', bpffs refuses them).
std::string pin_dir(const std::string& instance, const std::string& bpf_dir = "/sys/fs/bpf");
// The flow map's size for `max_flows` flows (two entries each): the tc programs' and, in `rules up`,
// the OUTPUT match's (tc_match.hpp), which must agree to share the pinned map.
uint32_t flow_map_entries(uint32_t max_flows) noexcept;

// Counter names, in the program's order (tc_abi.h, enum sg_tc_counter).
inline constexpr std::array<const char*, SG_TC_COUNTER_COUNT> kCounterNames = {"translated", "punted",
                                                                               "already_marked", "miss"};
using Counters = std::array<uint64_t, SG_TC_COUNTER_COUNT>;

// The two map entries of a handed-over flow: the client's segments keyed client -> server, the
// server's keyed server -> client. Pure (unit-tested).
struct FlowEntries {
  sg_tc_flow_key to_server_key{};
  sg_tc_flow to_server{};
  sg_tc_flow_key to_client_key{};
  sg_tc_flow to_client{};
};
FlowEntries flow_entries(const FlowTuple& client_to_server, const FlowTranslation& t, uint32_t generation);
// What the engine merges from one entry (the program's record of its direction).
KernelRecord kernel_record(const sg_tc_flow& entry) noexcept;
sg_tc_flow_key flow_key(const FlowTuple& t);

// True when this build carries the tc program.
bool available() noexcept;

class Program {
 public:
  // Loads the programs with room for `max_flows` flows (two entries each) and pins the flow map in
  // `pin_dir` (created; "" pins nothing), reusing a compatible map pinned there by an earlier
  // run. Throws std::runtime_error with the reason.
  Program(uint32_t max_flows, const std::string& pin_dir);
  ~Program();  // closes its fds; attached filters stay until detach_all()
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  // Attaches ingress (and egress when `egress`) on the interface, replacing what an earlier
  // syngate left under the same handle and priority. False, with *why, when it cannot.
  bool attach(int ifindex, bool egress, std::string* why);
  // Removes the filters this program attached.
  void detach_all() noexcept;
  std::vector<int> attached() const;

  // Map edits, thread-safe (single syscalls).
  bool write_flow(const FlowTuple& client_to_server, const FlowTranslation& t, uint32_t generation) noexcept;
  // Both entries of a flow; false when either is missing.
  bool read_flow(const FlowTuple& client_to_server, sg_tc_flow& to_server, sg_tc_flow& to_client) const noexcept;
  void delete_flow(const FlowTuple& client_to_server) noexcept;
  // Deletes every entry (at start: the flow workers hand their established flows over again).
  uint64_t clear_flows() noexcept;
  uint64_t flow_entries_count() const noexcept;
  Counters counters() const;
  // The flow map (host mode's OUTPUT match must look at this one: tc_match.hpp).
  int flows_map_fd() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Removes syngate's filters (kFilterHandle/kFilterPriority, ingress and egress) from every
// interface of the namespace and the pins of `pin_dir` (when not empty). For `rules down`, and
// for a start with the kernel path off. Returns what it removed, for the log.
std::vector<std::string> remove_everywhere(const std::string& pin_dir) noexcept;

// The daemon's use of the programs.
class KernelPath : public FlowObserver, public KernelFlowState {
 public:
  // nullptr, having logged why, when the kernel path is off or cannot load or attach anywhere;
  // the daemon then runs as before.
  static std::unique_ptr<KernelPath> start(const gw::GatewayConfig& config, uint32_t max_flows);
  ~KernelPath() override;
  // Off every interface, pins removed (a clean stop).
  void stop() noexcept;

  void flow_created(const FlowTuple&) noexcept override {}
  void flow_freed(const FlowTuple& t) noexcept override;
  void flow_established(const FlowTuple& t, const FlowTranslation& x) noexcept override;
  bool read(const FlowTuple& client_to_server, KernelFlowView& out) noexcept override;

  // syngate_tc_* metrics in the Prometheus text format.
  std::string render_metrics() const;
  const Program& program() const noexcept { return *program_; }

 private:
  KernelPath(std::unique_ptr<Program> p, std::string pins) : program_(std::move(p)), pin_dir_(std::move(pins)) {}
  std::unique_ptr<Program> program_;
  std::string pin_dir_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> handed_over_{0};
  std::atomic<uint64_t> write_failures_{0};
};

// Hands every flow event to several observers (the XDP fast path and the kernel path), in order.
class FlowObservers final : public FlowObserver {
 public:
  void add(FlowObserver* o) {
    if (o) observers_.push_back(o);
  }
  bool empty() const noexcept { return observers_.empty(); }
  FlowObserver* single() const noexcept { return observers_.size() == 1 ? observers_[0] : nullptr; }
  void flow_created(const FlowTuple& t) noexcept override {
    for (FlowObserver* o : observers_) o->flow_created(t);
  }
  void flow_freed(const FlowTuple& t) noexcept override {
    for (FlowObserver* o : observers_) o->flow_freed(t);
  }
  void flow_established(const FlowTuple& t, const FlowTranslation& x) noexcept override {
    for (FlowObserver* o : observers_) o->flow_established(t, x);
  }

 private:
  std::vector<FlowObserver*> observers_;
};

}  // namespace syngate::tc
