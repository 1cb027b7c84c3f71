#!/usr/bin/env python3
"""Opens and holds many idle TCP connections, for bench/lab/scale.sh.

  scale_holder.py server --listen ADDR:PORT
      accepts connections and holds them (never reads, never writes) until SIGTERM; writes the
      number it holds to --status every half second.
  scale_holder.py client --target ADDR:PORT --sources A,B,... --count N
      opens N connections, round-robin over the source addresses, at most --inflight handshakes
      at a time and at most --rate new ones a second; a handshake that has not completed within
      --timeout-s counts as failed. Writes a JSON summary to --status when every connection has
      either completed or failed (or --deadline-s passed), then holds the completed ones until
      SIGTERM.

Both raise their own file-descriptor limit (RLIMIT_NOFILE) to what they need; nothing else about
the machine is changed.
"""
import argparse
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: the port is picked at connect(), per 4-tuple


def raise_fd_limit(n):
    """Raises the soft limit to n; fails when the hard limit is lower (raising it takes
    CAP_SYS_RESOURCE, which a container may not grant): scale.sh then runs more holders."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and n > hard:
        sys.exit(f"scale_holder: needs {n} descriptors, the hard limit is {hard}: run more holders")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), hard))


def write_status(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


stop = False


def on_term(*_):
    global stop
    stop = True


def split_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def server(a):
    raise_fd_limit(a.max_fds)
    host, port = split_addr(a.listen)
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # several holders share the port
    ls.bind((host, port))
    ls.listen(a.backlog)
    ls.setblocking(False)
    held = []
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    last = 0.0
    while not stop:
        for _ in sel.select(timeout=0.2):
            while True:
                try:
                    c, _ = ls.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # EMFILE and the like: say so, keep what is held
                    print(f"scale_holder server: accept: {e}", file=sys.stderr)
                    time.sleep(0.05)
                    break
                held.append(c)
        now = time.monotonic()
        if a.status and now - last >= 0.5:
            write_status(a.status, {"held": len(held)})
            last = now
    return 0


def client(a):
    raise_fd_limit(a.count + 1024)
    host, port = split_addr(a.target)
    sources = [s for s in a.sources.split(",") if s]
    if not sources:
        print("scale_holder client: --sources is empty", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    pending = {}  # fd -> (socket, started)
    held = []
    failed = 0
    errors = {}
    opened = 0
    start = time.monotonic()
    deadline = start + a.deadline_s
    connect_times = []

    def fail(why):
        nonlocal failed
        failed += 1
        errors[why] = errors.get(why, 0) + 1

    while not stop and (opened < a.count or pending) and time.monotonic() < deadline:
        now = time.monotonic()
        allowed = a.count if a.rate <= 0 else min(a.count, int((now - start) * a.rate) + 1)
        while opened < allowed and len(pending) < a.inflight:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((sources[opened % len(sources)], 0))
                s.connect_ex((host, port))
            except OSError as e:
                s.close()
                fail(e.strerror or str(e))
                opened += 1
                continue
            pending[s.fileno()] = (s, time.monotonic())
            sel.register(s, selectors.EVENT_WRITE)
            opened += 1
        for key, _ in sel.select(timeout=0.05):
            s, t0 = pending.pop(key.fd)
            sel.unregister(s)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                held.append(s)
                connect_times.append(time.monotonic() - t0)
            else:
                s.close()
                fail(os.strerror(err))
        now = time.monotonic()
        for fd, (s, t0) in list(pending.items()):
            if now - t0 > a.timeout_s:
                del pending[fd]
                sel.unregister(s)
                s.close()
                fail("timeout")
    for s, _ in pending.values():
        s.close()
    if len(pending):
        fail_n = len(pending)
        failed += fail_n
        errors["deadline"] = errors.get("deadline", 0) + fail_n
    connect_times.sort()
    summary = {
        "established": len(held),
        "failed": failed,
        "errors": errors,
        "seconds": round(time.monotonic() - start, 2),
        "sources": len(sources),
        "connect_p50_ms": round(connect_times[len(connect_times) // 2] * 1000, 2) if connect_times else None,
        "connect_p99_ms": round(connect_times[int(len(connect_times) * 0.99)] * 1000, 2) if connect_times else None,
    }
    if a.status:
        write_status(a.status, summary)
    print(json.dumps(summary), flush=True)
    while not stop:
        time.sleep(0.2)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--listen", required=True)
    s.add_argument("--backlog", type=int, default=65535)
    s.add_argument("--max-fds", type=int, default=262144)
    s.add_argument("--status")
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--sources", required=True, help="comma-separated source addresses")
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--inflight", type=int, default=512)
    c.add_argument("--rate", type=float, default=0, help="new connections per second (0: as fast as they complete)")
    c.add_argument("--timeout-s", type=float, default=10)
    c.add_argument("--deadline-s", type=float, default=300, help="stop opening and report after this long")
    c.add_argument("--status")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return server(a) if a.role == "server" else client(a)


if __name__ == "__main__":
    sys.exit(main())
