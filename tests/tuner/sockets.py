#!/usr/bin/env python3
"""Puts TCP sockets into known states on loopback, then holds them until killed.

Run inside a private network namespace. Usage: sockets.py READY_FILE N_EST N_CLOSE_WAIT N_TIME_WAIT N_SYN_RECV
SYN_RECV needs the caller to drop the client's final ACK to port 8003 (iptables in that netns).
Writes "ready" to READY_FILE once every state is in place."""
import os
import socket
import sys
import time

ready_file = sys.argv[1]
n_est, n_cw, n_tw, n_sr = (int(x) for x in sys.argv[2:6])
keep = []


def listener(port, family=socket.AF_INET, addr="127.0.0.1", backlog=128):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(backlog)
    keep.append(s)
    return s


def pair(lst, family=socket.AF_INET, addr="127.0.0.1"):
    c = socket.socket(family, socket.SOCK_STREAM)
    c.connect((addr, lst.getsockname()[1]))
    a, _ = lst.accept()
    return c, a


# ESTABLISHED: both ends open (IPv4 and one IPv6 pair).
l_est = listener(8000)
for _ in range(n_est):
    keep.extend(pair(l_est))
l6 = listener(8010, socket.AF_INET6, "::1")
keep.extend(pair(l6, socket.AF_INET6, "::1"))

# CLOSE_WAIT: the client closes, the server side never does (the leak diagnose must find).
l_cw = listener(8001)
for _ in range(n_cw):
    c, a = pair(l_cw)
    c.close()
    keep.append(a)

# TIME_WAIT: the client closes first, so the client's end waits in TIME_WAIT after the server closes.
l_tw = listener(8002)
for _ in range(n_tw):
    c, a = pair(l_tw)
    c.close()
    a.recv(1)
    a.close()

# SYN_RECV: the final ACK is dropped, so the server keeps a request socket while the client thinks it
# is connected.
l_sr = listener(8003)
for _ in range(n_sr):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.connect(("127.0.0.1", 8003))
    keep.append(c)

time.sleep(0.5)  # let the last FIN/ACK exchanges settle
with open(ready_file + ".tmp", "w") as f:
    f.write("ready %d\n" % os.getpid())
os.rename(ready_file + ".tmp", ready_file)
time.sleep(120)
