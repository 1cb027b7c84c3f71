#!/usr/bin/env bash
# The soak run: everything at once through one syngate in the netns lab (tests/gateway/lib.sh,
# drawn there), for --duration seconds, sampled once a second, then judged and plotted.
#
#   clients (cli)   per-request: ab over IPv4, curl over IPv6 (a new connection per request)
#                   keep-alive: python clients, IPv4 and IPv6, a GET every 50 ms on each connection
#                   downloads: nginx limit_rate, one IPv4 and one IPv6 at a time, sha256 checked
#                   idle: connections opened at the start, one line each way at the end
#   floods (atk)    synflood cycling: syn, ack, rst, a malformed SYN kind (the next each cycle),
#                   mixed, each over IPv4 then IPv6 (fin instead of rst over IPv6), on for 8 s of
#                   every 12, spoofed from 198.18.0.0/15 and 2001:2::/48 only
#   faults (gw)     SIGHUP every 30 s, alternately changing the policy (a deny prefix inside the
#                   spoofed range) and the service list (a service added and removed again);
#                   kill -9 and restart every --kill-every s (once, half-way, in a shorter run);
#                   one key rotation (a new secrets file, as an operator rotates it, then SIGHUP)
#                   at 40% of the run
#   sampled (1 Hz)  syngate's RSS, open fds, flows in its tables, entries of its BPF hash maps
#                   (XDP and, with --kernel-path auto, tc), per-worker packet counters; the
#                   watchdog pings through a notify socket (WATCHDOG_USEC as the shipped unit's
#                   WatchdogSec=10)
#
# Then the clients stop, the run waits (up to --cooldown s) for every table and map to be back
# at its baseline, and bench/soak/report.py writes table.md, summary.json and soak.png into --out
# and decides: exit 0 pass, 1 fail, 2 usage, 77 cannot run here (not root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

duration=1800
kill_every=300
hup_every=30
flood_rate=20000
flood_on=8
flood_period=12
cooldown=120
kernel_path=auto
dl_mb=8
dl_rate=256k
idle_per_family=8
syngate=$root/build/gateway/syngate
synflood=$root/build/flood/synflood
out=""
sabotage=""

usage() {
  cat <<EOF
Usage: $0 [options]   (root; takes the lab lock itself only if you wrap it: flock /tmp/syngate-lab.lock)
  --duration S        seconds of load (default $duration = 30 minutes; CI runs 180)
  --kill-every S      kill -9 and restart syngate every S s (default $kill_every; if the run is
                      shorter than twice that, once at half-time)
  --hup-every S       SIGHUP period (default $hup_every)
  --flood-rate PPS    rate of every flood (default $flood_rate)
  --kernel-path MODE  gateway.kernel_path: auto (the shipped default: tc programs carry
                      established flows) or off (every segment through NFQUEUE)
  --download-mb N     size of each rate-limited download (default $dl_mb, at nginx limit_rate $dl_rate)
  --cooldown S        after the clients stop, how long the tables may take to drain (default $cooldown;
                      closed flows linger engine.linger_s = 30 s)
  --syngate PATH      (default $syngate)
  --synflood PATH     (default $synflood)
  --sabotage lose-state
                      to show the soak can fail: the kill -9 also deletes the flow tables syngate
                      keeps in gateway.state_dir, so the restart loses every proxied connection
  --out DIR           where samples, logs, table.md, summary.json and soak.png go
                      (default bench/soak/out/<timestamp>)
Pass: 0 failed or corrupt transfers, 0 lost idle connections, RSS and fds flat after warm-up in
every process lifetime of 60 s or more (< 5% growth over its last two thirds), every flow table
and BPF hash map back to its baseline after the clients stop, no watchdog gap over WATCHDOG_USEC.
Differences from the shipped configuration: secret_file and state_dir in the lab's directory,
the services of the lab, kernel_path when --kernel-path off, and with auto a bpffs of the run's own
as bpf_dir (where a host has /sys/fs/bpf).
EOF
}

while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --kill-every) kill_every=$2; shift 2 ;;
    --hup-every) hup_every=$2; shift 2 ;;
    --flood-rate) flood_rate=$2; shift 2 ;;
    --kernel-path) kernel_path=$2; shift 2 ;;
    --download-mb) dl_mb=$2; shift 2 ;;
    --cooldown) cooldown=$2; shift 2 ;;
    --syngate) syngate=$2; shift 2 ;;
    --synflood) synflood=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --sabotage) sabotage=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$sabotage" in ""|lose-state) ;; *) echo "soak: --sabotage must be lose-state" >&2; exit 2 ;; esac
case "$kernel_path" in off|auto) ;; *) echo "soak: --kernel-path must be off or auto" >&2; exit 2 ;; esac
for n in "$duration" "$kill_every" "$hup_every" "$flood_rate" "$dl_mb" "$cooldown"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "soak: $n is not a number of seconds/packets/MB" >&2; exit 2; }
done
((duration >= 60)) || { echo "soak: --duration must be at least 60 s" >&2; exit 2; }
[[ -x $synflood ]] || { echo "soak: no synflood at $synflood (cmake --build build --target synflood)" >&2; exit 2; }
for tool in ab curl nginx python3 bpftool sha256sum gnuplot; do
  command -v "$tool" >/dev/null || { echo "soak: missing $tool (scripts/deps.sh)" >&2; exit 2; }
done
out=${out:-$here/out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.log "$out"/samples.jsonl

source "$root/tests/gateway/lib.sh"
lab_init "$syngate"
tools=$here/soak_tools.py
events=$out/events.log
: >"$events"
event() { echo "$(date +%s.%N) $*" >>"$events"; log "$*"; }
stopfile=$LAB_DIR/stop
gofile=$LAB_DIR/idle-go

# The pins the kernel path leaves in the root bpffs are this run's: removed on every exit path.
pins=""
drop_pins() { [[ -n $pins ]] && rm -rf "$pins" && rmdir "${LAB_BPFFS:-/sys/fs/bpf}/syngate" 2>/dev/null; return 0; }
netns_on_exit drop_pins

lab_up
lab_ipv6
# A bpffs for the pins, as a host has at /sys/fs/bpf (`ip netns exec` hides that one): without it
# the flow map is not pinned, and a kill -9 loses what the tc programs recorded while no process
# ran (a close carried in the kernel then waits for established_idle_s). Unmounted at exit.
bpf_dir_line=""
if [[ $kernel_path == auto ]]; then
  kernel_path_bpffs
  bpf_dir_line="bpf_dir = \"$LAB_BPFFS\""
  pins=$(tc_pin_dir)
fi

# ---- servers ---------------------------------------------------------------------------------
start_nginx "listen 10.10.3.2:80 backlog=4096; listen [fd00:10:3::2]:80 backlog=4096;
  keepalive_timeout 300s; keepalive_requests 100000000;
  location /dl/ { limit_rate $dl_rate; }"
mkdir -p "$LAB_DIR/www/dl"
head -c $((dl_mb * 1024 * 1024)) /dev/urandom >"$LAB_DIR/www/dl/big.bin"
dl_sha=$(sha256sum <"$LAB_DIR/www/dl/big.bin" | cut -d' ' -f1)
BG_LOG=$out/idle-server.err bg "$NS_SRV" python3 "$tools" idle-server 10.10.3.2 fd00:10:3::2 7000 "$out/idle-server.log"
wait_listen "$NS_SRV" 7000 || fail "idle server did not start"

# ---- syngate ---------------------------------------------------------------------------------
# write_soak_config POLICY(0|1) EXTRA_SERVICE(0|1)
write_soak_config() {
  local deny="" extra=""
  (($1)) && deny='deny = ["198.19.0.0/16"]'
  (($2)) && extra=$'[[service]]\naddress = "10.10.3.2"\nport = 2222'
  cat >"$LAB_DIR/syngate.toml.new" <<CONF
[gateway]
secret_file = "$LAB_DIR/secrets"
state_dir = "$LAB_DIR/state"
kernel_path = "$kernel_path"
$bpf_dir_line

[policy]
$deny

[[service]]
address = "10.10.3.2"
port = 80

[[service]]
address = "fd00:10:3::2"
port = 80

[[service]]
address = "10.10.3.2"
port = 7000

[[service]]
address = "fd00:10:3::2"
port = 7000

$extra
CONF
  mv "$LAB_DIR/syngate.toml.new" "$LAB_DIR/syngate.toml"
}

BG_LOG=$out/notify.err bg "$NS_GW" python3 "$tools" notify "$LAB_DIR/notify.sock" "$out/notify.log"
wait_until 5 test -S "$LAB_DIR/notify.sock" || fail "notify listener did not start"
watchdog_usec=10000000  # deploy/syngate.service: WatchdogSec=10

launch() {
  export NOTIFY_SOCKET=$LAB_DIR/notify.sock WATCHDOG_USEC=$watchdog_usec
  start_syngate
  unset NOTIFY_SOCKET WATCHDOG_USEC
  echo "$SYNGATE_PID" >"$LAB_DIR/syngate.pid"
  event "started pid $SYNGATE_PID"
}

policy_on=0 extra_on=0
write_soak_config 0 0
launch
BG_LOG=$out/sampler.err bg "$NS_GW" python3 "$tools" sample "$LAB_DIR/syngate.pid" "$out/samples.jsonl" "$LAB_DIR/sampler-stop"
sampler_pid=$BG_PID
# The baseline: the gateway's tables and maps before any client (the report takes the last
# sample before this event).
sleep 3
event "baseline"
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "no HTTP through syngate at the start"
[[ $(cli_curl -g "http://[fd00:10:3::2]/") == "hello from srv" ]] || fail "no HTTP over IPv6 through syngate at the start"

# ---- clients ---------------------------------------------------------------------------------
client_pids=()
# Per request, IPv4: ab runs of 200 connections (2 at a time), each a line "ab COMPLETE FAILED".
BG_LOG=$out/clients.err bg "$NS_CLI" bash -c '
  while [[ ! -e $1 ]]; do
    r=$(ab -q -n 200 -c 2 -s 20 -r http://10.10.3.2/ 2>&1) && rc=0 || rc=$?
    n=$(awk "/^Complete requests:/ {print \$3}" <<<"$r"); failed=$(awk "/^Failed requests:/ {print \$3}" <<<"$r")
    non2xx=$(awk "/^Non-2xx responses:/ {print \$3}" <<<"$r")
    echo "$(date +%s.%N) ab ${n:-0} $(( ${failed:-0} + ${non2xx:-0} + (rc ? 200 - ${n:-0} : 0) ))" >>"$2"
    ((rc == 0)) || echo "$(date +%T) ab exit $rc: $(tail -2 <<<"$r")" >&2
    sleep 0.5
  done' soak-ab "$stopfile" "$out/ab.log"
client_pids+=("$BG_PID")
# Per request, IPv6: curl, one line per request.
BG_LOG=$out/clients.err bg "$NS_CLI" bash -c '
  while [[ ! -e $1 ]]; do
    body=$(curl -sS -g --max-time 20 "http://[fd00:10:3::2]/" 2>&1) && rc=0 || rc=$?
    if [[ $rc == 0 && $body == "hello from srv" ]]; then r=ok; else r="fail rc=$rc"; fi
    echo "$(date +%s.%N) curl6 $r" >>"$2"
    sleep 0.2
  done' soak-curl6 "$stopfile" "$out/curl6.log"
client_pids+=("$BG_PID")
# Keep-alive.
BG_LOG=$out/clients.err bg "$NS_CLI" python3 "$tools" keepalive 10.10.3.2 80 6 0.05 "$stopfile" "$out/keepalive4.log"
client_pids+=("$BG_PID")
BG_LOG=$out/clients.err bg "$NS_CLI" python3 "$tools" keepalive fd00:10:3::2 80 3 0.05 "$stopfile" "$out/keepalive6.log"
client_pids+=("$BG_PID")
# Rate-limited downloads, checked whole.
for host in 10.10.3.2 "[fd00:10:3::2]"; do
  BG_LOG=$out/clients.err bg "$NS_CLI" bash -c '
    f=$(mktemp); trap "rm -f $f" EXIT
    while [[ ! -e $1 ]]; do
      t0=$(date +%s.%N)
      w=$(curl -sS -g --max-time 600 --speed-limit 1 --speed-time 30 -o "$f" -w "%{http_code} %{size_download}" "http://$2/dl/big.bin" 2>&1) && rc=0 || rc=$?
      if ((rc)); then r="fail rc=$rc"
      elif [[ $(sha256sum <"$f" | cut -d" " -f1) == "$3" ]]; then r=ok
      else r="corrupt"; fi
      echo "$(date +%s.%N) download $2 $r $(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN {printf \"%.1f\", b - a}") ${w// /_}" >>"$4"
    done' soak-dl "$stopfile" "$host" "$dl_sha" "$out/downloads.log"
  client_pids+=("$BG_PID")
done
# Idle connections, opened now, used at the end.
BG_LOG=$out/clients.err bg "$NS_CLI" python3 "$tools" idle-client 10.10.3.2 fd00:10:3::2 7000 "$idle_per_family" "$gofile" "$out/idle.log"
idle_pid=$BG_PID
wait_until 20 grep -qs "idle opened" "$out/idle.log" || fail "idle connections did not open: $(tail -3 "$out/idle.log" 2>/dev/null)"
event "load start"

# ---- schedule --------------------------------------------------------------------------------
floods=(syn:4 ack:4 rst:4 malformed:4 mixed:4 syn:6 ack:6 fin:6 malformed:6 mixed:6)
malforms4=(opt-zero-len opt-past-header opt-len-one ip-options doff-short doff-long tcp-truncated frag-first frag-later syn-fin syn-rst)
malforms6=(opt-zero-len opt-past-header opt-len-one doff-short doff-long tcp-truncated frag-first frag-later syn-fin syn-rst)
flood_i=0 malform4_i=0 malform6_i=0

start_flood() {
  local spec=${floods[flood_i % ${#floods[@]}]} kind fam target args
  kind=${spec%%:*} fam=${spec##*:}
  flood_i=$((flood_i + 1))
  if [[ $fam == 4 ]]; then target=10.10.3.2:80; else target="[fd00:10:3::2]:80"; fi
  args=("$kind")
  if [[ $kind == malformed ]]; then
    if [[ $fam == 4 ]]; then
      args=(syn --malform "${malforms4[malform4_i % ${#malforms4[@]}]}"); malform4_i=$((malform4_i + 1))
    else
      args=(syn --malform "${malforms6[malform6_i % ${#malforms6[@]}]}"); malform6_i=$((malform6_i + 1))
    fi
  fi
  BG_LOG=$out/floods.log bg "$NS_ATK" "$synflood" "${args[@]}" --target "$target" --rate "$flood_rate" --duration "$flood_on" --json
  event "flood ${args[*]} IPv$fam"
}

# Every SIGHUP changes something: the policy and the service list in turn.
hup_i=0
hup() {
  if ((hup_i % 2 == 0)); then policy_on=$((1 - policy_on)); what="policy deny=$policy_on"
  else extra_on=$((1 - extra_on)); what="service 10.10.3.2:2222 present=$extra_on"; fi
  hup_i=$((hup_i + 1))
  write_soak_config "$policy_on" "$extra_on"
  # What a service list change asks of the operator (deploy/syngate.toml): queue what was added.
  in_ns "$NS_GW" "$SYNGATE_BIN" rules up --config "$LAB_DIR/syngate.toml" >/dev/null
  reload
  event "reload $what"
}

rotate_keys() {
  local gen
  gen=$(metric_sum syngate_cookie_secrets_generation)
  python3 "$tools" rotate "$LAB_DIR/secrets"
  reload
  grep -q "reload: new cookie secrets" "$LAB_DIR/syngate.log" || fail "the rotated secrets file was not loaded"
  event "key rotation (generation $gen -> $(metric_sum syngate_cookie_secrets_generation))"
}

crash() {
  local pid=$SYNGATE_PID
  event "kill -9 pid $pid"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  untrack_pid "$pid"
  if [[ $sabotage == lose-state ]]; then
    rm -f "$(state_instance_dir)"/flows-*.bin
    event "sabotage: flow tables deleted"
  fi
  launch
}

if ((duration >= 2 * kill_every)); then next_kill=$kill_every; else next_kill=$((duration / 2)); kill_every=$duration; fi
rotate_at=$((duration * 2 / 5))
next_hup=$hup_every next_flood=0
t_start=$(date +%s)
while :; do
  t=$(( $(date +%s) - t_start ))
  ((t >= duration)) && break
  if ((t >= next_flood)); then start_flood; next_flood=$((next_flood + flood_period)); fi
  if ((t >= next_kill && next_kill < duration)); then crash; next_kill=$((next_kill + kill_every)); fi
  if ((t >= rotate_at)); then rotate_keys; rotate_at=$((duration + 1)); fi
  if ((t >= next_hup)); then hup; next_hup=$((next_hup + hup_every)); fi
  kill -0 "$SYNGATE_PID" 2>/dev/null || fail "syngate died on its own: $(tail -5 "$LAB_DIR/syngate.log")"
  sleep 0.5
done

# ---- stop the clients, then the drain --------------------------------------------------------
event "load end"
# Back to the configuration of the baseline, so that the service and policy maps can be compared
# with it.
if ((policy_on || extra_on)); then
  policy_on=0 extra_on=0
  write_soak_config 0 0
  reload
  event "reload back to the starting configuration"
fi
touch "$stopfile"
touch "$gofile"
for p in "${client_pids[@]}" "$idle_pid"; do wait "$p" 2>/dev/null || true; untrack_pid "$p"; done
event "clients stopped"
drained=0
for ((i = 0; i < cooldown; i++)); do
  python3 "$here/report.py" "$out" --drained && { drained=1; break; }
  sleep 1
done
if ((!drained)); then
  log "tables not back at the baseline after ${cooldown}s (the report says which)"
  # What the tc programs still hold, for the diagnosis (the entries' closing flags, generations
  # and last activity tell a close the engine never took from a flow still in use).
  [[ -n $pins && -e $pins/sg_tc_flows ]] && command -v bpftool >/dev/null &&
    bpftool -j map dump pinned "$pins/sg_tc_flows" >"$out/tc_flows.json" 2>&1 || true
  # ... and what the engine's tables hold, each flow in its state.
  in_ns "$NS_GW" "$SYNGATE_BIN" flows --config "$LAB_DIR/syngate.toml" >"$out/flows.txt" 2>&1 || true
  # ... and its counters (syngate_tc_reports_expired_total: closes no engine took).
  in_ns "$NS_GW" curl -s --max-time 2 http://127.0.0.1:9470/metrics >"$out/metrics.txt" 2>&1 || true
  log "the engine's flows left: $(head -20 "$out/flows.txt")"
fi
sleep 2
event "end"
touch "$LAB_DIR/sampler-stop"
wait "$sampler_pid" 2>/dev/null || true
untrack_pid "$sampler_pid"

# syngate's log is in LAB_DIR, which the teardown removes (on a failure it prints the tail).
cp "$LAB_DIR/syngate.log" "$out/syngate.log"
rc=0
python3 "$here/report.py" "$out" --watchdog-usec "$watchdog_usec" || rc=$?
exit "$rc"
