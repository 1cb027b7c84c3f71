#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time on its seed corpus
# from tests/fuzz/corpus/<target>/ (what earlier runs found, kept small): new inputs go to a
# temporary corpus, never into the repository. Undefined behaviour is a finding like a crash.
#
# Two builds. Each target explores with AddressSanitizer alone (clang 14 traces every compare
# UBSan inserts as the program's own: with UBSan fuzz_engine ran 1/1.8 as many inputs),
# then every input that run kept, the seeds and any crash it left are replayed once by the build
# with ASan and UBSan, so undefined behaviour that a kept input reaches is still reported. That
# second build runs at low priority beside the exploring runs (libFuzzer uses one core), so the
# whole takes about what one build and SECONDS per target took before.
#
# fuzz_engine explores at 25.1k inputs/s on an idle machine (a 10-minute run from its seeds: 15.1M
# inputs; such runs vary by about a tenth with the fuzzer's path, so changes are compared on a
# fixed -runs=N -seed=S run), 12-14k/s beside the replay build: one engine reset between inputs,
# its program's buffers and configuration kept from input to input, and its own code not
# instrumented for coverage (fuzz/coverage_ignore.txt). Where the rest goes (perf): libFuzzer's
# own work per input is a quarter (collecting the features of every edge hit, Entropic's
# frequency update), the engine's parse and SYN-ACK build a quarter; ASan's range checks (a copy
# or clear of more than 64 bytes is checked through the shadow) and compare tracing are spread
# through all of it.
#
# FUZZ_EXPLORE=fast (opt-in, never the default) explores with coverage alone, no ASan
# (build-fuzz-fast): about twice the inputs per second, and what the run keeps, its seeds and any
# crash are still replayed under ASan and UBSan. What it gives up: a memory error that does not
# crash (an overflow into a neighbour, a use after free that reads stale bytes) is found only if
# the input that makes it is kept for reaching new code; the default run reports it on any input.
# No leak detection while exploring either.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   (targets by name, e.g. fuzz_engine;
# default all). Build directories: FUZZ_BUILD_DIR (build-fuzz; build-fuzz-fast with
# FUZZ_EXPLORE=fast), FUZZ_REPLAY_BUILD_DIR (FUZZ_BUILD_DIR-ubsan, else build-fuzz-ubsan).
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" | sed '/^set /,$d'; exit 0; fi
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
case ${FUZZ_EXPLORE:-asan} in
  asan) explore_sanitizers=address explore_label=ASan build=${FUZZ_BUILD_DIR:-build-fuzz} ;;
  fast) explore_sanitizers=none explore_label="coverage only, no ASan" build=${FUZZ_BUILD_DIR:-build-fuzz-fast} ;;
  *) echo "fuzz: FUZZ_EXPLORE is asan (the default) or fast, not '$FUZZ_EXPLORE'" >&2; exit 2 ;;
esac
replay_build=${FUZZ_REPLAY_BUILD_DIR:-${FUZZ_BUILD_DIR:-build-fuzz}-ubsan}
wanted=("${@:-fuzz_targets}")
configure() {  # DIR SANITIZERS
  CC=clang CXX=clang++ cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNGATE_FUZZ=ON \
    -DSYNGATE_FUZZ_SANITIZERS="$2" -DSYNGATE_TESTS=OFF -DSYNGATE_BENCH=OFF -DSYNGATE_WERROR=ON >/dev/null
  cmake --build "$1" -j "$(nproc)" --target "${wanted[@]}"
}
configure "$build" "$explore_sanitizers"

works=()
replay_pid=""
replay_log=$(mktemp)
wait_replay_build() {
  [ -n "$replay_pid" ] || return 0
  local pid=$replay_pid
  replay_pid=""
  wait "$pid" || { cat "$replay_log" >&2; echo "fuzz: the ASan+UBSan build failed" >&2; exit 1; }
}
# On any exit the background build is waited for, not left running.
trap 'wait_replay_build; rm -rf "${works[@]}" "$replay_log"' EXIT
(renice -n 19 "$BASHPID" >/dev/null; configure "$replay_build" address,undefined) >"$replay_log" 2>&1 &
replay_pid=$!

targets=()
if [[ ${wanted[*]} == fuzz_targets ]]; then
  for target in "$build"/fuzz/fuzz_*; do [ -x "$target" ] && targets+=("$target"); done
else
  for name in "${wanted[@]}"; do targets+=("$build/fuzz/$name"); done
fi
target_args() {  # NAME: sets opts and seed, the same for both runs
  opts=(-timeout=10 -rss_limit_mb=2048)
  # fuzz_engine's cost grows with the input (a packet per dozen bytes): 1 KiB is some 70 packets,
  # far more than any state needs (the longest seed is about 530 bytes), and keeps a long run
  # from drifting to libFuzzer's default of 4 KiB and a quarter of the speed.
  if [[ $1 == fuzz_engine ]]; then opts+=(-max_len=1024); fi
  seed=()
  if [ -d "tests/fuzz/corpus/${1#fuzz_}" ]; then seed=("tests/fuzz/corpus/${1#fuzz_}"); fi
}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p fuzz-artifacts
for i in "${!targets[@]}"; do
  target=${targets[$i]}
  name=$(basename "$target")
  target_args "$name"
  works[i]=$(mktemp -d)
  marker="${works[$i]}/.started"
  touch "$marker"
  echo "fuzzing $name for ${seconds}s ($explore_label)"
  if ! "$target" -max_total_time="$seconds" "${opts[@]}" -artifact_prefix=fuzz-artifacts/"$name"- \
      "${works[$i]}" "${seed[@]}"; then
    # The finding stands; its inputs once more under UBSan too, for the fuller report.
    wait_replay_build
    find fuzz-artifacts -maxdepth 1 -name "$name-*" -newer "$marker" -type f -print0 |
      xargs -0 -r "$replay_build/fuzz/$name" -runs=1 "${opts[@]}" || true
    echo "fuzz: $name found a problem (inputs in fuzz-artifacts/)" >&2
    exit 1
  fi
done
wait_replay_build
for i in "${!targets[@]}"; do
  name=$(basename "${targets[$i]}")
  target_args "$name"
  echo "replaying what $name kept and its seeds (ASan and UBSan)"
  # -runs=0: every input of the corpora runs once as it is read; nothing new is tried.
  "$replay_build/fuzz/$name" -runs=0 "${opts[@]}" -artifact_prefix=fuzz-artifacts/"$name"-ubsan- \
    "${works[$i]}" "${seed[@]}" ||
    { echo "fuzz: $name: an input the run kept shows undefined behaviour (see above)" >&2; exit 1; }
done
echo "fuzz: all targets ran without a finding"
