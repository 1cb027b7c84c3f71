// The backend's SYN-ACK taken in the kernel (sg_tc_synack, the router's ingress program's tail
// call) against the engine taking the same SYN-ACK: real handshakes through the engine give the
// handshake record the daemon hands the program (FlowObserver::handshake_sent) and the two packets
// the engine answers with; the program, run on the same SYN-ACK through BPF_PROG_TEST_RUN, must
// send the same window update to the client (a clone, captured where it lands), turn the SYN-ACK
// into the same ACK to the backend (byte for byte, IP and TCP), write the same two flow entries,
// consume the handshake record and report the hand-over. And it must leave to the engine, untouched,
// every SYN-ACK the engine alone can take.
//
// The program asks the FIB where the client is and sends the clone out that way: the router lab
// (tc_router_lab.hpp). Needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN, a network namespace):
// skipped, saying so, otherwise.
#include <gtest/gtest.h>

#include <bpf/bpf.h>

#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "syngate/bpf/tc_abi.h"
#include "syngate_test/engine_harness.hpp"
#include "syngate_test/packet_fixtures.hpp"
#include "tc_router_lab.hpp"

namespace syngate {
namespace {

using namespace test;

using TcSynack = test::TcRouterLab;

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
        const sg_tc_handshake record{*rec.handshake, ++generation, 0, {}};
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
        // The server's segments will come the SYN-ACK's way: their entry starts with its route
        // (tc_abi.h, sg_tc_route_cache), the window update's, good for a few ms.
        EXPECT_EQ(down.route.out_ifindex, static_cast<uint32_t>(gc())) << "the route to the client";
        EXPECT_EQ(down.route.in_ifindex, static_cast<uint32_t>(gs())) << "asked for the server's side";
        EXPECT_TRUE(std::equal(kClientMac, kClientMac + 6, down.route.macs)) << "the next hop";
        EXPECT_TRUE(std::equal(kGcMac, kGcMac + 6, down.route.macs + 6)) << "the way out's own";
        EXPECT_EQ(down.route.mtu, 1500) << "the link's MTU";
        EXPECT_EQ(down.route.check, sg_tc_route_check(&down.route));
        want_down.route = down.route;
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
        // The client's FIN, translated: its close reported with the entries' generation, so that
        // only this flow takes it (not the pair's previous connection, still in the table).
        const SegmentSpec fin{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1,
                              .flags = tcp_flag::ACK | tcp_flag::FIN, .window = c.client_window,
                              .options = c.client_ts_opts(1002)};
        const uint64_t translated0 = o.counter(SG_TC_TRANSLATED);
        (void)run(o, frame_from_client(make(fin)));
        EXPECT_EQ(o.counter(SG_TC_TRANSLATED), translated0 + 1);
        const std::vector<sg_tc_event> closes = o.take_events();
        ASSERT_EQ(closes.size(), 1u);
        EXPECT_EQ(closes[0].kind, SG_TC_EVENT_CLOSE);
        EXPECT_EQ(std::memcmp(&closes[0].key, &c2s, sizeof c2s), 0);
        EXPECT_EQ(closes[0].close_generation, record.generation);
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
    // `over_closed`: the pair still holds an older flow's entries, closed by the client's FIN (a
    // port reused within the linger).
    const auto untouched = [&](Conn c, const std::function<Bytes(const Conn&)>& answer, const char* what,
                               bool with_record = true, const std::function<Bytes(const Conn&)>& before = {},
                               bool over_closed = false) {
      SCOPED_TRACE(what);
      Recorder rec;
      (void)open(c, rec);
      ASSERT_TRUE(rec.handshake);
      const sg_tc_handshake record{*rec.handshake, 9, 0, {}};
      const sg_tc_flow_key s2c = key_of(c.c2s.reversed()), c2s = key_of(c.c2s);
      if (with_record) {
        ASSERT_EQ(bpf_map_update_elem(o.handshakes(), &s2c, &record, BPF_ANY), 0);
      }
      if (over_closed) {
        sg_tc_flow old{};
        old.generation = 7;
        old.direction = SG_TC_TO_SERVER;
        old.closing = SG_TC_SEEN_FIN;
        ASSERT_EQ(bpf_map_update_elem(o.flows(), &c2s, &old, BPF_ANY), 0);
        old.direction = SG_TC_TO_CLIENT;
        old.closing = 0;
        ASSERT_EQ(bpf_map_update_elem(o.flows(), &s2c, &old, BPF_ANY), 0);
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
      if (over_closed) {
        ASSERT_EQ(bpf_map_lookup_elem(o.flows(), &c2s, &entry), 0);
        EXPECT_EQ(entry.generation, 7u) << "the new flow's entries were written";
        bpf_map_delete_elem(o.flows(), &c2s);
        bpf_map_delete_elem(o.flows(), &s2c);
      } else {
        EXPECT_NE(bpf_map_lookup_elem(o.flows(), &c2s, &entry), 0) << "an entry was written";
      }
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
      untouched(conn(), [](const Conn& c) { return c.backend_synack(0); },
                "client data before the SYN-ACK, over an older flow's closed entries", true,
                client_sends(tcp_flag::ACK | tcp_flag::PSH, sizeof data), true);
    }
  });
}

}  // namespace
}  // namespace syngate
