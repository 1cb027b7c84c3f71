// Writes a flow table file as a running syngate leaves it: FLOWS established connections in a
// table of the [engine] defaults (or the sizes given), for this boot, so that the time a restart
// takes over a full table can be measured (tests/gateway/restart_time.sh).
//   flow_table_fill FILE FLOWS [MAX_FLOWS [EARLY_DATA_BYTES EARLY_DATA_SLOTS]]
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "flow_state.hpp"
#include "syngate/engine.hpp"
#include "syngate/flow_table.hpp"

int main(int argc, char** argv) {
  using namespace syngate;
  if (argc != 3 && argc != 4 && argc != 6) {
    std::fprintf(stderr, "usage: %s FILE FLOWS [MAX_FLOWS [EARLY_DATA_BYTES EARLY_DATA_SLOTS]]\n", argv[0]);
    return 2;
  }
  EngineConfig ec;
  const uint32_t flows_wanted = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  if (argc >= 4) ec.max_flows = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10));
  if (argc == 6) {
    ec.early_data_bytes = static_cast<uint32_t>(std::strtoul(argv[4], nullptr, 10));
    ec.early_data_slots = static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 10));
  }
  flows::FlowTableConfig tc;
  tc.max_flows = ec.max_flows;
  tc.early_data_bytes = ec.early_data_bytes;
  tc.early_data_slots = ec.early_data_slots;
  tc.backend_syn_retries = ec.backend_syn_retries;
  tc.hash_seed = 0x5eed;
  const size_t bytes = flows::FlowTable::state_bytes(tc);
  if (bytes != Engine::state_bytes(ec)) {
    std::fprintf(stderr, "the engine's table layout differs from the flow table's\n");
    return 1;
  }
  const int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
      posix_fallocate(fd, 0, static_cast<off_t>(bytes)) != 0) {
    std::perror(argv[1]);
    return 1;
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // the daemon's timer clock (gateway/daemon.cpp, engine_clock)
  const uint32_t now = static_cast<uint32_t>((uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec)) / 1000000);
  uint32_t made = 0;
  {
    flows::FlowTable table(tc, EngineState{{static_cast<uint8_t*>(p), bytes}, gw::current_boot_id()});
    const Address server = *Address::parse("10.10.3.2");
    for (uint32_t i = 0; i < flows_wanted; ++i) {
      // 16384 ports per source (the per-source limit is not checked here), sources in 198.18/15.
      const FlowTuple key{Address::from_v4(0xc6120000u + (i >> 14)), server,
                          static_cast<uint16_t>(1024 + (i & 0x3fff)), 7000};
      const uint32_t f = table.allocate_flow(key, now);
      if (f == flows::kNone) break;
      table.enter(f, flows::State::Established, now);
      table.settle();
      ++made;
    }
  }
  munmap(p, bytes);
  close(fd);
  std::printf("%s: %u established flows in a table of %u (%zu bytes)\n", argv[1], made, ec.max_flows, bytes);
  return made == flows_wanted ? 0 : 1;
}
