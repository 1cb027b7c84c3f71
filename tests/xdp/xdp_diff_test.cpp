// The fast path against the C++ engine, packet by packet, in each of its hooks (the XDP entry and
// the tc entry, one instantiation each): the kernel runs the real BPF object
// (BPF_PROG_TEST_RUN) and a fresh Engine processes the same IP packet at the same instant. The tc
// entry's verdicts are read as XDP's (redirect as XDP_TX, shot as XDP_DROP, next as XDP_PASS). A SYN
// the program answers must get a byte-identical SYN-ACK from the engine; a packet it drops must
// be dropped by the engine too (and create no flow); an ACK it passes as a valid cookie must make
// the engine create a flow. XDP_PASS otherwise leaves the decision to the engine, as in the
// daemon. Inputs: the kernel-captured fixtures of tests/core/fixtures, then random well-formed
// and malformed packets from fixed seeds.
//
// Needs root (or CAP_BPF + CAP_NET_ADMIN) and a kernel with BPF: skipped, saying so, otherwise.
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <sched.h>

#include <algorithm>
#include <functional>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "syngate_test/packet_fixtures.hpp"
#include "syngate/engine.hpp"
#include "syngate/packet.hpp"
#include "syngate/syn_decision.hpp"
#include "syngate/bpf/flow_key.hpp"
#include "syngate/bpf/tc_abi.h"
#include "syngate/bpf/xdp_abi.h"
#include "fast_path.hpp"

namespace syngate {
namespace {

using testing::fixtures;

constexpr uint8_t kClientMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr uint8_t kGatewayMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};

struct Capture : PacketSink {
  std::vector<std::vector<uint8_t>> sent;
  void send(std::span<const uint8_t> p) override { sent.emplace_back(p.begin(), p.end()); }
};

struct XdpResult {
  uint32_t action = 0;
  std::vector<uint8_t> frame;
  xdp::Counters delta{};
};

struct EngineResult {
  Decision decision;
  std::vector<std::vector<uint8_t>> sent;
  EngineCounters counters;
};

Address addr(const char* text) { return *Address::parse(text); }

std::vector<uint8_t> ethernet(const std::vector<uint8_t>& ip, size_t padding, std::mt19937_64* rng) {
  std::vector<uint8_t> f(kGatewayMac, kGatewayMac + 6);
  f.insert(f.end(), kClientMac, kClientMac + 6);
  const bool v6 = !ip.empty() && (ip[0] >> 4) == 6;
  f.push_back(v6 ? 0x86 : 0x08);
  f.push_back(v6 ? 0xdd : 0x00);
  f.insert(f.end(), ip.begin(), ip.end());
  while (f.size() < 60) f.push_back(0);  // Ethernet minimum frame: short packets arrive padded
  for (size_t i = 0; i < padding; ++i) f.push_back(rng ? static_cast<uint8_t>((*rng)()) : 0);
  return f;
}

// Which entry of the object a test runs.
enum class Hook { Xdp, Tc };

// The tc entry's return as the XDP action it stands for; anything else stays as it is (and
// fails every comparison).
uint32_t as_xdp_action(Hook hook, int32_t retval) {
  if (hook == Hook::Xdp) return static_cast<uint32_t>(retval);
  switch (retval) {
    case TC_ACT_REDIRECT: return XDP_TX;
    case TC_ACT_SHOT: return XDP_DROP;
    case TC_ACT_UNSPEC: return XDP_PASS;
    default: return 0x1000u + static_cast<uint32_t>(retval);
  }
}

class XdpDiff : public ::testing::TestWithParam<Hook> {
 protected:
  static void SetUpTestSuite() {
    if (!xdp::available()) return;
    if (geteuid() != 0) return;
    try {
      program_ = new xdp::Program(4096);
    } catch (const std::exception& e) {
      load_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete program_;
    program_ = nullptr;
  }

  void SetUp() override {
    if (!xdp::available()) GTEST_SKIP() << "built without the XDP program (clang, bpftool or libbpf-dev missing)";
    if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF_PROG_LOAD and BPF_PROG_TEST_RUN";
    // A verifier refusal is a failure, not a skip: only a kernel without BPF may skip.
    if (!program_) {
      if (load_error_.find("Operation not permitted") != std::string::npos ||
          load_error_.find("Function not implemented") != std::string::npos) {
        GTEST_SKIP() << "BPF unavailable here: " << load_error_;
      }
      FAIL() << load_error_;
    }
    config_.services = {{addr("10.77.0.2"), 47001}, {addr("fd77::2"), 47001}};
    // No budget unless a test sets one: every comparison uses a fresh engine, whose budget
    // starts full, while the program's budget cells carry over from packet to packet.
    set_policy([](SourcePolicy& p) {
      p.synack_per_prefix_per_s = 0;
      p.synack_per_address_per_s = 0;
    });
    program_->forget_proven_sources();  // earlier tests' cookie ACKs proved sources
    config_.max_flows = 64;
    config_.early_data_slots = 4;
    secrets_ = {key(1), key(2), 0};
    // A clock far from zero: counter and TSval wrap-free. The two hooks share one loaded object,
    // whose budget cells count per second: the tc runs are 1000 s later, in seconds of their own.
    now_ns_ = 1'800'000'000'000'000'000ull + (GetParam() == Hook::Tc ? 1'000'000'000'000ull : 0);
    apply();
  }

  static CookieKey key(uint64_t seed) {
    std::mt19937_64 rng(seed);
    CookieKey k{};
    for (auto& b : k) b = static_cast<uint8_t>(rng());
    return k;
  }

  void set_policy(const std::function<void(SourcePolicy&)>& edit) {
    auto p = std::make_shared<SourcePolicy>();
    edit(*p);
    config_.policy = p;
  }

  // The program gets what the engine has; the budget is the whole per-prefix budget on one CPU
  // (the tests pin themselves where it matters).
  void apply(bool drop_no_flow = true) {
    xdp::Settings s = xdp::settings_from(config_, drop_no_flow, 1);
    s.fixed_now_ns = now_ns_;
    s.budget_key = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    program_->configure(s, true);
    program_->set_secrets(secrets_, max_age_);
    program_->set_services(config_.services);
    program_->set_prefixes(config_.policy->prefixes);
  }

  static int program_fd() {
    return GetParam() == Hook::Xdp ? program_->program_fd() : program_->tc_program_fd();
  }

  XdpResult run_xdp(const std::vector<uint8_t>& frame) {
    XdpResult r;
    const xdp::Counters before = program_->counters();
    std::vector<uint8_t> out(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<uint32_t>(frame.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.repeat = 1;
    const int rc = bpf_prog_test_run_opts(program_fd(), &opts);
    EXPECT_EQ(rc, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(errno);
    r.action = as_xdp_action(GetParam(), static_cast<int32_t>(opts.retval));
    out.resize(opts.data_size_out);
    r.frame = std::move(out);
    const xdp::Counters after = program_->counters();
    for (size_t i = 0; i < after.size(); ++i) r.delta[i] = after[i] - before[i];
    return r;
  }

  EngineResult run_engine(std::vector<uint8_t> ip) {
    Engine engine(config_, CookieJar(secrets_, max_age_));
    Capture sink;
    EngineResult r;
    r.decision = engine.process(ip, now_ns_, sink);
    r.sent = std::move(sink.sent);
    r.counters = engine.counters();
    return r;
  }

  // Runs both and checks the agreement rules. Returns the XDP action.
  uint32_t compare(const std::vector<uint8_t>& ip, const std::string& what, size_t padding = 0,
                   std::mt19937_64* rng = nullptr) {
    const std::vector<uint8_t> frame = ethernet(ip, padding, rng);
    const XdpResult x = run_xdp(frame);
    const EngineResult e = run_engine(as_the_ip_layer_passes_it(frame));
    SCOPED_TRACE(what);
    switch (x.action) {
      case XDP_TX: {
        EXPECT_EQ(x.delta[SG_XDP_SYN_ANSWERED], 1u);
        EXPECT_EQ(e.counters.cookies_sent, 1u) << "XDP answered a SYN the engine did not: " << hex(ip);
        if (e.sent.size() != 1 || x.frame.size() < 14) {
          ADD_FAILURE() << "engine sent " << e.sent.size() << " packets";
          break;
        }
        EXPECT_TRUE(std::equal(kClientMac, kClientMac + 6, x.frame.begin())) << "destination MAC";
        EXPECT_TRUE(std::equal(kGatewayMac, kGatewayMac + 6, x.frame.begin() + 6)) << "source MAC";
        const std::vector<uint8_t> xdp_ip(x.frame.begin() + 14, x.frame.end());
        EXPECT_EQ(hex(xdp_ip), hex(e.sent[0])) << "SYN-ACKs differ (XDP first, engine second)";
        ++answered_;
        break;
      }
      case XDP_DROP:
        EXPECT_EQ(e.decision.verdict, Verdict::Drop) << "XDP dropped what the engine accepts";
        EXPECT_TRUE(e.sent.empty()) << "XDP dropped what the engine answers";
        EXPECT_EQ(e.counters.flows_created, 0u) << "XDP dropped an ACK the engine takes";
        ++dropped_;
        break;
      case XDP_PASS:
        EXPECT_EQ(x.frame, frame) << "a passed frame must be unchanged";
        if (x.delta[SG_XDP_COOKIE_VALID]) {
          EXPECT_EQ(e.counters.cookies_valid, 1u) << "XDP passed a cookie the engine rejects";
        }
        ++passed_;
        break;
      default:
        ADD_FAILURE() << "unexpected XDP action " << x.action;
    }
    last_delta_ = x.delta;
    last_engine_ = e.counters;
    return x.action;
  }

  // The engine gets what the kernel's IP layer hands to netfilter: the frame after Ethernet,
  // trimmed to the IP length (link padding removed). A frame shorter than its IP length never
  // reaches NFQUEUE (ip_rcv drops it); the engine then sees the short packet and must refuse it.
  static std::vector<uint8_t> as_the_ip_layer_passes_it(const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> ip(frame.begin() + 14, frame.end());
    size_t total = ip.size();
    if (ip.size() >= 4 && (ip[0] >> 4) == 4) total = size_t{ip[2]} << 8 | ip[3];
    if (ip.size() >= 6 && (ip[0] >> 4) == 6) total = 40 + (size_t{ip[4]} << 8 | ip[5]);
    if (total <= ip.size()) ip.resize(total);
    return ip;
  }

  static std::string hex(const std::vector<uint8_t>& b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < b.size(); ++i) {
      if (i && i % 4 == 0) s += ' ';
      s += d[b[i] >> 4];
      s += d[b[i] & 15];
    }
    return s;
  }

  static inline xdp::Program* program_ = nullptr;
  static inline std::string load_error_;
  EngineConfig config_;
  CookieSecrets secrets_;
  uint32_t max_age_ = 1;
  uint64_t now_ns_ = 0;
  xdp::Counters last_delta_{};
  EngineCounters last_engine_{};
  int answered_ = 0, dropped_ = 0, passed_ = 0;
};

// ---- random packets -------------------------------------------------------------------------

// A realistic or odd option list: the options a SYN may carry in random order, with NOPs,
// unknown kinds, an END and trailing bytes, padded to a multiple of 4 and at most 40 bytes.
std::vector<uint8_t> random_options(std::mt19937_64& rng) {
  std::vector<std::vector<uint8_t>> parts;
  auto u = [&](unsigned n) { return static_cast<unsigned>(rng() % n); };
  if (u(4)) {
    const uint16_t mss = u(3) ? static_cast<uint16_t>(rng()) : static_cast<uint16_t>(1200 + u(300));
    parts.push_back({2, 4, static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)});
  }
  if (u(2)) parts.push_back({3, 3, static_cast<uint8_t>(u(20))});
  if (u(2)) parts.push_back({4, 2});
  if (u(3)) {
    std::vector<uint8_t> ts = {8, 10};
    for (int i = 0; i < 8; ++i) ts.push_back(static_cast<uint8_t>(rng()));
    parts.push_back(ts);
  }
  if (!u(4)) parts.push_back({1});
  if (!u(6)) parts.push_back({static_cast<uint8_t>(30 + u(200)), 2});
  if (!u(8)) {
    std::vector<uint8_t> sack = {5, 10};
    for (int i = 0; i < 8; ++i) sack.push_back(static_cast<uint8_t>(rng()));
    parts.push_back(sack);
  }
  std::shuffle(parts.begin(), parts.end(), rng);
  std::vector<uint8_t> out;
  for (const auto& p : parts) {
    if (out.size() + p.size() > 40) continue;
    out.insert(out.end(), p.begin(), p.end());
  }
  if (!u(5) && out.size() < 40) {
    out.push_back(0);  // END, then whatever: ignored
    while (out.size() % 4 != 0) out.push_back(static_cast<uint8_t>(rng()));
  }
  while (out.size() % 4 != 0) out.push_back(1);
  return out;
}

struct Segment {
  bool v6 = false;
  std::array<uint8_t, 16> src{}, dst{};
  uint16_t sport = 0, dport = 47001;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = tcp_flag::SYN;
  uint16_t window = 64240;
  uint8_t ttl = 64;
  uint8_t tos = 0;
  std::vector<uint8_t> options;
  std::vector<uint8_t> payload;
  std::vector<uint8_t> ip_options;  // IPv4 only
  bool hop_by_hop = false;          // IPv6 only: an 8-byte hop-by-hop header (PadN) before TCP
  uint16_t frag = 0x4000;           // IPv4 flags+offset field
};

std::vector<uint8_t> build(const Segment& s) {
  std::vector<uint8_t> p;
  const size_t tcp_len = 20 + s.options.size() + s.payload.size();
  if (s.v6) {
    const size_t payload = tcp_len + (s.hop_by_hop ? 8 : 0);
    p = {0x60, 0, 0, 0, static_cast<uint8_t>(payload >> 8), static_cast<uint8_t>(payload),
         static_cast<uint8_t>(s.hop_by_hop ? 0 : 6), s.ttl};
    p.insert(p.end(), s.src.begin(), s.src.end());
    p.insert(p.end(), s.dst.begin(), s.dst.end());
    if (s.hop_by_hop) p.insert(p.end(), {6, 0, 1, 4, 0, 0, 0, 0});  // next TCP, 8 bytes, PadN of 4
  } else {
    const size_t ihl = 20 + s.ip_options.size();
    const size_t total = ihl + tcp_len;
    p = {static_cast<uint8_t>(0x40 | ihl / 4), s.tos, static_cast<uint8_t>(total >> 8), static_cast<uint8_t>(total),
         0x12, 0x34, static_cast<uint8_t>(s.frag >> 8), static_cast<uint8_t>(s.frag), s.ttl, 6, 0, 0};
    p.insert(p.end(), s.src.begin() + 12, s.src.end());
    p.insert(p.end(), s.dst.begin() + 12, s.dst.end());
    p.insert(p.end(), s.ip_options.begin(), s.ip_options.end());
  }
  const size_t doff = (20 + s.options.size()) / 4;
  const uint8_t th[20] = {static_cast<uint8_t>(s.sport >> 8), static_cast<uint8_t>(s.sport),
                          static_cast<uint8_t>(s.dport >> 8), static_cast<uint8_t>(s.dport),
                          static_cast<uint8_t>(s.seq >> 24), static_cast<uint8_t>(s.seq >> 16),
                          static_cast<uint8_t>(s.seq >> 8), static_cast<uint8_t>(s.seq),
                          static_cast<uint8_t>(s.ack >> 24), static_cast<uint8_t>(s.ack >> 16),
                          static_cast<uint8_t>(s.ack >> 8), static_cast<uint8_t>(s.ack),
                          static_cast<uint8_t>(doff << 4), s.flags,
                          static_cast<uint8_t>(s.window >> 8), static_cast<uint8_t>(s.window),
                          0xab, 0xcd, 0, 0};  // checksums are not what either side checks
  p.insert(p.end(), th, th + 20);
  p.insert(p.end(), s.options.begin(), s.options.end());
  p.insert(p.end(), s.payload.begin(), s.payload.end());
  return p;
}

Segment random_syn(std::mt19937_64& rng) {
  Segment s;
  s.v6 = rng() & 1;
  if (s.v6) {
    s.src = addr("2001:2::1").bytes;
    for (int i = 8; i < 16; ++i) s.src[i] = static_cast<uint8_t>(rng());
    s.dst = addr("fd77::2").bytes;
  } else {
    s.src = addr("198.18.0.0").bytes;
    s.src[14] = static_cast<uint8_t>(rng() & 1);
    s.src[14] |= static_cast<uint8_t>(rng() & 0xfe);
    s.src[13] = static_cast<uint8_t>(18 + (rng() & 1));
    s.src[15] = static_cast<uint8_t>(rng());
    s.dst = addr("10.77.0.2").bytes;
  }
  s.sport = static_cast<uint16_t>(1024 + rng() % 64000);
  s.seq = static_cast<uint32_t>(rng());
  s.ack = (rng() % 4 == 0) ? static_cast<uint32_t>(rng()) : 0;  // a SYN's ack field is ignored
  s.flags = tcp_flag::SYN;
  if (rng() % 3 == 0) s.flags |= tcp_flag::ECE | tcp_flag::CWR;
  if (rng() % 8 == 0) s.flags |= tcp_flag::PSH;
  if (rng() % 8 == 0) s.flags |= tcp_flag::URG;
  s.window = static_cast<uint16_t>(rng());
  s.ttl = static_cast<uint8_t>(1 + rng() % 255);
  s.tos = (rng() % 4 == 0) ? static_cast<uint8_t>(rng()) : 0;
  s.options = random_options(rng);
  if (rng() % 10 == 0) s.payload.resize(rng() % 200, 0x5a);  // a SYN with data (TFO-like)
  return s;
}

TEST_P(XdpDiff, KernelCapturedFixturesGetTheEnginesAnswer) {
  int syns = 0;
  for (const auto& f : fixtures()) {
    compare(f.bytes, f.name);
    if (f.name.find("_syn") != std::string::npos && f.at("dport") == "47001" && f.at("flags") == "SYN") {
      EXPECT_EQ(last_delta_[SG_XDP_SYN_ANSWERED], 1u) << f.name << " not answered in XDP";
      ++syns;
    }
  }
  EXPECT_GE(syns, 6);
  EXPECT_GT(dropped_, 0);  // the captures' later segments have no flow here
}

TEST_P(XdpDiff, FixturesWithEcnAnnouncedAndOtherSettings) {
  config_.announce_ecn = true;
  config_.synack_window = 0;  // the client waits for the backend (SYNPROXY's way), in both
  config_.announced_wscale = 14;
  config_.announced_mss_v4 = 1400;
  config_.announced_mss_v6 = 1380;
  apply();
  for (const auto& f : fixtures()) compare(f.bytes, f.name);
  EXPECT_GT(answered_, 0);
}

TEST_P(XdpDiff, RandomSynsAreAnsweredByteForByteAsTheEngineDoes) {
  std::mt19937_64 rng(15);
  for (int i = 0; i < 3000; ++i) {
    if (i % 500 == 0) {
      now_ns_ = rng() >> 2;
      config_.announce_ecn = rng() & 1;
      config_.synack_window = static_cast<uint16_t>(rng());
      apply();
    }
    const Segment s = random_syn(rng);
    const size_t padding = rng() % 4 == 0 ? rng() % 64 : 0;
    const uint32_t action = compare(build(s), "random SYN " + std::to_string(i), padding, &rng);
    ASSERT_EQ(action, static_cast<uint32_t>(XDP_TX)) << "a well-formed SYN to a service must be answered in XDP";
  }
  EXPECT_EQ(answered_, 3000);
}

// A service whose backend answered without SACK: neither path promises it (sg_promise_sack), the
// other service still is. The engine reads the shared facts, the program its service map.
TEST_P(XdpDiff, ABackendWithoutSackIsPromisedSackByNeither) {
  config_.backend_facts = std::make_shared<BackendFacts>();
  const Service v4 = config_.services[0];
  const uint32_t now_ms = static_cast<uint32_t>(now_ns_ / 1000000);
  config_.backend_facts->backend_answered(v4, false, now_ms);
  ASSERT_TRUE(program_->set_service_flags(
      v4, static_cast<uint8_t>(SG_SERVICE_PROTECTED | config_.backend_facts->service_flags(v4, now_ms))));
  std::mt19937_64 rng(77);
  int promised[2] = {0, 0};
  for (int i = 0; i < 600; ++i) {
    const Segment s = random_syn(rng);
    const std::vector<uint8_t> ip = build(s);
    ASSERT_EQ(compare(ip, "random SYN " + std::to_string(i)), static_cast<uint32_t>(XDP_TX));
    const XdpResult x = run_xdp(ethernet(ip, 0, nullptr));
    std::vector<uint8_t> answer(x.frame.begin() + 14, x.frame.end());
    const ParseResult r = parse_tcp_packet(answer);
    ASSERT_TRUE(r);
    promised[s.v6] += r.packet.options().sack_permitted;
  }
  EXPECT_EQ(promised[0], 0) << "the IPv4 service's backend lacks SACK";
  EXPECT_GT(promised[1], 0) << "the IPv6 service's backend is not known to lack it";
}

TEST_P(XdpDiff, MalformedAndOddSynsGetTheSameVerdict) {
  std::mt19937_64 rng(1515);
  int malformed = 0, invalid = 0, fragments_dropped = 0;
  for (int i = 0; i < 4000; ++i) {
    Segment s = random_syn(rng);
    const unsigned defect = rng() % 6;
    switch (defect) {
      case 0:  // corrupt option bytes
        if (!s.options.empty()) {
          for (int k = 0; k < 3; ++k) s.options[rng() % s.options.size()] = static_cast<uint8_t>(rng());
        }
        break;
      case 1:  // impossible flags
        s.flags |= std::array<uint8_t, 3>{tcp_flag::ACK, tcp_flag::RST, tcp_flag::FIN}[rng() % 3];
        break;
      case 2:  // IPv4 options or an IPv6 extension header: a SYN carrying them is refused
        if (s.v6) {
          s.hop_by_hop = true;
        } else {
          s.ip_options = {1, 1, 1, 0};
        }
        break;
      case 3:  // fragment, first or later: the engine drops both, and so must XDP (a later one
               // by the service's address alone, as the rules queue it)
        if (!s.v6) s.frag = static_cast<uint16_t>(rng() % 2 ? 0x2000 : 0x0010);
        break;
      case 4:  // option lengths that run past the header
        if (s.options.size() >= 4) s.options[s.options.size() - 3] = static_cast<uint8_t>(2 + rng() % 40);
        break;
      default:
        break;
    }
    std::vector<uint8_t> ip = build(s);
    if (rng() % 10 == 0) ip.resize(ip.size() - 1 - rng() % std::min<size_t>(ip.size() - 1, 30));  // truncated
    compare(ip, "odd SYN " + std::to_string(i), rng() % 3 == 0 ? rng() % 30 : 0, &rng);
    malformed += static_cast<int>(last_delta_[SG_XDP_MALFORMED]);
    invalid += static_cast<int>(last_delta_[SG_XDP_INVALID_FLAGS]);
    if (defect == 3 && s.frag) fragments_dropped += static_cast<int>(last_delta_[SG_XDP_MALFORMED]);
  }
  EXPECT_GT(malformed, 50);
  EXPECT_GT(fragments_dropped, 100);
  EXPECT_GT(invalid, 200);
  EXPECT_GT(answered_, 1000);
  EXPECT_GT(passed_, 100);
}

TEST_P(XdpDiff, CookieAcksPassForgedOnesDrop) {
  std::mt19937_64 rng(151515);
  int valid = 0, forged = 0, forged_with_ip_options = 0, forged_behind_ext_header = 0;
  for (int i = 0; i < 2000; ++i) {
    Segment syn = random_syn(rng);
    syn.payload.clear();
    const EngineResult answer = run_engine(build(syn));
    ASSERT_EQ(answer.sent.size(), 1u);
    ParseResult synack = parse_tcp_packet(std::span<uint8_t>(const_cast<uint8_t*>(answer.sent[0].data()), answer.sent[0].size()));
    ASSERT_TRUE(synack);
    Segment ack = syn;
    ack.flags = tcp_flag::ACK;
    ack.seq = syn.seq + 1;
    ack.ack = synack.packet.seq() + 1;
    ack.options = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0};
    const bool forge = rng() % 2;
    if (forge) {
      switch (rng() % 3) {
        case 0: ack.ack ^= 1u << (rng() % 32); break;
        case 1: ack.seq += 1 + static_cast<uint32_t>(rng() % 1000); break;
        default: ack.sport ^= 1; break;
      }
    }
    if (rng() % 4 == 0) ack.payload.assign(1 + rng() % 100, 'x');
    // IPv4 options or an IPv6 extension header do not make a forged ACK the engine's problem: it
    // must die in XDP all the same.
    const bool ip_options = rng() % 4 == 0;
    if (ip_options && ack.v6) ack.hop_by_hop = true;
    if (ip_options && !ack.v6) ack.ip_options = {1, 1, 1, 0};
    if (rng() % 5 == 0) now_ns_ += (rng() % 3) * SG_COOKIE_TICK_NS, apply();  // age 0..2 ticks
    const uint32_t action = compare(build(ack), std::string(forge ? "forged" : "valid") + " ACK " + std::to_string(i));
    if (action == XDP_PASS) {
      EXPECT_EQ(last_delta_[SG_XDP_COOKIE_VALID], 1u);
      ++valid;
    } else {
      EXPECT_EQ(action, static_cast<uint32_t>(XDP_DROP));
      EXPECT_EQ(last_delta_[SG_XDP_COOKIE_INVALID], 1u);
      EXPECT_EQ(last_engine_.cookies_invalid, 1u);
      ++forged;
      forged_with_ip_options += ip_options && !ack.v6;
      forged_behind_ext_header += ip_options && ack.v6;
    }
  }
  EXPECT_GT(valid, 500);
  EXPECT_GT(forged, 500);
  EXPECT_GT(forged_with_ip_options, 20);
  EXPECT_GT(forged_behind_ext_header, 20);
}

TEST_P(XdpDiff, FlowsPassRstAndFlaglessSegmentsWithoutAFlowDrop) {
  Segment s;
  s.src = addr("198.18.1.1").bytes;
  s.dst = addr("10.77.0.2").bytes;
  s.sport = 40000;
  s.seq = 1000;
  s.ack = 2000;
  s.flags = tcp_flag::ACK | tcp_flag::PSH;
  s.payload.assign(10, 'a');
  EXPECT_EQ(compare(build(s), "forged data"), static_cast<uint32_t>(XDP_DROP));
  const FlowTuple t{addr("198.18.1.1"), addr("10.77.0.2"), 40000, 47001};
  program_->add_flow(t);
  ASSERT_EQ(program_->write_flows(), 0u);
  const XdpResult with_flow = run_xdp(ethernet(build(s), 0, nullptr));
  EXPECT_EQ(with_flow.action, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(with_flow.delta[SG_XDP_FLOW_PASSED], 1u);
  program_->remove_flow(t);
  EXPECT_EQ(program_->write_flows(), 0u);
  EXPECT_EQ(run_xdp(ethernet(build(s), 0, nullptr)).action, static_cast<uint32_t>(XDP_DROP));

  s.flags = tcp_flag::RST;
  EXPECT_EQ(compare(build(s), "RST without a flow"), static_cast<uint32_t>(XDP_DROP));
  EXPECT_EQ(last_delta_[SG_XDP_NO_FLOW], 1u);
  s.flags = tcp_flag::FIN;
  EXPECT_EQ(compare(build(s), "FIN without ACK"), static_cast<uint32_t>(XDP_DROP));
  EXPECT_EQ(last_delta_[SG_XDP_INVALID_FLAGS], 1u);

  // Without a flow map kept in step, nothing but SYNs is judged here.
  apply(/*drop_no_flow=*/false);
  s.flags = tcp_flag::ACK;
  EXPECT_EQ(run_xdp(ethernet(build(s), 0, nullptr)).action, static_cast<uint32_t>(XDP_PASS));
}

// After a change in the number of flow queues every worker imports every saved flow; the copies
// a worker never sees packets for expire there as idle. Freeing such a copy must not delete the
// key the live copy needs: the map counts the tables holding each flow.
TEST_P(XdpDiff, AFlowStaysInTheMapWhileAnyTableHoldsIt) {
  Segment s;
  s.src = addr("198.18.1.2").bytes;
  s.dst = addr("10.77.0.2").bytes;
  s.sport = 40001;
  s.seq = 1000;
  s.ack = 2000;
  s.flags = tcp_flag::ACK;
  const FlowTuple t{addr("198.18.1.2"), addr("10.77.0.2"), 40001, 47001};
  program_->add_flow(t);  // worker A's live copy
  ASSERT_EQ(program_->write_flows(), 0u);
  program_->add_flow(t);  // worker B's imported copy, in a later turn
  ASSERT_EQ(program_->write_flows(), 0u);
  EXPECT_EQ(program_->flow_holders(t), 2u);
  program_->remove_flow(t);  // B's copy expires as idle
  program_->write_flows();
  EXPECT_EQ(program_->flow_holders(t), 1u);
  EXPECT_EQ(run_xdp(ethernet(build(s), 0, nullptr)).action, static_cast<uint32_t>(XDP_PASS))
      << "the live copy's packets must still pass";
  program_->remove_flow(t);  // the connection ends
  program_->write_flows();
  EXPECT_EQ(program_->flow_holders(t), 0u);
  EXPECT_EQ(run_xdp(ethernet(build(s), 0, nullptr)).action, static_cast<uint32_t>(XDP_DROP));
  program_->remove_flow(t);  // a stray extra free changes nothing
  program_->write_flows();
  EXPECT_EQ(program_->flow_holders(t), 0u);

  // Both copies added within one write, and one removed within another.
  program_->add_flow(t);
  program_->add_flow(t);
  ASSERT_EQ(program_->write_flows(), 0u);
  EXPECT_EQ(program_->flow_holders(t), 2u);
  program_->remove_flow(t);
  program_->write_flows();
  EXPECT_EQ(program_->flow_holders(t), 1u);
  EXPECT_EQ(run_xdp(ethernet(build(s), 0, nullptr)).action, static_cast<uint32_t>(XDP_PASS));
  program_->remove_flow(t);
  program_->write_flows();
  EXPECT_EQ(program_->flow_holders(t), 0u);
}

// The flow workers' changes reach the map only at write_flows, all of a turn's together. Within
// one write, a freed flow whose pair's next connection came in the same turn (a client's port
// reused) keeps its key, and a flow created and refused leaves none.
TEST_P(XdpDiff, FlowKeysAreWrittenATurnAtATime) {
  Segment s;
  s.src = addr("198.18.1.3").bytes;
  s.dst = addr("10.77.0.2").bytes;
  s.sport = 40002;
  s.seq = 1000;
  s.ack = 2000;
  s.flags = tcp_flag::ACK;
  const FlowTuple t{addr("198.18.1.3"), addr("10.77.0.2"), 40002, 47001};
  const auto action = [&] { return run_xdp(ethernet(build(s), 0, nullptr)).action; };
  program_->add_flow(t);
  EXPECT_EQ(action(), static_cast<uint32_t>(XDP_DROP)) << "not written yet";
  ASSERT_EQ(program_->write_flows(), 0u);
  EXPECT_EQ(action(), static_cast<uint32_t>(XDP_PASS));
  program_->remove_flow(t);  // the old connection freed...
  program_->add_flow(t);     // ...and the client's next one on its port, in one turn
  ASSERT_EQ(program_->write_flows(), 0u);
  EXPECT_EQ(action(), static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(program_->flow_holders(t), 1u);
  program_->remove_flow(t);
  EXPECT_EQ(action(), static_cast<uint32_t>(XDP_PASS)) << "not removed yet";
  program_->write_flows();
  EXPECT_EQ(action(), static_cast<uint32_t>(XDP_DROP));
  program_->add_flow(t);  // created and refused in one turn
  program_->remove_flow(t);
  program_->write_flows();
  EXPECT_EQ(program_->flow_holders(t), 0u);
  EXPECT_EQ(action(), static_cast<uint32_t>(XDP_DROP));
}

// A flow the tc ingress opened from its cookie ACK is known to the kernel side before its engine
// hears of it: by its handshake record until the backend's SYN-ACK, by its tc entries after. The
// client's segments of that time that fail the cookie check (a request's second segment) pass by
// either, and are dropped again once neither is there.
TEST_P(XdpDiff, SegmentsOfAFlowTheKernelSideOpenedPassByItsRecordOrEntries) {
  const int records = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "t_handshakes", sizeof(sg_tc_flow_key),
                                     sizeof(sg_tc_handshake), 16, nullptr);
  const int entries = bpf_map_create(BPF_MAP_TYPE_HASH, "t_flows", sizeof(sg_tc_flow_key), sizeof(sg_tc_flow), 16, nullptr);
  ASSERT_GE(records, 0);
  ASSERT_GE(entries, 0);
  ASSERT_TRUE(program_->set_kernel_flows(entries, records));
  Segment s;
  s.src = addr("198.18.1.4").bytes;
  s.dst = addr("10.77.0.2").bytes;
  s.sport = 40003;
  s.seq = 1000 + 1448;  // the second segment: no cookie in seq - 1
  s.ack = 2000;
  s.flags = tcp_flag::ACK | tcp_flag::PSH;
  s.payload.assign(100, 'b');
  const FlowTuple t{addr("198.18.1.4"), addr("10.77.0.2"), 40003, 47001};
  const sg_tc_flow_key c2s = bpf::map_flow_key<sg_tc_flow_key>(t);
  const sg_tc_flow_key synack = bpf::map_flow_key<sg_tc_flow_key>(t.reversed());
  const auto run = [&] { return run_xdp(ethernet(build(s), 0, nullptr)); };
  EXPECT_EQ(run().action, static_cast<uint32_t>(XDP_DROP)) << "no record, no entry: the cookie check fails";
  const sg_tc_handshake record{};
  ASSERT_EQ(bpf_map_update_elem(records, &synack, &record, BPF_ANY), 0);
  XdpResult r = run();
  EXPECT_EQ(r.action, static_cast<uint32_t>(XDP_PASS)) << "by the record";
  EXPECT_EQ(r.delta[SG_XDP_FLOW_PASSED], 1u);
  // The SYN-ACK answered in tc: the record goes, the entries stand.
  const sg_tc_flow entry{};
  ASSERT_EQ(bpf_map_update_elem(entries, &c2s, &entry, BPF_ANY), 0);
  ASSERT_EQ(bpf_map_delete_elem(records, &synack), 0);
  r = run();
  EXPECT_EQ(r.action, static_cast<uint32_t>(XDP_PASS)) << "by the entries";
  EXPECT_EQ(r.delta[SG_XDP_FLOW_PASSED], 1u);
  ASSERT_EQ(bpf_map_delete_elem(entries, &c2s), 0);
  EXPECT_EQ(run().action, static_cast<uint32_t>(XDP_DROP)) << "neither any more";
  // A bare ACK is not what a client sends before its backend answered: a forged-ACK flood's pay
  // no look at the records, and die as before.
  ASSERT_EQ(bpf_map_update_elem(records, &synack, &record, BPF_ANY), 0);
  ASSERT_EQ(run().action, static_cast<uint32_t>(XDP_PASS));
  s.payload.clear();
  s.flags = tcp_flag::ACK;
  EXPECT_EQ(run().action, static_cast<uint32_t>(XDP_DROP)) << "a bare ACK";
  s.flags = tcp_flag::ACK | tcp_flag::FIN;
  EXPECT_EQ(run().action, static_cast<uint32_t>(XDP_PASS)) << "a FIN";
  ASSERT_EQ(bpf_map_delete_elem(records, &synack), 0);
  EXPECT_EQ(run().action, static_cast<uint32_t>(XDP_DROP));
  // A record of the other direction's tuple is not this flow's.
  s.flags = tcp_flag::ACK | tcp_flag::PSH;
  s.payload.assign(100, 'b');
  ASSERT_EQ(bpf_map_update_elem(records, &c2s, &record, BPF_ANY), 0);
  EXPECT_EQ(run().action, static_cast<uint32_t>(XDP_DROP));
  EXPECT_TRUE(program_->set_kernel_flows(-1, -1));
  close(records);
  close(entries);
}

// The gauge the churn tests read to see the map back to empty (syngate_xdp_flow_keys): every key
// once, a flow held by two tables once.
TEST_P(XdpDiff, FlowKeysCountCountsEachKeyOnce) {
  const uint64_t before = program_->flow_keys_count();
  std::vector<FlowTuple> flows;
  for (uint16_t i = 0; i < 3000; ++i) flows.push_back(FlowTuple{addr("198.18.2.2"), addr("10.77.0.2"), static_cast<uint16_t>(20000 + i), 80});
  for (const FlowTuple& t : flows) program_->add_flow(t);
  program_->add_flow(flows[0]);  // a second table's copy
  ASSERT_EQ(program_->write_flows(), 0u);
  EXPECT_EQ(program_->flow_keys_count(), before + flows.size());
  for (size_t i = 0; i < flows.size(); i += 2) program_->remove_flow(flows[i]);
  program_->write_flows();
  EXPECT_EQ(program_->flow_keys_count(), before + flows.size() / 2 + 1) << "flows[0] is still held";
  program_->remove_flow(flows[0]);
  for (size_t i = 1; i < flows.size(); i += 2) program_->remove_flow(flows[i]);
  program_->write_flows();
  EXPECT_EQ(program_->flow_keys_count(), before);
}

TEST_P(XdpDiff, OtherTrafficPassesUntouched) {
  Segment s;
  s.src = addr("198.18.1.1").bytes;
  s.dst = addr("10.77.0.2").bytes;
  s.dport = 47009;  // not a service
  s.flags = tcp_flag::ACK;
  const std::vector<uint8_t> frame = ethernet(build(s), 0, nullptr);
  XdpResult r = run_xdp(frame);
  EXPECT_EQ(r.action, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(r.frame, frame);
  EXPECT_EQ(r.delta[SG_XDP_PASSED_OTHER], 1u);
  std::vector<uint8_t> arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06};
  arp.resize(60, 0);
  r = run_xdp(arp);
  EXPECT_EQ(r.action, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(r.frame, arp);
}

TEST_P(XdpDiff, KeyRotationFlipsSlotsAndCookiesFollowTheEngine) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 6; ++round) {
    secrets_ = rotate_secrets(secrets_, cookie_counter(now_ns_));
    apply();
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(compare(build(random_syn(rng)), "after rotation " + std::to_string(round)),
                static_cast<uint32_t>(XDP_TX));
    }
    now_ns_ += 2 * SG_COOKIE_TICK_NS;
  }
}

TEST_P(XdpDiff, SourcePolicyDeniesAndAllowsAsTheEngineDoes) {
  std::mt19937_64 rng(2024);
  auto prefix = [](const char* text) { return *Prefix::parse(text); };
  set_policy([&](SourcePolicy& p) {
    p.synack_per_prefix_per_s = 0;
    p.add(prefix("198.18.0.0/16"), /*deny=*/true);
    p.add(prefix("198.18.7.0/24"), /*deny=*/false);  // longer: allowed inside the denied /16
    p.add(prefix("2001:2::/48"), /*deny=*/false);
  });
  apply();
  int denied = 0, not_allowed = 0, answered = 0;
  for (int i = 0; i < 1500; ++i) {
    Segment s = random_syn(rng);
    if (!s.v6 && rng() % 3 == 0) s.src[14] = 7;  // inside the allowed /24
    if (s.v6 && rng() % 3 == 0) s.src[5] = 9;     // outside the allowed /48
    const uint32_t action = compare(build(s), "policy SYN " + std::to_string(i));
    if (action == XDP_TX) ++answered;
    if (action == XDP_DROP) {
      EXPECT_EQ(last_delta_[SG_XDP_SYN_REFUSED], 1u);
      const uint64_t d = last_engine_.drop(DropReason::Denied), n = last_engine_.drop(DropReason::NotAllowed);
      EXPECT_EQ(d + n, 1u) << "the engine dropped it for another reason";
      denied += static_cast<int>(d);
      not_allowed += static_cast<int>(n);
    }
  }
  EXPECT_GT(denied, 150);       // IPv4 outside 198.18.7.0/24 but inside the denied /16
  EXPECT_GT(not_allowed, 100);  // IPv4 in 198.19/16 and IPv6 outside 2001:2::/48
  EXPECT_GT(answered, 300);
}

// The policy map holds SG_XDP_MAX_PREFIXES prefixes, the bound `syngate check` enforces (a
// longer list made the map update fail at start and left the whole fast path off): all of them
// load, one more does not.
TEST_P(XdpDiff, PolicyMapHoldsTheCheckedLimitAndNoMore) {
  auto fill = [](size_t count) {
    auto p = std::make_shared<SourcePolicy>();
    for (size_t i = 0; i < count; ++i) {
      const std::string text = "10." + std::to_string(i >> 16 & 255) + "." + std::to_string(i >> 8 & 255) + "." +
                               std::to_string(i & 255) + "/32";
      p->add(*Prefix::parse(text), /*deny=*/true);
    }
    return p;
  };
  const auto full = fill(SG_XDP_MAX_PREFIXES);
  ASSERT_EQ(full->prefixes.size(), size_t{SG_XDP_MAX_PREFIXES});
  EXPECT_NO_THROW(program_->set_prefixes(full->prefixes));
  const auto over = fill(SG_XDP_MAX_PREFIXES + 1);
  EXPECT_THROW(program_->set_prefixes(over->prefixes), std::runtime_error);
  program_->set_prefixes(PrefixSet{});  // the next tests start from an empty map
}

TEST_P(XdpDiff, BackscatterBudgetStopsAtTheLimitPerPrefixAndSecond) {
  // One CPU, so that every run meets the same per-CPU budget cells.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  cpu_set_t old;
  sched_getaffinity(0, sizeof old, &old);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  set_policy([](SourcePolicy& p) { p.synack_per_prefix_per_s = 40; });
  apply();
  Engine engine(config_, CookieJar(secrets_, max_age_));  // one engine for the whole sequence
  std::mt19937_64 rng(40);
  auto one_second = [&](const char* what) {
    int xdp_answered = 0, engine_answered = 0, xdp_budget = 0;
    for (int i = 0; i < 100; ++i) {
      Segment s = random_syn(rng);
      s.v6 = false;
      s.dst = addr("10.77.0.2").bytes;
      s.src = addr("198.18.44.0").bytes;
      s.src[15] = static_cast<uint8_t>(rng());  // one /24
      const std::vector<uint8_t> ip = build(s);
      const XdpResult x = run_xdp(ethernet(ip, 0, nullptr));
      xdp_answered += x.action == XDP_TX;
      xdp_budget += static_cast<int>(x.delta[SG_XDP_SYN_REFUSED]);
      Capture sink;
      std::vector<uint8_t> copy = ip;
      engine.process(copy, now_ns_, sink);
      engine_answered += static_cast<int>(sink.sent.size());
    }
    EXPECT_EQ(xdp_answered, 40) << what;
    EXPECT_EQ(xdp_budget, 60) << what;
    EXPECT_EQ(engine_answered, 40) << what;
  };
  one_second("first second");
  now_ns_ += 1'000'000'000ull;
  apply();
  one_second("next second: a fresh budget");
  sched_setaffinity(0, sizeof old, &old);
  EXPECT_GE(program_->reasons()[static_cast<size_t>(DropReason::BackscatterBudget)], 120u);
}

TEST_P(XdpDiff, PolicyPrefixesOfOneFamilyNeverMatchTheOther) {
  // IPv4 lives in the v4-mapped part of the 128-bit form, inside ::/0 .. ::/80; the LPM map's
  // family tag keeps IPv6 prefixes off IPv4 sources, as the engine's prefix set does.
  std::mt19937_64 rng(46);
  auto prefix = [](const char* text) { return *Prefix::parse(text); };
  for (bool allow : {false, true}) {
    set_policy([&](SourcePolicy& p) {
      p.synack_per_prefix_per_s = 0;
      p.synack_per_address_per_s = 0;
      p.add(prefix("::/0"), /*deny=*/!allow);
      p.add(prefix("::/80"), /*deny=*/!allow);
      if (allow) p.add(prefix("10.99.0.0/16"), /*deny=*/false);  // no random source is in it
    });
    apply();
    int v4_answered = 0, v4_refused = 0, v6_answered = 0, v6_refused = 0;
    for (int i = 0; i < 300; ++i) {
      Segment s = random_syn(rng);
      const uint32_t action = compare(build(s), std::string(allow ? "allow" : "deny") + " SYN " + std::to_string(i));
      (s.v6 ? (action == XDP_TX ? v6_answered : v6_refused) : (action == XDP_TX ? v4_answered : v4_refused))++;
    }
    if (allow) {
      EXPECT_EQ(v4_answered, 0) << "allow ::/0 let IPv4 sources outside the allowed /24 in";
      EXPECT_GT(v4_refused, 100);
      EXPECT_GT(v6_answered, 100);
    } else {
      EXPECT_GT(v4_answered, 100) << "deny ::/0 denied IPv4 sources";
      EXPECT_EQ(v4_refused, 0);
      EXPECT_EQ(v6_answered, 0);
    }
  }
}

TEST_P(XdpDiff, ProvenSourcesKeepTheirOwnBudgetWhileTheirPrefixIsSpoofed) {
  // One CPU, so that every run meets the same per-CPU prefix cells.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  cpu_set_t old;
  sched_getaffinity(0, sizeof old, &old);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  set_policy([](SourcePolicy& p) {
    p.synack_per_prefix_per_s = 20;
    p.synack_per_address_per_s = 5;
  });
  apply();
  Engine engine(config_, CookieJar(secrets_, max_age_));  // one engine for the whole sequence
  std::mt19937_64 rng(77);
  struct Both {
    uint32_t xdp;
    size_t engine_sent;
    std::vector<uint8_t> engine_packet;
  };
  auto both = [&](const Segment& s) {
    const std::vector<uint8_t> ip = build(s);
    const XdpResult x = run_xdp(ethernet(ip, 0, nullptr));
    Capture sink;
    std::vector<uint8_t> copy = ip;
    engine.process(copy, now_ns_, sink);
    Both b{x.action, sink.sent.size(), sink.sent.empty() ? std::vector<uint8_t>{} : sink.sent[0]};
    if (x.action == XDP_TX && b.engine_sent == 1) {
      EXPECT_EQ(hex(std::vector<uint8_t>(x.frame.begin() + 14, x.frame.end())), hex(b.engine_packet));
    }
    return b;
  };
  auto syn_from = [&](const char* src, uint16_t sport) {
    Segment s = random_syn(rng);
    s.v6 = false;
    s.src = addr(src).bytes;
    s.dst = addr("10.77.0.2").bytes;
    s.sport = sport;
    s.payload.clear();
    return s;
  };
  // The client connects: its cookie ACK proves it on both paths.
  int client_ok = 0, client_tries = 0;
  auto connect = [&](uint16_t sport) {
    ++client_tries;
    Segment syn = syn_from("198.18.50.7", sport);
    const Both answer = both(syn);
    EXPECT_EQ(answer.xdp == XDP_TX, answer.engine_sent == 1) << "the paths disagree on the client's SYN";
    if (answer.xdp != XDP_TX || answer.engine_sent != 1) return;
    ParseResult synack = parse_tcp_packet(std::span<uint8_t>(const_cast<uint8_t*>(answer.engine_packet.data()),
                                                             answer.engine_packet.size()));
    ASSERT_TRUE(synack);
    Segment ack = syn;
    ack.flags = tcp_flag::ACK;
    ack.seq = syn.seq + 1;
    ack.ack = synack.packet.seq() + 1;
    ack.options.clear();
    const Both passed = both(ack);
    EXPECT_EQ(passed.xdp, static_cast<uint32_t>(XDP_PASS));  // a valid cookie: XDP proves, passes
    ++client_ok;
  };
  connect(1000);
  int spoofed_xdp = 0, spoofed_engine = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string src = "198.18.50." + std::to_string(8 + i % 200);
    const Both b = both(syn_from(src.c_str(), static_cast<uint16_t>(2000 + i)));
    spoofed_xdp += b.xdp == XDP_TX;
    spoofed_engine += static_cast<int>(b.engine_sent);
    if (i % 20 == 0) connect(static_cast<uint16_t>(5000 + i));
  }
  EXPECT_EQ(client_ok, client_tries) << "a proven client was refused while its /24 was spoofed";
  EXPECT_EQ(spoofed_xdp, 19) << "the /24's 20, less the client's first SYN";
  EXPECT_EQ(spoofed_engine, 19);
  // Spoofing the proven address itself: at most its unanswered budget, on both paths.
  int at_client_xdp = 0, at_client_engine = 0;
  for (int i = 0; i < 100; ++i) {
    const Both b = both(syn_from("198.18.50.7", static_cast<uint16_t>(9000 + i)));
    at_client_xdp += b.xdp == XDP_TX;
    at_client_engine += static_cast<int>(b.engine_sent);
  }
  EXPECT_EQ(at_client_xdp, 5);
  EXPECT_EQ(at_client_engine, 5);
  sched_setaffinity(0, sizeof old, &old);
}

TEST_P(XdpDiff, ACookieAckOverALingeringFlowGivesItsSynAckBack) {
  // A client reusing its port while its closed flow lingers: the tuple is in the flow map, so the
  // ACK passes as the flow's, and still answers the SYN-ACK XDP sent for it.
  set_policy([](SourcePolicy& p) {
    p.synack_per_prefix_per_s = 1000;
    p.synack_per_address_per_s = 1;
  });
  apply();
  std::mt19937_64 rng(5);
  auto handshake = [&](uint16_t sport, bool flow_in_map) {
    Segment syn = random_syn(rng);
    syn.v6 = false;
    syn.src = addr("198.18.61.7").bytes;
    syn.dst = addr("10.77.0.2").bytes;
    syn.sport = sport;
    syn.payload.clear();
    const XdpResult answer = run_xdp(ethernet(build(syn), 0, nullptr));
    if (answer.action != XDP_TX) return false;
    std::vector<uint8_t> ip(answer.frame.begin() + 14, answer.frame.end());
    ParseResult synack = parse_tcp_packet(std::span<uint8_t>(ip.data(), ip.size()));
    EXPECT_TRUE(synack);
    Segment ack = syn;
    ack.flags = tcp_flag::ACK;
    ack.seq = syn.seq + 1;
    ack.ack = synack.packet.seq() + 1;
    ack.options.clear();
    const FlowTuple t{addr("198.18.61.7"), addr("10.77.0.2"), sport, 47001};
    if (flow_in_map) {
      program_->add_flow(t);
      EXPECT_EQ(program_->write_flows(), 0u);
    }
    const XdpResult passed = run_xdp(ethernet(build(ack), 0, nullptr));
    EXPECT_EQ(passed.action, static_cast<uint32_t>(XDP_PASS));
    EXPECT_EQ(passed.delta[flow_in_map ? SG_XDP_FLOW_PASSED : SG_XDP_COOKIE_VALID], 1u);
    if (flow_in_map) {
      program_->remove_flow(t);
      program_->write_flows();
    }
    return true;
  };
  ASSERT_TRUE(handshake(1000, false));  // proves the source
  // With one unanswered SYN-ACK allowed, every further handshake needs the previous one given
  // back, also when its ACK met a lingering flow.
  for (uint16_t i = 0; i < 20; ++i) ASSERT_TRUE(handshake(static_cast<uint16_t>(2000 + i), true)) << i;
}

// Not a check: the per-packet cost, printed for the README (BPF_PROG_TEST_RUN's own timing).
TEST_P(XdpDiff, CostPerPacket) {
  std::mt19937_64 rng(99);
  Segment syn = random_syn(rng);
  syn.v6 = false;
  syn.src = addr("198.18.0.7").bytes;
  syn.dst = addr("10.77.0.2").bytes;
  syn.flags = tcp_flag::SYN;
  syn.payload.clear();
  syn.options = {2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7};
  Segment ack = syn;
  ack.flags = tcp_flag::ACK;
  ack.seq = syn.seq + 1;
  ack.ack = 12345;
  ack.options.clear();
  // One run per call: with repeat > 1 the kernel reruns the program on the frame it already
  // rewrote (a SYN-ACK after the first run), so the mean would be that of another path. Each
  // call's duration is the program's run time as the kernel measured it.
  auto measure_frame = [&](const std::vector<uint8_t>& frame, const char* what, uint32_t expected_action) {
    std::vector<uint8_t> out(frame.size() + 64);
    std::vector<uint32_t> ns;
    for (int i = 0; i < 20000; ++i) {
      LIBBPF_OPTS(bpf_test_run_opts, opts);
      opts.data_in = frame.data();
      opts.data_size_in = static_cast<uint32_t>(frame.size());
      opts.data_out = out.data();
      opts.data_size_out = static_cast<uint32_t>(out.size());
      opts.repeat = 1;
      ASSERT_EQ(bpf_prog_test_run_opts(program_fd(), &opts), 0);
      ASSERT_EQ(as_xdp_action(GetParam(), static_cast<int32_t>(opts.retval)), expected_action) << what;
      ns.push_back(opts.duration);
    }
    std::sort(ns.begin(), ns.end());
    std::printf("[ %s cost ] %-30s median %u ns, p90 %u ns per packet (BPF_PROG_TEST_RUN)\n",
                GetParam() == Hook::Xdp ? "xdp" : "tc ", what,
                ns[ns.size() / 2], ns[ns.size() * 9 / 10]);
  };
  auto measure = [&](const Segment& s, const char* what, uint32_t expected_action) {
    measure_frame(ethernet(build(s), 0, nullptr), what, expected_action);
  };
  // The floor of one BPF_PROG_TEST_RUN timing: a frame the program passes at its first test.
  std::vector<uint8_t> arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06};
  arp.resize(60, 0);
  measure_frame(arp, "ARP passed (timing floor)", XDP_PASS);
  measure(syn, "IPv4 SYN answered (XDP_TX)", XDP_TX);
  measure(ack, "IPv4 forged ACK dropped", XDP_DROP);
  {
    // With tc_open_flows the flow check also looks in the kernel path's maps, 10 000 entries each.
    const int records = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "t_handshakes", sizeof(sg_tc_flow_key),
                                       sizeof(sg_tc_handshake), 32768, nullptr);
    const int entries = bpf_map_create(BPF_MAP_TYPE_HASH, "t_flows", sizeof(sg_tc_flow_key), sizeof(sg_tc_flow), 65536, nullptr);
    ASSERT_GE(records, 0);
    ASSERT_GE(entries, 0);
    const sg_tc_handshake record{};
    const sg_tc_flow entry{};
    for (uint16_t i = 0; i < 10000; ++i) {
      const FlowTuple t{addr("198.19.0.1"), addr("10.77.0.2"), static_cast<uint16_t>(10000 + i), 47001};
      const sg_tc_flow_key k = bpf::map_flow_key<sg_tc_flow_key>(t);
      ASSERT_EQ(bpf_map_update_elem(records, &k, &record, BPF_ANY), 0);
      ASSERT_EQ(bpf_map_update_elem(entries, &k, &entry, BPF_ANY), 0);
    }
    ASSERT_TRUE(program_->set_kernel_flows(entries, -1));
    measure(ack, "IPv4 forged ACK, tc entries", XDP_DROP);
    ASSERT_TRUE(program_->set_kernel_flows(entries, records));
    measure(ack, "IPv4 forged ACK, entries+records", XDP_DROP);
    Segment data = ack;
    data.payload.assign(100, 'd');
    measure(data, "IPv4 forged data, entries+records", XDP_DROP);
    ASSERT_TRUE(program_->set_kernel_flows(-1, -1));
    close(records);
    close(entries);
  }
  syn.v6 = true;
  syn.src = addr("2001:2::7").bytes;
  syn.dst = addr("fd77::2").bytes;
  ack.v6 = true;
  ack.src = syn.src;
  ack.dst = syn.dst;
  measure(syn, "IPv6 SYN answered (XDP_TX)", XDP_TX);
  measure(ack, "IPv6 forged ACK dropped", XDP_DROP);
}

INSTANTIATE_TEST_SUITE_P(Hooks, XdpDiff, ::testing::Values(Hook::Xdp, Hook::Tc),
                         [](const ::testing::TestParamInfo<Hook>& info) { return info.param == Hook::Xdp ? "xdp" : "tc"; });

}  // namespace
}  // namespace syngate
