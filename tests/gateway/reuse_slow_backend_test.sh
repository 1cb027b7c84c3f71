#!/usr/bin/env bash
# A client reuses its port (its previous connection on it closed, lingering in syngate) while the
# backend drops the first SYN of the new connection (a full backlog under load does): the engine's
# SYN retry must go out a second later and the connection open. The pair still holds the previous
# connection's closed entries then (the new connection's SYN-ACK has not replaced them), and
# before, the retry took those for the new flow's lost hand-over: the flow was left established
# with the old connection's offsets, its SYN never sent again, and the client's request hung.
# Shipped defaults (XDP auto, the kernel path opening flows from cookie ACKs), IPv4 and IPv6,
# ROUNDS connections a family, each from the port the one before it used.
#   reuse_slow_backend_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
lab_ipv6
ROUNDS=3

# srv drops every second SYN to the service: each reuse's first try.
for ipt in iptables ip6tables; do
  in_ns "$NS_SRV" $ipt -A INPUT -p tcp --dport 8080 --syn -m statistic --mode nth --every 2 --packet 1 -j DROP
done
# The server answers each request with its size and closes first (its side keeps the TIME-WAIT,
# so the client's port is free again at once).
bg "$NS_SRV" python3 "$(cd "$(dirname "$0")" && pwd)/count_server.py"
wait_listen "$NS_SRV" 8080 || fail "the test server did not start"

# Connections from one port, one after the other; each must be answered within 5 s (the retry
# comes after 1 s). Prints how long each took.
cat > "$LAB_DIR/client.py" <<'PY'
import socket, sys, time
addr, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
took = []
for i in range(rounds):
    start = time.monotonic()
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(5)
    s.bind(("", port))
    try:
        s.connect((addr, 8080))
        s.sendall(b"hello")
        answer = s.recv(100)
    except OSError as e:
        print("connection %d from port %d: %s after %.1f s" % (i, port, e, time.monotonic() - start))
        sys.exit(1)
    s.close()
    if answer != b"got 5\n":
        print("connection %d: the server answered %r" % (i, answer))
        sys.exit(1)
    took.append(time.monotonic() - start)
    time.sleep(0.2)  # the server's FIN and the client's are through before the port is used again
print("%d connections from port %d: %s s" % (rounds, port, ", ".join("%.2f" % t for t in took)))
PY

XDP_MODE=auto write_config "" "" "$SERVICES_8080"
start_syngate
grep -q "gateway.tc_open_flows" "$LAB_DIR/syngate.log" || fail "the tc ingress does not open flows (gateway.tc_open_flows)"
# The gateway's neighbour entries first: a connection whose cookie ACK waits for one goes to the
# engine, not the path under test.
for addr in 10.10.3.2 fd00:10:3::2; do
  in_ns "$NS_CLI" timeout 30 python3 "$LAB_DIR/client.py" "$addr" 40999 1 >/dev/null || fail "the first connection to $addr failed"
done
retries_before=$(metric_sum syngate_backend_syn_retries_total)
reused_before=$(metric_sum syngate_flows_reused_total)
for addr in 10.10.3.2 fd00:10:3::2; do
  out=$(in_ns "$NS_CLI" timeout 60 python3 "$LAB_DIR/client.py" "$addr" 41000 "$ROUNDS" 2>&1) || fail "to $addr: $out"
  log "to $addr: $out"
done
sleep 0.3  # the workers publish their counters every 100 ms
retries=$(( $(metric_sum syngate_backend_syn_retries_total) - retries_before ))
reused=$(( $(metric_sum syngate_flows_reused_total) - reused_before ))
log "SYN retries: $retries; flows opened over a lingering one on the pair: $reused"
(( reused >= 2 * (ROUNDS - 1) )) || fail "only $reused connections reused a lingering pair: the path under test was not taken"
(( retries >= 2 * (ROUNDS - 1) )) || fail "only $retries SYN retries: the backend's dropped SYNs were not sent again"
pass "$(( 2 * ROUNDS )) connections from a reused port whose backend dropped their first SYN, each opened by the engine's retry"
