#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time on its
# seed corpus from tests/fuzz/corpus/<target>/ (what earlier runs found, kept small): new inputs go
# to a temporary corpus, never into the repository. Undefined behaviour is a finding like a crash.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNGATE_FUZZ=ON \
  -DSYNGATE_TESTS=OFF -DSYNGATE_BENCH=OFF -DSYNGATE_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_targets
for target in "$build"/fuzz/fuzz_*; do
  [ -x "$target" ] || continue
  name=$(basename "$target")
  corpus_seed="tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p fuzz-artifacts
  # fuzz_engine's cost grows with the input (a packet per dozen bytes): 1 KiB is some 70 packets,
  # far more than any state needs (the longest seed is about 530 bytes), and keeps a long run from
  # drifting to libFuzzer's default of 4 KiB and a quarter of the speed.
  extra=()
  [[ $name == fuzz_engine ]] && extra=(-max_len=1024)
  echo "fuzzing $name for ${seconds}s"
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    "${extra[@]}" -artifact_prefix=fuzz-artifacts/"$name"- "$work" $([ -d "$corpus_seed" ] && echo "$corpus_seed")
  rm -rf "$work"
done
echo "fuzz: all targets ran without a finding"
