#!/usr/bin/env bash
# The Debian package built by CPack (`cmake --build BUILD --target package`).
#   deb_test.sh contents BUILD SYNGATE TCPTUNE SYNFLOOD
#       builds the .deb from BUILD with cpack, checks its control data, file list, modes,
#       conffiles and maintainer scripts, the hardening of the shipped binaries (read from their
#       ELF headers), the licence (LICENSE, the copyright file, the BPF objects' licence string),
#       and that lintian reports no error, no warning that is not overridden (the overrides ship
#       in the package, each with its reason) and no hardening tag at all.
#   deb_test.sh install BUILD ...   (root)
#       installs it with dpkg in a throwaway copy-on-write view of this machine's root (overlayfs
#       in a private mount namespace; nothing reaches the real /): the state directory is 0700,
#       the unit is installed but neither enabled nor started, the shipped configuration does
#       not pass `syngate check` until a service is configured, tcptune finds its profiles where
#       the package put them, remove keeps the conffile and purge deletes config and state.
#       It runs in a network namespace of its own, where it installs syngate's rules and runs the
#       daemon: an upgrade keeps the rules, remove takes them down (also when the configuration no
#       longer loads) and keeps /run/syngate, purge deletes /run/syngate, and a remove where
#       iptables cannot work (no CAP_NET_ADMIN, as in a container) still succeeds and says so.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
part=${1:?usage: deb_test.sh contents|install BUILD SYNGATE TCPTUNE SYNFLOOD}
build=$(cd "${2:?build dir}" && pwd)
shift 2
for bin in "$@"; do [[ -x $bin ]] || { echo "FAIL: $bin is not built (cmake --build $build)"; exit 1; }; done
if [[ $part == install && $(id -u) != 0 ]]; then echo "SKIP: needs root"; exit 77; fi

work=$(mktemp -d /tmp/syngate-deb.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
has() { grep -qxF -- "$1" "$work/files" || fail "package lacks $1"; }

echo "== cpack -G DEB"
t0=$SECONDS
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" > "$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack failed"; }
deb=$(ls "$work"/out/*.deb)
echo "built $(basename "$deb") ($(stat -c %s "$deb") bytes) in $((SECONDS - t0)) s"

if [[ $part == contents ]]; then
  dpkg-deb -I "$deb" > "$work/info"
  dpkg-deb -f "$deb" Package Version Architecture Section Priority Maintainer Depends
  [[ $(dpkg-deb -f "$deb" Package) == syngate ]] || fail "package name"
  dpkg-deb -f "$deb" Depends | grep -q 'iptables' || fail "Depends lacks iptables"
  dpkg-deb -f "$deb" Depends | grep -q 'libnetfilter-queue1' || fail "Depends lacks the shared libraries (dpkg-shlibdeps)"

  # path and mode of every file, as "MODE PATH"
  dpkg-deb -c "$deb" | awk '{ p = $6; sub(/^\./, "", p); sub(/\/$/, "", p); print p; print $1 " " p > "/dev/stderr" }' \
    > "$work/files" 2> "$work/modes"
  for f in /usr/sbin/syngate /usr/sbin/tcptune /usr/bin/synflood /lib/systemd/system/syngate.service /lib/systemd/system/syngate@.service \
           /etc/syngate/syngate.toml /usr/lib/sysusers.d/syngate.conf /usr/share/man/man8/syngate.8.gz /usr/share/man/man8/tcptune.8.gz \
           /usr/share/man/man1/synflood.1.gz /usr/share/doc/syngate/copyright \
           /usr/share/doc/syngate/changelog.Debian.gz /usr/share/doc/syngate/README.md \
           /usr/share/doc/syngate/deploy-README.md /usr/share/doc/syngate/tcptune.md \
           /usr/share/doc/syngate/examples/prometheus/syngate-rules.yml \
           /usr/share/doc/syngate/examples/grafana/syngate-dashboard.json \
           /usr/lib/syngate/syngate-bird-health /usr/lib/syngate/bpf-view /usr/share/doc/syngate/examples/bird/bird.conf \
           /usr/share/doc/syngate/examples/bird/syngate-bird-health.service \
           /usr/share/lintian/overrides/syngate; do
    has "$f"
  done
  for p in base gateway high-concurrency long-lived-connections syn-flood-defense; do
    has "/usr/share/tcptune/profiles/$p.toml"
  done
  grep -qx -- '-rwxr-xr-x /usr/sbin/syngate' "$work/modes" || fail "syngate mode: $(grep sbin/syngate "$work/modes")"
  grep -qx -- '-rw-r--r-- /etc/syngate/syngate.toml' "$work/modes" || fail "conffile mode"
  # Nothing else sneaks in (test programs, headers, static libraries).
  unexpected=$(grep -vE '^(/usr/(sbin|bin)/(syngate|tcptune|synflood)|/etc(/syngate(/syngate.toml)?)?|/lib(/systemd(/system(/syngate@?.service)?)?)?|/usr(/sbin|/bin|/lib(/sysusers.d(/syngate.conf)?|/syngate(/syngate-bird-health|/bpf-view)?)?|/share(/man(/man[18](/(syngate|tcptune).8.gz|/synflood.1.gz)?)?|/doc(/syngate(/.*)?)?|/tcptune(/profiles(/[a-z-]+\.toml)?)?|/lintian(/overrides(/syngate)?)?)?)?|)$' "$work/files" || true)
  [[ -z $unexpected ]] || fail "unexpected files in the package: $unexpected"
  # Binaries are stripped (lintian would say so too, as an error).
  dpkg-deb -x "$deb" "$work/root"
  file "$work/root/usr/sbin/syngate" | grep -q 'stripped' && ! file "$work/root/usr/sbin/syngate" | grep -q 'not stripped' ||
    fail "syngate is not stripped"
  # The man pages render without groff warnings.
  for m in man8/syngate.8.gz man8/tcptune.8.gz man1/synflood.1.gz; do
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$work/root/usr/share/man/$m" 2>&1 >/dev/null) || true
    [[ -z $out ]] || fail "man $m: $out"
  done

  echo "== hardening of the shipped binaries"
  # What Debian's hardening=+all gives: a PIE, the stack protector, fortified libc calls, full
  # RELRO (GNU_RELRO plus bind-now). Read from the stripped binaries the package holds.
  for b in usr/sbin/syngate usr/sbin/tcptune usr/bin/synflood; do
    f=$work/root/$b
    readelf -hW "$f" | grep -qE 'Type: +DYN' || fail "$b is not a PIE: $(readelf -hW "$f" | grep Type:)"
    readelf -lW "$f" | grep -q GNU_RELRO || fail "$b has no GNU_RELRO segment (-z relro)"
    readelf -dW "$f" | grep -qE '\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).* NOW' || fail "$b is not linked with -z now"
    syms=$(readelf --dyn-syms -W "$f")
    grep -qw '__stack_chk_fail' <<<"$syms" || fail "$b has no stack protector (__stack_chk_fail)"
    chk=$(grep -oE '__[a-z0-9_]+_chk\b' <<<"$syms" | grep -v __stack_chk | sort -u | tr '\n' ' ')
    [[ -n $chk ]] || fail "$b calls no fortified function (-D_FORTIFY_SOURCE)"
    echo "$b: PIE, GNU_RELRO, BIND_NOW, __stack_chk_fail, fortified: $chk"
  done

  echo "== licence"
  head -2 "$src/LICENSE" | grep -q 'GNU GENERAL PUBLIC LICENSE' && sed -n 2p "$src/LICENSE" | grep -q 'Version 2,' ||
    fail "LICENSE at the root of the tree is not the GNU GPL version 2"
  copyright=$work/root/usr/share/doc/syngate/copyright
  grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' "$copyright" ||
    fail "copyright is not in the machine-readable format"
  # The Files: * paragraph names the licence, and a stand-alone License paragraph gives its terms.
  awk '/^Files: \*$/ { f = 1 } f && /^License: / { print; exit }' "$copyright" | grep -qx 'License: GPL-2.0-or-later' ||
    fail "copyright: Files: * is not under GPL-2.0-or-later"
  grep -A4 '^License: GPL-2.0-or-later$' "$copyright" | grep -q 'either version 2 of the License, or' ||
    fail "copyright: no License paragraph with the terms of GPL-2.0-or-later"
  grep -q "/usr/share/common-licenses/GPL-2" "$copyright" || fail "copyright does not point to the licence text"
  if compgen -G "$build/bpf/*.bpf.o" >/dev/null; then
    for o in "$build"/bpf/*.bpf.o; do
      lic=$(readelf -p license "$o" | sed -nE 's/^ +\[ *[0-9a-f]+\] +//p')
      [[ $lic == GPL ]] || fail "$(basename "$o"): BPF licence string is \"$lic\", not \"GPL\""
      echo "$(basename "$o"): license \"$lic\""
    done
  else
    echo "no BPF objects in $build/bpf (built without the XDP fast path): their licence is not checked"
  fi

  dpkg-deb -e "$deb" "$work/control"
  [[ $(cat "$work/control/conffiles") == /etc/syngate/syngate.toml ]] || fail "conffiles: $(cat "$work/control/conffiles")"
  for s in postinst prerm postrm; do
    [[ $(stat -c %a "$work/control/$s") == 755 ]] || fail "$s mode"
    sh -n "$work/control/$s" || fail "$s: syntax"
  done
  # The package never enables or starts the gateway on its own.
  if grep -nE '(systemctl|deb-systemd-invoke|deb-systemd-helper)( +[-a-z]+)* +(enable|start|restart|reload)( |$)' \
       "$work/control/postinst" | grep -v '^[0-9]*: *#'; then
    fail "postinst enables or starts syngate"
  fi
  grep -q 'install -d -m 0700' "$work/control/postinst" || fail "postinst does not create /var/lib/syngate 0700"

  echo "== lintian"
  command -v lintian >/dev/null || fail "lintian not found (apt-get install lintian; scripts/deps.sh does)"
  # The verdict: exit 2 on any error or warning that no override explains.
  set +e
  lintian --fail-on error,warning --display-info "$deb" > "$work/lintian.out" 2>&1
  rc=$?
  set -e
  grep -v 'running with root privileges' "$work/lintian.out" || true
  [[ $rc == 0 ]] || fail "lintian reports errors or warnings (exit $rc)"
  if grep -E '^[EW]: ' "$work/lintian.out"; then fail "lintian: error or warning tags"; fi
  # Missing hardening shows as info tags (hardening-no-fortify-functions, -no-bindnow), below
  # --fail-on: look for them by name.
  if grep -E '^[EWI]: .*hardening-' "$work/lintian.out"; then fail "lintian: hardening tags"; fi
  # What the overrides hide, with their reasons (this listing always exits 2, lintian's choice).
  lintian --show-overrides "$deb" 2>&1 | grep -E '^[NO]: ' || true
  echo "PASS: package contents, control data and lintian (no errors, no unexplained warnings)"
  exit 0
fi

# ---- install: dpkg in a copy-on-write view of / ----
cp "$deb" "$work/syngate.deb"
cat > "$work/inside.sh" <<'INSIDE'
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
# Lines that mention the chain, in every backend and family: what is left of syngate's rules in
# this namespace, seen without the syngate binary (which remove deletes).
rules_left() {
  local s
  for s in iptables-nft-save iptables-legacy-save ip6tables-nft-save ip6tables-legacy-save; do
    command -v "$s" >/dev/null || continue
    "$s" 2>/dev/null | grep -E 'SYNGATE|SG_EDGE' || true
  done
}
echo "== dpkg -i"
dpkg -i /tmp/syngate.deb
echo "== dpkg -L syngate"
dpkg -L syngate
echo "== state"
ls -ld /var/lib/syngate /etc/syngate /etc/syngate/syngate.toml
[[ $(stat -c %a /var/lib/syngate) == 700 ]] || fail "/var/lib/syngate is not 0700"
[[ $(stat -c %U /var/lib/syngate) == syngate ]] || fail "/var/lib/syngate owner: $(stat -c %U /var/lib/syngate), not the units' user syngate"
dpkg-query -W -f='${Conffiles}\n' syngate | grep -q '/etc/syngate/syngate.toml' || fail "conffile not registered"
echo "systemctl is-enabled: $(systemctl is-enabled syngate.service 2>&1 || true)"
state=$(systemctl is-enabled syngate.service 2>&1 || true)
[[ $state == disabled ]] || fail "unit should be installed and disabled, is: $state"
[[ ! -e /etc/systemd/system/multi-user.target.wants/syngate.service ]] || fail "unit enabled"
grep -E '^(ExecStart|ExecStartPre|Type)=' /lib/systemd/system/syngate.service
echo "== syngate check on the shipped configuration (must refuse: no service yet)"
if out=$(syngate check --config /etc/syngate/syngate.toml 2>&1); then fail "shipped config passes check: $out"; fi
echo "$out"
grep -q 'service' <<<"$out" || fail "the refusal does not name the missing service"
printf '\n[[service]]\naddress = "10.10.3.2"\nport = 80\n' >> /etc/syngate/syngate.toml
# No XDP: the namespace has no interface for it, and the fast path has tests of its own.
sed -i '/^\[xdp\]$/a mode = "off"' /etc/syngate/syngate.toml
grep -qx 'mode = "off"' /etc/syngate/syngate.toml || fail "the shipped configuration has no [xdp] table to turn off"
syngate check --config /etc/syngate/syngate.toml
echo "== the gateway in this network namespace: rules up, the daemon started and stopped"
ip link set lo up
syngate rules up --config /etc/syngate/syngate.toml > /dev/null
[[ -n $(rules_left) ]] || fail "rules up installed nothing"
# A second instance (syngate@edge) with a chain of its own.
printf '[gateway]\nsecret_file = "/var/lib/syngate/edge-secrets"\nchain = "SG_EDGE"\nsyn_queue = 20\nflow_queue = 28\nmetrics_address = "127.0.0.1:9471"\n[[service]]\naddress = "10.10.4.2"\nport = 443\n' \
  > /etc/syngate/edge.toml
syngate rules up --config /etc/syngate/edge.toml > /dev/null
rules_left | grep -q SG_EDGE || fail "rules up for the edge instance installed nothing"
syngate run --config /etc/syngate/syngate.toml > /tmp/run.log 2>&1 &
daemon=$!
for _ in $(seq 100); do
  [[ -n $(ls -A /run/syngate 2>/dev/null) ]] && break
  sleep 0.1
done
kill -TERM "$daemon"
wait "$daemon" || true
ls -l /run/syngate
[[ -n $(ls -A /run/syngate 2>/dev/null) ]] || { cat /tmp/run.log; fail "the daemon left no flow table in /run/syngate"; }
echo "== dpkg -i again (reinstall/upgrade path): the edited conffile and the rules stay"
dpkg -i /tmp/syngate.deb
grep -q '^address = "10.10.3.2"' /etc/syngate/syngate.toml || fail "reinstall replaced the edited conffile"
[[ -n $(rules_left) ]] || fail "an upgrade took the rules down"
[[ $(stat -c %a /var/lib/syngate) == 700 ]] || fail "/var/lib/syngate mode after reinstall"
echo "== tcptune finds its shipped profiles"
tcptune --json profiles > /tmp/profiles.json
python3 - <<'PY'
import json
p = json.load(open("/tmp/profiles.json"))["profiles"]
paths = sorted(x["path"] for x in p)
print("\n".join(paths))
assert len(paths) >= 5 and all(x.startswith("/usr/share/tcptune/profiles/") for x in paths), paths
PY
echo "== man pages"
man -w syngate tcptune synflood
synflood --help | head -3
echo "== dpkg -r (takes every instance's rules down; keeps the edited conffile, the secrets and the flow tables)"
dpkg -r syngate
[[ -f /etc/syngate/syngate.toml ]] || fail "remove deleted the conffile"
[[ -d /var/lib/syngate ]] || fail "remove deleted the state directory"
[[ -d /run/syngate ]] || fail "remove deleted /run/syngate"
[[ ! -e /usr/sbin/syngate ]] || fail "remove left the binary"
left=$(rules_left)
[[ -z $left ]] || fail "remove left syngate's rules, and no syngate to take them down: $left"
echo "== dpkg -P"
dpkg -P syngate
[[ ! -e /etc/syngate/syngate.toml ]] || fail "purge left the conffile"
[[ ! -e /var/lib/syngate ]] || fail "purge left /var/lib/syngate"
[[ ! -e /run/syngate ]] || fail "purge left /run/syngate"
[[ -f /etc/syngate/edge.toml ]] || fail "purge deleted the operator's own instance configuration"
rm /etc/syngate/edge.toml
echo "== dpkg -r when the configuration does not load (the shipped one names no service)"
dpkg -i /tmp/syngate.deb > /dev/null
printf '[gateway]\nsecret_file = "/var/lib/syngate/secrets"\n[[service]]\naddress = "10.10.3.2"\nport = 80\n' > /tmp/elsewhere.toml
syngate rules up --config /tmp/elsewhere.toml > /dev/null
[[ -n $(rules_left) ]] || fail "rules up installed nothing"
if syngate check --config /etc/syngate/syngate.toml > /dev/null 2>&1; then fail "the shipped configuration loads"; fi
dpkg -r syngate
left=$(rules_left)
[[ -z $left ]] || fail "remove with an unloadable configuration left syngate's rules: $left"
echo "== dpkg -r without CAP_NET_ADMIN (a container): completes, and says no rules were removed"
dpkg -i /tmp/syngate.deb > /dev/null
setpriv --inh-caps -net_admin --bounding-set -net_admin dpkg -r syngate 2>&1 | tee /tmp/capless.log
grep -q 'iptables does not work here' /tmp/capless.log || fail "the capless remove does not say why no rules were removed"
[[ ! -e /usr/sbin/syngate ]] || fail "remove without CAP_NET_ADMIN did not complete"
dpkg -P syngate > /dev/null
echo "INSIDE-OK"
INSIDE
host_state() { dpkg-query -W -f='${Status}' syngate 2>/dev/null || true; ls -ld /etc/syngate /var/lib/syngate 2>/dev/null || true; }
host_before=$(host_state)
echo "== install in an overlay of / (private mount namespace)"
# A network namespace of its own too: the rules the test installs and the remove takes down
# never reach the host's, and vanish with the namespace.
unshare --mount --net --propagation private bash -euo pipefail -c '
  w=$1
  mkdir -p "$w/ovl"
  mount -t tmpfs -o size=512m tmpfs "$w/ovl"
  mkdir "$w/ovl/upper" "$w/ovl/work" "$w/ovl/root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$w/ovl/upper,workdir=$w/ovl/work" "$w/ovl/root"
  r=$w/ovl/root
  mount --rbind /dev "$r/dev"
  mount -t proc proc "$r/proc"
  # an empty /run: no systemd here, as in any chroot, so nothing is started or reloaded
  mount -t tmpfs tmpfs "$r/run"
  mount -t tmpfs tmpfs "$r/tmp"
  cp "$w/syngate.deb" "$w/inside.sh" "$r/tmp/"
  chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 bash /tmp/inside.sh
' _ "$work" 2>&1 | tee "$work/install.log"
grep -q INSIDE-OK "$work/install.log" || fail "install test failed"
# The host is untouched.
[[ $(host_state) == "$host_before" ]] || fail "the host changed: before [$host_before] after [$(host_state)]"
echo "PASS: install, state 0700, unit disabled, unconfigured gateway refused, upgrade keeps the rules, remove takes them down, purge deletes config and state"
