#!/usr/bin/env bash
# Root test: diagnose counts sockets this script puts in LISTEN, ESTABLISHED, CLOSE_WAIT, TIME_WAIT and
# SYN_RECV inside a private network namespace, agrees with `ss -tan`, and reports the findings.
# usage: netns_diagnose.sh TCPTUNE PROFILE_DIR
set -euo pipefail
T=$1
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib/netns.sh"
require_root

NS=tcptune-test-$$-diag
TMP=$(mktemp -d /tmp/tcptune-test.XXXXXX)
cleanup() { rm -rf "$TMP"; }
netns_init
netns_on_exit cleanup
fail() { echo "FAIL: $*" >&2; exit 1; }
ns_add "$NS"
# Drop only the client's handshake-completing ACK towards port 8003 (flags exactly ACK), in this netns.
ip netns exec "$NS" iptables -A OUTPUT -p tcp --dport 8003 --tcp-flags SYN,ACK,FIN,RST ACK -j DROP

N_EST=7 N_CW=5 N_TW=6 N_SR=4
BG_LOG=/dev/stdout bg_in "$NS" python3 "$HERE/sockets.py" "$TMP/ready" $N_EST $N_CW $N_TW $N_SR
PY_PID=$BG_PID
for _ in $(seq 100); do [ -f "$TMP/ready" ] && break; kill -0 "$PY_PID" 2>/dev/null || fail "socket helper died"; sleep 0.1; done
[ -f "$TMP/ready" ] || fail "socket helper not ready"
HOLDER=$(awk '{print $2}' "$TMP/ready")

echo "--- counts match what the test created and what ss sees"
set +e
"$T" --netns "$NS" --json diagnose --close-wait-threshold 5 --time-wait-threshold 6 --syn-recv-threshold 4 > "$TMP/diag.json"
rc=$?
set -e
[ $rc -eq 1 ] || { cat "$TMP/diag.json"; fail "diagnose exit $rc, expected 1 (findings)"; }
ip netns exec "$NS" ss -tanH > "$TMP/ss.txt"
python3 - "$TMP/diag.json" "$TMP/ss.txt" "$HOLDER" $N_EST $N_CW $N_TW $N_SR <<'PY'
import collections, json, sys
j = json.load(open(sys.argv[1]))
holder = int(sys.argv[3])
n_est, n_cw, n_tw, n_sr = (int(x) for x in sys.argv[4:8])
st = {k: v["total"] for k, v in j["states"].items()}
def check(cond, msg):
    if not cond:
        print("FAIL:", msg, json.dumps(j["states"]), file=sys.stderr)
        sys.exit(1)
check(st["LISTEN"] == 5, "LISTEN %d != 5" % st["LISTEN"])
check(j["states"]["LISTEN"]["ipv6"] == 1, "one IPv6 listener")
# both ends of each pair, the IPv6 pair, and the SYN_RECV clients that think they are connected
check(st["ESTABLISHED"] == 2 * n_est + 2 + n_sr, "ESTABLISHED %d" % st["ESTABLISHED"])
check(j["states"]["ESTABLISHED"]["ipv6"] == 2, "IPv6 ESTABLISHED")
check(st["CLOSE_WAIT"] == n_cw, "CLOSE_WAIT %d" % st["CLOSE_WAIT"])
check(st["TIME_WAIT"] == n_tw, "TIME_WAIT %d" % st["TIME_WAIT"])
check(st["SYN_RECV"] == n_sr, "SYN_RECV %d" % st["SYN_RECV"])
# independent oracle: ss -tan in the same netns
names = {"LISTEN": "LISTEN", "ESTAB": "ESTABLISHED", "CLOSE-WAIT": "CLOSE_WAIT", "TIME-WAIT": "TIME_WAIT",
         "SYN-RECV": "SYN_RECV", "FIN-WAIT-2": "FIN_WAIT2", "FIN-WAIT-1": "FIN_WAIT1", "LAST-ACK": "LAST_ACK",
         "SYN-SENT": "SYN_SENT", "CLOSING": "CLOSING"}
ss = collections.Counter(names.get(l.split()[0], l.split()[0]) for l in open(sys.argv[2]) if l.strip())
for k, v in ss.items():
    check(st.get(k) == v, "%s: tcptune %s, ss %d" % (k, st.get(k), v))
check(j["sockets"] == sum(ss.values()), "total %d vs ss %d" % (j["sockets"], sum(ss.values())))
ids = {f["id"]: f for f in j["findings"]}
for want in ("syn-flood", "close-wait-leak", "time-wait-pile"):
    check(want in ids, "finding %s missing: %s" % (want, list(ids)))
check(ids["syn-flood"]["profile"] == "syn-flood-defense", "syn-flood names its profile")
check(ids["syn-flood"]["severity"] == "warning", "cookies on: warning")
check(any(o["pid"] == holder and o["close_wait"] == n_cw for o in j["close_wait_owners"]),
      "CLOSE_WAIT owner pid %d: %s" % (holder, j["close_wait_owners"]))
check("pid %d" % holder in ids["close-wait-leak"]["detail"], "owner in finding detail")
print("counts ok:", {k: v for k, v in st.items() if v})
PY

echo "--- thresholds above the counts: no findings, exit 0"
"$T" --netns "$NS" diagnose --close-wait-threshold 50 --time-wait-threshold 50 --syn-recv-threshold 50 > "$TMP/out" \
  || { cat "$TMP/out"; fail "diagnose with high thresholds did not exit 0"; }
grep -q "no findings" "$TMP/out" || { cat "$TMP/out"; fail "expected no findings"; }

echo "--- SYN cookies off turns the SYN flood finding critical"
ip netns exec "$NS" sh -c 'echo 0 > /proc/sys/net/ipv4/tcp_syncookies'
set +e
"$T" --netns "$NS" diagnose --syn-recv-threshold 4 > "$TMP/out"
rc=$?
set -e
[ $rc -eq 1 ] || { cat "$TMP/out"; fail "exit $rc"; }
grep -q "^\[critical\] syn-flood" "$TMP/out" || { cat "$TMP/out"; fail "no critical syn-flood"; }
grep -q "^\[warning\] syncookies-off" "$TMP/out" || { cat "$TMP/out"; fail "no syncookies-off"; }
grep -q "tcptune apply syn-flood-defense" "$TMP/out" || { cat "$TMP/out"; fail "profile not named"; }
echo "PASS"
