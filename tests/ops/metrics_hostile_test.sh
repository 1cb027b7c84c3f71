#!/usr/bin/env bash
# The metrics endpoint can neither stop nor blind a real syngate in the namespace lab
# (tests/gateway/lib.sh):
# - a local user who holds 127.0.0.1:9470 first kept syngate from starting; now syngate starts, serves clients, logs the held address, and serves its metrics
#   once the holder is gone;
# - 300 local connections that send one header line every 3 s made /metrics and /healthz
#   unavailable (`syngate status` said DOWN); now every scrape is answered while they stay.
#   metrics_hostile_test.sh SYNGATE
source "$(dirname "$0")/../gateway/lib.sh"
lab_init "$1"
lab_up
start_nginx
write_config
cfg=$LAB_DIR/syngate.toml
status() { in_ns "$NS_GW" timeout 20 "$SYNGATE_BIN" status --config "$cfg" "$@"; }

# The holder, an unprivileged local user (nobody): listens on the metrics address with
# SO_REUSEPORT, accepts, never answers. (A port shared by SO_REUSEPORT needs the same user on
# both sockets, so syngate, which set it too, could not bind and exited.)
BG_LOG=$LAB_DIR/holder.log bg "$NS_GW" setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c '
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 9470)); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)
'
holder_pid=$BG_PID
wait_listen "$NS_GW" 9470 || fail "the holder did not listen"

start_syngate
for i in $(seq 10); do cli_curl http://10.10.3.2/ >/dev/null || fail "request $i through syngate failed"; done
grep -q "metrics endpoint 127.0.0.1:9470: cannot listen" "$LAB_DIR/syngate.log" || fail "the held address is not logged"
log "syngate runs with its metrics address held: $(grep 'cannot listen' "$LAB_DIR/syngate.log" | head -n 1)"

kill "$holder_pid"; wait "$holder_pid" 2>/dev/null || true
up=""
for i in $(seq 40); do
  if out=$(status 2>&1); then up=1; break; fi
  sleep 0.25
done
[[ -n $up ]] || fail "metrics never came back after the holder left: $out"
log "metrics back after the holder left ($(grep -c 'listening on 127.0.0.1:9470 now' "$LAB_DIR/syngate.log") 'listening' line)"

# 300 slow local clients: a request line, then a header line every 3 s; back at once when closed.
BG_LOG=$LAB_DIR/slow.log bg "$NS_GW" python3 -c '
import socket, time, select
conns = {}
def opened():
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", 9470))
    except BlockingIOError: pass
    return c
for i in range(300): conns[i] = [opened(), 0.0, False]
while True:
    now = time.time()
    for i, st in conns.items():
        c = st[0]
        try:
            if not st[2]:
                c.send(b"GET /metrics HTTP/1.1\r\n"); st[2] = True; st[1] = now + 3
            elif now >= st[1]:
                c.send(b"X-Slow: 1\r\n"); st[1] = now + 3
            r, _, _ = select.select([c], [], [], 0)
            if r and c.recv(4096) == b"": raise OSError("closed")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            c.close(); conns[i] = [opened(), 0.0, False]
    time.sleep(0.05)
'
slow_pid=$BG_PID
sleep 4
open=$(in_ns "$NS_GW" ss -Htn state established '( dport = :9470 )' | wc -l)
log "slow clients connected to 9470: $open"
(( open >= 250 )) || fail "the slow clients did not get their connections up ($open)"
for i in $(seq 10); do
  t0=$(date +%s%N)
  status --json >"$LAB_DIR/status.$i.json" || fail "status $i exited $? with 300 slow clients: $(cat "$LAB_DIR/status.$i.json")"
  in_ns "$NS_GW" curl -sf --max-time 2 http://127.0.0.1:9470/healthz >/dev/null || fail "/healthz $i did not answer in 2 s"
  log "scrape $i: status UP and /healthz ok in $(( ($(date +%s%N) - t0) / 1000000 )) ms (status takes 1 s between its scrapes)"
done
for i in $(seq 10); do cli_curl http://10.10.3.2/ >/dev/null || fail "request $i through syngate failed during the attack"; done
kill "$slow_pid"; wait "$slow_pid" 2>/dev/null || true
kill -0 "$SYNGATE_PID" || fail "syngate died"
pass "metrics: a held address is retried and the data path runs; 300 slow clients leave every scrape answered"
