#!/usr/bin/env bash
# The soak run's CI version (bench/soak/run.sh): 3 minutes of everything at once through syngate
# (clients of every kind, every flood kind, SIGHUPs, one kill -9 and restart, one key rotation),
# judged by the same criteria as the 30-minute run. RUN_SERIAL: a flood on a 2-CPU runner must
# not share it with other tests.
#   soak_ci.sh SYNFLOOD SYNGATE OUT
set -euo pipefail
synflood=${1:?usage: soak_ci.sh SYNFLOOD SYNGATE OUT}
syngate=${2:?}
out=${3:?}
source "$(dirname "$0")/../lib/netns.sh"
require_root "the soak needs root"
rm -rf "$out"
exec "$(dirname "$0")/../../bench/soak/run.sh" --synflood "$synflood" --syngate "$syngate" --out "$out" \
  --duration "${SOAK_CI_SECONDS:-180}" --download-mb 4 --cooldown 90
