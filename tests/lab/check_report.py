#!/usr/bin/env python3
"""Assertions over a lab report. `kernel`: the flood is real (none collapses) and the kernel
defences behave as measured on this machine kind. `syngate`: syngate keeps >= 99% at the
highest rate; exit 77 (ctest SKIP) when the lab had to skip the syngate mode."""
import json
import sys

SKIP = 77
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
elif what == "syngate":
    m = modes.get("syngate")
    if not m or m["status"] != "ok":
        print("SKIP: syngate mode did not run: " + (m["reason"] if m else "not in the report"))
        sys.exit(SKIP)
    p = top(m["points"])
    check(p["success_pct"] >= 99,
          f"syngate keeps >= 99% under {p['flood_pps']} SYN/s ({p['success_pct']:.1f}%)")
    banner = m.get("banner_no_flood")
    if banner:
        check(banner["success_pct"] >= 95,
              f"syngate serves server-speaks-first ({banner['success_pct']:.1f}% >= 95%)")
        if "srv_tsecr_rejected" in banner:
            check(banner["srv_tsecr_rejected"] == 0,
                  f"srv accepted every TSecr syngate sent ({banner['srv_tsecr_rejected']} rejected)")
else:
    sys.exit(f"unknown check {what}")

sys.exit(1 if failures else 0)
