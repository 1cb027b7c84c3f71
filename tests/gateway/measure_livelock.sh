#!/usr/bin/env bash
# Measurement (not a ctest): does syngate keep serving when it shares a CPU with the flood's
# softirq? On veth the receive path of the flood runs on the flooding CPU, so pinning the flood
# and syngate's workers to the same CPU reproduces a shared-core gateway.
#   measure_livelock.sh SYNGATE SYNFLOOD [seconds] [rate]
# Prints, per placement: spoofed SYNs offered, cookies sent, kernel queue drops, legit success.
source "$(dirname "$0")/lib.sh"
lab_init "$1"
SYNFLOOD=${2:?synflood binary}
SECS=${3:-5}
RATE=${4:-0}
lab_up
start_nginx

run_case() {  # run_case LABEL SYN_CPU FLOW_CPU FLOOD_CPU [extra gateway toml]
  local label=$1 syn=$2 flow=$3 fcpu=$4
  write_config "syn_cpus = [$syn]
flow_cpus = [$flow]
${5:-}"
  rm -f "$LAB_DIR/syngate.log"
  start_syngate
  cli_curl http://10.10.3.2/ >/dev/null || fail "$label: warm-up failed"
  local c0 q0 u0
  c0=$(metric_sum syngate_cookies_sent_total); q0=$(metric_sum syngate_queue_dropped_total); u0=$(metric_sum syngate_queue_user_dropped_total)
  (
    ok=0 total=0 lat=0 end=$((SECONDS + SECS))
    while (( SECONDS < end )); do
      total=$((total + 1))
      t=$(in_ns "$NS_CLI" curl -s -o /dev/null --max-time 3 -w '%{time_total}' http://10.10.3.2/ 2>/dev/null) && ok=$((ok + 1))
    done
    echo "$ok $total"
  ) > "$LAB_DIR/legit.out" &
  local lp=$!
  in_ns "$NS_ATK" timeout $((SECS + 10)) taskset -c "$fcpu" "$SYNFLOOD" syn --target 10.10.3.2:80 --rate "$RATE" \
    --duration "$SECS" --count 50000000 > "$LAB_DIR/flood.out" 2>&1 || true
  wait $lp || true
  local ok total sent
  read -r ok total < "$LAB_DIR/legit.out"
  sent=$(grep -o 'sent [0-9]* in [0-9.]* s = [0-9]* pps' "$LAB_DIR/flood.out" || true)
  echo "$label | flood: $sent | cookies $(( ($(metric_sum syngate_cookies_sent_total) - c0) / SECS ))/s | queue drops $(( $(metric_sum syngate_queue_dropped_total) - q0 )) | socket drops $(( $(metric_sum syngate_queue_user_dropped_total) - u0 )) | legit $ok/$total"
  kill -TERM "$SYNGATE_PID"; wait "$SYNGATE_PID" || true
}

run_case "separate CPUs (flood cpu0, syngate cpu1)" 1 1 0
run_case "shared CPU   (flood cpu0, syngate cpu0)" 0 0 0
run_case "shared CPU, batch 256, SYN maxlen 1024" 0 0 0 "batch_size = 256
syn_queue_maxlen = 1024"
run_case "split: SYN worker on flood cpu0, flow worker cpu1" 0 1 0
