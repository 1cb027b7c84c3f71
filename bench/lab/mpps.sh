#!/usr/bin/env bash
# Measures the generator's raw speed on one core: two network namespaces joined by a veth pair,
# the receiver dropping everything in raw PREROUTING, the generator pinned to one core (SCHED_FIFO,
# so the builds of a shared machine do not take it), unlimited rate, bounded by duration.
#
# On veth the receiver's work normally runs on the sender's CPU: veth_xmit hands the frame to
# the peer's backlog on the current CPU, and the softirq that drains it runs there too, so the
# whole receiving IP stack is charged to the generator. A real NIC sends to another machine. To
# measure the generator rather than the receiver, the default layout ("offcore") moves the
# receive work to another core (offcore_receiver.sh). "shared" keeps the classic layout for
# comparison.
#
# Usage (root): bench/lab/mpps.sh [SYNFLOOD_BINARY] [SECONDS] [CPU] [offcore|shared|both] [ring|mmsg] [4|6]
# Prints one JSON object per layout: the generator's own report plus the receiver's count.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/flood/synflood}
seconds=${2:-5}
cpu=${3:-1}
layouts=${4:-both}
method=${5:-ring}
family=${6:-4}   # 6: an IPv6 flood (spoofed from 2001:2::/48) at [fd00:99::2]:80
case $family in 4|6) ;; *) echo "mpps.sh: family must be 4 or 6" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "mpps.sh: no synflood binary at $bin (build it first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "mpps.sh: needs root (network namespaces)" >&2; exit 2; }
case $layouts in offcore|shared) ;; both) layouts="offcore shared" ;;
  *) echo "mpps.sh: layout must be offcore, shared or both" >&2; exit 2 ;; esac
ncpu=$(nproc)
other=$(( (cpu + 1) % ncpu ))

tx="sgmpps-tx-$$"
rx="sgmpps-rx-$$"
rxdev="mrx$$"   # unique, so the NAPI thread (napi/<dev>-<id>) is ours
source "$here/../../tests/lib/netns.sh"
netns_init

run_layout() {
  local layout=$1
  netns_reset
  ns_add "$tx" "$rx"
  veth "$tx" veth0 "$rx" "$rxdev"
  ip -n "$tx" addr add 10.99.0.1/24 dev veth0
  ip -n "$rx" addr add 10.99.0.2/24 dev "$rxdev"
  ip -n "$tx" addr add fd00:99::1/64 dev veth0 nodad
  ip -n "$rx" addr add fd00:99::2/64 dev "$rxdev" nodad
  ip -n "$tx" link set veth0 up
  ip -n "$rx" link set "$rxdev" up
  ip netns exec "$rx" iptables -t raw -A PREROUTING -p tcp --dport 80 -j DROP
  ip netns exec "$rx" ip6tables -t raw -A PREROUTING -p tcp --dport 80 -j DROP
  local poller=""
  if [ "$layout" = offcore ]; then
    [ "$ncpu" -ge 2 ] || { echo "mpps.sh: offcore needs two CPUs" >&2; return 2; }
    poller=$("$here/offcore_receiver.sh" "$tx" veth0 "$rx" "$rxdev" "$other")
  fi
  local mac
  mac=$(ip -n "$rx" -br link show "$rxdev" | awk '{print $3}')
  local receiver="softirq on the generator's CPU"
  [ -z "$poller" ] || receiver="NAPI thread $poller on CPU $other"
  echo "layout $layout: IPv$family, generator on CPU $cpu (tx method $method), receiver $receiver, ${seconds}s" >&2
  local report dropped
  local target=10.99.0.2:80 filter=iptables
  [ "$family" = 6 ] && { target='[fd00:99::2]:80'; filter=ip6tables; }
  report=$(ip netns exec "$tx" chrt -f 50 taskset -c "$cpu" "$bin" syn --target "$target" --rate 0 \
    --duration "$seconds" --iface veth0 --dst-mac "$mac" --tx-method "$method" --json) || true
  # synflood exits 1 when any frame failed to send; the report (send_errors, error) says how many
  dropped=$(ip netns exec "$rx" "$filter" -t raw -nvxL PREROUTING | awk 'NR==3 {print $1}')
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j["layout"]=sys.argv[2]; j["receiver_dropped"]=int(sys.argv[3]); print(json.dumps(j, sort_keys=True))' \
    "$report" "$layout" "$dropped"
}

for layout in $layouts; do run_layout "$layout"; done
