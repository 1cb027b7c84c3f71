#!/usr/bin/env bash
# A request longer than one segment, sent right behind the cookie ACK (the SYN-ACK's window lets a
# client send up to engine.synack_window bytes before its backend has answered), through the
# shipped data path: the fast path in the tc ingress (XDP auto on veth) and the kernel path opening
# flows from cookie ACKs (tc_open_flows). Until the backend answers, the client's second and third
# segments, whose sequence numbers carry no cookie, reach a fast path that may not know the flow
# yet: the flow worker writes it into the flow map a turn later (up to the queue's 10 ms receive
# timeout), and its tc entries come with the backend's SYN-ACK. They must pass by the flow's
# handshake record: dropped as invalid cookies, they waited for the client's retransmission. The
# backend's first SYN-ACK of each connection is dropped (a connmark in srv's OUTPUT), so it
# answers a second later, as a distant one would: otherwise the veth lab answers before the client
# has sent its data. 4 connections each over IPv4 and IPv6, each sending 3000 bytes as three
# segments and a FIN (TSO and GSO off at the client, GRO off at the gateway, as on a wire): every
# request reaches the server whole, and the fast path drops none of the clients' segments.
# Two rounds: the shipped default, where the tc ingress keeps the request's segments and sends
# them on behind the SYN-ACK it answers (gateway.tc_early_data: every segment waits in tc, none
# reaches the engine), then tc_early_data = false, where the engine holds them (the FIN too) and
# answers.
#   early_segments_test.sh SYNGATE
source "$(dirname "$0")/lib.sh"
lab_init "$1"
lab_up
lab_ipv6
in_ns "$NS_CLI" ethtool -K c0 tso off gso off >/dev/null
in_ns "$NS_GW" ethtool -K g1 gro off >/dev/null

REQUEST=3000
CONNECTIONS=4
for ipt in iptables ip6tables; do
  in_ns "$NS_SRV" $ipt -A OUTPUT -p tcp --sport 8080 --tcp-flags SYN,ACK SYN,ACK -m connmark --mark 1 -j ACCEPT
  in_ns "$NS_SRV" $ipt -A OUTPUT -p tcp --sport 8080 --tcp-flags SYN,ACK SYN,ACK -j CONNMARK --set-mark 1
  in_ns "$NS_SRV" $ipt -A OUTPUT -p tcp --sport 8080 --tcp-flags SYN,ACK SYN,ACK -j DROP
done
# The server answers each connection with the number of bytes it read before the client's FIN.
bg "$NS_SRV" python3 "$(cd "$(dirname "$0")" && pwd)/count_server.py" --until-eof
wait_listen "$NS_SRV" 8080 || fail "the test server did not start"

xdp() { metric_sum syngate_xdp_packets_total "outcome=\"$1\""; }
tc_outcome() { metric_sum syngate_tc_packets_total "outcome=\"$1\""; }

# Each request: connect, send REQUEST bytes at once, half-close, read the server's count.
cat > "$LAB_DIR/client.py" <<'PY'
import socket, sys, time
addr, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
worst = 0.0
for i in range(count):
    start = time.monotonic()
    s = socket.create_connection((addr, 8080), timeout=5)
    s.sendall(b"x" * size)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while not answer.endswith(b"\n"):
        b = s.recv(100)
        if not b:
            break
        answer += b
    s.close()
    worst = max(worst, time.monotonic() - start)
    if answer != b"got %d\n" % size:
        print("request %d: the server answered %r" % (i, answer))
        sys.exit(1)
print("%d requests of %d bytes, the slowest %.1f ms" % (count, size, worst * 1000))
PY

# round "default" | "engine": syngate with the shipped tc_early_data, or with it off.
round() {
  local gateway_keys=""
  [[ $1 == engine ]] && gateway_keys="tc_early_data = false"
  XDP_MODE=auto write_config "$gateway_keys" "" "$SERVICES_8080"
  start_syngate
  grep -q "tc: translating established flows" "$LAB_DIR/syngate.log" || fail "the kernel path did not attach"
  grep -q "gateway.tc_open_flows" "$LAB_DIR/syngate.log" || fail "the tc ingress does not open flows (gateway.tc_open_flows)"
  (( $(metric_sum syngate_xdp_enabled) == 1 )) || fail "the fast path did not attach"

  # One connection each way first: the gateway's first packet towards srv's address waits for its
  # neighbour entry, and the tc ingress leaves that connection's cookie ACK to the engine (whose
  # flow's later segments still meet the limit the README states).
  for addr in 10.10.3.2 fd00:10:3::2; do
    in_ns "$NS_CLI" timeout 30 python3 "$LAB_DIR/client.py" "$addr" 1 "$REQUEST" >/dev/null || fail "the first request to $addr failed"
  done
  sleep 0.3
  # What the clients send, seen at the gateway before its fast path (a packet tap comes ahead of
  # the tc ingress hook): when a segment is dropped, the log shows every segment of these
  # connections.
  BG_LOG=$LAB_DIR/tcpdump.log bg "$NS_GW" tcpdump --immediate-mode -i g1 -nn -S -s 128 -U -w "$LAB_DIR/g1.pcap" "tcp port 8080"
  local tcpdump_pid=$BG_PID
  wait_until 5 grep -q "listening on" "$LAB_DIR/tcpdump.log" || fail "tcpdump did not start: $(cat "$LAB_DIR/tcpdump.log")"
  local invalid_before opened_before early_before fins_before sent_before out
  invalid_before=$(xdp cookie_invalid)
  opened_before=$(metric_sum syngate_kernel_opened_total)
  early_before=$(metric_sum syngate_early_data_buffered_total)
  fins_before=$(metric_sum syngate_early_fins_held_total)
  sent_before=$(tc_outcome early_sent)
  for addr in 10.10.3.2 fd00:10:3::2; do
    out=$(in_ns "$NS_CLI" timeout 60 python3 "$LAB_DIR/client.py" "$addr" "$CONNECTIONS" "$REQUEST" 2>&1) ||
      fail "$1: to $addr: $out"
    log "$1: to $addr: $out"
  done
  sleep 0.3  # the workers publish their counters every 100 ms
  local invalid opened early fins sent total=$(( 2 * CONNECTIONS ))
  invalid=$(( $(xdp cookie_invalid) - invalid_before ))
  opened=$(( $(metric_sum syngate_kernel_opened_total) - opened_before ))
  early=$(( $(metric_sum syngate_early_data_buffered_total) - early_before ))
  fins=$(( $(metric_sum syngate_early_fins_held_total) - fins_before ))
  sent=$(( $(tc_outcome early_sent) - sent_before ))
  log "$1: opened by tc: $opened of $total; segments held for their backend by the engine: $early (and $fins FINs), kept and sent on by tc: $sent; dropped by the fast path as invalid cookies: $invalid"
  if (( invalid > 0 )); then
    log "every segment of these connections at g1, $invalid of them dropped:"
    in_ns "$NS_GW" tcpdump -nn -S -tt -r "$LAB_DIR/g1.pcap" 2>/dev/null | sed 's/^/  /'
  fi
  stop_pid "$tcpdump_pid" INT
  (( opened == total )) || fail "$1: the tc ingress opened $opened of the $total connections: the path under test was not taken"
  if [[ $1 == default ]]; then
    # Three segments and the FIN a connection, each kept once (retransmissions are not sent twice).
    (( sent == 4 * total )) || fail "default: tc sent on $sent kept segments, not the $(( 4 * total )) the clients sent before their backends answered"
    (( early == 0 )) || fail "default: the engine held $early segments: the SYN-ACKs were left to it"
  else
    (( early >= total )) || fail "engine: only $early segments waited for their backend: the backend answered before the client sent"
    (( sent == 0 )) || fail "engine: tc kept segments with tc_early_data off"
    # Each client's FIN, right behind its request, goes on with it: left to the client's
    # retransmission, the server (which answers at EOF) waited out the client's backed-off RTO.
    (( fins == total )) || fail "engine: $fins of the $total clients' FINs were held with their requests"
  fi
  # Before the records were looked at, every request lost its second and third segments here (24
  # drops with the retransmissions). Two clean-clone CI runs counted 1 and 2 more, the 24 all
  # held: the capture above showed them to be the client's FIN right behind its request. The
  # engine, taking the request, withdrew the flow's record before the turn had written the flow's
  # XDP key, and a FIN arriving between the two met neither. The keys are now written first
  # (KernelPath::set_before_withdraw). The gap is microseconds wide and never reproduced on
  # demand; every run since the fix whose log was kept (clean-clone CI and local) counted 0: none
  # is tolerated now.
  (( invalid == 0 )) || fail "$1: the fast path dropped $invalid of the clients' segments as invalid cookies"
  stop_pid "$SYNGATE_PID"
}
round default
round engine
pass "$(( 2 * CONNECTIONS )) requests of $REQUEST bytes a round, three segments and a FIN each sent before the backend answered, kept in tc and sent on behind its SYN-ACK (the default), or held by the engine (tc_early_data off), none dropped by the fast path"
