// A client's request that overtakes its backend's SYN-ACK, kept in tc (gateway.tc_early_data;
// tc_abi.h, sg_tc_early): the ingress program keeps a data or FIN segment that names the cookie
// exactly and drops it; sg_tc_synack, after it answered the SYN-ACK as the engine would, puts each
// kept segment back at the ingress of the interface it came in on, where the ingress program
// translates it as the engine translates the same segment of the established flow. A SYN-ACK
// left to the engine takes the kept segments with it, and the skb goes up as the SYN-ACK that
// came. Run through BPF_PROG_TEST_RUN in the router lab (tc_router_lab.hpp): root, else skipped.
#include <gtest/gtest.h>

#include <bpf/bpf.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "syngate/bpf/tc_abi.h"
#include "syngate/checksum.hpp"
#include "syngate_test/engine_harness.hpp"
#include "syngate_test/packet_fixtures.hpp"
#include "tc_router_lab.hpp"

namespace syngate {
namespace {

using namespace test;

const uint8_t kHello[5] = {'h', 'e', 'l', 'l', 'o'};
const uint8_t kWorld[7] = {' ', 'w', 'o', 'r', 'l', 'd', '\n'};

// The client's segment at `offset` bytes past its ISN + 1, acknowledging our cookie (or `ack`).
Bytes client_segment(const Conn& c, uint32_t offset, uint8_t flags, std::span<const uint8_t> data,
                     std::optional<uint32_t> ack = std::nullopt) {
  SegmentSpec s{.tuple = c.c2s, .seq = c.client_isn + 1 + offset, .ack = ack ? *ack : c.cookie_isn + 1,
                .flags = flags, .window = c.client_window, .options = c.client_ts_opts(1002 + offset),
                .payload = data};
  return make(s);
}

// The frame as the link carries it, without the padding to 60 bytes (what the program keeps).
Bytes unpadded(const Bytes& frame) {
  const bool v6 = frame[12] == 0x86;
  const size_t ip_total = v6 ? 40u + (frame[18] << 8 | frame[19]) : (frame[16] << 8 | frame[17]);
  return Bytes(frame.begin(), frame.begin() + static_cast<long>(std::min(frame.size(), 14 + ip_total)));
}

size_t tcp_offset(const Bytes& frame) { return frame[12] == 0x86 ? 14 + 40 : 14 + 20; }

// The TCP checksum field (bytes as they lie) set to the CHECKSUM_PARTIAL seed a local sender's
// frame carries: the pseudo-header's sum folded, not complemented.
Bytes with_seed(Bytes frame) {
  const bool v6 = frame[12] == 0x86;
  const size_t l4 = tcp_offset(frame);
  const size_t tcp_len = unpadded(frame).size() - l4;
  Bytes pseudo;
  if (v6) {
    pseudo.assign(frame.begin() + 22, frame.begin() + 54);
    pseudo.insert(pseudo.end(), {0, 0, static_cast<uint8_t>(tcp_len >> 8), static_cast<uint8_t>(tcp_len), 0, 0, 0, 6});
  } else {
    pseudo.assign(frame.begin() + 26, frame.begin() + 34);
    pseudo.insert(pseudo.end(), {0, 6, static_cast<uint8_t>(tcp_len >> 8), static_cast<uint8_t>(tcp_len)});
  }
  const uint16_t seed = static_cast<uint16_t>(~csum_fold(csum_partial(pseudo)));
  frame[l4 + 16] = static_cast<uint8_t>(seed >> 8);
  frame[l4 + 17] = static_cast<uint8_t>(seed);
  return frame;
}

class TcEarly : public TcRouterLab {
 protected:
  struct Flow {
    Conn c;
    Recorder rec;
    Bytes synack;
    sg_tc_handshake record{};
    sg_tc_flow_key c2s{}, s2c{};
  };
  // A handshake up to the backend's SYN-ACK, its record written as the daemon writes it.
  void begin(const RouterObject& o, Flow& f, uint32_t generation) {
    f.synack = open(f.c, f.rec);
    ASSERT_TRUE(f.rec.handshake) << "the engine did not report its SYN";
    f.record = sg_tc_handshake{*f.rec.handshake, generation, 0, {}};
    f.c2s = key_of(f.c.c2s);
    f.s2c = key_of(f.c.c2s.reversed());
    ASSERT_EQ(bpf_map_update_elem(o.handshakes(), &f.s2c, &f.record, BPF_NOEXIST), 0);
  }
  uint32_t client_data(const RouterObject& o, const Flow& f) {
    sg_tc_handshake r{};
    if (bpf_map_lookup_elem(o.handshakes(), &f.s2c, &r) != 0) return ~0u;
    return r.client_data;
  }
  int slots_of(const RouterObject& o, const Flow& f) {
    int n = 0;
    for (uint32_t slot = 0; slot < SG_TC_EARLY_SLOTS; ++slot) {
      sg_tc_early_key k{f.c2s, slot};
      std::vector<uint8_t> v(sizeof(sg_tc_early_segment));
      if (bpf_map_lookup_elem(bpf_map__fd(o.skel->maps.sg_tc_early), &k, v.data()) == 0) ++n;
    }
    return n;
  }
  void end(const RouterObject& o, Flow& f) {
    bpf_map_delete_elem(o.flows(), &f.c2s);
    bpf_map_delete_elem(o.flows(), &f.s2c);
    bpf_map_delete_elem(o.handshakes(), &f.s2c);
    for (uint32_t slot = 0; slot < SG_TC_EARLY_SLOTS; ++slot) {
      sg_tc_early_key k{f.c2s, slot};
      bpf_map_delete_elem(bpf_map__fd(o.skel->maps.sg_tc_early), &k);
    }
    engine->set_flow_observer(nullptr);
    while (captured(0)) {
    }
    (void)reinjected(0);
  }
};

// Every shape of an early request, IPv4 and IPv6: kept, sent on behind the SYN-ACK's answers as
// it came, then translated as the engine translates it.
TEST_F(TcEarly, KeepsTheRequestAndSendsItOnBehindTheHandshake) {
  RouterObject o(false, true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    struct Case {
      const char* name;
      // (offset, flags, payload) of what the client sends, in order; `distinct` of them differ.
      std::vector<std::tuple<uint32_t, uint8_t, std::span<const uint8_t>>> sends;
      size_t distinct;
    };
    const uint8_t psh = tcp_flag::ACK | tcp_flag::PSH;
    const std::vector<Case> cases = {
        {"one request", {{0, psh, kHello}}, 1},
        {"two small segments (one slot's bytes)", {{0, psh, kHello}, {5, psh, kWorld}}, 2},
        {"a request and the client's FIN", {{0, psh, kHello}, {5, tcp_flag::ACK | tcp_flag::FIN, {}}}, 2},
        {"a retransmission", {{0, psh, kHello}, {0, psh, kHello}}, 1},
        {"a second segment first", {{5, psh, kWorld}, {0, psh, kHello}}, 2},
    };
    uint16_t port = 5000;
    uint32_t generation = 100;
    for (int v6 = 0; v6 < 2; ++v6) {
      for (const Case& k : cases) {
        SCOPED_TRACE(std::string(v6 ? "IPv6 " : "IPv4 ") + k.name);
        Flow f;
        f.c = v6 ? Conn::v6(++port) : Conn::v4(++port);
        begin(o, f, ++generation);
        if (HasFatalFailure()) return;

        std::vector<Bytes> sent;
        const uint64_t kept0 = o.counter(SG_TC_EARLY_STORED), sent0 = o.counter(SG_TC_EARLY_SENT);
        for (const auto& [offset, flags, data] : k.sends) {
          sent.push_back(frame_from_client(client_segment(f.c, offset, flags, data)));
          const TcRun r = run_from_client(o, sent.back());
          EXPECT_EQ(r.retval, TC_ACT_SHOT) << "not kept";
        }
        EXPECT_EQ(o.counter(SG_TC_EARLY_STORED), kept0 + k.sends.size());
        EXPECT_EQ(client_data(o, f), SG_TC_CLIENT_DATA_KEPT * k.distinct) << "the record's count";
        EXPECT_EQ(slots_of(o, f), static_cast<int>(k.distinct));

        // The engine's answer to the same SYN-ACK (it never saw the request): the ACK, the update.
        const Delivered d = feed_in_slot(f.synack);
        ASSERT_EQ(d.wire.size(), 2u);
        const TcRun r = run(o, frame_from_server(f.synack));
        EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
        EXPECT_EQ(Bytes(r.frame.begin() + 14, r.frame.end()), d.wire[0]) << "the ACK to the backend";
        const std::optional<Bytes> update = captured();
        ASSERT_TRUE(update) << "no window update reached the client";
        const Bytes want_update = forwarded(d.wire[1]);
        EXPECT_EQ(Bytes(update->begin() + 14, update->begin() + 14 + static_cast<long>(want_update.size())),
                  want_update);

        // Each kept segment once, as the client sent it, at the ingress it came in on.
        const std::vector<Bytes> back = reinjected();
        EXPECT_EQ(back.size(), k.distinct);
        EXPECT_EQ(o.counter(SG_TC_EARLY_SENT), sent0 + k.distinct);
        EXPECT_EQ(slots_of(o, f), 0) << "sent slots were left";
        for (const Bytes& frame : back) {
          const bool known = std::any_of(sent.begin(), sent.end(), [&](const Bytes& s) {
            return unpadded(s) == unpadded(frame);
          });
          EXPECT_TRUE(known) << "a re-injected frame the client did not send";
          // Through the ingress again: the flow's entries stand now, so it is translated, byte
          // for byte as the engine translates the same segment of the established flow.
          const TcRun t = run_from_client(o, frame);
          EXPECT_EQ(t.retval, TC_ACT_REDIRECT);
          const Bytes ip = unpadded(frame);
          const Delivered e = feed_in_slot(Bytes(ip.begin() + 14, ip.end()));
          ASSERT_EQ(e.wire.size(), 1u);
          const Bytes want = forwarded(e.wire[0]);
          ASSERT_GE(t.frame.size(), 14 + want.size());
          EXPECT_EQ(Bytes(t.frame.begin() + 14, t.frame.begin() + 14 + static_cast<long>(want.size())), want)
              << "translated unlike the engine";
        }
        end(o, f);
      }
    }
  });
}

// A client that reuses its port while its previous connection's entries linger, closed by its
// FIN (a busy client does, within the linger): the new connection's request is kept as on a pair
// with no entries, and the SYN-ACK's entries take the old ones' place. A segment on such a pair
// with no record (the old connection's, after its FIN) goes on to the engine, counted punted.
TEST_F(TcEarly, KeepsARequestOverAClosedFlowsEntries) {
  RouterObject o(false, true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 6500;
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      Flow f;
      f.c = v6 ? Conn::v6(++port) : Conn::v4(++port);
      sg_tc_flow old{};
      old.generation = 7;
      old.direction = SG_TC_TO_SERVER;
      old.closing = SG_TC_SEEN_FIN;
      const sg_tc_flow_key c2s = key_of(f.c.c2s), s2c = key_of(f.c.c2s.reversed());
      ASSERT_EQ(bpf_map_update_elem(o.flows(), &c2s, &old, BPF_ANY), 0);
      old.direction = SG_TC_TO_CLIENT;
      old.closing = 0;
      ASSERT_EQ(bpf_map_update_elem(o.flows(), &s2c, &old, BPF_ANY), 0);

      // Before the new connection's record: the old connection's segment, for the engine.
      const Bytes late = frame_from_client(client_segment(f.c, 0, tcp_flag::ACK | tcp_flag::PSH, kWorld));
      const uint64_t punted0 = o.counter(SG_TC_PUNTED), kept0 = o.counter(SG_TC_EARLY_STORED);
      const TcRun l = run_from_client(o, late);
      EXPECT_EQ(l.retval, TC_ACT_OK);
      EXPECT_EQ(l.frame, late);
      EXPECT_EQ(o.counter(SG_TC_PUNTED), punted0 + 1);
      EXPECT_EQ(o.counter(SG_TC_EARLY_STORED), kept0);

      begin(o, f, 250 + static_cast<uint32_t>(v6));
      if (HasFatalFailure()) return;
      const Bytes request = frame_from_client(client_segment(f.c, 0, tcp_flag::ACK | tcp_flag::PSH, kHello));
      EXPECT_EQ(run_from_client(o, request).retval, TC_ACT_SHOT) << "not kept";
      EXPECT_EQ(client_data(o, f), SG_TC_CLIENT_DATA_KEPT);
      EXPECT_EQ(run(o, frame_from_server(f.synack)).retval, TC_ACT_REDIRECT);
      sg_tc_flow up{};
      ASSERT_EQ(bpf_map_lookup_elem(o.flows(), &c2s, &up), 0);
      EXPECT_EQ(up.generation, f.record.generation) << "the old entries stayed";
      const std::vector<Bytes> back = reinjected();
      ASSERT_EQ(back.size(), 1u);
      EXPECT_EQ(unpadded(back[0]), unpadded(request));
      EXPECT_EQ(run_from_client(o, back[0]).retval, TC_ACT_REDIRECT) << "not translated by the new entries";
      end(o, f);
    }
  });
}

// A SYN-ACK the engine must answer (a backend without the timestamps the client was promised)
// takes the kept segments with it: re-injected for the engine, the record marked the engine's so
// that they are not kept again, and the SYN-ACK goes up as it came.
TEST_F(TcEarly, ASynackLeftToTheEngineTakesTheKeptSegments) {
  RouterObject o(false, true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 6000;
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      Flow f;
      f.c = v6 ? Conn::v6(++port) : Conn::v4(++port);
      f.c.backend_synack_opts.has_timestamps = false;
      begin(o, f, 200 + static_cast<uint32_t>(v6));
      if (HasFatalFailure()) return;
      const Bytes request = frame_from_client(client_segment(f.c, 0, tcp_flag::ACK | tcp_flag::PSH, kHello));
      EXPECT_EQ(run_from_client(o, request).retval, TC_ACT_SHOT);

      const uint64_t to_engine0 = o.counter(SG_TC_EARLY_TO_ENGINE), punted0 = o.counter(SG_TC_HANDSHAKE_PUNTED);
      const Bytes synack = frame_from_server(f.synack);
      const TcRun r = run(o, synack);
      EXPECT_EQ(r.retval, TC_ACT_OK);
      EXPECT_EQ(unpadded(r.frame), unpadded(synack)) << "the SYN-ACK was not put back as it came";
      EXPECT_EQ(o.counter(SG_TC_HANDSHAKE_PUNTED), punted0 + 1);
      EXPECT_EQ(o.counter(SG_TC_EARLY_TO_ENGINE), to_engine0 + 1);
      EXPECT_EQ(client_data(o, f) & SG_TC_CLIENT_DATA_ENGINE, 1u) << "the record is not the engine's";
      const std::vector<Bytes> back = reinjected();
      ASSERT_EQ(back.size(), 1u);
      EXPECT_EQ(unpadded(back[0]), unpadded(request));
      // On its way to the engine: not kept again, untouched.
      const uint64_t kept0 = o.counter(SG_TC_EARLY_STORED);
      const TcRun again = run_from_client(o, back[0]);
      EXPECT_EQ(again.retval, TC_ACT_OK);
      EXPECT_EQ(unpadded(again.frame), unpadded(request));
      EXPECT_EQ(o.counter(SG_TC_EARLY_STORED), kept0);
      EXPECT_FALSE(captured(100)) << "something was sent to the client";
      end(o, f);
    }
  });
}

// Only a segment that names our cookie exactly, within the window, is kept; the first that is
// not makes the record the engine's as before, and one behind kept segments is dropped. A slot
// an older connection on the pair left is neither sent nor in the way.
TEST_F(TcEarly, KeepsOnlyWhatTheCookieNames) {
  RouterObject o(false, true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 7000;
    const uint8_t psh = tcp_flag::ACK | tcp_flag::PSH;
    for (int v6 = 0; v6 < 2; ++v6) {
      SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
      const auto conn = [&] { return v6 ? Conn::v6(++port) : Conn::v4(++port); };
      // `marks`: the record becomes the engine's (data and FINs do; a bare RST never did).
      const auto goes_to_engine = [&](const char* what, const std::function<Bytes(const Conn&)>& segment,
                                      bool marks = true) {
        SCOPED_TRACE(what);
        Flow f;
        f.c = conn();
        begin(o, f, 300);
        if (HasFatalFailure()) return;
        const Bytes frame = frame_from_client(segment(f.c));
        const TcRun r = run_from_client(o, frame);
        EXPECT_EQ(r.retval, TC_ACT_OK);
        EXPECT_EQ(r.frame, frame);
        EXPECT_EQ(client_data(o, f), marks ? 1u : 0u) << "the record's owner";
        EXPECT_EQ(slots_of(o, f), 0);
        end(o, f);
      };
      goes_to_engine("an ack that is not our cookie's", [&](const Conn& c) {
        return client_segment(c, 0, psh, kHello, c.cookie_isn + 2);
      });
      goes_to_engine("past the window", [&](const Conn& c) {
        return client_segment(c, SG_TC_EARLY_WINDOW, psh, kHello);
      });
      goes_to_engine("a corrupt checksum", [&](const Conn& c) {
        Bytes b = client_segment(c, 0, psh, kHello);
        b[b.size() - 1] ^= 0x55;
        return b;
      });
      goes_to_engine("an RST", [&](const Conn& c) { return client_segment(c, 0, tcp_flag::RST | tcp_flag::ACK, {}); },
                     false);

      // Behind a kept segment, one that cannot be kept is dropped, counted.
      Flow f;
      f.c = conn();
      begin(o, f, 400);
      if (HasFatalFailure()) return;
      // An older connection's slot where the request's would go, and one further on.
      std::vector<uint8_t> stale(sizeof(sg_tc_early_segment), 0);
      sg_tc_early_segment* s = reinterpret_cast<sg_tc_early_segment*>(stale.data());
      s->generation = 399;
      s->seq = f.c.client_isn + 1;
      s->len = 80;
      s->ifindex = static_cast<uint32_t>(gc_);
      const int early = bpf_map__fd(o.skel->maps.sg_tc_early);
      for (uint32_t slot : {0u, 3u}) {
        sg_tc_early_key key{f.c2s, slot};
        ASSERT_EQ(bpf_map_update_elem(early, &key, stale.data(), BPF_ANY), 0);
      }
      EXPECT_EQ(run_from_client(o, frame_from_client(client_segment(f.c, 0, psh, kHello))).retval, TC_ACT_SHOT);
      const uint64_t refused0 = o.counter(SG_TC_EARLY_REFUSED);
      EXPECT_EQ(run_from_client(o, frame_from_client(client_segment(f.c, 5, psh, kWorld, f.c.cookie_isn + 9))).retval,
                TC_ACT_SHOT);
      EXPECT_EQ(o.counter(SG_TC_EARLY_REFUSED), refused0 + 1);
      EXPECT_EQ(client_data(o, f), SG_TC_CLIENT_DATA_KEPT) << "one kept, and the record still tc's";
      EXPECT_EQ(run(o, frame_from_server(f.synack)).retval, TC_ACT_REDIRECT);
      EXPECT_EQ(reinjected().size(), 1u) << "the older connection's slot was sent";
      sg_tc_early_key key{f.c2s, 3};
      EXPECT_EQ(bpf_map_lookup_elem(early, &key, stale.data()), 0) << "an older slot was taken";
      end(o, f);
    }
  });
}

// The checksum field as the SYN-ACK's state needs it: a local client's seed becomes the full sum
// behind a SYN-ACK that carries one (a backend behind a NIC), and a full sum becomes the seed
// behind a local backend's SYN-ACK (CHECKSUM_PARTIAL: the sender's device sums it).
TEST_F(TcEarly, WritesTheChecksumTheSynacksStateNeeds) {
  RouterObject o(false, true);
  ASSERT_TRUE(o.skel) << o.error;
  in_lab([&] {
    uint16_t port = 8000;
    for (int v6 = 0; v6 < 2; ++v6) {
      for (int seed_first = 0; seed_first < 2; ++seed_first) {
        SCOPED_TRACE(std::string(v6 ? "IPv6" : "IPv4") + (seed_first ? ": a seed to a full sum" : ": a full sum to a seed"));
        Flow f;
        f.c = v6 ? Conn::v6(++port) : Conn::v4(++port);
        begin(o, f, 500);
        if (HasFatalFailure()) return;
        const Bytes request = frame_from_client(client_segment(f.c, 0, tcp_flag::ACK | tcp_flag::PSH, kHello));
        EXPECT_EQ(run_from_client(o, seed_first ? with_seed(request) : request).retval, TC_ACT_SHOT);
        const Bytes synack = frame_from_server(f.synack);
        EXPECT_EQ(run(o, seed_first ? synack : with_seed(synack)).retval, TC_ACT_REDIRECT);
        const std::vector<Bytes> back = reinjected();
        ASSERT_EQ(back.size(), 1u);
        EXPECT_EQ(unpadded(back[0]), unpadded(seed_first ? request : with_seed(request)));
        end(o, f);
      }
    }
  });
}

}  // namespace
}  // namespace syngate
