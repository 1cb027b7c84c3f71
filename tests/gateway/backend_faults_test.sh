#!/usr/bin/env bash
# What a client sees when the backend fails, through syngate (asserted) or through the kernel's
# SYNPROXY (second argument "synproxy": measured and printed, for docs/faults.md):
#   refuses      port 81, nothing listens: the backend answers our SYN with a RST
#   silent       port 82, srv drops the SYNs: no SYN-ACK ever
#   unreachable  port 83, srv answers the SYN with ICMP host unreachable (to the client's address,
#                which syngate sends the backend SYN from)
#   dies         port 84, the server process is killed mid-connection (its kernel sends a FIN)
# The moment of the fault is read from a capture on the gateway's backend link (the backend's RST,
# ICMP or FIN; for silent, the last backend SYN plus the last retry's timeout); the moment the
# client sees it is the time its socket call fails or reads EOF (same clock). syngate's bound: the
# client's connection fails within 1 s of that moment, with a RST, and never waits for its own
# timeout.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
with=${2:-syngate}
client_py="$(dirname "$0")/fault_client.py"
lab_up
start_nginx
start_echo 84
ECHO_PID=$BG_PID
in_ns "$NS_SRV" iptables -A INPUT -p tcp --dport 82 -j DROP
in_ns "$NS_SRV" iptables -A INPUT -p tcp --dport 83 -j REJECT --reject-with icmp-host-unreachable

retries=2 initial_ms=200
give_up_s=$(calc "$initial_ms * (2 ^ $retries) / 1000")  # the last retry's timeout
if [[ $with == synproxy ]]; then
  synproxy_up 80:84 g1
else
  services=""
  for port in 81 82 83 84; do services+=$'[[service]]\naddress = "10.10.3.2"\nport = '"$port"$'\n'; done
  write_config "" "backend_syn_retries = $retries
backend_retry_initial_ms = $initial_ms" "$services"
  start_syngate
fi
cli_curl http://10.10.3.2/ >/dev/null || fail "baseline request failed"

capture_start() {
  : > "$LAB_DIR/cap.txt"
  # Not through in_ns (a function: its subshell would be the PID killed, leaving tcpdump writing
  # into the next capture's file).
  ip netns exec "$NS_GW" tcpdump -i g3 -nn -tt -l --immediate-mode host 10.10.3.2 >"$LAB_DIR/cap.txt" 2>"$LAB_DIR/tcpdump.err" &
  CAP_PID=$!
  track_pid "$CAP_PID"
  for _ in $(seq 100); do grep -q "listening on" "$LAB_DIR/tcpdump.err" && return 0; sleep 0.05; done
  fail "tcpdump did not start: $(cat "$LAB_DIR/tcpdump.err")"
}
capture_stop() { sleep 0.3; kill "$CAP_PID"; wait "$CAP_PID" 2>/dev/null || true; untrack_pid "$CAP_PID"; }

# measure NAME PORT EVENT_AWK [dies]: prints "NAME OUTCOME DELAY_S" (delay from the fault's moment)
measure() {
  local name=$1 port=$2 event=$3 out outcome at t0
  capture_start
  if [[ ${4:-} == dies ]]; then
    rm -f "$LAB_DIR/ready"
    in_ns "$NS_CLI" python3 "$client_py" 10.10.3.2 "$port" 10 "$LAB_DIR/ready" >"$LAB_DIR/client.out" &
    local cpid=$!
    for _ in $(seq 100); do [[ -f $LAB_DIR/ready ]] && break; sleep 0.05; done
    [[ -f $LAB_DIR/ready ]] || fail "$name: the client never got the server's greeting"
    kill -KILL "$ECHO_PID"
    wait "$cpid" || true
    out=$(cat "$LAB_DIR/client.out")
  else
    out=$(in_ns "$NS_CLI" python3 "$client_py" 10.10.3.2 "$port" 10)
  fi
  capture_stop
  read -r outcome at <<<"$out"
  t0=$(awk "$event" "$LAB_DIR/cap.txt")
  if [[ -z $t0 ]]; then
    echo "$name $outcome none"
  else
    echo "$name $outcome $(calc "$at - $t0")"
  fi
  cp "$LAB_DIR/cap.txt" "$LAB_DIR/cap-$name.txt"
}

results=()
results+=("$(measure refuses 81 '$3 ~ /^10\.10\.3\.2\.81$/ && /Flags \[R/ { print $1; exit }')")
results+=("$(measure silent 82 '$5 ~ /^10\.10\.3\.2\.82:$/ && /Flags \[S\]/ { t = $1 } END { if (t) printf "%.6f\n", t + '"$give_up_s"' }')")
results+=("$(measure unreachable 83 '/ICMP .*unreachable/ { print $1; exit }')")
results+=("$(measure dies 84 '$3 ~ /^10\.10\.3\.2\.84$/ && /Flags \[[FR]/ { print $1; exit }' dies)")

for r in "${results[@]}"; do echo "RESULT $with $r"; done
[[ $with == synproxy ]] && { pass "SYNPROXY measured (no bound asserted)"; exit 0; }

for r in "${results[@]}"; do
  read -r name outcome delay <<<"$r"
  case $name in
    dies) [[ $outcome == eof || $outcome == reset ]] || fail "$name: client saw $outcome, want eof or reset" ;;
    *) [[ $outcome == reset ]] || fail "$name: client saw $outcome, want reset" ;;
  esac
  [[ $delay != none ]] || fail "$name: the fault's moment is not in the capture: $(cat "$LAB_DIR/cap-$name.txt")"
  fcmp "$delay > -0.05 && $delay < 1" || fail "$name: client saw $outcome ${delay}s after the fault, want < 1 s"
done
for reason in backend_reset backend_timeout backend_unreachable; do
  n=$(metric_sum syngate_drops_total "reason=\"$reason\"")
  (( n >= 1 )) || fail "syngate_drops_total{reason=\"$reason\"} is $n"
done
pass "backend faults through syngate: ${results[*]}"
