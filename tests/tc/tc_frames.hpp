// Ethernet frames around IP packets (padded to the 60-byte minimum as a NIC would deliver them),
// and one run of a tc program on such a frame through BPF_PROG_TEST_RUN.
#pragma once

#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <bpf/bpf.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "syngate_test/segments.hpp"

namespace syngate::test {

inline Bytes ethernet_frame(const Bytes& ip, const uint8_t (&dst)[6], const uint8_t (&src)[6]) {
  Bytes f;
  for (uint8_t b : dst) f.push_back(b);
  for (uint8_t b : src) f.push_back(b);
  const bool v6 = (ip[0] >> 4) == 6;
  f.push_back(v6 ? 0x86 : 0x08);
  f.push_back(v6 ? 0xdd : 0x00);
  f.insert(f.end(), ip.begin(), ip.end());
  while (f.size() < 60) f.push_back(0);
  return f;
}

// What a run left: the program's verdict, the packet's mark, the frame as it came out.
struct TcRun {
  int retval = -1;
  uint32_t mark = 0;
  Bytes frame;
};

// `ctx`: the __sk_buff fields the run starts with (mark, ifindex, ingress_ifindex).
inline TcRun run_tc_program(int prog, const Bytes& frame, __sk_buff ctx) {
  TcRun r;
  r.frame.resize(frame.size() + 256);
  __sk_buff ctx_out{};
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<uint32_t>(frame.size());
  opts.data_out = r.frame.data();
  opts.data_size_out = static_cast<uint32_t>(r.frame.size());
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.ctx_out = &ctx_out;
  opts.ctx_size_out = sizeof ctx_out;
  opts.repeat = 1;
  EXPECT_EQ(bpf_prog_test_run_opts(prog, &opts), 0) << "BPF_PROG_TEST_RUN: " << std::strerror(errno);
  r.retval = static_cast<int>(opts.retval);
  r.mark = ctx_out.mark;
  r.frame.resize(opts.data_size_out);
  return r;
}

}  // namespace syngate::test
