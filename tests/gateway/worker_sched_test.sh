#!/usr/bin/env bash
# gateway.flow_worker_rt_priority: the flow workers run SCHED_FIFO at that priority, the SYN
# workers stay on the normal scheduler at their nice (a flood keeps them busy), and requests
# pass through the gateway as before.
#   worker_sched_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
# A machine that gives no process a real-time policy (no CAP_SYS_NICE, a container without an RT
# budget) cannot show it; syngate's warning for that case is the operator's.
chrt -f 1 true 2>/dev/null || { echo "SKIP: this machine refuses SCHED_FIFO (chrt -f 1 true)"; exit 77; }
lab_init "$1"
lab_up
start_nginx
write_config "flow_worker_rt_priority = 7"
start_syngate
for i in $(seq 5); do cli_curl http://10.10.3.2/ >/dev/null || fail "request $i through the gateway failed"; done

policy_of() {  # policy_of THREAD_NAME: "<policy> <rt priority> <nice>" from /proc (stat fields 41, 40, 19)
  local t
  for t in /proc/"$SYNGATE_PID"/task/*; do
    [[ $(cat "$t/comm" 2>/dev/null) == "$1" ]] || continue
    # comm may hold spaces or parentheses: the fields are counted after its closing parenthesis.
    sed 's/.*) //' "$t/stat" | awk '{ print $39, $38, $17 }'
    return
  done
}
flow=$(policy_of flow-q8)
syn=$(policy_of syn-q0)
[[ -n $flow && -n $syn ]] || fail "no flow-q8 or syn-q0 thread in syngate ($flow / $syn)"
read -r flow_policy flow_prio _ <<<"$flow"
read -r syn_policy _ syn_nice <<<"$syn"
# SCHED_OTHER 0, SCHED_FIFO 1 (sched.h)
[[ $flow_policy == 1 && $flow_prio == 7 ]] || fail "flow-q8 runs policy $flow_policy priority $flow_prio, want SCHED_FIFO (1) at 7"
[[ $syn_policy == 0 && $syn_nice == 10 ]] || fail "syn-q0 runs policy $syn_policy nice $syn_nice, want SCHED_OTHER (0) at nice 10"
grep -q "cannot run SCHED_FIFO" "$LAB_DIR/syngate.log" && fail "syngate could not set the policy: $(grep 'cannot run SCHED_FIFO' "$LAB_DIR/syngate.log")"
pass "flow-q8 SCHED_FIFO at 7, syn-q0 SCHED_OTHER at nice 10, 5 requests through the gateway"
