// Per-packet cost of the engine's paths: a spoofed SYN answered, a forged ACK refused, a whole
// proxied handshake (flow created and freed), and translation of established traffic.
#include <benchmark/benchmark.h>

#include <vector>

#include "syngate/engine.hpp"
#include "syngate_test/segments.hpp"

namespace {
using namespace syngate;

struct NullSink : PacketSink {
  size_t sent = 0;
  std::vector<uint8_t> copy;
  bool keep = false;
  void send(std::span<const uint8_t> p) override {
    ++sent;
    if (keep) copy.assign(p.begin(), p.end());
  }
};

EngineConfig config() {
  EngineConfig c;
  c.services = {{*Address::parse("10.10.3.2"), 80}};
  c.max_flows = 1 << 16;
  c.max_flows_per_source = 0;
  return c;
}

CookieSecrets secrets() {
  CookieSecrets s;
  s.current.fill(3);
  s.previous.fill(4);
  return s;
}

using test::segment;
TcpOptions syn_options() { return test::linux_syn_options(12345); }

const FlowTuple kTuple{*Address::parse("198.18.0.1"), *Address::parse("10.10.3.2"), 1024, 80};
constexpr uint64_t kNow = 1000ull * 1000 * 1000 * 1000;

// SYN, cookie ACK and backend SYN-ACK (with the backend's window scale) for tuple t: leaves the
// flow established.
void handshake(Engine& engine, NullSink& sink, const FlowTuple& t, uint64_t now, uint8_t backend_wscale) {
  SegmentSpec syn{.tuple = t, .seq = 100, .flags = tcp_flag::SYN, .window = 64240, .options = syn_options()};
  std::vector<uint8_t> b = segment(syn);
  engine.process(b, now, sink);
  const TcpPacket sa = parse_tcp_packet(sink.copy).packet;
  TcpOptions ts;
  ts.has_timestamps = true;
  ts.tsval = 12346;
  ts.tsecr = sa.options().tsval;
  SegmentSpec ack{.tuple = t, .seq = 101, .ack = sa.seq() + 1, .flags = tcp_flag::ACK, .window = 502, .options = ts};
  b = segment(ack);
  engine.process(b, now, sink);
  TcpOptions bts = syn_options();
  bts.tsval = 999;
  bts.tsecr = 12346;
  bts.wscale = backend_wscale;
  SegmentSpec synack{.tuple = t.reversed(), .seq = 5000, .ack = 101, .flags = tcp_flag::SYN | tcp_flag::ACK,
                     .window = 65160, .options = bts};
  b = segment(synack);
  engine.process(b, now, sink);
}

void BM_SpoofedSyn(benchmark::State& state) {
  CookieJar jar(secrets());
  Engine engine(config(), jar);
  NullSink sink;
  SegmentSpec s{.tuple = kTuple, .seq = 1, .flags = tcp_flag::SYN, .window = 64240, .options = syn_options()};
  std::vector<uint8_t> b = segment(s);
  uint32_t i = 0;
  for (auto _ : state) {
    b[15] = static_cast<uint8_t>(++i);  // a new spoofed source each time (IPv4 checksum not read)
    benchmark::DoNotOptimize(engine.process(b, kNow, sink));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SpoofedSyn);

void BM_ForgedAck(benchmark::State& state) {
  CookieJar jar(secrets());
  Engine engine(config(), jar);
  NullSink sink;
  SegmentSpec s{.tuple = kTuple, .seq = 2, .ack = 0x12345678, .flags = tcp_flag::ACK, .window = 502};
  std::vector<uint8_t> b = segment(s);
  for (auto _ : state) {
    ++b[b.size() - 13];  // vary the ack number
    benchmark::DoNotOptimize(engine.process(b, kNow, sink));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ForgedAck);

// SYN, cookie ACK (flow created, backend SYN built), backend SYN-ACK (ACK + window update), RSTs
// to free the flow: one whole proxied connection per iteration.
void BM_ProxiedHandshake(benchmark::State& state) {
  EngineConfig cfg = config();
  cfg.linger_s = 0;
  CookieJar jar(secrets());
  Engine engine(cfg, jar);
  NullSink sink;
  sink.keep = true;
  uint64_t now = kNow;
  uint16_t port = 1;
  for (auto _ : state) {
    FlowTuple t = kTuple;
    t.sport = ++port;
    handshake(engine, sink, t, now, 7);
    SegmentSpec rst{.tuple = t, .seq = 101, .flags = tcp_flag::RST};
    std::vector<uint8_t> b = segment(rst);
    engine.process(b, now, sink);
    now += 1000 * 1000;
    engine.advance(now, sink);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["flows_created"] = static_cast<double>(engine.counters().flows_created);
}
BENCHMARK(BM_ProxiedHandshake);

// Established traffic, server -> client: seq, TSval and window rewritten with RFC 1624 updates.
void BM_TranslateEstablished(benchmark::State& state) {
  CookieJar jar(secrets());
  Engine engine(config(), jar);
  NullSink sink;
  sink.keep = true;
  const FlowTuple t = kTuple;
  handshake(engine, sink, t, kNow, 9);  // differs from what we announced: windows are rescaled too

  std::vector<uint8_t> payload(1400, 'x');
  TcpOptions dts;
  dts.has_timestamps = true;
  dts.tsval = 1000;
  dts.tsecr = 12346;
  SegmentSpec data{.tuple = t.reversed(), .seq = 5001, .ack = 101, .flags = tcp_flag::ACK, .window = 300,
                   .options = dts, .payload = payload};
  const std::vector<uint8_t> original = segment(data);
  std::vector<uint8_t> work = original;
  for (auto _ : state) {
    std::copy(original.begin(), original.begin() + 60, work.begin());  // headers only: fresh numbers
    benchmark::DoNotOptimize(engine.process(work, kNow, sink));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * original.size()));
}
BENCHMARK(BM_TranslateEstablished);

// Established traffic spread over N held flows, visited in a scattered order: what the
// per-packet cost does as the table fills (cache misses in the index and the entries). Compare
// /1024 with the full table (/262144: the default max_flows); both visit every flow in the same
// scattered order. Each packet has the flow's client address and port patched into hot headers, so the
// figure is the engine's, not the cost of reading N cold packets (the checksums are not read by
// the engine: the kernel checked them).
class AmongFlows {
 public:
  explicit AmongFlows(uint32_t flows) : flows(flows), jar(secrets()), engine(config_for(flows), jar) {
    sink.keep = true;
    for (uint32_t i = 0; i < flows; ++i) handshake(engine, sink, client_of(i), kNow, 9);
    TcpOptions dts;
    dts.has_timestamps = true;
    dts.tsval = 1000;
    dts.tsecr = 12346;
    SegmentSpec data{.tuple = client_of(0).reversed(), .seq = 5001, .ack = 101, .flags = tcp_flag::ACK,
                     .window = 300, .options = dts, .payload = std::vector<uint8_t>(100, 'x')};
    original = segment(data);
  }
  bool ready() const { return engine.counters().established == flows; }
  // The next flow's segment, server -> client, in `work`.
  void next(std::vector<uint8_t>& work) {
    i = (i + 7919) % flows;  // a prime stride: every flow, in an order the cache cannot follow
    std::copy(original.begin(), original.begin() + 60, work.begin());
    const uint32_t client = 0xc6120000u + i;
    const uint16_t port = static_cast<uint16_t>(1024 + (i & 0x3fff));
    work[16] = static_cast<uint8_t>(client >> 24);  // IPv4 destination: the client
    work[17] = static_cast<uint8_t>(client >> 16);
    work[18] = static_cast<uint8_t>(client >> 8);
    work[19] = static_cast<uint8_t>(client);
    work[22] = static_cast<uint8_t>(port >> 8);  // TCP destination port
    work[23] = static_cast<uint8_t>(port);
  }

  const uint32_t flows;
  CookieJar jar;
  Engine engine;
  NullSink sink;
  std::vector<uint8_t> original;

 private:
  static EngineConfig config_for(uint32_t flows) {
    EngineConfig cfg = config();
    cfg.max_flows = flows;
    return cfg;
  }
  static FlowTuple client_of(uint32_t i) {
    FlowTuple t = kTuple;
    t.src = Address::from_v4(0xc6120000u + i);  // 198.18.0.0/15, one source per flow
    t.sport = static_cast<uint16_t>(1024 + (i & 0x3fff));
    return t;
  }
  uint32_t i = 0;
};

// One packet at a time.
void BM_TranslateAmongFlows(benchmark::State& state) {
  AmongFlows b(static_cast<uint32_t>(state.range(0)));
  if (!b.ready()) {
    state.SkipWithError("not every handshake completed");
    return;
  }
  std::vector<uint8_t> work = b.original;
  for (auto _ : state) {
    b.next(work);
    benchmark::DoNotOptimize(b.engine.process(work, kNow, b.sink));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  if (b.engine.counters().translated < static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("segments went untranslated");
  }
}
// The full table is the shipped default's (EngineConfig::max_flows, which the gateway's config keeps).
const int64_t kDefaultFlows = EngineConfig{}.max_flows;
BENCHMARK(BM_TranslateAmongFlows)->Arg(1024)->Arg(kDefaultFlows);

// As the NFQUEUE flow worker does (FlowWorker::before_batch, then decide() per packet): a batch
// of 64 packets (its receive batch under load), each in its own buffer, handed to
// Engine::prefetch (second argument 1; the worker does for every batch of two or more) or not (0)
// before being processed one by one. per_packet (CPU time) is the figure to compare with
// BM_TranslateAmongFlows; /N/1 at 1024 and at 262144 is the worker's full-table ratio
// (docs/lab.md).
void BM_TranslateAmongFlowsBatch(benchmark::State& state) {
  constexpr size_t kBatch = 64;
  AmongFlows b(static_cast<uint32_t>(state.range(0)));
  const bool prefetch = state.range(1) != 0;
  if (!b.ready()) {
    state.SkipWithError("not every handshake completed");
    return;
  }
  // Two sets of buffers: one is processed while the other was written a batch earlier, as the
  // kernel wrote a received batch before the worker reads it. Reading headers written a moment
  // before made the prefetch pass wait on the store buffer (stores not yet committed, and 4-byte
  // loads of addresses patched byte by byte cannot be forwarded), a cost the worker does not have.
  std::vector<std::vector<uint8_t>> buffers[2] = {{kBatch, b.original}, {kBatch, b.original}};
  std::vector<std::span<uint8_t>> batches[2] = {{buffers[0].begin(), buffers[0].end()},
                                                {buffers[1].begin(), buffers[1].end()}};
  for (std::vector<uint8_t>& w : buffers[0]) b.next(w);
  size_t turn = 0;
  for (auto _ : state) {
    const std::vector<std::span<uint8_t>>& batch = batches[turn];
    if (prefetch) b.engine.prefetch(batch);
    for (std::span<uint8_t> p : batch) benchmark::DoNotOptimize(b.engine.process(p, kNow, b.sink));
    turn ^= 1;
    for (std::vector<uint8_t>& w : buffers[turn]) b.next(w);
  }
  const auto packets = static_cast<int64_t>(state.iterations() * kBatch);
  state.SetItemsProcessed(packets);
  state.counters["per_packet"] =
      benchmark::Counter(static_cast<double>(packets), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (b.engine.counters().translated < static_cast<uint64_t>(packets)) {
    state.SkipWithError("segments went untranslated");
  }
}
BENCHMARK(BM_TranslateAmongFlowsBatch)->Args({1024, 0})->Args({kDefaultFlows, 0})->Args({1024, 1})->Args({kDefaultFlows, 1});

}  // namespace

BENCHMARK_MAIN();
