# Two network namespaces joined by a veth pair, for the synflood tests: $tx (veth0) and $rx
# (veth1), with the given addresses (IPv6 ones without DAD, usable at once), a temp dir $tmp, and
# the namespace kit's trap (tests/lib/netns.sh), which ends every process inside them, deletes them
# and $tmp on every exit path, and keeps the test's own exit status. Linked to nothing else.
#   source "$(dirname "$0")/pair.sh"; pair_up NAME "TX_ADDR/LEN..." "RX_ADDR/LEN..."
source "$(dirname "${BASH_SOURCE[0]}")/../lib/netns.sh"

pair_up() {
  tx="sg$1-tx-$$"; rx="sg$1-rx-$$"
  tmp=$(mktemp -d)
  netns_init
  netns_on_exit pair_down
  ns_add "$tx" "$rx"
  veth "$tx" veth0 "$rx" veth1
  local a
  for a in $2; do ip -n "$tx" addr add "$a" dev veth0 $([[ $a == *:* ]] && echo nodad); done
  for a in $3; do ip -n "$rx" addr add "$a" dev veth1 $([[ $a == *:* ]] && echo nodad); done
  ip -n "$tx" link set veth0 up; ip -n "$rx" link set veth1 up
}

pair_down() { rm -rf "$tmp"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
