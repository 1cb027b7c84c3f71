#!/usr/bin/env bash
# The secrets file broken at a reload (SIGHUP): unreadable (a directory, a FIFO, group-readable),
# truncated (half of it, empty) or replaced with garbage. Each time syngate keeps the keys it runs
# with (the secrets generation does not move, cookies it handed out before still open connections,
# new clients are served), refuses the reload, says why in the log and counts it in
# syngate_reloads_total{result="failed"}. The good file back: the next reload is done, same keys.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up
start_nginx
write_config
start_syngate
secrets=$LAB_DIR/secrets
cp -p "$secrets" "$LAB_DIR/secrets.good"
gen=$(metric_sum syngate_cookie_secrets_generation)
cli_curl http://10.10.3.2/ >/dev/null || fail "baseline request failed"

# broken NAME WHY_REGEX: the file is broken already; SIGHUP must be refused with WHY_REGEX.
broken() {
  local name=$1 why=$2 before failed i
  before=$(grep -c "reload failed" "$LAB_DIR/syngate.log" || true)
  failed=$(metric_sum syngate_reloads_total 'result="failed"')
  kill -HUP "$SYNGATE_PID"
  for i in $(seq 100); do
    (( $(grep -c "reload failed" "$LAB_DIR/syngate.log" || true) > before )) && break
    sleep 0.05
  done
  local line
  line=$(grep "reload failed" "$LAB_DIR/syngate.log" | tail -1)
  (( $(grep -c "reload failed" "$LAB_DIR/syngate.log" || true) > before )) ||
    fail "$name: no refused reload logged within 5 s: $(tail -3 "$LAB_DIR/syngate.log")"
  [[ $line == *"$secrets"* && $line =~ $why ]] || fail "$name: the log does not say why: $line"
  kill -0 "$SYNGATE_PID" || fail "$name: syngate died"
  (( $(metric_sum syngate_cookie_secrets_generation) == gen )) || fail "$name: the secrets changed"
  (( $(metric_sum syngate_reloads_total 'result="failed"') == failed + 1 )) || fail "$name: failed reload not counted"
  for i in 1 2 3; do cli_curl http://10.10.3.2/ >/dev/null || fail "$name: request $i after the refused reload failed"; done
  log "$name: ${line#*reload failed, keeping the running configuration: }"
  rm -rf "$secrets"
}

rm -f "$secrets"; mkdir "$secrets"; broken directory "not a regular file"
mkfifo -m 600 "$secrets"; broken fifo "not a regular file"
cp -p "$LAB_DIR/secrets.good" "$secrets"; chmod 644 "$secrets"; broken group-readable "mode 0644"
head -c $(( $(stat -c %s "$LAB_DIR/secrets.good") / 2 )) "$LAB_DIR/secrets.good" > "$secrets"; chmod 600 "$secrets"
broken truncated "."
: > "$secrets"; chmod 600 "$secrets"; broken empty "."
head -c 300 /dev/urandom > "$secrets"; chmod 600 "$secrets"; broken garbage "."

# The good file back: the reload is done and the keys are the same ones.
cp -p "$LAB_DIR/secrets.good" "$secrets"
reload
(( $(metric_sum syngate_cookie_secrets_generation) == gen )) || fail "the good file back changed the generation"
cli_curl http://10.10.3.2/ >/dev/null || fail "request after the good file came back failed"
pass "secrets file unreadable, truncated or garbage at a reload: refused and logged, generation $gen kept, clients served"
