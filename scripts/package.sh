#!/usr/bin/env bash
# Builds the static handler and dist/app.zip, the package `func azure functionapp publish`
# uploads (what .funcignore leaves in), and prints what it holds and its size.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-static.sh
python3 scripts/package.py "$@"
