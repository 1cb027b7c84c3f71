#!/usr/bin/env bash
# Established flows in the kernel (issue 23), host and both modes: nothing is translated twice.
#   kernel_path_host_test.sh SYNGATE [host|both]
#
# Host mode's server replies cross OUTPUT before tc egress: `rules up` pins the OUTPUT match
# (tc_match.hpp) and the replies tc egress will translate skip the queue. Checked here:
#   - the match is in the rules and reads the daemon's flow map; a plain download's replies are
#     translated in the kernel (the engine translates almost nothing), IPv4 and IPv6;
#   - segments the engine translated reach tc egress marked and are left alone (outcome
#     already_marked), the whole reply intact: a third of a reply under IPv4 options (neither the
#     match nor egress takes those); a whole reply sent after the client's FIN stays in the kernel
#     (after a FIN only the client's segments go back to the engine);
#   - syngate's own packets (the window update each hand-over sends the client, SO_MARK) are left
#     alone: every server segment the client captured lies inside its flow's sequence range (one
#     translated twice would be off by the flow's delta);
#   - both mode: segments forwarded between srv and cli are translated at ingress and left alone at
#     egress (already_marked counts them), downloads intact.
#   - both mode with the host's own services then gone from the configuration: a restart after a
#     kill -9 attaches no egress and removes the one the dead run left; routed downloads intact.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
MODE=${2:-host}
[[ $MODE == host || $MODE == both ]] || fail "mode: host or both, not $MODE"
lab_up
lab_ipv6
kernel_path_bpffs

PORT=8080
BG_LOG=$LAB_DIR/server.log bg "$NS_GW" python3 "$(dirname "$0")/stream_check.py" server 10.10.1.1 $PORT
BG_LOG=$LAB_DIR/server.log bg "$NS_GW" python3 "$(dirname "$0")/stream_check.py" server fd00:10:1::1 $PORT
wait_listen "$NS_GW" $PORT || fail "stream server did not start"
ROUTED=""
if [[ $MODE == both ]]; then
  start_nginx "listen 10.10.3.2:80;"
  serve_big 20
  ROUTED='[[service]]
address = "10.10.3.2"
port = 80'
fi

cat > "$LAB_DIR/syngate.toml" <<CONF
[gateway]
secret_file = "$LAB_DIR/secrets"
state_dir = "$LAB_DIR/state"
stats_interval_s = 0
mode = "$MODE"
kernel_path = "auto"
bpf_dir = "$LAB_BPFFS"

[engine]
linger_s = 1
closing_idle_s = 2

[xdp]
mode = "off"

[[service]]
address = "10.10.1.1"
port = $PORT

[[service]]
address = "fd00:10:1::1"
port = $PORT
$ROUTED
CONF

# What the client sees from the services, for the sequence check.
BG_LOG=$LAB_DIR/tcpdump.log bg "$NS_CLI" tcpdump -i c0 -nn -S -s 96 -w "$LAB_DIR/cli.pcap" "tcp and src port $PORT"
TCPDUMP_PID=$BG_PID
start_syngate
grep -q "tc: translating established flows" "$LAB_DIR/syngate.log" || fail "the kernel path did not attach"
for ipt in iptables ip6tables; do
  in_ns "$NS_GW" $ipt -w -t mangle -S SYNGATE | grep -q -- "--object-pinned $LAB_BPFFS/syngate/" ||
    fail "$ipt: no OUTPUT match rule: $(in_ns "$NS_GW" $ipt -w -t mangle -S SYNGATE)"
done
grep -q "OUTPUT match .* reads this flow map" "$LAB_DIR/syngate.log" ||
  fail "the daemon does not see the OUTPUT match on its map: $(grep 'tc:' "$LAB_DIR/syngate.log")"
pass "$MODE: the OUTPUT match is in the rules (iptables, ip6tables) and reads the daemon's flow map"

counter() { metric_sum syngate_tc_packets_total "outcome=\"$1\""; }
snapshot() { K0=$(counter translated); M0=$(counter already_marked); E0=$(metric_sum syngate_translated_total); }
deltas() {
  # The tc counters are live, the engine's published by each worker: read once they settle.
  local e
  sleep 0.3
  e=$(settled_metric syngate_translated_total)
  K=$(( $(counter translated) - K0 )); M=$(( $(counter already_marked) - M0 ))
  E=$(( e - E0 ))
}
check() {  # check ADDR RESP_BYTES [--ip-options]
  in_ns "$NS_CLI" timeout 60 python3 "$(dirname "$0")/stream_check.py" client "$1" $PORT --resp "$2" "${@:3}" ||
    fail "$1: stream not intact"
}

# 1. Plain replies: tc egress translates them; the engine sees the handshake's leftovers only.
for addr in 10.10.1.1 fd00:10:1::1; do
  snapshot
  check "$addr" $((16 << 20))
  deltas
  (( K > 300 )) || fail "$addr: only $K segments translated in the kernel (engine $E)"
  (( E < 60 )) || fail "$addr: the engine translated $E segments (kernel $K): the replies crossed the queue"
  pass "$MODE $addr: 16 MiB intact; kernel translated $K, engine $E, egress left $M marked ones alone"
done

# 2. The engine's segments (counted per queued packet: a GSO super-packet is one).
# A third of the reply with IPv4 options: the engine translates and marks those, egress leaves them.
# 4 MiB in super-packets of at most 64 KiB: 64 or more.
snapshot
check 10.10.1.1 $((12 << 20)) --ip-options
deltas
(( E > 50 )) || fail "the engine translated only $E packets: the IPv4-options third did not reach it"
(( M > 50 )) || fail "tc egress left only $M marked packets alone (engine translated $E)"
(( K > 100 )) || fail "only $K packets translated in the kernel"
pass "$MODE: 12 MiB with a third under IPv4 options intact; engine translated $E (egress left $M marked alone), kernel $K"
# The reply after the client's FIN: the server's segments stay in the kernel after a FIN, so the
# match lets them past and egress translates them (few reach egress marked: the engine translated
# few of them); the client's acks of it are the engine's (E counts those).
for addr in 10.10.1.1 fd00:10:1::1; do
  snapshot
  check "$addr" $((8 << 20)) --half-close
  deltas
  (( K > 100 && M < 20 )) || fail "$addr: after the client's FIN, kernel translated $K, egress left $M marked alone (engine $E)"
  pass "$MODE $addr: 8 MiB after the client's FIN intact; kernel translated $K, egress left $M marked alone, engine $E (the client's acks)"
done

# 3. Both mode: forwarded segments are translated once, at ingress.
if [[ $MODE == both ]]; then
  snapshot
  got=$(CURL_TIMEOUT=60 cli_curl http://10.10.3.2/big.bin | sha256sum | cut -d' ' -f1)
  [[ $got == "$want" ]] || fail "routed download: sha256 $got, want $want"
  deltas
  (( K > 300 && M * 2 > K )) || fail "routed: kernel translated $K, egress left $M marked alone: translated twice?"
  (( E < 60 )) || fail "routed: the engine translated $E"
  pass "both: routed 20 MiB intact; translated at ingress $K, left alone at egress $M, engine $E"
fi

# 4. Syngate's own packets and everything else: each server segment inside its flow's range.
sleep 0.5
stop_pid "$TCPDUMP_PID" INT
in_ns "$NS_CLI" tcpdump -nn -S -r "$LAB_DIR/cli.pcap" 2>/dev/null > "$LAB_DIR/cli.txt"
python3 - "$LAB_DIR/cli.txt" <<'PY' || fail "server segments outside their flow's sequence range (translated twice?)"
import re, sys
isn, bad, seen, updates = {}, [], 0, 0
for line in open(sys.argv[1]):
    m = re.search(r" > (\S+): Flags \[([^\]]*)\], seq (\d+)(?::(\d+))?", line)
    if not m:
        continue
    client, flags, seq = m.group(1), m.group(2), int(m.group(3))
    if "S" in flags:
        isn[client] = seq
        continue
    if client not in isn:
        continue
    seen += 1
    off = (seq - isn[client]) % (1 << 32)
    if off == 1 and "P" not in flags and m.group(4) is None:
        updates += 1
    if off > (64 << 20):
        bad.append(line.strip())
print(f"{seen} server segments checked, {len(isn)} flows, {updates} bare segments at offset 1; {len(bad)} outside")
for b in bad[:5]:
    print("  ", b)
sys.exit(1 if bad or seen < 100 else 0)
PY
pass "$MODE: every server segment the client saw lies in its flow's sequence range"

# 5. Both mode, the host's own services gone from the configuration: the next run attaches no
# egress (every segment it would see leaving is forwarded, translated at ingress), and the egress
# filter the dead run left is removed (it would translate with offsets nobody keeps).
if [[ $MODE == both ]]; then
  flows_pin=$(tc_pin_dir)/sg_tc_flows
  wait_map_empty() {  # wait_map_empty WHEN: the pinned flow map empty within 10 s
    local i n
    for ((i = 0; i < 100; i++)); do
      n=$(bpftool -j map dump pinned "$flows_pin" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
      (( n == 0 )) && return 0
      sleep 0.1
    done
    fail "$n flow map entries left $1"
  }
  wait_map_empty "before the kill"
  egress_filters() {  # every gateway interface's egress filters
    local dev
    for dev in $(in_ns "$NS_GW" ls /sys/class/net); do in_ns "$NS_GW" tc filter show dev "$dev" egress 2>/dev/null; done
  }
  restart_routed_only() {  # kill -9, then a start with the routed service alone
    kill -KILL "$SYNGATE_PID"
    wait "$SYNGATE_PID" 2>/dev/null || true
    untrack_pid "$SYNGATE_PID"
    [[ -n $(egress_filters) ]] || fail "the dead run left no egress filter: nothing to check"
    { awk '/^\[\[service\]\]/ { exit } { print }' "$LAB_DIR/syngate.toml"; printf '%s\n' "$ROUTED"; } > "$LAB_DIR/routed.toml"
    mv "$LAB_DIR/routed.toml" "$LAB_DIR/syngate.toml"
    LOG_FROM=$(( $(wc -l < "$LAB_DIR/syngate.log") + 1 ))
    start_syngate
  }
  since_restart() { tail -n +"$LOG_FROM" "$LAB_DIR/syngate.log"; }
  # First with a connection to the host's own service open across the kill: its entries say egress
  # translates its replies, so the next run attaches egress although no service is on the host.
  rm -f "$LAB_DIR/go"
  BG_LOG=$LAB_DIR/held.log bg "$NS_CLI" python3 "$(dirname "$0")/stream_check.py" client 10.10.1.1 $PORT \
    --req 16 --resp $((4 << 20)) --hold-until "$LAB_DIR/go"
  HELD_PID=$BG_PID
  sleep 1
  restart_routed_only
  since_restart | grep -q "tc: translating established flows on .* (ingress and egress)" ||
    fail "a held connection's entries ask for egress, and the restart did not attach it: $(since_restart | grep 'tc:')"
  touch "$LAB_DIR/go"
  wait "$HELD_PID" || fail "the held connection failed: $(cat "$LAB_DIR/held.log")"
  untrack_pid "$HELD_PID"
  grep -q "^ok 1 of 1$" "$LAB_DIR/held.log" || fail "the held connection: $(cat "$LAB_DIR/held.log")"
  pass "both: a connection to the host's own service held across a kill -9 and a restart without that service: egress kept, 4 MiB intact"
  wait_map_empty "after the held connection"
  # Then with none: no egress, and the filter the dead run left is removed.
  restart_routed_only
  since_restart | grep -q "tc: no service on this host: no egress filter" ||
    fail "no service on the host: egress not left off: $(since_restart | grep 'tc:')"
  left=$(egress_filters)
  [[ -z $left ]] || fail "egress filters after a restart with no service on the host: $left"
  snapshot
  got=$(CURL_TIMEOUT=60 cli_curl http://10.10.3.2/big.bin | sha256sum | cut -d' ' -f1)
  [[ $got == "$want" ]] || fail "routed download, no egress: sha256 $got, want $want"
  deltas
  (( K > 300 && M == 0 && E < 60 )) || fail "routed, no egress: kernel translated $K, egress saw $M, engine $E"
  pass "both, no service on the host: the dead run's egress filter removed, none attached; routed 20 MiB intact, translated at ingress $K, engine $E"
fi
