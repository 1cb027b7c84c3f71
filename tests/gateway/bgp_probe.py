#!/usr/bin/env python3
"""Clients for tests/gateway/bgp_test.sh (run in the client namespace).

  bgp_probe.py new OUT SECONDS   new connections back to back, each with a 1 s connect deadline
                                 (so SYN retransmissions cannot hide an outage) and 2 s for the
                                 answer; one line per connection: START_EPOCH OK HOST
  bgp_probe.py hold FIFO N       opens N keep-alive connections and answers "probe FILE" lines
                                 read from FIFO: one request on every connection still alive,
                                 concurrently, 2 s deadline; FILE gets one line per connection:
                                 INDEX FIRST_HOST RESULT (ok-a, ok-b, lost, dead)
"""
import os
import select
import socket
import sys
import time

ADDR = ("10.10.9.9", 80)
REQ = b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n"


def host_of(data):
    text = data.decode(errors="replace")
    for h in ("a", "b"):
        if "hello from host " + h in text:
            return h
    return None


def new(out, seconds):
    end = time.time() + seconds
    with open(out, "w", buffering=1) as f:
        while time.time() < end:
            t = time.time()
            host = "-"
            ok = 0
            s = socket.socket()
            try:
                s.settimeout(1.0)
                s.connect(ADDR)
                s.settimeout(2.0)
                s.sendall(b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                h = host_of(data)
                if h:
                    ok, host = 1, h
            except OSError:
                pass
            finally:
                s.close()
            f.write("%.3f %d %s\n" % (t, ok, host))
            time.sleep(0.01)


def request_all(conns, deadline=2.0):
    """One request on each live connection at once; returns {index: host or None}."""
    pending = {}
    for i, c in conns.items():
        try:
            c["sock"].sendall(REQ)
            pending[c["sock"]] = (i, b"")
        except OSError:
            pass
    got = {i: None for i in conns}
    end = time.time() + deadline
    while pending and time.time() < end:
        r, _, _ = select.select(list(pending), [], [], max(0.0, end - time.time()))
        for s in r:
            i, buf = pending[s]
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                del pending[s]
                continue
            buf += chunk
            h = host_of(buf)
            if h:
                got[i] = h
                del pending[s]
            else:
                pending[s] = (i, buf)
    return got


def hold(fifo, n):
    conns = {}
    for i in range(n):
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect(ADDR)
            s.setblocking(False)
            conns[i] = {"sock": s, "first": None, "alive": True}
        except OSError:
            s.close()
    for i, h in request_all(conns).items():
        conns[i]["first"] = h
        if h is None:
            conns[i]["alive"] = False
    with open(fifo) as cmds:
        for line in cmds:
            words = line.split()
            if len(words) != 2 or words[0] != "probe":
                continue
            alive = {i: c for i, c in conns.items() if c["alive"]}
            got = request_all(alive)
            with open(words[1] + ".tmp", "w") as f:
                for i, c in sorted(conns.items()):
                    if not c["alive"]:
                        res = "dead"
                    elif got.get(i):
                        res = "ok-" + got[i]
                    else:
                        res = "lost"
                        c["alive"] = False
                    f.write("%d %s %s\n" % (i, c["first"] or "-", res))
            os.rename(words[1] + ".tmp", words[1])


if __name__ == "__main__":
    if sys.argv[1] == "new":
        new(sys.argv[2], float(sys.argv[3]))
    else:
        hold(sys.argv[2], int(sys.argv[3]))
