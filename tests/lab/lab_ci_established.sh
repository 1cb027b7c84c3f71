#!/usr/bin/env bash
# Short run of the lab's established kind for CI (shared layout, one repeat, 2 s figures): iperf3,
# wrk, ab, redis-benchmark -k 0, a download under 1% loss and under a forged-ACK flood (IPv4 only:
# the IPv6 one, ack-v6, takes its minute in the benchmark, not in CI) through
# none, kernel SYNPROXY, syngate as shipped (kernel_path auto) and syngate-notc (kernel_path off); then
# check_report.py established asserts every figure ran and each syngate setting translated on its
# own path. About 100 s. RUN_SERIAL: iperf3 and a flood on 2 CPUs must not share them with other
# tests' timing.
set -euo pipefail
synflood=${1:?usage: lab_ci_established.sh SYNFLOOD SYNGATE OUT}
syngate=${2:?}
out=${3:?}
source "$(dirname "$0")/../lib/netns.sh"
require_root "the lab needs root"
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
"$here/../../bench/lab/run.sh" --synflood "$synflood" --syngate "$syngate" --out "$out" --layout shared \
  --kinds established --repeats 1 --est-seconds 2 \
  --est-tests "iperf-down iperf-up4 wrk ab redis loss ack iperf-down-v6 iperf-up4-v6 wrk-v6 ab-v6"
python3 "$here/check_report.py" "$out/report.json" established
