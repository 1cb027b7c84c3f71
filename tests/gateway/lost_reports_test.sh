#!/usr/bin/env bash
# Reports the tc programs could not write, through the real gateway. The programs tell the engine
# of each hand-over and close through a ring (2 MiB, about 18 000 reports); a flow worker that does
# not run for a while (here: the daemon stopped) with connections closing in tc meanwhile fills
# it, and the reports that find no room are gone. Before, a flow whose close reports were all lost
# was held as established until its idle timer (engine.established_idle_s, ten minutes by
# default), holding its source's share and the table's room. Now the engine sees the programs'
# count of lost reports and closes such flows from their entries within a few turns.
# Shipped defaults (XDP auto, the kernel path opening flows from cookie ACKs), except: one client
# holds CONNECTIONS at once (engine.max_flows_per_source raised to let it), linger_s = 1 (so the
# closed flows leave the table within the wait).
#   lost_reports_test.sh SYNGATE [CONNECTIONS]
source "$(dirname "$0")/lib.sh"
lab_init "$1"
N=${2:-10000}
lab_up

# srv holds every connection until its client closes it, then closes its own side. A process holds
# at most its open-file limit's worth: as many servers (one port, SO_REUSEPORT) and clients as it
# takes.
cat > "$LAB_DIR/hold_server.py" <<'PY'
import resource, selectors, socket
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # one server per client process
listener.bind(("10.10.3.2", 8080))
listener.listen(4096)
listener.setblocking(False)
sel.register(listener, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is listener:
            while True:
                try:
                    c, _ = listener.accept()
                except BlockingIOError:
                    break
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
            continue
        c = key.fileobj
        try:
            b = c.recv(4096)
        except OSError:
            b = b""
        if not b:
            sel.unregister(c)
            c.close()
PY
# The client opens its connections one after the other, holds them until the file GO exists,
# then closes them all.
cat > "$LAB_DIR/hold_client.py" <<'PY'
import os, resource, socket, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n, go = int(sys.argv[1]), sys.argv[2]
held = []
for i in range(n):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect(("10.10.3.2", 8080))
    except OSError as e:
        print("connection %d: %s" % (i, e), flush=True)
        sys.exit(1)
    held.append(s)
print("holding %d" % n, flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
for s in held:
    s.close()
print("closed %d" % n, flush=True)
PY
PER=$(( $(ulimit -Hn) - 64 ))
(( PER > N )) && PER=$N
PROCS=$(( (N + PER - 1) / PER ))
for ((k = 0; k < PROCS; k++)); do bg "$NS_SRV" python3 "$LAB_DIR/hold_server.py"; done
wait_listen "$NS_SRV" 8080 || fail "the holding server did not start: $(cat "$LAB_DIR/bg.log" 2>/dev/null)"

KERNEL_PATH=auto XDP_MODE=auto write_config "tc_open_flows = true" "linger_s = 1
max_flows_per_source = $((N + 1024))" "$SERVICES_8080"
start_syngate
grep -q "gateway.tc_open_flows" "$LAB_DIR/syngate.log" || fail "the tc ingress does not open flows (gateway.tc_open_flows)"

# The gateway's neighbour entries first (a cookie ACK that waits for one goes to the engine).
in_ns "$NS_CLI" timeout 20 python3 "$LAB_DIR/hold_client.py" 1 /dev/null >/dev/null || fail "the first connection failed"
CLIENT_PIDS=()
for ((k = 0; k < PROCS; k++)); do
  n=$(( k < PROCS - 1 ? PER : N - PER * (PROCS - 1) ))
  in_ns "$NS_CLI" python3 "$LAB_DIR/hold_client.py" "$n" "$LAB_DIR/go" > "$LAB_DIR/client.$k" 2>&1 &
  CLIENT_PIDS+=($!)
  track_pid "$!"
done
said() {  # said WORD: how many connections the clients said WORD of
  cat "$LAB_DIR"/client.* | awk -v w="$1" '$1 == w { s += $2 } END { printf "%d\n", s }'
}
for _ in $(seq 600); do
  (( $(said holding) == N )) && break
  grep -q "^connection" "$LAB_DIR"/client.* && break
  sleep 0.1
done
(( $(said holding) == N )) || fail "the clients could not open their connections: $(cat "$LAB_DIR"/client.*)"
active=$(settled_metric syngate_flows_active)
log "$N connections held ($PROCS client processes); the engine holds $active flows, the tc map $(metric_sum syngate_tc_flow_entries) entries"
(( active >= N )) || fail "the engine holds $active flows for $N connections"
lost_before=$(metric_sum syngate_tc_packets_total events_lost)

# The daemon stopped (its flow worker takes no report), the client closes every connection: each
# closes whole in tc (the client's FIN, the server's, the last ACK), three reports a connection.
kill -STOP "$SYNGATE_PID"
touch "$LAB_DIR/go"
for _ in $(seq 300); do
  (( $(said closed) == N )) && break
  sleep 0.1
done
sleep 1  # the servers' FINs and the clients' last ACKs
kill -CONT "$SYNGATE_PID"
(( $(said closed) == N )) || fail "the clients did not close their connections: $(cat "$LAB_DIR"/client.*)"
sleep 0.5
lost=$(( $(metric_sum syngate_tc_packets_total events_lost) - lost_before ))
log "reports lost while the daemon was stopped: $lost"
(( lost > 0 )) || fail "no report was lost: the ring took all of $N connections' closes (raise CONNECTIONS)"

# Every flow closed within a few seconds (linger 1 s), not at its idle timer.
expect_empty_tables "flows whose close reports were lost ($lost reports)"
sweeps=$(metric_sum syngate_kernel_report_sweeps_total)
log "the tables are empty; sweeps after lost reports: $sweeps"
(( sweeps >= 1 )) || fail "the engine counted no sweep after the lost reports"
pass "$N connections closed while the daemon was stopped, $lost reports lost: every flow closed from its entries"
