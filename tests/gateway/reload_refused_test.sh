#!/usr/bin/env bash
# A reload that cannot be applied whole changes nothing, and never takes the gateway down:
#   - a restart in place onto a secrets path in a missing directory is refused before stopping:
#     syngate keeps running on its old configuration, clients are served, `check` refuses it;
#   - likewise a 16 TiB early-data pool (more than RAM or state_dir can hold);
#   - a reload whose secrets file cannot be read applies none of it: its new deny list does not
#     drop the client (and once the file is readable, the same reload does).
#   reload_refused_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
start_nginx

write_config
start_syngate
served() { [[ $(CURL_TIMEOUT=${1:-5} cli_curl http://10.10.3.2/ 2>/dev/null) == "hello from srv" ]]; }
served || fail "no answer through syngate before any reload"
failed_reloads() { metric_sum syngate_reloads_total 'result="failed"'; }
starts() { grep -c "syngate running" "$LAB_DIR/syngate.log"; }
starts0=$(starts)

# refused_reload WHAT: SIGHUP, then expect one more failed reload, the same process, no restart.
refused_reload() {
  local before i
  before=$(failed_reloads)
  kill -HUP "$SYNGATE_PID"
  for ((i = 0; i < 100; i++)); do
    (( $(failed_reloads) > before )) && break
    kill -0 "$SYNGATE_PID" 2>/dev/null || fail "$1: syngate exited: $(tail -5 "$LAB_DIR/syngate.log")"
    sleep 0.05
  done
  (( $(failed_reloads) == before + 1 )) || fail "$1: no failed reload counted: $(tail -5 "$LAB_DIR/syngate.log")"
  sleep 0.5
  kill -0 "$SYNGATE_PID" 2>/dev/null || fail "$1: syngate exited: $(tail -5 "$LAB_DIR/syngate.log")"
  (( $(starts) == starts0 )) || fail "$1: syngate restarted"
  served || fail "$1: the client is no longer served"
}

log "SIGHUP: secret_file in a directory that does not exist (a restart in place)"
sed -i "s|^secret_file = .*|secret_file = \"$LAB_DIR/missing/secrets\"|" "$LAB_DIR/syngate.toml"
in_ns "$NS_GW" "$SYNGATE_BIN" check --config "$LAB_DIR/syngate.toml" > "$LAB_DIR/check.out" 2>&1 &&
  fail "check accepted a secrets path in a missing directory"
grep -q "gateway.secret_file" "$LAB_DIR/check.out" || fail "check did not name the key: $(cat "$LAB_DIR/check.out")"
refused_reload "missing secrets directory"
grep "reload failed" "$LAB_DIR/syngate.log" | tail -1 | grep -q "gateway.secret_file" ||
  fail "the log does not say why: $(tail -3 "$LAB_DIR/syngate.log")"
pass "a restart in place onto a secrets path in a missing directory is refused; syngate serves on"

log "SIGHUP: a 16 TiB early-data pool (a restart in place)"
write_config "" "early_data_bytes = 1048576
early_data_slots = 16777216"
in_ns "$NS_GW" "$SYNGATE_BIN" check --config "$LAB_DIR/syngate.toml" > "$LAB_DIR/check.out" 2>&1 &&
  fail "check accepted a 16 TiB early-data pool"
grep -q "engine.early_data_slots" "$LAB_DIR/check.out" || fail "check did not name the key: $(cat "$LAB_DIR/check.out")"
refused_reload "16 TiB early-data pool"
grep "reload failed" "$LAB_DIR/syngate.log" | tail -1 | grep -q "engine.early_data_slots" ||
  fail "the log does not say why: $(tail -3 "$LAB_DIR/syngate.log")"
pass "a restart in place onto a 16 TiB early-data pool is refused; syngate serves on ($(tail -1 "$LAB_DIR/check.out"))"

log "SIGHUP: a deny list for the client while the secrets file cannot be read"
write_config "" "" '[policy]
deny = ["10.10.1.0/24"]'
chmod 0644 "$LAB_DIR/secrets"  # refused: a secrets file must be 0600
refused_reload "unreadable secrets"
pass "a reload whose secrets read failed did not apply its deny list"

chmod 0600 "$LAB_DIR/secrets"
kill -HUP "$SYNGATE_PID"
for _ in $(seq 100); do (( $(grep -c "reload: done" "$LAB_DIR/syngate.log") > 0 )) && break; sleep 0.05; done
grep -q "reload: done" "$LAB_DIR/syngate.log" || fail "the readable reload was not applied: $(tail -3 "$LAB_DIR/syngate.log")"
sleep 0.3
served 3 && fail "the same deny list, applied, does not drop the client (the test proves nothing)"
pass "the same reload with a readable secrets file applies the deny list"
