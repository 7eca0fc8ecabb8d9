#!/usr/bin/env bash
# The whole test suite from a fresh clone. Installs what the tests need into .tools/ (Azurite,
# pinned; the Python test tools, pinned), then runs the Rust suite (unit, contract tests on
# memory and Azurite, host protocol), the reliability suite at CI size (faults, scale-out, hostile input,
# fuzzing), the Python suites (Azure SDK LRO poller, schemathesis, deployment checks), and a
# smoke pass of the benchmark harness.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

step() { printf '\n==> %s\n' "$*"; }

# A virtualenv at .tools/$1 with the pinned requirements file $2, reinstalled when it changes.
venv() {
  local dir=".tools/$1" requirements=$2
  if [ ! -x "$dir/bin/python" ] || ! cmp -s "$requirements" "$dir/installed-requirements.txt"; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$dir/installed-requirements.txt"
  fi
}

step "Azurite (pinned) into .tools/"
bash scripts/install-azurite.sh
export AZURITE_BIN="$repo/.tools/node_modules/.bin/azurite"

step "Python test tools (pinned) into .tools/venv and .tools/checkov"
venv venv tests/requirements.txt
venv checkov tests/requirements-checkov.txt

step "The run's shared Azurites, by key and in OAuth mode over HTTPS (tests keep apart by their own queue and container names)"
source scripts/shared-azurite.sh
start_shared_azurite

step "Rust tests (cargo nextest)"
cargo build --locked --bin handler
cargo nextest run --locked --no-fail-fast \
  -E 'not (binary(faults) | binary(scale_out) | binary(hostile_input) | binary(decoders_fuzz))'

step "Reliability suite at CI size (scripts/reliability.sh --ci)"
bash scripts/reliability.sh --ci

step "Static handler for packaging and benchmarks"
bash scripts/build-static.sh

step "Python suites: LRO clients, schemathesis, deployment checks"
export HANDLER_BIN="$repo/target/debug/handler"
.tools/venv/bin/python -m pytest -p no:cacheprovider -q tests/python tests/deploy

step "Benchmark harness, smoke pass"
bash bench/run.sh --smoke
