// Established flows in the kernel (issue 23): the daemon's side of the tc programs
// (bpf/syngate_tc.bpf.c). Loads them (libbpf skeleton), pins their flow map (with their report
// ring and handshake records) under bpffs so that host mode's xt_bpf match and a restarted
// daemon find it, attaches them as clsact filters, and keeps the flow map in step with the flow
// workers (as their engines' FlowObserver: two entries per handed-over flow, one per direction,
// deleted when the flow is freed).
//
// tc filters attached through netlink outlive the process: at start the filters a dead syngate
// left (same handle and priority) are replaced, never doubled; a clean stop and
// `syngate rules down` remove them. Without the tc program in the build, start() says so and the
// daemon runs as before (every segment through NFQUEUE).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "interfaces.hpp"
#include "syngate/backend_facts.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/cookie.hpp"
#include "syngate/flow_table.hpp"

namespace syngate::tc {

// The filters' identity on every interface (one syngate per network namespace owns them).
inline constexpr uint32_t kFilterHandle = 0x5347;
inline constexpr uint32_t kFilterPriority = 0x5347;

// Where an instance pins its maps: BPF_DIR/syngate/<instance>:netns-<inode of this network
// namespace> (BPF_DIR: gateway.bpf_dir; dots in the instance name become ':', bpffs refuses them).
std::string pin_dir(const std::string& instance, const std::string& bpf_dir = "/sys/fs/bpf");
// mkdir -p for a pin directory (bpffs allows directories).
bool make_pin_dirs(const std::string& dir);
// Whether pins made in `dir` land on a bpffs: `dir` or, where it does not exist yet, its nearest
// ancestor that does (under the shipped unit bpf_dir is a plain directory with syngate's own
// directory of the bpffs bound into it; in `ip netns exec` /sys/fs/bpf is absent).
bool on_bpffs(const std::string& dir);
// The flow map's size for `max_flows` flows (two entries each): the tc programs' and, in `rules up`,
// the OUTPUT match's (tc_match.hpp), which must agree to share the pinned map.
uint32_t flow_map_entries(uint32_t max_flows) noexcept;

// Counter names, in the program's order (tc_abi.h, enum sg_tc_counter).
inline constexpr std::array<const char*, SG_TC_COUNTER_COUNT> kCounterNames = {
    "translated", "punted", "already_marked", "miss", "events_lost", "forwarded", "handed_over", "handshake_punted",
    "opened", "open_punted", "early_stored", "early_sent", "early_to_engine", "early_refused",
    "route_cached"};
using Counters = std::array<uint64_t, SG_TC_COUNTER_COUNT>;

// The two map entries of a handed-over flow: the client's segments keyed client -> server, the
// server's keyed server -> client. Pure (unit-tested).
struct FlowEntries {
  sg_tc_flow_key to_server_key{};
  sg_tc_flow to_server{};
  sg_tc_flow_key to_client_key{};
  sg_tc_flow to_client{};
};
// `egress`: written by a run whose tc egress translates (SG_TC_OPT_EGRESS on both entries).
FlowEntries flow_entries(const FlowTuple& client_to_server, const FlowTranslation& t, uint32_t generation,
                         bool egress);
// True when the entries found in the map translate as `want` does (the fields the daemon writes,
// generation and SG_TC_OPT_EGRESS aside): what a restart keeps, with what the programs recorded.
// An entry kept without the bit sends its flow's replies through the queue (the engine
// translates them); one kept with it makes the run attach egress (KernelPath::start).
bool same_translation(const FlowEntries& want, const sg_tc_flow& to_server, const sg_tc_flow& to_client) noexcept;
// What the engine merges from one entry (the program's record of its direction).
KernelRecord kernel_record(const sg_tc_flow& entry) noexcept;
// What the programs punt to NFQUEUE (lib/tc_rewritable.h, the same rule): every segment of both
// directions after an RST or the engine's punt recorded in either entry; the client's after its FIN.
bool punts_both_ways(const sg_tc_flow& to_server, const sg_tc_flow& to_client) noexcept;
bool punts_client_segments(const sg_tc_flow& to_server, const sg_tc_flow& to_client) noexcept;
// True when a flow numbered `generation` (0: unknown) finds on its pair the entries of the
// client's previous connection there: closed for the client's segments (what the programs open a
// new connection over), and older than the flow, which was opened over them and whose SYN-ACK has
// not replaced them yet. (Older open ones are its own: a flow both paths opened numbers itself by
// the later of the two records, its entries by the one that stood.)
bool previous_connections_entries(const sg_tc_flow& to_server, const sg_tc_flow& to_client,
                                  uint32_t generation) noexcept;
sg_tc_flow_key flow_key(const FlowTuple& t);

// An instance's pinned flow map (`pin_dir`/sg_tc_flows), opened read-only for `syngate flows`:
// a flow's entries as the programs keep them. The constructor throws std::runtime_error with the
// reason when the map cannot be opened (no pin, no bpffs there, no permission).
class PinnedFlows {
 public:
  explicit PinnedFlows(const std::string& pin_dir);
  ~PinnedFlows();
  PinnedFlows(const PinnedFlows&) = delete;
  PinnedFlows& operator=(const PinnedFlows&) = delete;
  // The entry for the segments that travel along `sender_to_receiver`.
  std::optional<sg_tc_flow> entry(const FlowTuple& sender_to_receiver) const noexcept;

 private:
  int fd_ = -1;
};

// True when this build carries the tc program.
bool available() noexcept;

// Where the programs are loaded for (rodata, fixed at load).
struct Placement {
  bool router = false;   // segments are forwarded here (router and both modes): ask the FIB first
  bool forward = false;  // with router: send translated segments on from tc (gateway.tc_forward)
  bool synacks = false;  // with forward: the ingress may answer backends' SYN-ACKs (gateway.tc_handshake)
  bool open_flows = false;  // with synacks: ... and open flows from cookie ACKs (gateway.tc_open_flows)
  bool early_data = false;  // with synacks: ... and keep a client's early segments (gateway.tc_early_data)
};

class Program {
 public:
  // Loads the programs with room for `max_flows` flows (two entries each) and pins the flow map,
  // the report ring and the handshake records in `pin_dir` (created; "" pins nothing), reusing
  // compatible maps pinned there by an earlier run. Throws std::runtime_error with the reason.
  Program(uint32_t max_flows, const std::string& pin_dir, const Placement& at = {});
  ~Program();  // closes its fds; attached filters stay until detach_all()
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  // Attaches ingress (and egress when `egress`) on the interface, replacing what an earlier
  // syngate left under the same handle and priority (without `egress`, an egress filter it left
  // is removed). False, with *why, when it cannot.
  bool attach(int ifindex, bool egress, std::string* why);
  // Whether this run's filters include egress: the entries write_flow writes then carry
  // SG_TC_OPT_EGRESS, without which host mode's OUTPUT match queues the reply. Set before any
  // entry is written, and before attach.
  void set_egress_entries(bool on) noexcept { egress_entries_ = on; }
  bool egress_entries() const noexcept { return egress_entries_; }
  // Removes the filters this program attached: from one interface, from all.
  void detach(int ifindex) noexcept;
  void detach_all() noexcept;
  std::vector<int> attached() const;

  // Map edits, thread-safe (single syscalls).
  bool write_flow(const FlowTuple& client_to_server, const FlowTranslation& t, uint32_t generation) noexcept;
  // Both entries of a flow; false when either is missing.
  bool read_flow(const FlowTuple& client_to_server, sg_tc_flow& to_server, sg_tc_flow& to_client) const noexcept;
  // The same through the sg_tc_read program, one system call (read_flow's way; two lookups when
  // it cannot run): `found` says which entries were there (SG_TC_READ_*). False when the program
  // could not run.
  bool read_flow_in_one_call(const FlowTuple& client_to_server, sg_tc_flow& to_server, sg_tc_flow& to_client,
                             uint32_t& found) const noexcept;
  // A flow's entries and record deleted (SG_TC_RELEASE_FREE, _REFUSED) or its entries marked
  // SG_TC_CLOSED_BY_ENGINE (_PUNT), by the sg_tc_release program (tc_abi.h): what a connection
  // newer than `generation` wrote on the pair stays. Its SG_TC_RELEASED_* bits; -1 when the
  // program could not run.
  int release(const FlowTuple& client_to_server, uint32_t generation, sg_tc_release_op op) noexcept;
  // Many releases, each as release() makes it, in order, SG_TC_RELEASES_MAX a system call
  // (sg_tc_release_many; one call each when it cannot run). Returns how many could not run;
  // `results`, when as long as `releases`, gets each one's release() value.
  uint64_t release_many(std::span<const sg_tc_release> releases, std::span<int> results = {}) noexcept;
  // Deletes every entry.
  uint64_t clear_flows() noexcept;
  void delete_key(const sg_tc_flow_key& key) noexcept;
  // One entry, created or replaced whole.
  bool write_key(const sg_tc_flow_key& key, const sg_tc_flow& value) noexcept;
  // A backend SYN's record (tc_abi.h, sg_tc_handshakes), keyed by its SYN-ACK's tuple; and its
  // withdrawal: true when it was there and is gone, false when the program took it.
  bool write_handshake(const sg_tc_flow_key& key, const sg_tc_handshake& value) noexcept;
  bool delete_handshake(const sg_tc_flow_key& key) noexcept;
  // The keys of every handshake record (a restart's reconciliation).
  std::vector<sg_tc_flow_key> handshake_keys() const;
  // Every entry, with its value.
  std::vector<std::pair<sg_tc_flow_key, sg_tc_flow>> entries() const;
  // Appends the records the programs put on sg_tc_events since the last call (tc_abi.h). Reads the
  // ring's shared memory: no system call unless it holds something. Not thread-safe.
  void take_events(std::vector<sg_tc_event>& out) noexcept;
  uint64_t flow_entries_count() const noexcept;
  Counters counters() const;
  // The flow map (host mode's OUTPUT match must look at this one: tc_match.hpp).
  int flows_map_fd() const noexcept;
  // The handshake records (sg_tc_handshakes), keyed by the backend's SYN-ACK's tuple.
  int handshakes_map_fd() const noexcept;
  // A client's early segments kept for their SYN-ACK (sg_tc_early), keyed by flow and slot.
  int early_map_fd() const noexcept;
  // Whether the programs may act on their FIB lookup (gw::fib_use's judge), while they run.
  void set_fib_trusted(bool trusted) noexcept;
  // What sg_tc_cookie_ack opens flows with (tc_abi.h): the cookie secrets (as the XDP program's:
  // the slot not read, then the slot), the services with their SG_SERVICE_* facts and
  // SG_TC_SERVICE_OPENS (the map made to hold exactly these), and until when (CLOCK_MONOTONIC)
  // with which announced window shift. False when a map write failed.
  bool set_cookie_secrets(const CookieSecrets& secrets, uint32_t max_age) noexcept;
  bool set_open_services(const std::vector<std::pair<Service, uint8_t>>& services) noexcept;
  bool set_open_until(uint64_t until_ns, uint8_t announced_ws) noexcept;
  // The hand-over counter the programs number their records from (sg_tc_generation), and a
  // number from it for the daemon's own (an atomic add on the programs' memory: never one the
  // programs take too, and never 0).
  void set_generation(uint32_t generation) noexcept;
  uint32_t next_generation() noexcept;
  void raise_generation(uint32_t at_least) noexcept;  // the counter moved on to at_least (wrap-aware)
  // The highest generation of the entries and records in the maps (a restart's counter starts
  // there).
  uint32_t top_generation() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool egress_entries_ = false;
};

// Removes syngate's filters (kFilterHandle/kFilterPriority, ingress and egress) from every
// interface of the namespace and the pins of `pin_dir` (when not empty). For `rules down`, and
// for a start with the kernel path off. Returns what it removed, for the log.
std::vector<std::string> remove_everywhere(const std::string& pin_dir) noexcept;

// Which of a worker's flows may still have segments in its queue from before their hand-over
// went live (KernelPath::may_be_overtaken). A flow is watched from its publication until a
// receive that began after it took everything waiting and that batch was handled: by then every
// segment queued before the publication has reached the engine. And at least kMinWatchNs: a
// segment that crossed tc before the entry went live can still be on its way to the queue when
// a receive empties it (between tc and the NFQUEUE hook on a vCPU the host paused). The worker's
// turn in order: received(whether the receive emptied the queue), published() for hand-overs
// (after each flush), handled() at the end; times on CLOCK_MONOTONIC. Bounded: past kMax the
// oldest are forgotten (only under an overload that never lets the queue empty; a forgotten
// flow's stale ACKs then pass unchecked, which loses no data).
class OvertakeWatch {
 public:
  static constexpr size_t kMax = 1024;
  static constexpr uint64_t kMinWatchNs = 100'000'000;
  void published(const void* owner, const FlowTuple& flow, uint64_t now_ns) noexcept;
  void received(bool took_everything) noexcept;
  void handled(uint64_t now_ns) noexcept;
  bool watching(const void* owner, const FlowTuple& flow) const noexcept;
  void forget(const void* owner, const FlowTuple& flow) noexcept;
  size_t size() const noexcept { return flows_.size(); }

 private:
  // watching() runs for every pure ACK of a handed-over flow that reaches the engine (a close's
  // last ACKs among them), and at 10k connections/s 100 ms holds ~1000 flows: a count per hash
  // bucket answers "not watched" without the scan for almost all of them.
  static constexpr size_t kBuckets = 4096;
  static size_t bucket(const FlowTuple& flow) noexcept;
  void erase_where(auto&& pred) noexcept;
  std::array<uint16_t, kBuckets> watched_in_bucket_{};
  struct Watched {
    const void* owner;
    FlowTuple flow;
    uint64_t epoch;
    uint64_t published_ns;
  };
  std::vector<Watched> flows_;
  uint64_t epoch_ = 0;          // receives that emptied the queue so far
  uint64_t forget_before_ = 0;  // set by such a receive: at handled(), flows published before it go
};

class KernelPath;
// A hand-over's server-to-client entry, held until its step's packets are sent (publish_pending).
struct PendingEntry {
  KernelPath* owner;
  FlowTuple flow;  // client to server
  sg_tc_flow_key key;
  sg_tc_flow value;
};

// The daemon's use of the programs.
class KernelPath : public FlowObserver, public KernelFlowState {
 public:
  // nullptr, having logged why, when the kernel path is off or cannot load or attach anywhere;
  // the daemon then runs as before.
  static std::unique_ptr<KernelPath> start(const gw::GatewayConfig& config, uint32_t max_flows);
  ~KernelPath() override;
  // A clean stop: off every interface, the map emptied (host mode's OUTPUT match, whose rule
  // outlives the process, then lets nothing past the queue that no tc egress would translate) and
  // the pins removed. What the programs recorded is kept in memory: read() answers from it from
  // then on, so the engines' last merge (Engine::merge_kernel_state, once the workers have
  // stopped) still finds it and the saved tables carry it to the next process.
  void stop() noexcept;

  void flow_created(const FlowTuple& t) noexcept override;
  void flow_freed(const FlowTuple& t, uint32_t generation) noexcept override;
  void flow_established(const FlowTuple& t, const FlowTranslation& x, uint32_t generation) noexcept override;
  uint32_t new_generation() noexcept override;
  void generation_at_least(uint32_t generation) noexcept override;
  bool read(const FlowTuple& client_to_server, KernelFlowView& out) noexcept override;
  void punt(const FlowTuple& client_to_server, uint32_t generation) noexcept override;
  void take_closing(std::vector<FlowTuple>& out, const std::function<bool(const KernelClose&)>& mine) noexcept override;
  // gateway.tc_handshake (router mode): the record sg_tc_synack answers the backend's SYN-ACK
  // from, written as the SYN leaves; its withdrawal; the hand-overs the program reported.
  bool handshake_sent(const FlowTuple& t, const sg_handshake& h, uint32_t generation) noexcept override;
  bool withdraw_handshake(const FlowTuple& client_to_server) noexcept override;
  // Runs before each withdrawal: the daemon writes the turn's XDP flow keys there. The fast path
  // passes a flow's later segments by its handshake record until its key is in the flow map; a
  // record withdrawn first (the engine took the client's early data) left a gap in which the
  // client's next segment, a FIN behind its request, was dropped as an invalid cookie. Set before
  // the workers start.
  void set_before_withdraw(std::function<void()> hook) { before_withdraw_ = std::move(hook); }
  std::optional<FlowTranslation> handed_over_translation(const FlowTuple& client_to_server,
                                                         uint32_t generation) noexcept override;
  void take_handed_over(std::vector<KernelHandOver>& out,
                        const std::function<bool(const KernelHandOver&)>& mine) noexcept override;
  // gateway.tc_open_flows: the flows the ingress opened from cookie ACKs (all of them: it opens
  // flows only with one flow queue, whose engine takes them), and the undoing of one refused.
  void take_opened(std::vector<KernelOpened>& out) noexcept override;
  // The programs' count of reports their ring had no room for (events_lost), read at most every
  // kLostReadNs: every flow worker asks each turn.
  uint64_t reports_lost() noexcept override;
  static constexpr uint64_t kLostReadNs = 100'000'000;
  void discard(const FlowTuple& client_to_server, uint32_t generation) noexcept override;
  // Whether the programs open flows (gateway.tc_open_flows in force), and the end of it (the
  // programs stop as their lease runs out: none has been given before the first tick).
  bool opens_flows() const noexcept { return opens_; }
  void stop_opening() noexcept { opens_ = false; }
  // The programs may open flows until now + kLeaseNs: renewed by the flow worker's turns (which
  // come every 10 ms at least with tc_open_flows) and the daemon's tick.
  static constexpr uint64_t kLeaseNs = 100'000'000;
  static constexpr uint64_t kLeaseRenewNs = 20'000'000;
  void renew_lease(uint64_t now_ns) noexcept;
  // The daemon's tick (a reload's too), while it opens flows: the cookie secrets when they
  // changed, the services of now behind a route with what their backends taught (`facts`,
  // SG_SERVICE_* at the cookie clock's now_ms), and the first lease (CLOCK_MONOTONIC `now_ns`,
  // kLeaseNs), which the flow worker's turns renew: a daemon whose worker stops turning (dead,
  // hung) stops the programs opening flows no engine would hold.
  void keep_opening(const std::vector<Service>& services, const CookieSecrets& secrets, uint64_t secrets_generation,
                    uint32_t cookie_max_age, const BackendFacts* facts, uint32_t now_ms, uint64_t now_ns) noexcept;
  // The server-to-client entries of the flows this thread handed over since its last call,
  // written now. A flow worker calls it once the packets of its batch are sent (Worker's
  // after_flush): the engine's hand-over step sends the backend the ACK that completes its
  // handshake and then the client a window update with the SYN-ACK's timestamp; delivering that
  // ACK can run the backend's first replies, and the client's answers to them, through the kernel
  // in the same softirq, so a to-client entry live at once let them reach the client before the
  // window update, which then arrived with a timestamp two or more ticks old (a PAWS rejection,
  // TcpExtPAWSEstab). Until then the server's segments go to NFQUEUE and the engine translates
  // them after the update (the same numbers, flow_established's).
  void publish_pending() noexcept;
  // The same thread's turns (Worker::TurnHooks): a flow stays "may be overtaken" from the
  // publication of its server-to-client entry until a receive that began after it emptied the
  // queue and its packets were handled (turn_done): segments queued before the hand-over went live
  // have all reached the engine by then. Until then the engine checks its pure ACKs against what
  // the programs delivered (Engine: ack_superseded).
  void turn_received(bool took_everything) noexcept;
  void turn_done() noexcept;
  // The releases of the flows freed since the last call (flow_freed only notes them), made now,
  // SG_TC_RELEASES_MAX a system call: the flow workers' before_send hook, so that a turn's frees
  // are made before its packets leave, as the XDP flow keys are.
  void write_releases() noexcept;
  bool may_be_overtaken(const FlowTuple& client_to_server) noexcept override;

  // Reconciliation at start, both ways. A map pinned by an earlier run (kill -9, an upgrade) is
  // kept, not cleared: between start() and finish_start() (no worker runs yet) the flow engines
  // hand their restored flows over, and flow_established keeps the entries that carry the flow's
  // own translation, with what the programs recorded (which the engines then merge,
  // Engine::merge_kernel_state), and writes the others; finish_start() deletes every entry no
  // restored flow claimed (flows the restore dropped, a stale tuple). Entries are keyed by the
  // flow's tuple only, never by a worker's index: a reshard moves flows between workers.
  // `merged`: flows whose kernel record the engines took, for the log.
  void finish_start(uint64_t merged);

  // The interface rule again when links or routes changed (the daemon's tick, as the XDP fast
  // path does): attaches to an interface that appeared or came back up (a filter on an interface
  // that was deleted and made again is gone with it), detaches from one the rule no longer picks.
  void follow_interfaces() noexcept;

  // syngate_tc_* metrics in the Prometheus text format.
  std::string render_metrics() const;
  const Program& program() const noexcept { return *program_; }

 private:
  KernelPath(std::unique_ptr<Program> p, std::string pins) : program_(std::move(p)), pin_dir_(std::move(pins)) {}
  gw::InterfacePlan plan() const;
  void apply(const gw::InterfacePlan& plan);
  void publish_one(const PendingEntry& p) noexcept;
  std::unique_ptr<Program> program_;
  std::string pin_dir_;
  // What the interface rule needs, kept from start for follow_interfaces().
  std::vector<Address> addresses_;
  gw::Mode mode_{};
  std::vector<std::string> listed_;
  bool egress_ = false;
  // The FIB use asked for (gateway.tc_forward) and the one in force (the policy rules of now;
  // none before the first read).
  bool tc_forward_ = false;
  std::optional<gw::FibUse> fib_use_;
  // Reads the policy rules and sets the programs' trust in their FIB lookup (at start, and when
  // rtnetlink announces a change), saying so when it changes.
  void follow_fwmark_rules() noexcept;
  std::unique_ptr<gw::LinkWatcher> watcher_;  // null: links are not followed (no rtnetlink)
  std::vector<int> applied_;                  // ifindexes of the last plan applied
  std::atomic<bool> starting_{true};
  std::vector<sg_tc_flow_key> claimed_;  // start only (one thread): keys restored flows kept or wrote
  std::vector<sg_tc_flow_key> restored_;  // start only: every restored flow's client-to-server key
  uint64_t kept_ = 0;
  uint64_t rewritten_ = 0;
  std::atomic<uint64_t> handed_over_{0};
  std::atomic<uint64_t> write_failures_{0};
  std::atomic<uint64_t> release_failures_{0};
  std::function<void()> before_withdraw_;
  // Frees waiting for write_releases; any worker's turn makes them all.
  std::mutex releases_mutex_;
  std::vector<sg_tc_release> pending_releases_;
  std::atomic<bool> any_release_{false};  // write_releases skips the lock on the usual empty turn
  void release_flow(const FlowTuple& t, uint32_t generation, sg_tc_release_op op) noexcept;
  void forget(const FlowTuple& t) noexcept;  // what this thread still keeps of a flow that ends
  void released(int outcome) noexcept;  // counts a release that could not run
  // The map's entries as stop() found them, sorted by key bytes; published by stopped_.
  std::vector<std::pair<sg_tc_flow_key, sg_tc_flow>> at_stop_;
  std::atomic<bool> stopped_{false};
  // Closes and hand-overs the programs reported (take_closing, take_handed_over), until the
  // engine that holds the flow takes them: each engine's turn drains the ring into them and takes
  // its own. One no engine takes (its flow freed meanwhile) goes kReportHoldNs after the drain that
  // brought it. By time, not by drains: a drain is not a turn (the engine drains for each backend
  // ACK of a flow it does not know, and up to 32 times while it settles a claimed handshake), so
  // the 64 drains that used to be the limit could pass in milliseconds while a flow waited in
  // SynSent for its hand-over, and its closes went: the flow then stayed established until its
  // idle timer (the suspect in a lab_soak failure, 26 connections carried whole in tc; not
  // reproduced). The hold outlasts a turn (10 ms with tc_open_flows, 100 ms otherwise) and the
  // first backend SYN retry (1 s by default), at which a flow whose hand-over report went is
  // established from its entries, and takes the FINs they recorded.
  static constexpr uint64_t kReportHoldNs = 3'000'000'000;
  struct Close {
    sg_tc_flow_key key;
    uint32_t generation;
    uint64_t drained_ns;
  };
  struct HandOver {
    sg_tc_flow_key key;
    sg_synack synack;
    uint64_t drained_ns;
  };
  // Returns the drain's time (timer clock).
  uint64_t drain_events() noexcept;
  // Whether a report drained at `drained_ns` has waited long enough at `now_ns`; counts it if so.
  static bool expire(uint64_t drained_ns, uint64_t now_ns, std::atomic<uint64_t>& expired) noexcept {
    if (now_ns - drained_ns <= kReportHoldNs) return false;
    expired.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::atomic<uint64_t> closes_expired_{0};
  std::atomic<uint64_t> handovers_expired_{0};
  // The closes and hand-overs of a pair whose opening (opened_) the engine has not taken yet are
  // the new flow's: given now, an older flow still held on the pair (a lingering one, whose
  // entries a restart's reconciliation deleted, so the program opened the client's new
  // connection) would take them as its own and the new flow would never hear of them (found
  // established from its entries at its SYN retry, with its close lost: held until the idle
  // timer; or retrying its SYN while the client waits). They wait for the engine's next take.
  // Under closes_mutex_; index_opening() after each drain.
  void index_opening();
  bool opening(const sg_tc_flow_key& key) const noexcept;
  std::vector<sg_tc_flow_key> opening_;
  bool handshakes_ = false;  // gateway.tc_handshake in force
  bool opens_ = false;       // gateway.tc_open_flows in force
  std::atomic<bool> leased_{false};  // keep_opening published what the programs open flows with
  std::atomic<uint64_t> lease_renewed_ns_{0};
  std::atomic<uint64_t> lost_read_ns_{0};
  std::atomic<uint64_t> lost_{0};
  uint8_t announced_ws_ = 0;
  uint64_t published_secrets_ = 0;  // the generation of the secrets last published, 0: none
  std::vector<KernelOpened> opened_;    // reported, until the engine takes them (under closes_mutex_)
  std::atomic<bool> left_opened_{false};  // finish_start found reports of opened flows in the ring
  // The service addresses it applies to: reached through a route, as read at start (a service
  // that moves on or off this host later only costs a withdrawal, or misses the saving).
  std::vector<Address> handshake_services_;
  std::mutex closes_mutex_;
  std::vector<sg_tc_event> drained_;
  std::vector<Close> closes_;
  std::vector<HandOver> handovers_;
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
  void flow_freed(const FlowTuple& t, uint32_t generation) noexcept override {
    for (FlowObserver* o : observers_) o->flow_freed(t, generation);
  }
  void flow_established(const FlowTuple& t, const FlowTranslation& x, uint32_t generation) noexcept override {
    for (FlowObserver* o : observers_) o->flow_established(t, x, generation);
  }
  bool handshake_sent(const FlowTuple& t, const sg_handshake& h, uint32_t generation) noexcept override {
    bool taken = false;
    for (FlowObserver* o : observers_) taken = o->handshake_sent(t, h, generation) || taken;
    return taken;
  }

 private:
  std::vector<FlowObserver*> observers_;
};

}  // namespace syngate::tc
