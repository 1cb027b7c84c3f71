// A saved flow table that is damaged (a crash, a bad disk, another release, a hostile file),
// taken over by a starting engine: in place (EngineState) or by Engine::import_state, from the
// current layout or version 2. The input describes the header (sizes, version, boot, journal; then
// maybe flips a header byte or cuts the region), the entries (raw bytes, some made plausible so
// that they get past the first checks: a live state, its timer list, a tuple of the engine
// program's clients) and then drives the engine with fuzz_engine's program, so that restored flows
// meet packets and timers.
// Invariants: no crash or sanitizer report; a refused table restores nothing; what is restored or
// dropped never exceeds the live entries; the table never holds more flows than it has room
// for; afterwards, the engine program's invariants.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "engine_program.hpp"
#include "syngate/flow_table.hpp"

namespace {

using namespace syngate;
using fuzz::Input;
using fuzz::check;

constexpr uint64_t kBoot = 0xb007;
constexpr size_t kHeaderBytes = 128;  // flow_table.cpp: kStateHeaderBytes
constexpr size_t kV2FlowBytes = 96;

// A region of the layout the header describes, with entries from the input.
std::vector<uint8_t> build_region(Input& in, const flows::StateHeader& h, size_t flow_bytes, uint32_t& live) {
  const size_t total = kHeaderBytes + size_t{h.max_flows} * flow_bytes + size_t{h.early_data_slots} * h.early_data_bytes;
  std::vector<uint8_t> region(total, 0);
  std::memcpy(region.data(), &h, sizeof h);
  live = 0;
  for (uint32_t i = 0; i < h.max_flows; ++i) {
    uint8_t* e = region.data() + kHeaderBytes + size_t{i} * flow_bytes;
    const uint8_t how = in.u8();
    if (how & 1) {  // raw bytes
      for (size_t k = 0; k < flow_bytes && !in.empty(); ++k) e[k] = in.u8();
    }
    if (how & 2) {  // a live flow of one of the program's clients, on its state's list
      flows::Flow f{};
      if (how & 1) std::memcpy(&f, e, std::min(flow_bytes, sizeof f));
      f.key = fuzz::engine_program::client_tuple(how >> 2 & 3);
      const uint8_t s = 1 + (how >> 4) % 4;
      f.state = static_cast<flows::State>(s);
      f.list = s == 1 ? static_cast<uint8_t>(flows::kListSynSent0 + f.retries % 4)
                      : static_cast<uint8_t>(flows::kListEstablished + (s - 2));
      if (how & 64) {
        f.early_slot = flows::kNone;
        f.early_len = 0;
      }
      if (flow_bytes == sizeof f) {
        std::memcpy(e, &f, sizeof f);
      } else {
        // Version 2 (flow_table.cpp: FlowV2) shares version 3's first 84 bytes (up to the
        // early slot); then mss, client_window, early_len, state, list, retries, client_ws,
        // backend_ws, bits.
        static_assert(offsetof(flows::Flow, early_slot) == 80);
        std::memcpy(e, &f, 84);
        std::memcpy(e + 84, &f.mss, 2);
        std::memcpy(e + 86, &f.client_window, 2);
        std::memcpy(e + 88, &f.early_len, 2);
        e[90] = static_cast<uint8_t>(f.state);
        e[91] = f.list;
        e[92] = f.retries;
        e[93] = f.client_ws;
        e[94] = f.backend_ws;
        e[95] = f.bits;
      }
    }
    // State byte: offset of `state` in each layout.
    const size_t state_at = flow_bytes == sizeof(flows::Flow) ? offsetof(flows::Flow, state) : 90;
    if (e[state_at] != 0) ++live;
  }
  for (size_t k = kHeaderBytes + size_t{h.max_flows} * flow_bytes; k < total && !in.empty(); ++k) region[k] = in.u8();
  return region;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const CookieJar jar = fuzz::engine_program_cookies();
  static Engine* reused = nullptr;
  Input in{data, size};
  const EngineConfig cfg = fuzz::engine_program_config(in);
  const uint8_t mode = in.u8();
  const bool in_place = mode & 1;
  const bool v2 = !in_place && (mode & 2);

  flows::StateHeader h{};
  std::memcpy(h.magic, "syngateF", 8);
  h.version = v2 ? 2 : 3;
  const size_t flow_bytes = v2 ? kV2FlowBytes : sizeof(flows::Flow);
  h.flow_bytes = static_cast<uint32_t>(flow_bytes);
  if (in_place) {
    h.max_flows = cfg.max_flows;
    h.early_data_bytes = cfg.early_data_bytes;
    h.early_data_slots = cfg.early_data_slots;
  } else {
    h.max_flows = in.u8() % 9;
    h.early_data_bytes = in.u8() % 130;
    h.early_data_slots = in.u8() % 4;
  }
  h.boot_id = (mode & 4) ? kBoot + 1 : kBoot;
  const uint8_t journal = in.u8();
  h.dirty_count = journal == 0xff ? flows::kJournalOverflow : journal % (flows::kJournalSlots + 2);
  for (auto& d : h.dirty) d = in.u8() % 10;
  uint32_t live = 0;
  std::vector<uint8_t> region = build_region(in, h, flow_bytes, live);
  // A damaged header: its sizes no longer match the region, or its magic, version, boot, journal.
  if (mode & 8) region[in.u8() % sizeof h] ^= static_cast<uint8_t>(1u << (in.u8() % 8));
  // In place the region is the caller's mapping of state_bytes() (its size is the caller's to
  // get right); an imported file may have any size.
  if (!in_place && (mode & 16)) region.resize(in.u8() & 1 ? region.size() + 1 + in.u8() % 64 : region.size() * in.u8() / 256);
  const bool refused_shape = region.size() < kHeaderBytes;

  Engine* engine = nullptr;
  std::unique_ptr<Engine> attached;
  uint64_t restored = 0;
  if (in_place) {
    attached = std::make_unique<Engine>(cfg, jar, EngineState{region, kBoot});
    engine = attached.get();
    const RestoreReport& r = engine->restore_report();
    check(r.attached == r.reason.empty());
    check(r.restored + r.dropped_torn + r.dropped_invalid <= (r.attached ? live : 0));
    restored = r.restored;
  } else {
    if (reused) {
      reused->reset(cfg, jar);
    } else {
      reused = new Engine(cfg, jar);
    }
    engine = reused;
    const RestoreReport r = engine->import_state(region, kBoot, EngineClock{100ull * 1000 * 1000 * 1000});
    check(r.attached == r.reason.empty());
    check(!refused_shape || !r.attached);
    check(r.restored + r.dropped_torn + r.dropped_invalid + r.dropped_no_room <= (r.attached ? live : 0));
    restored = r.restored;
  }
  const EngineCounters& c = engine->counters();
  check(c.flows_active == restored && restored <= cfg.max_flows);
  size_t listed = 0;
  engine->for_each_flow([&](const FlowTuple&) { ++listed; });
  check(listed == restored);
  fuzz::run_engine_program(*engine, in);
  return 0;
}
