#!/usr/bin/env bash
# The backscatter budget as shipped (no [policy] table at all) through the real gateway:
#   1. one client opening connections as fast as ab does (a connection per request, nginx behind
#      syngate) has none of its SYNs refused by the budget, and its rate is reported against the
#      rate with the budget off (median of 3 runs each; the 5% target is measured with
#      BACKSCATTER_MIN_RATIO=0.95, the default bound only catches a throttle);
#   2. a client keeps >= 99% success while its own /24 is spoofed at 50k SYN/s, and the rest of
#      that /24 gets no more SYN-ACKs than its budget (synack_per_prefix_per_s a second);
#   3. SYN-ACKs to a /24 that never answers, to one address that never answered and to the
#      proven client's own address (spoofed) stay within the documented bounds.
# The client gets 198.18.60.2 (inside the benchmarking range, so that its /24 may be spoofed);
# the gateway routes that /24 to it. SYN-ACKs are counted where they land: the NFQUEUE path
# routes them (to cli), XDP sends them back out of the link the SYN came in on (to atk), so both
# namespaces count every destination.
#   backscatter_test.sh SYNGATE SYNFLOOD        (XDP_MODE=auto for the fast path, as lib.sh)
source "$(dirname "$0")/lib.sh"
lab_init "$1"
SYNFLOOD=${2:?usage: backscatter_test.sh SYNGATE SYNFLOOD}
FLOOD_RATE=${FLOOD_RATE:-50000}
PREFIX_BUDGET=1000   # the shipped synack_per_prefix_per_s
ADDRESS_BUDGET=1000  # the shipped synack_per_address_per_s
command -v ab >/dev/null || { echo "SKIP: needs ab (apache2-utils)"; exit 77; }
lab_up
start_nginx

in_ns "$NS_CLI" ip addr add 198.18.60.2/24 dev c0
in_ns "$NS_CLI" ip route replace default via 10.10.1.1 src 198.18.60.2
in_ns "$NS_GW" ip route add 198.18.60.0/24 via 10.10.1.2
# Spoofed sources of the client's /24 arrive from atk: no reverse-path check in this namespace.
in_ns "$NS_GW" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.g2.rp_filter=0
# SYN-ACKs from the service, counted where they land (the first matching rule counts them).
count_rule() {  # count_rule NS DESTINATION NAME
  in_ns "$1" iptables -t raw -I PREROUTING -s 10.10.3.2 -d "$2" -p tcp --tcp-flags SYN,ACK SYN,ACK \
    -m comment --comment "$3" -j ACCEPT
}
for ns in "$NS_CLI" "$NS_ATK"; do
  count_rule "$ns" 198.18.7.0/24 sg-silent-24
  count_rule "$ns" 198.18.60.0/24 sg-rest-of-24
  count_rule "$ns" 198.18.60.2/32 sg-client  # inserted first: SYN-ACKs to the client stop here
done
synacks() {  # synacks NAME: in both namespaces
  local ns total=0
  for ns in "$NS_CLI" "$NS_ATK"; do
    total=$(( total + $(in_ns "$ns" iptables -t raw -L PREROUTING -vnx | awk -v n="$1" 'index($0, "/* " n " */") { print $1; exit }') ))
  done
  echo "$total"
}
budget_refused() { metric_sum syngate_drops_total 'reason="backscatter_budget"'; }
xdp_refused() { metric_sum syngate_xdp_drops_total 'reason="backscatter_budget"'; }

policy() {  # policy TOML-LINES: the config with this [policy] table ('' = the shipped defaults)
  write_config
  [[ -n $1 ]] && printf '\n[policy]\n%s\n' "$1" >> "$LAB_DIR/syngate.toml"
  return 0
}
# A flood from atk, bounded in count and time; sets FLOOD_SECS to how long it ran.
flood() {  # flood SPOOF-CIDR RATE SECONDS
  local start
  start=$(date +%s.%N)
  in_ns "$NS_ATK" timeout $(($3 + 10)) "$SYNFLOOD" syn --target 10.10.3.2:80 --spoof "$1" --rate "$2" \
    --count $(($2 * $3)) --duration "$3" --json > "$LAB_DIR/flood.json" 2>&1 || fail "flood failed: $(cat "$LAB_DIR/flood.json")"
  FLOOD_SECS=$(calc "$(date +%s.%N) - $start")
}
# SYN-ACKs a budget of B a second allows over a flood of T seconds: floor(T) + 2 windows.
bound() { awk -v t="$1" -v b="$2" 'BEGIN { printf "%d", (int(t) + 2) * b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Sets $rate. Not called in a command substitution: a fail() there would end only the subshell,
# its message captured with the figure, and the test would stop without saying why.
ab_rate() {
  local out
  out=$(in_ns "$NS_CLI" ab -q -n 3000 -c 8 http://10.10.3.2/ 2>&1) || fail "ab failed: $(tail -n 5 <<<"$out")"
  grep -q "^Failed requests: *0$" <<<"$out" || fail "ab saw failed requests: $(grep -E 'Failed|Complete|Length|Exceptions' <<<"$out")"
  rate=$(awk '/^Requests per second/ { print $4 }' <<<"$out")
}

log "XDP mode: ${XDP_MODE:-off}; flood rate $FLOOD_RATE SYN/s"
policy ''
start_syngate
in_ns "$NS_CLI" ab -q -n 500 -c 8 http://10.10.3.2/ >/dev/null 2>&1 || fail "warm-up ab failed"

log "1. ab -n 3000 -c 8 (a connection per request): shipped budget against budget off, interleaved"
on=() off=()
refused_on=0
for round in 1 2 3; do
  policy ''
  reload
  before=$(( $(budget_refused) + $(xdp_refused) ))
  ab_rate
  on+=("$rate")
  refused_on=$(( refused_on + $(budget_refused) + $(xdp_refused) - before ))
  policy 'synack_per_prefix_per_s = 0
synack_per_address_per_s = 0'
  reload
  ab_rate
  off+=("$rate")
  log "round $round: shipped ${on[-1]}/s, budget off ${off[-1]}/s"
done
on_median=$(median "${on[@]}")
off_median=$(median "${off[@]}")
ratio=$(calc "$on_median / $off_median")
log "median: shipped $on_median conn/s, budget off $off_median conn/s (ratio $ratio); client SYNs refused by the budget: $refused_on"
(( refused_on == 0 )) || fail "the budget refused $refused_on SYNs of a client that answers every SYN-ACK"
# The rate comparison is a measurement (a shared 2-vCPU VM varies by 15% between runs, and under
# CI's parallel root tests single rounds spread 4.5k-9.5k conn/s: a median ratio of 0.62 with no
# SYN refused was seen): the exact check is the line above, that the budget refused none of
# this client's SYNs. The bound here catches the throttling it used to do (a twentieth).
min_ratio=${BACKSCATTER_MIN_RATIO:-0.35}
fcmp "$on_median >= $min_ratio * $off_median" ||
  fail "one client lost more than the noise to the budget: $on_median against $off_median conn/s (bound ${min_ratio}x)"
pass "one busy client: $on_median conn/s with the shipped budget, $off_median with it off"

policy ''
reload
log "2. the client's own /24 spoofed at $FLOOD_RATE SYN/s for 6 s while it connects"
rest_before=$(synacks sg-rest-of-24)
refused_before=$(( $(budget_refused) + $(xdp_refused) ))
( flood 198.18.60.0/24 "$FLOOD_RATE" 6; echo "$FLOOD_SECS" > "$LAB_DIR/flood.secs" ) &
flood_pid=$!
track_pid "$flood_pid"
sleep 1
in_ns "$NS_CLI" "$SYNFLOOD" probe --target 10.10.3.2:80 --http / --count 1000 --concurrency 4 --timeout-ms 1000 \
  --json > "$LAB_DIR/probe.json" || fail "probe failed: $(cat "$LAB_DIR/probe.json")"
wait "$flood_pid" || fail "the flood failed"
sleep 0.5
success=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["success_pct"])' "$LAB_DIR/probe.json")
sent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sent"])' "$LAB_DIR/flood.json")
secs=$(cat "$LAB_DIR/flood.secs")
rest=$(( $(synacks sg-rest-of-24) - rest_before ))
refused=$(( $(budget_refused) + $(xdp_refused) - refused_before ))
max=$(bound "$secs" "$PREFIX_BUDGET")
log "flood: $sent SYNs in ${secs}s; client success ${success}%; SYN-ACKs to the rest of its /24: $rest (bound $max); refused by the budget: $refused"
fcmp "$success >= 99" || fail "the client's success fell to ${success}% while its /24 was spoofed"
(( rest <= max )) || fail "$rest SYN-ACKs reached the spoofed /24 in ${secs}s (budget $PREFIX_BUDGET/s: at most $max)"
(( refused > sent / 2 )) || fail "only $refused of $sent spoofed SYNs refused by the budget"
pass "client ${success}% while its /24 was spoofed at $FLOOD_RATE SYN/s; $rest SYN-ACKs to the rest of the /24"

log "3. SYN-ACKs to a /24 that never answers, one address that never answered, the client's own address"
check_bound() {  # check_bound WHAT SPOOF COUNTER BUDGET
  local before got max
  before=$(synacks "$3")
  flood "$2" "$FLOOD_RATE" 3
  sleep 0.5
  got=$(( $(synacks "$3") - before ))
  max=$(bound "$FLOOD_SECS" "$4")
  log "$1 ($2): $got SYN-ACKs in ${FLOOD_SECS}s (bound $max)"
  (( got > 0 && got <= max )) || fail "$1: $got SYN-ACKs in ${FLOOD_SECS}s, bound $max ($4/s)"
}
check_bound "a /24 that never answers" 198.18.7.0/24 sg-silent-24 "$PREFIX_BUDGET"
check_bound "one address that never answered" 198.18.7.9/32 sg-silent-24 "$PREFIX_BUDGET"
check_bound "the proven client's own address" 198.18.60.2/32 sg-client "$ADDRESS_BUDGET"
pass "backscatter bounded: $PREFIX_BUDGET/s to a silent /24, $ADDRESS_BUDGET/s unanswered to a proven address"
