#!/usr/bin/env bash
# A blind RST cannot end a proxied connection; the real peer's RST still does (RFC 5961 3.2, as
# the gateway judges it: exact resets, in-window goes to the endpoint, the rest is dropped).
#
# A client holds an echo connection open through syngate and checks every echo. An attacker who
# knows both addresses and the client's port (the worst case: a spray over the ephemeral range is
# at most this many packets per port) sends 65536 RSTs with random sequence numbers spoofed as
# the client and 65536 spoofed as the service. The connection must keep working past the linger
# time, and (almost) none of those RSTs may reach either end. Then the same number of blind FINs
# each way while the connection is idle: it must still carry data after twice the closing timer
# (a FIN taken at face value put the flow on it, and the idle flow was freed under both ends).
# Then the client resets for real: the flow must be freed within linger_s.
#
# The client and the service get addresses inside 198.18.0.0/15, so that every spoofed source in
# this test comes from the benchmarking range. XDP_MODE picks the fast path's mode (off: the
# NFQUEUE path alone; auto: RSTs of known flows pass XDP and reach the same check).
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up

CLI_ADDR=198.19.254.2
SVC_ADDR=198.19.253.2
PORT=7007
LINGER_S=3
CLOSING_S=3
in_ns "$NS_CLI" ip addr add "$CLI_ADDR/24" dev c0
in_ns "$NS_GW" ip addr add 198.19.254.1/24 dev g1
in_ns "$NS_SRV" ip addr add "$SVC_ADDR/24" dev s0
in_ns "$NS_GW" ip addr add 198.19.253.1/24 dev g3
# Let the spoofed packets reach syngate from the attacker's side (reverse-path filtering would
# drop them before any rule: a gateway that has it on is safer still, but this tests syngate).
for conf in all default g1 g2 g3; do in_ns "$NS_GW" sysctl -qw "net.ipv4.conf.$conf.rp_filter=0"; done

# Count the RSTs that reach each end from the other's address, at their first hook.
in_ns "$NS_SRV" iptables -t raw -A PREROUTING -s "$CLI_ADDR" -p tcp --tcp-flags RST RST -m comment --comment rst-count
in_ns "$NS_CLI" iptables -t raw -A PREROUTING -s "$SVC_ADDR" -p tcp --tcp-flags RST RST -m comment --comment rst-count
rsts_at() { in_ns "$1" iptables -t raw -nvxL PREROUTING | awk '/rst-count/ { s += $1 } END { print s + 0 }'; }

cat > "$LAB_DIR/echo.py" <<'PY'
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
def serve(c):
    try:
        for line in c.makefile("rb"):
            c.sendall(b"echo " + line)
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
cat > "$LAB_DIR/client.py" <<'PY'
# Pings over one connection until told to stop, then resets it for real (SO_LINGER 0). Sends
# nothing while the pause file exists; writes how many pings were answered to the count file.
import os, socket, struct, sys, time
cli, svc, port, portfile, stopfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
pausefile, countfile = stopfile + ".pause", stopfile + ".count"
s = socket.socket(); s.bind((cli, 0)); s.settimeout(5); s.connect((svc, port))
with open(portfile + ".tmp", "w") as f: f.write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
r = s.makefile("rb"); n = 0; deadline = time.time() + 120
while not os.path.exists(stopfile) and time.time() < deadline:
    if os.path.exists(pausefile):
        time.sleep(0.05)
        continue
    n += 1
    s.sendall(b"ping %d\n" % n)
    try:
        line = r.readline()
    except OSError as e:
        print("FAIL: ping %d: %s" % (n, e)); sys.exit(1)
    if line != b"echo ping %d\n" % n:
        print("FAIL: ping %d got %r" % (n, line)); sys.exit(1)
    with open(countfile + ".tmp", "w") as f: f.write(str(n))
    os.rename(countfile + ".tmp", countfile)
    time.sleep(0.1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("ok after %d pings" % n)
PY
cat > "$LAB_DIR/spray.py" <<'PY'
# COUNT RSTs from SRC:SPORT to DST:DPORT with random sequence numbers (half with ACK and a random
# ack), paced so that the gateway's queue never overflows. Raw IPv4 with our own header. With a
# sixth argument "fin": FIN+ACK segments with random sequence and ack numbers instead.
import random, socket, struct, sys, time
src, sport, dst, dport, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
fin = len(sys.argv) > 6 and sys.argv[6] == "fin"
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
rs = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
srcb, dstb = socket.inet_aton(src), socket.inet_aton(dst)
rng = random.Random(5961)
for i in range(count):
    flags = 0x11 if fin else 0x04 | (0x10 if i % 2 else 0)
    ack = rng.getrandbits(32) if fin or i % 2 else 0
    tcp = struct.pack("!HHIIBBHHH", sport, dport, rng.getrandbits(32), ack, 5 << 4, flags, 0, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(srcb + dstb + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, srcb, dstb)
    rs.sendto(ip + tcp, (dst, 0))
    if i % 500 == 499: time.sleep(0.01)
PY

cat > "$LAB_DIR/extra_service.toml" <<CONF
[[service]]
address = "$SVC_ADDR"
port = $PORT
CONF
write_config "" "linger_s = $LINGER_S
closing_idle_s = $CLOSING_S" "$(cat "$LAB_DIR/extra_service.toml")"
bg "$NS_SRV" /usr/bin/python3 "$LAB_DIR/echo.py" "$SVC_ADDR" "$PORT"
wait_listen "$NS_SRV" "$PORT" || fail "echo server did not start"
start_syngate

BG_LOG=$LAB_DIR/client.log bg "$NS_CLI" /usr/bin/python3 "$LAB_DIR/client.py" "$CLI_ADDR" "$SVC_ADDR" "$PORT" \
  "$LAB_DIR/port" "$LAB_DIR/stop"
CLIENT_PID=$BG_PID
for ((i = 0; i < 100; i++)); do [[ -s $LAB_DIR/port ]] && break; sleep 0.05; done
[[ -s $LAB_DIR/port ]] || fail "client did not connect: $(cat "$LAB_DIR/client.log")"
CPORT=$(cat "$LAB_DIR/port")
log "client $CLI_ADDR:$CPORT connected to $SVC_ADDR:$PORT through syngate (xdp ${XDP_MODE:-off})"

log "65536 blind RSTs spoofed as the client, 65536 spoofed as the service"
in_ns "$NS_ATK" python3 "$LAB_DIR/spray.py" "$CLI_ADDR" "$CPORT" "$SVC_ADDR" "$PORT" 65536
in_ns "$NS_ATK" python3 "$LAB_DIR/spray.py" "$SVC_ADDR" "$PORT" "$CLI_ADDR" "$CPORT" 65536
sleep $((2 * LINGER_S + 1))  # past the linger time: a flow the RSTs had closed would be gone now
kill -0 "$CLIENT_PID" 2>/dev/null || fail "the connection died under blind RSTs: $(cat "$LAB_DIR/client.log")"

at_srv=$(rsts_at "$NS_SRV")
at_cli=$(rsts_at "$NS_CLI")
dropped=$(metric_sum syngate_drops_total 'reason="rst_out_of_window"')
log "RSTs reaching srv: $at_srv, reaching cli: $at_cli; dropped as out of window: $dropped"
# A random 32-bit guess lands in a window of W bytes with probability W / 2^32: a few hundred
# kilobytes of window let through a handful, which the endpoint answers with a challenge ACK.
(( at_srv <= 64 && at_cli <= 64 )) || fail "blind RSTs reached the endpoints ($at_srv at srv, $at_cli at cli)"
(( dropped >= 131000 )) || fail "only $dropped blind RSTs counted as rst_out_of_window"

pings() { cat "$LAB_DIR/stop.count" 2>/dev/null || echo 0; }
pings_past() { (( $(pings) >= $1 )); }
log "the connection idles; 65536 blind FINs spoofed as the client, 65536 spoofed as the service"
touch "$LAB_DIR/stop.pause"
sleep 0.3
in_ns "$NS_ATK" python3 "$LAB_DIR/spray.py" "$CLI_ADDR" "$CPORT" "$SVC_ADDR" "$PORT" 65536 fin
in_ns "$NS_ATK" python3 "$LAB_DIR/spray.py" "$SVC_ADDR" "$PORT" "$CLI_ADDR" "$CPORT" 65536 fin
sleep $((2 * CLOSING_S + 1))  # idle past the closing timer: a flow the FINs had closed would be gone
before=$(pings)
rm "$LAB_DIR/stop.pause"
wait_until 5 pings_past $((before + 5)) ||
  fail "the idle connection died under blind FINs ($(pings) pings answered, $before before the FINs): $(cat "$LAB_DIR/client.log")"
log "after the blind FINs and $((2 * CLOSING_S + 1)) s idle (closing_idle_s $CLOSING_S) the connection still answers"

log "the client resets for real"
touch "$LAB_DIR/stop"
wait_exit "$CLIENT_PID" 5 || true
grep -q "^ok after" "$LAB_DIR/client.log" || fail "client: $(cat "$LAB_DIR/client.log")"
for ((i = 0; i < 20; i++)); do (( $(rsts_at "$NS_SRV") > at_srv )) && break; sleep 0.05; done
(( $(rsts_at "$NS_SRV") > at_srv )) || fail "the client's real RST did not reach srv: $(metrics | grep -E 'drops_total.*(rst|no_flow|stale)|rst_passed')"
start=$(date +%s.%N)
for ((i = 0; i < 10 * (LINGER_S + 3); i++)); do
  (( $(metric_sum syngate_flows_active) == 0 )) && break
  sleep 0.1
done
freed=$(calc "$(date +%s.%N) - $start")
(( $(metric_sum syngate_flows_active) == 0 )) || fail "the flow was not freed after the real RST"
pass "blind RSTs changed nothing ($dropped dropped, $at_srv/$at_cli reached srv/cli), nor did blind FINs; the real RST freed the flow in ${freed}s (linger_s $LINGER_S)"
