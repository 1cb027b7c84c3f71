#!/usr/bin/env bash
# Scale-out: two protected hosts behind an ECMP router, one anycast service address, syngate on
# each in host mode with ONE shared secrets file (docs/scale-out.md).
#   - connections from many client ports spread over both hosts and all succeed;
#   - a path change mid-handshake: the SYN is answered by one host, the route moves, the cookie
#     ACK reaches the other host, which validates the cookie (same secrets) and serves the client.
#
#   cli (10.10.1.2) --- rt (10.10.1.1 | 10.10.5.1 | 10.10.6.1) ==ECMP== hA (10.10.5.2)
#                                                                      hB (10.10.6.2)
#   service 10.10.9.9:80 on both hosts (anycast, on lo), nginx + syngate (mode = "host") on each.
#   ecmp_test.sh SYNGATE
set -euo pipefail
SYNGATE_BIN=${1:?usage: ecmp_test.sh SYNGATE}
source "$(dirname "$0")/../lib/netns.sh"
require_root "needs root"
ID="$$$RANDOM"; ID=${ID:0:9}
CLI=sgecli$ID RT=sgert$ID HA=sgeha$ID HB=sgehb$ID
DIR=$(mktemp -d /tmp/syngate-ecmp.XXXXXX)
# At exit, after the kit's teardown: the daemons' logs on failure, then the files.
down() {
  if [[ $1 != 0 ]]; then for h in a b; do echo "--- syngate $h"; tail -5 "$DIR/syngate-$h.log" 2>/dev/null; done; fi
  rm -rf "$DIR"
}
netns_init
netns_on_exit down
fail() { echo "FAIL: $*"; exit 1; }
pass() { echo "PASS: $*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

ns_add "$CLI" "$RT" "$HA" "$HB"
veth "$CLI" c0 "$RT" r1
veth "$HA" a0 "$RT" r5
veth "$HB" b0 "$RT" r6
in_ns "$CLI" ip addr add 10.10.1.2/24 dev c0
in_ns "$RT" ip addr add 10.10.1.1/24 dev r1
in_ns "$RT" ip addr add 10.10.5.1/24 dev r5
in_ns "$RT" ip addr add 10.10.6.1/24 dev r6
in_ns "$HA" ip addr add 10.10.5.2/24 dev a0
in_ns "$HB" ip addr add 10.10.6.2/24 dev b0
for pair in "$CLI c0" "$RT r1" "$RT r5" "$RT r6" "$HA a0" "$HB b0"; do set -- $pair; in_ns "$1" ip link set "$2" up; done
in_ns "$CLI" ip route add default via 10.10.1.1
in_ns "$HA" ip route add default via 10.10.5.1
in_ns "$HB" ip route add default via 10.10.6.1
in_ns "$RT" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
in_ns "$RT" ip route add 10.10.9.9/32 nexthop via 10.10.5.2 nexthop via 10.10.6.2

# The secrets file is made once and copied to every host (as an operator distributes it).
umask 077
for h in a b; do
  ns=$HA; [[ $h == b ]] && ns=$HB
  in_ns "$ns" ip addr add 10.10.9.9/32 dev lo
  mkdir -p "$DIR/$h/www" "$DIR/$h/nginx"
  echo "hello from host $h" > "$DIR/$h/www/index.html"
  cat > "$DIR/$h/nginx.conf" <<CONF
user root; worker_processes 1; daemon off; pid $DIR/$h/nginx/pid; error_log $DIR/$h/nginx/err warn;
events { worker_connections 1024; }
http { access_log off; keepalive_timeout 0; client_body_temp_path $DIR/$h/nginx/b; proxy_temp_path $DIR/$h/nginx/p;
  fastcgi_temp_path $DIR/$h/nginx/f; uwsgi_temp_path $DIR/$h/nginx/u; scgi_temp_path $DIR/$h/nginx/s;
  server { listen 10.10.9.9:80; root $DIR/$h/www; } }
CONF
  in_ns "$ns" nginx -c "$DIR/$h/nginx.conf" -p "$DIR/$h/nginx" > /dev/null 2>&1 &
  track_pid $!
  cat > "$DIR/$h/syngate.toml" <<CONF
[gateway]
secret_file = "$DIR/$h/secrets"
state_dir = "$DIR/$h/state"
mode = "host"
stats_interval_s = 0
# The NFQUEUE path's counters are asserted below (xdp_test.sh covers the fast path).
[xdp]
mode = "off"
[[service]]
address = "10.10.9.9"
port = 80
CONF
done
"$SYNGATE_BIN" check --config "$DIR/a/syngate.toml" > /dev/null
# The first host's start creates the secrets; the same file then goes to the second host.
start() {  # start a|b
  local h=$1 ns=$HA
  [[ $h == b ]] && ns=$HB
  in_ns "$ns" "$SYNGATE_BIN" rules up --config "$DIR/$h/syngate.toml" > /dev/null
  in_ns "$ns" "$SYNGATE_BIN" run --config "$DIR/$h/syngate.toml" >> "$DIR/syngate-$h.log" 2>&1 &
  track_pid $!
  for _ in $(seq 100); do grep -q "syngate running" "$DIR/syngate-$h.log" 2>/dev/null && return 0; sleep 0.05; done
  fail "syngate on host $h did not start: $(cat "$DIR/syngate-$h.log")"
}
start a
cp -p "$DIR/a/secrets" "$DIR/b/secrets"
start b
metric() {  # metric a|b NAME
  local ns=$HA
  [[ $1 == b ]] && ns=$HB
  in_ns "$ns" curl -s --max-time 2 http://127.0.0.1:9470/metrics | awk -v n="$2" '$1 ~ "^"n"({|$)" { s += $2 } END { printf "%d\n", s }'
}
sleep 0.3

ok=0; seen_a=0; seen_b=0
for i in $(seq 40); do
  body=$(in_ns "$CLI" curl -sS --max-time 3 --local-port $((20000 + i * 7)) http://10.10.9.9/ 2>/dev/null || true)
  [[ $body == "hello from host a" ]] && { ok=$((ok + 1)); seen_a=$((seen_a + 1)); }
  [[ $body == "hello from host b" ]] && { ok=$((ok + 1)); seen_b=$((seen_b + 1)); }
done
(( ok == 40 )) || fail "$ok/40 requests through the ECMP pair succeeded"
(( seen_a > 0 && seen_b > 0 )) || fail "ECMP did not spread: host a $seen_a, host b $seen_b"
sleep 0.3
valid=$(( $(metric a syngate_cookies_valid_total) + $(metric b syngate_cookies_valid_total) ))
(( valid >= 40 )) || fail "only $valid cookie-validated handshakes for 40 requests"
pass "40/40 requests, spread host a $seen_a / host b $seen_b, every handshake through a cookie"

# Path change mid-handshake: hold the client's ACKs, let the SYN be answered, move the route to
# the other host, release.
in_ns "$CLI" iptables -A OUTPUT -p tcp --dport 80 --tcp-flags SYN,ACK,RST ACK -j DROP
sent_a0=$(metric a syngate_cookies_sent_total); sent_b0=$(metric b syngate_cookies_sent_total)
in_ns "$CLI" curl -sS --max-time 15 --local-port 31000 -o "$DIR/split.txt" http://10.10.9.9/ 2>"$DIR/split.err" &
curl_pid=$!
track_pid "$curl_pid"
sleep 0.6
sent_a=$(( $(metric a syngate_cookies_sent_total) - sent_a0 )); sent_b=$(( $(metric b syngate_cookies_sent_total) - sent_b0 ))
if (( sent_a > 0 )); then first=a; other=b; via=10.10.6.2; else first=b; other=a; via=10.10.5.2; fi
(( sent_a + sent_b > 0 )) || fail "no host answered the SYN"
in_ns "$RT" ip route replace 10.10.9.9/32 via "$via"
valid0=$(metric $other syngate_cookies_valid_total)
in_ns "$CLI" iptables -D OUTPUT -p tcp --dport 80 --tcp-flags SYN,ACK,RST ACK -j DROP
wait "$curl_pid" || fail "the handshake split across hosts failed: $(cat "$DIR/split.err")"
[[ $(cat "$DIR/split.txt") == "hello from host $other" ]] || fail "got '$(cat "$DIR/split.txt")' from the wrong host"
sleep 0.3
(( $(metric $other syngate_cookies_valid_total) > valid0 )) || fail "host $other validated no cookie"
pass "SYN answered by host $first, cookie validated by host $other after the path changed: served"
