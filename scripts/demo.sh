#!/usr/bin/env bash
# The two-minute demo: installs dependencies, builds synflood and syngate, then floods a lab of
# network namespaces (cli, atk, gw, srv) with spoofed SYNs and shows a legitimate HTTP client's
# success rate with no defence and with syngate on the gateway. Everything it builds in the
# kernel (namespaces, veths, iptables rules inside them) is removed on exit.
# Usage (root, from anywhere): scripts/demo.sh [FLOOD_RATE]   (default 60000 SYN/s)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-60000}
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 2; }

./scripts/deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target synflood
modes="none syncookies syngate"
if ! cmake --build "$build" -j "$(nproc)" --target syngate; then
  echo "demo.sh: syngate did not build; the demo shows the kernel defences only" >&2
fi

out=$(mktemp -d /tmp/syngate-demo.XXXXXX)
echo
echo "Flooding 10.10.3.2:80 (nginx in namespace srv) with $rate spoofed SYN/s from namespace atk;"
echo "a legitimate client in namespace cli opens 100 HTTP connections at each step."
echo
bench/lab/run.sh --build "$build" --layout shared --modes "$modes" --rates "0 $rate" --probe-count 100 --max-probe-count 100 \
  --banner-count 0 --kinds syn --out "$out" --quiet >/dev/null
echo "Results (also in $out: report.json, table.md, chart):"
echo
python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'defence':<12} {'flood SYN/s':>12} {'clients served':>15} {'connect p99':>12}")
for mode, m in r["modes"].items():
    if m["status"] != "ok":
        print(f"{mode:<12} {'skipped':>12}   ({m['reason'][:80]})")
        continue
    for p in m["points"]:
        p99 = f"{p['connect_ms']['p99']:.1f} ms" if p["connect_ms"]["count"] else "-"
        print(f"{mode:<12} {p['flood_pps']:>12} {p['success_pct']:>14.1f}% {p99:>12}")
PY
