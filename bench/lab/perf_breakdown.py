#!/usr/bin/env python3
"""Where one thread's time went in a `bench/lab/run.sh --perf` profile, per unit of work.

    perf_breakdown.py PERF_DATA [--comm ab] [--per 20000] [--hz 4000] [--top 25]

Reads `perf script` (call chains included) and takes the samples of the threads named --comm.
Each sample is charged once:
  - to the outermost BPF program on its call chain (its helpers, and what they call, included:
    a clone_redirect's transmit is its program's), or else
  - to the first of these found on the chain: veth transmit, TCP receive, forwarding, IP receive,
    other softirq work, the thread's own system calls, anything else.
Then prints each share as samples and as microseconds per unit (--per: the figure's connections or
requests), the samples' CPUs, and the leaf functions that grew most inside the BPF programs.

Why a script: `perf report --sort sym` gives self time only, and the programs' cost is mostly in
the helpers they call (map lookups, the FIB, ring buffer), which a self-time table hands to the
helpers, not to the program that paid for them. A sample is 1/HZ seconds (perf record's default
4000 Hz); on a guest without a PMU perf samples the CPU clock, so a vCPU's stolen time lands in
whatever it was running: compare runs by their CPUs too.
"""
import argparse
import collections
import subprocess
import sys

BUCKETS = (  # (name, any of these frames on the chain), in the order they are tried
    ("veth transmit", ("veth_xmit",)),
    ("TCP receive", ("tcp_v4_rcv", "tcp_v6_rcv")),
    ("forwarding", ("ip_forward", "ip6_forward")),
    ("IP receive", ("ip_rcv", "ipv6_rcv")),
    ("other softirq", ("net_rx_action", "handle_softirqs")),
    ("system calls", ("entry_SYSCALL_64_after_hwframe", "do_syscall_64")),
)


def perf_script(perf_data):
    """`perf script` of the profile: a header line ("comm [cpu]") and its call chain, leaf first."""
    return subprocess.run(["perf", "script", "-i", perf_data, "-F", "comm,cpu,ip,sym"],
                          capture_output=True, text=True, check=True).stdout


def samples(text):
    """Yields (comm, cpu, frames leaf first) for every sample of perf_script's text."""
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        head = lines[0].split()
        if len(head) < 2:
            continue
        cpu = head[1] if head[1].startswith("[") else "?"
        frames = []
        for line in lines[1:] if len(lines) > 1 else [lines[0]]:
            parts = line.split(None, 1)
            frames.append(parts[1].split("+")[0] if len(parts) > 1 else "?")
        yield head[0], cpu, frames


def program_name(symbol):
    """bpf_prog_<tag>_<name> -> name."""
    return symbol.split("_", 3)[-1] if symbol.startswith("bpf_prog_") else symbol


def breakdown(sample_iter, comm):
    """Counters of one thread name's samples: (total, shares, programs, leaves, cpus)."""
    total = 0
    shares = collections.Counter()
    programs = collections.Counter()
    leaves = collections.Counter()
    cpus = collections.Counter()
    for name, cpu, frames in sample_iter:
        if name != comm:
            continue
        total += 1
        cpus[cpu] += 1
        bpf = [f for f in frames if f.startswith("bpf_prog_")]
        if bpf:
            shares["BPF programs"] += 1
            programs[program_name(bpf[-1])] += 1
            leaves[program_name(frames[0])] += 1
            continue
        chain = set(frames)
        for bucket, marks in BUCKETS:
            if chain.intersection(marks):
                shares[bucket] += 1
                break
        else:
            shares["other"] += 1
    return total, shares, programs, leaves, cpus


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("perf_data")
    ap.add_argument("--comm", default="ab", help="the threads to charge (default ab)")
    ap.add_argument("--per", type=float, default=20000, help="units of work in the profile (default 20000)")
    ap.add_argument("--hz", type=float, default=4000, help="perf record's sampling frequency (default 4000)")
    ap.add_argument("--top", type=int, default=25, help="leaf functions listed under the programs")
    args = ap.parse_args()

    us_per_sample = 1e6 / args.hz / args.per
    total, shares, programs, leaves, cpus = breakdown(samples(perf_script(args.perf_data)), args.comm)
    if total == 0:
        print(f"no samples of {args.comm} in {args.perf_data}", file=sys.stderr)
        return 1

    def row(n, what):
        print(f"{n:7d} {n * us_per_sample:7.2f} µs  {what}")

    print(f"{args.comm}: {total} samples, {total * us_per_sample:.1f} µs a unit ({args.per:g} units, "
          f"{args.hz:g} Hz); CPUs: " + ", ".join(f"{c} {n}" for c, n in sorted(cpus.items())))
    for name, n in shares.most_common():
        row(n, name)
    print("-- BPF programs (the outermost on the chain, helpers included)")
    for name, n in programs.most_common():
        row(n, name)
    print(f"-- the {args.top} commonest leaves inside them")
    for name, n in leaves.most_common(args.top):
        row(n, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
