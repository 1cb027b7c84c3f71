// The backend's SYN-ACK taken in the kernel (sg_tc_synack, the router's ingress program's tail
// call) against the engine taking the same SYN-ACK: real handshakes through the engine give the
// handshake record the daemon hands the program (FlowObserver::handshake_sent) and the two packets
// the engine answers with; the program, run on the same SYN-ACK through BPF_PROG_TEST_RUN, must
// send the same window update to the client (a clone, captured where it lands), turn the SYN-ACK
// into the same ACK to the backend (byte for byte, IP and TCP), write the same two flow entries,
// consume the handshake record and report the hand-over. And it must leave to the engine, untouched,
// every SYN-ACK the engine alone can take.
//
// The program asks the FIB where the client is and sends the clone out that way, so the test runs
// in a network namespace of its own thread: a gateway with a client-facing and a server-facing
// veth, routes and permanent neighbours, forwarding on (namespace-local sysctls).
//
// Needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN, a network namespace): skipped, saying so, otherwise.
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
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "syngate/bpf/flow_key.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/checksum.hpp"
#include "syngate_tc.skel.h"
#include "syngate_test/engine_harness.hpp"
#include "syngate_test/packet_fixtures.hpp"
#include "tc_frames.hpp"

namespace syngate {
namespace {

using test::Bytes;
using test::Conn;

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

Bytes frame_from_server(const Bytes& ip) { return test::ethernet_frame(ip, kGsMac, kBsMac); }
Bytes frame_from_client(const Bytes& ip) { return test::ethernet_frame(ip, kGcMac, kClientMac); }

sg_tc_flow_key key_of(const FlowTuple& t) { return bpf::map_flow_key<sg_tc_flow_key>(t); }

// What the engine's packet looks like one router later (TTL or hop limit one lower).
Bytes forwarded(Bytes ip) {
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
  void flow_freed(const FlowTuple&) noexcept override {}
  void flow_established(const FlowTuple&, const FlowTranslation& t) noexcept override { translation = t; }
  bool handshake_sent(const FlowTuple&, const sg_handshake& h) noexcept override {
    handshake = h;
    return false;  // the test hands the SYN-ACK to both paths itself
  }
};

// The programs as router mode loads them (sg_tc_router, sg_tc_forward).
struct RouterObject {
  syngate_tc* skel = nullptr;
  ring_buffer* ring = nullptr;
  std::vector<sg_tc_event> events;
  std::string error;
  RouterObject() {
    libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
    skel = syngate_tc__open();
    if (!skel) {
      error = std::strerror(errno);
      return;
    }
    skel->rodata->sg_tc_router = 1;
    skel->rodata->sg_tc_forward = 1;
    skel->rodata->sg_tc_answer_synacks = 1;
    static std::vector<char> verifier(1 << 24);
    verifier[0] = 0;
    bpf_program__set_log_buf(skel->progs.sg_tc_synack, verifier.data(), verifier.size());
    bpf_program__set_log_level(skel->progs.sg_tc_synack, 1);
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

class TcSynack : public test::EngineTest {
 protected:
  void SetUp() override {
    test::EngineTest::SetUp();
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
      capture_ = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
      sockaddr_ll at{};
      at.sll_family = AF_PACKET;
      at.sll_protocol = htons(ETH_P_ALL);
      at.sll_ifindex = static_cast<int>(if_nametoindex("cc"));
      if (capture_ < 0 || bind(capture_, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
        failure = std::string("capture socket: ") + std::strerror(errno);
        return;
      }
      body();
      close(capture_);
    });
    t.join();
    if (!failure.empty()) GTEST_SKIP() << failure;
  }

  test::TcRun run(const RouterObject& o, const Bytes& frame) {
    __sk_buff ctx{};
    ctx.ifindex = static_cast<uint32_t>(gs_);
    ctx.ingress_ifindex = static_cast<uint32_t>(gs_);
    return test::run_tc_program(o.ingress(), frame, ctx);
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

  // The handshake up to the backend's SYN-ACK, with the record the daemon would write.
  Bytes open(Conn& c, Recorder& rec) {
    if (!engine) start();
    engine->set_flow_observer(&rec);
    rec.handshake.reset();
    rec.translation.reset();
    const test::Seen syn = open_to_backend_syn(c);
    const uint32_t tsecr = syn.pkt.options().has_timestamps ? syn.pkt.options().tsval : 0;
    return c.backend_synack(tsecr);
  }

  int gs_ = 0;
  int capture_ = -1;
};

// Every way a handshake's options can come out, IPv4 and IPv6, numbers across 2^32.
TEST_F(TcSynack, AnswersAsTheEngineDoes) {
  RouterObject o;
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    struct Case {
      const char* name;
      void (*shape)(Conn&);
    };
    const Case cases[] = {
        {"linux both ends", [](Conn&) {}},
        {"backend without window scaling", [](Conn& c) { c.backend_synack_opts.has_wscale = false; }},
        {"backend without SACK", [](Conn& c) { c.backend_synack_opts.sack_permitted = false; }},
        {"client without timestamps", [](Conn& c) {
           c.client_syn_opts.has_timestamps = false;
           c.client_syn_opts.has_wscale = false;
         }},
        {"wscale 14 against 0", [](Conn& c) {
           c.client_syn_opts.wscale = 14;
           c.backend_synack_opts.wscale = 0;
         }},
        {"numbers across 2^32", [](Conn& c) {
           c.client_isn = 0xffffffffu;
           c.backend_isn = 0xfffffffeu;
           c.backend_ts = 0xffffffffu;
           c.backend_synack_opts.tsval = c.backend_ts;
         }},
    };
    uint16_t port = 2000;
    uint32_t generation = 40;
    for (int v6 = 0; v6 < 2; ++v6) {
      for (const Case& k : cases) {
        SCOPED_TRACE(std::string(v6 ? "IPv6 " : "IPv4 ") + k.name);
        Conn c = v6 ? Conn::v6(++port) : Conn::v4(++port);
        k.shape(c);
        Recorder rec;
        const Bytes synack = open(c, rec);
        ASSERT_TRUE(rec.handshake) << "the engine did not report its SYN";
        const sg_tc_handshake record{*rec.handshake, ++generation, 0};
        const sg_tc_flow_key s2c = key_of(c.c2s.reversed()), c2s = key_of(c.c2s);
        ASSERT_EQ(bpf_map_update_elem(o.handshakes(), &s2c, &record, BPF_NOEXIST), 0);

        // The engine's answer: the ACK it sends the backend, then the SYN-ACK's verdict, the
        // client's window update.
        const Delivered d = feed_in_slot(synack);
        ASSERT_EQ(d.wire.size(), 2u);
        ASSERT_TRUE(rec.translation);
        const Bytes& engine_ack = d.wire[0];
        const Bytes& engine_update = d.wire[1];

        while (captured(0)) {
        }
        const uint64_t handed0 = o.counter(SG_TC_HANDED_OVER);
        const test::TcRun r = run(o, frame_from_server(synack));
        EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
        EXPECT_EQ(o.counter(SG_TC_HANDED_OVER), handed0 + 1);
        // The SYN-ACK became the ACK, back to the router it came from.
        ASSERT_EQ(r.frame.size(), 14 + engine_ack.size());
        EXPECT_TRUE(std::equal(kBsMac, kBsMac + 6, r.frame.begin())) << "to the server's router";
        EXPECT_TRUE(std::equal(kGsMac, kGsMac + 6, r.frame.begin() + 6)) << "from the gateway";
        EXPECT_EQ(Bytes(r.frame.begin() + 14, r.frame.end()), engine_ack) << "the ACK to the backend";
        // The clone reached the client as the engine's update would after forwarding.
        const std::optional<Bytes> update = captured();
        ASSERT_TRUE(update) << "no window update reached the client";
        EXPECT_TRUE(std::equal(kClientMac, kClientMac + 6, update->begin())) << "to the client";
        EXPECT_TRUE(std::equal(kGcMac, kGcMac + 6, update->begin() + 6)) << "from the gateway";
        const Bytes want = forwarded(engine_update);
        ASSERT_GE(update->size(), 14 + want.size());
        EXPECT_EQ(Bytes(update->begin() + 14, update->begin() + 14 + static_cast<long>(want.size())), want)
            << "the window update";

        // The entries the daemon would write from the engine's translation, the record consumed,
        // the hand-over reported with the SYN-ACK.
        sg_tc_flow want_up{}, want_down{}, up{}, down{};
        sg_tc_flow_entries(&rec.translation->shifts, rec.translation->delta, rec.translation->tsoff,
                           rec.translation->timestamps, record.generation, &want_up, &want_down);
        ASSERT_EQ(bpf_map_lookup_elem(o.flows(), &c2s, &up), 0);
        ASSERT_EQ(bpf_map_lookup_elem(o.flows(), &s2c, &down), 0);
        EXPECT_EQ(std::memcmp(&up, &want_up, sizeof up), 0) << "client -> server entry";
        EXPECT_EQ(std::memcmp(&down, &want_down, sizeof down), 0) << "server -> client entry";
        sg_tc_handshake left{};
        EXPECT_NE(bpf_map_lookup_elem(o.handshakes(), &s2c, &left), 0) << "the record was not consumed";
        const std::vector<sg_tc_event> events = o.take_events();
        ASSERT_EQ(events.size(), 1u);
        EXPECT_EQ(events[0].kind, SG_TC_EVENT_HANDED_OVER);
        EXPECT_EQ(std::memcmp(&events[0].key, &c2s, sizeof c2s), 0);
        EXPECT_EQ(events[0].synack.seq, c.backend_isn);
        EXPECT_EQ(events[0].synack.window, 65160);
        EXPECT_EQ(events[0].synack.has_ts, c.backend_synack_opts.has_timestamps ? 1 : 0);
        EXPECT_EQ(events[0].synack.sack_permitted, c.backend_synack_opts.sack_permitted ? 1 : 0);
        bpf_map_delete_elem(o.flows(), &c2s);
        bpf_map_delete_elem(o.flows(), &s2c);
        engine->set_flow_observer(nullptr);
      }
    }
  });
}

// What only the engine can take stays the engine's, untouched: the record stays for it.
TEST_F(TcSynack, LeavesTheEnginesOwnToTheEngine) {
  RouterObject o;
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 3000;
    // `before`: what the client sent that crossed the ingress before the SYN-ACK.
    const auto untouched = [&](Conn c, const std::function<Bytes(const Conn&)>& answer, const char* what,
                               bool with_record = true, const std::function<Bytes(const Conn&)>& before = {}) {
      SCOPED_TRACE(what);
      Recorder rec;
      (void)open(c, rec);
      ASSERT_TRUE(rec.handshake);
      const sg_tc_handshake record{*rec.handshake, 9, 0};
      const sg_tc_flow_key s2c = key_of(c.c2s.reversed()), c2s = key_of(c.c2s);
      if (with_record) {
        ASSERT_EQ(bpf_map_update_elem(o.handshakes(), &s2c, &record, BPF_ANY), 0);
      }
      if (before) {
        const Bytes sent = frame_from_client(before(c));
        const test::TcRun b = run(o, sent);
        EXPECT_EQ(b.retval, TC_ACT_OK);
        EXPECT_EQ(b.frame, sent) << "the client's segment was rewritten";
      }
      const Bytes frame = frame_from_server(answer(c));
      const uint64_t punted0 = o.counter(SG_TC_HANDSHAKE_PUNTED), miss0 = o.counter(SG_TC_MISS);
      const test::TcRun r = run(o, frame);
      EXPECT_EQ(r.retval, TC_ACT_OK);
      EXPECT_EQ(r.frame, frame);
      EXPECT_EQ(o.counter(with_record ? SG_TC_HANDSHAKE_PUNTED : SG_TC_MISS),
                (with_record ? punted0 : miss0) + 1);
      sg_tc_flow entry{};
      EXPECT_NE(bpf_map_lookup_elem(o.flows(), &c2s, &entry), 0) << "an entry was written";
      sg_tc_handshake left{};
      if (with_record) {
        EXPECT_EQ(bpf_map_lookup_elem(o.handshakes(), &s2c, &left), 0) << "the record was taken";
      }
      EXPECT_TRUE(o.take_events().empty());
      EXPECT_FALSE(captured()) << "something was sent to the client";
      bpf_map_delete_elem(o.handshakes(), &s2c);
      engine->set_flow_observer(nullptr);
    };
    static const uint8_t data[5] = {'h', 'e', 'l', 'l', 'o'};
    for (int v6 = 0; v6 < 2; ++v6) {
      const auto conn = [&] { return v6 ? Conn::v6(++port) : Conn::v4(++port); };
      untouched(conn(), [](const Conn& c) { return c.backend_synack(0); },
                "no record (a SYN-ACK for a flow the daemon did not hand over)", false);
      untouched(conn(), [](const Conn& c) {
        Conn other = c;
        other.client_isn += 1;
        return other.backend_synack(0);
      }, "an ack that does not answer the SYN");
      Conn no_ts = conn();
      no_ts.backend_synack_opts.has_timestamps = false;
      untouched(no_ts, [](const Conn& c) { return c.backend_synack(0); },
                "a backend without the timestamps the client was promised (the engine supplies them)");
      untouched(conn(), [](const Conn& c) {
        SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn, .ack = c.client_isn + 1,
                      .flags = tcp_flag::SYN | tcp_flag::ACK, .window = 65160, .options = c.backend_synack_opts,
                      .payload = std::span<const uint8_t>(data, sizeof data)};
        return test::make(s);
      }, "a SYN-ACK with data");
      // The client's request passed on to the engine before the SYN-ACK came: the engine holds it
      // and must answer the SYN-ACK itself, the request right behind its ACK.
      const auto client_sends = [](uint8_t flags, size_t len) {
        return [flags, len](const Conn& c) {
          SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1, .flags = flags,
                        .window = c.client_window, .options = c.client_ts_opts(1002),
                        .payload = std::span<const uint8_t>(data, len)};
          return test::make(s);
        };
      };
      untouched(conn(), [](const Conn& c) { return c.backend_synack(0); }, "client data before the SYN-ACK", true,
                client_sends(tcp_flag::ACK | tcp_flag::PSH, sizeof data));
      untouched(conn(), [](const Conn& c) { return c.backend_synack(0); }, "a client FIN before the SYN-ACK", true,
                client_sends(tcp_flag::ACK | tcp_flag::FIN, 0));
    }
  });
}

}  // namespace
}  // namespace syngate
