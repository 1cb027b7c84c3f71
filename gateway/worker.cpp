#include "worker.hpp"

#include <spdlog/spdlog.h>

#include <utility>

namespace syngate::gw {

namespace {
constexpr uint64_t kPublishIntervalNs = 100000000ull;
// Forgetting drained services walks the whole flow table: every few seconds, not every turn.
constexpr uint64_t kPruneIntervalNs = 5000000000ull;
}  // namespace

Worker::Worker(bool syn_only, WorkerSetup setup, PacketQueue& queue, BatchSender& sender, SharedSecrets& secrets,
               SharedPolicy& policy, WorkerClock clock)
    : setup_(std::move(setup)),
      queue_(queue),
      sender_(sender),
      jar_(secrets.get(), setup_.cookie_max_age),
      syn_only_(syn_only),
      secrets_(secrets),
      policy_(policy),
      clock_(std::move(clock)),
      // The setup already carries the policy in force and the jar the secrets in force.
      seen_secrets_generation_(secrets.generation.load()),
      seen_policy_generation_(policy.generation.load()) {
  snapshot_.id = setup_.id;
  snapshot_.syn_only = syn_only;
  snapshot_.queue = setup_.queue;
}

size_t Worker::turn(bool draining) {
  heartbeat_.fetch_add(1, std::memory_order_relaxed);
  if (!started_) {
    started_ = true;
    start(clock_().timer_ns);
  }
  const std::vector<QueuedPacket>& batch = queue_.receive(draining, rx_);
  // Checked after the wait, not before: a batch that arrives after new secrets were published
  // must be handled with them, or SYN and flow workers would disagree on the key for up to one
  // receive timeout. The clock is read after the wait for the same reason.
  pick_up_shared_state();
  const EngineClock clock = clock_();
  const uint64_t now = clock.timer_ns;
  const size_t packets = batch.size();
  if (hooks_.received) hooks_.received(packets == 0 || queue_.took_everything());
  if (packets != 0) {
    ++intake_.batches;
    before_batch(batch, clock);
    for (const QueuedPacket& p : batch) {
      handle(p, clock);
      after_packet();
    }
    flush_verdicts_then_packets();
  }
  if (hooks_.done) hooks_.done();
  periodic(clock);
  if (hooks_.before_send) hooks_.before_send();  // flows the timers freed, with no packet sent
  if (now - last_publish_ >= kPublishIntervalNs) {
    publish();
    last_publish_ = now;
  }
  return packets;
}

void Worker::pick_up_shared_state() {
  const uint64_t gen = secrets_.generation.load(std::memory_order_acquire);
  if (gen != seen_secrets_generation_) {
    jar_ = CookieJar(secrets_.get(), setup_.cookie_max_age);
    use_cookies();
    seen_secrets_generation_ = gen;
  }
  const uint64_t pgen = policy_.generation.load(std::memory_order_acquire);
  if (pgen != seen_policy_generation_) {
    auto [policy, services] = policy_.get();
    use_policy(policy, services);
    setup_.engine.policy = std::move(policy);
    setup_.engine.services = std::move(services);
    seen_policy_generation_ = pgen;
  }
}

void Worker::handle(const QueuedPacket& p, const EngineClock& now) {
  if (p.truncated) {
    // A partial copy must never be re-injected, and the engine cannot translate what it cannot
    // see: drop, the sender retransmits (retransmissions are not aggregated by GRO).
    ++intake_.truncated;
    ++intake_.verdict_drop;
    count_truncated();
    queue_.verdict(p.id, false);
    return;
  }
  Decision d{setup_.fail_open ? Verdict::Accept : Verdict::Drop, false};
  try {
    d = decide(p, now);
  } catch (const std::exception& e) {
    ++intake_.exceptions;
    if (intake_.exceptions < 10) spdlog::error("worker {}: packet processing threw: {}", setup_.id, e.what());
  } catch (...) {
    ++intake_.exceptions;
  }
  if (d.verdict == Verdict::NextQueue) {
    // Flow queues are numbered in a row; only a flow worker that is not the last says this.
    ++intake_.verdict_next_queue;
    queue_.verdict_to_queue(p.id, static_cast<uint16_t>(setup_.queue + 1));
  } else if (d.verdict == Verdict::Accept && d.modified) {
    ++intake_.verdict_modified;
    queue_.verdict_modified(p.id, d.length ? std::span<const uint8_t>(p.data.data(), d.length) : p.data,
                            setup_.verdict_mark_bits ? std::optional<uint32_t>(p.mark | setup_.verdict_mark_bits)
                                                     : std::nullopt);
  } else if (d.verdict == Verdict::Accept) {
    ++intake_.verdict_accept;
    queue_.verdict(p.id, true);
  } else {
    ++intake_.verdict_drop;
    queue_.verdict(p.id, false);
  }
}

void Worker::flush_verdicts_then_packets() {
  if (hooks_.before_send) hooks_.before_send();
  queue_.flush(rx_);
  sender_.flush();
  if (hooks_.flushed) hooks_.flushed();
}

void Worker::send_packets() {
  if (hooks_.before_send) hooks_.before_send();
  sender_.flush();
}

void Worker::publish() {
  std::lock_guard lock(snapshot_mutex_);
  snapshot_.engine = counters();
  intake_.netlink_enobufs = rx_.enobufs;
  intake_.netlink_errors = rx_.errors;
  intake_.emitted = sender_.sent;
  intake_.emit_errors = sender_.errors;
  intake_.emit_last_errno = sender_.last_errno;
  snapshot_.intake = intake_;
}

WorkerSnapshot Worker::snapshot() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_;
}

std::vector<Service> Worker::draining_services() const {
  std::lock_guard lock(snapshot_mutex_);
  return draining_;
}

void Worker::set_draining(std::vector<Service> services) {
  std::lock_guard lock(snapshot_mutex_);
  draining_ = std::move(services);
}

void Worker::set_flow_table_size(uint64_t bytes, uint64_t capacity) {
  std::lock_guard lock(snapshot_mutex_);
  snapshot_.flow_table_bytes = bytes;
  snapshot_.flow_table_capacity = capacity;
}

// ---- SynWorker ----------------------------------------------------------------------------------

SynWorker::SynWorker(WorkerSetup setup, PacketQueue& queue, BatchSender& sender, SharedSecrets& secrets,
                     SharedPolicy& policy, WorkerClock clock)
    : Worker(true, std::move(setup), queue, sender, secrets, policy, std::move(clock)),
      guard_(syn_guard_config(setup_.engine)) {}

Decision SynWorker::decide(const QueuedPacket& p, const EngineClock& now) {
  EngineCounters& c = counters_;
  ++c.packets;
  SynVerdict v = guard_.decide(p.data, setup_.engine.services, now.cookie_ns);
  auto drop = [&c](DropReason r) {
    ++c.drops[static_cast<size_t>(r)];
    return Decision{Verdict::Drop, false};
  };
  switch (v.action) {
    case SynAction::Pass:
      ++c.passed_through;
      return {Verdict::Accept, false};
    case SynAction::Answer:
      ++c.syn_received;
      if (answer_syn(v.parsed.packet, jar_, setup_.engine, now.cookie_ns, sender_)) ++c.cookies_sent;
      return drop(DropReason::SynAnswered);
    case SynAction::Drop:
      return drop(v.reason);
    case SynAction::ClientFlow:
    case SynAction::ServerFlow:
    case SynAction::Icmp:  // errors about flows go to the flow queues
      break;
  }
  return drop(DropReason::NoFlow);
}

void SynWorker::use_policy(const std::shared_ptr<const SourcePolicy>& policy, const std::vector<Service>&) {
  guard_.set_policy(policy);
}

// ---- FlowWorker ---------------------------------------------------------------------------------

FlowWorker::FlowWorker(WorkerSetup setup, PacketQueue& queue, BatchSender& sender, SharedSecrets& secrets,
                       SharedPolicy& policy, WorkerClock clock, std::unique_ptr<MappedTable> table_file,
                       uint64_t boot_id)
    : Worker(false, std::move(setup), queue, sender, secrets, policy, std::move(clock)),
      table_file_(std::move(table_file)) {
  engine_ = table_file_ ? std::make_unique<Engine>(setup_.engine, jar_, EngineState{table_file_->region(), boot_id})
                        : std::make_unique<Engine>(setup_.engine, jar_);
  set_flow_table_size(engine_->memory_bytes(), engine_->config().max_flows);
}

Decision FlowWorker::decide(const QueuedPacket& p, const EngineClock& now) {
  return engine_->process(p.data, now, sender_, p.checksum_ready, p.capacity);
}

// With a large table each packet's flow lookup misses the cache: started together, the misses of
// a batch overlap (Engine::prefetch).
void FlowWorker::before_batch(const std::vector<QueuedPacket>& batch, const EngineClock& now) {
  // What the tc programs reported while these waited: hand-overs first of all, whose packets are
  // the established flows'.
  engine_->take_kernel_reports(now, sender_);
  reports_taken_ = true;
  if (batch.size() < 2) return;
  batch_packets_.clear();
  for (const QueuedPacket& p : batch) batch_packets_.push_back(p.data);
  engine_->prefetch(batch_packets_);
}

// Emitted packets follow the verdicts of the packets before them, so that e.g. data the engine
// releases to a backend is not overtaken by later segments of the batch.
void FlowWorker::after_packet() {
  if (sender_.pending()) flush_verdicts_then_packets();
}

void FlowWorker::start(uint64_t now) { last_advance_ = now; }

void FlowWorker::periodic(const EngineClock& clock) {
  const uint64_t now = clock.timer_ns;
  // A turn without packets still takes the kernel side's reports: flows it opened, handed over or
  // closed while the queue was quiet are this engine's now, not at the next sweep.
  if (!reports_taken_) {
    engine_->take_kernel_reports(clock, sender_);
    send_packets();
  }
  reports_taken_ = false;
  if (now - last_prune_ >= kPruneIntervalNs) {
    engine_->prune_draining();
    set_draining(engine_->draining_services());
    last_prune_ = now;
  }
  if (now - last_advance_ >= setup_.advance_interval_ns) {
    try {
      // The whole clock: a bare number would stand for both, and the hand-overs advance takes
      // would learn backend facts stamped in timer time, which the cookie clock reads as
      // expired (a backend without SACK never learnt when its report came between batches).
      engine_->advance(clock, sender_);
    } catch (const std::exception& e) {
      ++intake_.exceptions;
      spdlog::error("worker {}: advance threw: {}", setup_.id, e.what());
    }
    send_packets();
    last_advance_ = now;
  }
}

void FlowWorker::use_cookies() { engine_->set_cookies(jar_); }

void FlowWorker::use_policy(const std::shared_ptr<const SourcePolicy>& policy,
                            const std::vector<Service>& services) {
  engine_->set_policy(policy);
  if (services != setup_.engine.services) engine_->set_services(services);
  set_draining(engine_->draining_services());
}

}  // namespace syngate::gw
