#!/usr/bin/env python3
"""Judges a soak run (bench/soak/run.sh) from its output directory and writes table.md,
summary.json and soak.png (gnuplot) there. Exit 0 when every criterion passes, 1 otherwise.

  report.py OUT [--watchdog-usec N]     the verdict
  report.py OUT --drained               exit 0 when the last sample's tables are at the baseline

Criteria (issue 24):
  transfers     0 failed or corrupt: per-request (ab, curl over IPv6), keep-alive requests, downloads
  idle          every idle connection opened at the start carried a line each way at the end
  rss, fds      flat after warm-up: in every process lifetime (kill -9 starts a new one) with at
                least 60 s under load, the first third is warm-up; the median of the last 10
                samples is under 5% above the median of the first 10 after it
  drain         once the clients stopped: flows in syngate's tables and the entries of every BPF
                hash map back to the baseline (the last sample before the first client), map by map name;
                the proven-sources map is a cache of clients that completed a handshake (15 min
                memory, LRU) and must hold no more entries than there are client addresses (2).
                One exception, bounded: a forged ACK passes the 26-bit cookie hash by chance once
                in 2^26, and the backend then holds the connection its spoofed "client" never
                uses until its FIN retransmissions give up, past the cooldown. A run sends about
                10^6 forged ACKs (about 1.5 % a run to see one such flow; two in a run have a
                chance near 10^-4), so one leftover flow whose client lies in a flood's spoofed
                range, with exactly its own entries in the maps, passes and is reported
  watchdog      no gap over WATCHDOG_USEC between a process's READY=1, its WATCHDOG=1 pings and
                its end (kill -9 or the end of the run)
"""
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys

FLAT_LIMIT = 0.05
MIN_LIFETIME_S = 60
WINDOW = 10
CLIENT_BIN_S = 5
CACHE_MAPS = {"sg_proven": 2}  # name prefix -> most entries allowed after the drain
COOKIE_HASH_BITS = 26  # include/syngate/spec/cookie_spec.h, SG_COOKIE_HASH_BITS
CHANCE_FLOWS_ALLOWED = 1


def read_lines(path):
    if not os.path.exists(path):
        return []
    return [l.split() for l in open(path) if l.strip()]


def events(out):
    ev = []
    for f in read_lines(os.path.join(out, "events.log")):
        ev.append((float(f[0]), " ".join(f[1:])))
    return ev


def event_time(ev, text):
    return next((t for t, e in ev if e == text), None)


def samples(out):
    path = os.path.join(out, "samples.jsonl")
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []


def map_by_name(row):
    return {k.split("#")[0]: v for k, v in row.get("maps", {}).items()}


def baseline_row(rows, ev):
    t_load = event_time(ev, "baseline") or float("inf")
    full = [r for r in rows if "maps" in r and "flows_active" in r and r["t"] < t_load]
    return full[-1] if full else None


def is_cache(name):
    return next((n for p, n in CACHE_MAPS.items() if name.startswith(p)), None)


def drain_check(rows, ev):
    """(ok, details) comparing the last full sample to the baseline."""
    base = baseline_row(rows, ev)
    full = [r for r in rows if "maps" in r and "flows_active" in r]
    if not base or not full:
        return False, {"error": "no samples"}
    last = full[-1]
    details = {"flows_active": [base["flows_active"], last["flows_active"]]}
    ok = base["flows_active"] == last["flows_active"]
    b, l = map_by_name(base), map_by_name(last)
    for name in sorted(set(b) | set(l)):
        before, after = b.get(name), l.get(name)
        cap = is_cache(name)
        good = (after is not None and after <= cap) if cap is not None else (before == after)
        details[name] = [before, after] + ([f"cache, at most {cap}"] if cap is not None else [])
        ok = ok and good
    return ok, details


def floods(out):
    path = os.path.join(out, "floods.log")
    return [json.loads(l) for l in open(path) if l.strip().startswith("{")] if os.path.exists(path) else []


def leftover_clients(out):
    """The client address of each flow the engine still held when the drain timed out (flows.txt,
    written by run.sh only then), or None without that dump."""
    path = os.path.join(out, "flows.txt")
    if not os.path.exists(path):
        return None
    clients = []
    for f in read_lines(path):
        if len(f) < 2 or not f[0].isdigit():
            continue
        host = f[1].rsplit(":", 1)[0].strip("[]")
        try:
            clients.append(ipaddress.ip_address(host))
        except ValueError:
            continue
    return clients


def chance_forgeries(out, base, last):
    """(n, forged ACKs sent) when what the drain left is exactly n <= CHANCE_FLOWS_ALLOWED flows
    whose clients lie in a flood's spoofed range and the map entries those flows own; None
    otherwise. The maps' names are those of the rows (map_by_name)."""
    clients = leftover_clients(out)
    fl = floods(out)
    ranges = {ipaddress.ip_network(f["spoof"]) for f in fl if f.get("spoof")}
    if not clients or len(clients) > CHANCE_FLOWS_ALLOWED:
        return None
    if not all(any(c in r for r in ranges) for c in clients):
        return None
    n = len(clients)
    if last["flows_active"] - base["flows_active"] != n:
        return None
    b, l = map_by_name(base), map_by_name(last)
    # A proxied flow owns one engine entry and up to one tc entry a direction; a proven source
    # joins the cache's bound.
    owned = {"sg_flows": (0, n), "sg_tc_flows": (0, 2 * n)}
    for name in set(b) | set(l):
        before, after = b.get(name) or 0, l.get(name) or 0
        cap = is_cache(name)
        if cap is not None:
            if after > cap + n:
                return None
        elif name in owned:
            lo, hi = owned[name]
            if not lo <= after - before <= hi:
                return None
        elif before != after:
            return None
    acks = sum(f.get("sent", 0) for f in fl if f.get("mode") in ("ack", "mixed"))
    return n, acks


def transfers(out):
    res = {}
    ab = read_lines(os.path.join(out, "ab.log"))
    res["per-request IPv4 (ab)"] = (sum(int(f[2]) for f in ab), sum(int(f[3]) for f in ab))
    c6 = read_lines(os.path.join(out, "curl6.log"))
    res["per-request IPv6 (curl)"] = (sum(f[2] == "ok" for f in c6), sum(f[2] != "ok" for f in c6))
    for fam in ("4", "6"):
        ka = [f for f in read_lines(os.path.join(out, f"keepalive{fam}.log")) if f[1] == "keepalive"]
        res[f"keep-alive IPv{fam}"] = (sum(f[2] == "ok" for f in ka), sum(f[2] == "fail" for f in ka))
    dl = read_lines(os.path.join(out, "downloads.log"))
    res["downloads (sha256)"] = (sum(f[3] == "ok" for f in dl), sum(f[3] != "ok" for f in dl))
    return res


def idle(out):
    lines = read_lines(os.path.join(out, "idle.log"))
    opened = next((int(f[3]) for f in lines if f[2] == "opened"), 0)
    done = next(((int(f[3]), int(f[4])) for f in lines if f[2] == "done"), None)
    ok = done[0] if done else 0
    return opened, ok


def lifetimes(rows, ev):
    """{pid: [rows under load]} for the load window."""
    t0, t1 = event_time(ev, "load start"), event_time(ev, "load end")
    by = {}
    for r in rows:
        if "pid" in r and t0 is not None and t1 is not None and t0 <= r["t"] <= t1:
            by.setdefault(r["pid"], []).append(r)
    return by


def flat(rows, key):
    """(growth, first, last) over the last two thirds of a lifetime's samples."""
    vals = [r[key] for r in rows if key in r]
    rest = vals[len(vals) // 3:]
    if len(rest) < 2 * WINDOW:
        return None
    first, last = statistics.median(rest[:WINDOW]), statistics.median(rest[-WINDOW:])
    return (last - first) / first if first else 0.0, first, last


def watchdog(out, ev, usec, rows):
    """Largest gap (s) per PID between READY=1/WATCHDOG=1 and the process's end."""
    pings = {}
    for f in read_lines(os.path.join(out, "notify.log")):
        if f[2] in ("READY=1", "WATCHDOG=1"):
            pings.setdefault(int(f[1]), []).append(float(f[0]))
    ends = {}
    for t, e in ev:
        if e.startswith("kill -9 pid "):
            ends[int(e.split()[-1])] = t
    t_end = event_time(ev, "end") or (rows[-1]["t"] if rows else 0)
    gaps = {}
    for pid, ts in pings.items():
        ts = sorted(ts) + [ends.get(pid, t_end)]
        gaps[pid] = max(b - a for a, b in zip(ts, ts[1:])) if len(ts) > 1 else 0.0
    started = [int(e.split()[-1]) for _, e in ev if e.startswith("started pid ")]
    missing = [p for p in started if p not in pings]
    return gaps, missing, usec / 1e6


def chart(out, rows, ev):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot or not rows:
        return None
    t0 = event_time(ev, "load start") or rows[0]["t"]
    dat = os.path.join(out, "soak.dat")
    workers = sorted({w for r in rows for w in r.get("packets_by_worker", {})})
    # Only maps with a count (a map whose dump failed throughout has no line to draw).
    maps = sorted({k for r in rows for k, v in map_by_name(r).items() if v is not None})
    prev = None
    with open(dat, "w") as f:
        f.write("# t rss_mb fds flows xdp_pps " + " ".join(f"pps_{w}" for w in workers) + " "
                + " ".join(f"map_{m}" for m in maps) + "\n")
        for r in rows:
            cols = [r["t"] - t0, r.get("rss_kb", float("nan")) / 1024 if "rss_kb" in r else "NaN",
                    r.get("fds", "NaN"), r.get("flows_active", "NaN")]
            pw = r.get("packets_by_worker", {})
            xdp = sum(r.get("xdp", {}).values()) + r.get("xdp_drops", 0) if "xdp" in r else None
            if prev and xdp is not None and prev[2] is not None and xdp >= prev[2] and r["t"] > prev[0]:
                cols.append((xdp - prev[2]) / (r["t"] - prev[0]))
            else:
                cols.append("NaN")
            for w in workers:
                if prev and w in pw and w in prev[1] and pw[w] >= prev[1][w] and r["t"] > prev[0]:
                    cols.append((pw[w] - prev[1][w]) / (r["t"] - prev[0]))
                else:
                    cols.append("NaN")
            mb = map_by_name(r)
            cols += [mb.get(m) if mb.get(m) is not None else "NaN" for m in maps]
            if pw:
                prev = (r["t"], pw, xdp)
            f.write(" ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cols) + "\n")
    # Client outcomes per second.
    cdat = os.path.join(out, "clients.dat")
    bins = {}
    def add(t, ok, n=1):
        b = bins.setdefault(int((t - t0) // CLIENT_BIN_S) * CLIENT_BIN_S, [0, 0])
        b[0 if ok else 1] += n
    for f in read_lines(os.path.join(out, "ab.log")):
        add(float(f[0]), True, int(f[2])); add(float(f[0]), False, int(f[3]))
    for f in read_lines(os.path.join(out, "curl6.log")):
        add(float(f[0]), f[2] == "ok")
    for fam in ("4", "6"):
        for f in read_lines(os.path.join(out, f"keepalive{fam}.log")):
            if f[2] in ("ok", "fail"):
                add(float(f[0]), f[2] == "ok")
    for f in read_lines(os.path.join(out, "downloads.log")):
        add(float(f[0]), f[3] == "ok")
    with open(cdat, "w") as f:
        f.write("# t ok fail\n")
        for t in sorted(bins):
            f.write(f"{t} {bins[t][0] / CLIENT_BIN_S:.1f} {bins[t][1]}\n")
    marks = []
    for t, e in ev:
        color = {"kill": "red", "reload": "gray50", "key": "dark-green"}.get(e.split()[0])
        if color:
            marks.append(f"set arrow from {t - t0:.1f}, graph 0 to {t - t0:.1f}, graph 1 nohead lc rgb '{color}' dt 3")
    marks = "\n".join(marks)
    terms = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True).stderr
    if "pngcairo" in terms:
        term, ext = "pngcairo size 1400,900 font 'sans,10'", "png"
    elif " png " in terms:
        term, ext = "png size 1400,900", "png"
    else:
        term, ext = "svg size 1400,900", "svg"
    target = os.path.join(out, f"soak.{ext}")
    n = 5
    pw = ", ".join([f"'{dat}' using 1:5 with lines lw 1.5 title 'XDP (all CPUs)'"]
                   + [f"'{dat}' using 1:{n + 1 + i} with lines lw 1.5 title 'NFQUEUE worker {w}'"
                      for i, w in enumerate(workers)])
    pm = ", ".join(f"'{dat}' using 1:{n + 1 + len(workers) + i} with lines lw 1.5 title '{m}'"
                   for i, m in enumerate(maps)) or "0 notitle"
    script = f"""
set terminal {term}
set output '{target}'
set multiplot layout 3,2 title 'syngate soak: {os.path.basename(out)} (red: kill -9, gray: SIGHUP, green: key rotation; t = 0 at load start)'
set termoption noenhanced
set grid
set key top left
set xlabel 's'
set xrange [*:*]
{marks}
set title "syngate's RSS (MB)"
plot '{dat}' using 1:2 with lines lw 2 title 'RSS'
set title 'open file descriptors'
plot '{dat}' using 1:3 with lines lw 2 title 'fds'
set title 'flows in the flow tables'
plot '{dat}' using 1:4 with lines lw 2 title 'flows_active'
set title 'BPF hash map entries'
plot {pm}
set title 'packets per second: XDP and each NFQUEUE worker (log scale)'
set logscale y
plot {pw}
unset logscale y
set title 'clients: requests and downloads that succeeded per second (5 s bins), failed (count per bin)'
set yrange [0:*]
plot '{cdat}' using 1:2 with steps lw 2 title 'succeeded/s', '{cdat}' using 1:3 with impulses lw 4 lc rgb 'red' title 'failed'
unset multiplot
"""
    run = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
    if run.returncode != 0:
        print("report.py: gnuplot failed, no plot:\n" + run.stderr[-2000:], file=sys.stderr)
        return None
    return target


def main():
    out = sys.argv[1]
    ev, rows = events(out), samples(out)
    if "--drained" in sys.argv:
        sys.exit(0 if drain_check(rows, ev)[0] else 1)
    usec = int(sys.argv[sys.argv.index("--watchdog-usec") + 1]) if "--watchdog-usec" in sys.argv else 10_000_000
    verdict = []  # (criterion, measured, limit, ok)

    tr = transfers(out)
    for name, (good, bad) in tr.items():
        verdict.append((f"transfers: {name}", f"{good} ok, {bad} failed/corrupt", "0 failed, >0 ok", bad == 0 and good > 0))
    opened, ok = idle(out)
    verdict.append(("idle connections, a line each way at the end", f"{ok} of {opened}", "all, >0", opened > 0 and ok == opened))

    lt = lifetimes(rows, ev)
    judged = 0
    for pid, rs in lt.items():
        span = rs[-1]["t"] - rs[0]["t"] if rs else 0
        if span < MIN_LIFETIME_S:
            continue
        for key, unit in (("rss_kb", "kB"), ("fds", "")):
            f = flat(rs, key)
            if f is None:
                continue
            judged += 1
            g, a, b = f
            verdict.append((f"{key} flat, pid {pid} ({span:.0f} s under load)", f"{a:.0f} -> {b:.0f} {unit} ({g * 100:+.1f}%)",
                            "< +5%", g < FLAT_LIMIT))
    if not judged:
        verdict.append(("rss/fds flat", "no lifetime of 60 s under load", "at least one", False))

    dok, details = drain_check(rows, ev)
    measured = "; ".join(f"{k} {v[0]} -> {v[1]}" + (f" ({v[2]})" if len(v) > 2 else "") for k, v in details.items())
    if not dok and "error" not in details:
        base = baseline_row(rows, ev)
        last = [r for r in rows if "maps" in r and "flows_active" in r][-1]
        chance = chance_forgeries(out, base, last)
        if chance:
            n, acks = chance
            dok = True
            measured += (f"; left: {n} flow(s) from a flood's spoofed range, a forged ACK that passed the cookie"
                         f" by chance ({acks} forged ACKs sent, counting mixed floods whole:"
                         f" {acks / 2 ** COOKIE_HASH_BITS:.3f} expected)")
    verdict.append(("tables and maps back to the baseline after the clients stop", measured,
                    f"equal (caches bounded; at most {CHANCE_FLOWS_ALLOWED} chance cookie pass from a flood)", dok))

    gaps, missing, limit = watchdog(out, ev, usec, rows)
    worst = max(gaps.values()) if gaps else float("inf")
    verdict.append(("watchdog: largest gap within a process", f"{worst:.2f} s over {len(gaps)} processes"
                    + (f"; no pings from {missing}" if missing else ""), f"< {limit:.0f} s", worst < limit and not missing))

    kills = sum(e.startswith("kill -9") for _, e in ev)
    reloads = sum(e.startswith("reload") for _, e in ev)
    rotations = sum(e.startswith("key rotation") for _, e in ev)
    flood_kinds = sorted({e[6:] for _, e in ev if e.startswith("flood ")})
    t0, t1 = event_time(ev, "load start"), event_time(ev, "load end")
    exceptions = max((r.get("exceptions", 0) for r in rows), default=0)
    faults = (f"{(t1 - t0) if t0 and t1 else 0:.0f} s under load; {kills} kill -9, {reloads} SIGHUP reloads, "
              f"{rotations} key rotation(s), {len(flood_kinds)} flood kinds: {', '.join(flood_kinds)}; "
              f"engine exceptions {exceptions:.0f}")
    verdict.append(("faults injected (every kind at least once)", faults, ">=1 each", kills >= 1 and reloads >= 2
                    and rotations >= 1 and len(flood_kinds) >= 10))

    passed = all(v[3] for v in verdict)
    plot = chart(out, rows, ev)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(f"# syngate soak {os.path.basename(out)}: {'PASS' if passed else 'FAIL'}\n\n")
        f.write("| criterion | measured | limit | result |\n|---|---|---|---|\n")
        for c, m, l, ok in verdict:
            f.write(f"| {c} | {m} | {l} | {'pass' if ok else 'FAIL'} |\n")
        if plot:
            f.write(f"\nPlot: {os.path.basename(plot)}\n")
    json.dump({"pass": passed, "criteria": [{"criterion": c, "measured": m, "limit": l, "pass": ok}
                                            for c, m, l, ok in verdict], "plot": plot},
              open(os.path.join(out, "summary.json"), "w"), indent=1)
    print(open(os.path.join(out, "table.md")).read())
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
