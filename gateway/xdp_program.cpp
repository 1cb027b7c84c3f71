// The XDP program's loader (see xdp_program.hpp). Built with or without the program: without it
// (no clang, bpftool or libbpf at build time) the constructor refuses with the reason and the
// daemon runs as an NFQUEUE gateway only.
#include "xdp_program.hpp"

#include <algorithm>
#include <atomic>
#include <string_view>
#include <unordered_map>
#include <new>
#include <mutex>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#ifdef SYNGATE_HAVE_XDP
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <spdlog/spdlog.h>

#include "bpf_util.hpp"
#include "interfaces.hpp"
#include "syngate/bpf/flow_key.hpp"
#include "syngate/bpf/xdp_abi.h"
#include "syngate_xdp.skel.h"
#endif

namespace syngate::xdp {

#ifdef SYNGATE_HAVE_XDP

namespace {

sg_xdp_flow_key flow_key(const FlowTuple& t) { return bpf::map_flow_key<sg_xdp_flow_key>(t); }

sg_xdp_service_key service_key(const Service& s) {
  sg_xdp_service_key k{};
  std::memcpy(k.addr, s.address.bytes.data(), 16);
  k.port_be = htons(s.port);
  return k;
}

sg_xdp_service_addr service_addr(const Address& address) {
  sg_xdp_service_addr a{};
  std::memcpy(a.addr, address.bytes.data(), 16);
  return a;
}

}  // namespace

bool available() noexcept { return true; }

struct Program::Impl {
  syngate_xdp* skel = nullptr;
  uint32_t key_slot = 0;  // the slot the program reads
  bool keys_written = false;
  std::vector<Service> services;
  std::vector<sg_xdp_prefix_key> prefixes;
  // Flow workers add and remove flows from their own threads. The map holds a key while any
  // table holds the flow; the holders past the first (a flow imported by two workers) are
  // counted here, so the usual flow costs no lookup. The adds and removes wait in `changed`,
  // each key's net count, until write_flows makes them through the sg_xdp_write_flows program,
  // up to 32 changes a system call: a flow that came and went cost two of its own before (with
  // the programs opening the flows, half the flow worker's bpf() calls a connection).
  std::mutex flows_mutex;
  struct KeyHash {
    size_t operator()(const sg_xdp_flow_key& k) const noexcept {
      return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(&k), sizeof k));
    }
  };
  struct KeyEqual {
    bool operator()(const sg_xdp_flow_key& a, const sg_xdp_flow_key& b) const noexcept {
      return std::memcmp(&a, &b, sizeof a) == 0;
    }
  };
  std::unordered_map<sg_xdp_flow_key, uint32_t, KeyHash, KeyEqual> extra_holders;
  std::unordered_map<sg_xdp_flow_key, int32_t, KeyHash, KeyEqual> changed;  // adds minus removes
  std::atomic<bool> any_changed{false};  // write_flows skips the lock on the usual empty turn
  std::atomic<uint64_t> unwritten{0};    // adds that found no memory to wait in
  std::vector<sg_xdp_flow_write> writes;  // write_flows's, kept for its capacity
  int map_fd(const bpf_map* m) const { return bpf_map__fd(m); }
  int flows_fd() const { return map_fd(skel->maps.sg_flows); }

  // One removal at once (no memory to note it): a holder past the first goes from the count, the
  // last takes the key. Under flows_mutex.
  void remove_now(const sg_xdp_flow_key& k) noexcept {
    if (const auto it = extra_holders.find(k); it != extra_holders.end()) {
      if (--it->second == 0) extra_holders.erase(it);
      return;
    }
    bpf_map_delete_elem(flows_fd(), &k);
  }
  // write_flows's changes a map call each, with no memory for its batch. Returns the adds the
  // map refused. Under flows_mutex.
  uint64_t write_each() noexcept {
    uint64_t refused = 0;
    for (const auto& [k, net] : changed) {
      for (int32_t n = net; n < 0; ++n) remove_now(k);
      if (net > 0 && !took_add(k, static_cast<uint32_t>(net), add_now(k))) ++refused;
    }
    return refused;
  }
  // One add (BPF_NOEXIST): 0 or -errno, as the write program reports it.
  int add_now(const sg_xdp_flow_key& k) noexcept {
    const uint32_t present = 1;  // the program only asks whether the key is there
    return bpf_map_update_elem(flows_fd(), &k, &present, BPF_NOEXIST) == 0 ? 0 : -errno;
  }
  // An add of a key whose net count since the last write is `net`, with the map's `result`: the
  // key written is one holder and the rest are holders past the first; a key another table's copy
  // holds gets them all. False when the map refused it (full, or the kernel short of memory).
  // Under flows_mutex.
  bool took_add(const sg_xdp_flow_key& k, uint32_t net, int result) noexcept {
    if (result == 0) {
      if (net > 1) add_holders(k, net - 1);
    } else if (result == -EEXIST) {
      add_holders(k, net);
    } else {
      return false;
    }
    return true;
  }
  // Under flows_mutex.
  void add_holders(const sg_xdp_flow_key& k, uint32_t n) noexcept {
    try {
      extra_holders[k] += n;
    } catch (const std::bad_alloc&) {
      // Uncounted: the first holder's removal then takes the key while this copy lives, and its
      // packets miss XDP's flow check and go the cookie way (the engine still has the flow).
    }
  }
  bpf::Links<Attachment> links;
};

Program::Program(uint32_t max_flows) : impl_(std::make_unique<Impl>()) {
  syngate_xdp* skel = nullptr;
  int err = 0;
  std::string log;
  {
    bpf::LibbpfLog capture;
    skel = syngate_xdp__open();
    err = skel ? 0 : -errno;
    if (skel) {
      bpf_map__set_max_entries(skel->maps.sg_flows, std::max<uint32_t>(max_flows, 1024));
      err = syngate_xdp__load(skel);
    }
    log = capture.text();
  }
  if (err != 0) {
    if (skel) syngate_xdp__destroy(skel);
    throw std::runtime_error(bpf::load_failure("XDP program", err, log));
  }
  impl_->skel = skel;
}

Program::~Program() {
  detach_all();
  if (impl_->skel) syngate_xdp__destroy(impl_->skel);
}

int Program::program_fd() const noexcept { return bpf_program__fd(impl_->skel->progs.syngate_xdp); }

void Program::configure(const Settings& s, bool ready) {
  sg_xdp_config c{};
  c.fixed_now_ns = s.fixed_now_ns;
  c.synack_window = s.synack_window;
  c.mss_v4 = s.mss_v4;
  c.mss_v6 = s.mss_v6;
  c.wscale = s.wscale;
  c.announce_ecn = s.announce_ecn ? 1 : 0;
  c.ready = ready ? 1 : 0;
  c.drop_no_flow = s.drop_no_flow ? 1 : 0;
  c.has_prefixes = s.has_prefixes ? 1 : 0;
  c.allow_list = s.allow_list ? 1 : 0;
  c.synack_limit = s.synack_limit_per_cpu;
  c.synack_address_limit = s.synack_limit_per_address;
  std::memcpy(c.budget_key, s.budget_key.data(), sizeof c.budget_key);
  const uint32_t zero = 0;
  if (bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_config), &zero, &c, BPF_ANY) != 0) {
    throw std::runtime_error("XDP settings map update failed: " + bpf::errno_text(errno));
  }
}

void Program::set_secrets(const CookieSecrets& secrets, uint32_t max_age) {
  sg_cookie_secrets v{};
  std::memcpy(v.current, secrets.current.data(), 16);
  std::memcpy(v.previous, secrets.previous.data(), 16);
  v.current_since = secrets.current_since;
  v.max_age = std::min<uint32_t>(max_age, SG_COOKIE_MAX_AGE);
  // The first write may go to the slot in use: nothing reads keys before `ready`.
  const uint32_t slot = impl_->keys_written ? (impl_->key_slot ^ 1u) : impl_->key_slot;
  if (bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_keys), &slot, &v, BPF_ANY) != 0) {
    throw std::runtime_error("XDP key map update failed: " + bpf::errno_text(errno));
  }
  const uint32_t zero = 0;
  if (bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_key_slot), &zero, &slot, BPF_ANY) != 0) {
    throw std::runtime_error("XDP key slot update failed: " + bpf::errno_text(errno));
  }
  impl_->key_slot = slot;
  impl_->keys_written = true;
}

void Program::set_services(const std::vector<Service>& services) {
  const int fd = impl_->map_fd(impl_->skel->maps.sg_services);
  const int addr_fd = impl_->map_fd(impl_->skel->maps.sg_service_addrs);
  const uint8_t one = SG_SERVICE_PROTECTED;
  auto hosts = [](const std::vector<Service>& list, const Address& a) {
    return std::any_of(list.begin(), list.end(), [&a](const Service& s) { return s.address == a; });
  };
  for (const Service& s : services) {
    const sg_xdp_service_key k = service_key(s);
    const sg_xdp_service_addr a = service_addr(s.address);
    if (bpf_map_update_elem(fd, &k, &one, BPF_ANY) != 0 || bpf_map_update_elem(addr_fd, &a, &one, BPF_ANY) != 0) {
      throw std::runtime_error("XDP service map update failed: " + bpf::errno_text(errno));
    }
  }
  for (const Service& old : impl_->services) {
    if (std::find(services.begin(), services.end(), old) != services.end()) continue;
    const sg_xdp_service_key k = service_key(old);
    bpf_map_delete_elem(fd, &k);
    if (!hosts(services, old.address)) {
      const sg_xdp_service_addr a = service_addr(old.address);
      bpf_map_delete_elem(addr_fd, &a);
    }
  }
  impl_->services = services;
}

bool Program::set_service_flags(const Service& service, uint8_t flags) noexcept {
  const sg_xdp_service_key k = service_key(service);
  return bpf_map_update_elem(impl_->map_fd(impl_->skel->maps.sg_services), &k, &flags, BPF_EXIST) == 0;
}

bool Program::set_kernel_flows(int flows_map_fd, int handshakes_map_fd) noexcept {
  const auto put = [](int outer, int inner) {
    const uint32_t zero = 0;
    if (inner < 0) return bpf_map_delete_elem(outer, &zero) == 0 || errno == ENOENT;
    return bpf_map_update_elem(outer, &zero, &inner, BPF_ANY) == 0;
  };
  // The records first: a flow's record comes before its entries, and goes after they are written.
  return put(impl_->map_fd(impl_->skel->maps.sg_kernel_handshakes), handshakes_map_fd) &&
         put(impl_->map_fd(impl_->skel->maps.sg_kernel_flows), flows_map_fd);
}

void Program::set_prefixes(const PrefixSet& prefixes) {
  const int fd = impl_->map_fd(impl_->skel->maps.sg_prefixes);
  std::vector<sg_xdp_prefix_key> keys;
  for (const PrefixSet::Entry& e : prefixes.entries()) {
    sg_xdp_prefix_key k{};
    k.prefixlen = sg_policy_key_length(e.prefix.length);
    k.family = e.prefix.v4 ? SG_POLICY_FAMILY_V4 : SG_POLICY_FAMILY_V6;
    std::memcpy(k.addr, e.prefix.address.bytes.data(), 16);
    const uint8_t value = e.value;
    if (bpf_map_update_elem(fd, &k, &value, BPF_ANY) != 0) {
      throw std::runtime_error("XDP policy map update failed: " + bpf::errno_text(errno));
    }
    keys.push_back(k);
  }
  for (const sg_xdp_prefix_key& old : impl_->prefixes) {
    const bool kept = std::any_of(keys.begin(), keys.end(), [&](const sg_xdp_prefix_key& k) {
      return k.prefixlen == old.prefixlen && k.family == old.family && std::memcmp(k.addr, old.addr, 16) == 0;
    });
    if (!kept) bpf_map_delete_elem(fd, &old);
  }
  impl_->prefixes = std::move(keys);
}

void Program::forget_proven_sources() {
  const int fd = impl_->map_fd(impl_->skel->maps.sg_proven);
  sg_xdp_proven_key key{}, next{};
  // Deleting while iterating restarts from the first key each time: the map only shrinks.
  while (bpf_map_get_next_key(fd, nullptr, &next) == 0) {
    key = next;
    if (bpf_map_delete_elem(fd, &key) != 0) break;
  }
}

// A copy of a flow that one worker imported but never sees packets for expires as idle there;
// removing it must not delete the key the live copy in another worker needs, whether or not a
// worker ever sees that flow's packets: the key goes with the last holder.
void Program::add_flow(const FlowTuple& t) noexcept {
  std::lock_guard lock(impl_->flows_mutex);
  try {
    ++impl_->changed[flow_key(t)];
    impl_->any_changed.store(true, std::memory_order_release);
  } catch (const std::bad_alloc&) {
    // Never written: its packets miss XDP's flow check and go the cookie way (the engine still
    // has the flow), as when the map is full.
    impl_->unwritten.fetch_add(1, std::memory_order_relaxed);
  }
}

void Program::remove_flow(const FlowTuple& t) noexcept {
  std::lock_guard lock(impl_->flows_mutex);
  try {
    --impl_->changed[flow_key(t)];
    impl_->any_changed.store(true, std::memory_order_release);
  } catch (const std::bad_alloc&) {
    impl_->remove_now(flow_key(t));
  }
}

// A key's net change is what its adds and removes since the last write come to, applied in any
// order: a flow freed and its pair's next connection created in one turn (a client's port
// reused) leave the key in place and cost nothing; one created and refused, likewise. (A removal
// past the last holder changes nothing, so a remove then an add of a key no table held would
// come to nothing instead of one holder: that needs a removal without its add, which only a
// failed write makes, and that flow is counted in the insert failures.)
uint64_t Program::write_flows() noexcept {
  if (!impl_->any_changed.load(std::memory_order_acquire)) return 0;
  std::lock_guard lock(impl_->flows_mutex);
  impl_->any_changed.store(false, std::memory_order_relaxed);
  Impl& m = *impl_;
  uint64_t failed = m.unwritten.exchange(0, std::memory_order_relaxed);
  // Removals first (a key that goes frees its slot for an add of this write), then the adds.
  auto& writes = m.writes;
  writes.clear();
  try {
    writes.reserve(m.changed.size());
  } catch (const std::bad_alloc&) {
    failed += m.write_each();
    m.changed.clear();
    return failed;
  }
  for (const auto& [k, net] : m.changed) {
    for (int32_t n = net; n < 0; ++n) {
      const auto it = m.extra_holders.find(k);
      if (it == m.extra_holders.end()) {
        writes.push_back({k, SG_XDP_FLOW_REMOVE, 0});  // within the capacity reserved
        break;  // the key goes once; any further removal is past the last holder
      }
      if (--it->second == 0) m.extra_holders.erase(it);
    }
  }
  for (const auto& [k, net] : m.changed) {
    if (net > 0) writes.push_back({k, SG_XDP_FLOW_ADD, 0});
  }
  sg_xdp_flow_writes batch;
  const int prog = bpf_program__fd(m.skel->progs.sg_xdp_write_flows);
  for (size_t at = 0; at < writes.size(); at += SG_XDP_FLOW_WRITES_MAX) {
    const size_t n = std::min<size_t>(SG_XDP_FLOW_WRITES_MAX, writes.size() - at);
    batch.count = static_cast<uint32_t>(n);
    batch.pad = 0;
    std::copy_n(writes.begin() + static_cast<std::ptrdiff_t>(at), n, batch.writes);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &batch, .ctx_size_in = sizeof batch);
    if (bpf_prog_test_run_opts(prog, &opts) != 0) {
      // The program could not run: each change on its own.
      for (size_t i = 0; i < n; ++i) {
        sg_xdp_flow_write& w = batch.writes[i];
        w.result = w.op == SG_XDP_FLOW_ADD ? m.add_now(w.key) : (bpf_map_delete_elem(m.flows_fd(), &w.key) == 0 ? 0 : -errno);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const sg_xdp_flow_write& w = batch.writes[i];
      if (w.op != SG_XDP_FLOW_ADD) continue;
      if (!m.took_add(w.key, static_cast<uint32_t>(m.changed.find(w.key)->second), w.result)) ++failed;
    }
  }
  m.changed.clear();
  return failed;
}

uint32_t Program::flow_holders(const FlowTuple& t) const noexcept {
  const sg_xdp_flow_key k = flow_key(t);
  uint32_t present = 0;
  if (bpf_map_lookup_elem(impl_->flows_fd(), &k, &present) != 0) return 0;
  std::lock_guard lock(impl_->flows_mutex);
  const auto it = impl_->extra_holders.find(k);
  return 1 + (it == impl_->extra_holders.end() ? 0 : it->second);
}

uint64_t Program::flow_keys_count() const noexcept {
  return bpf::count_map<sg_xdp_flow_key, uint32_t>(impl_->flows_fd());
}

Counters Program::counters() const {
  Counters out{};
  const std::vector<uint64_t> sums = bpf::per_cpu_sums(impl_->map_fd(impl_->skel->maps.sg_counters), out.size());
  std::copy(sums.begin(), sums.end(), out.begin());
  return out;
}

ReasonCounters Program::reasons() const {
  ReasonCounters out{};
  static_assert(std::tuple_size_v<ReasonCounters> == SG_R_COUNT_, "one counter per specification reason");
  const std::vector<uint64_t> sums = bpf::per_cpu_sums(impl_->map_fd(impl_->skel->maps.sg_reasons), out.size());
  std::copy(sums.begin(), sums.end(), out.begin());
  return out;
}

namespace {

// The tcx ingress hook (kernel 6.6): links that go with their fd, as XDP links do, run before
// the classic clsact filters (the kernel path's). Debian 12's headers predate it.
constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);

// The hooks `mode` asks for, in the order to try them. Auto: native XDP where the driver has it,
// else tc, generic XDP last (tc needs kernel 6.6). A veth skips native (it delivers natively
// XDP_TX'd frames only when its peer runs XDP too, which syngate cannot see or arrange).
std::vector<AttachMode> hooks_to_try(AttachMode mode, const std::string& driver) {
  if (mode != AttachMode::Auto) return {mode};
  if (driver == "veth") return {AttachMode::Tc, AttachMode::Generic};
  return {AttachMode::Native, AttachMode::Tc, AttachMode::Generic};
}

}  // namespace

int Program::tc_program_fd() const noexcept { return bpf_program__fd(impl_->skel->progs.syngate_tc_fast); }

bool Program::attach(const std::string& interface, AttachMode mode, std::string* why) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex == 0) {
    if (why) *why = "no such interface";
    return false;
  }
  const std::string driver = gw::interface_driver(interface);
  if (mode == AttachMode::Native && driver == "veth") {
    spdlog::warn("xdp: native mode on veth {}: its SYN-ACKs reach the peer only if the peer runs an XDP "
                 "program too; \"auto\" or \"tc\" work as is", interface);
  }
  auto try_hook = [&](AttachMode m) -> int {
    if (m == AttachMode::Tc) return bpf_link_create(tc_program_fd(), ifindex, kTcxIngress, nullptr);
    LIBBPF_OPTS(bpf_link_create_opts, opts);
    opts.flags = m == AttachMode::Generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    return bpf_link_create(program_fd(), ifindex, BPF_XDP, &opts);
  };
  std::string failure;
  for (const AttachMode m : hooks_to_try(mode, driver)) {
    const int fd = try_hook(m);
    if (fd >= 0) {
      impl_->links.add({interface, ifindex, m, driver}, fd);
      return true;
    }
    const int err = errno;
    if (!failure.empty()) failure += "; ";
    failure += std::string(to_string(m)) + ": " + bpf::errno_text(err);
    if (err == EBUSY && m != AttachMode::Tc) failure += " (another XDP program is attached)";
    if (err == EINVAL && m == AttachMode::Tc) failure += " (tcx needs Linux 6.6 or later)";
  }
  if (why) *why = failure;
  return false;
}

void Program::detach(int ifindex) noexcept { impl_->links.remove(ifindex); }

// Closing the link fds detaches: the same thing happens when the process dies.
void Program::detach_all() noexcept { impl_->links.clear(); }

std::vector<Attachment> Program::attachments() const { return impl_->links.list(); }

#else  // !SYNGATE_HAVE_XDP

bool available() noexcept { return false; }

struct Program::Impl {};

Program::Program(uint32_t) {
  throw std::runtime_error("this syngate was built without the XDP fast path (clang, bpftool or libbpf missing)");
}
Program::~Program() = default;
void Program::configure(const Settings&, bool) {}
void Program::set_secrets(const CookieSecrets&, uint32_t) {}
void Program::set_services(const std::vector<Service>&) {}
bool Program::set_kernel_flows(int, int) noexcept { return false; }
bool Program::set_service_flags(const Service&, uint8_t) noexcept { return false; }
void Program::set_prefixes(const PrefixSet&) {}
void Program::forget_proven_sources() {}
ReasonCounters Program::reasons() const { return {}; }
void Program::add_flow(const FlowTuple&) noexcept {}
void Program::remove_flow(const FlowTuple&) noexcept {}
uint64_t Program::write_flows() noexcept { return 0; }
uint32_t Program::flow_holders(const FlowTuple&) const noexcept { return 0; }
uint64_t Program::flow_keys_count() const noexcept { return 0; }
Counters Program::counters() const { return {}; }
int Program::program_fd() const noexcept { return -1; }
int Program::tc_program_fd() const noexcept { return -1; }
bool Program::attach(const std::string&, AttachMode, std::string* why) {
  if (why) *why = "built without XDP";
  return false;
}
void Program::detach(int) noexcept {}
void Program::detach_all() noexcept {}
std::vector<Attachment> Program::attachments() const { return {}; }

#endif

}  // namespace syngate::xdp
