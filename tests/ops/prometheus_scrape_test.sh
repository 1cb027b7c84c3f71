#!/usr/bin/env bash
# A real Prometheus server (Debian's prometheus package) inside the gateway namespace scrapes
# syngate every second and evaluates deploy/prometheus/syngate-rules.yml while a bounded spoofed
# SYN flood (198.18.0.0/15, 6000/s for 15 s) runs. Read back through Prometheus's HTTP API: the
# cookie rate matches the offered flood, the counter Prometheus stored equals syngate's own, and
# the SyngateSynFlood alert becomes pending (its `for: 1m` is not waited out).
#   prometheus_scrape_test.sh SYNGATE RULES_DIR [SYNFLOOD]
source "$(dirname "$0")/../gateway/lib.sh"
source "$(dirname "$0")/flood.sh"
lab_init "$1"
RULES=${2:?usage: prometheus_scrape_test.sh SYNGATE RULES_DIR [SYNFLOOD]}
SYNFLOOD=${3:-}
command -v prometheus >/dev/null || fail "prometheus not found (apt-get install prometheus; scripts/deps.sh does)"
lab_up
start_nginx
write_config
start_syngate

cat > "$LAB_DIR/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$(cd "$RULES" && pwd)/syngate-rules.yml"]
scrape_configs:
  - job_name: syngate
    static_configs: [{ targets: ["127.0.0.1:9470"] }]
CONF
BG_LOG=$LAB_DIR/prometheus.log bg "$NS_GW" prometheus --config.file="$LAB_DIR/prometheus.yml" \
  --storage.tsdb.path="$LAB_DIR/tsdb" --web.listen-address=127.0.0.1:9091
wait_listen "$NS_GW" 9091 || fail "prometheus did not start: $(tail -5 "$LAB_DIR/prometheus.log")"

# promql EXPR: the first value of an instant query, or "none"
promql() {
  in_ns "$NS_GW" curl -sS --max-time 3 http://127.0.0.1:9091/api/v1/query --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
for i in $(seq 60); do [[ $(promql 'up{job="syngate"}') == 1 ]] && break; sleep 0.5; done
[[ $(promql 'up{job="syngate"}') == 1 ]] || fail "prometheus does not scrape syngate: $(tail -5 "$LAB_DIR/prometheus.log")"
groups=$(in_ns "$NS_GW" curl -sS http://127.0.0.1:9091/api/v1/rules | python3 -c 'import json,sys; print(" ".join(r["name"] for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]))')
log "prometheus scrapes syngate; rules loaded: $groups"
grep -q SyngateSynFlood <<<"$groups" || fail "the rules did not load"

RATE=6000 SECS=15
spoofed_syn_flood "$RATE" "$SECS" > "$LAB_DIR/flood.out" 2>&1 &
flood_pid=$!
track_pid "$flood_pid"
sleep 8
mid=$(promql 'sum(rate(syngate_cookies_sent_total[5s]))')
log "mid-flood, Prometheus: cookies sent $mid/s (offered $RATE SYN/s)"
[[ $mid != none ]] || fail "no cookie rate in Prometheus"
fcmp "$mid >= 0.6 * $RATE && $mid <= 1.2 * $RATE" || fail "cookie rate $mid/s through Prometheus, offered $RATE/s"
wait "$flood_pid" || fail "the flood generator failed: $(cat "$LAB_DIR/flood.out")"
log "flood: $(cat "$LAB_DIR/flood.out")"

# Prometheus's last sample of the counter equals syngate's own once scrapes have caught up.
sleep 2.5
own=$(metric_sum syngate_cookies_sent_total)
stored=$(promql 'sum(syngate_cookies_sent_total)')
log "cookies sent: syngate $own, Prometheus $stored"
[[ $stored == "$own" ]] || fail "Prometheus holds $stored cookies sent, syngate counts $own"
fcmp "$own >= 0.9 * $RATE * $SECS" || fail "syngate answered only $own of $((RATE * SECS)) SYNs"

state=none
for i in $(seq 20); do
  state=$(in_ns "$NS_GW" curl -sS http://127.0.0.1:9091/api/v1/alerts |
    python3 -c 'import json,sys; a=[x["state"] for x in json.load(sys.stdin)["data"]["alerts"] if x["labels"]["alertname"]=="SyngateSynFlood"]; print(a[0] if a else "none")')
  [[ $state != none ]] && break
  sleep 0.5
done
log "SyngateSynFlood: $state"
[[ $state == pending || $state == firing ]] || fail "SyngateSynFlood is $state after a ${SECS}s flood"
pass "Prometheus scraped syngate during the flood: ${mid} cookies/s, $stored cookies stored = syngate's count, SyngateSynFlood $state"
