#!/usr/bin/env bash
# IPv6 end to end: nginx on srv listening on an IPv6 address, curl -6 from cli through syngate on
# gw. Sequential and concurrent requests succeed, a 5 MB download arrives intact (sha256), and
# the metrics show the handshakes went through the cookie path rather than around it.
source "$(dirname "$0")/lib.sh"
lab_init "$@"
lab_up

lab_ipv6

start_nginx
# A second nginx server block is simpler as a second instance on the IPv6 address.
sed -e "s|listen 10.10.3.2:80 backlog=4096;|listen [fd00:10:3::2]:80 backlog=4096;|" \
    -e "s|nginx.pid|nginx6.pid|" "$LAB_DIR/nginx/nginx.conf" > "$LAB_DIR/nginx/nginx6.conf"
bg "$NS_SRV" nginx -c "$LAB_DIR/nginx/nginx6.conf" -p "$LAB_DIR/nginx"
wait_listen "$NS_SRV" 80 || fail "nginx (IPv6) did not start"
for i in $(seq 100); do in_ns "$NS_SRV" ss -Htln | grep -q 'fd00:10:3::2\]:80' && break; sleep 0.05; done
serve_big 5

write_config "" "" '
[[service]]
address = "fd00:10:3::2"
port = 80'
start_syngate

log "50 sequential IPv6 requests"
ok=0
for i in $(seq 50); do
  body=$(cli_curl -6 'http://[fd00:10:3::2]/' 2>/dev/null) && [[ $body == "hello from srv" ]] && ok=$((ok + 1))
done
[[ $ok == 50 ]] || fail "IPv6 sequential: $ok/50 succeeded"
pass "IPv6 sequential: 50/50"

log "100 concurrent IPv6 requests (10 at a time)"
seq 100 | xargs -P 10 -I{} ip netns exec "$NS_CLI" curl -6 -sS --max-time 5 -o /dev/null \
  -w '%{http_code}\n' 'http://[fd00:10:3::2]/' > "$LAB_DIR/concurrent6.txt" 2>&1 || true
ok=$(grep -c '^200$' "$LAB_DIR/concurrent6.txt" || true)
[[ $ok == 100 ]] || fail "IPv6 concurrent: $ok/100 succeeded: $(sort "$LAB_DIR/concurrent6.txt" | uniq -c)"
pass "IPv6 concurrent: 100/100"

log "5 MB IPv6 download"
got=$(CURL_TIMEOUT=30 cli_curl -6 'http://[fd00:10:3::2]/big.bin' | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "IPv6 5 MB download: sha256 $got, want $want"
pass "IPv6 5 MB download intact"

log "IPv4 still works next to it"
body=$(cli_curl http://10.10.3.2/) && [[ $body == "hello from srv" ]] || fail "IPv4 request failed"

sleep 0.3  # workers publish their counters every 100 ms
valid=$(metric_sum syngate_cookies_valid_total)
sent=$(metric_sum syngate_cookies_sent_total)
exceptions=$(metric_sum syngate_engine_exceptions_total)
(( sent >= 152 && valid >= 152 )) || fail "metrics: cookies sent $sent valid $valid, want >= 152 each"
(( exceptions == 0 )) || fail "metrics: $exceptions engine exceptions"
pass "metrics: cookies sent $sent valid $valid"
