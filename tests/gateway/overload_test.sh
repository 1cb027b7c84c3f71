#!/usr/bin/env bash
# Overload past what the queues hold, with fail_open false and true: a SYN queue of 16
# (gateway.syn_queue_maxlen) and syngate stopped (SIGSTOP) while 200 spoofed SYNs arrive, so
# exactly 16 wait in the queue and 184 find it full. Measured: what the backend receives (a
# counting rule in srv), what syngate counts (syngate_queue_dropped_total, SYNs answered once it
# runs again).
#   fail_open = false: the 184 are dropped by the kernel and counted as queue drops; none reaches
#                      the backend.
#   fail_open = true:  the kernel accepts the 184 unexamined (NFQA_CFG_F_FAIL_OPEN): they reach the
#                      backend, and no syngate counter sees them.
# Second argument "synproxy": the kernel's SYNPROXY instead (measured and printed for
# docs/faults.md, nothing asserted): it has no queue to fill, so the same 200 SYNs, then bursts
# as fast as atk can send them; what reaches the backend, what SYNPROXY counted, how many
# SYN-ACKs came back to atk, what the CPUs' backlogs dropped, and a client's request meanwhile.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up
start_nginx
count_spoofed_at_backend

if [[ ${2:-} == synproxy ]]; then
  synproxy_up 80 g1 g2
  cli_curl http://10.10.3.2/ >/dev/null || fail "baseline request through SYNPROXY failed"
  # SYN-ACKs back to the spoofed range: atk's backscatter DROP rule counts them
  backscatter() { in_ns "$NS_ATK" iptables -t raw -nvxL PREROUTING | awk '/198.18.0.0\/15/ { print $1 }'; }
  # packets the CPUs' input backlogs dropped (host-wide: /proc/net/softnet_stat is not per namespace)
  softnet_drops() { local n=0 _p d _r; while read -r _p d _r; do n=$((n + 16#$d)); done </proc/net/softnet_stat; echo "$n"; }
  for count in 200 20000 100000; do
    b0=$(backend_syns); s0=$(synproxy_syns); a0=$(backscatter); n0=$(softnet_drops)
    t0=$(date +%s.%N)
    spoofed_syns "$NS_ATK" "$count" &
    flood=$!
    sleep 0.2
    t1=$(date +%s.%N)
    req=fail
    cli_curl -o /dev/null http://10.10.3.2/ 2>/dev/null && req=ok
    t2=$(date +%s.%N)
    wait "$flood"
    t3=$(date +%s.%N)
    sleep 0.5
    echo "RESULT synproxy burst=$count sent_in=$(calc "$t3 - $t0")s backend=$(( $(backend_syns) - b0 ))" \
      "synproxy_syn_received=$(( $(synproxy_syns) - s0 )) synacks_to_atk=$(( $(backscatter) - a0 ))" \
      "softnet_dropped=$(( $(softnet_drops) - n0 )) request_during=$req in $(calc "$t2 - $t1")s"
  done
  cli_curl http://10.10.3.2/ >/dev/null || fail "request after the bursts failed"
  pass "SYNPROXY measured (no bound asserted)"
  exit 0
fi

results=()
for open in false true; do
  write_config "fail_open = $open
syn_queue_maxlen = 16"
  start_syngate
  cli_curl http://10.10.3.2/ >/dev/null || fail "baseline request failed (fail_open = $open)"
  b0=$(backend_syns); d0=$(metric_sum syngate_queue_dropped_total); s0=$(metric_sum syngate_syn_received_total)
  kill -STOP "$SYNGATE_PID"
  spoofed_syns "$NS_ATK" 200
  sleep 0.3
  kill -CONT "$SYNGATE_PID"
  sleep 1
  backend=$(( $(backend_syns) - b0 )); dropped=$(( $(metric_sum syngate_queue_dropped_total) - d0 ))
  seen=$(( $(metric_sum syngate_syn_received_total) - s0 ))
  cli_curl http://10.10.3.2/ >/dev/null || fail "request after the overload failed (fail_open = $open)"
  results+=("fail_open=$open: backend $backend, queue drops $dropped, syngate saw $seen")
  log "fail_open = $open: 200 SYNs at a stopped syngate (queue 16): $backend reached the backend, $dropped counted as queue drops, $seen handled by syngate"
  if [[ $open == false ]]; then
    (( backend == 0 )) || fail "fail-closed: $backend spoofed SYNs reached the backend"
    (( dropped == 200 - seen && seen <= 16 && seen > 0 )) || fail "fail-closed: $dropped dropped, $seen seen, want 200 in all, at most 16 seen"
  else
    (( backend == 200 - seen && seen <= 16 && seen > 0 )) || fail "fail-open: $backend reached the backend, $seen seen, want 200 in all"
    (( dropped == 0 )) || fail "fail-open: $dropped queue drops counted"
  fi
  kill -TERM "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
  in_ns "$NS_GW" "$SYNGATE_BIN" rules down --config "$LAB_DIR/syngate.toml" >/dev/null
done
pass "overload past the queue: ${results[*]}"
