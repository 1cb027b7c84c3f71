#!/usr/bin/env bash
# 100k connections come and go with the kernel path on (issue 23, "State stays right"): ApacheBench,
# a connection per request, through syngate with gateway.kernel_path = "auto"; afterwards (linger
# 1 s) the flow table and the tc flow map are both back to empty, and every connection succeeded.
# Then a client that closes first (redis-benchmark -k 0: the client's FIN, the server's FIN, the
# client's last ACK, all translated in tc): its last ACKs stay in the kernel, and the flows still
# end by the engine's merge of what tc recorded. A half-closed flow's idle timer (closing_idle_s)
# is longer than the wait for empty tables, so the closes must come from tc's records.
# With `open` (gateway.tc_open_flows, the XDP fast path on) the tc program also takes the cookie
# ACKs, those of a client back on a port whose old flow lingers included: the connections then
# never cross a queue, and the engine, which hears of each flow only from the programs' reports,
# must still end every one. Freeing the old flow of a reused pair must leave what the new
# connection wrote there, however late the engine frees it (the release program, tc_abi.h): before,
# a busy CPU between a read and a delete let the new flow's entries go, its close was never merged,
# and the pair's later connections were refused as pair_in_use (CI, 1 run in 3).
# With SYNACK_WINDOW=0 in the environment (engine.synack_window = 0, kernel SYNPROXY's way) the
# clients wait for their backend's answer before they send: no request waits in the engine.
#   kernel_churn_test.sh SYNGATE [CONNECTIONS] [open]
source "$(dirname "$0")/lib.sh"
lab_init "$1"
N=${2:-100000}
OPEN=${3:-}
GATEWAY_KEYS="tc_open_flows = false"
if [[ $OPEN == open ]]; then
  GATEWAY_KEYS="tc_open_flows = true"
  export XDP_MODE=auto
fi
lab_up
start_nginx 'listen 10.10.3.2:80 backlog=4096;'
bg "$NS_SRV" redis-server --bind 10.10.3.2 --port 6379 --save "" --appendonly no --protected-mode no \
  --tcp-backlog 511 --dir "$LAB_DIR"
wait_listen "$NS_SRV" 6379 || fail "redis-server did not start"
# One client at ~10k connections/s: the backscatter budget (per /24) would hold it back.
KERNEL_PATH=auto write_config "$GATEWAY_KEYS" "linger_s = 1
closing_idle_s = 30
max_flows = 65536
${SYNACK_WINDOW:+synack_window = $SYNACK_WINDOW}" "[[service]]
address = \"10.10.3.2\"
port = 6379

[policy]
synack_per_prefix_per_s = 0"
start_syngate
grep -q "tc: translating established flows" "$LAB_DIR/syngate.log" || fail "the kernel path did not attach"
if [[ $OPEN == open ]] && (( $(metric_sum syngate_xdp_enabled) != 1 )); then
  fail "the XDP fast path did not attach (its flow map's keys are checked below)"
fi
# The client's side of the first SYN-ACKs: the window they announce.
if [[ -n ${SYNACK_WINDOW:-} ]]; then
  ip netns exec "$NS_CLI" timeout 20 tcpdump -i c0 -nn -l -c 5 'tcp[13] == 18' >"$LAB_DIR/synacks.txt" \
    2>"$LAB_DIR/tcpdump.err" &
  CAP_PID=$!
  track_pid "$CAP_PID"
  for _ in $(seq 100); do grep -q "listening on" "$LAB_DIR/tcpdump.err" && break; sleep 0.05; done
  grep -q "listening on" "$LAB_DIR/tcpdump.err" || fail "tcpdump did not start: $(cat "$LAB_DIR/tcpdump.err")"
fi
t0=$(date +%s)
in_ns "$NS_CLI" timeout 80 ab -q -n "$N" -c 32 -r http://10.10.3.2/ > "$LAB_DIR/ab.out" 2>&1 || true
t1=$(date +%s)
complete=$(awk '/^Complete requests:/ { print $3 }' "$LAB_DIR/ab.out")
failed=$(awk '/^Failed requests:/ { print $3 }' "$LAB_DIR/ab.out")
log "ab: $complete complete, $failed failed in $((t1 - t0)) s ($(awk '/^Requests per second:/ { print $4 }' "$LAB_DIR/ab.out")/s)"
[[ $complete == "$N" && $failed == 0 ]] || fail "ab: $(tail -15 "$LAB_DIR/ab.out")"
early=$(metric_sum syngate_early_data_buffered_total)
log "requests that reached the gateway before their backend's SYN-ACK (held by the engine): $early"
if [[ -n ${SYNACK_WINDOW:-} ]]; then
  wait "$CAP_PID" 2>/dev/null || true
  untrack_pid "$CAP_PID"
  wins=$(grep -o 'win [0-9]*' "$LAB_DIR/synacks.txt" | sort -u | tr '\n' ' ')
  [[ $wins == "win $SYNACK_WINDOW " ]] || fail "the clients' SYN-ACKs announced: ${wins:-nothing captured}"
fi
if [[ ${SYNACK_WINDOW:-} == 0 ]]; then
  # Each client waited for the window update sent with its backend's answer.
  (( early == 0 )) || fail "$early requests waited in the engine with synack_window = 0"
fi
handed=$(metric_sum syngate_tc_flows_handed_over_total)
(( handed >= N * 9 / 10 )) || fail "only $handed of $N flows handed to the kernel path"
opened=$(settled_metric syngate_kernel_opened_total)
if [[ $OPEN == open ]]; then
  # One client at 10k connections/s comes back to a port every second or two, while its old flow
  # lingers (linger_s = 1): those cookie ACKs meet the old flow's closed entries and are opened by
  # the program too (before, they went to the engine: 27% opened in tc), the engine freeing the
  # old flow (flows_reused).
  reused=$(metric_sum syngate_flows_reused_total)
  log "opened by tc: $opened of $N; ports reused over a lingering flow: $reused; cookie ACKs the program left to the engine: $(metric_sum syngate_tc_packets_total open_punted)"
  (( opened >= N * 9 / 10 )) || fail "only $opened of $N flows opened by the tc program (left to the engine:" \
    "$(metric_sum syngate_tc_packets_total open_punted); events lost: $(metric_sum syngate_tc_packets_total events_lost);" \
    "reused: $reused)"
  (( $(metric_sum syngate_kernel_opened_refused_total) == 0 )) || fail "the engine refused flows tc opened"
else
  (( opened == 0 )) || fail "$opened flows opened by tc with gateway.tc_open_flows off"
fi
expect_empty_tables "flows"
pass "$N connections through the kernel path ($handed handed over, $opened opened by tc): flow table and tc flow map${OPEN:+ and XDP flow map} back to empty"

# The client closes first.
R=$(( N / 5 ))
punted0=$(metric_sum syngate_tc_packets_total punted)
handed0=$(metric_sum syngate_tc_flows_handed_over_total)
in_ns "$NS_CLI" timeout 60 redis-benchmark -h 10.10.3.2 -p 6379 -k 0 -c 32 -n "$R" -t get --csv \
  > "$LAB_DIR/redis.out" 2>&1 || fail "redis-benchmark: $(tail -5 "$LAB_DIR/redis.out")"
grep -q '"GET"' "$LAB_DIR/redis.out" || fail "redis-benchmark: $(tail -5 "$LAB_DIR/redis.out")"
punted=$(( $(metric_sum syngate_tc_packets_total punted) - punted0 ))
handed=$(( $(metric_sum syngate_tc_flows_handed_over_total) - handed0 ))
(( handed >= R * 9 / 10 )) || fail "only $handed of $R client-first flows handed to the kernel path"
# Before, every last ACK was punted (one a connection).
(( punted < R / 10 )) || fail "$punted of $R client-first connections' segments punted to the queue (their last ACKs?)"
expect_empty_tables "client-first flows"
(( $(metric_sum syngate_tc_release_failures_total) == 0 )) || fail "flow ends whose release program could not run"
pass "$R client-first connections ($handed handed over, $punted segments punted): flow table and tc flow map back to empty"
