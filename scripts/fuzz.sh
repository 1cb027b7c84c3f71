#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time on its seed corpus
# from tests/fuzz/corpus/<target>/ (what earlier runs found, kept small): new inputs go to a
# temporary corpus, never into the repository. Undefined behaviour is a finding like a crash.
#
# Two builds. Each target explores with AddressSanitizer alone (clang 14 traces every compare
# UBSan inserts as the program's own: with UBSan fuzz_engine ran about a third as many inputs),
# then every input that run kept, the seeds and any crash it left are replayed once by the build
# with ASan and UBSan, so undefined behaviour that an explored input reached is still reported.
# The second build's time comes out of the exploring runs, so the whole takes what one build
# and SECONDS per target took before.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   (targets by name, e.g. fuzz_engine;
# default all). Build directories: FUZZ_BUILD_DIR (build-fuzz), FUZZ_REPLAY_BUILD_DIR
# (FUZZ_BUILD_DIR-ubsan).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
build=${FUZZ_BUILD_DIR:-build-fuzz}
replay_build=${FUZZ_REPLAY_BUILD_DIR:-$build-ubsan}
wanted=("${@:-fuzz_targets}")
configure() {  # DIR SANITIZERS
  CC=clang CXX=clang++ cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNGATE_FUZZ=ON \
    -DSYNGATE_FUZZ_SANITIZERS="$2" -DSYNGATE_TESTS=OFF -DSYNGATE_BENCH=OFF -DSYNGATE_WERROR=ON >/dev/null
  cmake --build "$1" -j "$(nproc)" --target "${wanted[@]}"
}
configure "$build" address
start=$SECONDS
configure "$replay_build" address,undefined
targets=()
if [[ ${wanted[*]} == fuzz_targets ]]; then
  for target in "$build"/fuzz/fuzz_*; do [ -x "$target" ] && targets+=("$target"); done
else
  for name in "${wanted[@]}"; do targets+=("$build/fuzz/$name"); done
fi
# At least half of each run explores, however long the second build took (a cold cache).
explore=$(( seconds - (SECONDS - start) / ${#targets[@]} ))
(( explore >= (seconds + 1) / 2 )) || explore=$(( (seconds + 1) / 2 ))
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p fuzz-artifacts
work=""
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  name=$(basename "$target")
  replay="$replay_build/fuzz/$name"
  corpus_seed="tests/fuzz/corpus/${name#fuzz_}"
  seed=()
  [ -d "$corpus_seed" ] && seed=("$corpus_seed")
  work=$(mktemp -d)
  # fuzz_engine's cost grows with the input (a packet per dozen bytes): 1 KiB is some 70 packets,
  # far more than any state needs (the longest seed is about 530 bytes), and keeps a long run from
  # drifting to libFuzzer's default of 4 KiB and a quarter of the speed.
  extra=(-timeout=10 -rss_limit_mb=2048)
  [[ $name == fuzz_engine ]] && extra+=(-max_len=1024)
  echo "fuzzing $name for ${explore}s (ASan), then replaying what it kept (ASan and UBSan)"
  marker="$work/.started"
  touch "$marker"
  status=0
  "$target" -max_total_time="$explore" "${extra[@]}" -artifact_prefix=fuzz-artifacts/"$name"- \
    "$work" "${seed[@]}" || status=$?
  if (( status != 0 )); then
    # The finding stands; its inputs once more under UBSan too, for the fuller report.
    find fuzz-artifacts -maxdepth 1 -name "$name-*" -newer "$marker" -type f -print0 |
      xargs -0 -r "$replay" -runs=1 "${extra[@]}" || true
    echo "fuzz: $name found a problem (inputs in fuzz-artifacts/)" >&2
    exit 1
  fi
  # -runs=0: every input of the corpora is run once as it is read, nothing new is tried.
  "$replay" -runs=0 "${extra[@]}" -artifact_prefix=fuzz-artifacts/"$name"-ubsan- "$work" "${seed[@]}" ||
    { echo "fuzz: $name: an input the run kept shows undefined behaviour (see above)" >&2; exit 1; }
  rm -rf "$work"
done
echo "fuzz: all targets ran without a finding"
