#!/usr/bin/env python3
"""An HTTP client that, once its connection is established through the gateway and has sent the
first half of its request, sends the rest with a TTL (IPv6: hop limit) of 1, waits, then puts the
TTL back (no keep-alive needed: one request). Prints "sent" (the first half was acknowledged),
then "silent" or "answered-at-ttl-1", then "answered" or "unanswered":
    ttl_client.py ADDRESS PORT
"""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
v6 = ":" in host
s = socket.create_connection((host, port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
level, option = (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) if v6 else (socket.IPPROTO_IP, socket.IP_TTL)


def answer(wait):
    s.settimeout(wait)
    try:
        data = s.recv(65536)
    except socket.timeout:
        return False
    return data.startswith(b"HTTP/1.1 ")


s.sendall(b"HEAD / HTTP/1.1\r\n")
time.sleep(0.3)  # acknowledged by the server through the handed-over flow
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
unacked = int.from_bytes(info[24:28], sys.byteorder)  # tcpi_unacked
print("sent" if unacked == 0 else "first-half-unacked", flush=True)
s.setsockopt(level, option, 1)
s.sendall(f"Host: {host}\r\n\r\n".encode())
print("answered-at-ttl-1" if answer(1.5) else "silent", flush=True)
s.setsockopt(level, option, 64)
# The retransmission (at the next RTO) leaves with TTL 64.
print("answered" if answer(8) else "unanswered", flush=True)
