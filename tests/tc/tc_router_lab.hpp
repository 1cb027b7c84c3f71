// The router lab the tc programs' BPF_PROG_TEST_RUN tests share: the programs loaded as router
// mode loads them, run on frames in a network namespace of the test's own thread (a gateway with
// a client-facing and a server-facing veth, routes and permanent neighbours, forwarding on:
// namespace-local sysctls), so that their FIB lookups and redirects act as on a router; what
// reaches the client's end of the link is captured.
#pragma once

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "syngate/bpf/flow_key.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/checksum.hpp"
#include "syngate_tc.skel.h"
#include "syngate_test/engine_harness.hpp"
#include "tc_frames.hpp"

namespace syngate::test {

// The lab in the test's namespace (addresses of Conn::v4 and Conn::v6: the client on gc's link,
// the services behind a router on gs's).
constexpr uint8_t kGsMac[6] = {0x02, 0, 0, 0, 1, 1};  // the gateway, facing the server
constexpr uint8_t kBsMac[6] = {0x02, 0, 0, 0, 1, 2};  // the server's router
constexpr uint8_t kGcMac[6] = {0x02, 0, 0, 0, 2, 1};  // the gateway, facing the client
// The client's MAC: not its link end's own (cc, 02:00:00:00:02:02), so what reaches cc is for
// another host and the namespace's stack, a router, does not send it round again.
constexpr uint8_t kClientMac[6] = {0x02, 0, 0, 0, 2, 3};
const char* const kLabCommands[] = {
    "ip link set lo up",
    "ip link add gs address 02:00:00:00:01:01 type veth peer name bs address 02:00:00:00:01:02",
    "ip link add gc address 02:00:00:00:02:01 type veth peer name cc address 02:00:00:00:02:02",
    "ip link set gs up", "ip link set bs up", "ip link set gc up", "ip link set cc up",
    "ip addr add 10.10.2.1/24 dev gs", "ip addr add 10.10.1.1/24 dev gc",
    "ip route add 10.10.3.0/24 via 10.10.2.2 dev gs",
    "ip neigh replace 10.10.2.2 lladdr 02:00:00:00:01:02 dev gs nud permanent",
    "ip neigh replace 10.10.1.2 lladdr 02:00:00:00:02:03 dev gc nud permanent",
    "ip addr add fd00:10:10:2::1/64 dev gs nodad", "ip addr add fd00:10:10:1::1/64 dev gc nodad",
    "ip route add fd00:10:10:3::/64 via fd00:10:10:2::2 dev gs",
    "ip neigh replace fd00:10:10:2::2 lladdr 02:00:00:00:01:02 dev gs nud permanent",
    "ip neigh replace fd00:10:10:1::2 lladdr 02:00:00:00:02:03 dev gc nud permanent",
    "sysctl -qw net.ipv4.ip_forward=1", "sysctl -qw net.ipv6.conf.all.forwarding=1",
};

inline Bytes frame_from_server(const Bytes& ip) { return ethernet_frame(ip, kGsMac, kBsMac); }
inline Bytes frame_from_client(const Bytes& ip) { return ethernet_frame(ip, kGcMac, kClientMac); }

inline sg_tc_flow_key key_of(const FlowTuple& t) { return bpf::map_flow_key<sg_tc_flow_key>(t); }

// What the engine's packet looks like one router later (TTL or hop limit one lower).
inline Bytes forwarded(Bytes ip) {
  if ((ip[0] >> 4) == 6) {
    ip[7] -= 1;
    return ip;
  }
  ip[8] -= 1;
  ip[10] = ip[11] = 0;
  const uint16_t c = ipv4_header_checksum(std::span<const uint8_t>(ip.data(), 20));
  ip[10] = static_cast<uint8_t>(c >> 8);
  ip[11] = static_cast<uint8_t>(c);
  return ip;
}

struct Recorder : FlowObserver {
  std::optional<sg_handshake> handshake;
  std::optional<FlowTranslation> translation;
  void flow_created(const FlowTuple&) noexcept override {}
  void flow_freed(const FlowTuple&, uint32_t) noexcept override {}
  void flow_established(const FlowTuple&, const FlowTranslation& t, uint32_t) noexcept override { translation = t; }
  bool handshake_sent(const FlowTuple&, const sg_handshake& h, uint32_t) noexcept override {
    handshake = h;
    return false;  // the test hands the SYN-ACK to both paths itself
  }
};

// The programs as router mode loads them (sg_tc_router, sg_tc_forward, sg_tc_answer_synacks; and
// sg_tc_open_flows when `open_flows`).
struct RouterObject {
  syngate_tc* skel = nullptr;
  ring_buffer* ring = nullptr;
  std::vector<sg_tc_event> events;
  std::string error;
  // `keep_early`: gateway.tc_early_data (sg_tc_keep_early).
  // `route_ticks`: how long an entry keeps the FIB's answer (sg_tc_route_ticks).
  explicit RouterObject(bool open_flows = false, bool keep_early = false,
                        uint32_t route_ticks = SG_TC_ROUTE_CACHE_TICKS) {
    libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
    skel = syngate_tc__open();
    if (!skel) {
      error = std::strerror(errno);
      return;
    }
    skel->rodata->sg_tc_router = 1;
    skel->rodata->sg_tc_forward = 1;
    skel->rodata->sg_tc_answer_synacks = 1;
    skel->rodata->sg_tc_open_flows = open_flows ? 1 : 0;
    skel->rodata->sg_tc_keep_early = keep_early ? 1 : 0;
    skel->rodata->sg_tc_route_ticks = route_ticks;
    // The tail-called programs' logs, the likelier to fail; the last one to fail is reported.
    static std::vector<char> verifier(1 << 24);
    verifier[0] = 0;
    for (bpf_program* prog : {skel->progs.sg_tc_synack, skel->progs.sg_tc_cookie_ack, skel->progs.sg_tc_early_store}) {
      bpf_program__set_log_buf(prog, verifier.data(), verifier.size());
      bpf_program__set_log_level(prog, 1);
    }
    if (int err = syngate_tc__load(skel); err != 0) {
      const std::string v(verifier.data());
      error = "load: " + std::string(std::strerror(-err)) + "\n" + v.substr(v.size() > 5000 ? v.size() - 5000 : 0);
      syngate_tc__destroy(skel);
      skel = nullptr;
      return;
    }
    ring = ring_buffer__new(
        bpf_map__fd(skel->maps.sg_tc_events),
        [](void* ctx, void* data, size_t size) {
          if (size == sizeof(sg_tc_event)) {
            sg_tc_event e;
            std::memcpy(&e, data, sizeof e);
            static_cast<RouterObject*>(ctx)->events.push_back(e);
          }
          return 0;
        },
        this, nullptr);
  }
  ~RouterObject() {
    if (ring) ring_buffer__free(ring);
    if (skel) syngate_tc__destroy(skel);
  }
  int ingress() const { return bpf_program__fd(skel->progs.sg_tc_ingress); }
  int flows() const { return bpf_map__fd(skel->maps.sg_tc_flows); }
  int handshakes() const { return bpf_map__fd(skel->maps.sg_tc_handshakes); }
  int services() const { return bpf_map__fd(skel->maps.sg_tc_services); }
  int open_config() const { return bpf_map__fd(skel->maps.sg_tc_open); }
  // Publishes cookie secrets as the daemon does: into the slot not read, then the slot.
  bool publish_secrets(const sg_cookie_secrets& s) {
    const uint32_t zero = 0;
    uint32_t slot = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.sg_tc_key_slot), &zero, &slot) != 0) return false;
    slot ^= 1u;
    return bpf_map_update_elem(bpf_map__fd(skel->maps.sg_tc_keys), &slot, &s, BPF_ANY) == 0 &&
           bpf_map_update_elem(bpf_map__fd(skel->maps.sg_tc_key_slot), &zero, &slot, BPF_ANY) == 0;
  }
  uint64_t counter(uint32_t which) const {
    std::vector<uint64_t> per_cpu(static_cast<size_t>(libbpf_num_possible_cpus()));
    if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.sg_tc_counters), &which, per_cpu.data()) != 0) return 0;
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    return sum;
  }
  std::vector<sg_tc_event> take_events() {
    events.clear();
    if (ring) ring_buffer__consume(ring);
    return events;
  }
};

class TcRouterLab : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF_PROG_TEST_RUN and a network namespace";
  }

  // Runs `body` on a thread in a network namespace of its own with the lab built in it.
  template <typename Body>
  void in_lab(Body body) {
    std::string failure;
    std::thread t([&] {
      if (unshare(CLONE_NEWNET) != 0) {
        failure = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
        return;
      }
      for (const char* cmd : kLabCommands) {
        if (std::system((std::string(cmd) + " 2>&1").c_str()) != 0) {
          failure = std::string("lab: ") + cmd;
          return;
        }
      }
      gs_ = static_cast<int>(if_nametoindex("gs"));
      gc_ = static_cast<int>(if_nametoindex("gc"));
      capture_ = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
      sockaddr_ll at{};
      at.sll_family = AF_PACKET;
      at.sll_protocol = htons(ETH_P_ALL);
      at.sll_ifindex = static_cast<int>(if_nametoindex("cc"));
      if (capture_ < 0 || bind(capture_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
        failure = std::string("capture socket: ") + std::strerror(errno);
        return;
      }
      // What enters the gateway's client-facing interface from elsewhere than its link: the
      // early segments sg_tc_synack re-injects there.
      capture_gc_ = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
      at.sll_ifindex = gc_;
      if (capture_gc_ < 0 || bind(capture_gc_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
        failure = std::string("capture socket on gc: ") + std::strerror(errno);
        return;
      }
      body();
      close(capture_gc_);
      close(capture_);
    });
    t.join();
    if (!failure.empty()) GTEST_SKIP() << failure;
  }

  // The handshake up to the backend's SYN-ACK (returned), with the record the daemon would
  // write in `rec`.
  Bytes open(Conn& c, Recorder& rec) {
    if (!engine) start();
    engine->set_flow_observer(&rec);
    rec.handshake.reset();
    rec.translation.reset();
    const test::Seen syn = open_to_backend_syn(c);
    const uint32_t tsecr = syn.pkt.options().has_timestamps ? syn.pkt.options().tsval : 0;
    return c.backend_synack(tsecr);
  }

  int gs() const { return gs_; }  // the gateway's server-facing interface
  int gc() const { return gc_; }  // ... client-facing

  // The ingress program run on a frame that came in from the server's side.
  TcRun run(const RouterObject& o, const Bytes& frame) { return run_on(o, frame, gs_); }
  // ... from the client's side.
  TcRun run_from_client(const RouterObject& o, const Bytes& frame) { return run_on(o, frame, gc_); }
  TcRun run_on(const RouterObject& o, const Bytes& frame, int ifindex) {
    __sk_buff ctx{};
    ctx.ifindex = static_cast<uint32_t>(ifindex);
    ctx.ingress_ifindex = static_cast<uint32_t>(ifindex);
    return run_tc_program(o.ingress(), frame, ctx);
  }

  // The next TCP frame that reached the client's end of the link, within `wait_ms`.
  std::optional<Bytes> captured(int wait_ms = 1000) {
    for (int waited = 0; waited <= wait_ms; waited += 10) {
      uint8_t buf[2048];
      const ssize_t n = recv(capture_, buf, sizeof buf, 0);
      if (n > 0) {
        const bool v4 = n > 34 && buf[12] == 0x08 && buf[13] == 0x00 && buf[23] == 6;
        const bool v6 = n > 54 && buf[12] == 0x86 && buf[13] == 0xdd && buf[20] == 6;
        if (v4 || v6) return Bytes(buf, buf + n);
        continue;
      }
      pollfd p{capture_, POLLIN, 0};
      poll(&p, 1, 10);
    }
    return std::nullopt;
  }

  // Every TCP frame that entered the gateway's client-facing interface (not those it sent)
  // within `wait_ms` of the last one.
  std::vector<Bytes> reinjected(int wait_ms = 300) {
    std::vector<Bytes> got;
    for (int waited = 0; waited <= wait_ms; waited += 10) {
      uint8_t buf[2048];
      sockaddr_ll from{};
      socklen_t from_len = sizeof from;
      const ssize_t n = recvfrom(capture_gc_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n > 0) {
        const bool v4 = n > 34 && buf[12] == 0x08 && buf[13] == 0x00 && buf[23] == 6;
        const bool v6 = n > 54 && buf[12] == 0x86 && buf[13] == 0xdd && buf[20] == 6;
        if ((v4 || v6) && from.sll_pkttype != PACKET_OUTGOING) got.emplace_back(buf, buf + n);
        waited = 0;
        continue;
      }
      pollfd p{capture_gc_, POLLIN, 0};
      poll(&p, 1, 10);
    }
    return got;
  }

  int gs_ = 0;
  int gc_ = 0;
  int capture_ = -1;
  int capture_gc_ = -1;
};

}  // namespace syngate::test
