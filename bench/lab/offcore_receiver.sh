#!/usr/bin/env bash
# Moves the receive work of a veth pair off the sending CPU, the way a NIC with another machine
# behind it would: veth's NAPI mode on the receiving end (GRO on the peer, TSO off on the
# sender, without which veth hands TCP frames straight to the sending CPU's backlog), with a
# threaded NAPI poller pinned to CPU. veth's 256-entry ring then pushes back on the sender like
# a NIC's transmit ring. The receiving device's name must be unique on the machine: the poller
# thread is found by it (napi/<dev>-<id>). Prints the poller's PID.
# DEFER_US (default 0: off) makes the poller hold off as a NIC's interrupt coalescing does: after
# a poll it keeps the ring to itself for that long (gro_flush_timeout, napi_defer_hard_irqs 2),
# polling again on its own timer, so a sender finds it scheduled instead of waking it from the
# other CPU (an IPI, in a VM an exit, per wake-up).
# Usage (root): bench/lab/offcore_receiver.sh TX_NS TX_DEV RX_NS RX_DEV CPU [DEFER_US]
set -euo pipefail
[ $# = 5 ] || [ $# = 6 ] || { echo "usage: offcore_receiver.sh TX_NS TX_DEV RX_NS RX_DEV CPU [DEFER_US]" >&2; exit 2; }
tx_ns=$1 tx_dev=$2 rx_ns=$3 rx_dev=$4 cpu=$5 defer_us=${6:-0}
ip netns exec "$tx_ns" ethtool -K "$tx_dev" tso off >/dev/null
ip netns exec "$rx_ns" ethtool -K "$rx_dev" gro on >/dev/null
ip netns exec "$rx_ns" sh -c "echo 1 > /sys/class/net/$rx_dev/threaded"
if [ "$defer_us" != 0 ]; then
  ip netns exec "$rx_ns" sh -c "echo $((defer_us * 1000)) > /sys/class/net/$rx_dev/gro_flush_timeout &&
    echo 2 > /sys/class/net/$rx_dev/napi_defer_hard_irqs"
fi
poller=$(pgrep -x "napi/$rx_dev-[0-9]+" | head -1 || true)
[ -n "$poller" ] || { echo "offcore_receiver.sh: no NAPI thread for $rx_dev (kernel without threaded NAPI?)" >&2; exit 2; }
taskset -p -c "$cpu" "$poller" >/dev/null
echo "$poller"
