#!/usr/bin/env bash
# Short lab for CI, shared layout: every mode at no flood and at one fixed SYN flood rate; the
# other attack kinds (forged-ACK download, malformed SYNs, mixed flood, each over IPv4 and IPv6,
# and a real client's new connections per second) only for none (proof the floods and srv's
# counter work) and syngate (what lab_ci_syngate asserts), to
# stay inside CI's few minutes on 2 CPUs. Then the kernel-side assertions (check_report.py kernel). RUN_SERIAL: a flood on a 2-CPU runner must not share it
# with other tests' timing.
set -euo pipefail
synflood=${1:?usage: lab_ci.sh SYNFLOOD SYNGATE OUT}
syngate=${2:?}
out=${3:?}
source "$(dirname "$0")/../lib/netns.sh"
require_root "the lab needs root"
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
"$here/../../bench/lab/run.sh" --synflood "$synflood" --syngate "$syngate" --out "$out" --layout shared \
  --modes "none syncookies synproxy synproxy-ts syngate syngate-nfqueue" --rates "0 ${LAB_CI_RATE:-60000}" \
  --probe-count 100 --probe-concurrency 25 --probe-timeout-ms 2000 --banner-count 20 \
  --kinds "syn ack malformed mixed ipv6 connrate" --kind-modes "none syngate" --malform-count 300 --mixed-rate 60000 \
  --connrate-count 2000
python3 "$here/check_report.py" "$out/report.json" kernel
