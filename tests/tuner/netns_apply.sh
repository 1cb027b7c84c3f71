#!/usr/bin/env bash
# Root test: apply / verify / drift / diff / rollback on the real kernel values of a network namespace
# this script creates and deletes, with a temporary sysctl.conf, sysctl.d and state dir.
# Never reads-and-writes the host's /proc/sys or /etc (it checks host values are unchanged at the end).
# usage: netns_apply.sh TCPTUNE PROFILE_DIR
set -euo pipefail
T=$1
PROFILES=$2
source "$(dirname "$0")/../lib/netns.sh"
require_root

NS=tcptune-test-$$-apply
TMP=$(mktemp -d /tmp/tcptune-test.XXXXXX)
cleanup() { rm -rf "$TMP"; }
netns_init
netns_on_exit cleanup
ns_add "$NS"

CONF=$TMP/sysctl.conf
STATE=$TMP/state
DROPIN=$TMP/sysctl.d
mkdir -p "$DROPIN" "$TMP/p"
# As on Debian: sysctl.d/99-sysctl.conf links to sysctl.conf, so files sorting after it win at boot.
ln -s "$CONF" "$DROPIN/99-sysctl.conf"

tt() { "$T" --netns "$NS" --sysctl-conf "$CONF" --state-dir "$STATE" --sysctl-d "$DROPIN" --profile-dir "$TMP/p" "$@"; }
nsget() { ip netns exec "$NS" cat "/proc/sys/${1//.//}" | tr '\t' ' '; }
hostget() { tr '\t' ' ' < "/proc/sys/${1//.//}"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
# run: expected exit code, then the command; output kept in $TMP/out and $TMP/err
run() {
  local want=$1; shift
  set +e; "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?; set -e
  if [ "$rc" -ne "$want" ]; then cat "$TMP/out" "$TMP/err" >&2; fail "exit $rc, expected $want: $*"; fi
}
out_has() { grep -qF -- "$1" "$TMP/out" "$TMP/err" || { cat "$TMP/out" "$TMP/err" >&2; fail "output lacks: $1"; }; }
eq() { [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"; }
journal_count() { find "$STATE/journal" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l; }

KEYS="net.core.somaxconn net.ipv4.tcp_synack_retries net.ipv4.tcp_fin_timeout net.ipv4.ip_local_port_range net.ipv4.tcp_rfc1337"
declare -A HOST0 NS0
for k in $KEYS; do HOST0[$k]=$(hostget "$k"); NS0[$k]=$(nsget "$k"); done

# A conf with comments, odd spacing, a CRLF line and no final newline: all must survive byte for byte.
printf '# Operator notes: keep\n#   indented comment\nvm.swappiness = 10\r\n\n  ; semicolon comment\nkernel.printk=4 4 1 7' > "$CONF"
chmod 640 "$CONF"
cp "$CONF" "$TMP/orig.conf"

step "diff and apply --dry-run write nothing"
run 0 tt diff syn-flood-defense
out_has "net.ipv4.tcp_synack_retries"
out_has "${NS0[net.ipv4.tcp_synack_retries]} -> 2"
out_has "+net.ipv4.tcp_synack_retries = 2"
run 0 tt --dry-run apply syn-flood-defense
out_has "dry run: nothing written"
cmp -s "$CONF" "$TMP/orig.conf" || fail "dry run changed the conf"
eq "$(nsget net.ipv4.tcp_synack_retries)" "${NS0[net.ipv4.tcp_synack_retries]}" "dry run changed a live value"
eq "$(journal_count)" 0 "dry run wrote a journal entry"

step "apply writes live values, the managed block and a journal entry"
run 0 tt apply syn-flood-defense
eq "$(nsget net.ipv4.tcp_synack_retries)" 2 "live synack_retries"
eq "$(nsget net.core.somaxconn)" 16384 "live somaxconn"
eq "$(nsget net.ipv4.tcp_rfc1337)" 1 "live rfc1337 (from base)"
orig_size=$(stat -c %s "$TMP/orig.conf")
# the original bytes come first, untouched; only a newline was added after the last line
cmp -n "$orig_size" "$CONF" "$TMP/orig.conf" || fail "apply changed bytes outside the managed block"
grep -q "^# BEGIN tcptune managed block: profile=syn-flood-defense" "$CONF" || fail "no BEGIN marker"
grep -qx "net.ipv4.tcp_synack_retries = 2" "$CONF" || fail "value not persisted"
eq "$(stat -c %a "$CONF")" 640 "conf mode kept"
eq "$(journal_count)" 1 "journal entries after first apply"
cp "$CONF" "$TMP/after1.conf"

step "a second apply changes nothing and says so"
run 0 tt apply syn-flood-defense
out_has "nothing to change"
cmp -s "$CONF" "$TMP/after1.conf" || fail "second apply rewrote the conf"
eq "$(journal_count)" 1 "second apply added a journal entry"

step "verify: no drift, then drift behind tcptune's back"
run 0 tt verify syn-flood-defense
out_has "no drift"
ip netns exec "$NS" sh -c 'echo 4 > /proc/sys/net/ipv4/tcp_synack_retries'
run 1 tt verify syn-flood-defense
grep -E '^net.ipv4.tcp_synack_retries +2 +4 +2 +DRIFT \(live\)' "$TMP/out" >/dev/null || { cat "$TMP/out"; fail "drift row"; }
run 1 tt --json verify syn-flood-defense
python3 - "$TMP/out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["drift"] is True
bad = [k for k in j["keys"] if not k["ok"]]
assert [k["key"] for k in bad] == ["net.ipv4.tcp_synack_retries"], bad
assert bad[0]["live"] == "4" and bad[0]["persisted"] == "2"
PY
ip netns exec "$NS" sh -c 'echo 2 > /proc/sys/net/ipv4/tcp_synack_retries'
run 0 tt verify syn-flood-defense

step "verify names a sysctl.d file that would win at boot"
printf '# vendor tuning\nnet.ipv4.tcp_fin_timeout = 45\n' > "$DROPIN/99-zz-vendor.conf"
printf 'net.ipv4.tcp_fin_timeout = 50\n' > "$DROPIN/10-early.conf"   # loses to sysctl.conf: no warning
run 1 tt verify syn-flood-defense
out_has "$DROPIN/99-zz-vendor.conf:2 sets net.ipv4.tcp_fin_timeout = 45 and wins at boot"
grep -q "10-early.conf" "$TMP/out" && fail "an earlier file was reported as winning"
rm "$DROPIN/99-zz-vendor.conf"
printf '\nnet.ipv4.tcp_fin_timeout = 99\n' >> "$CONF"   # a later line in sysctl.conf itself
run 1 tt verify syn-flood-defense
out_has "$CONF:"
out_has "wins at boot"
cp "$TMP/after1.conf" "$CONF"
run 0 tt verify syn-flood-defense

step "a second profile, then rollback step by step"
run 0 tt apply high-concurrency
eq "$(nsget net.ipv4.ip_local_port_range)" "10240 65535" "port range after high-concurrency"
eq "$(nsget net.core.somaxconn)" 65535 "somaxconn after high-concurrency"
eq "$(journal_count)" 2 "journal entries after two applies"
run 0 tt verify high-concurrency
run 0 tt --dry-run rollback
eq "$(nsget net.core.somaxconn)" 65535 "rollback --dry-run changed a value"
run 0 tt rollback
eq "$(nsget net.core.somaxconn)" 16384 "somaxconn after one rollback"
eq "$(nsget net.ipv4.ip_local_port_range)" "${NS0[net.ipv4.ip_local_port_range]}" "port range after one rollback"
eq "$(nsget net.ipv4.tcp_synack_retries)" 2 "synack_retries after one rollback"
cmp -s "$CONF" "$TMP/after1.conf" || fail "conf after one rollback differs from after the first apply"
run 0 tt verify syn-flood-defense
run 0 tt rollback
for k in $KEYS; do eq "$(nsget "$k")" "${NS0[$k]}" "$k after full rollback"; done
cmp -s "$CONF" "$TMP/orig.conf" || fail "conf not restored byte for byte"
eq "$(stat -c %a "$CONF")" 640 "conf mode after rollback"
run 2 tt rollback
out_has "nothing to roll back"

step "rollback after the operator edited the file keeps the edit"
run 0 tt apply base
printf '# operator added this after apply\n' >> "$CONF"
run 0 tt rollback
out_has "only the managed block was restored"
grep -q "managed block" "$CONF" && fail "managed block left behind"
grep -q "# operator added this after apply" "$CONF" || fail "operator edit lost"
eq "$(nsget net.ipv4.tcp_rfc1337)" "${NS0[net.ipv4.tcp_rfc1337]}" "rfc1337 after rollback"
cp "$TMP/orig.conf" "$CONF"

step "invalid profiles apply nothing (exit 2)"
printf '[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_syncookies" = 3\n' > "$TMP/p/bad-range.toml"
run 2 tt apply bad-range
out_has "outside the meaningful range"
printf '[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_tw_recycle" = 0\n' > "$TMP/p/removed.toml"
run 2 tt apply removed
out_has "removed in Linux 4.12"
printf '[profile]\nextends = "base"\n[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_mem" = [100000, 200000, 300000]\n' > "$TMP/p/global.toml"
run 2 tt apply global
out_has "host-wide"
out_has "net.ipv4.tcp_mem (global)"
printf '[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_unheard_of" = 1\n' > "$TMP/p/unknown.toml"
run 2 tt apply unknown
out_has "unknown key"
eq "$(nsget net.core.somaxconn)" "${NS0[net.core.somaxconn]}" "invalid profile changed somaxconn"
cmp -s "$CONF" "$TMP/orig.conf" || fail "invalid profile changed the conf"
eq "$(journal_count)" 0 "invalid profile wrote a journal entry"
run 2 "$T" --netns "$NS" --state-dir "$STATE" apply base
out_has "needs an explicit --sysctl-conf"

step "a key absent from the kernel fails before anything is written (exit 1)"
printf '[profile]\nallow-unknown = ["net.ipv4.tcp_tcptune_made_up"]\n[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_tcptune_made_up" = 1\n' > "$TMP/p/absent.toml"
run 1 tt apply absent
out_has "net.ipv4.tcp_tcptune_made_up"
eq "$(nsget net.core.somaxconn)" "${NS0[net.core.somaxconn]}" "absent key: somaxconn changed"
cmp -s "$CONF" "$TMP/orig.conf" || fail "absent key: conf changed"

step "a failure midway rolls back what was written (exit 1)"
# Keys apply in sorted order: somaxconn and tcp_fin_timeout are written, then the kernel refuses
# tcp_pingpong_thresh = 0 (its minimum is 1) with EINVAL; tcp_synack_retries is never reached.
printf '[profile]\nallow-unknown = ["net.ipv4.tcp_pingpong_thresh"]\n[sysctl]\n"net.core.somaxconn" = 2048\n"net.ipv4.tcp_fin_timeout" = 20\n"net.ipv4.tcp_pingpong_thresh" = 0\n"net.ipv4.tcp_synack_retries" = 3\n' > "$TMP/p/midway.toml"
run 1 tt apply midway
out_has "net.ipv4.tcp_pingpong_thresh = 0: the kernel refused the value"
out_has "restored 2 of 2 value(s) written"
for k in $KEYS; do eq "$(nsget "$k")" "${NS0[$k]}" "midway failure: $k"; done
cmp -s "$CONF" "$TMP/orig.conf" || fail "midway failure changed the conf"
eq "$(journal_count)" 0 "midway failure left a journal entry"

step "a symlinked sysctl.conf stays a symlink; its target gets the block"
printf '# target\n' > "$TMP/target.conf"
ln -s "$TMP/target.conf" "$TMP/link.conf"
run 0 "$T" --netns "$NS" --sysctl-conf "$TMP/link.conf" --state-dir "$TMP/state2" apply base
[ -L "$TMP/link.conf" ] || fail "the symlink was replaced by a file"
grep -q "profile=base" "$TMP/target.conf" || fail "target did not get the block"
run 0 "$T" --netns "$NS" --sysctl-conf "$TMP/link.conf" --state-dir "$TMP/state2" rollback
[ -L "$TMP/link.conf" ] || fail "rollback replaced the symlink"
eq "$(cat "$TMP/target.conf")" "# target" "target after rollback"

step "the host was never touched"
for k in $KEYS; do eq "$(hostget "$k")" "${HOST0[$k]}" "HOST $k"; done
echo "PASS"
