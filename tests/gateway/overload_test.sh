#!/usr/bin/env bash
# Overload past what the queues hold, with fail_open false and true: a SYN queue of 16
# (gateway.syn_queue_maxlen) and syngate stopped (SIGSTOP) while 200 spoofed SYNs arrive, so
# exactly 16 wait in the queue and 184 find it full. Measured: what the backend receives (a
# counting rule in srv), what syngate counts (syngate_queue_dropped_total, SYNs answered once it
# runs again).
#   fail_open = false: the 184 are dropped by the kernel and counted as queue drops; none reaches
#                      the backend.
#   fail_open = true:  the kernel accepts the 184 unexamined (NFQA_CFG_F_FAIL_OPEN): they reach the
#                      backend, and no syngate counter sees them.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up
start_nginx
in_ns "$NS_SRV" iptables -A INPUT -p tcp --syn --dport 80 -s 198.18.0.0/15

burst() {  # burst COUNT: spoofed SYNs from atk, bounded
  in_ns "$NS_ATK" timeout 30 /usr/bin/python3 - "$1" <<'PY'
import random, socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton("10.10.3.2")
for i in range(int(sys.argv[1])):
    src = struct.pack("!I", (198 << 24 | 18 << 16) + random.randrange(1 << 17))  # 198.18.0.0/15
    tcp = struct.pack("!HHIIBBHHH", random.randrange(1024, 65535), 80, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    s.sendto(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst) + tcp, ("10.10.3.2", 0))
PY
}
at_backend() { in_ns "$NS_SRV" iptables -nvxL INPUT | awk '/198.18.0.0\/15/ { print $1 }'; }

results=()
for open in false true; do
  write_config "fail_open = $open
syn_queue_maxlen = 16"
  start_syngate
  cli_curl http://10.10.3.2/ >/dev/null || fail "baseline request failed (fail_open = $open)"
  b0=$(at_backend); d0=$(metric_sum syngate_queue_dropped_total); s0=$(metric_sum syngate_syn_received_total)
  kill -STOP "$SYNGATE_PID"
  burst 200
  sleep 0.3
  kill -CONT "$SYNGATE_PID"
  sleep 1
  backend=$(( $(at_backend) - b0 )); dropped=$(( $(metric_sum syngate_queue_dropped_total) - d0 ))
  seen=$(( $(metric_sum syngate_syn_received_total) - s0 ))
  cli_curl http://10.10.3.2/ >/dev/null || fail "request after the overload failed (fail_open = $open)"
  results+=("fail_open=$open: backend $backend, queue drops $dropped, syngate saw $seen")
  log "fail_open = $open: 200 SYNs at a stopped syngate (queue 16): $backend reached the backend, $dropped counted as queue drops, $seen handled by syngate"
  if [[ $open == false ]]; then
    (( backend == 0 )) || fail "fail-closed: $backend spoofed SYNs reached the backend"
    (( dropped == 200 - seen && seen <= 16 && seen > 0 )) || fail "fail-closed: $dropped dropped, $seen seen, want 200 in all, at most 16 seen"
  else
    (( backend == 200 - seen && seen <= 16 && seen > 0 )) || fail "fail-open: $backend reached the backend, $seen seen, want 200 in all"
    (( dropped == 0 )) || fail "fail-open: $dropped queue drops counted"
  fi
  kill -TERM "$SYNGATE_PID"; wait "$SYNGATE_PID" 2>/dev/null || true
  in_ns "$NS_GW" "$SYNGATE_BIN" rules down --config "$LAB_DIR/syngate.toml" >/dev/null
done
pass "overload past the queue: ${results[*]}"
