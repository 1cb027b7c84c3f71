#!/usr/bin/env bash
# Faults: backend port closed -> the client gets a prompt RST; backend host down -> RST after the
# configured SYN retries; SIGHUP reloads (new secrets, connections keep working, a bad config is
# refused without stopping); kill -9 with the queue bypass follows the configured fail mode.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up
start_nginx
# 10.10.3.3 does not exist: the backend SYNs go unanswered.
write_config "" "backend_syn_retries = 2
backend_retry_initial_ms = 200" '[[service]]
address = "10.10.3.2"
port = 81
[[service]]
address = "10.10.3.3"
port = 80'
start_syngate

cli_curl http://10.10.3.2/ >/dev/null || fail "baseline request failed"

# curl_fail URL: runs a request that must fail; prints "exit-code seconds"
curl_fail() {
  local start rc=0
  start=$(date +%s.%N)
  CURL_TIMEOUT=10 cli_curl -o /dev/null "$1" 2>/dev/null || rc=$?
  echo "$rc $(calc "$(date +%s.%N) - $start")"
}

read -r rc secs < <(curl_fail http://10.10.3.2:81/)
# 56: connection reset after the (cookie) handshake, while curl waits for the answer; 55: the same
# reset, arrived before curl sent its request (ECONNRESET on send: the backend's RST can beat a
# busy client to it); 7: refused. 28 would be a timeout.
[[ $rc == 56 || $rc == 55 || $rc == 7 ]] || fail "closed backend port: curl exit $rc after ${secs}s, want a reset"
fcmp "$secs < 1" || fail "closed backend port: reset took ${secs}s"
pass "closed backend port: client reset after ${secs}s (curl exit $rc)"

read -r rc secs < <(curl_fail http://10.10.3.3/)
[[ $rc == 56 || $rc == 55 || $rc == 7 ]] || fail "backend down: curl exit $rc after ${secs}s, want a reset"
# 200 + 400 + 800 ms of retries
fcmp "$secs > 1.2 && $secs < 4" || fail "backend down: reset after ${secs}s, want ~1.4 s"
retries=$(metric_sum syngate_backend_syn_retries_total)
(( retries >= 2 )) || fail "backend down: $retries backend SYN retries counted"
pass "backend down: client reset after ${secs}s, $retries backend SYN retries"

# SIGHUP: replace the secrets, raise the log level; new connections keep working.
gen=$(metric_sum syngate_cookie_secrets_generation)
rm -f "$LAB_DIR/secrets"
sed -i 's/^stats_interval_s = 0/stats_interval_s = 0\nlog_level = "debug"/' "$LAB_DIR/syngate.toml"
kill -HUP "$SYNGATE_PID"
for i in $(seq 40); do grep -q "reload: done" "$LAB_DIR/syngate.log" && break; sleep 0.05; done
grep -q "reload: done" "$LAB_DIR/syngate.log" || fail "no reload after SIGHUP"
gen2=$(metric_sum syngate_cookie_secrets_generation)
(( gen2 > gen )) || fail "secrets generation $gen -> $gen2 after replacing the file"
[[ -f $LAB_DIR/secrets && $(stat -c %a "$LAB_DIR/secrets") == 600 ]] || fail "new secrets file missing or not 0600"
for i in $(seq 20); do cli_curl http://10.10.3.2/ >/dev/null || fail "request $i after reload failed"; done
sed -i 's/^\[gateway\]$/[gateway]\nsyn_queues = 0/' "$LAB_DIR/syngate.toml"
kill -HUP "$SYNGATE_PID"
for i in $(seq 40); do grep -q "reload failed" "$LAB_DIR/syngate.log" && break; sleep 0.05; done
grep -q "reload failed.*gateway.syn_queues" "$LAB_DIR/syngate.log" || fail "bad config on reload not reported"
kill -0 "$SYNGATE_PID" || fail "syngate died on a bad reload"
cli_curl http://10.10.3.2/ >/dev/null || fail "request after a refused reload failed"
pass "SIGHUP: secrets $gen -> $gen2, 20/20 requests after reload, a bad config is refused and logged"

# kill -9, fail-closed (the default): nothing reaches the backend any more.
kill -KILL "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
rc=0; CURL_TIMEOUT=2 cli_curl -o /dev/null http://10.10.3.2/ 2>/dev/null || rc=$?
[[ $rc == 28 ]] || fail "fail-closed after kill -9: curl exit $rc, want a timeout (28)"
pass "kill -9 with fail_open = false: service unreachable (curl timed out)"

# kill -9, fail-open: the rules carry --queue-bypass, so traffic flows directly.
write_config "fail_open = true"
start_syngate
cli_curl http://10.10.3.2/ >/dev/null || fail "request through fail-open syngate failed"
kill -KILL "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
ok=0
for i in $(seq 20); do [[ $(cli_curl http://10.10.3.2/ 2>/dev/null) == "hello from srv" ]] && ok=$((ok + 1)); done
[[ $ok == 20 ]] || fail "fail-open after kill -9: $ok/20 requests"
pass "kill -9 with fail_open = true: 20/20 requests reach the backend directly"

# restart after kill -9: the queues are free again and the secrets file is reused
start_syngate
cli_curl http://10.10.3.2/ >/dev/null || fail "request after restart failed"
in_ns "$NS_GW" "$SYNGATE_BIN" rules down --config "$LAB_DIR/syngate.toml" >/dev/null
pass "restart after kill -9 works"
