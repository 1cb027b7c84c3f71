#!/usr/bin/env bash
# Established flows in the kernel across a kill -9 (issue 23, "Nothing lost across restarts"): the
# tc flow map is pinned (gateway.bpf_dir on a bpffs of this test's own; the host's /sys/fs/bpf is
# not touched) and outlives the process. Three idle-looking connections
# to an echo server carry pings through the tc programs only (the engine sees nothing after the
# hand-over); a stale entry is planted in the pinned map; then kill -9 and a restart with the same
# config, established_idle_s = 6. Must hold:
#   - the new process keeps the restored flows' entries (with what the programs recorded), writes
#     anew those of a restored flow whose entries were removed, and deletes the planted one;
#   - the activity the kernel recorded survives: the flows, busy only through tc until the cut
#     and older than the idle timeout by the saved table's clock, are not expired;
#   - afterwards the connections whose entries were kept carry data both ways, through the kernel
#     path (the one whose entries were removed lost its activity record with them and expires).
# With KERNEL_RESTART_PINNED=no, gateway.bpf_dir is no bpffs (a host without one mounted): the map
# is not pinned, and the new process must take over the one the dead process's tc filters still
# hold (nothing is planted or removed then): all three flows kept, all three connections alive.
#   kernel_restart_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$(realpath "$1")"
command -v bpftool >/dev/null || { echo "SKIP: needs bpftool"; exit 77; }
lab_up
start_echo 7000

# A bpffs of this test's own (gateway.bpf_dir): the pins outlive each syngate process, across the
# kill -9, as /sys/fs/bpf's would on a real host; the host's own /sys/fs/bpf is not touched.
PINNED=${KERNEL_RESTART_PINNED:-yes}
if [[ $PINNED == yes ]]; then
  kernel_path_bpffs
else
  LAB_BPFFS=$LAB_DIR/not-a-bpffs
  mkdir -p "$LAB_BPFFS"
fi
in_holder() { in_ns "$NS_GW" "$@"; }

KERNEL_PATH=auto write_config "bpf_dir = \"$LAB_BPFFS\"" "established_idle_s = 6" '[[service]]
address = "10.10.3.2"
port = 7000'
start_pinned() {
  in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" >/dev/null
  local before
  before=$(running_lines)
  # ip netns exec execs syngate: the PID is the daemon's own, for the kill -9 below.
  ip netns exec "$NS_GW" "$SYNGATE_BIN" run --config "$LAB_DIR/syngate.toml" >>"$LAB_DIR/syngate.log" 2>&1 &
  SYNGATE_PID=$!
  track_pid "$SYNGATE_PID"
  wait_until 5 eval '(( $(running_lines) > before ))' || fail "syngate did not start: $(tail -5 "$LAB_DIR/syngate.log")"
}
start_pinned
PIN=$(tc_pin_dir)/sg_tc_flows
if [[ $PINNED == yes ]]; then
  in_holder test -e "$PIN" || fail "the flow map is not pinned at $PIN: $(grep 'tc:' "$LAB_DIR/syngate.log")"
else
  grep -q "the flow map is not pinned" "$LAB_DIR/syngate.log" || fail "the map was pinned although $LAB_BPFFS is no bpffs"
fi

cat > "$LAB_DIR/pinger.py" <<'PY'
import os, socket, sys, time
d, n = sys.argv[1], 3
conns = []
for i in range(n):
    c = socket.create_connection(("10.10.3.2", 7000), timeout=10)
    f = c.makefile("rb")
    assert f.readline() == b"hello\n"
    conns.append((c, f))
print("connected", flush=True)
k = 0
while not os.path.exists(d + "/quiet"):  # busy, through the kernel path only
    for i, (c, f) in enumerate(conns):
        c.sendall(b"busy %d %d\n" % (i, k))
        assert f.readline() == b"echo busy %d %d\n" % (i, k)
    k += 1
    time.sleep(0.3)
print("quiet after", k, "rounds", flush=True)
deadline = time.time() + 40
while not os.path.exists(d + "/trigger") and time.time() < deadline:
    time.sleep(0.05)
# All sent first, then all read: one dead connection's timeout must not age the others past the
# idle timeout.
for i, (c, f) in enumerate(conns):
    c.sendall(b"after %d\n" % i)
ok = 0
for i, (c, f) in enumerate(conns):
    try:
        if f.readline() == b"echo after %d\n" % i:
            ok += 1
    except OSError as e:
        print("connection", i, e, flush=True)
print("ok", ok, flush=True)
PY
# Past the idle timeout by the saved table's clock (the handshake, > 10 s ago) but not by the
# kernel's (the last busy ping, ~2 s ago): a timer tick or two after the start, the pinger sends
# on every connection; $ok is how many answered (not a command substitution: a subshell cannot
# wait for the pinger).
pings_after_restart() {
  sleep 2.5
  touch "$LAB_DIR/trigger"
  wait "$PINGER" 2>/dev/null || true
  ok=$(awk '$1 == "ok" { print $2 }' "$LAB_DIR/pinger.out")
}
BG_LOG=$LAB_DIR/pinger.out bg "$NS_CLI" /usr/bin/python3 "$LAB_DIR/pinger.py" "$LAB_DIR"
PINGER=$BG_PID
wait_until 10 grep -q connected "$LAB_DIR/pinger.out" || fail "connections did not open: $(cat "$LAB_DIR/pinger.out")"

# A stale entry, as a dead syngate would leave one for a flow its restore no longer has
# (198.18.0.1:4242 -> 10.10.3.2:7000; addresses as ::ffff:a.b.c.d, ports in network order).
STALE_KEY="00 00 00 00 00 00 00 00 00 00 ff ff c6 12 00 01  00 00 00 00 00 00 00 00 00 00 ff ff 0a 0a 03 02  10 92 1b 58"
if [[ $PINNED == yes ]]; then
  # An all-zero value of the map's own size (the layout's, tc_abi.h).
  VALUE_SIZE=$(in_holder bpftool -j map show pinned "$PIN" | python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes_value"])') ||
    fail "cannot read the value size of $PIN"
  in_holder bpftool map update pinned "$PIN" key hex $STALE_KEY value hex $(printf '00 %.0s' $(seq "$VALUE_SIZE")) ||
    fail "cannot plant a stale entry in $PIN"
fi

sleep 8  # busy through tc; the saved table's stamps stay at the handshake
k_before=$(metric_sum syngate_tc_packets_total 'outcome="translated"')
(( k_before > 50 )) || fail "only $k_before segments translated in the kernel before the cut"
if [[ $PINNED == yes ]]; then
  # `syngate flows` reads the pinned entries: busy through tc only, each flow shows its two
  # entries and a recent segment, where the engine's own stamp (the handshake, > 8 s ago) would not.
  in_holder "$SYNGATE_BIN" flows --config "$LAB_DIR/syngate.toml" --json >"$LAB_DIR/flows.json" ||
    fail "syngate flows failed: $(cat "$LAB_DIR/flows.json")"
  python3 - "$LAB_DIR/flows.json" <<'PY' || fail "syngate flows does not show the kernel's view: $(cat "$LAB_DIR/flows.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert "kernel_unread" not in j, j.get("kernel_unread")
mine = [f for f in j["flows"] if f["backend"] == "10.10.3.2:7000" and f["state"] == "established"]
assert len(mine) == 3, mine
for f in mine:
    assert f["kernel_entries"] == 2 and f["kernel_segments"] > 10, f
    assert f["idle_s"] < 2, f
PY
  log "syngate flows: 3 established flows, each with its 2 tc entries and idle < 2 s"
fi
touch "$LAB_DIR/quiet"
sleep 0.5
kill -KILL "$SYNGATE_PID"
wait "$SYNGATE_PID" 2>/dev/null || true
untrack_pid "$SYNGATE_PID"
if [[ $PINNED == no ]]; then
  sleep 1
  start_pinned
  grep -q "tc: taking over the flow map the filters of an earlier run hold" "$LAB_DIR/syngate.log" ||
    fail "the restart did not take over the dead process's flow map: $(grep 'tc:' "$LAB_DIR/syngate.log" | tail -5)"
  grep 'flow map reconciled' "$LAB_DIR/syngate.log" | tail -1 | grep -q ": 3 kept" ||
    fail "the 3 flows' entries were not kept: $(grep 'flow map reconciled' "$LAB_DIR/syngate.log" | tail -1)"
  log "$(grep 'flow map reconciled' "$LAB_DIR/syngate.log" | tail -1)"
  pings_after_restart
  [[ $ok == 3 ]] || fail "$ok/3 connections carried data both ways after the restart: $(cat "$LAB_DIR/pinger.out")"
  pass "kill -9 without a pinned map: the restart took over the map the dead process's filters held, 3/3 flows kept and alive"
  exit 0
fi
in_holder bpftool map lookup pinned "$PIN" key hex $STALE_KEY >/dev/null 2>&1 ||
  fail "the planted entry is not in the pinned map before the restart"
# One restored flow's two entries removed, as a kill -9 before its hand-over's map write would
# leave them (the table says established, the map knows nothing): the start writes them anew.
mapfile -t GONE_KEYS < <(in_holder bpftool -j map dump pinned "$PIN" | python3 -c '
import json, sys
keys = [bytes(int(b, 16) for b in e["key"]) for e in json.load(sys.stdin)]
mine = sorted(k for k in keys if k[34:36] == bytes([0x1b, 0x58]) and k[:16] != bytes(10) + bytes([0xff, 0xff, 198, 18, 0, 1]))
k = mine[0]
for key in (k, k[16:32] + k[:16] + k[34:36] + k[32:34]):
    print(" ".join("%02x" % b for b in key))')
(( ${#GONE_KEYS[@]} == 2 )) || fail "cannot find a restored flow's entries in $PIN"
for key in "${GONE_KEYS[@]}"; do
  # shellcheck disable=SC2086
  in_holder bpftool map delete pinned "$PIN" key hex $key || fail "cannot delete $key from $PIN"
done
entries_before=$(in_holder bpftool -j map dump pinned "$PIN" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
log "killed after $k_before segments translated in the kernel; the pinned map holds $entries_before entries"
sleep 1
start_pinned

grep -q "flow map reconciled" "$LAB_DIR/syngate.log" ||
  fail "no reconciliation at start: $(grep 'tc:' "$LAB_DIR/syngate.log" | tail -5)"
log "$(grep 'flow map reconciled' "$LAB_DIR/syngate.log" | tail -1)"
if in_holder bpftool map lookup pinned "$PIN" key hex $STALE_KEY >/dev/null 2>&1; then
  fail "the stale entry survived the start"
fi
grep 'flow map reconciled' "$LAB_DIR/syngate.log" | tail -1 | grep -q ": 2 kept .*, 1 written anew, 0 entries of closing flows kept" ||
  fail "the restored flows' entries were not kept (2) and written anew (1)"
pass "kill -9: 2 restored flows kept their entries, the one without was written anew, the planted stale one is gone"

pings_after_restart
# The flow whose entries were removed lost the kernel's record of its activity with them: by the
# saved table it has been idle since its handshake, and it expires on the first timer run. (A
# real kill -9 leaves no such flow: without an entry, the engine saw every segment; see
# persist_test's AKillRightAfterTheTcMapWrite...) The other two must live.
[[ $ok == 2 ]] || fail "$ok/3 connections carried data both ways after the restart (want the 2 whose entries were kept): $(cat "$LAB_DIR/pinger.out")"
active=$(metric_sum syngate_flows_active)
k_after=$(metric_sum syngate_tc_packets_total 'outcome="translated"')
(( k_after > 0 )) || fail "nothing translated in the kernel after the restart"
pass "2/3 connections both ways after kill -9 (the third lost its kernel record above) (flows active $active, translated in the kernel since: $k_after)"

# The filters follow the interfaces (the daemon's tick, as XDP does): the client's interface down
# and up again, and a new one appearing; translated traffic flows through tc afterwards.
log "interfaces: g1 down and up, a new veth g9"
in_ns "$NS_GW" ip link set g1 down
sleep 1.5
in_ns "$NS_GW" ip link set g1 up
veth "$NS_CLI" c9 "$NS_GW" g9
in_ns "$NS_CLI" ip link set c9 up
in_ns "$NS_GW" ip link set g9 up
# With no default route the interface rule takes every link that has an address: g9 gets one.
in_ns "$NS_GW" ip addr add 10.10.9.1/24 dev g9
wait_until 6 grep -q "translating established flows on g9" "$LAB_DIR/syngate.log" ||
  fail "tc did not attach to the new interface g9: $(grep 'tc:' "$LAB_DIR/syngate.log" | tail -5)"
wait_until 6 eval 'in_ns "$NS_GW" tc filter show dev g1 ingress | grep -q bpf' ||
  fail "no tc filter on g1 after it came back up"
k0=$(metric_sum syngate_tc_packets_total 'outcome="translated"')
in_ns "$NS_CLI" python3 - <<'PY' || fail "an echo connection after the interface changes failed"
import socket
c = socket.create_connection(("10.10.3.2", 7000), timeout=10)
f = c.makefile("rb")
assert f.readline() == b"hello\n"
for i in range(30):
    c.sendall(b"line %d\n" % i)
    assert f.readline() == b"echo line %d\n" % i
PY
k1=$(metric_sum syngate_tc_packets_total 'outcome="translated"')
(( k1 - k0 >= 30 )) || fail "only $((k1 - k0)) segments translated in the kernel after g1 down/up"
pass "g1 down/up and a new veth: tc followed ($(grep -c 'tc: translating established flows on g1' "$LAB_DIR/syngate.log") attaches logged on g1), $((k1 - k0)) segments translated in the kernel since"
