#!/usr/bin/env bash
# The Debian package under a real systemd: a Debian 12 root (tests/systemd/root.sh, cached) is
# booted with systemd-nspawn as the gateway namespace of the lab (tests/gateway/lib.sh):
#
#   cli (curl) --- [ gw: booted Debian 12, systemd PID 1, syngate.service ] --- srv (nginx)
#
# The .deb just built is installed in it with dpkg, and every check goes through systemctl:
#   - the shipped configuration names no service: `systemctl enable --now` is refused with the
#     reason; once a service is configured it is active (READY), with the live STATUS line;
#   - the main process runs as the syngate user with only the unit's capabilities;
#   - the client's connections are answered with cookies (the metrics count them);
#   - `systemctl reload` (no /bin/kill in this minimal root) applies a policy change during a
#     download, which arrives intact;
#   - kill -9 of the main process: systemd restarts it, a download arrives intact;
#   - SIGSTOP: the watchdog restarts it within WatchdogSec, the journal says why;
#   - stop keeps the rules; dpkg -r removes them and keeps config and state; dpkg -P deletes them
#     (deploy/README.md, section 7).
# The container's root is an overlay on the cached root in a private mount namespace: nothing
# of it outlives the test, and the host's / is never modified.
#   systemd_test.sh BUILD SYNGATE
# IPTABLES=legacy runs it all with gateway.iptables = "legacy" (default: the configuration's auto,
# which is nft on Debian 12).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:?usage: systemd_test.sh BUILD SYNGATE}" && pwd)
source "$here/../gateway/lib.sh"
lab_init "${2:?syngate binary}"
for tool in debootstrap systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (scripts/deps.sh installs it)"; exit 77; }
done

t_start=$SECONDS
log "cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$LAB_DIR/out" > "$LAB_DIR/cpack.log" 2>&1 ||
  { cat "$LAB_DIR/cpack.log"; fail "cpack failed"; }
deb=$(ls "$LAB_DIR"/out/*.deb)
t0=$SECONDS
root=$("$here/root.sh" "$deb") || fail "no Debian 12 root"
log "root $root ready in $((SECONDS - t0)) s"

lab_up
start_nginx
serve_big 4
small_client_rmem

# ---- The container: systemd as PID 1 in the gateway namespace ----
CT_PID=""
NSPAWN_PID=""
ct_down() {
  if [[ $1 != 0 && -n $CT_PID ]]; then
    echo "---- the container's journal for syngate (tail) ----"
    nsenter -t "$CT_PID" -a journalctl -u syngate --no-pager -o short-precise 2>&1 | tail -n 40
  fi
  if [[ -n $NSPAWN_PID ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true  # nspawn powers the container off
    for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPAWN_PID" 2>/dev/null || true
  fi
}
# Before the kit's teardown (tests/lib/netns.sh), which would kill the container's processes
# with its namespace: the journal while it is there, then an orderly poweroff.
trap 'rc=$?; set +e; ct_down $rc; (exit $rc); netns_exit' EXIT

mkdir -p "$LAB_DIR/upper" "$LAB_DIR/work" "$LAB_DIR/merged" "$LAB_DIR/share"
cp "$deb" "$LAB_DIR/share/syngate.deb"
# /run is no tmpfs on these machines and nspawn refuses to start without one on
# /run/systemd/nspawn: both mounts live and die with this private mount namespace.
unshare --mount --propagation private bash -c '
  set -e
  mkdir -p /run/systemd/nspawn
  mount -t tmpfs tmpfs /run/systemd/nspawn
  mount -t overlay overlay -o lowerdir="$1",upperdir="$2/upper",workdir="$2/work" "$2/merged"
  exec systemd-nspawn -D "$2/merged" -b --register=no --keep-unit --quiet -M "sgt$3" \
    --network-namespace-path="/run/netns/$4" --capability=all \
    --system-call-filter="bpf perf_event_open" --bind-ro="$2/share:/mnt/share"
' ct "$root" "$LAB_DIR" "$LAB_ID" "$NS_GW" > "$LAB_DIR/console.log" 2>&1 < /dev/null &
NSPAWN_PID=$!
track_pid "$NSPAWN_PID"
# The container's PID 1 (systemd): nspawn's child in a PID namespace of its own, once it runs
# systemd (before that exec it can be a helper of nspawn's that goes away: CI once took one, and
# every nsenter after it failed with "stat of /proc/PID/ns/user failed").
for _ in $(seq 200); do
  for p in $(pgrep -P "$NSPAWN_PID" 2>/dev/null || true); do
    [[ $(readlink "/proc/$p/ns/pid" 2>/dev/null) != "$(readlink /proc/self/ns/pid)" ]] || continue
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == systemd ]] && CT_PID=$p
  done
  [[ -n $CT_PID ]] && break
  kill -0 "$NSPAWN_PID" 2>/dev/null || fail "systemd-nspawn exited: $(tail -20 "$LAB_DIR/console.log")"
  sleep 0.1
done
[[ -n $CT_PID ]] || fail "no container PID 1: $(tail -20 "$LAB_DIR/console.log")"
ct() { nsenter -t "$CT_PID" -a "$@"; }
# "offline" until its manager listens, then "starting" until the boot is done.
state=""
for _ in $(seq 600); do
  state=$(ct systemctl is-system-running 2>&1 || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 0.1
done
[[ $state == running || $state == degraded ]] || fail "the container did not boot: $state; $(tail -20 "$LAB_DIR/console.log")"
[[ $state == degraded ]] && log "booted degraded: $(ct systemctl --failed --no-legend --plain | tr '\n' ';')"
log "booted: systemd $(ct systemctl --version | head -1 | cut -d' ' -f2), $state"
pass "a Debian 12 root booted under systemd-nspawn in the lab's gateway namespace"

ct test ! -e /bin/kill || fail "this root has /bin/kill: not the minimal root the reload must work on"
ct dpkg -i /mnt/share/syngate.deb > "$LAB_DIR/dpkg-i.log" 2>&1 || fail "dpkg -i: $(cat "$LAB_DIR/dpkg-i.log")"
ct getent passwd syngate > /dev/null || fail "the package did not create the syngate user"
[[ $(ct stat -c '%U %a' /var/lib/syngate) == "syngate 700" ]] || fail "/var/lib/syngate: $(ct stat -c '%U %a' /var/lib/syngate)"
[[ $(ct systemctl is-enabled syngate 2>&1 || true) == disabled ]] || fail "the package enabled the unit"

# ---- Before configuring: refused, with the reason ----
ct systemctl enable --now syngate > "$LAB_DIR/enable1.log" 2>&1 && fail "the shipped configuration started"
ct systemctl is-active syngate > /dev/null && fail "syngate is active with the shipped configuration"
reason=$(ct journalctl -u syngate --no-pager -o cat)
grep -q "at least one \[\[service\]\]" <<<"$reason" || fail "the journal does not say why the start was refused: $reason"
log "refused: $(grep "at least one \[\[service\]\]" <<<"$reason" | head -1)"
pass "the shipped configuration is refused, and the journal says why"
ct systemctl reset-failed syngate || true

# ---- Configured: active, READY, STATUS ----
# (the container's files are reached through it: the overlay lives in its mount namespace)
ct sh -c 'cat >> /etc/syngate/syngate.toml' <<'CONF'

[[service]]
address = "10.10.3.2"
port = 80
CONF
if [[ -n ${IPTABLES:-} ]]; then
  ct sed -i "s|^\[gateway\]\$|[gateway]\niptables = \"$IPTABLES\"|" /etc/syngate/syngate.toml
fi
t0=$SECONDS
ct systemctl restart syngate || fail "start: $(ct journalctl -u syngate --no-pager -o cat | tail -20)"
[[ $(ct systemctl is-active syngate) == active ]] || fail "not active"
main_pid=$(ct systemctl show -P MainPID syngate)
log "active (READY) in $((SECONDS - t0)) s, main PID $main_pid (container)"
backend=$(ct journalctl -u syngate --no-pager -o cat | grep -o 'rules installed (iptables-[a-z]*' | tail -1)
log "$backend)"
[[ -z ${IPTABLES:-} || $backend == *"iptables-$IPTABLES" ]] || fail "not the $IPTABLES backend: $backend"
status=""
for _ in $(seq 50); do
  status=$(ct systemctl show -P StatusText syngate)
  [[ $status == *"cookies sent/s"* ]] && break
  sleep 0.1
done
[[ $status == *"flows"*"cookies sent/s"* ]] || fail "no live STATUS: '$status'"
ct systemctl status syngate --no-pager > "$LAB_DIR/status.txt" 2>&1 || true
grep -q "Status: \"" "$LAB_DIR/status.txt" || fail "systemctl status shows no Status line: $(cat "$LAB_DIR/status.txt")"
grep "Status:" "$LAB_DIR/status.txt" | sed 's/^ */  /'
pass "enable --now after configuring: active, READY, live STATUS in systemctl status"
# `rules up` (root, the unit's "+" step) reads the daemon's state directory, owned by syngate.
ct systemctl restart syngate || fail "restart"
ct journalctl -u syngate --no-pager -o cat | grep "draining services not read" &&
  fail "rules up (root) could not read the syngate user's state directory"
main_pid=$(ct systemctl show -P MainPID syngate)

# The sandbox as the kernel sees it.
ct_proc() { ct cat "/proc/$1/status"; }
[[ $(ct_proc "$main_pid" | awk '/^Uid:/ { print $2 }') == $(ct id -u syngate) ]] || fail "the main process does not run as syngate"
capeff=$(ct_proc "$main_pid" | awk '/^CapEff:/ { print $2 }')
# CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_SYS_NICE 23, CAP_PERFMON 38, CAP_BPF 39
[[ $capeff == 000000c000803000 ]] || fail "effective capabilities $capeff, not exactly the unit's five"
[[ $(ct_proc "$main_pid" | awk '/^NoNewPrivs:/ { print $2 }') == 1 ]] || fail "NoNewPrivs is not set"
[[ $(ct_proc "$main_pid" | awk '/^Seccomp:/ { print $2 }') == 2 ]] || fail "no seccomp filter"
pass "runs as user syngate, capabilities $capeff (NET_ADMIN NET_RAW SYS_NICE PERFMON BPF), no new privileges, seccomp"

# ---- Served through cookies ----
# Valid cookie ACKs, whether the fast path (attached here: the tc hook on veth) or the
# NFQUEUE path checked them, and the flows made from them.
cookies() {
  echo $(( $(metric_sum syngate_xdp_packets_total 'outcome="cookie_valid"') + $(metric_sum syngate_cookies_valid_total) ))
}
c0=$(cookies); f0=$(metric_sum syngate_flows_created_total)
for _ in 1 2 3; do [[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "the client was not served"; done
sleep 0.3  # workers publish their counters every 100 ms
c1=$(cookies); f1=$(metric_sum syngate_flows_created_total)
((c1 >= c0 + 3 && f1 >= f0 + 3)) || fail "the client's connections were not served through cookies (valid cookies $c0 -> $c1, flows $f0 -> $f1)"
pass "3 client connections served through cookies (valid cookie ACKs $c0 -> $c1, flows created $f0 -> $f1; XDP attached: $(metric_sum syngate_xdp_attached) interfaces)"

# A download that spans an event; checked intact at the end.
download() {  # download NAME: starts a rate-limited download, its PID in $DL_PID
  in_ns "$NS_CLI" curl -sS --max-time 60 --limit-rate 400k -o "$LAB_DIR/$1.bin" http://10.10.3.2/big.bin \
    > "$LAB_DIR/$1.curl" 2>&1 &
  DL_PID=$!
  track_pid "$DL_PID"
  sleep 1.5
}
intact() {  # intact NAME WHAT
  wait "$DL_PID" || fail "$2: the download failed: $(cat "$LAB_DIR/$1.curl")"
  untrack_pid "$DL_PID"
  [[ $(sha256sum < "$LAB_DIR/$1.bin" | cut -d' ' -f1) == "$want" ]] || fail "$2: the download is corrupt"
}
nrestarts() { ct systemctl show -P NRestarts syngate; }

# ---- systemctl reload: a policy change during a download ----
download reload
ct sed -i 's|^\[policy\]$|[policy]\ndeny = ["10.10.9.0/24"]|' /etc/syngate/syngate.toml
ct grep -qx 'deny = \["10.10.9.0/24"\]' /etc/syngate/syngate.toml || fail "the policy edit did not land"
pid_before=$(ct systemctl show -P MainPID syngate)
ct systemctl reload syngate || fail "systemctl reload: $(ct journalctl -u syngate --no-pager -o cat | tail -5)"
for _ in $(seq 50); do ct journalctl -u syngate --no-pager -o cat | grep -q "reload: done" && break; sleep 0.1; done
ct journalctl -u syngate --no-pager -o cat | grep -q "reload: done" || fail "no reload in the journal"
[[ $(ct systemctl show -P MainPID syngate) == "$pid_before" && $(nrestarts) == 0 ]] || fail "the reload restarted the service"
intact reload "reload"
pass "systemctl reload applied a policy change (journal: reload: done), same PID, a 4 MiB download intact"

# ---- kill -9: restarted by systemd ----
download kill9
pid_before=$(ct systemctl show -P MainPID syngate)
ct sh -c "kill -KILL $pid_before"  # the shell's kill: this root has no /bin/kill
for _ in $(seq 100); do
  [[ $(nrestarts) -ge 1 && $(ct systemctl is-active syngate) == active ]] && break
  sleep 0.1
done
[[ $(nrestarts) -ge 1 && $(ct systemctl is-active syngate) == active ]] || fail "not restarted after kill -9"
intact kill9 "kill -9"
pass "kill -9: systemd restarted it (NRestarts $(nrestarts)), a 4 MiB download across it intact"

# ---- SIGSTOP: the watchdog ----
watchdog_s=$(( $(ct systemctl show -P WatchdogUSec syngate | sed 's/s$//') ))
r0=$(nrestarts)
pid_before=$(ct systemctl show -P MainPID syngate)
t0=$SECONDS
ct sh -c "kill -STOP $pid_before"
# Bounded wait: WatchdogSec, RestartSec (1 s) and the start, with room for a loaded machine.
for _ in $(seq $(( (watchdog_s + 15) * 10 ))); do
  [[ $(nrestarts) -gt $r0 && $(ct systemctl is-active syngate) == active ]] && break
  sleep 0.1
done
[[ $(nrestarts) -gt $r0 ]] || fail "no restart after SIGSTOP within $((watchdog_s + 15)) s"
took=$((SECONDS - t0))
ct journalctl -u syngate --no-pager -o cat > "$LAB_DIR/journal.txt"
grep -qi "watchdog timeout" "$LAB_DIR/journal.txt" || fail "the journal does not name the watchdog: $(tail -10 "$LAB_DIR/journal.txt")"
grep -i "watchdog timeout" "$LAB_DIR/journal.txt" | tail -1 | sed 's/^/  journal: /'
[[ $(cli_curl http://10.10.3.2/) == "hello from srv" ]] || fail "not serving after the watchdog restart"
pass "SIGSTOP: watchdog timeout (WatchdogSec=$watchdog_s), restarted and serving again after ${took} s"

# ---- The kernel path under the unit: the daemon (user syngate) pins its flow map ----
# On a host, systemd mounts a bpffs at /sys/fs/bpf, mode 0700 for root; in this container the
# same mount is made by hand (systemd mounts none inside a container).
if [[ $(ct stat -f -c %T /sys/fs/bpf) != bpf_fs ]]; then
  ct mount -t bpf -o mode=700 bpf /sys/fs/bpf || fail "cannot mount a bpffs at the container's /sys/fs/bpf"
fi
ct sed -i 's|^\[gateway\]$|[gateway]\nkernel_path = "auto"|' /etc/syngate/syngate.toml
ct systemctl restart syngate || fail "start with kernel_path auto: $(ct journalctl -u syngate --no-pager -o cat | tail -20)"
[[ $(ct systemctl is-active syngate) == active ]] || fail "not active with kernel_path auto"
# The new daemon's own lines: a timestamp has whole seconds, and the process before it (started
# before the bpffs was mounted, so it could not pin) may have logged in the same second.
main_pid=$(ct systemctl show -P MainPID syngate)
ct journalctl --no-pager -o cat "_PID=$main_pid" > "$LAB_DIR/journal-tc.txt"
grep "tc: " "$LAB_DIR/journal-tc.txt" | sed 's/^/  journal: /'
grep -q "tc: translating established flows on g1" "$LAB_DIR/journal-tc.txt" ||
  fail "the tc programs are not attached to g1: $(grep 'tc:' "$LAB_DIR/journal-tc.txt")"
grep -q "is not pinned" "$LAB_DIR/journal-tc.txt" &&
  fail "the daemon could not pin its flow map: $(grep 'not pinned' "$LAB_DIR/journal-tc.txt")"
# Mode both (the shipped default): `rules up` (root) pinned the OUTPUT match on the flow map, and
# handed both to the syngate user, whose daemon reuses that map.
grep -q "OUTPUT match .* reads this flow map" "$LAB_DIR/journal-tc.txt" ||
  fail "the daemon does not share the OUTPUT match's flow map: $(grep 'OUTPUT match' "$LAB_DIR/journal-tc.txt")"
pin=/sys/fs/bpf/syngate/syngate:netns-$(in_ns "$NS_GW" stat -Lc %i /proc/self/ns/net)/sg_tc_flows
[[ $(ct stat -c %U "$pin" 2>&1) == syngate ]] || fail "no flow map pinned by the syngate user at $pin: $(ct stat -c %U "$pin" 2>&1)"
in_ns "$NS_GW" tc filter show dev g1 ingress | grep -q "sg_tc_ingress" ||
  fail "no tc filter on g1 ingress: $(in_ns "$NS_GW" tc filter show dev g1 ingress)"
k0=$(metric_sum syngate_tc_packets_total 'outcome="translated"')
got=$(CURL_TIMEOUT=30 cli_curl http://10.10.3.2/big.bin | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "kernel path: the download is corrupt"
sleep 0.3
k1=$(metric_sum syngate_tc_packets_total 'outcome="translated"')
((k1 > k0 + 100)) || fail "kernel path: only $((k1 - k0)) segments translated by tc"
# The flow workers' real-time policy under the shipped unit's sandbox (RestrictRealtime=no,
# CAP_SYS_NICE): with the fast path attached they run SCHED_FIFO, or the journal says why not.
if (($(metric_sum syngate_xdp_attached) > 0)); then
  grep -q "cannot run SCHED_FIFO" "$LAB_DIR/journal-tc.txt" &&
    fail "the unit keeps the flow workers off SCHED_FIFO: $(grep 'cannot run SCHED_FIFO' "$LAB_DIR/journal-tc.txt")"
  grep -q "flow workers: SCHED_FIFO at priority 10" "$LAB_DIR/journal-tc.txt" ||
    fail "the journal does not say the flow workers run SCHED_FIFO: $(grep 'flow workers' "$LAB_DIR/journal-tc.txt")"
  # flow-q8's policy and priority, as the container's /proc shows the unit's main process.
  flow_sched=$(thread_sched "$main_pid" flow-q8 ct | cut -d' ' -f1,2)
  [[ $flow_sched == "1 10" ]] || fail "flow-q8 under the unit runs policy/priority '$flow_sched', want '1 10' (SCHED_FIFO)"
  log "flow workers under the unit: SCHED_FIFO at 10 (flow-q8: $flow_sched)"
fi
pass "kernel_path auto under the unit: tc attached (g1 ingress), OUTPUT match on the daemon's map, flow map pinned by user syngate at $pin, a 4 MiB download intact with $((k1 - k0)) segments translated in the kernel"

# ---- stop, dpkg -r, dpkg -P: what each leaves (deploy/README.md, section 7) ----
rules() { in_ns "$NS_GW" "iptables${IPTABLES:+-$IPTABLES}" -t mangle -S SYNGATE 2>/dev/null | grep -c NFQUEUE || true; }
ct systemctl stop syngate
[[ $(ct systemctl is-active syngate || true) == inactive ]] || fail "not stopped"
(($(rules) > 0)) || fail "stop removed the rules"
ct test -d /run/syngate || fail "stop deleted /run/syngate"
pass "systemctl stop: the rules stay ($(rules) NFQUEUE rules), /run/syngate kept"

ct dpkg -r syngate > "$LAB_DIR/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$LAB_DIR/dpkg-r.log")"
(($(rules) == 0)) || fail "dpkg -r left the rules"
for f in /etc/syngate/syngate.toml /var/lib/syngate/secrets /run/syngate; do ct test -e "$f" || fail "dpkg -r deleted $f"; done
ct test -e /usr/sbin/syngate && fail "dpkg -r left the binary"
pass "dpkg -r: rules removed; configuration, secrets and flow tables kept"

ct dpkg -P syngate > "$LAB_DIR/dpkg-p.log" 2>&1 || fail "dpkg -P: $(cat "$LAB_DIR/dpkg-p.log")"
for f in /etc/syngate/syngate.toml /var/lib/syngate /run/syngate; do ct test -e "$f" && fail "dpkg -P left $f"; done
pass "dpkg -P: configuration, secrets and flow tables deleted"

log "total $((SECONDS - t_start)) s"
