#!/usr/bin/env bash
# The [policy] table through the real gateway: a denied client gets no SYN-ACK, an allow list
# serves only its sources, IPv6 prefixes (even ::/0) decide nothing for IPv4 clients, the backscatter budget caps the SYN-ACKs a flood spoofed from one /24
# draws (counted where they land, at atk) while a client in another prefix stays at 100%, and a
# SIGHUP that changes the policy during a download leaves the download intact.
#   policy_test.sh SYNGATE SYNFLOOD
source "$(dirname "$0")/lib.sh"
lab_init "$1"
SYNFLOOD=${2:?usage: policy_test.sh SYNGATE SYNFLOOD}
lab_up
start_nginx
serve_big 8
# SYN-ACKs from the service that reach cli and atk (atk's existing rule drops the spoofed range's
# backscatter; this one, inserted before it, counts it).
in_ns "$NS_CLI" iptables -t raw -I PREROUTING -s 10.10.3.2 -p tcp --tcp-flags SYN,ACK SYN,ACK -j ACCEPT
in_ns "$NS_ATK" iptables -t raw -I PREROUTING -s 10.10.3.2 -p tcp --tcp-flags SYN,ACK SYN,ACK -j ACCEPT
synacks() { in_ns "$1" iptables -t raw -L PREROUTING -vnx | awk '$3 == "ACCEPT" && $8 == "10.10.3.2" { print $1; exit }'; }

policy() {  # policy TOML-LINES: rewrites the config with this [policy] table
  write_config
  printf '\n[policy]\n%s\n' "$1" >> "$LAB_DIR/syngate.toml"
}

log "deny: the client's /24 is denied"
policy 'deny = ["10.10.1.0/24"]'
start_syngate
before=$(synacks "$NS_CLI")
CURL_TIMEOUT=2 cli_curl http://10.10.3.2/ >/dev/null 2>&1 && fail "a denied client was served"
sleep 0.3
got=$(( $(synacks "$NS_CLI") - before ))
denied=$(metric_sum syngate_drops_total 'reason="denied"')
(( got == 0 )) || fail "the denied client got $got SYN-ACKs"
(( denied >= 1 )) || fail "no SYN counted as denied"
pass "deny: no SYN-ACK reached the denied client ($denied SYNs counted as denied)"

log "allow: only 10.10.1.0/24 is answered (reload)"
policy 'allow = ["10.10.1.0/24"]'
reload
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "the allowed client was not served"
before=$(synacks "$NS_ATK")
in_ns "$NS_ATK" curl -sS --max-time 2 http://10.10.3.2/ >/dev/null 2>&1 && fail "atk (not in allow) was served"
sleep 0.3
(( $(synacks "$NS_ATK") - before == 0 )) || fail "atk got a SYN-ACK outside the allow list"
(( $(metric_sum syngate_drops_total 'reason="not_allowed"') >= 1 )) || fail "nothing counted as not_allowed"
pass "allow: the listed client is served, atk is not"

log "IPv6 prefixes decide nothing for IPv4 clients (IPv4 is held as ::ffff:a.b.c.d inside)"
policy 'deny = ["::/0"]'
reload
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "deny ::/0 (all of IPv6) refused an IPv4 client"
policy 'allow = ["10.10.9.0/24", "::/0"]'
reload
before=$(synacks "$NS_CLI")
CURL_TIMEOUT=2 cli_curl http://10.10.3.2/ >/dev/null 2>&1 && fail "allow ::/0 let an IPv4 client outside 10.10.9.0/24 in"
sleep 0.3
(( $(synacks "$NS_CLI") - before == 0 )) || fail "an IPv4 client outside the allowed /24 got a SYN-ACK"
pass "deny ::/0 leaves IPv4 alone; allow ::/0 lets no IPv4 client in"

log "backscatter budget: 100 SYN-ACKs/s per /24; 10000 SYNs spoofed from 198.18.7.0/24 in 2 s"
policy 'synack_per_prefix_per_s = 100'
reload
before=$(synacks "$NS_ATK")
budget_before=$(metric_sum syngate_drops_total 'reason="backscatter_budget"')
ok=0
flood_start=$(date +%s.%N)
( in_ns "$NS_ATK" timeout 20 "$SYNFLOOD" syn --target 10.10.3.2:80 --spoof 198.18.7.0/24 --rate 5000 \
    --count 10000 --duration 10 > "$LAB_DIR/budget-flood.out" 2>&1 ) &
flood_pid=$!
track_pid "$flood_pid"
for i in $(seq 20); do
  [[ $(cli_curl http://10.10.3.2/ 2>/dev/null) == "hello from srv" ]] && ok=$((ok + 1))
  sleep 0.05
done
wait "$flood_pid" || true
flood_secs=$(calc "$(date +%s.%N) - $flood_start")
sleep 0.5
reflected=$(( $(synacks "$NS_ATK") - before ))
refused=$(( $(metric_sum syngate_drops_total 'reason="backscatter_budget"') - budget_before ))
log "SYN-ACKs that reached the spoofed /24: $reflected; refused by the budget: $refused; client $ok/20"
# a flood of T seconds touches at most floor(T) + 2 one-second windows of 100 each
max=$(awk -v t="$flood_secs" 'BEGIN { printf "%d", (int(t) + 2) * 100 }')
(( reflected > 0 && reflected <= max )) || fail "$reflected SYN-ACKs reached the spoofed /24 in ${flood_secs}s (budget 100/s: at most $max)"
(( refused >= 9000 )) || fail "only $refused SYNs refused by the budget"
(( ok == 20 )) || fail "client in another prefix: $ok/20"
pass "backscatter: $reflected of 10000 SYN-ACKs reflected at the /24; client 20/20"

log "SIGHUP that changes the policy during a download"
policy ''
reload
in_ns "$NS_CLI" curl -sS --max-time 30 --limit-rate 2M -o "$LAB_DIR/got.bin" http://10.10.3.2/big.bin &
dl_pid=$!
track_pid "$dl_pid"
sleep 1
policy 'deny = ["10.10.1.0/24"]
synack_per_prefix_per_s = 10'
reload
CURL_TIMEOUT=2 cli_curl http://10.10.3.2/ >/dev/null 2>&1 && fail "the new deny did not apply"
wait "$dl_pid" || fail "the download failed across the reload"
got=$(sha256sum < "$LAB_DIR/got.bin" | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "the download is corrupt after the reload"
pass "reload during a download: 8 MB intact, the new deny applies to new connections"
