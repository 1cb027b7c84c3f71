#!/usr/bin/env bash
# `syngate status` against a real syngate in the namespace lab (tests/gateway/lib.sh): DOWN with
# exit 1 before the daemon runs; UP during a bounded spoofed SYN flood (198.18.0.0/15) with the
# cookie rate, the workers, the flows a client left and their table use; --watch redraws; exit 3
# for an endpoint that is not syngate, 2 for a configuration without metrics, 1 again after stop.
#   status_test.sh SYNGATE [SYNFLOOD]
source "$(dirname "$0")/../gateway/lib.sh"
source "$(dirname "$0")/flood.sh"
lab_init "$1"
SYNFLOOD=${2:-}
lab_up
start_nginx
write_config "flow_queues = 2" "max_flows = 1000"
cfg=$LAB_DIR/syngate.toml
status() { in_ns "$NS_GW" "$SYNGATE_BIN" status --config "$cfg" "$@"; }

set +e
out=$(status 2>&1); rc=$?
set -e
log "before start (exit $rc): $out"
[[ $rc == 1 ]] || fail "status without a daemon exited $rc, want 1"
grep -q "DOWN" <<<"$out" || fail "no DOWN in: $out"

start_syngate
for i in $(seq 25); do cli_curl http://10.10.3.2/ >/dev/null || fail "request $i failed"; done

# A bounded flood: 6000 SYNs/s for 6 s from the spoofed range.
spoofed_syn_flood 6000 6 > "$LAB_DIR/flood.out" 2>&1 &
flood_pid=$!
track_pid "$flood_pid"
sleep 1.5

status --json > "$LAB_DIR/status.json" || fail "status --json exited $? during the flood: $(cat "$LAB_DIR/status.json")"
status > "$LAB_DIR/status.txt" || fail "status exited $? during the flood"
cat "$LAB_DIR/status.txt"
python3 - "$LAB_DIR/status.json" <<'PY' || fail "status --json does not match the flood"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["up"] is True, j
assert 0.9 <= j["interval_s"] <= 1.5, j["interval_s"]
kinds = [w["kind"] for w in j["workers"]]
assert kinds == ["syn", "flow", "flow"], kinds
syn = j["total"]["syn_rate"]
assert 3000 <= syn <= 7000, "SYN rate %s for a 6000/s flood" % syn
assert j["total"]["cookies_sent_rate"] >= 0.95 * syn, j["total"]
assert j["total"]["cookies_valid_rate"] == 0, j["total"]
# the 25 requests left lingering flows (linger_s) in a 1000-entry table per flow worker
active = j["total"]["flows_active"]
assert active == 25, active
assert abs(j["total"]["table_use"] - active / 2000) < 1e-9, j["total"]
assert j["drops"]["syn_answered"]["rate"] >= 0.95 * syn, j["drops"]
assert 0 < j["uptime_s"] < 60, j["uptime_s"]
assert [q["queue"] for q in j["queues"]] == ["0", "8", "9"], j["queues"]
assert j["xdp"] is None
print("json ok: %.0f SYN/s, %.0f cookies/s, %d flows, table use %.4f" % (syn, j["total"]["cookies_sent_rate"], active, j["total"]["table_use"]))
PY
grep -q "UP, uptime" "$LAB_DIR/status.txt" || fail "text screen lacks UP"
grep -q "syn_answered (normal)" "$LAB_DIR/status.txt" || fail "text screen lacks the drop reasons"

# --watch 1 for 3.5 s: a first screen after 1 s, then one a second; SIGINT ends it with 0.
set +e
in_ns "$NS_GW" timeout --preserve-status -s INT 3.5 "$SYNGATE_BIN" status --config "$cfg" --watch 1 --json > "$LAB_DIR/watch.json"
rc=$?
set -e
screens=$(grep -c '"up":true' "$LAB_DIR/watch.json" || true)
log "--watch 1 for 3.5 s: $screens screens, exit $rc"
[[ $rc == 0 ]] || fail "--watch ended with exit $rc"
(( screens >= 2 && screens <= 4 )) || fail "--watch 1 drew $screens screens in 3.5 s"
wait "$flood_pid" || true

# Not syngate: an HTTP server that answers 404, then one that serves other metrics.
mkdir -p "$LAB_DIR/other"
echo "node_load1 0.5" > "$LAB_DIR/other/metrics"
BG_LOG=$LAB_DIR/http.log bg "$NS_GW" python3 -m http.server --bind 127.0.0.1 --directory "$LAB_DIR/other" 9555
wait_listen "$NS_GW" 9555 || fail "python http.server did not start"
sed 's/^\[gateway\]$/[gateway]\nmetrics_address = "127.0.0.1:9555"/' "$cfg" > "$LAB_DIR/other.toml"
set +e
out=$(in_ns "$NS_GW" "$SYNGATE_BIN" status --config "$LAB_DIR/other.toml" 2>&1); rc=$?
set -e
log "other metrics (exit $rc): $out"
[[ $rc == 3 ]] || fail "status against a non-syngate endpoint exited $rc, want 3"
sed 's/^\[gateway\]$/[gateway]\nmetrics_address = "off"/' "$cfg" > "$LAB_DIR/off.toml"
set +e
out=$(in_ns "$NS_GW" "$SYNGATE_BIN" status --config "$LAB_DIR/off.toml" 2>&1); rc=$?
set -e
log "metrics off (exit $rc): $out"
[[ $rc == 2 ]] || fail "status with metrics off exited $rc, want 2"

kill -TERM "$SYNGATE_PID"
wait_exit "$SYNGATE_PID" 5 || true
set +e
out=$(status 2>&1); rc=$?
set -e
log "after stop (exit $rc): $out"
[[ $rc == 1 ]] || fail "status after stop exited $rc, want 1"
pass "status: DOWN/1 before and after, UP during the flood with its SYN and cookie rates, --watch, exits 2 and 3"
