// The tc programs' control plane. Built with or without the program: without it (no BPF tools at
// build time, or a tree without bpf/syngate_tc.bpf.c) Program's constructor refuses with the
// reason and the daemon runs with every segment through NFQUEUE.
#include "tc_program.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>

#include "bpf_util.hpp"
#include "flow_state.hpp"
#include "interfaces.hpp"
#include "tc_match.hpp"
#include "timer_clock.hpp"

#ifdef SYNGATE_HAVE_TC
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include "syngate/bpf/flow_key.hpp"
#include "syngate_tc.skel.h"
#endif

namespace syngate::tc {

std::string pin_dir(const std::string& instance, const std::string& bpf_dir) {
  // Named as the instance's state directory is (flow_state.hpp): instances in other network
  // namespaces never share a map. bpffs refuses names with a dot (EPERM): ':' stands for it, a
  // character no instance name holds.
  std::string name = instance;
  std::replace(name.begin(), name.end(), '.', ':');
  std::string dir = bpf_dir + "/syngate/" + name;
  try {
    dir += ":netns-" + std::to_string(gw::this_instance(instance).netns_inode);
  } catch (const std::exception&) {
  }
  return dir;
}

uint32_t flow_map_entries(uint32_t max_flows) noexcept { return std::max<uint32_t>(max_flows, 1024) * 2; }

sg_tc_flow_key flow_key(const FlowTuple& t) { return bpf::map_flow_key<sg_tc_flow_key>(t); }

FlowEntries flow_entries(const FlowTuple& c2s, const FlowTranslation& t, uint32_t generation, bool egress) {
  FlowEntries e;
  e.to_server_key = flow_key(c2s);
  e.to_client_key = flow_key(c2s.reversed());
  sg_tc_flow_entries(&t.shifts, t.delta, t.tsoff, t.timestamps, generation, &e.to_server, &e.to_client);
  if (egress) {
    e.to_server.options |= SG_TC_OPT_EGRESS;
    e.to_client.options |= SG_TC_OPT_EGRESS;
  }
  if (t.client_fin) {
    // As the program records a FIN it translates: the client's later segments are the engine's.
    e.to_server.closing = SG_TC_SEEN_FIN;
    e.to_server.fin_seq = t.client_fin_seq;
  }
  return e;
}

bool punts_both_ways(const sg_tc_flow& to_server, const sg_tc_flow& to_client) noexcept {
  return ((to_server.closing | to_client.closing) & (SG_TC_SEEN_RST | SG_TC_CLOSED_BY_ENGINE)) != 0;
}

bool punts_client_segments(const sg_tc_flow& to_server, const sg_tc_flow& to_client) noexcept {
  return (to_server.closing & SG_TC_SEEN_FIN) != 0 || punts_both_ways(to_server, to_client);
}

bool previous_connections_entries(const sg_tc_flow& to_server, const sg_tc_flow& to_client,
                                  uint32_t generation) noexcept {
  return generation != 0 && punts_client_segments(to_server, to_client) &&
         sg_seq_before(to_server.generation, generation);
}

bool same_translation(const FlowEntries& w, const sg_tc_flow& a, const sg_tc_flow& b) noexcept {
  const auto same = [](const sg_tc_flow& x, const sg_tc_flow& y) {
    return x.delta == y.delta && x.tsoff == y.tsoff && x.direction == y.direction &&
           x.window_from == y.window_from && x.window_to == y.window_to &&
           (x.options & ~SG_TC_OPT_EGRESS) == (y.options & ~SG_TC_OPT_EGRESS);
  };
  return same(w.to_server, a) && same(w.to_client, b);
}

KernelRecord kernel_record(const sg_tc_flow& e) noexcept {
  KernelRecord r;
  r.has_record = (e.seen & SG_TC_SEEN_RECORD) != 0;
  r.has_tsval = (e.seen & SG_TC_SEEN_TSVAL) != 0;
  r.last_ns = e.last_ns;
  r.sender_next = e.sender_next;
  r.acked = e.acked;
  r.window_bytes = e.window_bytes;
  r.newest_tsval = e.newest_tsval;
  r.fin = (e.closing & SG_TC_SEEN_FIN) != 0;
  r.fin_seq = e.fin_seq;
  r.acked_peer_fin = (e.seen & SG_TC_SEEN_PEER_FIN_ACKED) != 0;
  r.has_last_ack = (e.seen & SG_TC_SEEN_LAST_ACK) != 0;
  r.last_ack = e.last_ack;
  r.punting = e.closing != 0;
  return r;
}

bool make_pin_dirs(const std::string& dir) {
  for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    const std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return false;
    if (pos == std::string::npos) return true;
  }
}

bool on_bpffs(const std::string& dir) {
  std::string path = dir;
  while (path.size() > 1 && access(path.c_str(), F_OK) != 0) {
    const size_t slash = path.find_last_of('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
  struct statfs fs{};
  return statfs(path.c_str(), &fs) == 0 && fs.f_type == BPF_FS_MAGIC;
}

namespace {

constexpr const char* kFlowsPin = "/sg_tc_flows";
// Pinned beside the flow map, so that what the programs did while no process ran (a kill -9, the
// gap of a restart) reaches the next process: the reports it had not read yet (the flows the
// programs opened, handed over and saw close) and the records for SYN-ACKs still to come.
constexpr const char* kEventsPin = "/sg_tc_events";
constexpr const char* kHandshakesPin = "/sg_tc_handshakes";

void remove_map_pins(const std::string& dir) noexcept {
  for (const char* name : {kFlowsPin, kEventsPin, kHandshakesPin}) unlink((dir + name).c_str());
}

void remove_pins(const std::string& dir) noexcept {
  if (dir.empty()) return;
  remove_map_pins(dir);
  unlink((dir + "/" + kMatchPinName).c_str());  // the OUTPUT match (tc_match.hpp): its rule keeps it
  rmdir(dir.c_str());
}

}  // namespace

#ifdef SYNGATE_HAVE_TC

bool available() noexcept { return true; }

struct Program::Impl {
  syngate_tc* skel = nullptr;
  ring_buffer* events = nullptr;  // sg_tc_events' reader (null: none could be made; closes wait for the sweep)
  std::vector<sg_tc_event>* target = nullptr;  // where take_events puts what it reads
  mutable std::mutex mutex;
  std::vector<std::pair<int, bool>> attached;  // ifindex, egress too
  int flows_fd() const { return bpf_map__fd(skel->maps.sg_tc_flows); }
};

namespace {

bpf_tc_hook hook_of(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook h{};
  h.sz = sizeof h;
  h.ifindex = ifindex;
  h.attach_point = point;
  return h;
}

// Our filter on a hook: one handle and priority, so a restart replaces, detaches or finds it.
bpf_tc_opts our_filter() {
  bpf_tc_opts o{};
  o.sz = sizeof o;
  o.handle = kFilterHandle;
  o.priority = kFilterPriority;
  return o;
}

const char* point_name(bpf_tc_attach_point point) { return point == BPF_TC_INGRESS ? "ingress" : "egress"; }

// True when a failed detach only says there was nothing to remove: no filter of ours (ENOENT),
// no clsact qdisc at all (EINVAL, with the kernel's "Parent Qdisc doesn't exists": the usual case
// at start, on every interface nobody attached to), or the interface itself gone.
bool nothing_there(int err, const std::string& libbpf_log) {
  if (err == -ENOENT || err == -ENODEV) return true;
  return err == -EINVAL && libbpf_log.find("Parent Qdisc doesn") != std::string::npos;
}

// Removes our filter from one hook. 0: removed; -ENOENT: there was none (nothing logged, since
// start and `rules down` probe every interface); another error: logged, with libbpf's message
// (which libbpf would otherwise print to stderr, the expected ones included).
int detach_one(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook h = hook_of(ifindex, point);
  bpf_tc_opts o = our_filter();
  int err = 0;
  std::string log;
  {
    bpf::LibbpfLog capture;
    err = bpf_tc_detach(&h, &o);
    log = capture.text();
  }
  if (err == 0) return 0;
  if (nothing_there(err, log)) return -ENOENT;
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  char name[IF_NAMESIZE] = {};
  spdlog::warn("tc: cannot remove the {} filter from {}: {}{}{}", point_name(point),
               if_indextoname(static_cast<unsigned>(ifindex), name) ? name : std::to_string(ifindex),
               bpf::errno_text(err), log.empty() ? "" : "; ", log);
  return err;
}

int attach_one(int ifindex, bpf_tc_attach_point point, int prog_fd) {
  bpf_tc_hook h = hook_of(ifindex, point);
  int created = 0;
  {
    bpf::LibbpfLog quiet;  // "exclusivity flag on" when clsact exists already: expected, not news
    created = bpf_tc_hook_create(&h);  // the clsact qdisc, shared with others: never removed
  }
  if (created != 0 && created != -EEXIST) return created;
  bpf_tc_opts o = our_filter();
  o.prog_fd = prog_fd;
  o.flags = BPF_TC_F_REPLACE;  // a dead syngate's filter is replaced in place, never doubled
  return bpf_tc_attach(&h, &o);
}

// The flow map of the filters a dead syngate left on this namespace's interfaces (tc filters
// outlive their process, and keep their map alive): an fd for it, or -1. Where no pin kept the map
// (no bpffs at gateway.bpf_dir), this is how a restart still finds what the programs recorded
// during the gap (activity, FINs, RSTs). Found through the kernel: the filter's program id, the
// program's map ids, the map named as ours.
int left_flow_map() noexcept {
  uint32_t prog_id = 0;
  struct if_nameindex* list = if_nameindex();
  for (struct if_nameindex* i = list; list && i->if_index != 0 && prog_id == 0; ++i) {
    for (const bpf_tc_attach_point point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
      bpf_tc_hook h = hook_of(static_cast<int>(i->if_index), point);
      bpf_tc_opts o = our_filter();
      bpf::LibbpfLog quiet;  // no clsact or no filter: the usual answer, not news
      if (bpf_tc_query(&h, &o) == 0 && o.prog_id != 0) {
        prog_id = o.prog_id;
        break;
      }
    }
  }
  if (list) if_freenameindex(list);
  if (prog_id == 0) return -1;
  const int prog = bpf_prog_get_fd_by_id(prog_id);
  if (prog < 0) return -1;
  std::array<uint32_t, 16> map_ids{};
  bpf_prog_info info{};
  info.nr_map_ids = map_ids.size();
  info.map_ids = reinterpret_cast<uint64_t>(map_ids.data());
  uint32_t len = sizeof info;
  const int got = bpf_obj_get_info_by_fd(prog, &info, &len);
  close(prog);
  if (got != 0) return -1;
  for (uint32_t n = 0; n < std::min<uint32_t>(info.nr_map_ids, map_ids.size()); ++n) {
    const int map = bpf_map_get_fd_by_id(map_ids[n]);
    if (map < 0) continue;
    bpf_map_info m{};
    uint32_t mlen = sizeof m;
    if (bpf_obj_get_info_by_fd(map, &m, &mlen) == 0 && std::string_view(m.name) == "sg_tc_flows") return map;
    close(map);
  }
  return -1;
}

// Whether an existing map is the flow map this build would create: libbpf's reuse_fd adopts the
// map's own definition without comparing (a pinned map gets the comparison, not this), and a
// map of another size or layout must not be taken over.
bool fits(int fd, const bpf_map* want) {
  bpf_map_info m{};
  uint32_t len = sizeof m;
  if (bpf_obj_get_info_by_fd(fd, &m, &len) != 0) return false;
  return m.type == static_cast<uint32_t>(bpf_map__type(want)) && m.key_size == bpf_map__key_size(want) &&
         m.value_size == bpf_map__value_size(want) && m.max_entries == bpf_map__max_entries(want) &&
         m.map_flags == bpf_map__map_flags(want);
}

// `reuse_fd` >= 0: that map becomes the flow map if it fits (-EINVAL if not). With `pins` (a
// directory on a bpffs, or empty) the flow map, the event ring and the handshake records are
// pinned there, those an earlier run pinned reused (libbpf compares their definitions).
syngate_tc* open_and_load(uint32_t max_entries, const std::string& pins, int reuse_fd, const Placement& at, int* err,
                          std::string* log) {
  bpf::LibbpfLog capture;
  syngate_tc* skel = syngate_tc__open();
  *err = skel ? 0 : -errno;
  if (skel) {
    skel->rodata->sg_tc_router = at.router;
    skel->rodata->sg_tc_forward = at.router && at.forward;
    skel->rodata->sg_tc_answer_synacks = at.router && at.forward && at.synacks;
    skel->rodata->sg_tc_open_flows = at.router && at.forward && at.synacks && at.open_flows;
    skel->rodata->sg_tc_keep_early = at.router && at.forward && at.synacks && at.early_data;
    bpf_map__set_max_entries(skel->maps.sg_tc_flows, max_entries);
    bpf_map__set_max_entries(skel->maps.sg_tc_handshakes, max_entries / 2 > 0 ? max_entries / 2 : 1);
    if (!pins.empty()) {
      bpf_map__set_pin_path(skel->maps.sg_tc_flows, (pins + kFlowsPin).c_str());
      bpf_map__set_pin_path(skel->maps.sg_tc_events, (pins + kEventsPin).c_str());
      bpf_map__set_pin_path(skel->maps.sg_tc_handshakes, (pins + kHandshakesPin).c_str());
    }
    if (reuse_fd >= 0) {
      *err = fits(reuse_fd, skel->maps.sg_tc_flows) ? bpf_map__reuse_fd(skel->maps.sg_tc_flows, reuse_fd) : -EINVAL;
    }
    if (*err == 0) *err = syngate_tc__load(skel);
    if (*err != 0) {
      syngate_tc__destroy(skel);
      skel = nullptr;
    }
  }
  *log = capture.text();
  return skel;
}

}  // namespace

Program::Program(uint32_t max_flows, const std::string& dir, const Placement& at) : impl_(std::make_unique<Impl>()) {
  const uint32_t entries = flow_map_entries(max_flows);
  std::string pins;  // dir when the maps are pinned there
  if (!dir.empty()) {
    if (!on_bpffs(dir)) {
      spdlog::warn("tc: {} is not on a bpffs: the flow map is not pinned", dir);
    } else if (make_pin_dirs(dir)) {
      pins = dir;
    } else {
      spdlog::warn("tc: cannot create {} ({}): the flow map is not pinned", dir, std::strerror(errno));
    }
  }
  int err = 0;
  std::string log;
  // No pinned map to take over: the one the filters of a dead syngate still hold, if any.
  int left = -1;
  if (pins.empty() || access((pins + kFlowsPin).c_str(), F_OK) != 0) {
    left = left_flow_map();
    if (left >= 0) spdlog::info("tc: taking over the flow map the filters of an earlier run hold (no pinned map)");
  }
  syngate_tc* skel = open_and_load(entries, pins, left, at, &err, &log);
  if (!skel && left >= 0) {
    spdlog::info("tc: the earlier run's flow map cannot be taken over ({}); starting a new one",
                 err == -EINVAL ? "another size or layout" : bpf::errno_text(err));
    skel = open_and_load(entries, pins, -1, at, &err, &log);
  }
  if (left >= 0) close(left);  // the skeleton holds its own reference
  if (!skel && !pins.empty()) {
    // A map pinned by another layout or size cannot be reused: its flows are handed over again
    // from the flow tables anyway.
    spdlog::info("tc: the maps pinned in {} cannot be reused ({}); replacing them", pins, bpf::errno_text(err));
    remove_map_pins(pins);
    skel = open_and_load(entries, pins, -1, at, &err, &log);
  }
  if (!skel) throw std::runtime_error(bpf::load_failure("tc programs", err, log));
  impl_->skel = skel;
  impl_->events = ring_buffer__new(
      bpf_map__fd(skel->maps.sg_tc_events),
      [](void* ctx, void* data, size_t size) {
        auto* out = static_cast<Impl*>(ctx)->target;
        if (!out || size != sizeof(sg_tc_event)) return 0;
        sg_tc_event e;
        std::memcpy(&e, data, sizeof e);
        try {
          out->push_back(e);
        } catch (const std::bad_alloc&) {
          return -ENOMEM;  // the rest stays in the ring for the next drain
        }
        return 0;
      },
      impl_.get(), nullptr);
  if (!impl_->events) {
    spdlog::warn("tc: cannot read the programs' close events ({}): closes are merged at the idle timers",
                 std::strerror(errno));
  }
}

Program::~Program() {
  if (impl_->events) ring_buffer__free(impl_->events);
  if (impl_->skel) syngate_tc__destroy(impl_->skel);
}

void Program::take_events(std::vector<sg_tc_event>& out) noexcept {
  if (!impl_->events) return;
  impl_->target = &out;
  ring_buffer__consume(impl_->events);
  impl_->target = nullptr;
}

bool Program::attach(int ifindex, bool egress, std::string* why) {
  std::lock_guard lock(impl_->mutex);
  int err = attach_one(ifindex, BPF_TC_INGRESS, bpf_program__fd(impl_->skel->progs.sg_tc_ingress));
  if (err == 0 && egress) {
    err = attach_one(ifindex, BPF_TC_EGRESS, bpf_program__fd(impl_->skel->progs.sg_tc_egress));
    if (err != 0) detach_one(ifindex, BPF_TC_INGRESS);
  } else if (err == 0) {
    // An earlier run's egress filter would go on translating with the offsets it was loaded on.
    detach_one(ifindex, BPF_TC_EGRESS);
  }
  if (err != 0) {
    if (why) *why = bpf::errno_text(err);
    return false;
  }
  std::erase_if(impl_->attached, [&](const auto& a) { return a.first == ifindex; });
  impl_->attached.emplace_back(ifindex, egress);
  return true;
}

void Program::detach(int ifindex) noexcept {
  std::lock_guard lock(impl_->mutex);
  for (const auto& [index, egress] : impl_->attached) {
    if (index != ifindex) continue;
    detach_one(index, BPF_TC_INGRESS);
    if (egress) detach_one(index, BPF_TC_EGRESS);
  }
  std::erase_if(impl_->attached, [&](const auto& a) { return a.first == ifindex; });
}

void Program::detach_all() noexcept {
  std::lock_guard lock(impl_->mutex);
  for (const auto& [ifindex, egress] : impl_->attached) {
    detach_one(ifindex, BPF_TC_INGRESS);
    if (egress) detach_one(ifindex, BPF_TC_EGRESS);
  }
  impl_->attached.clear();
}

std::vector<int> Program::attached() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<int> out;
  for (const auto& a : impl_->attached) out.push_back(a.first);
  return out;
}

bool Program::write_flow(const FlowTuple& c2s, const FlowTranslation& t, uint32_t generation) noexcept {
  const FlowEntries e = flow_entries(c2s, t, generation, egress_entries_);
  if (!write_key(e.to_client_key, e.to_client)) return false;
  if (!write_key(e.to_server_key, e.to_server)) {
    delete_key(e.to_client_key);
    return false;
  }
  return true;
}

bool Program::read_flow(const FlowTuple& c2s, sg_tc_flow& to_server, sg_tc_flow& to_client) const noexcept {
  uint32_t found = 0;
  if (read_flow_in_one_call(c2s, to_server, to_client, found)) {
    return found == (SG_TC_READ_TO_SERVER | SG_TC_READ_TO_CLIENT);
  }
  const int fd = impl_->flows_fd();
  const sg_tc_flow_key a = flow_key(c2s);
  const sg_tc_flow_key b = flow_key(c2s.reversed());
  return bpf_map_lookup_elem(fd, &a, &to_server) == 0 && bpf_map_lookup_elem(fd, &b, &to_client) == 0;
}

bool Program::read_flow_in_one_call(const FlowTuple& c2s, sg_tc_flow& to_server, sg_tc_flow& to_client,
                                    uint32_t& found) const noexcept {
  sg_tc_read args{};
  args.key = flow_key(c2s);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof args);
  if (bpf_prog_test_run_opts(bpf_program__fd(impl_->skel->progs.sg_tc_read), &opts) != 0) return false;
  found = args.found;
  if (found & SG_TC_READ_TO_SERVER) to_server = args.to_server;
  if (found & SG_TC_READ_TO_CLIENT) to_client = args.to_client;
  return true;
}

int Program::release(const FlowTuple& c2s, uint32_t generation, sg_tc_release_op op) noexcept {
  sg_tc_release args{};
  args.key = flow_key(c2s);
  args.generation = generation;
  args.op = op;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof args);
  if (bpf_prog_test_run_opts(bpf_program__fd(impl_->skel->progs.sg_tc_release), &opts) != 0) return -1;
  return static_cast<int>(opts.retval);
}

uint64_t Program::release_many(std::span<const sg_tc_release> releases, std::span<int> results) noexcept {
  uint64_t failed = 0;
  const bool report = results.size() == releases.size();
  const int single = bpf_program__fd(impl_->skel->progs.sg_tc_release);
  const int many = bpf_program__fd(impl_->skel->progs.sg_tc_release_many);
  sg_tc_releases batch{};
  for (size_t at = 0; at < releases.size(); at += SG_TC_RELEASES_MAX) {
    const size_t n = std::min<size_t>(SG_TC_RELEASES_MAX, releases.size() - at);
    batch.count = static_cast<uint32_t>(n);
    std::copy_n(releases.begin() + static_cast<std::ptrdiff_t>(at), n, batch.ops);
    // A syscall program's context is written back where it came from (ctx_out is refused).
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &batch, .ctx_size_in = sizeof batch);
    if (bpf_prog_test_run_opts(many, &opts) == 0) {
      if (report) std::copy_n(batch.results, n, results.begin() + static_cast<std::ptrdiff_t>(at));
      continue;
    }
    for (size_t i = 0; i < n; ++i) {  // the batch could not run: each on its own
      sg_tc_release one = batch.ops[i];
      LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = &one, .ctx_size_in = sizeof one);
      const bool ran = bpf_prog_test_run_opts(single, &o) == 0;
      if (!ran) ++failed;
      if (report) results[at + i] = ran ? static_cast<int>(o.retval) : -1;
    }
  }
  return failed;
}

namespace {
template <class Fn>
void walk_flows(int fd, Fn&& fn) {
  bpf::walk_map<sg_tc_flow_key, sg_tc_flow>(fd, std::forward<Fn>(fn));
}
}  // namespace

// The keys are collected by one walk, then deleted. Deleting as a get_next_key walk goes would
// restart every step from the first key, and the kernel finds that key by scanning the buckets
// from the start: quadratic, 7-9 s of a core for the 30k entries 15k lingering connections leave
// in a map of 2^19 buckets, minutes for a full table, all while stop() holds the gateway. Entries
// written meanwhile are taken by the next round.
uint64_t Program::clear_flows() noexcept {
  const int fd = impl_->flows_fd();
  uint64_t n = 0;
  std::vector<sg_tc_flow_key> keys;
  for (int round = 0; round < 4; ++round) {
    keys.clear();
    try {
      walk_flows(fd, [&](const sg_tc_flow_key& k, const sg_tc_flow&) { keys.push_back(k); });
    } catch (const std::bad_alloc&) {
      // Out of memory: what was collected goes, and the next round walks again.
    }
    if (keys.empty()) break;
    n += bpf::delete_keys(fd, keys);
  }
  return n;
}

void Program::delete_key(const sg_tc_flow_key& key) noexcept { bpf_map_delete_elem(impl_->flows_fd(), &key); }

// BPF_ANY: an entry of an earlier flow on the tuple (a restart's, or one whose free was lost) is
// replaced whole, kernel-kept fields included.
bool Program::write_key(const sg_tc_flow_key& key, const sg_tc_flow& value) noexcept {
  return bpf_map_update_elem(impl_->flows_fd(), &key, &value, BPF_ANY) == 0;
}

bool Program::write_handshake(const sg_tc_flow_key& key, const sg_tc_handshake& value) noexcept {
  return bpf_map_update_elem(bpf_map__fd(impl_->skel->maps.sg_tc_handshakes), &key, &value, BPF_ANY) == 0;
}

// ENOENT: the program took the record (or the LRU map let it go, which the engine survives: the
// SYN-ACK then reaches it). Any other failure leaves the record where the program may still take
// it: false as well, so the engine waits for the report rather than answer twice.
bool Program::delete_handshake(const sg_tc_flow_key& key) noexcept {
  return bpf_map_delete_elem(bpf_map__fd(impl_->skel->maps.sg_tc_handshakes), &key) == 0;
}

std::vector<sg_tc_flow_key> Program::handshake_keys() const {
  std::vector<sg_tc_flow_key> keys;
  bpf::walk_map<sg_tc_flow_key, sg_tc_handshake>(bpf_map__fd(impl_->skel->maps.sg_tc_handshakes),
                                            [&](const sg_tc_flow_key& k, const sg_tc_handshake&) { keys.push_back(k); });
  return keys;
}

bool Program::set_cookie_secrets(const CookieSecrets& secrets, uint32_t max_age) noexcept {
  sg_cookie_secrets v{};
  std::memcpy(v.current, secrets.current.data(), 16);
  std::memcpy(v.previous, secrets.previous.data(), 16);
  v.current_since = secrets.current_since;
  v.max_age = std::min<uint32_t>(max_age, SG_COOKIE_MAX_AGE);
  const uint32_t zero = 0;
  uint32_t slot = 0;
  const int slot_fd = bpf_map__fd(impl_->skel->maps.sg_tc_key_slot);
  if (bpf_map_lookup_elem(slot_fd, &zero, &slot) != 0) return false;
  slot = (slot ^ 1u) & (SG_TC_KEY_SLOTS - 1);
  return bpf_map_update_elem(bpf_map__fd(impl_->skel->maps.sg_tc_keys), &slot, &v, BPF_ANY) == 0 &&
         bpf_map_update_elem(slot_fd, &zero, &slot, BPF_ANY) == 0;
}

bool Program::set_open_services(const std::vector<std::pair<Service, uint8_t>>& services) noexcept {
  const int fd = bpf_map__fd(impl_->skel->maps.sg_tc_services);
  std::vector<sg_tc_service_key> keys;
  bool ok = true;
  for (const auto& [service, flags] : services) {
    sg_tc_service_key k{};
    std::memcpy(k.addr, service.address.bytes.data(), 16);
    k.port_be = htons(service.port);
    keys.push_back(k);
    ok = bpf_map_update_elem(fd, &k, &flags, BPF_ANY) == 0 && ok;
  }
  // Then the services no longer listed go.
  sg_tc_service_key key{}, next{};
  std::vector<sg_tc_service_key> stale;
  for (const void* at = nullptr; bpf_map_get_next_key(fd, at, &next) == 0; at = &key) {
    key = next;
    if (std::none_of(keys.begin(), keys.end(), [&](const sg_tc_service_key& k) { return std::memcmp(&k, &key, sizeof k) == 0; })) {
      stale.push_back(key);
    }
  }
  for (const sg_tc_service_key& k : stale) bpf_map_delete_elem(fd, &k);
  return ok;
}

bool Program::set_open_until(uint64_t until_ns, uint8_t announced_ws) noexcept {
  const sg_tc_open_config c{until_ns, 0, announced_ws, {}};
  const uint32_t zero = 0;
  return bpf_map_update_elem(bpf_map__fd(impl_->skel->maps.sg_tc_open), &zero, &c, BPF_ANY) == 0;
}

void Program::set_generation(uint32_t generation) noexcept {
  __atomic_store_n(&impl_->skel->bss->sg_tc_generation, generation, __ATOMIC_RELAXED);
}

uint32_t Program::next_generation() noexcept {
  uint32_t g = __atomic_add_fetch(&impl_->skel->bss->sg_tc_generation, 1, __ATOMIC_RELAXED);
  if (g == 0) g = __atomic_add_fetch(&impl_->skel->bss->sg_tc_generation, 1, __ATOMIC_RELAXED);
  return g;
}

void Program::raise_generation(uint32_t at_least) noexcept {
  uint32_t* counter = &impl_->skel->bss->sg_tc_generation;
  uint32_t now = __atomic_load_n(counter, __ATOMIC_RELAXED);
  while (sg_seq_after(at_least, now) &&
         !__atomic_compare_exchange_n(counter, &now, at_least, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

uint32_t Program::top_generation() const {
  uint32_t top = 0;
  for (const auto& [key, entry] : entries()) top = std::max(top, entry.generation);
  bpf::walk_map<sg_tc_flow_key, sg_tc_handshake>(bpf_map__fd(impl_->skel->maps.sg_tc_handshakes),
                                            [&](const sg_tc_flow_key&, const sg_tc_handshake& r) {
                                              top = std::max(top, r.generation);
                                            });
  return top;
}

std::vector<std::pair<sg_tc_flow_key, sg_tc_flow>> Program::entries() const {
  std::vector<std::pair<sg_tc_flow_key, sg_tc_flow>> out;
  walk_flows(impl_->flows_fd(), [&](const sg_tc_flow_key& k, const sg_tc_flow& v) { out.emplace_back(k, v); });
  return out;
}

uint64_t Program::flow_entries_count() const noexcept {
  return bpf::count_map<sg_tc_flow_key, sg_tc_flow>(impl_->flows_fd());
}

int Program::flows_map_fd() const noexcept { return impl_->flows_fd(); }

int Program::handshakes_map_fd() const noexcept { return bpf_map__fd(impl_->skel->maps.sg_tc_handshakes); }

int Program::early_map_fd() const noexcept { return bpf_map__fd(impl_->skel->maps.sg_tc_early); }

void Program::set_fib_trusted(bool trusted) noexcept {
  // The .data section is mapped into this process: the programs read the byte at their next packet.
  __atomic_store_n(&impl_->skel->data->sg_tc_fib_trusted, static_cast<uint8_t>(trusted), __ATOMIC_RELAXED);
}

Counters Program::counters() const {
  Counters out{};
  const std::vector<uint64_t> sums = bpf::per_cpu_sums(bpf_map__fd(impl_->skel->maps.sg_tc_counters), out.size());
  std::copy_n(sums.begin(), std::min(sums.size(), out.size()), out.begin());
  return out;
}

std::vector<std::string> remove_everywhere(const std::string& dir) noexcept {
  std::vector<std::string> removed;
  struct if_nameindex* list = if_nameindex();
  for (struct if_nameindex* i = list; list && i->if_index != 0; ++i) {
    const int index = static_cast<int>(i->if_index);
    if (detach_one(index, BPF_TC_INGRESS) == 0) removed.push_back(std::string(i->if_name) + " ingress");
    if (detach_one(index, BPF_TC_EGRESS) == 0) removed.push_back(std::string(i->if_name) + " egress");
  }
  if (list) if_freenameindex(list);
  if (!dir.empty() && access((dir + kFlowsPin).c_str(), F_OK) == 0) removed.push_back(dir + kFlowsPin);
  remove_pins(dir);
  return removed;
}

PinnedFlows::PinnedFlows(const std::string& pin_dir) {
  const std::string path = pin_dir + kFlowsPin;
  LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
  fd_ = bpf_obj_get_opts(path.c_str(), &opts);
  if (fd_ < 0) {
    const int e = errno;
    throw std::runtime_error(path + ": " + std::strerror(e) +
                             (e == ENOENT && !on_bpffs(pin_dir) ? " (not on a bpffs: gateway.bpf_dir)" : ""));
  }
}
PinnedFlows::~PinnedFlows() {
  if (fd_ >= 0) close(fd_);
}
std::optional<sg_tc_flow> PinnedFlows::entry(const FlowTuple& sender_to_receiver) const noexcept {
  const sg_tc_flow_key k = flow_key(sender_to_receiver);
  sg_tc_flow v{};
  if (bpf_map_lookup_elem(fd_, &k, &v) != 0) return std::nullopt;
  return v;
}

#else  // !SYNGATE_HAVE_TC

PinnedFlows::PinnedFlows(const std::string&) {
  throw std::runtime_error("this build has no tc programs");
}
PinnedFlows::~PinnedFlows() = default;
std::optional<sg_tc_flow> PinnedFlows::entry(const FlowTuple&) const noexcept { return std::nullopt; }

bool available() noexcept { return false; }

struct Program::Impl {};

Program::Program(uint32_t, const std::string&, const Placement&) {
  throw std::runtime_error("this build has no tc programs (built without the BPF tools or bpf/syngate_tc.bpf.c)");
}
Program::~Program() = default;
bool Program::attach(int, bool, std::string* why) {
  if (why) *why = "no tc programs in this build";
  return false;
}
void Program::detach_all() noexcept {}
void Program::detach(int) noexcept {}
std::vector<int> Program::attached() const { return {}; }
bool Program::write_flow(const FlowTuple&, const FlowTranslation&, uint32_t) noexcept { return false; }
int Program::release(const FlowTuple&, uint32_t, sg_tc_release_op) noexcept { return -1; }
uint64_t Program::release_many(std::span<const sg_tc_release> releases, std::span<int>) noexcept {
  return releases.size();
}
bool Program::read_flow(const FlowTuple&, sg_tc_flow&, sg_tc_flow&) const noexcept { return false; }
bool Program::read_flow_in_one_call(const FlowTuple&, sg_tc_flow&, sg_tc_flow&, uint32_t&) const noexcept {
  return false;
}
uint64_t Program::clear_flows() noexcept { return 0; }
void Program::delete_key(const sg_tc_flow_key&) noexcept {}
bool Program::write_key(const sg_tc_flow_key&, const sg_tc_flow&) noexcept { return false; }
bool Program::write_handshake(const sg_tc_flow_key&, const sg_tc_handshake&) noexcept { return false; }
bool Program::delete_handshake(const sg_tc_flow_key&) noexcept { return true; }
std::vector<sg_tc_flow_key> Program::handshake_keys() const { return {}; }
bool Program::set_cookie_secrets(const CookieSecrets&, uint32_t) noexcept { return false; }
bool Program::set_open_services(const std::vector<std::pair<Service, uint8_t>>&) noexcept { return false; }
bool Program::set_open_until(uint64_t, uint8_t) noexcept { return false; }
void Program::set_generation(uint32_t) noexcept {}
uint32_t Program::next_generation() noexcept { return 1; }
void Program::raise_generation(uint32_t) noexcept {}
uint32_t Program::top_generation() const { return 0; }
std::vector<std::pair<sg_tc_flow_key, sg_tc_flow>> Program::entries() const { return {}; }
void Program::take_events(std::vector<sg_tc_event>&) noexcept {}
uint64_t Program::flow_entries_count() const noexcept { return 0; }
Counters Program::counters() const { return {}; }
int Program::flows_map_fd() const noexcept { return -1; }
int Program::handshakes_map_fd() const noexcept { return -1; }
int Program::early_map_fd() const noexcept { return -1; }
void Program::set_fib_trusted(bool) noexcept {}
std::vector<std::string> remove_everywhere(const std::string& dir) noexcept {
  remove_pins(dir);
  return {};
}

#endif

// ---- KernelPath -------------------------------------------------------------------------------

namespace {
// Per thread: each flow worker publishes its own hand-overs after its own flush.
thread_local std::vector<PendingEntry> pending_to_client;

// Per thread: the flows this worker published that may still have segments queued before that.
thread_local OvertakeWatch overtake_watch;
}  // namespace

std::unique_ptr<KernelPath> KernelPath::start(const gw::GatewayConfig& config, uint32_t max_flows) {
  const std::string pins = pin_dir(config.instance, config.bpf_dir);
  if (!config.kernel_path_on()) {
    // A kernel path a dead syngate left must not keep translating with its old offsets.
    for (const std::string& r : remove_everywhere(pins)) spdlog::info("tc: removed {} left by an earlier run", r);
    spdlog::info("tc: kernel path off by configuration; every segment of a proxied flow crosses NFQUEUE");
    return nullptr;
  }
  // Router and both modes forward: the ingress programs ask the FIB first, and send segments on
  // themselves where the FIB's answer is the kernel's (interfaces.hpp, fib_use). Loaded able to,
  // as configured; whether they may is set below and follows the policy rules while syngate runs.
  const bool router = config.mode != gw::Mode::Host;
  std::unique_ptr<Program> program;
  try {
    // Flows opened in the kernel go to the one engine there is: with several flow queues the
    // kernel's queue hash (random per boot) decides which engine a flow's packets reach.
    const bool open_flows = config.tc_open_flows && config.flow_queues == 1;
    program = std::make_unique<Program>(max_flows, pins,
                                        Placement{router, router && config.tc_forward, config.tc_handshake, open_flows,
                                                  config.tc_early_data});
  } catch (const std::exception& e) {
    remove_everywhere(pins);
    spdlog::warn("tc: kernel path unavailable, every segment crosses NFQUEUE: {}", e.what());
    return nullptr;
  }
  // Every flow's end runs the release program (tc_abi.h, sg_tc_release): one that cannot run would
  // leave every entry in the map. Tried once on a tuple that holds nothing.
  if (program->release(FlowTuple{}, 0, SG_TC_RELEASE_PUNT) < 0) {
    const std::string why = bpf::errno_text(errno);
    program.reset();
    remove_everywhere(pins);
    spdlog::warn("tc: kernel path unavailable, every segment crosses NFQUEUE: its release program cannot run ({})",
                 why);
    return nullptr;
  }
  // Untrusted until the policy rules are read (follow_fwmark_rules, below): the filters go on
  // before that, and a reused map's flows may have segments at once.
  program->set_fib_trusted(false);
  // Entries a dead syngate left (a reused pinned map) stay until finish_start() has reconciled
  // them with the restored flows.
  const uint32_t top_generation = program->top_generation();
  const auto left = program->entries();
  if (!left.empty()) spdlog::info("tc: the flow map holds {} entries of an earlier run; reconciling", left.size());
  std::vector<Address> addresses;
  std::vector<Service> services = gw::to_engine_services(config.services);
  for (const Service& s : services) {
    if (std::find(addresses.begin(), addresses.end(), s.address) == addresses.end()) addresses.push_back(s.address);
  }
  gw::InterfacePlan plan;
  std::vector<Address> routed_services;  // whose SYN-ACKs reach a tc ingress: not this host's own
  bool local_service = false;
  try {
    const gw::RoutingFacts facts = gw::read_routing_facts(addresses);
    for (const gw::ServiceRouteFact& f : facts.services) {
      if (f.local) local_service = true;
      else routed_services.push_back(f.address);
    }
    plan = config.xdp_interfaces.empty() ? gw::plan_interfaces(facts, config.mode)
                                         : gw::plan_listed(facts, config.xdp_interfaces);
  } catch (const std::exception& e) {
    remove_everywhere(pins);
    spdlog::warn("tc: cannot read links and routes ({}); kernel path off, every segment crosses NFQUEUE", e.what());
    return nullptr;
  }
  // Egress translates what host mode's OUTPUT match lets past the queue: what this host's own
  // services send. A router's forwarded segments are translated at the ingress they arrive on, so
  // both mode with no service on this host would only pay egress's look at every segment leaving
  // (a tenth of a microsecond each, every cookie SYN-ACK included) unless an earlier run's entries
  // still send a local service's replies there. The entries say which (SG_TC_OPT_EGRESS): an
  // address made local later, without a restart, has its replies queued, never left untranslated.
  const bool earlier_egress = std::any_of(left.begin(), left.end(), [](const auto& e) {
    return (e.second.options & SG_TC_OPT_EGRESS) != 0;
  });
  const bool egress =
      config.mode == gw::Mode::Host || (config.mode == gw::Mode::Both && (local_service || earlier_egress));
  program->set_egress_entries(egress);
  if (config.mode == gw::Mode::Both && !egress) {
    spdlog::info("tc: no service on this host: no egress filter (forwarded segments are translated at ingress)");
  }
  for (const gw::InterfaceChoice& c : plan.interfaces) {
    std::string why;
    if (program->attach(c.ifindex, egress, &why)) {
      spdlog::info("tc: translating established flows on {} (ingress{})", c.name, egress ? " and egress" : "");
    } else {
      spdlog::warn("tc: cannot attach to {}: {}", c.name, why);
    }
  }
  if (program->attached().empty()) {
    program.reset();
    remove_everywhere(pins);
    spdlog::warn("tc: attached nowhere; kernel path off, every segment crosses NFQUEUE");
    return nullptr;
  }
  check_output_match(config, *program);
  std::unique_ptr<KernelPath> path(new KernelPath(std::move(program), pins));
  path->program_->set_generation(top_generation);
  path->addresses_ = addresses;
  path->mode_ = config.mode;
  path->listed_ = config.xdp_interfaces;
  path->egress_ = egress;
  path->tc_forward_ = config.tc_forward;
  // The backend's SYN-ACK answered in the kernel: a router's ingress sees it, and sends the
  // client's window update on itself. Services on this host (host mode, or both mode's own) answer
  // through the local stack, past every tc ingress.
  path->handshakes_ = config.tc_handshake && router && config.tc_forward && !routed_services.empty();
  path->handshake_services_ = std::move(routed_services);
  if (config.tc_handshake && !path->handshakes_) {
    // On by default: a host's own services are the normal case here, not a mistake.
    spdlog::info("tc: backend SYN-ACKs stay the engine's (gateway.tc_handshake needs mode router or both, "
                 "tc_forward and a service behind a route)");
  } else if (path->handshakes_) {
    spdlog::info("tc: the ingress answers the SYN-ACKs of {} routed service address(es) (gateway.tc_handshake){}",
                 path->handshake_services_.size(),
                 config.tc_early_data ? ", a request that overtakes one kept for it (gateway.tc_early_data)" : "");
  }
  path->opens_ = path->handshakes_ && config.tc_open_flows && config.flow_queues == 1;
  if (config.tc_open_flows && path->handshakes_ && !path->opens_) {
    // On by default: several flow queues are a choice, not a mistake.
    spdlog::info("tc: cookie ACKs stay the engine's (gateway.tc_open_flows needs flow_queues = 1: the kernel's "
                 "queue hash decides which engine a flow's packets reach)");
  } else if (path->opens_) {
    path->announced_ws_ = config.engine.announced_wscale;
    spdlog::info("tc: the ingress takes the cookie ACKs of services behind a route itself (gateway.tc_open_flows)");
  }
  // The trust the rules of now allow, set before the first segment is handed over (finish_start).
  path->follow_fwmark_rules();
  for (const gw::InterfaceChoice& c : plan.interfaces) path->applied_.push_back(c.ifindex);
  try {
    path->watcher_ = std::make_unique<gw::LinkWatcher>();
  } catch (const std::exception& e) {
    spdlog::warn("tc: cannot follow link, route or rule changes ({}); the filters stay where they are", e.what());
  }
  return path;
}

void KernelPath::follow_fwmark_rules() noexcept {
  if (mode_ == gw::Mode::Host) return;
  std::string why;
  gw::FibUse now;
  try {
    now = gw::fib_use(mode_, tc_forward_, gw::read_fwmark_rules(), &why);
  } catch (const std::exception& e) {
    // Unknown rules: the safe side is the kernel's own forwarding.
    now = {};
    why = std::string("cannot read the policy routing rules (") + e.what() +
          "): the kernel forwards the translated segments and judges them";
  }
  if (fib_use_ == now) return;
  program_->set_fib_trusted(now.judge);
  if (!now.judge) {
    spdlog::warn("tc: {}", why);
  } else if (fib_use_) {
    spdlog::info("tc: no policy rule selects by firewall mark now: {}", now.forward
                                                                            ? "tc forwards translated segments again"
                                                                            : "tc judges segments by the FIB again");
  }
  fib_use_ = now;
}

gw::InterfacePlan KernelPath::plan() const {
  const gw::RoutingFacts facts = gw::read_routing_facts(addresses_);
  return listed_.empty() ? gw::plan_interfaces(facts, mode_) : gw::plan_listed(facts, listed_);
}

void KernelPath::follow_interfaces() noexcept {
  if (!watcher_ || !watcher_->changed()) return;
  follow_fwmark_rules();
  try {
    apply(plan());
  } catch (const std::exception& e) {
    spdlog::warn("tc: links or routes changed, but cannot read them: {}; filters stay as they are", e.what());
  }
}

void KernelPath::apply(const gw::InterfacePlan& next) {
  const std::vector<int> attached = program_->attached();
  for (const int index : attached) {
    const bool needed = std::any_of(next.interfaces.begin(), next.interfaces.end(),
                                    [&](const gw::InterfaceChoice& c) { return c.ifindex == index; });
    if (needed) continue;
    program_->detach(index);
    spdlog::info("tc: off ifindex {}: gone, down, or no longer picked by the interface rule", index);
  }
  std::vector<int> applied;
  for (const gw::InterfaceChoice& c : next.interfaces) {
    applied.push_back(c.ifindex);
    // Attached again even where it was: a link that went down and up, or was made anew under
    // the same index, may have lost its clsact qdisc; replacing the filter costs one netlink
    // exchange and never doubles it.
    const bool known = std::find(applied_.begin(), applied_.end(), c.ifindex) != applied_.end();
    std::string why;
    if (program_->attach(c.ifindex, egress_, &why)) {
      if (!known) spdlog::info("tc: translating established flows on {} (ingress{})", c.name, egress_ ? " and egress" : "");
    } else {
      spdlog::warn("tc: cannot attach to {}: {}", c.name, why);
    }
  }
  applied_ = std::move(applied);
}

namespace {
bool key_less(const sg_tc_flow_key& a, const sg_tc_flow_key& b) noexcept { return std::memcmp(&a, &b, sizeof a) < 0; }

const sg_tc_flow* find_entry(const std::vector<std::pair<sg_tc_flow_key, sg_tc_flow>>& sorted,
                             const sg_tc_flow_key& k) noexcept {
  const auto it = std::lower_bound(sorted.begin(), sorted.end(), k,
                                   [](const auto& e, const sg_tc_flow_key& key) { return key_less(e.first, key); });
  return it != sorted.end() && !key_less(k, it->first) ? &it->second : nullptr;
}
}  // namespace

void KernelPath::finish_start(uint64_t merged) {
  std::sort(claimed_.begin(), claimed_.end(), key_less);
  std::sort(restored_.begin(), restored_.end(), key_less);
  // The reports the last process had not read (the ring is pinned): the flows its programs opened
  // that no saved table holds are the engine's at its first turn, and keep their entries.
  uint64_t pending = 0;
  {
    std::lock_guard lock(closes_mutex_);
    drain_events();
    try {
      index_opening();
    } catch (const std::bad_alloc&) {
      opening_.clear();  // their entries go as stale: those connections fail, as before the ring was pinned
    }
    pending = opened_.size();
    left_opened_.store(pending > 0, std::memory_order_release);
  }
  const auto restored = [this](const sg_tc_flow_key& client_to_server) {
    return std::binary_search(restored_.begin(), restored_.end(), client_to_server, key_less);
  };
  uint64_t stale = 0, punting = 0, opened = 0;
  for (auto [k, entry] : program_->entries()) {
    if (std::binary_search(claimed_.begin(), claimed_.end(), k, key_less)) continue;
    const sg_tc_flow_key client_to_server =
        entry.direction == SG_TC_TO_SERVER ? k : flow_key(bpf::map_flow_tuple(k).reversed());
    if (opening(client_to_server)) {
      ++opened;
      continue;
    }
    // A restored flow that is closing or lingering keeps its entries, made to punt: a client
    // reconnecting on the pair then reaches the engine, as before the restart, rather than
    // meeting no entry and being opened by the programs while the engine still holds the old flow.
    if (restored(client_to_server)) {
      if (entry.closing == 0) {
        entry.closing = SG_TC_CLOSED_BY_ENGINE;
        program_->write_key(k, entry);
      }
      ++punting;
      continue;
    }
    program_->delete_key(k);
    ++stale;
  }
  // Handshake records (pinned too) of flows neither restored nor reported opened: the map is an
  // LRU one, but a record left from a dead process must not answer a SYN-ACK no engine awaits.
  uint64_t orphans = 0;
  try {
    for (const sg_tc_flow_key& k : program_->handshake_keys()) {
      const sg_tc_flow_key client_to_server = flow_key(bpf::map_flow_tuple(k).reversed());
      if (opening(client_to_server) || restored(client_to_server)) continue;
      orphans += program_->delete_handshake(k) ? 1 : 0;
    }
  } catch (const std::bad_alloc&) {
    // Left to the LRU: such a record answers only a SYN-ACK of its own tuple.
  }
  if (kept_ + stale + punting + opened + pending + orphans > 0) {
    spdlog::info("tc: flow map reconciled with the restored flows: {} kept with what the programs recorded ({} "
                 "merged into their flows), {} written anew, {} entries of closing flows kept (punting), {} of "
                 "flows the programs opened after the last save kept ({} reports not read), {} stale entries "
                 "and {} handshake records deleted",
                 kept_, merged, rewritten_, punting, opened, pending, stale, orphans);
  }
  claimed_.clear();
  claimed_.shrink_to_fit();
  restored_.clear();
  restored_.shrink_to_fit();
  starting_.store(false);
}

KernelPath::~KernelPath() = default;

void KernelPath::stop() noexcept {
  program_->detach_all();
  write_releases();  // the last turn's frees, if a worker stopped before its hook ran
  try {
    at_stop_ = program_->entries();
    std::sort(at_stop_.begin(), at_stop_.end(), [](const auto& a, const auto& b) { return key_less(a.first, b.first); });
  } catch (const std::exception&) {
    at_stop_.clear();  // out of memory: the flows keep the engine's own view
  }
  stopped_.store(true, std::memory_order_release);
  // Host mode's OUTPUT match (its rule outlives the process) must not let a reply past the queue
  // once no tc egress translates it: an empty map matches nothing.
  program_->clear_flows();
  remove_pins(pin_dir_);
}

void KernelPath::flow_established(const FlowTuple& t, const FlowTranslation& x, uint32_t generation) noexcept {
  if (starting_.load(std::memory_order_relaxed)) {
    // A restored flow (finish_start): its entries stay when they translate as it does.
    const FlowEntries want = flow_entries(t, x, 0, program_->egress_entries());
    try {
      claimed_.push_back(want.to_server_key);
      claimed_.push_back(want.to_client_key);
    } catch (const std::bad_alloc&) {
    }
    sg_tc_flow a{}, b{};
    if (program_->read_flow(t, a, b) && same_translation(want, a, b)) {
      ++kept_;
      handed_over_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ++rewritten_;  // none there, or another translation (the entries of an older flow on the tuple)
  }
  if (starting_.load(std::memory_order_relaxed)) {
    // Restored flows: no worker runs yet, nothing of the step is still to be sent.
    if (program_->write_flow(t, x, generation)) {
      handed_over_.fetch_add(1, std::memory_order_relaxed);
    } else {
      write_failures_.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  const FlowEntries e = flow_entries(t, x, generation, program_->egress_entries());
  // The client's segments go to the kernel now; the server's once the step's packets are out
  // (publish_pending). An entry an earlier flow on the tuple left (a lost free) must not
  // translate the server's segments meanwhile.
  program_->delete_key(e.to_client_key);
  // A flow the map cannot take stays the engine's: its segments miss and go to NFQUEUE.
  if (!program_->write_key(e.to_server_key, e.to_server)) {
    write_failures_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    pending_to_client.push_back({this, t, e.to_client_key, e.to_client});
  } catch (const std::bad_alloc&) {
    publish_one({this, t, e.to_client_key, e.to_client});
  }
}

void KernelPath::publish_one(const PendingEntry& p) noexcept {
  if (program_->write_key(p.key, p.value)) {
    handed_over_.fetch_add(1, std::memory_order_relaxed);
    overtake_watch.published(this, p.flow, gw::timer_clock_ns());
  } else {
    program_->delete_key(flow_key(p.flow));  // the engine keeps the flow, both ways
    write_failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

void KernelPath::publish_pending() noexcept {
  for (const PendingEntry& p : pending_to_client) {
    if (p.owner == this) publish_one(p);
  }
  std::erase_if(pending_to_client, [this](const PendingEntry& p) { return p.owner == this; });
}

void KernelPath::turn_received(bool took_everything) noexcept { overtake_watch.received(took_everything); }
void KernelPath::turn_done() noexcept {
  const uint64_t now = gw::timer_clock_ns();
  overtake_watch.handled(now);
  renew_lease(now);
}

// The flow worker's turn renews the lease, at most every kLeaseRenewNs: a process that dies
// leaves programs that stop opening flows within kLeaseNs, before a restart can attach new ones
// (flows they opened meanwhile would exist only in the kernel, their reports in a dead ring).
void KernelPath::renew_lease(uint64_t now_ns) noexcept {
  if (!opens_ || !leased_.load(std::memory_order_acquire)) return;
  if (now_ns - lease_renewed_ns_.load(std::memory_order_relaxed) < kLeaseRenewNs) return;
  lease_renewed_ns_.store(now_ns, std::memory_order_relaxed);
  program_->set_open_until(now_ns + kLeaseNs, announced_ws_);
}
bool KernelPath::may_be_overtaken(const FlowTuple& t) noexcept { return overtake_watch.watching(this, t); }

uint64_t KernelPath::reports_lost() noexcept {
  const uint64_t now = gw::timer_clock_ns();
  if (now - lost_read_ns_.load(std::memory_order_relaxed) < kLostReadNs || stopped_.load(std::memory_order_acquire)) {
    return lost_.load(std::memory_order_relaxed);
  }
  lost_read_ns_.store(now, std::memory_order_relaxed);
  try {
    const Counters c = program_->counters();
    lost_.store(c[SG_TC_EVENT_LOST], std::memory_order_relaxed);
  } catch (const std::exception&) {
    // Unread this time: the next look reads again.
  }
  return lost_.load(std::memory_order_relaxed);
}

size_t OvertakeWatch::bucket(const FlowTuple& flow) noexcept {
  uint32_t low_src = 0;
  std::memcpy(&low_src, flow.src.bytes.data() + 12, sizeof low_src);  // IPv4: the whole address
  const uint32_t mixed = (low_src ^ (uint32_t{flow.sport} << 16 | flow.dport)) * 0x9e3779b1u;
  return mixed >> (32 - 12);
}
static_assert(OvertakeWatch::kMax < UINT16_MAX, "a bucket's count must hold every watched flow");

void OvertakeWatch::erase_where(auto&& pred) noexcept {
  std::erase_if(flows_, [&](const Watched& w) {
    if (!pred(w)) return false;
    --watched_in_bucket_[bucket(w.flow)];
    return true;
  });
}

void OvertakeWatch::published(const void* owner, const FlowTuple& flow, uint64_t now_ns) noexcept {
  try {
    if (flows_.size() >= kMax) {
      --watched_in_bucket_[bucket(flows_.front().flow)];
      flows_.erase(flows_.begin());
    }
    flows_.push_back({owner, flow, epoch_, now_ns});
    ++watched_in_bucket_[bucket(flow)];
  } catch (const std::bad_alloc&) {
  }
}

void OvertakeWatch::received(bool took_everything) noexcept {
  if (took_everything) forget_before_ = ++epoch_;
}

void OvertakeWatch::handled(uint64_t now_ns) noexcept {
  if (forget_before_ == 0) return;
  // Flows kept for their minimum time go at a later turn that empties the queue. flows_ is in
  // publication order (epoch and time never go back along it), so those that go are a prefix: the
  // walk stops at the first that stays instead of reading all (this runs at every such turn).
  size_t done = 0;
  while (done < flows_.size() && flows_[done].epoch < forget_before_ &&
         now_ns - flows_[done].published_ns >= kMinWatchNs) {
    --watched_in_bucket_[bucket(flows_[done].flow)];
    ++done;
  }
  flows_.erase(flows_.begin(), flows_.begin() + static_cast<std::ptrdiff_t>(done));
  forget_before_ = 0;
}

bool OvertakeWatch::watching(const void* owner, const FlowTuple& flow) const noexcept {
  if (watched_in_bucket_[bucket(flow)] == 0) return false;
  return std::any_of(flows_.begin(), flows_.end(), [&](const Watched& w) { return w.owner == owner && w.flow == flow; });
}

void OvertakeWatch::forget(const void* owner, const FlowTuple& flow) noexcept {
  if (watched_in_bucket_[bucket(flow)] == 0) return;  // every freed flow comes here
  erase_where([&](const Watched& w) { return w.owner == owner && w.flow == flow; });
}

namespace {
// A hand-over of this thread whose server-to-client entry waits for publish_pending; the engine
// calls flow_freed and punt on the same thread, so they find it here.
std::vector<PendingEntry>::iterator pending_of(KernelPath* owner, const FlowTuple& t) {
  return std::find_if(pending_to_client.begin(), pending_to_client.end(),
                      [&](const PendingEntry& p) { return p.owner == owner && p.flow == t; });
}
}  // namespace

void KernelPath::flow_created(const FlowTuple& t) noexcept {
  if (starting_.load(std::memory_order_relaxed)) {
    try {
      restored_.push_back(flow_key(t));
    } catch (const std::bad_alloc&) {
      // Its entries, if it is closing, go as stale: a reconnection on its pair may then open in
      // the kernel, which the engine handles as port reuse.
    }
    return;
  }
}

// A free waits for the turn's write_releases, except where no turn may follow (start, stop) and
// for a flow without a generation (from before generations: its release would take a newer
// connection's entries as its own).
void KernelPath::flow_freed(const FlowTuple& t, uint32_t generation) noexcept {
  if (generation == 0 || starting_.load(std::memory_order_relaxed) || stopped_.load(std::memory_order_acquire)) {
    release_flow(t, generation, SG_TC_RELEASE_FREE);
    return;
  }
  forget(t);
  sg_tc_release r{};
  r.key = flow_key(t);
  r.generation = generation;
  r.op = SG_TC_RELEASE_FREE;
  std::lock_guard lock(releases_mutex_);
  try {
    pending_releases_.push_back(r);
    any_release_.store(true, std::memory_order_release);
  } catch (const std::bad_alloc&) {
    released(program_->release(t, generation, SG_TC_RELEASE_FREE));  // no room to wait: at once
  }
}

void KernelPath::write_releases() noexcept {
  if (!any_release_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(releases_mutex_);
  any_release_.store(false, std::memory_order_relaxed);
  const uint64_t failed = program_->release_many(pending_releases_);
  if (failed != 0) release_failures_.fetch_add(failed, std::memory_order_relaxed);
  pending_releases_.clear();  // its capacity kept for the next turn's
}

// A flow the engine no longer holds (freed, or refused): what this thread still keeps of it goes,
// and its entries through the release program.
void KernelPath::release_flow(const FlowTuple& t, uint32_t generation, sg_tc_release_op op) noexcept {
  forget(t);
  released(program_->release(t, generation, op));
}

void KernelPath::forget(const FlowTuple& t) noexcept {
  if (const auto it = pending_of(this, t); it != pending_to_client.end()) pending_to_client.erase(it);
  overtake_watch.forget(this, t);
}

void KernelPath::released(int outcome) noexcept {
  if (outcome < 0) release_failures_.fetch_add(1, std::memory_order_relaxed);
}

uint32_t KernelPath::new_generation() noexcept { return program_->next_generation(); }

void KernelPath::generation_at_least(uint32_t generation) noexcept { program_->raise_generation(generation); }

void KernelPath::punt(const FlowTuple& t, uint32_t generation) noexcept {
  // Closing before its server entry was live: written first, so that the punt marks both.
  if (const auto it = pending_of(this, t); it != pending_to_client.end()) {
    const PendingEntry p = *it;
    pending_to_client.erase(it);
    publish_one(p);
  }
  released(program_->release(t, generation, SG_TC_RELEASE_PUNT));
}

bool KernelPath::read(const FlowTuple& t, KernelFlowView& out) noexcept {
  sg_tc_flow to_server{}, to_client{};
  if (stopped_.load(std::memory_order_acquire)) {
    const sg_tc_flow* a = find_entry(at_stop_, flow_key(t));
    const sg_tc_flow* b = find_entry(at_stop_, flow_key(t.reversed()));
    if (!a || !b) return false;
    to_server = *a;
    to_client = *b;
  } else if (!program_->read_flow(t, to_server, to_client)) {
    return false;
  }
  out.to_server = kernel_record(to_server);
  out.to_client = kernel_record(to_client);
  out.to_server.punting = punts_client_segments(to_server, to_client);
  out.to_client.punting = punts_both_ways(to_server, to_client);
  return true;
}

// The ring's records since the last drain, sorted into the closes and hand-overs the engines
// take. Under closes_mutex_.
uint64_t KernelPath::drain_events() noexcept {
  drained_.clear();
  if (!stopped_.load(std::memory_order_acquire)) program_->take_events(drained_);
  const uint64_t now = gw::timer_clock_ns();
  try {
    for (const sg_tc_event& e : drained_) {
      if (e.kind == SG_TC_EVENT_CLOSE) closes_.push_back({e.key, e.close_generation, now});
      else if (e.kind == SG_TC_EVENT_HANDED_OVER) handovers_.push_back({e.key, e.synack, now});
      else if (e.kind == SG_TC_EVENT_OPENED) {
        opened_.push_back({bpf::map_flow_tuple(e.key), e.opened.hs, e.opened.mss, e.opened.room_for_timestamps != 0,
                           e.opened.generation, e.opened.over_closed != 0});
      }
    }
  } catch (const std::bad_alloc&) {
    closes_.clear();  // those flows are merged at their idle timers
  }
  return now;
}

void KernelPath::index_opening() {
  opening_.clear();
  for (const KernelOpened& k : opened_) opening_.push_back(flow_key(k.flow));
  std::sort(opening_.begin(), opening_.end(), key_less);
}

bool KernelPath::opening(const sg_tc_flow_key& key) const noexcept {
  return !opening_.empty() && std::binary_search(opening_.begin(), opening_.end(), key, key_less);
}

void KernelPath::take_closing(std::vector<FlowTuple>& out, const std::function<bool(const KernelClose&)>& mine) noexcept {
  std::lock_guard lock(closes_mutex_);
  const uint64_t now = drain_events();
  try {
    index_opening();
    const size_t first = out.size();
    std::erase_if(closes_, [&](const Close& c) {
      if (opening(c.key)) return false;
      const FlowTuple t = bpf::map_flow_tuple(c.key);
      if (mine(KernelClose{t, c.generation})) {
        out.push_back(t);
        return true;
      }
      return expire(c.drained_ns, now, closes_expired_);
    });
    // Up to four reports a connection (each FIN and its ack): one merge each.
    auto fresh = out.begin() + static_cast<std::ptrdiff_t>(first);
    std::sort(fresh, out.end(), [](const FlowTuple& a, const FlowTuple& b) { return key_less(flow_key(a), flow_key(b)); });
    out.erase(std::unique(fresh, out.end()), out.end());
  } catch (const std::bad_alloc&) {
    closes_.clear();  // those flows are merged at their idle timers
  }
}

void KernelPath::take_handed_over(std::vector<KernelHandOver>& out,
                                  const std::function<bool(const KernelHandOver&)>& mine) noexcept {
  std::lock_guard lock(closes_mutex_);
  const uint64_t now = drain_events();
  try {
    index_opening();
    std::erase_if(handovers_, [&](const HandOver& h) {
      if (opening(h.key)) return false;
      const KernelHandOver k{bpf::map_flow_tuple(h.key), h.synack};
      if (mine(k)) {
        out.push_back(k);
        handed_over_.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
      // A flow no engine holds (freed meanwhile): its entries went with it.
      return expire(h.drained_ns, now, handovers_expired_);
    });
  } catch (const std::bad_alloc&) {
    handovers_.clear();  // those flows' SYN retries find the backend established; they end at its RST
  }
}

void KernelPath::take_opened(std::vector<KernelOpened>& out) noexcept {
  // Without tc_open_flows in force only the reports a previous process's programs left (once).
  if (!opens_ && !left_opened_.exchange(false, std::memory_order_acq_rel)) return;
  std::lock_guard lock(closes_mutex_);
  drain_events();
  try {
    out.insert(out.end(), opened_.begin(), opened_.end());
  } catch (const std::bad_alloc&) {
    // Those flows' SYN-ACKs reach the engine, which finds no flow: their clients retry.
  }
  opened_.clear();
}

void KernelPath::discard(const FlowTuple& t, uint32_t generation) noexcept {
  release_flow(t, generation, SG_TC_RELEASE_REFUSED);
}

void KernelPath::keep_opening(const std::vector<Service>& services, const CookieSecrets& secrets,
                              uint64_t secrets_generation, uint32_t cookie_max_age, const BackendFacts* facts,
                              uint32_t now_ms, uint64_t now_ns) noexcept {
  if (!opens_ || stopped_.load(std::memory_order_acquire)) return;
  if (secrets_generation != published_secrets_) {
    if (!program_->set_cookie_secrets(secrets, cookie_max_age)) {
      spdlog::error("tc: new cookie secrets not published ({}); cookie ACKs stay the engine's", bpf::errno_text(errno));
      program_->set_open_until(0, announced_ws_);
      return;
    }
    published_secrets_ = secrets_generation;
  }
  std::vector<std::pair<Service, uint8_t>> listed;
  try {
    for (const Service& s : services) {
      // A service on this host answers through the local stack, past every tc ingress.
      if (std::find(handshake_services_.begin(), handshake_services_.end(), s.address) == handshake_services_.end()) {
        continue;
      }
      const uint32_t known = facts ? facts->service_flags(s, now_ms) : 0;
      listed.emplace_back(s, static_cast<uint8_t>(SG_TC_SERVICE_OPENS | known));
    }
  } catch (const std::bad_alloc&) {
    listed.clear();  // none opened in the kernel until the next tick
  }
  // The first lease; the flow worker's turns renew it (renew_lease).
  if (!program_->set_open_services(listed) || !program_->set_open_until(now_ns + kLeaseNs, announced_ws_)) {
    spdlog::error("tc: cookie ACK settings not published ({})", bpf::errno_text(errno));
    return;
  }
  leased_.store(true, std::memory_order_release);
}

bool KernelPath::handshake_sent(const FlowTuple& t, const sg_handshake& h, uint32_t generation) noexcept {
  if (!handshakes_ || stopped_.load(std::memory_order_acquire)) return false;
  if (std::find(handshake_services_.begin(), handshake_services_.end(), t.dst) == handshake_services_.end()) return false;
  const sg_tc_handshake record{h, generation, 0, {}};  // no route: the client's first segment asks the FIB
  return program_->write_handshake(flow_key(t.reversed()), record);
}

std::optional<FlowTranslation> KernelPath::handed_over_translation(const FlowTuple& t, uint32_t generation) noexcept {
  sg_tc_flow up{}, down{};
  // Whatever gateway.tc_handshake says now: the entries may be an earlier run's answer.
  if (stopped_.load(std::memory_order_acquire) || !program_->read_flow(t, up, down)) return std::nullopt;
  if (previous_connections_entries(up, down, generation)) return std::nullopt;
  FlowTranslation x;
  x.delta = up.delta;
  x.timestamps = (up.options & SG_TC_OPT_TIMESTAMPS) != 0;
  x.tsoff = x.timestamps ? up.tsoff : 0;
  x.shifts = {up.window_from, up.window_to, down.window_from, down.window_to};
  return x;
}

bool KernelPath::withdraw_handshake(const FlowTuple& t) noexcept {
  if (stopped_.load(std::memory_order_acquire)) return true;  // detached: no program takes it now
  if (before_withdraw_) before_withdraw_();
  return program_->delete_handshake(flow_key(t.reversed()));
}

std::string KernelPath::render_metrics() const {
  std::ostringstream out;
  out << "# HELP syngate_tc_enabled Whether the tc programs translate established flows (the kernel path).\n"
         "# TYPE syngate_tc_enabled gauge\nsyngate_tc_enabled "
      << (program_->attached().empty() ? 0 : 1) << "\n";
  out << "# HELP syngate_tc_packets_total Packets the tc programs saw on flows they know, by outcome (summed "
         "over CPUs); translated is the segments translated in the kernel.\n"
         "# TYPE syngate_tc_packets_total counter\n";
  const Counters c = program_->counters();
  for (size_t i = 0; i < c.size(); ++i) {
    out << "syngate_tc_packets_total{outcome=\"" << kCounterNames[i] << "\"} " << c[i] << "\n";
  }
  // A walk of the map (one system call per entry): a scrape's cost, not the packets'.
  out << "# HELP syngate_tc_flow_entries Entries in the tc flow map (two per handed-over flow).\n"
         "# TYPE syngate_tc_flow_entries gauge\nsyngate_tc_flow_entries "
      << program_->flow_entries_count() << "\n";
  out << "# HELP syngate_tc_flows_handed_over_total Established flows handed to the tc programs.\n"
         "# TYPE syngate_tc_flows_handed_over_total counter\nsyngate_tc_flows_handed_over_total "
      << handed_over_.load() << "\n";
  out << "# HELP syngate_tc_flow_write_failures_total Hand-overs the flow map could not take (the engine "
         "keeps those flows).\n# TYPE syngate_tc_flow_write_failures_total counter\n"
         "syngate_tc_flow_write_failures_total "
      << write_failures_.load() << "\n";
  out << "# HELP syngate_tc_reports_expired_total The programs' reports of a flow's close or hand-over that no "
         "engine took (its flow freed meanwhile, or a report lost to the engine: that flow is then merged at "
         "its idle timer or its SYN retry).\n# TYPE syngate_tc_reports_expired_total counter\n"
         "syngate_tc_reports_expired_total{report=\"close\"} "
      << closes_expired_.load() << "\nsyngate_tc_reports_expired_total{report=\"hand_over\"} "
      << handovers_expired_.load() << "\n";
  out << "# HELP syngate_tc_release_failures_total Flow ends, punts and refusals whose release program "
         "could not run (their entries stay in the map until a restart).\n"
         "# TYPE syngate_tc_release_failures_total counter\nsyngate_tc_release_failures_total "
      << release_failures_.load() << "\n";
  return out.str();
}

}  // namespace syngate::tc
