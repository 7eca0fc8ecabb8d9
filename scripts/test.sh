#!/usr/bin/env bash
# The whole test suite from a fresh clone. Installs what the tests need into .tools/ (Azurite,
# pinned; the Python test tools, pinned), then runs the Rust suite (unit, contract tests on
# memory and Azurite, host protocol, reliability), the Python suites (LRO clients, schemathesis,
# deployment checks) and a smoke pass of the benchmark harness.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

step() { printf '\n==> %s\n' "$*"; }

step "Azurite (pinned) into .tools/"
bash scripts/install-azurite.sh
export AZURITE_BIN="$repo/.tools/node_modules/.bin/azurite"

step "Python test tools (pinned) into .tools/venv"
if [ ! -x .tools/venv/bin/python ] || ! cmp -s tests/requirements.txt .tools/venv/installed-requirements.txt; then
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt .tools/venv/installed-requirements.txt
fi

step "Rust tests (cargo nextest)"
cargo build --locked --bin handler
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi

step "Static handler for packaging and benchmarks"
bash scripts/build-static.sh

step "Python suites"
export HANDLER_BIN="$repo/target/debug/handler"
.tools/venv/bin/python -m pytest -q tests/python tests/deploy

if [ -f bench/run.sh ]; then
  step "Benchmark harness, smoke pass"
  bash bench/run.sh --smoke
fi
