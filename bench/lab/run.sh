#!/usr/bin/env bash
# The flood lab: builds the lab topology (drawn below) in four network namespaces, runs nginx (and a
# server-speaks-first banner service) on srv, and for each defence mode runs the same flood
# schedule from atk and the same legitimate-client probe from cli. Writes report.json,
# table.md and chart.png (or .svg) into the output directory. Tears everything down on every
# exit path. Needs root. Nothing it sends leaves the namespaces it creates.
#
#   cli 10.10.1.2 ─┐                     ┌─ srv 10.10.3.2 (nginx :80, banner :2222)
#                  ├── gw 10.10.{1,2,3}.1 (ip_forward; mode under test)
#   atk 10.10.2.2 ─┘   198.18.0.0/15 -> atk (backscatter dies there)
# Every link also has IPv6 (fd00:10:{1,2,3}::/64, the same host numbers); 2001:2::/48 -> atk.
#
# Attack kinds (--kinds), each run for every mode:
#   syn        spoofed SYN floods at --rates, legitimate HTTP probe during each
#   ack        a download of --download-mb MB from srv, alone, during a forged-ACK flood, and beside the
#              same flood sent into a sink inside atk (the generator's cost alone; see sink_ok)
#   malformed  a bounded flood of each --malform-kinds SYN at srv; srv counts what reaches it
#   mixed      a SYN/ACK/RST/FIN mixed flood at --mixed-rate, legitimate HTTP probe during it
#   ipv6       ack, malformed and mixed again with IPv6 targets, spoofed from 2001:2::/48
#   connrate   new connections per second of a real client (ab, a connection per request), no flood
#   established  the traffic users pay for, no SYN flood, --repeats times with the modes interleaved
#              in each repeat (a drifting machine load then hits every mode alike): iperf3 one stream
#              srv->cli and four streams cli->srv, wrk (50 keep-alive connections to nginx), ab (a
#              connection per request), redis-benchmark -k 0 (a connection per request, to a
#              redis-server on srv), iperf3 one stream srv->cli with 1% of srv's segments dropped
#              as cli receives them, and the ack kind's downloads under a max-rate forged-ACK flood (every mode
#              but none); then the first four again over IPv6 (tests named -v6). Medians of the repeats and their ratios against kernel SYNPROXY go into
#              table.md and report.json ("established"), with the CPU a connection of the
#              connection-per-request figures. Its modes default to none synproxy
#              syngate syngate-notc, and syngate runs with its shipped configuration (no [policy]
#              override; syngate-notc differs only by kernel_path "off"). About 130 s a
#              repeat per layout with the defaults, measured: 5 repeats took 11 minutes a layout.
#
# Layouts (--layout): where the gateway's per-packet work runs.
#   shared     veth as it is: what atk sends, gw receives on atk's CPU (softirq in the sender's
#              context), so the kernel part of every defence shares the generator's CPU; syngate's
#              daemon runs on the other CPU.
#   offcore    gw's flood-facing veth in NAPI mode with a threaded poller pinned to one CPU and
#              syngate pinned to the same CPU, the generator alone on the other: every cost of the
#              defence (kernel and daemon) lands on one core, as on a real box with a NIC queue.
#              With the established kind, gw's client- and server-facing veths are polled there too,
#              cli and srv receive on the other CPU (their own pollers) and every client and server
#              process (nginx, redis, iperf3, wrk, ab) is pinned to it: the gateway's core carries
#              only the gateway's work, whose share of that core each figure records.
#   both       the two, one after the other (OUT/shared, OUT/offcore), then OUT/summary.md with
#              the ratios against the kernel's SYNPROXY measured in the same run.
#
# Usage: bench/lab/run.sh [options]   (--help lists them)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

build="$root/build"
synflood=""
syngate=""
modes="none syncookies synproxy synproxy-ts syngate syngate-native syngate-nfqueue"
rates="0 20000 60000 150000 300000 600000 max"
layout=both
flood_max_s=40        # upper bound of a flood, raised to outlast its probe; stopped when the probe ends
warmup_s=1.5
probe_count=100
max_probe_count=1000  # with no flood and at "max": a p99 of 10 samples, 99.9% told from 100%
probe_conc=25
probe_timeout_ms=2000
banner_count=40
gw_cpu=other          # syngate on the CPU of the flood ("same") or the other one ("other")
flood_cpu=1
out=""
quiet=0
kinds="syn ack malformed mixed ipv6 connrate"
kind_modes=""        # modes that run the kinds other than syn (default: every mode)
malform_kinds="opt-zero-len opt-past-header opt-len-one ip-options doff-short doff-long tcp-truncated frag-first frag-later syn-fin syn-rst"
malform_count=2000
malform_rate=20000
download_mb=20
download_max_s=11     # per download; the forged-ACK flood lasts repeats x this + 5 s at most
download_repeats=3
ack_rate=max
mixed_rate=60000
# Connections per ab run (three runs, the median is reported). Kernel SYNPROXY stalls a client
# that reconnects per request after about 3200 connections (its new connections hang; the
# conntrack table holds 3200 TIME_WAIT entries and cli reuses ports within the run), so a run
# stays below that and conntrack is flushed before each.
connrate_count=3000
connrate_conc=16
repeats=5             # the established kind: runs of every mode, medians reported
est_seconds=4         # the established kind: length of each iperf3 and wrk measurement
est_tests="iperf-down iperf-paced iperf-up4 wrk ab redis loss ack iperf-down-v6 iperf-up4-v6 wrk-v6 ab-v6 ack-v6"
# iperf-paced: the one-stream download held at this rate in every mode, so that the gateway core's
# busy share compares the cost of the same bytes (unpaced, each mode moves what it can, and a core
# at 78 % for 10 Gbit/s and one at 46 % for 6.7 are not the same work).
paced_gbit=4
napi_defer_us=0       # --napi-defer-us: the offcore layout's receivers coalesce as a NIC does
gw_napi_defer_us=""   # --gw-napi-defer-us: the gateway's two receivers alone (default: as the others)
modes_given=0
perf_record=0         # --perf: a system-wide perf profile of every established measurement

usage() {
  cat <<EOF
Usage: $0 [options]
  --build DIR            build tree holding flood/synflood and gateway/syngate (default: $build)
  --synflood PATH        synflood binary (default: BUILD/flood/synflood)
  --syngate PATH         syngate binary (default: BUILD/gateway/syngate; mode skipped if absent/broken)
  --modes "LIST"         any of: none syncookies synproxy synproxy-ts syngate syngate-notc syngate-nofwd syngate-nort syngate-nosynack syngate-noopen syngate-zw
                         syngate-native syngate-generic syngate-nfqueue (default: all but syngate-notc, syngate-nort,
                         syngate-nosynack, syngate-noopen, syngate-zw and
                         syngate-generic; with --kinds established: none synproxy syngate
                         syngate-notc). syngate: as shipped, [xdp] mode = "auto" (the fast path in
                         the tc ingress hook on veth) and kernel_path "auto" (established flows
                         translated by tc programs); syngate-notc: the same with kernel_path = "off"
                         (every segment through NFQUEUE); syngate-nofwd: with tc_forward = false
                         (translated in tc, forwarded by the kernel); syngate-nort: with
                         flow_worker_rt_priority = 0 (flow workers on the normal scheduler; by
                         default they run SCHED_FIFO while the fast path is attached); syngate-nosynack: with
                         tc_handshake = false (the engine answers every backend SYN-ACK; by default
                         the tc program does where it can); syngate-noopen: with tc_open_flows = false
                         (the engine takes every cookie ACK; by default the tc program does); syngate-zw: with
                         [engine] synack_window = 0 (the client waits for its backend's answer
                         before it sends, as kernel SYNPROXY's clients do); syngate-generic: [xdp] mode = "generic"
                         (the fast path in generic XDP); syngate-native: native XDP on gw's client- and
                         flood-facing veths, with a pass-through XDP program on their peers, which
                         a veth needs and a NIC does not (BUILD/bpf/lab_xdp_pass.bpf.o);
                         syngate-nfqueue: [xdp] mode = "off" (what the fast path costs established
                         traffic, and every SYN through NFQUEUE)
  --layout L             shared, offcore or both (default $layout; see the top of this file)
  --rates "LIST"         flood rates in SYN/s; 0 = no flood, max = as fast as the generator goes
                         (default: "$rates")
  --probe-count N        legitimate connections per point (default $probe_count)
  --max-probe-count N    legitimate connections with no flood and at "max" (default $max_probe_count)
  --probe-concurrency C  in flight at once (default $probe_conc)
  --probe-timeout-ms T   per-connection deadline (default $probe_timeout_ms)
  --banner-count N       server-speaks-first probes per mode, no flood (default $banner_count; 0 = skip)
  --gw-cpu same|other    shared layout: pin syngate to the flood's CPU or the other one (default
                         $gw_cpu); offcore always uses the other one, with the poller
  --kinds "LIST"         attack kinds: syn ack malformed mixed ipv6 connrate established
                         (default: "$kinds");
                         established: iperf3, wrk, ab, redis-benchmark, a download under 1% loss
                         and under a forged-ACK flood, no SYN flood, the first four over IPv6 too
                         (see the top of this file)
  --repeats N            established: runs of every mode, medians reported (default $repeats; 1 is a
                         quick look: about 130 s a layout, 95 s with --est-seconds 2)
  --est-seconds S        established: seconds of each iperf3 and wrk measurement (default $est_seconds)
  --paced-gbit N         established: the rate iperf-paced holds its download at in every mode
                         (default $paced_gbit; below what every mode moves unpaced), for the gateway
                         core's cost of the same bytes
  --est-tests "LIST"     established: any of $est_tests (default: all)
  --napi-defer-us N      established, offcore: the four client- and server-side receivers hold
                         off N µs after a poll (gro_flush_timeout with napi_defer_hard_irqs 2), as
                         a NIC's interrupt coalescing does, instead of being woken from the other
                         CPU for every burst (default $napi_defer_us: off, every mode alike)
  --gw-napi-defer-us N   the same for gw's two receivers alone (the clients' and servers' side
                         as --napi-defer-us says): a gateway whose NIC coalesces, with senders
                         on other machines that do not pay to wake its core, which on veth the
                         ends' core does (an IPI for every wake-up, in a VM the costly kind
                         when the gateway core sat idle); default: as --napi-defer-us
  --perf                 established: record a system-wide profile (perf record -a -g) of each
                         measurement into its DIR/TEST.perf.data (read: perf report -i FILE,
                         or bench/lab/perf_breakdown.py FILE: a thread's time per connection by
                         BPF program, helpers included);
                         perf itself costs a few percent, so figures of such a run are not
                         compared with others
  --kind-modes "LIST"    run the kinds other than syn only for these modes (default: every mode)
  --malform-kinds "LIST" synflood --malform kinds (default: all eleven)
  --malform-count N      SYNs per malform kind (default $malform_count)
  --malform-rate R       their rate in SYN/s (default $malform_rate)
  --download-mb N        size of the download under the forged-ACK flood (default $download_mb)
  --download-repeats N   downloads per measurement, the median is reported (default $download_repeats)
  --ack-rate R           forged-ACK flood rate, max = as fast as the generator goes (default $ack_rate)
  --mixed-rate R         mixed flood rate (default $mixed_rate)
  --connrate-count N     connections per ab run of the connrate kind (default $connrate_count)
  --connrate-concurrency C  connections in flight at once in those runs and in the established
                         kind's ab and redis-benchmark (default $connrate_conc; 1 gives the
                         latency of one connection: the rate's inverse)
  --out DIR              output directory (default: bench/lab/out/<timestamp>)
  --quiet                less chatter
Every flood is bounded (${flood_max_s}s, or its probe's worst case + 5s if longer; the forged-ACK flood
repeats x ${download_max_s}s + a probe + 5s) and spoofs 198.18.0.0/15 (IPv6: 2001:2::/48) only.
Exit codes: 0 done (a mode that could not run is recorded as skipped), 1 a step failed, 2 usage.
EOF
}

orig_args=("$@")
while (($#)); do
  case "$1" in
    --layout) layout=$2; shift 2 ;;
    --max-probe-count) max_probe_count=$2; shift 2 ;;
    --connrate-count) connrate_count=$2; shift 2 ;;
    --connrate-concurrency) connrate_conc=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --synflood) synflood=$2; shift 2 ;;
    --syngate) syngate=$2; shift 2 ;;
    --modes) modes=$2; modes_given=1; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --est-seconds) est_seconds=$2; shift 2 ;;
    --paced-gbit) paced_gbit=$2; shift 2 ;;
    --napi-defer-us) napi_defer_us=$2; shift 2 ;;
    --gw-napi-defer-us) gw_napi_defer_us=$2; shift 2 ;;
    --est-tests) est_tests=$2; shift 2 ;;
    --perf) perf_record=1; shift ;;
    --rates) rates=$2; shift 2 ;;
    --probe-count) probe_count=$2; shift 2 ;;
    --probe-concurrency) probe_conc=$2; shift 2 ;;
    --probe-timeout-ms) probe_timeout_ms=$2; shift 2 ;;
    --banner-count) banner_count=$2; shift 2 ;;
    --gw-cpu) gw_cpu=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --kind-modes) kind_modes=$2; shift 2 ;;
    --malform-kinds) malform_kinds=$2; shift 2 ;;
    --malform-count) malform_count=$2; shift 2 ;;
    --malform-rate) malform_rate=$2; shift 2 ;;
    --download-mb) download_mb=$2; shift 2 ;;
    --ack-rate) ack_rate=$2; shift 2 ;;
    --download-repeats) download_repeats=$2; shift 2 ;;
    --mixed-rate) mixed_rate=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

synflood=${synflood:-$build/flood/synflood}
syngate=${syngate:-$build/gateway/syngate}
lab_pass=$(dirname "$syngate")/../bpf/lab_xdp_pass.bpf.o  # built next to syngate (BUILD/gateway/syngate)
lab_drop=$(dirname "$syngate")/../bpf/lab_xdp_drop.bpf.o
out=${out:-$here/out/$(date +%Y%m%d-%H%M%S)}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces, iptables inside them)" >&2; exit 2; }
[ -x "$synflood" ] || { echo "run.sh: no synflood at $synflood (build it: cmake --build BUILD --target synflood)" >&2; exit 2; }
for tool in ip iptables ip6tables nginx python3 taskset curl sha256sum; do
  command -v "$tool" >/dev/null || { echo "run.sh: missing $tool (run scripts/deps.sh)" >&2; exit 2; }
done
for k in $kinds; do
  case "$k" in syn|ack|malformed|mixed|ipv6|connrate|established) ;; *) echo "run.sh: unknown kind $k (see --help)" >&2; exit 2 ;; esac
done
has_kind() { [[ " $kinds " == *" $1 "* ]]; }
# Checked whatever the kinds: config.json records both.
[[ $napi_defer_us =~ ^[0-9]+$ ]] || { echo "run.sh: --napi-defer-us must be a whole number of µs" >&2; exit 2; }
[ -n "$gw_napi_defer_us" ] || gw_napi_defer_us=$napi_defer_us  # unset: as the ends' receivers
[[ $gw_napi_defer_us =~ ^[0-9]+$ ]] || { echo "run.sh: --gw-napi-defer-us must be a whole number of µs" >&2; exit 2; }
has_est_test() { [[ " $est_tests " == *" $1 "* ]]; }
if has_kind established; then
  ((modes_given)) || modes="none synproxy syngate syngate-notc"
  [[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --repeats must be a positive integer" >&2; exit 2; }
  [[ $est_seconds =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --est-seconds must be a positive integer" >&2; exit 2; }
  [[ $paced_gbit =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --paced-gbit must be a positive integer" >&2; exit 2; }
  for t in $est_tests; do
    case "$t" in
      iperf-down|iperf-paced|iperf-up4|wrk|ab|redis|loss|ack|iperf-down-v6|iperf-up4-v6|wrk-v6|ab-v6|ack-v6) ;;
      *) echo "run.sh: unknown --est-tests entry $t" >&2; exit 2 ;;
    esac
  done
  for tool in iperf3 wrk ab redis-server redis-benchmark tc timeout; do
    command -v "$tool" >/dev/null || { echo "run.sh: missing $tool for the established kind (run scripts/deps.sh)" >&2; exit 2; }
  done
fi
case "$gw_cpu" in same|other) ;; *) echo "run.sh: --gw-cpu must be same or other" >&2; exit 2 ;; esac
ncpu=$(nproc)
case "$layout" in
  shared) ;;
  offcore)
    [ "$ncpu" -ge 2 ] || { echo "run.sh: the offcore layout needs two CPUs" >&2; exit 2; }
    command -v ethtool >/dev/null || { echo "run.sh: missing ethtool (run scripts/deps.sh)" >&2; exit 2; }
    gw_cpu=other ;;
  both)
    # One topology per layout, each torn down before the next: run this script once per layout.
    rc=0
    for l in shared offcore; do
      "$0" "${orig_args[@]}" --layout "$l" --out "$out/$l" || rc=1
    done
    python3 "$here/report.py" --summary "$out" "$out/shared" "$out/offcore" || rc=1
    exit "$rc" ;;
  *) echo "run.sh: --layout must be shared, offcore or both" >&2; exit 2 ;;
esac
if has_kind connrate; then
  command -v ab >/dev/null || { echo "run.sh: missing ab (apache2-utils; run scripts/deps.sh)" >&2; exit 2; }
fi
if [ "$ncpu" -lt 2 ]; then flood_cpu=0; fi
if [ "$gw_cpu" = same ]; then syngate_cpu=$flood_cpu; else syngate_cpu=$(( (flood_cpu + 1) % ncpu )); fi

log() { ((quiet)) || echo "[lab] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Topology, removed whatever happens by the namespace kit's trap (tests/lib/netns.sh): it kills the
# processes registered with track_pid and whatever still runs in the four namespaces, then
# deletes them.
source "$here/../../tests/lib/netns.sh"
tag="sgl$$"
cli="$tag-cli"; atk="$tag-atk"; gw="$tag-gw"; srv="$tag-srv"
tmp=$(mktemp -d "/tmp/syngate-lab.XXXXXX")
mkdir -p "$out/points"

stop_nginx() {
  if [ -s "$tmp/nginx.pid" ]; then
    local p
    p=$(cat "$tmp/nginx.pid")
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$tmp/nginx.pid"
  fi
}
lab_files() { rm -rf "$tmp"; }
netns_init
netns_on_exit lab_files

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

log "building topology $tag (cli atk gw srv)"
ns_add "$cli" "$atk" "$gw" "$srv"
link() {  # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
  veth "$1" "$2" "$4" "$5"
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$4" addr add "$6" dev "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}
# The ends of a link polled by a NAPI thread (the offcore layout) must have names unique on the
# machine: the poller thread is found by name (napi/<dev>-<id>).
aif=a0 atk_if=eth0 cif=c0 cli_if=eth0 sif=s0 srv_if=eth0
[ "$layout" = offcore ] && { aif="a$$"; atk_if="k$$"; }
if [ "$layout" = offcore ] && has_kind established; then cif="c$$"; cli_if="l$$"; sif="s$$"; srv_if="v$$"; fi
link "$cli" "$cli_if" 10.10.1.2/24 "$gw" "$cif" 10.10.1.1/24
link "$atk" "$atk_if" 10.10.2.2/24 "$gw" "$aif" 10.10.2.1/24
link "$srv" "$srv_if" 10.10.3.2/24 "$gw" "$sif" 10.10.3.1/24
ip -n "$cli" route add default via 10.10.1.1
# IPv6 on every link: nodad, or the addresses are unusable for a second or two.
ip -n "$cli" -6 addr add fd00:10:1::2/64 dev "$cli_if" nodad
ip -n "$gw" -6 addr add fd00:10:1::1/64 dev "$cif" nodad
ip -n "$atk" -6 addr add fd00:10:2::2/64 dev "$atk_if" nodad
ip -n "$gw" -6 addr add fd00:10:2::1/64 dev "$aif" nodad
ip -n "$srv" -6 addr add fd00:10:3::2/64 dev "$srv_if" nodad
ip -n "$gw" -6 addr add fd00:10:3::1/64 dev "$sif" nodad
ip -n "$cli" -6 route add default via fd00:10:1::1
ip -n "$atk" -6 route add default via fd00:10:2::1
ip -n "$srv" -6 route add default via fd00:10:3::1
ip -n "$gw" -6 route add 2001:2::/48 via fd00:10:2::2
nsx "$gw" sysctl -qw net.ipv6.conf.all.forwarding=1
nsx "$atk" ip6tables -t raw -A PREROUTING -d 2001:2::/48 -j DROP
# srv counts every spoofed packet that reaches it, ahead of anything that could drop it.
nsx "$srv" iptables -t raw -I PREROUTING -s 198.18.0.0/15 -j ACCEPT
nsx "$srv" ip6tables -t raw -I PREROUTING -s 2001:2::/48 -j ACCEPT
ip -n "$atk" route add default via 10.10.2.1
ip -n "$srv" route add default via 10.10.3.1
ip -n "$gw" route add 198.18.0.0/15 via 10.10.2.2
nsx "$gw" sysctl -qw net.ipv4.ip_forward=1
# The attacker namespace must not answer the backscatter (it owns none of 198.18/15 anyway).
nsx "$atk" sysctl -qw net.ipv4.ip_forward=0
# cli reconnects to one server port thousands of times a figure (ab, redis-benchmark -k 0) and
# keeps the TIME_WAIT of the connections it closes itself (redis-benchmark's). Past about 14k of
# them to one destination (connect() then finds few free ports in its half of the ephemeral range,
# we infer), redis-benchmark ran at 300-1400 req/s instead of 12-15k in every mode, no gateway included
# (measured with plain forwarding: 4 good runs, then every run slow). A load generator reuses
# them, as redis-benchmark itself advises.
nsx "$cli" sysctl -qw net.ipv4.tcp_tw_reuse=1
# ...and it dies at the first hook, as on a wire to nowhere. On veth the receiver's work runs on
# the sending CPU, so a slow death in atk (early demux, a route lookup, ip_error) would be
# charged to whatever sent the SYN-ACK: the defence under test. Measured before this rule: a
# fifth of syngate's SYN worker went to atk's ip_rcv.
nsx "$atk" iptables -t raw -A PREROUTING -d 198.18.0.0/15 -j DROP
# The generator's sink: a veth pair inside atk whose far end drops everything in XDP. The
# forged-ACK downloads are measured a third time while the same flood, from the same CPU, goes in
# there instead of to gw: what the download loses then is the generator's cost (on 2 vCPUs it
# takes CPU the download would use), not the defence's. The flood addresses 10.10.9.1 and
# fd00:10:9::1 by a made-up MAC: nothing answers, nothing leaves atk.
sink_ok=0
if [ -f "$lab_drop" ]; then
  nsx "$atk" ip link add n0 type veth peer name n1
  nsx "$atk" ip link set n0 up
  nsx "$atk" ip link set n1 up
  if nsx "$atk" ip link set dev n1 xdpdrv obj "$lab_drop" sec xdp; then
    nsx "$atk" ip route add 10.10.9.0/24 dev n0
    nsx "$atk" ip -6 route add fd00:10:9::/64 dev n0
    sink_ok=1
  fi
fi
((sink_ok)) || log "no generator sink ($lab_drop missing or refused): forged-ACK figures without the generator-alone baseline"
poller=""
if [ "$layout" = offcore ]; then
  # The flood reaches gw through a NAPI ring drained by a poller thread on syngate's CPU, so the
  # gateway's kernel work (XDP, netfilter, SYNPROXY, the forwarding) runs there, not on atk's.
  poller=$("$here/offcore_receiver.sh" "$atk" "$atk_if" "$gw" "$aif" "$syngate_cpu")
  # And the backscatter leaves the gateway as it would leave a box on a wire: atk receives it
  # on the generator's CPU, so the gateway's core pays for sending it, not for atk's receive.
  atk_poller=$("$here/offcore_receiver.sh" "$gw" "$aif" "$atk" "$atk_if" "$flood_cpu")
  log "offcore layout: gw's $aif polled by NAPI thread $poller on CPU $syngate_cpu, generator and atk's" \
    "receive (NAPI thread $atk_poller) on CPU $flood_cpu"
  if has_kind established; then
    # The clients' traffic too: gw receives it on its core, cli and srv on the other one.
    est_pollers=""
    for pair in "$cli $cli_if $gw $cif $syngate_cpu $gw_napi_defer_us" "$srv $srv_if $gw $sif $syngate_cpu $gw_napi_defer_us" \
                "$gw $cif $cli $cli_if $flood_cpu $napi_defer_us" "$gw $sif $srv $srv_if $flood_cpu $napi_defer_us"; do
      # shellcheck disable=SC2086
      est_pollers+=" $("$here/offcore_receiver.sh" $pair)"
      # A queue on the sending end: veth then stops it while the receiver's 256-entry ring is full
      # instead of dropping (noqueue, veth's default, drops: a bulk TCP stream lost tens of
      # thousands of segments a second and ran at 0.6 Gbit/s with no gateway at all).
      # shellcheck disable=SC2086
      set -- $pair
      nsx "$1" tc qdisc replace dev "$2" root pfifo limit 1000
    done
    log "offcore layout, established kind: gw's $cif and $sif polled on CPU $syngate_cpu, cli's and srv's" \
      "on CPU $flood_cpu (NAPI threads$est_pollers); clients and servers pinned to CPU $flood_cpu"
  fi
fi
# Where the clients and servers of the established kind run: the generator's CPU in the offcore
# layout (the gateway's core is the gateway's), anywhere in the shared one.
ep=()
[ "$layout" = offcore ] && ep=(taskset -c "$flood_cpu")

# ---------------------------------------------------------------------------------------------
# Servers on srv: nginx on :80 (client speaks first) and a banner service on :2222 (server
# speaks first, like SMTP or SSH), both with the small backlog set by the mode's sysctls.
start_nginx() {
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
    listen 10.10.3.2:80 backlog=64;
    listen [fd00:10:3::2]:80 backlog=64;
    location / { return 200 "syngate lab\n"; }
    location /big { root $tmp/www; }
  }
}
EOF
  nsx "$srv" "${ep[@]}" nginx -c "$tmp/nginx.conf" -p "$tmp" -e "$tmp/nginx-error.log"
  for _ in $(seq 50); do [ -s "$tmp/nginx.pid" ] && break; sleep 0.1; done
  [ -s "$tmp/nginx.pid" ] || { echo "run.sh: nginx did not start:" >&2; cat "$tmp/nginx-error.log" >&2; exit 1; }
}

start_banner() {
  cat >"$tmp/banner.py" <<'EOF'
import asyncio, sys
async def greet(reader, writer):
    writer.write(b"220 syngate-lab banner\r\n")
    try:
        await writer.drain()
        await asyncio.wait_for(reader.read(1), timeout=5)
    except Exception:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(greet, "10.10.3.2", 2222, backlog=64)
    async with server:
        await server.serve_forever()
asyncio.run(main())
EOF
  # Not through nsx: $! must be the process itself (ip netns exec execs it), so kill reaches it.
  ip netns exec "$srv" python3 "$tmp/banner.py" >"$tmp/banner.log" 2>&1 &
  banner_pid=$!
  track_pid "$banner_pid"
}

# ---------------------------------------------------------------------------------------------
# Modes. Each sets srv's sysctls and gw's defence, and returns 1 with a reason to skip.
srv_sysctls() {  # srv_sysctls SYNCOOKIES
  nsx "$srv" sysctl -qw net.ipv4.tcp_syncookies="$1"
  nsx "$srv" sysctl -qw net.core.somaxconn=64
  nsx "$srv" sysctl -qw net.ipv4.tcp_max_syn_backlog=64
  # Without a defence the kernel drops unproven peers' SYNs once the SYN queue is 3/4 full but
  # still admits "proven" ones (a tcp_metrics entry with an RTT). One lucky probe connection
  # made the client proven mid-probe and every later one slipped past the flood (56% at 60k
  # SYN/s in one run). The probe stands for new clients, so srv remembers no peer.
  nsx "$srv" sysctl -qw net.ipv4.tcp_no_metrics_save=1
}

gw_clear() {
  nsx "$gw" iptables -t raw -F
  nsx "$gw" iptables -F
  nsx "$gw" iptables -t raw -X 2>/dev/null || true
  nsx "$gw" iptables -X 2>/dev/null || true
  nsx "$gw" ip6tables -t raw -F
  nsx "$gw" ip6tables -F
  nsx "$gw" ip6tables -t raw -X 2>/dev/null || true
  nsx "$gw" ip6tables -X 2>/dev/null || true
  nsx "$gw" conntrack -F >/dev/null 2>&1 || true
}

# The ports both defences protect on srv: nginx and the banner service, and with the established
# kind iperf3's and redis's.
protected_ports="80 2222"
has_kind established && protected_ports+=" 5201 6379"

synproxy_up() {  # synproxy_up "EXTRA SYNPROXY OPTIONS"
  local port
  for port in $protected_ports; do
    nsx "$gw" iptables -t raw -A PREROUTING -i "$aif" -p tcp -d 10.10.3.2 --dport $port --syn -j CT --notrack
    nsx "$gw" iptables -t raw -A PREROUTING -i "$cif" -p tcp -d 10.10.3.2 --dport $port --syn -j CT --notrack
    # shellcheck disable=SC2086
    nsx "$gw" iptables -A FORWARD -p tcp -d 10.10.3.2 --dport $port -m conntrack --ctstate INVALID,UNTRACKED \
      -j SYNPROXY --sack-perm $1 --wscale 7 --mss 1460
  done
  nsx "$gw" iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP
  for port in $protected_ports; do
    nsx "$gw" ip6tables -t raw -A PREROUTING -i "$aif" -p tcp -d fd00:10:3::2 --dport $port --syn -j CT --notrack
    nsx "$gw" ip6tables -t raw -A PREROUTING -i "$cif" -p tcp -d fd00:10:3::2 --dport $port --syn -j CT --notrack
    # shellcheck disable=SC2086
    nsx "$gw" ip6tables -A FORWARD -p tcp -d fd00:10:3::2 --dport $port -m conntrack --ctstate INVALID,UNTRACKED \
      -j SYNPROXY --sack-perm $1 --wscale 7 --mss 1440
  done
  nsx "$gw" ip6tables -A FORWARD -m conntrack --ctstate INVALID -j DROP
  nsx "$gw" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
}

syngate_pid=""
syngate_metrics_port=9470  # inside gw's namespace: its own loopback
# The lab's one departure from syngate's shipped configuration (see [policy] below); the
# established kind runs syngate as shipped (no SYN flood there for the budget to matter).
lab_policy=1
syngate_up() {  # syngate_up XDP_MODE [XDP_INTERFACES as a TOML array] [A [gateway] LINE] [AN [engine] LINE]
  local xdp_mode=$1 xdp_interfaces=${2:-} gateway_line=${3:-} engine_line=${4:-}
  # Every mode starts as a new install: a stop keeps the flow tables for the next start (syngate's
  # restarts keep connections), and one mode must not take over the flows another left lingering.
  rm -rf "$tmp/syngate-state"
  if [ ! -x "$syngate" ]; then
    skip_reason="no syngate binary at $syngate (build the gateway: cmake --build BUILD --target syngate)"
    return 1
  fi
  cat >"$tmp/syngate.toml" <<EOF
[gateway]
secret_file = "$tmp/syngate.secrets"
state_dir = "$tmp/syngate-state"
metrics_address = "127.0.0.1:$syngate_metrics_port"
$gateway_line

[engine]
$engine_line

[xdp]
mode = "$xdp_mode"
${xdp_interfaces:+interfaces = $xdp_interfaces}
EOF
  if ((lab_policy)); then cat >>"$tmp/syngate.toml" <<EOF

# The lab spoofs from one /15, 512 /24s: from 512k SYN/s up the default backscatter budget
# (1000 SYN-ACKs/s per /24) would refuse part of the flood cheaply where the kernel modes answer
# every SYN. A real flood spoofs the whole address space, where the budget never bites; the lab
# makes syngate answer every SYN too, and the connrate kind's one client is not held to it.
[policy]
synack_per_prefix_per_s = 0
EOF
  fi
  local port
  for port in $protected_ports; do printf '\n[[service]]\naddress = "10.10.3.2"\nport = %s\n' "$port"; done >>"$tmp/syngate.toml"
  printf '\n[[service]]\naddress = "fd00:10:3::2"\nport = 80\n' >>"$tmp/syngate.toml"
  # The established kind's IPv6 figures: iperf3 over IPv6 too (nginx's :80 is above).
  if has_kind established; then printf '\n[[service]]\naddress = "fd00:10:3::2"\nport = 5201\n' >>"$tmp/syngate.toml"; fi
  if ! nsx "$gw" "$syngate" rules up --config "$tmp/syngate.toml" >"$tmp/syngate-rules.log" 2>&1; then
    skip_reason="syngate rules up failed: $(tail -n 3 "$tmp/syngate-rules.log" | tr '\n' ' ')"
    return 1
  fi
  ip netns exec "$gw" taskset -c "$syngate_cpu" "$syngate" run --config "$tmp/syngate.toml" >"$out/$mode.log" 2>&1 &
  syngate_pid=$!
  track_pid "$syngate_pid"
  sleep 1
  if ! kill -0 "$syngate_pid" 2>/dev/null; then
    skip_reason="syngate run exited at start: $(tail -n 3 "$out/$mode.log" | tr '\n' ' ')"
    syngate_pid=""
    nsx "$gw" "$syngate" rules down --config "$tmp/syngate.toml" >/dev/null 2>&1 || true
    return 1
  fi
  # The daemon may print "ready" before its queues bind; a few clean connections prove it.
  nsx "$cli" "$synflood" probe --target 10.10.3.2:80 --count 20 --concurrency 5 --timeout-ms 1000 --http / \
    --json >"$tmp/syngate-check.json" || true
  local ok
  ok=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["success_pct"] >= 90))' \
    "$tmp/syngate-check.json" 2>/dev/null || echo 0)
  if [ "$ok" != 1 ]; then
    skip_reason="syngate is running but serves < 90% of clients with no flood at all: $(cat "$tmp/syngate-check.json")"
    syngate_down
    return 1
  fi
  # Which path answers is part of the result: say so when the fast path did not attach.
  syngate_counters >"$out/points/$mode/xdp_at_start.json"
  if [ "$gateway_line" != 'kernel_path = "off"' ] && ! grep -q "tc: translating established flows" "$out/$mode.log"; then
    log "$mode: the kernel path did not attach; this mode measures the engine only: $(grep 'tc:' "$out/$mode.log" | tail -n 2 | tr '\n' ' ')"
  fi
  if [ "$xdp_mode" != off ] && [ "$(json_field "$out/points/$mode/xdp_at_start.json" xdp_enabled 0)" != 1 ]; then
    log "$mode: the XDP fast path did not attach; this mode measures NFQUEUE only: $(grep -i 'xdp' "$out/$mode.log" | tail -n 2 | tr '\n' ' ')"
  fi
}

# syngate's counters that tell which path did the work, as JSON (all 0 when it does not answer).
syngate_counters() {
  nsx "$gw" curl -s --max-time 2 "http://127.0.0.1:$syngate_metrics_port/metrics" 2>/dev/null | python3 -c '
import json, re, sys
want = {
    "xdp_enabled": ("syngate_xdp_enabled", None),
    "xdp_syn_answered": ("syngate_xdp_packets_total", "syn_answered"),
    "xdp_forged_dropped": ("syngate_xdp_packets_total", "cookie_invalid"),
    "xdp_cookie_valid": ("syngate_xdp_packets_total", "cookie_valid"),
    "nfqueue_cookies_sent": ("syngate_cookies_sent_total", None),
    "nfqueue_packets": ("syngate_packets_total", None),
}
sums = dict.fromkeys(want, 0)
for line in sys.stdin:
    m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
    if not m:
        continue
    for key, (name, outcome) in want.items():
        if m.group(1) == name and (outcome is None or f"outcome=\"{outcome}\"" in (m.group(2) or "")):
            sums[key] += float(m.group(3))
print(json.dumps({k: int(v) for k, v in sums.items()}))'
}

syngate_down() {
  if [ -n "$syngate_pid" ]; then
    kill -TERM "$syngate_pid" 2>/dev/null || true
    wait "$syngate_pid" 2>/dev/null || true
    syngate_pid=""
  fi
  nsx "$gw" "$syngate" rules down --config "$tmp/syngate.toml" >/dev/null 2>&1 || true
}

mode_up() {
  skip_reason=""
  gw_clear
  stop_nginx
  case "$1" in
    none) srv_sysctls 0 ;;
    syncookies) srv_sysctls 1 ;;
    synproxy) srv_sysctls 0; synproxy_up "" ;;
    synproxy-ts) srv_sysctls 0; synproxy_up "--timestamp" ;;
    syngate|syngate-notc|syngate-nofwd|syngate-nort|syngate-nosynack|syngate-noopen|syngate-zw|syngate-native|syngate-generic|syngate-nfqueue) srv_sysctls 0 ;;
    *) skip_reason="unknown mode $1"; return 1 ;;
  esac
  start_nginx  # after the sysctls: the listen backlog is fixed at listen() time
  # The gateway's own readiness check needs the backend listening.
  case "$1" in
    syngate) syngate_up auto || return 1 ;;
    syngate-notc) syngate_up auto "" 'kernel_path = "off"' || return 1 ;;
    syngate-nofwd) syngate_up auto "" 'tc_forward = false' || return 1 ;;
    syngate-nort) syngate_up auto "" 'flow_worker_rt_priority = 0' || return 1 ;;
    syngate-nosynack) syngate_up auto "" 'tc_handshake = false' || return 1 ;;
    syngate-noopen) syngate_up auto "" 'tc_open_flows = false' || return 1 ;;
    syngate-zw) syngate_up auto "" "" 'synack_window = 0' || return 1 ;;
    syngate-nfqueue) syngate_up off || return 1 ;;
    syngate-generic) syngate_up generic || return 1 ;;
    syngate-native)
      if [ ! -f "$lab_pass" ]; then
        skip_reason="no $lab_pass (built with the syngate target when the XDP fast path is built)"
        return 1
      fi
      nsx "$cli" ip link set dev "$cli_if" xdpdrv obj "$lab_pass" sec xdp
      nsx "$atk" ip link set dev "$atk_if" xdpdrv obj "$lab_pass" sec xdp
      syngate_up native "[\"$aif\", \"$cif\"]" || { wire_pass_off; return 1; } ;;
  esac
}

wire_pass_off() {
  nsx "$cli" ip link set dev "$cli_if" xdpdrv off 2>/dev/null || true
  nsx "$atk" ip link set dev "$atk_if" xdpdrv off 2>/dev/null || true
}

mode_down() {
  case "$1" in syngate|syngate-notc|syngate-nofwd|syngate-nort|syngate-nosynack|syngate-noopen|syngate-zw|syngate-native|syngate-generic|syngate-nfqueue) syngate_down ;; esac
  if [ "$1" = syngate-native ]; then wire_pass_off; fi
  gw_clear
}

# ---------------------------------------------------------------------------------------------
# Measurements

# A process's CPU time in clock ticks, from the scheduler's own count (every thread's, in ns): the
# utime and stime of /proc/PID/stat are sampled by the timer tick and miss a daemon that works in
# bursts shorter than a tick.
cpu_ticks() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk -v hz="$clk_tck" '{ ns += $1 } END { printf "%.2f\n", ns * hz / 1e9 }'
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
softirq_ticks() { awk '/^cpu / {print $8}' /proc/stat; }
clk_tck=$(getconf CLK_TCK)

fresh_state() {
  # A client cached in tcp_metrics counts as a proven peer and slips past a full SYN queue.
  nsx "$cli" ip tcp_metrics flush all 2>/dev/null || true
  nsx "$srv" ip tcp_metrics flush all 2>/dev/null || true
  nsx "$gw" conntrack -F >/dev/null 2>&1 || true
}

target_of() {  # target_of 4|6 PORT
  if [ "$1" = 6 ]; then echo "[fd00:10:3::2]:$2"; else echo "10.10.3.2:$2"; fi
}

# The legitimate client: COUNT HTTP connections to TARGET, --probe-concurrency at a time, each
# with --probe-timeout-ms to succeed. --min-success 0: a flood that starves every client is a
# result to report, not a failure of the run.
http_probe() {  # http_probe TARGET COUNT OUT_JSON
  nsx "$cli" "$synflood" probe --target "$1" --count "$2" --concurrency "$probe_conc" \
    --timeout-ms "$probe_timeout_ms" --http / --min-success 0 --json >"$3"
}

# The longest http_probe of COUNT connections can take: every one waiting out its deadline.
probe_bound_s() {  # probe_bound_s COUNT
  echo $(( (($1 + probe_conc - 1) / probe_conc) * ((probe_timeout_ms + 999) / 1000) ))
}

run_point() {  # run_point MODE NAME RATE [FLOOD_KIND [FAMILY]]  (points/MODE/NAME.*.json)
  local mode=$1 idx=$2 rate=$3 flood_kind=${4:-syn} family=${5:-4} base="$out/points/$1/$2"
  local target
  target=$(target_of "$family" 80)
  mkdir -p "$out/points/$mode"
  fresh_state
  local flood_pid="" t0 t1 c0=0 c1=0 s0 s1
  # No flood and the maximum: enough connections for the p99 and for 99.9% to mean something.
  local count=$probe_count
  if [ "$flood_kind" = syn ] && { [ "$rate" = max ] || [ "$rate" = 0 ]; }; then count=$max_probe_count; fi
  # The flood must outlast the probe even when every connection waits out its deadline, or the
  # probe's last connections would run after the flood and count as served.
  local bound
  bound=$(probe_bound_s "$count")
  local flood_s=$(( bound + 5 > flood_max_s ? bound + 5 : flood_max_s ))
  if [ "$rate" != 0 ]; then
    local r=$rate
    [ "$rate" = max ] && r=0
    ip netns exec "$atk" taskset -c "$flood_cpu" "$synflood" "$flood_kind" --target "$target" --rate "$r" \
      --duration "$flood_s" --json >"$base.flood.json" 2>"$base.flood.err" &
    flood_pid=$!
    track_pid "$flood_pid"
    sleep "$warmup_s"
  fi
  local counters0='{}' counters1='{}' k0=0 k1=0
  [ -n "$syngate_pid" ] && { k0=$(date +%s.%N); counters0=$(syngate_counters); }
  t0=$(date +%s.%N); s0=$(softirq_ticks)
  [ -n "$syngate_pid" ] && c0=$(cpu_ticks "$syngate_pid")
  http_probe "$target" "$count" "$base.probe.json"
  t1=$(date +%s.%N); s1=$(softirq_ticks)
  [ -n "$syngate_pid" ] && c1=$(cpu_ticks "$syngate_pid")
  if [ -n "$syngate_pid" ]; then
    # The workers publish their counters every 100 ms: wait for the last probe packets to show.
    sleep 0.25
    k1=$(date +%s.%N); counters1=$(syngate_counters)
  fi
  local conntrack_count
  conntrack_count=$(nsx "$gw" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0)
  local rss=0
  [ -n "$syngate_pid" ] && rss=$(rss_kb "$syngate_pid")
  if [ -n "$flood_pid" ]; then
    kill -TERM "$flood_pid" 2>/dev/null || true
    wait "$flood_pid" || true
  else
    echo '{"sent":0,"pps":0,"elapsed_s":0}' >"$base.flood.json"
  fi
  python3 - "$base.gw.json" "$t0" "$t1" "$c0" "$c1" "$s0" "$s1" "$clk_tck" "$rss" "$conntrack_count" "$ncpu" \
    "$counters0" "$counters1" "$k0" "$k1" <<'EOF'
import json, sys
path, t0, t1, c0, c1, s0, s1, hz, rss, ct, ncpu, n0, n1, k0, k1 = sys.argv[1:]
wall = float(t1) - float(t0)
out = {
    "window_s": wall,
    "daemon_cpu_pct": 100.0 * (float(c1) - float(c0)) / int(hz) / wall if wall > 0 else 0,
    "softirq_pct_of_machine": 100.0 * (int(s1) - int(s0)) / int(hz) / wall / int(ncpu) if wall > 0 else 0,
    "daemon_rss_kb": int(rss),
    "gw_conntrack_entries": int(ct),
}
# syngate: what each path did around the probe window, per second.
n0, n1, k_wall = json.loads(n0 or "{}"), json.loads(n1 or "{}"), float(k1) - float(k0)
if n1 and k_wall > 0:
    out["xdp_enabled"] = n1.get("xdp_enabled", 0)
    for key in ("xdp_syn_answered", "xdp_forged_dropped", "xdp_cookie_valid", "nfqueue_cookies_sent", "nfqueue_packets"):
        out[key + "_per_s"] = round((n1.get(key, 0) - n0.get(key, 0)) / k_wall)
json.dump(out, open(path, "w"))
EOF
  log "$(python3 "$here/report.py" --point "$base.flood.json" "$base.probe.json" "$mode" "$flood_kind IPv$family $rate")"
}


# Every spoofed packet that reached srv so far (its raw PREROUTING counter rules).
reached_srv() {  # reached_srv 4|6
  if [ "$1" = 6 ]; then
    nsx "$srv" ip6tables -t raw -L PREROUTING -vnx | awk '$8 == "2001:2::/48" { print $1 }'
  else
    nsx "$srv" iptables -t raw -L PREROUTING -vnx | awk '$8 == "198.18.0.0/15" { print $1 }'
  fi
}

json_field() {  # json_field FILE KEY DEFAULT
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], sys.argv[3]))' "$1" "$2" "$3" \
    2>/dev/null || echo "$3"
}

# A 20 MB download over veth takes a tenth of a second: one alone is noise, the median of a few is not.
download_median() {  # download_median FAMILY OUTFILE -> the median (by speed) of download_repeats downloads
  for _ in $(seq "$download_repeats"); do download "$1" "$2"; done | sort -g -k1,1 | \
    awk '{ line[NR] = $0; if ($4 != 1) bad = 1 } END { split(line[int((NR + 1) / 2)], f, " ");
      print f[1], f[2], f[3], (bad ? 0 : f[4]) }'
}

download() {  # download FAMILY OUTFILE -> "bytes_per_s seconds http_code intact(0/1)"
  local host=10.10.3.2
  [ "$1" = 6 ] && host="[fd00:10:3::2]"
  rm -f "$2"
  local w
  w=$(nsx "$cli" curl -s -g -o "$2" --max-time "$download_max_s" -w '%{speed_download} %{time_total} %{http_code}' \
    "http://$host/big" 2>/dev/null) || true
  [ -n "$w" ] || w="0 $download_max_s 000"
  local intact=0
  [ -f "$2" ] && [ "$(sha256sum <"$2" | cut -d' ' -f1)" = "$big_sha" ] && intact=1
  rm -f "$2"
  echo "$w $intact"
}

# A forged-ACK flood from atk on the generator's CPU, in the background (its pid in ack_flood_pid),
# its result in BASE.json and its errors in BASE.err.
start_ack_flood() {  # start_ack_flood TARGET RATE SECONDS BASE [SYNFLOOD OPTION...]
  local target=$1 rate=$2 seconds=$3 base=$4
  shift 4
  ip netns exec "$atk" taskset -c "$flood_cpu" "$synflood" ack --target "$target" --rate "$rate" \
    --duration "$seconds" "$@" --json >"$base.json" 2>"$base.err" &
  ack_flood_pid=$!
  track_pid "$ack_flood_pid"
}
stop_ack_flood() {
  kill -TERM "$ack_flood_pid" 2>/dev/null || true
  wait "$ack_flood_pid" || true
}

# The download alone, then the same download while atk floods forged ACKs at the port, then new
# legitimate connections while the flood goes on.
run_ack() {  # run_ack MODE FAMILY [BASE]  (BASE.json; default points/MODE/ackFAMILY)
  local mode=$1 family=$2 base=${3:-"$out/points/$1/ack$2"}
  local target r=$ack_rate
  target=$(target_of "$family" 80)
  [ "$r" = max ] && r=0
  fresh_state
  local quiet_res flood_res reached0 reached1
  quiet_res=$(download_median "$family" "$tmp/dl")
  reached0=$(reached_srv "$family")
  local probe_bound
  probe_bound=$(probe_bound_s "$probe_count")
  start_ack_flood "$target" "$r" "$((download_repeats * download_max_s + probe_bound + 5))" "$base.flood"
  sleep "$warmup_s"
  flood_res=$(download_median "$family" "$tmp/dl")
  http_probe "$target" "$probe_count" "$base.probe.json"
  stop_ack_flood
  reached1=$(reached_srv "$family")
  # The same flood into atk's sink (see sink_ok): the generator's cost alone.
  local sink_res="" sink_target=10.10.9.1:80
  [ "$family" = 6 ] && sink_target="[fd00:10:9::1]:80"
  if ((sink_ok)); then
    start_ack_flood "$sink_target" "$r" "$((download_repeats * download_max_s + 5))" "$base.sink" \
      --dst-mac 02:00:00:00:00:01
    sleep "$warmup_s"
    sink_res=$(download_median "$family" "$tmp/dl")
    stop_ack_flood
  fi
  python3 - "$base.json" "$quiet_res" "$flood_res" "$(json_field "$base.flood.json" pps 0)" \
    "$((reached1 - reached0))" "$download_mb" "$base.probe.json" "$sink_res" "$(json_field "$base.sink.json" pps 0)" <<'EOF'
import json, sys
path, quiet, flood, pps, reached, mb, probe_path, sink, sink_pps = sys.argv[1:]
def parse(s):
    bps, secs, code, intact = s.split()
    return {"bytes_per_s": float(bps), "seconds": float(secs), "http_code": int(code), "intact": intact == "1"}
def ratio(a, b):
    return a["bytes_per_s"] / b["bytes_per_s"] if b["bytes_per_s"] > 0 else 0
q, f = parse(quiet), parse(flood)
probe = json.load(open(probe_path))
result = {"size_mb": int(mb), "no_flood": q, "flood": f, "flood_pps": round(float(pps)),
          "forged_acks_at_srv": int(reached),
          "new_connections": {"count": probe["count"],
                              "success_pct": probe["success_pct"], "connect_ms": probe["connect_ms"]},
          "speed_ratio": ratio(f, q)}
if sink:
    # generator_ratio: what the flood's generator alone leaves of the download; defence_ratio: what
    # the defence leaves of that (speed_ratio = their product, up to noise).
    s = parse(sink)
    result.update({"generator_alone": s, "generator_alone_pps": round(float(sink_pps)),
                   "generator_ratio": ratio(s, q), "defence_ratio": ratio(f, s)})
json.dump(result, open(path, "w"))
EOF
  log "$(python3 "$here/report.py" --ack "$base.json" "$mode" "$family")"
}

# Each malformed SYN kind, bounded, at the protected port; srv counts what arrives.
run_malformed() {  # run_malformed MODE FAMILY
  local mode=$1 family=$2 base="$out/points/$1/malformed$2"
  local target kind before after sent rc
  target=$(target_of "$family" 80)
  fresh_state
  : >"$base.tsv"
  for kind in $malform_kinds; do
    # IPv6 has no IP header options: synflood refuses that kind, so it is not run.
    [ "$family" = 6 ] && [ "$kind" = ip-options ] && continue
    before=$(reached_srv "$family")
    rc=0
    ip netns exec "$atk" taskset -c "$flood_cpu" timeout 30 "$synflood" syn --malform "$kind" --target "$target" \
      --rate "$malform_rate" --count "$malform_count" --duration 20 --json >"$base.$kind.json" 2>"$base.$kind.err" || rc=$?
    sent=$(json_field "$base.$kind.json" sent 0)
    sleep 0.3  # stragglers in flight through gw
    after=$(reached_srv "$family")
    printf '%s\t%s\t%s\t%s\n' "$kind" "$sent" "$((after - before))" "$rc" >>"$base.tsv"
  done
  log "$(python3 "$here/report.py" --malformed "$base.tsv" "$mode" "$family")"
}

# New connections per second of a real client that opens a connection per request (ab without
# keep-alive; nginx closes each, so the TIME_WAITs are srv's and cli never runs out of ports).
# Three runs, the median is reported.
run_connrate() {  # run_connrate MODE
  local mode=$1 base="$out/points/$1/connrate" i
  : >"$base.tsv"
  for i in 1 2 3; do
    # Each run starts from an empty conntrack table (see connrate_count).
    fresh_state
    nsx "$cli" ab -q -n "$connrate_count" -c "$connrate_conc" -s 5 -r "http://10.10.3.2/" >"$base.$i.txt" 2>&1 || true
    awk -v run="$i" '/^Requests per second:/ {rps = $4} /^Complete requests:/ {done = $3}
      /^Failed requests:/ {failed = $3} END {printf "%s\t%s\t%s\t%s\n", run, rps + 0, done + 0, failed + 0}' \
      "$base.$i.txt" >>"$base.tsv"
  done
  log "$(python3 "$here/report.py" --connrate "$base.tsv" "$mode")"
}

run_family_kinds() {  # run_family_kinds MODE FAMILY
  has_kind ack && run_ack "$1" "$2"
  has_kind malformed && run_malformed "$1" "$2"
  if has_kind mixed; then run_point "$1" "mixed$2" "$mixed_rate" mixed "$2"; fi
  return 0
}

tsecr_rejected() {  # srv's TcpExtTSEcrRejected
  nsx "$srv" awk '/^TcpExt:/ { if (!n) { for (i = 2; i <= NF; i++) k[i] = $i; n = 1 }
    else for (i = 2; i <= NF; i++) if (k[i] == "TSEcrRejected") print $i }' /proc/net/netstat
}

run_banner() {  # server-speaks-first check, no flood
  local mode=$1
  ((banner_count > 0)) || return 0
  fresh_state
  local rejected0 rejected1
  rejected0=$(tsecr_rejected)
  nsx "$cli" "$synflood" probe --target 10.10.3.2:2222 --count "$banner_count" --concurrency 10 \
    --timeout-ms 1000 --expect-banner --min-success 0 --json >"$out/points/$mode/banner.probe.json"
  rejected1=$(tsecr_rejected)
  # The mechanism behind a stall, not only its symptom: srv refusing the TSecr of a third ACK.
  echo "{\"srv_tsecr_rejected\": $((rejected1 - rejected0))}" >"$out/points/$mode/banner.srv.json"
  log "$(python3 "$here/report.py" --banner "$out/points/$mode/banner.probe.json" "$mode")"
}

# ---------------------------------------------------------------------------------------------
# The established kind: no SYN flood, the traffic the gateway's users pay for.

# One CPU's ticks from /proc/stat: "busy total softirq" (busy: everything but idle and iowait).
core_ticks() {  # core_ticks CPU
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $8 }' /proc/stat
}

# The wake-up interrupts (rescheduling and function-call IPIs) two CPUs have taken so far, then
# the times each went idle (cpuidle's entries, every state): "res_a cal_a res_b cal_b idle_a
# idle_b". A sleeping poller or process woken from the other CPU costs one IPI; in a VM each
# costs its sender an exit to the hypervisor, and one to a CPU that went idle (a halted vCPU) the
# most: the hypervisor must wake it. Without cpuidle the idle entries read 0.
idle_entries() {  # idle_entries CPU
  cat /sys/devices/system/cpu/cpu"$1"/cpuidle/state*/usage 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'
}
ipi_counts() {  # ipi_counts CPU_A CPU_B
  awk -v a=$(($1 + 2)) -v b=$(($2 + 2)) -v ia="$(idle_entries "$1")" -v ib="$(idle_entries "$2")" \
    '$1 == "RES:" { ra = $a; rb = $b } $1 == "CAL:" { ca = $a; cb = $b }
    END { print ra + 0, ca + 0, rb + 0, cb + 0, ia, ib }' /proc/interrupts
}

syngate_metrics_raw() {
  nsx "$gw" curl -s --max-time 2 "http://127.0.0.1:$syngate_metrics_port/metrics" 2>/dev/null | grep '^syngate_' || true
}

start_est_servers() {
  # No persistence (nothing written), bound to srv's address only, stopped by PID with the lab.
  ip netns exec "$srv" "${ep[@]}" redis-server --bind 10.10.3.2 --port 6379 --save '' --appendonly no \
    --protected-mode no --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" --maxclients 10000 &
  redis_pid=$!
  track_pid "$redis_pid"
  ip netns exec "$srv" "${ep[@]}" iperf3 -s -B 10.10.3.2 -p 5201 >"$tmp/iperf3-server.log" 2>&1 &
  iperf3_pid=$!
  track_pid "$iperf3_pid"
  # The IPv6 figures' server: the same port on srv's IPv6 address.
  ip netns exec "$srv" "${ep[@]}" iperf3 -s -B fd00:10:3::2 -p 5201 >"$tmp/iperf3-server6.log" 2>&1 &
  iperf3_pid6=$!
  track_pid "$iperf3_pid6"
  local i
  for i in $(seq 50); do
    nsx "$srv" redis-cli -h 10.10.3.2 -p 6379 ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  ((i < 50)) || { echo "run.sh: redis-server did not start: $(tail -n 5 "$tmp/redis.log")" >&2; exit 1; }
  kill -0 "$iperf3_pid" 2>/dev/null || { echo "run.sh: iperf3 -s did not start: $(cat "$tmp/iperf3-server.log")" >&2; exit 1; }
  kill -0 "$iperf3_pid6" 2>/dev/null || { echo "run.sh: iperf3 -s (IPv6) did not start: $(cat "$tmp/iperf3-server6.log")" >&2; exit 1; }
}

# Packets kernel SYNPROXY's conntrack refused: its INVALID DROP rule (0 in the other modes).
gw_invalid_drops() {
  nsx "$gw" iptables -L FORWARD -vnx | awk '$3 == "DROP" && /INVALID/ { n += $1 } END { print n + 0 }'
}

# srv's TCP counters that tell how its senders recovered: retransmission timeouts, SACK blocks it
# threw away (outside its window: a wrongly translated SACK), fast recoveries.
srv_tcp_counters() {
  nsx "$srv" awk '$1 ~ /^(Tcp|TcpExt):$/ { if (!(($1) in hdr)) { hdr[$1] = $0; next } split(hdr[$1], k)
    for (i = 2; i <= NF; i++) if (k[i] ~ /^(RetransSegs|TCPTimeouts|TCPSACKDiscard|TCPDSACKIgnoredOld|TCPDSACKIgnoredNoUndo|TCPSackRecovery|TCPRenoRecovery|TCPSACKReneging|TCPLossProbes|TCPSackFailures|TCPRenoFailures)$/) print k[i] "=" $i }' \
    /proc/net/snmp /proc/net/netstat | tr '\n' ' '
}

# Runs one measurement (CMD... from cli, its output in DIR/TEST.out) and records its window:
# DIR/TEST.win holds "t0 t1 core_busy0 core_total0 core_softirq0 busy1 total1 softirq1 daemon0
# daemon1 clk_tck exit_code" (the core: the gateway's, syngate's CPU), DIR/TEST.m0 and .m1 the
# daemon's metrics around it; in the offcore layout DIR/TEST.ends the same ticks of the clients'
# and servers' core ("busy0 total0 softirq0 busy1 total1 softirq1"): where a figure bound by
# those ends, not by the gateway, loses; and DIR/TEST.ipi the wake-up interrupts both cores took
# (ipi_counts, before then after). report.py reads the figure from the tool's own output.
est_measure() {  # est_measure DIR TEST CMD...
  local dir=$1 test=$2
  shift 2
  fresh_state
  local t0 t1 g0 g1 d0=0 d1=0 rc=0 i0
  : >"$dir/$test.m0"; : >"$dir/$test.m1"
  [ -n "$syngate_pid" ] && { syngate_metrics_raw >"$dir/$test.m0"; d0=$(cpu_ticks "$syngate_pid"); }
  i0=$(gw_invalid_drops)
  srv_tcp_counters >"$dir/$test.srv0"
  local perf_pid=
  if [ "$perf_record" = 1 ]; then
    perf record -q -a -g -o "$dir/$test.perf.data" >/dev/null 2>"$dir/$test.perf.err" &
    perf_pid=$!
    track_pid "$perf_pid"
    sleep 0.5  # perf maps every CPU's buffers before it samples
  fi
  local e0= w0=
  if [ "$layout" = offcore ]; then e0=$(core_ticks "$flood_cpu"); w0=$(ipi_counts "$syngate_cpu" "$flood_cpu"); fi
  g0=$(core_ticks "$syngate_cpu"); t0=$(date +%s.%N)
  nsx "$cli" "${ep[@]}" "$@" >"$dir/$test.out" 2>"$dir/$test.err" || rc=$?
  t1=$(date +%s.%N); g1=$(core_ticks "$syngate_cpu")
  if [ -n "$e0" ]; then
    echo "$e0 $(core_ticks "$flood_cpu")" >"$dir/$test.ends"
    echo "$w0 $(ipi_counts "$syngate_cpu" "$flood_cpu")" >"$dir/$test.ipi"
  fi
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null
    wait "$perf_pid" 2>/dev/null || true
  fi
  if [ -n "$syngate_pid" ]; then
    d1=$(cpu_ticks "$syngate_pid")
    # A client that failed (a stall, a reset): the connections syngate still holds, each in its
    # state, for the diagnosis (the counters name no connection).
    if [ "$rc" != 0 ]; then
      nsx "$gw" "$syngate" flows --config "$tmp/syngate.toml" >"$dir/$test.flows" 2>&1 || true
    fi
    sleep 0.25  # the workers publish their counters every 100 ms
    syngate_metrics_raw >"$dir/$test.m1"
  fi
  echo "$t0 $t1 $g0 $g1 $d0 $d1 $clk_tck $rc" >"$dir/$test.win"
  echo "$i0 $(gw_invalid_drops)" >"$dir/$test.invalid"
  srv_tcp_counters >"$dir/$test.srv1"
  log "$(python3 "$here/report.py" --est-point "$dir" "$test" "$mode")"
}

run_established() {  # run_established MODE REPEAT
  local mode=$1 dir="$out/points/$1/est/$2" s=$est_seconds
  mkdir -p "$dir"
  # Every client has a deadline well past its own length: a stalled run is a result (0), not a hang.
  local bound=$((s + 20))
  if has_est_test iperf-down; then
    est_measure "$dir" iperf-down timeout "$bound" iperf3 -c 10.10.3.2 -p 5201 -R -t "$s" -O 1 -J --connect-timeout 3000
  fi
  if has_est_test iperf-paced; then
    est_measure "$dir" iperf-paced timeout "$bound" iperf3 -c 10.10.3.2 -p 5201 -R -b "${paced_gbit}G" -t "$s" -O 1 -J \
      --connect-timeout 3000
  fi
  if has_est_test iperf-up4; then
    est_measure "$dir" iperf-up4 timeout "$bound" iperf3 -c 10.10.3.2 -p 5201 -P 4 -t "$s" -O 1 -J --connect-timeout 3000
  fi
  if has_est_test wrk; then
    est_measure "$dir" wrk timeout "$bound" wrk -t 2 -c 50 -d "${s}s" --timeout 2s "http://10.10.3.2/"
  fi
  # A connection per request, as the connrate kind (its count and concurrency); SIGINT makes ab
  # print what it did so far.
  if has_est_test ab; then
    est_measure "$dir" ab timeout -s INT 60 ab -q -n "$connrate_count" -c "$connrate_conc" -s 5 -r "http://10.10.3.2/"
  fi
  if has_est_test redis; then
    est_measure "$dir" redis timeout 60 redis-benchmark -h 10.10.3.2 -p 6379 -k 0 -c "$connrate_conc" \
      -n "$connrate_count" -t get --csv
  fi
  if has_est_test loss; then
    # 1% of the data segments lost between gw and cli, after the gateway (cli sends SACKs, srv
    # retransmits, both through the gateway). Dropped as cli receives them (no netem in every
    # kernel; a drop in srv's OUTPUT would be a local send failure, not a loss): srv sends
    # MSS-sized segments (its segmentation offloads off) and cli does not coalesce them (GRO off),
    # or one drop would take out a whole 64 KB super-packet.
    nsx "$srv" ethtool -K "$srv_if" tso off gso off >/dev/null
    nsx "$cli" ethtool -K "$cli_if" gro off >/dev/null
    local drop=(-t raw -p tcp -s 10.10.3.2 --sport 5201 -m statistic --mode random --probability 0.01 -j DROP)
    nsx "$cli" iptables -A PREROUTING "${drop[@]}"
    est_measure "$dir" loss timeout "$bound" iperf3 -c 10.10.3.2 -p 5201 -R -t "$s" -O 1 -J --connect-timeout 3000
    nsx "$cli" iptables -t raw -L PREROUTING -vnx | awk '/statistic/ { print $1 }' >"$dir/loss.dropped"
    nsx "$cli" iptables -D PREROUTING "${drop[@]}"
    nsx "$srv" ethtool -K "$srv_if" gso on >/dev/null
    [ "$layout" = offcore ] || nsx "$srv" ethtool -K "$srv_if" tso on >/dev/null
    if [ "$layout" = offcore ]; then nsx "$cli" ethtool -K "$cli_if" gro on >/dev/null; fi
  fi
  # The same over IPv6 (the one-stream download, the upload, keep-alive and a connection per
  # request): the tc programs and the fast path have an IPv6 path of their own.
  if has_est_test iperf-down-v6; then
    est_measure "$dir" iperf-down-v6 timeout "$bound" iperf3 -c fd00:10:3::2 -p 5201 -R -t "$s" -O 1 -J --connect-timeout 3000
  fi
  if has_est_test iperf-up4-v6; then
    est_measure "$dir" iperf-up4-v6 timeout "$bound" iperf3 -c fd00:10:3::2 -p 5201 -P 4 -t "$s" -O 1 -J --connect-timeout 3000
  fi
  if has_est_test wrk-v6; then
    est_measure "$dir" wrk-v6 timeout "$bound" wrk -t 2 -c 50 -d "${s}s" --timeout 2s "http://[fd00:10:3::2]/"
  fi
  if has_est_test ab-v6; then
    est_measure "$dir" ab-v6 timeout -s INT 60 ab -q -n "$connrate_count" -c "$connrate_conc" -s 5 -r "http://[fd00:10:3::2]/"
  fi
  # The forged-ACK flood has nothing to defend without a defence: srv's own stack takes it.
  if has_est_test ack && [ "$mode" != none ]; then
    run_ack "$mode" 4 "$dir/ack"
  fi
  if has_est_test ack-v6 && [ "$mode" != none ]; then
    run_ack "$mode" 6 "$dir/ack-v6"
  fi
}

# ---------------------------------------------------------------------------------------------
start_banner
has_kind established && start_est_servers
mkdir -p "$tmp/www"
head -c "$((download_mb * 1024 * 1024))" /dev/urandom >"$tmp/www/big"
# nginx's workers run unprivileged and mktemp -d is 0700.
chmod 755 "$tmp" "$tmp/www"
chmod 644 "$tmp/www/big"
big_sha=$(sha256sum <"$tmp/www/big" | cut -d' ' -f1)
{
  echo "{"
  echo "\"kernel\": \"$(uname -r)\", \"cpus\": $ncpu, \"flood_cpu\": $flood_cpu, \"syngate_cpu\": $syngate_cpu,"
  echo "\"rates\": \"$rates\", \"probe_count\": $probe_count, \"probe_concurrency\": $probe_conc,"
  echo "\"probe_timeout_ms\": $probe_timeout_ms, \"flood_max_s\": $flood_max_s, \"warmup_s\": $warmup_s,"
  echo "\"kinds\": \"$kinds\", \"malform_kinds\": \"$malform_kinds\", \"malform_count\": $malform_count,"
  echo "\"malform_rate\": $malform_rate, \"download_mb\": $download_mb, \"ack_rate\": \"$ack_rate\", \"mixed_rate\": $mixed_rate,"
  echo "\"download_repeats\": $download_repeats, \"layout\": \"$layout\", \"napi_poller_pid\": \"$poller\","
  echo "\"max_probe_count\": $max_probe_count, \"connrate_count\": $connrate_count, \"connrate_concurrency\": $connrate_conc,"
  echo "\"modes\": \"$modes\", \"repeats\": $repeats, \"est_seconds\": $est_seconds, \"est_tests\": \"$est_tests\","
  echo "\"napi_defer_us\": $napi_defer_us, \"gw_napi_defer_us\": $gw_napi_defer_us, \"protected_ports\": \"$protected_ports\""
  echo "}"
} >"$out/config.json"

n_modes=$(wc -w <<<"$modes")
n_rates=$(wc -w <<<"$rates")
mode_no=0
lab_start=$SECONDS
# The kinds that run mode by mode (all but established, which interleaves the modes itself).
flood_kinds=${kinds//established/}
for mode in $modes; do
  [ -n "${flood_kinds// /}" ] || break
  mode_no=$((mode_no + 1))
  mkdir -p "$out/points/$mode"
  if ! mode_up "$mode"; then
    log "$mode: SKIPPED: $skip_reason"
    printf '%s\n' "$skip_reason" >"$out/points/$mode/skipped"
    continue
  fi
  log "mode $mode_no/$n_modes: $mode ($((SECONDS - lab_start)) s so far)"
  if has_kind syn; then
    idx=0
    for rate in $rates; do
      log "  $mode: SYN flood point $((idx + 1))/$n_rates (rate $rate), $((n_modes - mode_no)) mode(s) after this one"
      run_point "$mode" "$idx" "$rate"
      idx=$((idx + 1))
    done
    run_banner "$mode"
  fi
  if [ -z "$kind_modes" ] || [[ " $kind_modes " == *" $mode "* ]]; then
    run_family_kinds "$mode" 4
    if has_kind ipv6; then run_family_kinds "$mode" 6; fi
    if has_kind connrate; then run_connrate "$mode"; fi
  fi
  mode_down "$mode"
done

if has_kind established; then
  # Shipped configuration from here on (lab_policy), and every mode once per repeat.
  lab_policy=0
  for rep in $(seq "$repeats"); do
    for mode in $modes; do
      mkdir -p "$out/points/$mode/est/$rep"
      if ! mode_up "$mode"; then
        log "$mode: SKIPPED in repeat $rep: $skip_reason"
        printf '%s\n' "$skip_reason" >"$out/points/$mode/est/$rep/skipped"
        mode_down "$mode"
        continue
      fi
      log "established: repeat $rep/$repeats, mode $mode ($((SECONDS - lab_start)) s so far)"
      run_established "$mode" "$rep"
      mode_down "$mode"
      [ -f "$out/$mode.log" ] && mv "$out/$mode.log" "$out/points/$mode/est/$rep/syngate.log"
    done
  done
  log "established: $repeats repeat(s) in $((SECONDS - lab_start)) s"
fi

python3 "$here/report.py" "$out"
log "report: $out/report.json, table: $out/table.md, chart: $(ls "$out"/chart.* 2>/dev/null | head -1)"
