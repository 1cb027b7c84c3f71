// Per-worker hash keys from the system's random source.
#pragma once

#include "syngate/engine.hpp"

namespace syngate::gw {

// Fills the flow-table seed and the budget tables' SipHash key with fresh random bytes
// (libsodium's randombytes: getrandom). Called for every worker at start, so no two workers,
// runs or machines share a key, and none is the compiled-in default anyone can read.
void randomize_hash_keys(EngineConfig& config);

}  // namespace syngate::gw
