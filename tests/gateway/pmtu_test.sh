#!/usr/bin/env bash
# Path MTU discovery through syngate, IPv4 and IPv6, both sides of the gateway. A router between
# cli and gw (rcl) and one between gw and srv (rsv) each forward toward their endpoint over a
# 1280-byte link (lab_up_routed). A 4 MB download from nginx makes rcl send "fragmentation
# needed" / "packet too big" to srv, quoting srv's segment as it left the gateway (the client's
# sequence space); a 4 MB upload (PUT to nginx) makes rsv send them to cli, quoting cli's segment
# as the gateway forwarded it (the backend's). Each must reach its endpoint with the quote
# translated back, or the endpoint ignores it (TcpExtOutOfWindowIcmps) and the transfer stalls.
#
# The gateway's filter drops conntrack's INVALID, as operators' firewalls do.
# Checked: every transfer arrives whole (sha256) within 10 s; captures on cli and srv show every
# ICMP error (at least one per family) quoting exactly the
# sequence, acknowledgment and timestamp values that endpoint sent, with a valid checksum; the
# same transfers between addresses syngate does not protect work (the lab itself is sound).
# Four flow queues, so that errors often concern a flow another worker owns.
# The XDP fast path as XDP_MODE says (lib.sh: off unless set; ctest runs both auto and off).
#   pmtu_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up_routed
HERE=$(cd "$(dirname "$0")" && pwd)
# A firewall as operators write it on the gateway: conntrack's INVALID dropped. An ICMP error
# quoting an untracked (protected) flow is INVALID to conntrack unless the rules untrack it too.
for ipt in iptables ip6tables; do
  in_ns "$NS_GW" "$ipt" -w -A FORWARD -m conntrack --ctstate INVALID -j DROP
done

# Unprotected addresses next to the service's, for the same transfers without syngate in the way.
in_ns "$NS_CLI" ip addr add 10.10.1.3/24 dev c0
in_ns "$NS_CLI" ip -6 addr add fd00:10:1::3/64 dev c0 nodad
in_ns "$NS_SRV" ip addr add 10.10.3.3/24 dev s0
in_ns "$NS_SRV" ip -6 addr add fd00:10:3::3/64 dev s0 nodad

mkdir -p "$LAB_DIR/www/up"
start_nginx 'listen 10.10.3.2:80; listen [fd00:10:3::2]:80; listen 10.10.3.3:80; listen [fd00:10:3::3]:80;
    location /up/ { dav_methods PUT; client_max_body_size 64m; }'
head -c $((4 * 1024 * 1024)) /dev/urandom > "$LAB_DIR/www/big.bin"
want=$(sha256sum < "$LAB_DIR/www/big.bin" | cut -d' ' -f1)

write_config "flow_queues = 4" "" '
[[service]]
address = "fd00:10:3::2"
port = 80'
start_syngate
grep -q "syngate running" "$LAB_DIR/syngate.log"
if [[ ${XDP_MODE:-off} != off ]]; then
  fast_path_on g1 tc || fail "XDP_MODE=$XDP_MODE but no fast path program on g1 (auto: the tc hook on veth)"
fi

# Captures on both endpoints (what each sent, and the ICMP errors it got), checked at the end.
# Only the endpoint's own segments and ICMP, with a large buffer: the other side's 4 MB would
# overrun the capture on a busy machine. Immediate mode: a quiet capture would otherwise hold its
# packets in a kernel block until it fills, and lose them when stopped.
capture() {  # capture NS DEV FILE ADDR4 ADDR6
  BG_LOG=$LAB_DIR/tcpdump.log bg "$1" tcpdump -i "$2" -n -U --immediate-mode -B 32768 -s 1400 -w "$3" \
    "icmp or icmp6 or (tcp and (src host $4 or src host $5))"
}
capture "$NS_CLI" c0 "$LAB_DIR/cli.pcap" 10.10.1.2 fd00:10:1::2
CAP_CLI=$BG_PID
capture "$NS_SRV" s0 "$LAB_DIR/srv.pcap" 10.10.3.2 fd00:10:3::2
CAP_SRV=$BG_PID
for ((i = 0; i < 100; i++)); do
  (( $(grep -c "listening on" "$LAB_DIR/tcpdump.log" 2>/dev/null || true) == 2 )) && break
  sleep 0.05
done

# download NAME URL LOCAL_ADDR: 4 MB from nginx within 10 s, intact.
download() {
  local name=$1 url=$2 from=$3 out
  out=$(in_ns "$NS_CLI" curl -sS -g --max-time 10 --interface "$from" -o "$LAB_DIR/$name.bin" \
        -w '%{size_download} %{time_total}' "$url" 2>&1) || true
  local got=none
  [[ -f $LAB_DIR/$name.bin ]] && got=$(sha256sum < "$LAB_DIR/$name.bin" | cut -d' ' -f1)
  log "$name: $url from $from: ${out:-nothing} (bytes, seconds)"
  [[ $got == "$want" ]] || fail "$name: download of $url did not arrive whole within 10 s: $out"
  pass "$name: 4 MB download intact in ${out#* } s"
}

# upload NAME URL LOCAL_ADDR: 4 MB PUT to nginx within 10 s, stored intact on srv.
upload() {
  local name=$1 url=$2 from=$3 out
  out=$(in_ns "$NS_CLI" curl -sS -g --max-time 10 --interface "$from" -T "$LAB_DIR/www/big.bin" \
        -w '%{size_upload} %{time_total} %{http_code}' "$url" 2>&1) || true
  local got=none
  [[ -f $LAB_DIR/www/up/$name.bin ]] && got=$(sha256sum < "$LAB_DIR/www/up/$name.bin" | cut -d' ' -f1)
  log "$name: PUT $url from $from: ${out:-nothing} (bytes, seconds, status)"
  [[ $got == "$want" ]] || fail "$name: upload to $url did not arrive whole within 10 s: $out"
  pass "$name: 4 MB upload intact in $(cut -d' ' -f2 <<<"$out") s"
}

log "without syngate in the way (unprotected addresses): the routers' errors alone make PMTUD work"
download plain4-down http://10.10.3.3/big.bin 10.10.1.3
download plain6-down 'http://[fd00:10:3::3]/big.bin' fd00:10:1::3
upload plain4-up http://10.10.3.3/up/plain4-up.bin 10.10.1.3
upload plain6-up 'http://[fd00:10:3::3]/up/plain6-up.bin' fd00:10:1::3

log "through syngate: errors to srv (download) and to cli (upload)"
download syngate4-down http://10.10.3.2/big.bin 10.10.1.2
download syngate6-down 'http://[fd00:10:3::2]/big.bin' fd00:10:1::2
upload syngate4-up http://10.10.3.2/up/syngate4-up.bin 10.10.1.2
upload syngate6-up 'http://[fd00:10:3::2]/up/syngate6-up.bin' fd00:10:1::2

oow() { in_ns "$1" nstat -asz TcpExtOutOfWindowIcmps | awk '$1 == "TcpExtOutOfWindowIcmps" { print $2 }'; }
log "TcpExtOutOfWindowIcmps: srv $(oow "$NS_SRV"), cli $(oow "$NS_CLI") (an error that arrives after its segment was acknowledged counts too)"

kill -INT "$CAP_CLI" "$CAP_SRV" 2>/dev/null
wait "$CAP_CLI" "$CAP_SRV" 2>/dev/null || true
log "captures: $(grep -h "dropped by kernel" "$LAB_DIR/tcpdump.log" | tr '\n' ' ')"
log "srv's capture (errors from rcl about srv's segments):"
python3 "$HERE/icmp_quotes.py" "$LAB_DIR/srv.pcap" --host 10.10.3.2 --host fd00:10:3::2 \
  --fields seq,ack,tsval,tsecr --families 4,6 || fail "srv got ICMP errors whose quotes were not translated back"
log "cli's capture (errors from rsv about cli's segments):"
python3 "$HERE/icmp_quotes.py" "$LAB_DIR/cli.pcap" --host 10.10.1.2 --host fd00:10:1::2 \
  --fields seq,ack,tsval,tsecr --families 4,6 || fail "cli got ICMP errors whose quotes were not translated back"
pass "every ICMP error reached its endpoint quoting what that endpoint sent"

sleep 0.3  # workers publish their counters every 100 ms
log "syngate: $(metrics | grep -E '^syngate_icmp' | tr '\n' ' ')"
exceptions=$(metric_sum syngate_engine_exceptions_total)
(( exceptions == 0 )) || fail "metrics: $exceptions engine exceptions"
