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

# The Python tools are first needed after the Rust suites; installing them is mostly download
# time, so it runs beside the Rust builds instead of before them.
step "Python test tools (pinned) into .tools/venv and .tools/checkov, in the background"
mkdir -p .tools
# (Two plain commands, not an && list, so that errexit still stops at a failed pip inside.)
( venv venv tests/requirements.txt; venv checkov tests/requirements-checkov.txt ) \
  >.tools/python-tools.log 2>&1 &
python_tools=$!

step "The run's shared Azurites, by key and in OAuth mode over HTTPS (tests keep apart by their own queue and container names)"
source scripts/shared-azurite.sh
start_shared_azurite

step "Rust tests (cargo nextest)"
cargo build --locked --bin handler
cargo nextest run --locked --no-fail-fast \
  -E 'not (binary(faults) | binary(scale_out) | binary(hostile_input) | binary(decoders_fuzz))'

step "Reliability suite at CI size (scripts/reliability.sh --ci)"
bash scripts/reliability.sh --ci

# The quick static build (scripts/build-static.sh --quick): as static as the shipped one, much
# faster to build, and kept at target/quick-static/handler, never ./handler, so neither the
# publish package (scripts/package.sh) nor the full benchmark ever takes it. Its path is
# passed to the two steps that use it.
step "Static handler (quick build) for the package test and the benchmark smoke pass"
bash scripts/build-static.sh --quick
export STATIC_HANDLER="$repo/target/quick-static/handler"

step "Python suites: LRO clients, schemathesis, deployment checks"
if ! wait "$python_tools"; then
  cat .tools/python-tools.log >&2
  echo "test.sh: installing the Python test tools failed" >&2
  exit 1
fi
export HANDLER_BIN="$repo/target/debug/handler"
.tools/venv/bin/python -m pytest -p no:cacheprovider -q tests/python tests/deploy

step "Benchmark harness, smoke pass"
bash bench/run.sh --smoke --handler "$STATIC_HANDLER"
