#!/usr/bin/env python3
"""Assertions over a lab report. `kernel`: the flood is real (none collapses, malformed SYNs
reach an undefended srv) and the kernel defences behave as measured on this machine kind.
`syngate`: syngate keeps >= 99% at the highest SYN rate with its SYN-ACKs sent by XDP, and so
does syngate-nfqueue with them sent through NFQUEUE; no malformed SYN reaches srv, a download
keeps its speed under a forged-ACK flood and new clients get in during it, clients get through a
mixed flood, a client reconnecting per request loses none. `offcore`: on one gateway core,
syngate as shipped (the fast path in the tc hook on veth) and in native XDP mode serve >= 99% at
the generator's maximum, their SYN-ACKs from the fast path.
`established`: every figure of the established kind (IPv4, and its first four over IPv6) ran through none, synproxy, syngate and
syngate-notc, and syngate's established segments were translated by its tc programs.
Exit 77 (ctest SKIP) when the lab had to skip the syngate mode."""
import json
import sys

SKIP = 77
MIN_ACK_FLOOD_SPEED_RATIO = 0.05  # why this value: at its use below
report = json.load(open(sys.argv[1]))
what = sys.argv[2]
modes = report["modes"]
failures = []


def points(mode):
    m = modes.get(mode)
    if not m or m["status"] != "ok" or not m["points"]:
        return None
    return m["points"]


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def top(pts):
    return max(pts, key=lambda p: p["flood_pps"])


def check_path(mode, p, xdp):
    """The SYN-ACKs of the point came from the path the mode is meant to use."""
    gw = p["gateway"]
    if xdp:
        check(gw.get("xdp_enabled") == 1 and gw.get("xdp_syn_answered_per_s", 0) > 0
              and gw.get("nfqueue_cookies_sent_per_s", 0) == 0,
              f"{mode}: SYN-ACKs sent by XDP ({gw.get('xdp_syn_answered_per_s', 0)}/s), none by NFQUEUE "
              f"({gw.get('nfqueue_cookies_sent_per_s', 0)}/s)")
    else:
        check(gw.get("xdp_enabled") == 0 and gw.get("nfqueue_cookies_sent_per_s", 0) > 0,
              f"{mode}: XDP off, SYN-ACKs sent through NFQUEUE ({gw.get('nfqueue_cookies_sent_per_s', 0)}/s)")


if what == "kernel":
    none = points("none")
    check(none is not None, "mode none ran")
    if none:
        quiet, flood = none[0], top(none)
        check(quiet["success_pct"] >= 99, f"none without flood serves clients ({quiet['success_pct']:.1f}% >= 99%)")
        check(flood["flood_pps"] >= 20000, f"the flood really ran ({flood['flood_pps']} SYN/s)")
        check(flood["success_pct"] < 50,
              f"none collapses under {flood['flood_pps']} SYN/s ({flood['success_pct']:.1f}% < 50%)")
    for mode in ("syncookies", "synproxy", "synproxy-ts"):
        pts = points(mode)
        check(pts is not None, f"mode {mode} ran")
        if pts:
            p = top(pts)
            check(p["success_pct"] >= 95,
                  f"{mode} keeps HTTP clients served under {p['flood_pps']} SYN/s ({p['success_pct']:.1f}% >= 95%)")
    ts = modes.get("synproxy-ts", {}).get("banner_no_flood")
    plain = modes.get("synproxy", {}).get("banner_no_flood")
    if ts and plain:
        # The known finding: the third ACK SYNPROXY sends with --timestamp carries a TSecr the
        # server rejects, so a server that speaks first waits for a client that is waiting too.
        # How many stall varies from run to run (0-50% got the banner in time here): a stalled
        # connection is rescued by srv's SYN-ACK retransmission at 1 s, a coin flip against the
        # probe's 1 s deadline. The cause does not vary: srv counts the TSecr it rejected.
        check(ts["success_pct"] <= 60,
              f"synproxy --timestamp stalls server-speaks-first ({ts['success_pct']:.1f}% <= 60%)")
        if "srv_tsecr_rejected" in ts:
            check(ts["srv_tsecr_rejected"] > 0,
                  f"srv rejected SYNPROXY's TSecr ({ts['srv_tsecr_rejected']} TcpExtTSEcrRejected)")
        check(plain["success_pct"] >= 95,
              f"synproxy without timestamps serves it ({plain['success_pct']:.1f}% >= 95%)")
    # Without a defence the malformed SYNs reach srv by design: proof that the floods ran and that
    # srv's counter rule counts (a counter that always reads 0 would make the syngate check vacuous).
    mal = modes.get("none", {}).get("malformed", {})
    for fam, kinds in sorted(mal.items()):
        reached = sum(k["reached_srv"] for k in kinds.values())
        check(reached > 0, f"none {fam}: malformed SYNs reach an undefended srv ({reached} counted)")
elif what == "syngate":
    m = modes.get("syngate")
    if not m or m["status"] != "ok":
        print("SKIP: syngate mode did not run: " + (m["reason"] if m else "not in the report"))
        sys.exit(SKIP)
    if m["points"]:
        p = top(m["points"])
        check(p["success_pct"] >= 99,
              f"syngate keeps >= 99% under {p['flood_pps']} SYN/s ({p['success_pct']:.1f}%)")
        check_path("syngate", p, xdp=True)
    nfq = points("syngate-nfqueue")
    check(nfq is not None, "mode syngate-nfqueue ran")
    if nfq:
        p = top(nfq)
        check(p["success_pct"] >= 99,
              f"syngate-nfqueue keeps >= 99% under {p['flood_pps']} SYN/s ({p['success_pct']:.1f}%)")
        check_path("syngate-nfqueue", p, xdp=False)
    banner = m.get("banner_no_flood")
    if banner:
        check(banner["success_pct"] >= 95,
              f"syngate serves server-speaks-first ({banner['success_pct']:.1f}% >= 95%)")
        if "srv_tsecr_rejected" in banner:
            check(banner["srv_tsecr_rejected"] == 0,
                  f"srv accepted every TSecr syngate sent ({banner['srv_tsecr_rejected']} rejected)")
    for fam, kinds in sorted(m.get("malformed", {}).items()):
        for kind, k in kinds.items():
            check(k["sent"] > 0 and k["reached_srv"] == 0,
                  f"syngate {fam} {kind}: {k['reached_srv']} of {k['sent']} malformed SYNs reached srv (want 0 of > 0)")
    for fam, a in sorted(m.get("forged_ack_download", {}).items()):
        check(a["flood_pps"] >= 20000, f"syngate {fam}: the forged-ACK flood really ran ({a['flood_pps']} ACK/s)")
        # A forged ACK whose number happens to be a valid cookie opens a connection like any other:
        # syngate's SYN and handshake ACK then reach srv from the spoofed source (2 packets). With
        # 26 bits of hash, two counter values and at most 16 MSS indices, a random ACK passes with
        # p <= 2**-26 (the kernel's own cookies, 24 bits, are weaker): tens of millions of ACKs may
        # guess one or two. A bypass lets through a share of the flood, not a handful.
        guessed_allowed = 3
        check(a["forged_acks_at_srv"] <= 2 * guessed_allowed,
              f"syngate {fam}: {a['forged_acks_at_srv']} packets from the forged-ACK flood's sources reached srv "
              f"(want at most {2 * guessed_allowed}: {guessed_allowed} cookies guessed by chance, 2 packets each)")
        check(a["no_flood"]["intact"] and a["flood"]["intact"],
              f"syngate {fam}: the {a['size_mb']} MB download arrived intact, alone and under the flood")
        # The baseline that separates the generator's cost from the defence's (run.sh's sink).
        alone = a.get("generator_alone")
        check(alone is not None and alone["intact"] and a.get("generator_alone_pps", 0) >= 20000,
              f"syngate {fam}: the download beside the generator alone ran ({a.get('generator_alone_pps', 0)} ACK/s "
              f"into atk's sink) and arrived intact")
        # Threshold: a collapse detector, not a speed target (the benchmark compares against
        # SYNPROXY in the same run). On the 2-CPU machine kind CI runs on, with the generator at
        # its maximum on one CPU and syngate on the other, the median download kept 0.55-0.85 of
        # its no-flood speed at 470-640k forged ACK/s with the XDP fast path dropping them, and
        # 0.14-0.74 when they all still crossed NFQUEUE. A download stalled to the 11 s deadline
        # (legitimate ACKs lost in a queue) reads about 0.01.
        check(a["speed_ratio"] >= MIN_ACK_FLOOD_SPEED_RATIO,
              f"syngate {fam}: download keeps {a['speed_ratio']:.2f} of its speed under "
              f"{a['flood_pps']} forged ACK/s (>= {MIN_ACK_FLOOD_SPEED_RATIO})")
        # New clients during the forged-ACK flood: the forged ACKs die in XDP and the clients'
        # handshakes go through. 95% catches a broken path, not a slow one (the benchmark reports
        # the exact share).
        nc = a.get("new_connections")
        check(nc is not None and nc["success_pct"] >= 95,
              f"syngate {fam}: new clients get in during the forged-ACK flood "
              f"({nc['success_pct'] if nc else 0:.1f}% >= 95%)")
    c = m.get("connrate")
    if c is not None:
        check(c["complete"] > 0 and c["failed"] == 0,
              f"syngate: a client reconnecting per request completed {c['complete']} requests, {c['failed']} failed "
              f"(median {c['median_conn_per_s']:.0f} conn/s)")
    for fam, p in sorted(m.get("mixed", {}).items()):
        check(p["success_pct"] >= 95,
              f"syngate {fam}: clients get through a {p['flood_pps']} pkt/s mixed flood ({p['success_pct']:.1f}% >= 95%)")
elif what == "offcore":
    check(report["config"].get("layout") == "offcore", "the report is of the offcore layout")
    base = points("synproxy")
    check(base is not None, "mode synproxy ran")
    for mode in ("syngate", "syngate-native"):
        m = modes.get(mode)
        if not m or m["status"] != "ok":
            print(f"SKIP: {mode} did not run: " + (m["reason"] if m else "not in the report"))
            sys.exit(SKIP)
        p = top(m["points"])
        check(p["flood_pps"] >= 20000, f"{mode}: the flood really ran ({p['flood_pps']} SYN/s)")
        check(p["success_pct"] >= 99,
              f"{mode} on one core keeps >= 99% under {p['flood_pps']} SYN/s ({p['success_pct']:.1f}%)")
        check_path(mode, p, xdp=True)
elif what == "established":
    # The established kind ran every figure through every mode, and each path did the work it is
    # meant to: syngate as shipped (kernel_path auto) in the tc programs, syngate-notc (kernel_path
    # off) in the engine. Speeds are the benchmark's business (ratios in its table), not asserted here.
    est = {m: e.get("established") for m, e in modes.items()}
    if not est.get("syngate") or est["syngate"]["skipped"]:
        print("SKIP: syngate could not run (see the lab's log); only syngate-notc failing alone is a failure")
        sys.exit(SKIP)
    for mode in ("none", "synproxy", "syngate", "syngate-notc"):
        e = est.get(mode)
        check(e is not None and not e["skipped"], f"{mode}: the established kind ran")
        if not e:
            continue
        for test in (("iperf-down", "iperf-up4", "wrk", "ab", "redis", "loss", "iperf-down-v6", "iperf-up4-v6", "wrk-v6", "ab-v6")
                     + (("ack",) if mode != "none" else ())):
            t = e.get(test)
            # Figures kernel SYNPROXY may lose whole, the kernel's result reported in the table and
            # not a failure of the lab: it collapses under 1% loss (docs/lab.md: 0.01-0.02 Gbit/s,
            # and iperf3 can end with nothing in a 2 s figure), and it stalls a client that
            # reconnects per request whenever cli reuses a port srv still holds in TIME_WAIT
            # (run.sh's connrate_count; with CI's single run that can be the whole figure, ab:
            # "apr_pollset_poll: The timeout specified has expired", 0 complete).
            if mode == "synproxy" and test in ("loss", "ab", "redis", "ab-v6"):
                check(t is not None, f"{mode} {test}: the figure ran ({t['median'] if t else None})")
                continue
            check(t is not None and t["median"] > 0, f"{mode} {test}: a figure ({t['median'] if t else None})")
            if t and mode.startswith("syngate"):
                check(t["failed_runs"] == 0, f"{mode} {test}: no failed run ({'; '.join(t['errors'])})")
    loss = (est.get("none") or {}).get("loss")
    check(loss is not None and all(r.get("segments_dropped", 0) > 0 for r in loss["runs"]),
          "the loss figure really lost segments (cli's drop rule counted them)")
    for test in ("iperf-down", "iperf-up4", "wrk", "loss", "iperf-down-v6", "iperf-up4-v6", "wrk-v6"):
        off = ((est.get("syngate-notc") or {}).get(test) or {}).get("median_counters", {})
        on = ((est.get("syngate") or {}).get(test) or {}).get("median_counters", {})
        check(off.get("tc_translated", -1) == 0 and off.get("engine_translated", 0) > 1000,
              f"syngate-notc (kernel_path off) {test}: the engine translated ({off.get('engine_translated')}), tc nothing "
              f"({off.get('tc_translated')})")
        # An established flow's segments are the kernel's once handed over: the engine keeps the
        # handshake and the close (a few per connection; wrk's 50 connections make ~300).
        check(on.get("tc_translated", 0) > 1000 and on.get("engine_translated", 1e9) < on.get("tc_translated", 0) / 20,
              f"syngate (kernel_path auto) {test}: tc translated {on.get('tc_translated')}, the engine {on.get('engine_translated')} "
              "(< 5% of it)")
else:
    sys.exit(f"unknown check {what}")

sys.exit(1 if failures else 0)
