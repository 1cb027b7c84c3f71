#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds from scratch with -Werror, runs every ctest
# (unit tests without privileges; tests labelled "root" build network namespaces and need root),
# then a bounded libFuzzer run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
jobs=$(nproc)
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNGATE_WERROR=ON
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" ${CTEST_ARGS:-}
./scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
