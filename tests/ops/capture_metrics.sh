#!/usr/bin/env bash
# Regenerates fixtures/metrics_flood_{a,b}.txt: two scrapes, one second apart, of a real syngate
# (1 SYN worker, 2 flow workers, max_flows 1000) in the namespace lab while a bounded spoofed SYN
# flood (198.18.0.0/15) runs and a client makes requests. The status unit tests read them.
#   capture_metrics.sh SYNGATE   (root)
source "$(dirname "$0")/../gateway/lib.sh"
lab_init "$1"
out=$(cd "$(dirname "$0")" && pwd)/fixtures
lab_up
start_nginx
write_config "flow_queues = 2" "max_flows = 1000"
start_syngate
for i in $(seq 30); do cli_curl http://10.10.3.2/ >/dev/null; done
in_ns "$NS_ATK" timeout 20 /usr/bin/python3 - <<'PY' &
import socket, struct, random, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst = socket.inet_aton("10.10.3.2"); t0 = time.monotonic(); rate = 5000
for i in range(5000 * 4):
    src = struct.pack("!I", (198 << 24 | 18 << 16) + random.randrange(1 << 17))
    tcp = struct.pack("!HHIIBBHHH", random.randrange(1024, 65535), 80, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst)
    s.sendto(ip + tcp, ("10.10.3.2", 0))
    if i % 256 == 0:
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0: time.sleep(ahead)
PY
flood_pid=$!
track_pid "$flood_pid"
sleep 1.5
metrics > "$out/metrics_flood_a.txt"
sleep 1
metrics > "$out/metrics_flood_b.txt"
wait "$flood_pid" || true
pass "captured $(wc -l < "$out/metrics_flood_a.txt") lines twice into $out"
