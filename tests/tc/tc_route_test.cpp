// The route a flow's entry keeps (tc_abi.h, struct sg_tc_route_cache): a forwarded segment of a
// handed-over flow takes its way out from its direction's entry instead of asking the FIB, where
// the cached answer is good for it (asked the same way, young enough, big enough, whole), and only
// there; a change of the next hop reaches the flow once the cached answer is too old. The router
// lab (tc_router_lab.hpp) gives the programs a real FIB and real neighbours. Needs root
// (BPF_PROG_LOAD, BPF_PROG_TEST_RUN, a network namespace): skipped, saying so, otherwise.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <time.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "syngate/bpf/tc_abi.h"
#include "syngate/checksum.hpp"
#include "syngate_test/engine_harness.hpp"
#include "syngate_test/packet_fixtures.hpp"
#include "tc_router_lab.hpp"

namespace syngate {
namespace {

using namespace test;

// An answer's life where the test needs it taken however slowly the test runs (about 10 s); the
// aging test runs the shipped one.
constexpr uint32_t kLongLife = 10000;

class TcRoute : public test::TcRouterLab {
 protected:
  // The flow's hand-over as the program makes it (the backend's SYN-ACK through sg_tc_synack):
  // both entries written, the server's seeded with the SYN-ACK's route.
  // `to_server_route`: what sg_tc_cookie_ack would have put in the record (the daemon's: none).
  void hand_over(RouterObject& o, Conn& c, uint32_t generation, const sg_tc_route_cache& to_server_route = {}) {
    Recorder rec;
    const Bytes synack = open(c, rec);
    ASSERT_TRUE(rec.handshake);
    const sg_tc_handshake record{*rec.handshake, generation, 0, to_server_route};
    const sg_tc_flow_key s2c = key_of(c.c2s.reversed());
    ASSERT_EQ(bpf_map_update_elem(o.handshakes(), &s2c, &record, BPF_NOEXIST), 0);
    ASSERT_EQ(run(o, frame_from_server(synack)).retval, TC_ACT_REDIRECT);
    engine->set_flow_observer(nullptr);
  }

  static Bytes payload(size_t n) { return Bytes(n, 0x61); }

  static Bytes from_server(const Conn& c, uint32_t offset, const Bytes& data) {
    return make(SegmentSpec{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1 + offset, .ack = c.client_isn + 1,
                            .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.backend_window, .payload = data});
  }
  static Bytes from_client(const Conn& c, uint32_t offset, const Bytes& data, uint8_t ttl = 64) {
    return make(SegmentSpec{.tuple = c.c2s, .seq = c.client_isn + 1 + offset, .ack = c.cookie_isn + 1,
                            .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.client_window, .ttl = ttl,
                            .payload = data});
  }

  static sg_tc_flow entry(const RouterObject& o, const FlowTuple& t) {
    sg_tc_flow f{};
    const sg_tc_flow_key k = key_of(t);
    EXPECT_EQ(bpf_map_lookup_elem(o.flows(), &k, &f), 0);
    return f;
  }
  static void put(const RouterObject& o, const FlowTuple& t, const sg_tc_flow& f) {
    const sg_tc_flow_key k = key_of(t);
    ASSERT_EQ(bpf_map_update_elem(o.flows(), &k, &f, BPF_EXIST), 0);
  }
  // The programs' clock (bpf_ktime_get_coarse_ns) in the cache's ticks.
  static uint32_t now_ticks() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<uint32_t>((static_cast<uint64_t>(ts.tv_sec) * 1000000000u + ts.tv_nsec) >> 20);
  }

  static void expect_to_client(const TcRun& r) {
    EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
    ASSERT_GE(r.frame.size(), 12u);
    EXPECT_TRUE(std::equal(kClientMac, kClientMac + 6, r.frame.begin())) << "to the client";
    EXPECT_TRUE(std::equal(kGcMac, kGcMac + 6, r.frame.begin() + 6)) << "from the gateway";
  }
  static void expect_to_server(const TcRun& r) {
    EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
    ASSERT_GE(r.frame.size(), 12u);
    EXPECT_TRUE(std::equal(kBsMac, kBsMac + 6, r.frame.begin())) << "to the server's router";
    EXPECT_TRUE(std::equal(kGsMac, kGsMac + 6, r.frame.begin() + 6)) << "from the gateway";
  }
};

TEST_F(TcRoute, AFlowsSegmentsTakeTheRouteItsEntryKeeps) {
  RouterObject o(false, false, kLongLife);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      Conn c = v6 ? Conn::v6(4001) : Conn::v4(4001);
      hand_over(o, c, 7);
      // The server's first segment: its entry holds the SYN-ACK's route.
      const uint64_t cached0 = o.counter(SG_TC_ROUTE_CACHED);
      const uint64_t forwarded0 = o.counter(SG_TC_FORWARDED);
      expect_to_client(run(o, frame_from_server(from_server(c, 0, payload(100)))));
      EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0 + 1);
      // The client's first segment asks the FIB (its entry holds nothing yet) and keeps the
      // answer; the next one takes it.
      expect_to_server(run_from_client(o, frame_from_client(from_client(c, 0, payload(50)))));
      EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0 + 1);
      const sg_tc_flow up = entry(o, c.c2s);
      EXPECT_EQ(up.route.out_ifindex, static_cast<uint32_t>(gs()));
      EXPECT_EQ(up.route.in_ifindex, static_cast<uint32_t>(gc()));
      EXPECT_TRUE(std::equal(kBsMac, kBsMac + 6, up.route.macs));
      EXPECT_TRUE(std::equal(kGsMac, kGsMac + 6, up.route.macs + 6));
      EXPECT_EQ(up.route.mtu, 1500);
      EXPECT_EQ(up.route.check, sg_tc_route_check(&up.route));
      expect_to_server(run_from_client(o, frame_from_client(from_client(c, 50, payload(50)))));
      EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0 + 2);
      EXPECT_EQ(o.counter(SG_TC_FORWARDED), forwarded0 + 3);
    }
  });
}

// A flow the program opened (sg_tc_cookie_ack) starts with both ways out: the SYN's, kept in
// the handshake record, for the client's segments.
TEST_F(TcRoute, TheClientsEntryStartsWithTheSynsRoute) {
  RouterObject o(false, false, kLongLife);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      Conn c = v6 ? Conn::v6(4051) : Conn::v4(4051);
      // The route the client's first segment finds (learnt from a flow of the daemon's), as the
      // cookie ACK's program would have written it.
      Conn teacher = v6 ? Conn::v6(4050) : Conn::v4(4050);
      hand_over(o, teacher, 50 + static_cast<uint32_t>(v6));
      expect_to_server(run_from_client(o, frame_from_client(from_client(teacher, 0, payload(10)))));
      const sg_tc_route_cache learnt = entry(o, teacher.c2s).route;
      ASSERT_EQ(learnt.out_ifindex, static_cast<uint32_t>(gs()));
      hand_over(o, c, 52 + static_cast<uint32_t>(v6), learnt);
      const sg_tc_flow up = entry(o, c.c2s);
      EXPECT_EQ(std::memcmp(&up.route, &learnt, sizeof learnt), 0);
      const uint64_t cached0 = o.counter(SG_TC_ROUTE_CACHED);
      expect_to_server(run_from_client(o, frame_from_client(from_client(c, 0, payload(50)))));
      EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0 + 1);
    }
  });
}

// Each way a cached answer may not fit the segment: the FIB is asked again (the segment goes
// where it says), and its answer replaces the cached one.
TEST_F(TcRoute, TheFibIsAskedWhereTheCachedAnswerDoesNotFit) {
  RouterObject o(false, false, kLongLife);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    struct Case {
      const char* name;
      void (*spoil)(sg_tc_route_cache&);
    };
    const Case cases[] = {
        {"too old", [](sg_tc_route_cache& r) { r.until = now_ticks() - 1; }},
        {"asked from another interface", [](sg_tc_route_cache& r) { r.in_ifindex += 100; }},
        {"asked with another TOS", [](sg_tc_route_cache& r) { r.inputs ^= 0x10; }},
        {"smaller than the segment", [](sg_tc_route_cache& r) { r.mtu = 100; }},
    };
    uint16_t port = 4100;
    uint32_t generation = 20;
    for (int v6 = 0; v6 < 2; ++v6) {
      for (const Case& k : cases) {
        SCOPED_TRACE(std::string(v6 ? "IPv6 " : "IPv4 ") + k.name);
        Conn c = v6 ? Conn::v6(++port) : Conn::v4(++port);
        hand_over(o, c, ++generation);
        sg_tc_flow down = entry(o, c.c2s.reversed());
        ASSERT_NE(down.route.out_ifindex, 0u);
        // A next hop no FIB would give, so that a cached answer taken shows.
        down.route.macs[0] ^= 0x80;
        k.spoil(down.route);
        down.route.check = sg_tc_route_check(&down.route);
        put(o, c.c2s.reversed(), down);
        const uint64_t cached0 = o.counter(SG_TC_ROUTE_CACHED);
        expect_to_client(run(o, frame_from_server(from_server(c, 0, payload(200)))));
        EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0);
        const sg_tc_flow after = entry(o, c.c2s.reversed());
        EXPECT_TRUE(std::equal(kClientMac, kClientMac + 6, after.route.macs)) << "the FIB's answer kept";
        EXPECT_EQ(after.route.mtu, 1500);
        EXPECT_EQ(after.route.in_ifindex, static_cast<uint32_t>(gs()));
      }
    }
  });
}

// A copy torn by a refresh on another CPU fails its check and is not taken; nor is a cached
// answer for a segment whose hop limit runs out, which the kernel answers with an ICMP error.
TEST_F(TcRoute, ATornAnswerOrAnExpiringSegmentIsNeverTakenFromTheCache) {
  RouterObject o(false, false, kLongLife);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 4200;
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      Conn c = v6 ? Conn::v6(++port) : Conn::v4(++port);
      hand_over(o, c, 30 + static_cast<uint32_t>(v6));
      sg_tc_flow down = entry(o, c.c2s.reversed());
      down.route.macs[0] ^= 0x80;  // written without its check: a half-done refresh
      put(o, c.c2s.reversed(), down);
      const uint64_t cached0 = o.counter(SG_TC_ROUTE_CACHED);
      expect_to_client(run(o, frame_from_server(from_server(c, 0, payload(100)))));
      EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0);

      // The client's entry holds a good answer after one segment; one arriving with TTL 1 is
      // left as sent for the kernel's ICMP error, as without the cache.
      expect_to_server(run_from_client(o, frame_from_client(from_client(c, 0, payload(50)))));
      const uint64_t translated0 = o.counter(SG_TC_TRANSLATED);
      const TcRun r = run_from_client(o, frame_from_client(from_client(c, 50, payload(50), 1)));
      EXPECT_EQ(r.retval, TC_ACT_OK);
      EXPECT_EQ(o.counter(SG_TC_TRANSLATED), translated0) << "left as sent";
      EXPECT_EQ(o.counter(SG_TC_ROUTE_CACHED), cached0);
    }
  });
}

// The next hop's new address reaches the flow's segments once the answer it cached is too old
// (SG_TC_ROUTE_CACHE_TICKS, about 10 ms): the bound on how long a route or neighbour change
// waits for a flow whose segments keep coming.
TEST_F(TcRoute, ANextHopsNewAddressReachesTheFlowWhenItsAnswerAges) {
  RouterObject o;
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      Conn c = v6 ? Conn::v6(4301) : Conn::v4(4301);
      hand_over(o, c, 40 + static_cast<uint32_t>(v6));
      const sg_tc_flow before = entry(o, c.c2s.reversed());
      ASSERT_TRUE(std::equal(kClientMac, kClientMac + 6, before.route.macs));
      const std::string client = v6 ? "fd00:10:10:1::2" : "10.10.1.2";
      ASSERT_EQ(std::system(("ip neigh replace " + client + " lladdr 02:00:00:00:02:09 dev gc nud permanent").c_str()), 0);
      // Past the cached answer's life, with the coarse clock's tick (4 ms at HZ=250) to spare.
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      const TcRun r = run(o, frame_from_server(from_server(c, 0, payload(100))));
      EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
      const uint8_t moved[6] = {0x02, 0, 0, 0, 2, 9};
      EXPECT_TRUE(std::equal(moved, moved + 6, r.frame.begin())) << "to the client's new address";
      EXPECT_TRUE(std::equal(moved, moved + 6, entry(o, c.c2s.reversed()).route.macs));
      ASSERT_EQ(std::system(("ip neigh replace " + client + " lladdr 02:00:00:00:02:03 dev gc nud permanent").c_str()), 0);
    }
  });
}

}  // namespace
}  // namespace syngate
