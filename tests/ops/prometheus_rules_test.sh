#!/usr/bin/env bash
# promtool (Debian's prometheus package) checks the alerting rules and runs their unit tests,
# which feed series and assert which alerts fire, when, and with what text.
#   prometheus_rules_test.sh DIR   (DIR holds syngate-rules.yml and syngate-rules.test.yml)
set -euo pipefail
dir=${1:?usage: prometheus_rules_test.sh DIR}
command -v promtool >/dev/null || { echo "FAIL: promtool not found (apt-get install prometheus; scripts/deps.sh does)"; exit 1; }
cd "$dir"
promtool check rules syngate-rules.yml
promtool test rules syngate-rules.test.yml
echo "PASS: rules valid, promtool unit tests pass"
