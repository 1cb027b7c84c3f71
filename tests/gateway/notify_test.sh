#!/usr/bin/env bash
# systemd's side of Type=notify, played by this test: its own NOTIFY_SOCKET and WATCHDOG_USEC.
# syngate must send READY=1 (after the rules are in place) with a STATUS line, keep STATUS
# current, and ping WATCHDOG=1 while every worker makes progress; when one worker thread is
# stopped (ptrace-interrupted: the rest of the process runs on) the pings stop, and they resume
# when it runs again.
#   notify_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
start_nginx
write_config

cat > "$LAB_DIR/systemd.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)
end = time.time() + 60
while time.time() < end:
    s.settimeout(1)
    try:
        msg = s.recv(4096).decode()
    except socket.timeout:
        continue
    for line in msg.split("\n"):
        out.write("%.3f %s\n" % (time.time(), line))
PY
bg "$NS_GW" /usr/bin/python3 "$LAB_DIR/systemd.py" "$LAB_DIR/notify.sock" "$LAB_DIR/notify.log"
for _ in $(seq 100); do [[ -S $LAB_DIR/notify.sock ]] && break; sleep 0.05; done

export NOTIFY_SOCKET=$LAB_DIR/notify.sock WATCHDOG_USEC=1000000
start_syngate
unset NOTIFY_SOCKET WATCHDOG_USEC
for _ in $(seq 60); do grep -q "READY=1" "$LAB_DIR/notify.log" 2>/dev/null && break; sleep 0.05; done
grep -q "READY=1" "$LAB_DIR/notify.log" || fail "no READY=1: $(cat "$LAB_DIR/notify.log" 2>/dev/null)"
for i in $(seq 5); do cli_curl http://10.10.3.2/ >/dev/null || fail "request failed"; done
sleep 2.2
grep "STATUS=" "$LAB_DIR/notify.log" | tail -1 | grep -q "flows" || fail "STATUS carries no summary: $(grep STATUS= "$LAB_DIR/notify.log" | tail -2)"
pings() { awk -v from="$1" -v to="$2" '$2 == "WATCHDOG=1" && $1 >= from && $1 < to { n++ } END { print n + 0 }' "$LAB_DIR/notify.log"; }
t0=$(date +%s.%N)
sleep 2
t1=$(date +%s.%N)
healthy=$(pings "$t0" "$t1")
(( healthy >= 2 )) || fail "only $healthy watchdog pings in 2 s while healthy (WatchdogSec=1s)"
pass "READY=1 after the rules, STATUS: $(grep STATUS= "$LAB_DIR/notify.log" | tail -1 | cut -d= -f2-), $healthy watchdog pings in 2 s"

# Stop the flow worker thread alone.
tid=""
for t in /proc/"$SYNGATE_PID"/task/*; do
  [[ $(cat "$t/comm" 2>/dev/null) == flow-q8 ]] && tid=${t##*/}
done
[[ -n $tid ]] || fail "no flow-q8 thread in syngate"
cat > "$LAB_DIR/stall.py" <<'PY'
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
tid, seconds = int(sys.argv[1]), float(sys.argv[2])
if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0 or libc.ptrace(PTRACE_INTERRUPT, tid, None, None) != 0:
    sys.exit("ptrace: " + os.strerror(ctypes.get_errno()))
os.waitpid(tid, 0x40000000)  # __WALL: the thread is now stopped
print("stopped", flush=True)
time.sleep(seconds)
libc.ptrace(PTRACE_DETACH, tid, None, None)
print("released", flush=True)
PY
python3 "$LAB_DIR/stall.py" "$tid" 3.5 > "$LAB_DIR/stall.out" 2>&1 &
stall_pid=$!
track_pid "$stall_pid"
for _ in $(seq 40); do grep -q stopped "$LAB_DIR/stall.out" && break; sleep 0.05; done
grep -q stopped "$LAB_DIR/stall.out" || fail "could not stop the worker thread: $(cat "$LAB_DIR/stall.out")"
sleep 1  # one watchdog period to notice
t0=$(date +%s.%N)
sleep 2
t1=$(date +%s.%N)
stalled=$(pings "$t0" "$t1")
wait "$stall_pid" || true
(( stalled == 0 )) || fail "$stalled watchdog pings while a worker was stopped"
grep -q "made no progress" "$LAB_DIR/syngate.log" || fail "no log line names the stuck worker"
sleep 2
t2=$(date +%s.%N)
resumed=$(pings "$t1" "$t2")
(( resumed >= 1 )) || fail "the watchdog pings did not resume after the worker ran again"
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "gateway not serving after the stall"
pass "watchdog: 0 pings while flow-q8 was stopped, $resumed after it ran again"
kill -TERM "$SYNGATE_PID"
for _ in $(seq 40); do grep -q "STOPPING=1" "$LAB_DIR/notify.log" && break; sleep 0.05; done
grep -q "STOPPING=1" "$LAB_DIR/notify.log" || fail "no STOPPING=1 on SIGTERM"
pass "STOPPING=1 on SIGTERM"
