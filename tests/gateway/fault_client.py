#!/usr/bin/env python3
# What a client sees when the backend fails: connects (the gateway answers the SYN), sends a
# request (or, with --wait-hello, reads the server's greeting and writes READY_FILE), then waits
# for the connection to fail. Prints "OUTCOME EPOCH" where OUTCOME is reset, refused, unreachable,
# eof, timeout or data, and EPOCH the time.time() the outcome was seen (same clock as tcpdump -tt).
import errno, socket, sys, time

host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ready_file = sys.argv[4] if len(sys.argv) > 4 else ""
names = {errno.ECONNRESET: "reset", errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable",
         errno.ENETUNREACH: "unreachable", errno.ETIMEDOUT: "timeout", errno.EPIPE: "reset"}
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.settimeout(limit)
try:
    s.connect((host, port))
    if ready_file:
        s.recv(100)
        open(ready_file, "w").write("ready\n")
    else:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = s.recv(4096)
    print("eof" if not data else "data", f"{time.time():.6f}")
except socket.timeout:
    print("timeout", f"{time.time():.6f}")
except OSError as e:
    print(names.get(e.errno, f"errno{e.errno}"), f"{time.time():.6f}")
