#!/usr/bin/env bash
# How long a restart takes over a full flow table: the [engine] defaults (262144 flows per
# queue, default queues), every entry an established flow, saved by a syngate that was killed.
# Prints the time from exec to "syngate running" for a restart in place (same config) and for
# one that imports every flow (another max_flows), best of RUNS. MAX_FLOWS=N sizes the table
# (default 262144); FLOWS=N fills it (default 262144).
# state_dir is a tmpfs, as the default /run is, mounted in a private mount namespace.
#   restart_time.sh SYNGATE FLOW_TABLE_FILL [RUNS]
if [[ -z ${RESTART_TIME_PRIVATE:-} && $(id -u) == 0 ]]; then
  RESTART_TIME_PRIVATE=1 exec unshare -m --propagation private bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
lab_init "$1"
mkdir -p "$LAB_DIR/state"
mount -t tmpfs -o size=4g,mode=0700 syngate-state "$LAB_DIR/state"
FILL=${2:?usage: restart_time.sh SYNGATE FLOW_TABLE_FILL [RUNS]}
RUNS=${3:-3}
MAX_FLOWS=${MAX_FLOWS:-262144}
FLOWS=${FLOWS:-262144}
lab_up

timed_start() {  # START_MS: the milliseconds from exec to "syngate running"
  local before t0 t1
  before=$(grep -c "syngate running" "$LAB_DIR/syngate.log" 2>/dev/null || true)
  t0=$(date +%s%N)
  BG_LOG=$LAB_DIR/syngate.log bg "$NS_GW" "$SYNGATE_BIN" run --config "$LAB_DIR/syngate.toml"
  SYNGATE_PID=$BG_PID
  for _ in $(seq 6000); do
    (( $(grep -c "syngate running" "$LAB_DIR/syngate.log" 2>/dev/null || true) > ${before:-0} )) && break
    kill -0 "$SYNGATE_PID" 2>/dev/null || fail "syngate exited: $(tail -3 "$LAB_DIR/syngate.log")"
    sleep 0.01
  done
  t1=$(date +%s%N)
  START_MS=$(((t1 - t0) / 1000000))
}
stop() { kill -TERM "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true; }

write_config "" "max_flows = $MAX_FLOWS"
in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" >/dev/null
timed_start
stop
table=$(find "$LAB_DIR/state" -name flows-q8.bin -type f)
[[ -n $table ]] || fail "no table file after a first run"

measure() {  # measure LABEL FLOWS [MAX_FLOWS]: best of RUNS restarts over a freshly filled table
  local best=999999 ms i size
  for ((i = 0; i < RUNS; i++)); do
    write_config "" "max_flows = $MAX_FLOWS"
    "$FILL" "$table" "$2" "$MAX_FLOWS" >/dev/null || fail "fill failed"
    size=$(stat -c %s "$table")
    write_config "" "max_flows = ${3:-$MAX_FLOWS}"
    timed_start
    ms=$START_MS
    (( $2 == 0 )) || grep -qE "(took over|imported) $2 flows" <(tail -5 "$LAB_DIR/syngate.log") ||
      fail "$1: the full table was not taken over: $(tail -4 "$LAB_DIR/syngate.log")"
    kill -KILL "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
    (( ms < best )) && best=$ms
  done
  log "$1: $size byte table, $2 flows: restart $best ms (best of $RUNS)"
}
measure "in place, empty table" 0
measure "in place" "$FLOWS"
measure "import into another size" "$FLOWS" "$((MAX_FLOWS + 4096))"
pass "measured"
