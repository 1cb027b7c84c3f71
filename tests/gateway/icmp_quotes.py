#!/usr/bin/env python3
"""Checks, in a capture taken on one endpoint, that the ICMP errors it received about its TCP
connections ("fragmentation needed", ICMPv6 "packet too big") quote its own segments as it sent
them: every quoted value named by --fields must be one the endpoint itself put in a segment of the
same connection (a quote still in the gateway's other sequence space differs by a random 32-bit
delta and matches none), and the ICMP checksum must be valid.

  icmp_quotes.py CAPTURE.pcap --host ADDR [--host ADDR6] --fields seq,tsval [--families 4,6]

Exits 1, saying why, when a quote does not match, a checksum is wrong, or a family in --families
has no quote at all (the router never answered: the test proved nothing).
"""
import argparse
import ipaddress
import struct
import sys


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_fields(tcp: bytes) -> dict:
    """The fields a (possibly cut short) TCP header holds."""
    f = {}
    if len(tcp) >= 8:
        f["ports"] = struct.unpack("!HH", tcp[:4])
        f["seq"] = struct.unpack("!I", tcp[4:8])[0]
    if len(tcp) >= 12:
        f["ack"] = struct.unpack("!I", tcp[8:12])[0]
    if len(tcp) >= 20:
        end = min(len(tcp), (tcp[12] >> 4) * 4)
        i = 20
        while i < end:
            kind = tcp[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= end or tcp[i + 1] < 2 or i + tcp[i + 1] > end:
                break
            if kind == 8 and tcp[i + 1] == 10:
                f["tsval"], f["tsecr"] = struct.unpack("!II", tcp[i + 2:i + 10])
            i += tcp[i + 1]
    return f


def packets(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype != 1:
            sys.exit(f"{path}: link type {linktype}, expected Ethernet")
        while True:
            rec = fh.read(16)
            if len(rec) < 16:
                return
            caplen = struct.unpack(endian + "IIII", rec)[2]
            frame = fh.read(caplen)
            if len(frame) < 14:
                continue
            ethertype = struct.unpack("!H", frame[12:14])[0]
            yield ethertype, frame[14:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--host", action="append", required=True)
    ap.add_argument("--fields", required=True)
    ap.add_argument("--families", default="")
    a = ap.parse_args()
    hosts = {ipaddress.ip_address(h).packed for h in a.host}
    fields = a.fields.split(",")
    sent = {}    # (family, src, dst, sport, dport) -> field -> set of values
    quotes = []  # (family, key, fields, checksum_ok)
    for ethertype, ip in packets(a.capture):
        if ethertype == 0x0800 and len(ip) >= 20:
            ihl = (ip[0] & 15) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            src, dst, proto, l4 = ip[12:16], ip[16:20], ip[9], ip[ihl:]
            family = 4
            complete = len(ip) >= total
            l4_len = total - ihl
        elif ethertype == 0x86DD and len(ip) >= 40:
            src, dst, proto, l4 = ip[8:24], ip[24:40], ip[6], ip[40:]
            family = 6
            l4_len = struct.unpack("!H", ip[4:6])[0]
            complete = len(l4) >= l4_len
        else:
            continue
        if proto == 6 and src in hosts and len(l4) >= 20:
            key = (family, src, dst) + struct.unpack("!HH", l4[:4])
            for name, value in tcp_fields(l4).items():
                sent.setdefault(key, {}).setdefault(name, set()).add(value)
        elif dst in hosts and ((family == 4 and proto == 1 and l4[:2] == b"\x03\x04") or
                               (family == 6 and proto == 58 and l4[:1] == b"\x02")):
            inner = l4[8:]
            if family == 4:
                if len(inner) < 20 or inner[9] != 6:
                    continue
                iihl = (inner[0] & 15) * 4
                isrc, idst, itcp = inner[12:16], inner[16:20], inner[iihl:]
            else:
                if len(inner) < 40 or inner[6] != 6:
                    continue
                isrc, idst, itcp = inner[8:24], inner[24:40], inner[40:]
            ok = None
            if complete:
                msg = l4[:l4_len]
                pseudo = b"" if family == 4 else src + dst + struct.pack("!IxxxB", l4_len, 58)
                ok = checksum(pseudo + msg) == 0xFFFF
            f = tcp_fields(itcp)
            if "ports" not in f:
                continue
            quotes.append((family, (family, isrc, idst) + f["ports"], f, ok))
    bad = []
    per_family = {4: 0, 6: 0}
    for family, key, f, ok in quotes:
        per_family[family] += 1
        if ok is False:
            bad.append(f"IPv{family} ICMP error with a wrong checksum (quote {key[3]}->{key[4]})")
        for name in fields:
            if name not in f:
                continue
            if f[name] not in sent.get(key, {}).get(name, set()):
                bad.append(f"IPv{family} quote {key[3]}->{key[4]}: {name} {f[name]} is not one this host sent")
    print(f"{len(quotes)} ICMP errors quoting this host's segments (IPv4 {per_family[4]}, IPv6 {per_family[6]}); "
          f"{len(bad)} wrong")
    for b in bad[:10]:
        print("  " + b)
    missing = [f for f in a.families.split(",") if f and per_family[int(f)] == 0]
    if missing:
        print("no ICMP error quoting this host's segments for IPv" + ", IPv".join(missing))
    sys.exit(1 if bad or missing else 0)


if __name__ == "__main__":
    main()
