// The fuzz_engine program (also run by the engine reset test, tests/fuzz). Feeds packet sequences through the engine: a few clients and a backend whose packets are built
// from the fuzz input but stay close enough to real conversations (they echo cookies and ISNs the
// engine emitted) to reach every state, mixed with raw bytes and time jumps.
// ICMP errors quoting the conversation's segments (any error type, cut anywhere) reach the flow
// path's translation.
// Invariants: no crash or sanitizer report; every emitted packet parses with a valid checksum;
// a rewritten packet still parses and its checksum stays valid (TCP or ICMP); an ICMP message
// emits nothing and is rewritten only when it is an error about TCP; the flow count stays bounded.
#pragma once

#include <algorithm>
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
  std::vector<uint8_t> built;   // a segment that an ICMP error quotes
  std::vector<uint8_t> pkt;     // the packet fed to the engine, with room to grow
  std::vector<uint8_t> before;  // pkt as it was fed, for the checksum rule
};
inline Buffers& buffers() {
  static Buffers b;
  return b;
}

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

// The clients' tuples and their reverse (the backend's direction), made once: they are compared
// with every SYN the engine emits.
inline const std::array<FlowTuple, kClients>& client_tuples() {
  static const std::array<FlowTuple, kClients> a = [] {
    std::array<FlowTuple, kClients> t;
    for (int i = 0; i < kClients; ++i) t[static_cast<size_t>(i)] = client_tuple(i);
    return t;
  }();
  return a;
}
inline const std::array<FlowTuple, kClients>& backend_tuples() {
  static const std::array<FlowTuple, kClients> a = [] {
    std::array<FlowTuple, kClients> t;
    for (size_t i = 0; i < t.size(); ++i) t[i] = client_tuples()[i].reversed();
    return t;
  }();
  return a;
}

// Checks what the engine emits, learns from it what the peers answer, and for the reset test
// appends it to the trace.
struct Sink : PacketSink {
  std::vector<uint8_t>* trace = nullptr;
  Peer* peers = nullptr;  // kClients of them
  bool only_rsts = true;  // of what was sent since begin()
  Sink(std::vector<uint8_t>* t, Peer* p) : trace(t), peers(p) {}
  void begin() { only_rsts = true; }
  void send(std::span<const uint8_t> p) override {
    // Parsed where the engine built it, not copied: parsing only reads, and everything this
    // checks or learns is taken before send returns.
    ParseResult r = parse_tcp_packet(std::span<uint8_t>(const_cast<uint8_t*>(p.data()), p.size()));
    check(static_cast<bool>(r));
    const TcpPacket& e = r.packet;
    check(e.checksum_valid());
    if (trace) {
      record(*trace, static_cast<uint32_t>(p.size()));
      trace->insert(trace->end(), p.begin(), p.end());
    }
    only_rsts = only_rsts && e.has(tcp_flag::RST);
    // Learn what the engine told each side, so later packets can answer it. Only SYNs teach
    // anything: the rest of what the engine sends is not matched against the clients at all. (A
    // backend SYN that a timer resends says what the first one said.)
    if (!e.has(tcp_flag::SYN)) return;
    const FlowTuple et = e.tuple();
    for (size_t i = 0; i < kClients; ++i) {
      if (e.has(tcp_flag::ACK) && et == backend_tuples()[i]) {
        peers[i].cookie = e.seq();
        peers[i].synack_ts = e.options().tsval;
        peers[i].have_cookie = true;
      } else if (et == client_tuples()[i]) {
        peers[i].backend_syn_ts = e.options().tsval;
        peers[i].have_backend_syn = true;
      }
    }
  }
};

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
  Sink sink{trace, peers};
  const std::array<FlowTuple, kClients>& tuples = client_tuples();
  const std::array<FlowTuple, kClients>& backs = backend_tuples();

  // The packet fed to the engine is built or copied into pkt, which has room for an ICMP error
  // quoting a full segment plus the 64 bytes feed() lets a segment grow by.
  Buffers& bufs = buffers();
  constexpr size_t kBuilt = kMaxHeadersLen + 256;  // what a segment is built in
  std::vector<uint8_t>& pkt = bufs.pkt;
  pkt.resize(2 * kBuilt + 128);
  bufs.before.reserve(pkt.size());
  std::vector<uint8_t>& buf = bufs.built;
  buf.resize(kBuilt);
  const std::span<uint8_t> build_here(pkt.data(), kBuilt);

  // `built`: a segment as build_tcp_packet made it, so a valid TCP segment with a valid checksum
  // (builder_test), not ICMP; anything else (raw bytes, a flipped bit, an ICMP error) is examined.
  auto feed = [&](size_t length, bool ready, bool built) {
    const std::span<uint8_t> fed(pkt.data(), length);
    // Kept as fed and parsed only if the checksum rule below needs to know whether it was valid
    // (an in-place rewrite of a segment): parsing every packet for it cost more than the copy.
    if (!built) bufs.before.assign(fed.begin(), fed.end());
    auto was_valid = [&] {
      if (built) return true;
      ParseResult before = parse_tcp_packet(bufs.before);
      return before && before.packet.checksum_valid();
    };
    const IcmpError icmp = built ? IcmpError{} : parse_icmp_error(fed);
    const bool icmp_plain = icmp.kind != IcmpKind::NotIcmp && (pkt[0] >> 4 == 4 || pkt[6] == 58);
    const bool icmp_valid = icmp_plain && syngate::test::icmp_checksum_residue(fed) == 0;
    sink.begin();
    // Room to grow, as the daemon's receive slots give (a segment may get timestamps added).
    const size_t capacity = length + 64;
    std::memset(pkt.data() + length, 0, 64);
    Decision d = engine.process(fed, now, sink, ready, capacity);
    check(d.length == 0 || (d.modified && d.length <= capacity));
    const std::span<uint8_t> out(pkt.data(), d.length ? d.length : length);
    check(d.verdict != Verdict::NextQueue || (cfg.icmp_next_queue && !d.modified && icmp.kind == IcmpKind::TcpError));
    if (icmp.kind != IcmpKind::NotIcmp) {
      check(d.length == 0);
      // An error about syngate's own SYN to the backend resets the client at once: RSTs only.
      check(sink.only_rsts);
      check(!d.modified || icmp.kind == IcmpKind::TcpError);
      if (d.modified && icmp_valid) check(syngate::test::icmp_checksum_residue(out) == 0);
    } else if (d.modified) {
      ParseResult after = parse_tcp_packet(out);
      check(static_cast<bool>(after));
      if (!ready || d.length || was_valid()) check(after.packet.checksum_valid());
    }
    check(engine.counters().flows_active <= cfg.max_flows);
    if (trace) {
      record(*trace, d);
      if (d.modified) trace->insert(trace->end(), out.begin(), out.end());
    }
  };

  static constexpr uint8_t payload[100] = {};  // what every segment carries
  while (!in.empty()) {
    const uint8_t op = in.u8();
    const int who = op >> 5 & 3;
    Peer& peer = peers[who];
    const FlowTuple& t = tuples[static_cast<size_t>(who)];
    const FlowTuple& back = backs[static_cast<size_t>(who)];
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
        const size_t n = in.u8();
        size_t length = 0;
        while (length < n && !in.empty()) pkt[length++] = in.u8();
        feed(length, true, false);
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
        const size_t n = build_tcp_packet(build_here, s);
        if (n == 0) continue;
        pkt[in.u8() % n] ^= static_cast<uint8_t>(1u << (in.u8() % 8));
        feed(n, true, false);
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
        std::copy(icmp.begin(), icmp.end(), pkt.begin());
        if (in.u8() & 1) pkt[in.u16() % icmp.size()] ^= static_cast<uint8_t>(1u << (in.u8() % 8));
        feed(icmp.size(), true, false);
        continue;
      }
    }
    const size_t n = build_tcp_packet(build_here, s);
    if (n == 0) continue;
    feed(n, !(bits & 64) || op % 9 == 0, true);
  }
  if (trace) record(*trace, engine.counters());
}

}  // namespace syngate::fuzz
