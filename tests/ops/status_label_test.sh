#!/usr/bin/env bash
# Label values from outside are escaped in the exposition: with the XDP fast path attached to an
# interface named up"link, the bare quote in syngate_xdp_attached{interface="up"link"} broke every
# scrape (`syngate status` said NOT SYNGATE, Prometheus failed the target). Namespace lab
# (tests/gateway/lib.sh), generic XDP on a veth of the gateway namespace.
#   status_label_test.sh SYNGATE
source "$(dirname "$0")/../gateway/lib.sh"
lab_init "$1"
lab_up
start_nginx
in_ns "$NS_GW" ip link add 'up"link' type veth peer name uplink-peer
in_ns "$NS_GW" ip link set 'up"link' up
in_ns "$NS_GW" ip link set uplink-peer up
XDP_MODE=generic write_config
sed -i 's/^mode = "generic"$/mode = "generic"\ninterfaces = ["up\\"link"]/' "$LAB_DIR/syngate.toml"
grep -q 'interfaces = \["up\\"link"\]' "$LAB_DIR/syngate.toml" || fail "config edit: $(cat "$LAB_DIR/syngate.toml")"
start_syngate
grep -q 'xdp: attached to up"link' "$LAB_DIR/syngate.log" || fail "XDP did not attach to up\"link: $(grep xdp "$LAB_DIR/syngate.log")"

in_ns "$NS_GW" curl -s --max-time 2 http://127.0.0.1:9470/metrics >"$LAB_DIR/metrics.txt"
grep 'syngate_xdp_attached' "$LAB_DIR/metrics.txt" | grep -v '^#' | tee "$LAB_DIR/attached.txt"
grep -qF 'interface="up\"link"' "$LAB_DIR/attached.txt" || fail "the interface label is not escaped"
if command -v promtool >/dev/null; then
  promtool check metrics <"$LAB_DIR/metrics.txt" 2>&1 | grep -i "error\|parse" && fail "promtool cannot parse the exposition"
fi

set +e
out=$(in_ns "$NS_GW" timeout 20 "$SYNGATE_BIN" status --config "$LAB_DIR/syngate.toml" --json 2>&1); rc=$?
set -e
log "status (exit $rc): ${out:0:300}"
[[ $rc == 0 ]] || fail "status exited $rc with an interface named up\"link"
python3 - "$out" <<'PY' || fail "status --json lacks the attachment"
import json, sys
j = json.loads(sys.argv[1])
series = [x["series"] for x in j["xdp"]]
assert any(s.startswith("syngate_xdp_attached") and 'up"link' in s for s in series), series
PY
pass "an interface named up\"link leaves the exposition parseable and status UP"
