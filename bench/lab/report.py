#!/usr/bin/env python3
"""Collects the lab's per-point JSON files into report.json, table.md and a gnuplot chart.

Usage: report.py OUT_DIR   (the directory run.sh wrote: points/<mode>/<idx>.{flood,probe,gw}.json for the
SYN rate sweep; ack{4,6}.json, malformed{4,6}.tsv, mixed{4,6}.{flood,probe,gw}.json and connrate.tsv for
the other kinds)
       report.py --summary OUT LAYOUT_DIR...   (run.sh --layout both: OUT/summary.md, the layouts side
by side with syngate's ratios against kernel SYNPROXY measured in the same run)
"""
import json
import os
import shutil
import subprocess
import sys

MODE_ORDER = ["none", "syncookies", "synproxy", "synproxy-ts", "syngate", "syngate-notc", "syngate-nofwd", "syngate-nort", "syngate-nosynack", "syngate-noopen", "syngate-zw", "syngate-native",
              "syngate-generic", "syngate-nfqueue"]
CLEAN_PCT = 99.0  # a point is clean when at least this share of legitimate connections succeeded


def _coalescing(cfg):
    """The offcore receivers' interrupt coalescing, when a run asked for it (every mode alike)."""
    if cfg.get("layout") != "offcore":
        return ""
    ends, gw = cfg.get("napi_defer_us") or 0, cfg.get("gw_napi_defer_us", cfg.get("napi_defer_us")) or 0
    if not ends and not gw:
        return ""
    if ends == gw:
        return f" Offcore receivers coalescing: each holds off {ends} µs after a poll (--napi-defer-us; every mode alike)."
    return (f" Offcore receivers coalescing (every mode alike): gw's two hold off {gw} µs after a poll "
            f"(--gw-napi-defer-us), cli's and srv's {ends} µs (--napi-defer-us).")


def _per_core_table(report, modes, rows, figure, heading):
    """A table of median_gw_FIGURE / median_ends_FIGURE by mode for the rows that have it (none: no lines)."""
    def cell(m, r):
        t = report["modes"][m]["established"].get(r["test"], {})
        g, e = t.get("median_gw_" + figure), t.get("median_ends_" + figure)
        return None if g is None or e is None else f"{g:.0f} / {e:.0f}"
    have = [r for r in rows if any(cell(m, r) for m in modes)]
    if not have:
        return []
    lines = ["", heading, "", "| figure | " + " | ".join(EST_MODE_LABEL.get(m, m) for m in modes) + " |",
             "|---|" + "---:|" * len(modes)]
    for r in have:
        lines.append(f"| {r['test']} | " + " | ".join(cell(m, r) or "-" for m in modes) + " |")
    return lines


def load(path):
    with open(path) as f:
        return json.load(f)


def point(base, rate):
    """One probe-under-flood point (base.{flood,probe,gw}.json), or None if it was not run."""
    if not os.path.exists(base + ".probe.json"):
        return None
    flood = load(base + ".flood.json") if os.path.exists(base + ".flood.json") else {}
    probe = load(base + ".probe.json")
    gw = load(base + ".gw.json") if os.path.exists(base + ".gw.json") else {}
    return {
        "rate_requested": rate,
        "flood_pps": round(flood.get("pps", 0)),
        "flood_sent": flood.get("sent", 0),
        "success_pct": probe["success_pct"],
        "connect_ms": probe["connect_ms"],
        "first_byte_ms": probe["first_byte_ms"],
        "failures": probe["failures"],
        "failures_detail": probe["failures_detail"],
        "gateway": gw,
    }


def connrate_of(path):
    """ab runs (run, requests/s, complete, failed): the median run by rate."""
    runs = []
    for line in open(path):
        run, rps, done, failed = line.split()
        runs.append({"conn_per_s": float(rps), "complete": int(done), "failed": int(failed)})
    med = sorted(runs, key=lambda r: r["conn_per_s"])[(len(runs) - 1) // 2] if runs else None
    return {"runs": runs, "median_conn_per_s": med["conn_per_s"] if med else 0,
            "failed": sum(r["failed"] for r in runs), "complete": sum(r["complete"] for r in runs)}


def collect(out):
    config = load(os.path.join(out, "config.json"))
    rates = config["rates"].split()
    modes = {}
    points_dir = os.path.join(out, "points")
    names = sorted(os.listdir(points_dir), key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else 99, m))
    for mode in names:
        mdir = os.path.join(points_dir, mode)
        skipped = os.path.join(mdir, "skipped")
        if os.path.exists(skipped):
            modes[mode] = {"status": "skipped", "reason": open(skipped).read().strip(), "points": []}
            continue
        points = [p for p in (point(os.path.join(mdir, str(idx)), rate) for idx, rate in enumerate(rates)) if p]
        entry = {"status": "ok", "points": points}
        banner = os.path.join(mdir, "banner.probe.json")
        if os.path.exists(banner):
            b = load(banner)
            entry["banner_no_flood"] = {"success_pct": b["success_pct"], "first_byte_ms": b["first_byte_ms"],
                                        "failures_detail": b["failures_detail"]}
            srv = os.path.join(mdir, "banner.srv.json")
            if os.path.exists(srv):
                entry["banner_no_flood"]["srv_tsecr_rejected"] = load(srv)["srv_tsecr_rejected"]
        for family in ("4", "6"):
            fam = "ipv" + family
            ack = os.path.join(mdir, f"ack{family}.json")
            if os.path.exists(ack):
                entry.setdefault("forged_ack_download", {})[fam] = load(ack)
            mal = os.path.join(mdir, f"malformed{family}.tsv")
            if os.path.exists(mal):
                kinds = {}
                for line in open(mal):
                    kind, sent, reached, rc = line.split()
                    kinds[kind] = {"sent": int(sent), "reached_srv": int(reached), "synflood_exit": int(rc)}
                entry.setdefault("malformed", {})[fam] = kinds
            mixed = point(os.path.join(mdir, f"mixed{family}"), config.get("mixed_rate", 0))
            if mixed:
                entry.setdefault("mixed", {})[fam] = mixed
        connrate = os.path.join(mdir, "connrate.tsv")
        if os.path.exists(connrate):
            entry["connrate"] = connrate_of(connrate)
        est = est_collect(mdir)
        if est:
            entry["established"] = est
        modes[mode] = entry
    report = {"config": config, "modes": modes}
    est = est_summary(report)
    if est:
        report["established"] = est
    return report


def table(report):
    if not any(m["points"] for m in report["modes"].values()):
        return est_table(report) + kind_tables(report)
    lines = ["| mode | flood (SYN/s) | success % | connect p50 / p99 (ms) | first byte p99 (ms) | failures (timeout/rst/other) | gw CPU | gw RSS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for mode, m in report["modes"].items():
        if m["status"] != "ok":
            lines.append(f"| {mode} | skipped | | | | | | |")
            notes.append(f"- {mode} skipped: {m['reason']}")
            continue
        for p in m["points"]:
            f = p["failures"]
            gw = p["gateway"]
            if mode.startswith("syngate"):
                cpu = f"{gw.get('daemon_cpu_pct', 0):.0f}% (daemon)"
                rss = f"{gw.get('daemon_rss_kb', 0) / 1024:.1f} MB"
                if gw.get("xdp_syn_answered_per_s") or gw.get("nfqueue_cookies_sent_per_s"):
                    cpu += (f"; SYN-ACKs/s: {gw.get('xdp_syn_answered_per_s', 0)} XDP, "
                            f"{gw.get('nfqueue_cookies_sent_per_s', 0)} NFQUEUE")
            else:
                cpu = f"{gw.get('softirq_pct_of_machine', 0):.0f}% (softirq, all)"
                rss = f"{gw.get('gw_conntrack_entries', 0)} ct" if mode.startswith("synproxy") else "-"
            lines.append(
                f"| {mode} | {p['flood_pps']} | {p['success_pct']:.1f} | "
                f"{p['connect_ms']['p50']:.1f} / {p['connect_ms']['p99']:.1f} | {p['first_byte_ms']['p99']:.1f} | "
                f"{f['timeout']}/{f['refused_rst']}/{f['other']} | {cpu} | {rss} |")
        if "banner_no_flood" in m:
            notes.append(f"- {mode}: server-speaks-first service, no flood: "
                         f"{m['banner_no_flood']['success_pct']:.1f}% got the banner within 1 s")
    text = "## Spoofed SYN flood\n\n" + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    return text + kind_tables(report) + "\n".join(targets(report)) + ("\n\n" + est_table(report) if "established" in report else "")


def ok_modes(report, key):
    return [(mode, m[key]) for mode, m in report["modes"].items() if m["status"] == "ok" and key in m]


def mb_s(bps):
    return f"{bps / 1e6:.1f}"


# What the forged-ACK figures' two extra columns mean (run.sh's sink), under both tables that show them.
ACK_DECOMPOSITION = ("generator alone: the same flood, from the same CPU, into a sink inside atk (XDP drop) while "
                     "the download runs: what the attacker's CPU takes from the download, no defence at work (on "
                     "these CPUs the generator takes CPU a fast download would use); the defence's own ratio: the "
                     "download under the real flood over the download beside the generator alone.")


def kind_tables(report):
    out = []
    acks = ok_modes(report, "forged_ack_download")
    if acks:
        out += ["", "## Forged-ACK flood during a download", "",
                "| mode | IP | alone (MB/s) | under flood (MB/s) | ratio | generator alone (MB/s) | defence's own ratio | intact | flood (ACK/s) | forged ACKs at srv | new connections during the flood |",
                "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for mode, fams in acks:
            for fam, a in sorted(fams.items()):
                intact = "yes" if a["flood"]["intact"] and a["no_flood"]["intact"] else "NO"
                nc = a.get("new_connections")
                ncs = f"{nc['success_pct']:.1f}% (p99 {nc['connect_ms']['p99']:.1f} ms)" if nc else "-"
                gen = mb_s(a["generator_alone"]["bytes_per_s"]) if "generator_alone" in a else "-"
                own = f"{a['defence_ratio']:.2f}" if "defence_ratio" in a else "-"
                out.append(f"| {mode} | {fam} | {mb_s(a['no_flood']['bytes_per_s'])} | {mb_s(a['flood']['bytes_per_s'])} | "
                           f"{a['speed_ratio']:.2f} | {gen} | {own} | {intact} | {a['flood_pps']} | {a['forged_acks_at_srv']} | {ncs} |")
        if any("defence_ratio" in a for _, fams in acks for a in fams.values()):
            out += ["", ACK_DECOMPOSITION[0].upper() + ACK_DECOMPOSITION[1:]]
    mals = ok_modes(report, "malformed")
    if mals:
        kinds = []
        for _, fams in mals:
            for k in fams.values():
                kinds += [x for x in k if x not in kinds]
        head = [f"{mode} v{fam[-1]}" for mode, fams in mals for fam in sorted(fams)]
        out += ["", "## Malformed-SYN flood: spoofed packets that reached srv (of those sent)", "",
                "| kind | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
        for kind in kinds:
            cells = []
            for _, fams in mals:
                for fam in sorted(fams):
                    k = fams[fam].get(kind)
                    cells.append(f"{k['reached_srv']} / {k['sent']}" if k else "-")
            out.append(f"| {kind} | " + " | ".join(cells) + " |")
    mixed = ok_modes(report, "mixed")
    if mixed:
        out += ["", "## Mixed SYN/ACK/RST/FIN flood", "",
                "| mode | IP | flood (pkt/s) | success % | connect p50 / p99 (ms) | failures (timeout/rst/other) |",
                "|---|---|---:|---:|---:|---:|"]
        for mode, fams in mixed:
            for fam, p in sorted(fams.items()):
                f = p["failures"]
                out.append(f"| {mode} | {fam} | {p['flood_pps']} | {p['success_pct']:.1f} | "
                           f"{p['connect_ms']['p50']:.1f} / {p['connect_ms']['p99']:.1f} | "
                           f"{f['timeout']}/{f['refused_rst']}/{f['other']} |")
    rates = ok_modes(report, "connrate")
    if rates:
        out += ["", "## New connections per second (ab, a connection per request, no flood)", "",
                "| mode | conn/s (median of runs) | runs | failed |", "|---|---:|---|---:|"]
        for mode, c in rates:
            runs = ", ".join(f"{r['conn_per_s']:.0f}" for r in c["runs"])
            out.append(f"| {mode} | {c['median_conn_per_s']:.0f} | {runs} | {c['failed']} |")
    return "\n".join(out) + ("\n" if out else "")


def sweep(report, mode):
    m = report["modes"].get(mode)
    if not m or m["status"] != "ok" or not m["points"]:
        return None
    return m["points"]


def top(points):
    """The point of the highest flood rate reached."""
    return max(points, key=lambda p: p["flood_pps"])


def quiet_p99(points):
    """Connect p99 of the no-flood point, or None when there is none or nothing connected."""
    q = points[0]
    return q["connect_ms"]["p99"] if q["rate_requested"] == "0" and q["connect_ms"]["count"] else None


def capacity(points):
    """(highest flood rate reached before the first point under CLEAN_PCT, clean at every rate)."""
    best, clean = 0, True
    for p in sorted(points, key=lambda p: p["flood_pps"]):
        if p["success_pct"] < CLEAN_PCT:
            clean = False
            break
        best = p["flood_pps"]
    return best, clean


def targets(report, against="synproxy"):
    """syngate's standing against the kernel's SYNPROXY measured in the same run, as markdown."""
    layout = report["config"].get("layout", "shared")
    base = sweep(report, against)
    lines = []
    for mode in ("syngate", "syngate-native", "syngate-generic", "syngate-nfqueue"):
        pts = sweep(report, mode)
        if not pts or not base:
            continue
        lines += ["", f"## {mode} against kernel {against} ({layout} layout, same run)", ""]
        cap, clean = capacity(pts)
        bcap, bclean = capacity(base)
        peak, bpeak = top(pts), top(base)
        lines.append(f"- capacity (highest flood rate with >= {CLEAN_PCT:g}% served, every lower rate too): "
                     f"{mode} {cap} SYN/s{' (clean at every rate)' if clean else ''}, {against} {bcap} SYN/s"
                     f"{' (clean at every rate)' if bclean else ''}"
                     + (f", ratio {cap / bcap:.2f}" if bcap else ""))
        lines.append(f"- at the highest rate: {mode} served {peak['success_pct']:.1f}% under {peak['flood_pps']} SYN/s, "
                     f"{against} {bpeak['success_pct']:.1f}% under {bpeak['flood_pps']} SYN/s")
        by_rate = {p["rate_requested"]: p for p in base}
        worse = [p["rate_requested"] for p in pts if p["rate_requested"] in by_rate
                 and p["success_pct"] < by_rate[p["rate_requested"]]["success_pct"]]
        lines.append(f"- rates where {mode} served fewer than {against}: " + (", ".join(worse) if worse else "none"))
        p99, bp99 = quiet_p99(pts), quiet_p99(base)
        if p99 is not None and bp99 is not None:
            lines.append(f"- connect p99 with no flood: {mode} {p99:.2f} ms, {against} {bp99:.2f} ms "
                         f"(difference {p99 - bp99:+.2f} ms)")
        m, b = report["modes"][mode], report["modes"][against]
        for fam, a in sorted(m.get("forged_ack_download", {}).items()):
            ba = b.get("forged_ack_download", {}).get(fam)
            if not ba:
                continue
            share = a["speed_ratio"] / ba["speed_ratio"] if ba["speed_ratio"] > 0 else 0
            nc = a.get("new_connections", {})
            lines.append(f"- forged-ACK flood {fam}: the download keeps {a['speed_ratio']:.2f} of its speed through {mode} "
                         f"({a['flood_pps']} ACK/s), {ba['speed_ratio']:.2f} through {against} ({ba['flood_pps']} ACK/s): "
                         f"{share:.2f} of {against}'s share; new connections during the flood "
                         f"{nc.get('success_pct', 0):.1f}%")
        if "connrate" in m and "connrate" in b and b["connrate"]["median_conn_per_s"]:
            c, bc = m["connrate"]["median_conn_per_s"], b["connrate"]["median_conn_per_s"]
            kernel = report["modes"].get("none", {}).get("connrate", {}).get("median_conn_per_s")
            lines.append(f"- new connections per second: {mode} {c:.0f}, {against} {bc:.0f} (ratio {c / bc:.2f})"
                         + (f", no defence {kernel:.0f} (ratio {c / kernel:.2f})" if kernel else ""))
    return lines


def summary(out, layout_dirs):
    parts = ["# syngate lab: both layouts", ""]
    for d in layout_dirs:
        path = os.path.join(d, "report.json")
        if not os.path.exists(path):
            parts.append(f"- {d}: no report (the run failed; see its log)")
            continue
        report = load(path)
        layout = report["config"].get("layout", os.path.basename(d))
        parts += [f"## Layout: {layout}", "", f"Full tables: {os.path.join(d, 'table.md')}", ""]
        if "established" in report:
            parts += [est_table(report), ""]
        if not any(m["points"] for m in report["modes"].values()):
            continue
        rows = ["| mode | capacity (SYN/s, >= 99% served) | clean at every rate | highest rate | served there | connect p99 no flood (ms) | conn/s |",
                "|---|---:|---|---:|---:|---:|---:|"]
        for mode, m in report["modes"].items():
            if m["status"] != "ok" or not m["points"]:
                rows.append(f"| {mode} | {m['status']} | | | | | |")
                continue
            cap, clean = capacity(m["points"])
            peak, p99 = top(m["points"]), quiet_p99(m["points"])
            cr = m.get("connrate", {}).get("median_conn_per_s")
            rows.append(f"| {mode} | {cap} | {'yes' if clean else 'no'} | {peak['flood_pps']} | {peak['success_pct']:.1f}% | "
                        f"{f'{p99:.2f}' if p99 is not None else '-'} | {f'{cr:.0f}' if cr else '-'} |")
        parts += rows + targets(report) + [""]
    text = "\n".join(parts) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text)


def chart(report, out):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("report.py: gnuplot not found, no chart (apt-get install gnuplot-nox)", file=sys.stderr)
        return None
    series = []
    for mode, m in report["modes"].items():
        if m["status"] != "ok" or not m["points"]:
            continue
        path = os.path.join(out, f"chart-{mode}.dat")
        with open(path, "w") as f:
            f.write("# flood_kpps success_pct connect_p99_ms\n")
            for p in sorted(m["points"], key=lambda p: p["flood_pps"]):
                # Failed connections have no latency; show the deadline so a collapse stays visible.
                p99 = p["connect_ms"]["p99"] if p["connect_ms"]["count"] else report["config"]["probe_timeout_ms"]
                f.write(f"{p['flood_pps'] / 1000:.1f} {p['success_pct']:.2f} {p99:.2f}\n")
        series.append((mode, path))
    terms = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True).stderr
    if "pngcairo" in terms:
        term, ext = "pngcairo size 1100,480 font 'sans,10'", "png"
    elif " png " in terms:
        term, ext = "png size 1100,480", "png"
    else:
        term, ext = "svg size 1100,480", "svg"
    kinds_chart(report, out, gnuplot, term, ext)
    if not series:
        return None
    target = os.path.join(out, f"chart.{ext}")
    plot1 = ", ".join(f"'{p}' using 1:2 with linespoints lw 2 title '{m}'" for m, p in series)
    plot2 = ", ".join(f"'{p}' using 1:3 with linespoints lw 2 title '{m}'" for m, p in series)
    script = f"""
set terminal {term}
set output '{target}'
set multiplot layout 1,2 title 'syngate lab: legitimate HTTP clients under a spoofed SYN flood'
set grid
set key bottom left
set xlabel 'flood rate achieved (kSYN/s)'
set ylabel 'legitimate connections that succeeded (%)'
set yrange [0:105]
plot {plot1}
set key top left
set ylabel 'connect latency p99 (ms, log scale)'
set logscale y
set yrange [*:*]
plot {plot2}
unset multiplot
"""
    subprocess.run([gnuplot], input=script, text=True, check=True)
    return target


def kinds_chart(report, out, gnuplot, term, ext):
    """One bar panel per extra attack kind, IPv4 and IPv6 side by side for each mode."""
    rows = []
    for mode, m in report["modes"].items():
        if m["status"] != "ok":
            continue
        row = [mode]
        for fam in ("ipv4", "ipv6"):
            a = m.get("forged_ack_download", {}).get(fam)
            row.append(f"{a['speed_ratio']:.3f}" if a else "?")
        for fam in ("ipv4", "ipv6"):
            p = m.get("mixed", {}).get(fam)
            row.append(f"{p['success_pct']:.2f}" if p else "?")
        for fam in ("ipv4", "ipv6"):
            kinds = m.get("malformed", {}).get(fam)
            sent = sum(k["sent"] for k in kinds.values()) if kinds else 0
            row.append(f"{100.0 * sum(k['reached_srv'] for k in kinds.values()) / sent:.2f}" if sent else "?")
        if any(c != "?" for c in row[1:]):
            rows.append(row)
    if not rows:
        return None
    dat = os.path.join(out, "chart-kinds.dat")
    with open(dat, "w") as f:
        f.write("# mode ack_ratio_v4 ack_ratio_v6 mixed_success_v4 mixed_success_v6 malformed_reached_pct_v4 v6\n")
        for r in rows:
            f.write(" ".join(r) + "\n")
    target = os.path.join(out, f"chart-kinds.{ext}")
    panels = [(2, "download speed under forged-ACK flood / alone", "[0:*]"),
              (4, "legitimate connections during mixed flood (%)", "[0:105]"),
              (6, "malformed SYNs that reached srv (% of sent)", "[0:105]")]
    # A panel whose kind did not run in any mode has no points: gnuplot refuses to draw it.
    panels = [p for p in panels if any(r[p[0] - 1] != "?" or r[p[0]] != "?" for r in rows)]
    plots = []
    for col, title, yr in panels:
        plots.append(f"set title '{title}'\nset yrange {yr}\n"
                     f"plot '{dat}' using {col}:xtic(1) title 'IPv4', '' using {col + 1} title 'IPv6'")
    script = f"""
set terminal {term.replace('1100,480', '1300,420')}
set output '{target}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
set xtics rotate by -30
set key below
set multiplot layout 1,{len(panels)} title 'syngate lab: the other attack kinds, per mode'
{chr(10).join(plots)}
unset multiplot
"""
    subprocess.run([gnuplot], input=script, text=True, check=True)
    return target


# ---------------------------------------------------------------------------------------------
# The established kind: points/<mode>/est/<repeat>/<test>.{out,err,win,m0,m1} and ack.json.

EST_TESTS = [  # (test, row label, unit, scale of the figure for the table)
    ("iperf-down", "iperf3, one stream, srv to cli", "Gbit/s", 1e9),
    ("iperf-paced", "iperf3, one stream, srv to cli, paced (--paced-gbit): compare the gateway core", "Gbit/s", 1e9),
    ("iperf-up4", "iperf3, four streams, cli to srv", "Gbit/s", 1e9),
    ("wrk", "wrk, 50 keep-alive connections", "req/s", 1),
    ("ab", "ab, a connection per request", "conn/s", 1),
    ("redis", "redis-benchmark -k 0 (GET, a connection per request)", "req/s", 1),
    ("loss", "iperf3, one stream srv to cli, 1% of its segments lost after the gateway", "Gbit/s", 1e9),
    ("ack", "20 MB download under a forged-ACK flood (rate below), share of its no-flood speed", "share", 1),
    ("iperf-down-v6", "IPv6: iperf3, one stream, srv to cli", "Gbit/s", 1e9),
    ("iperf-up4-v6", "IPv6: iperf3, four streams, cli to srv", "Gbit/s", 1e9),
    ("wrk-v6", "IPv6: wrk, 50 keep-alive connections", "req/s", 1),
    ("ab-v6", "IPv6: ab, a connection per request", "conn/s", 1),
    ("ack-v6", "IPv6: 20 MB download under a forged-ACK flood (rate below), share of its no-flood speed", "share", 1),
]
FLOOD_TESTS = ("ack", "ack-v6")  # shares of a download's speed, not a traffic figure
# A connection per request: their CPU is also given per connection (the core's busy share over the
# figure's rate), which the lab's spread of rates moves far less than the rates themselves.
PER_CONN_TESTS = ("ab", "ab-v6", "redis")
# Figures counted in requests or connections, whose wake-up interrupts are reported per thousand.
PER_UNIT_TESTS = ("wrk", "wrk-v6") + PER_CONN_TESTS
EST_MODE_LABEL = {"none": "no gateway", "synproxy": "kernel SYNPROXY", "syngate": "syngate (kernel_path auto)",
                  "syngate-notc": "syngate, kernel_path off", "syngate-nofwd": "syngate, tc_forward off",
                  "syngate-nort": "syngate, flow workers not real-time", "syngate-nosynack": "syngate, tc_handshake off",
                  "syngate-noopen": "syngate, tc_open_flows off",
                  "syngate-zw": "syngate, synack_window 0",
                  "syngate-nfqueue": "syngate, [xdp] off",
                  "syngate-generic": "syngate, generic XDP"}


def _read(path):
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def _busy_pct(busy0, total0, busy1, total1, wall, hz):
    """A core's busy share of a window: all but its idle time (/proc/stat's idle and iowait), which
    a tickless kernel measures exactly at each idle entry and exit. The busy fields are sampled
    by the timer tick instead, and work that comes in bursts shorter than a tick, in step with it
    (a paced sender's timer), is missed or counted whole: a download paced at 4 Gbit/s read 0.5 %
    busy by the ticks where the idle time said 11 %, and 4 % where it said 31 %."""
    idle = (int(total1) - int(total0)) - (int(busy1) - int(busy0))
    ticks = wall * int(hz)
    return round(max(0.0, 100.0 * (1.0 - idle / ticks)), 1) if ticks > 0 else 0


def est_figure(test, out, rc):
    """(figure, error or None) from a tool's own output; a run that failed counts 0."""
    test = test.removesuffix("-v6")  # the IPv6 figures' tools print as the IPv4 ones'
    if test in ("iperf-down", "iperf-paced", "iperf-up4", "loss"):
        try:
            j = json.loads(out)
        except ValueError:
            return 0.0, f"iperf3 printed no JSON (exit {rc})"
        if j.get("error"):
            return 0.0, "iperf3: " + j["error"]
        end = j.get("end", {})
        bps = end.get("sum_received", {}).get("bits_per_second", 0.0)
        retr = end.get("sum_sent", {}).get("retransmits")
        return bps, None if bps else "iperf3 received nothing" if retr is None else None
    if test == "wrk":
        rps, errs = 0.0, []
        for line in out.splitlines():
            f = line.split()
            if line.startswith("Requests/sec:"):
                rps = float(f[1])
            elif "Socket errors" in line or "Non-2xx" in line:
                errs.append(line.strip())
        return rps, ("; ".join(errs) or None) if rps else f"wrk: no rate (exit {rc}) {'; '.join(errs)}"
    if test == "ab":
        rps = complete = failed = 0
        for line in out.splitlines():
            f = line.split()
            if line.startswith("Requests per second:"):
                rps = float(f[3])
            elif line.startswith("Complete requests:"):
                complete = int(f[2])
            elif line.startswith("Failed requests:"):
                failed = int(f[2])
        err = None
        if rc != 0 or failed or not rps:
            err = f"ab: exit {rc}, {complete} complete, {failed} failed" + (" (stalled: stopped at its deadline)" if rc in (124, 130) else "")
        return (rps if rc == 0 else 0.0), err
    if test == "redis":
        for line in out.splitlines():
            f = [x.strip('"') for x in line.split(",")]
            if len(f) > 1 and f[0] != "test":
                try:
                    return float(f[1]), (None if rc == 0 else f"redis-benchmark exit {rc}")
                except ValueError:
                    pass
        return 0.0, f"redis-benchmark: no result (exit {rc})" + (" (stalled: stopped at its deadline)" if rc == 124 else "")
    raise ValueError(test)


def _metrics(path):
    """Prometheus text -> {name or name{outcome}: value}, summed over the other labels."""
    out = {}
    for line in _read(path).splitlines():
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            continue
        name, labels = parts[0], ""
        if "{" in name:
            name, labels = name.split("{", 1)
        outcome = ""
        for lab in labels.rstrip("}").split(","):
            if lab.startswith("outcome="):
                outcome = lab.split("=", 1)[1].strip('"')
        key = f"{name}{{{outcome}}}" if outcome else name
        try:
            out[key] = out.get(key, 0) + float(parts[1])
        except ValueError:
            pass
    return out


EST_COUNTERS = {  # what each path did during a measurement (deltas)
    "tc_translated": "syngate_tc_packets_total{translated}",
    "tc_punted": "syngate_tc_packets_total{punted}",
    "tc_already_marked": "syngate_tc_packets_total{already_marked}",
    "tc_miss": "syngate_tc_packets_total{miss}",
    "tc_flows_handed_over": "syngate_tc_flows_handed_over_total",
    "tc_synacks_answered": "syngate_kernel_handshakes_total",
    "tc_handshakes_punted": "syngate_tc_packets_total{handshake_punted}",
    "tc_flows_opened": "syngate_tc_packets_total{opened}",
    "tc_opens_punted": "syngate_tc_packets_total{open_punted}",
    "tc_flow_write_failures": "syngate_tc_flow_write_failures_total",
    "tc_early_kept": "syngate_tc_packets_total{early_stored}",
    "tc_early_sent": "syngate_tc_packets_total{early_sent}",
    "tc_early_to_engine": "syngate_tc_packets_total{early_to_engine}",
    "tc_early_refused": "syngate_tc_packets_total{early_refused}",
    "engine_translated": "syngate_translated_total",
    "nfqueue_packets": "syngate_packets_total",
}


def est_point(d, test):
    """One measurement of one repeat, or None if it was not run."""
    if test in FLOOD_TESTS:
        path = os.path.join(d, test + ".json")
        if not os.path.exists(path):
            return None
        a = load(path)
        intact = a["flood"]["intact"] and a["no_flood"]["intact"]
        p = {"value": a["speed_ratio"], "error": None if intact else "a download arrived corrupt or incomplete",
             "no_flood_bytes_per_s": a["no_flood"]["bytes_per_s"], "flood_bytes_per_s": a["flood"]["bytes_per_s"],
             "flood_pps": a["flood_pps"]}
        for k in ("generator_ratio", "defence_ratio"):
            if k in a:
                p[k] = a[k]
        return p
    win = os.path.join(d, test + ".win")
    if not os.path.exists(win):
        return None
    t0, t1, b0, tot0, sq0, b1, tot1, sq1, d0, d1, hz, rc = _read(win).split()
    value, err = est_figure(test, _read(os.path.join(d, test + ".out")), int(rc))
    wall, dtot = float(t1) - float(t0), int(tot1) - int(tot0)
    p = {"value": value, "error": err, "window_s": round(wall, 2),
         "gw_core_busy_pct": _busy_pct(b0, tot0, b1, tot1, wall, hz),
         "gw_core_softirq_pct": round(100.0 * (int(sq1) - int(sq0)) / dtot, 1) if dtot > 0 else 0,
         "daemon_cpu_pct": round(100.0 * (float(d1) - float(d0)) / int(hz) / wall, 1) if wall > 0 else 0}
    per_conn = test in PER_CONN_TESTS and value > 0

    def us_per_conn(busy_pct):  # a core's busy share over the figure's rate
        return round(busy_pct * 1e4 / value, 1)
    if per_conn:
        p["gw_core_us_per_conn"] = us_per_conn(p["gw_core_busy_pct"])
        p["daemon_us_per_conn"] = us_per_conn(p["daemon_cpu_pct"])
    ends = _read(os.path.join(d, test + ".ends")).split()
    if len(ends) == 6 and int(ends[4]) > int(ends[1]):
        p["ends_core_busy_pct"] = _busy_pct(ends[0], ends[1], ends[3], ends[4], wall, hz)
        if per_conn:
            p["ends_us_per_conn"] = us_per_conn(p["ends_core_busy_pct"])
    ipi = _read(os.path.join(d, test + ".ipi")).split()
    if len(ipi) in (8, 12) and test in PER_UNIT_TESTS and value > 0 and wall > 0:
        # Per thousand requests (wrk) or connections (ab, redis): the figure's rate over its window.
        # Before and after: four IPI counts each, then (since session 31) each core's idle entries.
        units = value * wall / 1000.0
        half = len(ipi) // 2
        a, b = [int(x) for x in ipi[:half]], [int(x) for x in ipi[half:]]
        p["gw_ipi_per_k"] = round((b[0] - a[0] + b[1] - a[1]) / units, 1)
        p["ends_ipi_per_k"] = round((b[2] - a[2] + b[3] - a[3]) / units, 1)
        if half == 6 and b[4] > a[4]:
            p["gw_idle_per_k"] = round((b[4] - a[4]) / units, 1)
            p["ends_idle_per_k"] = round((b[5] - a[5]) / units, 1)
    m0, m1 = _metrics(os.path.join(d, test + ".m0")), _metrics(os.path.join(d, test + ".m1"))
    kv = [dict(x.split("=", 1) for x in _read(os.path.join(d, test + suffix)).split()) for suffix in (".srv0", ".srv1")]
    if kv[1]:
        p["srv_tcp"] = {k: int(v) - int(kv[0].get(k, 0)) for k, v in kv[1].items()}
    inv = _read(os.path.join(d, test + ".invalid")).split()
    if len(inv) == 2:
        p["gw_invalid_dropped"] = int(inv[1]) - int(inv[0])
    dropped = _read(os.path.join(d, test + ".dropped")).strip()
    if dropped.isdigit():
        p["segments_dropped"] = int(dropped)
    if m1:
        p["counters"] = {k: int(m1.get(name, 0) - m0.get(name, 0)) for k, name in EST_COUNTERS.items()}
    return p


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2) if n else None


def est_collect(mdir):
    """{test: {runs, median, failed_runs, median gw core busy, median counters}} for one mode."""
    edir = os.path.join(mdir, "est")
    if not os.path.isdir(edir):
        return None
    reps = sorted((r for r in os.listdir(edir) if r.isdigit()), key=int)
    result = {"repeats": len(reps), "skipped": [r for r in reps if os.path.exists(os.path.join(edir, r, "skipped"))]}
    for test, *_ in EST_TESTS:
        runs = [dict(p, repeat=int(r)) for r, p in ((r, est_point(os.path.join(edir, r), test)) for r in reps) if p]
        if not runs:
            continue
        t = {"runs": runs, "median": _median([p["value"] for p in runs]),
             "failed_runs": sum(1 for p in runs if p["error"]),
             "errors": sorted({p["error"] for p in runs if p["error"]})}
        if any("srv_tcp" in p for p in runs):
            keys = sorted({k for p in runs for k in p.get("srv_tcp", {})})
            t["median_srv_tcp"] = {k: _median([p.get("srv_tcp", {}).get(k, 0) for p in runs]) for k in keys}
        if any(p.get("gw_invalid_dropped") for p in runs):
            t["median_gw_invalid_dropped"] = _median([p.get("gw_invalid_dropped", 0) for p in runs])
        for k in ("flood_bytes_per_s", "no_flood_bytes_per_s", "generator_ratio", "defence_ratio"):
            if all(k in p for p in runs):
                t["median_" + k] = _median([p[k] for p in runs])
        if "gw_core_busy_pct" in runs[0]:
            t["median_gw_core_busy_pct"] = _median([p["gw_core_busy_pct"] for p in runs])
            t["median_daemon_cpu_pct"] = _median([p["daemon_cpu_pct"] for p in runs])
        for k in ("gw_core_us_per_conn", "daemon_us_per_conn", "ends_us_per_conn", "gw_ipi_per_k", "ends_ipi_per_k",
                  "gw_idle_per_k", "ends_idle_per_k"):
            if any(k in p for p in runs):
                t["median_" + k] = _median([p[k] for p in runs if k in p])
        if all("ends_core_busy_pct" in p for p in runs):
            t["median_ends_core_busy_pct"] = _median([p["ends_core_busy_pct"] for p in runs])
        if any("counters" in p for p in runs):
            t["median_counters"] = {k: _median([p.get("counters", {}).get(k, 0) for p in runs]) for k in EST_COUNTERS}
        result[test] = t
    return result


def est_summary(report):
    """Medians side by side and the ratios against kernel SYNPROXY (and plain forwarding)."""
    modes = {m: e["established"] for m, e in report["modes"].items() if e.get("established")}
    if not modes:
        return None
    rows = []
    for test, label, unit, scale in EST_TESTS:
        row = {"test": test, "label": label, "unit": unit, "median": {}, "failed_runs": {}, "runs": {}}
        for mode, e in modes.items():
            if test in e:
                row["median"][mode] = e[test]["median"]
                row["failed_runs"][mode] = e[test]["failed_runs"]
                row["runs"][mode] = len(e[test]["runs"])
        if not row["median"]:
            continue
        base, plain = row["median"].get("synproxy"), row["median"].get("none")
        row["ratio_to_synproxy"] = {m: v / base for m, v in row["median"].items() if base and m != "synproxy"}
        row["ratio_to_none"] = {m: v / plain for m, v in row["median"].items() if plain and m != "none"}
        # The same ratio taken within each repeat (the modes ran minutes apart, not hours), then
        # its median: less exposed to the machine's load drifting between repeats.
        if "synproxy" in modes and test in modes["synproxy"]:
            base_by = {p["repeat"]: p["value"] for p in modes["synproxy"][test]["runs"]}
            row["paired_ratio_to_synproxy"] = {
                m: _median([p["value"] / base_by[p["repeat"]] for p in e[test]["runs"] if base_by.get(p["repeat"])])
                for m, e in modes.items() if m != "synproxy" and test in e
                and any(base_by.get(p["repeat"]) for p in e[test]["runs"])}
        rows.append(row)
    return {"modes": list(modes), "rows": rows}


def _fmt(v, unit, scale):
    if v is None:
        return "-"
    if unit == "share":
        return f"{100 * v:.0f}%"
    v /= scale
    return f"{v:.2f}" if unit == "Gbit/s" else f"{v / 1000:.1f}k" if v >= 10000 else f"{v:.0f}"


def est_table(report):
    s = report.get("established")
    if not s:
        return ""
    cfg = report["config"]
    modes = s["modes"]
    scale = {t: sc for t, _, _, sc in EST_TESTS}
    ratio_modes = [m for m in modes if m != "synproxy"]
    head = ["figure (median of runs)"] + [EST_MODE_LABEL.get(m, m) for m in modes] + \
           [f"{EST_MODE_LABEL.get(m, m)} / SYNPROXY (median of each repeat's)" for m in ratio_modes if m != "none"] + \
           [f"{EST_MODE_LABEL.get(m, m)} / no gateway" for m in modes if m.startswith("syngate")]
    lines = [f"## Established flows ({cfg.get('layout', 'shared')} layout, {cfg.get('repeats')} repeat(s), "
             f"modes interleaved in each)", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in s["rows"]:
        cells = [f"{r['label']} ({r['unit']})"]
        for m in modes:
            v = r["median"].get(m)
            c = _fmt(v, r["unit"], scale[r["test"]])
            if r["failed_runs"].get(m):
                c += f" ({r['failed_runs'][m]}/{r['runs'][m]} runs failed)"
            cells.append(c)
        paired = r.get("paired_ratio_to_synproxy", {})
        cells += [(f"{r['ratio_to_synproxy'][m]:.2f}" if m in r["ratio_to_synproxy"] else "-")
                  + (f" ({paired[m]:.2f})" if paired.get(m) is not None else "") for m in ratio_modes if m != "none"]
        cells += [f"{r['ratio_to_none'][m]:.2f}" if m in r["ratio_to_none"] else "-" for m in modes if m.startswith("syngate")]
        lines.append("| " + " | ".join(cells) + " |")
    flood_rows = [r for r in s["rows"] if r["test"] in FLOOD_TESTS]
    if any("median_defence_ratio" in report["modes"][m]["established"].get(r["test"], {}) for r in flood_rows for m in modes):
        lines += ["", "The forged-ACK shares taken apart (medians of runs): MB/s alone and under the flood, the share "
                  "the generator alone leaves and the defence's own ratio; " + ACK_DECOMPOSITION, "",
                  "| figure | mode | alone (MB/s) | under flood (MB/s) | share | generator alone leaves | defence's own ratio |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in flood_rows:
            for m in modes:
                t = report["modes"][m]["established"].get(r["test"], {})
                if "median_defence_ratio" not in t:
                    continue
                lines.append(f"| {r['test']} | {EST_MODE_LABEL.get(m, m)} | {mb_s(t['median_no_flood_bytes_per_s'])} | "
                             f"{mb_s(t['median_flood_bytes_per_s'])} | {100 * t['median']:.0f}% | "
                             f"{100 * t['median_generator_ratio']:.0f}% | {t['median_defence_ratio']:.2f} |")
    # Where the gateway's work went: its core's busy share and, for syngate, each path's segments.
    # In the shared layout every client and server may run on the gateway's core: no cost to read.
    busy_rows = [r for r in s["rows"] if r["test"] not in FLOOD_TESTS] if cfg.get("layout") == "offcore" else []
    if busy_rows:
        lines += ["", f"Gateway core (CPU {cfg.get('syngate_cpu')}, syngate's) busy during each figure, median % "
                  "(softirq, syngate and anything else on it: no lab process, but other users of the machine):", "",
                  "| figure | " + " | ".join(EST_MODE_LABEL.get(m, m) for m in modes) + " |", "|---|" + "---:|" * len(modes)]
    for r in busy_rows:
        cells = []
        for m in modes:
            t = report["modes"][m]["established"].get(r["test"], {})
            b = t.get("median_gw_core_busy_pct")
            cells.append("-" if b is None else f"{b:.0f}" + (f" (daemon {t['median_daemon_cpu_pct']:.0f})"
                                                             if m.startswith("syngate") else ""))
        lines.append(f"| {r['test']} | " + " | ".join(cells) + " |")
    ends_rows = [r for r in busy_rows if any("median_ends_core_busy_pct" in report["modes"][m]["established"].get(r["test"], {})
                                             for m in modes)]
    if ends_rows:
        lines += ["", f"Clients' and servers' core (CPU {cfg.get('flood_cpu')}) busy during each figure, median %: "
                  "near 100, the figure is bound by the ends, not by the gateway:", "",
                  "| figure | " + " | ".join(EST_MODE_LABEL.get(m, m) for m in modes) + " |", "|---|" + "---:|" * len(modes)]
    for r in ends_rows:
        cells = [report["modes"][m]["established"].get(r["test"], {}).get("median_ends_core_busy_pct") for m in modes]
        lines.append(f"| {r['test']} | " + " | ".join("-" if b is None else f"{b:.0f}" for b in cells) + " |")
    # The wake-ups each core took (offcore only: .ipi). Where the ends bound a figure, a gateway
    # that sleeps between packets costs them a wake-up (an exit, in a VM) each time it is woken.
    lines += _per_core_table(report, modes, busy_rows, "ipi_per_k",
                             "Wake-up interrupts (rescheduling and function-call IPIs) each core took, per thousand "
                             f"requests or connections, median: gateway core (CPU {cfg.get('syngate_cpu')}) / clients' "
                             f"and servers' core (CPU {cfg.get('flood_cpu')}):")
    # How often each core went idle: in a VM, the wake-up of a halted vCPU is the costly kind, and its
    # sender (the ends, waking the gateway's pollers) pays for it.
    lines += _per_core_table(report, modes, busy_rows, "idle_per_k",
                             "Times each core went idle (cpuidle entries), per thousand requests or connections, "
                             "median: gateway core / clients' and servers' core (each ends in a wake-up; a halted "
                             "vCPU's costs its sender the most):")
    # The same per connection: in the offcore layout the gateway core's whole cost; in the shared one
    # only the daemon's (its CPU is its own there, the gateway's kernel work is on the senders').
    conn_rows = [r for r in s["rows"] if r["test"] in PER_CONN_TESTS]
    offcore = cfg.get("layout") == "offcore"
    cost_modes = [m for m in modes if offcore or m.startswith("syngate")]
    if conn_rows and cost_modes:
        what = "gateway core (softirq and daemon)" if offcore else "the daemon alone"
        lines += ["", f"CPU a connection, µs (median of runs; {what}, over the figure's rate"
                  + ("; the daemon's share in brackets; then the clients' and servers' core, which bounds "
                     "these figures when it is near 100 % busy" if offcore else "") + "):", "",
                  "| figure | " + " | ".join(EST_MODE_LABEL.get(m, m) for m in cost_modes) + " |",
                  "|---|" + "---:|" * len(cost_modes)]
        for r in conn_rows:
            cells = []
            for m in cost_modes:
                t = report["modes"][m]["established"].get(r["test"], {})
                core, daemon = t.get("median_gw_core_us_per_conn"), t.get("median_daemon_us_per_conn")
                if offcore:
                    ends = t.get("median_ends_us_per_conn")
                    cells.append("-" if core is None else f"{core:.1f}"
                                 + (f" ({daemon:.1f})" if daemon is not None and m.startswith("syngate") else "")
                                 + (f"; ends {ends:.0f}" if ends is not None else ""))
                else:
                    cells.append("-" if daemon is None else f"{daemon:.1f}")
            lines.append(f"| {r['test']} | " + " | ".join(cells) + " |")
    tc_modes = [m for m in modes if m.startswith("syngate")]
    if tc_modes and any(r["test"] not in FLOOD_TESTS for r in s["rows"]):
        lines += ["", "Segments per path during each figure (median of runs): tc translated / punted / miss, "
                  "engine translated (NFQUEUE):", "",
                  "| figure | " + " | ".join(EST_MODE_LABEL.get(m, m) for m in tc_modes) + " |",
                  "|---|" + "---:|" * len(tc_modes)]
        for r in s["rows"]:
            if r["test"] in FLOOD_TESTS:
                continue
            cells = []
            for m in tc_modes:
                c = report["modes"][m]["established"].get(r["test"], {}).get("median_counters")
                cells.append("-" if not c else f"{c['tc_translated']:.0f} / {c['tc_punted']:.0f} / {c['tc_miss']:.0f}, "
                             f"{c['engine_translated']:.0f}")
            lines.append(f"| {r['test']} | " + " | ".join(cells) + " |")
    errors = [f"- {EST_MODE_LABEL.get(m, m)}, {t}: " + "; ".join(e[t]["errors"])
              for m, e in ((m, report["modes"][m]["established"]) for m in modes)
              for t, *_ in EST_TESTS if t in e and e[t]["errors"]]
    if errors:
        lines += ["", "Failed runs (counted as 0 in the medians):"] + errors
    srv_keys = ("RetransSegs", "TCPTimeouts", "TCPSACKDiscard", "TCPSackRecovery")
    lossy = [m for m in modes if report["modes"][m]["established"].get("loss", {}).get("median_srv_tcp")]
    if lossy:
        lines += ["", "srv's TCP during the loss figure, median per run (SACK blocks it discarded are "
                  "outside what it sent: SACK translated wrongly on the way):", "",
                  "| mode | " + " | ".join(srv_keys) + " |", "|---|" + "---:|" * len(srv_keys)]
        for m in lossy:
            c = report["modes"][m]["established"]["loss"]["median_srv_tcp"]
            lines.append(f"| {EST_MODE_LABEL.get(m, m)} | " + " | ".join(f"{c.get(k, 0):.0f}" for k in srv_keys) + " |")
    invalid = [f"- {EST_MODE_LABEL.get(m, m)}, {t}: {report['modes'][m]['established'][t]['median_gw_invalid_dropped']:.0f}"
               for m in modes for t, *_ in EST_TESTS
               if report["modes"][m]["established"].get(t, {}).get("median_gw_invalid_dropped")]
    if invalid:
        lines += ["", "Packets gw's conntrack refused as INVALID (dropped by the SYNPROXY rules), median per figure:"] + invalid
    lines += ["", "Settings: syngate as shipped ([xdp] mode auto, kernel_path auto, backscatter budget at its "
              "default), syngate-notc the same with kernel_path off; kernel SYNPROXY with --sack-perm --wscale 7 --mss 1460, no timestamps; srv's "
              "somaxconn and tcp_max_syn_backlog 64 (nginx backlog 64); "
              f"ab and redis-benchmark {cfg.get('connrate_count')} connections, {cfg.get('connrate_concurrency')} at once, "
              "conntrack flushed before each figure; "
              f"iperf3 and wrk {cfg.get('est_seconds')} s (iperf3 omits its first second); forged-ACK flood at "
              + ("the generator's maximum" if str(cfg.get("ack_rate", "max")) == "max" else f"{cfg.get('ack_rate')} ACK/s")
              + f", {cfg.get('download_repeats')} downloads alone, {cfg.get('download_repeats')} under it and as many "
              "beside the generator alone per run (their medians); loss: 1% of srv's segments (TSO/GSO off on srv) dropped at random as "
              "cli receives them (raw PREROUTING, GRO off), iperf3 -R."
              + _coalescing(cfg)]
    return "\n".join(lines) + "\n"


def main():
    # One-line summaries for run.sh's progress log.
    if sys.argv[1] == "--point":
        f, p, mode, rate = load(sys.argv[2]), load(sys.argv[3]), sys.argv[4], sys.argv[5]
        print(f"{mode:>12} {rate:>16}: flood {f.get('pps', 0):>9.0f} pps  success {p['success_pct']:6.2f}%  "
              f"connect p99 {p['connect_ms']['p99']:8.2f} ms")
        return
    if sys.argv[1] == "--ack":
        a, mode, fam = load(sys.argv[2]), sys.argv[3], sys.argv[4]
        print(f"{mode:>12} IPv{fam} download {a['size_mb']} MB: alone {mb_s(a['no_flood']['bytes_per_s'])} MB/s, "
              f"under {a['flood_pps']} forged ACK/s {mb_s(a['flood']['bytes_per_s'])} MB/s "
              f"(ratio {a['speed_ratio']:.2f}, intact {a['flood']['intact']})"
              + (f"; beside the generator alone {mb_s(a['generator_alone']['bytes_per_s'])} MB/s "
                 f"({a['generator_alone_pps']} ACK/s into atk's sink): the defence's own ratio {a['defence_ratio']:.2f}"
                 if "defence_ratio" in a else ""))
        return
    if sys.argv[1] == "--malformed":
        path, mode, fam = sys.argv[2:5]
        rows = [line.split() for line in open(path)]
        print(f"{mode:>12} IPv{fam} malformed SYNs reaching srv: " + " ".join(f"{k}={r}/{s}" for k, s, r, _ in rows))
        return
    if sys.argv[1] == "--connrate":
        c, mode = connrate_of(sys.argv[2]), sys.argv[3]
        runs = ", ".join(f"{r['conn_per_s']:.0f}" for r in c["runs"])
        print(f"{mode:>12} new connections/s (ab, no keep-alive): median {c['median_conn_per_s']:.0f} ({runs}), "
              f"{c['failed']} failed")
        return
    if sys.argv[1] == "--est-point":
        d, test, mode = sys.argv[2:5]
        p = est_point(d, test)
        unit, scale = next((u, sc) for t, _, u, sc in EST_TESTS if t == test)
        extra = "".join(f" {k}={v}" for k, v in p.get("counters", {}).items() if v)
        if p.get("gw_invalid_dropped"):
            extra += f" conntrack INVALID dropped={p['gw_invalid_dropped']}"
        srv = p.get("srv_tcp", {})
        extra += "".join(f" srv:{k}={srv[k]}" for k in ("RetransSegs", "TCPTimeouts", "TCPSACKDiscard") if srv.get(k))
        if p.get("segments_dropped"):
            extra += f" loss rule dropped={p['segments_dropped']}"
        per_conn = (f" ({p['daemon_us_per_conn']:.1f} µs a connection)"
                    if mode.startswith("syngate") and "daemon_us_per_conn" in p else "")
        print(f"{mode:>12} {test}: {_fmt(p['value'], unit, scale)} {unit}, gw core busy {p['gw_core_busy_pct']:.0f}%"
              + (f", daemon {p['daemon_cpu_pct']:.0f}%{per_conn}" if mode.startswith("syngate") else "") + extra
              + (f"  FAILED: {p['error']}" if p["error"] else ""))
        return
    if sys.argv[1] == "--summary":
        summary(sys.argv[2], sys.argv[3:])
        return
    if sys.argv[1] == "--banner":
        p, mode = load(sys.argv[2]), sys.argv[3]
        print(f"{mode:>12} banner service (server speaks first, no flood): {p['success_pct']:.1f}% within 1 s")
        return
    out = sys.argv[1]
    report = collect(out)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    text = table(report)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    chart(report, out)


if __name__ == "__main__":
    main()
