// The handshake proxy. See include/syngate/engine.hpp for the contract and README.md ("How the
// gateway works") for the protocol. Sequence spaces: the client's ISN is passed to the backend unchanged, so only the
// server's side needs translating: delta = backend ISN - cookie ISN, tsoff = backend TSval - our
// SYN-ACK TSval.
#include "syngate/engine.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>
#include <atomic>
#include <functional>
#include <string>

#include "syngate/backend_facts.hpp"
#include "syngate/bytes.hpp"
#include "syngate/checksum.hpp"
#include "syngate/flow_table.hpp"
#include "syngate/spec/backend_syn_spec.h"
#include "syngate/spec/flow_spec.h"
#include "syngate/spec/handover_spec.h"
#include "syngate/spec/xlate_spec.h"
#include "syngate/icmp.hpp"

namespace syngate {

// The flow record and its table: the proxy below reads and edits entries, the table owns them.
using namespace flows;

static_assert(kNoWscale == SG_FLOW_NO_WSCALE && kMaxWindowScale == SG_MAX_WSCALE);

namespace {

constexpr uint16_t kDefaultMssV4 = SG_DEFAULT_MSS_V4;  // assumed when a SYN carries no MSS (sg_types.h)
constexpr uint16_t kDefaultMssV6 = SG_DEFAULT_MSS_V6;

inline uint32_t now_ms(uint64_t now_ns) noexcept { return static_cast<uint32_t>(now_ns / 1000000); }
// Flow timers run on the timer clock; cookies and our SYN-ACK TSvals on the cookie clock.
inline uint32_t timer_ms(const EngineClock& now) noexcept { return now_ms(now.timer_ns); }
// Wrap-safe "a is at or after b" for millisecond stamps.
inline bool time_reached(uint32_t now, uint32_t deadline) noexcept {
  return static_cast<int32_t>(now - deadline) >= 0;
}

bool is_ecn_setup_syn(uint8_t flags) noexcept {
  return (flags & (tcp_flag::ECE | tcp_flag::CWR)) == (tcp_flag::ECE | tcp_flag::CWR);
}

uint16_t announced_mss(const EngineConfig& c, bool v4) noexcept {
  return v4 ? c.announced_mss_v4 : c.announced_mss_v6;
}

namespace bit = flow_bit;

// Flow::kernel_handshake in SynSent: the kernel side may answer the backend's SYN-ACK
// (FlowObserver::handshake_sent); or it did (its withdrawal failed) and its report is awaited.
constexpr uint8_t kHandshakeOffered = 1;
constexpr uint8_t kHandshakeTaken = 2;
// ... and once Established from the program's entries alone (adopt_kernel_translation): what its
// SYN-ACK said of the backend (SACK, timestamps) is still to be learnt from the late report.
constexpr uint8_t kHandshakeUnlearnt = 3;
// settle_kernel_handshake's looks at the kernel side for a hand-over whose record it found claimed.
constexpr int kClaimLooks = 16;

}  // namespace

SynGuardConfig syn_guard_config(const EngineConfig& c) {
  SynGuardConfig g;
  g.policy = c.policy;
  g.hash_key = c.hash_key;
  g.budget_share = c.budget_share;
  g.budget_cells = c.budget_cells;
  g.proven = c.proven_sources;
  g.source_prefix_v6 = c.source_prefix_v6;
  return g;
}

bool answer_syn(const TcpPacket& syn, const CookieJar& cookies, const EngineConfig& config,
                uint64_t now_ns, PacketSink& sink) {
  if ((syn.flags() & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST | tcp_flag::FIN)) != tcp_flag::SYN) {
    return false;
  }
  const FlowTuple t = syn.tuple();
  const TcpOptions& in = syn.options();
  const bool v4 = t.src.is_v4();
  const uint16_t client_mss = in.has_mss ? in.mss : (v4 ? kDefaultMssV4 : kDefaultMssV6);
  const uint32_t cookie = cookies.make(t, syn.seq(), client_mss, cookie_counter(now_ns));

  TcpOptions out;
  out.has_mss = true;
  out.mss = announced_mss(config, v4);
  uint8_t extra = 0;
  // Without timestamps the cookie cannot carry window scale or SACK, so (as Linux does) we offer
  // neither: both ends then agree on unscaled windows.
  if (in.has_timestamps) {
    const uint32_t service_flags =
        config.backend_facts ? config.backend_facts->service_flags(Service{t.dst, t.dport}, now_ms(now_ns)) : 0;
    const bool sack = sg_promise_sack(in.sack_permitted, service_flags);
    SynOptionBits b;
    b.has_wscale = in.has_wscale;
    b.wscale = in.wscale;
    b.sack_permitted = sack;
    b.ecn = config.announce_ecn && is_ecn_setup_syn(syn.flags());
    out.has_timestamps = true;
    out.tsval = encode_ts_options(now_ms(now_ns), b);
    out.tsecr = in.tsval;
    out.sack_permitted = sack;
    if (in.has_wscale) {
      out.has_wscale = true;
      out.wscale = config.announced_wscale;
    }
    if (b.ecn) extra = tcp_flag::ECE;
  }
  uint8_t buf[kMaxHeadersLen];
  const size_t n = build_syn_ack(buf, t.reversed(), cookie, syn.seq() + 1, config.synack_window, out, extra);
  if (n == 0) return false;
  sink.send(std::span<const uint8_t>(buf, n));
  return true;
}

// Engine::reset returns every member to what the constructor makes of it: keep it in step.
struct Engine::Impl {
  EngineConfig cfg;
  CookieJar cookies;
  EngineCounters counters;

  // Storage, lookup, timers and persistence of the flows (flow_table.hpp); this file is the
  // proxy logic on top of it.
  FlowTable table;
  // Engine::prefetch's keys, kept here: a local array would be cleared on every call.
  std::vector<FlowTuple> prefetch_keys = std::vector<FlowTuple>(64);
  std::vector<uint8_t> scratch;  // one packet being built
  SynGuard guard;
  // Services removed by a reload: their flows are still translated until they end; new
  // connections to them are no longer proxied (their SYNs pass untouched).
  std::vector<Service> draining;
  // Services whose backend last answered with timestamps: their new flows get the client's full
  // MSS. The others (and any not heard from yet) are told 12 bytes less, so that syngate can add
  // the Timestamps option the client was promised if the backend turns out not to send it.
  // cfg.backend_facts when the caller shares none (reused by reset()).
  std::shared_ptr<BackendFacts> own_backend_facts = std::make_shared<BackendFacts>();
  // What the kernel path recorded of handed-over flows (null: none, the engine sees every segment).
  KernelFlowState* kernel = nullptr;
  std::vector<FlowTuple> closes;  // the sweep's (merge_kernel_closes), kept for its capacity
  std::vector<KernelHandOver> handovers;  // the same for take_kernel_handovers
  std::vector<KernelOpened> opened;       // and for take_kernel_opened
  bool kernel_offers = false;  // the kernel side has accepted a handshake (handshake_sent)
  // The lost-report sweep (sweep_lost_reports): the kernel side's count of reports it could not
  // hand over when last looked at, the next table slot to look at (kNone: no sweep under way),
  // and whether more were lost while one was under way (another follows it).
  uint64_t reports_lost_seen = 0;
  uint32_t sweep_next = kNone;
  bool sweep_again = false;

  Impl(const EngineConfig& c, const CookieJar& j, EngineState state)
      : cfg(normalized(c)),
        cookies(j),
        table(table_config(cfg), state),
        guard(syn_guard_config(c)) {
    scratch.resize(kMaxHeadersLen + std::max<size_t>(cfg.early_data_bytes, 64));
    if (!cfg.backend_facts) cfg.backend_facts = own_backend_facts;
  }

  static void normalize(EngineConfig& c) {
    c.max_flows = std::max<uint32_t>(c.max_flows, 1);
    c.backend_syn_retries = std::min<uint32_t>(c.backend_syn_retries, kMaxSynRetryLevels - 1);
  }
  static EngineConfig normalized(EngineConfig c) {
    normalize(c);
    return c;
  }

  static FlowTableConfig table_config(const EngineConfig& c) {
    FlowTableConfig t;
    t.max_flows = c.max_flows;
    t.max_flows_per_source = c.max_flows_per_source;
    t.source_prefix_v6 = c.source_prefix_v6;
    t.early_data_bytes = c.early_data_bytes;
    t.early_data_slots = c.early_data_slots;
    t.backend_syn_retries = c.backend_syn_retries;
    t.hash_seed = c.hash_seed;
    return t;
  }


  void count(DropReason r) { ++counters.drops[static_cast<size_t>(r)]; }


  // ---- emission ---------------------------------------------------------------------------
  void emit(PacketSink& sink, size_t n) {
    if (n) sink.send(std::span<const uint8_t>(scratch.data(), n));
  }
  // The packet just built (n bytes of scratch) goes where the packet being decided was going: the
  // backend's SYN answering a cookie ACK, the client's window update answering the backend's
  // SYN-ACK. It takes that packet's place in the verdict when the packet's slot holds it (the
  // daemon's always does), which spares a send on each new connection's two wake-ups; otherwise it
  // is sent and the packet dropped. The verdict hands the kernel a whole checksum either way.
  Decision take_place(size_t n, std::span<uint8_t> room, PacketSink& sink) {
    if (n == 0) return {Verdict::Drop, false};
    if (n > room.size()) {
      emit(sink, n);
      return {Verdict::Drop, false};
    }
    std::memcpy(room.data(), scratch.data(), n);
    return {Verdict::Accept, true, static_cast<uint32_t>(n)};
  }

  bool backend_has_timestamps(const FlowTuple& key) const {
    return cfg.backend_facts->has_timestamps(Service{key.dst, key.dport});
  }
  // The TSval syngate gives a client whose backend lacks timestamps: the cookie clock in ms, as in
  // our SYN-ACK, and never below the last one sent (that clock may step back).
  uint32_t supplied_tsval(Flow& f, const EngineClock& now) const {
    const uint32_t t = now_ms(now.cookie_ns);
    if (sg_seq_after(t, f.tsoff)) f.tsoff = t;
    return f.tsoff;
  }

  // Builds the backend's SYN (backend_syn_spec.h) in scratch; returns its length.
  size_t build_backend_syn(uint32_t i) {
    const Flow& f = table.get(i);
    const sg_handshake h = handshake_of(f);
    sg_backend_syn s;
    sg_backend_syn_of(&h, f.mss, (f.supply & kSupplyRoomForTimestamps) != 0, &s);
    ++counters.backend_syns_sent;
    return syngate::build_backend_syn(scratch, f.key, s);
  }
  void send_backend_syn(uint32_t i, PacketSink& sink) { emit(sink, build_backend_syn(i)); }
  // The SYN again, one retry level up, its timer from `now_ms`.
  void retry_backend_syn(uint32_t i, uint32_t now_ms, PacketSink& sink) {
    Flow& f = table.edit(i);
    ++f.retries;
    ++counters.backend_syn_retries;
    f.stamp_ms = now_ms;
    table.enter(i, State::SynSent, now_ms);
    send_backend_syn(i, sink);
  }

  // RST to the client from the backend's address, acceptable in the client's ESTABLISHED state
  // because its sequence number is exactly what the client expects next.
  void reset_client(const Flow& f, PacketSink& sink) {
    emit(sink, build_rst(scratch, f.key.reversed(), f.cookie_isn + 1, f.client_isn + 1 + f.early_len, true));
  }

  // Timestamp option for packets we send on the client's behalf to the backend.
  TcpOptions ts_to_backend(const Flow& f, uint32_t backend_tsval) const {
    TcpOptions o;
    if ((f.bits & bit::kTimestamps) && !(f.supply & kSupplyTimestamps)) {
      o.has_timestamps = true;
      o.tsval = f.client_tsval;
      o.tsecr = backend_tsval;
    }
    return o;
  }

  // What another data path needs to translate an established flow as this engine does; none
  // when only the engine can (it adds the timestamps the client was promised and the backend
  // lacks, growing every segment).
  static std::optional<FlowTranslation> translation(const Flow& f) {
    if (f.supply & kSupplyTimestamps) return std::nullopt;
    FlowTranslation t;
    t.delta = f.delta;
    t.timestamps = (f.bits & bit::kTimestamps) != 0;
    t.tsoff = t.timestamps ? f.tsoff : 0;
    t.shifts = shifts(f);
    if (f.bits & bit::kClientFin) {
      t.client_fin = true;
      t.client_fin_seq = f.client_fin_seq;
    }
    return t;
  }

  // What a merge found of the flow on the kernel side.
  enum class KernelSide : uint8_t {
    None,         // no entry: never handed over, or gone; the engine sees every segment
    Translating,  // the programs translate the client's segments
    Punting       // they send the client's to NFQUEUE (its FIN or an RST crossed them, or punt())
  };

  // Folds what the kernel path recorded since the hand-over into the flow: each end's highest
  // sequence number and ack (the later wins, as in tracking), the window that came with the
  // latest ack, the client's newest TSval, the latest activity, and a FIN the program saw with its
  // sequence number, as if it had crossed the engine (its state follows, follow_fins). A read is
  // a system call, so it is made only where the engine judges with that record: an RST, a FIN, a
  // segment its own view would not track, an idle timer, a retransmitted SYN-ACK, a start.
  KernelSide merge_kernel(Flow& f) {
    if (!kernel || f.state == State::SynSent || f.state == State::Free) return KernelSide::None;
    if (f.supply & kSupplyTimestamps) return KernelSide::None;  // never handed over (translation())
    KernelFlowView v;
    if (!kernel->read(f.key, v)) return KernelSide::None;
    const KernelRecord& c = v.to_server;
    const KernelRecord& s = v.to_client;
    if (c.has_record) {
      f.client_next = sg_seq_max(f.client_next, c.sender_next);
      if (!sg_seq_before(c.acked, f.client_acked)) {
        f.client_acked = c.acked;
        f.client_wnd = c.window_bytes;
      }
    }
    if (s.has_record) {
      f.server_next = sg_seq_max(f.server_next, s.sender_next);
      if (!sg_seq_before(s.acked, f.server_acked)) {
        f.server_acked = s.acked;
        f.server_wnd = s.window_bytes;
      }
    }
    if (c.has_tsval && (f.bits & bit::kTimestamps) && sg_seq_after(c.newest_tsval, f.client_tsval)) {
      f.client_tsval = c.newest_tsval;
    }
    const uint64_t last = std::max(c.last_ns, s.last_ns);
    if (last != 0 && sg_seq_after(now_ms(last), f.stamp_ms)) f.stamp_ms = now_ms(last);
    // A FIN occupies one sequence number; the first one of a direction is the one that counts.
    if (c.fin && !(f.bits & bit::kClientFin)) {
      f.bits |= bit::kClientFin;
      f.client_fin_seq = c.fin_seq;
      f.client_next = sg_seq_max(f.client_next, c.fin_seq + 1);
    }
    if (s.fin && !(f.bits & bit::kServerFin)) {
      f.bits |= bit::kServerFin;
      f.server_fin_seq = s.fin_seq;
      f.server_next = sg_seq_max(f.server_next, s.fin_seq + 1);
    }
    // The same rule as for segments: a FIN is acknowledged once the other end acked past it.
    if ((f.bits & bit::kClientFin) && seq_after(f.server_acked, f.client_fin_seq)) f.bits |= bit::kClientFinAcked;
    if ((f.bits & bit::kServerFin) && seq_after(f.client_acked, f.server_fin_seq)) f.bits |= bit::kServerFinAcked;
    // The program's own word for it: the ack of a FIN its record may not hold.
    if ((f.bits & bit::kClientFin) && s.acked_peer_fin) f.bits |= bit::kClientFinAcked;
    if ((f.bits & bit::kServerFin) && c.acked_peer_fin) f.bits |= bit::kServerFinAcked;
    // A FIN this engine saw (the server's first replies cross the queue until the hand-over is
    // published) is not in the program's record, so the segments answering it were not taken
    // there: their exact ack of it counts, as the program counts one of a FIN it recorded (a
    // blind sender must guess it exactly, as for an RST).
    if ((f.bits & bit::kServerFin) && c.has_last_ack && c.last_ack == f.server_fin_seq + 1) {
      f.bits |= bit::kServerFinAcked;
    }
    if ((f.bits & bit::kClientFin) && s.has_last_ack && s.last_ack == f.client_fin_seq + 1) {
      f.bits |= bit::kClientFinAcked;
    }
    return c.punting ? KernelSide::Punting : KernelSide::Translating;
  }

  // A pure ACK of a handed-over flow that waited in the queue while the hand-over went live
  // reaches the engine after newer ones of its direction crossed tc (the programs do not wait
  // for the queue to drain). When it acknowledges less than what they already delivered, the
  // receiver would drop it as old (with timestamps two or more ticks older than what it last
  // took: a PAWS rejection), so it is dropped here. Pure duplicate ACKs pass: they count for fast
  // retransmit, and the receiver takes them. The record is read only while the kernel path says
  // such stragglers may still be queued (no system call otherwise). One that acknowledges as much
  // as the newest but announces a larger window is dropped too: the receiver would take it as a
  // window update (PAWS-rejected when old, and otherwise reopening a window its peer has since
  // narrowed).
  bool ack_superseded(const Flow& f, const TcpPacket& p, bool to_client) {
    if (!kernel || (f.supply & kSupplyTimestamps) || p.payload_len() != 0) return false;
    if ((p.flags() & (tcp_flag::ACK | tcp_flag::SYN | tcp_flag::FIN | tcp_flag::RST)) != tcp_flag::ACK) return false;
    if (!kernel->may_be_overtaken(f.key)) return false;
    KernelFlowView v;
    if (!kernel->read(f.key, v)) return false;
    const KernelRecord& r = to_client ? v.to_client : v.to_server;
    if (!r.has_record) return false;
    // Sent after its sender's FIN, which crossed tc: after the hand-over went live, so it waited
    // behind nothing (the client's segments come to the queue after its FIN by design; its
    // window updates there carry the same ack as the FIN and a larger window).
    if (r.fin && !sg_seq_before(p.seq(), r.fin_seq + 1)) return false;
    const uint32_t ack = to_client ? p.ack() : sg_ack_to_backend(p.ack(), f.delta);
    if (sg_seq_before(ack, r.acked)) return true;
    const sg_flow_shifts shift = shifts(f);
    const uint32_t window = sg_window_bytes(p.window(), to_client ? shift.server_sends : shift.client_sends);
    return ack == r.acked && window > r.window_bytes;
  }

  // The state the FIN bits call for (what a segment's after_translation does, without counting
  // activity): both FINs acknowledged, linger; one FIN, closing. True when the flow moved.
  bool follow_fins(uint32_t i, uint32_t now) {
    const Flow& f = table.get(i);
    const uint8_t both_acked = bit::kClientFinAcked | bit::kServerFinAcked;
    if ((f.bits & both_acked) == both_acked) {
      if (f.state == State::Linger) return false;
      table.enter(i, State::Linger, now);
      return true;
    }
    if ((f.bits & (bit::kClientFin | bit::kServerFin)) && f.state == State::Established) {
      table.enter(i, State::Closing, now);
      return true;
    }
    return false;
  }

  // After the client's FIN or an RST the engine handled: if the programs still translate the
  // client's segments, they must stop (KernelFlowState::punt), or a new connection on the same
  // address/port pair would be translated with this one's numbers. The server's FIN alone needs
  // nothing: the client cannot reuse its port before its own FIN or an RST.
  void punt_if_closed(const Flow& f, KernelSide side) {
    if (side != KernelSide::Translating) return;
    if (!(f.bits & bit::kClientFin) && f.state != State::Linger) return;
    kernel->punt(f.key, f.kernel_generation);
    ++counters.kernel_punts;
  }

  // ---- window translation (flow_spec.h) ---------------------------------------------------
  static sg_flow_shifts shifts(const Flow& f) {
    return sg_flow_window_shifts(f.client_ws, (f.bits & bit::kBackendWscale) != 0, f.backend_ws, f.announced_ws);
  }
  static uint16_t client_window_for_server(const Flow& f, uint16_t field) {
    const sg_flow_shifts s = shifts(f);
    return sg_window_rescale(field, s.client_sends, s.server_reads);
  }

  // ---- what each end has sent and acknowledged (flow_spec.h) ----------------------------------
  static uint32_t seq_end(const TcpPacket& p) {
    return p.seq() + static_cast<uint32_t>(p.payload_len()) + ((p.flags() & tcp_flag::FIN) ? 1u : 0u);
  }
  static constexpr uint8_t kSeenBoth = kSeenClient | kSeenServer;
  // A client segment, before translation. Only a segment that fits what the server offered and
  // acknowledges only what the server sent moves the record: a blind forgery cannot aim it.
  // Both return whether the segment was taken (xlate_spec.h).
  static sg_flow_track client_record(const Flow& f) { return {f.client_next, f.client_acked, f.client_wnd}; }
  static sg_flow_track server_record(const Flow& f) { return {f.server_next, f.server_acked, f.server_wnd}; }
  static bool track_client(Flow& f, const TcpPacket& p, const sg_flow_shifts& shift) {
    sg_flow_track self = client_record(f);
    const sg_flow_track peer = server_record(f);
    const int taken = sg_flow_track_segment(&self, f.seen & kSeenClient, &peer, f.seen & kSeenServer, p.seq(),
                                            seq_end(p), sg_ack_to_backend(p.ack(), f.delta),
                                            sg_window_bytes(p.window(), shift.client_sends));
    f.client_next = self.next;
    f.client_acked = self.acked;
    f.client_wnd = self.window;
    f.seen |= kSeenClient;
    return taken != 0;
  }
  // Where a FIN segment's FIN lies (its sequence number plus payload), as the kernel record has it.
  static uint32_t fin_seq(const TcpPacket& p) { return p.seq() + static_cast<uint32_t>(p.payload_len()); }
  // Only a FIN the sender could have aimed moves the flow towards closing (xlate_spec.h): judged
  // on the flow before the segment is tracked, as the tc program judges it.
  static bool fin_believable(const Flow& f, const TcpPacket& p, bool from_client) {
    const sg_flow_track client = client_record(f), server = server_record(f);
    // The client's ack is in its own space; the records hold it in the backend's.
    const uint32_t ack = from_client ? sg_ack_to_backend(p.ack(), f.delta) : p.ack();
    return sg_fin_believable(from_client ? &client : &server, from_client ? &server : &client,
                             (f.seen & kSeenBoth) == kSeenBoth, p.seq(), fin_seq(p), ack) != 0;
  }
  // Whether track_client would take the segment, without taking it.
  static bool client_placeable(const Flow& f, const TcpPacket& p) {
    if (!(f.seen & kSeenClient)) return true;
    if (!(f.seen & kSeenServer)) return false;
    return sg_segment_plausible(p.seq(), sg_ack_to_backend(p.ack(), f.delta), f.server_acked, f.server_wnd,
                                f.client_acked, f.server_next) != 0;
  }
  // The RST check of one direction (flow_spec.h); counts what is passed on for the endpoint.
  sg_rst_verdict judge_rst(const Flow& f, uint32_t seq, uint32_t sender_next, uint32_t receiver_acked,
                           uint32_t receiver_window) {
    const sg_rst_verdict v =
        sg_rst_check(seq, sender_next, receiver_acked, receiver_window, (f.seen & kSeenBoth) == kSeenBoth);
    if (v == SG_RST_CHALLENGE) ++counters.rst_passed_in_window;
    return v;
  }
  static bool track_server(Flow& f, const TcpPacket& p, const sg_flow_shifts& shift) {
    sg_flow_track self = server_record(f);
    const sg_flow_track peer = client_record(f);
    const int taken = sg_flow_track_segment(&self, f.seen & kSeenServer, &peer, f.seen & kSeenClient, p.seq(),
                                            seq_end(p), p.ack(), sg_window_bytes(p.window(), shift.server_sends));
    f.server_next = self.next;
    f.server_acked = self.acked;
    f.server_wnd = self.window;
    f.seen |= kSeenServer;
    return taken != 0;
  }

  // ---- the client's side --------------------------------------------------------------------
  Decision client_packet(TcpPacket& p, const FlowTuple& key, const EngineClock& now, PacketSink& sink,
                         std::span<uint8_t> room) {
    const uint8_t fl = p.flags();
    const bool syn = fl & tcp_flag::SYN;
    const bool rst = fl & tcp_flag::RST;
    const bool ack = fl & tcp_flag::ACK;
    if (syn) return drop(DropReason::InvalidFlags);  // client SYNs were decided by the SynGuard
    uint32_t i = table.find(key);
    bool merged = false;
    if (i != kNone && kernel && ack && !rst && table.get(i).state == State::Established &&
        !client_placeable(table.get(i), p)) {
      // The programs translate a handed-over flow's client segments up to the client's FIN and
      // may carry the whole close: a segment the engine's own view cannot place may follow that
      // FIN (it acknowledges the server's) or open a new connection on the pair. The kernel's
      // record first, and the state it calls for, before the port-reuse check below.
      if (merge_kernel(table.edit(i)) != KernelSide::None) follow_fins(i, timer_ms(now));
      merged = true;
    }
    if (i != kNone && (table.get(i).state == State::Linger || table.get(i).state == State::Closing) && ack && !rst &&
        p.seq() - 1 != table.get(i).client_isn) {
      // Client port reuse: a fresh cookie ACK on a tuple whose old connection is winding down.
      if (cookies.check(key, p.seq() - 1, p.ack() - 1, cookie_counter(now.cookie_ns))) {
        table.free_flow(i);
        ++counters.flows_reused;
        return new_flow(p, key, now, sink, room);
      }
    }
    if (i == kNone) {
      if (!ack || rst) return drop(rst ? DropReason::NoFlow : DropReason::InvalidFlags);
      // The kernel side may have opened the flow from the cookie ACK, its report not taken yet:
      // this is then the flow's segment, and its cookie must not open a second one.
      if (kernel) {
        take_kernel_opened(now, sink);
        i = table.find(key);
      }
      if (i == kNone) return new_flow(p, key, now, sink, room);
    }
    Flow& f = table.edit(i);
    if (!ack && !rst) return drop(DropReason::InvalidFlags);

    // Data, a FIN or an RST for a flow whose SYN-ACK the kernel side may answer: the record is
    // withdrawn (the engine holds what the program's ACK would not carry), or the hand-over it
    // made is taken first and the segment is the established flow's. A bare ACK only looks for
    // the hand-over (the client's last ACK of a connection that closed whole in the kernel).
    if (f.state == State::SynSent && f.kernel_handshake) {
      if (p.payload_len() || (fl & (tcp_flag::FIN | tcp_flag::RST))) settle_kernel_handshake(i, now, sink);
      else take_kernel_handovers(now, sink);  // an ACK the program's window update caused, say
    }
    if (f.state == State::SynSent) {
      if (rst) {
        // The client gave up before the backend answered: withdraw our SYN from the backend. Its
        // RST names what it sent (the ISN + 1, up to the data we saw): anything else is a guess.
        if (!sg_seq_within(p.seq(), f.client_isn + 1, f.client_next)) return drop(DropReason::RstOutOfWindow);
        emit(sink, build_rst(scratch, f.key, f.client_isn + 1, 0, false));
        table.free_flow(i);
        return {Verdict::Drop, false};
      }
      if (f.bits & bit::kTimestamps && p.options().has_timestamps) f.client_tsval = p.options().tsval;
      buffer_early_data(f, p);
      return {Verdict::Drop, false};
    }

    if (ack_superseded(f, p, false)) return drop(DropReason::AckSuperseded);
    // The kernel's record, before the RST check and the FIN rules read the flow's. Other segments
    // are tracked against the engine's own view first: one that view cannot place may answer
    // what the server sent through the kernel, so it is placed again against the merged view
    // (what it took, the merge keeps: the later ack, the higher sequence number).
    const bool judged = rst || (fl & tcp_flag::FIN);
    const KernelSide side = judged ? merge_kernel(f) : KernelSide::None;
    const sg_flow_shifts shift = shifts(f);  // once per packet: tracking and rescaling both use it
    const bool fin = !rst && (fl & tcp_flag::FIN) && fin_believable(f, p, true);
    bool ends_flow = false;
    if (rst) {
      const sg_rst_verdict v = judge_rst(f, p.seq(), f.client_next, f.server_acked, f.server_wnd);
      if (v == SG_RST_OUT_OF_WINDOW) return drop(DropReason::RstOutOfWindow);
      ends_flow = v == SG_RST_RESET;
    } else {
      if (f.bits & bit::kTimestamps && p.options().has_timestamps) f.client_tsval = p.options().tsval;
      if (!track_client(f, p, shift) && !judged && !merged && merge_kernel(f) != KernelSide::None) {
        track_client(f, p, shift);
      }
    }

    // Established, closing or lingering: translate into the backend's sequence space.
    if (ack && !rst && (f.bits & bit::kServerFin) &&
        seq_after(sg_ack_to_backend(p.ack(), f.delta), f.server_fin_seq)) {
      f.bits |= bit::kServerFinAcked;
    }
    // A backend without timestamps ignores the option (RFC 7323 3.2); its TSecr names our clock.
    const sg_xlate_params xp{f.delta, f.tsoff, SG_XLATE_TO_SERVER, shift.client_sends, shift.server_reads,
                             static_cast<uint8_t>(!(f.supply & kSupplyTimestamps))};
    sg_xlate_segment s = p.xlate_fields();
    const uint16_t diff = sg_xlate(&s, &xp);
    p.store_xlate(s, diff);
    if (fin && !(f.bits & bit::kClientFin)) {
      f.bits |= bit::kClientFin;
      f.client_fin_seq = fin_seq(p);
    }
    // An RST passed on for the endpoint to judge is not activity: it must not keep a flow alive.
    if (!rst || ends_flow) after_translation(i, ends_flow, timer_ms(now));
    punt_if_closed(f, side);
    ++counters.translated;
    return {Verdict::Accept, true};
  }

  void after_translation(uint32_t i, bool reset, uint32_t now) {
    Flow& f = table.edit(i);
    f.stamp_ms = now;
    if (reset) {
      if (f.state != State::Linger) table.enter(i, State::Linger, now);
    } else {
      follow_fins(i, now);
    }
  }

  Decision new_flow(TcpPacket& p, const FlowTuple& key, const EngineClock& now, PacketSink& sink,
                    std::span<uint8_t> room) {
    const TcpOptions& o = p.options();
    const sg_cookie_ack ack{p.seq(), p.ack(), o.has_timestamps ? o.tsval : 0u, o.has_timestamps ? o.tsecr : 0u,
                            p.window(), o.has_timestamps, 0};
    sg_handshake h;
    sg_handshake_of_cookie_ack(&ack, cfg.announced_wscale, &h);
    const std::optional<uint16_t> mss = cookies.check(key, h.client_isn, h.cookie_isn, cookie_counter(now.cookie_ns));
    if (!mss) {
      ++counters.cookies_invalid;
      return drop(DropReason::CookieInvalid);
    }
    ++counters.cookies_valid;
    guard.source_proved(key.src, now.cookie_ns);
    if (!guard.take_new_flow(key.src, now.cookie_ns)) {
      ++counters.flows_refused;
      return drop(DropReason::NewFlowRate);
    }
    const uint32_t i = allocate_flow(key, now, sink);
    if (i == kNone) {
      ++counters.flows_refused;
      if (cfg.table_full_reset) {
        emit(sink, build_rst(scratch, key.reversed(), h.cookie_isn + 1, 0, false));
      }
      return {Verdict::Drop, false};
    }
    start_flow(i, h, *mss, (h.asked & SG_HS_TIMESTAMPS) && !backend_has_timestamps(key), now);
    Flow& f = table.edit(i);
    // A bare cookie ACK becomes the backend's SYN. One that carries data (buffered here) may be a
    // GSO super-packet, which a shorter verdict would leave flagged for segmentation: no room, so
    // the SYN is sent apart.
    const bool bare = p.payload_len() == 0 && !(p.flags() & tcp_flag::FIN);
    buffer_early_data(f, p);
    f.kernel_handshake = 0;
    if (bare) {
      FlowObserver* observer = table.flow_observer();
      if (observer && observer->handshake_sent(f.key, handshake_of(f), f.kernel_generation)) {
        f.kernel_handshake = kHandshakeOffered;
        kernel_offers = true;
      }
    }
    return take_place(build_backend_syn(i), bare ? room : std::span<uint8_t>{}, sink);
  }

  // A table entry for a new flow, or kNone (refused, counted). Connections the programs carried
  // whole since the last look may still hold the source's share or the table's room (reports
  // taken with this one, a client reconnecting within a turn): their hand-overs and closes are
  // taken before a refusal.
  // `kernel_generation`: the number the kernel side already gave the flow (one it opened), 0 for
  // a new one.
  uint32_t allocate_flow(const FlowTuple& key, const EngineClock& now, PacketSink& sink,
                         uint32_t kernel_generation = 0) {
    uint32_t i = table.allocate_flow(key, timer_ms(now), kernel != nullptr);
    if (i == kNone && kernel) {
      take_handed_over_reports(now, sink);
      merge_kernel_closes(timer_ms(now));
      i = table.allocate_flow(key, timer_ms(now));
    }
    if (i != kNone && kernel) {
      table.edit(i).kernel_generation = kernel_generation ? kernel_generation : kernel->new_generation();
    }
    return i;
  }

  // A flow allocated for handshake `h` (the cookie's MSS; `room`: the backend's SYN leaves room for
  // timestamps syngate may supply), its SYN leaving now.
  void start_flow(uint32_t i, const sg_handshake& h, uint16_t mss, bool room, const EngineClock& now) {
    Flow& f = table.edit(i);
    f.client_isn = h.client_isn;
    f.cookie_isn = h.cookie_isn;
    f.mss = mss;
    if (h.asked & SG_HS_TIMESTAMPS) f.bits |= bit::kTimestamps;
    if (h.asked & SG_HS_SACK) f.bits |= bit::kSack;
    if (h.asked & SG_HS_ECN) f.bits |= bit::kEcn;
    f.client_tsval = h.client_tsval;
    f.tsoff = h.our_tsval;  // our SYN-ACK TSval, until the backend's is known
    f.client_ws = h.client_ws;
    f.client_window = h.client_window;
    f.announced_ws = h.announced_ws;
    if (room) f.supply |= kSupplyRoomForTimestamps;
    f.client_next = h.client_isn + 1;
    f.retries = 0;
    table.enter(i, State::SynSent, timer_ms(now));
  }

  // ---- flows the kernel side opened (KernelFlowState::take_opened) -----------------------------
  // The program checked the cookie, sent the backend's SYN and wrote the record for its SYN-ACK:
  // the engine holds the flow from here as if it had sent that SYN itself, the record offered
  // (handshake_sent). The source's limits and the table's room are the engine's, and judged now:
  // a flow refused is undone (the record withdrawn, entries the programs wrote since deleted,
  // the backend's half-open connection and the client reset), as the engine would have refused
  // its cookie ACK.
  void kernel_opened(const KernelOpened& k, const EngineClock& now, PacketSink& sink) {
    ++counters.kernel_opened;
    ++counters.cookies_valid;
    guard.source_proved(k.flow.src, now.cookie_ns);
    uint32_t i = table.find(k.flow);
    if (i != kNone) {
      Flow& f = table.edit(i);
      if (f.client_isn == k.handshake.client_isn) {
        // Whichever record stands (the program's, or the engine's written over it), the flow's
        // entries carry its number: the flow releases up to the later of the two.
        f.kernel_generation = sg_seq_max(f.kernel_generation, k.generation);
        // The engine opened this connection too, from a copy of the ACK or from the client's
        // data, which can overtake the report: sent by the client's process on another CPU, it
        // meets the program's record before the program has submitted its report, and a vCPU
        // paused there lets the engine take the whole handshake meanwhile. In SynSent the
        // program's record stands and may answer the SYN-ACK; later the SYN-ACK was the engine's
        // and the record goes. Nothing is reset: the connection is the client's (seen in CI as
        // one reset among ~20k connections of one ab client, gateway_backscatter).
        if (f.state == State::SynSent) {
          if (!f.kernel_handshake) f.kernel_handshake = kHandshakeOffered;
          kernel_offers = true;
        } else {
          kernel->withdraw_handshake(k.flow);
        }
        return;
      }
      // The programs may have carried the pair's previous connection whole (its open, hand-over
      // and close) since the engine's last turn: its hand-over report is then in this turn too,
      // behind the opens, and the flow still SynSent in the engine's view. Taken first, or this
      // open would be refused as a pair in use (both ends reset: seen at ~10k connections/s of
      // one client, with the shipped linger).
      if (k.over_closed && f.state == State::SynSent && f.kernel_handshake) take_handed_over_reports(now, sink);
      const State old_state = table.get(i).state;  // a hand-over moves the flow, never frees it
      // Client port reuse, as for a cookie ACK the engine takes. The programs open over a pair's
      // entries only once they recorded its close (over_closed), which the engine may not have
      // merged yet: opens are taken before closes, and the old entries may already be the new
      // flow's. An old flow still SynSent whose SYN-ACK the programs may have answered was carried
      // whole by them and its report lost (the ring full while the flow worker waited for a CPU):
      // refused, the new connection's ends would be reset, and so would every later one on the
      // port until the old flow's SYN retry. The programs claim a record only to write the flow's
      // entries, so closed entries over it are its own. One the engine answers itself (its record
      // withdrawn) is in use until its client's RST reaches the engine.
      const bool carried_whole = old_state == State::SynSent && table.get(i).kernel_handshake;
      if (old_state == State::Linger || old_state == State::Closing ||
          (k.over_closed && (old_state != State::SynSent || carried_whole))) {
        table.free_flow(i);
        ++counters.flows_reused;
      } else {
        count(DropReason::PairInUse);
        refuse_kernel_opened(k, sink);
        return;
      }
    }
    if (!guard.take_new_flow(k.flow.src, now.cookie_ns)) {
      count(DropReason::NewFlowRate);
      refuse_kernel_opened(k, sink);
      return;
    }
    i = allocate_flow(k.flow, now, sink, k.generation);  // the program's record's, and so its entries'
    if (i == kNone) {
      refuse_kernel_opened(k, sink);
      return;
    }
    start_flow(i, k.handshake, k.mss, k.room_for_timestamps, now);
    table.edit(i).kernel_handshake = kHandshakeOffered;
    kernel_offers = true;
  }
  void refuse_kernel_opened(const KernelOpened& k, PacketSink& sink) {
    ++counters.flows_refused;
    ++counters.kernel_opened_refused;
    kernel->withdraw_handshake(k.flow);
    kernel->discard(k.flow, k.generation);
    emit(sink, build_rst(scratch, k.flow, k.handshake.client_isn + 1, 0, false));
    emit(sink, build_rst(scratch, k.flow.reversed(), k.handshake.cookie_isn + 1, k.handshake.client_isn + 1, true));
  }
  void take_kernel_opened(const EngineClock& now, PacketSink& sink) {
    opened.clear();
    kernel->take_opened(opened);
    for (const KernelOpened& k : opened) {
      kernel_opened(k, now, sink);
      table.settle();
    }
  }

  // Holds in-order data the client sends before the backend has answered; the rest is dropped
  // (never acknowledged to the client, so it will retransmit it).
  void buffer_early_data(Flow& f, const TcpPacket& p) {
    const size_t len = p.payload_len();
    const bool fin = p.flags() & tcp_flag::FIN;
    if (len == 0 && !fin) return;
    // What the client has sent, as far as it fits the window our SYN-ACK offered.
    const uint32_t end = seq_end(p);
    if (sg_seq_within(end, f.client_isn + 1, f.client_isn + 1 + std::max<uint32_t>(cfg.synack_window, 1))) {
      f.client_next = sg_seq_max(f.client_next, end);
    }
    const uint32_t expected = f.client_isn + 1 + f.early_len;
    if (f.bits & bit::kClientFin) return;  // nothing follows a FIN
    if (p.seq() != expected) {
      if (seq_after(p.seq(), expected)) count(DropReason::EarlyDataOverflow);
      return;  // a retransmission of what we hold, or a gap
    }
    if (len == 0) {
      hold_early_fin(f, p);
      return;
    }
    if (f.early_slot == kNone) {
      f.early_slot = table.take_early_slot();
      if (f.early_slot == kNone) {
        count(DropReason::EarlyDataOverflow);
        return;
      }
    }
    if (f.early_len + len > cfg.early_data_bytes) {
      count(DropReason::EarlyDataOverflow);
      return;
    }
    std::memcpy(table.early_data(f.early_slot) + f.early_len,
                p.payload().data(), len);
    f.early_len = static_cast<uint16_t>(f.early_len + len);
    ++counters.early_data_buffered;
    if (fin) hold_early_fin(f, p);
  }
  // A FIN right behind what is held goes to the backend with it: left to the client's
  // retransmission, a server that answers at the client's EOF (a request sent, then shutdown)
  // would wait out the client's retransmission timeout. Only one that names our cookie SYN-ACK
  // (ack) and the end of the held data (seq) exactly: a blind FIN would end the client's half of
  // a connection before it began.
  void hold_early_fin(Flow& f, const TcpPacket& p) {
    if (p.ack() != f.cookie_isn + 1 || fin_seq(p) != f.client_isn + 1 + f.early_len) return;
    f.bits |= bit::kClientFin;
    f.client_fin_seq = fin_seq(p);
    f.client_next = sg_seq_max(f.client_next, f.client_fin_seq + 1);
    ++counters.early_fins_held;
  }

  // ---- the backend's side -------------------------------------------------------------------
  // The backend answered our SYN with something other than its SYN-ACK (`i` in SynSent).
  // A connection the kernel side completed, its open or hand-over not taken yet, is taken first,
  // and the segment is then that connection's. Otherwise an ACK of anything but what the client
  // sent comes from an older connection the backend still holds on the pair (a LAST-ACK whose last
  // ACK it never got, a TIME-WAIT): reset, as a client in SYN-SENT does (RFC 9293 3.10.7.3,
  // <SEQ=SEG.ACK><CTL=RST>), and the SYN sent again at once (a retry), so that the connection opens
  // instead of meeting the same ACK at every retry and the client being reset at the timeout.
  Decision backend_answered_otherwise(uint32_t i, TcpPacket& p, const FlowTuple& key, const EngineClock& now,
                                      PacketSink& sink, std::span<uint8_t> room) {
    const uint8_t fl = p.flags();
    if (kernel) {
      if (!table.get(i).kernel_handshake) take_kernel_opened(now, sink);
      i = table.find(key);
      if (i == kNone) return drop(DropReason::NoFlow);
      settle_kernel_handshake(i, now, sink);
      if (table.get(i).state != State::SynSent) return server_packet(p, key, now, sink, room);
    }
    Flow& f = table.edit(i);
    if (!(fl & tcp_flag::ACK) || sg_seq_within(p.ack(), f.client_isn + 1, f.client_next)) {
      return drop(DropReason::BackendSynAckUnexpected);
    }
    emit(sink, build_rst(scratch, f.key, p.ack(), 0, false));
    count(DropReason::BackendSynAckUnexpected);
    if (f.retries < cfg.backend_syn_retries) retry_backend_syn(i, timer_ms(now), sink);
    return {Verdict::Drop, false};
  }

  Decision server_packet(TcpPacket& p, const FlowTuple& key, const EngineClock& now, PacketSink& sink,
                         std::span<uint8_t> room) {
    const uint8_t fl = p.flags();
    uint32_t i = table.find(key);
    if (i == kNone && kernel && (fl & tcp_flag::ACK) && !(fl & tcp_flag::RST)) {
      // A flow the programs opened, its report not taken yet: the backend's answer is judged by it.
      take_kernel_opened(now, sink);
      i = table.find(key);
    }
    if (i == kNone) {
      if (fl & tcp_flag::SYN) return drop(DropReason::BackendSynAckUnexpected);
      return drop(DropReason::NoFlow);
    }
    Flow& f = table.edit(i);
    const bool rst = fl & tcp_flag::RST;
    if (f.state == State::SynSent) {
      if (rst) {
        // Port closed or the backend refused: tell the client now rather than after retries. Only
        // an RST that acknowledges our SYN is the backend's (RFC 9293 3.10.7.3, SYN-SENT).
        if ((fl & tcp_flag::ACK) && p.ack() == f.client_isn + 1) {
          reset_client(f, sink);
          table.free_flow(i);
          return drop(DropReason::BackendReset);
        }
        return drop(DropReason::StaleSegment);
      }
      if ((fl & (tcp_flag::SYN | tcp_flag::ACK)) == (tcp_flag::SYN | tcp_flag::ACK) && p.ack() == f.client_isn + 1) {
        count(DropReason::BackendSynAckConsumed);
        // One the kernel side left, or a copy of one it took: answered, but a copy may as well be
        // the backend's retransmission after the program's ACK was lost, and unanswered a backend
        // that speaks first would wait for the client's next segment. A duplicate ACK costs nothing.
        settle_kernel_handshake(i, now, sink);
        if (table.get(i).state != State::SynSent) {
          // Only a copy of the SYN-ACK that was taken (its ISN gave the flow its delta).
          if (p.seq() - table.get(i).cookie_isn == table.get(i).delta) ack_synack_again(table.edit(i), p, sink);
          return {Verdict::Drop, false};
        }
        return take_place(backend_answered(i, p, now, sink), room, sink);
      }
      return backend_answered_otherwise(i, p, key, now, sink, room);
    }
    if (fl & tcp_flag::SYN) {
      // A retransmitted SYN-ACK: our ACK was lost. Answer it again rather than let it through.
      if ((fl & tcp_flag::ACK) && p.seq() - f.cookie_isn == f.delta) {
        ack_synack_again(f, p, sink);
        return drop(DropReason::BackendSynAckConsumed);
      }
      return drop(DropReason::BackendSynAckUnexpected);
    }
    if (ack_superseded(f, p, true)) return drop(DropReason::AckSuperseded);
    // As for the client's segments: the kernel's record only where it is judged with.
    const bool judged = rst || (fl & tcp_flag::FIN);
    const KernelSide side = judged ? merge_kernel(f) : KernelSide::None;
    const sg_flow_shifts shift = shifts(f);  // once per packet: tracking and rescaling both use it
    bool ends_flow = false;
    if (rst) {
      // Spoofed as the service or real: judged against what the client acknowledged and offered.
      const sg_rst_verdict v = judge_rst(f, p.seq(), f.server_next, f.client_acked, f.client_wnd);
      if (v == SG_RST_OUT_OF_WINDOW) return drop(DropReason::RstOutOfWindow);
      ends_flow = v == SG_RST_RESET;
    } else {
      const bool fin = (fl & tcp_flag::FIN) && fin_believable(f, p, false);
      if (!track_server(f, p, shift) && !judged && merge_kernel(f) != KernelSide::None) track_server(f, p, shift);
      if (fin && !(f.bits & bit::kServerFin)) {
        f.bits |= bit::kServerFin;
        f.server_fin_seq = fin_seq(p);
      }
      if ((fl & tcp_flag::ACK) && (f.bits & bit::kClientFin) && seq_after(p.ack(), f.client_fin_seq)) {
        f.bits |= bit::kClientFinAcked;
      }
    }
    const sg_xlate_params xp{f.delta, f.tsoff, SG_XLATE_TO_CLIENT, shift.server_sends, shift.client_reads, 1};
    sg_xlate_segment s = p.xlate_fields();
    const uint16_t diff = sg_xlate(&s, &xp);
    p.store_xlate(s, diff);
    if (!rst || ends_flow) after_translation(i, ends_flow, timer_ms(now));
    punt_if_closed(f, side);
    ++counters.translated;
    if ((f.supply & kSupplyTimestamps) && !rst) return supply_timestamps(f, p, now, room);
    return {Verdict::Accept, true};
  }

  // The client was promised timestamps (RFC 7323: then every segment carries them) and the
  // backend does not send them: add them, with a TSval that never goes back and the client's
  // newest TSval as TSecr.
  Decision supply_timestamps(Flow& f, const TcpPacket& p, const EngineClock& now, std::span<uint8_t> room) {
    const size_t length = p.bytes().size();
    const bool room_in_mss = f.supply & kSupplyRoomForTimestamps;
    const size_t n = room_in_mss ? insert_timestamps(room, length, supplied_tsval(f, now), f.client_tsval) : 0;
    if (n == 0) {
      ++counters.timestamps_not_supplied;  // passed as it is (Linux accepts it, RFC 7323 3.2 may not)
      return {Verdict::Accept, true};
    }
    ++counters.timestamps_supplied;
    // Padding among the options can leave the length as it was, or shorten it: a length is
    // reported only when it changed.
    return {Verdict::Accept, true, n != length ? static_cast<uint32_t>(n) : 0u};
  }

  // The payload one segment to the backend may carry: its SYN-ACK's MSS (RFC 9293's default
  // without one) less the options each segment carries, never below Linux's floor (48).
  static uint32_t early_segment_bytes(const sg_synack& synack, const TcpOptions& sent, bool v4) {
    const uint32_t mss = synack.has_mss ? synack.mss : (v4 ? SG_DEFAULT_MSS_V4 : SG_DEFAULT_MSS_V6);
    const uint32_t options = static_cast<uint32_t>(tcp_options_wire_length(sent));
    return std::max<uint32_t>(mss > options ? mss - options : 0u, 48u);
  }

  // What the SYN to the backend was sent with, for the hand-over (handover_spec.h).
  static sg_handshake handshake_of(const Flow& f) {
    sg_handshake h{};
    h.client_isn = f.client_isn;
    h.cookie_isn = f.cookie_isn;
    h.our_tsval = f.tsoff;  // f.tsoff holds our SYN-ACK TSval until the backend answers
    h.client_tsval = f.client_tsval;
    h.client_window = f.client_window;
    h.client_ws = f.client_ws;
    h.announced_ws = f.announced_ws;
    h.asked = static_cast<uint8_t>(((f.bits & bit::kTimestamps) ? SG_HS_TIMESTAMPS : 0u) |
                                   ((f.bits & bit::kSack) ? SG_HS_SACK : 0u) | ((f.bits & bit::kEcn) ? SG_HS_ECN : 0u));
    return h;
  }
  static sg_synack synack_of(const TcpPacket& p) {
    const TcpOptions& o = p.options();
    sg_synack s{};
    s.seq = p.seq();
    s.ack = p.ack();
    s.window = p.window();
    s.has_ts = o.has_timestamps;
    s.tsval = o.has_timestamps ? o.tsval : 0u;
    s.has_wscale = o.has_wscale;
    s.wscale = o.has_wscale ? o.wscale : 0u;
    s.sack_permitted = o.sack_permitted;
    s.has_mss = o.has_mss;
    s.mss = o.has_mss ? o.mss : 0u;
    return s;
  }
  static TcpOptions options_of(const sg_handover_ack& a) {
    TcpOptions o;
    if (a.has_ts) {
      o.has_timestamps = true;
      o.tsval = a.tsval;
      o.tsecr = a.tsecr;
    }
    return o;
  }

  // The flow's side of the hand-over (handover_spec.h): what the backend's SYN-ACK taught it and
  // each end's record, for whichever path answers the SYN-ACK. The flow enters Established with
  // enter_established once its early data is out (its slot goes back to the pool then).
  sg_handover adopt_synack(uint32_t i, const sg_synack& s, const EngineClock& now, bool learn = true) {
    Flow& f = table.edit(i);
    const sg_handshake h = handshake_of(f);
    sg_handover ho;
    sg_hand_over(&h, &s, &ho);
    if (learn) learn_backend(f, s, now);
    f.delta = ho.delta;
    // Supplied, f.tsoff keeps our SYN-ACK TSval: the last one the client saw, where supplied ones start.
    if (ho.supply_timestamps) f.supply |= kSupplyTimestamps;
    else f.tsoff = ho.tsoff;
    if (ho.backend_scales) {
      f.bits |= bit::kBackendWscale;
      f.backend_ws = ho.backend_ws;
    }
    // What each end has sent and acknowledged so far, for the RST check.
    f.client_next = sg_seq_max(f.client_next, f.client_isn + 1 + f.early_len);
    f.client_acked = s.seq + 1;
    f.client_wnd = sg_window_bytes(f.client_window, ho.shifts.client_sends);
    f.server_next = s.seq + 1;
    f.server_acked = f.client_isn + 1;
    f.server_wnd = s.window;  // a SYN-ACK's own window is unscaled
    f.seen = kSeenBoth;
    f.kernel_handshake = 0;
    return ho;
  }
  // What a backend's SYN-ACK says of the service's backend, for the next clients' promises.
  void learn_backend(const Flow& f, const sg_synack& s, const EngineClock& now) {
    if (f.bits & bit::kTimestamps) cfg.backend_facts->backend_timestamps(Service{f.key.dst, f.key.dport}, s.has_ts != 0);
    // Only a flow whose client was promised SACK asked the backend for it.
    if (f.bits & bit::kSack) {
      cfg.backend_facts->backend_answered(Service{f.key.dst, f.key.dport}, s.sack_permitted != 0, now_ms(now.cookie_ns));
    }
  }
  void enter_established(uint32_t i, const EngineClock& now) {
    Flow& f = table.edit(i);
    f.stamp_ms = timer_ms(now);
    ++counters.established;
    table.enter(i, State::Established, f.stamp_ms);
  }

  // What the client sent early, to the backend: its data in segments its MSS allows (it may have
  // reached the queue as one GRO super-packet, 2,896 bytes from a client with a full MSS, which as
  // one packet would exceed the MTU and the raw send fail, EMSGSIZE, the backend never getting it
  // and the client waiting a retransmission timeout), then the FIN held behind it
  // (hold_early_fin) in a segment of its own. Nothing when nothing was held.
  void send_early(const Flow& f, const sg_synack& s, const sg_handover_ack& a, PacketSink& sink) {
    const TcpOptions ts = options_of(a);
    if (f.early_len > 0) {
      const uint32_t segment = early_segment_bytes(s, ts, f.key.src.is_v4());
      const uint8_t* data = table.early_data(f.early_slot);
      for (uint32_t off = 0; off < f.early_len; off += segment) {
        const uint32_t n = std::min<uint32_t>(segment, f.early_len - off);
        emit(sink, build_ack(scratch, f.key, a.seq + off, a.ack, a.window, ts, std::span<const uint8_t>(data + off, n)));
      }
    }
    if (f.bits & bit::kClientFin) {
      const SegmentSpec fin{.tuple = f.key, .seq = f.client_fin_seq, .ack = a.ack,
                            .flags = tcp_flag::ACK | tcp_flag::FIN, .window = a.window, .options = ts};
      emit(sink, build_tcp_packet(scratch, fin));
    }
  }

  // Sends the backend its ACK and builds the client's window update in scratch (its length
  // returned: it goes the SYN-ACK's way).
  size_t backend_answered(uint32_t i, const TcpPacket& synack, const EngineClock& now, PacketSink& sink) {
    const sg_synack s = synack_of(synack);
    const sg_handover ho = adopt_synack(i, s, now);
    Flow& f = table.edit(i);
    // The translation is complete: hand it over before anything reaches the backend (the ACK
    // below lets it send), so that none of its segments can overtake the hand-over.
    if (FlowObserver* observer = table.flow_observer()) {
      if (const std::optional<FlowTranslation> t = translation(f)) {
        observer->flow_established(f.key, *t, f.kernel_generation);
      }
    }
    // The early data's first segment completes the backend's handshake; without any, a bare ACK.
    if (f.early_len == 0) {
      emit(sink, build_ack(scratch, f.key, ho.to_backend.seq, ho.to_backend.ack, ho.to_backend.window,
                           options_of(ho.to_backend)));
    }
    send_early(f, s, ho.to_backend, sink);
    // Tell the client the real window now that it is known (ours was only the early-data room).
    TcpOptions to_client = options_of(ho.to_client);
    if (ho.supply_timestamps) to_client.tsval = supplied_tsval(f, now);
    enter_established(i, now);
    follow_fins(i, timer_ms(now));  // the FIN held behind the early data went with it
    return build_window_update(scratch, f.key.reversed(), ho.to_client.seq, ho.to_client.ack, ho.to_client.window,
                               to_client);
  }

  // The backend's ACK again, for a SYN-ACK of a flow already established.
  void ack_synack_again(Flow& f, const TcpPacket& synack, PacketSink& sink) {
    merge_kernel(f);  // the ACK carries the client's newest TSval, which may have crossed the kernel
    const uint32_t backend_ts = synack.options().has_timestamps ? synack.options().tsval : 0;
    emit(sink, build_ack(scratch, f.key, f.client_isn + 1, synack.seq() + 1,
                         client_window_for_server(f, f.client_window), ts_to_backend(f, backend_ts)));
  }

  // ---- hand-overs the kernel side made (FlowObserver::handshake_sent) --------------------------
  // The tc program answered the flow's SYN-ACK (the backend's ACK and the client's window update
  // are out, both entries written): the flow takes what it taught and sends on what the client
  // sent early, if anything (the program's ACK carried none).
  void kernel_handed_over(uint32_t i, const sg_synack& s, const EngineClock& now, PacketSink& sink) {
    const Flow& before = table.get(i);
    const sg_handshake h = handshake_of(before);
    if (!sg_synack_answers(&h, &s)) return;
    if (before.state == State::SynSent && before.kernel_handshake) {
      established_by_kernel(i, s, true, now, sink);
    } else if (before.kernel_handshake == kHandshakeUnlearnt && s.seq - before.cookie_isn == before.delta) {
      // Established from the entries before this report came: the backend's facts come from it.
      learn_backend(before, s, now);
      table.edit(i).kernel_handshake = 0;
    }
  }
  // The engine's side of a hand-over the kernel side made: the flow takes the SYN-ACK (`learn`:
  // what it says of the backend too) and sends on the client's early data, if any.
  void established_by_kernel(uint32_t i, const sg_synack& s, bool learn, const EngineClock& now, PacketSink& sink) {
    const sg_handover ho = adopt_synack(i, s, now, learn);
    const Flow& f = table.get(i);
    send_early(f, s, ho.to_backend, sink);
    ++counters.kernel_handshakes;
    enter_established(i, now);
    if (f.bits & bit::kClientFin) {
      // The program wrote the entries without the FIN the engine held: the client's later
      // segments (and a new connection's cookie ACK on the pair) must reach the engine.
      kernel->punt(f.key, f.kernel_generation);
      ++counters.kernel_punts;
      follow_fins(i, timer_ms(now));
    }
  }
  // The same from the flow's entries alone (handed_over_translation): the SYN-ACK as they imply it.
  // Its window and options beyond the translation are unknown: the backend's window is taken as
  // 64 KiB until the kernel's record tells, and nothing is learnt of the backend (SACK, timestamps).
  void adopt_kernel_translation(uint32_t i, const FlowTranslation& t, const EngineClock& now, PacketSink& sink) {
    const Flow& before = table.get(i);
    sg_synack s{};
    s.seq = before.cookie_isn + t.delta;
    s.ack = before.client_isn + 1;
    s.window = 0xffff;
    s.has_ts = t.timestamps;
    s.tsval = t.timestamps ? before.tsoff + t.tsoff : 0u;  // before.tsoff: our SYN-ACK TSval
    const bool client_scales = before.client_ws != kNoWscale;
    s.has_wscale = client_scales && t.shifts.server_reads == before.client_ws;
    s.wscale = s.has_wscale ? t.shifts.server_sends : 0u;
    s.sack_permitted = (before.bits & bit::kSack) != 0;
    established_by_kernel(i, s, false, now, sink);
    table.edit(i).kernel_handshake = kHandshakeUnlearnt;
  }

  // Takes the hand-overs the kernel side reported for this engine's flows.
  void take_kernel_handovers(const EngineClock& now, PacketSink& sink) {
    // A flow may carry the mark without a kernel side: restored or imported from a table saved
    // by a process that had one.
    if (!kernel) return;
    take_kernel_opened(now, sink);
    take_handed_over_reports(now, sink);
  }
  // Every report: the flow worker's turn. Closes too, so that connections the programs carried
  // whole stop holding their source's share (max_flows_per_source) and the table's room within a
  // turn, not at the next sweep: a client opening 11k connections/s ends ~1000 per sweep.
  void take_kernel_reports(const EngineClock& now, PacketSink& sink) {
    if (!kernel) return;
    take_kernel_handovers(now, sink);
    merge_kernel_closes(timer_ms(now));
    sweep_lost_reports(now, sink);
  }

  // A report the programs could not write (their ring full: a flow worker that did not run for a
  // while, a burst of closes) is gone for good. Its flow's entries still hold what it said, so
  // once the kernel side counts one lost, every flow of the table is looked at, a slice a turn:
  // one whose SYN-ACK the programs answered is established from its entries, one that closed in
  // tc takes its FINs. Without it those flows waited for their SYN retry (a second) or their idle
  // timer (ten minutes by default), holding their source's share (max_flows_per_source) and the
  // table's room all the while. Losses during a sweep start another one after it, so that a ring
  // that keeps overflowing still sees every sweep through.
  static constexpr uint32_t kSweepSlotsPerTurn = 16384;  // a look at a slot's state: cheap
  static constexpr uint32_t kSweepReadsPerTurn = 512;    // a read is a system call
  void sweep_lost_reports(const EngineClock& now, PacketSink& sink) {
    const uint64_t lost = kernel->reports_lost();
    if (lost != reports_lost_seen) {
      reports_lost_seen = lost;
      if (sweep_next == kNone) {
        sweep_next = 0;
        ++counters.kernel_report_sweeps;
      } else {
        sweep_again = true;
      }
    }
    if (sweep_next == kNone) return;
    const uint32_t slots = cfg.max_flows;
    const uint32_t stop = sweep_next + std::min(kSweepSlotsPerTurn, slots - sweep_next);
    uint32_t reads = 0;
    for (; sweep_next < stop && reads < kSweepReadsPerTurn; ++sweep_next) {
      const uint32_t i = sweep_next;
      const Flow& f = table.get(i);
      if (f.state == State::Free) continue;
      ++reads;
      if (f.state == State::SynSent) {
        adopt_from_entries(i, now, sink);
        continue;
      }
      if (merge_kernel(table.edit(i)) != KernelSide::None) follow_fins(i, timer_ms(now));
      table.settle();
    }
    if (sweep_next < slots) return;
    sweep_next = kNone;
    if (sweep_again) {
      sweep_again = false;
      sweep_next = 0;
      ++counters.kernel_report_sweeps;
    }
  }

  // A flow in SynSent whose SYN-ACK the kernel side may have answered without its report reaching
  // the engine (a full ring, a restart between the two): its entries say so, and then it is
  // established from them, with what its connection did in tc since (it may have run whole
  // there, its close's reports gone with nobody to take them). True when it was.
  bool adopt_from_entries(uint32_t i, const EngineClock& now, PacketSink& sink) {
    const Flow& f = table.get(i);
    if (!f.kernel_handshake) return false;
    const std::optional<FlowTranslation> t = kernel->handed_over_translation(f.key, f.kernel_generation);
    if (!t) return false;
    adopt_kernel_translation(i, *t, now, sink);
    if (merge_kernel(table.edit(i)) != KernelSide::None) follow_fins(i, timer_ms(now));
    table.settle();
    return true;
  }
  void take_handed_over_reports(const EngineClock& now, PacketSink& sink) {
    if (!kernel_offers) return;
    handovers.clear();
    // Only a report that answers the flow the table holds on its pair: one drained before its
    // flow's open was taken (a turn's opens are taken one by one, and an earlier one may look for
    // reports) finds the pair's previous connection there, and waits for its own.
    kernel->take_handed_over(handovers, [this](const KernelHandOver& k) {
      const uint32_t i = table.find(k.flow);
      if (i == kNone) return false;
      const sg_handshake h = handshake_of(table.get(i));
      return sg_synack_answers(&h, &k.synack) != 0;
    });
    for (const KernelHandOver& k : handovers) {
      const uint32_t i = table.find(k.flow);
      if (i != kNone) kernel_handed_over(i, k.synack, now, sink);
      table.settle();
    }
  }
  // The flow's SYN-ACK is the engine's from now on, unless the kernel side took it already: then
  // the flow is established now, from the program's report or from the entries it wrote before
  // it (a report may still be on its way on another CPU). Held instead, the client's data would
  // wait for the flow worker's next batch while the client's later segments crossed tc: reaching
  // the backend behind those, with older timestamps, it was refused (PAWS: backends_test with
  // tc_handshake on, 5 ms late). Nothing of either (the program claimed the record and then left
  // the SYN-ACK to the engine): the data is held, and the engine answers the SYN-ACK.
  void settle_kernel_handshake(uint32_t i, const EngineClock& now, PacketSink& sink) {
    if (!kernel || !table.get(i).kernel_handshake) return;
    if (table.get(i).kernel_handshake == kHandshakeOffered) {
      if (kernel->withdraw_handshake(table.get(i).key)) {
        table.edit(i).kernel_handshake = 0;
        return;
      }
      table.edit(i).kernel_handshake = kHandshakeTaken;  // withdrawn once: never again
    }
    // The program claims, writes both entries and reports within a microsecond or two, in softirq
    // (not preempted): a few looks cover one caught between the claim and the entries.
    for (int look = 0; look < kClaimLooks; ++look) {
      take_kernel_handovers(now, sink);
      if (table.get(i).state != State::SynSent) return;
      const Flow& f = table.get(i);
      if (const std::optional<FlowTranslation> t = kernel->handed_over_translation(f.key, f.kernel_generation)) {
        adopt_kernel_translation(i, *t, now, sink);
        table.settle();
        return;
      }
    }
  }

  // ---- ICMP errors about flows (icmp.hpp) ------------------------------------------------------
  // Only our own SYN has crossed in SynSent, sent from the client's address, so a router's error
  // about it comes addressed to the client. The client, handshaken with the cookie, is established
  // and would take an unreachable as a soft error (or find its quoted sequence number stale), so
  // it gets what a host in SYN-SENT makes of a hard error: the connection fails now, by a RST,
  // rather than after every retry. Only errors quoting our SYN's sequence number count.
  Decision icmp_in_syn_sent(uint32_t i, std::span<const uint8_t> bytes, const IcmpError& e, bool to_client,
                            PacketSink& sink) {
    const Flow& f = table.get(i);
    const bool hard = e.v4 ? (e.type == 3 && e.code != 4) || e.type == 11 : e.type == 1 || e.type == 3;
    if (!to_client || !hard || load_be32(bytes.data() + e.tcp_offset + 4) != f.client_isn) {
      return drop(DropReason::IcmpNoFlow);
    }
    reset_client(f, sink);
    table.free_flow(i);
    return drop(DropReason::BackendUnreachable);
  }

  // A router's error quotes a segment as the gateway passed it on, in the sequence space of the
  // side it went to; the endpoint it is addressed to believes it only in its own. The flow is
  // read, not touched: an error is no sign of life.
  Decision icmp_message(std::span<uint8_t> bytes, const IcmpError& e, PacketSink& sink) {
    if (e.kind != IcmpKind::TcpError) {
      ++counters.icmp_untouched;
      return {Verdict::Accept, false};
    }
    // Flows are keyed client -> service: a quote that matches one as it is was sent by the client
    // (the error is addressed to it), one that matches reversed by the server.
    uint32_t i = table.find(e.quoted);
    const bool to_client = i != kNone;
    if (!to_client) i = table.find(e.quoted.reversed());
    if (i == kNone) {
      if (!cfg.icmp_next_queue) return drop(DropReason::IcmpNoFlow);
      ++counters.icmp_passed_on;
      return {Verdict::NextQueue, false};
    }
    if (table.get(i).state == State::SynSent) return icmp_in_syn_sent(i, bytes, e, to_client, sink);
    const Flow& f = table.get(i);
    // Timestamps that syngate supplies for a backend without them were never translated.
    const uint32_t tsoff = (f.supply & kSupplyTimestamps) ? 0 : f.tsoff;
    const QuoteShift shift = to_client ? quote_shift_to_client(f.delta, tsoff) : quote_shift_to_server(f.delta, tsoff);
    const bool changed = shift_quote(bytes, e, shift) > 0;
    ++counters.icmp_translated;
    return {Verdict::Accept, changed};
  }

  // ---- timers -------------------------------------------------------------------------------
  void advance(const EngineClock& clock, PacketSink& sink) {
    const uint32_t now = timer_ms(clock);
    // Before the SYN retries: a flow the kernel side handed over must not send its SYN again.
    take_kernel_reports(clock, sink);
    for (uint32_t level = 0; level <= cfg.backend_syn_retries; ++level) {
      const uint32_t timeout = cfg.backend_retry_initial_ms << level;
      const FlowTable::List& l = table.list(static_cast<uint8_t>(kListSynSent0 + level));
      while (l.head != kNone && time_reached(now, table.get(l.head).stamp_ms + timeout)) {
        table.settle();
        const uint32_t i = l.head;
        // The backend must get no SYN again from a flow the kernel side handed over.
        if (kernel && adopt_from_entries(i, clock, sink)) continue;
        Flow& f = table.edit(i);
        if (f.retries >= cfg.backend_syn_retries) {
          reset_client(f, sink);
          count(DropReason::BackendTimeout);
          table.free_flow(i);
          continue;
        }
        retry_backend_syn(i, now, sink);
      }
    }
    expire(kListEstablished, cfg.established_idle_s * 1000u, now, true);
    expire(kListClosing, cfg.closing_idle_s * 1000u, now, true);
    expire(kListLinger, cfg.linger_s * 1000u, now, false);
    table.settle();
  }

  // The flows whose close the kernel side recorded since the last sweep: their state now (closing,
  // linger: queued afresh on that list), not at the established idle timer.
  void merge_kernel_closes(uint32_t now) {
    closes.clear();
    // A flow still in SynSent has a hand-over report on its way (the kernel side carried the whole
    // connection): its closes stay with the kernel side until that report has established it.
    // Not a newer connection's: one drained while the table still holds the pair's previous
    // connection (the new one's open taken from the kernel side but not yet into the table, as
    // when a turn's opens make room in a full table) waits for its own. An older number may be
    // this flow's own: one both paths opened carries the later of the two, its entries either.
    kernel->take_closing(closes, [this](const KernelClose& k) {
      const uint32_t i = table.find(k.flow);
      if (i == kNone || table.get(i).state == State::SynSent) return false;
      const uint32_t mine = table.get(i).kernel_generation;
      return k.generation == 0 || mine == 0 || !sg_seq_after(k.generation, mine);
    });
    for (const FlowTuple& t : closes) {
      const uint32_t i = table.find(t);
      if (i == kNone || table.get(i).state == State::SynSent) continue;
      if (merge_kernel(table.edit(i)) != KernelSide::None) follow_fins(i, now);
      table.settle();
    }
  }

  // Lists are in queued_ms order, so the walk stops at the first flow not yet due. Packets only
  // refresh stamp_ms (one store on the hot path); a due flow that saw traffic since it was
  // queued is queued again instead of freed. An idle flow thus goes after T to 2T of silence,
  // and each flow is requeued at most once per T, so the walk is amortised O(1) per flow.
  void expire(uint8_t id, uint32_t timeout, uint32_t now, bool refresh) {
    const FlowTable::List& l = table.list(id);
    while (l.head != kNone) {
      table.settle();
      const uint32_t i = l.head;
      Flow& f = table.edit(i);
      if (!time_reached(now, f.queued_ms + timeout)) break;
      // A handed-over flow's segments may all have crossed the kernel path: its record says,
      // and a FIN it recorded moves the flow on (to closing or linger, queued afresh there).
      if (refresh && merge_kernel(f) != KernelSide::None && follow_fins(i, now)) continue;
      if (refresh && !time_reached(now, f.stamp_ms + timeout)) {
        table.list_append(i, id);
        f.queued_ms = now;
        continue;
      }
      table.free_flow(i);
    }
  }


  Decision drop(DropReason r) {
    count(r);
    return {Verdict::Drop, false};
  }

  Decision process(std::span<uint8_t> bytes, const EngineClock& now, PacketSink& sink, bool checksum_ready,
                   size_t capacity) {
    const std::span<uint8_t> room(bytes.data(), std::max(bytes.size(), capacity));
    const Decision d = process_packet(bytes, now, sink, checksum_ready, room);
    table.settle();
    return d;
  }

  Decision process_packet(std::span<uint8_t> bytes, const EngineClock& now, PacketSink& sink, bool checksum_ready,
                          std::span<uint8_t> room) {
    ++counters.packets;
    SynVerdict v = guard.decide(bytes, cfg.services, now.cookie_ns);
    TcpPacket& p = v.parsed.packet;
    Decision d;
    switch (v.action) {
      case SynAction::Drop:
        return drop(v.reason);
      case SynAction::Pass:
        if (!draining.empty()) {
          if (is_protected(draining, p.dst(), p.dport()) && !(p.flags() & tcp_flag::SYN) && table.find(p.tuple()) != kNone) {
            d = client_packet(p, p.tuple(), now, sink, room);
            break;
          }
          if (is_protected(draining, p.src(), p.sport()) && table.find(p.tuple().reversed()) != kNone) {
            d = server_packet(p, p.tuple().reversed(), now, sink, room);
            break;
          }
        }
        ++counters.passed_through;
        return {Verdict::Accept, false};
      case SynAction::Answer:
        ++counters.syn_received;
        if (answer_syn(p, cookies, cfg, now.cookie_ns, sink)) ++counters.cookies_sent;
        return drop(DropReason::SynAnswered);
      case SynAction::ClientFlow:
        d = client_packet(p, p.tuple(), now, sink, room);
        break;
      case SynAction::ServerFlow:
        d = server_packet(p, p.tuple().reversed(), now, sink, room);
        break;
      case SynAction::Icmp:
        return icmp_message(bytes, v.icmp, sink);
    }
    // A packet that grew, or that another took the place of, carries a whole checksum already
    // (and p no longer describes its bytes).
    if (d.modified && !d.length && !checksum_ready) p.recompute_checksum();
    return d;
  }
};

Engine::Engine(const EngineConfig& config, const CookieJar& cookies, EngineState state)
    : impl_(std::make_unique<Impl>(config, cookies, state)) {}
Engine::~Engine() = default;

void Engine::reset(const EngineConfig& config, const CookieJar& cookies) {
  Impl& m = *impl_;
  // Assigned in place (its vectors keep their storage), not copied twice: a reset per fuzz input.
  m.cfg = config;
  Impl::normalize(m.cfg);
  const EngineConfig& c = m.cfg;
  if (!m.table.reset(Impl::table_config(c))) {
    impl_ = std::make_unique<Impl>(config, cookies, EngineState{});
    return;
  }
  // Every member of Impl as its constructor leaves it (EngineReset tests compare with a new
  // engine): a member added to Impl belongs here too.
  m.cookies = cookies;
  m.counters = EngineCounters{};
  m.scratch.assign(kMaxHeadersLen + std::max<size_t>(c.early_data_bytes, 64), 0);
  m.guard.reset(syn_guard_config(config));
  m.draining.clear();
  if (!m.cfg.backend_facts) {
    m.own_backend_facts->clear();
    m.cfg.backend_facts = m.own_backend_facts;
  }
  m.kernel = nullptr;  // as the observer: a new engine hears of no kernel path until told
  m.closes.clear();
}

size_t Engine::state_bytes(const EngineConfig& config) {
  return FlowTable::state_bytes(Impl::table_config(Impl::normalized(config)));
}
std::string Engine::state_incompatibility(std::span<const uint8_t> region, const EngineConfig& config,
                                          uint64_t boot_id) {
  return FlowTable::incompatibility(region, Impl::table_config(Impl::normalized(config)), boot_id);
}
const RestoreReport& Engine::restore_report() const noexcept { return impl_->table.restore_report(); }
RestoreReport Engine::import_state(std::span<const uint8_t> region, uint64_t boot_id, const EngineClock& now) {
  FlowTable::OlderLayout older;
  older.now_ms = timer_ms(now);
  older.announced_wscale = impl_->cfg.announced_wscale;
  return impl_->table.import_from(region, boot_id, older);
}
void Engine::for_each_flow(const std::function<void(const FlowTuple&)>& fn) const {
  impl_->table.for_each([&fn](uint32_t, const Flow& f) { fn(f.key); });
}

Decision Engine::process(std::span<uint8_t> packet, const EngineClock& now, PacketSink& sink, bool checksum_ready,
                         size_t capacity) {
  return impl_->process(packet, now, sink, checksum_ready, capacity);
}
void Engine::advance(const EngineClock& now, PacketSink& sink) { impl_->advance(now, sink); }
void Engine::take_kernel_reports(const EngineClock& now, PacketSink& sink) {
  impl_->take_kernel_reports(now, sink);
}
void Engine::prefetch(std::span<const std::span<uint8_t>> batch) {
  Impl& m = *impl_;
  FlowTuple* const keys = m.prefetch_keys.data();
  const size_t chunk = m.prefetch_keys.size();
  size_t n = 0;
  FlowTuple t;
  for (const std::span<uint8_t> bytes : batch) {
    if (!peek_tcp_tuple(bytes, t)) continue;
    // Oriented as the flow path will look it up (SynGuard::decide); draining services are left
    // out: their flows are few and ending.
    if (is_protected(m.cfg.services, t.dst, t.dport)) {
      keys[n++] = t;
    } else if (is_protected(m.cfg.services, t.src, t.sport)) {
      keys[n++] = t.reversed();
    }
    if (n == chunk) {
      m.table.prefetch(std::span<const FlowTuple>(keys, n));
      n = 0;
    }
  }
  m.table.prefetch(std::span<const FlowTuple>(keys, n));
}
void Engine::set_cookies(const CookieJar& cookies) { impl_->cookies = cookies; }
void Engine::set_services(std::vector<Service> services) {
  Impl& m = *impl_;
  for (const Service& old : m.cfg.services) {
    const bool kept = std::find(services.begin(), services.end(), old) != services.end();
    if (!kept && std::find(m.draining.begin(), m.draining.end(), old) == m.draining.end()) m.draining.push_back(old);
  }
  // A service added back is protected again, not draining.
  std::erase_if(m.draining, [&](const Service& s) { return std::find(services.begin(), services.end(), s) != services.end(); });
  m.cfg.services = std::move(services);
  prune_draining();
}

const std::vector<Service>& Engine::draining_services() const noexcept { return impl_->draining; }

void Engine::prune_draining() {
  Impl& m = *impl_;
  if (m.draining.empty()) return;
  std::vector<bool> live(m.draining.size(), false);
  m.table.for_each([&](uint32_t, const Flow& f) {
    for (size_t k = 0; k < m.draining.size(); ++k) {
      if (f.key.dst == m.draining[k].address && f.key.dport == m.draining[k].port) live[k] = true;
    }
  });
  size_t k = 0;
  std::erase_if(m.draining, [&](const Service&) { return !live[k++]; });
}
void Engine::set_flow_observer(FlowObserver* observer) noexcept {
  Impl& m = *impl_;
  m.table.set_observer(observer);
  if (!observer) return;
  // Flows restored from a saved table or imported before there was an observer: it hears of
  // them now, or it would take their packets for forgeries.
  m.table.for_each([observer](uint32_t, const Flow& f) {
    observer->flow_created(f.key);
    // Only Established: a closing flow's segments are the engine's anyway (FIN and RST merge).
    if (f.state != State::Established) return;
    if (const std::optional<FlowTranslation> t = Impl::translation(f)) {
      observer->flow_established(f.key, *t, f.kernel_generation);
    }
  });
}
void Engine::set_kernel_state(KernelFlowState* state) noexcept {
  Impl& m = *impl_;
  m.kernel = state;
  if (!state) return;
  // Restored or imported flows keep the numbers their records and entries carry; a flow the
  // programs opened after the save (its report left in the ring) has a later one, and so must
  // every number given from now on. Renumbered instead, a restored flow freed as port reuse took
  // that newer flow's record and entries.
  m.table.for_each([&](uint32_t, const Flow& f) {
    if (f.kernel_generation) state->generation_at_least(f.kernel_generation);
  });
}
uint64_t Engine::merge_kernel_state(const EngineClock& now) {
  Impl& m = *impl_;
  if (!m.kernel) return 0;
  // A flow whose SYN-ACK the kernel side answered just before the last process ended, its report
  // unread: established from its entries, which the observer then keeps (start reconciliation).
  // What it held of the client's early data is left to the client's retransmission.
  std::vector<uint32_t> answered;
  m.table.for_each([&](uint32_t i, const Flow& f) {
    if (f.state == State::SynSent && f.kernel_handshake) answered.push_back(i);
  });
  for (const uint32_t i : answered) {
    const Flow& f = m.table.get(i);
    if (const std::optional<FlowTranslation> t = m.kernel->handed_over_translation(f.key, f.kernel_generation)) {
      struct : PacketSink {
        void send(std::span<const uint8_t>) override {}
      } none;
      m.adopt_kernel_translation(i, *t, now, none);
      FlowObserver* observer = m.table.flow_observer();
      const std::optional<FlowTranslation> kept = Impl::translation(m.table.get(i));
      if (observer && kept) observer->flow_established(m.table.get(i).key, *kept, m.table.get(i).kernel_generation);
    }
    m.table.settle();
  }
  std::vector<uint32_t> flows;
  m.table.for_each([&](uint32_t i, const Flow& f) {
    if (f.state != State::SynSent) flows.push_back(i);
  });
  uint64_t merged = 0;
  for (const uint32_t i : flows) {
    if (m.merge_kernel(m.table.edit(i)) != Impl::KernelSide::None) {
      ++merged;
      m.follow_fins(i, timer_ms(now));
    }
    m.table.settle();
  }
  return merged;
}
void Engine::set_policy(std::shared_ptr<const SourcePolicy> policy) {
  impl_->cfg.policy = policy;
  impl_->guard.set_policy(std::move(policy));
}
const EngineCounters& Engine::counters() const noexcept {
  // The table counts its own (live, created, closed, refused, restored); the engine the rest.
  Impl& m = *impl_;
  const FlowTableCounters& t = m.table.counters();
  m.counters.flows_active = t.active;
  m.counters.flows_created = t.created;
  m.counters.flows_closed = t.closed;
  m.counters.flows_restored = t.restored;
  m.counters.restore_dropped_torn = t.restore_dropped_torn;
  m.counters.restore_dropped_invalid = t.restore_dropped_invalid;
  m.counters.restore_dropped_no_room = t.restore_dropped_no_room;
  m.counters.drops[static_cast<size_t>(DropReason::SourceLimit)] = t.refused_source_limit;
  m.counters.drops[static_cast<size_t>(DropReason::TableFull)] = t.refused_table_full;
  return m.counters;
}
const EngineConfig& Engine::config() const noexcept { return impl_->cfg; }

size_t Engine::flow_entry_bytes() noexcept { return sizeof(Flow); }

size_t Engine::memory_bytes() const noexcept {
  const Impl& m = *impl_;
  return m.table.memory_bytes() + m.scratch.size();
}

}  // namespace syngate
