// The tc translation program against the C++ engine (issue 23 item 5): real handshakes through the
// engine give each flow its parameters; the flow's two map entries are written as the daemon
// writes them; then the same established segments go through the kernel's BPF object
// (BPF_PROG_TEST_RUN, an Ethernet frame, CHECKSUM_NONE) and through the engine, and must come out
// byte-identical. Segments: random ones in both directions with 0-4 SACK blocks, with and without
// timestamps, zero windows, sequence numbers across 2^32, every wscale pair up to 14, IPv4 and
// IPv6, Linux's and odd option layouts; and the packets the program must leave to NFQUEUE
// untouched and unmarked (SYN, FIN, RST, IP options, malformed options, a map miss, egress with
// the mark). A build with one field translated wrong (SG_TC_BREAK_FIELD) must be caught.
//
// Needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN): skipped, saying so, otherwise.
#include <gtest/gtest.h>

#include <array>
#include <linux/bpf.h>
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "syngate_test/packet_fixtures.hpp"
#include "syngate_test/engine_harness.hpp"
#include "syngate/bpf/flow_key.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/spec/flow_spec.h"
#include "syngate_tc.skel.h"
#include "syngate_tc_broken.skel.h"
#include "syngate_tc_match.skel.h"
#include "tc_frames.hpp"

namespace syngate {
namespace {

using test::Bytes;
using test::Conn;

constexpr uint8_t kMacA[6] = {0x02, 0, 0, 0, 0, 1};
constexpr uint8_t kMacB[6] = {0x02, 0, 0, 0, 0, 2};

Bytes ethernet(const Bytes& ip) { return test::ethernet_frame(ip, kMacA, kMacB); }

sg_tc_flow_key key_of(const FlowTuple& t) { return bpf::map_flow_key<sg_tc_flow_key>(t); }

// One loaded object: the real program, or the deliberately broken build.
struct TcObject {
  syngate_tc* good = nullptr;
  syngate_tc_broken* broken = nullptr;
  int ingress = -1, egress = -1, flows = -1;
  std::string error;
  explicit TcObject(bool break_field) {
    libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
    if (break_field) take(broken = syngate_tc_broken__open_and_load());
    else take(good = syngate_tc__open_and_load());
  }
  // Both skeletons have the same programs and maps: one way to read their descriptors.
  template <typename Skeleton>
  void take(Skeleton* s) {
    if (!s) {
      error = std::strerror(errno);
      return;
    }
    ingress = bpf_program__fd(s->progs.sg_tc_ingress);
    egress = bpf_program__fd(s->progs.sg_tc_egress);
    flows = bpf_map__fd(s->maps.sg_tc_flows);
  }
  ~TcObject() {
    if (good) syngate_tc__destroy(good);
    if (broken) syngate_tc_broken__destroy(broken);
  }
  bool ok() const { return ingress >= 0; }
};

using test::TcRun;

TcRun run_tc(int prog, const Bytes& frame, uint32_t mark_in = 0) {
  __sk_buff ctx{};
  ctx.mark = mark_in;
  return test::run_tc_program(prog, frame, ctx);
}

// How a segment's options are laid out on the wire (Linux's, or one the program must walk).
enum class Layout { Linux, OddNop, TsLast, Unknown, Eol, Count };

// Rewrites the options of `ip` (built in Linux's layout) into `layout`, keeping the same option
// bytes length; returns false when that layout does not fit this segment's options.
bool relayout(Bytes& ip, Layout layout) {
  ParseResult r = parse_tcp_packet(ip);
  if (!r) return false;
  const size_t t = r.packet.tcp_offset();
  const size_t optlen = r.packet.tcp_header_len() - 20;
  uint8_t* o = ip.data() + t + 20;
  const TcpOptions& opts = r.packet.options();
  std::vector<uint8_t> ts, sack;
  if (opts.has_timestamps) ts.assign(o + opts.ts_offset - 22, o + opts.ts_offset - 22 + 10);
  if (opts.sack_count) sack.assign(o + opts.sack_offset - 22, o + opts.sack_offset - 22 + 2 + 8 * opts.sack_count);
  std::vector<uint8_t> out;
  switch (layout) {
    case Layout::Linux: return true;
    case Layout::OddNop:  // NOP TS NOP NOP SACK NOP: every field at an odd offset
      if (ts.empty()) return false;
      out.push_back(1);
      out.insert(out.end(), ts.begin(), ts.end());
      out.push_back(1);
      if (!sack.empty()) {
        out.push_back(1);
        out.insert(out.end(), sack.begin(), sack.end());
        out.push_back(1);
      }
      break;
    case Layout::TsLast:  // SACK before TS, padding after
      if (ts.empty() && sack.empty()) return false;
      out.insert(out.end(), sack.begin(), sack.end());
      out.insert(out.end(), ts.begin(), ts.end());
      break;
    case Layout::Unknown:  // an unknown option (kind 253, experimental) first
      if (optlen < ts.size() + sack.size() + 4) return false;
      out = {253, 4, 0xab, 0xcd};
      out.insert(out.end(), ts.begin(), ts.end());
      out.insert(out.end(), sack.begin(), sack.end());
      break;
    case Layout::Eol:  // the options, then END and junk (ignored by everyone)
      if (ts.empty()) return false;
      out.insert(out.end(), ts.begin(), ts.end());
      out.insert(out.end(), sack.begin(), sack.end());
      out.push_back(0);
      while (out.size() < optlen) out.push_back(0x5a);
      break;
    case Layout::Count: return false;
  }
  if (out.size() > optlen) return false;
  while (out.size() < optlen) out.push_back(1);  // NOP padding
  std::memcpy(o, out.data(), optlen);
  ParseResult again = parse_tcp_packet(ip);
  if (!again) return false;
  again.packet.recompute_checksum();
  return true;
}

class TcDiff : public test::EngineTest {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    // SG_TC_DIFF_BROKEN=1 runs every comparison against the broken build (to watch them fail).
    good_ = new TcObject(std::getenv("SG_TC_DIFF_BROKEN") != nullptr);
    broken_ = new TcObject(true);
  }
  static void TearDownTestSuite() {
    delete good_;
    delete broken_;
    good_ = broken_ = nullptr;
  }
  void SetUp() override {
    test::EngineTest::SetUp();
    if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF_PROG_LOAD and BPF_PROG_TEST_RUN";
    if (!good_ || !good_->ok()) GTEST_SKIP() << "BPF unavailable here: " << (good_ ? good_->error : "");
    cfg.max_flows = 4096;
  }

  // The flow's parameters as the daemon hands them over, derived from what each end announced;
  // `egress`: as a run with an egress filter writes them (SG_TC_OPT_EGRESS).
  void hand_over(const TcObject& o, const Conn& c, bool egress = false) {
    const bool ts = c.client_syn_opts.has_timestamps && c.backend_synack_opts.has_timestamps;
    const uint8_t client_ws = c.client_syn_opts.has_timestamps && c.client_syn_opts.has_wscale
                                  ? std::min<uint8_t>(c.client_syn_opts.wscale, 14)
                                  : SG_FLOW_NO_WSCALE;
    const sg_flow_shifts s = sg_flow_window_shifts(client_ws, c.backend_synack_opts.has_wscale,
                                                   std::min<uint8_t>(c.backend_synack_opts.wscale, 14),
                                                   cfg.announced_wscale);
    sg_tc_flow up{}, down{};
    up.delta = down.delta = c.backend_isn - c.cookie_isn;
    up.tsoff = down.tsoff = ts ? c.backend_ts - c.synack_tsval : 0;
    up.options = down.options = (ts ? SG_TC_OPT_TIMESTAMPS : 0) | (egress ? SG_TC_OPT_EGRESS : 0);
    up.direction = SG_TC_TO_SERVER;
    up.window_from = s.client_sends;
    up.window_to = s.server_reads;
    down.direction = SG_TC_TO_CLIENT;
    down.window_from = s.server_sends;
    down.window_to = s.client_reads;
    const sg_tc_flow_key ku = key_of(c.c2s), kd = key_of(c.c2s.reversed());
    ASSERT_EQ(bpf_map_update_elem(o.flows, &ku, &up, BPF_ANY), 0);
    ASSERT_EQ(bpf_map_update_elem(o.flows, &kd, &down, BPF_ANY), 0);
  }
  sg_tc_flow entry(const TcObject& o, const FlowTuple& t) {
    sg_tc_flow v{};
    const sg_tc_flow_key k = key_of(t);
    EXPECT_EQ(bpf_map_lookup_elem(o.flows, &k, &v), 0);
    return v;
  }

  // A random established segment of `c`, client -> server or server -> client.
  Bytes segment(const Conn& c, bool to_server, std::mt19937& rng, size_t sacks, bool with_ts) {
    static const std::vector<uint8_t> payload(1200, 'd');
    const uint32_t jitter = static_cast<uint32_t>(rng() % 20000);
    TcpOptions o;
    o.has_timestamps = with_ts;
    o.tsval = static_cast<uint32_t>(rng());
    o.tsecr = static_cast<uint32_t>(rng());
    o.sack_count = static_cast<uint8_t>(sacks);
    for (size_t i = 0; i < sacks; ++i) {
      const uint32_t base = (to_server ? c.cookie_isn : c.client_isn) + static_cast<uint32_t>(rng() % 40000);
      o.sack[i] = {base, base + 1 + static_cast<uint32_t>(rng() % 3000)};
    }
    const size_t len = rng() % 3 == 0 ? rng() % payload.size() : 0;
    const uint16_t window = rng() % 5 == 0 ? 0 : static_cast<uint16_t>(rng());
    SegmentSpec s{.tuple = to_server ? c.c2s : c.c2s.reversed(),
                  .seq = to_server ? c.client_isn + 1 + jitter : c.backend_isn + 1 + jitter,
                  .ack = (to_server ? c.cookie_isn : c.client_isn) + 1 + static_cast<uint32_t>(rng() % 20000),
                  .flags = static_cast<uint8_t>(tcp_flag::ACK | (len ? tcp_flag::PSH : 0)),
                  .window = window,
                  .options = o,
                  .payload = std::span<const uint8_t>(payload.data(), len)};
    return test::make(s);
  }

  // One segment through both; returns whether they agree (and records why not).
  bool agree(const TcObject& o, const Bytes& ip, const std::string& what, std::string* why, bool egress = false) {
    const Bytes frame = ethernet(ip);
    const TcRun t = run_tc(egress ? o.egress : o.ingress, frame);
    Bytes e = ip;
    const Decision d = feed(e, false);  // the engine computes a whole checksum
    std::string w;
    if (t.retval != TC_ACT_OK) w = "tc verdict " + std::to_string(t.retval);
    else if (d.verdict != Verdict::Accept || !d.modified) w = "the engine did not translate it";
    else if (!(t.mark & SG_TC_MARK)) w = "tc did not translate it (no mark)";
    else if (t.frame.size() != frame.size() || !std::equal(e.begin(), e.end(), t.frame.begin() + 14) ||
             !std::equal(frame.begin(), frame.begin() + 14, t.frame.begin()) ||
             !std::equal(frame.begin() + 14 + static_cast<long>(e.size()), frame.end(),
                         t.frame.begin() + 14 + static_cast<long>(e.size())))
    {
      w = "bytes differ at";
      for (size_t i = 0; i < e.size(); ++i)
        if (14 + i < t.frame.size() && e[i] != t.frame[14 + i])
          w += " " + std::to_string(i) + ":" + std::to_string(e[i]) + "/" + std::to_string(t.frame[14 + i]);
    }
    if (w.empty()) return true;
    if (why) *why = what + ": " + w;
    return false;
  }

  // The test's own statement of the one client segment translated after the client's FIN: a pure
  // ACK from just past its FIN, acknowledging exactly the server's recorded FIN.
  static bool client_last_ack(const TcpPacket& p, const sg_tc_flow& up, const sg_tc_flow& down) {
    return (p.flags() & (tcp_flag::SYN | tcp_flag::RST | tcp_flag::FIN | tcp_flag::ACK)) == tcp_flag::ACK &&
           p.payload_len() == 0 && (down.closing & SG_TC_SEEN_FIN) && p.seq() == up.fin_seq + 1 &&
           p.ack() + up.delta == down.fin_seq + 1;
  }

  // Leaves it alone: the bytes as they were, no mark, TC_ACT_OK.
  void expect_untouched(int prog, const Bytes& ip, const std::string& what, uint32_t mark_in = 0) {
    const Bytes frame = ethernet(ip);
    const TcRun t = run_tc(prog, frame, mark_in);
    EXPECT_EQ(t.retval, TC_ACT_OK) << what;
    EXPECT_EQ(t.mark & SG_TC_MARK, mark_in & SG_TC_MARK) << what << ": marked";
    EXPECT_EQ(t.frame, frame) << what << ": rewritten";
  }

  static inline TcObject* good_ = nullptr;
  static inline TcObject* broken_ = nullptr;
};

// Every wscale pair (none, 0-14 on each end), with and without timestamps, IPv4 and IPv6, ISNs
// placed so that the numbers cross 2^32, random segments both ways in every option layout.
TEST_F(TcDiff, EstablishedSegmentsAreByteIdentical) {
  std::mt19937 rng(2305);
  uint16_t port = 1000;
  size_t compared = 0, odd = 0, wrapped = 0, zero = 0, sacked = 0;
  std::vector<std::string> failures;
  for (int v6 = 0; v6 < 2; ++v6) {
    for (int cws = -1; cws <= 14; ++cws) {
      for (int bws = -1; bws <= 14; ++bws) {
        for (int ts = 0; ts < 2; ++ts) {
          if (!ts && (cws >= 0 || bws >= 0) && (cws + bws) % 5 != 0) continue;  // no scaling without TS: fewer
          Conn c = v6 ? Conn::v6(++port) : Conn::v4(++port);
          c.client_syn_opts.has_timestamps = c.backend_synack_opts.has_timestamps = ts;
          c.client_syn_opts.has_wscale = cws >= 0;
          c.client_syn_opts.wscale = static_cast<uint8_t>(cws < 0 ? 0 : cws);
          c.backend_synack_opts.has_wscale = bws >= 0;
          c.backend_synack_opts.wscale = static_cast<uint8_t>(bws < 0 ? 0 : bws);
          // Near the wrap on one side or the other, or anywhere.
          c.client_isn = rng() % 3 == 0 ? 0xffffffffu - rng() % 5000 : static_cast<uint32_t>(rng());
          c.backend_isn = rng() % 3 == 0 ? 0xffffffffu - rng() % 5000 : static_cast<uint32_t>(rng());
          c.backend_ts = rng() % 2 ? 0xffffffffu - rng() % 1000 : static_cast<uint32_t>(rng());
          c.backend_synack_opts.tsval = c.backend_ts;
          establish(c);
          ASSERT_NE(c.cookie_isn, 0u);
          hand_over(*good_, c);
          for (int n = 0; n < 24; ++n) {
            const bool to_server = n % 2 == 0;
            const size_t sacks = ts ? rng() % 4 : rng() % 5;
            Bytes ip = segment(c, to_server, rng, sacks, ts);
            const Layout layout = static_cast<Layout>(n / 2 % static_cast<int>(Layout::Count));
            if (!relayout(ip, layout)) continue;
            ParseResult r = parse_tcp_packet(ip);
            if (r.packet.options().ts_offset % 2) ++odd;
            if (r.packet.window() == 0) ++zero;
            if (sacks) ++sacked;
            if (r.packet.seq() < 0x10000 || r.packet.ack() < 0x10000) ++wrapped;
            std::string why;
            if (!agree(*good_, ip, std::string(v6 ? "v6" : "v4") + " cws " + std::to_string(cws) + " bws " +
                                       std::to_string(bws) + " ts " + std::to_string(ts) + " layout " +
                                       std::to_string(static_cast<int>(layout)) + " seg " + std::to_string(n),
                       &why, n % 4 >= 2)) {
              failures.push_back(why);
            }
            ++compared;
          }
          // The program kept the record (the spec's tracking) and counted what it translated.
          const sg_tc_flow up = entry(*good_, c.c2s);
          EXPECT_TRUE(up.seen & SG_TC_SEEN_RECORD);
          EXPECT_GT(up.packets, 0u);
          EXPECT_NE(up.last_ns, 0u);
          EXPECT_EQ(static_cast<bool>(up.seen & SG_TC_SEEN_TSVAL), static_cast<bool>(ts));
        }
      }
    }
  }
  for (size_t i = 0; i < failures.size() && i < 20; ++i) ADD_FAILURE() << failures[i];
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << compared << " segments differ";
  std::printf("[ tc diff ] %zu segments byte-identical: %zu with odd option offsets, %zu with SACK blocks, "
              "%zu zero windows, %zu with numbers just past 2^32\n",
              compared - failures.size(), odd, sacked, zero, wrapped);
  EXPECT_GT(odd, 100u);
  EXPECT_GT(wrapped, 10u);
}

// The kernel-captured handshakes of the engine's own fixtures are not needed here: the engine
// harness builds the segments Linux would (NOP NOP TS, NOP NOP SACK). These are the packets the
// program must leave to NFQUEUE, untouched and unmarked.
TEST_F(TcDiff, LeavesTheEnginesPacketsAlone) {
  for (int v6 = 0; v6 < 2; ++v6) {
    Conn c = v6 ? Conn::v6(5000) : Conn::v4(5000);
    establish(c);
    hand_over(*good_, c);
    std::mt19937 rng(7);
    Bytes base = segment(c, true, rng, 1, true);
    for (uint8_t flag : {tcp_flag::SYN, tcp_flag::RST}) {
      Bytes b = base;
      ParseResult r = parse_tcp_packet(b);
      b[r.packet.tcp_offset() + 13] |= flag;
      r.packet.recompute_checksum();
      expect_untouched(good_->ingress, b, flag == tcp_flag::SYN ? "SYN" : "RST");
    }
    // Egress: already translated (ingress, the engine's verdict, syngate's own packets).
    expect_untouched(good_->egress, base, "marked at egress", SG_TC_MARK);
    // A malformed option (length running past the header): the engine judges it.
    {
      Bytes b = base;
      ParseResult r = parse_tcp_packet(b);
      b[r.packet.tcp_offset() + 20] = 30;  // kind 30, length 40: past the end
      b[r.packet.tcp_offset() + 21] = 40;
      r.packet.recompute_checksum();
      expect_untouched(good_->ingress, b, "malformed options");
    }
    // A map miss.
    {
      Conn other = v6 ? Conn::v6(5001) : Conn::v4(5001);
      SegmentSpec s{.tuple = other.c2s, .seq = 1, .ack = 2, .flags = tcp_flag::ACK, .window = 10};
      expect_untouched(good_->ingress, test::make(s), "no entry");
    }
    // A believable RST: left to the engine, and from then on the whole flow is.
    {
      Bytes b = base;
      ParseResult r = parse_tcp_packet(b);
      b[r.packet.tcp_offset() + 13] = tcp_flag::RST;
      r.packet.recompute_checksum();
      expect_untouched(good_->ingress, b, "RST");
      EXPECT_TRUE(entry(*good_, c.c2s).closing & SG_TC_SEEN_RST) << "no record yet: believed";
      expect_untouched(good_->ingress, segment(c, false, rng, 0, true), "the server's side after an RST");
      expect_untouched(good_->ingress, base, "the client's side after an RST");
    }
  }
  // IPv4 options: the program does not rewrite behind them.
  Conn c = Conn::v4(5002);
  establish(c);
  hand_over(*good_, c);
  std::mt19937 rng(8);
  Bytes b = segment(c, true, rng, 0, true);
  b.insert(b.begin() + 20, {1, 1, 1, 0});  // NOP NOP NOP END
  b[0] = 0x46;
  b[3] = static_cast<uint8_t>(b[3] + 4);
  expect_untouched(good_->ingress, b, "IPv4 options");
}

// The close in the kernel: FIN segments are translated by the program both ways, byte-identical to
// the engine, and recorded (fin_seq, the ack of the other's FIN) for the engine's merge; after a
// FIN the server's segments stay in tc, the client's go to the engine once the client has sent its
// own FIN. Both orders of close, IPv4 and IPv6, with data before the FINs. A blind FIN (outside
// the receiver's window) is translated, the endpoint judges it, but records nothing.
TEST_F(TcDiff, FinsAreTranslatedAndTheClientsSegmentsAfterItsFinGoToTheEngine) {
  const std::vector<uint8_t> data(200, 'f');
  size_t checked = 0;
  for (int v6 = 0; v6 < 2; ++v6) {
    for (int server_first = 0; server_first < 2; ++server_first) {
      Conn c = v6 ? Conn::v6(static_cast<uint16_t>(5100 + server_first))
                  : Conn::v4(static_cast<uint16_t>(5200 + server_first));
      establish(c);
      hand_over(*good_, c);
      const std::string name = std::string(v6 ? "v6" : "v4") + (server_first ? " server first: " : " client first: ");
      const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;  // first seq each way
      auto to_server = [&](uint32_t seq, uint32_t ack, uint8_t flags, size_t len) {
        SegmentSpec s{.tuple = c.c2s, .seq = seq, .ack = ack, .flags = flags, .window = c.client_window,
                      .options = c.client_ts_opts(5000 + static_cast<uint32_t>(checked)),
                      .payload = std::span<const uint8_t>(data.data(), len)};
        return test::make(s);
      };
      auto to_client = [&](uint32_t seq, uint32_t ack, uint8_t flags, size_t len) {
        SegmentSpec s{.tuple = c.c2s.reversed(), .seq = seq, .ack = ack, .flags = flags, .window = c.backend_window,
                      .options = c.client_ts_opts(0), .payload = std::span<const uint8_t>(data.data(), len)};
        s.options.tsval = c.backend_ts + 10 + static_cast<uint32_t>(checked);
        s.options.tsecr = 5000;
        return test::make(s);
      };
      auto same = [&](const Bytes& ip, const std::string& what, bool egress = false) {
        std::string why;
        EXPECT_TRUE(agree(*good_, ip, name + what, &why, egress)) << why;
        ++checked;
      };
      const uint8_t A = tcp_flag::ACK, F = tcp_flag::FIN | tcp_flag::ACK;
      same(to_server(cs, ks, A | tcp_flag::PSH, 100), "the request");
      same(to_client(bs, cs + 100, A | tcp_flag::PSH, 200), "the reply", true);
      // Blind FINs, far outside what either end offered: translated, nothing recorded.
      same(to_server(cs + 100 + 0x40000000u, ks + 200, F, 0), "a blind client FIN");
      same(to_client(bs + 200 + 0x40000000u, cs + 100, F, 0), "a blind server FIN", true);
      // Inside the receiver's window but with an ack the other end never sent: a spray's guess at
      // the sequence number alone (the window is large, so a spray lands in it often).
      same(to_server(cs + 110, ks + 200 + 0x40000000u, F, 0), "an in-window client FIN with a blind ack");
      same(to_client(bs + 210, cs + 100 + 0x40000000u, F, 0), "an in-window server FIN with a blind ack", true);
      EXPECT_EQ(entry(*good_, c.c2s).closing, 0) << name << "a blind FIN is recorded";
      EXPECT_EQ(entry(*good_, c.c2s.reversed()).closing, 0) << name << "a blind FIN is recorded";
      if (server_first) {
        same(to_client(bs + 200, cs + 100, F, 0), "the server's FIN", true);
        const sg_tc_flow down = entry(*good_, c.c2s.reversed());
        EXPECT_TRUE(down.closing & SG_TC_SEEN_FIN) << name;
        EXPECT_EQ(down.fin_seq, bs + 200) << name;
        same(to_server(cs + 100, ks + 201, A, 0), "the client's ack of it (its FIN still to come)");
        EXPECT_TRUE(entry(*good_, c.c2s).seen & SG_TC_SEEN_PEER_FIN_ACKED) << name;
        same(to_client(bs + 201, cs + 100, A | tcp_flag::PSH, 0), "a server segment after its FIN", true);
        same(to_server(cs + 100, ks + 201, F, 0), "the client's FIN");
        const sg_tc_flow up = entry(*good_, c.c2s);
        EXPECT_TRUE(up.closing & SG_TC_SEEN_FIN) << name;
        EXPECT_EQ(up.fin_seq, cs + 100) << name;
        same(to_client(bs + 201, cs + 101, A, 0), "the server's last ACK");
        EXPECT_TRUE(entry(*good_, c.c2s.reversed()).seen & SG_TC_SEEN_PEER_FIN_ACKED) << name;
        expect_untouched(good_->ingress, to_server(cs + 101, ks + 200, A, 0), name + "a client segment after its FIN");
        expect_untouched(good_->ingress, to_server(cs + 101, ks + 201, A, 1), name + "client data after its FIN");
        expect_untouched(good_->ingress, to_server(cs + 100, ks + 201, F, 0), name + "the client's FIN again");
        // Its ack of a retransmitted server FIN has the last ACK's form, and is taken as one.
        same(to_server(cs + 101, ks + 201, A, 0), "the client's ack after its FIN of the server's FIN");
      } else {
        same(to_server(cs + 100, ks + 200, F, 0), "the client's FIN");
        EXPECT_EQ(entry(*good_, c.c2s).fin_seq, cs + 100) << name;
        expect_untouched(good_->ingress, to_server(cs + 101, ks + 200, A, 0), name + "a client segment after its FIN");
        same(to_client(bs + 200, cs + 101, A, 10), "server data after the client's FIN", true);
        same(to_client(bs + 210, cs + 101, F, 0), "the server's FIN");
        EXPECT_TRUE(entry(*good_, c.c2s.reversed()).closing & SG_TC_SEEN_FIN) << name;
        // Of the client's segments after its FIN only its exact last ACK is translated here.
        expect_untouched(good_->ingress, to_server(cs + 101, ks + 211, A, 5), name + "data acking the server's FIN");
        expect_untouched(good_->ingress, to_server(cs + 101, ks + 210, A, 0), name + "an ack short of the server's FIN");
        expect_untouched(good_->ingress, to_server(cs + 102, ks + 211, A, 0), name + "a last ACK past the client's FIN");
        expect_untouched(good_->ingress, to_server(cs + 101, ks + 211, F, 0), name + "a FIN acking the server's FIN");
        expect_untouched(good_->ingress, to_server(cs + 0x12345678u, ks + 0x9abcdefu, A, 0),
                         name + "a new connection's cookie ACK on the pair");
        EXPECT_FALSE(entry(*good_, c.c2s).seen & SG_TC_SEEN_PEER_FIN_ACKED) << name;
        same(to_server(cs + 101, ks + 211, A, 0), "the client's last ACK");
        EXPECT_TRUE(entry(*good_, c.c2s).seen & SG_TC_SEEN_PEER_FIN_ACKED) << name;
        same(to_server(cs + 101, ks + 211, A, 0), "the client's last ACK again (the server's FIN retransmitted)");
      }
      // A believable RST now sends the server's side back too (egress excepted: OUTPUT decided).
      expect_untouched(good_->ingress, to_client(bs + 211, 0, tcp_flag::RST, 0), name + "the server's RST");
      expect_untouched(good_->ingress, to_client(bs + 211, cs + 101, A, 0), name + "a server segment after an RST");
    }
  }
  EXPECT_GE(checked, 30u);
}

// The server's reply and FIN crossed the engine (its entry not yet published), so the program's
// record of the server never started and it cannot take the client's answers: the record keeps the
// first one's ack. The ack of the latest segment is kept apart (last_ack), for the engine to judge
// against the FIN it saw; its FIN is recorded all the same.
TEST_F(TcDiff, TheLatestAckIsKeptWhereTheRecordCannotTakeTheSegment) {
  Conn c = Conn::v4(5300);
  establish(c);
  hand_over(*good_, c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  auto to_server = [&](uint32_t ack, uint8_t flags) {
    return test::make(SegmentSpec{.tuple = c.c2s, .seq = cs, .ack = ack, .flags = flags, .window = 1000});
  };
  EXPECT_TRUE(run_tc(good_->ingress, ethernet(to_server(ks + 50, tcp_flag::ACK))).mark & SG_TC_MARK);
  EXPECT_TRUE(run_tc(good_->ingress, ethernet(to_server(ks + 101, tcp_flag::ACK | tcp_flag::FIN))).mark & SG_TC_MARK);
  const sg_tc_flow up = entry(*good_, c.c2s);
  EXPECT_EQ(up.acked, bs + 50) << "the record took only its first segment";
  EXPECT_TRUE(up.seen & SG_TC_SEEN_LAST_ACK);
  EXPECT_EQ(up.last_ack, bs + 101) << "the latest ack, in the backend's space";
  EXPECT_TRUE(up.closing & SG_TC_SEEN_FIN);
}

// The kernel-captured connections of tests/core/fixtures (Linux's own segments: its option
// layouts, SACK blocks, payloads and checksums), each replayed as a proxied flow: the captured
// handshake's numbers and options open the flow through the engine, then every captured segment
// of the connection, as it was captured, goes through both. FIN and RST stay the engine's.
TEST_F(TcDiff, CapturedConnectionsAreByteIdentical) {
  cfg.services.push_back({*Address::parse("10.77.0.2"), 47001});
  cfg.services.push_back({*Address::parse("fd77::2"), 47001});
  std::map<std::string, std::vector<const syngate::testing::Fixture*>> groups;
  for (const auto& f : syngate::testing::fixtures()) groups[f.name.substr(0, f.name.rfind('_', f.name.rfind('_') - 1))].push_back(&f);
  size_t compared = 0, differ = 0, untouched = 0;
  for (auto& [name, packets] : groups) {
    std::sort(packets.begin(), packets.end(), [](auto* a, auto* b) { return a->name < b->name; });
    // The client -> server tuple, and the handshake when it was captured.
    std::optional<FlowTuple> c2s;
    const syngate::testing::Fixture *syn = nullptr, *synack = nullptr;
    bool ts = false;
    for (auto* f : packets) {
      Bytes b = f->bytes;
      ParseResult r = parse_tcp_packet(b);
      ASSERT_TRUE(r) << f->name;
      if (r.packet.options().has_timestamps) ts = true;
      if (r.packet.dport() == 47001 && !c2s) c2s = r.packet.tuple();
      if (r.packet.sport() == 47001 && !c2s) c2s = r.packet.tuple().reversed();
      if (r.packet.has(tcp_flag::SYN) && !r.packet.has(tcp_flag::ACK)) syn = f;
      if (r.packet.has(tcp_flag::SYN | tcp_flag::ACK)) synack = f;
    }
    if (!c2s) continue;
    Conn c = c2s->src.is_v4() ? Conn::v4() : Conn::v6();
    c.c2s = *c2s;
    c.client_syn_opts.has_timestamps = c.backend_synack_opts.has_timestamps = ts;
    if (syn && synack) {
      Bytes a = syn->bytes, b = synack->bytes;
      const ParseResult rs = parse_tcp_packet(a), ra = parse_tcp_packet(b);
      c.client_isn = rs.packet.seq();
      c.client_syn_opts = rs.packet.options();
      c.client_ts = c.client_syn_opts.tsval;
      c.backend_isn = ra.packet.seq();
      c.backend_synack_opts = ra.packet.options();
      c.backend_ts = c.backend_synack_opts.tsval;
    }
    sink.clear();
    establish(c);
    hand_over(*good_, c);
    std::vector<const syngate::testing::Fixture*> closing;
    for (auto* f : packets) {
      if (f == syn || f == synack) continue;
      Bytes ip = f->bytes;
      ParseResult r = parse_tcp_packet(ip);
      if (r.packet.tuple() != c.c2s && r.packet.tuple() != c.c2s.reversed()) continue;
      if (r.packet.flags() & (tcp_flag::RST | tcp_flag::SYN)) {
        closing.push_back(f);
        continue;
      }
      if (f->name.find("_03_ack") != std::string::npos && syn) continue;  // the handshake's ACK
      // The client's segments after its FIN are the engine's (FINs themselves are translated), but
      // for its exact last ACK (of the server's recorded FIN).
      if (r.packet.tuple() == c.c2s && (entry(*good_, c.c2s).closing & SG_TC_SEEN_FIN) &&
          !client_last_ack(r.packet, entry(*good_, c.c2s), entry(*good_, c.c2s.reversed()))) {
        expect_untouched(good_->ingress, f->bytes, f->name + " (after the client's FIN)");
        ++untouched;
        continue;
      }
      std::string why;
      if (!agree(*good_, ip, f->name, &why, compared % 2 == 1)) {
        ADD_FAILURE() << why;
        ++differ;
      }
      ++compared;
    }
    for (auto* f : closing) {
      expect_untouched(good_->ingress, f->bytes, f->name);
      ++untouched;
    }
  }
  std::printf("[ tc diff ] captured: %zu of %zu segments byte-identical, %zu RST/SYN/after the client's FIN left alone\n",
              compared - differ, compared, untouched);
  EXPECT_GT(compared, 20u);
}

// What the program costs per packet (BPF_PROG_TEST_RUN, the mean of 2000 runs each; printed, not
// asserted: speed belongs in the lab). The map entry stays the same, so these are warm lookups.
TEST_F(TcDiff, CostPerPacket) {
  Conn c = Conn::v4(7000);
  establish(c);
  hand_over(*good_, c);
  auto cost = [&](const Bytes& ip, const char* what) {
    const Bytes frame = ethernet(ip);
    Bytes out(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<uint32_t>(frame.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.repeat = 2000;
    ASSERT_EQ(bpf_prog_test_run_opts(good_->ingress, &opts), 0);
    std::printf("[ tc cost ] %-44s %u ns per packet\n", what, opts.duration);
  };
  Bytes arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06};
  arp.resize(46, 0);
  {
    const Bytes frame = arp;
    Bytes out(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<uint32_t>(frame.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.repeat = 2000;
    ASSERT_EQ(bpf_prog_test_run_opts(good_->ingress, &opts), 0);
    std::printf("[ tc cost ] %-44s %u ns per packet\n", "not IP (the floor of a run)", opts.duration);
  }
  static const std::vector<uint8_t> payload(1448, 'x');
  TcpOptions ts;
  ts.has_timestamps = true;
  ts.tsval = 5;
  ts.tsecr = c.synack_tsval;
  SegmentSpec data{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                   .flags = tcp_flag::ACK, .window = 500, .options = ts, .payload = payload};
  cost(test::make(data), "server 1500-byte segment with TS");
  TcpOptions sack = ts;
  sack.sack_count = 3;
  for (size_t i = 0; i < 3; ++i) sack.sack[i] = {c.cookie_isn + 1000 * static_cast<uint32_t>(i + 1), c.cookie_isn + 1000 * static_cast<uint32_t>(i + 1) + 500};
  SegmentSpec ack{.tuple = c.c2s, .seq = c.client_isn + 1, .ack = c.cookie_isn + 1, .flags = tcp_flag::ACK,
                  .window = 500, .options = sack};
  Bytes a = test::make(ack);
  cost(a, "client pure ACK with TS and 3 SACK blocks");
  ASSERT_TRUE(relayout(a, Layout::OddNop));
  cost(a, "the same, odd layout (walked)");
}

// The same comparison against a build with one field translated wrong (the server's sequence
// number off by one in both directions, its checksum kept right): the differential test must see it.
TEST_F(TcDiff, CatchesADeliberatelyBrokenField) {
  ASSERT_TRUE(broken_ && broken_->ok()) << broken_->error;
  std::mt19937 rng(99);
  size_t differ = 0, compared = 0;
  for (int v6 = 0; v6 < 2; ++v6) {
    Conn c = v6 ? Conn::v6(6000) : Conn::v4(6000);
    establish(c);
    hand_over(*broken_, c);
    for (int n = 0; n < 20; ++n) {
      Bytes ip = segment(c, n % 2 == 1, rng, 0, true);
      ++compared;
      if (!agree(*broken_, ip, "broken", nullptr)) ++differ;
    }
  }
  std::printf("[ tc diff ] broken build: %zu of %zu segments differ\n", differ, compared);
  EXPECT_EQ(differ, compared) << "every segment carries the broken sequence number";
}

// Host mode's OUTPUT match (bpf/syngate_tc_match.bpf.c), loaded on the same flow map: it lets past
// the queue only what tc egress then translates (else a reply would leave untranslated), and every
// server segment egress translates on an open flow (else it crosses the queue for nothing); never a
// client segment. Segments of every layout, FIN/RST/SYN, IPv4 options, malformed options, IPv6,
// and flows that started closing (the match queues; egress, which comes after it, still translates).
// Entries written by a run with no egress filter (both mode, no service on its host) are never
// taken: the reply would leave untranslated.
TEST_F(TcDiff, OutputMatchAgreesWithEgress) {
  libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
  syngate_tc_match* m = syngate_tc_match__open();
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(bpf_map__reuse_fd(m->maps.sg_tc_flows, good_->flows), 0);
  ASSERT_EQ(syngate_tc_match__load(m), 0) << "the match does not load";
  const int match = bpf_program__fd(m->progs.sg_tc_match);
  auto run_match = [&](const Bytes& ip) {
    Bytes frame = ethernet(ip);
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<uint32_t>(frame.size());
    opts.repeat = 1;
    EXPECT_EQ(bpf_prog_test_run_opts(match, &opts), 0) << std::strerror(errno);
    return opts.retval;
  };
  std::mt19937 rng(4242);
  size_t yes = 0, no = 0, closing_checked = 0, without_egress = 0;
  for (int v6 = 0; v6 < 2; ++v6) {
    for (int k = 0; k < 6; ++k) {
      Conn c = v6 ? Conn::v6(static_cast<uint16_t>(7000 + k)) : Conn::v4(static_cast<uint16_t>(7100 + k));
      const bool ts = k % 3 != 2;
      c.client_syn_opts.has_timestamps = c.backend_synack_opts.has_timestamps = ts;
      c.client_isn = static_cast<uint32_t>(rng());
      c.backend_isn = static_cast<uint32_t>(rng());
      establish(c);
      for (int n = 0; n < 96; ++n) {
        hand_over(*good_, c, true);  // fresh entries: a FIN below must not close the next segment's flow
        const bool to_server = n % 2 == 0;
        Bytes ip = segment(c, to_server, rng, ts ? rng() % 4 : rng() % 5, ts);
        if (!relayout(ip, static_cast<Layout>(n / 2 % static_cast<int>(Layout::Count)))) continue;
        ParseResult r = parse_tcp_packet(ip);
        const int variant = n / 10 % 6;  // 0, 1: as is; 2: FIN or RST or SYN; 3: IPv4 options; 4: bad options; 5: closing
        if (variant == 2) {
          ip[r.packet.tcp_offset() + 13] |= std::array<uint8_t, 3>{tcp_flag::FIN, tcp_flag::RST, tcp_flag::SYN}[n % 3];
          r.packet.recompute_checksum();
        } else if (variant == 3 && !v6) {
          ip.insert(ip.begin() + 20, {1, 1, 1, 0});
          ip[0] = 0x46;
          ip[3] = static_cast<uint8_t>(ip[3] + 4);
          ip[10] = ip[11] = 0;  // the IP checksum is nobody's concern here
        } else if (variant == 4 && r.packet.tcp_header_len() > 20) {
          ip[r.packet.tcp_offset() + 20] = 30;
          ip[r.packet.tcp_offset() + 21] = 40;
          r.packet.recompute_checksum();
        } else if (variant == 5) {
          // The client's FIN crossed tc ingress (the server's replies stay in tc), or an RST did,
          // or the engine punted the flow (both ways go to the queue).
          sg_tc_flow up = entry(*good_, c.c2s);
          up.closing |= std::array<uint8_t, 3>{SG_TC_SEEN_FIN, SG_TC_SEEN_RST, SG_TC_CLOSED_BY_ENGINE}[n / 2 % 3];
          const sg_tc_flow_key ku = key_of(c.c2s);
          ASSERT_EQ(bpf_map_update_elem(good_->flows, &ku, &up, BPF_EXIST), 0);
        }
        const std::string what = std::string(v6 ? "v6" : "v4") + " conn " + std::to_string(k) + " seg " +
                                 std::to_string(n) + " variant " + std::to_string(variant) +
                                 (to_server ? " to server" : " to client");
        const uint32_t said = run_match(ip);
        const bool translated = run_tc(good_->egress, ethernet(ip)).mark & SG_TC_MARK;
        (said ? yes : no)++;
        if (said) {
          // The same entries as a run without an egress filter writes them.
          sg_tc_flow down = entry(*good_, c.c2s.reversed());
          down.options &= static_cast<uint8_t>(~SG_TC_OPT_EGRESS);
          const sg_tc_flow_key kd = key_of(c.c2s.reversed());
          ASSERT_EQ(bpf_map_update_elem(good_->flows, &kd, &down, BPF_EXIST), 0);
          EXPECT_EQ(run_match(ip), 0u) << what << ": let past the queue by a run with no egress filter";
          ++without_egress;
        }
        if (said) {
          EXPECT_TRUE(translated) << what << ": let past the queue, and tc egress left it untranslated";
        }
        if (to_server) {
          EXPECT_EQ(said, 0u) << what << ": a client segment";
        }
        const bool punted_both = variant == 5 && n / 2 % 3 != 0;
        if (!to_server && !punted_both) {
          EXPECT_EQ(said != 0, translated) << what;
        }
        if (!to_server && punted_both) {
          EXPECT_EQ(said, 0u) << what << ": a closing flow's reply goes to the engine";
          EXPECT_TRUE(translated) << what << ": egress translates what OUTPUT already let through";
          ++closing_checked;
        }
      }
    }
  }
  syngate_tc_match__destroy(m);
  std::printf("[ tc match ] %zu segments let past the queue, %zu queued, %zu of closing flows\n", yes, no,
              closing_checked);
  EXPECT_GT(yes, 100u);
  EXPECT_GT(no, 300u);
  EXPECT_GT(closing_checked, 10u);
  EXPECT_EQ(without_egress, yes);
}

// The verifier accepts both sections as built, in each placement the daemon loads them with
// (host; router and both modes, forwarding off and on: the rodata settings prune differently),
// loaded through the skeleton as the daemon does; what it cost is printed (not asserted).
TEST(TcProgram, VerifierAcceptsIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF_PROG_LOAD";
  struct Placement {
    const char* name;
    bool router, forward;
  };
  for (const Placement& at : {Placement{"host", false, false}, Placement{"router", true, false},
                              Placement{"router, forwarding", true, true}}) {
    syngate_tc* skel = syngate_tc__open();
    ASSERT_NE(skel, nullptr);
    skel->rodata->sg_tc_router = at.router;
    skel->rodata->sg_tc_forward = at.forward;
    static char in_log[1 << 16], out_log[1 << 16];
    in_log[0] = out_log[0] = 0;
    bpf_program__set_log_buf(skel->progs.sg_tc_ingress, in_log, sizeof in_log);
    bpf_program__set_log_level(skel->progs.sg_tc_ingress, 4);  // statistics only
    bpf_program__set_log_buf(skel->progs.sg_tc_egress, out_log, sizeof out_log);
    bpf_program__set_log_level(skel->progs.sg_tc_egress, 4);
    const int err = syngate_tc__load(skel);
    EXPECT_EQ(err, 0) << at.name << ": " << in_log << out_log;
    if (err == 0) {
      auto stats = [](const char* log) {
        const char* p = std::strstr(log, "processed ");
        return p ? std::string(p, std::strcspn(p, "\n")) : std::string("(no statistics)");
      };
      std::printf("[ tc verifier ] %s: ingress: %s\n[ tc verifier ] %s: egress: %s\n", at.name,
                  stats(in_log).c_str(), at.name, stats(out_log).c_str());
    }
    syngate_tc__destroy(skel);
  }
}

}  // namespace
}  // namespace syngate
