#!/usr/bin/env bash
# synflood floods against an IPv6 target, inside two network namespaces joined by a veth pair
# (created here, removed by the trap). The receiver counts arrivals by TCP flags with ip6tables
# counters in raw PREROUTING. Checks: every flood kind arrives complete, from 2001:2::/48 by
# default; the next hop's MAC is found over NDP; rate accuracy; spoof ranges outside 2001:2::/48
# are refused without --allow-any-spoof, narrower ones inside it are used; replay of an IPv6
# capture maps sources into 2001:2::/48 (or keeps benchmarking ones only) and skips IPv4 packets;
# the prober connects over IPv6.
set -euo pipefail
bin=${1:?usage: ipv6_netns_test.sh SYNFLOOD}

source "$(dirname "$0")/pair.sh"
require_root "needs root"
pair_up f6 "fd00:77::1/64" "fd00:77::2/64"

counter() {
  ip netns exec "$rx" ip6tables -t raw -nvxL PREROUTING | awk -v c="$1" '$0 ~ "/\\* " c " \\*/" {print $1}'
}
reset_rules() {
  local t="ip netns exec $rx ip6tables -t raw"
  $t -F PREROUTING
  $t -A PREROUTING -s 2001:2:0:1::/64 -p tcp --dport 80 -m comment --comment narrow
  $t -A PREROUTING -s 2001:2::/48 -p tcp --dport 80 --tcp-flags ALL SYN -m comment --comment syn -j DROP
  $t -A PREROUTING -s 2001:2::/48 -p tcp --dport 80 --tcp-flags ALL ACK -m comment --comment ack -j DROP
  $t -A PREROUTING -s 2001:2::/48 -p tcp --dport 80 --tcp-flags ALL RST -m comment --comment rst -j DROP
  $t -A PREROUTING -s 2001:2::/48 -p tcp --dport 80 --tcp-flags ALL FIN,ACK -m comment --comment fin -j DROP
  $t -A PREROUTING -p tcp -m comment --comment other -j DROP
}
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval("d" + sys.argv[2]))' "$1" "$2"; }
within() {  # within ACTUAL EXPECTED PCT
  python3 -c 'import sys; a,e,p=map(float,sys.argv[1:]); sys.exit(0 if abs(a-e) <= e*p/100 else 1)' "$@"
}

echo "== every kind, 2000 packets each, neighbour found over NDP"
for kind in syn ack rst fin; do
  reset_rules
  out=$(ip netns exec "$tx" "$bin" "$kind" --target '[fd00:77::2]:80' --rate 0 --count 2000 --json)
  echo "$out"
  [ "$(counter "$kind")" = 2000 ] || fail "$kind: $(counter "$kind") of 2000 arrived"
  [ "$(counter other)" = 0 ] || fail "$kind: $(counter other) packets from outside 2001:2::/48 or with other flags"
  [ "$(jget "$out" '["spoof"]')" = 2001:2::/48 ] || fail "default IPv6 spoof range reported as $(jget "$out" '["spoof"]')"
done
reset_rules
out=$(ip netns exec "$tx" "$bin" mixed --target '[fd00:77::2]:80' --rate 0 --count 8000 --json)
echo "$out"
[ "$(counter syn)" = 4000 ] && [ "$(counter ack)" = 2000 ] && [ "$(counter rst)" = 1000 ] && [ "$(counter fin)" = 1000 ] ||
  fail "mixed: $(counter syn)/$(counter ack)/$(counter rst)/$(counter fin) SYN/ACK/RST/FIN, expected 4000/2000/1000/1000"

echo "== rate: 10000 pps for 1 s"
reset_rules
out=$(ip netns exec "$tx" "$bin" syn --target '[fd00:77::2]:80' --rate 10000 --duration 1 --json)
echo "$out"
within "$(counter syn)" 10000 2 || fail "received $(counter syn) SYNs, expected 10000 +-2%"

echo "== spoof ranges: inside 2001:2::/48 used, outside refused"
reset_rules
ip netns exec "$tx" "$bin" syn --target '[fd00:77::2]:80' --rate 0 --count 500 --spoof 2001:2:0:1::/64 >/dev/null
[ "$(counter narrow)" = 500 ] || fail "--spoof 2001:2:0:1::/64: $(counter narrow) of 500 from that subnet"
rc=0; err=$(ip netns exec "$tx" "$bin" syn --target '[fd00:77::2]:80' --rate 0 --count 10 --spoof 2001:db8::/32 2>&1 >/dev/null) || rc=$?
[ "$rc" = 2 ] || fail "--spoof 2001:db8::/32 exited $rc, expected 2"
grep -q allow-any-spoof <<<"$err" || fail "the refusal does not name --allow-any-spoof: $err"
rc=0; ip netns exec "$tx" "$bin" syn --target '[fd00:77::2]:80' --rate 0 --count 10 --spoof 198.18.0.0/15 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "an IPv4 --spoof range with an IPv6 target exited $rc"
[ "$(counter other)" = 0 ] || fail "refused runs sent $(counter other) packets"

echo "== replay at an IPv6 target: sources mapped into 2001:2::/48, IPv4 packets skipped"
python3 - "$tmp/v6.pcap" <<'PY'
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def v6syn(src, i):
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, "2001:db8::20")
    tcp = struct.pack("!HHIIBBHHH", 40000 + i, 443, i, 0, 0x50, 0x02, 1000, 0, 0)
    c = csum(s + d + struct.pack("!IxxxB", len(tcp), 6) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    return b"\x86\xdd", struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64) + s + d + tcp
def v4syn(i):
    tcp = struct.pack("!HHIIBBHHH", 40000 + i, 443, i, 0, 0x50, 0x02, 1000, 0, 0)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([198, 18, 0, 5]), bytes([192, 0, 2, 20]))
    return b"\x08\x00", h[:10] + struct.pack("!H", csum(h)) + h[12:] + tcp
pkts = [v6syn("2001:db8::10", i) for i in range(5)] + [v6syn("2001:2::99", 5), v4syn(6), v4syn(7)]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i, (etype, ip) in enumerate(pkts):
        frame = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + etype + ip
        f.write(struct.pack("<IIII", 1, i * 1000, len(frame), len(frame)) + frame)
PY
reset_rules
ip netns exec "$rx" ip6tables -t raw -I PREROUTING -s 2001:db8::/32 -m comment --comment real
out=$(ip netns exec "$tx" "$bin" replay "$tmp/v6.pcap" --target '[fd00:77::2]:80' --json)
echo "$out"
[ "$(counter syn)" = 6 ] || fail "replay: $(counter syn) of 6 IPv6 SYNs arrived from 2001:2::/48"
[ "$(counter real)" = 0 ] || fail "replay sent $(counter real) packets from 2001:db8::/32"
[ "$(jget "$out" '["skipped"]["other_family"]')" = 2 ] || fail "the 2 IPv4 packets were not skipped as other_family"
reset_rules
ip netns exec "$rx" ip6tables -t raw -I PREROUTING -s 2001:2::99 -m comment --comment kept
ip netns exec "$rx" ip6tables -t raw -I PREROUTING -s 2001:db8::/32 -m comment --comment real
out=$(ip netns exec "$tx" "$bin" replay "$tmp/v6.pcap" --target '[fd00:77::2]:80' --keep-sources --json)
echo "$out"
[ "$(counter kept)" = 1 ] || fail "--keep-sources: $(counter kept) of 1 arrived from 2001:2::99"
[ "$(counter real)" = 0 ] || fail "--keep-sources sent $(counter real) packets from 2001:db8::/32"
[ "$(jget "$out" '["skipped"]["source_outside_range"]')" = 5 ] || fail "real IPv6 sources not counted as skipped"

echo "== probe over IPv6: an HTTP server and a closed port"
ip netns exec "$rx" ip6tables -t raw -F PREROUTING  # the counting rules drop every TCP segment
ip netns exec "$rx" python3 -m http.server 8080 --bind fd00:77::2 --directory "$tmp" >/dev/null 2>&1 &
srv_pid=$!
for _ in $(seq 50); do
  ip netns exec "$rx" ss -ltn | grep -q '\[fd00:77::2\]:8080' && break
  sleep 0.1
done
out=$(ip netns exec "$tx" "$bin" probe --target '[fd00:77::2]:8080' --count 20 --concurrency 4 --timeout-ms 2000 --http / --json)
echo "$out"
[ "$(jget "$out" '["success_pct"]')" = 100.0 ] || fail "IPv6 probe against a healthy server did not reach 100%"
out=$(ip netns exec "$tx" "$bin" probe --target '[fd00:77::2]:8081' --count 5 --concurrency 5 --timeout-ms 1000 --min-success 0 --json)
[ "$(jget "$out" '["failures_detail"]["refused"]')" = 5 ] || fail "closed IPv6 port not reported as refused: $out"

echo "PASS"
