#!/usr/bin/env bash
# gateway.flow_worker_rt_priority: while the fast path is attached, the flow workers run
# SCHED_FIFO at that priority (10 by default); without it (floods then reach the queues) and with
# the key at 0 they stay on the normal scheduler. The SYN workers always do, at their nice (a flood
# keeps them busy). Requests pass through the gateway in every case.
#   worker_sched_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
# A machine that gives no process a real-time policy (no CAP_SYS_NICE, a container without an RT
# budget) cannot show it; syngate's warning for that case is the operator's.
chrt -f 1 true 2>/dev/null || { echo "SKIP: this machine refuses SCHED_FIFO (chrt -f 1 true)"; exit 77; }
lab_init "$1"
lab_up
start_nginx

# run_case XDP_MODE GATEWAY_LINE WANT_POLICY WANT_PRIORITY: start syngate so, check both workers'
# policies (thread_sched) and the log's word for it, pass 5 requests, stop it.
run_case() {
  local what="[xdp] mode $1${2:+, $2}" flow syn flow_policy flow_prio syn_policy syn_nice
  XDP_MODE=$1 write_config "$2"
  : > "$LAB_DIR/syngate.log"
  start_syngate
  for i in $(seq 5); do cli_curl http://10.10.3.2/ >/dev/null || fail "$what: request $i through the gateway failed"; done
  flow=$(thread_sched "$SYNGATE_PID" flow-q8)
  syn=$(thread_sched "$SYNGATE_PID" syn-q0)
  [[ -n $flow && -n $syn ]] || fail "$what: no flow-q8 or syn-q0 thread in syngate ($flow / $syn)"
  read -r flow_policy flow_prio _ <<<"$flow"
  read -r syn_policy _ syn_nice <<<"$syn"
  [[ $flow_policy == "$3" && $flow_prio == "$4" ]] ||
    fail "$what: flow-q8 runs policy $flow_policy priority $flow_prio, want policy $3 priority $4"
  [[ $syn_policy == 0 && $syn_nice == 10 ]] ||
    fail "$what: syn-q0 runs policy $syn_policy nice $syn_nice, want SCHED_OTHER (0) at nice 10"
  if grep -q "cannot run SCHED_FIFO" "$LAB_DIR/syngate.log"; then
    fail "$what: syngate could not set the policy: $(grep 'cannot run SCHED_FIFO' "$LAB_DIR/syngate.log")"
  fi
  if [[ $3 == 1 ]]; then
    grep -q "flow workers: SCHED_FIFO at priority $4" "$LAB_DIR/syngate.log" ||
      fail "$what: the log does not say the flow workers run SCHED_FIFO: $(grep 'flow workers' "$LAB_DIR/syngate.log")"
  fi
  kill "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
  SYNGATE_PID=""
  pass "$what: flow-q8 policy $3 priority $4, syn-q0 SCHED_OTHER at nice 10, 5 requests through the gateway"
}

run_case auto "" 1 10                             # the default, with the fast path (tc on veth)
run_case auto "flow_worker_rt_priority = 7" 1 7
run_case off "" 0 0                               # no fast path: the forged ACKs would reach it
run_case auto "flow_worker_rt_priority = 0" 0 0
