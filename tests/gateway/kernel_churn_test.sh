#!/usr/bin/env bash
# 100k connections come and go with the kernel path on (issue 23, "State stays right"): ApacheBench,
# a connection per request, through syngate with gateway.kernel_path = "auto"; afterwards (linger
# 1 s) the flow table and the tc flow map are both back to empty, and every connection succeeded.
#   kernel_churn_test.sh SYNGATE [CONNECTIONS]
source "$(dirname "$0")/lib.sh"
lab_init "$1"
N=${2:-100000}
lab_up
start_nginx 'listen 10.10.3.2:80 backlog=4096;'
# One client at ~10k connections/s: the backscatter budget (per /24) would hold it back.
KERNEL_PATH=auto write_config "" "linger_s = 1
closing_idle_s = 2
max_flows = 65536" "[policy]
synack_per_prefix_per_s = 0"
start_syngate
grep -q "tc: translating established flows" "$LAB_DIR/syngate.log" || fail "the kernel path did not attach"
t0=$(date +%s)
in_ns "$NS_CLI" timeout 80 ab -q -n "$N" -c 32 -r http://10.10.3.2/ > "$LAB_DIR/ab.out" 2>&1 || true
t1=$(date +%s)
complete=$(awk '/^Complete requests:/ { print $3 }' "$LAB_DIR/ab.out")
failed=$(awk '/^Failed requests:/ { print $3 }' "$LAB_DIR/ab.out")
log "ab: $complete complete, $failed failed in $((t1 - t0)) s ($(awk '/^Requests per second:/ { print $4 }' "$LAB_DIR/ab.out")/s)"
[[ $complete == "$N" && $failed == 0 ]] || fail "ab: $(tail -15 "$LAB_DIR/ab.out")"
handed=$(metric_sum syngate_tc_flows_handed_over_total)
(( handed >= N * 9 / 10 )) || fail "only $handed of $N flows handed to the kernel path"
for _ in $(seq 100); do
  active=$(metric_sum syngate_flows_active)
  entries=$(metric_sum syngate_tc_flow_entries)
  (( active == 0 && entries == 0 )) && break
  sleep 0.1
done
(( active == 0 )) || fail "$active flows still in the table 10 s after the last connection"
(( entries == 0 )) || fail "$entries tc flow map entries left 10 s after the last connection"
pass "$N connections through the kernel path ($handed handed over): flow table and tc flow map back to empty"
