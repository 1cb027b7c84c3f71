// Engine::reset: an engine reset between inputs (as fuzz_engine runs) behaves as a new one. The
// inputs run through fuzz_engine's own program, which reaches every flow state; the trace holds
// every decision, rewritten and emitted packet, and the counters at the end.
#include <algorithm>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <vector>

#include "engine_program.hpp"
#include "syngate/flow_table.hpp"

namespace syngate {
namespace {

// fuzz_engine's seed corpus (conversations that reach every state), each input mutated a little:
// a few bytes changed, cut short or extended, or random bytes.
std::vector<std::vector<uint8_t>> seeds() {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& f : std::filesystem::directory_iterator(SYNGATE_FUZZ_CORPUS_DIR "/engine")) {
    std::ifstream in(f.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Directory order differs between filesystems: sorted, every machine draws the same inputs.
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> random_input(std::mt19937_64& rng) {
  static const std::vector<std::vector<uint8_t>> corpus = seeds();
  std::vector<uint8_t> v;
  if (corpus.empty() || rng() % 8 == 0) {
    v.resize(rng() % 1500);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
  }
  v = corpus[rng() % corpus.size()];
  for (int k = static_cast<int>(rng() % 4); k > 0 && !v.empty(); --k) v[rng() % v.size()] = static_cast<uint8_t>(rng());
  if (rng() % 4 == 0) v.resize(rng() % (v.size() + 1));
  if (rng() % 4 == 0) {
    for (int k = static_cast<int>(rng() % 64); k > 0; --k) v.push_back(static_cast<uint8_t>(rng()));
  }
  return v;
}

struct Run {
  std::vector<uint8_t> trace;
  EngineCounters counters;
};

// How the engine is configured besides the program's choices.
// KeptConfig: the reset engine gets one configuration kept from input to input, as fuzz_engine
// keeps it (engine_program_next_config); the new engine a new one.
enum class Variant { Program, OwnProvenSources, OtherSizesBefore, TightBudgets, KeptConfig };

EngineConfig config_for(fuzz::Input& in, Variant v) {
  EngineConfig c = fuzz::engine_program_config(in);
  if (v == Variant::OwnProvenSources) c.proven_sources = nullptr;
  if (v == Variant::TightBudgets || v == Variant::OwnProvenSources || v == Variant::KeptConfig) {
    // Budgets that the inputs spend: what one input spent must not be missing in the next.
    auto policy = std::make_shared<SourcePolicy>();
    policy->synack_per_prefix_per_s = 2;
    policy->synack_per_address_per_s = 1;
    policy->new_flows_per_source_per_s = 1;
    c.policy = policy;
  }
  return c;
}

Run run_fresh(const std::vector<uint8_t>& input, Variant v) {
  fuzz::Input in{input.data(), input.size()};
  const EngineConfig cfg = config_for(in, v);
  Engine engine(cfg, fuzz::engine_program_cookies());
  Run r;
  fuzz::run_engine_program(engine, in, &r.trace);
  r.counters = engine.counters();
  return r;
}

Run run_reset(Engine& engine, const std::vector<uint8_t>& input, Variant v) {
  fuzz::Input in{input.data(), input.size()};
  static EngineConfig kept = [] {
    fuzz::Input none{nullptr, 0};
    return config_for(none, Variant::KeptConfig);
  }();
  EngineConfig cfg = v == Variant::KeptConfig ? fuzz::engine_program_next_config(kept, in) : config_for(in, v);
  if (v == Variant::OtherSizesBefore) {
    // The last input ran on other table sizes: the reset cannot reuse the memory.
    EngineConfig other = cfg;
    other.max_flows = 5;
    engine.reset(other, fuzz::engine_program_cookies());
  }
  engine.reset(cfg, fuzz::engine_program_cookies());
  Run r;
  fuzz::run_engine_program(engine, in, &r.trace);
  r.counters = engine.counters();
  return r;
}

void expect_same_as_fresh(Variant v, int rounds) {
  std::mt19937_64 rng(0x5eed0000u + static_cast<unsigned>(v));
  fuzz::Input none{nullptr, 0};
  Engine reused(config_for(none, v), fuzz::engine_program_cookies());
  uint64_t established = 0, closed = 0, early = 0, backend_syns = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::vector<uint8_t> input = random_input(rng);
    const Run fresh = run_fresh(input, v);
    const Run again = run_reset(reused, input, v);
    ASSERT_EQ(fresh.trace, again.trace) << "round " << round;
    ASSERT_EQ(0, std::memcmp(&fresh.counters, &again.counters, sizeof fresh.counters)) << "round " << round;
    established += fresh.counters.established;
    closed += fresh.counters.flows_closed;
    early += fresh.counters.early_data_buffered;
    backend_syns += fresh.counters.backend_syn_retries;
  }
  // The inputs left state behind for the reset to clear: flows that got through the handshake,
  // ended, held early data, retried their backend SYN.
  EXPECT_GT(established, 0u);
  EXPECT_GT(closed, 0u);
  EXPECT_GT(early, 0u);
  EXPECT_GT(backend_syns, 0u);
}

TEST(EngineReset, BehavesAsANewEngineOnTheSameInputs) { expect_same_as_fresh(Variant::Program, 600); }

TEST(EngineReset, EmptiesTheEnginesOwnProvenSources) { expect_same_as_fresh(Variant::OwnProvenSources, 150); }

TEST(EngineReset, AfterOtherTableSizes) { expect_same_as_fresh(Variant::OtherSizesBefore, 150); }

TEST(EngineReset, RefillsTheBudgets) { expect_same_as_fresh(Variant::TightBudgets, 300); }

// Proven sources skip the tight budgets: one input's proofs, kept, would let the next one's SYNs
// through where a new engine drops them.
TEST(EngineReset, WithTheConfigurationFuzzEngineKeeps) { expect_same_as_fresh(Variant::KeptConfig, 300); }

// The engine behaves the same whatever a freed entry or early-data slot still holds (new flows
// are written whole), so the traces above cannot see it; but a reset promises the memory a new
// table has, and the bytes are checked here: every entry and every early-data byte, after a
// table whose entries and slots were all written to.
TEST(EngineReset, LeavesTheTableMemoryAsANewOne) {
  flows::FlowTableConfig cfg;
  cfg.max_flows = 6;
  cfg.max_flows_per_source = 4;
  cfg.early_data_bytes = 32;
  cfg.early_data_slots = 3;
  cfg.backend_syn_retries = 2;
  cfg.hash_seed = 99;
  flows::FlowTable used(cfg, {});
  for (uint32_t n = 0; n < cfg.max_flows; ++n) {
    FlowTuple t;
    t.src = Address::from_v4(0xc6120000u + n % 2);
    t.dst = Address::from_v4(0x0a0a0302u);
    t.sport = static_cast<uint16_t>(2000 + n);
    t.dport = 80;
    const uint32_t i = used.allocate_flow(t, 5);
    ASSERT_NE(i, flows::kNone);
    used.enter(i, n % 2 ? flows::State::Established : flows::State::Linger, 5);
    flows::Flow& f = used.edit(i);
    f.client_isn = 0x11111111u * (n + 1);
    f.tsoff = 0xdeadbeefu;
    f.client_wnd = 0xffffu;
    f.mss = 1460;
    used.settle();
  }
  for (uint32_t k = 0; k < cfg.early_data_slots; ++k) {
    const uint32_t slot = used.take_early_slot();
    ASSERT_NE(slot, flows::kNone);
    std::memset(used.early_data(slot), 0xab, cfg.early_data_bytes);
  }
  for (uint32_t i = 0; i < cfg.max_flows; i += 2) used.free_flow(i);  // some freed, some live
  used.settle();

  ASSERT_TRUE(used.reset(cfg));
  flows::FlowTable fresh(cfg, {});
  for (uint32_t i = 0; i < cfg.max_flows; ++i) {
    EXPECT_EQ(0, std::memcmp(&fresh.get(i), &used.get(i), sizeof(flows::Flow))) << "entry " << i;
  }
  for (uint32_t slot = 0; slot < cfg.early_data_slots; ++slot) {
    const std::vector<uint8_t> want(fresh.early_data(slot), fresh.early_data(slot) + cfg.early_data_bytes);
    const std::vector<uint8_t> got(used.early_data(slot), used.early_data(slot) + cfg.early_data_bytes);
    EXPECT_EQ(want, got) << "early-data slot " << slot;
  }
}

TEST(EngineReset, ForgetsTheFlowObserver) {
  struct Count : FlowObserver {
    int created = 0;
    void flow_created(const FlowTuple&) noexcept override { ++created; }
    void flow_freed(const FlowTuple&, uint32_t) noexcept override {}
  } observer;
  std::mt19937_64 rng(7);
  fuzz::Input none{nullptr, 0};
  Engine engine(config_for(none, Variant::Program), fuzz::engine_program_cookies());
  engine.set_flow_observer(&observer);
  engine.reset(config_for(none, Variant::Program), fuzz::engine_program_cookies());
  uint64_t created = 0;
  for (int i = 0; i < 50; ++i) {
    const std::vector<uint8_t> input = random_input(rng);
    fuzz::Input in{input.data(), input.size()};
    fuzz::engine_program_config(in);
    fuzz::run_engine_program(engine, in);
    created += engine.counters().flows_created;
  }
  EXPECT_GT(created, 0u);
  EXPECT_EQ(observer.created, 0);
}

}  // namespace
}  // namespace syngate
