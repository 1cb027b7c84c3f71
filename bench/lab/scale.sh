#!/usr/bin/env bash
# The scale lab (issue 24, item 3): holds --connections concurrent established connections
# through syngate and reports what they cost it and what new clients see meanwhile.
#
#   cli 10.10.1.2 (+ --sources addresses in 10.20.0.0/24, 10.20.1.0/24, ...) ─ gw (syngate) ─ srv 10.10.3.2
#   srv: nginx :80 (the probe's HTTP), scale_holder.py :8080 (accepts and holds, never reads)
#
# Steps: syngate up (services :80 and :8080, engine.max_flows from --max-flows); the probe
# (synflood probe --http /, --probe-count connections) with nothing held; --connections idle
# connections to :8080 opened from cli, spread round-robin over the source addresses (several
# /24s: an unproven /24 shares one SYN-ACK budget; each address holds connections/sources flows,
# under engine.max_flows_per_source); syngate's memory (RSS, flow table, BPF maps) and flows
# measured; the probe again with everything held. Writes OUT/scale.json and OUT/scale.md.
#
# Limits raised inside the namespaces only (each namespace has its own): cli's local port range,
# srv's accept backlog; the holders raise their own file-descriptor limit. Nothing in the root
# namespace changes. Bounded: every step has a deadline, and the namespace kit's EXIT trap
# (tests/lib/netns.sh) stops every process and deletes every namespace on every exit path.
# Needs root; run it under the lab lock: flock /tmp/syngate-lab.lock bench/lab/scale.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build"
connections=100000
sources=200
prefixes=4
max_flows=131072
open_rate=4000
open_deadline_s=180
probe_count=2000
probe_conc=20
probe_runs=3
gateway=syngate
out=""

usage() {
  cat <<EOF
Usage: $0 [options]   (root; under flock /tmp/syngate-lab.lock)
  --build DIR          build tree with gateway/syngate and flood/synflood (default: $build)
  --connections N      idle connections to hold (default $connections)
  --sources N          client source addresses, spread over --prefixes /24s (default $sources)
  --prefixes N         client /24s: 10.20.0.0/24 ... (default $prefixes, at most 200)
  --max-flows N        syngate's engine.max_flows (default $max_flows)
  --open-rate R        new held connections per second (default $open_rate)
  --open-deadline-s S  stop opening after S seconds and report what was held (default $open_deadline_s)
  --probe-count N      probe connections per run (default $probe_count)
  --probe-concurrency C  (default $probe_conc)
  --probe-runs N       probe runs before and while holding; the median p99 is compared (default $probe_runs)
  --gateway syngate|none  none: gw only forwards (no syngate, no rules): what holding the
                       connections costs the client and server kernels alone, the baseline for
                       syngate's connect p99 ratio (default $gateway)
  --out DIR            output directory (default: bench/lab/out/scale-<timestamp>)
Exit codes: 0 done (figures in OUT/scale.md), 1 a step failed, 2 usage.
EOF
}

while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --sources) sources=$2; shift 2 ;;
    --prefixes) prefixes=$2; shift 2 ;;
    --max-flows) max_flows=$2; shift 2 ;;
    --open-rate) open_rate=$2; shift 2 ;;
    --open-deadline-s) open_deadline_s=$2; shift 2 ;;
    --probe-count) probe_count=$2; shift 2 ;;
    --probe-concurrency) probe_conc=$2; shift 2 ;;
    --probe-runs) probe_runs=$2; shift 2 ;;
    --gateway) gateway=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$gateway" in syngate|none) ;; *) echo "scale.sh: --gateway is syngate or none" >&2; exit 2 ;; esac

syngate=$build/gateway/syngate
synflood=$build/flood/synflood
out=${out:-$here/out/scale-$(date +%Y%m%d-%H%M%S)}
[ "$(id -u)" = 0 ] || { echo "scale.sh: needs root (network namespaces)" >&2; exit 2; }
for b in "$syngate" "$synflood"; do
  [ -x "$b" ] || { echo "scale.sh: no $b (cmake --build BUILD --target syngate synflood)" >&2; exit 2; }
done
for tool in ip nginx python3 curl bpftool; do
  command -v "$tool" >/dev/null || { echo "scale.sh: missing $tool (run scripts/deps.sh)" >&2; exit 2; }
done
((prefixes >= 1 && prefixes <= 200 && sources >= prefixes && sources <= prefixes * 250)) ||
  { echo "scale.sh: need 1 <= --prefixes <= 200 and prefixes <= --sources <= 250 x prefixes" >&2; exit 2; }
per_source=$(( (connections + sources - 1) / sources ))
max_per_source=$(( per_source + 64 ))  # engine.max_flows_per_source: the held ones and the probe's

log() { echo "[scale] $*" >&2; }

source "$here/../../tests/lib/netns.sh"
tag="sgs$$"
cli="$tag-cli"; gw="$tag-gw"; srv="$tag-srv"
tmp=$(mktemp -d /tmp/syngate-scale.XXXXXX)
mkdir -p "$out"
cleanup_files() { rm -rf "$tmp"; }
netns_init
netns_on_exit cleanup_files
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

log "topology $tag (cli gw srv), $sources client addresses in $prefixes /24s"
ns_add "$cli" "$gw" "$srv"
link() {  # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
  veth "$1" "$2" "$4" "$5"
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$4" addr add "$6" dev "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}
link "$cli" eth0 10.10.1.2/24 "$gw" c0 10.10.1.1/24
link "$srv" eth0 10.10.3.2/24 "$gw" s0 10.10.3.1/24
ip -n "$cli" route add default via 10.10.1.1
ip -n "$srv" route add default via 10.10.3.1
ip -n "$gw" route add 10.20.0.0/16 via 10.10.1.2
nsx "$gw" sysctl -qw net.ipv4.ip_forward=1
source_list=()
for ((i = 0; i < sources; i++)); do
  source_list+=("10.20.$((i % prefixes)).$((i / prefixes + 1))")
done
printf 'address add %s/32 dev eth0\n' "${source_list[@]}" | ip -n "$cli" -batch -
# Per namespace: every source address may use the whole port range, srv queues a burst of
# handshakes while its holder accepts them.
nsx "$cli" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
nsx "$srv" sysctl -qw net.core.somaxconn=65535
nsx "$srv" sysctl -qw net.ipv4.tcp_max_syn_backlog=65535

# ---- servers on srv --------------------------------------------------------------------------
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  server {
    listen 10.10.3.2:80 backlog=4096;
    location / { return 200 "syngate scale lab\n"; }
  }
}
EOF
nsx "$srv" nginx -c "$tmp/nginx.conf" -p "$tmp" -e "$tmp/nginx-error.log"
wait_until 5 test -s "$tmp/nginx.pid" || { echo "scale.sh: nginx did not start" >&2; cat "$tmp/nginx-error.log" >&2; exit 1; }
track_pid "$(cat "$tmp/nginx.pid")"
# One process holds at most what its descriptor hard limit allows (raising that takes
# CAP_SYS_RESOURCE): the connections are split over as many holders as that needs, each side.
fd_hard=$(ulimit -Hn)
[ "$fd_hard" = unlimited ] && fd_hard=1048576
per_holder=$((fd_hard - 1024))
holders=$(( (connections + per_holder - 1) / per_holder ))
for ((h = 0; h < holders; h++)); do
  BG_LOG=$tmp/holder-server.log bg_in "$srv" python3 "$here/scale_holder.py" server --listen 10.10.3.2:8080 \
    --max-fds $((per_holder + 512)) --status "$tmp/server-$h.json"
done
servers_up() { local h; for ((h = 0; h < holders; h++)); do test -s "$tmp/server-$h.json" || return 1; done; }
wait_until 5 servers_up || { echo "scale.sh: the holder servers did not start" >&2; cat "$tmp/holder-server.log" >&2; exit 1; }
server_held() { python3 -c 'import json,sys; print(json.dumps({"held": sum(json.load(open(f))["held"] for f in sys.argv[1:])}))' "$tmp"/server-*.json; }

# ---- syngate on gw -------------------------------------------------------------------------
metrics_port=9471
cat >"$tmp/syngate.toml" <<EOF
[gateway]
secret_file = "$tmp/syngate.secrets"
state_dir = "$tmp/syngate-state"
metrics_address = "127.0.0.1:$metrics_port"

[engine]
max_flows = $max_flows
max_flows_per_source = $max_per_source

[[service]]
address = "10.10.3.2"
port = 80

[[service]]
address = "10.10.3.2"
port = 8080
EOF
metrics() { nsx "$gw" curl -s --max-time 5 "http://127.0.0.1:$metrics_port/metrics"; }
syngate_pid=""
if [ "$gateway" = syngate ]; then
  nsx "$gw" "$syngate" rules up --config "$tmp/syngate.toml" >"$tmp/rules.log" 2>&1 ||
    { echo "scale.sh: syngate rules up failed:" >&2; cat "$tmp/rules.log" >&2; exit 1; }
  ip netns exec "$gw" "$syngate" run --config "$tmp/syngate.toml" >"$out/syngate.log" 2>&1 &
  syngate_pid=$!
  track_pid "$syngate_pid"
  wait_until 15 metrics >/dev/null || { echo "scale.sh: syngate did not start:" >&2; tail -n 5 "$out/syngate.log" >&2; exit 1; }
fi

probe() {  # probe NAME: --probe-runs runs, each OUT/probe-NAME-i.json
  local i
  for ((i = 1; i <= probe_runs; i++)); do
    timeout 120 ip netns exec "$cli" "$synflood" probe --target 10.10.3.2:80 --count "$probe_count" \
      --concurrency "$probe_conc" --timeout-ms 3000 --http / --json >"$out/probe-$1-$i.json" ||
      { echo "scale.sh: probe $1 run $i failed: $(cat "$out/probe-$1-$i.json")" >&2; exit 1; }
  done
}

# What syngate holds: its memory (RSS from /proc; its flow tables are shared mappings of files in
# state_dir, counted in RssShmem as pages are touched), the flows of its tables (metrics) and its
# BPF maps (bpftool: memlock, max_entries, entries now).
snapshot() {  # snapshot NAME
  if [ -z "$syngate_pid" ]; then  # no gateway: nothing of syngate's to measure
    echo '{"status": {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}, "metrics": {}, "maps": []}' >"$out/snapshot-$1.json"
    return
  fi
  metrics >"$tmp/metrics-$1.txt" || true
  grep -E '^(VmRSS|RssAnon|RssFile|RssShmem):' "/proc/$syngate_pid/status" >"$tmp/status-$1.txt"
  python3 - "$syngate_pid" "$tmp/status-$1.txt" "$tmp/metrics-$1.txt" >"$out/snapshot-$1.json" <<'EOF'
import json, os, re, subprocess, sys
pid, status_path, metrics_path = sys.argv[1:]
status = {}
for line in open(status_path):
    k, v = line.split(":")
    status[k] = int(v.split()[0]) * 1024
m = {}
for line in open(metrics_path):
    r = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
    if r and r.group(1) in ("syngate_flows_active", "syngate_flow_table_bytes", "syngate_flow_table_capacity",
                            "syngate_resident_memory_bytes"):
        m[r.group(1)] = m.get(r.group(1), 0) + float(r.group(3))
maps = []
# The daemon's BPF maps, from its file descriptors (fdinfo: id, type, sizes, memlock).
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-map":
            continue
        info = dict(l.split(":", 1) for l in open(f"/proc/{pid}/fdinfo/{fd}") if ":" in l)
    except OSError:
        continue
    info = {k.strip(): v.strip() for k, v in info.items()}
    mid = int(info["map_id"])
    if any(x["id"] == mid for x in maps):
        continue
    shown = subprocess.run(["bpftool", "-j", "map", "show", "id", str(mid)], capture_output=True, text=True)
    try:
        name = json.loads(shown.stdout).get("name")
    except ValueError:
        name = None
    entries = None
    if int(info["map_type"]) in (1, 5, 9, 10):  # hash, percpu hash, lru hash, lru percpu hash
        d = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)], capture_output=True, text=True)
        try:
            entries = len(json.loads(d.stdout))
        except ValueError:
            entries = None
    maps.append({"id": mid, "name": name, "type": int(info["map_type"]), "max_entries": int(info["max_entries"]),
                 "bytes_memlock": int(info["memlock"]), "entries": entries})
maps.sort(key=lambda x: x["id"])
print(json.dumps({"status": status, "metrics": m, "maps": maps}))
EOF
}

log "probe with nothing held ($probe_runs x $probe_count connections)"
probe idle
snapshot idle

log "opening $connections connections to :8080 at $open_rate/s ($per_source per source address, $holders holders)"
for ((h = 0; h < holders; h++)); do
  mine=()  # this holder's share of the source addresses and of the connections
  for ((i = h; i < sources; i += holders)); do mine+=("${source_list[$i]}"); done
  BG_LOG=$tmp/holder-client.log bg_in "$cli" python3 "$here/scale_holder.py" client --target 10.10.3.2:8080 \
    --sources "$(IFS=,; echo "${mine[*]}")" --count $(( ${#mine[@]} * per_source )) \
    --rate $(( open_rate / holders + 1 )) --inflight 2000 --timeout-s 10 --deadline-s "$open_deadline_s" \
    --status "$tmp/client-$h.json"
done
clients_done() { local h; for ((h = 0; h < holders; h++)); do test -s "$tmp/client-$h.json" || return 1; done; }
if ! wait_until $((open_deadline_s + 30)) clients_done; then
  echo "scale.sh: the client holders did not report within $((open_deadline_s + 30)) s" >&2
  cat "$tmp/holder-client.log" >&2
  exit 1
fi
python3 -c '
import json, sys
parts = [json.load(open(f)) for f in sys.argv[1:]]
errors = {}
for p in parts:
    for k, v in p["errors"].items(): errors[k] = errors.get(k, 0) + v
print(json.dumps({"established": sum(p["established"] for p in parts), "failed": sum(p["failed"] for p in parts),
                  "errors": errors, "seconds": max(p["seconds"] for p in parts),
                  "sources": sum(p["sources"] for p in parts), "holders": len(parts)}))' "$tmp"/client-*.json >"$out/held-client.json"
sleep 2  # the last ACKs through, srv's accept queue drained
server_held >"$out/held-server.json"
log "held: $(cat "$out/held-client.json"); srv holds $(cat "$out/held-server.json")"
snapshot held
log "probe with everything held"
probe held
server_held >"$out/held-server-after.json"

python3 - "$out" "$probe_runs" "$connections" <<'EOF' | tee "$out/scale.md"
import json, statistics, sys
out, runs, wanted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(p): return json.load(open(f"{out}/{p}"))
def p99s(name, key):
    return [load(f"probe-{name}-{i}.json")[f"{key}_ms"]["p99"] for i in range(1, runs + 1)]
idle, held = load("snapshot-idle.json"), load("snapshot-held.json")
client, server = load("held-client.json"), load("held-server-after.json")
flows = held["metrics"].get("syngate_flows_active", 0) - idle["metrics"].get("syngate_flows_active", 0)
r = {"wanted": wanted, "client": client, "server_held": server["held"],
     "syngate_flows_idle": idle["metrics"].get("syngate_flows_active"),
     "syngate_flows_held": held["metrics"].get("syngate_flows_active"), "flows_added": flows}
for name in ("idle", "held"):
    r[f"connect_p99_ms_{name}"] = p99s(name, "connect")
    r[f"first_byte_p99_ms_{name}"] = p99s(name, "first_byte")
    r[f"success_pct_{name}"] = [load(f"probe-{name}-{i}.json")["success_pct"] for i in range(1, runs + 1)]
med = lambda k: statistics.median(r[k])
r["connect_p99_ratio"] = med("connect_p99_ms_held") / med("connect_p99_ms_idle")
r["first_byte_p99_ratio"] = med("first_byte_p99_ms_held") / med("first_byte_p99_ms_idle")
d = {k: held["status"][k] - idle["status"][k] for k in held["status"]}
r["rss_idle"], r["rss_held"], r["rss_delta"] = idle["status"], held["status"], d
r["table_bytes"] = held["metrics"].get("syngate_flow_table_bytes")
r["table_capacity"] = held["metrics"].get("syngate_flow_table_capacity")
r["maps_idle"], r["maps_held"] = idle["maps"], held["maps"]
json.dump(r, open(f"{out}/scale.json", "w"), indent=1)
per = lambda b: f"{b / flows:.0f} B/flow" if flows > 0 else "n/a"
print(f"# syngate scale lab (gateway: {'syngate' if idle['maps'] or idle['metrics'] else 'none, forwarding only'})\n")
print(f"- held: {client['established']} of {wanted} opened ({client['failed']} failed: {client['errors']}) "
      f"in {client['seconds']} s from {client['sources']} addresses; srv holds {server['held']}; "
      f"syngate flows {r['syngate_flows_idle'] or 0:.0f} -> {r['syngate_flows_held'] or 0:.0f}")
print(f"- syngate RSS {idle['status']['VmRSS'] / 2**20:.1f} -> {held['status']['VmRSS'] / 2**20:.1f} MiB: "
      f"+{d['VmRSS'] / 2**20:.1f} MiB ({per(d['VmRSS'])}; anon {per(d['RssAnon'])}, file {per(d['RssFile'])}, "
      f"shmem {per(d['RssShmem'])}: the flow tables are mapped files in state_dir)")
if r["table_bytes"]:
    print(f"- flow tables preallocated: {r['table_bytes'] / 2**20:.1f} MiB for {r['table_capacity']:.0f} flows "
          f"({r['table_bytes'] / r['table_capacity']:.0f} B/flow of capacity)")
for a, b in zip(idle["maps"], held["maps"]):
    ent = f"entries {a['entries']} -> {b['entries']}, " if b["entries"] is not None else ""
    print(f"- BPF map {b['name']} (type {b['type']}): {ent}max {b['max_entries']}, memlock {b['bytes_memlock'] / 2**20:.2f} MiB "
          f"({b['bytes_memlock'] / max(b['max_entries'], 1):.0f} B/entry)")
print(f"- new clients, connect p99 ms: idle {r['connect_p99_ms_idle']} held {r['connect_p99_ms_held']}: "
      f"ratio of medians {r['connect_p99_ratio']:.2f}")
print(f"- new clients, first byte (HTTP through the flow table) p99 ms: idle {r['first_byte_p99_ms_idle']} "
      f"held {r['first_byte_p99_ms_held']}: ratio {r['first_byte_p99_ratio']:.2f}")
print(f"- probe success %: idle {r['success_pct_idle']} held {r['success_pct_held']}")
EOF
log "report in $out/scale.md"
