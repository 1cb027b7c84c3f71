// fuzz_engine: the engine program (engine_program.hpp) on one engine, reset between inputs so
// that an input costs its packets, not an engine's allocation (a reset engine behaves as a new
// one: tests/fuzz/engine_reset_test.cpp). The configuration is kept too (engine_program_next_config).
#include <cstddef>
#include <cstdint>

#include "engine_program.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace syngate;
  static const CookieJar jar = fuzz::engine_program_cookies();
  static EngineConfig cfg = [] {
    fuzz::Input none{nullptr, 0};
    return fuzz::engine_program_config(none);
  }();
  static Engine* engine = nullptr;  // never freed: lives as long as the fuzzer
  fuzz::Input in{data, size};
  fuzz::engine_program_next_config(cfg, in);
  if (engine) {
    engine->reset(cfg, jar);
  } else {
    engine = new Engine(cfg, jar);
  }
  fuzz::run_engine_program(*engine, in);
  return 0;
}
