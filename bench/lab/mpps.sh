#!/usr/bin/env bash
# Measures the generator's raw speed: two network namespaces joined by a veth pair, the
# receiver dropping everything in raw PREROUTING (so nothing but the veth hop and one rule costs
# CPU), the generator pinned to one core, unlimited rate, bounded by duration.
# Usage (root): bench/lab/mpps.sh [SYNFLOOD_BINARY] [SECONDS] [CPU]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/flood/synflood}
seconds=${2:-5}
cpu=${3:-1}
[ -x "$bin" ] || { echo "mpps.sh: no synflood binary at $bin (build it first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "mpps.sh: needs root (network namespaces)" >&2; exit 2; }

tx="sgmpps-tx-$$"
rx="sgmpps-rx-$$"
cleanup() {
  ip netns del "$tx" 2>/dev/null || true
  ip netns del "$rx" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$tx"
ip netns add "$rx"
ip -n "$tx" link add veth0 type veth peer name veth1 netns "$rx"
ip -n "$tx" addr add 10.99.0.1/24 dev veth0
ip -n "$rx" addr add 10.99.0.2/24 dev veth1
ip -n "$tx" link set lo up
ip -n "$rx" link set lo up
ip -n "$tx" link set veth0 up
ip -n "$rx" link set veth1 up
ip netns exec "$rx" iptables -t raw -A PREROUTING -p tcp --dport 80 -j DROP
mac=$(ip -n "$rx" -br link show veth1 | awk '{print $3}')

echo "generator pinned to CPU $cpu (SCHED_FIFO, so the builds of a shared machine do not take its core), unlimited rate, ${seconds}s, receiver drops in raw PREROUTING" >&2
ip netns exec "$tx" chrt -f 50 taskset -c "$cpu" "$bin" syn --target 10.99.0.2:80 --rate 0 --duration "$seconds" \
  --iface veth0 --dst-mac "$mac" --json
ip netns exec "$rx" iptables -t raw -nvxL PREROUTING | awk 'NR==3 {print "{\"receiver_dropped\": " $1 "}"}'
