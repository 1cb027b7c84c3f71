#!/usr/bin/env bash
# A backend without SACK behind clients that offer it. The cookie SYN-ACK answers before the
# backend is asked; a client promised SACK whose backend then lacks it gets duplicate ACKs
# without SACK blocks, which a SACK sender does not count, so each segment lost on its way to
# the backend costs a retransmission timeout. syngate learns from the backend's SYN-ACK and
# stops promising SACK to that service's clients (XDP_MODE=auto: the fast path answers the SYNs
# and must learn it too). Shown with the real kernel at both ends:
#   1. after one connection, a client that offers SACK is no longer promised it (tcp_info), but
#      still gets timestamps and window scaling;
#   2. uploads with 1% of the client's segments lost before the backend: the client's
#      retransmission timeouts (TcpExtTCPTimeouts) per lost segment through syngate, and the same
#      backend reached with no gateway and through the kernel's SYNPROXY beside (with the median
#      time of RUNS uploads).
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
RUNS=${SACK_RUNS:-3}
MB=${SACK_MB:-8}

start_transfer_server "$MB"
want=$TRANSFER_SHA256
in_ns "$NS_SRV" sysctl -qw net.ipv4.tcp_sack=0
for o in sack timestamps window_scaling; do in_ns "$NS_CLI" sysctl -qw "net.ipv4.tcp_$o=1"; done
write_config "" "" '[[service]]
address = "10.10.3.2"
port = 7100
[[service]]
address = "10.10.3.2"
port = 7101'
start_syngate

options() { in_ns "$NS_CLI" /usr/bin/python3 "$LAB_TESTS/transfer_client.py" 10.10.3.2 options; }
upload() {  # prints the seconds; checks the digest (UPLOAD_MAY_STALL=1: "inf" for a stalled one)
  local out digest secs
  if ! out=$(in_ns "$NS_CLI" /usr/bin/python3 "$LAB_TESTS/transfer_client.py" 10.10.3.2 up "$LAB_DIR/data.bin" 2>&1); then
    [[ -n ${UPLOAD_MAY_STALL:-} ]] && { echo inf; return 0; }
    fail "upload failed: $out"
  fi
  read -r digest secs <<<"$out"
  [[ $digest == "$want" ]] || fail "upload corrupted"
  echo "$secs"
}
timeouts() { in_ns "$NS_CLI" nstat -az TcpExtTCPTimeouts | awk '/TCPTimeouts/ { print $2 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

first=$(options)
(( first & 2 )) || fail "the first client was not promised SACK (tcp_info options $first): nothing was known yet"
# The daemon says so (and copies it into the XDP program's service map) at its next tick.
wait_until 5 grep -q "10.10.3.2:7100 answered without SACK" "$LAB_DIR/syngate.log" ||
  fail "the daemon did not say the backend lacks SACK: $(tail -5 "$LAB_DIR/syngate.log")"
sleep 0.2  # the map write follows the log line in the same tick
after=$(options)
(( after & 2 )) && fail "a client offering SACK is still promised it after the backend answered without (tcp_info options $after)"
(( (after & 5) == 5 )) || fail "timestamps or window scaling withheld too (tcp_info options $after)"
if [[ ${XDP_MODE:-off} != off ]]; then
  answered=$(metrics | awk '/^syngate_xdp_packets_total\{outcome="syn_answered"\}/ { print $2 }')
  (( ${answered:-0} > 0 )) || fail "the fast path answered no SYN: this run did not test it ($(metrics | grep -E '^syngate_xdp' | head -5))"
fi
pass "learned: the backend answered without SACK; the next client offering SACK got timestamps and window scaling but no SACK (tcp_info options $first -> $after)"

# The upload service's backend is learned by its own first connection, as the first one was.
upload >/dev/null
wait_until 5 grep -q "10.10.3.2:7101 answered without SACK" "$LAB_DIR/syngate.log" ||
  fail "the daemon did not say the upload service's backend lacks SACK"
sleep 0.2

# 1% of the upload's segments dropped as the backend receives them, one MSS segment at a time
# (no segmentation offload at the client or the gateway's backend side, no GRO at the backend).
in_ns "$NS_CLI" ethtool -K c0 tso off gso off >/dev/null
in_ns "$NS_GW" ethtool -K g1 gro off >/dev/null
in_ns "$NS_GW" ethtool -K g3 tso off gso off >/dev/null
in_ns "$NS_SRV" ethtool -K s0 gro off >/dev/null
in_ns "$NS_SRV" iptables -t raw -A PREROUTING -p tcp --dport 7101 -m statistic --mode random --probability 0.01 -j DROP
dropped() { in_ns "$NS_SRV" iptables -t raw -nvxL PREROUTING | awk '/statistic/ { print $1 }'; }
lossy_uploads() {  # lossy_uploads LABEL: RUNS uploads; sets secs, rtos and lost
  local t0 d0 t
  t0=$(timeouts) d0=$(dropped)
  t=$(for ((r = 0; r < RUNS; r++)); do upload; done)
  secs=$(median <<<"$t")
  rtos=$(( $(timeouts) - t0 )) lost=$(( $(dropped) - d0 ))
  log "$1: $RUNS uploads of $MB MB at 1% loss: median ${secs}s ($(tr '\n' ' ' <<<"$t")), $lost segments lost, $rtos retransmission timeouts"
}
lossy_uploads "through syngate"
gw_secs=$secs gw_rtos=$rtos gw_lost=$lost
kill "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
in_ns "$NS_GW" "$SYNGATE_BIN" rules down --config "$LAB_DIR/syngate.toml" >/dev/null
lossy_uploads "no gateway"
direct_secs=$secs direct_rtos=$rtos direct_lost=$lost
# The kernel's SYNPROXY as deployments configure it (--sack-perm): a measurement beside, not
# asserted. It promises what its rule says, whatever the backend has.
# Once per CI run (the NFQUEUE variant): the XDP variant would measure the same SYNPROXY again.
versus=""
if [[ ${XDP_MODE:-off} == off ]]; then
  synproxy_up 7101 g1
  # Its client, promised SACK, recovers by timeouts alone, which back off: a run of losses can
  # stall it past the client's 20 s socket timeout (seen once in the root suite).
  UPLOAD_MAY_STALL=1 lossy_uploads "kernel SYNPROXY (--sack-perm)"
  (( $(synproxy_syns) >= RUNS )) || fail "SYNPROXY answered no SYN: the comparison did not run through it"
  versus=", $rtos for $lost through SYNPROXY (median ${secs}s)"
fi
secs=$direct_secs rtos=$direct_rtos lost=$direct_lost
# A client promised SACK recovers by timeouts alone: measured, about half the lost segments cost
# one (the rest are covered by a timeout already running). One that negotiated what the backend
# has recovers most by fast retransmit: measured, 6-16% through syngate or with no gateway.
(( gw_lost > 0 )) || fail "no segment was lost through syngate: the loss was not applied"
(( gw_rtos * 100 <= 30 * gw_lost )) ||
  fail "through syngate $gw_rtos retransmission timeouts for $gw_lost lost segments (more than 30%; $rtos for $lost with no gateway): clients wait on timeouts"
pass "uploads at 1% loss to a backend without SACK: $gw_rtos retransmission timeouts for $gw_lost lost segments through syngate (median ${gw_secs}s), $rtos for $lost with no gateway (median ${secs}s)$versus"
