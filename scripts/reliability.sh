#!/usr/bin/env bash
# The fault suite (tests/faults.rs) at a chosen size, printing each test's figures:
# soak, kill -9 under load, storage outage, duplicate delivery, graceful shutdown, bad settings;
# and three instances on one queue with a kill -9 of one (tests/scale_out.rs).
#   bash scripts/reliability.sh            full size: 10,000-request soak, 2,000 under kill -9
#   bash scripts/reliability.sh --ci       reduced size, as CI runs it
# Installs Azurite (pinned) into .tools/ first; the tests fail, never skip, without it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--ci" ]; then
  # A 5 s outage still spans several seconds of 503s past the ~2 s it takes to notice one.
  export SOAK_REQUESTS="${SOAK_REQUESTS:-400}" CRASH_REQUESTS="${CRASH_REQUESTS:-300}"
  export OUTAGE_SECONDS="${OUTAGE_SECONDS:-5}" SCALE_REQUESTS="${SCALE_REQUESTS:-300}"
else
  export SOAK_REQUESTS="${SOAK_REQUESTS:-10000}" CRASH_REQUESTS="${CRASH_REQUESTS:-2000}"
  export OUTAGE_SECONDS="${OUTAGE_SECONDS:-10}" SCALE_REQUESTS="${SCALE_REQUESTS:-1000}"
fi
export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
bash scripts/install-azurite.sh
export AZURITE_BIN="$PWD/.tools/node_modules/.bin/azurite"
# Tests that only need a storage account share one Azurite (scripts/test.sh's, when it runs us).
source scripts/shared-azurite.sh
start_shared_azurite

echo "reliability: SOAK_REQUESTS=$SOAK_REQUESTS CRASH_REQUESTS=$CRASH_REQUESTS OUTAGE_SECONDS=$OUTAGE_SECONDS SCALE_REQUESTS=$SCALE_REQUESTS PROPTEST_CASES=$PROPTEST_CASES"
run() {
  cargo nextest run --locked --test faults --test scale_out --test hostile_input --test decoders_fuzz \
    --success-output immediate --no-fail-fast "$@" 2>&1 \
    | grep --line-buffered -E '^\s*(soak|crash|scale-out|outage|shutdown|settings|hostile input):|PASS|FAIL|Summary|panicked|left:|right:'
}
heavy='test(soak_every_accepted_request_completes) | test(kill_9_three_times_during_load_loses_nothing) | binary(scale_out)'
status=0
# The soak and crash figures are not meant to compete for two cores: those two run alone, one
# at a time. The rest run side by side: their figures are counts, or timings they only print.
run -E "$heavy" --test-threads 1 || status=1
run -E "not ($heavy)" || status=1
exit "$status"
