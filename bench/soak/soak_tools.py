#!/usr/bin/env python3
"""The soak run's small programs (bench/soak/run.sh starts each in its namespace).

  keepalive HOST PORT CONNS INTERVAL_S STOPFILE LOG  keep-alive HTTP clients: CONNS connections, each
                                                     a GET every INTERVAL_S until STOPFILE exists
  idle-server ADDR... PORT LOG                       accepts idle connections; answers "s2c N" to "c2s N"
  idle-client HOST... PORT N_PER_HOST GOFILE LOG     opens N idle connections per host, waits for GOFILE,
                                                     then carries one line each way on every one
  notify SOCKET LOG                                  systemd's side of sd_notify: logs time, sender PID, line
  sample PIDFILE OUT STOPFILE                        once a second: the daemon's RSS, fds, metrics, BPF maps
  rotate SECRETS                                     rotates the cookie secrets file as an operator does

Every client logs one line per event ("time what outcome ..."), so the report can bin them per
second and count every failure.
"""
import json
import os
import re
import secrets as rnd
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request


def now():
    return time.time()


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, *fields):
        with self.lock:
            self.f.write("%.3f %s\n" % (now(), " ".join(str(x) for x in fields)))


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# ---- keep-alive HTTP clients -------------------------------------------------------------------
def read_response(f):
    """One HTTP/1.1 response from a buffered reader; returns (status, body)."""
    status = f.readline()
    if not status:
        raise ConnectionError("connection closed before the response")
    code = int(status.split()[1])
    length = None
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
        if k.strip().lower() == "connection" and v.strip().lower() == "close":
            raise ConnectionError("server closed a keep-alive connection")
    body = f.read(length or 0)
    if len(body) != (length or 0):
        raise ConnectionError("short body")
    return code, body


def keepalive(host, port, conns, interval, stopfile, logpath):
    log = Log(logpath)
    want = None
    # One connection per thread, reused for every request; a failure is logged and the
    # connection replaced (a keep-alive connection that breaks is exactly what the soak looks for).
    def worker(i):
        nonlocal want
        s = f = None
        req = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
        while not os.path.exists(stopfile):
            t0 = now()
            try:
                if s is None:
                    s = socket.create_connection((host, port), timeout=20)
                    f = s.makefile("rb")
                    log.write("keepalive", "open", i)
                s.sendall(req)
                code, body = read_response(f)
                if code != 200:
                    raise ConnectionError("HTTP %d" % code)
                if want is None:
                    want = body
                if body != want:
                    raise ConnectionError("body differs")
                log.write("keepalive", "ok", i, "%.1f" % ((now() - t0) * 1000))
            except Exception as e:  # noqa: BLE001 - every failure is a data point
                log.write("keepalive", "fail", i, repr(e).replace(" ", "_")[:120])
                try:
                    s and s.close()
                except OSError:
                    pass
                s = None
            time.sleep(max(0.0, interval - (now() - t0)))
        if s is not None:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- idle connections --------------------------------------------------------------------------
def idle_server(addrs, port, logpath):
    log = Log(logpath)

    def serve(c, peer):
        f = c.makefile("rb")
        line = f.readline()
        if line.startswith(b"c2s "):
            c.sendall(b"s2c " + line[4:])
            log.write("idle-server", "exchanged", peer[0], peer[1])
        else:
            log.write("idle-server", "bad", peer[0], peer[1], repr(line)[:60].replace(" ", "_"))
        c.close()

    def listen(addr):
        s = socket.socket(family_of(addr))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(256)
        while True:
            c, peer = s.accept()
            log.write("idle-server", "accepted", peer[0], peer[1])
            threading.Thread(target=serve, args=(c, peer), daemon=True).start()

    for a in addrs[1:]:
        threading.Thread(target=listen, args=(a,), daemon=True).start()
    listen(addrs[0])


def idle_client(hosts, port, n, gofile, logpath):
    log = Log(logpath)
    conns = []
    for h in hosts:
        for i in range(n):
            s = socket.create_connection((h, port), timeout=20)
            # Keepalive probes every 60 s: an idle connection through a stateful middlebox lives
            # only as long as its idle timeout (syngate: engine.established_idle_s, 600 s), so a
            # long-lived idle client keeps itself alive, as real ones (SSH, databases) are told to.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
            conns.append((h, i, s))
            log.write("idle", "open", h, i)
    log.write("idle", "opened", len(conns))
    while not os.path.exists(gofile):
        time.sleep(0.2)
    ok = 0
    for h, i, s in conns:
        try:
            s.settimeout(10)
            msg = b"c2s %s %d\n" % (h.encode(), i)
            s.sendall(msg)
            reply = s.makefile("rb").readline()
            if reply != b"s2c " + msg[4:]:
                raise ConnectionError("reply %r" % reply)
            ok += 1
            log.write("idle", "ok", h, i)
        except Exception as e:  # noqa: BLE001
            log.write("idle", "lost", h, i, repr(e).replace(" ", "_")[:120])
        s.close()
    log.write("idle", "done", ok, len(conns))


# ---- systemd notify listener -------------------------------------------------------------------
def notify(path, logpath):
    log = open(logpath, "a", buffering=1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    creds_len = struct.calcsize("3i")
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(creds_len))
        pid = 0
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", data[:creds_len])[0]
        t = now()
        for line in msg.decode(errors="replace").split("\n"):
            if line:
                log.write("%.3f %d %s\n" % (t, pid, line.replace(" ", "_")))


# ---- sampler -----------------------------------------------------------------------------------
METRIC = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([-0-9.e+]+)$')


def metrics():
    try:
        with urllib.request.urlopen("http://127.0.0.1:9470/metrics", timeout=0.8) as r:
            text = r.read().decode()
    except Exception:  # noqa: BLE001 - the daemon is restarting
        return None
    out = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def msum(ms, name, flt=""):
    return sum(v for (n, l), v in ms.items() if n == name and flt in l)


def per_worker(ms, name):
    out = {}
    for (n, labels), v in ms.items():
        if n == name:
            w = re.search(r'worker="([^"]+)"', labels)
            if w:
                out[w.group(1)] = out.get(w.group(1), 0) + v
    return out


# Map types whose entry count is the state they hold (arrays have a fixed count).
COUNTED_TYPES = {1, 5, 9, 10}  # hash, percpu_hash, lru_hash, lru_percpu_hash


def bpf_maps(pid):
    maps = {}
    try:
        fds = os.listdir("/proc/%d/fdinfo" % pid)
    except OSError:
        return maps
    for fd in fds:
        try:
            info = open("/proc/%d/fdinfo/%s" % (pid, fd)).read()
        except OSError:
            continue
        if "map_id:" not in info:
            continue
        fields = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
        mid, mtype = int(fields["map_id"]), int(fields["map_type"])
        if mtype in COUNTED_TYPES:
            maps[mid] = {"type": mtype, "max": int(fields.get("max_entries", 0))}
    for mid, m in maps.items():
        try:
            show = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", str(mid)],
                                             capture_output=True, text=True, timeout=5).stdout)
            m["name"] = show.get("name", str(mid))
            # The JSON dump is a list of the entries (the plain one's "Found N elements" line is
            # missing when the map has BTF).
            out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)],
                                 capture_output=True, text=True, timeout=10).stdout
            m["entries"] = len(json.loads(out))
        except Exception:  # noqa: BLE001
            m["entries"] = None
    return maps


def sample(pidfile, outpath, stopfile):
    out = open(outpath, "a", buffering=1)
    tick = 0
    start = now()
    while not os.path.exists(stopfile):
        t = now()
        row = {"t": round(t, 3)}
        try:
            pid = int(open(pidfile).read().split()[0])
            status = open("/proc/%d/status" % pid).read()
            row["pid"] = pid
            row["rss_kb"] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            row["fds"] = len(os.listdir("/proc/%d/fd" % pid))
        except Exception:  # noqa: BLE001 - between a kill -9 and the restart
            pid = None
        ms = metrics() if pid else None
        if ms:
            row["flows_active"] = msum(ms, "syngate_flows_active")
            row["packets_by_worker"] = per_worker(ms, "syngate_packets_total")
            row["xdp"] = {k: msum(ms, "syngate_xdp_packets_total", 'outcome="%s"' % k)
                          for k in ("syn_answered", "cookie_valid", "cookie_invalid", "forged_dropped")}
            row["xdp_drops"] = msum(ms, "syngate_xdp_drops_total")
            row["cookies_sent"] = msum(ms, "syngate_cookies_sent_total")
            row["secrets_generation"] = msum(ms, "syngate_cookie_secrets_generation")
            row["reloads_ok"] = msum(ms, "syngate_reloads_total", 'result="ok"')
            row["reloads_failed"] = msum(ms, "syngate_reloads_total", 'result="failed"')
            row["exceptions"] = msum(ms, "syngate_engine_exceptions_total")
        if pid:
            maps = bpf_maps(pid)
            row["maps"] = {"%s#%d" % (m.get("name", "?"), mid): m.get("entries") for mid, m in maps.items()}
            row["map_max"] = {"%s#%d" % (m.get("name", "?"), mid): m["max"] for mid, m in maps.items()}
        out.write(json.dumps(row) + "\n")
        tick += 1
        time.sleep(max(0.05, start + tick - now()))


# ---- key rotation ------------------------------------------------------------------------------
def rotate(path):
    """What an operator's central rotation does (docs/scale-out.md): the current key becomes the
    previous one, a new random current key starts at the cookie counter of now (CLOCK_TAI in
    64-second ticks), written next to the file with mode 0600 and renamed over it."""
    fields = dict(l.split(" ", 1) for l in open(path).read().splitlines()[1:])
    counter = int(time.clock_gettime(time.CLOCK_TAI) // 64)
    text = ("syngate-cookie-secrets 1\ncurrent %s\nprevious %s\ncurrent_since %d\n"
            % (rnd.token_hex(16), fields["current"], counter))
    tmp = path + ".rotating"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text.encode())
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, path)


def main():
    a = sys.argv[1:]
    if not a or a[0] in ("-h", "--help"):
        print(__doc__)
        return
    cmd = a[0]
    if cmd == "keepalive":
        keepalive(a[1], int(a[2]), int(a[3]), float(a[4]), a[5], a[6])
    elif cmd == "idle-server":
        idle_server(a[1:-2], int(a[-2]), a[-1])
    elif cmd == "idle-client":
        idle_client(a[1:-4], int(a[-4]), int(a[-3]), a[-2], a[-1])
    elif cmd == "notify":
        notify(a[1], a[2])
    elif cmd == "sample":
        sample(a[1], a[2], a[3])
    elif cmd == "rotate":
        rotate(a[1])
    else:
        sys.exit("soak_tools.py: unknown command %s (see --help)" % cmd)


if __name__ == "__main__":
    main()
