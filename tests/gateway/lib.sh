# Shared fixture for the gateway integration tests (label "root"): builds the lab topology (drawn below)
# in network namespaces unique to this run, and tears everything down on every exit path.
#
#   cli (10.10.1.2) --- gw (10.10.1.1 | 10.10.2.1 | 10.10.3.1) --- srv (10.10.3.2)
#   atk (10.10.2.2) ---'          route 198.18.0.0/15 -> atk (spoofed backscatter dies there)
#
# The namespaces are linked only to each other: nothing here touches the root namespace's
# interfaces, sysctls or iptables. Processes are started through `bg NS cmd...` and killed by PID.
# Built on the namespace kit (tests/lib/netns.sh): its registry and trap remove what a test made.
#
# Usage in a test script:
#   source "$(dirname "$0")/lib.sh"; lab_init "$1"   # $1 = path of the syngate binary
#   lab_up; start_nginx; start_syngate "$config_text"; ... ; pass "message"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/netns.sh"
# This directory: the tests' helper scripts (transfer_server.py, stream_check.py, ...).
LAB_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

lab_init() {
  SYNGATE_BIN=${1:?usage: test.sh /path/to/syngate [extra]}
  [[ -x $SYNGATE_BIN ]] || { echo "FAIL: $SYNGATE_BIN is not executable"; exit 1; }
  require_root "needs root"
  LAB_ID="$$$RANDOM"
  LAB_ID=${LAB_ID:0:9}
  NS_CLI="sgcli$LAB_ID"; NS_GW="sggw$LAB_ID"; NS_SRV="sgsrv$LAB_ID"; NS_ATK="sgatk$LAB_ID"
  LAB_DIR=$(mktemp -d /tmp/syngate-test.XXXXXX)
  LAB_FAILED=0
  netns_init
  netns_on_exit lab_down
}

log() { echo "[$(date +%T.%3N)] $*"; }
fail() { echo "FAIL: $*"; LAB_FAILED=1; exit 1; }
pass() { echo "PASS: $*"; }

# Floating-point helpers without bc: calc EXPR prints it, fcmp EXPR succeeds when it is true.
calc() { awk "BEGIN { print $1 }"; }
fcmp() { awk "BEGIN { exit !($1) }"; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

lab_up() {
  ns_add "$NS_CLI" "$NS_GW" "$NS_SRV" "$NS_ATK"
  # veth pairs created directly inside the namespaces (never in the root namespace)
  veth "$NS_CLI" c0 "$NS_GW" g1
  veth "$NS_ATK" a0 "$NS_GW" g2
  veth "$NS_SRV" s0 "$NS_GW" g3
  in_ns "$NS_CLI" ip addr add 10.10.1.2/24 dev c0
  in_ns "$NS_ATK" ip addr add 10.10.2.2/24 dev a0
  in_ns "$NS_SRV" ip addr add 10.10.3.2/24 dev s0
  in_ns "$NS_GW" ip addr add 10.10.1.1/24 dev g1
  in_ns "$NS_GW" ip addr add 10.10.2.1/24 dev g2
  in_ns "$NS_GW" ip addr add 10.10.3.1/24 dev g3
  for pair in "$NS_CLI c0" "$NS_ATK a0" "$NS_SRV s0" "$NS_GW g1" "$NS_GW g2" "$NS_GW g3"; do
    set -- $pair
    in_ns "$1" ip link set "$2" up
  done
  in_ns "$NS_CLI" ip route add default via 10.10.1.1
  in_ns "$NS_ATK" ip route add default via 10.10.2.1
  in_ns "$NS_SRV" ip route add default via 10.10.3.1
  in_ns "$NS_GW" sysctl -qw net.ipv4.ip_forward=1
  in_ns "$NS_GW" ip route add 198.18.0.0/15 via 10.10.2.2
  # atk swallows backscatter to the spoofed range at its first hook, as bench/lab/run.sh does: on
  # veth atk's receive work runs on the CPU that sent it, i.e. the gateway's
  in_ns "$NS_ATK" iptables -t raw -A PREROUTING -d 198.18.0.0/15 -j DROP
  in_ns "$NS_CLI" ip tcp_metrics flush 2>/dev/null || true
}

# IPv6 on every link of the lab: cli fd00:10:1::2, atk fd00:10:2::2, srv fd00:10:3::2, gw ::1 on
# each; the spoofed range 2001:2::/48 routed to atk, whose backscatter dies there.
lab_ipv6() {
  in_ns "$NS_CLI" ip -6 addr add fd00:10:1::2/64 dev c0 nodad
  in_ns "$NS_ATK" ip -6 addr add fd00:10:2::2/64 dev a0 nodad
  in_ns "$NS_SRV" ip -6 addr add fd00:10:3::2/64 dev s0 nodad
  in_ns "$NS_GW" ip -6 addr add fd00:10:1::1/64 dev g1 nodad
  in_ns "$NS_GW" ip -6 addr add fd00:10:2::1/64 dev g2 nodad
  in_ns "$NS_GW" ip -6 addr add fd00:10:3::1/64 dev g3 nodad
  in_ns "$NS_CLI" ip -6 route add default via fd00:10:1::1
  in_ns "$NS_ATK" ip -6 route add default via fd00:10:2::1
  in_ns "$NS_SRV" ip -6 route add default via fd00:10:3::1
  in_ns "$NS_GW" sysctl -qw net.ipv6.conf.all.forwarding=1
  in_ns "$NS_GW" ip -6 route add 2001:2::/48 via fd00:10:2::2
  in_ns "$NS_ATK" ip6tables -t raw -A PREROUTING -d 2001:2::/48 -j DROP
  # Resolve the gateway's IPv6 neighbours now: packets to a neighbour still INCOMPLETE wait in a
  # short queue and the first ones of a test would be lost or late.
  # A datagram to each neighbour starts the resolution; wait until the entry is usable.
  local addr i
  for addr in fd00:10:1::2 fd00:10:2::2 fd00:10:3::2; do
    for ((i = 0; i < 50; i++)); do
      in_ns "$NS_GW" ip -6 neigh show "$addr" | grep -qE 'REACHABLE|STALE|DELAY|PROBE' && break
      (( i % 10 == 0 )) && in_ns "$NS_GW" python3 -c 'import socket, sys
socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"x", (sys.argv[1], 9))' "$addr"
      sleep 0.1
    done
  done
}

# The lab with a router on each side of the gateway, for what routers send back (ICMP errors),
# IPv4 and IPv6, instead of lab_up (no atk):
#
#   cli ---- rcl ---- gw ---- rsv ---- srv
#   10.10.1.2    10.10.1.1|10.10.4.2    10.10.4.1|10.10.5.1    10.10.5.2|10.10.3.1    10.10.3.2
#   (IPv6: fd00:10:N::x on the same links)
#
# Each router's route toward its endpoint has a 1280-byte MTU: a 1280-byte link seen from the
# router, in that direction only (the interfaces stay at 1500, so the endpoints announce and
# expect 1500). Locked, because IPv6 forwarding honours only a locked route MTU; IPv6 routes
# replaced at the kernel's metric (256), or the kernel's own route would stay first. Packets
# larger than that toward cli make rcl answer "fragmentation needed" / "packet too big" to their
# sender through the gateway; toward srv, rsv does.
lab_up_routed() {
  NS_RCL="sgrc$LAB_ID"; NS_RSV="sgrs$LAB_ID"
  ns_add "$NS_CLI" "$NS_RCL" "$NS_GW" "$NS_RSV" "$NS_SRV"
  veth "$NS_CLI" c0 "$NS_RCL" rc0
  veth "$NS_RCL" rc1 "$NS_GW" g1
  veth "$NS_GW" g3 "$NS_RSV" rs0
  veth "$NS_RSV" rs1 "$NS_SRV" s0
  local link ns dev a4 a6
  for link in "$NS_CLI c0 10.10.1.2 fd00:10:1::2" "$NS_RCL rc0 10.10.1.1 fd00:10:1::1" \
              "$NS_RCL rc1 10.10.4.2 fd00:10:4::2" "$NS_GW g1 10.10.4.1 fd00:10:4::1" \
              "$NS_GW g3 10.10.5.1 fd00:10:5::1" "$NS_RSV rs0 10.10.5.2 fd00:10:5::2" \
              "$NS_RSV rs1 10.10.3.1 fd00:10:3::1" "$NS_SRV s0 10.10.3.2 fd00:10:3::2"; do
    read -r ns dev a4 a6 <<<"$link"
    in_ns "$ns" ip addr add "$a4/24" dev "$dev"
    in_ns "$ns" ip -6 addr add "$a6/64" dev "$dev" nodad
    in_ns "$ns" ip link set "$dev" up
  done
  for ns in "$NS_RCL" "$NS_GW" "$NS_RSV"; do
    in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  done
  in_ns "$NS_CLI" ip route add default via 10.10.1.1
  in_ns "$NS_CLI" ip -6 route add default via fd00:10:1::1
  in_ns "$NS_RCL" ip route add default via 10.10.4.1
  in_ns "$NS_RCL" ip -6 route add default via fd00:10:4::1
  in_ns "$NS_GW" ip route add 10.10.1.0/24 via 10.10.4.2
  in_ns "$NS_GW" ip -6 route add fd00:10:1::/64 via fd00:10:4::2
  in_ns "$NS_GW" ip route add 10.10.3.0/24 via 10.10.5.2
  in_ns "$NS_GW" ip -6 route add fd00:10:3::/64 via fd00:10:5::2
  in_ns "$NS_RSV" ip route add default via 10.10.5.1
  in_ns "$NS_RSV" ip -6 route add default via fd00:10:5::1
  in_ns "$NS_SRV" ip route add default via 10.10.3.1
  in_ns "$NS_SRV" ip -6 route add default via fd00:10:3::1
  in_ns "$NS_RCL" ip route replace 10.10.1.0/24 dev rc0 mtu lock 1280
  in_ns "$NS_RCL" ip -6 route replace fd00:10:1::/64 dev rc0 metric 256 mtu lock 1280
  in_ns "$NS_RSV" ip route replace 10.10.3.0/24 dev rs1 mtu lock 1280
  in_ns "$NS_RSV" ip -6 route replace fd00:10:3::/64 dev rs1 metric 256 mtu lock 1280
  # Every neighbour resolved now, both ways of every link: an INCOMPLETE neighbour holds the
  # first packets of a test back. A datagram to the neighbour starts the resolution.
  local pair peer i
  for pair in "$NS_CLI 10.10.1.1 fd00:10:1::1" "$NS_RCL 10.10.1.2 fd00:10:1::2" \
              "$NS_RCL 10.10.4.1 fd00:10:4::1" "$NS_GW 10.10.4.2 fd00:10:4::2" \
              "$NS_GW 10.10.5.2 fd00:10:5::2" "$NS_RSV 10.10.5.1 fd00:10:5::1" \
              "$NS_RSV 10.10.3.2 fd00:10:3::2" "$NS_SRV 10.10.3.1 fd00:10:3::1"; do
    read -r ns a4 a6 <<<"$pair"
    for peer in "$a4" "$a6"; do
      for ((i = 0; i < 50; i++)); do
        in_ns "$ns" ip neigh show "$peer" | grep -qE 'REACHABLE|STALE|DELAY|PROBE' && break
        (( i % 10 == 0 )) && in_ns "$ns" python3 -c 'import socket, sys
socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (sys.argv[1], 9))' "$peer"
        sleep 0.1
      done
      (( i < 50 )) || fail "routed lab: $ns cannot resolve its neighbour $peer"
    done
  done
}

# Kills what the test started and deletes its namespaces (the lab can then come up again, fresh).
lab_reset() {
  # The kernel path's pins of the gateway's namespace (named by its inode), where a kill -9 left
  # them (only where the daemon saw a bpffs at /sys/fs/bpf)
  local pins
  if pins=$(tc_pin_dir 2>/dev/null); then rm -rf "$pins"; rmdir /sys/fs/bpf/syngate 2>/dev/null || true; fi
  netns_reset
}

# At exit, after the kit's teardown (netns_on_exit): the daemon's log on failure, then the files.
lab_down() {
  local rc=$1
  if [[ $rc != 0 && -f $LAB_DIR/syngate.log ]]; then
    echo "---- syngate log (tail) ----"; tail -n 40 "$LAB_DIR/syngate.log"
  fi
  # LAB_KEEP_LOG=FILE keeps the daemon's whole log (its stop line included) for a person to read.
  if [[ -n ${LAB_KEEP_LOG:-} && -f $LAB_DIR/syngate.log ]]; then cp "$LAB_DIR/syngate.log" "$LAB_KEEP_LOG"; fi
  if [[ -n ${LAB_BPFFS:-} ]]; then umount -l "$LAB_BPFFS" 2>/dev/null || true; fi
  rm -rf "$LAB_DIR"
}

# A bpffs for the kernel path's pins (gateway.bpf_dir = $LAB_BPFFS) that `rules up` and the daemon
# both see: `ip netns exec` mounts a fresh /sys without one, but keeps the rest of the mount tree.
# In the test's own directory; unmounted at exit (lab_down).
kernel_path_bpffs() {
  LAB_BPFFS=$LAB_DIR/bpffs
  mkdir -p "$LAB_BPFFS"
  mount -t bpf bpf "$LAB_BPFFS"
}

# bg NS cmd... : start a process in a namespace; its PID is registered (kit) and in $BG_PID.
bg() { BG_LOG=${BG_LOG:-$LAB_DIR/bg.log} bg_in "$@"; }

wait_port() {  # wait_port NS ADDR PORT [seconds]
  local ns=$1 addr=$2 port=$3 limit=${4:-10} i
  for ((i = 0; i < limit * 20; i++)); do
    in_ns "$ns" bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

wait_listen() {  # wait_listen NS PORT: until a local listener exists (without connecting)
  local ns=$1 port=$2 i
  for ((i = 0; i < 200; i++)); do
    in_ns "$ns" ss -Htln "sport = :$port" | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

# start_nginx [SERVER_BLOCK_BODY]: nginx serving $LAB_DIR/www, in $NGINX_NS (default srv); by
# default on 10.10.3.2:80.
start_nginx() {
  local ns=${NGINX_NS:-$NS_SRV}
  mkdir -p "$LAB_DIR/www" "$LAB_DIR/nginx"
  echo "hello from srv" > "$LAB_DIR/www/index.html"
  cat > "$LAB_DIR/nginx/nginx.conf" <<CONF
user root;
worker_processes 1;
daemon off;
pid $LAB_DIR/nginx/nginx.pid;
error_log $LAB_DIR/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_timeout 0;
  client_body_temp_path $LAB_DIR/nginx/body;
  proxy_temp_path $LAB_DIR/nginx/proxy;
  fastcgi_temp_path $LAB_DIR/nginx/fastcgi;
  uwsgi_temp_path $LAB_DIR/nginx/uwsgi;
  scgi_temp_path $LAB_DIR/nginx/scgi;
  server { ${1:-listen 10.10.3.2:80 backlog=4096;} root $LAB_DIR/www; }
}
CONF
  bg "$ns" nginx -c "$LAB_DIR/nginx/nginx.conf" -p "$LAB_DIR/nginx"
  wait_listen "$ns" 80 || fail "nginx did not start: $(cat "$LAB_DIR/nginx/error.log" 2>/dev/null)"
}

# A server that speaks first: writes a greeting as soon as a connection is accepted.
start_greeter() {  # start_greeter PORT
  local port=$1
  cat > "$LAB_DIR/greeter.py" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.10.3.2", int(sys.argv[1]))); s.listen(128)
while True:
    c, _ = s.accept()
    c.sendall(b"220 greetings from srv\r\n")
    c.close()
PY
  bg "$NS_SRV" /usr/bin/python3 "$LAB_DIR/greeter.py" "$port"
  wait_listen "$NS_SRV" "$port" || fail "greeter did not start"
}

# serve_big MB: random bytes as nginx's /big.bin; $want is their sha256.
serve_big() {
  head -c $(($1 * 1024 * 1024)) /dev/urandom > "$LAB_DIR/www/big.bin"
  want=$(sha256sum < "$LAB_DIR/www/big.bin" | cut -d' ' -f1)
}

# A small client receive buffer: a rate-limited download then waits in the server's send queue,
# not in the client's socket, so it depends on the gateway for its whole length.
# The transfer tests' server (transfer_server.py: 7100 sends the file, 7101 hashes what it gets)
# with MB random megabytes; sets TRANSFER_SHA256. transfer_client.py is its client.
start_transfer_server() {  # start_transfer_server MB
  head -c $(($1 * 1024 * 1024)) /dev/urandom > "$LAB_DIR/data.bin"
  TRANSFER_SHA256=$(sha256sum < "$LAB_DIR/data.bin" | cut -d' ' -f1)
  bg "$NS_SRV" /usr/bin/python3 "$LAB_TESTS/transfer_server.py" 10.10.3.2 "$LAB_DIR/data.bin"
  wait_listen "$NS_SRV" 7100 || fail "transfer server did not start"
  wait_listen "$NS_SRV" 7101 || fail "transfer server did not start"
}
small_client_rmem() { in_ns "$NS_CLI" sysctl -qw net.ipv4.tcp_rmem="4096 16384 65536"; }

# A server that speaks first and then echoes: "hello\n" on accept, "echo LINE" for every line.
start_echo() {  # start_echo PORT
  local port=$1
  [[ -f $LAB_DIR/echo.py ]] || cat > "$LAB_DIR/echo.py" <<'PY'
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.10.3.2", int(sys.argv[1]))); s.listen(64)
def serve(c):
    c.sendall(b"hello\n")
    for line in c.makefile("rb"):
        c.sendall(b"echo " + line)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
  bg "$NS_SRV" /usr/bin/python3 "$LAB_DIR/echo.py" "$port"
  wait_listen "$NS_SRV" "$port" || fail "echo server on $port did not start"
}

# srv's two addresses on port 8080 (count_server.py's), as write_config's service tables.
SERVICES_8080='
[[service]]
address = "10.10.3.2"
port = 8080

[[service]]
address = "fd00:10:3::2"
port = 8080'

# Writes $LAB_DIR/syngate.toml: the minimal config plus whatever extra TOML the caller gives
# (extra [gateway] keys go in $1, extra [engine] keys in $2, extra services in $3).
# The XDP fast path is off unless XDP_MODE says otherwise: these tests assert the NFQUEUE path's
# own counters, and xdp_test.sh tests the fast path.
# The kernel path is the shipped default (on) unless KERNEL_PATH says "off" (or "auto");
# TC_OPEN_FLOWS=true|false runs a test with tc_open_flows other than its default (not for tests
# that set the key themselves).
write_config() {
  cat > "$LAB_DIR/syngate.toml" <<CONF
[gateway]
secret_file = "$LAB_DIR/secrets"
state_dir = "$LAB_DIR/state"
stats_interval_s = 0
${KERNEL_PATH:+kernel_path = \"$KERNEL_PATH\"}
${TC_OPEN_FLOWS:+tc_open_flows = $TC_OPEN_FLOWS}
${1:-}

[engine]
${2:-}

[xdp]
mode = "${XDP_MODE:-off}"

[[service]]
address = "10.10.3.2"
port = 80
${3:-}
CONF
}

# Whether the fast path's program is attached to interface IF of the gateway namespace in HOOK
# (generic or tc), as the kernel shows it: `ip link` for XDP, the tcx links for tc (an ifindex is
# per namespace, so the program's name is matched too).
fast_path_on() {  # fast_path_on IF HOOK
  local ifindex
  case $2 in
    generic) in_ns "$NS_GW" ip -d link show "$1" | grep -q "xdpgeneric" ;;
    tc)
      # The tcx links this test's syngate holds (their fdinfo names the ifindex): the kernel's
      # list of all links would also show those of a syngate in another test's namespace, where
      # the same ifindex means another interface. A dead syngate holds none.
      ifindex=$(in_ns "$NS_GW" ip -o link show "$1" | cut -d: -f1) || return 1
      [[ -n ${SYNGATE_PID:-} ]] || return 1
      grep -ls "^link_type:[[:space:]]*tcx" /proc/"$SYNGATE_PID"/fdinfo/* 2>/dev/null |
        xargs -r grep -ls "^ifindex:[[:space:]]*$ifindex\$" | grep -q . ;;
    *) fail "fast_path_on: unknown hook $2" ;;
  esac
}

# How many times the daemon's log says it is running (0 before the log exists).
running_lines() {
  local n
  n=$(grep -c "syngate running" "$LAB_DIR/syngate.log" 2>/dev/null) || true
  echo "${n:-0}"
}

# SIGHUP, then wait until the daemon logs the reload as done (a quarter second more for the
# workers to pick it up).
reload() {
  local before
  before=$(grep -c "reload: done" "$LAB_DIR/syngate.log" || true)
  kill -HUP "$SYNGATE_PID"
  for _ in $(seq 100); do
    (( $(grep -c "reload: done" "$LAB_DIR/syngate.log" || true) > before )) && { sleep 0.25; return 0; }
    sleep 0.05
  done
  fail "no reload after SIGHUP: $(tail -3 "$LAB_DIR/syngate.log")"
}

# The kernel's SYNPROXY in gw instead of syngate, as bench/lab/run.sh sets it up, for the tests
# that measure it side by side (docs/faults.md): the SYNs to 10.10.3.2 on PORTS (iptables syntax,
# 80 or 80:84) arriving on each of IFACES untracked in raw PREROUTING (rules that name interfaces,
# as a deployment's do), answered by SYNPROXY in FORWARD, INVALID dropped, conntrack not loose.
synproxy_up() {  # synproxy_up PORTS IFACE...
  local ports=$1 ifc
  shift
  for ifc in "$@"; do
    in_ns "$NS_GW" iptables -t raw -A PREROUTING -i "$ifc" -p tcp -d 10.10.3.2 --dport "$ports" --syn -j CT --notrack
  done
  in_ns "$NS_GW" iptables -A FORWARD -p tcp -d 10.10.3.2 --dport "$ports" -m conntrack --ctstate INVALID,UNTRACKED \
    -j SYNPROXY --sack-perm --timestamp --wscale 7 --mss 1460
  in_ns "$NS_GW" iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP
  in_ns "$NS_GW" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
}
# SYNs SYNPROXY answered in gw so far (/proc/net/stat/synproxy is per namespace, one hex line per
# CPU: entries, syn_received, cookie_invalid, cookie_valid, cookie_retrans, conn_reopened).
synproxy_syns() {
  local n=0 _e syn _rest
  while read -r _e syn _rest; do n=$((n + 16#$syn)); done < <(in_ns "$NS_GW" tail -n +2 /proc/net/stat/synproxy)
  echo "$n"
}

# spoofed_syns NS COUNT [DST_PORT]: COUNT SYNs to 10.10.3.2 from random 198.18.0.0/15 sources,
# sent from namespace NS (atk, whose backscatter dies in its raw PREROUTING), bounded in time.
spoofed_syns() {
  in_ns "$1" timeout 60 /usr/bin/python3 - "$2" "${3:-80}" <<'PY'
import random, socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton("10.10.3.2")
port = int(sys.argv[2])
for i in range(int(sys.argv[1])):
    src = struct.pack("!I", (198 << 24 | 18 << 16) + random.randrange(1 << 17))  # 198.18.0.0/15
    tcp = struct.pack("!HHIIBBHHH", random.randrange(1024, 65535), port, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    s.sendto(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst) + tcp, ("10.10.3.2", 0))
PY
}
# A counting rule in srv for the spoofed SYNs that reach the backend; backend_syns reads it.
count_spoofed_at_backend() { in_ns "$NS_SRV" iptables -A INPUT -p tcp --syn -s 198.18.0.0/15; }
backend_syns() { in_ns "$NS_SRV" iptables -nvxL INPUT | awk '/198.18.0.0\/15/ { s += $1 } END { printf "%d\n", s }'; }

# Installs the rules and starts the daemon in gw; waits until the queues are bound. The rules come
# from RULES_CONFIG when set (rules made for another configuration), else from the daemon's.
start_syngate() {
  in_ns "$NS_GW" "$SYNGATE_BIN" check --config "$LAB_DIR/syngate.toml" >/dev/null
  in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "${RULES_CONFIG:-$LAB_DIR/syngate.toml}" >/dev/null
  # the log is appended across restarts: wait for one more "running" line than before
  local before i
  before=$(running_lines)
  BG_LOG=$LAB_DIR/syngate.log bg "$NS_GW" "$SYNGATE_BIN" run --config "$LAB_DIR/syngate.toml"
  SYNGATE_PID=$BG_PID
  for ((i = 0; i < 100; i++)); do
    if (( $(running_lines) > before )); then
      # Start probes every interface for a dead syngate's tc filters: an interface without a
      # clsact qdisc simply has none, which is no error for the log (issue 23).
      ! grep -q "Parent Qdisc" "$LAB_DIR/syngate.log" ||
        fail "the start logged the kernel's answer for an interface without a qdisc: $(grep -m2 "Parent Qdisc" "$LAB_DIR/syngate.log")"
      return 0
    fi
    kill -0 "$SYNGATE_PID" 2>/dev/null || fail "syngate exited: $(cat "$LAB_DIR/syngate.log")"
    sleep 0.05
  done
  fail "syngate did not start: $(cat "$LAB_DIR/syngate.log")"
}

# The gateway's own state directory: gateway.state_dir/INSTANCE.netns-INODE (the instance is the
# config file's name: syngate), as gateway/flow_state.hpp lays it out.
state_instance_dir() {
  echo "$LAB_DIR/state/${1:-syngate}.netns-$(in_ns "$NS_GW" stat -Lc %i /proc/self/ns/net)"
}

# Where the gateway's kernel path pins its flow map (gateway/tc_program.cpp, pin_dir).
tc_pin_dir() {
  local inode
  inode=$(in_ns "$NS_GW" stat -Lc %i /proc/self/ns/net) || return 1
  local name=${1:-syngate}
  echo "${LAB_BPFFS:-/sys/fs/bpf}/syngate/${name//./:}:netns-$inode"
}

metrics() { in_ns "$NS_GW" curl -s --max-time 2 http://127.0.0.1:9470/metrics; }
# metric_sum NAME [label-filter]: sum of a metric over all its series
metric_sum() {
  metrics | awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"({|$)" && index($1, f) { s += $2 } END { printf "%d\n", s }'
}

# settled_metric NAME [label-filter]: metric_sum once two reads 0.25 s apart agree (up to 5 s).
# The workers publish their counters every 100 ms, after a receive timeout of up to 100 ms, later
# on a loaded machine: a read right after the traffic can miss the last of it.
settled_metric() {
  local now prev=-1 i
  for ((i = 0; i < 20; i++)); do
    now=$(metric_sum "$@")
    (( now == prev )) && break
    prev=$now
    sleep 0.25
  done
  echo "$now"
}

# expect_empty_tables WHAT: within 10 s, the flow table, the tc flow map and the XDP flow map
# (empty without the fast path) are all empty; fails naming what is left of WHAT.
expect_empty_tables() {
  local active entries keys
  for _ in $(seq 100); do
    active=$(metric_sum syngate_flows_active)
    entries=$(metric_sum syngate_tc_flow_entries)
    keys=$(metric_sum syngate_xdp_flow_keys)
    (( active == 0 && entries == 0 && keys == 0 )) && return 0
    sleep 0.1
  done
  (( active == 0 )) || fail "$active $1 still in the table 10 s after the last connection"
  (( entries == 0 )) || fail "$entries tc flow map entries left 10 s after the last connection ($1)"
  fail "$keys XDP flow map keys left 10 s after the last connection ($1)"
}


rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# curl from cli; prints the body; extra curl options allowed
# thread_sched PID THREAD [PREFIX...]: "<policy> <rt priority> <nice>" of PID's thread named
# THREAD, from its /proc stat (fields 41, 40 and 19, counted after comm's closing parenthesis: comm
# may hold spaces or parentheses); PREFIX runs the read elsewhere (a container's PID namespace).
# Policies (sched.h): SCHED_OTHER 0, SCHED_FIFO 1.
thread_sched() {
  local pid=$1 name=$2
  shift 2
  "$@" sh -c 'for t in /proc/'"$pid"'/task/*; do
      [ "$(cat "$t/comm" 2>/dev/null)" = "'"$name"'" ] && { sed "s/.*) //" "$t/stat"; break; }
    done' | awk '{ print $39, $38, $17 }'
}

cli_curl() { in_ns "$NS_CLI" curl -sS --max-time "${CURL_TIMEOUT:-5}" "$@"; }
