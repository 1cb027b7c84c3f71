// The daemon shell around the workers: it binds one NFQUEUE queue and one raw sender per worker
// and runs each worker on a thread of its own (named, niced and pinned here); the workers
// themselves (worker.hpp: SynWorker answers SYNs statelessly, FlowWorker owns an Engine) hold the
// per-packet loop. Besides: a metrics thread, and the main thread that waits for signals,
// reloads, rotates secrets, feeds systemd and logs the periodic summary. The daemon is a sequence
// of named steps (struct Daemon below); what a reload applies is decided in reload_plan.cpp.
#include "daemon.hpp"
#include "timer_clock.hpp"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <spdlog/spdlog.h>
#include <sstream>
#include <thread>
#include <vector>

#include "config.hpp"
#include "flow_state.hpp"
#include "iptables_exec.hpp"
#include "rules.hpp"
#include "tc_match.hpp"
#include "log_format.hpp"
#include "metrics.hpp"
#include "metrics_endpoint.hpp"
#include "notify.hpp"
#include "reload_plan.hpp"
#include "start_check.hpp"
#include "nfqueue.hpp"
#include "seeds.hpp"
#include "sender.hpp"
#include "shared_state.hpp"
#include "worker.hpp"
#include "fast_path.hpp"
#include "health.hpp"
#include "health_socket.hpp"
#include "tc_program.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/cookie.hpp"
#include "syngate/engine.hpp"
#include "syngate/packet.hpp"

namespace syngate::gw {

namespace {

// The gateway's cookie clock (time counter, SYN-ACK TSval): CLOCK_TAI. Cookies must agree between
// machines that share a secrets file (scale-out behind ECMP or anycast), so the clock must be one
// that NTP keeps in step across machines, unlike CLOCK_MONOTONIC, which counts from each boot.
// TAI, unlike CLOCK_REALTIME, does not jump at leap seconds, and the in-kernel fast path reads
// the same clock (bpf_ktime_get_tai_ns).
uint64_t clock_ns() {
  timespec ts;
  clock_gettime(CLOCK_TAI, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
// Flow timers count on the monotonic timer clock instead (timer_clock.hpp says why).
EngineClock engine_clock() { return {clock_ns(), timer_clock_ns()}; }

// The cookie clock in ms, as the engine stamps what it learns of backends (BackendFacts).
uint32_t cookie_clock_ms() { return static_cast<uint32_t>(clock_ns() / 1000000); }

// A secrets file whose key claims to start in the future (written under another clock: an older
// syngate counted from the boot, or a machine whose clock ran ahead) is taken to start now.
CookieSecrets sane(CookieSecrets s, uint32_t counter_now) {
  if (s.current_since > counter_now) s.current_since = counter_now;
  return s;
}

// A worker and what the daemon gives it: its queue, its raw sockets, a thread and where it runs.
struct WorkerThread {
  std::unique_ptr<NfQueue> nfq;
  std::unique_ptr<RawSender> sender;
  std::unique_ptr<Worker> worker;  // after nfq and sender: destroyed before them
  FlowWorker* flow = nullptr;      // the same worker when it is a flow worker
  int nice = 0;
  int cpu = -1;
  std::thread thread;
};

using Clock = std::chrono::steady_clock;

void set_log_level(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

uint64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// The gateway process. run_daemon (at the end of this file) takes its steps in order:
//   startup: read_config, block_signals, publish_secrets, check_room, open_flow_state,
//            share_proven_sources, start_workers (queues, senders, tables; no thread yet),
//            start_fast_path, start_kernel_path, serve_metrics, run_workers, serve_health, log_started,
//            begin_ticks;
//   tick(), once a second (or half the watchdog period) until it returns false: notify_systemd,
//            sync_draining_services, wait_for_signal, reload, rotate_cookie_secrets,
//            check_rules, sync_fast_path, log_stats;
//   shutdown() (serve_health's socket goes first: a stopping gateway is withdrawn at once).
// A further data path is one more start step beside start_fast_path and start_kernel_path (before
// run_workers, so that every flow reaches it), its publishing beside sync_fast_path in tick(), and
// its detach in shutdown() beside theirs, before the workers stop.
struct Daemon {
  GatewayConfig config;
  std::string config_path;
  SharedSecrets secrets;
  SharedPolicy policy;
  std::atomic<bool> stop{false};
  std::unique_ptr<StateDir> state;  // this instance's directory, locked while the process lives
  std::vector<std::unique_ptr<WorkerThread>> workers;
  std::atomic<uint64_t> reloads{0};
  std::atomic<uint64_t> reload_failures{0};
  std::atomic<int> rules_state{-1};  // at the last check_rules: 1 in place, 0 not, -1 not checked yet
  double start_time = 0;
  std::unique_ptr<xdp::FastPath> xdp;  // null: no fast path (off, unavailable, attached nowhere)
  uint64_t xdp_secrets_generation = 0;
  uint64_t xdp_policy_generation = 0;
  std::vector<Service> services_without_sack;  // as last logged (log_backend_facts)
  bool kernel_path = false;            // on in the config and the rules agree (decide_kernel_path)
  std::unique_ptr<tc::KernelPath> tc;  // null: every segment through NFQUEUE (off, unavailable)
  tc::FlowObservers observers;         // what the flow engines tell of their flows

  // Startup only: the saved tables and what to do with them (the mapped ones are let go once the
  // workers hold theirs).
  uint64_t boot_id = 0;
  FlowStatePlan state_plan;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;

  // The health socket (serve_health) and what its thread reads: the main thread's last tick and
  // the fast path's attachments as the main thread last saw them, the workers' heartbeats.
  std::unique_ptr<HealthSocket> health;
  HeartbeatWatch heartbeat_watch;  // the health socket's thread only
  std::atomic<int64_t> last_tick_ns{0};
  std::atomic<int> fast_path_interfaces{-1};
  bool fast_path_required = false;  // set before the socket's thread starts: a reload rewrites config
  // The flow workers' policy (schedule_flow_workers): SCHED_FIFO now; the kernel refused it once.
  bool flow_workers_realtime = false;
  bool realtime_refused = false;

  // The main thread's state from one tick to the next.
  sigset_t signals;
  int exit_code = 0;  // 0, or kRestartInPlace once a reload asks for a new process
  SystemdNotifier notifier;
  std::chrono::microseconds watchdog_period{0};
  bool ready_sent = false;
  bool rules_warned = false;
  ProgressCheck progress;
  Clock::time_point last_watchdog_check;
  std::vector<size_t> last_stuck;
  GatewaySnapshot status_prev;  // what the last STATUS line counted from
  Clock::time_point status_time;
  GatewaySnapshot stats_prev;  // what the last periodic summary counted from
  Clock::time_point stats_time;
  Clock::time_point last_rotation;
  Clock::time_point last_rules_check;
  // Removed services whose flows are still draining, as last written for `syngate rules up`.
  std::vector<ServiceEntry> written_draining;

  // Startup steps. Those returning bool have logged why the gateway cannot start when false.
  bool read_config();
  void block_signals();
  bool publish_secrets();
  bool check_room();
  bool open_flow_state();
  bool share_proven_sources();
  bool start_workers();
  void add_worker(bool syn_only, uint16_t queue, int cpu);
  std::unique_ptr<FlowWorker> flow_worker_on_state(WorkerSetup setup, WorkerThread& t, uint16_t queue);
  void start_fast_path();
  void decide_kernel_path();
  void start_kernel_path();
  void serve_metrics();
  void run_workers();
  void serve_health();
  HealthSnapshot health_snapshot();
  void log_started();
  void begin_ticks();

  // One turn of the main thread; false once the gateway stops (a signal, a restart in place).
  bool tick();
  void notify_systemd();
  void feed_watchdog(Clock::time_point now);
  void sync_draining_services();
  int wait_for_signal();
  bool reload();
  void apply_reload(const GatewayConfig& next, const ReloadPlan& plan, const std::string& keys);
  void rotate_cookie_secrets(Clock::time_point now);
  void check_rules(Clock::time_point now);
  void sync_fast_path();
  void keep_kernel_opening();
  void schedule_flow_workers();
  void log_backend_facts();
  void log_stats(Clock::time_point now);

  int shutdown();

  void run_worker(WorkerThread& t);
  GatewaySnapshot snapshot();
  bool rules_in_place() const;
  std::string status_line(const GatewaySnapshot& cur, const GatewaySnapshot& before, double dt) const;
};

// ---- startup --------------------------------------------------------------------------------

bool Daemon::read_config() {
  try {
    config = load_config(config_path);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return false;
  }
  set_log_level(config.log_level);
  set_log_format(config.log_format);
  start_time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return true;
}

// Signals go to the main thread only: block them before any thread starts.
void Daemon::block_signals() {
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

// The source policy and the cookie secrets, which every worker reads.
bool Daemon::publish_secrets() {
  policy.publish(config.engine.policy, config.engine.services);
  uint32_t counter = cookie_counter(clock_ns());
  try {
    secrets.publish(sane(load_or_create_secrets(config.secret_file, counter), counter));
  } catch (const std::exception& e) {
    spdlog::critical("gateway.secret_file {}: {}", config.secret_file, e.what());
    return false;
  }
  return true;
}

bool Daemon::check_room() {
  try {
    check_table_room(config, machine_room(config.state_dir), false);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return false;
  }
  return true;
}

// Flow tables that outlive the process: which saved tables to take over, which to import.
bool Daemon::open_flow_state() {
  boot_id = current_boot_id();
  if (config.state_dir.empty()) return true;
  try {
    state = std::make_unique<StateDir>(config.state_dir, this_instance(config.instance));
    for (const auto& note : state->notes()) spdlog::warn("flow state: {}", note);
    state_plan = plan_flow_state(*state, config.flow_queue, config.flow_queues, config.engine, boot_id);
    for (const auto& note : state_plan.notes) spdlog::warn("flow state: {}", note);
  } catch (const std::exception& e) {
    spdlog::critical("gateway.state_dir: {}", e.what());
    return false;
  }
  return true;
}

// One table of proven sources for every worker: flow workers write what cookie ACKs prove, SYN
// workers read it (its own random key, like every other hash table here).
bool Daemon::share_proven_sources() {
  if (sodium_init() < 0) {
    spdlog::critical("libsodium failed to initialise (no random source)");
    return false;
  }
  HashKey key{};
  randombytes_buf(key.data(), key.size());
  config.engine.proven_sources = std::make_shared<ProvenSources>(ProvenSources::kDefaultSlots, key);
  // Likewise what the backends' SYN-ACKs teach the flow workers: the SYN workers and the XDP
  // program promise SACK by it.
  config.engine.backend_facts = std::make_shared<BackendFacts>();
  return true;
}

// Every worker with its queue, raw sender and (flow workers) table, SYN workers first; then the
// saved tables no worker took are let go.
bool Daemon::start_workers() {
  try {
    for (uint16_t i = 0; i < config.syn_queues; ++i) {
      int cpu = config.syn_cpus.empty() ? -1 : config.syn_cpus[i % config.syn_cpus.size()];
      add_worker(true, static_cast<uint16_t>(config.syn_queue + i), cpu);
    }
    for (uint16_t i = 0; i < config.flow_queues; ++i) {
      int cpu = config.flow_cpus.empty() ? -1 : config.flow_cpus[i % config.flow_cpus.size()];
      add_worker(false, static_cast<uint16_t>(config.flow_queue + i), cpu);
    }
  } catch (const std::exception& e) {
    spdlog::critical("startup failed: {}", e.what());
    return false;
  }
  for (const auto& name : state_plan.obsolete) {
    if (!remove_state_file(*state, name)) {
      spdlog::warn("flow state: cannot remove {}/{}: {}", state->path(), name, std::strerror(errno));
    }
  }
  state_plan.saved.clear();  // unmaps the old files (those replaced by a fresh table are freed now)
  return true;
}

WorkerSetup worker_setup(const GatewayConfig& cfg, bool kernel_path, unsigned id, bool syn_only, uint16_t queue) {
  WorkerSetup setup;
  setup.id = id;
  setup.queue = queue;
  setup.engine = cfg.engine;
  randomize_hash_keys(setup.engine);
  // SYN workers split the per-prefix SYN-ACK budget; a flow worker answers SYNs only when the
  // rules send it some, and then holds the whole budget.
  setup.engine.budget_share = syn_only ? cfg.syn_queues : 1;
  // ICMP errors enter at the first flow queue and move along until a worker has their flow.
  setup.engine.icmp_next_queue = !syn_only && queue + 1 < cfg.flow_queue + cfg.flow_queues;
  setup.cookie_max_age = cfg.cookie_max_age;
  setup.fail_open = cfg.fail_open;
  setup.advance_interval_ns = static_cast<uint64_t>(cfg.advance_interval_ms) * 1000000ull;
  setup.verdict_mark_bits = kernel_path ? SG_TC_MARK : 0;
  return setup;
}

QueueOptions queue_options(const GatewayConfig& cfg, bool syn_only) {
  QueueOptions qo;
  qo.maxlen = syn_only ? cfg.syn_queue_maxlen : cfg.flow_queue_maxlen;
  qo.fail_open = cfg.fail_open;
  qo.rcvbuf_bytes = cfg.rcvbuf_bytes;
  qo.sndbuf_bytes = cfg.sndbuf_bytes;
  qo.batch = cfg.batch_size;
  // A flow the tc program opens (gateway.tc_open_flows) reaches its engine only through the
  // programs' reports, read when the worker wakes: every 10 ms at least, so that the engine's
  // limits (a source's flows, the table's room) judge it within that.
  qo.recv_timeout_ms = std::min<uint32_t>(cfg.advance_interval_ms, !syn_only && cfg.tc_open_flows ? 10 : 100);
  if (syn_only) {
    // SYNs are never GSO and only their headers matter; small slots keep large batches cheap.
    qo.copy_range = 2048;
    qo.slot_bytes = 4096;
    qo.gso = false;
  }
  return qo;
}

void Daemon::add_worker(bool syn_only, uint16_t queue, int cpu) {
  auto t = std::make_unique<WorkerThread>();
  t->nice = syn_only ? config.syn_worker_nice : config.flow_worker_nice;
  t->cpu = cpu;
  WorkerSetup setup = worker_setup(config, kernel_path, static_cast<unsigned>(workers.size()), syn_only, queue);
  t->nfq = std::make_unique<NfQueue>(queue, queue_options(config, syn_only));
  // syngate's own packets (window updates, RSTs, backend SYNs and ACKs) are translated already:
  // with the kernel path on they carry SG_TC_MARK too, which tc egress leaves alone.
  t->sender = std::make_unique<RawSender>(config.mark | (kernel_path ? SG_TC_MARK : 0), config.sndbuf_bytes,
                                          config.has_v4(), config.has_v6());
  if (syn_only) {
    t->worker = std::make_unique<SynWorker>(std::move(setup), *t->nfq, *t->sender, secrets, policy, engine_clock);
  } else {
    auto w = config.state_dir.empty()
                 ? std::make_unique<FlowWorker>(std::move(setup), *t->nfq, *t->sender, secrets, policy, engine_clock)
                 : flow_worker_on_state(std::move(setup), *t, queue);
    t->flow = w.get();
    t->worker = std::move(w);
  }
  workers.push_back(std::move(t));
}

// A flow worker whose table is a file in state_dir: a saved table taken over, or a fresh one
// filled with what the plan imports from the others.
std::unique_ptr<FlowWorker> Daemon::flow_worker_on_state(WorkerSetup setup, WorkerThread& t, uint16_t queue) {
  const FlowStatePlan::Queue& plan = state_plan.queues.at(queue - config.flow_queue);
  auto table_file = std::make_unique<MappedTable>(*state, plan.name, Engine::state_bytes(setup.engine), plan.in_place);
  const std::string table_path = table_file->path();
  auto w = std::make_unique<FlowWorker>(std::move(setup), *t.nfq, *t.sender, secrets, policy, engine_clock,
                                        std::move(table_file), boot_id);
  Engine& engine = w->engine();
  const RestoreReport& r = engine.restore_report();
  if (r.attached) {
    spdlog::info("flow queue {}: took over {} flows from {} (dropped: {} torn, {} invalid)", queue, r.restored,
                 table_path, r.dropped_torn, r.dropped_invalid);
  } else if (r.reason != "no saved table") {
    spdlog::warn("flow queue {}: started with an empty table: {}", queue, r.reason);
  }
  for (const auto& name : plan.imports) {
    const std::string path = state->path() + "/" + name;
    const RestoreReport ir = engine.import_state(state_plan.saved.at(name)->region(), boot_id, engine_clock());
    if (ir.attached) {
      spdlog::info("flow queue {}: imported {} flows from {} (dropped: {} torn, {} invalid, {} no room)", queue,
                   ir.restored, path, ir.dropped_torn, ir.dropped_invalid, ir.dropped_no_room);
    } else {
      spdlog::warn("flow queue {}: nothing imported from {}: {}", queue, path, ir.reason);
    }
  }
  return w;
}

// The XDP fast path, before any worker runs, so that every flow reaches its flow map.
void Daemon::start_fast_path() {
  const uint64_t all_flows = uint64_t{config.engine.max_flows} * config.flow_queues;
  xdp = xdp::FastPath::start(config.xdp_mode, config.xdp_interfaces, config.mode, config.engine, secrets.get(),
                             config.cookie_max_age, static_cast<uint32_t>(std::min<uint64_t>(all_flows, 1u << 26)));
  xdp_secrets_generation = secrets.generation.load();
  xdp_policy_generation = policy.generation.load();
  fast_path_interfaces.store(xdp ? static_cast<int>(xdp->attached_interfaces()) : -1);
}

// Established flows in the kernel (tc), also before any worker runs: every flow restored from a
// saved table is handed over again when its engine gets the observer. The flow engines then
// tell the XDP flow map and the tc flow map of their flows through one observer.
// Before the workers: their verdicts and own packets carry SG_TC_MARK only with the kernel path
// on, and the rules in place must let such packets past the queue. Rules made with kernel_path
// "off" (an upgrade that turned it on without `syngate rules up`, a saved ruleset restored) would
// queue what tc translated and the engine would translate it again: the kernel path stays off
// for this run and the log says how to turn it on. No rules yet is fine: `rules up` with this
// config adds that rule.
void Daemon::decide_kernel_path() {
  kernel_path = config.kernel_path_on();
  if (!kernel_path) return;
  std::vector<std::string> stale;
  try {
    const Backend b = choose_backend(config.iptables);
    stale = rules_queue_translated(show_rules(b, config.chain), config.chain, b.v4, config.has_v4(), b.v6, config.has_v6());
  } catch (const std::exception& e) {
    spdlog::debug("kernel path: rules not read ({}); checked again every 2 s", e.what());
  }
  if (stale.empty()) return;
  kernel_path = false;
  std::string what;
  for (const auto& s : stale) what += (what.empty() ? "" : "; ") + s;
  spdlog::warn("kernel path off for this run: {}; run `syngate rules up` with this config, then restart", what);
}

void Daemon::start_kernel_path() {
  GatewayConfig effective = config;
  if (!kernel_path) effective.kernel_path = KernelPath::Off;  // removes what a dead syngate left
  tc = tc::KernelPath::start(effective, tc::kernel_path_max_flows(config));
  if (tc && tc->opens_flows() && xdp &&
      !xdp->share_kernel_flows(tc->program().flows_map_fd(), tc->program().handshakes_map_fd())) {
    // The fast path would drop a kernel-opened flow's packets until its engine heard of it.
    spdlog::warn("xdp: cannot read the tc flow and handshake maps ({}); the kernel path stops opening flows",
                 std::strerror(errno));
    tc->stop_opening();
  }
  if (tc && xdp) tc->set_before_withdraw([fast = xdp.get()] { fast->write_flows(); });
  observers.add(xdp.get());
  observers.add(tc.get());
  if (observers.empty()) return;
  FlowObserver* observer = observers.single() ? observers.single() : &observers;
  for (auto& w : workers) {
    if (!w->flow) continue;
    w->flow->engine().set_kernel_state(tc.get());
    Worker::TurnHooks hooks;
    xdp::FastPath* fast = xdp.get();
    tc::KernelPath* path = tc.get();
    if (path) {
      hooks.received = [path](bool all) { path->turn_received(all); };
      hooks.flushed = [path] { path->publish_pending(); };
      hooks.done = [path] { path->turn_done(); };
    }
    // A turn's flow-key writes and frees are made before the packets that follow from them leave.
    if (fast || path) {
      hooks.before_send = [fast, path] {
        if (path) path->write_releases();
        if (fast) fast->write_flows();
      };
    }
    w->flow->set_turn_hooks(std::move(hooks));
    w->flow->engine().set_flow_observer(observer);
  }
  if (xdp) xdp->write_flows();  // the restored flows' keys (set_flow_observer), before any turn
  if (!tc) return;
  // What the programs recorded while no process read the map (a kill -9, an upgrade) goes into the
  // restored flows before their timers run; then the entries no restored flow kept go.
  const EngineClock now = engine_clock();
  uint64_t merged = 0;
  for (auto& w : workers) {
    if (w->flow) merged += w->flow->engine().merge_kernel_state(now);
  }
  tc->finish_start(merged);
  // Only now: finish_start deletes every entry no restored flow claimed, and would take those of
  // flows the programs opened meanwhile (their closes then lost to the engine, which would keep
  // them as established and refuse the next connection on their address/port pairs).
  keep_kernel_opening();
}

// The endpoint never stops the gateway: an address it cannot bind is logged and retried.
void Daemon::serve_metrics() {
  if (config.metrics_port == 0) return;
  metrics_endpoint = std::make_unique<MetricsEndpoint>(config.metrics_host, config.metrics_port, [this] {
    return render_prometheus(snapshot()) + (xdp ? xdp->render_metrics() : xdp::FastPath::render_disabled()) +
           (tc ? tc->render_metrics() : std::string());
  });
}

void Daemon::run_workers() {
  for (auto& w : workers) {
    WorkerThread* wp = w.get();
    w->thread = std::thread([this, wp] { run_worker(*wp); });
  }
  schedule_flow_workers();
}

// Each new connection's handshake wakes a flow worker twice (the cookie ACK, the backend's
// SYN-ACK); under the normal scheduler each wake-up waits for the kernel thread polling the NIC on
// the same CPU to yield, which cost a connection-per-request client a quarter of its rate in the
// lab (docs/lab.md). SCHED_FIFO (gateway.flow_worker_rt_priority) runs it at once, but only while
// the fast path filters floods: with SYNs and forged ACKs in NFQUEUE, a real-time flow worker busy
// with a forged-ACK flood starved the SYN workers (new connections' p99 30-270 ms instead of
// 14-20 ms in the lab). Never the SYN workers: a flood keeps them busy. Called as the fast path's
// attachments change.
void Daemon::schedule_flow_workers() {
  const int priority = config.flow_worker_rt_priority;
  const bool filtered = xdp && xdp->attached_interfaces() > 0;
  const bool want = priority > 0 && filtered && !realtime_refused;
  if (want == flow_workers_realtime) return;
  auto set_all = [this](int policy, int prio) {
    for (auto& t : workers) {
      if (t->worker->syn_only()) continue;
      sched_param param{};
      param.sched_priority = prio;
      if (const int err = pthread_setschedparam(t->thread.native_handle(), policy, &param); err != 0) return err;
    }
    return 0;
  };
  if (const int err = want ? set_all(SCHED_FIFO, priority) : set_all(SCHED_OTHER, 0); err != 0) {
    spdlog::warn("flow workers: cannot run SCHED_FIFO at priority {} (gateway.flow_worker_rt_priority): {}; they "
                 "run at nice {} (needs CAP_SYS_NICE, and under systemd RestrictRealtime=no)",
                 priority, std::strerror(err), config.flow_worker_nice);
    realtime_refused = true;
    set_all(SCHED_OTHER, 0);  // any the kernel took before it refused one
    return;
  }
  flow_workers_realtime = want;
  if (want) {
    spdlog::info("flow workers: SCHED_FIFO at priority {} while the fast path filters floods", priority);
  } else {
    spdlog::info("flow workers: normal scheduler at nice {} (no fast path attached: floods reach the queues)",
                 config.flow_worker_nice);
  }
}

double steady_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// `syngate status --check` (health_socket.hpp), after the workers run: their heartbeats move
// from here on. Without a state_dir there is no private directory to put the socket in, so no
// check either (said once). A socket that cannot be made is logged; the data path runs on, and
// the check then fails, which withdraws the route: the safe side.
void Daemon::serve_health() {
  last_tick_ns.store(Clock::now().time_since_epoch().count());
  if (!state) {
    spdlog::warn("gateway.state_dir is empty: no health socket, `syngate status --check` cannot ask");
    return;
  }
  const std::string path = state->path() + "/" + kHealthSocketName;
  fast_path_required = config.xdp_mode != XdpMode::Auto && config.xdp_mode != XdpMode::Off;
  try {
    health = std::make_unique<HealthSocket>(
        path,
        [this] {
          std::vector<uint64_t> beats;
          for (const auto& w : workers) beats.push_back(w->worker->heartbeat());
          heartbeat_watch.observe(beats, steady_s());
        },
        [this] {
          const HealthSnapshot s = health_snapshot();
          return health_answer(s, judge_health(s));
        },
        std::vector<uid_t>{0, geteuid()});
  } catch (const std::exception& e) {
    spdlog::error("{}: `syngate status --check` will fail", e.what());
  }
}

HealthSnapshot Daemon::health_snapshot() {
  HealthSnapshot s;
  const double now = steady_s();
  s.worker_idle_s = heartbeat_watch.idle_s(now);
  s.tick_age_s = now - std::chrono::duration<double>(Clock::duration(last_tick_ns.load())).count();
  s.rules_in_place = rules_state.load();
  s.fast_path_required = fast_path_required;
  s.fast_path_interfaces = fast_path_interfaces.load();
  return s;
}

void Daemon::log_started() {
  const GatewayConfig& cfg = config;
  spdlog::info("syngate running: {} service(s), SYN queue(s) {}..{}, flow queue(s) {}..{}, fail-{}, "
               "metrics {}",
               cfg.services.size(), cfg.syn_queue, cfg.syn_queue + cfg.syn_queues - 1, cfg.flow_queue,
               cfg.flow_queue + cfg.flow_queues - 1, cfg.fail_open ? "open" : "closed",
               cfg.metrics_port ? cfg.metrics_host + ":" + std::to_string(cfg.metrics_port) : "off");
  for (const auto& w : workers) {
    if (w->flow && !w->nfq->gso_enabled()) {
      spdlog::warn("queue {}: kernel refused NFQA_CFG_F_GSO; GSO packets are segmented before queueing", w->nfq->queue());
    }
  }
}

// systemd: READY once the queues are bound (done: the workers hold them) and the rules are in
// place; STATUS every tick; WATCHDOG only while every worker makes progress.
void Daemon::begin_ticks() {
  stats_prev = snapshot();
  stats_time = Clock::now();
  last_rotation = stats_time;
  last_rules_check = stats_time - std::chrono::seconds(2);
  watchdog_period = notifier.watchdog_interval() / 2;
  last_watchdog_check = Clock::now();
  status_prev = stats_prev;
  if (state) {
    try {
      written_draining = read_draining_services(*state);
    } catch (const std::exception& e) {
      spdlog::warn("flow state: {}: replaced by an empty list", e.what());
      try {
        write_draining_services(*state, {});
      } catch (const std::exception& w) {
        spdlog::error("{}", w.what());
      }
    }
  }
  status_time = stats_time;
}

// ---- one tick -------------------------------------------------------------------------------

bool Daemon::tick() {
  if (notifier.enabled()) notify_systemd();
  if (state) sync_draining_services();
  const int sig = wait_for_signal();
  if (sig == SIGTERM || sig == SIGINT) {
    spdlog::info("signal {}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return false;
  }
  if (sig == SIGHUP && !reload()) return false;  // restarting in place
  const auto now = Clock::now();
  last_tick_ns.store(now.time_since_epoch().count());
  rotate_cookie_secrets(now);
  check_rules(now);
  log_backend_facts();
  sync_fast_path();
  log_stats(now);
  return true;
}

// Says when a service's clients stop (or start again) being promised SACK: otherwise an operator
// whose clients lose SACK would find no reason anywhere.
void Daemon::log_backend_facts() {
  const BackendFacts* facts = config.engine.backend_facts.get();
  if (!facts) return;
  const uint32_t now_ms = cookie_clock_ms();
  std::vector<Service> lacking;
  for (const Service& s : config.engine.services) {
    if (facts->service_flags(s, now_ms) & SG_SERVICE_BACKEND_LACKS_SACK) lacking.push_back(s);
  }
  for (const Service& s : lacking) {
    if (std::find(services_without_sack.begin(), services_without_sack.end(), s) != services_without_sack.end()) continue;
    spdlog::warn("backend of {}:{} answered without SACK: its clients are not promised SACK for {} minutes "
                 "(net.ipv4.tcp_sack on the backend?)",
                 s.address.to_string(), s.port, BackendFacts::kLacksSackMemoryMs / 60000);
  }
  for (const Service& s : services_without_sack) {
    if (std::find(lacking.begin(), lacking.end(), s) != lacking.end()) continue;
    spdlog::info("backend of {}:{}: its clients are promised SACK again (the next backend SYN-ACK tells)",
                 s.address.to_string(), s.port);
  }
  services_without_sack = std::move(lacking);
}

void Daemon::notify_systemd() {
  const auto t = Clock::now();
  GatewaySnapshot cur = snapshot();
  const std::string line = status_line(cur, status_prev, std::chrono::duration<double>(t - status_time).count());
  status_prev = std::move(cur);
  status_time = t;
  if (ready_sent) {
    notifier.status(line);
  } else if (rules_in_place()) {
    notifier.ready(line);
    ready_sent = true;
    spdlog::info("systemd: ready");
  } else {
    if (!rules_warned) spdlog::warn("systemd: waiting for the rules (syngate rules up) before READY");
    rules_warned = true;
    notifier.status("waiting for the iptables rules: run syngate rules up");
  }
  if (watchdog_period.count() > 0 && t - last_watchdog_check >= watchdog_period) feed_watchdog(t);
}

void Daemon::feed_watchdog(Clock::time_point now) {
  last_watchdog_check = now;
  std::vector<uint64_t> beats;
  for (const auto& w : workers) beats.push_back(w->worker->heartbeat());
  std::vector<size_t> stuck = progress.stuck(beats);
  if (stuck.empty()) {
    notifier.watchdog();
  } else if (stuck != last_stuck) {
    std::string names;
    for (size_t i : stuck) names += (names.empty() ? "" : ", ") + std::to_string(workers[i]->worker->id());
    spdlog::error("worker(s) {} made no progress for {} ms: withholding the systemd watchdog", names,
                  std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_period).count());
  }
  last_stuck = std::move(stuck);
}

// The services the workers still drain, written to state_dir when the list changes, for
// `syngate rules up` to keep their flow traffic queued.
void Daemon::sync_draining_services() {
  std::vector<ServiceEntry> draining;
  for (const auto& w : workers) {
    for (const Service& sv : w->worker->draining_services()) {
      ServiceEntry e{sv.address.to_string(), !sv.address.is_v4(), sv.port};
      if (std::find(draining.begin(), draining.end(), e) == draining.end()) draining.push_back(e);
    }
  }
  if (draining == written_draining) return;
  try {
    write_draining_services(*state, draining);
    written_draining = std::move(draining);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
}

// A second, or half the watchdog period when that is shorter; -1 when no signal came.
int Daemon::wait_for_signal() {
  timespec timeout{1, 0};
  if (watchdog_period.count() > 0 && watchdog_period < std::chrono::seconds(1)) {
    timeout = {0, static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(watchdog_period).count())};
  }
  return sigtimedwait(&signals, nullptr, &timeout);
}

// SIGHUP. All or nothing: everything the new configuration needs is read and checked first; only
// then is it applied, in steps that cannot fail. A refused reload leaves nothing changed. False
// when the reload restarts in place (the ticks end).
bool Daemon::reload() {
  try {
    const GatewayConfig next = load_config(config_path);
    const ReloadPlan plan = plan_reload(config, next);
    std::string keys;
    for (const auto& key : plan.restart_keys) keys += (keys.empty() ? "" : ", ") + key;
    if (plan.restart_in_place) {
      // What only a new process can apply (queues, table sizes, buffers): stop like for SIGTERM,
      // then start again in this same process (exec). The flow tables in state_dir carry every
      // connection over, resized or re-sharded on the way in. A configuration the new process
      // could not start on is refused here, while this one still runs.
      check_restart(next, plan);
      spdlog::info("reload: {} changed: restarting in place to apply it; proxied flows are kept", keys);
      ++reloads;
      exit_code = kRestartInPlace;
      return false;
    }
    apply_reload(next, plan, keys);
  } catch (const std::exception& e) {
    ++reload_failures;
    spdlog::error("reload failed, keeping the running configuration: {}", e.what());
  }
  return true;
}

// What this process applies of a reload (reloaded_config says what), once the secrets are read.
void Daemon::apply_reload(const GatewayConfig& next, const ReloadPlan& plan, const std::string& keys) {
  const uint32_t c = cookie_counter(clock_ns());
  const CookieSecrets loaded = sane(load_or_create_secrets(config.secret_file, c), c);

  if (!keys.empty()) spdlog::warn("reload: {} changed; it takes effect only after a restart", keys);
  config = reloaded_config(config, next, plan);
  set_log_level(config.log_level);
  set_log_format(config.log_format);
  if (plan.services_wait_for_restart) {
    spdlog::warn("reload: [[service]] list adds an address family syngate has no raw socket for; "
                 "it takes effect only after a restart (which keeps every flow)");
  }
  for (const auto& sv : plan.removed_services) {
    spdlog::info("reload: service {}:{} removed: its flows drain, new connections are not proxied", sv.address,
                 sv.port);
  }
  if (plan.apply_services) {
    spdlog::info("reload: {} service(s); run `syngate rules up` to queue what was added", config.services.size());
  }
  policy.publish(config.engine.policy, config.engine.services);
  if (!(loaded == secrets.get())) {
    secrets.publish(loaded);
    spdlog::info("reload: new cookie secrets from {}", config.secret_file);
  }
  ++reloads;
  const SourcePolicy& pol = *config.engine.policy;
  spdlog::info("reload: done (log level {}, stats every {} s, policy: {} prefixes, {} SYN-ACKs/s per "
               "prefix, {} unanswered per proven address, {} new flows/s per source)",
               config.log_level, config.stats_interval_s, pol.prefixes.size(), pol.synack_per_prefix_per_s,
               pol.synack_per_address_per_s, pol.new_flows_per_source_per_s);
}

void Daemon::rotate_cookie_secrets(Clock::time_point now) {
  if (config.secret_rotation_s == 0 || now - last_rotation < std::chrono::seconds(config.secret_rotation_s)) return;
  try {
    CookieSecrets next = rotate_secrets(secrets.get(), cookie_counter(clock_ns()));
    save_secrets(config.secret_file, next);
    secrets.publish(next);
    spdlog::info("cookie secrets rotated");
  } catch (const std::exception& e) {
    spdlog::error("secret rotation failed: {}", e.what());
  }
  last_rotation = now;
}

// The rules deleted or flushed under a running syngate (a firewall reload, iptables -F): the
// services' traffic then bypasses it. Checked every 2 s; said in the log on each change, and
// always in the metrics (syngate_rules_in_place) and so in `syngate status`.
void Daemon::check_rules(Clock::time_point now) {
  if (now - last_rules_check < std::chrono::seconds(2)) return;
  last_rules_check = now;
  std::vector<std::string> missing;
  try {
    const Backend b = choose_backend(config.iptables);
    missing = missing_rules(show_rules(b, config.chain), config.chain, b.v4, config.has_v4(), b.v6, config.has_v6(),
                            tc != nullptr);
  } catch (const std::exception& e) {
    missing = {e.what()};
  }
  const int was = rules_state.exchange(missing.empty() ? 1 : 0);
  if (!missing.empty() && was != 0) {
    std::string what;
    for (const auto& m : missing) what += (what.empty() ? "" : "; ") + m;
    spdlog::error("iptables rules missing ({}): the services' traffic bypasses syngate; run `syngate rules up`", what);
  } else if (missing.empty() && was == 0) {
    spdlog::info("iptables rules in place again (chain {})", config.chain);
  }
}

// The fast path follows the interfaces, and the secrets and policy the workers already use; what
// it cannot take detaches it (NFQUEUE then sees every packet).
// gateway.tc_open_flows: what the tc ingress opens flows with, and its lease (tc_program.hpp).
void Daemon::keep_kernel_opening() {
  if (!tc || !tc->opens_flows()) return;
  tc->keep_opening(config.engine.services, secrets.get(), secrets.generation.load(), config.cookie_max_age,
                   config.engine.backend_facts.get(), cookie_clock_ms(), engine_clock().timer_ns);
}

void Daemon::sync_fast_path() {
  if (tc) {
    tc->follow_interfaces();
    keep_kernel_opening();
  }
  if (!xdp) return;
  xdp->follow_interfaces();
  fast_path_interfaces.store(static_cast<int>(xdp->attached_interfaces()));
  if (secrets.generation.load() != xdp_secrets_generation) {
    xdp_secrets_generation = secrets.generation.load();
    try {
      xdp->set_secrets(secrets.get(), config.cookie_max_age);
    } catch (const std::exception& e) {
      spdlog::error("xdp: new cookie secrets not published ({}); detaching, NFQUEUE takes over", e.what());
      xdp->detach();
    }
  }
  if (policy.generation.load() != xdp_policy_generation) {
    xdp_policy_generation = policy.generation.load();
    try {
      xdp->set_policy(config.engine);
    } catch (const std::exception& e) {
      spdlog::error("xdp: new policy not published ({}); detaching, NFQUEUE takes over", e.what());
      xdp->detach();
    }
  }
  if (config.engine.backend_facts) {
    xdp->sync_backend_facts(*config.engine.backend_facts, cookie_clock_ms());
  }
  schedule_flow_workers();  // after any detach above
}

void Daemon::log_stats(Clock::time_point now) {
  if (config.stats_interval_s == 0 || now - stats_time < std::chrono::seconds(config.stats_interval_s)) return;
  GatewaySnapshot cur = snapshot();
  double dt = std::chrono::duration<double>(now - stats_time).count();
  spdlog::info("{}", summary_line(cur, stats_prev, dt));
  stats_prev = std::move(cur);
  stats_time = now;
}

// ---- shutdown -------------------------------------------------------------------------------

int Daemon::shutdown() {
  health.reset();
  if (exit_code == kRestartInPlace) {
    notifier.reloading("restarting in place to apply the new configuration");
  } else {
    notifier.stopping("stopping: draining the queues");
  }
  // Off the interfaces first: until the workers stop, NFQUEUE takes the traffic XDP was taking.
  if (xdp) xdp->detach();
  // Off the interfaces too: the flows go on through NFQUEUE while the workers drain, and a
  // restarted syngate hands them over again.
  if (tc) tc->stop();
  stop.store(true);
  for (auto& w : workers) w->thread.join();
  if (tc) {
    // The map goes with this process (its pin is removed): what the programs recorded goes into
    // the saved tables first, so the next process starts from it. The workers have stopped.
    const EngineClock now = engine_clock();
    for (auto& w : workers) {
      if (w->flow) w->flow->engine().merge_kernel_state(now);
    }
  }
  metrics_endpoint.reset();
  GatewaySnapshot last = snapshot();
  spdlog::info("stopped: {}", summary_line(last, GatewaySnapshot{}, 0));
  return exit_code;
}

// ---- helpers --------------------------------------------------------------------------------

void Daemon::run_worker(WorkerThread& t) {
  Worker& w = *t.worker;
  std::string name = (w.syn_only() ? "syn-q" : "flow-q") + std::to_string(w.queue());
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  // Flow workers outrank SYN workers for the CPU: when a flood saturates the SYN path, the
  // established connections keep moving.
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), t.nice) != 0) {
    spdlog::warn("worker {}: cannot set nice {}: {}", w.id(), t.nice, std::strerror(errno));
  }
  if (t.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(t.cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
      spdlog::warn("worker {}: cannot pin to CPU {}", w.id(), t.cpu);
    }
  }
  bool draining = false;
  for (;;) {
    if (stop.load(std::memory_order_relaxed)) draining = true;
    if (w.turn(draining) == 0 && draining) break;
  }
  w.publish();
}

GatewaySnapshot Daemon::snapshot() {
  GatewaySnapshot s;
  for (auto& w : workers) {
    s.workers.push_back(w->worker->snapshot());
  }
  std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
  std::stringstream ss;
  ss << in.rdbuf();
  for (const auto& q : parse_nfqueue_proc(ss.str())) {
    bool ours = (q.queue >= config.syn_queue && q.queue < config.syn_queue + config.syn_queues) ||
                (q.queue >= config.flow_queue && q.queue < config.flow_queue + config.flow_queues);
    if (ours) s.queues.push_back(q);
  }
  s.secrets_generation = secrets.generation.load();
  s.reloads = reloads.load();
  s.reload_failures = reload_failures.load();
  s.rules_in_place = rules_state.load();
  s.start_time_seconds = start_time;
  s.rss_bytes = rss_bytes();
  return s;
}

bool Daemon::rules_in_place() const {
  try {
    return !show_rules(choose_backend(config.iptables), config.chain).empty();
  } catch (const std::exception&) {
    return false;
  }
}

std::string Daemon::status_line(const GatewaySnapshot& cur, const GatewaySnapshot& before, double dt) const {
  const EngineCounters now_c = sum_engine(cur.workers), then_c = sum_engine(before.workers);
  auto rate = [dt](uint64_t a, uint64_t b) { return dt > 0 ? static_cast<uint64_t>((a - b) / dt) : 0; };
  return fmt::format("{} flows, {} SYN/s, {} cookies sent/s, {} valid/s, {} invalid/s, {} workers",
                     now_c.flows_active, rate(now_c.syn_received, then_c.syn_received),
                     rate(now_c.cookies_sent, then_c.cookies_sent), rate(now_c.cookies_valid, then_c.cookies_valid),
                     rate(now_c.cookies_invalid, then_c.cookies_invalid), workers.size());
}

}  // namespace

// The sequence; each step is a Daemon member above.
int run_daemon(const std::string& config_path) {
  auto d = std::make_unique<Daemon>();
  d->config_path = config_path;
  if (!d->read_config()) return 2;
  d->block_signals();
  if (!d->publish_secrets()) return 2;
  if (!d->check_room() || !d->open_flow_state() || !d->share_proven_sources()) return 1;
  d->decide_kernel_path();
  if (!d->start_workers()) return 1;
  d->start_fast_path();
  d->start_kernel_path();
  d->serve_metrics();
  d->run_workers();
  d->serve_health();
  d->log_started();
  d->begin_ticks();
  while (d->tick()) {
  }
  return d->shutdown();
}

}  // namespace syngate::gw
