#!/usr/bin/env bash
# `syngate status` always ends: against an endpoint that trickles one byte every 2 s (it waited
# for ever), one whose chunked body never ends (678 MB in 6 s, then bad_alloc), and with
# --watch nan (a sleep that never ends). Loopback only, no root.
# Usage: status_hostile_test.sh SYNGATE
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# serve MODE: a one-process HTTP server on a free loopback port; writes the port to $tmp/port.
serve() {
  rm -f "$tmp/port"
  python3 - "$1" "$tmp/port" <<'PY' &
import socket, sys, threading, time
mode, port_file = sys.argv[1], sys.argv[2]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
open(port_file + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(port_file + ".tmp", port_file)
def handle(c):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d: return
            buf += d
        if mode == "trickle":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                c.sendall(b"x"); time.sleep(2)
        elif mode == "chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
            end = time.time() + 30
            while time.time() < end: c.sendall(chunk)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
PY
  server_pid=$!
  for _ in $(seq 100); do [ -f "$tmp/port" ] && break; sleep 0.05; done
  [ -f "$tmp/port" ] || fail "the test server did not start"
  cat >"$tmp/syngate.toml" <<EOF
[gateway]
secret_file = "$tmp/secrets"
metrics_address = "127.0.0.1:$(cat "$tmp/port")"
[[service]]
address = "10.10.3.2"
port = 80
EOF
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

# run_status SECONDS ARGS...: runs status with a hard limit and 1 GB of address space (the old
# client grew without bound); sets rc, took and out.
run_status() {
  local limit=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  rc=0
  out=$( (ulimit -v 1048576; timeout "$limit" "$bin" status "$@") 2>&1) || rc=$?
  t1=$(date +%s.%N)
  took=$(python3 -c "print(round($t1 - $t0, 1))")
  echo "status $*: exit $rc after $took s: $(echo "$out" | head -n 2 | tr '\n' ' ')"
}

echo "== an endpoint that trickles one byte every 2 s"
serve trickle
run_status 30 --config "$tmp/syngate.toml"
[ "$rc" != 124 ] || fail "status still waiting after 30 s"
[ "$rc" = 1 ] || fail "status exited $rc, expected 1 (no answer in time)"
echo "$out" | grep -q "no complete answer within 5 s" || fail "the reason does not say the deadline passed"
python3 -c "import sys; sys.exit(0 if $took < 12 else 1)" || fail "status took $took s"
stop_server

echo "== an endless chunked body"
serve chunked
run_status 30 --config "$tmp/syngate.toml" --json
[ "$rc" != 124 ] || fail "status still reading after 30 s"
[ "$rc" = 3 ] || fail "status exited $rc, expected 3 (not syngate's metrics)"
echo "$out" | grep -q "larger than 16777216 bytes" || fail "the reason does not name the body cap"
stop_server

echo "== --watch takes a finite number of seconds"
for bad in nan NaN inf -1 0.1; do
  run_status 10 --config "$tmp/syngate.toml" --watch "$bad"
  [ "$rc" != 124 ] || fail "--watch $bad ran on"
  [ "$rc" != 0 ] && [ "$rc" != 1 ] || fail "--watch $bad was accepted (exit $rc)"
  echo "$out" | grep -q -- "--watch" || fail "the error for --watch $bad does not name the option"
done
echo PASS
