#!/usr/bin/env bash
# The XDP fast path attaches where the interface rule says (gateway/interfaces.hpp), and follows
# interfaces as they come and go. The gateway gets a default route via the client link (g1), as an
# uplink has; then:
#   - at start: g1 (default route) gets the program; g3 (route to the service) does not, as it
#     leads only toward the server (the tc programs' side); neither do g2 and a veth made before
#     start for something else (u0, with an address and a route);
#   - a veth made after start (u1) does not get it either;
#   - g1 down: the program leaves it; up again with its default route back: it is attached again
#     and SYNs through it are answered in XDP;
#   - the client link deleted and made anew (a new g1, a new ifindex): the new g1 gets it.
#   xdp_interfaces_test.sh SYNGATE
# With a second argument "synproxy": the kernel's SYNPROXY in the same events instead (measured and
# printed for docs/faults.md, nothing asserted), its raw rules naming the client and attacker links
# as bench/lab/run.sh's do: 200 spoofed SYNs from atk after each of: start, g2 (atk's link) down
# and up, g2 deleted and made anew, atk moved to a new link g4; what reaches the backend, what
# SYNPROXY answered, and a request from cli.
#   xdp_interfaces_test.sh SYNGATE synproxy
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up
start_nginx
if [[ ${2:-} == synproxy ]]; then
  count_spoofed_at_backend
  synproxy_up 80 g1 g2
  probe() {  # probe EVENT: prints a RESULT line
    local b0 s0 req=fail
    b0=$(backend_syns); s0=$(synproxy_syns)
    spoofed_syns "$NS_ATK" 200
    cli_curl http://10.10.3.2/ >/dev/null 2>&1 && req=ok
    sleep 0.3
    echo "RESULT synproxy $1 backend=$(( $(backend_syns) - b0 ))/200 synproxy_syn_received=$(( $(synproxy_syns) - s0 )) request=$req"
  }
  atk_link() {  # atk_link ATK_IF GW_IF NET: a new link between atk and gw, atk's traffic over it
    ip link add "$1" netns "$NS_ATK" type veth peer name "$2" netns "$NS_GW"
    in_ns "$NS_ATK" ip addr add "$3.2/24" dev "$1"
    in_ns "$NS_GW" ip addr add "$3.1/24" dev "$2"
    in_ns "$NS_ATK" ip link set "$1" up
    in_ns "$NS_GW" ip link set "$2" up
    in_ns "$NS_ATK" ip route replace default via "$3.1"
    in_ns "$NS_GW" ip route replace 198.18.0.0/15 via "$3.2"
  }
  probe start
  in_ns "$NS_GW" ip link set g2 down
  in_ns "$NS_GW" ip link set g2 up
  in_ns "$NS_GW" ip route replace 198.18.0.0/15 via 10.10.2.2  # the route left with the link
  for ((i = 0; i < 50; i++)); do in_ns "$NS_ATK" ping -c1 -W1 10.10.2.1 >/dev/null 2>&1 && break; sleep 0.1; done
  probe g2_down_up
  in_ns "$NS_GW" ip link del g2
  atk_link a0 g2 10.10.2
  probe g2_recreated
  atk_link a1 g4 10.10.6
  probe new_link_g4
  pass "SYNPROXY measured (no bound asserted)"
  exit 0
fi
in_ns "$NS_GW" ip route add default via 10.10.1.2
unrelated() {  # unrelated NAME ADDR/LEN: a veth pair inside gw, up, with an address and a route
  in_ns "$NS_GW" ip link add "$1" type veth peer name "$1p"
  in_ns "$NS_GW" ip addr add "$2" dev "$1"
  in_ns "$NS_GW" ip link set "$1" up
  in_ns "$NS_GW" ip link set "$1p" up
}
unrelated u0 10.99.0.1/24
has_xdp() { fast_path_on "$1" tc; }  # auto on veth: the tc hook
wait_xdp() {  # wait_xdp IF yes|no: until the interface has (or has not) the program, 5 s at most
  local i
  for ((i = 0; i < 50; i++)); do
    if [[ $2 == yes ]]; then has_xdp "$1" && return 0; else has_xdp "$1" || return 0; fi
    sleep 0.1
  done
  return 1
}
XDP_MODE=auto write_config
start_syngate
grep "xdp:" "$LAB_DIR/syngate.log"
grep -q "xdp: needed on g1: default route (IPv4 via 10.10.1.2)" "$LAB_DIR/syngate.log" ||
  fail "the log does not say why g1 was picked"
grep -q "xdp: g3 leads only toward the servers" "$LAB_DIR/syngate.log" ||
  fail "the log does not say why g3 was left out"
grep -q "xdp: following link and route changes" "$LAB_DIR/syngate.log" || fail "the log does not say it follows changes"
has_xdp g1 || fail "no XDP program on g1 (the default route's interface)"
has_xdp g3 && fail "XDP program on g3, which leads only toward the server"
has_xdp g2 && fail "XDP program on g2, which neither a default route nor a service route uses"
has_xdp u0 && fail "XDP program on u0, an unrelated veth made before start"

unrelated u1 10.99.1.1/24
sleep 2.5  # the daemon's tick reads the announcements within a second
has_xdp u1 && fail "XDP program on u1, an unrelated veth made after start"
has_xdp g1 || fail "g1 lost the program when an unrelated veth came"

xdp() { metric_sum syngate_xdp_packets_total "outcome=\"$1\""; }
in_ns "$NS_GW" ip link set g1 down
wait_xdp g1 no || fail "the program stayed on g1 while it was down"
# The link goes with its fd, just before the daemon logs it.
for ((i = 0; i < 20; i++)); do grep -q "xdp: detached from g1" "$LAB_DIR/syngate.log" && break; sleep 0.05; done
grep -q "xdp: detached from g1" "$LAB_DIR/syngate.log" || fail "the log does not say g1 was left"
sleep 1.5  # an uplink down is not a namespace without a default route: nothing else gets it
for ifc in g2 u0 u1; do has_xdp "$ifc" && fail "XDP program on $ifc while g1 was down"; done
attached_before=$(grep -c "xdp: attached to g1 " "$LAB_DIR/syngate.log" || true)
in_ns "$NS_GW" ip link set g1 up
in_ns "$NS_GW" ip route replace default via 10.10.1.2  # as a network manager puts it back
wait_xdp g1 yes || fail "g1 did not get the program again after it came back up: $(grep xdp: "$LAB_DIR/syngate.log" | tail -5)"
(( $(grep -c "xdp: attached to g1 " "$LAB_DIR/syngate.log" || true) > attached_before )) ||
  fail "g1 got the program again but the log does not say so"
for ((i = 0; i < 50; i++)); do in_ns "$NS_CLI" ping -c1 -W1 10.10.1.1 >/dev/null 2>&1 && break; sleep 0.1; done
before=$(xdp syn_answered)
for i in $(seq 5); do
  [[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "request $i after g1 came back failed"
done
sleep 0.3
answered=$(( $(xdp syn_answered) - before ))
(( answered >= 5 )) || fail "XDP answered $answered SYNs for 5 requests after g1 came back"
for ifc in g2 u0 u1; do has_xdp "$ifc" && fail "XDP program on $ifc after g1 came back"; done
log "g1 down and up: detached and attached again; $answered SYNs answered in XDP after"

# The client link goes and comes anew (a new device, a new ifindex).
in_ns "$NS_GW" ip link del g1
ip link add c0 netns "$NS_CLI" type veth peer name g1 netns "$NS_GW"
in_ns "$NS_CLI" ip addr add 10.10.1.2/24 dev c0
in_ns "$NS_GW" ip addr add 10.10.1.1/24 dev g1
in_ns "$NS_CLI" ip link set c0 up
in_ns "$NS_GW" ip link set g1 up
in_ns "$NS_CLI" ip route replace default via 10.10.1.1
in_ns "$NS_GW" ip route replace default via 10.10.1.2
wait_xdp g1 yes || fail "the new g1 did not get the program: $(grep xdp: "$LAB_DIR/syngate.log" | tail -5)"
(( $(grep -c "xdp: attached to g1 " "$LAB_DIR/syngate.log" || true) > attached_before + 1 )) ||
  fail "the new g1 got the program but the log does not say so"
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "request over the new g1 failed"
(( $(metric_sum syngate_xdp_attached 'interface="g1"') == 1 )) || fail "no attach gauge for the new g1"
grep "xdp:" "$LAB_DIR/syngate.log" | tail -6
pass "XDP on g1 only (not g3 toward the server, not g2, not u0 made before start, not u1 made after); g1 down/up and re-created got it again"
