#!/usr/bin/env bash
# Root test: the safety and correctness promises of issue 14, each tried the way an adversary or a
# careless script would, inside a network namespace this script creates and deletes, with temporary
# sysctl.conf, sysctl.d and state dirs. Nothing here is applied to the host: commands that could
# reach the host's namespace are only ever diff, --dry-run or usage errors, and the host's values are
# checked unchanged at the end. Every check runs; the failures are listed at the end.
# usage: netns_safety.sh TCPTUNE PROFILE_DIR
set -uo pipefail
T=$1
PROFILES=$2
source "$(dirname "$0")/../lib/netns.sh"
require_root

NS=tcptune-test-$$-safety
TMP=$(mktemp -d /tmp/tcptune-test.XXXXXX)
cleanup() { rm -rf "$TMP"; }
netns_init
netns_on_exit cleanup
ns_add "$NS"

CONF=$TMP/sysctl.conf
STATE=$TMP/state
DROPIN=$TMP/sysctl.d
mkdir -p "$DROPIN" "$TMP/p"
ln -s "$CONF" "$DROPIN/99-sysctl.conf"
printf '# operator line\n' > "$CONF"
cp "$CONF" "$TMP/orig.conf"

tt() { "$T" --netns "$NS" --sysctl-conf "${TCONF:-$CONF}" --state-dir "${TSTATE:-$STATE}" --sysctl-d "$DROPIN" --profile-dir "$TMP/p" "$@"; }
# the same with another state dir, or another sysctl.conf
tt_state() { local dir=$1; shift; TSTATE=$dir tt "$@"; }
tt_conf() { local file=$1; shift; TCONF=$file tt "$@"; }
nsget() { ip netns exec "$NS" cat "/proc/sys/${1//.//}" | tr '\t' ' '; }
hostget() { tr '\t' ' ' < "/proc/sys/${1//.//}"; }
FAILED=()
bad() { FAILED+=("[$ITEM] $*"); echo "FAIL [$ITEM]: $*" >&2; }
item() { ITEM=$1; echo "--- $*"; }
# check_rc WANT CMD...: runs CMD (output in $TMP/out, $TMP/err), records a failure on another exit code.
check_rc() {
  local want=$1; shift
  "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then bad "exit $rc, expected $want: $*"; sed 's/^/    /' "$TMP/out" "$TMP/err" | head -20 >&2; return 1; fi
  return 0
}
has() { grep -qF -- "$1" "$TMP/out" "$TMP/err" || { bad "output lacks: $1"; sed 's/^/    /' "$TMP/out" "$TMP/err" | head -20 >&2; }; }
lacks() { grep -qF -- "$1" "$TMP/out" "$TMP/err" && bad "output has: $1"; return 0; }
eq() { [ "$1" = "$2" ] || bad "$3: got '$1', expected '$2'"; }
journal_count() { find "${1:-$STATE}/journal" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }
json_field() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/out" "$1" 2>/dev/null; }

KEYS="net.core.somaxconn net.ipv4.tcp_synack_retries net.ipv4.tcp_fin_timeout net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse
      net.ipv4.tcp_max_tw_buckets net.ipv4.tcp_keepalive_time net.ipv4.tcp_slow_start_after_idle net.ipv4.tcp_notsent_lowat"
declare -A HOST0 NS0
for k in $KEYS; do HOST0[$k]=$(hostget "$k"); NS0[$k]=$(nsget "$k"); done
# A profile with a host-wide key: refused inside a namespace, so it tells a namespace from the host.
printf '[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_mem" = [100000, 200000, 300000]\n' > "$TMP/p/hostwide.toml"

item 2 "--netns with an empty or invalid name is a usage error, never the host"
for name in "" "a/b" ".." "-x"; do
  check_rc 2 "$T" --netns "$name" --sysctl-conf "$TMP/x.conf" --state-dir "$TMP/s2" --profile-dir "$TMP/p" diff hostwide && has "netns"
  check_rc 2 "$T" --netns "$name" --sysctl-conf "$TMP/x.conf" --state-dir "$TMP/s2" --dry-run apply base && has "netns"
  check_rc 2 "$T" --netns "$name" diagnose
  check_rc 2 "$T" --netns "$name" show net.core.somaxconn
done
check_rc 2 "$T" --json --netns "" --sysctl-conf "$TMP/x.conf" diff base
eq "$(json_field 'j["status"]')" "usage-error" "--json --netns '': JSON status"
[ -e "$TMP/x.conf" ] && bad "--netns '' created the conf file"
[ -e "$TMP/s2" ] && bad "--netns '' created the state dir"

item 3 "--sysctl-conf must be a regular file (or a symlink to one)"
mknod "$TMP/null" c 1 3
mkfifo "$TMP/fifo"
mkdir "$TMP/dir.conf"
ln -s "$TMP/null" "$TMP/link-to-null"
for target in "$TMP/null" "$TMP/link-to-null" "$TMP/fifo" "$TMP/dir.conf"; do
  check_rc 2 timeout 20 "$T" --netns "$NS" --state-dir "$TMP/s3" --sysctl-conf "$target" apply base && has "not a regular file"
  check_rc 2 timeout 20 "$T" --netns "$NS" --state-dir "$TMP/s3" --sysctl-conf "$target" diff base
  check_rc 2 timeout 20 "$T" --netns "$NS" --state-dir "$TMP/s3" --sysctl-conf "$target" verify base
done
[ -c "$TMP/null" ] || bad "the device node was replaced: $(stat -c %F "$TMP/null")"
[ -p "$TMP/fifo" ] || bad "the fifo was replaced"
[ -L "$TMP/link-to-null" ] || bad "the symlink was replaced"
eq "$(journal_count "$TMP/s3")" 0 "journal entries after refused device-node applies"
eq "$(nsget net.core.somaxconn)" "${NS0[net.core.somaxconn]}" "somaxconn after refused device-node applies"
check_rc 2 timeout 20 "$T" --netns "$NS" --state-dir "$TMP/s3" --sysctl-conf "$TMP/null" rollback

item 5 "switching profiles restores what the new profile no longer sets"
check_rc 0 tt apply high-concurrency
eq "$(nsget net.ipv4.tcp_tw_reuse)" 1 "tw_reuse after high-concurrency"
cp "$CONF" "$TMP/after-hc.conf"
check_rc 0 tt apply long-lived-connections
has "no longer set"
for k in net.ipv4.tcp_tw_reuse net.ipv4.ip_local_port_range net.ipv4.tcp_fin_timeout net.ipv4.tcp_max_tw_buckets net.ipv4.tcp_notsent_lowat; do
  eq "$(nsget "$k")" "${NS0[$k]}" "$k after switching to long-lived-connections"
done
eq "$(nsget net.ipv4.tcp_keepalive_time)" 300 "keepalive_time after the switch"
eq "$(nsget net.ipv4.tcp_slow_start_after_idle)" 0 "slow_start_after_idle (set by both profiles)"
check_rc 0 tt verify long-lived-connections
check_rc 0 tt rollback
eq "$(nsget net.ipv4.tcp_tw_reuse)" 1 "tw_reuse after rolling back the switch"
eq "$(nsget net.ipv4.ip_local_port_range)" "10240 65535" "port range after rolling back the switch"
cmp -s "$CONF" "$TMP/after-hc.conf" || bad "conf after rolling back the switch differs from after high-concurrency"
check_rc 0 tt verify high-concurrency
# With no journal of the earlier apply (another state dir), the old values cannot be known: they are
# kept, the apply says so, and verify reports the live values that no file restores at boot.
check_rc 0 tt_state "$TMP/s5" apply long-lived-connections
has "left as is"
eq "$(nsget net.ipv4.tcp_tw_reuse)" 1 "tw_reuse kept when its earlier value is unknown"
check_rc 1 tt_state "$TMP/s5" verify long-lived-connections
has "net.ipv4.tcp_tw_reuse"
has "no file restores it at boot"
check_rc 0 tt_state "$TMP/s5" rollback
check_rc 0 tt rollback
check_rc 2 tt rollback
for k in $KEYS; do eq "$(nsget "$k")" "${NS0[$k]}" "$k after unwinding item 5"; done
cmp -s "$CONF" "$TMP/orig.conf" || bad "conf not restored after item 5"

item 6 "verify: an explicit key beats a systemd glob, whatever the file order"
check_rc 0 tt apply gateway
printf 'net.ipv4.conf.*.rp_filter = 2\n' > "$DROPIN/99-zz-glob.conf"
check_rc 0 tt verify gateway
lacks "99-zz-glob.conf"
# systemd-sysctl itself, on the same files, in the namespace (per-netns keys only in both files)
if [ -x /lib/systemd/systemd-sysctl ]; then
  ip netns exec "$NS" sh -c 'echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter; echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter'
  grep -E '^net\.ipv4\.conf\.(all|default)\.rp_filter' "$CONF" > "$TMP/explicit.conf"
  ip netns exec "$NS" /lib/systemd/systemd-sysctl "$TMP/explicit.conf" "$DROPIN/99-zz-glob.conf" 2>/dev/null
  eq "$(nsget net.ipv4.conf.all.rp_filter)" 1 "systemd-sysctl: all.rp_filter (explicit)"
  eq "$(nsget net.ipv4.conf.lo.rp_filter)" 2 "systemd-sysctl: lo.rp_filter (glob)"
  ip netns exec "$NS" sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/rp_filter; echo 1 > /proc/sys/net/ipv4/conf/default/rp_filter'
fi
printf 'net.ipv4.conf.all.rp_filter = 2\n' > "$DROPIN/99-zz-glob.conf"   # an explicit later key does win
check_rc 1 tt verify gateway
has "99-zz-glob.conf:1 sets net.ipv4.conf.all.rp_filter = 2 and wins at boot"
rm "$DROPIN/99-zz-glob.conf"
check_rc 0 tt rollback

item 7 "exit codes 0/1/2, errors in JSON where there is JSON"
printf '[profile]\nallow-unknown = ["net.ipv4.tcp_tcptune_made_up"]\n[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_tcptune_made_up" = 1\n' > "$TMP/p/absent.toml"
check_rc 1 tt diff absent
check_rc 1 tt apply absent
check_rc 1 tt --json apply absent
eq "$(json_field 'j["status"]')" "failed" "--json apply absent: status"
printf '[profile]\nallow-unknown = ["net.ipv4.tcp_pingpong_thresh"]\n[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_pingpong_thresh" = 0\n' > "$TMP/p/refused.toml"
check_rc 1 tt apply refused
eq "$(nsget net.core.somaxconn)" "${NS0[net.core.somaxconn]}" "somaxconn after a refused apply"
check_rc 2 "$T" --json --netns "tcptune-test-$$-missing" --sysctl-conf "$CONF" --state-dir "$STATE" verify base
eq "$(json_field 'j["status"]')" "error" "--json with a missing netns: status"
json_field 'j["errors"][0]' | grep -q "tcptune-test-$$-missing" || bad "--json with a missing netns: error not named"
check_rc 2 tt --json --no-such-option diff base
eq "$(json_field 'j["status"]')" "usage-error" "--json with an unknown option: status"
check_rc 2 tt --json rollback
eq "$(json_field 'j["status"]')" "nothing-to-roll-back" "--json rollback with nothing to roll back"

item 8 "negative, NaN and infinite numbers are usage errors"
for v in 0 -1 nan inf -inf 1e9 " 1" 99999; do
  check_rc 2 timeout 20 "$T" --netns "$NS" diagnose --interval "$v"
done
for opt in --syn-recv-threshold --close-wait-threshold --time-wait-threshold; do
  for v in -1 nan inf 1.5 ""; do check_rc 2 timeout 20 "$T" --netns "$NS" diagnose "$opt" "$v"; done
done
check_rc 0 timeout 20 "$T" --netns "$NS" diagnose --interval 0.2 --syn-recv-threshold 5 --close-wait-threshold 5

item 9 "rollback is scoped to the file and namespace it is given"
cp "$TMP/orig.conf" "$TMP/A.conf"
cp "$TMP/orig.conf" "$TMP/B.conf"
check_rc 0 tt_conf "$TMP/A.conf" apply syn-flood-defense
cp "$TMP/A.conf" "$TMP/A-applied.conf"
check_rc 2 tt_conf "$TMP/B.conf" rollback
has "nothing to roll back"
eq "$(nsget net.ipv4.tcp_synack_retries)" 2 "synack_retries after a rollback of another file"
cmp -s "$TMP/A.conf" "$TMP/A-applied.conf" || bad "a rollback for B.conf changed A.conf"
check_rc 2 "$T" --netns "$NS" --state-dir "$STATE" rollback
has "--sysctl-conf"
# a later entry for another file that changed the same keys has to be rolled back first
check_rc 0 tt_conf "$TMP/B.conf" apply high-concurrency
check_rc 2 tt_conf "$TMP/A.conf" rollback
has "roll it back first"
eq "$(nsget net.core.somaxconn)" 65535 "somaxconn after a refused out-of-order rollback"
check_rc 0 tt_conf "$TMP/B.conf" rollback
cmp -s "$TMP/B.conf" "$TMP/orig.conf" || bad "B.conf not restored"
check_rc 0 tt_conf "$TMP/A.conf" rollback
cmp -s "$TMP/A.conf" "$TMP/orig.conf" || bad "A.conf not restored"
eq "$(nsget net.ipv4.tcp_synack_retries)" "${NS0[net.ipv4.tcp_synack_retries]}" "synack_retries after rolling back A"

item 10 "values that cripple TCP are refused"
for v in '"net.ipv4.tcp_rmem" = [1, 1, 1]' '"net.ipv4.tcp_wmem" = [1, 1, 1]' '"net.ipv4.tcp_synack_retries" = 0'; do
  printf '[sysctl]\n%s\n' "$v" > "$TMP/p/cripple.toml"
  check_rc 2 tt apply cripple && has "outside the meaningful range"
done
printf '[sysctl]\n"net.ipv4.tcp_mem" = [1, 2, 3]\n' > "$TMP/p/cripple.toml"
check_rc 2 "$T" --sysctl-conf "$TMP/x.conf" --profile-dir "$TMP/p" diff cripple
has "outside the meaningful range"
eq "$(journal_count)" 0 "journal entries after refused profiles"

item 11 "a key set twice, in any TOML spelling, is an error naming both lines"
printf '[sysctl]\n"net.core.somaxconn" = 5000\nnet.core.somaxconn = 6000\n' > "$TMP/p/dup-spelling.toml"
check_rc 2 tt diff dup-spelling
has "dup-spelling.toml:3"
has "line 2"
printf '[sysctl]\n"net.core.somaxconn" = 5000\n"net.core.somaxconn" = 6000\n' > "$TMP/p/dup-plain.toml"
check_rc 2 tt diff dup-plain
has "dup-plain.toml:3"
has "line 2"
lacks '"nenet'

item 12 "smaller: cycles, corrupt journal, port range wording, broken block, --version, interruption"
printf '[profile]\nextends = "cyc-b"\n' > "$TMP/p/cyc-a.toml"
printf '[profile]\nextends = "cyc-a"\n' > "$TMP/p/cyc-b.toml"
check_rc 2 tt diff cyc-a
has "cyc-a -> cyc-b -> cyc-a"
has "cyc-b.toml:2"
printf '[sysctl]\n"net.ipv4.ip_local_port_range" = [80, 100]\n' > "$TMP/p/ports.toml"
check_rc 2 tt diff ports
has "low port 80"
lacks "value 1 80"
mkdir -p "$TMP/s12/journal"
printf '{"version": 1, "id": 1, "state": "commi' > "$TMP/s12/journal/000001.json"
check_rc 2 tt_state "$TMP/s12" rollback
has "000001.json"
has "not valid JSON"
lacks "parse_error"
lacks "[json."
printf '%s\n' "$(cat "$TMP/orig.conf")" "# BEGIN tcptune managed block: profile=base" "net.core.somaxconn = 4096" > "$TMP/broken.conf"
check_rc 2 tt_conf "$TMP/broken.conf" verify base
has "no END marker"
check_rc 0 "$T" --version
grep -qE '^tcptune [0-9]+\.[0-9]+' "$TMP/out" || bad "--version output: $(cat "$TMP/out")"
# an apply that died half way leaves a pending entry: every command that reads the journal says so
check_rc 0 tt apply base
sed -i 's/"state": "committed"/"state": "pending"/' "$STATE"/journal/*.json
check_rc 2 tt apply syn-flood-defense
has "interrupted"
check_rc 0 tt status
has "INTERRUPTED"
check_rc 0 tt rollback
# a signal arriving during an apply: the transaction completes, then tcptune says so and exits 128+N.
# The SIGTERM is made pending (blocked) before exec, so it is there when the transaction starts.
with_pending_sigterm() {
  python3 -c 'import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)
os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}
check_rc 143 with_pending_sigterm "$T" --netns "$NS" --sysctl-conf "$CONF" --state-dir "$STATE" --sysctl-d "$DROPIN" apply syn-flood-defense
has "SIGTERM arrived during the apply; it was completed first"
eq "$(nsget net.ipv4.tcp_synack_retries)" 2 "synack_retries after an apply that received SIGTERM"
grep -q '"state": "committed"' "$STATE"/journal/*.json || bad "the signalled apply did not commit its journal entry"
check_rc 0 tt verify syn-flood-defense
check_rc 143 with_pending_sigterm "$T" --netns "$NS" --sysctl-conf "$CONF" --state-dir "$STATE" rollback
has "SIGTERM arrived during the rollback"
eq "$(nsget net.ipv4.tcp_synack_retries)" "${NS0[net.ipv4.tcp_synack_retries]}" "synack_retries after a rollback that received SIGTERM"
check_rc 2 tt rollback
# a signal during diagnose --interval is reported, not silent (SIGTERM: a background job of a
# non-interactive shell starts with SIGINT ignored, and tcptune leaves an ignored signal ignored)
"$T" --netns "$NS" diagnose --interval 30 >"$TMP/out" 2>"$TMP/err" &
SLEEPER=$!
track_pid "$SLEEPER"
sleep 1
kill -TERM "$SLEEPER"
wait "$SLEEPER"; rc=$?; untrack_pid "$SLEEPER"
eq "$rc" 143 "diagnose interrupted by SIGTERM: exit code"
has "interrupted"

item status "status names the active profile per namespace and what it changed"
check_rc 0 tt apply syn-flood-defense
check_rc 0 tt status
has "syn-flood-defense"
has "$NS"
has "net.ipv4.tcp_synack_retries"
has "${NS0[net.ipv4.tcp_synack_retries]} -> 2"
check_rc 0 tt --json status
eq "$(json_field '[s["profile"] for s in j["scopes"] if s["netns"] == "'"$NS"'"][0]')" "syn-flood-defense" "status --json profile"
# discovery: the namespaces' state dirs under STATE_DIR/netns/, as with the default /var/lib/tcptune
in_root() { "$T" --netns "$NS" --sysctl-conf "$TMP/root.conf" --state-dir "$TMP/root/netns/$NS" "$@"; }
check_rc 0 in_root apply long-lived-connections
check_rc 0 "$T" --state-dir "$TMP/root" status
has "netns $NS: profile long-lived-connections"
has "$TMP/root.conf"
has "net.ipv4.tcp_keepalive_time"
check_rc 0 in_root rollback
check_rc 0 tt rollback
check_rc 0 tt status
has "no profile applied"

item host "the host was never touched"
for k in $KEYS; do eq "$(hostget "$k")" "${HOST0[$k]}" "HOST $k"; done

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "${#FAILED[@]} check(s) failed:" >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo PASS
