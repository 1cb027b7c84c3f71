// The configuration parser (gateway/config.cpp) on arbitrary text: TOML syntax, then every
// section's validation.
// Invariants: no crash or sanitizer report; the only exception is ConfigError, with a reason;
// an accepted configuration has a service, gives the engine the same services, and compared with
// itself needs no restart.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace syngate;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const gw::GatewayConfig c = gw::parse_config(text, "fuzz.toml");
    fuzz::check(!c.services.empty());
    fuzz::check(c.engine.services.size() == c.services.size());
    fuzz::check(c.engine.policy != nullptr);
    fuzz::check(gw::non_reloadable_changes(c, c).empty());
  } catch (const gw::ConfigError& e) {
    fuzz::check(!e.reason().empty());
  }
  return 0;
}
