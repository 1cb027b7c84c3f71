// The client's cookie ACK taken in the kernel (sg_tc_cookie_ack, the router's ingress program's
// tail call for a bare ACK with no flow entry) against the engine taking the same ACK: real
// handshakes through the engine give the cookie, the SYN the engine sends the backend and the
// handshake record it reports (FlowObserver::handshake_sent); the program, run on the same ACK
// through BPF_PROG_TEST_RUN with the engine's secrets and clock, must turn it into the same SYN
// (byte for byte, IP and TCP, one hop later as forwarding leaves the engine's), sent to the
// backend's router, write the same record for the backend's SYN-ACK and report the flow with
// what the engine needs to hold it. And it must leave untouched, to the engine, every ACK it may
// not take.
//
// Needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN, a network namespace: tc_router_lab.hpp): skipped,
// saying so, otherwise.
#include <gtest/gtest.h>

#include <bpf/bpf.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "syngate/bpf/tc_abi.h"
#include "syngate_test/engine_harness.hpp"
#include "tc_router_lab.hpp"

namespace syngate {
namespace {

using namespace test;

class TcCookieAck : public TcRouterLab {
 protected:
  void SetUp() override {
    TcRouterLab::SetUp();
    if (IsSkipped()) return;
    // A service beyond any route the lab knows: its ACKs have no way out for the program.
    cfg.services.push_back({*Address::parse("10.10.9.2"), 80});
  }

  // The program's view of the engine: its secrets, its clock and its announced window shift, and
  // the service listed with `flags`.
  void share_engine(RouterObject& o, const FlowTuple& c2s, uint8_t flags) {
    if (!engine) start();
    const CookieSecrets secrets = fixed_secrets();
    sg_cookie_secrets s{};
    std::memcpy(s.current, secrets.current.data(), 16);
    std::memcpy(s.previous, secrets.previous.data(), 16);
    s.current_since = secrets.current_since;
    s.max_age = jar->max_age();
    ASSERT_TRUE(o.publish_secrets(s));
    set_open(o, std::numeric_limits<uint64_t>::max());
    list_service(o, c2s, flags);
  }
  void set_open(RouterObject& o, uint64_t until_ns) {
    const sg_tc_open_config config{until_ns, now, cfg.announced_wscale, {}};
    const uint32_t zero = 0;
    ASSERT_EQ(bpf_map_update_elem(o.open_config(), &zero, &config, BPF_ANY), 0);
  }
  static void list_service(RouterObject& o, const FlowTuple& c2s, uint8_t flags) {
    sg_tc_service_key k{};
    std::memcpy(k.addr, c2s.dst.bytes.data(), 16);
    k.port_be = htons(c2s.dport);
    ASSERT_EQ(bpf_map_update_elem(o.services(), &k, &flags, BPF_ANY), 0);
  }
};

// Every way a cookie ACK can come, IPv4 and IPv6.
TEST_F(TcCookieAck, SendsTheBackendTheEnginesSyn) {
  RouterObject o(true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    struct Case {
      const char* name;
      void (*shape)(Conn&);
    };
    const Case cases[] = {
        {"linux", [](Conn&) {}},
        {"client without timestamps", [](Conn& c) { c.client_syn_opts.has_timestamps = false; }},
        {"client without window scaling", [](Conn& c) { c.client_syn_opts.has_wscale = false; }},
        {"client without SACK", [](Conn& c) { c.client_syn_opts.sack_permitted = false; }},
        {"client wscale 14", [](Conn& c) { c.client_syn_opts.wscale = 14; }},
        {"MSS 1260", [](Conn& c) { c.client_syn_opts.mss = 1260; }},
        {"MSS 536, a big window", [](Conn& c) {
           c.client_syn_opts.mss = 536;
           c.client_window = 65535;
         }},
        {"ECN", [](Conn& c) { c.syn_extra_flags = tcp_flag::ECE | tcp_flag::CWR; }},
        {"numbers across 2^32", [](Conn& c) {
           c.client_isn = 0xffffffffu;
           c.client_ts = 0xfffffff0u;
           c.client_syn_opts.tsval = c.client_ts;
         }},
    };
    cfg.announce_ecn = true;
    uint16_t port = 5000;
    for (int v6 = 0; v6 < 2; ++v6) {
      for (const Case& k : cases) {
        // The backend's timestamps known to the engine (a connection learnt them) or not: the
        // SYN leaves room for supplied ones, or none.
        for (int backend_ts_known = 0; backend_ts_known < 2; ++backend_ts_known) {
          SCOPED_TRACE(std::string(v6 ? "IPv6 " : "IPv4 ") + k.name +
                       (backend_ts_known ? ", backend timestamps known" : ""));
          Conn c = v6 ? Conn::v6(++port) : Conn::v4(++port);
          k.shape(c);
          if (!engine) start();
          if (backend_ts_known) {
            Conn teacher = v6 ? Conn::v6(++port) : Conn::v4(++port);
            establish(teacher);
          } else {
            engine.reset();
            start();
          }
          share_engine(o, c.c2s,
                       SG_TC_SERVICE_OPENS | (backend_ts_known ? SG_SERVICE_BACKEND_HAS_TIMESTAMPS : 0));
          Recorder rec;
          engine->set_flow_observer(&rec);
          learn_cookie(c);
          const Bytes ack = c.third_ack();
          const Delivered d = feed_in_slot(ack);
          engine->set_flow_observer(nullptr);
          ASSERT_EQ(d.wire.size(), 1u) << "the engine sent no SYN";
          ASSERT_TRUE(rec.handshake) << "the engine reported no handshake";
          const Seen engine_syn(d.wire[0]);
          ASSERT_TRUE(engine_syn.pkt.flags() & tcp_flag::SYN);

          const uint64_t opened0 = o.counter(SG_TC_OPENED);
          const TcRun r = run_from_client(o, frame_from_client(ack));
          EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
          EXPECT_EQ(o.counter(SG_TC_OPENED), opened0 + 1);
          EXPECT_TRUE(r.mark & SG_TC_MARK) << "the SYN must skip the queue rules";
          const Bytes want = forwarded(d.wire[0]);
          ASSERT_EQ(r.frame.size(), 14 + want.size()) << "the frame is the SYN, trimmed to its length";
          EXPECT_TRUE(std::equal(kBsMac, kBsMac + 6, r.frame.begin())) << "to the server's router";
          EXPECT_TRUE(std::equal(kGsMac, kGsMac + 6, r.frame.begin() + 6)) << "from the gateway";
          EXPECT_EQ(Bytes(r.frame.begin() + 14, r.frame.begin() + 14 + static_cast<long>(want.size())), want)
              << "the SYN to the backend";

          // The record for the backend's SYN-ACK, the engine's handshake, and the report.
          const sg_tc_flow_key s2c = key_of(c.c2s.reversed()), c2s = key_of(c.c2s);
          sg_tc_handshake record{};
          ASSERT_EQ(bpf_map_lookup_elem(o.handshakes(), &s2c, &record), 0) << "no record";
          EXPECT_EQ(std::memcmp(&record.hs, &*rec.handshake, sizeof record.hs), 0) << "the handshake record";
          EXPECT_EQ(record.client_data, 0u);
          EXPECT_NE(record.generation, 0u);
          // The SYN's way out, for the client's entry to start with (tc_abi.h).
          EXPECT_EQ(record.to_server_route.out_ifindex, static_cast<uint32_t>(gs()));
          EXPECT_EQ(record.to_server_route.in_ifindex, static_cast<uint32_t>(gc()));
          EXPECT_TRUE(std::equal(kBsMac, kBsMac + 6, record.to_server_route.macs));
          EXPECT_TRUE(std::equal(kGsMac, kGsMac + 6, record.to_server_route.macs + 6));
          EXPECT_EQ(record.to_server_route.check, sg_tc_route_check(&record.to_server_route));
          const std::vector<sg_tc_event> events = o.take_events();
          ASSERT_EQ(events.size(), 1u);
          EXPECT_EQ(events[0].kind, SG_TC_EVENT_OPENED);
          EXPECT_EQ(std::memcmp(&events[0].key, &c2s, sizeof c2s), 0);
          EXPECT_EQ(std::memcmp(&events[0].opened.hs, &*rec.handshake, sizeof record.hs), 0);
          EXPECT_EQ(events[0].opened.generation, record.generation);
          EXPECT_EQ(events[0].opened.over_closed, 0) << "no flow on the pair";
          const bool room = c.client_syn_opts.has_timestamps && !backend_ts_known;
          EXPECT_EQ(events[0].opened.room_for_timestamps, room ? 1 : 0);
          EXPECT_EQ(events[0].opened.mss, engine_syn.pkt.options().mss + (room ? SG_SUPPLIED_TIMESTAMPS_ROOM : 0u))
              << "the cookie's MSS";
          bpf_map_delete_elem(o.handshakes(), &s2c);
        }
      }
    }
  });
}

// What the program may not take goes on untouched, for the engine to judge as before.
TEST_F(TcCookieAck, LeavesTheRestToTheEngine) {
  RouterObject o(true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 6000;
    enum class Counted { Punted, Miss, Neither };
    // `prepare` shapes the program's state (or the ACK) before the run.
    const auto untouched = [&](Conn c, const char* what, Counted counted,
                               const std::function<void(Conn&, Bytes&)>& prepare) {
      SCOPED_TRACE(what);
      share_engine(o, c.c2s, SG_TC_SERVICE_OPENS);
      learn_cookie(c);
      Bytes ack = c.third_ack();
      prepare(c, ack);
      const Bytes frame = frame_from_client(ack);
      const uint64_t punted0 = o.counter(SG_TC_OPEN_PUNTED), miss0 = o.counter(SG_TC_MISS),
                     opened0 = o.counter(SG_TC_OPENED);
      const TcRun r = run_from_client(o, frame);
      EXPECT_EQ(r.retval, TC_ACT_OK);
      EXPECT_EQ(r.frame, frame) << "the ACK was rewritten";
      EXPECT_FALSE(r.mark & SG_TC_MARK);
      EXPECT_EQ(o.counter(SG_TC_OPENED), opened0);
      EXPECT_EQ(o.counter(SG_TC_OPEN_PUNTED), punted0 + (counted == Counted::Punted ? 1 : 0));
      EXPECT_EQ(o.counter(SG_TC_MISS), miss0 + (counted == Counted::Miss ? 1 : 0));
      EXPECT_TRUE(o.take_events().empty()) << "a flow was reported";
      const sg_tc_flow_key s2c = key_of(c.c2s.reversed());
      bpf_map_delete_elem(o.handshakes(), &s2c);
    };
    const auto no_record_written = [&](const Conn& c) {
      const sg_tc_flow_key s2c = key_of(c.c2s.reversed());
      sg_tc_handshake left{};
      EXPECT_NE(bpf_map_lookup_elem(o.handshakes(), &s2c, &left), 0) << "a record was written";
    };
    const auto checked = [&](Conn c, const char* what, Counted counted,
                             const std::function<void(Conn&, Bytes&)>& prepare) {
      untouched(c, what, counted, [&](Conn& cc, Bytes& ack) {
        prepare(cc, ack);
        c = cc;
      });
      no_record_written(c);
    };
    static const uint8_t data[5] = {'h', 'e', 'l', 'l', 'o'};
    for (int v6 = 0; v6 < 2; ++v6) {
      const auto conn = [&] { return v6 ? Conn::v6(++port) : Conn::v4(++port); };
      checked(conn(), "a forged cookie", Counted::Punted, [](Conn& c, Bytes& ack) {
        Conn forged = c;
        forged.cookie_isn += 1 << 8;
        ack = forged.third_ack();
      });
      checked(conn(), "another gateway's secrets", Counted::Punted, [&](Conn&, Bytes&) {
        sg_cookie_secrets other{};
        for (uint8_t i = 0; i < 16; ++i) other.current[i] = other.previous[i] = static_cast<uint8_t>(0xa0 + i);
        other.max_age = 1;
        ASSERT_TRUE(o.publish_secrets(other));
      });
      checked(conn(), "an expired cookie", Counted::Punted, [&](Conn&, Bytes&) {
        const sg_tc_open_config later{std::numeric_limits<uint64_t>::max(), now + 3 * SG_COOKIE_TICK_NS,
                                      cfg.announced_wscale, {}};
        const uint32_t zero = 0;
        ASSERT_EQ(bpf_map_update_elem(o.open_config(), &zero, &later, BPF_ANY), 0);
      });
      checked(conn(), "no daemon to take the flow (open_until_ns passed)", Counted::Punted,
              [&](Conn&, Bytes&) { set_open(o, 1); });
      checked(conn(), "a service not listed", Counted::Miss, [&](Conn& c, Bytes&) {
        sg_tc_service_key k{};
        std::memcpy(k.addr, c.c2s.dst.bytes.data(), 16);
        k.port_be = htons(c.c2s.dport);
        ASSERT_EQ(bpf_map_delete_elem(o.services(), &k), 0);
      });
      checked(conn(), "a service listed without SG_TC_SERVICE_OPENS", Counted::Miss,
              [&](Conn& c, Bytes&) { list_service(o, c.c2s, 0); });
      checked(conn(), "no route to the backend", Counted::Punted, [&](Conn& c, Bytes& ack) {
        if (c.c2s.dst.is_v4()) {
          c.c2s.dst = *Address::parse("10.10.9.2");
        } else {
          c.c2s.dst = *Address::parse("fd00:10:10:9::2");
        }
        list_service(o, c.c2s, SG_TC_SERVICE_OPENS);
        // The cookie is for its own tuple: learnt again for the new service.
        if (!c.c2s.dst.is_v4()) cfg.services.push_back({c.c2s.dst, 80});
        engine.reset();
        start();
        learn_cookie(c);
        ack = c.third_ack();
      });
      checked(conn(), "a TTL that expires here", Counted::Punted, [](Conn&, Bytes& ack) {
        if ((ack[0] >> 4) == 6) {
          ack[7] = 1;
          return;
        }
        ack[8] = 1;
        ack[10] = ack[11] = 0;
        const uint16_t sum = ipv4_header_checksum(std::span<const uint8_t>(ack.data(), 20));
        ack[10] = static_cast<uint8_t>(sum >> 8);
        ack[11] = static_cast<uint8_t>(sum);
      });
      checked(conn(), "data on the ACK (the engine buffers it)", Counted::Miss,
              [](Conn& c, Bytes& ack) { ack = c.third_ack(std::span<const uint8_t>(data, sizeof data)); });
      checked(conn(), "a FIN on the ACK", Counted::Miss, [](Conn& c, Bytes& ack) {
        SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                      .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window,
                      .options = c.client_ts_opts(1001)};
        ack = make(s);
      });
      checked(conn(), "an RST", Counted::Miss, [](Conn& c, Bytes& ack) {
        SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                      .flags = tcp_flag::ACK | tcp_flag::RST, .window = 0};
        ack = make(s);
      });
    }
  });
}

// A record already there (the engine's: a copy of the ACK reached it first; or one a flow on the
// pair left) is never written over: the ACK goes on to the engine, untouched.
TEST_F(TcCookieAck, NeverWritesOverARecord) {
  RouterObject o(true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    for (int v6 = 0; v6 < 2; ++v6) {
      Conn c = v6 ? Conn::v6(7001) : Conn::v4(7001);
      share_engine(o, c.c2s, SG_TC_SERVICE_OPENS);
      learn_cookie(c);
      const sg_tc_flow_key s2c = key_of(c.c2s.reversed());
      sg_tc_handshake engines{};
      engines.generation = 77;
      engines.hs.client_isn = c.client_isn;
      ASSERT_EQ(bpf_map_update_elem(o.handshakes(), &s2c, &engines, BPF_NOEXIST), 0);
      const Bytes frame = frame_from_client(c.third_ack());
      const TcRun r = run_from_client(o, frame);
      EXPECT_EQ(r.retval, TC_ACT_OK);
      EXPECT_EQ(r.frame, frame);
      sg_tc_handshake left{};
      ASSERT_EQ(bpf_map_lookup_elem(o.handshakes(), &s2c, &left), 0);
      EXPECT_EQ(std::memcmp(&left, &engines, sizeof left), 0) << "the record was written over";
      EXPECT_TRUE(o.take_events().empty());
      bpf_map_delete_elem(o.handshakes(), &s2c);
    }
  });
}

// A client that reuses its port while its previous connection on it lingers: the closed flow's
// entries leave its bare ACK untranslated (never with the old numbers), and the ingress hands it
// to the same cookie check. A valid cookie opens the new flow, reported as opened over a closed
// flow (the engine frees the old one, whose close it may not have merged yet); anything else goes
// on to the engine untouched. On a flow that has not closed, the ACK is the flow's, as before.
TEST_F(TcCookieAck, OpensOverAClosedFlowOfThePair) {
  RouterObject o(true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    enum class Old { ClientFin, Rst, ClosedByEngine, Open };
    struct Case {
      const char* name;
      Old old;
      bool forged;
    };
    const Case cases[] = {
        {"after the client's FIN", Old::ClientFin, false},
        {"after an RST", Old::Rst, false},
        {"after the engine's punt", Old::ClosedByEngine, false},
        {"a forged cookie after the client's FIN", Old::ClientFin, true},
        {"a flow not closed", Old::Open, false},
    };
    uint16_t port = 8000;
    for (int v6 = 0; v6 < 2; ++v6) {
      for (const Case& k : cases) {
        SCOPED_TRACE(std::string(v6 ? "IPv6 " : "IPv4 ") + k.name);
        Conn c = v6 ? Conn::v6(++port) : Conn::v4(++port);
        share_engine(o, c.c2s, SG_TC_SERVICE_OPENS);
        learn_cookie(c);
        // The previous connection's entries: its numbers far from the new one's.
        const sg_tc_flow_key c2s = key_of(c.c2s), s2c = key_of(c.c2s.reversed());
        sg_tc_flow up{}, down{};
        up.direction = SG_TC_TO_SERVER;
        down.direction = SG_TC_TO_CLIENT;
        up.delta = down.delta = 0x10000000u;
        up.generation = down.generation = 5;
        up.seen = down.seen = SG_TC_SEEN_RECORD;
        up.sender_next = c.client_isn - 0x40000000u;
        down.sender_next = c.cookie_isn - 0x40000000u;
        up.fin_seq = up.sender_next - 1;
        if (k.old == Old::ClientFin) up.closing = SG_TC_SEEN_FIN;
        if (k.old == Old::Rst) down.closing = SG_TC_SEEN_RST;
        if (k.old == Old::ClosedByEngine) up.closing = down.closing = SG_TC_CLOSED_BY_ENGINE;
        ASSERT_EQ(bpf_map_update_elem(o.flows(), &c2s, &up, BPF_ANY), 0);
        ASSERT_EQ(bpf_map_update_elem(o.flows(), &s2c, &down, BPF_ANY), 0);
        Conn sent = c;
        if (k.forged) sent.cookie_isn += 1 << 8;
        const Bytes frame = frame_from_client(sent.third_ack());
        const uint64_t opened0 = o.counter(SG_TC_OPENED), punted0 = o.counter(SG_TC_OPEN_PUNTED);
        const TcRun r = run_from_client(o, frame);
        const std::vector<sg_tc_event> events = o.take_events();
        sg_tc_handshake record{};
        const bool recorded = bpf_map_lookup_elem(o.handshakes(), &s2c, &record) == 0;
        if (k.old == Old::Open) {
          EXPECT_EQ(o.counter(SG_TC_OPENED), opened0);
          EXPECT_FALSE(recorded) << "a record was written over a live flow";
          for (const sg_tc_event& e : events) EXPECT_NE(e.kind, SG_TC_EVENT_OPENED);
        } else if (k.forged) {
          EXPECT_EQ(r.retval, TC_ACT_OK);
          EXPECT_EQ(r.frame, frame) << "the ACK was rewritten";
          EXPECT_FALSE(r.mark & SG_TC_MARK);
          EXPECT_EQ(o.counter(SG_TC_OPENED), opened0);
          EXPECT_EQ(o.counter(SG_TC_OPEN_PUNTED), punted0 + 1);
          EXPECT_FALSE(recorded);
          EXPECT_TRUE(events.empty());
        } else {
          EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
          EXPECT_EQ(o.counter(SG_TC_OPENED), opened0 + 1);
          EXPECT_TRUE(r.mark & SG_TC_MARK);
          const Seen syn(Bytes(r.frame.begin() + 14, r.frame.end()));
          EXPECT_EQ(syn.pkt.flags(), tcp_flag::SYN) << "the backend's SYN";
          EXPECT_EQ(syn.pkt.seq(), c.client_isn) << "the new connection's ISN";
          ASSERT_TRUE(recorded);
          EXPECT_EQ(record.hs.client_isn, c.client_isn);
          ASSERT_EQ(events.size(), 1u);
          EXPECT_EQ(events[0].kind, SG_TC_EVENT_OPENED);
          EXPECT_EQ(std::memcmp(&events[0].key, &c2s, sizeof c2s), 0);
          EXPECT_EQ(events[0].opened.over_closed, 1);
        }
        bpf_map_delete_elem(o.handshakes(), &s2c);
        bpf_map_delete_elem(o.flows(), &c2s);
        bpf_map_delete_elem(o.flows(), &s2c);
      }
    }
  });
}

}  // namespace
}  // namespace syngate
