// The daemon's workers: one per NFQUEUE queue, each on its own thread. A SynWorker answers SYNs
// statelessly (SynGuard + CookieJar, no flow table); a FlowWorker owns an Engine and its flow
// table. What both do with a batch (verdicts and their counters, the fail-mode verdict when
// handling throws, picking up new secrets and policy, publishing counters for the metrics
// thread) is Worker's. Workers see packets only through PacketQueue and BatchSender, so the
// per-packet loop runs in unit tests without root; thread setup (name, nice, CPU) is the
// daemon's.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "flow_state.hpp"
#include "metrics.hpp"
#include "packet_io.hpp"
#include "shared_state.hpp"
#include "syngate/cookie.hpp"
#include "syngate/engine.hpp"
#include "syngate/syn_decision.hpp"

namespace syngate::gw {

// The clocks a worker reads after each wait for packets: the daemon's CLOCK_TAI for cookies,
// CLOCK_MONOTONIC for timers (EngineClock says why).
using WorkerClock = std::function<EngineClock()>;

struct WorkerSetup {
  unsigned id = 0;
  uint16_t queue = 0;
  // The worker's engine settings: hash keys and budget share are its own; services and policy
  // follow SharedPolicy once it moves.
  EngineConfig engine;
  uint32_t cookie_max_age = 1;
  bool fail_open = false;  // the verdict for a packet whose handling threw: accept (else drop)
  uint64_t advance_interval_ns = 100000000;  // flow workers: how often the engine's timers run
  // Set on the skb->mark of every packet the worker rewrites (the packet's other bits kept):
  // SG_TC_MARK with the kernel path on, so that the rules and tc egress leave it alone. 0: none.
  uint32_t verdict_mark_bits = 0;
};

class Worker {
 public:
  virtual ~Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // One turn of the worker's loop: waits for a batch (not at all when `draining`), picks up new
  // secrets or policy, hands every packet its verdict, then does what is due (timers,
  // publishing counters). Returns how many packets the batch held: a draining worker whose
  // batch came back empty is done.
  size_t turn(bool draining);

  // Copies the counters into the snapshot the metrics thread reads (turn() does it every
  // 100 ms; call it once more after the last turn).
  void publish();

  WorkerSnapshot snapshot() const;
  // What a data path beside the engine follows of the worker's turns, on the worker's thread (the
  // kernel path, tc_program.hpp: it publishes the hand-overs whose packets are sent, and knows
  // when no segment queued before a hand-over can still come). Set before the first turn.
  struct TurnHooks {
    std::function<void(bool took_everything)> received;  // after each receive
    std::function<void()> flushed;                       // after every flush of verdicts and packets
    std::function<void()> done;                          // at the end of each turn
    // Before every flush of verdicts or packets, and once more after the turn's timers: what the
    // flows created and freed meanwhile change beside the engine (the XDP flow keys,
    // xdp::Program::write_flows), in place before the packets that follow from them leave.
    std::function<void()> before_send;
  };
  void set_turn_hooks(TurnHooks hooks) { hooks_ = std::move(hooks); }
  // Removed services that still have flows on this worker (only a flow worker has any).
  std::vector<Service> draining_services() const;

  unsigned id() const noexcept { return setup_.id; }
  uint16_t queue() const noexcept { return setup_.queue; }
  bool syn_only() const noexcept { return syn_only_; }
  // Moves once per turn, also when idle (a turn waits at most the receive timeout): the watchdog
  // is fed only while every worker's heartbeat moves.
  uint64_t heartbeat() const noexcept { return heartbeat_.load(std::memory_order_relaxed); }

 protected:
  Worker(bool syn_only, WorkerSetup setup, PacketQueue& queue, BatchSender& sender, SharedSecrets& secrets,
         SharedPolicy& policy, WorkerClock clock);

  // The kind's answer to one whole packet; may throw (the packet then gets the fail-mode verdict).
  virtual Decision decide(const QueuedPacket& p, const EngineClock& now) = 0;
  virtual void count_truncated() {}
  // Before the packets of a batch are decided, with all of them.
  virtual void before_batch(const std::vector<QueuedPacket>& /*batch*/, const EngineClock& /*now*/) {}
  // After each packet's verdict was given (not yet flushed).
  virtual void after_packet() {}
  // Once, at the start of the first turn.
  virtual void start(uint64_t /*now*/) {}
  // After the batch, every turn, with the batch's clock (both of them: the engine's timers run on
  // one and what it learns of backends and supplies as TSvals on the other).
  virtual void periodic(const EngineClock& /*now*/) {}
  virtual void use_cookies() {}
  // New policy and services, before they replace setup_.engine's.
  virtual void use_policy(const std::shared_ptr<const SourcePolicy>& policy, const std::vector<Service>& services) = 0;
  virtual EngineCounters counters() const = 0;

  void set_draining(std::vector<Service> services);
  void set_flow_table_size(uint64_t bytes, uint64_t capacity);
  void flush_verdicts_then_packets();
  // The turn's own packets (no verdicts), after the before_send hook.
  void send_packets();

  WorkerSetup setup_;
  PacketQueue& queue_;
  BatchSender& sender_;
  CookieJar jar_;
  IntakeCounters intake_{};

 private:
  void pick_up_shared_state();
  void handle(const QueuedPacket& p, const EngineClock& now);

  const bool syn_only_;
  SharedSecrets& secrets_;
  SharedPolicy& policy_;
  WorkerClock clock_;
  uint64_t seen_secrets_generation_;
  uint64_t seen_policy_generation_;
  ReceiveStats rx_{};
  bool started_ = false;
  uint64_t last_publish_ = 0;
  std::atomic<uint64_t> heartbeat_{0};
  TurnHooks hooks_;

  mutable std::mutex snapshot_mutex_;
  WorkerSnapshot snapshot_;
  std::vector<Service> draining_;  // under snapshot_mutex_
};

// Answers SYNs with cookies and holds no flows: whatever the SYN decision does not answer, drop
// or pass has no flow to belong to here, so it is dropped too (the rules send only SYNs to these
// queues).
class SynWorker final : public Worker {
 public:
  SynWorker(WorkerSetup setup, PacketQueue& queue, BatchSender& sender, SharedSecrets& secrets,
            SharedPolicy& policy, WorkerClock clock);

 private:
  Decision decide(const QueuedPacket& p, const EngineClock& now) override;
  void count_truncated() override { ++counters_.packets; }
  void use_policy(const std::shared_ptr<const SourcePolicy>& policy, const std::vector<Service>& services) override;
  EngineCounters counters() const override { return counters_; }

  SynGuard guard_;
  EngineCounters counters_{};
};

// Owns an Engine (in a mapped table file when the flows are to outlive the process) and runs its
// timers. Packets it emits leave after the verdicts of the packets before them.
class FlowWorker final : public Worker {
 public:
  // `table_file` null: the flow table lives on the heap. Else the engine takes over the flows the
  // file holds from this boot (see engine().restore_report()).
  FlowWorker(WorkerSetup setup, PacketQueue& queue, BatchSender& sender, SharedSecrets& secrets,
             SharedPolicy& policy, WorkerClock clock, std::unique_ptr<MappedTable> table_file = nullptr,
             uint64_t boot_id = 0);

  // For setting up before the first turn (imports, the flow observer); not thread-safe after.
  Engine& engine() noexcept { return *engine_; }

 private:
  Decision decide(const QueuedPacket& p, const EngineClock& now) override;
  void before_batch(const std::vector<QueuedPacket>& batch, const EngineClock& now) override;
  void after_packet() override;
  void start(uint64_t now) override;
  void periodic(const EngineClock& clock) override;
  void use_cookies() override;
  void use_policy(const std::shared_ptr<const SourcePolicy>& policy, const std::vector<Service>& services) override;
  EngineCounters counters() const override { return engine_->counters(); }

  std::unique_ptr<MappedTable> table_file_;  // before engine_: the engine's flows live in it
  std::unique_ptr<Engine> engine_;
  uint64_t last_advance_ = 0;
  uint64_t last_prune_ = 0;
  std::vector<std::span<uint8_t>> batch_packets_;  // before_batch's, kept to reuse its memory
  bool reports_taken_ = false;  // this turn's before_batch took the kernel side's reports
};

}  // namespace syngate::gw
