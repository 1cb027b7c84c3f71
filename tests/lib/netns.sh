# The network-namespace kit of the shell tests and the lab (bench/lab/run.sh): one root check, one
# registry of the namespaces and background processes a script creates, and one EXIT trap that
# removes them on every exit path while keeping the script's exit status.
#
#   source "$(dirname "$0")/../lib/netns.sh"
#   require_root                       # exit 77 (ctest: skipped) unless root
#   netns_init                         # the trap; call once, before ns_add
#   netns_on_exit FN                   # FN runs at exit after the teardown (logs, temp dirs)
#   ns_add NAME...                     # ip netns add, loopback up, registered for teardown
#   veth NS_A IF_A NS_B IF_B           # a veth pair created directly inside the two namespaces
#   bg_in NS CMD...                    # CMD in NS in the background; PID registered, in $BG_PID
#   track_pid PID                      # registers a PID started another way
#   untrack_pid PID                    # forgets a PID the script has reaped itself
#   wait_until SECONDS CMD...          # polls CMD every 50 ms; fails after SECONDS
#   wait_exit PID SECONDS              # until PID is gone (after a signal); fails if it is not
#   stop_pid PID [SIGNAL]              # signal (TERM), reap and forget a PID of ours
#
# Only what is registered here is touched: the namespaces this script created (a process still
# inside one of them can only have been started by this script) and the PIDs it started. Nothing
# in the root namespace is changed, and nothing is killed by name.

# Sourced once (a library such as tests/gateway/lib.sh may already have done it).
[[ -n ${NETNS_KIT:-} ]] && return 0
NETNS_KIT=1

require_root() {
  [[ $(id -u) == 0 ]] || { echo "SKIP: ${1:-needs root (network namespaces)}"; exit 77; }
}

NETNS_LIST=()
NETNS_PIDS=()
NETNS_EXIT_HOOKS=()

netns_init() {
  trap netns_exit EXIT
  trap 'exit 130' INT TERM
}

netns_on_exit() { NETNS_EXIT_HOOKS+=("$@"); }

ns_add() {
  local ns
  for ns in "$@"; do
    ip netns add "$ns"
    NETNS_LIST+=("$ns")
    ip -n "$ns" link set lo up
  done
}

veth() {  # veth NS_A IF_A NS_B IF_B
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
}

track_pid() { NETNS_PIDS+=("$@"); }

# A reaped PID may be reused by another process: the teardown must not signal it.
untrack_pid() {
  local keep=() p
  for p in "${NETNS_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  NETNS_PIDS=("${keep[@]}")
}

# Output goes to $BG_LOG (default /dev/null): set it for one call with BG_LOG=file bg_in ...
bg_in() {
  local ns=$1; shift
  ip netns exec "$ns" "$@" >>"${BG_LOG:-/dev/null}" 2>&1 &
  BG_PID=$!
  NETNS_PIDS+=("$BG_PID")
}

wait_until() {  # wait_until SECONDS CMD...
  local limit=$1 i; shift
  for ((i = 0; i < limit * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  return 1
}

wait_exit() {  # wait_exit PID SECONDS
  local pid=$1 limit=${2:-5} i
  for ((i = 0; i < limit * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  return 1
}

stop_pid() {  # stop_pid PID [SIGNAL]
  kill -"${2:-TERM}" "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  untrack_pid "$1"
}

# Kills the registered PIDs (TERM, up to a second to exit, then KILL), whatever still runs inside
# the registered namespaces, and deletes them. The kit can be used again afterwards (a fresh
# topology).
netns_reset() {
  local pid ns i alive
  for pid in "${NETNS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 20; i++)); do
    alive=0
    for pid in "${NETNS_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && { alive=1; break; }; done
    ((alive)) || break
    sleep 0.05
  done
  for pid in "${NETNS_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ns in "${NETNS_LIST[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  for ns in "${NETNS_LIST[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  for pid in "${NETNS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  NETNS_PIDS=()
  NETNS_LIST=()
}

netns_exit() {
  local rc=$? hook
  set +e
  netns_reset
  for hook in "${NETNS_EXIT_HOOKS[@]}"; do "$hook" "$rc"; done
  exit "$rc"
}
