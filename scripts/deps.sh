#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests and the lab need. Idempotent.
set -euo pipefail
packages=(
  build-essential cmake pkg-config clang libclang-rt-dev libbpf-dev bpftool
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libnetfilter-queue-dev libmnl-dev libtomlplusplus-dev libspdlog-dev libsodium-dev
  libcli11-dev libpcap-dev libsystemd-dev nlohmann-json3-dev
  iproute2 iptables conntrack nginx-light curl apache2-utils iperf3 wrk redis-server redis-tools tcpdump ethtool gnuplot-nox procps python3
  lintian file man-db prometheus debootstrap systemd-container bird2
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
