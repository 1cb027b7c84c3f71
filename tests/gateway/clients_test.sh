#!/usr/bin/env bash
# Client and backend variants through syngate: a server that speaks first gets its greeting out
# at once; clients without timestamps, without window scaling and with MSS 1260 work (and the
# backend sees MSS 1260, not the kernel cookie table's 536); a backend whose window scale differs
# from the one syngate announced carries iperf3 traffic at windows over 64 KB; a service on the
# gateway host itself (INPUT/OUTPUT path) works too.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up
start_nginx
head -c $((4 * 1024 * 1024)) /dev/urandom > "$LAB_DIR/www/4m.bin"
want=$(sha256sum < "$LAB_DIR/www/4m.bin" | cut -d' ' -f1)

# Greeter that also reports the MSS the backend ended up with (TCP_MAXSEG of the accepted socket).
cat > "$LAB_DIR/greeter.py" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.10.3.2", 7000)); s.listen(128)
while True:
    c, _ = s.accept()
    mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    c.sendall(b"220 hello mss=%d\r\n" % mss)
    c.close()
PY
bg "$NS_SRV" /usr/bin/python3 "$LAB_DIR/greeter.py"
wait_listen "$NS_SRV" 7000 || fail "greeter did not start"
bg "$NS_SRV" iperf3 -s -B 10.10.3.2 -p 5201
wait_listen "$NS_SRV" 5201 || fail "iperf3 did not start"
# A service on the gateway itself (host mode: INPUT/OUTPUT hooks).
mkdir -p "$LAB_DIR/local"; echo "local service" > "$LAB_DIR/local/index.html"
bg "$NS_GW" /usr/bin/python3 -m http.server 8080 --bind 10.10.1.1 --directory "$LAB_DIR/local"
wait_listen "$NS_GW" 8080 || fail "local http server did not start"

# Backend window scale 10 (tcp_rmem max 32 MB) against the default announced 7.
in_ns "$NS_SRV" sysctl -qw net.ipv4.tcp_rmem="4096 131072 33554432"
write_config "" "" '[[service]]
address = "10.10.3.2"
port = 7000
[[service]]
address = "10.10.3.2"
port = 5201
[[service]]
address = "10.10.1.1"
port = 8080'
start_syngate

# greet: connect, read the greeting; prints "seconds mss"
cat > "$LAB_DIR/greet.py" <<'PY'
import socket, time, re
t0 = time.monotonic()
c = socket.create_connection(("10.10.3.2", 7000), timeout=3)
data = b""
while not data.endswith(b"\r\n"):
    chunk = c.recv(100)
    if not chunk: break
    data += chunk
t = time.monotonic() - t0
m = re.search(rb"mss=(\d+)", data)
print("%.3f %s" % (t, m.group(1).decode() if m else "none"))
PY

greet_check() {  # greet_check LABEL MIN_MSS MAX_MSS: 20 greetings, each within 0.5 s
  local label=$1 lo=$2 hi=$3 worst=0 i out t mss
  for i in $(seq 20); do
    out=$(in_ns "$NS_CLI" /usr/bin/python3 "$LAB_DIR/greet.py") || fail "$label: greeting connection failed"
    read -r t mss <<<"$out"
    [[ $mss != none ]] || fail "$label: no greeting"
    fcmp "$t > 0.5" && fail "$label: greeting took ${t}s"
    (( mss >= lo && mss <= hi )) || fail "$label: backend MSS $mss, want $lo..$hi"
    worst=$(calc "($t > $worst) ? $t : $worst")
  done
  echo "$worst $mss"
}

variant() {  # variant LABEL: 20 requests + 4 MB download intact
  local label=$1 ok=0 i
  for i in $(seq 20); do
    [[ $(cli_curl http://10.10.3.2/ 2>/dev/null) == "hello from srv" ]] && ok=$((ok + 1))
  done
  [[ $ok == 20 ]] || fail "$label: $ok/20 requests"
  got=$(CURL_TIMEOUT=20 cli_curl http://10.10.3.2/4m.bin | sha256sum | cut -d' ' -f1)
  [[ $got == "$want" ]] || fail "$label: 4 MB download corrupted"
}

read -r worst mss < <(greet_check "server speaks first" 1200 1460)
pass "server speaks first: 20/20 greetings, slowest ${worst}s (backend MSS $mss)"

variant "default client"; pass "default client: 20/20 + 4 MB intact"

in_ns "$NS_CLI" sysctl -qw net.ipv4.tcp_timestamps=0
variant "no timestamps"; read -r worst mss < <(greet_check "no timestamps" 1400 1460)
in_ns "$NS_CLI" sysctl -qw net.ipv4.tcp_timestamps=1
pass "client without timestamps: 20/20 + 4 MB intact, greeting ${worst}s, backend MSS $mss"

in_ns "$NS_CLI" sysctl -qw net.ipv4.tcp_window_scaling=0
variant "no window scaling"
in_ns "$NS_CLI" sysctl -qw net.ipv4.tcp_window_scaling=1
pass "client without window scaling: 20/20 + 4 MB intact"

in_ns "$NS_CLI" ip route replace default via 10.10.1.1 advmss 1260
variant "MSS 1260"
# 1260 with timestamps leaves 1248 payload bytes per segment; the kernel's table would give 536.
read -r worst mss < <(greet_check "MSS 1260" 1200 1260)
in_ns "$NS_CLI" ip route replace default via 10.10.1.1
pass "client with MSS 1260: 20/20 + 4 MB intact, backend MSS $mss"

# iperf3 through a backend with window scale 10 while syngate announced 7; sample the client's
# view of the send window (the backend's window as translated by syngate).
log "iperf3 with a backend window scale different from the announced one"
in_ns "$NS_CLI" iperf3 -c 10.10.3.2 -p 5201 -t 3 -J > "$LAB_DIR/iperf.json" &
iperf_pid=$!
track_pid "$iperf_pid"
maxwnd=0
for i in $(seq 25); do
  sleep 0.1
  w=$(in_ns "$NS_CLI" ss -tin "dst 10.10.3.2:5201" | grep -o 'snd_wnd:[0-9]*' | cut -d: -f2 | sort -n | tail -1 || true)
  [[ -n $w ]] && (( w > maxwnd )) && maxwnd=$w
done
wait "$iperf_pid" || fail "iperf3 failed: $(head -c 2000 "$LAB_DIR/iperf.json")"
bps=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$LAB_DIR/iperf.json")
(( maxwnd > 65535 )) || fail "iperf3: client send window peaked at $maxwnd bytes, want > 64 KB"
(( bps > 50000000 )) || fail "iperf3: only $bps bit/s"
pass "iperf3 via backend wscale 10 / announced 7: $((bps / 1000000)) Mbit/s, client send window up to $maxwnd bytes"

in_ns "$NS_CLI" iperf3 -c 10.10.3.2 -p 5201 -t 2 -R -J > "$LAB_DIR/iperf-r.json" || fail "iperf3 -R failed"
bps=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$LAB_DIR/iperf-r.json")
(( bps > 50000000 )) || fail "iperf3 -R: only $bps bit/s"
pass "iperf3 reverse (backend sends): $((bps / 1000000)) Mbit/s"

ok=0
for i in $(seq 20); do
  [[ $(cli_curl http://10.10.1.1:8080/ 2>/dev/null) == "local service" ]] && ok=$((ok + 1))
done
[[ $ok == 20 ]] || fail "service on the gateway host: $ok/20"
valid_before=$(metric_sum syngate_cookies_valid_total)
pass "service on the gateway host (INPUT/OUTPUT): 20/20 (cookies validated so far: $valid_before)"
(( $(metric_sum syngate_engine_exceptions_total) == 0 )) || fail "engine exceptions"
