// Hot-path costs of the core, one core, reported as operations per second (items_per_second).
// Each iteration takes the next of 1024 precomputed inputs, so the compiler cannot hoist the work
// out of the loop and the branch predictor sees varied data, as under a real flood.
#include <benchmark/benchmark.h>

#include <array>
#include <random>
#include <vector>

#include "syngate/cookie.hpp"
#include "syngate/packet.hpp"
#include "syngate_test/segments.hpp"

namespace syngate {
namespace {

constexpr size_t kInputs = 1024;
constexpr uint32_t kCounter = 27'000'000;

Address random_address(std::mt19937_64& rng, bool v6) {
  Address a;
  if (v6) {
    for (auto& b : a.bytes) b = static_cast<uint8_t>(rng());
    a.bytes[0] = 0x20;
  } else {
    a.bytes[10] = a.bytes[11] = 0xff;
    for (int i = 12; i < 16; ++i) a.bytes[i] = static_cast<uint8_t>(rng());
  }
  return a;
}

struct Input {
  FlowTuple tuple;
  uint32_t isn;
  uint16_t mss;
  uint32_t cookie;
};

std::vector<Input> make_inputs(bool v6, const CookieJar& jar) {
  std::mt19937_64 rng(v6 ? 6 : 4);
  std::vector<Input> in(kInputs);
  for (auto& x : in) {
    x.tuple = {random_address(rng, v6), random_address(rng, v6), static_cast<uint16_t>(rng()),
               static_cast<uint16_t>(rng())};
    x.isn = static_cast<uint32_t>(rng());
    x.mss = static_cast<uint16_t>(536 + rng() % 9000);
    x.cookie = jar.make(x.tuple, x.isn, x.mss, kCounter);
  }
  return in;
}

CookieSecrets bench_secrets() {
  CookieSecrets s;
  for (size_t i = 0; i < s.current.size(); ++i) {
    s.current[i] = static_cast<uint8_t>(i * 7 + 1);
    s.previous[i] = static_cast<uint8_t>(i * 13 + 5);
  }
  s.current_since = kCounter - 10;
  return s;
}

void BM_CookieMake(benchmark::State& state) {
  const CookieJar jar(bench_secrets());
  const auto in = make_inputs(state.range(0) == 6, jar);
  size_t i = 0;
  for (auto _ : state) {
    const Input& x = in[i++ & (kInputs - 1)];
    benchmark::DoNotOptimize(jar.make(x.tuple, x.isn, x.mss, kCounter));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CookieMake)->Arg(4)->ArgName("ipv")->Arg(6);

// Valid cookies: the full cost (age check, key choice, one SipHash, compare).
void BM_CookieCheck(benchmark::State& state) {
  const CookieJar jar(bench_secrets());
  const auto in = make_inputs(state.range(0) == 6, jar);
  size_t i = 0;
  for (auto _ : state) {
    const Input& x = in[i++ & (kInputs - 1)];
    benchmark::DoNotOptimize(jar.check(x.tuple, x.isn, x.cookie, kCounter + 1));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CookieCheck)->Arg(4)->ArgName("ipv")->Arg(6);

// An ACK flood: random cookies, half of them dropped by the age check before any hashing.
void BM_CookieCheckForged(benchmark::State& state) {
  const CookieJar jar(bench_secrets());
  auto in = make_inputs(false, jar);
  std::mt19937 rng(9);
  for (auto& x : in) x.cookie = rng();
  size_t i = 0;
  for (auto _ : state) {
    const Input& x = in[i++ & (kInputs - 1)];
    benchmark::DoNotOptimize(jar.check(x.tuple, x.isn, x.cookie, kCounter + 1));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CookieCheckForged);

// A SYN as Linux sends it: MSS, SACK-permitted, timestamps, NOP, window scale.
TcpOptions linux_syn_options() { return test::linux_syn_options(0x01020304); }

struct Packet {
  std::array<uint8_t, 128> bytes{};
  size_t len = 0;
};

void BM_ParseSyn(benchmark::State& state) {
  const bool v6 = state.range(0) == 6;
  std::mt19937_64 rng(11);
  std::vector<Packet> pkts(kInputs);
  for (auto& p : pkts) {
    const FlowTuple t{random_address(rng, v6), random_address(rng, v6), static_cast<uint16_t>(rng()), 80};
    p.len = build_syn(p.bytes, t, static_cast<uint32_t>(rng()), 64240, linux_syn_options());
    if (p.len == 0) {
      state.SkipWithError("build_syn failed");
      return;
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    Packet& p = pkts[i++ & (kInputs - 1)];
    ParseResult r = parse_tcp_packet(std::span<uint8_t>(p.bytes.data(), p.len));
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseSyn)->Arg(4)->ArgName("ipv")->Arg(6);

// The SYN-ACK the gateway answers with: MSS, SACK-permitted, timestamps, window scale, full
// IP and TCP checksums.
void BM_BuildSynAck(benchmark::State& state) {
  const bool v6 = state.range(0) == 6;
  const CookieJar jar(bench_secrets());
  const auto in = make_inputs(v6, jar);
  TcpOptions o = linux_syn_options();
  o.tsecr = 0x0A0B0C0D;
  std::array<uint8_t, kMaxHeadersLen> out{};
  size_t i = 0;
  for (auto _ : state) {
    const Input& x = in[i++ & (kInputs - 1)];
    const size_t n = build_syn_ack(out, x.tuple.reversed(), x.cookie, x.isn + 1, 65535, o);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_BuildSynAck)->Arg(4)->ArgName("ipv")->Arg(6);

// The whole stateless answer to one SYN: parse, cookie, encode TS bits, build the SYN-ACK.
void BM_SynToSynAck(benchmark::State& state) {
  const CookieJar jar(bench_secrets());
  std::mt19937_64 rng(12);
  std::vector<Packet> pkts(kInputs);
  for (auto& p : pkts) {
    const FlowTuple t{random_address(rng, false), random_address(rng, false), static_cast<uint16_t>(rng()), 80};
    p.len = build_syn(p.bytes, t, static_cast<uint32_t>(rng()), 64240, linux_syn_options());
  }
  std::array<uint8_t, kMaxHeadersLen> out{};
  size_t i = 0;
  for (auto _ : state) {
    Packet& p = pkts[i++ & (kInputs - 1)];
    ParseResult r = parse_tcp_packet(std::span<uint8_t>(p.bytes.data(), p.len));
    const TcpPacket& syn = r.packet;
    const TcpOptions& so = syn.options();
    const FlowTuple t = syn.tuple();
    TcpOptions o;
    o.has_mss = true;
    o.mss = 1460;
    o.sack_permitted = so.sack_permitted;
    o.has_wscale = so.has_wscale;
    o.wscale = 7;
    o.has_timestamps = so.has_timestamps;
    o.tsval = encode_ts_options(0x55555555u + static_cast<uint32_t>(i),
                                {so.has_wscale, so.wscale, so.sack_permitted, false});
    o.tsecr = so.tsval;
    const uint32_t cookie = jar.make(t, syn.seq(), so.mss, kCounter);
    benchmark::DoNotOptimize(build_syn_ack(out, t.reversed(), cookie, syn.seq() + 1, 65535, o));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SynToSynAck);

}  // namespace
}  // namespace syngate

BENCHMARK_MAIN();
