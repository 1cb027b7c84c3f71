#include "seeds.hpp"

#include <sodium.h>

#include <stdexcept>

namespace syngate::gw {

void randomize_hash_keys(EngineConfig& config) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise (no random source)");
  do {
    randombytes_buf(&config.hash_seed, sizeof config.hash_seed);
  } while (config.hash_seed == 0);  // 0 is the "not set" default
  randombytes_buf(config.hash_key.data(), config.hash_key.size());
}

}  // namespace syngate::gw
