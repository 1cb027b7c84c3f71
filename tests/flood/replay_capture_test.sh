#!/usr/bin/env bash
# Replay of a real capture: a bounded SYN flood between two namespaces is captured with tcpdump,
# then replayed with `synflood replay` at a third host, once at the capture's own speed and once
# at --rate, rewriting the destination and mapping the spoofed sources into another range. The
# receiver counts exactly what was replayed, from the range it was mapped into, and the timing
# follows the capture (or the rate).
#   replay_capture_test.sh SYNFLOOD
set -euo pipefail
bin=${1:?usage: replay_capture_test.sh SYNFLOOD}
command -v tcpdump >/dev/null || { echo "SKIP: no tcpdump (scripts/deps.sh installs it)"; exit 77; }
source "$(dirname "$0")/pair.sh"
require_root "needs root"
pair_up rc "10.99.0.1/24" "10.99.0.2/24 10.99.0.3/24"
# The receiver drops what it counts (nothing answers the spoofed sources).
ip netns exec $rx iptables -t raw -A PREROUTING -d 10.99.0.3 -p tcp --dport 8080 -s 198.19.0.0/16 -j DROP
ip netns exec $rx iptables -t raw -A PREROUTING -d 10.99.0.3 -p tcp -j DROP
ip netns exec $rx iptables -t raw -A PREROUTING -d 10.99.0.2 -j DROP
counter() { ip netns exec $rx iptables -t raw -L PREROUTING -vnx | awk -v n="$1" 'NR == n + 2 { print $1 }'; }

n=2000
echo "== capture: $n SYNs at 2000/s from 198.18.0.0/15 to 10.99.0.2:80, with tcpdump on the receiver"
ip netns exec $rx timeout 20 tcpdump -i veth1 -w "$tmp/flood.pcap" -c $n -U 'tcp dst port 80' 2>"$tmp/tcpdump.err" &
dump=$!
for _ in $(seq 50); do grep -q "listening" "$tmp/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
ip netns exec $tx "$bin" syn --target 10.99.0.2:80 --rate 2000 --count $n --duration 10 --json > "$tmp/flood.json"
wait $dump || fail "tcpdump did not capture $n packets: $(cat "$tmp/tcpdump.err")"
captured=$(ip netns exec $rx tcpdump -r "$tmp/flood.pcap" 2>/dev/null | wc -l)
[ "$captured" = $n ] || fail "the capture holds $captured packets, expected $n"
echo "captured $captured SYNs"

replay() {  # replay LABEL OPTIONS...: replays the capture at 10.99.0.3:8080, checks count and time
  local label=$1; shift
  local before after t0 t1
  before=$(counter 1)
  t0=$(date +%s.%N)
  ip netns exec $tx "$bin" replay "$tmp/flood.pcap" --target 10.99.0.3:8080 --spoof 198.19.0.0/16 "$@" --json \
    > "$tmp/replay.json" || fail "$label: replay exited $?: $(cat "$tmp/replay.json")"
  t1=$(date +%s.%N)
  sleep 0.2
  after=$(counter 1)
  local got=$((after - before)) secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  echo "$label: $got of $n arrived at 10.99.0.3:8080 from 198.19.0.0/16 in ${secs}s"
  [ "$got" = $n ] || fail "$label: $got arrived, expected exactly $n ($(cat "$tmp/replay.json"))"
  REPLAY_SECS=$secs
}
replay "original speed"
awk -v s="$REPLAY_SECS" 'BEGIN { exit !(s >= 0.8 && s <= 2.5) }' \
  || fail "at the capture's speed the replay took ${REPLAY_SECS}s; the capture spans ~1 s"
replay "--rate 10000" --rate 10000
awk -v s="$REPLAY_SECS" 'BEGIN { exit !(s >= 0.15 && s <= 1.0) }' \
  || fail "at --rate 10000 the replay of $n took ${REPLAY_SECS}s (expected ~0.2 s)"
[ "$(counter 2)" = 0 ] || fail "$(counter 2) replayed packets came from outside 198.19.0.0/16 or to another port"
echo "PASS: a captured flood replays exactly, at its own speed and at --rate, retargeted and re-spoofed"
