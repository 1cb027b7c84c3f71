#!/usr/bin/env bash
# Moves the receive work of a veth pair off the sending CPU, the way a NIC with another machine
# behind it would: veth's NAPI mode on the receiving end (GRO on the peer, TSO off on the
# sender, without which veth hands TCP frames straight to the sending CPU's backlog), with a
# threaded NAPI poller pinned to CPU. veth's 256-entry ring then pushes back on the sender like
# a NIC's transmit ring. The receiving device's name must be unique on the machine: the poller
# thread is found by it (napi/<dev>-<id>). Prints the poller's PID.
# Usage (root): bench/lab/offcore_receiver.sh TX_NS TX_DEV RX_NS RX_DEV CPU
set -euo pipefail
[ $# = 5 ] || { echo "usage: offcore_receiver.sh TX_NS TX_DEV RX_NS RX_DEV CPU" >&2; exit 2; }
tx_ns=$1 tx_dev=$2 rx_ns=$3 rx_dev=$4 cpu=$5
ip netns exec "$tx_ns" ethtool -K "$tx_dev" tso off >/dev/null
ip netns exec "$rx_ns" ethtool -K "$rx_dev" gro on >/dev/null
ip netns exec "$rx_ns" sh -c "echo 1 > /sys/class/net/$rx_dev/threaded"
poller=$(pgrep -x "napi/$rx_dev-[0-9]+" | head -1 || true)
[ -n "$poller" ] || { echo "offcore_receiver.sh: no NAPI thread for $rx_dev (kernel without threaded NAPI?)" >&2; exit 2; }
taskset -p -c "$cpu" "$poller" >/dev/null
echo "$poller"
