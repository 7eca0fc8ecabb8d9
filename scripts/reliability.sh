#!/usr/bin/env bash
# The fault suite (tests/faults.rs) at a chosen size, printing each test's figures:
# soak, kill -9 under load, storage outage, duplicate delivery, graceful shutdown, bad settings.
#   bash scripts/reliability.sh            full size: 10,000-request soak, 2,000 under kill -9
#   bash scripts/reliability.sh --ci       reduced size, as CI runs it
# Installs Azurite (pinned) into .tools/ first; the tests fail, never skip, without it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--ci" ]; then
  export SOAK_REQUESTS="${SOAK_REQUESTS:-400}" CRASH_REQUESTS="${CRASH_REQUESTS:-300}"
else
  export SOAK_REQUESTS="${SOAK_REQUESTS:-10000}" CRASH_REQUESTS="${CRASH_REQUESTS:-2000}"
fi
export OUTAGE_SECONDS="${OUTAGE_SECONDS:-10}"
export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
bash scripts/install-azurite.sh
export AZURITE_BIN="$PWD/.tools/node_modules/.bin/azurite"

echo "reliability: SOAK_REQUESTS=$SOAK_REQUESTS CRASH_REQUESTS=$CRASH_REQUESTS OUTAGE_SECONDS=$OUTAGE_SECONDS PROPTEST_CASES=$PROPTEST_CASES"
# One test at a time: the soak and crash figures are not meant to compete for two cores.
cargo nextest run --locked --test faults --test hostile_input --test decoders_fuzz \
  --test-threads 1 --success-output immediate --no-fail-fast 2>&1 \
  | grep --line-buffered -E '^\s*(soak|crash|outage|shutdown|settings|hostile input):|PASS|FAIL|Summary|panicked|left:|right:'
