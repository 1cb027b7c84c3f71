#!/usr/bin/env bash
# Proxied connections survive the gateway process: 5 rate-limited downloads (the client's receive
# buffer is small, so nothing is buffered whole before the cut) and 5 idle connections to a
# server that speaks first, through syngate; then
#   1. kill -9 at 1.5 s, the same config started again 1 s later (what Restart=always does);
#   2. SIGTERM and a new binary (an upgrade);
#   3. SIGHUP with new [engine] table sizes (syngate restarts in place, same PID);
#   3b. SIGHUP with a new announced_wscale (restart in place): running flows keep the shift their
#      clients were told;
# every download arrives intact (sha256) and every idle connection carries data both ways
# afterwards. 3. A handshake split across a restart: the SYN answered by one process, the ACK
# (cookie) validated by the next.
#   restart_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
# The server paces the downloads (600 KB/s each): curl's own --limit-rate lets bursts of ~650 KB
# through on a fast path (plain forwarding, the kernel path), and the cuts below must fall mid-way.
start_nginx 'listen 10.10.3.2:80 backlog=4096; limit_rate 600k;'
# 6 MiB each: at 600 KB/s the cut at 1.5 s falls well before half, bursts included.
BIG_MB=6
serve_big $BIG_MB
small_client_rmem

start_echo 7000

cat > "$LAB_DIR/idle.py" <<'PY'
import os, socket, sys, time
trigger, n = sys.argv[1], 5
conns = []
for i in range(n):
    c = socket.create_connection(("10.10.3.2", 7000), timeout=10)
    f = c.makefile("rb")
    assert f.readline() == b"hello\n"
    conns.append((c, f))
print("connected", flush=True)
deadline = time.time() + 60
while not os.path.exists(trigger) and time.time() < deadline:
    time.sleep(0.05)
ok = 0
for i, (c, f) in enumerate(conns):
    try:
        c.sendall(b"ping %d\n" % i)
        if f.readline() == b"echo ping %d\n" % i:
            ok += 1
    except OSError as e:
        print("connection", i, e, flush=True)
print("ok", ok, flush=True)
PY

write_config "" "" '[[service]]
address = "10.10.3.2"
port = 7000'
start_syngate

# One round: downloads and idle connections, then $1 (a function) cuts the gateway mid-way.
round() {
  local name=$1 cut=$2
  rm -f "$LAB_DIR"/got.* "$LAB_DIR/trigger" "$LAB_DIR/idle.out"
  BG_LOG=$LAB_DIR/idle.out bg "$NS_CLI" /usr/bin/python3 "$LAB_DIR/idle.py" "$LAB_DIR/trigger"
  local idle_pid=$BG_PID dl=()
  for _ in $(seq 100); do grep -q connected "$LAB_DIR/idle.out" 2>/dev/null && break; sleep 0.05; done
  grep -q connected "$LAB_DIR/idle.out" || fail "$name: idle connections did not open: $(cat "$LAB_DIR/idle.out")"
  # The downloads start once the idle connections are up, so that the time they have before the
  # cut does not depend on how long those took (a loaded machine once let them finish first).
  for i in 1 2 3 4 5; do
    in_ns "$NS_CLI" curl -sS --max-time 40 -o "$LAB_DIR/got.$i" http://10.10.3.2/big.bin \
      2>>"$LAB_DIR/curl.err" &
    dl+=($!)
    track_pid $!
  done
  sleep 1.5
  local partial
  partial=$(stat -c %s "$LAB_DIR"/got.* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
  $cut
  local ok=0
  for p in "${dl[@]}"; do wait "$p" || true; done
  for i in 1 2 3 4 5; do
    [[ $(sha256sum < "$LAB_DIR/got.$i" | cut -d' ' -f1) == "$want" ]] && ok=$((ok + 1))
  done
  touch "$LAB_DIR/trigger"
  wait "$idle_pid" 2>/dev/null || true
  local idle_ok
  idle_ok=$(awk '$1 == "ok" { print $2 }' "$LAB_DIR/idle.out")
  log "$name: $((partial / 1024)) KiB of 5 x $BIG_MB MiB were through at the cut; downloads intact $ok/5, idle connections $idle_ok/5"
  (( partial < 5 * BIG_MB * 1024 * 1024 / 2 )) || fail "$name: the downloads were mostly done before the cut"
  (( ok == 5 )) || fail "$name: $ok/5 downloads intact ($(tail -3 "$LAB_DIR/curl.err" 2>/dev/null))"
  [[ $idle_ok == 5 ]] || fail "$name: $idle_ok/5 idle connections usable: $(cat "$LAB_DIR/idle.out")"
  local restored
  restored=$(metric_sum syngate_flows_restored_total)
  (( restored >= 10 )) || fail "$name: the new process took over only $restored flows"
  pass "$name: 5/5 downloads intact, 5/5 idle connections both ways, $restored flows taken over"
}

crash() {
  kill -KILL "$SYNGATE_PID"
  wait "$SYNGATE_PID" 2>/dev/null || true
  sleep 1
  start_syngate
}
upgrade() {
  cp "$SYNGATE_BIN" "$LAB_DIR/syngate-new"
  kill -TERM "$SYNGATE_PID"
  wait "$SYNGATE_PID" 2>/dev/null || true
  SYNGATE_BIN=$LAB_DIR/syngate-new start_syngate
}
sighup_restart_in_place() {  # sighup_restart_in_place RUNNING_LINES_BEFORE
  kill -HUP "$SYNGATE_PID"
  for _ in $(seq 100); do
    (( $(grep -c "syngate running" "$LAB_DIR/syngate.log") > $1 )) && break
    sleep 0.05
  done
  (( $(grep -c "syngate running" "$LAB_DIR/syngate.log") > $1 )) || fail "no restart in place: $(tail -3 "$LAB_DIR/syngate.log")"
}
resize() {
  # [engine] sizes can only change in a new process: SIGHUP restarts syngate in place (same
  # PID), and the new table imports every flow.
  local before
  before=$(grep -c "syngate running" "$LAB_DIR/syngate.log")
  write_config "" "max_flows = 5000" '[[service]]
address = "10.10.3.2"
port = 7000'
  sighup_restart_in_place "$before"
  kill -0 "$SYNGATE_PID" || fail "the restart in place changed the PID"
  grep -q "imported" "$LAB_DIR/syngate.log" || fail "the resized table imported nothing: $(tail -5 "$LAB_DIR/syngate.log")"
  [[ $(metric_sum syngate_flow_table_capacity) == 5000 ]] || fail "max_flows did not change"
}
# The backend's window as the client reads it (the largest over the client's connections).
client_snd_wnd() {
  in_ns "$NS_CLI" ss -tin "dst 10.10.3.2:80" | grep -o 'snd_wnd:[0-9]*' | cut -d: -f2 | sort -n | tail -1
}
rescale() {
  # A new announced_wscale also restarts in place. The running connections were told the old
  # shift in their SYN-ACK: they must keep being translated with it, or the client reads every
  # window of the server 2^5 times too small.
  local before wnd_before wnd_after
  wnd_before=$(client_snd_wnd)
  before=$(grep -c "syngate running" "$LAB_DIR/syngate.log")
  write_config "" "max_flows = 5000
announced_wscale = 12" '[[service]]
address = "10.10.3.2"
port = 7000'
  sighup_restart_in_place "$before"
  sleep 1  # the server's next segments carry its window to the client
  wnd_after=$(client_snd_wnd)
  log "the server's window as the client reads it: $wnd_before before the new announced_wscale, $wnd_after after"
  (( wnd_after * 4 >= wnd_before )) || fail "the running flows took the new announced_wscale: the client's view of the server's window fell from $wnd_before to $wnd_after"
}
round "kill -9, restart after 1 s" crash
round "SIGTERM, new binary" upgrade
round "SIGHUP with a new max_flows (restart in place)" resize
round "SIGHUP with a new announced_wscale (restart in place)" rescale

log "a handshake split across a restart"
# The client's ACKs are held back until the gateway has restarted: the SYN-ACK (cookie) comes
# from the old process, the cookie ACK reaches the new one.
in_ns "$NS_CLI" iptables -A OUTPUT -p tcp --dport 80 --tcp-flags SYN,ACK,RST ACK -j DROP
in_ns "$NS_CLI" curl -sS --max-time 20 -o "$LAB_DIR/split.txt" http://10.10.3.2/ 2>"$LAB_DIR/split.err" &
split_pid=$!
track_pid "$split_pid"
sleep 0.5
crash
valid_before=$(metric_sum syngate_cookies_valid_total)
in_ns "$NS_CLI" iptables -D OUTPUT -p tcp --dport 80 --tcp-flags SYN,ACK,RST ACK -j DROP
wait "$split_pid" || fail "the split handshake failed: $(cat "$LAB_DIR/split.err")"
[[ $(cat "$LAB_DIR/split.txt") == "hello from srv" ]] || fail "the split handshake got: $(cat "$LAB_DIR/split.txt")"
sleep 0.3
(( $(metric_sum syngate_cookies_valid_total) > valid_before )) || fail "the new process validated no cookie"
(( $(metric_sum syngate_cookies_sent_total) == 0 )) || fail "the new process answered a SYN: the handshake was not split"
pass "a cookie issued before the restart validated after it"
