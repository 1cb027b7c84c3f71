#!/usr/bin/env python3
"""bench/lab/perf_breakdown.py on `perf script` text of the form perf 6.x prints (comm, CPU, then
the call chain leaf first): each sample is charged once, to the outermost BPF program on its chain
with what its helpers called, else to the first kernel path found on it."""
import importlib.util
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "perf_breakdown", os.path.join(HERE, "..", "..", "bench", "lab", "perf_breakdown.py"))
pb = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pb)


def sample(comm, cpu, *frames):
    return f"{comm} [{cpu:03d}] \n" + "".join(f"\tffffffff8100{i:04x} {f}\n" for i, f in enumerate(frames)) + "\n"


TEXT = (
    # A helper's transmit inside a tail-called program inside the ingress program: the ingress
    # program's (the outermost), leaf veth_xmit.
    sample("ab", 1, "veth_xmit", "bpf_clone_redirect", "bpf_prog_2f5d19af34fdf12b_sg_tc_synack",
           "bpf_prog_0f6731db814600b4_sg_tc_ingress+0x3c1", "cls_bpf_classify", "tc_run", "net_rx_action",
           "do_syscall_64")
    # A map lookup called by the fast path.
    + sample("ab", 1, "lookup_nulls_elem_raw", "__htab_map_lookup_elem",
             "bpf_prog_6b72d356e43b2289_check_no_flow", "bpf_prog_4025233a298fcc1b_syngate_tc_fast",
             "tc_run", "net_rx_action")
    # The program's own instructions.
    + sample("ab", 0, "bpf_prog_0f6731db814600b4_sg_tc_ingress", "cls_bpf_classify", "net_rx_action")
    # No program: TCP receive (tried before softirq and system calls), then a system call.
    + sample("ab", 0, "tcp_ack", "tcp_rcv_established", "tcp_v4_rcv", "ip_rcv", "net_rx_action",
             "entry_SYSCALL_64_after_hwframe")
    + sample("ab", 0, "do_epoll_ctl", "__x64_sys_epoll_ctl", "do_syscall_64")
    + sample("ab", 0, "some_leaf")
    # Another thread: not counted.
    + sample("nginx", 0, "bpf_prog_0f6731db814600b4_sg_tc_ingress", "net_rx_action")
)


class Breakdown(unittest.TestCase):
    def test_each_sample_is_charged_once(self):
        total, shares, programs, leaves, cpus = pb.breakdown(pb.samples(TEXT), "ab")
        self.assertEqual(total, 6)
        self.assertEqual(sum(shares.values()), total)
        self.assertEqual(shares["BPF programs"], 3)
        self.assertEqual(shares["TCP receive"], 1)
        self.assertEqual(shares["system calls"], 1)
        self.assertEqual(shares["other"], 1)
        self.assertEqual(cpus, {"[001]": 2, "[000]": 4})

    def test_the_outermost_program_pays_for_its_helpers(self):
        _, _, programs, leaves, _ = pb.breakdown(pb.samples(TEXT), "ab")
        self.assertEqual(programs, {"sg_tc_ingress": 2, "syngate_tc_fast": 1})
        self.assertEqual(leaves["veth_xmit"], 1)
        self.assertEqual(leaves["lookup_nulls_elem_raw"], 1)
        self.assertEqual(leaves["sg_tc_ingress"], 1)

    def test_another_thread_is_left_out(self):
        total, _, programs, _, _ = pb.breakdown(pb.samples(TEXT), "nginx")
        self.assertEqual(total, 1)
        self.assertEqual(programs, {"sg_tc_ingress": 1})


if __name__ == "__main__":
    sys.exit(unittest.main())
