#!/usr/bin/env bash
# synflood syn --malform: every kind goes on the wire as built, over IPv4 and (for the kinds that
# have an IPv6 form) over IPv6. Two network namespaces joined by a veth pair (created here,
# removed by the trap); the receiver counts what arrives from the spoof ranges with iptables and
# ip6tables counters in raw PREROUTING (before the stack can drop anything) and captures it with
# tcpdump, and a checker classifies every captured frame by its family and defect and verifies
# the IPv4 header checksum and the TCP checksum where the frame holds a whole segment.
set -euo pipefail
bin=${1:?usage: malform_netns_test.sh SYNFLOOD}
command -v tcpdump >/dev/null || { echo "SKIP: needs tcpdump"; exit 77; }

source "$(dirname "$0")/pair.sh"
require_root "needs root"
pair_up mf "10.99.0.1/24 fd00:99::1/64" "10.99.0.2/24 fd00:99::2/64"
ip netns exec "$rx" iptables -t raw -A PREROUTING -s 198.18.0.0/15 -p tcp -m comment --comment malformed -j DROP
ip netns exec "$rx" ip6tables -t raw -A PREROUTING -s 2001:2::/48 -m comment --comment malformed -j DROP

per_kind=25
kinds=$("$bin" syn --help | sed -n 's/^ *--malform TEXT:{none,\([^}]*\)}.*/\1/p' | tr , ' ')
[ -n "$kinds" ] || fail "could not read the malform kinds from --help"
echo "kinds: $kinds"

ip netns exec "$rx" tcpdump -i veth1 -n -U -w "$tmp/rx.pcap" 'src net 198.18.0.0/15 or src net 2001:2::/48' 2>"$tmp/dump.err" &
dump_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/dump.err" && break; sleep 0.05; done
grep -q "listening on" "$tmp/dump.err" || fail "tcpdump did not start: $(cat "$tmp/dump.err")"

kinds6=""
for kind in $kinds; do
  for target in 10.99.0.2:80 '[fd00:99::2]:80'; do
    rc=0; out=$(ip netns exec "$tx" "$bin" syn --target "$target" --rate 1000 --count "$per_kind" --malform "$kind" --json 2>"$tmp/err") || rc=$?
    if [ "$kind" = ip-options ] && [ "$target" != 10.99.0.2:80 ]; then
      [ "$rc" = 2 ] || fail "ip-options at an IPv6 target exited $rc, expected 2 (no IPv6 form)"
      continue
    fi
    [ "$rc" = 0 ] || fail "$kind -> $target exited $rc: $(cat "$tmp/err")"
    echo "$out"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["sent"] == int(sys.argv[2]) and d["malform"] == sys.argv[3] else 1)' \
      "$out" "$per_kind" "$kind" || fail "$kind: report does not say $per_kind sent"
    [ "$target" = 10.99.0.2:80 ] || kinds6="$kinds6 $kind"
  done
done
n_kinds=$(echo "$kinds" | wc -w)
n_kinds6=$(echo "$kinds6" | wc -w)
# tcpdump drops what it has not read from its socket when it is stopped: wait (up to 10 s)
# until it has written every frame, then stop it.
records() {  # records PCAP: how many frames tcpdump has written so far
  python3 -c 'import struct,sys
d=open(sys.argv[1],"rb").read(); p=24; n=0
while p + 16 <= len(d): p += 16 + struct.unpack("<I", d[p+8:p+12])[0]; n += 1
print(n)' "$1" 2>/dev/null || echo 0
}
for _ in $(seq 100); do
  [ "$(records "$tmp/rx.pcap")" -ge $(((n_kinds + n_kinds6) * per_kind)) ] && break
  sleep 0.1
done
kill -INT "$dump_pid"; wait "$dump_pid" || true; dump_pid=""
got=$(ip netns exec "$rx" iptables -t raw -nvxL PREROUTING | awk '/\/\* malformed \*\// {print $1}')
[ "$got" = $((n_kinds * per_kind)) ] || fail "the receiver counted $got malformed IPv4 SYNs, expected $((n_kinds * per_kind))"
got=$(ip netns exec "$rx" ip6tables -t raw -nvxL PREROUTING | awk '/\/\* malformed \*\// {print $1}')
[ "$got" = $((n_kinds6 * per_kind)) ] || fail "the receiver counted $got malformed IPv6 SYNs, expected $((n_kinds6 * per_kind))"

python3 - "$tmp/rx.pcap" "$per_kind" "$kinds" "$kinds6" <<'PY'
import struct, sys
path, per_kind, kinds, kinds6 = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s

def options(opts):
    """(kind, length, offset) of every option until one cannot be read."""
    i, out = 0, []
    while i < len(opts):
        k = opts[i]
        if k == 0: break
        if k == 1: i += 1; continue
        if i + 1 >= len(opts): out.append((k, None, i)); break
        l = opts[i + 1]
        out.append((k, l, i))
        if l < 2: break
        i += l
    return out

def classify(ip):
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    frag = struct.unpack("!H", ip[6:8])[0]
    if (frag & 0x1fff) != 0: return "frag-later", False
    if frag & 0x2000: return "frag-first", False
    if ihl > 20: return "ip-options", True
    return classify_tcp(ip[ihl:total])

def classify6(ip):
    plen = struct.unpack("!H", ip[4:6])[0]
    if ip[6] == 44:
        assert ip[40] == 6, "fragment header not followed by TCP"
        off_m = struct.unpack("!H", ip[42:44])[0]
        if off_m >> 3: return "frag-later", False
        if off_m & 1: return "frag-first", False
        sys.exit("FAIL: an atomic fragment")
    assert ip[6] == 6, "IPv6 next header %d" % ip[6]
    return classify_tcp(ip[40:40 + plen])

def classify_tcp(tcp):
    if len(tcp) < 20: return "tcp-truncated", True
    doff = (tcp[12] >> 4) * 4
    if doff < 20: return "doff-short", True
    if doff > len(tcp): return "doff-long", True
    flags = tcp[13]
    if flags == 0x03: return "syn-fin", True
    if flags == 0x06: return "syn-rst", True
    for k, l, off in options(tcp[20:doff]):
        if l == 0: return "opt-zero-len", True
        if l == 1: return "opt-len-one", True
        if l is not None and off + l > doff - 20: return "opt-past-header", True
    return "normal", True

counts, counts6 = {}, {}
with open(path, "rb") as f:
    data = f.read()
magic = struct.unpack("<I", data[:4])[0]
assert magic in (0xa1b2c3d4, 0xa1b23c4d), hex(magic)
pos = 24
while pos + 16 <= len(data):
    _, _, caplen, _ = struct.unpack("<IIII", data[pos:pos + 16])
    frame = data[pos + 16:pos + 16 + caplen]
    pos += 16 + caplen
    ip = frame[14:]
    if frame[12:14] == b"\x86\xdd":
        kind, whole_segment = classify6(ip)
        if whole_segment:
            seg = ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
            pseudo = ip[8:40] + struct.pack("!IxxxB", len(seg), 6)
            assert csum(pseudo + seg) == 0xffff, "bad TCP checksum in an IPv6 " + kind + " frame"
        counts6[kind] = counts6.get(kind, 0) + 1
        continue
    assert frame[12:14] == b"\x08\x00", "neither IPv4 nor IPv6"
    ihl = (ip[0] & 15) * 4
    assert csum(ip[:ihl]) == 0xffff, "bad IP header checksum"
    kind, whole_segment = classify(ip)
    if whole_segment:
        total = struct.unpack("!H", ip[2:4])[0]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, total - ihl)
        assert csum(pseudo + ip[ihl:total]) == 0xffff, "bad TCP checksum in a " + kind + " frame"
    counts[kind] = counts.get(kind, 0) + 1
print("IPv4 captured at the receiver:", counts)
print("IPv6 captured at the receiver:", counts6)
if counts != {k: per_kind for k in kinds}:
    sys.exit("FAIL: IPv4: expected %d of each of %s" % (per_kind, kinds))
if counts6 != {k: per_kind for k in kinds6}:
    sys.exit("FAIL: IPv6: expected %d of each of %s" % (per_kind, kinds6))
PY

# The header defects on the other flood kinds: forged ACKs with IP options arrive as ACKs with a
# 32-byte IP header and valid checksums (a fast path must not hand them to a slower one); the
# flag defects belong to syn floods and are refused elsewhere.
rc=0; "$bin" ack --target 10.99.0.2:80 --rate 1 --count 1 --malform syn-fin >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] || fail "ack --malform syn-fin exited $rc, expected 2 (a usage error)"
ip netns exec "$rx" tcpdump -i veth1 -n -U -w "$tmp/ack.pcap" 'src net 198.18.0.0/15' 2>"$tmp/dump.err" &
dump_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/dump.err" && break; sleep 0.05; done
out=$(ip netns exec "$tx" "$bin" ack --target 10.99.0.2:80 --rate 1000 --count "$per_kind" --malform ip-options --json) ||
  fail "ack --malform ip-options failed"
for _ in $(seq 100); do
  [ "$(records "$tmp/ack.pcap")" -ge "$per_kind" ] && break
  sleep 0.1
done
kill -INT "$dump_pid"; wait "$dump_pid" || true; dump_pid=""
python3 - "$tmp/ack.pcap" "$per_kind" <<'PY'
import struct, sys
path, want = sys.argv[1], int(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s
data, pos, n = open(path, "rb").read(), 24, 0
while pos + 16 <= len(data):
    caplen = struct.unpack("<I", data[pos + 8:pos + 12])[0]
    ip = data[pos + 16 + 14:pos + 16 + caplen]
    pos += 16 + caplen
    ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
    assert ihl == 32, "IP header of %d bytes, not 32" % ihl
    assert csum(ip[:ihl]) == 0xffff, "bad IP header checksum"
    tcp = ip[ihl:total]
    assert tcp[13] == 0x10, "flags 0x%02x, not a bare ACK" % tcp[13]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, total - ihl)
    assert csum(pseudo + tcp) == 0xffff, "bad TCP checksum"
    n += 1
print("forged ACKs with IP options captured:", n)
if n != want:
    sys.exit("FAIL: expected %d" % want)
PY
echo "PASS"
