#!/usr/bin/env bash
# A Debian 12 (bookworm) root for booting under systemd-nspawn, built once with debootstrap and
# cached: the tests boot a throwaway copy of it, never the cache itself.
#   root.sh DEB   prints the cached root's directory, building it first if it is not there.
# The root is minbase (no procps, no adduser: the package must not rely on them) plus systemd,
# dbus and the packages the .deb depends on, so that `dpkg -i` installs it offline. The cache is
# keyed by that package list, so a new dependency builds a new root and the old one is removed.
# Cache: $SYNGATE_TEST_CACHE, else /var/cache/syngate-test. Mirror: the first http URI apt's
# sources name (debootstrap's default otherwise).
set -euo pipefail
deb=${1:?usage: root.sh DEB}
cache=${SYNGATE_TEST_CACHE:-/var/cache/syngate-test}
suite=bookworm

# The .deb's dependencies, first alternative of each, without versions: the cache key.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' | grep -v '^$' | sort -u)
key=$(printf '%s %s %s\n' "$suite" "$(dpkg --print-architecture)" "$(echo $deps)" | sha256sum | cut -c1-16)
root=$cache/bookworm-$key
if [[ -f $root/.complete ]]; then echo "$root"; exit 0; fi

mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9
if [[ -f $root/.complete ]]; then echo "$root"; exit 0; fi
mirror=$(grep -rhoE '^(deb|URIs:)[[:space:]]+http://[^[:space:]]+/debian/?([[:space:]]|$)' /etc/apt/sources.list \
           /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
rm -rf "$cache"/bookworm-*  # an older package list's root
# A virtual dependency (libspdlog1.10-fmt9) becomes the real package that provides it:
# debootstrap takes only real names.
real=()
for p in $deps; do
  if [[ -n $(apt-cache show --no-all-versions "$p" 2>/dev/null) ]]; then real+=("$p"); continue; fi
  provider=$(apt-cache showpkg "$p" | awk '/^Reverse Provides:/ { on = 1; next } on && NF { print $1; exit }')
  [[ -n $provider ]] || { echo "root.sh: no package provides $p" >&2; exit 1; }
  real+=("$provider")
done
packages=$(printf '%s\n' systemd systemd-sysv dbus "${real[@]}" | sort -u | paste -sd, -)
echo "building $root: debootstrap minbase $suite from $mirror with $packages" >&2
t0=$SECONDS
debootstrap --variant=minbase --include="$packages" "$suite" "$root.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
  { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$root.tmp"; exit 1; }
# Not needed to boot, and they would only grow each copy.
rm -rf "$root.tmp"/var/cache/apt/archives/*.deb "$root.tmp"/var/lib/apt/lists/*_Packages
# A machine id of its own at each boot (systemd writes a transient one), no host name clash.
: > "$root.tmp/etc/machine-id"
echo syngate-test > "$root.tmp/etc/hostname"
mv "$root.tmp" "$root"
touch "$root/.complete"
echo "built in $((SECONDS - t0)) s" >&2
echo "$root"
