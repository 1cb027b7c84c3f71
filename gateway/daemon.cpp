// The daemon shell around the workers: it binds one NFQUEUE queue and one raw sender per worker
// and runs each worker on a thread of its own (named, niced and pinned here); the workers
// themselves (worker.hpp: SynWorker answers SYNs statelessly, FlowWorker owns an Engine) hold the
// per-packet loop. Besides: a metrics thread, and the main thread that waits for signals,
// reloads, rotates secrets, feeds systemd and logs the periodic summary.
#include "daemon.hpp"

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
// Flow timers count on CLOCK_MONOTONIC instead: TAI steps with the wall clock (`date -s`,
// `chronyc makestep`), and a forward step longer than the idle timeout would free every flow.
// Saved tables are tied to the boot, so monotonic stamps stay meaningful across restarts.
EngineClock engine_clock() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return {clock_ns(), static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec)};
}

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
  std::atomic<int> rules_in_place{-1};  // at the last check: 1 yes, 0 no, -1 not checked yet
  double start_time = 0;
  std::unique_ptr<xdp::FastPath> xdp;  // null: no fast path (off, unavailable, attached nowhere)
  uint64_t xdp_secrets_generation = 0;
  uint64_t xdp_policy_generation = 0;

  void run_worker(WorkerThread& t);
  GatewaySnapshot snapshot();
};

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

uint64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
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
  s.rules_in_place = rules_in_place.load();
  s.start_time_seconds = start_time;
  s.rss_bytes = rss_bytes();
  return s;
}

void set_log_level(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int run_daemon(const std::string& config_path) {
  auto d = std::make_unique<Daemon>();
  d->config_path = config_path;
  try {
    d->config = load_config(config_path);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 2;
  }
  GatewayConfig& cfg = d->config;
  set_log_level(cfg.log_level);
  set_log_format(cfg.log_format);
  d->start_time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

  // Signals go to the main thread only: block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  d->policy.publish(cfg.engine.policy, cfg.engine.services);
  uint32_t counter = cookie_counter(clock_ns());
  try {
    d->secrets.publish(sane(load_or_create_secrets(cfg.secret_file, counter), counter));
  } catch (const std::exception& e) {
    spdlog::critical("gateway.secret_file {}: {}", cfg.secret_file, e.what());
    return 2;
  }

  try {
    check_table_room(cfg, machine_room(cfg.state_dir), false);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }

  // Flow tables that outlive the process: which saved tables to take over, which to import.
  const uint64_t boot_id = current_boot_id();
  FlowStatePlan state_plan;
  if (!cfg.state_dir.empty()) {
    try {
      d->state = std::make_unique<StateDir>(cfg.state_dir, this_instance(cfg.instance));
      for (const auto& note : d->state->notes()) spdlog::warn("flow state: {}", note);
      state_plan = plan_flow_state(*d->state, cfg.flow_queue, cfg.flow_queues, cfg.engine, boot_id);
      for (const auto& note : state_plan.notes) spdlog::warn("flow state: {}", note);
    } catch (const std::exception& e) {
      spdlog::critical("gateway.state_dir: {}", e.what());
      return 1;
    }
  }

  // One table of proven sources for every worker: flow workers write what cookie ACKs prove, SYN
  // workers read it (its own random key, like every other hash table here).
  {
    if (sodium_init() < 0) {
      spdlog::critical("libsodium failed to initialise (no random source)");
      return 1;
    }
    HashKey key{};
    randombytes_buf(key.data(), key.size());
    cfg.engine.proven_sources = std::make_shared<ProvenSources>(ProvenSources::kDefaultSlots, key);
  }
  try {
    unsigned id = 0;
    auto add = [&](bool syn_only, uint16_t queue, int cpu) {
      auto t = std::make_unique<WorkerThread>();
      t->nice = syn_only ? cfg.syn_worker_nice : cfg.flow_worker_nice;
      t->cpu = cpu;
      WorkerSetup setup;
      setup.id = id++;
      setup.queue = queue;
      setup.engine = cfg.engine;
      randomize_hash_keys(setup.engine);
      // SYN workers split the per-prefix SYN-ACK budget; a flow worker answers SYNs only when
      // the rules send it some, and then holds the whole budget.
      setup.engine.budget_share = syn_only ? cfg.syn_queues : 1;
      // ICMP errors enter at the first flow queue and move along until a worker has their flow.
      setup.engine.icmp_next_queue = !syn_only && queue + 1 < cfg.flow_queue + cfg.flow_queues;
      setup.cookie_max_age = cfg.cookie_max_age;
      setup.fail_open = cfg.fail_open;
      setup.advance_interval_ns = static_cast<uint64_t>(cfg.advance_interval_ms) * 1000000ull;
      QueueOptions qo;
      qo.maxlen = syn_only ? cfg.syn_queue_maxlen : cfg.flow_queue_maxlen;
      qo.fail_open = cfg.fail_open;
      qo.rcvbuf_bytes = cfg.rcvbuf_bytes;
      qo.sndbuf_bytes = cfg.sndbuf_bytes;
      qo.batch = cfg.batch_size;
      qo.recv_timeout_ms = std::min<uint32_t>(cfg.advance_interval_ms, 100);
      if (syn_only) {
        // SYNs are never GSO and only their headers matter; small slots keep large batches cheap.
        qo.copy_range = 2048;
        qo.slot_bytes = 4096;
        qo.gso = false;
      }
      t->nfq = std::make_unique<NfQueue>(queue, qo);
      t->sender = std::make_unique<RawSender>(cfg.mark, cfg.sndbuf_bytes, cfg.has_v4(), cfg.has_v6());
      if (syn_only) {
        t->worker = std::make_unique<SynWorker>(std::move(setup), *t->nfq, *t->sender, d->secrets, d->policy, engine_clock);
      } else if (cfg.state_dir.empty()) {
        auto w = std::make_unique<FlowWorker>(std::move(setup), *t->nfq, *t->sender, d->secrets, d->policy, engine_clock);
        t->flow = w.get();
        t->worker = std::move(w);
      } else {
        const FlowStatePlan::Queue& plan = state_plan.queues.at(queue - cfg.flow_queue);
        auto table_file =
            std::make_unique<MappedTable>(*d->state, plan.name, Engine::state_bytes(setup.engine), plan.in_place);
        const std::string table_path = table_file->path();
        auto w = std::make_unique<FlowWorker>(std::move(setup), *t->nfq, *t->sender, d->secrets, d->policy, engine_clock,
                                              std::move(table_file), boot_id);
        t->flow = w.get();
        t->worker = std::move(w);
        Engine& engine = t->flow->engine();
        const RestoreReport& r = engine.restore_report();
        if (r.attached) {
          spdlog::info("flow queue {}: took over {} flows from {} (dropped: {} torn, {} invalid)", queue,
                       r.restored, table_path, r.dropped_torn, r.dropped_invalid);
        } else if (r.reason != "no saved table") {
          spdlog::warn("flow queue {}: started with an empty table: {}", queue, r.reason);
        }
        for (const auto& name : plan.imports) {
          const std::string path = d->state->path() + "/" + name;
          const RestoreReport ir = engine.import_state(state_plan.saved.at(name)->region(), boot_id, engine_clock());
          if (ir.attached) {
            spdlog::info("flow queue {}: imported {} flows from {} (dropped: {} torn, {} invalid, {} no room)", queue,
                         ir.restored, path, ir.dropped_torn, ir.dropped_invalid, ir.dropped_no_room);
          } else {
            spdlog::warn("flow queue {}: nothing imported from {}: {}", queue, path, ir.reason);
          }
        }
      }
      d->workers.push_back(std::move(t));
    };
    for (uint16_t i = 0; i < cfg.syn_queues; ++i) {
      int cpu = cfg.syn_cpus.empty() ? -1 : cfg.syn_cpus[i % cfg.syn_cpus.size()];
      add(true, static_cast<uint16_t>(cfg.syn_queue + i), cpu);
    }
    for (uint16_t i = 0; i < cfg.flow_queues; ++i) {
      int cpu = cfg.flow_cpus.empty() ? -1 : cfg.flow_cpus[i % cfg.flow_cpus.size()];
      add(false, static_cast<uint16_t>(cfg.flow_queue + i), cpu);
    }
  } catch (const std::exception& e) {
    spdlog::critical("startup failed: {}", e.what());
    return 1;
  }

  for (const auto& name : state_plan.obsolete) {
    if (!remove_state_file(*d->state, name)) {
      spdlog::warn("flow state: cannot remove {}/{}: {}", d->state->path(), name, std::strerror(errno));
    }
  }
  state_plan.saved.clear();  // unmaps the old files (those replaced by a fresh table are freed now)

  // The XDP fast path, before any worker runs, so that every flow reaches its flow map.
  const uint64_t all_flows = uint64_t{cfg.engine.max_flows} * cfg.flow_queues;
  d->xdp = xdp::FastPath::start(cfg.xdp_mode, cfg.xdp_interfaces, cfg.mode,
                                cfg.engine, d->secrets.get(), cfg.cookie_max_age,
                                static_cast<uint32_t>(std::min<uint64_t>(all_flows, 1u << 26)));
  d->xdp_secrets_generation = d->secrets.generation.load();
  d->xdp_policy_generation = d->policy.generation.load();
  if (d->xdp) {
    for (auto& w : d->workers) {
      if (w->flow) w->flow->engine().set_flow_observer(d->xdp.get());
    }
  }

  // The endpoint never stops the gateway: an address it cannot bind is logged and retried.
  std::unique_ptr<MetricsEndpoint> metrics_endpoint;
  if (cfg.metrics_port != 0) {
    Daemon* dp = d.get();
    metrics_endpoint = std::make_unique<MetricsEndpoint>(cfg.metrics_host, cfg.metrics_port, [dp] {
      return render_prometheus(dp->snapshot()) + (dp->xdp ? dp->xdp->render_metrics() : xdp::FastPath::render_disabled());
    });
  }

  for (auto& w : d->workers) {
    WorkerThread* wp = w.get();
    w->thread = std::thread([&d, wp] { d->run_worker(*wp); });
  }
  spdlog::info("syngate running: {} service(s), SYN queue(s) {}..{}, flow queue(s) {}..{}, fail-{}, "
               "metrics {}",
               cfg.services.size(), cfg.syn_queue, cfg.syn_queue + cfg.syn_queues - 1, cfg.flow_queue,
               cfg.flow_queue + cfg.flow_queues - 1, cfg.fail_open ? "open" : "closed",
               cfg.metrics_port ? cfg.metrics_host + ":" + std::to_string(cfg.metrics_port) : "off");
  for (const auto& w : d->workers) {
    if (w->flow && !w->nfq->gso_enabled()) {
      spdlog::warn("queue {}: kernel refused NFQA_CFG_F_GSO; GSO packets are segmented before queueing", w->nfq->queue());
    }
  }

  GatewaySnapshot prev = d->snapshot();
  auto prev_time = std::chrono::steady_clock::now();
  auto last_rotation = prev_time;
  int exit_code = 0;

  // systemd: READY once the queues are bound (done: the workers hold them) and the rules are in
  // place; STATUS every turn; WATCHDOG only while every worker makes progress.
  SystemdNotifier notifier;
  bool ready_sent = false;
  bool rules_warned = false;
  ProgressCheck progress;
  const auto watchdog_period = notifier.watchdog_interval() / 2;
  auto last_watchdog_check = std::chrono::steady_clock::now();
  std::vector<size_t> last_stuck;
  auto rules_in_place = [&cfg]() {
    try {
      return !show_rules(choose_backend(cfg.iptables), cfg.chain).empty();
    } catch (const std::exception&) {
      return false;
    }
  };
  auto status_line = [&d](const GatewaySnapshot& cur, const GatewaySnapshot& before, double dt) {
    const EngineCounters now_c = sum_engine(cur.workers), then_c = sum_engine(before.workers);
    auto rate = [dt](uint64_t a, uint64_t b) { return dt > 0 ? static_cast<uint64_t>((a - b) / dt) : 0; };
    return fmt::format("{} flows, {} SYN/s, {} cookies sent/s, {} valid/s, {} invalid/s, {} workers",
                       now_c.flows_active, rate(now_c.syn_received, then_c.syn_received),
                       rate(now_c.cookies_sent, then_c.cookies_sent), rate(now_c.cookies_valid, then_c.cookies_valid),
                       rate(now_c.cookies_invalid, then_c.cookies_invalid), d->workers.size());
  };
  GatewaySnapshot status_prev = prev;
  // Removed services whose flows are still draining, as last written for `syngate rules up`.
  std::vector<ServiceEntry> written_draining;
  if (d->state) {
    try {
      written_draining = read_draining_services(*d->state);
    } catch (const std::exception& e) {
      spdlog::warn("flow state: {}: replaced by an empty list", e.what());
      try {
        write_draining_services(*d->state, {});
      } catch (const std::exception& w) {
        spdlog::error("{}", w.what());
      }
    }
  }
  auto status_time = prev_time;
  auto last_rules_check = prev_time - std::chrono::seconds(2);

  for (;;) {
    if (notifier.enabled()) {
      const auto t = std::chrono::steady_clock::now();
      GatewaySnapshot cur = d->snapshot();
      const std::string line = status_line(cur, status_prev, std::chrono::duration<double>(t - status_time).count());
      status_prev = std::move(cur);
      status_time = t;
      if (!ready_sent) {
        if (rules_in_place()) {
          notifier.ready(line);
          ready_sent = true;
          spdlog::info("systemd: ready");
        } else {
          if (!rules_warned) spdlog::warn("systemd: waiting for the rules (syngate rules up) before READY");
          rules_warned = true;
          notifier.status("waiting for the iptables rules: run syngate rules up");
        }
      } else {
        notifier.status(line);
      }
      if (watchdog_period.count() > 0 && t - last_watchdog_check >= watchdog_period) {
        last_watchdog_check = t;
        std::vector<uint64_t> beats;
        for (const auto& w : d->workers) beats.push_back(w->worker->heartbeat());
        std::vector<size_t> stuck = progress.stuck(beats);
        if (stuck.empty()) {
          notifier.watchdog();
        } else if (stuck != last_stuck) {
          std::string names;
          for (size_t i : stuck) names += (names.empty() ? "" : ", ") + std::to_string(d->workers[i]->worker->id());
          spdlog::error("worker(s) {} made no progress for {} ms: withholding the systemd watchdog", names,
                        std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_period).count());
        }
        last_stuck = std::move(stuck);
      }
    }
    if (d->state) {
      std::vector<ServiceEntry> draining;
      for (const auto& w : d->workers) {
        for (const Service& sv : w->worker->draining_services()) {
          ServiceEntry e{sv.address.to_string(), !sv.address.is_v4(), sv.port};
          if (std::find(draining.begin(), draining.end(), e) == draining.end()) draining.push_back(e);
        }
      }
      if (draining != written_draining) {
        try {
          write_draining_services(*d->state, draining);
          written_draining = std::move(draining);
        } catch (const std::exception& e) {
          spdlog::error("{}", e.what());
        }
      }
    }
    timespec timeout{1, 0};
    if (watchdog_period.count() > 0 && watchdog_period < std::chrono::seconds(1)) {
      timeout = {0, static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(watchdog_period).count())};
    }
    int sig = sigtimedwait(&sigs, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("signal {}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      break;
    }
    if (sig == SIGHUP) {
      // All or nothing: everything the new configuration needs is read and checked first; only
      // then is it applied, in steps that cannot fail. A refused reload leaves nothing changed.
      try {
        GatewayConfig next = load_config(config_path);
        const ReloadPlan plan = plan_reload(cfg, next);
        std::string keys;
        for (const auto& key : plan.restart_keys) keys += (keys.empty() ? "" : ", ") + key;
        if (plan.restart_in_place) {
          // What only a new process can apply (queues, table sizes, buffers): stop like for
          // SIGTERM, then start again in this same process (exec). The flow tables in state_dir
          // carry every connection over, resized or re-sharded on the way in. A configuration
          // the new process could not start on is refused here, while this one still runs.
          check_restart(next, plan);
          spdlog::info("reload: {} changed: restarting in place to apply it; proxied flows are kept", keys);
          ++d->reloads;
          exit_code = kRestartInPlace;
          break;
        }
        const uint32_t c = cookie_counter(clock_ns());
        const CookieSecrets loaded = sane(load_or_create_secrets(cfg.secret_file, c), c);

        if (!keys.empty()) spdlog::warn("reload: {} changed; it takes effect only after a restart", keys);
        cfg.log_level = next.log_level;
        set_log_level(cfg.log_level);
        cfg.log_format = next.log_format;
        set_log_format(cfg.log_format);
        cfg.stats_interval_s = next.stats_interval_s;
        cfg.secret_rotation_s = next.secret_rotation_s;
        cfg.engine.policy = next.engine.policy;
        if (plan.services_wait_for_restart) {
          spdlog::warn("reload: [[service]] list adds an address family syngate has no raw socket for; "
                       "it takes effect only after a restart (which keeps every flow)");
        }
        for (const auto& sv : plan.removed_services) {
          spdlog::info("reload: service {}:{} removed: its flows drain, new connections are not proxied",
                       sv.address, sv.port);
        }
        if (plan.apply_services) {
          cfg.services = next.services;
          cfg.engine.services = next.engine.services;
          spdlog::info("reload: {} service(s); run `syngate rules up` to queue what was added", cfg.services.size());
        }
        d->policy.publish(cfg.engine.policy, cfg.engine.services);
        if (!(loaded == d->secrets.get())) {
          d->secrets.publish(loaded);
          spdlog::info("reload: new cookie secrets from {}", cfg.secret_file);
        }
        ++d->reloads;
        const SourcePolicy& pol = *cfg.engine.policy;
        spdlog::info("reload: done (log level {}, stats every {} s, policy: {} prefixes, {} SYN-ACKs/s per "
                     "prefix, {} unanswered per proven address, {} new flows/s per source)",
                     cfg.log_level, cfg.stats_interval_s, pol.prefixes.size(), pol.synack_per_prefix_per_s,
                     pol.synack_per_address_per_s, pol.new_flows_per_source_per_s);
      } catch (const std::exception& e) {
        ++d->reload_failures;
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
      }
    }
    auto now = std::chrono::steady_clock::now();
    // The rules deleted or flushed under a running syngate (a firewall reload, iptables -F):
    // the services' traffic then bypasses it. Checked every 2 s; said in the log on each change,
    // and always in the metrics (syngate_rules_in_place) and so in `syngate status`.
    if (now - last_rules_check >= std::chrono::seconds(2)) {
      last_rules_check = now;
      std::vector<std::string> missing;
      try {
        const Backend b = choose_backend(cfg.iptables);
        missing = missing_rules(show_rules(b, cfg.chain), cfg.chain, b.v4, cfg.has_v4(), b.v6, cfg.has_v6());
      } catch (const std::exception& e) {
        missing = {e.what()};
      }
      const int was = d->rules_in_place.exchange(missing.empty() ? 1 : 0);
      if (!missing.empty() && was != 0) {
        std::string what;
        for (const auto& m : missing) what += (what.empty() ? "" : "; ") + m;
        spdlog::error("iptables rules missing ({}): the services' traffic bypasses syngate; run `syngate rules up`",
                      what);
      } else if (missing.empty() && was == 0) {
        spdlog::info("iptables rules in place again (chain {})", cfg.chain);
      }
    }
    if (cfg.secret_rotation_s != 0 &&
        now - last_rotation >= std::chrono::seconds(cfg.secret_rotation_s)) {
      try {
        CookieSecrets next = rotate_secrets(d->secrets.get(), cookie_counter(clock_ns()));
        save_secrets(cfg.secret_file, next);
        d->secrets.publish(next);
        spdlog::info("cookie secrets rotated");
      } catch (const std::exception& e) {
        spdlog::error("secret rotation failed: {}", e.what());
      }
      last_rotation = now;
    }
    if (d->xdp) d->xdp->follow_interfaces();
    if (d->xdp && d->secrets.generation.load() != d->xdp_secrets_generation) {
      d->xdp_secrets_generation = d->secrets.generation.load();
      try {
        d->xdp->set_secrets(d->secrets.get(), cfg.cookie_max_age);
      } catch (const std::exception& e) {
        spdlog::error("xdp: new cookie secrets not published ({}); detaching, NFQUEUE takes over", e.what());
        d->xdp->detach();
      }
    }
    if (d->xdp && d->policy.generation.load() != d->xdp_policy_generation) {
      d->xdp_policy_generation = d->policy.generation.load();
      try {
        d->xdp->set_policy(cfg.engine);
      } catch (const std::exception& e) {
        spdlog::error("xdp: new policy not published ({}); detaching, NFQUEUE takes over", e.what());
        d->xdp->detach();
      }
    }
    if (cfg.stats_interval_s != 0 && now - prev_time >= std::chrono::seconds(cfg.stats_interval_s)) {
      GatewaySnapshot cur = d->snapshot();
      double dt = std::chrono::duration<double>(now - prev_time).count();
      spdlog::info("{}", summary_line(cur, prev, dt));
      prev = std::move(cur);
      prev_time = now;
    }
  }
  if (exit_code == kRestartInPlace) {
    notifier.reloading("restarting in place to apply the new configuration");
  } else {
    notifier.stopping("stopping: draining the queues");
  }
  // Off the interfaces first: until the workers stop, NFQUEUE takes the traffic XDP was taking.
  if (d->xdp) d->xdp->detach();
  d->stop.store(true);
  for (auto& w : d->workers) w->thread.join();
  metrics_endpoint.reset();
  GatewaySnapshot last = d->snapshot();
  spdlog::info("stopped: {}", summary_line(last, GatewaySnapshot{}, 0));
  return exit_code;
}

}  // namespace syngate::gw
