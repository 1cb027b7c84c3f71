#!/usr/bin/env bash
# A bounded spoofed SYN flood from atk (sources in 198.18.0.0/15) against the protected service:
# the legitimate client keeps >= 99% success, and syngate's RSS does not grow with the number of
# spoofed SYNs (a SYN costs no state). Uses the project's synflood when given as $2, else a small
# bounded Python generator.
#   flood_test.sh SYNGATE [SYNFLOOD] ; env FLOOD_RATE (default 30000), FLOOD_SECONDS (default 8)
source "$(dirname "$0")/lib.sh"
lab_init "$1"
SYNFLOOD=${2:-}
RATE=${FLOOD_RATE:-30000}
SECS=${FLOOD_SECONDS:-8}
lab_up
start_nginx
write_config
start_syngate

flood() {  # flood COUNT: blocks until the bounded flood ends
  local count=$1
  if [[ -n $SYNFLOOD && -x $SYNFLOOD ]]; then
    in_ns "$NS_ATK" timeout 60 "$SYNFLOOD" syn --target 10.10.3.2:80 --rate "$RATE" --count "$count" \
      --duration $((SECS * 3)) > "$LAB_DIR/flood.out" 2>&1
  else
    in_ns "$NS_ATK" timeout 60 /usr/bin/python3 - "$count" "$RATE" > "$LAB_DIR/flood.out" 2>&1 <<'PY'
import socket, struct, random, sys, time
count, rate = int(sys.argv[1]), int(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton("10.10.3.2"); t0 = time.monotonic()
for i in range(count):
    src = struct.pack("!I", (198 << 24 | 18 << 16) + random.randrange(1 << 17))  # 198.18.0.0/15
    sport = random.randrange(1024, 65535)
    tcp = struct.pack("!HHIIBBHHH", sport, 80, random.getrandbits(32), 0, 6 << 4, 0x02, 64240, 0, 0) + b"\x02\x04\x05\xb4\x01\x01\x04\x02"
    ph = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(ph + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, dst)
    s.sendto(ip + tcp, ("10.10.3.2", 0))
    if i % 256 == 0:
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0: time.sleep(ahead)
print("sent", count)
PY
  fi
}

# warm up the path (buffers, code) before the first RSS sample
for i in $(seq 20); do cli_curl http://10.10.3.2/ >/dev/null || fail "warm-up request failed"; done
flood $((RATE / 2))
sleep 0.5
rss0=$(rss_kb "$SYNGATE_PID")
cookies0=$(metric_sum syngate_cookies_sent_total)

# legit client loop for the whole flood
legit() {
  local ok=0 total=0 end=$((SECONDS + SECS + 1))
  while (( SECONDS < end )); do
    total=$((total + 1))
    [[ $(CURL_TIMEOUT=3 cli_curl http://10.10.3.2/ 2>/dev/null) == "hello from srv" ]] && ok=$((ok + 1))
  done
  echo "$ok $total"
}
legit > "$LAB_DIR/legit.out" &
legit_pid=$!
track_pid "$legit_pid"
start=$(date +%s.%N)
flood $((RATE * SECS))
flood_secs=$(calc "$(date +%s.%N) - $start")
wait "$legit_pid" || true
read -r ok total < "$LAB_DIR/legit.out"
sleep 0.5
rss1=$(rss_kb "$SYNGATE_PID")
cookies1=$(metric_sum syngate_cookies_sent_total)
answered=$((cookies1 - cookies0))
qdrops=$(metric_sum syngate_queue_dropped_total)
udrops=$(metric_sum syngate_queue_user_dropped_total)
log "flood: $((RATE * SECS)) spoofed SYNs offered at $RATE/s in ${flood_secs}s ($(head -c 300 "$LAB_DIR/flood.out" | tr '\n' ' '))"
log "syngate answered $answered SYNs with cookies; kernel queue drops $qdrops, socket drops $udrops"
log "legit: $ok/$total; RSS $rss0 kB -> $rss1 kB"

(( total >= 20 )) || fail "legit client made only $total requests"
(( ok * 100 >= total * 99 )) || fail "legit success $ok/$total < 99%"
(( answered >= RATE * SECS / 2 )) || fail "syngate answered only $answered of $((RATE * SECS)) SYNs"
# RSS must not scale with spoofed SYNs: 4 bytes per SYN would already be $((RATE * SECS * 4 / 1024)) kB.
(( rss1 - rss0 < 1024 )) || fail "RSS grew by $((rss1 - rss0)) kB during $answered spoofed SYNs"
# every flow belongs to a legitimate request (20 warm-up + the loop): spoofed SYNs created none
created=$(metric_sum syngate_flows_created_total)
(( created <= 20 + total )) || fail "$created flows created for $((20 + total)) legitimate requests"
pass "flood $RATE SYN/s for ${SECS}s: legit $ok/$total, $answered cookies sent, RSS growth $((rss1 - rss0)) kB"
