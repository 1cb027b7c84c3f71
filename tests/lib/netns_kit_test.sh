#!/usr/bin/env bash
# The namespace kit (netns.sh) itself: a script that registers namespaces, a veth pair and
# background processes leaves none of them behind, whether it passes, fails or is interrupted, and
# its exit status is kept. Only names and PIDs this test makes are looked at.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/netns.sh"
require_root
fail() { echo "FAIL: $*"; exit 1; }

# A child script on the kit: two namespaces, a veth pair between them, a sleeper in each (one
# registered, one only inside a namespace) and one in the root namespace, registered; then it
# writes what it made and ends as $2 says.
child() {  # child TAG exit|fail|signal
  bash -c '
    set -euo pipefail
    source "$1/netns.sh"
    a="sgkit-$2-a"; b="sgkit-$2-b"; made=$3
    netns_init
    netns_on_exit hook
    hook() { echo "hook rc=$1" >>"$made"; }
    ns_add "$a" "$b"
    veth "$a" v0 "$b" v1
    ip -n "$a" link set v0 up; ip -n "$b" link set v1 up
    bg_in "$a" sleep 60
    echo "pid $BG_PID" >>"$3"
    ip netns exec "$b" sleep 60 &
    echo "pid $!" >>"$3"
    sleep 60 & track_pid $!
    echo "pid $!" >>"$3"
    wait_until 2 ip -n "$a" link show v0 >/dev/null || exit 3
    echo "ns $a" >>"$3"; echo "ns $b" >>"$3"
    case $4 in
      exit) exit 0 ;;
      fail) exit 5 ;;
      signal) kill -TERM $$; sleep 5 ;;
    esac' kit "$here" "$1" "$tmp/$1.made" "$2"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for how in exit:0 fail:5 signal:130; do
  mode=${how%:*} want=${how#*:}
  tag="$$$mode"
  rc=0; child "$tag" "$mode" || rc=$?
  [[ $rc == "$want" ]] || fail "$mode: exit status $rc, expected $want"
  grep -q "^hook rc=$want$" "$tmp/$tag.made" || fail "$mode: exit hook not run with the status: $(cat "$tmp/$tag.made")"
  (( $(grep -c '^pid ' "$tmp/$tag.made") == 3 )) || fail "$mode: not every process started"
  while read -r kind what; do
    case $kind in
      pid) wait_exit "$what" 2 || fail "$mode: process $what left running" ;;
      ns) ip netns list | grep -qw "$what" && fail "$mode: namespace $what left behind" ;;
    esac
  done <"$tmp/$tag.made"
  echo "ok: $mode (exit $rc): namespaces deleted, processes gone, hook run"
done

# The helpers: wait_until gives up, wait_exit sees an exit, stop_pid reaps and forgets.
wait_until 1 false && fail "wait_until succeeded on false"
sleep 0.2 & p=$!
wait_exit "$p" 2 || fail "wait_exit missed an exit"
sleep 60 & p=$!
# Signalled before it has become `sleep`, the forked shell may still hold the script's own traps
# and live on (seen when the script runs as a background job): stop what was started.
wait_until 2 grep -qx sleep "/proc/$p/comm" || fail "the background sleep did not start"
track_pid "$p"
stop_pid "$p"
kill -0 "$p" 2>/dev/null && fail "stop_pid left $p running"
[[ " ${NETNS_PIDS[*]} " != *" $p "* ]] || fail "stop_pid kept $p registered"
echo "PASS: the kit removes what a script registered on every exit path"
