# Two network namespaces joined by a veth pair, for the synflood tests: $tx (veth0) and $rx
# (veth1), with the given addresses (IPv6 ones without DAD, usable at once), a temp dir $tmp, and
# a trap that ends every process inside them, deletes them and $tmp on every exit path, and
# keeps the test's own exit status. Linked to nothing else.
#   source "$(dirname "$0")/pair.sh"; pair_up NAME "TX_ADDR/LEN..." "RX_ADDR/LEN..."
pair_up() {
  tx="sg$1-tx-$$"; rx="sg$1-rx-$$"
  tmp=$(mktemp -d)
  trap pair_down EXIT
  trap 'exit 130' INT TERM
  ip netns add "$tx"; ip netns add "$rx"
  ip -n "$tx" link add veth0 type veth peer name veth1 netns "$rx"
  local a
  for a in $2; do ip -n "$tx" addr add "$a" dev veth0 $([[ $a == *:* ]] && echo nodad); done
  for a in $3; do ip -n "$rx" addr add "$a" dev veth1 $([[ $a == *:* ]] && echo nodad); done
  for ns in "$tx" "$rx"; do ip -n "$ns" link set lo up; done
  ip -n "$tx" link set veth0 up; ip -n "$rx" link set veth1 up
}

pair_down() {
  local rc=$? ns p
  set +e
  for ns in "$tx" "$rx"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  sleep 0.1
  for ns in "$tx" "$rx"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$tmp"
  exit "$rc"
}

fail() { echo "FAIL: $*" >&2; exit 1; }
