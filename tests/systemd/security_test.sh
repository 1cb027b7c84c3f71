#!/usr/bin/env bash
# The units' sandbox: `systemd-analyze security --offline=true` must score syngate.service and
# syngate@.service at most 2.5 (0 = locked down, 10 = exposed). Prints each unit's open items.
#   security_test.sh DEPLOY_DIR
set -euo pipefail
dir=${1:?usage: security_test.sh DEPLOY_DIR}
limit=2.5
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is missing (package systemd)"; exit 77; }
rc=0
for unit in syngate.service syngate@.service; do
  out=$(systemd-analyze security --offline=true --no-pager "$dir/$unit" 2>&1) || true
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  [[ -n $score ]] || { echo "FAIL: $unit: no score from systemd-analyze: $out"; exit 1; }
  grep '^✗' <<<"$out" | sed 's/^/  /' || true
  if awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s <= l) }'; then
    echo "PASS: $unit exposure $score (at most $limit)"
  else
    echo "FAIL: $unit exposure $score, more than $limit"; rc=1
  fi
done
exit $rc
