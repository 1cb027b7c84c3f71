// The fuzz_engine program (also run by the engine reset test, tests/fuzz). Feeds packet sequences through the engine: a few clients and a backend whose packets are built
// from the fuzz input but stay close enough to real conversations (they echo cookies and ISNs the
// engine emitted) to reach every state, mixed with raw bytes and time jumps.
// ICMP errors quoting the conversation's segments (any error type, cut anywhere) reach the flow
// path's translation.
// Invariants: no crash or sanitizer report; every emitted packet parses with a valid checksum;
// a rewritten packet still parses and its checksum stays valid (TCP or ICMP); an ICMP message
// emits nothing and is rewritten only when it is an error about TCP; the flow count stays bounded.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_input.hpp"
#include "syngate/engine.hpp"
#include "syngate/icmp.hpp"
#include "syngate/packet.hpp"
#include "syngate_test/icmp_builder.hpp"

namespace syngate::fuzz {

namespace engine_program {

struct Peer {
  uint32_t client_isn = 0, cookie = 0, synack_ts = 0;
  uint32_t backend_isn = 0, backend_syn_ts = 0;
  bool have_cookie = false, have_backend_syn = false;
};

template <typename T>
void record(std::vector<uint8_t>& trace, const T& v) {
  const auto* b = reinterpret_cast<const uint8_t*>(&v);
  trace.insert(trace.end(), b, b + sizeof v);
}
inline void record(std::vector<uint8_t>& trace, const Decision& d) {
  trace.push_back(static_cast<uint8_t>(d.verdict));
  trace.push_back(d.modified);
  record(trace, d.length);
}
inline void record(std::vector<uint8_t>& trace, const EngineCounters& c) {
  static_assert(sizeof(EngineCounters) % sizeof(uint64_t) == 0, "counters are plain uint64_t: no padding");
  record<EngineCounters>(trace, c);
}

// The program's buffers, kept from input to input (one program runs at a time): allocations under
// ASan (a stack trace each, a quarantine) cost more than a packet's trip through the engine.
// Nothing read from them outlives the step that wrote it.
struct Buffers {
  std::vector<std::vector<uint8_t>> sent;  // the packets the engine emitted in this step
  std::vector<uint8_t> built;              // a segment as build_tcp_packet makes it
  std::vector<uint8_t> pkt;                // the packet fed to the engine
  std::vector<uint8_t> before;             // pkt as it was fed, for the checksum rule
  std::vector<TcpPacket> out;              // views into sent
};
inline Buffers& buffers() {
  static Buffers b;
  return b;
}

// Checks what the engine emits and, for the reset test, appends it to the trace. Keeps the
// packets of the current step (begin() forgets them) parsed.
struct Sink : PacketSink {
  std::vector<uint8_t>* trace = nullptr;
  std::vector<std::vector<uint8_t>>& bufs = buffers().sent;
  std::vector<TcpPacket>& out = buffers().out;  // views into bufs
  explicit Sink(std::vector<uint8_t>* t) : trace(t) { out.clear(); }
  void begin() { out.clear(); }
  void send(std::span<const uint8_t> p) override {
    if (out.size() == bufs.size()) bufs.emplace_back();
    std::vector<uint8_t>& copy = bufs[out.size()];
    copy.assign(p.begin(), p.end());
    ParseResult r = parse_tcp_packet(copy);
    check(static_cast<bool>(r));
    check(r.packet.checksum_valid());
    if (trace) {
      record(*trace, static_cast<uint32_t>(copy.size()));
      trace->insert(trace->end(), copy.begin(), copy.end());
    }
    out.push_back(r.packet);
  }
};

constexpr int kClients = 4;

// Client i's connection (client -> service): two IPv4 clients of one address, one of another,
// one IPv6.
inline FlowTuple client_tuple(int i) {
  FlowTuple t;
  const bool v6 = i == 3;
  t.src = v6 ? *Address::parse("fd00::1") : Address::from_v4(0x0a0a0100u + static_cast<uint32_t>(i % 2));
  t.dst = v6 ? *Address::parse("fd00::2") : *Address::parse("10.10.3.2");
  t.sport = static_cast<uint16_t>(1000 + i);
  t.dport = v6 ? 443 : 80;
  return t;
}

}  // namespace engine_program

// The engine's settings that come from the input's first bytes.
inline void engine_program_settings(Input& in, EngineConfig& cfg) {
  cfg.backend_syn_retries = in.u8() % 4;
  cfg.announced_wscale = in.u8() % 15;
  cfg.icmp_next_queue = cfg.announced_wscale & 1;
}

// The engine's configuration: small tables (the flows of a few clients fill them) and the
// settings from the input's first bytes. A caller may keep it: engine_program_next_config.
inline EngineConfig engine_program_config(Input& in) {
  EngineConfig cfg;
  cfg.services = {{*Address::parse("10.10.3.2"), 80}, {*Address::parse("fd00::2"), 443}};
  cfg.max_flows = 3;
  cfg.max_flows_per_source = 2;
  cfg.proven_sources = std::make_shared<ProvenSources>(64, cfg.hash_key);  // small: new for every input
  cfg.budget_cells = 64;  // a few clients: a reset clears 1 KiB, not 256
  cfg.early_data_bytes = 64;
  cfg.early_data_slots = 2;
  engine_program_settings(in, cfg);
  return cfg;
}

// The configuration for the next input when one is kept from input to input (as fuzz_engine
// does, to spare an allocation per input): the input's settings, and the shared table of proven
// sources cleared, as a new one.
inline const EngineConfig& engine_program_next_config(EngineConfig& kept, Input& in) {
  engine_program_settings(in, kept);
  kept.proven_sources->clear(kept.hash_key);
  return kept;
}

inline CookieJar engine_program_cookies() {
  CookieSecrets secrets;
  secrets.current.fill(7);
  return CookieJar(secrets);
}

// Runs the rest of the input through an engine built (or reset) with engine_program_config.
// With `trace`, appends every decision, rewritten packet, emitted packet and the final counters.
inline void run_engine_program(Engine& engine, Input& in, std::vector<uint8_t>* trace = nullptr) {
  using namespace engine_program;
  const EngineConfig& cfg = engine.config();
  uint64_t now = 100ull * 1000 * 1000 * 1000;
  Peer peers[kClients];
  Sink sink{trace};

  // The clients' tuples, made once: this runs for every packet the engine emits.
  static const std::array<FlowTuple, kClients> tuples = [] {
    std::array<FlowTuple, kClients> a;
    for (int i = 0; i < kClients; ++i) a[static_cast<size_t>(i)] = client_tuple(i);
    return a;
  }();
  static const std::array<FlowTuple, kClients> reversed = [] {
    std::array<FlowTuple, kClients> a;
    for (size_t i = 0; i < a.size(); ++i) a[i] = tuples[i].reversed();
    return a;
  }();
  auto tuple_of = [](int i) -> const FlowTuple& { return tuples[static_cast<size_t>(i)]; };

  Buffers& bufs = buffers();
  auto feed = [&](std::vector<uint8_t>& pkt, bool ready) {
    // Kept as fed and parsed only if the checksum rule below needs to know whether it was valid
    // (an in-place rewrite of a segment): parsing every packet for it cost as much as the copy
    // saves many times over.
    bufs.before.assign(pkt.begin(), pkt.end());
    auto was_valid = [&] {
      ParseResult before = parse_tcp_packet(bufs.before);
      return before && before.packet.checksum_valid();
    };
    const IcmpError icmp = parse_icmp_error(pkt);
    const bool icmp_plain = icmp.kind != IcmpKind::NotIcmp && (pkt[0] >> 4 == 4 || pkt[6] == 58);
    const bool icmp_valid = icmp_plain && syngate::test::icmp_checksum_residue(pkt) == 0;
    sink.begin();
    // Room to grow, as the daemon's receive slots give (a segment may get timestamps added).
    const size_t length = pkt.size();
    pkt.resize(length + 64);
    Decision d = engine.process(std::span<uint8_t>(pkt.data(), length), now, sink, ready, pkt.size());
    check(d.length == 0 || (d.modified && d.length != length && d.length <= pkt.size()));
    pkt.resize(d.length ? d.length : length);
    check(d.verdict != Verdict::NextQueue || (cfg.icmp_next_queue && !d.modified && icmp.kind == IcmpKind::TcpError));
    if (icmp.kind != IcmpKind::NotIcmp) {
      check(d.length == 0);
      // An error about syngate's own SYN to the backend resets the client at once: RSTs only.
      for (const TcpPacket& e : sink.out) check(e.has(tcp_flag::RST));
      check(!d.modified || icmp.kind == IcmpKind::TcpError);
      if (d.modified && icmp_valid) check(syngate::test::icmp_checksum_residue(pkt) == 0);
    } else if (d.modified) {
      ParseResult after = parse_tcp_packet(pkt);
      check(static_cast<bool>(after));
      if (!ready || d.length || was_valid()) check(after.packet.checksum_valid());
    }
    // Learn what the engine told each side, so later packets can answer it. Only SYNs teach
    // anything: the rest of what the engine sends is not matched against the clients at all.
    for (const TcpPacket& e : sink.out) {
      if (!e.has(tcp_flag::SYN)) continue;
      const FlowTuple et = e.tuple();
      for (int i = 0; i < kClients; ++i) {
        if (e.has(tcp_flag::ACK) && et == reversed[static_cast<size_t>(i)]) {
          peers[i].cookie = e.seq();
          peers[i].synack_ts = e.options().tsval;
          peers[i].have_cookie = true;
        } else if (et == tuple_of(i)) {
          peers[i].backend_syn_ts = e.options().tsval;
          peers[i].have_backend_syn = true;
        }
      }
    }
    check(engine.counters().flows_active <= cfg.max_flows);
    if (trace) {
      record(*trace, d);
      if (d.modified) trace->insert(trace->end(), pkt.begin(), pkt.end());
    }
  };

  std::vector<uint8_t>& buf = bufs.built;
  buf.resize(kMaxHeadersLen + 256);
  // The packet fed to the engine: room for an ICMP error quoting a full segment plus the 64 bytes
  // feed() lets a segment grow by, so it never reallocates.
  std::vector<uint8_t>& pkt = bufs.pkt;
  pkt.reserve(2 * buf.size() + 128);
  bufs.before.reserve(pkt.capacity());
  // The segments carry zeros (what the engine does with payload does not depend on its bytes).
  static constexpr uint8_t payload[100] = {};
  while (!in.empty()) {
    const uint8_t op = in.u8();
    const int who = op >> 5 & 3;
    Peer& peer = peers[who];
    const FlowTuple& t = tuple_of(who);
    const FlowTuple& back = reversed[static_cast<size_t>(who)];  // the backend's direction
    const uint8_t bits = in.u8();
    SegmentSpec s;
    TcpOptions& o = s.options;
    o.has_timestamps = bits & 1;
    o.tsval = in.u32();
    o.tsecr = (bits & 2) ? peer.synack_ts : in.u32();
    o.has_wscale = bits & 4;
    o.wscale = in.u8();
    o.sack_permitted = bits & 8;
    const uint8_t len = in.u8() % 100;
    s.window = in.u16();
    s.payload = std::span<const uint8_t>(payload, (bits & 16) ? len : 0);
    const uint32_t jitter = (bits & 32) ? in.u32() : in.u8() % 4;
    switch (op % 9) {
      case 0:  // client SYN
        peer.client_isn = in.u32();
        s.tuple = t;
        s.seq = peer.client_isn;
        s.flags = tcp_flag::SYN | ((bits & 64) ? tcp_flag::ECE | tcp_flag::CWR : 0);
        s.options.has_mss = bits & 128;
        s.options.mss = in.u16();
        s.payload = {};
        break;
      case 1:  // client ACK / data, near the cookie
        s.tuple = t;
        s.seq = peer.client_isn + 1 + jitter;
        s.ack = peer.cookie + 1 + ((bits & 64) ? in.u16() : 0);
        s.flags = tcp_flag::ACK | ((bits & 128) ? tcp_flag::FIN : 0);
        break;
      case 2:  // backend SYN-ACK
        peer.backend_isn = in.u32();
        s.tuple = back;
        s.seq = peer.backend_isn;
        s.ack = peer.client_isn + 1 + ((bits & 64) ? jitter : 0);
        s.flags = tcp_flag::SYN | tcp_flag::ACK;
        s.options.tsecr = peer.backend_syn_ts;
        s.payload = {};
        break;
      case 3:  // backend data / FIN
        s.tuple = back;
        s.seq = peer.backend_isn + 1 + jitter;
        s.ack = peer.client_isn + 1 + in.u16();
        s.flags = tcp_flag::ACK | ((bits & 128) ? tcp_flag::FIN : 0);
        break;
      case 4:  // RST either way
        s.tuple = (bits & 64) ? back : t;
        s.seq = (bits & 64) ? peer.backend_isn + 1 : peer.client_isn + 1;
        s.ack = peer.client_isn + 1;
        s.flags = tcp_flag::RST | ((bits & 128) ? tcp_flag::ACK : 0);
        s.payload = {};
        break;
      case 5: {  // raw bytes
        pkt.clear();
        const size_t n = in.u8();
        for (size_t i = 0; i < n && !in.empty(); ++i) pkt.push_back(in.u8());
        feed(pkt, true);
        continue;
      }
      case 6:  // time passes
        now += uint64_t{in.u16()} * 1000 * 1000 * ((bits & 64) ? 1000 : 1);
        engine.advance(now, sink);
        if (trace) trace->push_back(0xa5);
        continue;
      case 7: {  // a well-formed packet with one byte flipped
        s.tuple = (bits & 64) ? back : t;
        s.seq = in.u32();
        s.ack = in.u32();
        s.flags = in.u8();
        const size_t n = build_tcp_packet(buf, s);
        if (n == 0) continue;
        pkt.assign(buf.begin(), buf.begin() + static_cast<long>(n));
        pkt[in.u8() % n] ^= static_cast<uint8_t>(1u << (in.u8() % 8));
        feed(pkt, true);
        continue;
      }
      case 8: {  // a router's ICMP error quoting a segment of either side, near the flow's numbers
        const bool from_backend = bits & 64;
        s.tuple = from_backend ? back : t;
        s.seq = from_backend ? peer.backend_isn + 1 + jitter : peer.client_isn + 1 + jitter;
        s.ack = from_backend ? peer.client_isn + 1 : peer.cookie + 1 + jitter;
        s.flags = tcp_flag::ACK | ((bits & 128) ? tcp_flag::RST : 0);
        s.options.sack_count = in.u8() % 5;
        for (auto& b : s.options.sack) b = {s.ack + in.u16(), s.ack + in.u16()};
        const size_t n = build_tcp_packet(buf, s);
        if (n == 0) continue;
        const bool v6 = !t.src.is_v4();
        static const Address router4 = *Address::parse("10.10.4.2"), router6 = *Address::parse("fd00::4");
        const Address& router = v6 ? router6 : router4;
        static constexpr uint8_t kTypes4[] = {3, 11, 12, 0, 5, 8};
        static constexpr uint8_t kTypes6[] = {1, 2, 3, 4, 128, 135};
        const uint8_t type = v6 ? kTypes6[in.u8() % 6] : kTypes4[in.u8() % 6];
        const std::vector<uint8_t> icmp = syngate::test::icmp_error(
            std::span<const uint8_t>(buf.data(), n), router, s.tuple.src, type, in.u8(), in.u32(), in.u16() % (n + 1));
        pkt.assign(icmp.begin(), icmp.end());
        if (in.u8() & 1) pkt[in.u16() % pkt.size()] ^= static_cast<uint8_t>(1u << (in.u8() % 8));
        feed(pkt, true);
        continue;
      }
    }
    const size_t n = build_tcp_packet(buf, s);
    if (n == 0) continue;
    pkt.assign(buf.begin(), buf.begin() + static_cast<long>(n));
    feed(pkt, !(bits & 64) || op % 9 == 0);
  }
  if (trace) record(*trace, engine.counters());
}

}  // namespace syngate::fuzz
