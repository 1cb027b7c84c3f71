#!/usr/bin/env python3
"""Byte-exact request/response streams through the gateway, for the kernel path's tests.

  stream_check.py server ADDR PORT
  stream_check.py client ADDR PORT [--conns N] [--parallel P] [--req BYTES] [--resp BYTES]
                  [--ip-options] [--half-close] [--hold-until PATH]

Each connection: the client sends, at once after connect() (right behind its handshake ACK), a
header line "SEED REQLEN RESPLEN OPTS" and REQLEN bytes; the server answers the request's sha256
and RESPLEN bytes generated from SEED, then closes. With OPTS = 1 the server sends the middle
third of its answer with IPv4 options (NOPs) on its segments, switching them only once the
client has acknowledged all sent before: the tc programs leave those to the engine. With --half-close the client shuts its side down after the request (its FIN closes the
flow for the tc programs) and the server answers only once it has seen that FIN: the whole answer
is then the engine's to translate. With --hold-until the client sends its header line, then waits
for PATH to exist before it sends the request (a connection held open across a restart). The
client checks every byte; it prints "ok N" and exits 0 only
when all N connections were intact (after 10 failures it stops starting new ones).
"""
import argparse
import fcntl
import hashlib
import os
import random
import socket
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor

NOP_OPTIONS = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL: an IPv4 header of 24 bytes


def stream(seed, n):
    return random.Random(seed).randbytes(n)


def recv_exact(c, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def drain(c, timeout=30.0):
    """Wait until the peer has acknowledged everything written: IP_OPTIONS apply to segments as
    they are transmitted, so without this a switch would also reach bytes still in the send buffer
    (and miss some written after it), and how much of the third carries options would vary."""
    deadline = time.monotonic() + timeout
    while int.from_bytes(fcntl.ioctl(c, termios.TIOCOUTQ, b"\0" * 4), sys.byteorder) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("send queue not drained")
        time.sleep(0.001)


def serve_one(c):
    try:
        f = c.makefile("rb")
        seed, reqlen, resplen, opts = (int(x) for x in f.readline().split())
        req = f.read(reqlen)
        if opts & 2:
            while f.read(65536):
                pass
        data = stream(seed, resplen)
        c.sendall(hashlib.sha256(req).digest())
        if opts & 1 and c.family == socket.AF_INET:
            third = resplen // 3
            c.sendall(data[:third])
            drain(c)
            c.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, NOP_OPTIONS)
            c.sendall(data[third:2 * third])
            drain(c)
            c.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"")
            c.sendall(data[2 * third:])
        else:
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        if not opts & 2:
            while c.recv(65536):
                pass
    except OSError:
        pass
    finally:
        c.close()


def server(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1024)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


FAILURES = []


def client_one(args, i):
    if len(FAILURES) >= 10:
        return "skipped after 10 failures"
    r = client_conn(args, i)
    if r:
        FAILURES.append(r)
    return r


def client_conn(args, i):
    seed = random.getrandbits(64)
    req = stream(seed ^ 0x5A5A, args.req)
    family = socket.AF_INET6 if ":" in args.addr else socket.AF_INET
    c = socket.socket(family)
    c.settimeout(10)
    try:
        c.connect((args.addr, args.port))
        opts = int(args.ip_options) | 2 * int(args.half_close)
        header = f"{seed} {args.req} {args.resp} {opts}\n".encode()
        if args.hold_until:
            c.sendall(header)
            while not os.path.exists(args.hold_until):
                time.sleep(0.05)
            header = b""
        c.sendall(header + req)
        if args.half_close:
            c.shutdown(socket.SHUT_WR)
        digest = recv_exact(c, 32)
        body = recv_exact(c, args.resp)
        rest = c.recv(1)
        if digest != hashlib.sha256(req).digest():
            return f"conn {i}: the server received another request than sent"
        if body != stream(seed, args.resp):
            first = next(k for k in range(args.resp) if body[k] != stream(seed, args.resp)[k])
            return f"conn {i}: answer differs from byte {first}"
        if rest:
            return f"conn {i}: bytes past the answer"
        return None
    except OSError as e:
        return f"conn {i}: {e}"
    finally:
        c.close()


def client(args):
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(lambda i: client_one(args, i), range(args.conns)))
    bad = [r for r in results if r]
    for r in bad[:10]:
        print("FAILED", r)
    print(f"ok {args.conns - len(bad)} of {args.conns}")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--req", type=int, default=16384)
    ap.add_argument("--resp", type=int, default=65536)
    ap.add_argument("--ip-options", action="store_true")
    ap.add_argument("--half-close", action="store_true")
    ap.add_argument("--hold-until", metavar="PATH")
    args = ap.parse_args()
    if args.role == "server":
        server(args.addr, args.port)
        return 0
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
