#!/usr/bin/env python3
"""bench/soak/report.py's drain verdict on made-up run directories: the tables must be back at
the baseline, except for at most one flow whose client lies in a flood's spoofed range (a forged
ACK that passed the cookie hash by chance) with exactly the map entries such a flow owns."""
import importlib.util
import atexit
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "soak_report", os.path.join(HERE, "..", "..", "bench", "soak", "report.py"))
report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(report)

BASE_MAPS = {"sg_flows#1": 0, "sg_tc_flows#2": 0, "sg_proven#3": 0, "sg_services#4": 4}
HEADER = "queue client backend state idle closing retries generation tc\n"


def flow_line(client):
    return f"8     {client}    10.10.3.2:80    closing   29.2s   server-fin   0   52993   2 entries, 9 segments\n"


class Run:
    def __init__(self, leftover_clients, last_maps, flows_active=None):
        self.dir = tempfile.mkdtemp(prefix="soak-report-test.")
        atexit.register(shutil.rmtree, self.dir, True)
        with open(os.path.join(self.dir, "events.log"), "w") as f:
            f.write("10.0 baseline\n20.0 load start\n200.0 load end\n")
        rows = [{"t": 5.0, "flows_active": 0, "maps": BASE_MAPS},
                {"t": 290.0, "flows_active": len(leftover_clients) if flows_active is None else flows_active,
                 "maps": last_maps}]
        with open(os.path.join(self.dir, "samples.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with open(os.path.join(self.dir, "floods.log"), "w") as f:
            for mode, spoof in (("ack", "198.18.0.0/15"), ("mixed", "2001:2::/48"), ("syn", "198.18.0.0/15")):
                f.write(json.dumps({"mode": mode, "spoof": spoof, "sent": 160000}) + "\n")
        if leftover_clients:
            with open(os.path.join(self.dir, "flows.txt"), "w") as f:
                f.write(HEADER + "".join(flow_line(c) for c in leftover_clients)
                        + "queue 8: flows-q8.bin: 1 of 262144 entries live\n")

    def drain(self):
        ev, rows = report.events(self.dir), report.samples(self.dir)
        ok, details = report.drain_check(rows, ev)
        if ok:
            return True
        base = report.baseline_row(rows, ev)
        return report.chance_forgeries(self.dir, base, rows[-1]) is not None


def maps(**changes):
    m = dict(BASE_MAPS)
    for k, v in changes.items():
        m[k + "#9"] = v
        m.pop(next(n for n in BASE_MAPS if n.startswith(k + "#")), None)
    return m


class DrainVerdict(unittest.TestCase):
    def test_back_at_the_baseline_passes(self):
        self.assertTrue(Run([], maps(sg_proven=2)).drain())

    def test_one_flow_from_a_spoofed_range_with_its_own_entries_passes(self):
        self.assertTrue(Run(["198.18.34.76:52164"], maps(sg_flows=1, sg_tc_flows=2, sg_proven=3)).drain())
        self.assertTrue(Run(["[2001:2::7]:4000"], maps(sg_tc_flows=2, sg_proven=2)).drain())

    def test_two_such_flows_fail(self):
        self.assertFalse(Run(["198.18.34.76:52164", "198.18.9.1:1000"],
                             maps(sg_flows=2, sg_tc_flows=4, sg_proven=4)).drain())

    def test_a_flow_from_a_real_client_fails(self):
        self.assertFalse(Run(["10.10.1.2:52164"], maps(sg_flows=1, sg_tc_flows=2)).drain())

    def test_more_entries_than_the_flow_owns_fail(self):
        self.assertFalse(Run(["198.18.34.76:52164"], maps(sg_flows=1, sg_tc_flows=3, sg_proven=3)).drain())
        self.assertFalse(Run(["198.18.34.76:52164"], maps(sg_tc_flows=2, sg_proven=4)).drain())
        self.assertFalse(Run(["198.18.34.76:52164"], maps(sg_tc_flows=2, sg_services=5)).drain())

    def test_table_count_disagreeing_with_the_dump_fails(self):
        self.assertFalse(Run(["198.18.34.76:52164"], maps(sg_tc_flows=2), flows_active=2).drain())

    def test_without_the_dump_a_leftover_fails(self):
        run = Run([], maps(sg_tc_flows=2), flows_active=1)
        self.assertFalse(run.drain())


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
