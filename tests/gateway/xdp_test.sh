#!/usr/bin/env bash
# The fast path in the lab, in one hook: XDP_TEST_HOOK=auto (the default: the tc ingress hook on
# veth) or generic (generic XDP) or tc. syngate attaches its program to the gateway's client-side
# veths, the client's SYNs are answered there (none reaches the SYN queue), curl over IPv4 and
# IPv6 through the gateway works (cookie ACKs pass to the flow workers, which keep the flow map),
# also where a checksum is left to the NIC or was complete on arrival (tx checksumming off on
# either veth end), a bounded forged-ACK flood from atk (198.18.0.0/15), plain, with IPv4 options
# and as first and later fragments, dies in the fast path without reaching a queue,
# a [policy] deny entry added by SIGHUP stops the client's SYNs there, and the program leaves
# the interfaces when syngate stops or is killed.
#   xdp_test.sh SYNGATE SYNFLOOD
source "$(dirname "$0")/lib.sh"
lab_init "$1"
SYNFLOOD=${2:?usage: xdp_test.sh SYNGATE SYNFLOOD}
ACKS=${XDP_TEST_ACKS:-40000}
HOOK=${XDP_TEST_HOOK:-auto}
case $HOOK in
  auto | tc) WANT=tc ;;
  generic) WANT=generic ;;
  *) fail "XDP_TEST_HOOK must be auto, tc or generic (got $HOOK)" ;;
esac

lab_up
# IPv6 on the client and server links as well (nodad: usable at once), as ipv6_test.sh does.
in_ns "$NS_CLI" ip -6 addr add fd00:10:1::2/64 dev c0 nodad
in_ns "$NS_GW" ip -6 addr add fd00:10:1::1/64 dev g1 nodad
in_ns "$NS_GW" ip -6 addr add fd00:10:3::1/64 dev g3 nodad
in_ns "$NS_SRV" ip -6 addr add fd00:10:3::2/64 dev s0 nodad
in_ns "$NS_CLI" ip -6 route add default via fd00:10:1::1
in_ns "$NS_SRV" ip -6 route add default via fd00:10:3::1
in_ns "$NS_GW" sysctl -qw net.ipv6.conf.all.forwarding=1
start_nginx
sed -e "s|listen 10.10.3.2:80 backlog=4096;|listen [fd00:10:3::2]:80 backlog=4096;|" \
    -e "s|nginx.pid|nginx6.pid|" "$LAB_DIR/nginx/nginx.conf" > "$LAB_DIR/nginx/nginx6.conf"
bg "$NS_SRV" nginx -c "$LAB_DIR/nginx/nginx6.conf" -p "$LAB_DIR/nginx"
for i in $(seq 100); do in_ns "$NS_SRV" ss -Htln | grep -q 'fd00:10:3::2\]:80' && break; sleep 0.05; done
V6_SERVICE='
[[service]]
address = "fd00:10:3::2"
port = 80'
XDP_MODE=$HOOK write_config "" "" "$V6_SERVICE"
start_syngate

grep -q "xdp: attached to g1 ($WANT mode, driver veth)" "$LAB_DIR/syngate.log" ||
  fail "syngate did not attach to g1 in $WANT mode: $(grep xdp "$LAB_DIR/syngate.log")"
fast_path_on g1 "$WANT" || fail "no $WANT fast path program on g1"
if [[ $WANT == tc ]]; then
  in_ns "$NS_GW" ip -d link show g1 | grep -q "xdp" && fail "an XDP program on g1 although the tc hook was chosen"
fi
(( $(metric_sum syngate_xdp_enabled) == 1 )) || fail "syngate_xdp_enabled is not 1"
(( $(metric_sum syngate_xdp_attached "interface=\"g1\",mode=\"$WANT\"") == 1 )) || fail "no attach gauge for g1"

xdp() { metric_sum syngate_xdp_packets_total "outcome=\"$1\""; }
queue_packets() { metric_sum syngate_queue_packets_total "queue=\"$1\""; }

# ---- legitimate clients: SYNs answered in the fast path, the rest through the flow workers -------------
for i in $(seq 50); do
  [[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "request $i through the gateway failed"
done
sleep 0.3  # workers publish their counters every 100 ms
answered=$(xdp syn_answered)
valid=$(xdp cookie_valid)
syn_queue=$(queue_packets 0)
created=$(metric_sum syngate_flows_created_total)
log "50 requests: the fast path answered $answered SYNs, passed $valid cookie ACKs; SYN queue saw $syn_queue packets; $created flows"
(( answered >= 50 )) || fail "the fast path answered only $answered SYNs for 50 connections"
(( valid >= 50 )) || fail "the fast path passed only $valid valid cookie ACKs"
(( syn_queue == 0 )) || fail "$syn_queue packets reached the SYN queue although the fast path answers SYNs"
(( created >= 50 )) || fail "the flow workers created only $created flows"

# ---- IPv6: the same, SYN-ACKs built for IPv6 in the fast path ----------------------------------------
before=$(xdp syn_answered)
for i in $(seq 20); do
  [[ $(cli_curl -6 'http://[fd00:10:3::2]/') == "hello from srv" ]] || fail "IPv6 request $i through the gateway failed"
done
sleep 0.3
answered6=$(( $(xdp syn_answered) - before ))
log "20 IPv6 requests: the fast path answered $answered6 SYNs; SYN queue saw $(queue_packets 0) packets"
(( answered6 >= 20 )) || fail "the fast path answered only $answered6 IPv6 SYNs for 20 connections"
(( $(queue_packets 0) == 0 )) || fail "IPv6 SYNs reached the SYN queue"

# ---- checksums: a SYN-ACK the NIC completes, and one built from a SYN whose checksum was whole ---
# Through a veth, a local stack's segments leave their TCP checksum to "the NIC" and the peer
# never checks it, so a wrong field would go unseen. With tx checksumming off on g1 the kernel
# completes every SYN-ACK in software from what the program left in the field (as a NIC would),
# and the client checks the result; with it off on c0 the client's SYNs arrive checksummed.
for end in g1 c0; do
  ns=$NS_GW
  [[ $end == c0 ]] && ns=$NS_CLI
  in_ns "$ns" ethtool -K "$end" tx off >/dev/null || fail "ethtool -K $end tx off failed"
  before=$(xdp syn_answered)
  for i in $(seq 5); do
    [[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "request $i with tx checksumming off on $end failed"
    [[ $(cli_curl -6 'http://[fd00:10:3::2]/') == "hello from srv" ]] || fail "IPv6 request $i with tx checksumming off on $end failed"
  done
  sleep 0.3
  (( $(xdp syn_answered) - before >= 10 )) || fail "with tx checksumming off on $end the SYNs were not answered in the fast path"
  in_ns "$ns" ethtool -K "$end" tx on >/dev/null
done
log "tx checksumming off on g1, then on c0: 10+10 requests, their SYN-ACKs from the fast path"

# ---- forged ACK floods, plain, with IPv4 options, as fragments: dropped in the fast path ------------------
# A header defect must not make a forged ACK the workers' problem: NFQUEUE is the slow path.
# (Fragments die as malformed: the engine drops every fragment for a service, the later ones
# by address.)
for malform in none ip-options frag-first frag-later; do
  flow_before=$(( $(queue_packets 8) + $(queue_packets 0) ))
  invalid_before=$(( $(xdp cookie_invalid) + $(xdp malformed) ))
  in_ns "$NS_ATK" timeout 60 "$SYNFLOOD" ack --target 10.10.3.2:80 --rate 20000 --count "$ACKS" \
    --duration 20 --malform "$malform" > "$LAB_DIR/ackflood.out" 2>&1 ||
    fail "synflood ack --malform $malform failed: $(cat "$LAB_DIR/ackflood.out")"
  sleep 0.5
  dropped=$(( $(xdp cookie_invalid) + $(xdp malformed) - invalid_before ))
  reached=$(( $(queue_packets 8) + $(queue_packets 0) - flow_before ))
  engine_invalid=$(metric_sum syngate_cookies_invalid_total)
  log "forged ACK flood of $ACKS (malform $malform): the fast path dropped $dropped; the queues saw $reached packets; engine rejected $engine_invalid cookies"
  (( dropped >= ACKS * 95 / 100 )) || fail "the fast path dropped only $dropped of $ACKS forged ACKs (malform $malform)"
  (( reached < ACKS / 100 )) || fail "$reached packets of the flood (malform $malform) reached a queue"
done

# ---- a spoofed SYN flood: answered in the fast path, the SYN queue stays empty -----------------------
before=$(xdp syn_answered)
in_ns "$NS_ATK" timeout 60 "$SYNFLOOD" syn --target 10.10.3.2:80 --rate 20000 --count 20000 --duration 20 \
  > "$LAB_DIR/synflood.out" 2>&1 || fail "synflood syn failed: $(cat "$LAB_DIR/synflood.out")"
sleep 0.5
syn_answered=$(( $(xdp syn_answered) - before ))
log "spoofed SYN flood of 20000: the fast path answered $syn_answered; SYN queue saw $(queue_packets 0) packets"
(( syn_answered >= 19000 )) || fail "the fast path answered only $syn_answered of 20000 spoofed SYNs"
(( $(queue_packets 0) == 0 )) || fail "spoofed SYNs reached the SYN queue"
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "request after the floods failed"

# ---- the source policy follows a reload (SIGHUP) into the fast path-------------------------------
XDP_MODE=$HOOK write_config "" "" "$V6_SERVICE
[policy]
deny = [\"10.10.1.0/24\"]"
kill -HUP "$SYNGATE_PID"
for ((i = 0; i < 60; i++)); do grep -q "reload: done" "$LAB_DIR/syngate.log" && break; sleep 0.05; done
sleep 1.2  # the main loop publishes to the program within its one-second tick
CURL_TIMEOUT=2 cli_curl http://10.10.3.2/ >/dev/null 2>&1 && fail "a denied client got through after the reload"
denied=$(metric_sum syngate_xdp_drops_total 'reason="denied"')
(( denied >= 1 )) || fail "the fast path counted no denied SYN (syngate_xdp_drops_total{reason=\"denied\"} = $denied)"
XDP_MODE=$HOOK write_config "" "" "$V6_SERVICE"
kill -HUP "$SYNGATE_PID"
sleep 1.5
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "the client is still refused after the deny entry was removed"
log "policy reload: $denied SYNs of a denied client dropped in the fast path, then admitted again"

# ---- the program goes with the process ----------------------------------------------------
kill -TERM "$SYNGATE_PID"
wait_exit "$SYNGATE_PID" 5 || fail "syngate did not stop"
sleep 0.2
fast_path_on g1 "$WANT" && fail "fast path program still attached to g1 after syngate exited"
# Killed outright, too: the links die with the process's file descriptors.
start_syngate
fast_path_on g1 "$WANT" || fail "no fast path program on g1 after the restart"
kill -KILL "$SYNGATE_PID"
wait_exit "$SYNGATE_PID" 5 || true
sleep 0.2
fast_path_on g1 "$WANT" && fail "fast path program still attached to g1 after syngate was killed"
pass "fast path ($WANT): $answered+$answered6+$syn_answered SYNs answered, 50/50 IPv4 and 20/20 IPv6 requests, $dropped/$ACKS forged ACKs dropped before NFQUEUE, detached on exit and on SIGKILL"
