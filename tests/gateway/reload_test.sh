#!/usr/bin/env bash
# Services change under load with SIGHUP and `syngate rules up`, without a restart:
#   - a download on a kept service (80) runs across the reload and the rules update, intact;
#   - a connection to a removed service (7000) keeps working both ways through the proxy (it
#     drains), while new connections to it go straight to the server;
#   - an added service (7001) is protected (its handshake goes through the cookie path);
#   - once the removed service's last flow has ended, `rules up` drops its rules.
#   reload_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
start_nginx
serve_big 3
small_client_rmem

start_echo 7000
start_echo 7001
cat > "$LAB_DIR/talk.py" <<'PY'
# talk.py PORT TRIGGER: connects, reads the greeting, waits for TRIGGER (a file), then pings.
import os, socket, sys, time
c = socket.create_connection(("10.10.3.2", int(sys.argv[1])), timeout=10)
f = c.makefile("rb")
assert f.readline() == b"hello\n"
print("connected", flush=True)
end = time.time() + 60
while len(sys.argv) > 2 and not os.path.exists(sys.argv[2]) and time.time() < end:
    time.sleep(0.05)
c.sendall(b"ping\n")
print("ok" if f.readline() == b"echo ping\n" else "bad", flush=True)
PY

services() { for p in "$@"; do printf '[[service]]\naddress = "10.10.3.2"\nport = %s\n' "$p"; done; }
# A closed flow lingers linger_s to translate late retransmissions: 1 s here, so the removed
# service finishes draining within the test.
write_config "" "linger_s = 1" "$(services 7000)"
start_syngate
queue_rules() { in_ns "$NS_GW" iptables -t mangle -S SYNGATE; }

BG_LOG=$LAB_DIR/old.out bg "$NS_CLI" /usr/bin/python3 "$LAB_DIR/talk.py" 7000 "$LAB_DIR/go"
old_pid=$BG_PID
in_ns "$NS_CLI" curl -sS --max-time 30 --limit-rate 500k -o "$LAB_DIR/got.bin" http://10.10.3.2/big.bin &
dl_pid=$!
track_pid "$dl_pid"
for _ in $(seq 100); do grep -q connected "$LAB_DIR/old.out" 2>/dev/null && break; sleep 0.05; done
grep -q connected "$LAB_DIR/old.out" || fail "no connection to 7000"
sleep 1

log "reload: 7000 removed, 7001 added"
write_config "" "linger_s = 1" "$(services 7001)"
kill -HUP "$SYNGATE_PID"
for _ in $(seq 60); do grep -q "reload: done" "$LAB_DIR/syngate.log" && break; sleep 0.05; done
grep -q "reload: done" "$LAB_DIR/syngate.log" || fail "no reload"
sleep 1.2  # the workers apply it, the daemon lists 7000 as draining
in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" > "$LAB_DIR/rules.out" || fail "rules up: $(cat "$LAB_DIR/rules.out")"
grep -q "10.10.3.2:7000 is draining" "$LAB_DIR/rules.out" || fail "rules up did not see 7000 draining: $(cat "$LAB_DIR/rules.out")"
queue_rules | grep -- "--dport 7000" | grep -q -- "--tcp-flags" && fail "SYNs to the removed service are still queued"
queue_rules | grep -- "--dport 7000" | grep -q NFQUEUE || fail "the draining service's flow traffic is not queued"
queue_rules | grep -- "--dport 7001" | grep -- "--tcp-flags" | grep -q NFQUEUE || fail "the added service's SYNs are not queued"

touch "$LAB_DIR/go"
wait "$old_pid" || true
[[ $(tail -1 "$LAB_DIR/old.out") == ok ]] || fail "the removed service's connection broke: $(cat "$LAB_DIR/old.out")"
pass "a connection to the removed service kept working both ways through the proxy"

cookies0=$(metric_sum syngate_cookies_sent_total)
in_ns "$NS_CLI" timeout 10 python3 "$LAB_DIR/talk.py" 7000 > "$LAB_DIR/direct.out" 2>&1
[[ $(tail -1 "$LAB_DIR/direct.out") == ok ]] || fail "a new connection to the removed service failed: $(cat "$LAB_DIR/direct.out")"
sleep 0.3
(( $(metric_sum syngate_cookies_sent_total) == cookies0 )) || fail "a new connection to the removed service was proxied"
in_ns "$NS_CLI" timeout 10 python3 "$LAB_DIR/talk.py" 7001 > "$LAB_DIR/new.out" 2>&1
[[ $(tail -1 "$LAB_DIR/new.out") == ok ]] || fail "the added service does not work: $(cat "$LAB_DIR/new.out")"
sleep 0.3
(( $(metric_sum syngate_cookies_sent_total) > cookies0 )) || fail "the added service's handshake did not go through the cookie path"
pass "new connections: straight to the removed service, through the cookie path to the added one"

wait "$dl_pid" || fail "the download across the reload failed"
[[ $(sha256sum < "$LAB_DIR/got.bin" | cut -d' ' -f1) == "$want" ]] || fail "the download across the reload is corrupt"
pass "a 3 MiB download across the reload and the rules update arrived intact"

log "the removed service's flows end; it stops draining"
# The old connection closed; its flow lingers 1 s, then goes; the daemon prunes every 5 s.
draining=$(state_instance_dir)/draining-services
for _ in $(seq 60); do
  [[ -e $draining && ! -s $draining ]] && break
  sleep 0.25
done
[[ ! -s $draining ]] || fail "still draining after 15 s: $(cat "$draining")"
in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" > /dev/null
queue_rules | grep -q -- "--dport 7000" && fail "rules for 7000 remain after it drained"
pass "drained: rules up removed the last rules of 7000"
