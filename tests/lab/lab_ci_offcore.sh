#!/usr/bin/env bash
# Short offcore-layout lab for CI: gw's flood-facing veth polled by a NAPI thread on syngate's
# CPU, the generator on the other. Kernel SYNPROXY, syngate as shipped (the tc hook on veth) and
# syngate in native XDP mode (the peers running the lab's pass-through program), at no flood and
# at the generator's maximum. check_report.py offcore then asserts that both syngate modes keep
# their clients served and that their SYN-ACKs came from XDP, not from NFQUEUE.
set -euo pipefail
synflood=${1:?usage: lab_ci_offcore.sh SYNFLOOD SYNGATE OUT}
syngate=${2:?}
out=${3:?}
source "$(dirname "$0")/../lib/netns.sh"
require_root "the lab needs root"
[ "$(nproc)" -ge 2 ] || { echo "SKIP: the offcore layout needs two CPUs"; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
"$here/../../bench/lab/run.sh" --synflood "$synflood" --syngate "$syngate" --out "$out" --layout offcore \
  --modes "synproxy syngate syngate-native" --rates "0 max" --probe-count 100 --max-probe-count 300 \
  --probe-concurrency 25 --probe-timeout-ms 2000 --banner-count 0 --kinds syn
python3 "$here/check_report.py" "$out/report.json" offcore
