// Drives the engine packet by packet with a scripted client and backend: each side builds the
// packets a real TCP stack would send, and checks what the engine hands to the other side.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "syngate/engine.hpp"
#include "syngate/packet.hpp"
#include "syngate_test/segments.hpp"

namespace syngate::test {

struct RecordingSink : PacketSink {
  std::vector<Bytes> packets;
  void send(std::span<const uint8_t> p) override { packets.emplace_back(p.begin(), p.end()); }
  size_t size() const { return packets.size(); }
  void clear() { packets.clear(); }
};

// A parsed copy of an emitted packet (owns its bytes).
struct Seen {
  Bytes bytes;
  TcpPacket pkt;
  explicit Seen(Bytes b) : bytes(std::move(b)) {
    ParseResult r = parse_tcp_packet(bytes);
    EXPECT_TRUE(r) << "engine emitted an unparseable packet: " << to_string(r.error);
    pkt = r.packet;
    EXPECT_TRUE(pkt.checksum_valid()) << "engine emitted a bad TCP checksum";
  }
  Seen(const Seen& o) : Seen(Bytes(o.bytes)) {}
};

inline CookieSecrets fixed_secrets() {
  CookieSecrets s;
  for (size_t i = 0; i < 16; ++i) {
    s.current[i] = static_cast<uint8_t>(0x10 + i);
    s.previous[i] = static_cast<uint8_t>(0x80 + i);
  }
  return s;
}

// segment(), checked: a spec the builder refuses fails the test.
inline Bytes make(const SegmentSpec& spec) {
  Bytes b = segment(spec);
  EXPECT_FALSE(b.empty());
  return b;
}

constexpr uint64_t kSecond = 1000000000ull;
constexpr uint64_t kMs = 1000000ull;

// One TCP connection through the proxy: client side numbers in client space, backend side in
// backend space, as each end sees them.
struct Conn {
  FlowTuple c2s;  // client -> service
  uint32_t client_isn = 0x1000;
  uint32_t backend_isn = 0x70000000;
  TcpOptions client_syn_opts;  // what the client's SYN offers
  TcpOptions backend_synack_opts;
  uint16_t client_window = 502;     // scaled by the client's wscale after the handshake
  uint16_t backend_window = 509;
  uint32_t client_ts = 1000;        // client's TS clock
  uint32_t backend_ts = 50000000;   // backend's TS clock
  uint8_t syn_extra_flags = 0;      // ECE | CWR: the client asks for ECN

  // Learned from the engine:
  uint32_t cookie_isn = 0;  // what the client sees as the server ISN
  uint32_t synack_tsval = 0;
  bool client_has_ts() const { return client_syn_opts.has_timestamps; }

  uint32_t client_next = 0;   // next client seq
  uint32_t backend_next = 0;  // next backend seq (backend space)

  static Conn v4(uint16_t sport = 40000) {
    Conn c;
    c.c2s.src = *Address::parse("10.10.1.2");
    c.c2s.dst = *Address::parse("10.10.3.2");
    c.c2s.sport = sport;
    c.c2s.dport = 80;
    c.client_syn_opts = linux_syn_options(c.client_ts);
    c.backend_synack_opts = c.client_syn_opts;  // same stack on both ends by default
    c.backend_synack_opts.tsval = c.backend_ts;
    return c;
  }
  static Conn v6(uint16_t sport = 40000) {
    Conn c = v4(sport);
    c.c2s.src = *Address::parse("fd00:10:10:1::2");
    c.c2s.dst = *Address::parse("fd00:10:10:3::2");
    c.client_syn_opts.mss = 1440;
    c.backend_synack_opts.mss = 1440;
    return c;
  }

  Bytes syn() const {
    SegmentSpec s{.tuple = c2s, .seq = client_isn, .flags = static_cast<uint8_t>(tcp_flag::SYN | syn_extra_flags),
                  .window = 64240,
                  .options = client_syn_opts};
    s.options.tsval = client_ts;
    return make(s);
  }
  TcpOptions client_ts_opts(uint32_t ts) const {
    TcpOptions o;
    if (client_has_ts()) {
      o.has_timestamps = true;
      o.tsval = ts;
      o.tsecr = synack_tsval;
    }
    return o;
  }
  // Third ACK, optionally carrying the first request bytes.
  Bytes third_ack(std::span<const uint8_t> data = {}, uint32_t ts = 1001) const {
    SegmentSpec s{.tuple = c2s, .seq = client_isn + 1, .ack = cookie_isn + 1,
                  .flags = static_cast<uint8_t>(tcp_flag::ACK | (data.empty() ? 0 : tcp_flag::PSH)),
                  .window = client_window, .options = client_ts_opts(ts), .payload = data};
    return make(s);
  }
  // Backend's SYN-ACK answering the engine's SYN.
  Bytes backend_synack(uint32_t tsecr) const {
    SegmentSpec s{.tuple = c2s.reversed(), .seq = backend_isn, .ack = client_isn + 1,
                  .flags = tcp_flag::SYN | tcp_flag::ACK, .window = 65160, .options = backend_synack_opts};
    s.options.tsecr = tsecr;
    if (!s.options.has_timestamps) s.options.tsecr = 0;
    return make(s);
  }
};

class EngineTest : public ::testing::Test {
 protected:
  EngineConfig cfg;
  std::optional<CookieJar> jar;
  std::optional<Engine> engine;
  RecordingSink sink;
  uint64_t now = 1000 * kSecond;

  void SetUp() override {
    cfg.services = {{*Address::parse("10.10.3.2"), 80}, {*Address::parse("fd00:10:10:3::2"), 80}};
    cfg.max_flows = 64;
    cfg.max_flows_per_source = 0;
  }
  void start() {
    jar.emplace(fixed_secrets());
    engine.emplace(cfg, *jar);
  }
  Decision feed(Bytes& b, bool checksum_ready = true) {
    if (!engine) start();
    return engine->process(b, now, sink, checksum_ready);
  }
  Decision feed(Bytes&& b) { return feed(b); }

  // A packet fed as the daemon feeds it, in a queue slot with room to grow (a packet the engine
  // builds may take its place), and what then reaches the wire: what the engine sent, then the
  // packet itself unless dropped, as the kernel has it after the verdict.
  struct Delivered {
    Decision decision;
    std::vector<Bytes> wire;
  };
  static constexpr size_t kSlotBytes = 2048;
  Delivered feed_in_slot(Bytes b) {
    if (!engine) start();
    sink.clear();
    const size_t length = b.size();
    b.resize(std::max(length, kSlotBytes));
    Delivered out{engine->process(std::span<uint8_t>(b.data(), length), now, sink, true, b.size()), {}};
    out.wire = std::move(sink.packets);
    sink.clear();
    if (out.decision.verdict == Verdict::Accept) {
      b.resize(out.decision.length ? out.decision.length : length);
      out.wire.push_back(std::move(b));
    }
    return out;
  }
  const EngineCounters& counters() { return engine->counters(); }

  // Sends the client's SYN and learns the cookie and TSval from the engine's SYN-ACK, which it
  // returns; the sink is left empty.
  Seen learn_cookie(Conn& c) {
    sink.clear();
    Decision d = feed(c.syn());
    EXPECT_EQ(d.verdict, Verdict::Drop);
    EXPECT_EQ(sink.size(), 1u);
    Seen synack(sink.packets.at(0));
    c.cookie_isn = synack.pkt.seq();
    c.synack_tsval = synack.pkt.options().tsval;
    sink.clear();
    return synack;
  }

  // Runs the handshake up to the point where the engine has sent the backend its SYN.
  // Returns the backend SYN.
  Seen open_to_backend_syn(Conn& c, std::span<const uint8_t> early = {}) {
    learn_cookie(c);
    Delivered d = feed_in_slot(c.third_ack(early));
    EXPECT_EQ(d.wire.size(), 1u) << "a valid cookie ACK must produce exactly the backend SYN";
    if (d.wire.empty()) return Seen(c.syn());
    return Seen(d.wire.front());
  }

  // Completes the handshake; returns what the engine emitted on the backend's SYN-ACK.
  std::vector<Seen> establish(Conn& c, std::span<const uint8_t> early = {}) {
    Seen syn = open_to_backend_syn(c, early);
    const uint32_t tsecr = syn.pkt.options().has_timestamps ? syn.pkt.options().tsval : 0;
    Delivered d = feed_in_slot(c.backend_synack(tsecr));
    std::vector<Seen> out;
    for (auto& p : d.wire) out.emplace_back(p);
    c.client_next = c.client_isn + 1 + static_cast<uint32_t>(early.size());
    c.backend_next = c.backend_isn + 1;
    return out;
  }
};

}  // namespace syngate::test
